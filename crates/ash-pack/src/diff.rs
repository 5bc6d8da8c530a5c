//! Result diffs: extracted from a workspace with git, sealed like packages, screened and
//! applied to the user's tree with git.
//!
//! Extraction keeps its own git directory outside the workspace (the agent cannot rewrite the
//! baseline), stages everything (`add -A`, honouring the tree's `.gitignore`) and diffs the
//! baseline commit against it: the agent's own commits, new, deleted and renamed files, mode
//! changes and binary files are all in the one binary diff. Applying first screens every path
//! and symlink of the patch and holds it to git's own reading, keeps what is at every path it
//! touches in a journal, and only then lets git write it (git checks every file before it
//! writes any), so a patch applies completely or not at all, across a conflict, a full disk or
//! a crash; conflicts are reported per file.

use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ash_identity::Identity;
use serde::Serialize;

use crate::journal::{Journal, Recovered};
use crate::paths::{PathProblem, check_relative};
use crate::seal::{
    Contents, Expect, JobId, Opener, Recipient, SealError, SealedHeader, Sealer, seal_error,
};
use crate::sensitive::sensitive;

/// Runs git. The binary provides one backed by `ash-sandbox`, with a clean environment:
/// no system or global configuration (`GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`).
pub trait Git {
    /// Runs `git <args>` in `cwd` with these extra environment variables and `stdin` as input.
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String>;

    /// Whether git runs isolated from the host: in a sandbox that sees the host read-only, may
    /// write only the trees it works on, and has no network (`ash-sandbox`'s native or
    /// bubblewrap backend). [`baseline`] and [`extract`] run git over a tree a peer's agent
    /// wrote and refuse a git that is not; [`apply`] runs over the user's own tree and takes
    /// either.
    fn isolated(&self) -> bool;
}

/// What a git run left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOutput {
    /// Whether it exited with 0.
    pub success: bool,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
}

/// Configuration every git run gets: no hooks, no external diff or text conversion, no
/// filesystem monitor, paths unquoted where possible, fixed identity for baseline commits.
const HARDENING: &[&str] = &[
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.quotePath=false",
    "-c",
    "core.autocrlf=false",
    "-c",
    "core.symlinks=true",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.relative=false",
    "-c",
    "user.name=ash",
    "-c",
    "user.email=ash@localhost",
    "-c",
    "commit.gpgSign=false",
];

/// [`HARDENING`] followed by `args`.
fn hardened(args: &[&str]) -> Vec<String> {
    HARDENING.iter().chain(args).map(|s| (*s).to_owned()).collect()
}

/// Why extracting, screening or applying a diff failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Git could not be run.
    #[error("cannot run git: {0}")]
    Spawn(String),
    /// A git command failed.
    #[error("`git {command}` failed: {stderr}")]
    Git {
        /// The subcommand.
        command: String,
        /// Its error output.
        stderr: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        message: String,
    },
    /// The patch touches a path it must not.
    #[error("patch refused: {path}: {problem}")]
    Unsafe {
        /// The path as the patch names it.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The patch is not a git diff this code can read.
    #[error("patch refused: line {line}: {problem}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A sealed result's manifest is missing, too long or cut short.
    #[error("the result's manifest {0}")]
    Manifest(&'static str),
    /// Applying would conflict; nothing was changed.
    #[error("the patch does not apply; nothing was changed ({} file(s) conflict)", .0.len())]
    Conflicts(Vec<Conflict>),
    /// The sealed layer refused the file.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A sealed diff is larger than the limit.
    #[error("the diff is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// `--3way` needs a git repository at the tree's root.
    #[error("--3way needs the tree to be the root of a git repository (with a `.git` directory)")]
    ThreeWayWithoutRepo,
    /// Git failed while writing (a full disk, a file it could not replace); the tree was put
    /// back as it was.
    #[error("git could not write the patch, so the tree was put back as it was: {stderr}")]
    WriteFailed {
        /// Git's error output.
        stderr: String,
    },
    /// Putting the tree back after a failed or interrupted apply failed too; the pre-images are
    /// kept and the next apply into the tree tries again.
    #[error(
        "the tree could not be put back as it was ({cause}); its pre-images are kept and the next \
         apply into it tries again"
    )]
    RollBackFailed {
        /// Why.
        cause: Box<DiffError>,
    },
    /// [`baseline`] or [`extract`] was given a git that does not run isolated.
    #[error(
        "git over a workspace an agent wrote must run in an isolating sandbox (native or bwrap), \
         not the plain backend"
    )]
    NotIsolated,
    /// An interrupted apply into the tree is still to be rolled back.
    #[error(
        "an interrupted apply into {0} is not rolled back yet; apply without --check rolls it \
         back first"
    )]
    Interrupted(String),
    /// Another apply is writing to the same tree.
    #[error("another apply is writing to {0}; wait for it to finish")]
    Busy(String),
}

/// A file the patch could not be applied to, and git's reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The file.
    pub path: String,
    /// Git's messages about it.
    pub messages: Vec<String>,
}

/// One file a diff changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    /// The path after the change (before it, for a deletion).
    pub path: String,
    /// The path before a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Lines added (`None` for a binary file).
    pub added: Option<u64>,
    /// Lines removed (`None` for a binary file).
    pub removed: Option<u64>,
}

/// What a diff changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DiffSummary {
    /// Changed files, in git's order.
    pub files: Vec<FileChange>,
    /// Lines added in text files.
    pub insertions: u64,
    /// Lines removed in text files.
    pub deletions: u64,
}

/// A workspace's baseline: ash's own git directory and the commit of the unpacked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// The git directory (outside the workspace).
    pub git_dir: PathBuf,
    /// The baseline commit.
    pub commit: String,
}

/// An extracted diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The patch: `git diff --binary` output.
    pub patch: Vec<u8>,
    /// What it changes.
    pub summary: DiffSummary,
}

struct Repo<'a> {
    git: &'a dyn Git,
    git_dir: &'a Path,
    work_tree: &'a Path,
}

impl Repo<'_> {
    fn run(&self, args: &[&str]) -> Result<Vec<u8>, DiffError> {
        let mut all = hardened(&[]);
        all.push(format!("--git-dir={}", self.git_dir.display()));
        all.push(format!("--work-tree={}", self.work_tree.display()));
        all.extend(args.iter().map(|s| (*s).to_owned()));
        run_checked(self.git, self.work_tree, &all, &[])
    }
}

fn run_checked(
    git: &dyn Git,
    cwd: &Path,
    args: &[String],
    env: &[(String, String)],
) -> Result<Vec<u8>, DiffError> {
    let out = git.run(cwd, args, env, &[]).map_err(DiffError::Spawn)?;
    if !out.success {
        let command = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .cloned()
            .unwrap_or_default();
        return Err(DiffError::Git {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// Records `workspace` as it is now, in a new git directory `git_dir` (outside the workspace);
/// `git` must be [isolated](Git::isolated).
pub fn baseline(git: &dyn Git, workspace: &Path, git_dir: &Path) -> Result<Baseline, DiffError> {
    if !git.isolated() {
        return Err(DiffError::NotIsolated);
    }
    let mut init: Vec<String> = HARDENING.iter().map(|s| (*s).to_owned()).collect();
    init.extend([
        "init".to_owned(),
        "-q".to_owned(),
        "--bare".to_owned(),
        git_dir.display().to_string(),
    ]);
    run_checked(git, workspace, &init, &[])?;
    let repo = Repo { git, git_dir, work_tree: workspace };
    repo.run(&["add", "-A"])?;
    repo.run(&["commit", "-q", "--allow-empty", "--no-verify", "-m", "ash baseline"])?;
    let commit = String::from_utf8_lossy(&repo.run(&["rev-parse", "HEAD"])?).trim().to_owned();
    Ok(Baseline { git_dir: git_dir.to_path_buf(), commit })
}

/// The largest result diff extracted or applied (1 GiB).
pub const MAX_DIFF_BYTES: u64 = 1 << 30;

/// The change from `baseline` to the workspace as it is now (committed or not), refused when
/// over `max_bytes` (at most [`MAX_DIFF_BYTES`]); `git` must be [isolated](Git::isolated). Git
/// writes the patch into a pipe that this
/// reads up to the limit and then closes, so a hostile workspace can neither fill the disk nor
/// the memory with its diff; git, writing past the limit, dies on the closed pipe.
pub fn extract(
    git: &dyn Git,
    workspace: &Path,
    baseline: &Baseline,
    max_bytes: u64,
) -> Result<Diff, DiffError> {
    if !git.isolated() {
        return Err(DiffError::NotIsolated);
    }
    let max_bytes = max_bytes.min(MAX_DIFF_BYTES);
    let repo = Repo { git, git_dir: &baseline.git_dir, work_tree: workspace };
    repo.run(&["add", "-A"])?;
    let fifo = baseline.git_dir.join("ash-result.pipe");
    let io = |e: std::io::Error| DiffError::Io {
        path: fifo.display().to_string(),
        message: e.to_string(),
    };
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .map_err(|e| io(e.into()))?;
    // The pipe belongs to whoever owns the git directory: a root-run ash's sandboxed git runs
    // as another user.
    {
        use std::os::unix::fs::MetadataExt as _;
        let owner = std::fs::metadata(&baseline.git_dir).map_err(io)?;
        if owner.uid() != nix::unistd::geteuid().as_raw() {
            std::os::unix::fs::lchown(&fifo, Some(owner.uid()), Some(owner.gid())).map_err(io)?;
        }
    }
    let read = (|| {
        // Opened for reading without waiting for a writer, then held open by a writer of our
        // own until git is done: the reader sees the end only once git (if it ever opened the
        // pipe) and this guard are both gone.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .map_err(io)?;
        let guard = std::fs::OpenOptions::new().write(true).open(&fifo).map_err(io)?;
        nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()))
            .map_err(|e| io(e.into()))?;
        let common = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "-M"];
        let mut args = common.to_vec();
        let out_arg = format!("--output={}", fifo.display());
        args.extend(["--binary", "--full-index", &out_arg, &baseline.commit]);
        std::thread::scope(|scope| {
            let reading = scope.spawn(move || {
                let mut patch = Vec::new();
                // Dropping the reader at the limit closes the pipe under git.
                (&reader).take(max_bytes + 1).read_to_end(&mut patch).map(|_| patch)
            });
            let ran = repo.run(&args);
            drop(guard);
            let patch = reading.join().unwrap_or_else(|_| {
                Err(std::io::Error::other("reading the diff failed unexpectedly"))
            });
            let patch = patch.map_err(io)?;
            if patch.len() as u64 > max_bytes {
                return Err(DiffError::TooLarge(max_bytes));
            }
            ran.map(|_| patch)
        })
    })();
    let _ = std::fs::remove_file(&fifo);
    let patch = read?;
    let mut args = vec!["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "-M"];
    args.extend(["--numstat", "-z", &baseline.commit]);
    let numstat = repo.run(&args)?;
    Ok(Diff { patch, summary: parse_numstat(&numstat) })
}

/// Parses `git diff --numstat -z`: `added TAB removed TAB path NUL`, or for a rename
/// `added TAB removed TAB NUL old NUL new NUL`; binary files show `-`.
fn parse_numstat(bytes: &[u8]) -> DiffSummary {
    let mut summary = DiffSummary::default();
    for change in numstat_records(bytes).flatten() {
        summary.insertions += change.added.unwrap_or(0);
        summary.deletions += change.removed.unwrap_or(0);
        summary.files.push(change);
    }
    summary
}

/// The records of `git diff --numstat -z` or `git apply --numstat -z` (see [`parse_numstat`]);
/// `None` for one that does not have the three fields.
fn numstat_records(bytes: &[u8]) -> impl Iterator<Item = Option<FileChange>> + '_ {
    let mut fields = bytes.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    std::iter::from_fn(move || {
        let record = fields.by_ref().find(|f| !f.is_empty())?;
        let mut parts = record.splitn(3, '\t');
        let (Some(added), Some(removed), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Some(None);
        };
        let (path, renamed_from) = if path.is_empty() {
            let old = fields.next().unwrap_or_default();
            (fields.next().unwrap_or_default(), Some(old))
        } else {
            (path.to_owned(), None)
        };
        Some(Some(FileChange {
            path,
            renamed_from,
            added: added.parse().ok(),
            removed: removed.parse().ok(),
        }))
    })
}

/// One file section of a patch, as screened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchFile {
    /// Path before (absent for a new file).
    pub old_path: Option<String>,
    /// Path after (absent for a deletion).
    pub new_path: Option<String>,
    /// Mode after, when the patch sets one (`100644`, `100755`, `120000`).
    pub new_mode: Option<String>,
    /// A symlink's new target.
    pub link_target: Option<String>,
    /// Why this target deserves a look before it is written (it runs code on its own, changes
    /// how git treats files, or becomes executable), if it does.
    pub sensitive: Option<&'static str>,
}

/// Reads every file section of a git patch and refuses unsafe ones: paths that are absolute,
/// traverse, touch `.git`, or have control characters; symlinks whose target leaves the tree;
/// submodules; binary changes without data. Marks the files that deserve a look
/// ([`PatchFile::sensitive`]).
pub fn screen(patch: &[u8]) -> Result<Vec<PatchFile>, DiffError> {
    let text = std::str::from_utf8(patch)
        .map_err(|_| DiffError::Malformed { line: 0, problem: "the patch is not UTF-8 text" })?;
    let mut files: Vec<PatchFile> = Vec::new();
    // Lines still expected in the current hunk (old side, new side), as its `@@` header counts
    // them: git reads exactly that many, and so does the screen.
    let mut hunk: Option<(u64, u64)> = None;
    // Whether the current section had a hunk: a `---`/`+++` after one starts another patch.
    let mut had_hunk = false;
    // The mode an `index` line gives a file whose mode does not change.
    let mut index_mode: Option<String> = None;
    let mut seen_any = false;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let malformed = |problem| DiffError::Malformed { line: line_no, problem };
        if let Some((old, new)) = hunk.as_mut() {
            let (o, n) = match line.as_bytes().first() {
                Some(b' ') | None => (1, 1),
                Some(b'-') => (1, 0),
                Some(b'+') => (0, 1),
                Some(b'\\') => (0, 0),
                Some(_) => return Err(malformed("a hunk ends before the lines its header counts")),
            };
            if *old < o || *new < n {
                return Err(malformed("a hunk holds more lines than its header counts"));
            }
            (*old, *new) = (*old - o, *new - n);
            if let (Some(added), Some(file)) = (line.strip_prefix('+'), files.last_mut())
                && file.new_mode.as_deref().or(index_mode.as_deref()) == Some("120000")
                && file.link_target.is_none()
            {
                file.link_target = Some(added.to_owned());
            }
            if (*old, *new) == (0, 0) {
                // A `\ No newline` line may still follow.
                hunk = None;
            }
            continue;
        }
        if line.starts_with("\\ ") && had_hunk {
            continue;
        }
        if let Some(rest) = line.strip_prefix("diff --git ") {
            seen_any = true;
            had_hunk = false;
            index_mode = None;
            let (old, new) = parse_diff_git(rest)
                .ok_or_else(|| malformed("cannot read the paths of `diff --git`"))?;
            files.push(PatchFile {
                old_path: Some(old),
                new_path: Some(new),
                new_mode: None,
                link_target: None,
                sensitive: None,
            });
            continue;
        }
        let Some(file) = files.last_mut() else {
            if line.starts_with("--- ") || line.starts_with("+++ ") {
                return Err(malformed("not a git diff (no `diff --git` header)"));
            }
            continue; // commit message or other preamble
        };
        if let Some(header) = line.strip_prefix("@@ ") {
            let counts =
                hunk_counts(header).ok_or_else(|| malformed("cannot read a hunk header"))?;
            hunk = (counts != (0, 0)).then_some(counts);
            had_hunk = true;
        } else if had_hunk && (line.starts_with("--- ") || line.starts_with("+++ ")) {
            // Git would read this as another file's patch: every file needs its own header.
            return Err(malformed("a second patch inside one file's section"));
        } else if had_hunk && line.starts_with(['+', '-', ' ']) {
            return Err(malformed("a hunk holds more lines than its header counts"));
        } else if let Some(path) = line.strip_prefix("--- ") {
            file.old_path = side(path, "a/").map_err(|()| malformed("bad `---` path"))?;
        } else if let Some(path) = line.strip_prefix("+++ ") {
            file.new_path = side(path, "b/").map_err(|()| malformed("bad `+++` path"))?;
        } else if let Some(path) =
            line.strip_prefix("rename from ").or_else(|| line.strip_prefix("copy from "))
        {
            file.old_path = Some(unquote(path).ok_or_else(|| malformed("bad quoted path"))?);
        } else if let Some(path) =
            line.strip_prefix("rename to ").or_else(|| line.strip_prefix("copy to "))
        {
            file.new_path = Some(unquote(path).ok_or_else(|| malformed("bad quoted path"))?);
        } else if let Some(mode) =
            line.strip_prefix("new file mode ").or_else(|| line.strip_prefix("new mode "))
        {
            file.new_mode = Some(mode.to_owned());
        } else if let Some(mode) = line.strip_prefix("old mode ") {
            index_mode.get_or_insert_with(|| mode.to_owned());
        } else if let Some(mode) = line.strip_prefix("deleted file mode ") {
            file.new_path = None;
            index_mode = Some(mode.to_owned());
        } else if line.starts_with("Binary files ") {
            let path = file.new_path.clone().or_else(|| file.old_path.clone()).unwrap_or_default();
            return Err(DiffError::Unsafe {
                path,
                problem: "binary change without data (diff made without --binary)".to_owned(),
            });
        } else if line == "GIT binary patch" {
            let link = [file.new_mode.as_deref(), index_mode.as_deref()].contains(&Some("120000"));
            if link {
                let path =
                    file.new_path.clone().or_else(|| file.old_path.clone()).unwrap_or_default();
                return Err(DiffError::Unsafe {
                    path,
                    problem: "a symlink in a binary patch (its target cannot be checked)"
                        .to_owned(),
                });
            }
            // Base85 lines follow (none can start like a header); a `---` among them would be
            // another patch.
            had_hunk = true;
        } else if let Some((_, mode)) =
            line.strip_prefix("index ").and_then(|rest| rest.split_once(' '))
        {
            if mode == "160000" {
                let path = file.new_path.clone().unwrap_or_default();
                return Err(DiffError::Unsafe {
                    path,
                    problem: "submodule changes are not applied".to_owned(),
                });
            }
            index_mode = Some(mode.to_owned());
        }
    }
    if !seen_any && !text.trim().is_empty() {
        return Err(DiffError::Malformed {
            line: 1,
            problem: "not a git diff (no `diff --git` header)",
        });
    }
    for file in &mut files {
        if file.new_mode.as_deref() == Some("160000") {
            let path = file.new_path.clone().unwrap_or_default();
            return Err(DiffError::Unsafe {
                path,
                problem: "submodule changes are not applied".to_owned(),
            });
        }
        for path in [&file.old_path, &file.new_path].into_iter().flatten() {
            check_relative(path).map_err(|p| unsafe_path(path, p))?;
        }
        if let (Some(path), Some(target)) = (&file.new_path, &file.link_target)
            && !link_target_inside(path, target)
        {
            return Err(DiffError::Unsafe {
                path: path.clone(),
                problem: format!("symlink to `{target}` leaves the tree"),
            });
        }
        file.sensitive =
            file.new_path.as_deref().and_then(|path| sensitive(path, file.new_mode.as_deref()));
    }
    Ok(files)
}

/// The old and new line counts of a hunk header's rest (`-a[,b] +c[,d] @@ …`).
fn hunk_counts(header: &str) -> Option<(u64, u64)> {
    let mut parts = header.split(' ');
    let count = |part: Option<&str>, sign: char| -> Option<u64> {
        let range = part?.strip_prefix(sign)?;
        match range.split_once(',') {
            Some((start, len)) => {
                start.parse::<u64>().ok()?;
                len.parse().ok()
            }
            None => range.parse::<u64>().ok().map(|_| 1),
        }
    };
    let old = count(parts.next(), '-')?;
    let new = count(parts.next(), '+')?;
    (parts.next()? == "@@").then_some((old, new))
}

fn unsafe_path(path: &str, problem: PathProblem) -> DiffError {
    DiffError::Unsafe { path: path.to_owned(), problem: problem.to_string() }
}

/// `a/x` → `Some("x")`, `/dev/null` → `None`.
fn side(path: &str, prefix: &str) -> Result<Option<String>, ()> {
    if path == "/dev/null" {
        return Ok(None);
    }
    let path = unquote(path).ok_or(())?;
    path.strip_prefix(prefix).map(|p| Some(p.to_owned())).ok_or(())
}

/// The two paths of `diff --git a/X b/Y` (quoted or not).
fn parse_diff_git(rest: &str) -> Option<(String, String)> {
    let (old, new) = if rest.starts_with('"') {
        let end = quoted_end(rest)?;
        (unquote(&rest[..end])?, unquote(rest[end..].strip_prefix(' ')?)?)
    } else if let Some(at) = rest.find(" \"") {
        (rest[..at].to_owned(), unquote(&rest[at + 1..])?)
    } else {
        // Unquoted: without a rename both halves are the same path, so split in the middle.
        let half = rest.len().checked_sub(1)? / 2;
        let (old, new) = (rest.get(..half)?, rest.get(half + 1..)?);
        if rest.as_bytes().get(half) != Some(&b' ') || old.get(2..)? != new.get(2..)? {
            // A rename with spaces: the `rename from/to` lines give the names.
            let (a, b) = rest.split_once(" b/")?;
            (a.to_owned(), format!("b/{b}"))
        } else {
            (old.to_owned(), new.to_owned())
        }
    };
    Some((old.strip_prefix("a/")?.to_owned(), new.strip_prefix("b/")?.to_owned()))
}

/// Index just past the closing quote of a C-quoted string starting at 0.
fn quoted_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Git's C-style quoting: `"a\tb\303\251"`; unquoted text is returned as is.
fn unquote(text: &str) -> Option<String> {
    let Some(inner) = text.strip_prefix('"') else { return Some(text.to_owned()) };
    let inner = inner.strip_suffix('"')?;
    let mut out = Vec::new();
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escaped = match bytes.next()? {
            b'a' => 7,
            b'b' => 8,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 11,
            b'f' => 12,
            b'r' => b'\r',
            b'"' => b'"',
            b'\\' => b'\\',
            d @ b'0'..=b'3' => {
                let (d2, d3) = (bytes.next()?, bytes.next()?);
                let digit = |c: u8| (b'0'..=b'7').contains(&c).then(|| c - b'0');
                (d - b'0') * 64 + digit(d2)? * 8 + digit(d3)?
            }
            _ => return None,
        };
        out.push(escaped);
    }
    String::from_utf8(out).ok()
}

/// Whether a symlink at `link` pointing to `target` stays inside the tree, lexically.
fn link_target_inside(link: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    let mut depth = link.matches('/').count();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// A renamed or copied symlink keeps its target, which the patch does not carry: read it from
/// the tree and check it from the link's new place (a relative target can leave the tree from a
/// shallower directory).
fn moved_links_stay_inside(tree: &Path, files: &[PatchFile]) -> Result<(), DiffError> {
    for file in files {
        let (Some(old), Some(new)) = (&file.old_path, &file.new_path) else { continue };
        if old == new || file.link_target.is_some() {
            continue;
        }
        let Ok(target) = std::fs::read_link(tree.join(old)) else { continue };
        let target = target.to_string_lossy();
        if !link_target_inside(new, &target) {
            return Err(DiffError::Unsafe {
                path: new.clone(),
                problem: format!("symlink to `{target}` moved here leaves the tree"),
            });
        }
    }
    Ok(())
}

/// No path the patch touches lies below a symlink already in the tree: `git apply --3way`
/// checks against the index, not the disk, and would write through a link the index does not
/// know (an untracked `build -> /elsewhere`); and a journal played back must never pass one.
fn nothing_below_a_link(tree: &Path, files: &[PatchFile]) -> Result<(), DiffError> {
    let mut seen = std::collections::HashSet::new();
    for path in files.iter().flat_map(|f| [&f.old_path, &f.new_path]).flatten() {
        let mut end = 0;
        for part in path.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, p)| p) {
            end += part.len();
            let prefix = &path[..end];
            end += 1;
            if !seen.insert(prefix) {
                continue;
            }
            match std::fs::symlink_metadata(tree.join(prefix)) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.is_symlink() => {
                    return Err(DiffError::Unsafe {
                        path: path.clone(),
                        problem: format!(
                            "`{prefix}` is a symlink in the tree; the patch writes below it"
                        ),
                    });
                }
                // Missing, or a file the patch replaces: nothing below it exists yet.
                _ => break,
            }
        }
    }
    Ok(())
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Only check; change nothing.
    pub check_only: bool,
    /// Fall back to a three-way merge where the patch does not apply cleanly (needs a git
    /// repository; conflicting files then hold conflict markers).
    pub three_way: bool,
}

/// What applying did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The screened file sections.
    pub files: Vec<PatchFile>,
    /// Whether the tree was changed (false for `check_only`).
    pub changed: bool,
    /// With `three_way`: files the merge left with conflict markers, to be resolved.
    pub conflicted: Vec<String>,
}

fn canonical(tree: &Path) -> Result<PathBuf, DiffError> {
    std::fs::canonicalize(tree)
        .map_err(|e| DiffError::Io { path: tree.display().to_string(), message: e.to_string() })
}

/// Puts `tree` back as it was before an apply that was interrupted (the process died while
/// git wrote), using the pre-images kept under `journal_root`; what was there instead is moved
/// aside into the journal, not lost. Says what it did (nothing when no apply was interrupted).
/// [`apply`] does this first on its own; call it to tell the person.
pub fn recover(journal_root: &Path, tree: &Path) -> Result<Recovered, DiffError> {
    let tree = canonical(tree)?;
    Journal::lock(journal_root, &tree)?
        .recover()
        .map_err(|cause| DiffError::RollBackFailed { cause: Box::new(cause) })
}

/// Screens `patch` and applies it to `tree`: all of it, or nothing. If any file conflicts,
/// nothing is written and the conflicts are listed per file. Before git writes, what is at every
/// path the patch touches is kept under `journal_root` (outside the tree): if git fails
/// part-way the tree is put back, and if the process dies the next apply (or [`recover`]) puts
/// it back. One apply at a time writes to a tree.
pub fn apply(
    git: &dyn Git,
    tree: &Path,
    patch: &[u8],
    options: ApplyOptions,
    journal_root: &Path,
) -> Result<Applied, DiffError> {
    let files = screen(patch)?;
    let tree = canonical(tree)?;
    let journal = Journal::lock(journal_root, &tree)?;
    if options.check_only {
        // A check changes nothing, not even to roll back an interrupted apply.
        if journal.pending() {
            return Err(DiffError::Interrupted(tree.display().to_string()));
        }
    } else {
        journal.recover().map_err(|cause| DiffError::RollBackFailed { cause: Box::new(cause) })?;
    }
    if files.is_empty() {
        return Ok(Applied { files, changed: false, conflicted: Vec::new() });
    }
    moved_links_stay_inside(&tree, &files)?;
    nothing_below_a_link(&tree, &files)?;
    // A real `.git` directory: through a link, the index journalled would be another's.
    let is_repo_root = std::fs::symlink_metadata(tree.join(".git")).is_ok_and(|m| m.is_dir());
    if options.three_way && !is_repo_root {
        return Err(DiffError::ThreeWayWithoutRepo);
    }
    // Git must not find a repository above the tree: paths are relative to the tree.
    let parent = tree.parent().unwrap_or(Path::new("/")).display().to_string();
    let env = [("GIT_CEILING_DIRECTORIES".to_owned(), parent)];
    // The journal keeps pre-images as hard links, which changes the files' ctime: a three-way
    // apply, which holds the index's stat data to the files, must not read that as a change.
    let mut base = hardened(&["-c", "core.trustctime=false", "apply", "--whitespace=nowarn"]);
    if options.three_way {
        base.push("--3way".to_owned());
    }
    // Git's own reading of the patch, to hold the screen to. A check reads the whole tree; an
    // apply needs none first, since `git apply` itself checks every file before it writes any
    // (the check runs only to report why a write failed).
    let mut reading = base.clone();
    reading.extend(["--numstat".to_owned(), "-z".to_owned()]);
    let mut check = base.clone();
    check.extend(["--check".to_owned(), "--numstat".to_owned(), "-z".to_owned()]);
    let probe = if options.check_only { &check } else { &reading };
    let mut touched: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|f| [f.old_path.as_deref(), f.new_path.as_deref()])
        .flatten()
        .collect();
    if options.three_way {
        // A three-way apply also writes the index.
        touched.insert(".git/index");
    }
    // The pre-images are kept while git reads: nothing is written until both are done.
    let (checked, recorded) = std::thread::scope(|scope| {
        let recording = (!options.check_only).then(|| scope.spawn(|| journal.record(touched)));
        let checked = git.run(&tree, probe, &env, patch);
        let recorded = recording.map(|thread| {
            thread.join().unwrap_or_else(|_| {
                Err(DiffError::Io {
                    path: journal_root.display().to_string(),
                    message: "keeping the pre-images failed unexpectedly".to_owned(),
                })
            })
        });
        (checked, recorded)
    });
    let verdict = checked.map_err(DiffError::Spawn).and_then(|out| {
        if !out.success {
            return Err(DiffError::Conflicts(conflicts(&out.stderr)));
        }
        same_paths_as_git(&out.stdout, &files)
    });
    match (verdict, recorded) {
        (Ok(()), None) => return Ok(Applied { files, changed: false, conflicted: Vec::new() }),
        (Ok(()), Some(Ok(()))) => {}
        (Err(refused), recorded) => {
            if recorded.is_some_and(|r| r.is_ok()) {
                journal.discard()?;
            }
            return Err(refused);
        }
        (Ok(()), Some(Err(e))) => return Err(e),
    }
    let written = git.run(&tree, &base, &env, patch);
    let conflicted = match &written {
        Ok(out) if out.success => Vec::new(),
        Ok(out) if options.three_way => merged_with_conflicts(&out.stderr).unwrap_or_default(),
        _ => Vec::new(),
    };
    match written {
        Ok(out) if out.success || !conflicted.is_empty() => {
            journal.forget()?;
            Ok(Applied { files, changed: true, conflicted })
        }
        failed => {
            // Usually git found a file that does not apply and wrote nothing; if it wrote part
            // (a full disk), this puts it back. Then a check says which it was.
            journal
                .roll_back()
                .map_err(|cause| DiffError::RollBackFailed { cause: Box::new(cause) })?;
            let out = failed.map_err(DiffError::Spawn)?;
            let checked = git.run(&tree, &check, &env, patch).map_err(DiffError::Spawn)?;
            Err(if checked.success {
                DiffError::WriteFailed {
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                }
            } else {
                DiffError::Conflicts(conflicts(&checked.stderr))
            })
        }
    }
}

/// The files a three-way apply merged with conflict markers, when that is all that went wrong
/// (`None` if git reported an error). Git lists them (`U path`) only once it has written
/// everything, so a git that died part-way is never taken for a merge with conflicts.
fn merged_with_conflicts(stderr: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(stderr);
    let mut announced = std::collections::BTreeSet::new();
    let mut listed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("error:") || line.starts_with("fatal:") {
            return None;
        }
        if let Some(path) = line
            .strip_prefix("Applied patch to '")
            .and_then(|rest| rest.strip_suffix("' with conflicts."))
        {
            announced.insert(path.to_owned());
        } else if let Some(path) = line.strip_prefix("U ") {
            listed.insert(path.to_owned());
        }
    }
    (!listed.is_empty() && listed == announced).then(|| listed.into_iter().collect())
}

/// Holds the screen to git's own reading of the patch (`git apply --numstat -z`, in
/// `numstat`): the patch is refused unless both name the same paths, so no section the screen
/// did not see can be applied.
fn same_paths_as_git(numstat: &[u8], files: &[PatchFile]) -> Result<(), DiffError> {
    let mut git_paths = std::collections::BTreeSet::new();
    for change in numstat_records(numstat) {
        let Some(change) = change else {
            return Err(DiffError::Malformed {
                line: 0,
                problem: "git's reading of the patch is unexpected",
            });
        };
        git_paths.extend(change.renamed_from);
        git_paths.insert(change.path);
    }
    // Git names a file by its new path (its old one when deleted; both for some renames).
    let named: std::collections::BTreeSet<String> =
        files.iter().filter_map(|f| f.new_path.clone().or_else(|| f.old_path.clone())).collect();
    let touched: std::collections::BTreeSet<String> =
        files.iter().flat_map(|f| [f.old_path.clone(), f.new_path.clone()]).flatten().collect();
    let differ = git_paths
        .iter()
        .find(|p| !touched.contains(*p))
        .or_else(|| named.iter().find(|p| !git_paths.contains(*p)));
    if let Some(path) = differ {
        return Err(DiffError::Unsafe {
            path: path.clone(),
            problem:
                "git and the screen read the patch differently (a hidden or malformed section)"
                    .to_owned(),
        });
    }
    Ok(())
}

/// Groups git's `error:` lines by file.
fn conflicts(stderr: &[u8]) -> Vec<Conflict> {
    let text = String::from_utf8_lossy(stderr);
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some(message) = line.strip_prefix("error: ") else { continue };
        let path = if let Some(rest) = message.strip_prefix("patch failed: ") {
            rest.rsplit_once(':').map_or(rest, |(p, _)| p)
        } else if let Some((path, _)) = message.split_once(": ") {
            path
        } else {
            ""
        };
        let path = path.trim_matches('\'').to_owned();
        by_path.entry(path).or_default().push(message.to_owned());
    }
    by_path.into_iter().map(|(path, messages)| Conflict { path, messages }).collect()
}

/// An I/O error of the sealed-diff stream: the sealed layer's error if it is one.
#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(stream)`")]
fn stream(e: std::io::Error) -> DiffError {
    match seal_error(&e) {
        Some(s) => DiffError::Seal(s.clone()),
        None => DiffError::Io { path: "sealed diff".to_owned(), message: e.to_string() },
    }
}

/// Seals a patch for `recipient` (zstd inside, like a package).
pub fn seal_diff(
    patch: &[u8],
    sender: &Identity,
    recipient: &Recipient,
    job: JobId,
) -> Result<Vec<u8>, DiffError> {
    let sealer = Sealer::new(Vec::new(), sender, recipient, Contents::Diff, job).map_err(stream)?;
    let mut zstd = zstd::stream::write::Encoder::new(sealer, 3).map_err(stream)?;
    zstd.write_all(patch).map_err(stream)?;
    zstd.finish().map_err(stream)?.finish().map_err(stream)
}

/// Longest manifest a sealed result carries.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// Seals a job's result for `recipient`: `manifest` (opaque here; at most
/// [`MAX_MANIFEST_BYTES`]) and the patch, so that the hash of the sealed bytes, which the
/// acceptor signs, covers both. Inside the zstd stream: `manifest_len:u32 || manifest || patch`.
pub fn seal_result(
    manifest: &[u8],
    patch: &[u8],
    sender: &Identity,
    recipient: &Recipient,
    job: JobId,
) -> Result<Vec<u8>, DiffError> {
    let len = u32::try_from(manifest.len())
        .ok()
        .filter(|n| *n as usize <= MAX_MANIFEST_BYTES)
        .ok_or(DiffError::Manifest("is over 64 KiB"))?;
    let sealer =
        Sealer::new(Vec::new(), sender, recipient, Contents::Result, job).map_err(stream)?;
    let mut zstd = zstd::stream::write::Encoder::new(sealer, 3).map_err(stream)?;
    zstd.write_all(&len.to_be_bytes()).map_err(stream)?;
    zstd.write_all(manifest).map_err(stream)?;
    zstd.write_all(patch).map_err(stream)?;
    zstd.finish().map_err(stream)?.finish().map_err(stream)
}

/// A job's result, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedResult {
    /// The sealed file's header.
    pub header: SealedHeader,
    /// The manifest as sealed.
    pub manifest: Vec<u8>,
    /// The patch.
    pub patch: Vec<u8>,
}

/// Opens a sealed result with `me`'s key; refuses more than `max_bytes` of patch.
pub fn open_result(
    input: impl Read,
    me: &Identity,
    expect: Expect,
    max_bytes: u64,
) -> Result<OpenedResult, DiffError> {
    let (header, opener) = Opener::new(input, me, Contents::Result, expect).map_err(stream)?;
    let mut decoder = zstd::stream::read::Decoder::new(opener).map_err(stream)?;
    decoder.window_log_max(23).map_err(stream)?;
    let mut len = [0u8; 4];
    decoder.read_exact(&mut len).map_err(|_| DiffError::Manifest("is cut short"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MANIFEST_BYTES {
        return Err(DiffError::Manifest("is over 64 KiB"));
    }
    let mut manifest = vec![0u8; len];
    decoder.read_exact(&mut manifest).map_err(|e| match seal_error(&e) {
        Some(s) => DiffError::Seal(s.clone()),
        None => DiffError::Manifest("is cut short"),
    })?;
    let mut patch = Vec::new();
    decoder.take(max_bytes + 1).read_to_end(&mut patch).map_err(stream)?;
    if patch.len() as u64 > max_bytes {
        return Err(DiffError::TooLarge(max_bytes));
    }
    Ok(OpenedResult { header, manifest, patch })
}

/// Opens a sealed diff with `me`'s key; refuses more than `max_bytes` of patch.
pub fn open_diff(
    input: impl Read,
    me: &Identity,
    expect: Expect,
    max_bytes: u64,
) -> Result<(SealedHeader, Vec<u8>), DiffError> {
    let (header, opener) = Opener::new(input, me, Contents::Diff, expect).map_err(stream)?;
    let mut decoder = zstd::stream::read::Decoder::new(opener).map_err(stream)?;
    decoder.window_log_max(23).map_err(stream)?;
    let mut patch = Vec::new();
    decoder.take(max_bytes + 1).read_to_end(&mut patch).map_err(stream)?;
    if patch.len() as u64 > max_bytes {
        return Err(DiffError::TooLarge(max_bytes));
    }
    Ok((header, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numstat_with_renames_and_binaries() {
        let raw = b"3\t1\tsrc/a.rs\0-\t-\timg.png\0\x30\t0\t\0old name.txt\0new name.txt\0";
        let summary = parse_numstat(raw);
        assert_eq!(
            summary,
            DiffSummary {
                files: vec![
                    FileChange {
                        path: "src/a.rs".into(),
                        renamed_from: None,
                        added: Some(3),
                        removed: Some(1)
                    },
                    FileChange {
                        path: "img.png".into(),
                        renamed_from: None,
                        added: None,
                        removed: None
                    },
                    FileChange {
                        path: "new name.txt".into(),
                        renamed_from: Some("old name.txt".into()),
                        added: Some(0),
                        removed: Some(0),
                    },
                ],
                insertions: 3,
                deletions: 1,
            }
        );
    }

    #[test]
    fn unquotes_git_paths() {
        assert_eq!(unquote("plain"), Some("plain".to_owned()));
        assert_eq!(unquote(r#""a\tb\"c\\d""#), Some("a\tb\"c\\d".to_owned()));
        assert_eq!(unquote(r#""caf\303\251""#), Some("café".to_owned()));
        assert_eq!(unquote(r#""bad\q""#), None);
        assert_eq!(unquote(r#""open"#), None);
    }

    #[test]
    fn splits_diff_git_lines() {
        for (line, want) in [
            ("a/x y.txt b/x y.txt", Some(("x y.txt", "x y.txt"))),
            (r#""a/t\tab" "b/t\tab""#, Some(("t\tab", "t\tab"))),
            ("a/old b/new", Some(("old", "new"))),
            ("nonsense", None),
        ] {
            let got = parse_diff_git(line);
            assert_eq!(got.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), want, "{line}");
        }
    }

    #[test]
    fn lexical_link_check() {
        for (link, target, inside) in [
            ("l", "a/b", true),
            ("d/l", "../x", true),
            ("l", "../x", false),
            ("d/l", "../../x", false),
            ("l", "/etc/passwd", false),
            ("l", "a/../../x", false),
        ] {
            assert_eq!(link_target_inside(link, target), inside, "{link} -> {target}");
        }
    }
}
