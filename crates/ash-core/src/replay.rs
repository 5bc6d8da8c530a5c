//! Rebuilding a run from its journal: the conversation so far and where the open turn stands.
//!
//! Replay is pure: the same records always give the same state, which is what makes a restarted
//! worker continue exactly where the crashed one stopped.

use std::collections::HashMap;

use ash_protocol::{
    AssistantPart, FinishReason, Message, SessionAuth, SessionAuthContext, ToolCall,
    ToolResultPart, Usage,
};

use crate::store::{JournalRecord, ParentLink, Pause, Resolution, add_usage};

/// A run's state as its journal describes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RunState {
    /// Every message of every finished step, in order, plus the open step's assistant message.
    pub(crate) history: Vec<Message>,
    /// The turn being worked on.
    pub(crate) turn: Option<TurnState>,
    /// Records replayed so far; the next journal read starts here.
    pub(crate) journal_len: u64,
    /// Who sent the session's first message.
    pub(crate) initiator: Option<SessionAuthContext>,
    /// What every priced model call of the session cost, in micro-USD.
    pub(crate) cost_micro_usd: u64,
    /// The agent this run is (`""`: the root).
    pub(crate) agent: String,
    /// Tokens of the subagent runs it delegated to (finished ones).
    pub(crate) child_usage: Usage,
    /// What they cost, in micro-USD.
    pub(crate) child_cost_micro_usd: u64,
    /// Who delegated to it, for a subagent's run.
    pub(crate) parent: Option<ParentLink>,
    /// What its parent lets it spend, for a subagent's run.
    pub(crate) grant: Option<crate::store::Grant>,
}

/// An open turn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnState {
    /// Turn ordinal.
    pub(crate) sequence: u32,
    /// Index of the step to run next, or of the open step.
    pub(crate) step: u32,
    /// Tokens of the turn's finished model calls.
    pub(crate) usage: Usage,
    /// Text of the latest step that produced any: the turn's reply.
    pub(crate) reply: Option<String>,
    /// A step whose model output is stored and whose actions are not all finished.
    pub(crate) open: Option<OpenStep>,
    /// Who sent the turn's message.
    pub(crate) caller: Option<SessionAuthContext>,
    /// Why it is paused, while it is.
    pub(crate) paused: Option<Pause>,
    /// It was cancelled while paused: it ends at once.
    pub(crate) cancelled: bool,
}

/// A step between its model output and its last action result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenStep {
    /// The tool calls, in the order they run.
    pub(crate) calls: Vec<ToolCall>,
    /// Results so far, in call order.
    pub(crate) results: Vec<ToolResultPart>,
    /// Highest attempt started per call id.
    pub(crate) attempts: HashMap<String, u32>,
    /// Why the model stopped.
    pub(crate) finish_reason: FinishReason,
    /// Tokens of the step's model call.
    pub(crate) usage: Usage,
    /// What the step's model call cost, in micro-USD, where priced.
    pub(crate) cost_micro_usd: Option<u64>,
    /// Answers to approval requests, per call id: `Ok` approved, `Err(message)` denied.
    pub(crate) decisions: HashMap<String, Result<(), Option<String>>>,
    /// A delegation whose subagent's pause was resolved: it re-attaches without a new attempt.
    pub(crate) reattach: Option<String>,
}

impl OpenStep {
    /// The first call without a result.
    pub(crate) fn next_call(&self) -> Option<&ToolCall> {
        self.calls.get(self.results.len())
    }
}

/// The visible text of an assistant message's parts, if any.
pub(crate) fn text_of(content: &[AssistantPart]) -> Option<String> {
    let text: Vec<&str> = content
        .iter()
        .filter_map(|p| match p {
            AssistantPart::Text { text } if !text.trim().is_empty() => Some(text.as_str()),
            _ => None,
        })
        .collect();
    (!text.is_empty()).then(|| text.concat())
}

/// The tool calls of an assistant message's parts.
pub(crate) fn calls_of(content: &[AssistantPart]) -> Vec<ToolCall> {
    content
        .iter()
        .filter_map(|p| match p {
            AssistantPart::ToolCall(call) => Some(call.clone()),
            _ => None,
        })
        .collect()
}

impl RunState {
    /// Applies records in order.
    pub(crate) fn apply_all(&mut self, records: impl IntoIterator<Item = JournalRecord>) {
        for record in records {
            self.apply(record);
        }
    }

    /// Applies one record.
    pub(crate) fn apply(&mut self, record: JournalRecord) {
        self.journal_len += 1;
        match record {
            JournalRecord::RunOpened { agent, parent, grant } => {
                self.agent = agent;
                self.parent = Some(parent);
                self.grant = grant;
            }
            JournalRecord::Granted { grant } => self.grant = Some(grant),
            JournalRecord::TurnQueued { sequence, message, caller } => {
                self.history.push(Message::user(message));
                if sequence == 0 {
                    self.initiator.clone_from(&caller);
                }
                self.turn = Some(TurnState {
                    sequence,
                    step: 0,
                    usage: Usage::default(),
                    reply: None,
                    open: None,
                    caller,
                    paused: None,
                    cancelled: false,
                });
            }
            JournalRecord::StepOutput {
                step,
                content,
                finish_reason,
                usage,
                cost_micro_usd,
                ..
            } => {
                self.cost_micro_usd =
                    self.cost_micro_usd.saturating_add(cost_micro_usd.unwrap_or(0));
                let calls = calls_of(&content);
                let reply = text_of(&content);
                self.history.push(Message::Assistant { content });
                if let Some(turn) = &mut self.turn {
                    turn.step = step;
                    turn.usage = add_usage(turn.usage, usage);
                    if reply.is_some() {
                        turn.reply = reply;
                    }
                    turn.open = Some(OpenStep {
                        calls,
                        results: Vec::new(),
                        attempts: HashMap::new(),
                        finish_reason,
                        usage,
                        cost_micro_usd,
                        decisions: HashMap::new(),
                        reattach: None,
                    });
                }
            }
            JournalRecord::ActionStarted { call_id, attempt, .. } => {
                if let Some(open) = self.open_step() {
                    if open.reattach.as_deref() == Some(call_id.as_str()) {
                        open.reattach = None;
                    }
                    open.attempts.insert(call_id, attempt);
                }
            }
            JournalRecord::ActionFinished { result, child, .. } => {
                if let Some((usage, cost)) = child {
                    self.child_usage = add_usage(self.child_usage, usage);
                    self.child_cost_micro_usd = self.child_cost_micro_usd.saturating_add(cost);
                }
                if let Some(open) = self.open_step() {
                    open.results.push(result);
                }
            }
            JournalRecord::StepFinished { step, .. } => {
                if let Some(turn) = &mut self.turn {
                    if let Some(open) = turn.open.take()
                        && !open.results.is_empty()
                    {
                        self.history.push(Message::Tool { content: open.results });
                    }
                    turn.step = step + 1;
                }
            }
            JournalRecord::TurnEnded { .. } => self.turn = None,
            JournalRecord::TurnPaused { pause, .. } => {
                if let Some(turn) = &mut self.turn {
                    turn.paused = Some(pause);
                }
            }
            JournalRecord::TurnResumed { resolution, .. } => {
                let Some(turn) = &mut self.turn else { return };
                let paused = turn.paused.take();
                let call = match paused {
                    Some(Pause::Approval { call_id, .. } | Pause::Subagent { call_id, .. }) => {
                        Some(call_id)
                    }
                    _ => None,
                };
                match (resolution, call, turn.open.as_mut()) {
                    (Resolution::Delegated { .. }, Some(call), Some(open)) => {
                        open.reattach = Some(call);
                    }
                    (Resolution::Approved { .. }, Some(call), Some(open)) => {
                        open.decisions.insert(call, Ok(()));
                    }
                    (Resolution::Denied { message, .. }, Some(call), Some(open)) => {
                        open.decisions.insert(call, Err(message));
                    }
                    (Resolution::Cancelled, _, _) => turn.cancelled = true,
                    _ => {}
                }
            }
        }
    }

    /// What the run spent in all: `own` (the tokens of its row) with its finished subagents'
    /// tokens, and the priced cost of both, in micro-USD.
    pub(crate) fn spent(&self, own: Usage) -> (Usage, u64) {
        (
            add_usage(own, self.child_usage),
            self.cost_micro_usd.saturating_add(self.child_cost_micro_usd),
        )
    }

    /// `auth` of the session context while `turn` is active.
    pub(crate) fn auth(&self, turn: &TurnState) -> SessionAuth {
        SessionAuth { current: turn.caller.clone(), initiator: self.initiator.clone() }
    }

    fn open_step(&mut self) -> Option<&mut OpenStep> {
        self.turn.as_mut().and_then(|t| t.open.as_mut())
    }
}
