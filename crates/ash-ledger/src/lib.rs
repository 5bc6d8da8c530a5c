//! The credit ledger (format 2): signed, hash-chained, append-only logs, one per identity, on one
//! network.
//!
//! Owns the network's genesis, the entry kinds and their canonical bytes (specified in
//! `docs/ledger-format.md`), building and signing entries, checkpoints, the bundle file, and
//! verification: only entries signed by their author, on this network, in their place in the log
//! are accepted; each is judged by named rules against its own log's prefix and the entries it
//! names, so verdicts never change and do not depend on arrival order; balances come from an
//! identity's own valid entries. Never stores anything (the SQLite store lives in `ash-store`),
//! never talks to peers, never reads the clock: callers pass `now` in.

mod build;
mod bundle;
mod checkpoint;
mod codec;
mod credits;
mod entry;
mod genesis;
mod verify;

pub use build::{LogWriter, cancel_signature, result_commitment};
pub use bundle::{BUNDLE_MAGIC, BUNDLE_VERSION, Bundle, BundleError, read_bundle, write_bundle};
pub use checkpoint::{CHECKPOINT_VERSION, Checkpoint, CheckpointError};
pub use codec::DecodeError;
pub use credits::Credits;
pub use entry::{
    Body, Collect, Decide, ENTRY_VERSION, Entry, Hash, JobId, MAX_ENTRY_BYTES, Mint, MintKind,
    Outcome, Profile, Receipt, Receive, Release, ReleaseReason, Reserve, Terms, cancel_bytes,
    commitment_bytes,
};
pub use genesis::{
    DEFAULT_CLAIM_WINDOW_MS, DEFAULT_PRICES, Genesis, GenesisError, MAX_WORK_BITS, MIN_WORK_BITS,
    SignupCost,
};
pub use verify::{
    Account, Admission, Balance, DEFAULT_SKEW, Equivocation, MAX_QUARANTINE, MAX_VARIANTS, Pending,
    Refusal, Report, Rule, Verdict, Verifier,
};
