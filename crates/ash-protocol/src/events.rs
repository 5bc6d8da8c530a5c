//! Run events: the NDJSON lines of `GET /.well-known/ash/v1/runs/:runId/stream`.
//!
//! Owns the envelope (`type`, `data`, `meta`) and the payload of every event type, with the seed's
//! event names (`run.started`, `turn.started`, `message.received`, `actions.requested`,
//! `action.result`, `thinking.completed`, `message.completed`, `step.completed`,
//! `turn.completed`, `session.waiting`, `run.failed`, `run.completed`) plus `turn.failed` and
//! `turn.cancelled`, which the seed lacked. Readers should skip types they do not know: new
//! types may appear within a stream version; a change to an existing payload bumps
//! [`STREAM_VERSION`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{FinishReason, Usage};

/// Version of the stream format, sent as `x-ash-stream-version`.
pub const STREAM_VERSION: u32 = 1;

/// One stored event with its place in the run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Type and payload.
    #[serde(flatten)]
    pub body: EventBody,
    /// Identity and position.
    pub meta: EventMeta,
}

/// Where an event sits in its run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// Stable id, `evt_<ULID>`; the same on every replay, so clients can de-duplicate.
    pub id: String,
    /// Position in the run's log: 0, 1, 2, … with no gaps.
    pub index: u64,
    /// When it was recorded, RFC 3339 UTC.
    pub at: String,
}

/// Whether a run ends after one turn or parks between turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    /// Parks at `session.waiting` after each turn and accepts follow-ups.
    #[default]
    Conversation,
    /// Runs one turn to `run.completed` (or `run.failed`) and ends.
    Task,
}

impl RunMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conversation => "conversation",
            Self::Task => "task",
        }
    }
}

/// An event's type and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    /// The durable run was created.
    #[serde(rename = "run.started")]
    RunStarted(RunStarted),
    /// A turn begins.
    #[serde(rename = "turn.started")]
    TurnStarted(TurnStarted),
    /// The turn's input reached the run.
    #[serde(rename = "message.received")]
    MessageReceived(MessageReceived),
    /// The model finished a reasoning block.
    #[serde(rename = "thinking.completed")]
    ThinkingCompleted(ThinkingCompleted),
    /// The model finished a block of visible text.
    #[serde(rename = "message.completed")]
    MessageCompleted(MessageCompleted),
    /// The model asked for actions; none has run yet.
    #[serde(rename = "actions.requested")]
    ActionsRequested(ActionsRequested),
    /// A running action reported progress (an MCP tool's progress notifications).
    #[serde(rename = "action.progress")]
    ActionProgress(ActionProgress),
    /// A command started in a named sandbox (the call's own, or its bootstrap or on_session).
    #[serde(rename = "sandbox.command")]
    SandboxCommand(SandboxCommand),
    /// Output of a sandbox command, as it came.
    #[serde(rename = "sandbox.output")]
    SandboxOutput(SandboxOutput),
    /// A sandbox command ended.
    #[serde(rename = "sandbox.exited")]
    SandboxExited(SandboxExited),
    /// One action finished.
    #[serde(rename = "action.result")]
    ActionResult(ActionResult),
    /// A delegation started (or re-attached to) its subagent's run.
    #[serde(rename = "subagent.started")]
    SubagentStarted(SubagentStarted),
    /// One event of the subagent's run, inline.
    #[serde(rename = "subagent.event")]
    SubagentEvent(SubagentEvent),
    /// The subagent's run ended.
    #[serde(rename = "subagent.completed")]
    SubagentCompleted(SubagentCompleted),
    /// A call waits for a person's approval.
    #[serde(rename = "input.requested")]
    InputRequested(InputRequested),
    /// The approval was answered.
    #[serde(rename = "input.resolved")]
    InputResolved(InputResolved),
    /// A paused turn continues.
    #[serde(rename = "turn.resumed")]
    TurnResumed(TurnResumed),
    /// A step (one model call and its actions) finished.
    #[serde(rename = "step.completed")]
    StepCompleted(StepCompleted),
    /// The turn finished.
    #[serde(rename = "turn.completed")]
    TurnCompleted(TurnCompleted),
    /// The turn stopped on an error; a conversation session still accepts messages.
    #[serde(rename = "turn.failed")]
    TurnFailed(TurnFailed),
    /// The turn was cancelled through `POST /runs/:runId/cancel`.
    #[serde(rename = "turn.cancelled")]
    TurnCancelled(TurnCancelled),
    /// The session is parked and accepts the next message.
    #[serde(rename = "session.waiting")]
    SessionWaiting(SessionWaiting),
    /// The run ended with an error; the session accepts no more messages.
    #[serde(rename = "run.failed")]
    RunFailed(RunFailed),
    /// The run reached its end (task mode).
    #[serde(rename = "run.completed")]
    RunCompleted(RunCompleted),
}

impl EventBody {
    /// The wire name of the event type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStarted(_) => "run.started",
            Self::TurnStarted(_) => "turn.started",
            Self::MessageReceived(_) => "message.received",
            Self::ThinkingCompleted(_) => "thinking.completed",
            Self::MessageCompleted(_) => "message.completed",
            Self::ActionsRequested(_) => "actions.requested",
            Self::ActionProgress(_) => "action.progress",
            Self::SandboxCommand(_) => "sandbox.command",
            Self::SandboxOutput(_) => "sandbox.output",
            Self::SandboxExited(_) => "sandbox.exited",
            Self::ActionResult(_) => "action.result",
            Self::SubagentStarted(_) => "subagent.started",
            Self::SubagentEvent(_) => "subagent.event",
            Self::SubagentCompleted(_) => "subagent.completed",
            Self::InputRequested(_) => "input.requested",
            Self::InputResolved(_) => "input.resolved",
            Self::TurnResumed(_) => "turn.resumed",
            Self::StepCompleted(_) => "step.completed",
            Self::TurnCompleted(_) => "turn.completed",
            Self::TurnFailed(_) => "turn.failed",
            Self::TurnCancelled(_) => "turn.cancelled",
            Self::SessionWaiting(_) => "session.waiting",
            Self::RunFailed(_) => "run.failed",
            Self::RunCompleted(_) => "run.completed",
        }
    }

    /// Whether nothing can follow this event in its run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::RunFailed(_) | Self::RunCompleted(_))
    }
}

/// `run.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStarted {
    /// Run id.
    pub run_id: String,
    /// Session id (equal to the run id: one run per session).
    pub session_id: String,
    /// Run mode.
    pub mode: RunMode,
}

/// `turn.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnStarted {
    /// Turn id, `turn_<sequence>`.
    pub turn_id: String,
    /// Turn ordinal from 0.
    pub sequence: u32,
}

/// `message.received`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReceived {
    /// Turn id.
    pub turn_id: String,
    /// The user's message.
    pub message: String,
}

/// `thinking.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingCompleted {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn, from 0.
    pub step_index: u32,
    /// The reasoning text.
    pub text: String,
}

/// `message.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCompleted {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// The text.
    pub message: String,
    /// Why the model stopped; `tool-calls` marks narration before actions, anything else is
    /// the turn's reply.
    pub finish_reason: FinishReason,
}

/// `actions.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionsRequested {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// The actions, in the order they run.
    pub actions: Vec<Action>,
}

/// One requested action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// A tool call.
    #[serde(rename_all = "camelCase")]
    ToolCall {
        /// Call id.
        call_id: String,
        /// Tool name as the model wrote it.
        tool_name: String,
        /// Parsed arguments, or the raw text when it was not JSON.
        input: Value,
    },
    /// A skill activation (`activate_skill` / `load_skill`).
    #[serde(rename_all = "camelCase")]
    LoadSkill {
        /// Call id.
        call_id: String,
        /// Parsed arguments.
        input: Value,
    },
    /// A delegation to a subagent.
    #[serde(rename_all = "camelCase")]
    SubagentCall {
        /// Call id.
        call_id: String,
        /// The subagent's id.
        name: String,
        /// Parsed arguments (`message`).
        input: Value,
    },
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionStatus {
    /// It ran and produced a result.
    Completed,
    /// It did not produce a result; `error.message` says why. The model saw the error.
    Failed,
    /// A person denied it; it never ran. The model saw why.
    Rejected,
}

/// `action.progress`: how far a running action is, as its tool reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionProgress {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// Call id from `actions.requested`.
    pub call_id: String,
    /// Which execution of the action reports.
    pub attempt: u32,
    /// How far (increasing within an attempt).
    pub progress: f64,
    /// Out of how much, when the tool knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// What the tool says it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a named sandbox ran a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxPhase {
    /// Preparing the sandbox's template (once per template key).
    Bootstrap,
    /// Preparing the sandbox for this session (once per session).
    OnSession,
    /// The call's own command.
    Call,
}

/// `sandbox.command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxCommand {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// The call that needed the command.
    pub call_id: String,
    /// Which execution of that call.
    pub attempt: u32,
    /// The sandbox's name (`repo-shell`).
    pub sandbox: String,
    /// Why the command runs.
    pub phase: SandboxPhase,
    /// The shell command.
    pub command: String,
}

/// Which pipe sandbox output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStreamName {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// `sandbox.output`: a piece of a command's output. Pieces are merged and bounded per call;
/// the complete (capped) output is in the call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxOutput {
    /// Call id.
    pub call_id: String,
    /// Which execution of that call.
    pub attempt: u32,
    /// The sandbox's name.
    pub sandbox: String,
    /// The pipe.
    pub stream: OutputStreamName,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// `sandbox.exited`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxExited {
    /// Call id.
    pub call_id: String,
    /// Which execution of that call.
    pub attempt: u32,
    /// The sandbox's name.
    pub sandbox: String,
    /// Why the command ran.
    pub phase: SandboxPhase,
    /// Exit code (128 + signal when a signal ended it); null when it could not start.
    pub exit_code: Option<i32>,
    /// The limit that ended it (`wall_time`, `memory`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Why it could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
    /// CPU time of the command and what it waited for, in milliseconds, where counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_ms: Option<u64>,
    /// Largest resident set of one of its processes, in bytes, where counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Output left out of `sandbox.output` events (past the per-call bound).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_elided: bool,
}

/// `action.result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// Call id from `actions.requested`.
    pub call_id: String,
    /// Which execution produced this result, from 1. Above 1 when a crash interrupted the
    /// action and it ran again.
    pub attempt: u32,
    /// Outcome.
    pub status: ActionStatus,
    /// What the action returned.
    pub result: ActionOutput,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ActionError>,
}

/// An action's output by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ActionOutput {
    /// A tool's output.
    #[serde(rename_all = "camelCase")]
    ToolResult {
        /// Tool name.
        tool_name: String,
        /// JSON result (tools that print JSON) or text.
        output: Value,
    },
    /// A loaded skill.
    #[serde(rename_all = "camelCase")]
    LoadSkillResult {
        /// Skill name.
        name: String,
    },
    /// A subagent's answer.
    #[serde(rename_all = "camelCase")]
    SubagentResult {
        /// The subagent's id.
        subagent_name: String,
        /// Its final reply.
        output: Value,
    },
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionError {
    /// Human-readable reason, as the model saw it.
    pub message: String,
}

/// `step.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepCompleted {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
    /// Tokens of this step's model call.
    pub usage: Usage,
    /// What the call cost, in USD, where the model's price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Why a turn ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The model answered without asking for more actions.
    Completed,
    /// `limits.max_steps_per_turn` was reached.
    StepLimit,
    /// A session token budget was reached.
    TokenLimit,
}

/// `turn.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnCompleted {
    /// Turn id.
    pub turn_id: String,
    /// Steps the turn took.
    pub steps: u32,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Tokens of every step of the turn.
    pub usage: Usage,
}

/// `turn.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnFailed {
    /// Turn id.
    pub turn_id: String,
    /// Stable error code, e.g. `model_error`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// Tokens spent before the failure.
    pub usage: Usage,
}

/// `turn.cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnCancelled {
    /// Turn id.
    pub turn_id: String,
    /// Tokens spent before the cancel.
    pub usage: Usage,
}

/// `session.waiting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionWaiting {
    /// The token to send with the next message.
    pub continuation_token: String,
    /// Why a run paused in the middle of a turn (absent at the end of a turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<WaitReason>,
}

/// Why a run paused: `code` `input_required` (an approval is asked for; answer it) or
/// `cost_budget`, `token_budget`, `session_timeout` (raise the limit, then resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitReason {
    /// Stable code.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

/// `subagent.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubagentStarted {
    /// The delegation call.
    pub call_id: String,
    /// Which execution of it.
    pub attempt: u32,
    /// The subagent's id.
    pub subagent_name: String,
    /// The child run, derived from this run and the call: a re-run of the call after a crash
    /// re-attaches to it.
    pub child_run_id: String,
    /// Its session.
    pub child_session_id: String,
}

/// `subagent.event`: one event of the child run, its own envelope (index and id in the child's
/// stream) kept whole. Each child event appears once, however often the call re-attaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubagentEvent {
    /// The delegation call.
    pub call_id: String,
    /// The subagent's id.
    pub subagent_name: String,
    /// The child run the event is from.
    pub child_run_id: String,
    /// The child's event.
    pub event: Box<Event>,
}

/// `subagent.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubagentCompleted {
    /// The delegation call.
    pub call_id: String,
    /// The subagent's id.
    pub subagent_name: String,
    /// `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Its final reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tokens the child used.
    pub usage: Usage,
}

/// `input.requested`: a call waits for a person's approval; the run pauses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputRequested {
    /// Turn id.
    pub turn_id: String,
    /// Step index within the turn.
    pub step_index: u32,
    /// The id an answer names.
    pub request_id: String,
    /// What is asked: `approval`.
    pub kind: String,
    /// The call waiting.
    pub call_id: String,
    /// Its tool.
    pub tool_name: String,
    /// Its input.
    pub input: Value,
    /// Why it needs approval.
    pub reason: String,
}

/// `input.resolved`: an answer arrived; the run continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputResolved {
    /// The request answered.
    pub request_id: String,
    /// The call it was about.
    pub call_id: String,
    /// `approved` or `denied`.
    pub decision: String,
    /// Who answered, when the agent requires authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// What they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `turn.resumed`: a paused turn continues (a budget was raised, or an answer arrived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnResumed {
    /// Turn id.
    pub turn_id: String,
    /// The code of the pause it leaves.
    pub code: String,
}

/// `run.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFailed {
    /// Stable error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// `run.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCompleted {
    /// The final reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Tokens of the whole run.
    pub usage: Usage,
}
