//! Guarded, read-only access to the files of an agent directory.
//!
//! Owns the rules for what may be read: regular files only (never FIFOs or devices), UTF-8 names,
//! bounded sizes and entry counts, symlinks only when they stay inside the agent root, no
//! directory cycles. Records the hash of every file read so the manifest can name its inputs.
//! Never writes and never executes anything.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::diagnostic::{Diagnostics, Severity};
use crate::slots::{self, SlotDoc};

/// Largest text file (prompt, skill, TOML) read, in bytes. Prompts larger than this would not
/// fit a model's context usefully, and the bound keeps a hostile directory from exhausting memory.
pub const MAX_TEXT_BYTES: u64 = 1024 * 1024;
/// Largest file seeded from a packaged skill or hashed from `lib/`.
pub const MAX_ASSET_BYTES: u64 = 16 * 1024 * 1024;
/// Most entries read from one directory.
pub(crate) const MAX_DIR_ENTRIES: usize = 4096;
/// Most files hashed below one packaged skill or `lib/` directory.
pub(crate) const MAX_TREE_FILES: usize = 4096;
/// Deepest directory nesting walked below a packaged skill or `lib/`.
pub(crate) const MAX_TREE_DEPTH: usize = 16;

/// What a directory entry is, after following an allowed symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
}

/// A directory entry with a UTF-8 name.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) kind: EntryKind,
}

impl Entry {
    /// The name without its last extension, and the extension.
    pub(crate) fn stem_and_ext(&self) -> (&str, Option<&str>) {
        match self.name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
            _ => (self.name.as_str(), None),
        }
    }
}

/// Size and hash of one file that went into the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileHash {
    pub(crate) sha256: String,
    pub(crate) bytes: u64,
}

/// Read access to one agent directory.
pub(crate) struct Tree {
    project: PathBuf,
    boundary: PathBuf,
    /// Canonical paths of the directories currently being walked, to detect symlink cycles.
    walking: Vec<PathBuf>,
    pub(crate) files: BTreeMap<String, FileHash>,
}

impl Tree {
    /// `project` is the directory given by the user; `boundary` the canonical agent root.
    pub(crate) fn new(project: PathBuf, boundary: PathBuf) -> Self {
        Self { project, boundary, walking: Vec::new(), files: BTreeMap::new() }
    }

    /// The `/`-separated path of `path` relative to the project directory.
    pub(crate) fn rel(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.project).unwrap_or(path);
        let parts: Vec<String> =
            rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        if parts.is_empty() { ".".to_owned() } else { parts.join("/") }
    }

    /// Whether `path` (resolved) stays inside the agent root.
    pub(crate) fn inside(&self, path: &Path) -> Option<PathBuf> {
        let canonical = fs::canonicalize(path).ok()?;
        canonical.starts_with(&self.boundary).then_some(canonical)
    }

    /// Marks `dir` as being walked; reports and returns false when that would loop.
    pub(crate) fn enter(&mut self, dir: &Path, diags: &mut Diagnostics) -> bool {
        let Ok(canonical) = fs::canonicalize(dir) else {
            diags.file(
                Severity::Error,
                "read-error",
                &self.rel(dir),
                "cannot resolve the directory",
                &slots::FILE,
            );
            return false;
        };
        if self.walking.contains(&canonical) {
            diags.file(
                Severity::Error,
                "symlink-cycle",
                &self.rel(dir),
                "this directory is a symlink back into one of its own parents; it was skipped",
                &slots::LAYOUT,
            );
            return false;
        }
        self.walking.push(canonical);
        true
    }

    pub(crate) fn leave(&mut self) {
        self.walking.pop();
    }

    /// Lists `dir`, sorted by name, skipping hidden entries. Problems become diagnostics and the
    /// entry is left out.
    pub(crate) fn list(&self, dir: &Path, diags: &mut Diagnostics) -> Vec<Entry> {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(err) => {
                diags.file(
                    Severity::Error,
                    "read-error",
                    &self.rel(dir),
                    format!("cannot list the directory: {err}"),
                    &slots::FILE,
                );
                return Vec::new();
            }
        };
        let mut entries = Vec::new();
        for item in read {
            let item = match item {
                Ok(item) => item,
                Err(err) => {
                    diags.file(
                        Severity::Error,
                        "read-error",
                        &self.rel(dir),
                        format!("cannot list the directory: {err}"),
                        &slots::FILE,
                    );
                    break;
                }
            };
            if entries.len() == MAX_DIR_ENTRIES {
                diags.file(
                    Severity::Error,
                    "too-many-entries",
                    &self.rel(dir),
                    format!("more than {MAX_DIR_ENTRIES} entries; the rest were skipped"),
                    &slots::LAYOUT,
                );
                break;
            }
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                diags.file(
                    Severity::Error,
                    "non-utf8-name",
                    &self.rel(&path),
                    "the file name is not valid UTF-8; rename it",
                    &slots::FILE,
                );
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Some(kind) = self.kind_of(&path, diags) {
                entries.push(Entry { name, path, kind });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// The kind of `path`, following symlinks that stay inside the agent root.
    fn kind_of(&self, path: &Path, diags: &mut Diagnostics) -> Option<EntryKind> {
        let rel = self.rel(path);
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) => {
                diags.file(
                    Severity::Error,
                    "read-error",
                    &rel,
                    format!("cannot read: {err}"),
                    &slots::FILE,
                );
                return None;
            }
        };
        let meta = if meta.file_type().is_symlink() {
            let Ok(target) = fs::canonicalize(path) else {
                diags.file(
                    Severity::Error,
                    "broken-symlink",
                    &rel,
                    "the symlink points at nothing",
                    &slots::FILE,
                );
                return None;
            };
            if !target.starts_with(&self.boundary) {
                diags.file(
                    Severity::Error,
                    "symlink-escape",
                    &rel,
                    "the symlink leads outside the agent directory; it was not followed",
                    &slots::FILE,
                );
                return None;
            }
            match fs::metadata(&target) {
                Ok(meta) => meta,
                Err(err) => {
                    diags.file(
                        Severity::Error,
                        "read-error",
                        &rel,
                        format!("cannot read: {err}"),
                        &slots::FILE,
                    );
                    return None;
                }
            }
        } else {
            meta
        };
        if meta.is_dir() {
            Some(EntryKind::Dir)
        } else if meta.is_file() {
            Some(EntryKind::File)
        } else {
            diags.file(
                Severity::Error,
                "not-a-file",
                &rel,
                "not a regular file or directory (a FIFO, socket or device?); it was skipped",
                &slots::FILE,
            );
            None
        }
    }

    /// Reads a UTF-8 text file of at most [`MAX_TEXT_BYTES`] and records its hash.
    pub(crate) fn read_text(
        &mut self,
        path: &Path,
        doc: &SlotDoc,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        let bytes = self.read_bytes(path, MAX_TEXT_BYTES, doc, diags)?;
        match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(err) => {
                let offset = err.utf8_error().valid_up_to();
                diags.file(
                    Severity::Error,
                    "not-utf8",
                    &self.rel(path),
                    format!("the file is not valid UTF-8 (first bad byte at offset {offset})"),
                    doc,
                );
                None
            }
        }
    }

    /// Hashes a file (any content) of at most `max` bytes; returns its size.
    pub(crate) fn hash_file(
        &mut self,
        path: &Path,
        max: u64,
        doc: &SlotDoc,
        diags: &mut Diagnostics,
    ) -> Option<u64> {
        self.read_bytes(path, max, doc, diags).map(|bytes| bytes.len() as u64)
    }

    fn read_bytes(
        &mut self,
        path: &Path,
        max: u64,
        doc: &SlotDoc,
        diags: &mut Diagnostics,
    ) -> Option<Vec<u8>> {
        let rel = self.rel(path);
        let kind = self.kind_of(path, diags)?;
        if kind != EntryKind::File {
            diags.file(
                Severity::Error,
                "not-a-file",
                &rel,
                "expected a file, found a directory",
                doc,
            );
            return None;
        }
        let read = File::open(path).and_then(|file| {
            let mut bytes = Vec::new();
            file.take(max + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(err) => {
                diags.file(Severity::Error, "read-error", &rel, format!("cannot read: {err}"), doc);
                return None;
            }
        };
        if bytes.len() as u64 > max {
            diags.file(
                Severity::Error,
                "file-too-large",
                &rel,
                format!("the file is larger than the limit of {}", human_bytes(max)),
                doc,
            );
            return None;
        }
        self.files.insert(rel, FileHash { sha256: sha256_hex(&bytes), bytes: bytes.len() as u64 });
        Some(bytes)
    }

    /// Reads a text file that a slot's file names (an OpenAPI document), at most `max` bytes,
    /// only when it resolves inside the agent root; hashed into the build like every file
    /// read. The error says why, for the caller to report where the name was written.
    pub(crate) fn read_named(&mut self, path: &Path, max: u64) -> Result<String, String> {
        let canonical = self.inside(path).ok_or("it is not a file inside the agent directory")?;
        let meta = fs::metadata(&canonical).map_err(|e| format!("cannot read it: {e}"))?;
        if !meta.is_file() {
            return Err("it is not a regular file".into());
        }
        let mut bytes = Vec::new();
        File::open(&canonical)
            .and_then(|file| file.take(max + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() as u64 > max {
            return Err(format!("it is larger than the limit of {}", human_bytes(max)));
        }
        let rel = self.rel(path);
        self.files.insert(rel, FileHash { sha256: sha256_hex(&bytes), bytes: bytes.len() as u64 });
        String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())
    }

    /// Hashes every file below `dir` (bounded); returns their paths relative to `dir`, sorted.
    pub(crate) fn walk_files(
        &mut self,
        dir: &Path,
        doc: &SlotDoc,
        diags: &mut Diagnostics,
    ) -> Vec<String> {
        let mut found = Vec::new();
        self.walk_into(dir, "", 0, doc, diags, &mut found);
        found.sort();
        found
    }

    fn walk_into(
        &mut self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        doc: &SlotDoc,
        diags: &mut Diagnostics,
        found: &mut Vec<String>,
    ) {
        if depth > MAX_TREE_DEPTH {
            diags.file(
                Severity::Error,
                "too-deep",
                &self.rel(dir),
                format!(
                    "directories nest deeper than {MAX_TREE_DEPTH} levels; the rest was skipped"
                ),
                doc,
            );
            return;
        }
        if !self.enter(dir, diags) {
            return;
        }
        for entry in self.list(dir, diags) {
            if found.len() >= MAX_TREE_FILES {
                diags.file(
                    Severity::Error,
                    "too-many-files",
                    &self.rel(dir),
                    format!("more than {MAX_TREE_FILES} files; the rest were skipped"),
                    doc,
                );
                break;
            }
            let rel = format!("{prefix}{}", entry.name);
            match entry.kind {
                EntryKind::Dir => {
                    self.walk_into(&entry.path, &format!("{rel}/"), depth + 1, doc, diags, found);
                }
                EntryKind::File => {
                    if self.hash_file(&entry.path, MAX_ASSET_BYTES, doc, diags).is_some() {
                        found.push(rel);
                    }
                }
            }
        }
        self.leave();
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn human_bytes(n: u64) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}
