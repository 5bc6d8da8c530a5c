//! Paused runs: answering an approval, resuming after a budget was raised, cancelling — for a
//! run and, through it, for the subagent runs it waits on.
//!
//! A pause is a `TurnPaused` record and status `paused`; it ends with one `TurnResumed`
//! committed under `Expect::Status(Paused)`, so of two answers racing one wins and the other is
//! told it is stale. A parent paused on its subagent (`Pause::Subagent`) passes the answer or
//! the resume down first, then continues itself; its delegation re-attaches to the child.

use std::sync::Arc;

use ash_protocol::{
    Authenticator, EventBody, InputResolved, RunStatus, SessionAuthContext, TurnResumed,
};

use crate::api::CancelOutcome;
use crate::engine::{Answer, ContinueError, Inner};
use crate::ids;
use crate::replay::RunState;
use crate::store::{
    Ask, Commit, Expect, Grant, JournalRecord, Pause, Resolution, RunRecord, StoreError,
};

/// Longest message an answer may carry, in bytes.
const MAX_ANSWER_MESSAGE_BYTES: usize = 4096;

/// A paused run as read once: its row, its replayed journal, its open turn and why it waits.
pub(crate) struct Paused {
    record: RunRecord,
    state: RunState,
    turn: u32,
    pause: Pause,
}

impl Inner {
    /// Answers the approval `run_id` (or a subagent under it) waits for. `owner_checked`: the
    /// caller was already checked against the root run's session.
    pub(crate) async fn answer(
        self: &Arc<Self>,
        run_id: &str,
        answer: Answer,
        owner_checked: bool,
    ) -> Result<u64, ContinueError> {
        if answer.message.as_ref().is_some_and(|m| m.len() > MAX_ANSWER_MESSAGE_BYTES) {
            return Err(ContinueError::Invalid(format!(
                "`message` is longer than {MAX_ANSWER_MESSAGE_BYTES} bytes"
            )));
        }
        let Paused { record, state, turn, pause } = self.paused(run_id).await?;
        if !owner_checked {
            check_caller(&state, answer.caller.as_ref())?;
        }
        let (request_id, call_id) = match &pause {
            Pause::Approval { request_id, call_id, .. } => (request_id, call_id),
            Pause::Subagent {
                ask: Some(Ask { request_id, .. }), call_id, child_run_id, ..
            } => {
                if *request_id != answer.request_id {
                    return Err(stale(request_id, &answer.request_id));
                }
                let inner =
                    request_id.strip_prefix(&format!("{child_run_id}/")).unwrap_or_default();
                let child_answer = Answer { request_id: inner.to_owned(), ..answer.clone() };
                match Box::pin(self.answer(child_run_id, child_answer, true)).await {
                    // Answered, or it moved on already: either way this run goes on.
                    Ok(_) | Err(ContinueError::NotPaused(_)) => {}
                    Err(e) => return Err(e),
                }
                let event = resolved(request_id, call_id, &answer);
                let resolution = Resolution::Delegated { child_run_id: child_run_id.clone() };
                return self.continue_paused(&record, turn, resolution, vec![event]).await;
            }
            Pause::Budget { .. } | Pause::Subagent { ask: None, .. } => {
                return Err(ContinueError::Stale(format!(
                    "the run waits for a raised budget, not for an answer ({})",
                    pause.message()
                )));
            }
        };
        if *request_id != answer.request_id {
            return Err(stale(request_id, &answer.request_id));
        }
        let by = answer.caller.as_ref().map(|c| c.principal_id.clone());
        let resolution = if answer.approve {
            Resolution::Approved { request_id: request_id.clone(), by }
        } else {
            Resolution::Denied {
                request_id: request_id.clone(),
                by,
                message: answer.message.clone(),
            }
        };
        let event = resolved(request_id, call_id, &answer);
        self.continue_paused(&record, turn, resolution, vec![event]).await
    }

    /// Continues `run_id` paused on a spent budget, once it allows (its subagent first), for
    /// `caller`, who is checked like an answer's.
    pub(crate) async fn resume(
        self: &Arc<Self>,
        run_id: &str,
        caller: Option<&SessionAuthContext>,
    ) -> Result<u64, ContinueError> {
        let paused = self.paused(run_id).await?;
        check_caller(&paused.state, caller)?;
        self.resume_paused(paused, None).await
    }

    /// Resumes `paused`, with a new `grant` from its parent when it is a subagent's run whose
    /// root's budget was raised. A run paused on its own subagent passes what it has left now
    /// down to it first.
    async fn resume_paused(
        self: &Arc<Self>,
        paused: Paused,
        grant: Option<Grant>,
    ) -> Result<u64, ContinueError> {
        let Paused { record, mut state, turn, pause } = paused;
        if grant.is_some() {
            state.grant = grant;
        }
        let records: Vec<JournalRecord> =
            grant.map(|grant| JournalRecord::Granted { grant }).into_iter().collect();
        let agent = self.agents.get(&state.agent).unwrap_or(self.agents.root());
        let resolution = match &pause {
            Pause::Approval { request_id, .. }
            | Pause::Subagent { ask: Some(Ask { request_id, .. }), .. } => {
                return Err(ContinueError::Stale(format!(
                    "the run waits for an answer to request `{request_id}`; POST it to /runs/:runId/input"
                )));
            }
            Pause::Subagent { child_run_id, ask: None, .. } => {
                let below = self.remaining(agent, &record, &state);
                let resumed = match self.paused(child_run_id).await {
                    Ok(child) => Box::pin(self.resume_paused(child, Some(below))).await,
                    Err(e) => Err(e),
                };
                match resumed {
                    // Resumed, or it moved on already: either way this run goes on.
                    Ok(_) | Err(ContinueError::NotPaused(_)) => {}
                    Err(e) => return Err(e),
                }
                Resolution::Delegated { child_run_id: child_run_id.clone() }
            }
            Pause::Budget { .. } => {
                let now = self.config.clock.now_ms();
                if let Some((_, spent)) = self.budget_spent(agent, &record, &state, now) {
                    return Err(ContinueError::StillSpent(spent));
                }
                Resolution::Resumed
            }
        };
        let event = EventBody::TurnResumed(TurnResumed {
            turn_id: ids::turn_id(turn),
            code: pause.code().to_owned(),
        });
        self.continue_with(&record, turn, records, resolution, vec![event]).await
    }

    /// What `run_id` lets a subagent spend: what is left of its budgets.
    pub(crate) async fn grant_of(&self, run_id: &str) -> Result<Grant, StoreError> {
        let record =
            self.store.run(run_id).await?.ok_or_else(|| StoreError::NotFound(run_id.to_owned()))?;
        let state = self.replayed(run_id).await?;
        let agent = self.agents.get(&state.agent).unwrap_or(self.agents.root());
        Ok(self.remaining(agent, &record, &state))
    }

    /// The paused run `run_id`, read once.
    pub(crate) async fn paused(self: &Arc<Self>, run_id: &str) -> Result<Paused, ContinueError> {
        let record = self.store.run(run_id).await?.ok_or(ContinueError::UnknownRun)?;
        if record.status != RunStatus::Paused {
            return Err(ContinueError::NotPaused(record.status));
        }
        let state = self.replayed(run_id).await?;
        let Some((turn, Some(pause))) = state.turn.as_ref().map(|t| (t.sequence, t.paused.clone()))
        else {
            return Err(ContinueError::NotPaused(record.status));
        };
        Ok(Paused { record, state, turn, pause })
    }

    /// Stores `resolution` of the pause and queues the run; one writer wins a race, the other
    /// is told its answer is stale.
    pub(crate) async fn continue_paused(
        self: &Arc<Self>,
        record: &RunRecord,
        turn: u32,
        resolution: Resolution,
        events: Vec<EventBody>,
    ) -> Result<u64, ContinueError> {
        self.continue_with(record, turn, Vec::new(), resolution, events).await
    }

    /// [`Inner::continue_paused`] with `records` stored before the resolution.
    async fn continue_with(
        self: &Arc<Self>,
        record: &RunRecord,
        turn: u32,
        records: Vec<JournalRecord>,
        resolution: Resolution,
        events: Vec<EventBody>,
    ) -> Result<u64, ContinueError> {
        let mut commit = Commit::new(Expect::Unchanged {
            status: RunStatus::Paused,
            journal_count: record.journal_count,
        });
        commit.records = records;
        commit.records.push(JournalRecord::TurnResumed { turn, resolution });
        commit.events = events;
        commit.status = Some(RunStatus::Queued);
        let stored = match self.store.commit(&record.run_id, commit).await {
            Ok(stored) => stored,
            Err(StoreError::Conflict { .. }) => {
                return Err(ContinueError::Stale(
                    "the run already continued (another answer or resume came first)".to_owned(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        self.hub.publish(&record.run_id, &stored);
        self.ensure_worker(&record.run_id);
        Ok(stored.first().map_or(record.event_count, |e| e.meta.index))
    }

    /// Cancels `run_id`'s active or paused turn (and the subagent it is paused on); `None` for
    /// an unknown run.
    pub(crate) async fn cancel_run(
        self: &Arc<Self>,
        run_id: &str,
    ) -> Result<Option<CancelOutcome>, StoreError> {
        match self.paused(run_id).await {
            Ok(Paused { record, turn, pause, .. }) => {
                if let Pause::Subagent { child_run_id, .. } = &pause
                    && let Err(error) = Box::pin(self.cancel_run(child_run_id)).await
                {
                    tracing::warn!(%error, child = %child_run_id, "cannot cancel a subagent's run");
                }
                let outcome =
                    self.continue_paused(&record, turn, Resolution::Cancelled, Vec::new()).await;
                return match outcome {
                    Ok(_) => Ok(Some(CancelOutcome::Cancelling)),
                    Err(ContinueError::Store(e)) => Err(e),
                    // It continued meanwhile: cancel it as a running turn.
                    Err(_) => Box::pin(self.cancel_run(run_id)).await,
                };
            }
            Err(ContinueError::Store(e)) => return Err(e),
            Err(_) => {}
        }
        let Some(status) = self.store.request_cancel(run_id).await? else {
            return Ok(None);
        };
        if !status.is_active() {
            return Ok(Some(CancelOutcome::NoActiveTurn));
        }
        self.wake(run_id);
        Ok(Some(CancelOutcome::Cancelling))
    }
}

/// Whether `caller` may answer or resume the paused run `state` replays. A subagent's run is
/// answered and resumed through its root run, never directly: the root's pause describes the
/// child's, and they must not part ways. An approval in someone's session is theirs to give:
/// when the agent authenticates callers, only the session's initiator or the turn's sender may
/// answer; a scheduled run's principal is the runtime, so the agent's callers answer for it.
fn check_caller(
    state: &RunState,
    caller: Option<&SessionAuthContext>,
) -> Result<(), ContinueError> {
    if let Some(parent) = &state.parent {
        return Err(ContinueError::Stale(format!(
            "this run is a subagent's; answer or resume the run that delegated to it (`{}`)",
            parent.run_id
        )));
    }
    let owners: Vec<&SessionAuthContext> = state
        .initiator
        .iter()
        .chain(state.turn.as_ref().and_then(|t| t.caller.as_ref()))
        .filter(|o| o.authenticator != Authenticator::Schedule)
        .collect();
    let same = |a: &SessionAuthContext, b: &SessionAuthContext| {
        a.authenticator == b.authenticator && a.principal_id == b.principal_id
    };
    if owners.is_empty() || caller.is_some_and(|c| owners.iter().any(|o| same(o, c))) {
        return Ok(());
    }
    Err(ContinueError::Forbidden(
        "only the caller who started this session (or sent this turn) may answer its approvals"
            .to_owned(),
    ))
}

fn stale(waited: &str, given: &str) -> ContinueError {
    ContinueError::Stale(format!(
        "the run waits for request `{waited}`, not `{given}` (an old or unknown request)"
    ))
}

/// The `input.resolved` event of `answer`.
fn resolved(request_id: &str, call_id: &str, answer: &Answer) -> EventBody {
    EventBody::InputResolved(InputResolved {
        request_id: request_id.to_owned(),
        call_id: call_id.to_owned(),
        decision: if answer.approve { "approved" } else { "denied" }.to_owned(),
        by: answer.caller.as_ref().map(|c| c.principal_id.clone()),
        message: answer.message.clone(),
    })
}
