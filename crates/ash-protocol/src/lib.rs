//! Wire and API types shared by every ash component.
//!
//! Owns the JSON shapes that cross a process boundary: the compiled agent manifest written to
//! `.ash/`, the agent surface served by `ash info --json` and `GET /.well-known/ash/v1/info`, and
//! diagnostics, and the provider-neutral model conversation and stream types the run log
//! stores. JSON field names are camelCase, as in the seed's HTTP API; readers tolerate
//! unknown fields.
//!
//! Does not contain logic: no validation, no I/O, no defaults beyond what serde needs.

mod agent;
mod diagnostic;
mod model;
mod providers;

pub use agent::{
    AgentManifest, AgentSurface, AuthInfo, AuthStrategyInfo, ConnectionAuthInfo, ConnectionInfo,
    HttpToolInfo, LimitsInfo, MANIFEST_FORMAT_VERSION, McpToolsInfo, NetworkInfo, PolicyInfo,
    PromptLayerInfo, ProviderInfo, SandboxInfo, ScheduleInfo, SkillInfo, SourceFileInfo,
    SubagentInfo, ToolInfo, TransportInfo,
};
pub use diagnostic::{BuildOutput, DiagnosticInfo, InfoOutput, SeverityInfo};
pub use model::{
    AssistantPart, FinishReason, Message, ModelEvent, ModelResponse, ReasoningEffort, ToolCall,
    ToolDefinition, ToolResultPart, Usage, UserPart,
};
pub use providers::{ModelsOutput, ProviderStatus};
