//! Path rules shared by packing, unpacking and diffs: which relative paths are acceptable, and
//! whether a symlink resolves inside its tree.

use std::collections::VecDeque;
use std::path::Path;

/// Longest relative path accepted, in bytes (Linux `PATH_MAX` less the NUL).
pub const MAX_PATH_BYTES: usize = 4095;
/// Longest single name accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// Most components in a relative path: deeper paths are refused (they cost every lookup and
/// serve no source tree).
pub const MAX_DEPTH: usize = 128;
/// Symlinks followed while resolving one link before it counts as a loop.
pub(crate) const MAX_HOPS: usize = 40;

/// Why a relative path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// Empty path or empty component (`a//b`).
    #[error("empty path component")]
    Empty,
    /// Starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// Has a `.` or `..` component.
    #[error("`.` or `..` component")]
    Traversal,
    /// A component or the whole path is too long for the platform.
    #[error("name or path too long")]
    TooLong,
    /// More than [`MAX_DEPTH`] components.
    #[error("more than 128 components deep")]
    TooDeep,
    /// A control character (including NUL) in a name.
    #[error("control character in name")]
    Control,
    /// A `.git` component (any case): git metadata never travels.
    #[error("`.git` component")]
    GitDir,
}

/// Checks a `/`-separated relative path from a package or diff.
pub fn check_relative(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong);
    }
    for (depth, name) in path.split('/').enumerate() {
        if depth == MAX_DEPTH {
            return Err(PathProblem::TooDeep);
        }
        check_name(name)?;
    }
    Ok(())
}

/// Checks one name (a path component).
pub(crate) fn check_name(name: &str) -> Result<(), PathProblem> {
    match name {
        "" => Err(PathProblem::Empty),
        "." | ".." => Err(PathProblem::Traversal),
        _ if name.len() > MAX_NAME_BYTES => Err(PathProblem::TooLong),
        _ if name.bytes().any(|b| b < 0x20 || b == 0x7f) => Err(PathProblem::Control),
        _ if name.eq_ignore_ascii_case(".git") => Err(PathProblem::GitDir),
        _ => Ok(()),
    }
}

/// Whether the symlink at `link` (relative to `root`) resolves inside `root`. Every symlink on
/// the way is followed as the kernel would; a `..` above `root`, an absolute target or a loop
/// counts as escaping. Missing components resolve lexically (a dangling link inside is fine).
pub fn link_stays_inside(root: &Path, link: &str) -> bool {
    let mut stack: Vec<String> = link.split('/').map(str::to_owned).collect();
    stack.pop();
    let Ok(target) = std::fs::read_link(root.join(link)) else { return false };
    let Some(target) = target.to_str() else { return false };
    if target.starts_with('/') {
        return false;
    }
    let mut pending: VecDeque<String> = target.split('/').map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            _ => {
                stack.push(part);
                let here = root.join(stack.join("/"));
                let Ok(meta) = std::fs::symlink_metadata(&here) else { continue };
                if !meta.file_type().is_symlink() {
                    continue;
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return false;
                }
                let Ok(next) = std::fs::read_link(&here) else { return false };
                let Some(next) = next.to_str() else { return false };
                if next.starts_with('/') {
                    return false;
                }
                stack.pop();
                for (i, part) in next.split('/').enumerate() {
                    pending.insert(i, part.to_owned());
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for (path, want) in [
            ("a/b.txt", Ok(())),
            ("a..b/c", Ok(())),
            ("", Err(PathProblem::Empty)),
            ("a//b", Err(PathProblem::Empty)),
            ("a/", Err(PathProblem::Empty)),
            ("/etc/passwd", Err(PathProblem::Absolute)),
            ("../x", Err(PathProblem::Traversal)),
            ("a/./b", Err(PathProblem::Traversal)),
            ("a/\u{1b}[2J", Err(PathProblem::Control)),
            ("x/.GIT/config", Err(PathProblem::GitDir)),
        ] {
            assert_eq!(check_relative(path), want, "{path:?}");
        }
        assert_eq!(check_relative(&"a".repeat(256)), Err(PathProblem::TooLong));
        assert_eq!(check_relative(&"a/".repeat(2048)), Err(PathProblem::TooLong));
        assert_eq!(check_relative(&format!("{}b", "a/".repeat(127))), Ok(()));
        assert_eq!(check_relative(&format!("{}b", "a/".repeat(128))), Err(PathProblem::TooDeep));
    }

    #[test]
    fn links_are_resolved_through_other_links() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        let make = |link: &str, target: &str| {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap_or_else(|e| panic!("{e}"));
        };
        std::fs::create_dir_all(root.join("a/b")).unwrap_or_else(|e| panic!("{e}"));
        make("up", "..");
        make("here", ".");
        make("a/b/ok", "../../here");
        make("sneaky", "here/../..");
        make("abs", "/etc/passwd");
        make("loop1", "loop2");
        make("loop2", "loop1");
        make("dangling", "a/missing/file");
        make("a/b/deep", "../../up");
        for (link, inside) in [
            ("up", false),
            ("here", true),
            ("a/b/ok", true),
            ("sneaky", false),
            ("abs", false),
            ("loop1", false),
            ("dangling", true),
            ("a/b/deep", false),
        ] {
            assert_eq!(link_stays_inside(root, link), inside, "{link}");
        }
    }
}
