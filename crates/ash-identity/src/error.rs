//! Errors of key files, ids and signatures.

use std::path::PathBuf;

/// A key file, id or key that could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is readable by others; keys must stay private.
    #[error(
        "{}: permissions {mode:04o} let other users read this key; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The key file is not in the expected format.
    #[error("{}: line {line}: {message}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the file as a whole is wrong).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A node id or public key is malformed.
    #[error("invalid node id {input:?}: {reason}")]
    NodeId {
        /// What was given (cut to 80 characters).
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The operating system's random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The `s` half is not a canonical scalar.
    #[error("signature scalar is not canonical")]
    NonCanonicalScalar,
    /// The `R` half is not a valid curve point encoding.
    #[error("signature point is not a valid encoding")]
    InvalidPoint,
    /// The verification equation does not hold.
    #[error("signature does not verify")]
    Mismatch,
}
