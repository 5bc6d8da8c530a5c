//! Wire and API types shared by every ash component.
//!
//! Owns the JSON shapes that cross a process boundary: the compiled agent manifest written to
//! `.ash/`, the agent surface served by `ash info --json` and `GET /.well-known/ash/v1/info`, and
//! diagnostics, the provider-neutral model conversation and stream types the run log
//! stores, the harness HTTP bodies and the run events of its NDJSON stream, and the messages
//! peers send each other over the network. JSON field names are camelCase, as in the seed's HTTP API; readers tolerate
//! unknown fields.
//!
//! Does not contain logic: no validation, no I/O, no defaults beyond what serde needs.

mod agent;
mod api;
mod diagnostic;
mod events;
mod job;
mod model;
mod net;
mod providers;
mod session;

pub use agent::{
    AgentManifest, AgentSurface, ApprovalInfo, ApprovalRuleInfo, AuthInfo, AuthStrategyInfo,
    ConnectionAuthInfo, ConnectionInfo, HttpToolInfo, LimitsInfo, MANIFEST_FORMAT_VERSION,
    McpToolsInfo, NetworkInfo, OpenApiInfo, PolicyInfo, PromptLayerInfo, ProviderInfo, SandboxInfo,
    SandboxLimitsInfo, ScheduleInfo, ServerNetworkInfo, SkillInfo, SourceFileInfo, SubagentInfo,
    ToolInfo, TransportInfo, UnsupportedInfo,
};
pub use api::{
    API_PREFIX, ApiError, CancelAccepted, HEARTBEAT_TYPE, Health, Heartbeat, HeartbeatData,
    InputAnswer, MessageAccepted, MessageRequest, RUN_ID_HEADER, RunContinues, RunInfo, RunStatus,
    SESSION_ID_HEADER, STREAM_FORMAT_HEADER, STREAM_VERSION_HEADER,
};
pub use diagnostic::{BuildOutput, DiagnosticInfo, InfoOutput, SeverityInfo};
pub use events::{
    Action, ActionError, ActionOutput, ActionProgress, ActionResult, ActionStatus,
    ActionsRequested, Event, EventBody, EventMeta, InputRequested, InputResolved, MessageCompleted,
    MessageReceived, OutputStreamName, RunCompleted, RunFailed, RunMode, RunStarted,
    STREAM_VERSION, SandboxCommand, SandboxExited, SandboxOutput, SandboxPhase, SessionWaiting,
    StepCompleted, StopReason, SubagentCompleted, SubagentEvent, SubagentStarted,
    ThinkingCompleted, TurnCancelled, TurnCompleted, TurnFailed, TurnResumed, TurnStarted,
    WaitReason,
};
pub use job::{
    JOB_CHUNK_BYTES, JobAnnounce, JobAssign, JobEnd, JobFile, JobManifest, JobModelAnswer,
    JobModelCall, JobOffer, JobRouted, JobStep, JobSummary, JobTerms, MACHINE_TIER,
    MAX_ANNOUNCED_AGENTS, MAX_INLINE_BODY, MAX_JOB_NAME, MAX_MANIFEST_MODELS, MAX_MODEL_BODY,
    MAX_MODEL_HEADERS, MAX_PROGRESS_STEPS, MAX_PROGRESS_TEXT, MAX_SEALED_PROMPT_BYTES,
};
pub use model::{
    AssistantPart, FinishReason, Message, ModelEvent, ModelResponse, ReasoningEffort, ToolCall,
    ToolDefinition, ToolImage, ToolResultPart, Usage, UserPart,
};
pub use net::{
    GOSSIP_TYPES, Gossip, LogHead, LogStart, MAX_ENTRIES, MAX_GOSSIP_HEADS, MAX_HEADS,
    MAX_INVITE_BYTES, MAX_LOGS, PeerError, PeerInfo, PeerRequest, PeerResponse, REQUEST_TYPES,
    SignupProof,
};
pub use providers::{ModelsOutput, ProviderStatus};
pub use session::{
    AttributeValue, Authenticator, PrincipalType, SessionAuth, SessionAuthContext, SessionContext,
    SessionTurn,
};
