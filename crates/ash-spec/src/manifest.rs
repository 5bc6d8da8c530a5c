//! The compiled artifact: `AgentSpec` → wire surface, and the `.ash/` directory.
//!
//! Owns the conversion to `ash_protocol` shapes (secrets as templates), the content hash, and
//! writing `.ash/manifest.json` and `.ash/diagnostics.json` byte-for-byte reproducibly: sorted
//! collections, no timestamps, no absolute paths, no environment values. Writes only inside
//! `.ash/`, through a temporary file and a rename, and refuses a `.ash` that is not a plain
//! directory.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use ash_protocol::{
    AgentManifest, AgentSurface, ApprovalInfo, ApprovalRuleInfo, AuthInfo, AuthStrategyInfo,
    ConnectionAuthInfo, ConnectionInfo, DiagnosticInfo, HttpToolInfo, LimitsInfo,
    MANIFEST_FORMAT_VERSION, McpToolsInfo, NetworkInfo, OpenApiInfo, PolicyInfo, PromptLayerInfo,
    ProviderInfo, SandboxInfo, SandboxLimitsInfo, ScheduleInfo, ServerNetworkInfo, SkillInfo,
    SourceFileInfo, SubagentInfo, ToolInfo, TransportInfo,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::diagnostic::Diagnostic;
use crate::source::sha256_hex;
use crate::spec::{
    AgentSpec, Approval, ApprovalTest, AuthStrategy, ConnectionAuth, ConnectionKind, McpTransport,
    Package, Sandbox, SandboxLimits, ServerNetwork, SkillKind, ToolKind, ToolOrigin,
};

/// The directory `ash build` writes, relative to the project directory.
pub const BUILD_DIR: &str = ".ash";
/// The compiled manifest inside [`BUILD_DIR`].
pub const MANIFEST_FILE: &str = "manifest.json";
/// The diagnostics (warnings) of the build inside [`BUILD_DIR`].
pub const DIAGNOSTICS_FILE: &str = "diagnostics.json";

/// Input schema of every sandbox tool.
pub fn sandbox_input_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "minLength": 1,
                "description": "Shell command (bash) to run in the sandbox's directory."
            },
            "cwd": {
                "type": "string",
                "description": "Working directory, relative to the sandbox's directory."
            },
            "timeoutMs": {
                "type": "integer",
                "minimum": 1,
                "description": "Stop the command after this long (at most the sandbox's limit)."
            }
        },
        "required": ["command"],
        "additionalProperties": false
    })
}

/// Input schema of every subagent delegation tool.
pub fn subagent_input_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "message": { "type": "string", "description": "The task for the subagent." }
        },
        "required": ["message"]
    })
}

/// The wire form of a sandboxed process's network.
fn network_info(network: &ServerNetwork) -> ServerNetworkInfo {
    match network {
        ServerNetwork::None => ServerNetworkInfo::None,
        ServerNetwork::Full => ServerNetworkInfo::Full,
        ServerNetwork::Allow(hosts) => ServerNetworkInfo::Allow { hosts: hosts.clone() },
    }
}

impl Sandbox {
    /// `sha256:` over the length-prefixed backend, image, network, limits and bootstrap
    /// commands: the key under which a prepared template is cached. `on_session`, the timeout
    /// and the description do not change it.
    pub fn template_key(&self) -> String {
        let mut bytes = b"ash.sandbox.template.v1\0".to_vec();
        let mut field = |text: &str| {
            bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        };
        field(self.backend.as_str());
        field(self.image.as_deref().unwrap_or(""));
        // What bootstrap may reach and consume shapes what it leaves.
        field(&serde_json::to_string(&network_info(&self.network)).unwrap_or_default());
        let SandboxLimits { memory_mb, cpu_percent, pids, disk_mb, output_kb } = self.limits;
        field(&format!("{memory_mb:?}/{cpu_percent:?}/{pids:?}/{disk_mb:?}/{output_kb:?}"));
        for command in &self.bootstrap {
            field(command);
        }
        sha256_hex(&bytes)
    }
}

impl AgentSpec {
    /// The wire surface. Schedules get `nextFireAt` after `now` when given (for `ash info`), and
    /// null otherwise (for reproducible manifests).
    pub fn surface(&self, now: Option<DateTime<Utc>>) -> AgentSurface {
        package_surface(&self.root, now)
    }

    /// The manifest `ash build` writes.
    pub fn manifest(&self) -> AgentManifest {
        let files: Vec<SourceFileInfo> = self
            .files
            .iter()
            .map(|(path, hash)| SourceFileInfo {
                path: path.clone(),
                sha256: hash.sha256.clone(),
                bytes: hash.bytes,
            })
            .collect();
        let mut listing = Vec::new();
        for file in &files {
            listing.extend_from_slice(file.path.as_bytes());
            listing.push(0);
            listing.extend_from_slice(file.sha256.as_bytes());
            listing.push(b'\n');
        }
        AgentManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            ash_version: env!("CARGO_PKG_VERSION").to_owned(),
            layout: self.layout.as_str().to_owned(),
            agent_root: self.layout.agent_root().to_owned(),
            content_hash: sha256_hex(&listing),
            files,
            agent: self.surface(None),
        }
    }
}

fn package_surface(p: &Package, now: Option<DateTime<Utc>>) -> AgentSurface {
    AgentSurface {
        name: p.name.clone(),
        description: p.description.clone(),
        model: p.model.as_ref().map(ToString::to_string),
        metadata: p.metadata.clone(),
        prompt: p
            .prompt
            .iter()
            .map(|l| PromptLayerInfo {
                source: l.source.display().to_owned(),
                content: l.content.clone(),
            })
            .collect(),
        skills: p
            .skills
            .iter()
            .map(|s| SkillInfo {
                name: s.name.clone(),
                kind: match s.kind {
                    SkillKind::Flat => "flat",
                    SkillKind::Packaged => "packaged",
                }
                .to_owned(),
                description: s.description.clone(),
                source: s.source.display().to_owned(),
                body: s.body.clone(),
                files: s.files.clone(),
                license: s.license.clone(),
                metadata: s.metadata.clone(),
            })
            .collect(),
        tools: p.model_tools().into_iter().map(|t| tool_info(t.name, &t.origin)).collect(),
        sandboxes: p
            .sandboxes
            .iter()
            .map(|s| SandboxInfo {
                name: s.name.clone(),
                tool_name: s.tool_name(),
                description: s.description.clone(),
                backend: s.backend.as_str().to_owned(),
                image: s.image.clone(),
                bootstrap: s.bootstrap.clone(),
                on_session: s.on_session.clone(),
                timeout_ms: s.timeout_ms,
                network: network_info(&s.network),
                limits: SandboxLimitsInfo {
                    memory_mb: s.limits.memory_mb,
                    cpu_percent: s.limits.cpu_percent,
                    pids: s.limits.pids,
                    disk_mb: s.limits.disk_mb,
                    output_kb: s.limits.output_kb,
                },
                template_key: s.template_key(),
                source: s.source.display().to_owned(),
            })
            .collect(),
        connections: p
            .connections
            .iter()
            .map(|c| {
                let (kind, transport, base_url, headers, tools) = match &c.kind {
                    ConnectionKind::Mcp { transport, tools } => (
                        "mcp",
                        Some(match transport {
                            McpTransport::StreamableHttp { url } => {
                                TransportInfo::StreamableHttp { url: url.template().to_owned() }
                            }
                            McpTransport::Stdio { command, env, network, read_only } => {
                                TransportInfo::Stdio {
                                    command: command.clone(),
                                    read_only: read_only.clone(),
                                    env: env
                                        .iter()
                                        .map(|(k, v)| (k.clone(), v.display_secret()))
                                        .collect(),
                                    network: network_info(network),
                                }
                            }
                        }),
                        None,
                        Default::default(),
                        tools.as_ref().map(|t| McpToolsInfo {
                            mode: "allow".to_owned(),
                            allow: t.allow.clone(),
                            namespace: t.namespace.clone(),
                        }),
                    ),
                    ConnectionKind::Http { base_url, headers, openapi } => (
                        if openapi.is_some() { "openapi" } else { "http" },
                        None,
                        Some(base_url.template().to_owned()),
                        headers.iter().map(|(k, v)| (k.clone(), v.display_secret())).collect(),
                        None,
                    ),
                };
                let openapi = match &c.kind {
                    ConnectionKind::Http { openapi: Some(api), .. } => Some(OpenApiInfo {
                        spec: api.spec.clone(),
                        title: api.title.clone(),
                        namespace: api.namespace.clone(),
                        allow: api.operations.iter().map(|o| o.id.clone()).collect(),
                    }),
                    _ => None,
                };
                ConnectionInfo {
                    name: c.name.clone(),
                    kind: kind.to_owned(),
                    transport,
                    base_url,
                    headers,
                    auth: match &c.auth {
                        ConnectionAuth::None => ConnectionAuthInfo::None,
                        ConnectionAuth::ApiKey { header, value } => ConnectionAuthInfo::ApiKey {
                            header: header.clone(),
                            value: value.display_secret(),
                        },
                        ConnectionAuth::Basic { username, password } => ConnectionAuthInfo::Basic {
                            username: username.template().to_owned(),
                            password: password.display_secret(),
                        },
                        ConnectionAuth::Bearer { token } => {
                            ConnectionAuthInfo::Bearer { token: token.display_secret() }
                        }
                    },
                    instructions: c.instructions,
                    policy: PolicyInfo {
                        timeout_ms: c.timeout_ms,
                        retry_attempts: c.retry_attempts,
                    },
                    tools,
                    openapi,
                    source: c.source.display().to_owned(),
                }
            })
            .collect(),
        schedules: p
            .schedules
            .iter()
            .map(|s| ScheduleInfo {
                name: s.name.clone(),
                cron: s.cron.as_str().to_owned(),
                prompt: s.prompt.clone(),
                next_fire_at: now
                    .and_then(|now| s.cron.next_after(now))
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                source: s.source.display().to_owned(),
            })
            .collect(),
        subagents: p
            .subagents
            .iter()
            .map(|s| SubagentInfo {
                id: s.id.clone(),
                tool_name: s.tool_name(),
                source: s.source.display().to_owned(),
                agent: Box::new(package_surface(&s.package, now)),
            })
            .collect(),
        network: NetworkInfo {
            ip_allow_list: p.ip_allow_list.iter().map(ToString::to_string).collect(),
            trusted_proxies: p.trusted_proxies.iter().map(ToString::to_string).collect(),
            forwarded_header: (!p.trusted_proxies.is_empty())
                .then(|| p.forwarded_header.as_str().to_owned()),
        },
        auth: AuthInfo { strategies: p.auth.iter().map(auth_info).collect() },
        limits: LimitsInfo {
            max_steps_per_turn: p.limits.max_steps_per_turn,
            max_input_tokens_per_session: p.limits.max_input_tokens_per_session,
            max_output_tokens_per_session: p.limits.max_output_tokens_per_session,
            max_cost_micro_usd_per_session: p.limits.max_cost_micro_usd_per_session,
            session_timeout_ms: p.limits.session_timeout_ms,
        },
        providers: p
            .providers
            .iter()
            .map(|(name, pr)| {
                (
                    name.clone(),
                    ProviderInfo {
                        api: pr.api.as_str().to_owned(),
                        base_url: pr.base_url.clone(),
                        api_key_env: pr.api_key_env.clone(),
                    },
                )
            })
            .collect(),
        lib: p.lib.clone(),
        offered_tools: Vec::new(),
        unsupported: Vec::new(),
    }
}

/// The wire form of a tool's approval setting; `None` for never.
fn approval_info(approval: &Approval) -> Option<ApprovalInfo> {
    match approval {
        Approval::Never => None,
        Approval::Always => Some(ApprovalInfo::Always),
        Approval::When(rules) => Some(ApprovalInfo::When {
            rules: rules
                .iter()
                .map(|rule| {
                    let mut info = ApprovalRuleInfo {
                        pointer: rule.pointer.clone(),
                        equals: None,
                        matches: None,
                        above: None,
                    };
                    match &rule.test {
                        ApprovalTest::Equals(value) => info.equals = Some(value.clone()),
                        ApprovalTest::Matches(pattern) => info.matches = Some(pattern.clone()),
                        ApprovalTest::Above(limit) => info.above = Some(*limit),
                    }
                    info
                })
                .collect(),
        }),
    }
}

fn tool_info(name: String, origin: &ToolOrigin<'_>) -> ToolInfo {
    match origin {
        ToolOrigin::Authored(tool) => match &tool.kind {
            ToolKind::Command { argv, timeout_ms, sandbox, connections } => ToolInfo::Command {
                connections: connections.clone(),
                name,
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
                argv: argv.clone(),
                timeout_ms: *timeout_ms,
                sandbox: sandbox.clone(),
                approval: approval_info(&tool.approval),
                source: tool.source.display().to_owned(),
            },
            ToolKind::Http { connection, method, path, timeout_ms, response } => {
                ToolInfo::Http(HttpToolInfo {
                    name,
                    description: tool.description.clone(),
                    input_schema: tool.input_schema.clone(),
                    connection: connection.clone(),
                    method: method.as_str().to_owned(),
                    path: path.clone(),
                    timeout_ms: *timeout_ms,
                    response: response.clone(),
                    approval: approval_info(&tool.approval),
                    source: tool.source.display().to_owned(),
                })
            }
        },
        ToolOrigin::Sandbox(sandbox) => ToolInfo::Sandbox {
            name,
            description: sandbox.description.clone(),
            input_schema: sandbox_input_schema(),
            sandbox: sandbox.name.clone(),
            approval: approval_info(&sandbox.approval),
            source: sandbox.source.display().to_owned(),
        },
        ToolOrigin::Mcp { connection, remote_name } => ToolInfo::Mcp {
            name,
            connection: connection.name.clone(),
            remote_name: (*remote_name).to_owned(),
            source: connection.source.display().to_owned(),
            // What the server says comes with a connection, never from the files.
            description: None,
            input_schema: None,
            unavailable: None,
        },
        ToolOrigin::OpenApi { connection, operation } => ToolInfo::Http(HttpToolInfo {
            name,
            description: operation.description.clone(),
            input_schema: operation.input_schema.clone(),
            connection: connection.name.clone(),
            method: operation.method.as_str().to_owned(),
            path: operation.path.clone(),
            timeout_ms: connection.timeout_ms,
            response: None,
            approval: None,
            source: connection.source.display().to_owned(),
        }),
        ToolOrigin::Subagent(subagent) => ToolInfo::Subagent {
            name,
            description: subagent.package.description.clone().unwrap_or_default(),
            input_schema: subagent_input_schema(),
            subagent: subagent.id.clone(),
            source: subagent.source.display().to_owned(),
        },
    }
}

fn auth_info(strategy: &AuthStrategy) -> AuthStrategyInfo {
    match strategy {
        AuthStrategy::HttpBasic { username, password } => AuthStrategyInfo::HttpBasic {
            username: username.clone(),
            password: password.display_secret(),
        },
        AuthStrategy::JwtHmac { claims, algorithm, secret } => AuthStrategyInfo::JwtHmac {
            issuer: claims.issuer.clone(),
            audiences: claims.audiences.clone(),
            subjects: claims.subjects.clone(),
            algorithm: algorithm.as_str().to_owned(),
            secret: secret.display_secret(),
            clock_skew_seconds: claims.clock_skew_seconds,
        },
        AuthStrategy::JwtEcdsa { claims, algorithm, public_key } => AuthStrategyInfo::JwtEcdsa {
            issuer: claims.issuer.clone(),
            audiences: claims.audiences.clone(),
            subjects: claims.subjects.clone(),
            algorithm: algorithm.as_str().to_owned(),
            public_key: public_key.template().to_owned(),
            clock_skew_seconds: claims.clock_skew_seconds,
        },
        AuthStrategy::Oidc { claims, discovery_url } => AuthStrategyInfo::Oidc {
            issuer: claims.issuer.clone(),
            audiences: claims.audiences.clone(),
            subjects: claims.subjects.clone(),
            discovery_url: discovery_url.template().to_owned(),
            clock_skew_seconds: claims.clock_skew_seconds,
        },
    }
}

/// Why `.ash/` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `.ash` exists but is a symlink or a file; writing through it could land anywhere.
    #[error("{}: exists and is not a plain directory; remove it and build again", path.display())]
    NotADirectory {
        /// The `.ash` path.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Serialising JSON failed (an internal error).
    #[error("cannot encode {file}")]
    Encode {
        /// The file being encoded.
        file: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What `write_build` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// Path of `manifest.json`.
    pub manifest_path: PathBuf,
    /// Path of `diagnostics.json`.
    pub diagnostics_path: PathBuf,
    /// The manifest's `contentHash`.
    pub content_hash: String,
}

/// Encodes a value as pretty JSON with a trailing newline: the bytes of every `.ash/` file.
pub fn to_json_bytes<T: serde::Serialize>(
    value: &T,
    file: &'static str,
) -> Result<Vec<u8>, BuildError> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|source| BuildError::Encode { file, source })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `.ash/manifest.json` and `.ash/diagnostics.json` under `project`.
pub fn write_build(
    project: &Path,
    spec: &AgentSpec,
    warnings: &[Diagnostic],
) -> Result<BuildOutput, BuildError> {
    let dir = project.join(BUILD_DIR);
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.file_type().is_dir() => {}
        Ok(_) => return Err(BuildError::NotADirectory { path: dir }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(&dir).map_err(|source| BuildError::Io { path: dir.clone(), source })?;
        }
        Err(source) => return Err(BuildError::Io { path: dir, source }),
    }
    let manifest = spec.manifest();
    let diagnostics: Vec<DiagnosticInfo> = warnings.iter().map(Diagnostic::to_info).collect();
    let manifest_path = dir.join(MANIFEST_FILE);
    let diagnostics_path = dir.join(DIAGNOSTICS_FILE);
    write_atomic(&manifest_path, &to_json_bytes(&manifest, MANIFEST_FILE)?)?;
    write_atomic(&diagnostics_path, &to_json_bytes(&diagnostics, DIAGNOSTICS_FILE)?)?;
    Ok(BuildOutput { manifest_path, diagnostics_path, content_hash: manifest.content_hash })
}

/// Writes through a temporary sibling and a rename, so readers never see half a file and a
/// symlink planted at `path` is replaced, not followed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let tmp = path.with_extension("json.tmp");
    let io_err = |source| BuildError::Io { path: path.to_owned(), source };
    let _ = fs::remove_file(&tmp);
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err)
}
