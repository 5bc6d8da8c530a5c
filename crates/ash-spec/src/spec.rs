//! The validated agent model: `AgentSpec` and the parts of one agent package.
//!
//! Directory loading and `AgentSpec::builder()` both produce these types, and only after every
//! check passed, so code that holds an `AgentSpec` may rely on: unique model-visible tool names,
//! valid JSON Schemas, resolved sandbox and connection references, parsed cron expressions and
//! resolved `${VAR}` values. Nothing here derives serde; `manifest.rs` converts to the wire.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::cron::CronExpr;
use crate::interpolate::Interpolated;
use crate::ipnet::IpNet;
use crate::source::FileHash;

/// A validated agent: the root package, its subagents, and the files it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub(crate) layout: Layout,
    pub(crate) root: Package,
    pub(crate) files: BTreeMap<String, FileHash>,
}

impl AgentSpec {
    /// How the agent was authored.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The root package.
    pub fn root(&self) -> &Package {
        &self.root
    }

    /// Agent name.
    pub fn name(&self) -> &str {
        &self.root.name
    }

    /// Source files (project-relative) with their `sha256:` hashes and sizes.
    pub fn source_files(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.files.iter().map(|(path, hash)| (path.as_str(), hash.sha256.as_str(), hash.bytes))
    }
}

/// Where the agent files live relative to the directory that was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// In `agent/` below the project directory (recommended).
    Nested,
    /// At the project directory itself.
    Flat,
    /// Built in Rust with `AgentSpec::builder()`.
    Code,
}

impl Layout {
    /// `nested`, `flat` or `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nested => "nested",
            Self::Flat => "flat",
            Self::Code => "code",
        }
    }

    /// The agent root relative to the project directory.
    pub fn agent_root(self) -> &'static str {
        match self {
            Self::Nested => "agent",
            Self::Flat | Self::Code => ".",
        }
    }
}

/// Where an item was authored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A file or directory, project-relative and `/`-separated.
    File(String),
    /// Rust code through the builder.
    Code,
}

impl Source {
    /// The path, or `<code>`.
    pub fn display(&self) -> &str {
        match self {
            Self::File(path) => path,
            Self::Code => "<code>",
        }
    }
}

/// One agent package: the root agent or a subagent.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// Agent name.
    pub name: String,
    /// The package directory relative to the project: `agent`, `.` for a flat root,
    /// `agent/subagents/<id>` for a subagent; empty when built in code. Paths an author writes
    /// in the package (such as a `scripted/<file>` model) are relative to it.
    pub dir: String,
    /// What the agent does; required for subagents (the parent model reads it).
    pub description: Option<String>,
    /// Model; `None` on a subagent means "same as the parent".
    pub model: Option<ModelRef>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// `system.md` then `system/` layers, in order.
    pub prompt: Vec<PromptLayer>,
    /// Skills, sorted by name.
    pub skills: Vec<Skill>,
    /// Authored command and HTTP tools, sorted by name.
    pub tools: Vec<Tool>,
    /// Named sandboxes, sorted by name.
    pub sandboxes: Vec<Sandbox>,
    /// Connections (root only), sorted by name.
    pub connections: Vec<Connection>,
    /// Schedules (root only), sorted by name.
    pub schedules: Vec<Schedule>,
    /// Subagent packages, sorted by id.
    pub subagents: Vec<Subagent>,
    /// Inbound IP allow list (empty: open).
    pub ip_allow_list: Vec<IpNet>,
    /// Reverse proxies whose forwarding headers name the client (empty: the socket peer is
    /// the client and forwarding headers are ignored).
    pub trusted_proxies: Vec<IpNet>,
    /// The one forwarding header trusted proxies set; every other one is ignored.
    pub forwarded_header: ForwardedHeader,
    /// Inbound auth strategies in evaluation order (empty: open).
    pub auth: Vec<AuthStrategy>,
    /// Budgets.
    pub limits: Limits,
    /// Declared model providers.
    pub providers: BTreeMap<String, Provider>,
    /// `[prices."provider/model"]`: what its models' calls cost, over the built-in table.
    pub prices: BTreeMap<String, crate::prices::Price>,
    /// The package's `lib/` directory, project-relative; never mounted into workspaces.
    pub lib: Option<String>,
}

impl Package {
    /// An empty package named `name`.
    pub fn empty(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dir: String::new(),
            description: None,
            model: None,
            metadata: BTreeMap::new(),
            prompt: Vec::new(),
            skills: Vec::new(),
            tools: Vec::new(),
            sandboxes: Vec::new(),
            connections: Vec::new(),
            schedules: Vec::new(),
            subagents: Vec::new(),
            ip_allow_list: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            auth: Vec::new(),
            limits: Limits::default(),
            providers: BTreeMap::new(),
            prices: BTreeMap::new(),
            lib: None,
        }
    }

    /// The base prompt: every layer's text joined by a blank line.
    pub fn system_prompt(&self) -> String {
        let parts: Vec<&str> = self.prompt.iter().map(|l| l.content.trim_end()).collect();
        parts.join("\n\n")
    }

    /// Every tool the model of this package sees, sorted by name: authored tools, sandbox
    /// tools, allow-listed MCP tools and subagent delegation tools.
    pub fn model_tools(&self) -> Vec<ModelTool<'_>> {
        let mut out = Vec::new();
        for tool in &self.tools {
            out.push(ModelTool { name: tool.name.clone(), origin: ToolOrigin::Authored(tool) });
        }
        for sandbox in &self.sandboxes {
            out.push(ModelTool { name: sandbox.tool_name(), origin: ToolOrigin::Sandbox(sandbox) });
        }
        for connection in &self.connections {
            if let ConnectionKind::Mcp { tools: Some(tools), .. } = &connection.kind {
                for remote in &tools.allow {
                    out.push(ModelTool {
                        name: format!("{}__{remote}", tools.namespace),
                        origin: ToolOrigin::Mcp { connection, remote_name: remote },
                    });
                }
            }
        }
        for connection in &self.connections {
            if let ConnectionKind::Http { openapi: Some(api), .. } = &connection.kind {
                for operation in &api.operations {
                    out.push(ModelTool {
                        name: api.tool_name(operation),
                        origin: ToolOrigin::OpenApi { connection, operation },
                    });
                }
            }
        }
        for subagent in &self.subagents {
            out.push(ModelTool {
                name: subagent.tool_name(),
                origin: ToolOrigin::Subagent(subagent),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTool<'a> {
    /// Model-visible name.
    pub name: String,
    /// What backs it.
    pub origin: ToolOrigin<'a>,
}

/// What backs a model-visible tool.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOrigin<'a> {
    /// `tools/*.toml`.
    Authored(&'a Tool),
    /// `sandboxes/*.toml`.
    Sandbox(&'a Sandbox),
    /// An allow-listed MCP tool.
    Mcp {
        /// The connection.
        connection: &'a Connection,
        /// The tool's name on the server.
        remote_name: &'a str,
    },
    /// An allowed operation of an `openapi` connection.
    OpenApi {
        /// The connection.
        connection: &'a Connection,
        /// The operation.
        operation: &'a crate::openapi::Operation,
    },
    /// `subagents/<id>/`.
    Subagent(&'a Subagent),
}

/// A gateway-style model reference, `provider/model`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelRef {
    provider: String,
    model: String,
}

impl ModelRef {
    /// Parses `provider/model`: a slug, a slash, and a model id without whitespace.
    pub fn parse(input: &str) -> Result<Self, String> {
        let Some((provider, model)) = input.split_once('/') else {
            return Err(format!("`{input}` has no provider; write it as `provider/model`"));
        };
        if !crate::names::is_slug(provider) {
            return Err(format!(
                "provider `{provider}` must be lowercase letters, digits, `-` or `_`"
            ));
        }
        if model.is_empty()
            || model.len() > 200
            || model.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("model id `{model}` must be 1 to 200 characters without spaces"));
        }
        Ok(Self { provider: provider.to_owned(), model: model.to_owned() })
    }

    /// The provider part, e.g. `openai`.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The model part, e.g. `gpt-4.1-mini`.
    pub fn model(&self) -> &str {
        &self.model
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// One prompt layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptLayer {
    /// Where it was authored.
    pub source: Source,
    /// The text.
    pub content: String,
}

/// A skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// Name, the argument of `activate_skill`.
    pub name: String,
    /// Flat file or package directory.
    pub kind: SkillKind,
    /// Catalogue line.
    pub description: String,
    /// Procedure loaded on activation.
    pub body: String,
    /// Files seeded into the workspace, relative to the skills directory (e.g.
    /// `get-weather.md`, `pdf/SKILL.md`, `pdf/scripts/fill.py`).
    pub files: Vec<String>,
    /// `license` of a packaged skill.
    pub license: Option<String>,
    /// `metadata` of a packaged skill.
    pub metadata: BTreeMap<String, String>,
    /// Where it was authored.
    pub source: Source,
}

/// How a skill is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkillKind {
    /// `skills/<name>.md`.
    Flat,
    /// `skills/<name>/SKILL.md` with siblings.
    Packaged,
}

/// An authored tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Model-visible name.
    pub name: String,
    /// Description shown to the model.
    pub description: String,
    /// JSON Schema of the input object (validated).
    pub input_schema: Value,
    /// How it runs.
    pub kind: ToolKind,
    /// Whether a call waits for a person's approval first.
    pub approval: Approval,
    /// Where it was authored.
    pub source: Source,
}

/// Whether a call waits for a person's approval before it runs (`approval`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Approval {
    /// It runs at once (the default).
    #[default]
    Never,
    /// Every call waits (`approval = "required"`).
    Always,
    /// A call waits when any rule matches its input (`[approval] when = [...]`).
    When(Vec<ApprovalRule>),
}

/// One rule of `[approval] when`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRule {
    /// JSON Pointer into the call's input (`/branch`; `""` is the whole input).
    pub pointer: String,
    /// What the value there must be for the call to wait.
    pub test: ApprovalTest,
}

/// The test of an [`ApprovalRule`].
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalTest {
    /// The value equals this JSON value.
    Equals(Value),
    /// The value is a string this regular expression finds a match in.
    Matches(String),
    /// The value is a number above this one.
    Above(f64),
}

impl Approval {
    /// Why a call with `input` needs approval (`None`: it runs at once). A pointer that names
    /// nothing matches nothing.
    pub fn required(&self, input: &Value) -> Option<String> {
        match self {
            Self::Never => None,
            Self::Always => Some("every call of this tool needs approval".to_owned()),
            Self::When(rules) => rules.iter().find_map(|rule| {
                let value = input.pointer(&rule.pointer)?;
                let at = if rule.pointer.is_empty() { "the input" } else { &rule.pointer };
                match &rule.test {
                    ApprovalTest::Equals(expected) => {
                        (value == expected).then(|| format!("{at} is {expected}"))
                    }
                    ApprovalTest::Matches(pattern) => {
                        let text = value.as_str()?;
                        let regex = regex::Regex::new(pattern).ok()?;
                        regex.is_match(text).then(|| format!("{at} matches `{pattern}`"))
                    }
                    ApprovalTest::Above(limit) => {
                        let number = value.as_f64()?;
                        (number > *limit).then(|| format!("{at} is {number}, above {limit}"))
                    }
                }
            }),
        }
    }
}

/// How an authored tool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolKind {
    /// A process: input JSON on stdin, result JSON on stdout.
    Command {
        /// Argv; authored `./`/`../` paths were resolved to project-relative paths written
        /// `./<path>`: every argument starting with `./` is relative to the project directory.
        argv: Vec<String>,
        /// Per-call timeout in milliseconds.
        timeout_ms: u64,
        /// Named sandbox to run in.
        sandbox: Option<String>,
        /// Connections the process may reach through the runtime's endpoint
        /// (`ASH_CONNECTIONS_URL`); none gets no endpoint at all.
        connections: Vec<String>,
    },
    /// A request through a named HTTP connection.
    Http {
        /// Connection name.
        connection: String,
        /// HTTP method.
        method: HttpMethod,
        /// Path below the base URL with `{field}` placeholders.
        path: String,
        /// Per-call timeout in milliseconds.
        timeout_ms: u64,
        /// A JSON Pointer (RFC 6901) into a JSON answer: the part the model gets (`response`);
        /// `None` gives status, headers and the whole body.
        response: Option<String>,
    },
}

/// Default tool timeout: long enough for a slow API, short enough that a hung script is noticed.
pub const DEFAULT_TOOL_TIMEOUT_MS: u64 = 30_000;
/// Longest tool timeout accepted (one hour).
pub const MAX_TOOL_TIMEOUT_MS: u64 = 3_600_000;

/// HTTP methods an HTTP tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET: input fields not used in the path become query parameters.
    Get,
    /// POST: the input is the JSON body.
    Post,
    /// PUT: the input is the JSON body.
    Put,
    /// PATCH: the input is the JSON body.
    Patch,
    /// DELETE: input fields not used in the path become query parameters.
    Delete,
}

impl HttpMethod {
    /// Parses an upper-case method name.
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// A named sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// Name from the file path (`repo-shell`).
    pub name: String,
    /// Description shown to the model.
    pub description: String,
    /// Isolation backend.
    pub backend: SandboxBackend,
    /// Container image for podman/docker.
    pub image: Option<String>,
    /// Shell commands preparing the reusable template.
    pub bootstrap: Vec<String>,
    /// Shell commands run once per durable session.
    pub on_session: Vec<String>,
    /// Per-command timeout in milliseconds.
    pub timeout_ms: u64,
    /// What its commands may reach (`network`; none by default).
    pub network: ServerNetwork,
    /// What its commands may consume (`[limits]`).
    pub limits: SandboxLimits,
    /// Whether a call waits for a person's approval first.
    pub approval: Approval,
    /// Where it was authored.
    pub source: Source,
}

/// `[limits]` of a named sandbox; `None` keeps ash's default for untrusted code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SandboxLimits {
    /// Memory of the whole sandbox, in MiB (default 2048).
    pub memory_mb: Option<u64>,
    /// Share of one CPU, in percent (default 100).
    pub cpu_percent: Option<u64>,
    /// Processes and threads at once (default 512).
    pub pids: Option<u64>,
    /// Bytes a command may add to the sandbox's files, in MiB (default 1024).
    pub disk_mb: Option<u64>,
    /// Output kept per stream of one command, in KiB (default 1024).
    pub output_kb: Option<u64>,
}

impl Sandbox {
    /// The model-visible tool name: the name lowered, plus `_sandbox` (`repo_shell_sandbox`).
    pub fn tool_name(&self) -> String {
        format!("{}_sandbox", crate::names::lower_snake_case(&self.name))
    }
}

/// Default per-command sandbox timeout (ten minutes: builds and test suites run here).
pub const DEFAULT_SANDBOX_TIMEOUT_MS: u64 = 600_000;

/// Isolation backend of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxBackend {
    /// The strongest the machine offers.
    Auto,
    /// A plain child process in a private directory.
    Local,
    /// bubblewrap namespaces.
    Bwrap,
    /// A podman container.
    Podman,
    /// A docker container.
    Docker,
}

impl SandboxBackend {
    /// Parses a backend name.
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "auto" => Self::Auto,
            "local" => Self::Local,
            "bwrap" => Self::Bwrap,
            "podman" => Self::Podman,
            "docker" => Self::Docker,
            _ => return None,
        })
    }

    /// The backend name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Local => "local",
            Self::Bwrap => "bwrap",
            Self::Podman => "podman",
            Self::Docker => "docker",
        }
    }
}

/// A named downstream dependency.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Name from the file slug.
    pub name: String,
    /// MCP or HTTP.
    pub kind: ConnectionKind,
    /// Credentials the runtime attaches.
    pub auth: ConnectionAuth,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u64,
    /// Retries after the first attempt.
    pub retry_attempts: u32,
    /// Whether an MCP server's own instructions become a prompt layer (`instructions = true`).
    pub instructions: bool,
    /// Where it was authored.
    pub source: Source,
}

/// Default connection timeout.
pub const DEFAULT_CONNECTION_TIMEOUT_MS: u64 = 30_000;
/// Most retries a connection may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// What a connection talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionKind {
    /// A Model Context Protocol server.
    Mcp {
        /// How to reach it.
        transport: McpTransport,
        /// Tools exposed to the model; `None` exposes none.
        tools: Option<McpTools>,
    },
    /// A plain HTTP API (`kind = "http"`), or one an OpenAPI document describes
    /// (`kind = "openapi"`), whose allowed operations are tools.
    Http {
        /// Base URL.
        base_url: Interpolated,
        /// Extra headers.
        headers: BTreeMap<String, Interpolated>,
        /// For `kind = "openapi"`: the document and the operations offered as tools.
        openapi: Option<OpenApiTools>,
    },
}

/// The operations of an `openapi` connection offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenApiTools {
    /// The document, project-relative (`./agent/lib/shop.yaml`).
    pub spec: String,
    /// The API's title.
    pub title: String,
    /// Prefix of model-visible names (`<namespace>__<operation>`).
    pub namespace: String,
    /// The allowed operations, each usable, in `allow` order.
    pub operations: Vec<crate::openapi::Operation>,
}

impl OpenApiTools {
    /// The model-visible name of `operation`: `<namespace>__<operationId lowered>`.
    pub fn tool_name(&self, operation: &crate::openapi::Operation) -> String {
        format!("{}__{}", self.namespace, crate::names::lower_snake_case(&operation.id))
    }
}

/// MCP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// Streamable HTTP at a URL.
    StreamableHttp {
        /// Server URL.
        url: Interpolated,
    },
    /// A child process on stdio, run in ash's sandbox.
    Stdio {
        /// Argv; authored `./`/`../` paths were resolved to project-relative paths written
        /// `./<path>`: every argument starting with `./` is relative to the project directory.
        command: Vec<String>,
        /// Variables added to the process's environment (`[transport.env]`), often its own
        /// credentials.
        env: BTreeMap<String, Interpolated>,
        /// What the process may reach.
        network: ServerNetwork,
        /// Host paths the server may read besides the system and the project (`read_only`):
        /// absolute, e.g. a virtualenv under a home directory, which the sandbox hides.
        read_only: Vec<String>,
    },
}

/// The network of a sandboxed process ash keeps: a stdio MCP server's, a named sandbox's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerNetwork {
    /// None at all (the default): a private loopback only.
    #[default]
    None,
    /// Only these hosts (`api.github.com`, `*.example.com`, `10.0.0.5:8080`), through ash's
    /// filtering proxy.
    Allow(Vec<String>),
    /// The host's network, unfiltered.
    Full,
}

/// MCP tool lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTools {
    /// Remote tool names exposed.
    pub allow: Vec<String>,
    /// Prefix of model-visible names (`<namespace>__<tool>`).
    pub namespace: String,
}

/// Connection credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionAuth {
    /// None.
    None,
    /// A key in a header.
    ApiKey {
        /// Header name.
        header: String,
        /// Header value.
        value: Interpolated,
    },
    /// HTTP basic.
    Basic {
        /// User name.
        username: Interpolated,
        /// Password.
        password: Interpolated,
    },
    /// `Authorization: Bearer`.
    Bearer {
        /// Token.
        token: Interpolated,
    },
}

/// A recurring job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Path under `schedules/` without extension.
    pub name: String,
    /// When it fires (UTC).
    pub cron: CronExpr,
    /// The prompt the run receives.
    pub prompt: String,
    /// Where it was authored.
    pub source: Source,
}

/// A subagent package.
#[derive(Debug, Clone, PartialEq)]
pub struct Subagent {
    /// Directory name.
    pub id: String,
    /// The package.
    pub package: Box<Package>,
    /// Where it was authored.
    pub source: Source,
}

impl Subagent {
    /// The parent's delegation tool name: the id lowered (`code-reviewer` → `code_reviewer`).
    pub fn tool_name(&self) -> String {
        crate::names::lower_snake_case(&self.id)
    }
}

/// The header trusted proxies name the client in. Only this one is read: a header the proxy
/// does not manage passes through from the client unchanged and proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, appended to by each proxy (nginx `$proxy_add_x_forwarded_for`).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), the `for=` of each element.
    Forwarded,
    /// `X-Real-IP`, set (not appended) by the proxy.
    XRealIp,
}

impl ForwardedHeader {
    /// Parses the lowercase header name.
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "x-forwarded-for" => Self::XForwardedFor,
            "forwarded" => Self::Forwarded,
            "x-real-ip" => Self::XRealIp,
            _ => return None,
        })
    }

    /// The lowercase header name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::XRealIp => "x-real-ip",
        }
    }
}

/// An inbound auth strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStrategy {
    /// `Authorization: Basic`.
    HttpBasic {
        /// User name.
        username: String,
        /// Password.
        password: Interpolated,
    },
    /// HMAC JWTs.
    JwtHmac {
        /// Claims every token must carry.
        claims: JwtClaims,
        /// `HS256`, `HS384` or `HS512`.
        algorithm: JwtAlgorithm,
        /// Shared secret.
        secret: Interpolated,
    },
    /// ECDSA JWTs.
    JwtEcdsa {
        /// Claims every token must carry.
        claims: JwtClaims,
        /// `ES256` or `ES384`.
        algorithm: JwtAlgorithm,
        /// PEM public key.
        public_key: Interpolated,
    },
    /// OIDC tokens verified through discovery and JWKS.
    Oidc {
        /// Claims every token must carry.
        claims: JwtClaims,
        /// Discovery document URL.
        discovery_url: Interpolated,
    },
}

/// Claim checks shared by the token strategies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Accepted `sub` patterns, `*` matching any run of characters; empty accepts any.
    pub subjects: Vec<String>,
    /// Leeway for `exp` and `nbf`.
    pub clock_skew_seconds: u64,
}

/// Default JWT clock leeway.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;

/// JWT signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256.
    Hs256,
    /// HMAC SHA-384.
    Hs384,
    /// HMAC SHA-512.
    Hs512,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
}

impl JwtAlgorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
        }
    }
}

/// Budgets; `None` means the runtime default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Model calls per turn.
    pub max_steps_per_turn: Option<u32>,
    /// Input tokens per session.
    pub max_input_tokens_per_session: Option<u64>,
    /// Output tokens per session.
    pub max_output_tokens_per_session: Option<u64>,
    /// Cost per session in micro-USD.
    pub max_cost_micro_usd_per_session: Option<u64>,
    /// Session lifetime in milliseconds.
    pub session_timeout_ms: Option<u64>,
}

/// A model provider declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Wire format.
    pub api: ProviderApi,
    /// Base URL override.
    pub base_url: Option<String>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
}

/// Model wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderApi {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic messages.
    Anthropic,
}

impl ProviderApi {
    /// `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}
