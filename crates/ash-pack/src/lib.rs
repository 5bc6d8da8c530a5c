//! Source packages for the network: what leaves the machine, sealed to one recipient, and what
//! comes back.
//!
//! Owns the walk ([`walk()`]: git's ignore rules, secrets that never leave, a secret scan), the
//! package format (tar, zstd, AES-256-GCM in chunks, the content key sealed with HPKE to the
//! recipient's sealing key; specified in `docs/package-format.md`), safe unpacking into a fresh
//! directory, and git diffs (extract in a workspace, screen and apply atomically). Never talks
//! to peers and never spawns processes itself: git runs through a [`Git`] the caller provides
//! (backed by `ash-sandbox`).

mod diff;
mod error;
mod gitindex;
mod journal;
mod package;
mod paths;
mod seal;
mod secrets;
mod sensitive;
mod tar;
mod unpack;
mod walk;

pub use diff::{
    Applied, ApplyOptions, Baseline, Conflict, Diff, DiffError, DiffSummary, FileChange, Git,
    GitOutput, MAX_DIFF_BYTES, MAX_MANIFEST_BYTES, OpenedResult, PatchFile, apply, baseline,
    extract, open_diff, open_result, recover, screen, seal_diff, seal_result,
};
pub use error::PackError;
pub use gitindex::IndexError;
pub use journal::Recovered;
pub use package::{
    Limits, MANIFEST_MAGIC, Opened, PAYLOAD_MAGIC, PackOptions, PackageInfo, open, pack, scan,
};
pub use paths::{
    MAX_DEPTH, MAX_NAME_BYTES, MAX_PATH_BYTES, PathProblem, check_relative, link_stays_inside,
};
pub use seal::{
    CHUNK_SIZE, Contents, Expect, HEADER_LEN, JobId, Opener, Recipient, SEAL_MAGIC, SEAL_VERSION,
    SealError, SealedHeader, Sealer, open_prompt, seal_error, seal_prompt,
};
pub use secrets::{Finding, secret_name};
pub use tar::ArchiveError;
pub use walk::{
    Entry, EntryKind, Excluded, Reason, Walk, WalkError, WalkOptions, global_excludes_file, walk,
};
