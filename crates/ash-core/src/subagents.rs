//! Delegation to subagents: a call of a subagent's tool runs the subagent as a child run of its
//! own, durable like any run, and streams the child's events inline on the parent's stream.
//!
//! Owns the child's id, derived from the parent run and the call id (so a parent that re-runs
//! the call after a crash re-attaches to the same child instead of starting another), the
//! child's creation (its journal opens with `RunOpened`: which agent, which parent), following
//! it from the first event the parent has not forwarded yet, and how it ends for the parent:
//! its reply, its failure, its cancellation (the parent's cancel cancels it), or its pause (the
//! parent pauses too, so an approval or a budget inside a subagent surfaces on the root run).

use std::sync::Arc;

use ash_protocol::{EventBody, RunStatus, SessionAuthContext, Usage};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::engine::Inner;
use crate::hub::Follower;
use crate::ids;
use crate::store::{Ask, JournalRecord, ParentLink, Pause, StoreError};
use crate::tools::{Outcome, SubagentNote, ToolEvent};

/// Longest a cancelled child is waited for before the parent gives up on seeing its end.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Events read per page when looking for what the parent already forwarded.
const SCAN_PAGE: usize = 512;

/// `wrun_<26 Crockford characters of SHA-256(parent, turn, step, call)>`: the same child for
/// the same call. The turn and step are part of it because models reuse call ids across steps.
pub(crate) fn child_run_id(parent: &ParentLink) -> String {
    ids::derived_run_id(
        b"ash.subagent.v1",
        &[
            parent.run_id.as_bytes(),
            &parent.turn.to_be_bytes(),
            &parent.step.to_be_bytes(),
            parent.call_id.as_bytes(),
        ],
    )
}

/// One delegation as the parent's worker asks for it.
pub(crate) struct Delegation<'a> {
    pub(crate) inner: &'a Arc<Inner>,
    /// The parent run, turn and call.
    pub(crate) parent: ParentLink,
    /// The call's attempt.
    pub(crate) attempt: u32,
    /// Who sent the parent's turn: the child's caller.
    pub(crate) caller: Option<SessionAuthContext>,
}

/// How a child paused, for the parent to pause the same way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChildPause {
    /// The child run.
    pub(crate) run_id: String,
    /// Why.
    pub(crate) pause: Pause,
    /// The approval it waits for, as the child asks it (request id in the child's terms).
    pub(crate) ask: Option<Ask>,
}

impl Delegation<'_> {
    /// Runs (or re-attaches to) the child of subagent `id` at `path` with `message`, streams its
    /// events to `events`, and returns how it ended for the parent.
    pub(crate) async fn run(
        &self,
        id: &str,
        path: &str,
        message: String,
        events: Option<&tokio::sync::mpsc::Sender<ToolEvent>>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let inner = self.inner;
        let child = child_run_id(&self.parent);
        let existed = match self.open(&child, path, message).await {
            Ok(existed) => existed,
            Err(error) => return Outcome::error(format!("subagent `{id}`: {error}")),
        };
        let note = |n: SubagentNote| async move {
            if let Some(events) = events {
                let _ = events.send(ToolEvent::Subagent(n)).await;
            }
        };
        note(SubagentNote::Started {
            subagent: id.to_owned(),
            child_run_id: child.clone(),
            attempt: self.attempt,
        })
        .await;
        let from = if existed {
            match self.forwarded(&child).await {
                Ok(from) => from,
                Err(error) => return Outcome::error(format!("subagent `{id}`: {error}")),
            }
        } else {
            0
        };
        if existed {
            // Everything was forwarded, its end included, before a crash: the end is the answer.
            match self.ended(&child, from).await {
                Ok(Some(event)) => {
                    if let Some(outcome) = self.conclude(id, &child, &event.body).await {
                        return outcome;
                    }
                }
                Ok(None) => {}
                Err(error) => return Outcome::error(format!("subagent `{id}`: {error}")),
            }
        }
        inner.ensure_worker(&child);
        let mut follower = Follower::new(
            child.clone(),
            from,
            Arc::clone(&inner.store),
            Arc::clone(&inner.hub),
            inner.hard_stop.clone(),
        );
        let mut cancelled: Option<tokio::time::Instant> = None;
        loop {
            let next = tokio::select! {
                next = follower.next() => next,
                () = cancel.cancelled(), if cancelled.is_none() => {
                    if inner.shutdown.is_cancelled() {
                        // Shutdown: the child goes on after the restart, and so does this call.
                        return Outcome::interrupted();
                    }
                    cancelled = Some(tokio::time::Instant::now() + CANCEL_WAIT);
                    if let Err(error) = inner.cancel_run(&child).await {
                        tracing::warn!(%error, child, "cannot cancel a subagent's run");
                    }
                    continue;
                }
                () = sleep_until(cancelled) => {
                    return Outcome::error(format!("subagent `{id}` was cancelled"));
                }
                () = inner.shutdown.cancelled(), if cancelled.is_none() => {
                    return Outcome::interrupted();
                }
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => return Outcome::interrupted(),
                Err(error) => return Outcome::error(format!("subagent `{id}`: {error}")),
            };
            let body = event.body.clone();
            note(SubagentNote::Event {
                subagent: id.to_owned(),
                child_run_id: child.clone(),
                event: Box::new(event),
            })
            .await;
            if let Some(outcome) = self.conclude(id, &child, &body).await {
                return outcome;
            }
            if let EventBody::SessionWaiting(waiting) = &body
                && waiting.reason.is_some()
            {
                match self.paused(&child, path).await {
                    Ok(Some(pause)) => return Outcome::paused(pause),
                    // It moved on since: keep following.
                    Ok(None) => {}
                    Err(error) => return Outcome::error(format!("subagent `{id}`: {error}")),
                }
            }
        }
    }

    /// The child's terminal event, when the child ended and `from` is past it.
    async fn ended(
        &self,
        child: &str,
        from: u64,
    ) -> Result<Option<ash_protocol::Event>, StoreError> {
        let store = &self.inner.store;
        let Some(record) = store.run(child).await? else { return Ok(None) };
        if !record.status.is_terminal() || from < record.event_count || record.event_count == 0 {
            return Ok(None);
        }
        Ok(store.events(child, record.event_count - 1, 1, 1 << 20).await?.into_iter().next())
    }

    /// How the child's event `body` ends the delegation, if it does: its reply or its failure,
    /// with the `subagent.completed` the result's commit stores.
    async fn conclude(&self, id: &str, child: &str, body: &EventBody) -> Option<Outcome> {
        match body {
            EventBody::RunCompleted(done) => {
                let mut outcome =
                    Outcome::ok(Value::String(done.output.clone().unwrap_or_default()));
                outcome.child = Some(self.spent(child, done.usage).await);
                // Stored with the call's result, in its commit.
                outcome.completed = Some(SubagentNote::Completed {
                    subagent: id.to_owned(),
                    status: "completed".to_owned(),
                    output: done.output.clone(),
                    error: None,
                    usage: done.usage,
                });
                Some(outcome)
            }
            EventBody::RunFailed(failed) => {
                let status = if failed.code == "cancelled" { "cancelled" } else { "failed" };
                let usage = self
                    .inner
                    .store
                    .run(child)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.usage)
                    .unwrap_or_default();
                let mut outcome =
                    Outcome::error(format!("subagent `{id}` {status}: {}", failed.message));
                outcome.child = Some(self.spent(child, usage).await);
                outcome.completed = Some(SubagentNote::Completed {
                    subagent: id.to_owned(),
                    status: status.to_owned(),
                    output: None,
                    error: Some(failed.message.clone()),
                    usage,
                });
                Some(outcome)
            }
            _ => None,
        }
    }

    /// Creates the child run unless it exists; whether it existed.
    async fn open(&self, child: &str, path: &str, message: String) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        if store.run(child).await?.is_some() {
            return Ok(true);
        }
        let grant = self.inner.grant_of(&self.parent.run_id).await?;
        let opened = JournalRecord::RunOpened {
            agent: path.to_owned(),
            parent: self.parent.clone(),
            grant: Some(grant),
        };
        let (run, mut first) =
            crate::engine::task_run(child, message, self.caller.clone(), Some(opened));
        // Running at once: the worker that takes it skips a commit (its lease is free, so the
        // sweep finds it like a queued run).
        first.status = Some(RunStatus::Running);
        match store.create_run(run, first).await {
            Ok(events) => {
                self.inner.hub.publish(child, &events);
                Ok(false)
            }
            // Created meanwhile (another attempt of this call): it is the same child.
            Err(StoreError::Conflict { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The child's first event this call has not forwarded yet: one past the highest child
    /// index among the parent's `subagent.event`s of this call.
    async fn forwarded(&self, child: &str) -> Result<u64, StoreError> {
        let store = &self.inner.store;
        let mut next = 0u64;
        let mut from = 0u64;
        loop {
            let page = store.events(&self.parent.run_id, from, SCAN_PAGE, 4 << 20).await?;
            let Some(last) = page.last() else { break };
            from = last.meta.index + 1;
            for event in &page {
                if let EventBody::SubagentEvent(forwarded) = &event.body
                    && forwarded.child_run_id == child
                    && forwarded.event.meta.index >= next
                {
                    next = forwarded.event.meta.index + 1;
                }
            }
        }
        Ok(next)
    }

    /// The child's pause, when it is paused now.
    async fn paused(&self, child: &str, path: &str) -> Result<Option<ChildPause>, StoreError> {
        let inner = self.inner;
        let Some(record) = inner.store.run(child).await? else { return Ok(None) };
        if record.status != RunStatus::Paused {
            return Ok(None);
        }
        let state = inner.replayed(child).await?;
        let Some(turn) = state.turn else { return Ok(None) };
        let Some(pause) = turn.paused else { return Ok(None) };
        let ask = match &pause {
            Pause::Approval { request_id, call_id, tool_name, reason } => {
                let input = turn.open.as_ref().and_then(|open| {
                    open.calls.iter().find(|c| c.id == *call_id).map(|c| {
                        serde_json::from_str(&c.arguments)
                            .unwrap_or_else(|_| Value::String(c.arguments.clone()))
                    })
                });
                Some(Ask {
                    request_id: request_id.clone(),
                    call_id: call_id.clone(),
                    tool_name: tool_name.clone(),
                    input: input.unwrap_or(Value::Null),
                    reason: format!("in subagent `{path}`: {reason}"),
                })
            }
            Pause::Subagent { ask, .. } => ask.clone(),
            Pause::Budget { .. } => None,
        };
        Ok(Some(ChildPause { run_id: child.to_owned(), pause, ask }))
    }

    /// What the child spent, for the parent's budget: its tokens and priced cost, with what
    /// its own subagents spent.
    async fn spent(&self, child: &str, usage: Usage) -> (Usage, u64) {
        match self.inner.replayed(child).await {
            Ok(state) => state.spent(usage),
            Err(_) => (usage, 0),
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use crate::store::ParentLink;

    fn link(run: &str, turn: u32, step: u32, call: &str) -> ParentLink {
        ParentLink {
            run_id: run.to_owned(),
            session_id: run.to_owned(),
            turn,
            step,
            call_id: call.to_owned(),
        }
    }

    #[test]
    fn a_child_id_is_the_same_for_the_same_call_only() {
        let id = |run, turn, step, call| super::child_run_id(&link(run, turn, step, call));
        let a = id("wrun_A", 0, 0, "call_1");
        assert_eq!(a, id("wrun_A", 0, 0, "call_1"));
        for other in [
            id("wrun_A", 0, 0, "call_2"),
            id("wrun_B", 0, 0, "call_1"),
            id("wrun_A", 1, 0, "call_1"),
            id("wrun_A", 0, 1, "call_1"),
        ] {
            assert_ne!(a, other);
        }
        // No separator trick: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(id("ab", 0, 0, "c"), id("a", 0, 0, "bc"));
        assert!(a.starts_with("wrun_") && a.len() == 31, "{a}");
    }
}
