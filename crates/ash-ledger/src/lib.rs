//! The credit ledger: signed, hash-chained, append-only logs, one per identity.
//!
//! Owns the entry kinds (profile, mint, reserve, settle, release), their canonical bytes
//! (specified in `docs/ledger-format.md`), building and signing entries, the bundle file, and
//! verification: chains, signatures, counter-signatures, cross-log references, the credit rules,
//! equivocation proofs, and balances derived only from verified entries. Never stores anything
//! (the SQLite store lives in `ash-store`), never talks to peers, never reads the clock: callers
//! pass `now` in.

mod build;
mod bundle;
mod codec;
mod credits;
mod entry;
mod verify;

pub use build::{LogWriter, result_commitment};
pub use bundle::{BUNDLE_MAGIC, BUNDLE_VERSION, BundleError, read_bundle, write_bundle};
pub use codec::DecodeError;
pub use credits::Credits;
pub use entry::{
    Body, ENTRY_VERSION, Entry, Hash, JobId, MAX_ENTRY_BYTES, Mint, MintKind, Outcome, Profile,
    Release, ReleaseReason, Reserve, Settle, Settlement,
};
pub use verify::{
    Account, Balance, Equivocation, Pending, Rejection, Report, Rule, Rules, Verifier,
};
