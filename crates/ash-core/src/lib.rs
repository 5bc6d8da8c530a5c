//! The ash harness engine: an agent spec becomes durable sessions that survive crashes.
//!
//! Owns sessions, runs, turns and steps; one worker task per active run holding a lease in the
//! store; the turn loop (prompt assembly, model call, actions, repeat until the model stops or a
//! limit says stop); conversation and task modes; per-session workspaces; the built-in tools
//! (`bash`, `read_file`, `write_file`, `activate_skill`/`load_skill`), command tools and the
//! tools of MCP connections (servers kept alive, their credentials kept here); the
//! [`Store`] trait with the journal and event records, and an in-memory implementation; and the
//! live event hub with [`Follower`]s that join history and live events without gaps.
//!
//! Durability rule: a model output is committed before its actions run, each action result when
//! it completes, and every event is stored before it is published. A restarted worker replays
//! the journal, never repeats a finished step or action, and re-runs an interrupted action with
//! its `attempt` incremented.
//!
//! Never speaks HTTP, reads the process environment, or spawns processes except through
//! `ash-sandbox`. SQLite and PostgreSQL stores live in `ash-store`.

mod agents;
mod api;
mod carry;
mod connections;
mod engine;
mod hub;
mod ids;
mod memory;
mod owner;
mod pauses;
mod prompt;
mod replay;
mod sandboxes;
mod schedules;
mod store;
mod subagents;
mod support;
mod tools;
mod workspace;

pub use agents::{AgentError, ResolveModel};
pub use api::{Accepted, CancelOutcome, Inbound, RunId, RunSnapshot, SessionId};
pub use connections::ConnectionError;
pub use engine::{
    Answer, Clock, ContinueError, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STEPS_PER_TURN, Engine,
    EngineConfig, EngineError, SendError, SystemClock, default_tool_policy,
};
pub use hub::Follower;
pub use memory::MemoryStore;
pub use schedules::{CATCH_UP as SCHEDULE_CATCH_UP, fire_run_id as schedule_run_id};
pub use store::{
    Commit, Expect, Fence, Grant, JournalRecord, Lease, LeaseState, NewRun, PAYLOAD_FORMAT,
    ParentLink, Pause, PoolHealth, Resolution, RunRecord, Store, StoreChange, StoreError,
    StoreFuture, StoreHealth, add_usage, check_expect, check_fence, check_payload_format,
    lease_expiry, next_flags, now_ms, rfc3339, stamp_events,
};
pub use support::{connected_surface, runtime_surface, tool_name, unsupported};
pub use tools::SchemaError;
