//! What both run stores read and write the same way: the columns of a run's row, and how its
//! text and numbers map to ash's types.

use ash_protocol::{RunMode, RunStatus};

/// A stored run mode.
pub(crate) fn mode_from(text: &str) -> Result<RunMode, String> {
    match text {
        "conversation" => Ok(RunMode::Conversation),
        "task" => Ok(RunMode::Task),
        other => Err(format!("unknown run mode `{other}`")),
    }
}

/// A stored run status.
pub(crate) fn status_from(text: &str) -> Result<RunStatus, String> {
    [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Paused,
        RunStatus::Completed,
        RunStatus::Failed,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| format!("unknown run status `{text}`"))
}

/// A run row's columns, in the order the readers index them.
pub(crate) const RUN_COLUMNS: &str = "run_id, token, mode, status, turns, event_count, journal_count, \
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, created_at, updated_at, \
    lease_owner, lease_expires, cancel_requested, lease_epoch";

/// A stored count (a negative one is damage: read as 0).
pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A count as stored (saturating).
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
