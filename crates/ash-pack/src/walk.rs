//! The walk: which files of a tree a package holds, and why everything else was left out.
//!
//! The rules are git's (`git ls-files --cached --others --exclude-standard`): `.gitignore` files
//! of the tree and of its ancestors up to the repository root, `.git/info/exclude`, the global
//! excludes file, negations, directory-only patterns, and files the index tracks even though a
//! pattern ignores them. Outside a repository the same rules apply without the index and
//! `info/exclude`. On top: names that never leave ([`crate::secrets`]), the root's
//! `.ashignore` (gitignore syntax, excludes only), and what cannot travel (sockets, devices,
//! links that leave the tree, names that are not UTF-8 or have control characters).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Serialize;

use crate::gitindex::{IndexError, Tracked, read_index};
use crate::paths::{MAX_PATH_BYTES, check_name, link_stays_inside};
use crate::secrets::secret_name;

/// What the walk needs from the caller (only the CLI reads the environment).
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Git's global excludes file (`core.excludesFile`, by default
    /// `~/.config/git/ignore`); see [`global_excludes_file`].
    pub global_excludes: Option<PathBuf>,
}

/// Why a walk failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The root is missing or not a directory.
    #[error("{path}: {message}")]
    Root {
        /// The root as given.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A directory inside could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The directory or file.
        path: String,
        /// What the OS said.
        message: String,
    },
    /// The repository's index could not be read.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link that stays inside the tree.
    Symlink,
}

/// One entry of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Relative path, `/`-separated, UTF-8.
    pub path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// `0o644` or `0o755` for files (git's rule: executable by its owner), `0o755` for
    /// directories, `0o777` for symlinks.
    pub mode: u32,
    /// File size in bytes (0 for directories and symlinks).
    pub size: u64,
    /// A symlink's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Why a path was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// A gitignore pattern (of `source`: a `.gitignore` path, `.git/info/exclude` or the global
    /// excludes file) ignores it.
    Ignored {
        /// Where the pattern is.
        source: String,
        /// The pattern as written.
        pattern: String,
    },
    /// The root's `.ashignore` excludes it.
    Ashignore {
        /// The pattern as written.
        pattern: String,
    },
    /// A name that never leaves the machine.
    Secret {
        /// What kind of secret the name suggests.
        what: &'static str,
    },
    /// A symlink that resolves outside the tree.
    LinkOutside {
        /// Its target.
        target: String,
    },
    /// Something a package cannot hold.
    Unsupported {
        /// What it is.
        what: &'static str,
    },
    /// Git tracks it but it is not in the work tree.
    Missing,
}

/// A path left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Excluded {
    /// Relative path (lossy if it is not UTF-8).
    pub path: String,
    /// Whether it is a directory (nothing below it was looked at).
    pub is_dir: bool,
    /// Why.
    #[serde(flatten)]
    pub reason: Reason,
}

/// The result of a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The tree's root (canonical).
    pub root: PathBuf,
    /// The work tree of the git repository the root is in, if any.
    pub repo: Option<PathBuf>,
    /// Included entries, parents before children, names in byte order.
    pub entries: Vec<Entry>,
    /// Everything left out.
    pub excluded: Vec<Excluded>,
}

impl Walk {
    /// Bytes of file content included.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Walks `root` with git's rules; see the module documentation.
pub fn walk(root: &Path, options: &WalkOptions) -> Result<Walk, WalkError> {
    let root_error =
        |message: String| WalkError::Root { path: root.display().to_string(), message };
    let root = fs::canonicalize(root).map_err(|e| root_error(e.to_string()))?;
    if !root.is_dir() {
        return Err(root_error("not a directory".to_owned()));
    }
    let repo = find_repo(&root);
    let (work_tree, prefix) = match &repo {
        Some(repo) => {
            let rel = root.strip_prefix(&repo.work_tree).unwrap_or(Path::new(""));
            (repo.work_tree.clone(), rel.to_string_lossy().into_owned())
        }
        None => (root.clone(), String::new()),
    };

    let mut base = Vec::new();
    if let Some(repo) = &repo {
        let exclude = repo.common_dir.join("info/exclude");
        base.push(Source::load(&work_tree, &exclude, ".git/info/exclude"));
    }
    if let Some(global) = &options.global_excludes {
        base.push(Source::load(&work_tree, global, "global excludes"));
    }
    // `.gitignore` files of the repository's directories above the root apply too.
    let mut dirs = Vec::new();
    let mut dir = String::new();
    for name in prefix.split('/').filter(|n| !n.is_empty()) {
        dirs.push(Source::gitignore(&work_tree, &dir));
        dir = join(&dir, name);
    }
    let tracked = match &repo {
        Some(repo) => {
            let all = read_index(&repo.git_dir.join("index"), repo.hash_len)?;
            let under = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
            all.into_iter()
                .filter_map(|(path, kind)| path.strip_prefix(&under).map(|p| (p.to_owned(), kind)))
                .collect()
        }
        None => BTreeMap::new(),
    };
    let ashignore = matcher(&root, &root.join(".ashignore"));

    let mut walker = Walker {
        root: root.clone(),
        work_tree,
        prefix,
        base,
        dirs,
        tracked,
        ashignore,
        entries: Vec::new(),
        excluded: Vec::new(),
    };
    walker.dir("", false)?;
    walker.report_missing();
    let Walker { entries, excluded, .. } = walker;
    Ok(Walk { root, repo: repo.map(|r| r.work_tree), entries, excluded })
}

/// Git's global excludes file for a user: `core.excludesFile` from `~/.gitconfig` or
/// `$XDG_CONFIG_HOME/git/config` (later wins), else `$XDG_CONFIG_HOME/git/ignore`.
/// `xdg_config_home` defaults to `home/.config`. Returns the path only if the file exists.
pub fn global_excludes_file(home: &Path, xdg_config_home: Option<&Path>) -> Option<PathBuf> {
    let xdg = xdg_config_home.map_or_else(|| home.join(".config"), Path::to_path_buf);
    let mut configured = None;
    for config in [xdg.join("git/config"), home.join(".gitconfig")] {
        let Ok(text) = fs::read_to_string(&config) else { continue };
        if let Some(value) = excludes_file_setting(&text) {
            configured = Some(match value.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(value),
            });
        }
    }
    let path = configured.unwrap_or_else(|| xdg.join("git/ignore"));
    path.is_file().then_some(path)
}

/// The last `excludesFile` of the `[core]` section in a git config file.
fn excludes_file_setting(text: &str) -> Option<String> {
    let mut in_core = false;
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_core = line
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .eq_ignore_ascii_case("core");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if in_core && key.trim().eq_ignore_ascii_case("excludesfile") {
            found = Some(value.trim().trim_matches('"').to_owned());
        }
    }
    found
}

/// A git repository: its work tree, its git directory and the common directory (which holds
/// `info/exclude` for linked worktrees).
struct Repo {
    work_tree: PathBuf,
    git_dir: PathBuf,
    common_dir: PathBuf,
    hash_len: usize,
}

fn find_repo(root: &Path) -> Option<Repo> {
    let mut dir = Some(root);
    while let Some(here) = dir {
        let dot_git = here.join(".git");
        let git_dir = if dot_git.is_dir() {
            Some(dot_git)
        } else if dot_git.is_file() {
            // A worktree or submodule: `gitdir: <path>`.
            fs::read_to_string(&dot_git).ok().and_then(|text| {
                let path = text.trim().strip_prefix("gitdir:")?.trim().to_owned();
                Some(here.join(path))
            })
        } else {
            None
        };
        if let Some(git_dir) = git_dir {
            let common_dir = fs::read_to_string(git_dir.join("commondir"))
                .map_or_else(|_| git_dir.clone(), |c| git_dir.join(c.trim()));
            let config = fs::read_to_string(common_dir.join("config")).unwrap_or_default();
            let sha256 = config.lines().any(|l| {
                let l = l.replace([' ', '\t'], "").to_ascii_lowercase();
                l == "objectformat=sha256"
            });
            let hash_len = if sha256 { 32 } else { 20 };
            return Some(Repo { work_tree: here.to_path_buf(), git_dir, common_dir, hash_len });
        }
        dir = here.parent();
    }
    None
}

/// One file of ignore patterns and the directory (relative to the work tree) it applies to.
struct Source {
    /// Directory the patterns are relative to, `""` for the work tree's root.
    dir: String,
    label: String,
    matcher: Gitignore,
}

impl Source {
    fn load(work_tree: &Path, file: &Path, label: &str) -> Self {
        Self { dir: String::new(), label: label.to_owned(), matcher: matcher(work_tree, file) }
    }

    /// The `.gitignore` of `dir` (relative to the work tree); empty if there is none.
    fn gitignore(work_tree: &Path, dir: &str) -> Self {
        let abs = work_tree.join(dir);
        let matcher = matcher(&abs, &abs.join(".gitignore"));
        Self { label: join(dir, ".gitignore"), dir: dir.to_owned(), matcher }
    }
}

/// The patterns of `file` (if it is a file), relative to `root`. Invalid patterns are skipped,
/// as git does.
fn matcher(root: &Path, file: &Path) -> Gitignore {
    let mut builder = GitignoreBuilder::new(root);
    if file.is_file() {
        let _ = builder.add(file);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

struct Walker {
    root: PathBuf,
    work_tree: PathBuf,
    /// The root relative to the work tree.
    prefix: String,
    /// `info/exclude` and the global file, in that order.
    base: Vec<Source>,
    /// `.gitignore` files from the work tree's root down to the current directory.
    dirs: Vec<Source>,
    /// Tracked paths under the root, relative to it.
    tracked: BTreeMap<String, Tracked>,
    ashignore: Gitignore,
    entries: Vec<Entry>,
    excluded: Vec<Excluded>,
}

impl Walker {
    /// Walks directory `rel` (relative to the root). In `tracked_only` mode (inside an ignored
    /// directory) only tracked files and the directories leading to them are taken.
    fn dir(&mut self, rel: &str, tracked_only: bool) -> Result<(), WalkError> {
        let abs = self.root.join(rel);
        let io = |e: std::io::Error| WalkError::Io {
            path: abs.display().to_string(),
            message: e.to_string(),
        };
        let mut names = Vec::new();
        for item in fs::read_dir(&abs).map_err(io)? {
            names.push(item.map_err(io)?.file_name());
        }
        names.sort();
        let pushed = !tracked_only && {
            let repo_rel = join(&self.prefix, rel);
            self.dirs.push(Source::gitignore(&self.work_tree, &repo_rel));
            true
        };
        for name in names {
            let Some(name_str) = name.to_str() else {
                let path = join(rel, &name.to_string_lossy());
                self.exclude(path, false, Reason::Unsupported { what: "name is not UTF-8" });
                continue;
            };
            let path = join(rel, name_str);
            self.entry(&path, name_str, tracked_only)?;
        }
        if pushed {
            self.dirs.pop();
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, name: &str, tracked_only: bool) -> Result<(), WalkError> {
        let abs = self.root.join(path);
        let meta = fs::symlink_metadata(&abs).map_err(|e| WalkError::Io {
            path: abs.display().to_string(),
            message: e.to_string(),
        })?;
        let file_type = meta.file_type();
        let is_dir = file_type.is_dir();
        if let Some(what) = secret_name(name, is_dir) {
            self.exclude(path.to_owned(), is_dir, Reason::Secret { what });
            return Ok(());
        }
        if check_name(name).is_err() || path.len() > MAX_PATH_BYTES {
            let what = "name has control characters or is too long";
            self.exclude(path.to_owned(), is_dir, Reason::Unsupported { what });
            return Ok(());
        }
        let tracked = self.tracked.contains_key(path);
        let has_tracked_below = is_dir && self.has_tracked_below(path);
        if tracked_only && !tracked && !has_tracked_below {
            return Ok(());
        }
        if !tracked_only
            && !tracked
            && let Some((source, pattern)) = self.ignored(path, is_dir)
        {
            self.exclude(path.to_owned(), is_dir, Reason::Ignored { source, pattern });
            if has_tracked_below {
                self.entries.push(dir_entry(path));
                self.dir(path, true)?;
            }
            return Ok(());
        }
        if let Match::Ignore(glob) = self.ashignore.matched_path_or_any_parents(path, is_dir) {
            let pattern = glob.original().to_owned();
            self.exclude(path.to_owned(), is_dir, Reason::Ashignore { pattern });
            return Ok(());
        }
        if is_dir {
            self.entries.push(dir_entry(path));
            return self.dir(path, tracked_only);
        }
        if file_type.is_file() {
            let mode = if meta.mode() & 0o100 != 0 { 0o755 } else { 0o644 };
            let size = meta.len();
            self.entries.push(Entry {
                path: path.to_owned(),
                kind: EntryKind::File,
                mode,
                size,
                target: None,
            });
        } else if file_type.is_symlink() {
            let target = fs::read_link(&abs).ok().and_then(|t| t.to_str().map(str::to_owned));
            match target {
                Some(target) if link_stays_inside(&self.root, path) => {
                    self.entries.push(Entry {
                        path: path.to_owned(),
                        kind: EntryKind::Symlink,
                        mode: 0o777,
                        size: 0,
                        target: Some(target),
                    });
                }
                target => {
                    let target = target.unwrap_or_else(|| "(not UTF-8)".to_owned());
                    self.exclude(path.to_owned(), false, Reason::LinkOutside { target });
                }
            }
        } else {
            let what = "socket, FIFO or device";
            self.exclude(path.to_owned(), false, Reason::Unsupported { what });
        }
        Ok(())
    }

    /// The deciding ignore pattern, if the last match says "ignore". Per-directory files are
    /// asked deepest first, then `info/exclude`, then the global file; the first source with
    /// a match decides (git's precedence).
    fn ignored(&self, path: &str, is_dir: bool) -> Option<(String, String)> {
        let repo_rel = join(&self.prefix, path);
        let sources = self.dirs.iter().rev().chain(&self.base);
        for source in sources {
            let candidate = if source.dir.is_empty() {
                repo_rel.as_str()
            } else {
                match repo_rel.strip_prefix(&source.dir).and_then(|r| r.strip_prefix('/')) {
                    Some(rest) => rest,
                    None => continue,
                }
            };
            match source.matcher.matched(candidate, is_dir) {
                Match::None => {}
                Match::Whitelist(_) => return None,
                Match::Ignore(glob) => {
                    return Some((source.label.clone(), glob.original().to_owned()));
                }
            }
        }
        None
    }

    fn has_tracked_below(&self, dir: &str) -> bool {
        let start = format!("{dir}/");
        self.tracked.range(start.clone()..).next().is_some_and(|(p, _)| p.starts_with(&start))
    }

    fn exclude(&mut self, path: String, is_dir: bool, reason: Reason) {
        self.excluded.push(Excluded { path, is_dir, reason });
    }

    /// Tracked files the walk never met: deleted from the work tree. Files below a directory
    /// left out for another reason than an ignore pattern are accounted for by it.
    fn report_missing(&mut self) {
        let seen: BTreeSet<&str> = self
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .chain(self.excluded.iter().map(|e| e.path.as_str()))
            .collect();
        let left_out: BTreeSet<&str> = self
            .excluded
            .iter()
            .filter(|e| e.is_dir && !matches!(e.reason, Reason::Ignored { .. }))
            .map(|e| e.path.as_str())
            .collect();
        let missing: Vec<String> = self
            .tracked
            .iter()
            .filter(|(path, kind)| {
                **kind == Tracked::Blob
                    && !seen.contains(path.as_str())
                    && !ancestors(path).any(|a| left_out.contains(a))
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in missing {
            self.exclude(path, false, Reason::Missing);
        }
    }
}

fn dir_entry(path: &str) -> Entry {
    Entry { path: path.to_owned(), kind: EntryKind::Dir, mode: 0o755, size: 0, target: None }
}

/// `dir/name`, where either may be empty.
fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

/// `a/b/c` → `a/b`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').rev().map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_excludes_file_setting() {
        let text = "[user]\n\tname = x\n[core]\n\teditor = vi\n\texcludesFile = \"~/.gitignore_global\"\n[alias]\n\texcludesfile = nope\n";
        assert_eq!(excludes_file_setting(text), Some("~/.gitignore_global".to_owned()));
        assert_eq!(excludes_file_setting("[core]\n"), None);
    }
}
