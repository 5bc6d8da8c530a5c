//! The tool of a named sandbox (`<slug>_sandbox`): a shell command run in the session's own
//! copy of the sandbox, its output and exit code returned and streamed.

use std::time::Duration;

use ash_protocol::{SandboxPhase, ToolDefinition};
use ash_sandbox::LimitHit;
use serde_json::{Map, Value, json};

use super::{CallContext, CallFuture, Declared, Outcome, Runner, SchemaError};
use crate::sandboxes::Log;

/// A `sandboxes/*.toml` tool.
pub(crate) struct SandboxTool {
    declared: Declared,
    sandbox: String,
    timeout: Duration,
}

impl SandboxTool {
    pub(crate) fn new(
        tool: &str,
        sandbox: &str,
        description: &str,
        timeout_ms: u64,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            declared: Declared::new(tool, description, ash_spec::sandbox_input_schema())?,
            sandbox: sandbox.to_owned(),
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

impl Runner for SandboxTool {
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

async fn run(tool: &SandboxTool, input: Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let name = tool.sandbox.as_str();
    let Some(opened) = ctx.sandboxes else {
        return Outcome::error(format!("sandbox `{name}` is not available in this run"));
    };
    let command = input.get("command").and_then(Value::as_str).unwrap_or_default();
    let cwd = input.get("cwd").and_then(Value::as_str);
    let asked = input.get("timeoutMs").and_then(Value::as_u64).map(Duration::from_millis);
    let log = Log { events: ctx.events, sandbox: name, cancel: ctx.cancel };
    let (session, root) = match opened.session(name, &log).await {
        Ok(open) => open,
        Err(error) => return Outcome::error(error),
    };
    let run = match opened.call_command(name, &root, command, cwd, asked) {
        Ok(run) => run,
        Err(error) => return Outcome::error(error),
    };
    let timeout = run.wall_time.unwrap_or(tool.timeout);
    let out = match log.exec(&session, &run, SandboxPhase::Call, command).await {
        Ok(out) => out,
        Err(error) => return Outcome::error(format!("sandbox `{name}`: {error}")),
    };
    let mut result = json!({
        "exitCode": out.status.code(),
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
    });
    if out.stdout_truncated || out.stderr_truncated {
        result["truncated"] = Value::Bool(true);
    }
    if let Some(usage) = out.usage {
        result["usage"] = json!({
            "cpuTimeMs": u64::try_from(usage.cpu_time.as_millis()).unwrap_or(u64::MAX),
            "peakMemoryBytes": usage.peak_memory_bytes,
        });
    }
    match out.limit {
        None => Outcome::ok(result),
        Some(LimitHit::Cancelled) => Outcome::error("the command was cancelled"),
        Some(LimitHit::WallTime) => Outcome {
            output: result,
            ..Outcome::error(format!(
                "the command did not finish within {} ms and was stopped",
                timeout.as_millis()
            ))
        },
        Some(other) => Outcome {
            output: result,
            ..Outcome::error(format!(
                "the command was stopped: it reached sandbox `{name}`'s {} limit",
                other.as_str()
            ))
        },
    }
}
