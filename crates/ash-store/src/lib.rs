//! Durable [`ash_core::Store`] implementations.
//!
//! Owns [`SqliteStore`]: one SQLite file in WAL mode holding runs, their journals and their
//! event logs; every commit is one transaction, a damaged or foreign file is refused and left
//! untouched. And [`PostgresStore`]: the same in a PostgreSQL database that several `ash start`
//! nodes share, with lease times from the database's clock and a change feed
//! (`LISTEN`/`NOTIFY`) that wakes readers on other nodes. Each backend's schema is a list of
//! numbered SQL files ([`migrations`]); the conformance suite in `ash-test-support` runs
//! against every backend.
//!
//! Also owns [`LedgerDb`], the network half's credit ledger on disk: an append-only SQLite file
//! of the entries an `ash-ledger` verifier accepted (signed, on the network, in place), each
//! verdict written once (enforced by triggers), checkpoints, a bounded quarantine, and a summary
//! per identity. What the entries mean is `ash-ledger`'s to decide.
//!
//! And [`JobsDb`], the job records of both sides of the network's job flow (`jobs.db`): a
//! state and an opaque record per job, written in one transaction per step.
//!
//! Never decides what a run does: the rules (preconditions, status transitions, event stamps)
//! are `ash-core`'s and are only applied here.

mod jobs;
mod ledger;
pub mod migrations;
mod postgres;
mod row;
mod sqlite;

pub use jobs::{JOBS_SCHEMA, JobRow, JobsDb, JobsDbError};
pub use ledger::{LedgerDb, LedgerDbError, Saved, StoredEntry};

pub use postgres::{
    Migrated, PG_SCHEMA_VERSION, PgError, PgOptions, PostgresStore, describe_url, is_postgres_url,
};
pub use sqlite::{Durability, OpenError, SCHEMA_VERSION, SqliteStore};
