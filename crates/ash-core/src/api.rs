//! The engine's API in domain terms: what a caller sends and what it gets back.
//!
//! Owns the typed ids of runs and sessions and the results of [`crate::Engine`] calls. The HTTP
//! shapes (`ok: true`, stream paths, status strings) are `ash-server`'s; nothing here derives
//! serde.

use std::fmt;

use ash_protocol::{RunMode, RunStatus, SessionAuthContext, Usage};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id read from a request or the store.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id!(
    /// A durable execution: `wrun_<ULID>`.
    RunId
);
id!(
    /// A durable conversation. A root run's session id is its run id; runs inside another
    /// session (subagents, later) carry their session's.
    SessionId
);

/// An inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The user's text.
    pub message: String,
    /// Continues the waiting session this token names; `None` starts a session.
    pub continuation_token: Option<String>,
    /// Mode of a new session (ignored for a follow-up).
    pub mode: RunMode,
    /// The authenticated caller, when the agent requires one.
    pub caller: Option<SessionAuthContext>,
}

impl Inbound {
    /// A message starting a new conversation, from no authenticated caller.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            continuation_token: None,
            mode: RunMode::default(),
            caller: None,
        }
    }
}

/// A message the engine stored; its turn runs in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The run.
    pub run_id: RunId,
    /// Its session.
    pub session_id: SessionId,
    /// The token for the next message.
    pub continuation_token: String,
    /// Index of this turn's first event: follow from here.
    pub start_index: u64,
}

/// A run's status and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSnapshot {
    /// The run.
    pub run_id: RunId,
    /// Its session.
    pub session_id: SessionId,
    /// Mode.
    pub mode: RunMode,
    /// Status.
    pub status: RunStatus,
    /// Turns started.
    pub turns: u32,
    /// Events stored.
    pub event_count: u64,
    /// Tokens of every step.
    pub usage: Usage,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A turn was running; it stops at its next safe point.
    Cancelling,
    /// No turn was running; nothing changed.
    NoActiveTurn,
}
