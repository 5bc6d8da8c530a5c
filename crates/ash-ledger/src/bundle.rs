//! Bundle files: a set of entries from any number of logs, for export, import and audit.
//!
//! Layout: the 8-byte magic `ASHLEDGR`, a u16 format version, a u64 entry count, then each
//! entry as a u32 length and its canonical bytes. All integers big-endian.

use std::io::{Read, Write};

use crate::codec::DecodeError;
use crate::entry::{Entry, MAX_ENTRY_BYTES};

/// First bytes of every bundle file.
pub const BUNDLE_MAGIC: &[u8; 8] = b"ASHLEDGR";
/// The bundle format version written and accepted.
pub const BUNDLE_VERSION: u16 = 1;

/// A bundle that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The underlying reader or writer failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a bundle, or a version this build does not read.
    #[error("not an ash ledger bundle: {0}")]
    Header(String),
    /// The file ends before its last entry.
    #[error("bundle truncated at entry {index} of {count}")]
    Truncated {
        /// Entries read before the end.
        index: u64,
        /// Entries the header promised.
        count: u64,
    },
    /// An entry does not decode.
    #[error("entry {index}: {source}")]
    Entry {
        /// Its position in the bundle, from 0.
        index: u64,
        /// What is wrong.
        source: DecodeError,
    },
    /// More entries than the caller allows.
    #[error("bundle holds {count} entries, more than the limit of {limit}")]
    TooMany {
        /// Entries in the bundle.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// Bytes after the last entry.
    #[error("unexpected bytes after entry {count}")]
    Trailing {
        /// Entries in the bundle.
        count: u64,
    },
}

/// Writes `entries` as a bundle.
pub fn write_bundle<'a, W: Write>(
    mut out: W,
    entries: impl ExactSizeIterator<Item = &'a Entry>,
) -> Result<(), BundleError> {
    out.write_all(BUNDLE_MAGIC)?;
    out.write_all(&BUNDLE_VERSION.to_be_bytes())?;
    out.write_all(&(entries.len() as u64).to_be_bytes())?;
    for entry in entries {
        let len = u32::try_from(entry.bytes().len())
            .map_err(|_| BundleError::Header("entry too big".into()))?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(entry.bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a bundle of at most `max_entries` entries. Each entry is decoded (not verified).
pub fn read_bundle<R: Read>(mut input: R, max_entries: u64) -> Result<Vec<Entry>, BundleError> {
    let mut header = [0u8; 18];
    input.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BundleError::Header("shorter than the 18-byte header".into())
        }
        _ => BundleError::Io(e),
    })?;
    if &header[..8] != BUNDLE_MAGIC {
        return Err(BundleError::Header("it does not start with `ASHLEDGR`".into()));
    }
    let version = u16::from_be_bytes([header[8], header[9]]);
    if version != BUNDLE_VERSION {
        return Err(BundleError::Header(format!(
            "version {version}; this ash reads version {BUNDLE_VERSION}"
        )));
    }
    let mut count_bytes = [0u8; 8];
    count_bytes.copy_from_slice(&header[10..]);
    let count = u64::from_be_bytes(count_bytes);
    if count > max_entries {
        return Err(BundleError::TooMany { count, limit: max_entries });
    }
    let mut entries = Vec::with_capacity(usize::try_from(count.min(1 << 16)).unwrap_or(0));
    let mut buf = vec![0u8; MAX_ENTRY_BYTES];
    for index in 0..count {
        let truncated = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BundleError::Truncated { index, count },
            _ => BundleError::Io(e),
        };
        let mut len = [0u8; 4];
        input.read_exact(&mut len).map_err(truncated)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_ENTRY_BYTES {
            let what = format!("entry of {len} bytes is over the {MAX_ENTRY_BYTES}-byte limit");
            return Err(BundleError::Entry { index, source: DecodeError { offset: 0, what } });
        }
        input.read_exact(&mut buf[..len]).map_err(truncated)?;
        let entry =
            Entry::decode(&buf[..len]).map_err(|source| BundleError::Entry { index, source })?;
        entries.push(entry);
    }
    let mut probe = [0u8; 1];
    if input.read(&mut probe)? != 0 {
        return Err(BundleError::Trailing { count });
    }
    Ok(entries)
}
