//! Command tools (`tools/*.toml` with `command`): input JSON on stdin, the session in
//! `ASH_SESSION`, a JSON result on stdout; and, when the agent has connections, the broker's
//! URL and a token for this call in `ASH_CONNECTIONS_URL` and `ASH_CONNECTIONS_TOKEN`.

use std::time::Duration;

use ash_protocol::ToolDefinition;
use ash_sandbox::{BackendKind, LimitHit, NetPolicy, Service};
use serde_json::{Map, Value};

use super::{CallContext, CallFuture, Declared, Outcome, Runner, SchemaError, project_argv};
use crate::connections::BROKER_PORT;

/// A `tools/*.toml` command tool.
pub(crate) struct CommandTool {
    declared: Declared,
    argv: Vec<String>,
    timeout: Duration,
    /// The connections it may reach through the runtime's endpoint.
    connections: Vec<String>,
    /// The named sandbox it runs in, instead of the session's workspace.
    sandbox: Option<String>,
}

impl CommandTool {
    pub(crate) fn new(
        tool: &ash_spec::Tool,
        argv: &[String],
        timeout_ms: u64,
        connections: &[String],
        sandbox: Option<&str>,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            declared: Declared::new(&tool.name, &tool.description, tool.input_schema.clone())?,
            argv: argv.to_vec(),
            timeout: Duration::from_millis(timeout_ms),
            connections: connections.to_vec(),
            sandbox: sandbox.map(str::to_owned),
        })
    }
}

impl Runner for CommandTool {
    fn definition(&self) -> ToolDefinition {
        self.declared.definition()
    }

    fn check(&self, input: &Value) -> Vec<String> {
        self.declared.problems(input)
    }

    fn call<'a>(&'a self, input: Map<String, Value>, ctx: &'a CallContext<'a>) -> CallFuture<'a> {
        Box::pin(run(self, input, ctx))
    }
}

/// Bytes of stdout (and of stderr) a command tool may print.
pub(crate) const COMMAND_OUTPUT_BYTES: usize = 1024 * 1024;
/// Characters of stdout or stderr quoted back in an error.
const QUOTE_CHARS: usize = 400;

/// Whether a tool process reaches the broker over loopback TCP (no isolation, or the host's
/// network) rather than through a relay on its sandbox's own loopback. Container backends reach
/// neither; `Engine::start` refuses tools that list connections there.
pub(crate) fn broker_over_tcp(backend: BackendKind, net: &NetPolicy) -> bool {
    !matches!(backend, BackendKind::Native | BackendKind::Bwrap) || matches!(net, NetPolicy::Full)
}

async fn run(tool: &CommandTool, input: Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let (name, argv, timeout) = (tool.declared.name(), tool.argv.as_slice(), tool.timeout);
    let argv = project_argv(argv, ctx.project_dir);
    if let Some(sandbox) = &tool.sandbox {
        return match in_sandbox(tool, sandbox, argv, input, ctx).await {
            Ok(out) => result(name, timeout, &out),
            Err(error) => Outcome::error(format!("tool `{name}`: {error}")),
        };
    }
    let mut env = ctx.env.clone();
    env.insert("ASH_SESSION".to_owned(), ctx.session.to_string());
    env.insert("ASH_WORKSPACE".to_owned(), ctx.workspace.root().display().to_string());
    env.insert("HOME".to_owned(), ctx.workspace.root().display().to_string());
    // The connections the tool declares, through the runtime: a token for this call and
    // these connections only, never a connection's credentials.
    let pass = ctx.broker.filter(|_| !tool.connections.is_empty()).map(|broker| {
        let pass = broker.pass(&tool.connections);
        env.insert("ASH_CONNECTIONS_TOKEN".to_owned(), pass.token().to_owned());
        (broker, pass)
    });
    let stdin = Value::Object(input).to_string().into_bytes();
    let mut request = ctx.request(argv, env, stdin, timeout, COMMAND_OUTPUT_BYTES);
    if let Some((broker, _)) = &pass {
        let url = if !broker_over_tcp(ctx.sandbox.backend(), &request.policy.net) {
            request
                .policy
                .services
                .push(Service { port: BROKER_PORT, socket: broker.socket().to_path_buf() });
            Some(format!("http://127.0.0.1:{BROKER_PORT}"))
        } else {
            broker.tcp().map(|addr| format!("http://{addr}"))
        };
        if let Some(url) = url {
            request.env.insert("ASH_CONNECTIONS_URL".to_owned(), url);
        }
    }
    match ctx.sandbox.exec(&request, ctx.cancel).await {
        Ok(out) => result(name, timeout, &out),
        Err(e) => Outcome::error(format!("tool `{name}`: {e}")),
    }
}

/// Runs the tool in the run's copy of named sandbox `sandbox`, its directory the working
/// directory and `HOME`. Its start, output and end are streamed like the sandbox's own calls.
async fn in_sandbox(
    tool: &CommandTool,
    sandbox: &str,
    argv: Vec<String>,
    input: Map<String, Value>,
    ctx: &CallContext<'_>,
) -> Result<ash_sandbox::ExecOutput, String> {
    let opened = ctx.sandboxes.ok_or_else(|| format!("sandbox `{sandbox}` is not available"))?;
    let log = crate::sandboxes::Log { events: ctx.events, sandbox, cancel: ctx.cancel };
    let (session, root) = opened.session(sandbox, &log).await?;
    let mut run = ash_sandbox::SessionCommand::new(argv.clone(), root.clone());
    run.env = ctx.env.clone();
    run.env.insert("ASH_SESSION".to_owned(), ctx.session.to_string());
    run.env.insert("ASH_WORKSPACE".to_owned(), root.display().to_string());
    run.env.insert("HOME".to_owned(), root.display().to_string());
    run.env.insert("ASH_SANDBOX".to_owned(), sandbox.to_owned());
    run.stdin = Value::Object(input).to_string().into_bytes();
    run.wall_time = Some(tool.timeout);
    let shown = argv.join(" ");
    log.exec(&session, &run, ash_protocol::SandboxPhase::Call, &shown).await
}

/// A command tool's outcome from how its process ended: its stdout's JSON, or why not.
fn result(name: &str, timeout: Duration, out: &ash_sandbox::ExecOutput) -> Outcome {
    match out.limit {
        Some(LimitHit::WallTime) => {
            return Outcome::error(format!(
                "tool `{name}` did not finish within {} ms and was killed",
                timeout.as_millis()
            ));
        }
        Some(LimitHit::Cancelled) => return Outcome::error(format!("tool `{name}` was cancelled")),
        Some(other) => {
            return Outcome::error(format!(
                "tool `{name}` was killed: it reached its {} limit",
                other.as_str()
            ));
        }
        None => {}
    }
    if !out.status.success() {
        return Outcome::error(format!(
            "tool `{name}` failed with exit code {}: {}",
            out.status.code(),
            quote(&out.stderr).unwrap_or_else(|| "(no stderr)".to_owned())
        ));
    }
    if out.stdout_truncated {
        return Outcome::error(format!(
            "tool `{name}` printed more than {COMMAND_OUTPUT_BYTES} bytes; its output was discarded"
        ));
    }
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(value) => Outcome::ok(value),
        Err(e) => Outcome::error(format!(
            "tool `{name}` must print one JSON value on stdout, but printed {} ({e})",
            quote(&out.stdout).map_or_else(|| "nothing".to_owned(), |q| format!("`{q}`"))
        )),
    }
}

/// The start of `bytes` as trimmed text, or `None` when there is nothing.
fn quote(bytes: &[u8]) -> Option<String> {
    quote_part(bytes, QUOTE_CHARS, false)
}

/// The start (or, with `end`, the end) of `bytes` as trimmed text, at most `chars` characters
/// with `…` where it was cut, or `None` when there is nothing. Errors quote a process's output
/// this way.
pub(crate) fn quote_part(bytes: &[u8], chars: usize, end: bool) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let count = text.chars().count();
    if count <= chars {
        return Some(text.to_owned());
    }
    Some(if end {
        format!("…{}", text.chars().skip(count - chars).collect::<String>())
    } else {
        format!("{}…", text.chars().take(chars).collect::<String>())
    })
}
