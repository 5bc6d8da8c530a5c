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

/// Opens `path` for the host-side file tools: never through a final symlink, never blocking
/// (a FIFO or a device cannot wedge the run), and only a regular file.
fn open_regular(path: &std::path::Path, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .create(write)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "it is not a regular file (a directory, FIFO, socket or device)",
        ));
    }
    Ok(file)
}

/// Reads at most [`READ_MAX_BYTES`] (and a few more to tell truncation) of a regular file;
/// returns them with the file's size.
fn read_head(path: &std::path::Path) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::Read as _;
    let file = open_regular(path, false)?;
    let size = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(READ_MAX_BYTES.min(usize::try_from(size).unwrap_or(0)) + 1);
    file.take(READ_MAX_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes, size))
}

pub(crate) async fn read_file(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let path = str_field(input, "path");
    let full = match ctx.workspace.resolve(path) {
        Ok(full) => full,
        Err(e) => return Outcome::error(e.to_string()),
    };
    if full.is_dir() {
        return Outcome::error(format!("`{path}` is a directory; list it with `bash` (`ls`)"));
    }
    let reading = tokio::task::spawn_blocking({
        let full = full.clone();
        move || read_head(&full)
    });
    let (bytes, size) = tokio::select! {
        read = reading => match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return Outcome::error(format!("cannot read `{path}`: {e}")),
            Err(e) => return Outcome::error(format!("cannot read `{path}`: {e}")),
        },
        () = ctx.cancel.cancelled() => return Outcome::error("cancelled"),
    };
    let truncated = bytes.len() > READ_MAX_BYTES || size > bytes.len() as u64;
    let mut kept = &bytes[..bytes.len().min(READ_MAX_BYTES)];
    // Cut at a character boundary, not in the middle of one.
    if truncated {
        while !kept.is_empty() && std::str::from_utf8(kept).is_err() {
            kept = &kept[..kept.len() - 1];
        }
    }
    let Ok(text) = std::str::from_utf8(kept) else {
        return Outcome::error(format!(
            "`{path}` is not UTF-8 text ({size} bytes); inspect it with `bash` (e.g. `file`, `xxd | head`)"
        ));
    };
    let mut result = json!({ "path": path, "content": text });
    if truncated {
        result["truncated"] = Value::Bool(true);
        result["bytes"] = json!(size);
    }
    Outcome::ok(result)
}

/// Writes `content` to a regular file at `full` (created, or emptied first), and hands the
/// file and the directories made for it to `owner` when tools run as another user.
fn write_regular(
    full: &std::path::Path,
    content: &str,
    created: &[std::path::PathBuf],
    owner: Option<u32>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = open_regular(full, true)?;
    file.set_len(0)?;
    file.write_all(content.as_bytes())?;
    if let Some(id) = owner {
        std::os::unix::fs::fchown(&file, Some(id), Some(id))?;
        for dir in created {
            std::os::unix::fs::lchown(dir, Some(id), Some(id))?;
        }
    }
    Ok(())
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
    // Directories that do not exist yet, outermost first, to hand over once made.
    let mut created = Vec::new();
    let mut parent = full.parent();
    while let Some(dir) = parent {
        if dir.exists() || !dir.starts_with(ctx.workspace.root()) {
            break;
        }
        created.push(dir.to_path_buf());
        parent = dir.parent();
    }
    created.reverse();
    if let Some(parent) = full.parent()
        && let Err(e) = tokio::fs::create_dir_all(parent).await
    {
        return Outcome::error(format!("cannot create the directory of `{path}`: {e}"));
    }
    // The parent now exists: check again that links did not lead it outside.
    if let Err(e) = ctx.workspace.resolve(path) {
        return Outcome::error(e.to_string());
    }
    let owner = ctx.sandbox.host_owner();
    let text = content.to_owned();
    let writing = tokio::task::spawn_blocking(move || write_regular(&full, &text, &created, owner));
    match tokio::select! {
        written = writing => written,
        () = ctx.cancel.cancelled() => return Outcome::error("cancelled"),
    } {
        Ok(Ok(())) => Outcome::ok(json!({ "path": path, "bytes": content.len() })),
        Ok(Err(e)) => Outcome::error(format!("cannot write `{path}`: {e}")),
        Err(e) => Outcome::error(format!("cannot write `{path}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn host_side_file_tools_refuse_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        // A FIFO with no writer would block a plain open forever; these return at once.
        let read = read_head(&fifo).unwrap_err().to_string();
        assert_eq!(read, "it is not a regular file (a directory, FIFO, socket or device)");
        let write = write_regular(&fifo, "x", &[], None).unwrap_err();
        assert_eq!(write.raw_os_error(), Some(nix::libc::ENXIO), "{write}");
        let link = read_head(&dir.path().join("link")).unwrap_err();
        assert_eq!(link.raw_os_error(), Some(nix::libc::ELOOP), "{link}");
        assert!(read_head(dir.path()).is_err());
    }

    #[test]
    fn reading_a_huge_sparse_file_reads_only_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        std::fs::File::create(&path).unwrap().set_len(1000 << 20).unwrap();
        let (bytes, size) = read_head(&path).unwrap();
        assert_eq!((bytes.len(), size), (READ_MAX_BYTES + 1, 1000 << 20));
    }
}
