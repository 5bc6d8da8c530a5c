//! Reads the paths a git index tracks (`git ls-files --cached`), without running git.
//!
//! Supports index versions 2, 3 and 4 (path prefix compression), SHA-1 and SHA-256 object ids.
//! Extensions are skipped, except a split index (`link`), whose entries live in another file:
//! that is an error telling the user how to turn it off.

use std::collections::BTreeMap;
use std::path::Path;

/// Index files larger than this are refused (a 1M-file repository's index is about 100 MiB).
const MAX_INDEX_BYTES: u64 = 512 << 20;

/// Why the index could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The file could not be read.
    #[error("cannot read the git index {path}: {message}")]
    Io {
        /// The index file.
        path: String,
        /// What the OS said.
        message: String,
    },
    /// The bytes are not an index this reader understands.
    #[error("git index {path} is not readable at byte {offset}: {reason}")]
    Malformed {
        /// The index file.
        path: String,
        /// Where the problem is.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The index is split (`core.splitIndex`).
    #[error(
        "git index {path} is a split index, which ash cannot read; run `git update-index --no-split-index` and try again"
    )]
    Split {
        /// The index file.
        path: String,
    },
}

/// What the index says about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tracked {
    /// A file or symlink.
    Blob,
    /// A submodule (gitlink).
    Submodule,
}

/// The tracked paths of an index, `/`-separated and relative to the work tree's root.
/// Paths that are not UTF-8 are left out (ash never packs them). A missing index file is an
/// empty index (a fresh `git init`).
pub(crate) fn read_index(
    path: &Path,
    hash_len: usize,
) -> Result<BTreeMap<String, Tracked>, IndexError> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| IndexError::Io { path: shown.clone(), message: e.to_string() };
    let bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_INDEX_BYTES => {
            return Err(IndexError::Malformed {
                path: shown,
                offset: 0,
                reason: "larger than 512 MiB",
            });
        }
        Ok(_) => std::fs::read(path).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(e)),
    };
    parse(&bytes, hash_len).map_err(|(offset, reason)| match reason {
        SPLIT => IndexError::Split { path: shown },
        _ => IndexError::Malformed { path: shown, offset, reason },
    })
}

const SPLIT: &str = "split index";

fn parse(
    bytes: &[u8],
    hash_len: usize,
) -> Result<BTreeMap<String, Tracked>, (usize, &'static str)> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(4)? != b"DIRC" {
        return Err((0, "no DIRC signature"));
    }
    let version = reader.u32()?;
    if !(2..=4).contains(&version) {
        return Err((4, "unsupported index version (ash reads 2, 3 and 4)"));
    }
    let count = reader.u32()?;
    let mut paths = BTreeMap::new();
    let mut previous: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = reader.at;
        reader.take(24)?; // ctime, mtime, dev, ino
        let mode = reader.u32()?;
        reader.take(12 + hash_len)?; // uid, gid, size, object id
        let flags = reader.u16()?;
        if flags & 0x4000 != 0 {
            if version < 3 {
                return Err((reader.at, "extended flag in a version 2 index"));
            }
            reader.u16()?;
        }
        let path = if version == 4 {
            let strip = reader.varint()?;
            let keep = previous.len().checked_sub(strip).ok_or((reader.at, "bad prefix length"))?;
            let suffix = reader.until_nul()?;
            previous.truncate(keep);
            previous.extend_from_slice(suffix);
            previous.clone()
        } else {
            let name = reader.until_nul()?.to_vec();
            // Entries are padded with NULs to a multiple of 8 bytes; one NUL is already read.
            let used = reader.at - start;
            let padded = (used + 7) & !7;
            reader.take(padded - used)?;
            name
        };
        let kind = match mode >> 12 {
            0o10 | 0o12 => Tracked::Blob,
            0o16 => Tracked::Submodule,
            // 0o04: a sparse-index directory; its files are not in the work tree.
            0o04 => continue,
            _ => return Err((start + 24, "unknown entry mode")),
        };
        if let Ok(path) = String::from_utf8(path) {
            paths.insert(path, kind);
        }
    }
    // Extensions: four-byte signature, big-endian length, data; then the trailing checksum.
    while reader.bytes.len() - reader.at > hash_len {
        let signature = reader.take(4)?;
        if signature == b"link" {
            return Err((reader.at - 4, SPLIT));
        }
        let len = reader.u32()? as usize;
        reader.take(len)?;
    }
    Ok(paths)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], (usize, &'static str)> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or((self.at, "truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, (usize, &'static str)> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, (usize, &'static str)> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn until_nul(&mut self) -> Result<&'a [u8], (usize, &'static str)> {
        let rest = &self.bytes[self.at..];
        let len = rest.iter().position(|&b| b == 0).ok_or((self.at, "path without NUL"))?;
        let name = &rest[..len];
        self.at += len + 1;
        Ok(name)
    }

    /// Git's offset varint: big-endian 7-bit groups, each continuation adding one.
    fn varint(&mut self) -> Result<usize, (usize, &'static str)> {
        let mut byte = self.take(1)?[0];
        let mut value = usize::from(byte & 0x7f);
        while byte & 0x80 != 0 {
            byte = self.take(1)?[0];
            value = value
                .checked_add(1)
                .and_then(|v| v.checked_mul(128))
                .map(|v| v | usize::from(byte & 0x7f))
                .ok_or((self.at, "prefix length overflows"))?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-2 entry for `path` with `mode`.
    fn entry_v2(path: &str, mode: u32) -> Vec<u8> {
        let mut e = vec![0u8; 24];
        e.extend_from_slice(&mode.to_be_bytes());
        e.extend_from_slice(&[0u8; 12 + 20]);
        e.extend_from_slice(&(path.len() as u16).to_be_bytes());
        e.extend_from_slice(path.as_bytes());
        let padded = (e.len() + 8) & !7;
        e.resize(padded, 0);
        e
    }

    fn index(version: u32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = b"DIRC".to_vec();
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for e in entries {
            bytes.extend_from_slice(e);
        }
        bytes.extend_from_slice(&[0u8; 20]);
        bytes
    }

    #[test]
    fn reads_version_2() {
        let bytes = index(2, &[entry_v2("a.txt", 0o100644), entry_v2("sub/mod", 0o160000)]);
        let paths = parse(&bytes, 20).map_err(|e| e.1);
        let expected = BTreeMap::from([
            ("a.txt".to_owned(), Tracked::Blob),
            ("sub/mod".to_owned(), Tracked::Submodule),
        ]);
        assert_eq!(paths, Ok(expected));
    }

    #[test]
    fn refuses_hostile_bytes() {
        let good = index(2, &[entry_v2("a.txt", 0o100644)]);
        for (bytes, reason) in [
            (b"DIRX".to_vec(), "no DIRC signature"),
            (good[..30].to_vec(), "truncated"),
            (
                {
                    let mut b = good.clone();
                    b[7] = 9;
                    b
                },
                "unsupported index version (ash reads 2, 3 and 4)",
            ),
            (
                {
                    let mut b = good.clone();
                    b[11] = 200; // 200 entries, one present
                    b
                },
                "truncated",
            ),
        ] {
            assert_eq!(parse(&bytes, 20).map_err(|e| e.1), Err(reason));
        }
    }
}
