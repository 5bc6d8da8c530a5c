//! Writing entries into a fresh directory without ever writing through a link.
//!
//! Every path was checked by the tar reader (relative, no `.`/`..`, no `.git`, valid names).
//! Here: no duplicates, no entry below a symlink or a file, and every entry created relative to
//! its parent directory's open handle (`mkdirat`, `symlinkat`, `openat` with `O_EXCL` and
//! `O_NOFOLLOW`; directories opened with `O_NOFOLLOW`), from a root opened once: a directory
//! swapped for a link while the tree is filled is never followed. At the end every symlink must
//! resolve inside the destination. On failure the caller discards everything written.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, Permissions};
use std::io::{Read, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat, mkdirat};

use sha2::{Digest as _, Sha256};

use crate::error::PackError;
use crate::paths::MAX_HOPS;
use crate::tar::TarReader;
use crate::walk::{Entry, EntryKind};

/// A destination directory being filled.
pub(crate) struct Destination {
    root: PathBuf,
    /// The root, opened once.
    root_fd: OwnedFd,
    /// The directories open from the root down to where the last entry went (node, handle):
    /// entries come in path order, so consecutive ones share most of it.
    open: Vec<(u32, OwnedFd)>,
    /// Whether `prepare` created the root (else it existed, empty).
    created: bool,
    /// Everything placed so far, as a tree: node 0 is the root. Looking a path up costs its
    /// length, whatever its depth.
    nodes: Vec<Node>,
    /// Symlinks placed: their node and the directories from the root down to their parent.
    links: Vec<(u32, Vec<u32>)>,
    kept: bool,
}

/// One placed entry.
struct Node {
    kind: EntryKind,
    /// Named by the archive (else a directory made implicitly as a parent).
    named: bool,
    /// A symlink's target.
    target: Option<String>,
    /// A directory's children by name.
    children: HashMap<Box<str>, u32>,
    /// The path, for messages.
    path: String,
}

impl Node {
    fn new(kind: EntryKind, named: bool, path: String, target: Option<String>) -> Self {
        Self { kind, named, target, children: HashMap::new(), path }
    }
}

/// Total steps (path components looked up) that checking every symlink of one package may
/// take: resolving crafted chains of links costs this much at most, then the package is
/// refused.
const LINK_STEPS: usize = 1 << 22;

impl Destination {
    /// Creates `path` (its parent must exist), or takes it if it is an empty directory.
    pub(crate) fn prepare(path: &Path) -> Result<Self, PackError> {
        let problem = |problem: &str| PackError::Destination {
            path: path.display().to_string(),
            problem: problem.to_owned(),
        };
        let created = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                use std::os::unix::fs::MetadataExt as _;
                // Nobody else may write into the tree while it is filled.
                if meta.uid() != nix::unistd::geteuid().as_raw() {
                    return Err(problem(
                        "belongs to another user; unpack into a directory of your own",
                    ));
                }
                if meta.mode() & 0o022 != 0 {
                    return Err(problem(
                        "others may write to it; unpack into a directory only you can write \
                         (chmod go-w)",
                    ));
                }
                let mut items = fs::read_dir(path).map_err(|e| PackError::io(path, &e))?;
                if items.next().is_some() {
                    return Err(problem("not empty; unpack into a new or empty directory"));
                }
                false
            }
            Ok(_) => return Err(problem("exists and is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt as _;
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| PackError::io(path, &e))?;
                true
            }
            Err(e) => return Err(PackError::io(path, &e)),
        };
        let root = fs::canonicalize(path).map_err(|e| PackError::io(path, &e))?;
        let root_fd = open_dir(None, &root).map_err(|e| PackError::io(&root, &e))?;
        // The directory opened must be the one checked.
        let opened = fstat(&root_fd).map_err(|e| PackError::io(&root, &e.into()))?;
        let checked = fs::symlink_metadata(path).map_err(|e| PackError::io(path, &e))?;
        if (opened.st_dev, opened.st_ino) != (checked.dev(), checked.ino()) {
            return Err(problem("was replaced while it was checked"));
        }
        let top = Node::new(EntryKind::Dir, true, String::new(), None);
        Ok(Self {
            root,
            root_fd,
            open: Vec::new(),
            created,
            nodes: vec![top],
            links: Vec::new(),
            kept: false,
        })
    }

    /// The handle of the deepest open directory.
    fn dir_fd(&self) -> BorrowedFd<'_> {
        self.open.last().map_or_else(|| self.root_fd.as_fd(), |(_, fd)| fd.as_fd())
    }

    fn child(&self, dir: u32, name: &str) -> Option<u32> {
        self.nodes.get(dir as usize).and_then(|n| n.children.get(name)).copied()
    }

    fn add(&mut self, parent: u32, name: &str, node: Node) -> u32 {
        let id = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.nodes.push(node);
        if let Some(dir) = self.nodes.get_mut(parent as usize) {
            dir.children.insert(name.into(), id);
        }
        id
    }

    /// Places one entry, reading a file's data from `tar`; returns the manifest hash (file
    /// content, link target, or zeros for a directory).
    pub(crate) fn place<R: Read>(
        &mut self,
        entry: &Entry,
        tar: &mut TarReader<R>,
        buf: &mut [u8],
    ) -> Result<[u8; 32], PackError> {
        let refuse = |problem: String| PackError::Destination { path: entry.path.clone(), problem };
        // Parents: directories made here (from the archive or implicitly), never links or files.
        let (parents, name) = match entry.path.rsplit_once('/') {
            Some((parents, name)) => (Some(parents), name),
            None => (None, entry.path.as_str()),
        };
        let mut dir = 0u32;
        let mut chain = vec![0u32];
        if let Some(parents) = parents {
            let mut end = 0;
            for (depth, part) in parents.split('/').enumerate() {
                end += part.len();
                let prefix = &entry.path[..end];
                end += 1;
                let (id, new) = match self.child(dir, part) {
                    Some(id) if self.nodes[id as usize].kind == EntryKind::Dir => (id, false),
                    Some(_) => {
                        return Err(refuse(format!(
                            "parent `{prefix}` is not a directory in this package"
                        )));
                    }
                    None => {
                        let node = Node::new(EntryKind::Dir, false, prefix.to_owned(), None);
                        (self.add(dir, part, node), true)
                    }
                };
                dir = id;
                chain.push(dir);
                if self.open.get(depth).is_some_and(|(open, _)| *open == id) {
                    continue;
                }
                self.open.truncate(depth);
                let abs = || self.root.join(prefix);
                if new {
                    mkdirat(self.dir_fd(), part, Mode::from_bits_truncate(0o777))
                        .map_err(|e| PackError::io(&abs(), &e.into()))?;
                }
                let fd = open_dir(Some(self.dir_fd()), Path::new(part))
                    .map_err(|e| PackError::io(&abs(), &e))?;
                self.open.push((id, fd));
            }
            self.open.truncate(chain.len() - 1);
        } else {
            self.open.clear();
        }
        let abs = self.root.join(&entry.path);
        if let Some(id) = self.child(dir, name) {
            let node = &mut self.nodes[id as usize];
            if node.kind == EntryKind::Dir && !node.named && entry.kind == EntryKind::Dir {
                node.named = true;
                return Ok([0; 32]);
            }
            return Err(refuse("appears twice in the package".to_owned()));
        }
        let mut target = None;
        let hash = match entry.kind {
            EntryKind::Dir => {
                mkdirat(self.dir_fd(), name, Mode::from_bits_truncate(0o777))
                    .map_err(|e| PackError::io(&abs, &e.into()))?;
                [0; 32]
            }
            EntryKind::Symlink => {
                let link = entry.target.clone().unwrap_or_default();
                nix::unistd::symlinkat(link.as_str(), self.dir_fd(), name)
                    .map_err(|e| PackError::io(&abs, &e.into()))?;
                let hash = Sha256::digest(&link).into();
                target = Some(link);
                hash
            }
            EntryKind::File => {
                let flags = OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                let mut file = openat(self.dir_fd(), name, flags, Mode::from_bits_truncate(0o600))
                    .map(File::from)
                    .map_err(|e| PackError::io(&abs, &e.into()))?;
                let mut hasher = Sha256::new();
                loop {
                    let n = tar.read_data(buf).map_err(PackError::from_stream)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n]).map_err(|e| PackError::io(&abs, &e))?;
                }
                // fchmod on the open file: exact mode, whatever the umask.
                file.set_permissions(Permissions::from_mode(entry.mode))
                    .map_err(|e| PackError::io(&abs, &e))?;
                hasher.finalize().into()
            }
        };
        let is_link = target.is_some();
        let node = Node::new(entry.kind, true, entry.path.clone(), target);
        let id = self.add(dir, name, node);
        if is_link {
            self.links.push((id, chain));
        }
        Ok(hash)
    }

    /// Every symlink must resolve inside the destination, now that the tree is complete. Links
    /// are followed through the tree as placed (as the kernel would follow them); a `..` above
    /// the root, an absolute target, a loop or more than [`LINK_STEPS`] steps in all refuse the
    /// package. Missing components resolve lexically (a dangling link inside is fine).
    pub(crate) fn check_links(&self) -> Result<(), PackError> {
        let mut budget = LINK_STEPS;
        for (link, chain) in &self.links {
            let node = &self.nodes[*link as usize];
            let refuse = |problem: &str| PackError::Destination {
                path: node.path.clone(),
                problem: problem.to_owned(),
            };
            if !self.resolves_inside(*link, chain.clone(), &mut budget) {
                if budget == 0 {
                    return Err(refuse("its symlinks take too long to resolve"));
                }
                return Err(refuse("symlink resolves outside the package"));
            }
        }
        Ok(())
    }

    /// Follows the link `link`, whose parent directories from the root are `stack`.
    fn resolves_inside(&self, link: u32, mut stack: Vec<u32>, budget: &mut usize) -> bool {
        /// A component that does not exist: nothing below it exists either.
        const MISSING: u32 = u32::MAX;
        let Some(target) = self.nodes[link as usize].target.as_deref() else { return false };
        if target.starts_with('/') {
            return false;
        }
        let mut pending: VecDeque<&str> = target.split('/').collect();
        let mut hops = 0;
        while let Some(part) = pending.pop_front() {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            match part {
                "" | "." => {}
                ".." => {
                    stack.pop();
                    if stack.is_empty() {
                        return false;
                    }
                }
                name => {
                    let here = stack.last().copied().unwrap_or(MISSING);
                    let Some(id) = (here != MISSING).then(|| self.child(here, name)).flatten()
                    else {
                        stack.push(MISSING);
                        continue;
                    };
                    let node = &self.nodes[id as usize];
                    match (&node.kind, node.target.as_deref()) {
                        (EntryKind::Symlink, Some(next)) => {
                            hops += 1;
                            if hops > MAX_HOPS || next.starts_with('/') {
                                return false;
                            }
                            for part in next.split('/').rev() {
                                pending.push_front(part);
                            }
                        }
                        (EntryKind::Dir, _) => stack.push(id),
                        _ => stack.push(MISSING),
                    }
                }
            }
        }
        true
    }

    /// Keeps what was written.
    pub(crate) fn keep(&mut self) {
        self.kept = true;
    }

    /// Removes what was written (the root too, if `prepare` created it), unless kept.
    fn remove(&mut self) {
        if self.kept {
            return;
        }
        self.kept = true;
        // `remove_dir_all` does not follow symlinks.
        if self.created {
            let _ = fs::remove_dir_all(&self.root);
        } else if let Ok(items) = fs::read_dir(&self.root) {
            for item in items.flatten() {
                let path = item.path();
                let _ = if item.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }
}

/// Opens a directory (relative to `parent` if given) without following a link to it.
fn open_dir(parent: Option<BorrowedFd<'_>>, path: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match parent {
        Some(parent) => openat(parent, path, flags, Mode::empty()),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    };
    fd.map_err(std::io::Error::from)
}

impl Drop for Destination {
    fn drop(&mut self) {
        self.remove();
    }
}
