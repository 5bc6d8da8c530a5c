//! Session workspaces: one directory per session, seeded with the agent's skill files, and the
//! path rules that keep `read_file` / `write_file` inside it.

use std::io;
use std::path::{Component, Path, PathBuf};

use ash_spec::Package;

/// A session's workspace root (absolute and canonical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workspace {
    root: PathBuf,
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PathError {
    /// Empty path.
    #[error("the path is empty")]
    Empty,
    /// It leaves the workspace lexically or through a link.
    #[error("`{0}` is outside the workspace; use a path relative to the workspace root")]
    Outside(String),
    /// It holds a NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
}

impl Workspace {
    /// Creates (if needed) `<workspaces>/<run_id>` and seeds `skills/` from the package's
    /// skill files under `project_dir`. Seeding happens once, when the directory is created.
    pub(crate) fn open(
        workspaces: &Path,
        run_id: &str,
        project_dir: &Path,
        package: &Package,
        sandbox: &ash_sandbox::Sandbox,
    ) -> io::Result<Self> {
        let dir = workspaces.join(run_id);
        if !dir.exists() {
            let staging = workspaces.join(format!(".{run_id}.tmp"));
            if staging.exists() {
                std::fs::remove_dir_all(&staging)?;
            }
            std::fs::create_dir_all(&staging)?;
            seed_skills(&staging, project_dir, package)?;
            // Closed to other local users, and owned by the user tools run as.
            sandbox.adopt(&staging).map_err(io::Error::other)?;
            // Rename makes a half-seeded workspace impossible after a crash.
            std::fs::rename(&staging, &dir)?;
        }
        Ok(Self { root: dir.canonicalize()? })
    }

    /// A directory the caller made, used as it is (nothing seeded).
    pub(crate) fn fixed(dir: &Path) -> io::Result<Self> {
        Ok(Self { root: dir.canonicalize()? })
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` (relative to the root, or absolute inside it) to a location inside the
    /// workspace whose existing part contains no link leading out.
    pub(crate) fn resolve(&self, path: &str) -> Result<PathBuf, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.contains('\0') {
            return Err(PathError::Nul);
        }
        let outside = || PathError::Outside(path.to_owned());
        let candidate = Path::new(path);
        let relative = if candidate.is_absolute() {
            candidate.strip_prefix(&self.root).map_err(|_| outside())?
        } else {
            candidate
        };
        let mut lexical = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => lexical.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !lexical.pop() {
                        return Err(outside());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        let full = self.root.join(&lexical);
        // A dangling link would let a write create its target anywhere.
        if full.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
            && full.canonicalize().is_err()
        {
            return Err(outside());
        }
        // The deepest existing ancestor, with links resolved, must still be inside.
        let mut existing = full.as_path();
        loop {
            match existing.canonicalize() {
                Ok(real) if real.starts_with(&self.root) => break,
                Ok(_) => return Err(outside()),
                Err(_) => match existing.parent() {
                    Some(parent) => existing = parent,
                    None => return Err(outside()),
                },
            }
        }
        Ok(full)
    }
}

fn seed_skills(dir: &Path, project_dir: &Path, package: &Package) -> io::Result<()> {
    if package.skills.is_empty() {
        return Ok(());
    }
    let source = project_dir.join(&package.dir).join("skills");
    let target = dir.join("skills");
    for skill in &package.skills {
        for file in &skill.files {
            let to = target.join(file);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(source.join(file), &to)?;
        }
    }
    Ok(())
}
