//! Bundle files: entries from any number of logs and checkpoints, for export, import and audit.
//!
//! Layout: the 8-byte magic `ASHLEDGR`, a u16 format version, the network id, a u64 record
//! count, then each record as a kind byte (1 entry, 2 checkpoint), a u32 length and its bytes.
//! All integers big-endian.

use std::io::{Read, Write};

use crate::checkpoint::{Checkpoint, MAX_CHECKPOINT_BYTES};
use crate::codec::DecodeError;
use crate::entry::{Entry, Hash, MAX_ENTRY_BYTES};

/// First bytes of every bundle file.
pub const BUNDLE_MAGIC: &[u8; 8] = b"ASHLEDGR";
/// The bundle format version written and accepted.
pub const BUNDLE_VERSION: u16 = 2;

/// A bundle that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The underlying reader or writer failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a bundle, or a version this build does not read.
    #[error("not an ash ledger bundle: {0}")]
    Header(String),
    /// The file ends before its last record.
    #[error("bundle truncated at record {index} of {count}")]
    Truncated {
        /// Entries read before the end.
        index: u64,
        /// Entries the header promised.
        count: u64,
    },
    /// A record does not decode.
    #[error("record {index}: {source}")]
    Entry {
        /// Its position in the bundle, from 0.
        index: u64,
        /// What is wrong.
        source: DecodeError,
    },
    /// More records than the caller allows.
    #[error("bundle holds {count} records, more than the limit of {limit}")]
    TooMany {
        /// Entries in the bundle.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// Bytes after the last record.
    #[error("unexpected bytes after record {count}")]
    Trailing {
        /// Entries in the bundle.
        count: u64,
    },
}

/// What a bundle holds.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    /// The network its records belong to.
    pub network: Hash,
    /// Its entries, decoded (not verified).
    pub entries: Vec<Entry>,
    /// Its checkpoints, decoded (not checked).
    pub checkpoints: Vec<Checkpoint>,
}

/// Writes a bundle of `network`'s `entries` and `checkpoints`.
pub fn write_bundle<'a, W: Write>(
    mut out: W,
    network: Hash,
    entries: impl ExactSizeIterator<Item = &'a Entry>,
    checkpoints: &[Checkpoint],
) -> Result<(), BundleError> {
    out.write_all(BUNDLE_MAGIC)?;
    out.write_all(&BUNDLE_VERSION.to_be_bytes())?;
    out.write_all(&network.0)?;
    out.write_all(&((entries.len() + checkpoints.len()) as u64).to_be_bytes())?;
    let mut record = |kind: u8, bytes: &[u8]| -> Result<(), BundleError> {
        let len =
            u32::try_from(bytes.len()).map_err(|_| BundleError::Header("record too big".into()))?;
        out.write_all(&[kind])?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(bytes)?;
        Ok(())
    };
    for entry in entries {
        record(1, &entry.bytes())?;
    }
    for checkpoint in checkpoints {
        record(2, &checkpoint.to_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a bundle of at most `max_records` records. Each record is decoded, not verified.
pub fn read_bundle<R: Read>(mut input: R, max_records: u64) -> Result<Bundle, BundleError> {
    let mut magic = [0u8; 10];
    input.read_exact(&mut magic).map_err(|e| header_eof(e, "the 10-byte magic and version"))?;
    if &magic[..8] != BUNDLE_MAGIC {
        return Err(BundleError::Header("it does not start with `ASHLEDGR`".into()));
    }
    let version = u16::from_be_bytes([magic[8], magic[9]]);
    if version != BUNDLE_VERSION {
        return Err(BundleError::Header(format!(
            "bundle version {version}; this ash reads version {BUNDLE_VERSION} (see docs/ledger-format.md)"
        )));
    }
    let mut rest = [0u8; 40];
    input.read_exact(&mut rest).map_err(|e| header_eof(e, "the network id and count"))?;
    let mut network = [0u8; 32];
    network.copy_from_slice(&rest[..32]);
    let mut count_bytes = [0u8; 8];
    count_bytes.copy_from_slice(&rest[32..]);
    let count = u64::from_be_bytes(count_bytes);
    if count > max_records {
        return Err(BundleError::TooMany { count, limit: max_records });
    }
    let mut bundle = Bundle { network: Hash(network), ..Bundle::default() };
    bundle.entries.reserve(usize::try_from(count.min(1 << 16)).unwrap_or(0));
    let mut buf = Vec::new();
    for index in 0..count {
        let truncated = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BundleError::Truncated { index, count },
            _ => BundleError::Io(e),
        };
        let mut head = [0u8; 5];
        input.read_exact(&mut head).map_err(truncated)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let limit = match head[0] {
            1 => MAX_ENTRY_BYTES,
            2 => MAX_CHECKPOINT_BYTES,
            other => {
                let what = format!("unknown record kind {other}");
                return Err(BundleError::Entry { index, source: DecodeError { offset: 0, what } });
            }
        };
        if len > limit {
            let what = format!("record of {len} bytes is over the {limit}-byte limit");
            return Err(BundleError::Entry { index, source: DecodeError { offset: 0, what } });
        }
        buf.resize(len, 0);
        input.read_exact(&mut buf).map_err(truncated)?;
        let wrap = |source| BundleError::Entry { index, source };
        if head[0] == 1 {
            bundle.entries.push(Entry::decode(&buf).map_err(wrap)?);
        } else {
            bundle.checkpoints.push(Checkpoint::decode(&buf).map_err(wrap)?);
        }
    }
    let mut probe = [0u8; 1];
    if input.read(&mut probe)? != 0 {
        return Err(BundleError::Trailing { count });
    }
    Ok(bundle)
}

fn header_eof(e: std::io::Error, what: &str) -> BundleError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => BundleError::Header(format!("shorter than {what}")),
        _ => BundleError::Io(e),
    }
}
