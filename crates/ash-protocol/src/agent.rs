//! The compiled agent surface: what `ash build` writes and `ash info --json` prints.
//!
//! Every path is relative to the directory the command was given, `/`-separated. Secret values
//! never appear here: a secret shows as its `${VAR}` template, or as `"<redacted>"` when it was
//! written literally.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the manifest shape. Bump on any change a reader could notice.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// `.ash/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentManifest {
    /// Equals [`MANIFEST_FORMAT_VERSION`] for manifests this crate writes.
    pub format_version: u32,
    /// Version of the `ash` that compiled the manifest.
    pub ash_version: String,
    /// `"nested"` or `"flat"`.
    pub layout: String,
    /// The agent root relative to the project directory.
    pub agent_root: String,
    /// `sha256:<hex>` over the sorted `files` list (paths and hashes).
    pub content_hash: String,
    /// Every source file the agent was compiled from, sorted by path.
    pub files: Vec<SourceFileInfo>,
    /// The resolved agent.
    pub agent: AgentSurface,
}

/// One source file and its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFileInfo {
    /// Path relative to the project directory.
    pub path: String,
    /// `sha256:<hex>` of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The resolved surface of one agent package (the root or a subagent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSurface {
    /// Agent name.
    pub name: String,
    /// What the agent is for; required on subagents.
    pub description: Option<String>,
    /// Gateway-style `provider/model`, or null when unset (subagents inherit the parent's).
    pub model: Option<String>,
    /// Free-form string metadata from `agent.toml`.
    pub metadata: BTreeMap<String, String>,
    /// Prompt layers in the order they are joined.
    pub prompt: Vec<PromptLayerInfo>,
    /// Skills, sorted by name.
    pub skills: Vec<SkillInfo>,
    /// Every model-visible tool, sorted by name.
    pub tools: Vec<ToolInfo>,
    /// Named sandboxes, sorted by name.
    pub sandboxes: Vec<SandboxInfo>,
    /// Connections (root only), sorted by name.
    pub connections: Vec<ConnectionInfo>,
    /// Schedules (root only), sorted by name.
    pub schedules: Vec<ScheduleInfo>,
    /// Subagent packages, sorted by id.
    pub subagents: Vec<SubagentInfo>,
    /// Inbound IP allow list.
    pub network: NetworkInfo,
    /// Inbound auth strategies, in evaluation order.
    pub auth: AuthInfo,
    /// Budgets and limits.
    pub limits: LimitsInfo,
    /// Model providers declared in `agent.toml`, by name.
    pub providers: BTreeMap<String, ProviderInfo>,
    /// The package's `lib/` directory when present; it is never mounted into workspaces.
    pub lib: Option<String>,
    /// The names of exactly the tools the model is offered, built-ins included, sorted.
    /// Filled by the runtime (`ash info`, `GET /info`); empty in `.ash/manifest.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered_tools: Vec<String>,
    /// What the agent configures that this runtime parses but does not execute. `ash start`,
    /// `ash dev` and `ash exec` refuse to run while this is not empty, unless told to run
    /// without these items. Filled by the runtime; empty in `.ash/manifest.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<UnsupportedInfo>,
}

/// Something an agent configures that the runtime does not execute yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnsupportedInfo {
    /// The file that configures it.
    pub source: String,
    /// The slot or key, e.g. `sandboxes/repo-shell` or `limits.session_timeout_ms`.
    pub item: String,
    /// What is not executed and what to do.
    pub reason: String,
    /// Model-visible tools withheld because of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// One prompt layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptLayerInfo {
    /// Source file.
    pub source: String,
    /// The layer's text.
    pub content: String,
}

/// One skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillInfo {
    /// Skill name, the argument of `activate_skill`.
    pub name: String,
    /// `"flat"` (`skills/x.md`) or `"packaged"` (`skills/x/SKILL.md`).
    pub kind: String,
    /// Shown in the prompt's skill catalogue.
    pub description: String,
    /// The skill's main file.
    pub source: String,
    /// Body loaded on activation (frontmatter removed).
    pub body: String,
    /// Files seeded into the workspace under `skills/`, relative to the skills directory.
    pub files: Vec<String>,
    /// Packaged skills' `license` frontmatter.
    pub license: Option<String>,
    /// Packaged skills' string `metadata` frontmatter.
    pub metadata: BTreeMap<String, String>,
}

/// A model-visible tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ToolInfo {
    /// A tool built into the runtime (`bash`, `read_file`, `write_file`, `activate_skill`).
    #[serde(rename_all = "camelCase")]
    Builtin {
        /// Model-visible name.
        name: String,
        /// Description shown to the model.
        description: String,
        /// JSON Schema of the input object.
        input_schema: Value,
    },
    /// A command tool from `tools/*.toml`.
    #[serde(rename_all = "camelCase")]
    Command {
        /// Model-visible name.
        name: String,
        /// Description shown to the model.
        description: String,
        /// JSON Schema of the input object.
        input_schema: Value,
        /// Argv; paths that started with `./` or `../` are resolved to project-relative paths.
        argv: Vec<String>,
        /// Per-call timeout.
        timeout_ms: u64,
        /// Named sandbox the command runs in, if any.
        sandbox: Option<String>,
        /// Connections it may reach through the runtime's endpoint.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        connections: Vec<String>,
        /// When a call waits for a person's approval; absent: never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalInfo>,
        /// Source file.
        source: String,
    },
    /// An HTTP tool that calls a named connection.
    Http(HttpToolInfo),
    /// The tool of a named sandbox, taking a shell command.
    #[serde(rename_all = "camelCase")]
    Sandbox {
        /// Model-visible name, `<slug>_sandbox`.
        name: String,
        /// Description shown to the model.
        description: String,
        /// JSON Schema of the input object.
        input_schema: Value,
        /// The sandbox's name.
        sandbox: String,
        /// When a call waits for a person's approval; absent: never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalInfo>,
        /// Source file.
        source: String,
    },
    /// An allow-listed tool of an MCP connection.
    #[serde(rename_all = "camelCase")]
    Mcp {
        /// Model-visible name, `<namespace>__<tool>`.
        name: String,
        /// Connection name.
        connection: String,
        /// The tool's name on the MCP server.
        remote_name: String,
        /// Source file of the connection.
        source: String,
        /// The description the server gives (known once connected).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The input schema the server gives (known once connected).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_schema: Option<Value>,
        /// Why the model cannot call it right now (server down, starting, not offering it, or
        /// not connected because `ash info` starts no servers); absent when it can.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unavailable: Option<String>,
    },
    /// The delegation tool of a subagent.
    #[serde(rename_all = "camelCase")]
    Subagent {
        /// Model-visible name.
        name: String,
        /// The subagent's description.
        description: String,
        /// JSON Schema of the input object (a message).
        input_schema: Value,
        /// Subagent id.
        subagent: String,
        /// The subagent's directory.
        source: String,
    },
}

/// When a tool's call waits for a person's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum ApprovalInfo {
    /// Every call.
    Always,
    /// Calls whose input matches any rule.
    When {
        /// The rules.
        rules: Vec<ApprovalRuleInfo>,
    },
}

/// One approval rule: `pointer` and exactly one test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRuleInfo {
    /// JSON Pointer into the input.
    pub pointer: String,
    /// The value there equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The string there matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The number there is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
}

/// An HTTP tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpToolInfo {
    /// Model-visible name.
    pub name: String,
    /// Description shown to the model.
    pub description: String,
    /// JSON Schema of the input object.
    pub input_schema: Value,
    /// Connection name (an `http` connection).
    pub connection: String,
    /// HTTP method.
    pub method: String,
    /// Path below the connection's base URL; `{field}` placeholders take input fields.
    pub path: String,
    /// Per-call timeout.
    pub timeout_ms: u64,
    /// JSON Pointer into the answer: the part the model gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// When a call waits for a person's approval; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalInfo>,
    /// Source file.
    pub source: String,
}

/// A named sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// Internal name from the file path, e.g. `repo-shell`.
    pub name: String,
    /// Model-visible tool name, e.g. `repo_shell_sandbox`.
    pub tool_name: String,
    /// Description shown to the model.
    pub description: String,
    /// `auto`, `local`, `bwrap`, `podman` or `docker`.
    pub backend: String,
    /// Container image for `podman`/`docker`.
    pub image: Option<String>,
    /// Commands that prepare the reusable template, once per template key.
    pub bootstrap: Vec<String>,
    /// Commands run once per durable session.
    pub on_session: Vec<String>,
    /// Per-command timeout.
    pub timeout_ms: u64,
    /// What its commands may reach.
    #[serde(default)]
    pub network: ServerNetworkInfo,
    /// What its commands may consume beyond ash's defaults.
    #[serde(default)]
    pub limits: SandboxLimitsInfo,
    /// `sha256:<hex>` over backend, image, network, limits and bootstrap commands; the
    /// template cache key.
    pub template_key: String,
    /// Source file.
    pub source: String,
}

/// `[limits]` of a named sandbox; absent ones keep ash's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxLimitsInfo {
    /// Memory of the whole sandbox, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Share of one CPU, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u64>,
    /// Processes and threads at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// What one command may add to the sandbox's files, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    /// Output kept per stream of one command, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_kb: Option<u64>,
}

/// A connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Name from the file slug.
    pub name: String,
    /// `mcp` or `http`.
    pub kind: String,
    /// How an MCP connection is reached; null for `http`.
    pub transport: Option<TransportInfo>,
    /// Base URL of an `http` connection; null for `mcp`.
    pub base_url: Option<String>,
    /// Extra headers of an `http` connection (values as templates).
    pub headers: BTreeMap<String, String>,
    /// Credentials the runtime attaches.
    pub auth: ConnectionAuthInfo,
    /// Whether an MCP server's own instructions become a prompt layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instructions: bool,
    /// Timeout and retry policy.
    pub policy: PolicyInfo,
    /// MCP tool lowering; null when no tools are exposed to the model.
    pub tools: Option<McpToolsInfo>,
    /// For `kind = "openapi"`: the document and the operations offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<OpenApiInfo>,
    /// Source file.
    pub source: String,
}

/// The document of an `openapi` connection and the operations it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenApiInfo {
    /// The document, project-relative.
    pub spec: String,
    /// The API's title.
    pub title: String,
    /// Prefix of the tools' names.
    pub namespace: String,
    /// The operationIds offered as tools.
    pub allow: Vec<String>,
}

/// MCP transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TransportInfo {
    /// Streamable HTTP.
    #[serde(rename_all = "camelCase")]
    StreamableHttp {
        /// Server URL (as a template when interpolated).
        url: String,
    },
    /// A child process speaking MCP on stdio, in ash's sandbox.
    #[serde(rename_all = "camelCase")]
    Stdio {
        /// Argv.
        command: Vec<String>,
        /// Variables added to its environment (values as templates).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
        /// What it may reach.
        #[serde(default)]
        network: ServerNetworkInfo,
        /// Host paths it may read besides the system and the project.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        read_only: Vec<String>,
    },
}

/// The network of a stdio MCP server's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ServerNetworkInfo {
    /// None (a private loopback only).
    #[default]
    None,
    /// Only these hosts, through ash's filtering proxy.
    Allow {
        /// Host rules.
        hosts: Vec<String>,
    },
    /// The host's network.
    Full,
}

/// Connection credentials, secrets shown as templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectionAuthInfo {
    /// No credentials.
    None,
    /// A header carrying a key.
    #[serde(rename_all = "camelCase")]
    ApiKey {
        /// Header name.
        header: String,
        /// Header value (template).
        value: String,
    },
    /// HTTP basic.
    #[serde(rename_all = "camelCase")]
    Basic {
        /// User name (template).
        username: String,
        /// Password (template).
        password: String,
    },
    /// Bearer token.
    #[serde(rename_all = "camelCase")]
    Bearer {
        /// Token (template).
        token: String,
    },
}

/// Runtime-owned timeout and retry policy of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Retries after the first attempt.
    pub retry_attempts: u32,
}

/// MCP tool lowering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpToolsInfo {
    /// Always `allow`.
    pub mode: String,
    /// Remote tool names exposed to the model.
    pub allow: Vec<String>,
    /// Prefix of the model-visible names.
    pub namespace: String,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    /// Path under `schedules/` without extension, e.g. `billing/sweep`.
    pub name: String,
    /// 5-field cron expression, evaluated in UTC.
    pub cron: String,
    /// The prompt the run receives.
    pub prompt: String,
    /// Next fire time (RFC 3339, UTC) after the moment `ash info` ran; null in `.ash/` manifests.
    pub next_fire_at: Option<String>,
    /// Source file.
    pub source: String,
}

/// A subagent package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubagentInfo {
    /// Directory name under `subagents/`.
    pub id: String,
    /// Model-visible name of the parent's delegation tool.
    pub tool_name: String,
    /// The package directory.
    pub source: String,
    /// The subagent's own surface.
    pub agent: Box<AgentSurface>,
}

/// Inbound network policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    /// IPs and CIDR ranges, normalised.
    pub ip_allow_list: Vec<String>,
    /// Reverse proxies whose forwarding header is believed, normalised.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The one header read from trusted proxies (`x-forwarded-for`, `forwarded`,
    /// `x-real-ip`); null without trusted proxies.
    #[serde(default)]
    pub forwarded_header: Option<String>,
}

/// Inbound auth.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthInfo {
    /// Strategies in evaluation order.
    pub strategies: Vec<AuthStrategyInfo>,
}

/// One inbound auth strategy, secrets shown as templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AuthStrategyInfo {
    /// `Authorization: Basic …`.
    #[serde(rename_all = "camelCase")]
    HttpBasic {
        /// User name.
        username: String,
        /// Password (template).
        password: String,
    },
    /// HMAC-signed JWT bearer tokens.
    #[serde(rename_all = "camelCase")]
    JwtHmac {
        /// Required `iss`.
        issuer: String,
        /// Accepted `aud` values.
        audiences: Vec<String>,
        /// Accepted `sub` patterns (`*` wildcards); empty accepts any.
        subjects: Vec<String>,
        /// `HS256`, `HS384` or `HS512`.
        algorithm: String,
        /// Shared secret (template).
        secret: String,
        /// Allowed leeway for `exp`/`nbf`.
        clock_skew_seconds: u64,
    },
    /// ECDSA-signed JWT bearer tokens.
    #[serde(rename_all = "camelCase")]
    JwtEcdsa {
        /// Required `iss`.
        issuer: String,
        /// Accepted `aud` values.
        audiences: Vec<String>,
        /// Accepted `sub` patterns.
        subjects: Vec<String>,
        /// `ES256` or `ES384`.
        algorithm: String,
        /// PEM public key (template or literal; public keys are not secret).
        public_key: String,
        /// Allowed leeway for `exp`/`nbf`.
        clock_skew_seconds: u64,
    },
    /// OpenID Connect tokens verified against the issuer's JWKS.
    #[serde(rename_all = "camelCase")]
    Oidc {
        /// Required `iss`.
        issuer: String,
        /// Accepted `aud` values.
        audiences: Vec<String>,
        /// Accepted `sub` patterns.
        subjects: Vec<String>,
        /// Discovery document URL.
        discovery_url: String,
        /// Allowed leeway for `exp`/`nbf`.
        clock_skew_seconds: u64,
    },
}

/// Budgets and limits; null means the runtime default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsInfo {
    /// Model calls per turn.
    pub max_steps_per_turn: Option<u32>,
    /// Input tokens per session.
    pub max_input_tokens_per_session: Option<u64>,
    /// Output tokens per session.
    pub max_output_tokens_per_session: Option<u64>,
    /// Cost per session in micro-US-dollars (1 USD = 1 000 000).
    pub max_cost_micro_usd_per_session: Option<u64>,
    /// Session lifetime.
    pub session_timeout_ms: Option<u64>,
}

/// A declared model provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    /// Wire format: `openai` (chat completions) or `anthropic` (messages).
    pub api: String,
    /// Base URL, null for the provider's default.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
}
