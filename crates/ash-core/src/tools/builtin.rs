//! The built-in tools: `bash`, `read_file`, `write_file`, `edit_file`, `search_files`, and the
//! `activate_skill` schema.

use std::time::Duration;

use ash_sandbox::LimitHit;
use serde_json::{Map, Value, json};

use ash_protocol::ToolDefinition;

use super::{CallContext, CallFuture, Declared, Outcome, Runner, SchemaError};

/// One of the runtime's file and shell tools.
pub(crate) struct Builtin {
    kind: Kind,
    declared: Declared,
}

#[derive(Clone, Copy)]
enum Kind {
    Bash,
    ReadFile,
    WriteFile,
    EditFile,
    Search,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Bash => "bash",
            Self::ReadFile => "read_file",
            Self::WriteFile => "write_file",
            Self::EditFile => "edit_file",
            Self::Search => "search_files",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Bash => BASH_DESCRIPTION,
            Self::ReadFile => READ_DESCRIPTION,
            Self::WriteFile => WRITE_DESCRIPTION,
            Self::EditFile => EDIT_DESCRIPTION,
            Self::Search => SEARCH_DESCRIPTION,
        }
    }

    fn schema(self) -> Value {
        match self {
            Self::Bash => bash_schema(),
            Self::ReadFile => read_schema(),
            Self::WriteFile => write_schema(),
            Self::EditFile => edit_schema(),
            Self::Search => search_schema(),
        }
    }
}

impl Builtin {
    /// Every built-in file and shell tool.
    pub(crate) fn all() -> Result<Vec<Self>, SchemaError> {
        [Kind::Bash, Kind::ReadFile, Kind::WriteFile, Kind::EditFile, Kind::Search]
            .into_iter()
            .map(|kind| {
                let declared = Declared::new(kind.name(), kind.description(), kind.schema())?;
                Ok(Self { kind, declared })
            })
            .collect()
    }

    pub(crate) fn name(&self) -> &'static str {
        self.kind.name()
    }
}

impl Runner for Builtin {
    fn definition(&self) -> ToolDefinition {
        self.declared.definition()
    }

    fn check(&self, input: &Value) -> Vec<String> {
        self.declared.problems(input)
    }

    fn call<'a>(&'a self, input: Map<String, Value>, ctx: &'a CallContext<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            match self.kind {
                Kind::Bash => bash(&input, ctx).await,
                Kind::ReadFile => read_file(&input, ctx).await,
                Kind::WriteFile => write_file(&input, ctx).await,
                Kind::EditFile => edit_file(&input, ctx).await,
                Kind::Search => search(&input, ctx).await,
            }
        })
    }

    fn is_builtin(&self) -> bool {
        true
    }
}

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

const BASH_DESCRIPTION: &str = "Run a shell command with bash in the workspace directory. \
Returns the exit code, stdout and stderr (each cut at 64 KiB).";
const READ_DESCRIPTION: &str =
    "Read a UTF-8 text file from the workspace. Paths are relative to the workspace root.";
const WRITE_DESCRIPTION: &str = "Create or replace a file in the workspace with the given \
text, creating parent directories. Paths are relative to the workspace root.";
const EDIT_DESCRIPTION: &str = "Replace exact text in a workspace file: `old` must \
occur exactly once (give more surrounding lines to make it unique), or set `replaceAll`. Returns \
how many places changed.";
const SEARCH_DESCRIPTION: &str = "Search the workspace's text files for a regular \
expression (or, with `literal`, a plain string), line by line, skipping what the workspace's \
top .gitignore ignores and the .git directory. Returns the matching lines with their paths and line numbers.";
/// Matches `search_files` returns at most (the default is 100).
const SEARCH_MAX_RESULTS: u64 = 1000;
/// Files `search` reads at most, and the largest it reads.
const SEARCH_MAX_FILES: usize = 20_000;
const SEARCH_MAX_FILE_BYTES: u64 = 1 << 20;
/// Characters of a matching line `search` returns.
const SEARCH_LINE_CHARS: usize = 400;

fn bash_schema() -> Value {
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

fn read_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "path": { "type": "string", "minLength": 1 } },
        "required": ["path"],
        "additionalProperties": false
    })
}

fn write_schema() -> Value {
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

fn edit_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": { "type": "string", "minLength": 1 },
            "old": { "type": "string", "minLength": 1, "description": "The exact text to replace." },
            "new": { "type": "string", "maxLength": WRITE_MAX_BYTES, "description": "What replaces it." },
            "replaceAll": { "type": "boolean", "description": "Replace every occurrence (default false)." }
        },
        "required": ["path", "old", "new"],
        "additionalProperties": false
    })
}

fn search_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "pattern": { "type": "string", "minLength": 1, "maxLength": 1000 },
            "path": { "type": "string", "minLength": 1, "description": "A directory or file to search (default: the whole workspace)." },
            "literal": { "type": "boolean", "description": "Match the pattern as plain text (default false)." },
            "maxResults": { "type": "integer", "minimum": 1, "maximum": SEARCH_MAX_RESULTS }
        },
        "required": ["pattern"],
        "additionalProperties": false
    })
}

fn str_field<'a>(input: &'a Map<String, Value>, key: &str) -> &'a str {
    input.get(key).and_then(Value::as_str).unwrap_or_default()
}

async fn bash(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
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
            output: result,
            ..Outcome::error(format!(
                "the command did not finish within {} ms and was killed",
                timeout.as_millis()
            ))
        },
        Some(LimitHit::Cancelled) => Outcome::error("the command was cancelled"),
        Some(other) => Outcome {
            output: result,
            ..Outcome::error(format!(
                "the command was killed: it reached its sandbox's {} limit",
                other.as_str()
            ))
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

async fn read_file(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
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

async fn write_file(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
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

/// Replaces `old` in `text`: once (it must occur once), or everywhere. The new text and the
/// number of places, or why not.
fn replace(text: &str, old: &str, new: &str, all: bool) -> Result<(String, usize), String> {
    let count = text.matches(old).count();
    // The size of the result, known before it is built.
    let replaced = if all { count } else { count.min(1) };
    let size = (text.len() - replaced * old.len()).checked_add(replaced.saturating_mul(new.len()));
    if size.is_none_or(|size| size > WRITE_MAX_BYTES) {
        return Err(format!("the result would be over {WRITE_MAX_BYTES} bytes"));
    }
    match count {
        0 => {
            Err("`old` does not occur in the file; read it again and copy the text exactly".into())
        }
        1 => Ok((text.replacen(old, new, 1), 1)),
        n if all => Ok((text.replace(old, new), n)),
        n => Err(format!(
            "`old` occurs {n} times; add surrounding lines to make it unique, or set replaceAll"
        )),
    }
}

async fn edit_file(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let path = str_field(input, "path");
    let (old, new) = (str_field(input, "old"), str_field(input, "new"));
    let all = input.get("replaceAll").and_then(Value::as_bool).unwrap_or(false);
    let full = match ctx.workspace.resolve(path) {
        Ok(full) => full,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let (old, new, owner) = (old.to_owned(), new.to_owned(), ctx.sandbox.host_owner());
    let editing = tokio::task::spawn_blocking(move || -> Result<usize, String> {
        use std::io::Read as _;
        let file = open_regular(&full, false).map_err(|e| format!("cannot read it: {e}"))?;
        let mut bytes = Vec::new();
        file.take(WRITE_MAX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() > WRITE_MAX_BYTES {
            return Err(format!("it is over {WRITE_MAX_BYTES} bytes; edit it with `bash`"));
        }
        let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
        let (edited, count) = replace(&text, &old, &new, all)?;
        if edited.len() > WRITE_MAX_BYTES {
            return Err(format!("the result would be over {WRITE_MAX_BYTES} bytes"));
        }
        write_regular(&full, &edited, &[], owner).map_err(|e| format!("cannot write it: {e}"))?;
        Ok(count)
    });
    match tokio::select! {
        edited = editing => edited,
        () = ctx.cancel.cancelled() => return Outcome::error("cancelled"),
    } {
        Ok(Ok(count)) => Outcome::ok(json!({ "path": path, "replacements": count })),
        Ok(Err(e)) => Outcome::error(format!("`{path}`: {e}")),
        Err(e) => Outcome::error(format!("`{path}`: {e}")),
    }
}

/// The workspace's top `.gitignore` (a regular file, at most 64 KiB; links and FIFOs are not
/// read), as a matcher; empty without one.
fn root_gitignore(root: &std::path::Path) -> ignore::gitignore::Gitignore {
    use std::io::Read as _;
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    let mut text = Vec::new();
    if let Ok(file) = open_regular(&root.join(".gitignore"), false) {
        let _ = file.take(64 << 10).read_to_end(&mut text);
    }
    for line in String::from_utf8_lossy(&text).lines() {
        let _ = builder.add_line(None, line);
    }
    builder.build().unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

/// One matching line.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    path: String,
    line: u64,
    text: String,
}

/// Searches the text files under `start` (inside `root`) for `pattern`, at most `max` lines;
/// also says whether there were more, or files left unread.
fn search_tree(
    root: &std::path::Path,
    start: &std::path::Path,
    pattern: &regex::Regex,
    max: usize,
    cancelled: &std::sync::atomic::AtomicBool,
) -> (Vec<Found>, bool) {
    use std::io::{BufRead as _, Read as _};
    use std::sync::atomic::Ordering;
    let mut found = Vec::new();
    let ignored = root_gitignore(root);
    // No ignore file is opened by the walk itself (it would follow links and read without
    // bounds): only the workspace's top `.gitignore`, read like any file a tool reads.
    let walk = ignore::WalkBuilder::new(start)
        .standard_filters(false)
        .follow_links(false)
        .filter_entry(move |e| {
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            e.file_name() != ".git"
                && !ignored.matched_path_or_any_parents(e.path(), is_dir).is_ignore()
        })
        .build();
    for (seen, entry) in walk.flatten().enumerate() {
        // Directories count too, and a cancelled call stops here.
        if seen >= SEARCH_MAX_FILES || cancelled.load(Ordering::Relaxed) {
            return (found, true);
        }
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        if entry.metadata().map_or(true, |m| m.len() > SEARCH_MAX_FILE_BYTES) {
            continue;
        }
        let Ok(file) = open_regular(path, false) else { continue };
        let shown = path.strip_prefix(root).unwrap_or(path).display().to_string();
        let reader = std::io::BufReader::new(file.take(SEARCH_MAX_FILE_BYTES));
        for (n, line) in reader.split(b'\n').enumerate() {
            let Ok(line) = line else { break };
            // Binary files are not text: skip them whole.
            if line.contains(&0) {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            if pattern.is_match(&text) {
                if found.len() == max {
                    return (found, true);
                }
                found.push(Found {
                    path: shown.clone(),
                    line: n as u64 + 1,
                    text: text.chars().take(SEARCH_LINE_CHARS).collect(),
                });
            }
        }
    }
    (found, false)
}

async fn search(input: &Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
    let pattern = str_field(input, "pattern");
    let literal = input.get("literal").and_then(Value::as_bool).unwrap_or(false);
    let max = input.get("maxResults").and_then(Value::as_u64).unwrap_or(100);
    let path = input.get("path").and_then(Value::as_str).unwrap_or(".");
    let source = if literal { regex::escape(pattern) } else { pattern.to_owned() };
    let regex = match regex::RegexBuilder::new(&source).size_limit(1 << 20).build() {
        Ok(regex) => regex,
        Err(e) => return Outcome::error(format!("not a regular expression: {e}")),
    };
    let start = match ctx.workspace.resolve(path) {
        Ok(start) => start,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let root = ctx.workspace.root().to_path_buf();
    let max = usize::try_from(max).unwrap_or(100);
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&cancelled);
    let searching =
        tokio::task::spawn_blocking(move || search_tree(&root, &start, &regex, max, &flag));
    let (found, more) = match tokio::select! {
        searched = searching => searched,
        () = ctx.cancel.cancelled() => {
            cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
            return Outcome::error("cancelled");
        }
    } {
        Ok(searched) => searched,
        Err(e) => return Outcome::error(format!("search failed: {e}")),
    };
    let matches: Vec<Value> = found
        .into_iter()
        .map(|f| json!({ "path": f.path, "line": f.line, "text": f.text }))
        .collect();
    Outcome::ok(json!({ "matches": matches, "truncated": more }))
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

    #[test]
    fn an_edit_replaces_exactly_what_it_names() {
        let text = "fn a() {}\nfn b() {}\nfn a() {}\n";
        type Case<'a> = (&'a str, &'a str, bool, Result<(String, usize), String>);
        let cases: [Case<'_>; 4] = [
            ("fn b() {}", "fn b() { 1 }", false, Ok(("fn a() {}\nfn b() { 1 }\nfn a() {}\n".into(), 1))),
            ("fn a() {}", "x", false, Err("`old` occurs 2 times; add surrounding lines to make it unique, or set replaceAll".into())),
            ("fn a() {}", "x", true, Ok(("x\nfn b() {}\nx\n".into(), 2))),
            ("fn c", "x", true, Err("`old` does not occur in the file; read it again and copy the text exactly".into())),
        ];
        for (old, new, all, expected) in cases {
            assert_eq!(replace(text, old, new, all), expected, "{old}");
        }
    }

    #[test]
    fn search_reads_text_files_git_keeps_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        std::fs::write(root.join(".gitignore"), "target/\n").unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn main() {}\n// TODO: one\nlet x = 1;\n")
            .unwrap();
        std::fs::write(root.join("notes.md"), "TODO: two\n").unwrap();
        std::fs::write(root.join("target/out.rs"), "TODO: ignored\n").unwrap();
        std::fs::write(root.join(".git/config"), "TODO: never\n").unwrap();
        std::fs::write(root.join("blob.bin"), b"TODO\0binary\n").unwrap();
        let todo = regex::Regex::new("TODO").unwrap();
        let no = std::sync::atomic::AtomicBool::new(false);
        let (mut found, more) = search_tree(root, root, &todo, 100, &no);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let lines: Vec<(String, u64, String)> =
            found.into_iter().map(|f| (f.path, f.line, f.text)).collect();
        assert_eq!(
            (lines, more),
            (
                vec![
                    ("notes.md".to_owned(), 1, "TODO: two".to_owned()),
                    ("src/lib.rs".to_owned(), 2, "// TODO: one".to_owned()),
                ],
                false
            )
        );
        let (found, more) = search_tree(root, root, &todo, 1, &no);
        assert_eq!((found.len(), more), (1, true));
        let (found, _) = search_tree(root, &root.join("src"), &todo, 100, &no);
        assert_eq!(found.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["src/lib.rs"]);
        // Cancelled, the walk stops at once.
        let cancelled = std::sync::atomic::AtomicBool::new(true);
        assert_eq!(search_tree(root, root, &todo, 100, &cancelled).0, []);
    }

    #[test]
    fn hostile_ignore_files_and_replacements_cannot_exhaust_the_host() {
        // A `.gitignore` that is a link to an endless device, or a FIFO with no writer, is not
        // read (either would fill memory or block forever); a nested one is not read at all.
        let needle = regex::Regex::new("needle").unwrap();
        for make in ["link", "fifo"] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            std::fs::create_dir_all(root.join("sub")).unwrap();
            std::fs::write(root.join("sub/a.txt"), "needle\n").unwrap();
            if make == "link" {
                std::os::unix::fs::symlink("/dev/zero", root.join(".gitignore")).unwrap();
                std::os::unix::fs::symlink("/dev/zero", root.join("sub/.gitignore")).unwrap();
            } else {
                let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
                nix::unistd::mkfifo(&root.join(".gitignore"), mode).unwrap();
                nix::unistd::mkfifo(&root.join("sub/.ignore"), mode).unwrap();
            }
            let no = std::sync::atomic::AtomicBool::new(false);
            let (found, more) = search_tree(root, root, &needle, 10, &no);
            assert_eq!((found.len(), more), (1, false), "{make}");
        }
        // Replacing every byte of a large file with a large text would build gigabytes.
        let text = "a".repeat(1 << 20);
        let new = "b".repeat(1 << 10);
        assert_eq!(
            replace(&text, "a", &new, true),
            Err(format!("the result would be over {WRITE_MAX_BYTES} bytes"))
        );
    }
}
