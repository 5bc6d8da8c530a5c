//! State that moves with a run between nodes sharing a store: the session workspace and the
//! session copies of named sandboxes. After each action, before its result is committed, a
//! worker stores a snapshot of each directory (a manifest of paths, modes and content hashes,
//! and the contents the store lacks, addressed by hash). A worker that takes the run over on
//! another node restores them before it works, so it finds the files as they were after the
//! last finished action; a file an action left half-written when its node died is rolled back
//! with it, and the action runs again, as after any crash.
//!
//! Only for stores other processes share ([`Store::is_shared`]); a single node keeps its
//! directories where they are. Limits: a file over [`MAX_FILE`] bytes, anything but regular
//! files, directories and symbolic links, and whatever exceeds [`MAX_TOTAL`] bytes or
//! [`MAX_ENTRIES`] entries is not carried (the manifest names what was left out).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::store::{Fence, Store, StoreError};

/// Largest file carried.
pub(crate) const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Most bytes of files carried per directory.
pub(crate) const MAX_TOTAL: u64 = 1024 * 1024 * 1024;
/// Most entries carried per directory.
pub(crate) const MAX_ENTRIES: usize = 200_000;
/// The manifest format this build writes and reads.
const MANIFEST_FORMAT: u32 = 1;

/// What a directory held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    format: u32,
    /// By relative path (`/`-separated), in order: parents before children.
    entries: BTreeMap<String, Entry>,
    /// What was not carried, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    left_out: Vec<String>,
}

/// One path of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Entry {
    Dir,
    #[serde(rename_all = "camelCase")]
    File {
        sha256: String,
        size: u64,
        executable: bool,
    },
    Symlink {
        target: String,
    },
}

/// Why carrying failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CarryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the stored snapshot of `{area}` cannot be used: {reason}")]
    Bad { area: String, reason: String },
    #[error(
        "the stored snapshot of `{area}` is in format {format}; this ash reads {MANIFEST_FORMAT}: a newer node must take the run"
    )]
    Newer { area: String, format: u32 },
}

/// Which of a run's directories a snapshot is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Area {
    /// The session workspace: its top holds whatever the run made there.
    Workspace,
    /// The session copies of named sandboxes: its top holds one directory per sandbox (and
    /// their markers), never a link, which would send a sandbox's writable root elsewhere.
    Sandboxes,
}

impl Area {
    /// Its name in the store and in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Sandboxes => "sandboxes",
        }
    }
}

/// A directory a run carries, and what was learnt of it last time.
#[derive(Debug)]
pub(crate) struct Carried {
    area: Area,
    dir: PathBuf,
    /// Hashes of files as last seen (size, modification and change times, inode): a file that
    /// kept all four is not read again.
    seen: Seen,
    /// The manifest last stored.
    last: Option<String>,
}

type Stamp = (u64, i64, i64, i64, i64, u64);

/// Each file's stamp and hash, by relative path.
type Seen = HashMap<String, (Stamp, String)>;

/// What a walk found.
struct Scan {
    manifest: Manifest,
    /// The cache for the next walk.
    seen: Seen,
    /// Relative paths of the files whose contents were read, by hash.
    read: HashMap<String, Vec<String>>,
}

fn stamp(stat: &nix::sys::stat::FileStat) -> Stamp {
    (
        u64::try_from(stat.st_size).unwrap_or(0),
        stat.st_mtime,
        stat.st_mtime_nsec,
        stat.st_ctime,
        stat.st_ctime_nsec,
        stat.st_ino,
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The marker beside `dir` that names the snapshot its contents came from or went to.
fn marker(dir: &Path) -> PathBuf {
    let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.carried"))
}

impl Carried {
    pub(crate) fn new(area: Area, dir: PathBuf) -> Self {
        Self { area, dir, seen: HashMap::new(), last: None }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which directory it is.
    pub(crate) fn area(&self) -> Area {
        self.area
    }

    /// Stores the directory's current state for the lease holder `fence`: the contents the
    /// store lacks, then the manifest (refused if the lease moved on). A file rewritten
    /// between the walk and its upload is carried as read at its upload; one gone by then is
    /// left out. The cache of hashes is kept only once a snapshot is stored whole.
    pub(crate) async fn save(
        &mut self,
        store: &dyn Store,
        run_id: &str,
        fence: &Fence,
    ) -> Result<(), CarryError> {
        let (dir, seen) = (self.dir.clone(), std::mem::take(&mut self.seen));
        let Scan { mut manifest, mut seen, read } =
            tokio::task::spawn_blocking(move || scan(&dir, seen))
                .await
                .map_err(io::Error::other)??;
        let wanted: Vec<String> = read.keys().cloned().collect();
        let root = if wanted.is_empty() { self.dir.clone() } else { self.dir.canonicalize()? };
        for hash in store.missing_blobs(&wanted).await? {
            for path in read.get(&hash).into_iter().flatten() {
                let (root, rel) = (root.clone(), path.clone());
                let bytes = tokio::task::spawn_blocking(move || read_inside(&root, &rel))
                    .await
                    .map_err(io::Error::other)??;
                let Some(bytes) = bytes else {
                    // Gone or replaced since the walk: not carried this time.
                    manifest.entries.remove(path);
                    seen.remove(path);
                    continue;
                };
                let actual = sha256_hex(&bytes);
                if actual != hash {
                    // Rewritten since the walk: carried as read now, hashed again next time.
                    if let Some(Entry::File { sha256, size, .. }) = manifest.entries.get_mut(path) {
                        sha256.clone_from(&actual);
                        *size = bytes.len() as u64;
                    }
                    seen.remove(path);
                }
                store.put_blob(&actual, &bytes).await?;
            }
        }
        let text = serde_json::to_string(&manifest).map_err(io::Error::other)?;
        if self.last.as_deref() != Some(text.as_str()) {
            store.put_snapshot(run_id, fence, self.area.name(), &text).await?;
            self.mark(&sha256_hex(text.as_bytes())).await?;
            self.last = Some(text);
        }
        self.seen = seen;
        Ok(())
    }

    /// Records beside the directory that it holds the snapshot `id`.
    pub(crate) async fn mark(&self, id: &str) -> io::Result<()> {
        tokio::fs::write(marker(&self.dir), id).await
    }

    /// Makes the directory what the store's snapshot says, unless it already is (its marker
    /// names that snapshot). Returns the snapshot's id when it restored it: the caller marks
    /// the directory with it ([`Carried::mark`]) once it made it usable.
    pub(crate) async fn restore(
        &mut self,
        store: &dyn Store,
        run_id: &str,
    ) -> Result<Option<String>, CarryError> {
        let Some(text) = store.snapshot(run_id, self.area.name()).await? else { return Ok(None) };
        let id = sha256_hex(text.as_bytes());
        let here = tokio::fs::read_to_string(marker(&self.dir)).await.ok();
        if here.as_deref() == Some(id.as_str()) && self.dir.exists() {
            self.last = Some(text);
            return Ok(None);
        }
        let bad = |reason: String| CarryError::Bad { area: self.area.name().to_owned(), reason };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| bad(format!("its manifest does not parse: {e}")))?;
        if manifest.format > MANIFEST_FORMAT {
            return Err(CarryError::Newer {
                area: self.area.name().to_owned(),
                format: manifest.format,
            });
        }
        if manifest.format != MANIFEST_FORMAT {
            return Err(bad(format!("its manifest is in the unknown format {}", manifest.format)));
        }
        let plan = plan(&manifest, self.area == Area::Workspace).map_err(bad)?;
        if let Some(parent) = self.dir.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let name =
            self.dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        // What an interrupted restore left beside the directory.
        if let Some(parent) = self.dir.parent()
            && let Ok(mut entries) = tokio::fs::read_dir(parent).await
        {
            let (restoring, old) = (format!(".{name}.restore-"), format!(".{name}.old-"));
            while let Ok(Some(entry)) = entries.next_entry().await {
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.starts_with(&restoring) || file.starts_with(&old) {
                    let _ = tokio::fs::remove_dir_all(entry.path()).await;
                }
            }
        }
        let staging = self.dir.with_file_name(format!(".{name}.restore-{}", crate::ids::ulid()));
        let written = self.write(store, &staging, &plan).await;
        if let Err(error) = written {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(error);
        }
        // Swap: the old directory goes aside first, so a crash leaves one or the other whole
        // (and no marker: the next worker restores again).
        let _ = tokio::fs::remove_file(marker(&self.dir)).await;
        if self.dir.exists() {
            let old = self.dir.with_file_name(format!(".{name}.old-{}", crate::ids::ulid()));
            tokio::fs::rename(&self.dir, &old).await?;
            tokio::fs::rename(&staging, &self.dir).await?;
            tokio::fs::remove_dir_all(&old).await?;
        } else {
            tokio::fs::rename(&staging, &self.dir).await?;
        }
        if !manifest.left_out.is_empty() {
            tracing::warn!(run_id, area = self.area.name(), left_out = ?manifest.left_out, "restored without what was too large to carry");
        }
        self.last = Some(text);
        self.seen.clear();
        Ok(Some(id))
    }

    async fn write(
        &self,
        store: &dyn Store,
        staging: &Path,
        plan: &Plan<'_>,
    ) -> Result<(), CarryError> {
        use std::os::unix::fs::PermissionsExt as _;
        let bad = |reason: String| CarryError::Bad { area: self.area.name().to_owned(), reason };
        tokio::fs::create_dir(staging).await?;
        for dir in &plan.dirs {
            tokio::fs::create_dir(staging.join(dir)).await?;
        }
        for (path, sha256, size, executable) in &plan.files {
            let bytes = store.blob(sha256).await?.ok_or_else(|| {
                bad(format!("the contents of `{path}` are missing from the store"))
            })?;
            if bytes.len() as u64 != *size || sha256_hex(&bytes) != **sha256 {
                return Err(bad(format!("the contents of `{path}` do not match their hash")));
            }
            let to = staging.join(path);
            tokio::fs::write(&to, &bytes).await?;
            let mode = if *executable { 0o755 } else { 0o644 };
            tokio::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).await?;
        }
        for (path, target) in &plan.links {
            tokio::fs::symlink(target, staging.join(path)).await?;
        }
        Ok(())
    }
}

/// What a restore writes, checked: every path relative and plain, parents before children,
/// nothing below a link.
struct Plan<'a> {
    dirs: Vec<&'a str>,
    files: Vec<(&'a str, &'a String, u64, bool)>,
    links: Vec<(&'a str, &'a String)>,
}

/// `top_links`: whether a link may stand at the top of the directory (not where each entry is
/// a sandbox's own directory, which a link would send elsewhere).
fn plan(manifest: &Manifest, top_links: bool) -> Result<Plan<'_>, String> {
    if manifest.entries.len() > MAX_ENTRIES {
        return Err(format!("it has {} entries, over {MAX_ENTRIES}", manifest.entries.len()));
    }
    let mut plan = Plan { dirs: Vec::new(), files: Vec::new(), links: Vec::new() };
    let mut dirs: HashSet<&str> = HashSet::new();
    let mut total = 0u64;
    for (path, entry) in &manifest.entries {
        let plain = !path.is_empty()
            && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
            && !path.contains('\0');
        if !plain {
            return Err(format!("it names the path `{path}`, which is not a plain relative path"));
        }
        // BTreeMap order puts a parent before its children; a child of anything but a
        // directory (a link, a file) would be written through it.
        if let Some((parent, _)) = path.rsplit_once('/')
            && !dirs.contains(parent)
        {
            return Err(format!("`{path}` is not inside a directory of the snapshot"));
        }
        match entry {
            Entry::Dir => {
                dirs.insert(path);
                plan.dirs.push(path);
            }
            Entry::File { sha256, size, executable } => {
                if *size > MAX_FILE {
                    return Err(format!("`{path}` is {size} bytes, over {MAX_FILE}"));
                }
                total = total.saturating_add(*size);
                if total > MAX_TOTAL {
                    return Err(format!("its files hold over {MAX_TOTAL} bytes"));
                }
                plan.files.push((path, sha256, *size, *executable));
            }
            Entry::Symlink { .. } if !top_links && !path.contains('/') => {
                return Err(format!("`{path}` is a link where a directory of its own belongs"));
            }
            Entry::Symlink { target } => plan.links.push((path, target)),
        }
    }
    Ok(plan)
}

/// Opens `root/rel` without following a link at its end (nor blocking on a FIFO), and only if
/// the descriptor is that very path: a parent swapped for a link leads elsewhere and yields
/// `None`, as does a directory where a file was asked for (`dir` false) or the reverse.
fn open_inside(root: &Path, rel: &str, dir: bool) -> io::Result<Option<std::fs::File>> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    let mut flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    let Ok(file) = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(&path)
    else {
        return Ok(None);
    };
    let real =
        std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file)))?;
    let kind = file.metadata()?.file_type();
    if real != path || (if dir { !kind.is_dir() } else { !kind.is_file() }) {
        return Ok(None);
    }
    Ok(Some(file))
}

/// The contents of the regular file `root/rel` (at most [`MAX_FILE`] bytes), read as
/// [`open_inside`] opens it; `None` when it is no longer such a file or grew past the limit.
fn read_inside(root: &Path, rel: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let Some(file) = open_inside(root, rel, false)? else { return Ok(None) };
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE).then_some(bytes))
}

/// Walks `dir` (never through links) into a manifest; returns it, the updated cache, and the
/// files whose contents were read, by hash.
fn scan(dir: &Path, mut seen: Seen) -> io::Result<Scan> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{SFlag, fstatat};
    let mut manifest =
        Manifest { format: MANIFEST_FORMAT, entries: BTreeMap::new(), left_out: Vec::new() };
    let mut read = HashMap::new();
    let mut total = 0u64;
    let mut next_seen = HashMap::new();
    if !dir.exists() {
        return Ok(Scan { manifest, seen: next_seen, read });
    }
    let dir = &dir.canonicalize()?;
    let mut stack = vec![String::new()];
    while let Some(relative) = stack.pop() {
        // Listed through a descriptor opened without following links and checked to be where
        // it should: a tool that swapped a directory for a link since cannot point this walk
        // (which may run as root) at a host directory.
        let Some(handle) = open_inside(dir, &relative, true)? else {
            manifest.left_out.push(format!("{relative}: changed while it was read, or unreadable"));
            continue;
        };
        let listing = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle));
        let mut children: Vec<_> = std::fs::read_dir(&listing)?.collect::<Result<_, _>>()?;
        children.sort_by_key(std::fs::DirEntry::file_name);
        for child in children {
            let Ok(name) = child.file_name().into_string() else {
                // Read lossily, two such names could become one: not carried at all.
                let lossy = child.file_name().to_string_lossy().into_owned();
                manifest.left_out.push(format!("{relative}/{lossy}: not a UTF-8 name"));
                continue;
            };
            let rel = if relative.is_empty() { name } else { format!("{relative}/{name}") };
            if manifest.entries.len() >= MAX_ENTRIES {
                manifest.left_out.push(format!("{rel}: over {MAX_ENTRIES} entries"));
                continue;
            }
            // Looked at through the listed directory's descriptor, never through its path.
            let name = child.file_name();
            let Ok(stat) = fstatat(&handle, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                manifest.left_out.push(format!("{rel}: changed while it was read, or unreadable"));
                continue;
            };
            let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
            if kind == SFlag::S_IFDIR {
                manifest.entries.insert(rel.clone(), Entry::Dir);
                stack.push(rel);
            } else if kind == SFlag::S_IFLNK {
                let Ok(target) = nix::fcntl::readlinkat(&handle, name.as_os_str()) else {
                    manifest
                        .left_out
                        .push(format!("{rel}: changed while it was read, or unreadable"));
                    continue;
                };
                manifest
                    .entries
                    .insert(rel, Entry::Symlink { target: target.to_string_lossy().into_owned() });
            } else if kind == SFlag::S_IFREG {
                let size = u64::try_from(stat.st_size).unwrap_or(0);
                if size > MAX_FILE {
                    manifest.left_out.push(format!("{rel}: {size} bytes, over {MAX_FILE}"));
                    continue;
                }
                if total + size > MAX_TOTAL {
                    manifest.left_out.push(format!("{rel}: past {MAX_TOTAL} bytes in all"));
                    continue;
                }
                total += size;
                let now = stamp(&stat);
                let sha256 = match seen.remove(&rel) {
                    Some((was, hash)) if was == now => hash,
                    _ => {
                        let Some(bytes) = read_inside(dir, &rel)? else {
                            manifest
                                .left_out
                                .push(format!("{rel}: changed while it was read, or unreadable"));
                            continue;
                        };
                        let hash = sha256_hex(&bytes);
                        read.entry(hash.clone()).or_insert_with(Vec::new).push(rel.clone());
                        hash
                    }
                };
                next_seen.insert(rel.clone(), (now, sha256.clone()));
                let executable = stat.st_mode & 0o111 != 0;
                manifest.entries.insert(rel, Entry::File { sha256, size, executable });
            } else {
                manifest.left_out.push(format!("{rel}: not a file, directory or link"));
            }
        }
    }
    Ok(Scan { manifest, seen: next_seen, read })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(entries: &[(&str, Entry)]) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            entries: entries.iter().map(|(p, e)| ((*p).to_owned(), e.clone())).collect(),
            left_out: Vec::new(),
        }
    }

    fn file() -> Entry {
        Entry::File { sha256: "00".to_owned(), size: 0, executable: false }
    }

    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::store::{Commit, Expect, NewRun};

    async fn leased_run(store: &Arc<dyn Store>) -> Fence {
        let run = NewRun {
            run_id: "r1".to_owned(),
            continuation_token: "ash:t".to_owned(),
            mode: ash_protocol::RunMode::Task,
        };
        store
            .create_run(run, Commit::new(Expect::Status(ash_protocol::RunStatus::Queued)))
            .await
            .unwrap();
        store.acquire_lease("r1", "a", Duration::from_secs(60)).await.unwrap().unwrap()
    }

    /// Lists a directory: path, kind, mode and contents (or link target).
    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(next) = stack.pop() {
            for entry in std::fs::read_dir(&next).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let what = if meta.is_symlink() {
                    format!("link {}", std::fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    "dir".to_owned()
                } else {
                    let mode = meta.permissions().mode() & 0o111;
                    format!(
                        "file {mode:o} {}",
                        String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                    )
                };
                out.push((rel, what));
            }
        }
        out.sort();
        out
    }

    /// One node saves, another (its own directory) restores the same files; a change uploads
    /// only what changed; the first node, behind, is brought up to date; a tampered content
    /// is refused.
    #[tokio::test]
    async fn a_directory_moves_between_nodes_through_the_store() {
        let store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
        let fence = leased_run(&store).await;
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let here = one.path().join("r1");
        std::fs::create_dir_all(here.join("src/deep")).unwrap();
        std::fs::write(here.join("notes.txt"), "forecast: rain").unwrap();
        std::fs::write(here.join("src/deep/run.sh"), "#!/bin/sh\necho hi").unwrap();
        std::fs::set_permissions(
            here.join("src/deep/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(here.join("empty")).unwrap();
        std::os::unix::fs::symlink("notes.txt", here.join("latest")).unwrap();
        let mut node_one = Carried::new(Area::Workspace, here.clone());
        node_one.save(store.as_ref(), "r1", &fence).await.unwrap();

        let there = two.path().join("r1");
        let mut node_two = Carried::new(Area::Workspace, there.clone());
        let id = node_two.restore(store.as_ref(), "r1").await.unwrap().expect("restored");
        assert_eq!(listing(&there), listing(&here));
        assert!(node_two.restore(store.as_ref(), "r1").await.unwrap().is_some(), "not marked yet");
        node_two.mark(&id).await.unwrap();
        assert_eq!(node_two.restore(store.as_ref(), "r1").await.unwrap(), None, "already current");

        // Node two works on: one file changes, one is removed.
        std::fs::write(there.join("notes.txt"), "forecast: sun").unwrap();
        std::fs::remove_file(there.join("src/deep/run.sh")).unwrap();
        let fence = store.acquire_lease("r1", "b", Duration::from_secs(60)).await.unwrap();
        assert!(fence.is_none(), "a still holds it");
        let fence = store.acquire_lease("r1", "a", Duration::from_secs(60)).await.unwrap().unwrap();
        node_two.save(store.as_ref(), "r1", &fence).await.unwrap();
        assert!(
            node_one.restore(store.as_ref(), "r1").await.unwrap().is_some(),
            "node one was behind"
        );
        assert_eq!(listing(&here), listing(&there));
        assert_eq!(std::fs::read_to_string(here.join("notes.txt")).unwrap(), "forecast: sun");

        // Contents that do not match their hash are refused, and nothing is replaced.
        let manifest: Manifest =
            serde_json::from_str(&store.snapshot("r1", "workspace").await.unwrap().unwrap())
                .unwrap();
        let Some(Entry::File { sha256, .. }) = manifest.entries.get("notes.txt") else { panic!() };
        let forged_store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
        let forged_fence = leased_run(&forged_store).await;
        forged_store.put_blob(sha256, b"forecast: evil").await.unwrap();
        forged_store
            .put_snapshot(
                "r1",
                &forged_fence,
                "workspace",
                &serde_json::to_string(&manifest).unwrap(),
            )
            .await
            .unwrap();
        let third = tempfile::tempdir().unwrap();
        let mut node_three = Carried::new(Area::Workspace, third.path().join("r1"));
        let error = node_three.restore(forged_store.as_ref(), "r1").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the stored snapshot of `workspace` cannot be used: the contents of `notes.txt` do not match their hash"
        );
        assert!(!third.path().join("r1").exists());
    }

    /// What a tool in the directory can plant for the scan, which may run as root: links (to
    /// a host file, to a host directory, as a parent), a FIFO (a read would block forever).
    /// None of it is followed or read; the host's files stay out of the snapshot.
    #[test]
    fn a_scan_reads_nothing_outside_its_directory() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "host secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("ok.txt"), "fine").unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), root.join("file-link")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("dir-link")).unwrap();
        nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_inside(&root, "ok.txt").unwrap().as_deref(), Some(&b"fine"[..]));
        for rel in ["file-link", "dir-link/secret", "pipe", "missing"] {
            assert_eq!(read_inside(&root, rel).unwrap(), None, "{rel}");
        }
        assert!(open_inside(&root, "dir-link", true).unwrap().is_none(), "a linked directory");
        let Scan { manifest, read, .. } = scan(&root, HashMap::new()).unwrap();
        let text = serde_json::to_string(&manifest).unwrap();
        assert!(!text.contains("secret") || text.contains("\"target\""), "{text}");
        assert_eq!(read.len(), 1, "only ok.txt was read: {read:?}");
        assert_eq!(manifest.left_out, ["pipe: not a file, directory or link"]);
    }

    /// A stale lease cannot store a snapshot.
    #[tokio::test]
    async fn a_stale_lease_cannot_save() {
        let store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
        let old = leased_run(&store).await;
        let _new = store.acquire_lease("r1", "a", Duration::from_secs(60)).await.unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let mut carried = Carried::new(Area::Workspace, dir.path().to_path_buf());
        let error = carried.save(store.as_ref(), "r1", &old).await.unwrap_err();
        assert!(matches!(error, CarryError::Store(StoreError::Conflict { .. })), "{error}");
    }

    #[test]
    fn a_hostile_manifest_is_refused_before_anything_is_written() {
        let link = Entry::Symlink { target: "/etc".to_owned() };
        let cases: Vec<(Manifest, &str)> = vec![
            (manifest(&[("../x", file())]), "`../x`"),
            (manifest(&[("/etc/passwd", file())]), "`/etc/passwd`"),
            (manifest(&[("a/./b", file())]), "`a/./b`"),
            (manifest(&[("", file())]), "``"),
            // A file written through a link to a host directory.
            (manifest(&[("a", link), ("a/passwd", file())]), "`a/passwd` is not inside"),
            (manifest(&[("f", file()), ("f/x", file())]), "`f/x` is not inside"),
            (manifest(&[("missing/x", file())]), "`missing/x` is not inside"),
        ];
        for (manifest, expected) in cases {
            let error = plan(&manifest, true).err().unwrap_or_default();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        assert!(plan(&manifest(&[("a", Entry::Dir), ("a/b", file())]), true).is_ok());
        let top_link = manifest(&[("py", Entry::Symlink { target: "/home/ash".to_owned() })]);
        assert!(plan(&top_link, true).is_ok(), "a link in a workspace is the user's");
        let error = plan(&top_link, false).err().unwrap_or_default();
        assert_eq!(error, "`py` is a link where a directory of its own belongs");
    }
}
