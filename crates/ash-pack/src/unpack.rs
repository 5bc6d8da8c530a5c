//! Writing entries into a fresh directory without ever writing through a link.
//!
//! Every path was checked by the tar reader (relative, no `.`/`..`, no `.git`, valid names).
//! Here: no duplicates, no entry below a symlink or a file, files created with `O_EXCL`, and
//! at the end every symlink must resolve inside the destination. On failure the caller
//! discards everything written.

use std::collections::HashMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{Read, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::PackError;
use crate::paths::link_stays_inside;
use crate::tar::TarReader;
use crate::walk::{Entry, EntryKind};

/// A destination directory being filled.
pub(crate) struct Destination {
    root: PathBuf,
    /// Whether `prepare` created the root (else it existed, empty).
    created: bool,
    /// Everything placed so far, by path; `true` for entries the archive named (directories
    /// can also be made implicitly as parents).
    placed: HashMap<String, (EntryKind, bool)>,
    links: Vec<String>,
    kept: bool,
}

impl Destination {
    /// Creates `path` (its parent must exist), or takes it if it is an empty directory.
    pub(crate) fn prepare(path: &Path) -> Result<Self, PackError> {
        let problem = |problem: &str| PackError::Destination {
            path: path.display().to_string(),
            problem: problem.to_owned(),
        };
        let created = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut items = fs::read_dir(path).map_err(|e| PackError::io(path, &e))?;
                if items.next().is_some() {
                    return Err(problem("not empty; unpack into a new or empty directory"));
                }
                false
            }
            Ok(_) => return Err(problem("exists and is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(path).map_err(|e| PackError::io(path, &e))?;
                true
            }
            Err(e) => return Err(PackError::io(path, &e)),
        };
        let root = fs::canonicalize(path).map_err(|e| PackError::io(path, &e))?;
        Ok(Self { root, created, placed: HashMap::new(), links: Vec::new(), kept: false })
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
        for (end, _) in entry.path.match_indices('/') {
            let parent = &entry.path[..end];
            match self.placed.get(parent) {
                Some((EntryKind::Dir, _)) => {}
                Some(_) => {
                    return Err(refuse(format!(
                        "parent `{parent}` is not a directory in this package"
                    )));
                }
                None => {
                    let abs = self.root.join(parent);
                    fs::create_dir(&abs).map_err(|e| PackError::io(&abs, &e))?;
                    self.placed.insert(parent.to_owned(), (EntryKind::Dir, false));
                }
            }
        }
        let abs = self.root.join(&entry.path);
        match self.placed.get(&entry.path) {
            Some((EntryKind::Dir, false)) if entry.kind == EntryKind::Dir => {
                self.placed.insert(entry.path.clone(), (EntryKind::Dir, true));
                return Ok([0; 32]);
            }
            Some(_) => return Err(refuse("appears twice in the package".to_owned())),
            None => {}
        }
        let hash = match entry.kind {
            EntryKind::Dir => {
                fs::create_dir(&abs).map_err(|e| PackError::io(&abs, &e))?;
                [0; 32]
            }
            EntryKind::Symlink => {
                let target = entry.target.as_deref().unwrap_or("");
                std::os::unix::fs::symlink(target, &abs).map_err(|e| PackError::io(&abs, &e))?;
                self.links.push(entry.path.clone());
                Sha256::digest(target).into()
            }
            EntryKind::File => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&abs)
                    .map_err(|e| PackError::io(&abs, &e))?;
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
        self.placed.insert(entry.path.clone(), (entry.kind, true));
        Ok(hash)
    }

    /// Every symlink must resolve inside the destination, now that the tree is complete.
    pub(crate) fn check_links(&self) -> Result<(), PackError> {
        for link in &self.links {
            if !link_stays_inside(&self.root, link) {
                return Err(PackError::Destination {
                    path: link.clone(),
                    problem: "symlink resolves outside the package".to_owned(),
                });
            }
        }
        Ok(())
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

impl Drop for Destination {
    fn drop(&mut self) {
        self.remove();
    }
}
