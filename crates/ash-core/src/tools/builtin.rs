//! The built-in tools: `bash`, `read_file`, `write_file`, and the `activate_skill` schema.

use std::time::Duration;

use ash_sandbox::LimitHit;
use serde_json::{Map, Value, json};

use super::{CallContext, Outcome};

/// Bytes of stdout (and of stderr) a `bash` call returns.
pub(crate) const BASH_OUTPUT_BYTES: usize = 64 * 1024;
/// Default `bash` timeout.
const BASH_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest `bash` timeout a call may ask for.
const BASH_MAX_TIMEOUT_MS: u64 = 600_000;
/// Largest file `read_file` returns whole.
pub(crate) const READ_MAX_BYTES: usize = 256 * 1024;
/// Largest content `write_file` accepts.
const WRITE_MAX_BYTES: usize = 8 * 1024 * 1024;

pub(crate) const BASH_DESCRIPTION: &str = "Run a shell command with bash in the workspace directory. \
Returns the exit code, stdout and stderr (each cut at 64 KiB).";
pub(crate) const READ_DESCRIPTION: &str =
    "Read a UTF-8 text file from the workspace. Paths are relative to the workspace root.";
pub(crate) const WRITE_DESCRIPTION: &str = "Create or replace a file in the workspace with the given \
text, creating parent directories. Paths are relative to the workspace root.";
pub(crate) const SKILL_DESCRIPTION: &str = "Load a skill's instructions by name before following \
it. Returns the instructions and the paths of the skill's files in the workspace.";

pub(crate) fn bash_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "command": { "type": "string", "minLength": 1, "description": "The command line." },
            "timeoutMs": {
                "type": "integer", "minimum": 1, "maximum": BASH_MAX_TIMEOUT_MS,
                "description": "Kill the command after this many milliseconds (default 120000)."
            }
        },
        "required": ["command"],
        "additionalProperties": false
    })
}

pub(crate) fn read_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "path": { "type": "string", "minLength": 1 } },
        "required": ["path"],
        "additionalProperties": false
    })
}

pub(crate) fn write_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": { "type": "string", "minLength": 1 },
            "content": { "type": "string", "maxLength": WRITE_MAX_BYTES }
        },
        "required": ["path", "content"],
        "additionalProperties": false
    })
}

pub(crate) fn skill_schema(names: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": { "name": { "type": "string", "enum": names } },
        "required": ["name"],
        "additionalProperties": false
    })
}

fn str_field<'a>(input: &'a Map<String, Value>, key: &str) -> &'a str {
    input.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub(crate) async fn bash(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let command = str_field(input, "command");
    let timeout =
        input.get("timeoutMs").and_then(Value::as_u64).map_or(BASH_TIMEOUT, Duration::from_millis);
    let mut env = ctx.env.clone();
    env.insert("HOME".to_owned(), ctx.workspace.root().display().to_string());
    let argv = vec!["bash".to_owned(), "-c".to_owned(), command.to_owned()];
    let request = ctx.request(argv, env, Vec::new(), timeout, BASH_OUTPUT_BYTES);
    let out = match ctx.sandbox.exec(&request, ctx.cancel).await {
        Ok(out) => out,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let mut result = json!({
        "exitCode": out.status.code(),
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
    });
    if out.stdout_truncated || out.stderr_truncated {
        result["truncated"] = Value::Bool(true);
    }
    match out.limit {
        Some(LimitHit::WallTime) => Outcome {
            error: Some(format!(
                "the command did not finish within {} ms and was killed",
                timeout.as_millis()
            )),
            output: result,
        },
        Some(LimitHit::Cancelled) => Outcome::error("the command was cancelled"),
        Some(other) => Outcome {
            error: Some(format!(
                "the command was killed: it reached its sandbox's {} limit",
                other.as_str()
            )),
            output: result,
        },
        None => Outcome::ok(result),
    }
}

pub(crate) async fn read_file(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let path = str_field(input, "path");
    let full = match ctx.workspace.resolve(path) {
        Ok(full) => full,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let bytes = match tokio::fs::read(&full).await {
        Ok(bytes) => bytes,
        Err(_) if full.is_dir() => {
            return Outcome::error(format!("`{path}` is a directory; list it with `bash` (`ls`)"));
        }
        Err(e) => return Outcome::error(format!("cannot read `{path}`: {e}")),
    };
    let truncated = bytes.len() > READ_MAX_BYTES;
    let mut kept = &bytes[..bytes.len().min(READ_MAX_BYTES)];
    // Cut at a character boundary, not in the middle of one.
    if truncated {
        while !kept.is_empty() && std::str::from_utf8(kept).is_err() {
            kept = &kept[..kept.len() - 1];
        }
    }
    let Ok(text) = std::str::from_utf8(kept) else {
        return Outcome::error(format!(
            "`{path}` is not UTF-8 text ({} bytes); inspect it with `bash` (e.g. `file`, `xxd | head`)",
            bytes.len()
        ));
    };
    let mut result = json!({ "path": path, "content": text });
    if truncated {
        result["truncated"] = Value::Bool(true);
        result["bytes"] = json!(bytes.len());
    }
    Outcome::ok(result)
}

pub(crate) async fn write_file(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let path = str_field(input, "path");
    let content = str_field(input, "content");
    let full = match ctx.workspace.resolve(path) {
        Ok(full) => full,
        Err(e) => return Outcome::error(e.to_string()),
    };
    if full.is_dir() {
        return Outcome::error(format!("`{path}` is a directory"));
    }
    if let Some(parent) = full.parent()
        && let Err(e) = tokio::fs::create_dir_all(parent).await
    {
        return Outcome::error(format!("cannot create the directory of `{path}`: {e}"));
    }
    // The parent now exists: check again that links did not lead it outside.
    if let Err(e) = ctx.workspace.resolve(path) {
        return Outcome::error(e.to_string());
    }
    match tokio::fs::write(&full, content).await {
        Ok(()) => Outcome::ok(json!({ "path": path, "bytes": content.len() })),
        Err(e) => Outcome::error(format!("cannot write `{path}`: {e}")),
    }
}
