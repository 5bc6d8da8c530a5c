//! The `Store` trait: what the engine needs to keep runs durable, and the records it keeps.
//!
//! A run has a row ([`RunRecord`]: token, mode, status, counters, lease, cancel flag), an
//! append-only journal of [`JournalRecord`]s the engine replays to rebuild a run after a crash,
//! and an append-only event log whose indexes are contiguous from 0. Every change goes through
//! one atomic [`Commit`] guarded by a precondition ([`Expect`]), so a follow-up message and a
//! worker, or two workers, can never interleave half-written state.
//!
//! Implementations: [`crate::MemoryStore`] here, SQLite and PostgreSQL in `ash-store`; one
//! conformance suite (in `ash-test-support`) runs against all of them.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ash_protocol::{AssistantPart, Event, EventBody, EventMeta, FinishReason, RunMode, RunStatus};
use ash_protocol::{ToolResultPart, Usage};
use serde::{Deserialize, Serialize};

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable state of runs. Every method is atomic.
pub trait Store: Send + Sync + 'static {
    /// Creates a run and applies its first commit (whose [`Commit::expect`] is ignored).
    /// Fails with [`StoreError::Conflict`] if the id or token exists.
    fn create_run(&self, run: NewRun, first: Commit) -> StoreFuture<'_, Vec<Event>>;

    /// Applies `commit` to an existing run if its precondition holds, and returns the stored
    /// events with their indexes.
    fn commit<'a>(&'a self, run_id: &'a str, commit: Commit) -> StoreFuture<'a, Vec<Event>>;

    /// The run's row.
    fn run<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunRecord>>;

    /// The run a continuation token belongs to.
    fn run_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<RunRecord>>;

    /// Up to `limit` events from index `from`, in order. A store may stop early to keep the
    /// page near `max_bytes` of stored event JSON, but returns at least one event when any
    /// exist, so a reader pages by asking again from the next index until a page is empty.
    fn events<'a>(
        &'a self,
        run_id: &'a str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Vec<Event>>;

    /// Journal records from position `from`, in order.
    fn journal<'a>(&'a self, run_id: &'a str, from: u64) -> StoreFuture<'a, Vec<JournalRecord>>;

    /// Takes the run's lease for `owner` if the run is queued or running and the lease is free,
    /// expired, or already `owner`'s, by the store's clock. Every taking gets a new epoch, one
    /// above the last: the [`Fence`] that `owner`'s writes must then carry. `None`: not taken.
    fn acquire_lease<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<Fence>>;

    /// Extends the lease `fence` names. `None` when it was taken again since (by anyone).
    fn renew_lease<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseState>>;

    /// Gives up the lease `fence` names, if it is still that one.
    fn release_lease<'a>(&'a self, run_id: &'a str, fence: &'a Fence) -> StoreFuture<'a, ()>;

    /// Takes, in one atomic step, the leases of up to `limit` runs that are queued or running
    /// and whose lease is free or expired (oldest first), for `owner`. Two callers never take
    /// the same run; a caller does not wait for runs another one is taking.
    fn claim_runs<'a>(
        &'a self,
        owner: &'a str,
        ttl: Duration,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(String, Fence)>>;

    /// Flags an active run for cancellation and returns its status (`None`: unknown run).
    /// Inactive runs are left as they are.
    fn request_cancel<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunStatus>>;

    /// Whether the store can still be used: a file store whose files were removed or
    /// replaced under it answers [`StoreError::Lost`] here and on every call after.
    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Changes made by other processes sharing this store (other nodes), as they commit: runs
    /// whose events or cancel flag changed. `None`: nobody else writes to this store, so the
    /// engine's own publishing is all there is.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }

    /// How the store is doing: its backend, its connection pool, and its runs and leases.
    fn health(&self) -> StoreFuture<'_, StoreHealth>;

    /// Whether other processes (other nodes) share this store, so a run may move between
    /// machines and its directories must move with it.
    fn is_shared(&self) -> bool {
        false
    }

    /// Which of `hashes` (SHA-256, hex) the store holds no contents for.
    fn missing_blobs<'a>(&'a self, hashes: &'a [String]) -> StoreFuture<'a, Vec<String>>;

    /// Keeps `data` under its SHA-256 `hash` (computed by the caller, checked by the reader).
    /// Keeping a hash already kept changes nothing.
    fn put_blob<'a>(&'a self, hash: &'a str, data: &'a [u8]) -> StoreFuture<'a, ()>;

    /// The contents kept under `hash`.
    fn blob<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Replaces the run's snapshot of `area` (a manifest) if `fence` is still the run's lease;
    /// else [`StoreError::Conflict`].
    fn put_snapshot<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        area: &'a str,
        manifest: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// The run's snapshot of `area`.
    fn snapshot<'a>(&'a self, run_id: &'a str, area: &'a str) -> StoreFuture<'a, Option<String>>;
}

/// Checks that `fence` is `record`'s current lease, for writes outside a [`Commit`].
pub fn check_fence(record: &RunRecord, fence: &Fence) -> Result<(), StoreError> {
    check_expect(record, &Expect::Lease(fence.clone()))
}

/// A change another process committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// This run's events or cancel flag changed.
    Run(String),
    /// Changes may have been missed (the listener reconnected): any run may have changed.
    Any,
}

/// A store's health, for operators (`GET /metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    /// `memory`, `sqlite` or `postgres`.
    pub backend: String,
    /// The connection pool, for stores that have one.
    pub pool: Option<PoolHealth>,
    /// Runs by status.
    pub runs_by_status: std::collections::BTreeMap<String, u64>,
    /// Active runs whose lease is held and current.
    pub leases_held: u64,
    /// Active runs whose lease is free or expired: work waiting for a worker.
    pub leases_claimable: u64,
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolHealth {
    /// Most connections it opens.
    pub max_size: u64,
    /// Connections open.
    pub size: u64,
    /// Open connections not in use.
    pub available: u64,
    /// Callers waiting for a connection.
    pub waiting: u64,
}

/// The format of the JSON payloads (events, journal records) this build writes. Each stored
/// payload carries the format it was written in; a store refuses to read a newer one.
pub const PAYLOAD_FORMAT: u32 = 1;

/// Refuses a payload written in a format newer than [`PAYLOAD_FORMAT`]; `what` names it.
pub fn check_payload_format(format: i64, what: &dyn std::fmt::Display) -> Result<(), StoreError> {
    if format > i64::from(PAYLOAD_FORMAT) || format < 1 {
        return Err(StoreError::Corrupt(format!(
            "{what} is stored in format {format}; this ash reads formats 1 to {PAYLOAD_FORMAT}: upgrade ash"
        )));
    }
    Ok(())
}

/// A run to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Run (and session) id.
    pub run_id: String,
    /// Continuation token.
    pub continuation_token: String,
    /// Mode.
    pub mode: RunMode,
}

/// A run's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Run (and session) id.
    pub run_id: String,
    /// Continuation token.
    pub continuation_token: String,
    /// Mode.
    pub mode: RunMode,
    /// Status.
    pub status: RunStatus,
    /// Turns started.
    pub turns: u32,
    /// Events stored; the next event's index.
    pub event_count: u64,
    /// Journal records stored.
    pub journal_count: u64,
    /// Tokens of every step.
    pub usage: Usage,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// Who works on it, until when.
    pub lease: Option<Lease>,
    /// Whether a cancel was requested for the active turn.
    pub cancel_requested: bool,
}

/// A worker's claim on a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Owner id.
    pub owner: String,
    /// Which taking of the lease this is (see [`Fence`]).
    pub epoch: u64,
    /// Expiry by the store's clock, milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Proof of holding a run's lease: who took it and which taking it was. A worker's writes
/// carry it ([`Expect::Lease`]); once anyone takes the lease again (another node after it
/// expired, or the same one), the epoch moves on and the old writer is refused, however late
/// its write arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// Owner id.
    pub owner: String,
    /// The run's lease epoch when it was taken: one above the taking before.
    pub epoch: u64,
}

/// What a lease renewal learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
}

/// One atomic change to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// What must hold for the change to apply.
    pub expect: Expect,
    /// Journal records to append.
    pub records: Vec<JournalRecord>,
    /// Events to append; the store assigns ids, indexes and times.
    pub events: Vec<EventBody>,
    /// New status. Leaving the active statuses clears the cancel flag; entering `queued`
    /// clears it too.
    pub status: Option<RunStatus>,
    /// Tokens to add to the run's total.
    pub usage: Usage,
    /// Turns to add to the run's count.
    pub turns: u32,
    /// Whether to drop the lease in the same change.
    pub release_lease: bool,
}

impl Commit {
    /// An empty commit with precondition `expect`.
    pub fn new(expect: Expect) -> Self {
        Self {
            expect,
            records: Vec::new(),
            events: Vec::new(),
            status: None,
            usage: Usage::default(),
            turns: 0,
            release_lease: false,
        }
    }
}

/// The precondition of a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The run has this status (a follow-up expects `waiting`).
    Status(RunStatus),
    /// This taking of the lease is still the current one (a worker's write).
    Lease(Fence),
    /// The run has this status and exactly this many journal records: nothing happened to it
    /// since it was read (an answer to a paused run: a stale one must not resolve a later
    /// pause).
    Unchanged {
        /// The status read.
        status: RunStatus,
        /// The journal length read.
        journal_count: u64,
    },
}

/// One durable fact about a run's progress; replaying the journal rebuilds the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum JournalRecord {
    /// A subagent's run: which agent it is and who delegated to it. First in its journal; a
    /// run without it is the root agent's.
    #[serde(rename_all = "camelCase")]
    RunOpened {
        /// The subagent's path (`reviewer`, `reviewer/helper`).
        agent: String,
        /// The delegating run, turn and call.
        parent: ParentLink,
        /// What the parent had left of its budgets: the child spends no more.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<Grant>,
    },
    /// A new grant from the parent (its budget was raised), replacing the one before.
    #[serde(rename_all = "camelCase")]
    Granted {
        /// What the child may spend now.
        grant: Grant,
    },
    /// A user message was accepted and starts turn `sequence`.
    #[serde(rename_all = "camelCase")]
    TurnQueued {
        /// Turn ordinal.
        sequence: u32,
        /// The message.
        message: String,
        /// Who sent it, when the agent requires authentication.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<ash_protocol::SessionAuthContext>,
    },
    /// A model call finished: its whole output, stored before any action runs.
    #[serde(rename_all = "camelCase")]
    StepOutput {
        /// Turn ordinal.
        turn: u32,
        /// Step index within the turn.
        step: u32,
        /// The assistant message's parts.
        content: Vec<AssistantPart>,
        /// Why the model stopped.
        finish_reason: FinishReason,
        /// Tokens of the call.
        usage: Usage,
        /// What the call cost, in micro-USD, where the model's price is known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_micro_usd: Option<u64>,
    },
    /// An action is about to run (again, if `attempt` > 1).
    #[serde(rename_all = "camelCase")]
    ActionStarted {
        /// Turn ordinal.
        turn: u32,
        /// Step index.
        step: u32,
        /// Call id.
        call_id: String,
        /// Attempt, from 1.
        attempt: u32,
    },
    /// An action finished; the part is what the model sees.
    #[serde(rename_all = "camelCase")]
    ActionFinished {
        /// Turn ordinal.
        turn: u32,
        /// Step index.
        step: u32,
        /// The result.
        result: ToolResultPart,
        /// What a subagent's run spent (tokens, micro-USD), counted in this run's budget.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<(Usage, u64)>,
    },
    /// Every action of the step has a result.
    #[serde(rename_all = "camelCase")]
    StepFinished {
        /// Turn ordinal.
        turn: u32,
        /// Step index.
        step: u32,
    },
    /// The turn ended (completed, failed or cancelled).
    #[serde(rename_all = "camelCase")]
    TurnEnded {
        /// Turn ordinal.
        turn: u32,
    },
    /// The turn paused (status `paused`): it holds no task until the pause is resolved.
    #[serde(rename_all = "camelCase")]
    TurnPaused {
        /// Turn ordinal.
        turn: u32,
        /// Why.
        pause: Pause,
    },
    /// A paused turn continues.
    #[serde(rename_all = "camelCase")]
    TurnResumed {
        /// Turn ordinal.
        turn: u32,
        /// What resolved the pause.
        resolution: Resolution,
    },
}

/// What a subagent's run may spend: what its parent had left when it delegated (none: no
/// limit of that kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Micro-USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micro_usd: Option<u64>,
    /// When the root's session time runs out, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
}

/// The run, turn and call that started a subagent's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentLink {
    /// The parent run.
    pub run_id: String,
    /// Its session.
    pub session_id: String,
    /// The delegating turn's ordinal.
    pub turn: u32,
    /// The step of that turn.
    pub step: u32,
    /// The delegation call.
    pub call_id: String,
}

/// Why a turn paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Pause {
    /// A call waits for a person's approval.
    #[serde(rename_all = "camelCase")]
    Approval {
        /// The id an answer names.
        request_id: String,
        /// The call.
        call_id: String,
        /// Its tool.
        tool_name: String,
        /// Why it needs approval.
        reason: String,
    },
    /// A session budget is spent.
    #[serde(rename_all = "camelCase")]
    Budget {
        /// `token_budget`, `cost_budget` or `session_timeout`.
        code: String,
        /// What was reached.
        message: String,
    },
    /// A subagent this turn delegated to paused; this run waits with it.
    #[serde(rename_all = "camelCase")]
    Subagent {
        /// The delegation call.
        call_id: String,
        /// The child run.
        child_run_id: String,
        /// The child's pause code.
        code: String,
        /// The child's pause message.
        message: String,
        /// The approval it waits for, when it waits for one, as asked here: its request id is
        /// `<childRunId>/<the child's request id>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask: Option<Ask>,
    },
}

/// An approval as a parent run asks for it on behalf of its subagent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    /// The id an answer names.
    pub request_id: String,
    /// The call that waits, in the subagent's run.
    pub call_id: String,
    /// Its tool.
    pub tool_name: String,
    /// Its input.
    pub input: serde_json::Value,
    /// Why it needs approval.
    pub reason: String,
}

impl Pause {
    /// The code `session.waiting` carries.
    pub fn code(&self) -> &str {
        match self {
            Self::Approval { .. } => "input_required",
            Self::Budget { code, .. } | Self::Subagent { code, .. } => code,
        }
    }

    /// What a person reads.
    pub fn message(&self) -> String {
        match self {
            Self::Approval { call_id, tool_name, reason, .. } => format!(
                "call `{call_id}` of `{tool_name}` waits for approval ({reason}); answer it with POST /runs/:runId/input"
            ),
            Self::Budget { message, .. } => {
                format!(
                    "{message}; raise the limit in agent.toml, restart, then POST /runs/:runId/resume"
                )
            }
            Self::Subagent { message, .. } => format!("in a subagent: {message}"),
        }
    }
}

/// What resolved a pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resolution {
    /// The call was approved; it runs.
    #[serde(rename_all = "camelCase")]
    Approved {
        /// The request answered.
        request_id: String,
        /// Who answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The call was denied; it never runs.
    #[serde(rename_all = "camelCase")]
    Denied {
        /// The request answered.
        request_id: String,
        /// Who answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The budget was raised.
    Resumed,
    /// The subagent's pause was resolved; the delegation re-attaches to it.
    #[serde(rename_all = "camelCase")]
    Delegated {
        /// The child run.
        child_run_id: String,
    },
    /// The turn was cancelled while paused.
    Cancelled,
}

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No run has this id.
    #[error("run `{0}` does not exist")]
    NotFound(String),
    /// The commit's precondition did not hold, or a create collided.
    #[error("run `{run_id}` changed underneath: {reason}")]
    Conflict {
        /// The run.
        run_id: String,
        /// What did not match.
        reason: String,
    },
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend failed.
    #[error("store failure: {0}")]
    Backend(String),
    /// The store's files were removed or replaced while ash ran; nothing more is written.
    #[error("the store is gone: {0}; ash stopped writing to it — restore it, then restart ash")]
    Lost(String),
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// When a lease taken or renewed at `now_ms` for `ttl` expires. Shared by the implementations
/// so they agree.
pub fn lease_expiry(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 UTC text of a time in milliseconds since the Unix epoch.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Gives event bodies their ids, contiguous indexes from `first_index`, and the time `at_ms`.
/// Store implementations call this inside their transaction.
pub fn stamp_events(bodies: Vec<EventBody>, first_index: u64, at_ms: i64) -> Vec<Event> {
    let at = rfc3339(at_ms);
    bodies
        .into_iter()
        .zip(first_index..)
        .map(|(body, index)| Event {
            body,
            meta: EventMeta { id: crate::ids::event_id(), index, at: at.clone() },
        })
        .collect()
}

/// Adds `b` to `a`, saturating.
pub fn add_usage(a: Usage, b: Usage) -> Usage {
    Usage {
        input_tokens: a.input_tokens.saturating_add(b.input_tokens),
        output_tokens: a.output_tokens.saturating_add(b.output_tokens),
        cache_read_tokens: a.cache_read_tokens.saturating_add(b.cache_read_tokens),
        cache_write_tokens: a.cache_write_tokens.saturating_add(b.cache_write_tokens),
    }
}

/// The status and cancel flag a run has after `commit`. Shared by the implementations so they
/// agree: a new turn (`queued`) and every inactive status clear the flag.
pub fn next_flags(
    current: RunStatus,
    cancel_requested: bool,
    commit: &Commit,
) -> (RunStatus, bool) {
    match commit.status {
        None => (current, cancel_requested),
        Some(RunStatus::Running) => (RunStatus::Running, cancel_requested),
        Some(status) => (status, false),
    }
}

/// Checks `commit`'s precondition against a run's row.
pub fn check_expect(record: &RunRecord, expect: &Expect) -> Result<(), StoreError> {
    let conflict = |reason: String| StoreError::Conflict { run_id: record.run_id.clone(), reason };
    match expect {
        Expect::Status(status) if record.status != *status => Err(conflict(format!(
            "expected status `{}`, found `{}`",
            status.as_str(),
            record.status.as_str()
        ))),
        Expect::Lease(fence) => match &record.lease {
            Some(lease) if lease.owner == fence.owner && lease.epoch == fence.epoch => Ok(()),
            Some(lease) => Err(conflict(format!(
                "the lease was taken again (by `{}`, epoch {}; this write holds epoch {})",
                lease.owner, lease.epoch, fence.epoch
            ))),
            None => Err(conflict("the lease was released".to_owned())),
        },
        Expect::Unchanged { status, journal_count }
            if record.status != *status || record.journal_count != *journal_count =>
        {
            Err(conflict("the run changed since it was read".to_owned()))
        }
        Expect::Status(_) | Expect::Unchanged { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_expectation_fails_once_anything_was_journaled() {
        let record = RunRecord {
            run_id: "wrun_x".to_owned(),
            continuation_token: "ash:t".to_owned(),
            mode: RunMode::Conversation,
            status: RunStatus::Paused,
            turns: 1,
            event_count: 9,
            journal_count: 4,
            usage: Usage::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
            lease: None,
            cancel_requested: false,
        };
        let unchanged = |status, journal_count| Expect::Unchanged { status, journal_count };
        assert!(check_expect(&record, &unchanged(RunStatus::Paused, 4)).is_ok());
        // Paused again, but on something that happened after it was read.
        assert!(check_expect(&record, &unchanged(RunStatus::Paused, 3)).is_err());
        assert!(check_expect(&record, &unchanged(RunStatus::Waiting, 4)).is_err());
    }
}
