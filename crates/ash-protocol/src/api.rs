//! HTTP request and response bodies of the harness API (`/.well-known/ash/v1/...`).
//!
//! Owns the JSON shapes of `POST /message`, `GET /runs/:runId`, `POST /runs/:runId/cancel`,
//! `GET /health`, the stream heartbeat line and the error body `{ok:false, code, error}`.
//! Readers tolerate unknown fields, so clients may send the seed's optional extras.

use serde::{Deserialize, Serialize};

use crate::events::RunMode;
use crate::model::Usage;

/// The path prefix of every harness route.
pub const API_PREFIX: &str = "/.well-known/ash/v1";

/// Response header carrying the run id.
pub const RUN_ID_HEADER: &str = "x-ash-run-id";
/// Response header carrying the session id.
pub const SESSION_ID_HEADER: &str = "x-ash-session-id";
/// Stream header carrying [`crate::STREAM_VERSION`].
pub const STREAM_VERSION_HEADER: &str = "x-ash-stream-version";
/// Stream header naming the line format (`ndjson`).
pub const STREAM_FORMAT_HEADER: &str = "x-ash-stream-format";

/// `POST /message` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRequest {
    /// The user's message; must not be empty.
    pub message: String,
    /// Continue this session; absent starts a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    /// Mode of a new session; ignored on follow-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RunMode>,
}

/// `202` answer to `POST /message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAccepted {
    /// Always `true`.
    pub ok: bool,
    /// Run id (also in `x-ash-run-id`).
    pub run_id: String,
    /// Session id.
    pub session_id: String,
    /// Token for the next message.
    pub continuation_token: String,
    /// Path of the run's event stream.
    pub stream_path: String,
    /// Index of this turn's first event: read the stream from here to see only this turn.
    pub start_index: u64,
}

/// Error body of every failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Always `false`.
    pub ok: bool,
    /// Stable machine-readable code, e.g. `invalid_json`, `session_busy`.
    pub code: String,
    /// What is wrong and what to do.
    pub error: String,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// A message was accepted and a worker will pick it up.
    Queued,
    /// A worker is executing a turn.
    Running,
    /// Parked at `session.waiting`; accepts the next message.
    Waiting,
    /// Parked in the middle of a turn at `session.waiting` with a reason: waiting for an
    /// answer (`POST /runs/:runId/input`) or for a raised budget (`POST /runs/:runId/resume`).
    /// Holds no task; accepts no message until it continues.
    Paused,
    /// Ended with `run.completed`.
    Completed,
    /// Ended with `run.failed`.
    Failed,
}

impl RunStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Whether a turn is pending or executing.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// Whether the run has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// `GET /runs/:runId` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// Always `true`.
    pub ok: bool,
    /// Run id.
    pub run_id: String,
    /// Session id.
    pub session_id: String,
    /// Mode.
    pub mode: RunMode,
    /// Status.
    pub status: RunStatus,
    /// Turns started so far.
    pub turns: u32,
    /// Events recorded so far: the `startIndex` that follows only new events.
    pub event_count: u64,
    /// Tokens of every step so far.
    pub usage: Usage,
    /// When the run was created, RFC 3339.
    pub created_at: String,
    /// When it last changed, RFC 3339.
    pub updated_at: String,
}

/// `POST /runs/:runId/cancel` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelAccepted {
    /// Always `true`.
    pub ok: bool,
    /// `cancelling` when a turn was active, `no_active_turn` otherwise.
    pub status: String,
}

/// `POST /runs/:runId/input` body: the answer to an `input.requested`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputAnswer {
    /// The `requestId` of the `input.requested` event answered.
    pub request_id: String,
    /// `approve` or `deny`.
    pub decision: String,
    /// Why (shown to the model with a denial).
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /runs/:runId/input` and `POST /runs/:runId/resume` answer: the run continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunContinues {
    /// Always `true`.
    pub ok: bool,
    /// The run.
    pub run_id: String,
    /// Index of the first event the answer added: follow from here.
    pub start_index: u64,
}

/// `GET /health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `true`.
    pub ok: bool,
    /// `ready`.
    pub status: String,
}

/// A stream line sent while no event arrives. It is not part of the run's history: it has no
/// `meta.index`, and clients resume with the last event's index plus one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Always `stream.heartbeat`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The index the next event will have.
    pub data: HeartbeatData,
}

/// Payload of a [`Heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    /// Index of the next event.
    pub next_index: u64,
}

/// The `type` of a heartbeat line.
pub const HEARTBEAT_TYPE: &str = "stream.heartbeat";
