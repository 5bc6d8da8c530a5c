//! The error of packing, opening and unpacking.

use std::io;

use crate::seal::{SealError, seal_error};
use crate::secrets::Finding;
use crate::tar::ArchiveError;
use crate::walk::WalkError;

/// Why a package could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The walk failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A local file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        message: String,
    },
    /// A file changed (its size, or it is no longer a regular file) while it was being packed.
    #[error("{0} changed while it was being packed; pack again")]
    FileChanged(String),
    /// The scan found likely secrets and the caller did not allow them.
    #[error(
        "{} likely secret(s) found, first in {}:{} ({}); exclude the files in .ashignore or confirm that they may be sent",
        .0.len(),
        .0.first().map_or("", |f| f.path.as_str()),
        .0.first().map_or(0, |f| f.line),
        .0.first().map_or("", |f| f.rule)
    )]
    Secrets(Vec<Finding>),
    /// The sealed layer refused the file.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The archive inside holds something unsafe or malformed.
    #[error("refused archive: {0}")]
    Archive(#[from] ArchiveError),
    /// The payload is not a package payload (bad framing, manifest mismatch, bad compression).
    #[error("refused package: {0}")]
    Payload(String),
    /// A configured limit was reached.
    #[error("refused package: {what} exceeds the limit of {limit}")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: u64,
    },
    /// The destination is not a fresh directory.
    #[error("{path}: {problem}")]
    Destination {
        /// The destination.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

impl PackError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path, e: &io::Error) -> Self {
        Self::Io { path: path.display().to_string(), message: e.to_string() }
    }

    /// Interprets an I/O error from the opening pipeline (sealed layer, decompressor, limits).
    #[allow(clippy::needless_pass_by_value, reason = "used as `map_err(PackError::from_stream)`")]
    pub(crate) fn from_stream(e: io::Error) -> Self {
        if let Some(seal) = seal_error(&e) {
            return Self::Seal(seal.clone());
        }
        if let Some(Self::Limit { what, limit }) =
            e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
        {
            return Self::Limit { what, limit: *limit };
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Self::Payload("the payload ends early".to_owned());
        }
        Self::Payload(format!("cannot decompress: {e}"))
    }
}
