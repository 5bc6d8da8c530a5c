//! All or nothing for [`apply`](crate::apply): before git writes anything, the state of every
//! path a patch touches (and of the directories above them) is kept in a journal outside the
//! tree. If git fails part-way (a conflict it found late, a full disk) the journal is played
//! back; if the process dies, the next apply to the same tree plays it back before doing
//! anything else. Only then is the journal removed.
//!
//! A journal is one file, written and synced before it is renamed into place: a crash while
//! writing it leaves only a `.tmp` file, and the tree untouched. Playing it back is idempotent,
//! so a crash during recovery is recovered by the next run in turn. One apply at a time writes
//! to a tree: the journal directory is locked.
//!
//! Layout under the journal root: `<root>/<first 16 bytes of sha256(canonical tree), hex>/`
//! holding `lock`, `tree` (the tree's path, for people), `preimages` and `kept/` (files kept
//! as hard links when the journal and the tree share a filesystem: git replaces the files it
//! changes and never writes into them).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::diff::DiffError;

/// First bytes of a journal file.
const MAGIC: &[u8; 8] = b"ashjrn1\n";
/// Longest path or link target a journal record holds.
const MAX_NAME: u32 = 64 << 10;

/// What was at a path before the apply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Before {
    /// Nothing: whatever file or link is there now goes.
    Absent,
    /// A directory that did not exist: removed if it is empty.
    AbsentDir,
    /// A directory with this mode: created again if the patch removed it or put a file there.
    Dir(u32),
    /// A regular file with this mode; its bytes follow in the journal.
    File(u32, u64),
    /// A symlink to this target.
    Link(Vec<u8>),
}

const TAG_ABSENT: u8 = 0;
const TAG_ABSENT_DIR: u8 = 1;
const TAG_DIR: u8 = 2;
const TAG_FILE: u8 = 3;
const TAG_LINK: u8 = 4;
const TAG_END: u8 = 0xff;
/// A file's bytes follow its record.
const STORED_INLINE: u8 = 0;
/// A file is kept as a hard link under `kept/`, named by its number.
const STORED_LINKED: u8 = 1;

/// The journal of one tree, locked for as long as it lives.
pub(crate) struct Journal {
    dir: PathBuf,
    tree: PathBuf,
    lock: File,
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Unlocked explicitly: a process forked meanwhile (git, by another thread) shares the
        // open file and would hold the lock until it execs.
        let _ = self.lock.unlock();
    }
}

fn io_error(path: &Path, e: &io::Error) -> DiffError {
    DiffError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl Journal {
    /// Locks the journal of `tree` (canonical) under `root`, creating it 0700; another apply
    /// writing to the same tree is an error, not a wait.
    pub(crate) fn lock(root: &Path, tree: &Path) -> Result<Self, DiffError> {
        let key = Sha256::digest(tree.as_os_str().as_bytes());
        let dir = root.join(ash_identity::encode_hex(&key[..16]));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error(&dir, &e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DiffError::Busy(tree.display().to_string()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(&lock_path, &e)),
        }
        let note = dir.join("tree");
        fs::write(&note, tree.as_os_str().as_bytes()).map_err(|e| io_error(&note, &e))?;
        Ok(Self { dir, tree: tree.to_path_buf(), lock })
    }

    fn preimages(&self) -> PathBuf {
        self.dir.join("preimages")
    }

    /// Where files kept as hard links live.
    fn kept(&self) -> PathBuf {
        self.dir.join("kept")
    }

    /// Whether an interrupted apply left pre-images to play back.
    pub(crate) fn pending(&self) -> bool {
        self.preimages().exists()
    }

    /// Plays back a journal an interrupted apply left, and removes it. What was there then
    /// and differs from the pre-images is moved aside, not lost.
    pub(crate) fn recover(&self) -> Result<Recovered, DiffError> {
        let tmp = self.dir.join("preimages.tmp");
        // An unfinished journal means git never ran.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&tmp, &e)),
        }
        if !self.preimages().exists() {
            // Links left by a crash after the journal was dropped.
            remove_all(&self.kept())?;
            return Ok(Recovered::default());
        }
        let done = self.play_back(true)?;
        self.forget()?;
        Ok(done)
    }

    /// Records what is now at each of `paths` (relative to the tree) and at the directories
    /// above them; the tree may be written once this returns.
    pub(crate) fn record<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), DiffError> {
        let mut before: BTreeMap<PathBuf, Before> = BTreeMap::new();
        for path in paths {
            let relative = PathBuf::from(path);
            // The directories above, shallowest first; below a missing one (or a file the
            // patch turns into a directory), all are missing.
            let mut missing = false;
            for ancestor in relative.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev() {
                if ancestor.as_os_str().is_empty() {
                    continue;
                }
                if let Some(known) = before.get(ancestor) {
                    missing = missing || !matches!(known, Before::Dir(_));
                    continue;
                }
                if missing {
                    before.insert(ancestor.to_path_buf(), Before::AbsentDir);
                    continue;
                }
                match self.state_of(ancestor)? {
                    Before::Dir(mode) => {
                        before.insert(ancestor.to_path_buf(), Before::Dir(mode));
                    }
                    Before::Absent => {
                        missing = true;
                        before.insert(ancestor.to_path_buf(), Before::AbsentDir);
                    }
                    // A file or link the patch replaces with a directory: the patch names it.
                    _ => missing = true,
                }
            }
            let state = if missing { Before::Absent } else { self.state_of(&relative)? };
            before.insert(relative, state);
        }
        let kept = self.kept();
        remove_all(&kept)?;
        fs::DirBuilder::new().mode(0o700).create(&kept).map_err(|e| io_error(&kept, &e))?;
        // Git replaces a file it changes (a new file, renamed over), never writes into it: a
        // hard link keeps the old contents at the cost of a name. Across filesystems, or where
        // links are not allowed, the bytes are copied into the journal.
        let mut linking = true;
        let mut links = 0u64;
        let tmp = self.dir.join("preimages.tmp");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_error(&tmp, &e))?;
        let mut out = BufWriter::with_capacity(256 << 10, file);
        let written = (|| -> Result<(), DiffError> {
            let w = |out: &mut BufWriter<File>, bytes: &[u8]| {
                out.write_all(bytes).map_err(|e| io_error(&tmp, &e))
            };
            w(&mut out, MAGIC)?;
            for (path, state) in &before {
                let name = path.as_os_str().as_bytes();
                let tag = match state {
                    Before::Absent => TAG_ABSENT,
                    Before::AbsentDir => TAG_ABSENT_DIR,
                    Before::Dir(_) => TAG_DIR,
                    Before::File(..) => TAG_FILE,
                    Before::Link(_) => TAG_LINK,
                };
                w(&mut out, &[tag])?;
                w(&mut out, &u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes())?;
                w(&mut out, name)?;
                match state {
                    Before::Absent | Before::AbsentDir => {}
                    Before::Dir(mode) => w(&mut out, &mode.to_le_bytes())?,
                    Before::File(mode, len) => {
                        w(&mut out, &mode.to_le_bytes())?;
                        w(&mut out, &len.to_le_bytes())?;
                        let full = self.tree.join(path);
                        if linking {
                            let name = kept.join(links.to_string());
                            match fs::hard_link(&full, &name) {
                                Ok(()) => {
                                    let size = fs::symlink_metadata(&name)
                                        .map_err(|e| io_error(&name, &e))?
                                        .len();
                                    if size != *len {
                                        return Err(DiffError::Io {
                                            path: full.display().to_string(),
                                            message: "changed while it was being saved".to_owned(),
                                        });
                                    }
                                    w(&mut out, &[STORED_LINKED])?;
                                    w(&mut out, &links.to_le_bytes())?;
                                    links += 1;
                                    continue;
                                }
                                Err(_) => linking = false,
                            }
                        }
                        w(&mut out, &[STORED_INLINE])?;
                        let mut source = OpenOptions::new()
                            .read(true)
                            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                            .open(&full)
                            .map_err(|e| io_error(&full, &e))?;
                        let copied = io::copy(&mut (&mut source).take(*len), &mut out)
                            .map_err(|e| io_error(&tmp, &e))?;
                        if copied != *len {
                            return Err(DiffError::Io {
                                path: full.display().to_string(),
                                message: "changed while it was being saved".to_owned(),
                            });
                        }
                    }
                    Before::Link(target) => {
                        w(
                            &mut out,
                            &u32::try_from(target.len()).unwrap_or(u32::MAX).to_le_bytes(),
                        )?;
                        w(&mut out, target)?;
                    }
                }
            }
            w(&mut out, &[TAG_END])?;
            let file = out.into_inner().map_err(|e| io_error(&tmp, e.error()))?;
            file.sync_all().map_err(|e| io_error(&tmp, &e))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let done = self.preimages();
        fs::rename(&tmp, &done).map_err(|e| io_error(&done, &e))?;
        sync_dir(&self.dir)
    }

    /// What is at `relative` now.
    fn state_of(&self, relative: &Path) -> Result<Before, DiffError> {
        let full = self.tree.join(relative);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => Ok(Before::Dir(m.permissions().mode() & 0o7777)),
            Ok(m) if m.is_file() => Ok(Before::File(m.permissions().mode() & 0o7777, m.len())),
            Ok(m) if m.is_symlink() => Ok(Before::Link(
                fs::read_link(&full)
                    .map_err(|e| io_error(&full, &e))?
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )),
            Ok(_) => Err(DiffError::Unsafe {
                path: relative.display().to_string(),
                problem: "is not a file, symlink or directory".to_owned(),
            }),
            Err(e) if gone(&e) => Ok(Before::Absent),
            Err(e) => Err(io_error(&full, &e)),
        }
    }

    /// Plays the journal back after git failed (what it wrote is dropped) and removes it.
    pub(crate) fn roll_back(&self) -> Result<(), DiffError> {
        self.play_back(false)?;
        self.forget()
    }

    /// Drops pre-images that were kept for an apply that will not write after all.
    pub(crate) fn discard(&self) -> Result<(), DiffError> {
        let done = self.preimages();
        fs::remove_file(&done).map_err(|e| io_error(&done, &e))?;
        sync_dir(&self.dir)?;
        remove_all(&self.kept())
    }

    /// Makes the tree durable, then removes the pre-images: after a successful apply, or once
    /// they are played back.
    pub(crate) fn forget(&self) -> Result<(), DiffError> {
        // The journal goes even if the sync fails: keeping it would undo a finished apply.
        let synced = sync_tree(&self.tree);
        self.discard()?;
        synced
    }

    /// Puts every journalled path back as it was: new files and links go, new directories go
    /// if empty, removed directories come back, then files and links are written again.
    fn play_back(&self, displace: bool) -> Result<Recovered, DiffError> {
        let path = self.preimages();
        let corrupt = |what: &str| DiffError::Io {
            path: path.display().to_string(),
            message: format!("the apply journal is damaged ({what}); the tree was not restored"),
        };
        // First pass: the states without file bodies, to order the work.
        let mut states: Vec<(PathBuf, Before, Body)> = Vec::new();
        {
            let mut input = BufReader::with_capacity(
                256 << 10,
                File::open(&path).map_err(|e| io_error(&path, &e))?,
            );
            let mut magic = [0u8; 8];
            input.read_exact(&mut magic).map_err(|_| corrupt("no header"))?;
            if &magic != MAGIC {
                return Err(corrupt("not an apply journal"));
            }
            let mut offset = 8u64;
            loop {
                let tag = read_u8(&mut input).map_err(|_| corrupt("truncated"))?;
                offset += 1;
                if tag == TAG_END {
                    break;
                }
                let name = read_bytes(&mut input).map_err(|_| corrupt("truncated"))?;
                offset += 4 + name.len() as u64;
                let relative = PathBuf::from(std::ffi::OsStr::from_bytes(&name));
                if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
                    return Err(corrupt("a path leaves the tree"));
                }
                let state = match tag {
                    TAG_ABSENT => Before::Absent,
                    TAG_ABSENT_DIR => Before::AbsentDir,
                    TAG_DIR => {
                        offset += 4;
                        Before::Dir(read_u32(&mut input).map_err(|_| corrupt("truncated"))?)
                    }
                    TAG_FILE => {
                        let mode = read_u32(&mut input).map_err(|_| corrupt("truncated"))?;
                        let len = read_u64(&mut input).map_err(|_| corrupt("truncated"))?;
                        let stored = read_u8(&mut input).map_err(|_| corrupt("truncated"))?;
                        offset += 13;
                        if stored == STORED_LINKED {
                            let number = read_u64(&mut input).map_err(|_| corrupt("truncated"))?;
                            offset += 8;
                            states.push((relative, Before::File(mode, len), Body::Linked(number)));
                            continue;
                        }
                        if stored != STORED_INLINE {
                            return Err(corrupt("unknown storage"));
                        }
                        let body = Body::Inline(offset);
                        io::copy(&mut (&mut input).take(len), &mut io::sink())
                            .ok()
                            .filter(|n| *n == len)
                            .ok_or_else(|| corrupt("truncated"))?;
                        offset += len;
                        states.push((relative, Before::File(mode, len), body));
                        continue;
                    }
                    TAG_LINK => {
                        let target = read_bytes(&mut input).map_err(|_| corrupt("truncated"))?;
                        offset += 4 + target.len() as u64;
                        Before::Link(target)
                    }
                    _ => return Err(corrupt("unknown record")),
                };
                states.push((relative, state, Body::None));
            }
        }
        let displaced_dir = self.dir.join("displaced");
        if displace {
            remove_all(&displaced_dir)?;
        }
        let mut done = Recovered::default();
        let mut failed: Vec<String> = Vec::new();
        let mut note = |p: &Path, result: Result<(), DiffError>| {
            if let Err(e) = result {
                failed.push(format!("{}: {e}", p.display()));
            }
        };
        let mut input = File::open(&path).map_err(|e| io_error(&path, &e))?;
        let aside = |p: &Path, done: &mut Recovered| -> Result<(), DiffError> {
            if displace {
                move_aside(&self.tree.join(p), &displaced_dir.join(p))?;
                done.displaced.push(p.display().to_string());
                Ok(())
            } else {
                remove_non_dir(&self.tree.join(p))
            }
        };
        // New files and links go, deepest first (directories that were there stay).
        for (p, state, _) in states.iter().rev() {
            if *state != Before::Absent {
                continue;
            }
            let result = self.no_link_above(p).and_then(|()| {
                match fs::symlink_metadata(self.tree.join(p)) {
                    Ok(m) if m.is_dir() => Ok(()),
                    Ok(_) => aside(p, &mut done),
                    Err(e) if gone(&e) => Ok(()),
                    Err(e) => Err(io_error(&self.tree.join(p), &e)),
                }
            });
            note(p, result);
        }
        // New directories go if nothing else is in them.
        for (p, state, _) in states.iter().rev() {
            if *state != Before::AbsentDir {
                continue;
            }
            let result =
                self.no_link_above(p).and_then(|()| match fs::remove_dir(self.tree.join(p)) {
                    Ok(()) => Ok(()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound
                                | io::ErrorKind::DirectoryNotEmpty
                                | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(io_error(&self.tree.join(p), &e)),
                });
            note(p, result);
        }
        // Directories the patch removed come back, shallowest first.
        for (p, state, _) in &states {
            let Before::Dir(mode) = state else { continue };
            let full = self.tree.join(p);
            let result = self.no_link_above(p).and_then(|()| match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => aside(p, &mut done).and_then(|()| make_dir(&full, *mode)),
                Err(e) if gone(&e) => make_dir(&full, *mode),
                Err(e) => Err(io_error(&full, &e)),
            });
            note(p, result);
        }
        // Files and links are written again, unless they are still as they were.
        for (p, state, body) in &states {
            if matches!(state, Before::Absent | Before::AbsentDir | Before::Dir(_)) {
                continue;
            }
            let full = self.tree.join(p);
            let result = self.no_link_above(p).and_then(|()| {
                if self.unchanged(&full, state, body, &mut input)? {
                    if let Before::File(mode, _) = state {
                        fs::set_permissions(&full, fs::Permissions::from_mode(*mode))
                            .map_err(|e| io_error(&full, &e))?;
                    }
                    return Ok(false);
                }
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {
                        fs::remove_dir(&full).map_err(|e| io_error(&full, &e))?;
                    }
                    Ok(_) => aside(p, &mut done)?,
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(io_error(&full, &e)),
                }
                if let Some(parent) = full.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
                }
                self.write_back(&full, state, body, &mut input)?;
                Ok(true)
            });
            match result {
                Ok(true) => done.restored.push(p.display().to_string()),
                Ok(false) => {}
                Err(e) => note(p, Err(e)),
            }
        }
        if let Some(first) = failed.first() {
            return Err(DiffError::Io {
                path: self.tree.display().to_string(),
                message: format!(
                    "{} path(s) could not be put back, first {first}; to give up restoring them, \
                     remove {}",
                    failed.len(),
                    self.dir.display()
                ),
            });
        }
        if !done.displaced.is_empty() {
            done.kept_in = Some(displaced_dir);
        }
        Ok(done)
    }

    /// A path the journal names must be reached through directories only.
    fn no_link_above(&self, relative: &Path) -> Result<(), DiffError> {
        let mut here = self.tree.clone();
        let parts: Vec<_> = relative.components().collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            here.push(part);
            match fs::symlink_metadata(&here) {
                Ok(m) if m.is_symlink() => {
                    return Err(DiffError::Unsafe {
                        path: relative.display().to_string(),
                        problem: format!("`{}` is now a symlink; not followed", here.display()),
                    });
                }
                Ok(_) => {}
                Err(e) if gone(&e) => break,
                Err(e) => return Err(io_error(&here, &e)),
            }
        }
        Ok(())
    }

    /// Whether what is at `full` is still exactly the pre-image.
    fn unchanged(
        &self,
        full: &Path,
        state: &Before,
        body: &Body,
        input: &mut File,
    ) -> Result<bool, DiffError> {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(now) = fs::symlink_metadata(full) else { return Ok(false) };
        Ok(match (state, body) {
            (Before::Link(target), _) => {
                now.is_symlink()
                    && fs::read_link(full).is_ok_and(|t| t.as_os_str().as_bytes() == target)
            }
            (Before::File(..), Body::Linked(number)) => {
                let kept = fs::symlink_metadata(self.kept().join(number.to_string()))
                    .map_err(|e| io_error(full, &e))?;
                now.is_file() && (now.dev(), now.ino()) == (kept.dev(), kept.ino())
            }
            (Before::File(_, len), Body::Inline(offset)) => {
                if !now.is_file() || now.len() != *len {
                    return Ok(false);
                }
                io::Seek::seek(input, io::SeekFrom::Start(*offset))
                    .map_err(|e| io_error(&self.dir, &e))?;
                let current = File::open(full).map_err(|e| io_error(full, &e))?;
                same_bytes(current, input.take(*len)).map_err(|e| io_error(full, &e))?
            }
            _ => false,
        })
    }

    /// Writes the pre-image of a file or link at `full`, where nothing is now.
    fn write_back(
        &self,
        full: &Path,
        state: &Before,
        body: &Body,
        input: &mut File,
    ) -> Result<(), DiffError> {
        match (state, body) {
            (Before::Link(target), _) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), full)
                    .map_err(|e| io_error(full, &e))
            }
            (Before::File(mode, _), Body::Linked(number)) => {
                fs::hard_link(self.kept().join(number.to_string()), full)
                    .map_err(|e| io_error(full, &e))?;
                fs::set_permissions(full, fs::Permissions::from_mode(*mode))
                    .map_err(|e| io_error(full, &e))
            }
            (Before::File(mode, len), Body::Inline(offset)) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .mode(*mode)
                    .open(full)
                    .map_err(|e| io_error(full, &e))?;
                io::Seek::seek(input, io::SeekFrom::Start(*offset))
                    .map_err(|e| io_error(&self.dir, &e))?;
                let copied =
                    io::copy(&mut input.take(*len), &mut file).map_err(|e| io_error(full, &e))?;
                if copied != *len {
                    return Err(io_error(
                        &self.dir,
                        &io::Error::from(io::ErrorKind::UnexpectedEof),
                    ));
                }
                // The umask may have narrowed the mode.
                file.set_permissions(fs::Permissions::from_mode(*mode))
                    .map_err(|e| io_error(full, &e))
            }
            _ => Ok(()),
        }
    }
}

/// What playing a journal back did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Paths written back as they were before the interrupted apply.
    pub restored: Vec<String>,
    /// Paths whose content then was neither the pre-image nor absent (what the interrupted
    /// apply wrote, or edits made since): moved aside into `kept_in`, never lost.
    pub displaced: Vec<String>,
    /// Where displaced files are, under the journal.
    pub kept_in: Option<PathBuf>,
}

/// Whether two streams hold the same bytes.
fn same_bytes(mut a: impl Read, mut b: impl Read) -> io::Result<bool> {
    let (mut x, mut y) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            let mut rest = [0u8; 1];
            return Ok(b.read(&mut rest)? == 0);
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// Moves the file or link at `from` to `to` (creating its directory), across filesystems too.
fn move_aside(from: &Path, to: &Path) -> Result<(), DiffError> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
    }
    match fs::rename(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != io::ErrorKind::CrossesDevices => return Err(io_error(from, &e)),
        Err(_) => {}
    }
    let meta = fs::symlink_metadata(from).map_err(|e| io_error(from, &e))?;
    if meta.is_symlink() {
        let target = fs::read_link(from).map_err(|e| io_error(from, &e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| io_error(to, &e))?;
    } else {
        fs::copy(from, to).map_err(|e| io_error(to, &e))?;
    }
    fs::remove_file(from).map_err(|e| io_error(from, &e))
}

/// Where a journalled file's bytes are.
enum Body {
    /// Not a file.
    None,
    /// In the journal file, at this offset.
    Inline(u64),
    /// Under `kept/`, by this number.
    Linked(u64),
}

/// Removes a directory and what is in it, if it is there.
fn remove_all(dir: &Path) -> Result<(), DiffError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(dir, &e)),
    }
}

/// Removes the file or link at `path`, if any; a directory there stays.
fn remove_non_dir(path: &Path) -> Result<(), DiffError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path).map_err(|e| io_error(path, &e)),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// Nothing is at the path (or a file is where a directory above it would be).
fn gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn make_dir(path: &Path, mode: u32) -> Result<(), DiffError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| io_error(path, &e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_error(path, &e))
}

/// Flushes the tree's filesystem, so what the journal's removal vouches for is on disk.
fn sync_tree(tree: &Path) -> Result<(), DiffError> {
    let dir = File::open(tree).map_err(|e| io_error(tree, &e))?;
    nix::unistd::syncfs(&dir).map_err(|e| io_error(tree, &io::Error::from(e)))
}

fn sync_dir(dir: &Path) -> Result<(), DiffError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, &e))
}

fn read_u8(input: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    input.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_bytes(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = read_u32(input)?;
    if len > MAX_NAME {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}
