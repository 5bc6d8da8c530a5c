//! Claude Code (`claude`) and Codex (`codex`) as job agents: found on `PATH`, run in the job's
//! sandbox non-interactively with edits accepted, in a fresh home with nothing of this
//! machine's configuration, with the model reached only through ash's gateway.
//!
//! The agent gets a placeholder key and a base URL on its own loopback; the gateway (on the
//! host, behind an `ash_sandbox::Service`) checks the placeholder, holds the run to the model
//! the terms name, and adds the real key on the way out. The real key is never in the
//! sandbox: not in its environment, files, or memory. The CLI's structured output (Claude's
//! `stream-json`, Codex's JSON events) goes to a file in the job's scratch directory, which is
//! read as it grows and turned into progress steps; the final message is the summary.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ash_llm::ProviderConfig;
use ash_llm::gateway::{DirectUpstream, Gateway, GatewayConfig, GatewayUsage, Upstream};
use ash_node::{AgentEnd, AgentWork, JobAgent};
use ash_protocol::{JobManifest, JobStep};
use ash_sandbox::{ExecRequest, NetPolicy, Sandbox, SandboxPolicy, Service};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most model calls one job makes on this machine's key.
const MAX_JOB_CALLS: u64 = 2000;
/// Most tokens one job spends on this machine's key (counted as the answers report them).
const MAX_JOB_TOKENS: u64 = 20_000_000;
/// The port of the model gateway on the agent's own loopback.
pub(crate) const GATEWAY_PORT: u16 = 8788;
/// Longest line of an agent's event stream read (longer lines are skipped).
const MAX_EVENT_LINE: usize = 4 << 20;
/// Tool call ids remembered to name their results (later ones are named `tool`).
const MAX_TOOL_IDS: usize = 4096;
/// Most bytes of the event stream read in one look.
const MAX_READ_PER_LOOK: u64 = 16 << 20;
/// How often the event stream is read while the agent runs.
const POLL: Duration = Duration::from_millis(200);
/// Longest text taken from an agent's last words or error.
const MAX_TEXT: usize = 4096;

/// An outside coding agent ash can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CliKind {
    /// Claude Code (`@anthropic-ai/claude-code`).
    Claude,
    /// Codex CLI (`@openai/codex`).
    Codex,
}

impl CliKind {
    /// Both, in the order `ash serve` lists them.
    pub(crate) const ALL: [Self; 2] = [Self::Claude, Self::Codex];

    /// The agent kind jobs name, which is also the program's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
        }
    }

    /// The kind named `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The provider whose key it needs.
    pub(crate) fn provider(self) -> &'static str {
        match self {
            Self::Claude => "anthropic",
            Self::Codex => "openai",
        }
    }

    /// The npm package that installs it.
    pub(crate) fn package(self) -> &'static str {
        match self {
            Self::Claude => "@anthropic-ai/claude-code",
            Self::Codex => "@openai/codex",
        }
    }

    /// Its program in the first directory of `path` (a `PATH` value) that has one.
    pub(crate) fn on_path(self, path: &str) -> Option<PathBuf> {
        path.split(':')
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| Path::new(dir).join(self.name()))
            .find(|p| p.is_file())
    }

    /// The models it runs for each tier, unless `--tier-model` says otherwise.
    pub(crate) fn default_models(self) -> BTreeMap<String, String> {
        let pairs: &[(&str, &str)] = match self {
            Self::Claude => &[
                ("haiku", "claude-haiku-4-5"),
                ("sonnet", "claude-sonnet-4-5"),
                ("opus", "claude-opus-4-5"),
            ],
            Self::Codex => &[("codex", "gpt-5.5")],
        };
        pairs.iter().map(|(t, m)| ((*t).to_owned(), (*m).to_owned())).collect()
    }
}

/// An installed CLI: where it is and what it says it is.
#[derive(Debug, Clone)]
pub(crate) struct Installed {
    /// The program, with links resolved.
    pub(crate) program: PathBuf,
    /// A directory to show the sandbox read-only (the npm tree the program lives in), when it
    /// is not under the system directories the sandbox shows anyway.
    pub(crate) root: Option<PathBuf>,
    /// `--version`'s first line.
    pub(crate) version: String,
}

/// Finds `kind` on `path` (a `PATH` value) and runs `--version` in `sandbox`; why not, when
/// it cannot be used.
pub(crate) async fn detect(
    kind: CliKind,
    path: &str,
    sandbox: &Sandbox,
) -> Result<Installed, String> {
    let found = kind.on_path(path).ok_or_else(|| {
        format!(
            "`{}` is not on PATH; install it with `npm install -g {}`",
            kind.name(),
            kind.package()
        )
    })?;
    let program = std::fs::canonicalize(&found).map_err(|e| format!("{}: {e}", found.display()))?;
    let root = program
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .map(Path::to_path_buf)
        .or_else(|| program.parent().map(Path::to_path_buf))
        .filter(|root| !shown_anyway(root));
    // The tree shown to the sandbox must not hold what is never shown ($HOME, $ASH_HOME).
    if let Some(root) = &root
        && crate::config::private_paths().iter().any(|private| private.starts_with(root))
    {
        return Err(format!(
            "`{}` is in {}, which would show the sandbox your home; install it with `npm install -g {}` or in a directory of its own",
            kind.name(),
            root.display(),
            kind.package()
        ));
    }
    let mut policy = base_policy(root.as_deref());
    policy.limits.wall_time = Duration::from_secs(30);
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    sandbox.adopt(scratch.path()).map_err(|e| e.to_string())?;
    policy.fs.writable.push(scratch.path().to_path_buf());
    let mut request = ExecRequest::new(
        vec![program.display().to_string(), "--version".into()],
        scratch.path().to_path_buf(),
        policy,
    );
    request.env = base_env(scratch.path());
    let out = sandbox
        .exec(&request, &CancellationToken::new())
        .await
        .map_err(|e| format!("`{} --version` cannot run in the sandbox: {e}", kind.name()))?;
    let version =
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_owned();
    if !out.status.success() || version.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{} --version` failed in the sandbox (exit {}): {}; reinstall it with `npm install -g {}`",
            kind.name(),
            out.status.code(),
            stderr.lines().next().unwrap_or("no output").trim(),
            kind.package()
        ));
    }
    Ok(Installed { program, root, version })
}

/// Whether the sandbox's default view shows `path` already.
fn shown_anyway(path: &Path) -> bool {
    ash_sandbox::DEFAULT_READ_ONLY.iter().any(|root| path.starts_with(root))
}

/// The policy every run of a CLI starts from: the system read-only (and the CLI's own npm
/// tree), `$HOME` and `$ASH_HOME` hidden, no network.
fn base_policy(root: Option<&Path>) -> SandboxPolicy {
    let mut policy = SandboxPolicy {
        net: NetPolicy::None,
        limits: ash_sandbox::Limits {
            memory_bytes: Some(4 << 30),
            pids: Some(1024),
            disk_bytes: Some(4 << 30),
            cpu_percent: None,
            cpu_time: None,
            ..ash_sandbox::Limits::strict()
        },
        ..SandboxPolicy::default()
    };
    let private = crate::config::private_paths();
    policy.fs.hidden.extend(private);
    if let Some(root) = root {
        policy.fs.read_only.push(root.to_path_buf());
        // A hidden directory holding the npm tree would hide it too; what else it holds stays
        // out of view anyway (only the tree is shown).
        policy.fs.hidden.retain(|hidden| !root.starts_with(hidden));
    }
    policy
}

/// The environment every run starts from: a plain `PATH`, a locale, no terminal, and a home
/// of its own.
fn base_env(home: &Path) -> BTreeMap<String, String> {
    let mut env = crate::config::process_env();
    env.insert("TERM".into(), "dumb".into());
    env.insert("HOME".into(), home.display().to_string());
    env.insert("TMPDIR".into(), home.join("tmp").display().to_string());
    env.insert("NO_COLOR".into(), "1".into());
    env
}

/// Claude Code or Codex, serving jobs.
pub(crate) struct CliAgent {
    kind: CliKind,
    installed: Installed,
    /// The model for each tier served.
    models: BTreeMap<String, String>,
    /// The provider, with its key (used by the gateway only).
    provider: ProviderConfig,
    sandbox: Arc<Sandbox>,
}

impl CliAgent {
    pub(crate) fn new(
        kind: CliKind,
        installed: Installed,
        models: BTreeMap<String, String>,
        provider: ProviderConfig,
        sandbox: Arc<Sandbox>,
    ) -> Self {
        Self { kind, installed, models, provider, sandbox }
    }

    /// `claude 2.1.197 (Claude Code)` and the like.
    pub(crate) fn version(&self) -> &str {
        &self.installed.version
    }

    /// The tiers served and their models.
    pub(crate) fn models(&self) -> &BTreeMap<String, String> {
        &self.models
    }
}

impl JobAgent for CliAgent {
    fn kind(&self) -> &str {
        self.kind.name()
    }

    fn model(&self, tier: &str) -> Option<String> {
        self.models.get(tier).cloned()
    }

    fn routable(&self, api: &str) -> bool {
        api == self.kind.provider()
    }

    fn sandbox(&self) -> &str {
        self.sandbox.backend().as_str()
    }

    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>> {
        let run = Run {
            kind: self.kind,
            installed: self.installed.clone(),
            provider: self.provider.clone(),
            sandbox: Arc::clone(&self.sandbox),
        };
        Box::pin(async move {
            let cancel = CancellationToken::new();
            let upstream: Arc<dyn Upstream> = match &work.routed {
                Some(routed) => Arc::new(super::routing::ToRequester(Arc::clone(routed))),
                None => Arc::new(
                    DirectUpstream::new(&run.provider, Duration::from_secs(10), cancel.clone())
                        .map_err(|e| format!("the model provider cannot be used: {e}"))?,
                ),
            };
            let result = run.go(work, upstream).await;
            cancel.cancel();
            result
        })
    }
}

/// One run of a CLI.
struct Run {
    kind: CliKind,
    installed: Installed,
    provider: ProviderConfig,
    sandbox: Arc<Sandbox>,
}

impl Run {
    async fn go(self, work: AgentWork, upstream: Arc<dyn Upstream>) -> Result<AgentEnd, String> {
        let local = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        let home = work.scratch.join("home");
        for dir in [home.clone(), home.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(|e| local("the agent's home", &e))?;
        }
        let token = placeholder().map_err(|e| local("a placeholder key", &e))?;
        let socket = self.sandbox.service_socket("model").map_err(|e| local("the gateway", &e))?;
        let config = GatewayConfig {
            token: token.clone(),
            model: Some(work.model.clone()),
            max_calls: Some(MAX_JOB_CALLS),
            max_tokens: Some(MAX_JOB_TOKENS),
        };
        let gateway = Gateway::start(upstream, config, Some(&socket), false)
            .await
            .map_err(|e| local("starting the model gateway", &e))?;
        let result = self.exec(&work, &home, &token, &socket).await;
        let usage = gateway.stop().await;
        let (summary, version) = result?;
        Ok(AgentEnd { summary, manifest: manifest(self.kind, version, usage) })
    }

    /// Runs the CLI to its end; its last words and version.
    async fn exec(
        &self,
        work: &AgentWork,
        home: &Path,
        token: &str,
        socket: &Path,
    ) -> Result<(String, String), String> {
        let base = format!("http://127.0.0.1:{GATEWAY_PORT}");
        let stream = work.scratch.join("events.jsonl");
        let last = work.scratch.join("last-message.txt");
        let mut env = base_env(home);
        let program = self.installed.program.display().to_string();
        let mut argv = vec![program];
        match self.kind {
            CliKind::Claude => {
                for (key, value) in [
                    ("ANTHROPIC_BASE_URL", base.as_str()),
                    ("ANTHROPIC_API_KEY", token),
                    ("ANTHROPIC_SMALL_FAST_MODEL", work.model.as_str()),
                    ("ANTHROPIC_DEFAULT_HAIKU_MODEL", work.model.as_str()),
                    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                    ("DISABLE_AUTOUPDATER", "1"),
                    ("DISABLE_TELEMETRY", "1"),
                    ("DISABLE_ERROR_REPORTING", "1"),
                    ("CLAUDE_CODE_MAX_RETRIES", "1"),
                    // The whole CLI is in ash's sandbox: its own permission prompts have no one
                    // to ask, and would deny edits while exiting 0.
                    ("IS_SANDBOX", "1"),
                ] {
                    env.insert(key.into(), value.into());
                }
                argv.extend(
                    [
                        "-p",
                        &work.prompt,
                        "--output-format",
                        "stream-json",
                        "--verbose",
                        "--permission-mode",
                        "bypassPermissions",
                        "--model",
                        &work.model,
                        "--no-session-persistence",
                    ]
                    .map(str::to_owned),
                );
            }
            CliKind::Codex => {
                let codex_home = home.join(".codex");
                std::fs::create_dir_all(&codex_home).map_err(|e| e.to_string())?;
                std::fs::write(codex_home.join("config.toml"), codex_config(&work.model, &base))
                    .map_err(|e| format!("writing Codex's configuration: {e}"))?;
                env.insert("CODEX_HOME".into(), codex_home.display().to_string());
                env.insert("ASH_MODEL_KEY".into(), token.to_owned());
                argv.extend(
                    [
                        "exec",
                        "--json",
                        // ash's sandbox is the isolation; Codex's own (bubblewrap) cannot nest.
                        "--dangerously-bypass-approvals-and-sandbox",
                        "--skip-git-repo-check",
                        "--output-last-message",
                        &last.display().to_string(),
                        &work.prompt,
                    ]
                    .map(str::to_owned),
                );
            }
        }
        // stdout (the event stream) goes to a file the progress reader follows.
        env.insert("ASH_EVENTS".into(), stream.display().to_string());
        let mut wrapped = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "exec \"$@\" > \"$ASH_EVENTS\"".to_owned(),
            "sh".to_owned(),
        ];
        wrapped.extend(argv);
        let mut policy = base_policy(self.installed.root.as_deref());
        policy.fs.writable.extend([work.workspace.clone(), work.scratch.clone()]);
        policy.limits.wall_time = work.run_time.max(Duration::from_secs(1));
        policy.services.push(Service { port: GATEWAY_PORT, socket: socket.to_path_buf() });
        // Everything in the scratch directory exists by now: it is handed over whole.
        std::fs::write(&stream, b"").map_err(|e| e.to_string())?;
        self.sandbox.adopt(&work.scratch).map_err(|e| e.to_string())?;
        let mut request = ExecRequest::new(wrapped, work.workspace.clone(), policy);
        request.env = env;

        let done = CancellationToken::new();
        let reader = tokio::spawn(follow(self.kind, stream, work.progress.clone(), done.clone()));
        let exec = self.sandbox.exec(&request, &CancellationToken::new()).await;
        done.cancel();
        let events = reader.await.map_err(|e| e.to_string())?;
        let out =
            exec.map_err(|e| format!("the {} agent could not start: {e}", self.kind.name()))?;
        let last_message = read_agent_file(&last, MAX_TEXT as u64)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .filter(|t| !t.trim().is_empty());
        let summary = last_message.or(events.last_words.clone());
        if let Some(limit) = out.limit {
            return Err(format!("the {} agent hit a limit: {limit:?}", self.kind.name()));
        }
        if let Some(error) = events.error {
            return Err(error);
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(clip(&format!(
                "{} exited with {}: {why}",
                self.kind.name(),
                out.status.code()
            )));
        }
        Ok((clip(&summary.unwrap_or_default()), self.installed.version.clone()))
    }
}

/// Opens a file the agent could write (its scratch directory is its own): never through a
/// link (which would lead ash, reading as itself, to a file of the host), and only a regular
/// file (not a FIFO, device or directory); `None` otherwise.
fn open_agent_file(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path).ok()?;
    file.metadata().ok().filter(std::fs::Metadata::is_file).map(|_| file)
}

/// At most `max` bytes of a file the agent could write (see [`open_agent_file`]).
fn read_agent_file(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    open_agent_file(path)?.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// A random placeholder key for one run: all an agent holds, good only at its gateway.
pub(crate) fn placeholder() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(format!("ash-run-{}", ash_identity::encode_hex(&bytes)))
}

/// Codex's `config.toml`: one provider (the gateway), no retries, nothing phoned home.
fn codex_config(model: &str, base: &str) -> String {
    let model = toml_string(model);
    format!(
        "model = {model}\nmodel_provider = \"ash\"\ncheck_for_update_on_startup = false\n\n\
         [model_providers.ash]\nname = \"ash\"\nbase_url = \"{base}/v1\"\nenv_key = \"ASH_MODEL_KEY\"\n\
         wire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n\n\
         [analytics]\nenabled = false\n\n\
         [features]\nplugins = false\nremote_plugin = false\nunbounded_connection_retries = false\n"
    )
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn manifest(kind: CliKind, version: String, usage: GatewayUsage) -> JobManifest {
    JobManifest {
        agent: kind.name().to_owned(),
        version,
        models: usage.models.into_iter().collect(),
        calls: usage.calls,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
    }
}

fn clip(text: &str) -> String {
    crate::cmd::cut_text(text.trim(), MAX_TEXT).to_owned()
}

/// What an agent's event stream said.
#[derive(Debug, Default)]
pub(crate) struct Events {
    /// The agent's last words.
    pub(crate) last_words: Option<String>,
    /// Why it failed, if it said.
    pub(crate) error: Option<String>,
    /// Tool names by call id (Claude), to name results.
    tools: HashMap<String, String>,
}

impl Events {
    /// Reads one line of `kind`'s stream; the steps it makes.
    pub(crate) fn read(&mut self, kind: CliKind, line: &[u8]) -> Vec<JobStep> {
        let Ok(event) = serde_json::from_slice::<Value>(line) else { return Vec::new() };
        match kind {
            CliKind::Claude => self.claude(&event),
            CliKind::Codex => self.codex(&event),
        }
    }

    fn claude(&mut self, event: &Value) -> Vec<JobStep> {
        let mut steps = Vec::new();
        let blocks: &[Value] =
            event["message"]["content"].as_array().map(Vec::as_slice).unwrap_or_default();
        match event["type"].as_str() {
            Some("system") if event["subtype"] == "init" => {
                let model = event["model"].as_str().unwrap_or("?");
                steps.push(step("note", format!("Claude Code on {model}")));
            }
            Some("system") if event["subtype"] == "api_retry" => {
                steps.push(step("note", "a model call is tried again".into()));
            }
            Some("assistant") => {
                for block in blocks.iter().filter(|b| b["type"] == "tool_use") {
                    let name: String =
                        block["name"].as_str().unwrap_or("tool").chars().take(64).collect();
                    if let Some(id) = block["id"].as_str()
                        && self.tools.len() < MAX_TOOL_IDS
                        && id.len() <= 128
                    {
                        self.tools.insert(id.to_owned(), name.chars().take(64).collect());
                    }
                    steps.push(step("tool", format!("→ {name}")));
                }
            }
            Some("user") => {
                for block in blocks.iter().filter(|b| b["type"] == "tool_result") {
                    let id = block["tool_use_id"].as_str().unwrap_or_default();
                    let name = self.tools.get(id).cloned().unwrap_or_else(|| "tool".into());
                    let failed = block["is_error"] == true;
                    steps.push(step(
                        "tool",
                        format!("← {name}{}", if failed { " failed" } else { "" }),
                    ));
                }
            }
            Some("result") => {
                let text = event["result"].as_str().unwrap_or_default().to_owned();
                if event["is_error"] == true || event["subtype"] != "success" {
                    self.error = Some(clip(&format!("Claude Code: {text}")));
                } else {
                    self.last_words = Some(text);
                }
                let usage = &event["usage"];
                let n = |k: &str| usage[k].as_u64().unwrap_or(0);
                steps.push(step(
                    "usage",
                    format!(
                        "({} turns, {} tokens in, {} out)",
                        event["num_turns"].as_u64().unwrap_or(0),
                        n("input_tokens")
                            + n("cache_read_input_tokens")
                            + n("cache_creation_input_tokens"),
                        n("output_tokens")
                    ),
                ));
            }
            _ => {}
        }
        steps
    }

    fn codex(&mut self, event: &Value) -> Vec<JobStep> {
        let mut steps = Vec::new();
        let item = &event["item"];
        let kind = item["type"].as_str().unwrap_or_default();
        match event["type"].as_str() {
            Some("item.started") => match kind {
                "command_execution" => steps.push(step("tool", "→ shell".into())),
                "mcp_tool_call" => steps.push(step("tool", "→ tool".into())),
                "web_search" => steps.push(step("tool", "→ web search".into())),
                _ => {}
            },
            Some("item.completed") => match kind {
                "command_execution" => {
                    let failed = item["exit_code"].as_i64().is_some_and(|c| c != 0);
                    steps.push(step(
                        "tool",
                        format!("← shell{}", if failed { " failed" } else { "" }),
                    ));
                }
                "file_change" => {
                    let n = item["changes"].as_array().map_or(0, Vec::len);
                    steps.push(step(
                        "tool",
                        format!("← edit ({n} file{})", if n == 1 { "" } else { "s" }),
                    ));
                }
                "agent_message" => {
                    self.last_words = item["text"].as_str().map(str::to_owned);
                }
                _ => {}
            },
            Some("turn.completed") => {
                let usage = &event["usage"];
                let n = |k: &str| usage[k].as_u64().unwrap_or(0);
                steps.push(step(
                    "usage",
                    format!("({} tokens in, {} out)", n("input_tokens"), n("output_tokens")),
                ));
            }
            Some("turn.failed") => {
                let message = event["error"]["message"].as_str().unwrap_or("the turn failed");
                self.error = Some(clip(&format!("Codex: {message}")));
            }
            Some("error") => {
                if let Some(message) = event["message"].as_str() {
                    self.error = Some(clip(&format!("Codex: {message}")));
                }
            }
            _ => {}
        }
        steps
    }
}

fn step(kind: &str, text: String) -> JobStep {
    JobStep { kind: kind.to_owned(), text }
}

/// Follows the event stream at `path` until `done`, then reads what is left; sends the steps
/// it makes (dropped when the queue is full: progress is best effort). The file is the
/// agent's to write: it is read only as a regular file, never through a link, a bounded
/// amount per look.
async fn follow(
    kind: CliKind,
    path: PathBuf,
    progress: mpsc::Sender<JobStep>,
    done: CancellationToken,
) -> Events {
    let mut events = Events::default();
    let mut line = Vec::new();
    let mut skipping = false;
    let mut offset = 0u64;
    loop {
        let finished = done.is_cancelled();
        let path = path.clone();
        let taken =
            tokio::task::spawn_blocking(move || read_from(&path, offset)).await.unwrap_or_default();
        offset += taken.len() as u64;
        for &byte in &taken {
            if byte == b'\n' {
                if !skipping {
                    for step in events.read(kind, &line) {
                        let _ = progress.try_send(step);
                    }
                }
                line.clear();
                skipping = false;
            } else if line.len() >= MAX_EVENT_LINE {
                line.clear();
                skipping = true;
            } else if !skipping {
                line.push(byte);
            }
        }
        // After the end, the rest is read to its end (a look may have stopped short).
        if finished && (taken.len() as u64) < MAX_READ_PER_LOOK {
            if !skipping && !line.is_empty() {
                for step in events.read(kind, &line) {
                    let _ = progress.try_send(step);
                }
            }
            return events;
        }
        if !finished {
            tokio::select! {
                () = done.cancelled() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// What the agent's file at `path` holds from `offset`, at most [`MAX_READ_PER_LOOK`] bytes.
fn read_from(path: &Path, offset: u64) -> Vec<u8> {
    use std::io::{Read as _, Seek as _};
    let mut taken = Vec::new();
    if let Some(mut file) = open_agent_file(path)
        && file.seek(std::io::SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.take(MAX_READ_PER_LOOK).read_to_end(&mut taken);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_the_agent_could_write_are_read_only_as_regular_files_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        std::fs::write(&secret, "sk-secret").unwrap();
        // A link to a file of the host, as an agent would plant in its scratch directory.
        let link = dir.path().join("last-message.txt");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert_eq!(read_agent_file(&link, 4096), None);
        assert_eq!(read_from(&link, 0), Vec::<u8>::new());
        // A FIFO would block the reader forever; a directory is no file.
        let fifo = dir.path().join("events.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_agent_file(&fifo, 4096), None);
        assert_eq!(read_agent_file(dir.path(), 4096), None);
        // A regular file is read up to the bound, from where the last look stopped.
        let file = dir.path().join("plain");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_agent_file(&file, 4), Some(b"0123".to_vec()));
        assert_eq!(read_from(&file, 6), b"6789".to_vec());
    }

    #[test]
    fn event_streams_become_steps_and_last_words() {
        let claude = [
            r#"{"type":"system","subtype":"init","model":"claude-sonnet-4-5"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"secret plan"},{"type":"tool_use","id":"t1","name":"Write","input":{}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","num_turns":2,"usage":{"input_tokens":5,"cache_read_input_tokens":1,"output_tokens":3}}"#,
            "not json",
        ];
        let mut events = Events::default();
        let steps: Vec<(String, String)> = claude
            .iter()
            .flat_map(|l| events.read(CliKind::Claude, l.as_bytes()))
            .map(|s| (s.kind, s.text))
            .collect();
        let expected = [
            ("note", "Claude Code on claude-sonnet-4-5"),
            ("tool", "→ Write"),
            ("tool", "← Write failed"),
            ("usage", "(2 turns, 6 tokens in, 3 out)"),
        ];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(k, t)| ((*k).to_owned(), (*t).to_owned())).collect();
        assert_eq!(steps, expected);
        assert_eq!((events.last_words.as_deref(), events.error.as_deref()), (Some("Done."), None));
        let codex = [
            r#"{"type":"item.started","item":{"type":"command_execution","command":"cat secret"}}"#,
            r#"{"type":"item.completed","item":{"type":"command_execution","exit_code":2}}"#,
            r#"{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"a"},{"path":"b"}]}}"#,
            r#"{"type":"item.completed","item":{"type":"agent_message","text":"All set."}}"#,
            r#"{"type":"turn.failed","error":{"message":"stream closed"}}"#,
        ];
        let mut events = Events::default();
        let steps: Vec<String> = codex
            .iter()
            .flat_map(|l| events.read(CliKind::Codex, l.as_bytes()))
            .map(|s| s.text)
            .collect();
        assert_eq!(steps, ["→ shell", "← shell failed", "← edit (2 files)"]);
        assert_eq!(events.last_words.as_deref(), Some("All set."));
        assert_eq!(events.error.as_deref(), Some("Codex: stream closed"));
    }
}
