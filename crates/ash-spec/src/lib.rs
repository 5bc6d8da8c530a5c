//! Reads an ash agent directory into a validated [`AgentSpec`] with diagnostics, and writes the
//! compiled `.ash/` artifact.
//!
//! Owns the agent-directory format (`agent.toml`, `system.md`/`system/`, `skills/`, `tools/`,
//! `sandboxes/`, `connections/`, `schedules/`, `subagents/`, `lib/`, `scripts/`), its naming rules, and
//! [`AgentSpec::builder`] for authoring the same model in Rust. Every problem becomes a
//! [`Diagnostic`] with the file, position, expectation and a minimal valid example; loading
//! reports all of them instead of stopping at the first.
//!
//! Does not execute authored code, contact servers, read the process environment (the caller
//! passes [`LoadOptions::env`]), or write anywhere but `<project>/.ash/`.

mod builder;
mod cron;
mod diagnostic;
mod frontmatter;
mod interpolate;
mod ipnet;
mod load;
mod manifest;
mod names;
mod openapi;
mod prices;
mod providers;
mod slots;
mod source;
mod spec;
mod toml_doc;
mod user_config;

pub use builder::AgentSpecBuilder;
pub use cron::CronExpr;
pub use diagnostic::{Diagnostic, Position, Severity};
pub use interpolate::{Interpolated, REDACTED, Secret};
pub use ipnet::{IpNet, tls_or_loopback};
pub use load::{LoadError, LoadOptions, Loaded, MAX_SUBAGENT_DEPTH, default_agent_name, load};
pub use manifest::{
    BUILD_DIR, BuildError, BuildOutput, DIAGNOSTICS_FILE, MANIFEST_FILE, sandbox_input_schema,
    subagent_input_schema, to_json_bytes, write_build,
};
pub use names::{
    MAX_TOOL_NAME_LEN, RESERVED_HEADERS, RESERVED_TOOL_NAMES, is_model_tool_name, is_tool_name,
    lower_snake_case,
};
pub use openapi::{
    MAX_OPERATIONS, OpenApiDoc, Operation, OperationParts, parse_openapi, placeholders,
};
pub use prices::{Price, builtin_price};
pub use providers::{BUILTIN_PROVIDERS, BuiltinProvider, SCRIPTED_PROVIDER, builtin_provider};
pub use source::{MAX_ASSET_BYTES, MAX_TEXT_BYTES};
pub use spec::{
    AgentSpec, Approval, ApprovalRule, ApprovalTest, AuthStrategy, Connection, ConnectionAuth,
    ConnectionKind, DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_CONNECTION_TIMEOUT_MS,
    DEFAULT_SANDBOX_TIMEOUT_MS, DEFAULT_TOOL_TIMEOUT_MS, ForwardedHeader, HttpMethod, JwtAlgorithm,
    JwtClaims, Layout, Limits, MAX_RETRY_ATTEMPTS, MAX_TOOL_TIMEOUT_MS, McpTools, McpTransport,
    ModelRef, ModelTool, OpenApiTools, Package, PromptLayer, Provider, ProviderApi, Sandbox,
    SandboxBackend, SandboxLimits, Schedule, ServerNetwork, Skill, SkillKind, Source, Subagent,
    Tool, ToolKind, ToolOrigin,
};
pub use user_config::{DECIDE_SECONDS, UserConfig, parse_user_config};
