//! A run's worker: takes the lease, replays the journal, and drives the open turn step by step,
//! committing each model output before its actions and each action result as it completes.

use std::sync::Arc;

use ash_llm::ModelRequest;
use ash_protocol::{
    Action, ActionError, ActionOutput, ActionProgress, ActionResult, ActionStatus,
    ActionsRequested, AssistantPart, EventBody, FinishReason, InputRequested, MessageCompleted,
    ModelResponse, RunCompleted, RunFailed, RunMode, RunStatus, SessionContext, SessionTurn,
    SessionWaiting, StepCompleted, StopReason, ThinkingCompleted, ToolCall, ToolResultPart,
    TurnCancelled, TurnCompleted, TurnFailed, Usage, WaitReason,
};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::Inner;
use crate::ids;
use crate::prompt::system_prompt;
use crate::replay::{RunState, TurnState, calls_of, text_of};
use crate::store::{
    Ask, Commit, Expect, Fence, JournalRecord, Pause, RunRecord, StoreError, add_usage,
};
use crate::tools::{
    CallContext, Outcome, PrivateDirs, Registry, SandboxNote, SubagentNote, ToolEvent,
    ToolProgress, call_policy,
};
use crate::workspace::Workspace;

/// Least time between two stored `action.progress` events of one call.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// Most `action.progress` events stored for one call.
const MAX_PROGRESS_EVENTS: u64 = 200;
/// Most `sandbox.*` events stored for one call (the sandbox bounds its output events too).
const MAX_SANDBOX_EVENTS: u64 = 2000;
/// Most events a running call reported stored in one commit.
const REPORT_BATCH: usize = 64;

/// Why a worker stopped before its run parked or ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another worker took over the run")]
    LeaseLost,
    #[error("cannot prepare the workspace: {0}")]
    Workspace(std::io::Error),
    #[error("cannot restore the run's files from the store: {0}")]
    Carry(#[from] crate::carry::CarryError),
}

/// How a turn's work ended.
enum Stop {
    /// The turn ended (and the lease was released with the final commit).
    Ended,
    /// Shutdown: the lease is released and the run continues after a restart.
    Interrupted,
}

/// Works on `run_id` until its open turn ends, the engine shuts down, or the lease is lost.
pub(crate) async fn drive(
    inner: &Arc<Inner>,
    run_id: &str,
    wake: &Notify,
) -> Result<(), WorkerError> {
    let store = &inner.store;
    let ttl = inner.config.lease_ttl;
    if !ids::is_run_id(run_id) {
        // Not one of ours (a store others write to): it must never name a directory.
        tracing::error!(run_id, "refusing to work on a run whose id ash could not have made");
        return Ok(());
    }
    let asked = tokio::time::Instant::now();
    let Some(fence) = store.acquire_lease(run_id, &inner.owner_id, ttl).await? else {
        return Ok(());
    };
    let held = Held::new(fence.clone(), asked, ttl);
    let Some(record) = store.run(run_id).await? else { return Ok(()) };
    let mut state = RunState::default();
    state.apply_all(store.journal(run_id, 0).await?);
    if state.turn.as_ref().is_none_or(|t| t.paused.is_some()) {
        // Nothing open (a worker that finished raced with this one), or paused: no work.
        store.release_lease(run_id, &fence).await?;
        return Ok(());
    }
    let Some(agent) = inner.agents.get(&state.agent).cloned() else {
        return fail_unknown_agent(inner, record, &state, fence).await;
    };
    let cancel = CancellationToken::new();
    let releasing = CancellationToken::new();
    // Renewed while the files are restored: a large restore must not cost the lease.
    let restored = tokio::select! {
        restored = restore_carried(inner, run_id) => restored,
        lost = watch_lease(inner, run_id, &held, wake, &cancel, &releasing) => Err(lost),
    };
    let carried = match restored {
        Ok(carried) => carried,
        Err(WorkerError::Carry(crate::carry::CarryError::Bad { area, reason })) => {
            let message = format!(
                "this run's {area} cannot be restored on this node from the shared store ({reason})"
            );
            return fail_turn(inner, record, &state, fence, "files_unavailable", message).await;
        }
        Err(error) => {
            store.release_lease(run_id, &fence).await?;
            return Err(error);
        }
    };
    let workspace = if let Some(fixed) = &inner.config.workspace {
        Workspace::fixed(fixed).map_err(WorkerError::Workspace)?
    } else {
        let (dir, id, project) = (
            inner.config.workspaces_dir.clone(),
            run_id.to_owned(),
            inner.config.project_dir.clone(),
        );
        let package = agent.package.clone();
        let sandbox = Arc::clone(&inner.config.sandbox);
        tokio::task::spawn_blocking(move || {
            Workspace::open(&dir, &id, &project, &package, &sandbox)
        })
        .await
        .map_err(|e| WorkerError::Workspace(std::io::Error::other(e)))?
        .map_err(WorkerError::Workspace)?
    };
    let mut turn = TurnWorker {
        inner,
        record,
        state,
        workspace,
        cancel: cancel.clone(),
        releasing: releasing.clone(),
        fence: fence.clone(),
        carried,
        started: None,
        sandboxes: crate::sandboxes::Opened::new(&agent.sandboxes, run_id),
        agent: Arc::clone(&agent),
    };
    let worked = async {
        if turn.record.status == RunStatus::Queued {
            let mut commit = turn.commit();
            commit.status = Some(RunStatus::Running);
            turn.apply(commit).await?;
        }
        tokio::select! {
            stop = turn.run() => stop,
            lost = watch_lease(inner, run_id, &held, wake, &cancel, &releasing) => Err(lost),
        }
    }
    .await;
    // What the run's sandboxes left running ends here; their files stay for the next turn.
    turn.sandboxes.close().await;
    if let Stop::Interrupted = worked? {
        store.release_lease(run_id, &fence).await?;
    }
    Ok(())
}

/// Ends the open turn of a run whose agent this engine no longer has (its subagent was removed
/// from the directory since), saying so, and releases the lease.
async fn fail_unknown_agent(
    inner: &Arc<Inner>,
    record: RunRecord,
    state: &RunState,
    fence: Fence,
) -> Result<(), WorkerError> {
    let message = format!(
        "this run is subagent `{}`, which the agent no longer has; restore it to continue",
        state.agent
    );
    fail_turn(inner, record, state, fence, "unknown_agent", message).await
}

/// Ends the open turn and the run as failed with `code`, saying `message`, and releases the
/// lease: what this node cannot work on.
async fn fail_turn(
    inner: &Arc<Inner>,
    record: RunRecord,
    state: &RunState,
    fence: Fence,
    code: &str,
    message: String,
) -> Result<(), WorkerError> {
    let Some(turn) = &state.turn else { return Ok(()) };
    let mut commit = Commit::new(Expect::Lease(fence));
    commit.records.push(JournalRecord::TurnEnded { turn: turn.sequence });
    commit.events.push(EventBody::TurnFailed(TurnFailed {
        turn_id: ids::turn_id(turn.sequence),
        code: code.to_owned(),
        message: message.clone(),
        usage: turn.usage,
    }));
    commit.events.push(EventBody::RunFailed(RunFailed { code: code.to_owned(), message }));
    commit.status = Some(RunStatus::Failed);
    commit.release_lease = true;
    let events = inner.store.commit(&record.run_id, commit).await?;
    inner.hub.publish(&record.run_id, &events);
    Ok(())
}

/// On a store other nodes share: the run's workspace and sandbox copies, restored from the
/// store where this node's copy is not the last one stored.
async fn restore_carried(
    inner: &Arc<Inner>,
    run_id: &str,
) -> Result<Vec<crate::carry::Carried>, WorkerError> {
    use crate::carry::{Area, Carried};
    if !inner.store.is_shared() || inner.config.workspace.is_some() {
        return Ok(Vec::new());
    }
    let mut carried = vec![
        Carried::new(Area::Workspace, inner.config.workspaces_dir.join(run_id)),
        Carried::new(Area::Sandboxes, inner.config.sandboxes_dir.join("sessions").join(run_id)),
    ];
    let adopt = |dir: &std::path::Path| {
        inner
            .config
            .sandbox
            .adopt(dir)
            .map_err(|e| WorkerError::Workspace(std::io::Error::other(e)))
    };
    for area in &mut carried {
        let Some(restored) = area.restore(inner.store.as_ref(), run_id).await? else { continue };
        // Owned by the user tools run as, closed to others, as when made here: the workspace
        // whole; of the sandboxes, each one's copy (the directory holding them stays ash's).
        if area.area() == Area::Workspace {
            adopt(area.dir())?;
        } else {
            for entry in std::fs::read_dir(area.dir()).map_err(WorkerError::Workspace)? {
                let path = entry.map_err(WorkerError::Workspace)?.path();
                if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    adopt(&path)?;
                }
            }
        }
        // Only once it is usable does this node's copy count as the stored one.
        area.mark(&restored).await.map_err(WorkerError::Workspace)?;
        tracing::info!(
            run_id,
            area = area.area().name(),
            "restored the run's files from the store"
        );
    }
    Ok(carried)
}

/// The lease a worker holds, and until when it surely holds it by this process's clock: the
/// last renewal's (or the taking's) send time plus the lease time, less a tenth for the drift
/// of clocks and the trip to the store.
struct Held {
    fence: Fence,
    until: std::sync::Mutex<tokio::time::Instant>,
    ttl: std::time::Duration,
}

impl Held {
    fn new(fence: Fence, asked: tokio::time::Instant, ttl: std::time::Duration) -> Self {
        Self { fence, until: std::sync::Mutex::new(asked + ttl - ttl / 10), ttl }
    }

    fn until(&self) -> tokio::time::Instant {
        *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn renewed(&self, sent: tokio::time::Instant) {
        *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            sent + self.ttl - self.ttl / 10;
    }
}

/// Renews the lease every third of its lifetime (or when woken), turns a stored cancel request
/// into `cancel`, and returns if the lease was lost — or may have been: past the instant it
/// surely held, the worker stops rather than act twice beside a node that took over while the
/// store could not be reached.
async fn watch_lease(
    inner: &Inner,
    run_id: &str,
    held: &Held,
    wake: &Notify,
    cancel: &CancellationToken,
    releasing: &CancellationToken,
) -> WorkerError {
    let ttl = inner.config.lease_ttl;
    loop {
        tokio::select! {
            () = tokio::time::sleep(ttl / 3) => {}
            () = wake.notified() => {}
            () = tokio::time::sleep_until(held.until()) => {}
        }
        let sent = tokio::time::Instant::now();
        // Waited on until the lease's own end at most; a renewal that succeeds late still
        // proves the lease is this worker's (nobody took it: its epoch is unchanged).
        let budget = (held.until() + ttl / 10)
            .saturating_duration_since(sent)
            .max(std::time::Duration::from_millis(100));
        let renewed =
            tokio::time::timeout(budget, inner.store.renew_lease(run_id, &held.fence, ttl)).await;
        match renewed {
            Ok(Ok(Some(state))) => {
                held.renewed(sent);
                if state.cancel_requested {
                    cancel.cancel();
                }
            }
            // The turn's last commit gave the lease up itself: not a takeover.
            Ok(Ok(None)) if releasing.is_cancelled() => std::future::pending::<()>().await,
            Ok(Ok(None)) => return WorkerError::LeaseLost,
            // A store hiccup: keep working while the lease surely holds; the next renewal or
            // commit will tell.
            Ok(Err(error)) => tracing::warn!(run_id, %error, "cannot renew the lease"),
            Err(_) => tracing::warn!(run_id, "renewing the lease timed out"),
        }
        // Only where another node could take the run over: alone on its store, a worker that
        // stopped would gain nothing and kill its tools.
        if inner.store.is_shared()
            && tokio::time::Instant::now() >= held.until()
            && !releasing.is_cancelled()
        {
            tracing::warn!(
                run_id,
                "the lease could not be renewed before it ran out; stopping work on the run"
            );
            return WorkerError::LeaseLost;
        }
    }
}

struct TurnWorker<'a> {
    inner: &'a Arc<Inner>,
    record: RunRecord,
    state: RunState,
    workspace: Workspace,
    cancel: CancellationToken,
    /// Set before a commit that releases the lease is sent.
    releasing: CancellationToken,
    /// The lease this worker holds; every write carries it.
    fence: Fence,
    /// The directories that move with the run (on a shared store).
    carried: Vec<crate::carry::Carried>,
    /// The call whose start this worker stored with its step's output and has not run yet.
    started: Option<String>,
    /// The named sandboxes this worker opened for the run.
    sandboxes: crate::sandboxes::Opened<'a>,
    /// The agent the run is: its tools, model, price and limits.
    agent: Arc<crate::agents::Agent>,
}

impl TurnWorker<'_> {
    fn commit(&self) -> Commit {
        Commit::new(Expect::Lease(self.fence.clone()))
    }

    /// Stores the run's directories as this action left them, before its result: a node that
    /// takes over later finds them so (or runs the action again on the state before it).
    async fn save_carried(&mut self) -> Result<(), StoreError> {
        let (store, run_id, fence) = (self.inner.store.as_ref(), &self.record.run_id, &self.fence);
        for area in &mut self.carried {
            match area.save(store, run_id, fence).await {
                Ok(()) => {}
                Err(crate::carry::CarryError::Store(error)) => return Err(error),
                // Not fatal here: a takeover would find the files of an earlier action.
                Err(error) => {
                    tracing::warn!(run_id, area = area.area().name(), %error, "cannot store the run's files")
                }
            }
        }
        Ok(())
    }

    fn turn(&self) -> Option<&TurnState> {
        self.state.turn.as_ref()
    }

    /// Stores `commit`, then updates the replayed state and publishes its events.
    async fn apply(&mut self, commit: Commit) -> Result<(), StoreError> {
        if commit.release_lease {
            self.releasing.cancel();
        }
        let records = commit.records.clone();
        let usage = commit.usage;
        let status = commit.status;
        let turns = commit.turns;
        let events = self.inner.store.commit(&self.record.run_id, commit).await?;
        self.state.apply_all(records);
        self.record.usage = add_usage(self.record.usage, usage);
        self.record.turns += turns;
        self.record.event_count += events.len() as u64;
        if let Some(status) = status {
            self.record.status = status;
        }
        self.inner.hub.publish(&self.record.run_id, &events);
        Ok(())
    }

    async fn run(&mut self) -> Result<Stop, WorkerError> {
        loop {
            let Some(turn) = self.turn().cloned() else { return Ok(Stop::Ended) };
            if self.inner.shutdown.is_cancelled() {
                return Ok(Stop::Interrupted);
            }
            if self.cancel.is_cancelled() || turn.cancelled {
                return Ok(self.end_cancelled(&turn).await?);
            }
            if let Some(open) = &turn.open {
                match open.next_call().cloned() {
                    Some(call) => match self.run_action(&turn, call).await? {
                        Step::Next => {}
                        Step::Stop(stop) => return Ok(stop),
                    },
                    None => {
                        let mut commit = self.commit();
                        step_finished(&mut commit, &turn);
                        self.apply(commit).await?;
                    }
                }
                continue;
            }
            if turn.step >= self.max_steps() {
                return Ok(self.end_turn(&turn, StopReason::StepLimit).await?);
            }
            let now = self.inner.config.clock.now_ms();
            if let Some((code, message)) =
                self.inner.budget_spent(&self.agent, &self.record, &self.state, now)
            {
                return Ok(self.pause(&turn, Pause::Budget { code, message }, None).await?);
            }
            let response = tokio::select! {
                response = self.call_model() => response,
                () = self.cancel.cancelled() => continue,
                () = self.inner.shutdown.cancelled() => return Ok(Stop::Interrupted),
            };
            match response {
                Ok(response) => self.record_step(&turn, response).await?,
                Err(error) => {
                    let message = error.to_string();
                    return Ok(self.end_failed(&turn, "model_error", message).await?);
                }
            }
        }
    }

    /// Steps a turn of this agent may take.
    fn max_steps(&self) -> u32 {
        self.agent
            .package
            .limits
            .max_steps_per_turn
            .unwrap_or(crate::engine::DEFAULT_MAX_STEPS_PER_TURN)
    }

    /// Parks the turn: no task, status `paused`, `session.waiting` with the reason (after
    /// `input.requested` for an approval).
    async fn pause(
        &mut self,
        turn: &TurnState,
        pause: Pause,
        asked: Option<InputRequested>,
    ) -> Result<Stop, StoreError> {
        let mut commit = self.commit();
        commit.events.extend(asked.map(EventBody::InputRequested));
        commit.events.push(EventBody::SessionWaiting(SessionWaiting {
            continuation_token: self.record.continuation_token.clone(),
            reason: Some(WaitReason { code: pause.code().to_owned(), message: pause.message() }),
        }));
        commit.records.push(JournalRecord::TurnPaused { turn: turn.sequence, pause });
        commit.status = Some(RunStatus::Paused);
        commit.release_lease = true;
        self.apply(commit).await?;
        Ok(Stop::Ended)
    }

    /// Pauses the turn because the subagent `call` delegated to paused: an approval it waits
    /// for surfaces here (`input.requested` naming the child's request), a budget as its reason.
    async fn pause_for_child(
        &mut self,
        turn: &TurnState,
        call: &ToolCall,
        child: crate::subagents::ChildPause,
    ) -> Result<Stop, StoreError> {
        let ask = child
            .ask
            .map(|ask| Ask { request_id: format!("{}/{}", child.run_id, ask.request_id), ..ask });
        let asked = ask.as_ref().map(|ask| InputRequested {
            turn_id: ids::turn_id(turn.sequence),
            step_index: turn.step,
            request_id: ask.request_id.clone(),
            kind: "approval".to_owned(),
            call_id: ask.call_id.clone(),
            tool_name: ask.tool_name.clone(),
            input: ask.input.clone(),
            reason: ask.reason.clone(),
        });
        let pause = Pause::Subagent {
            call_id: call.id.clone(),
            child_run_id: child.run_id.clone(),
            code: child.pause.code().to_owned(),
            message: child.pause.message(),
            ask,
        };
        self.pause(turn, pause, asked).await
    }

    /// Whether `call` may run now: it needs no approval or was approved; was denied; or waits.
    fn gate(&self, turn: &TurnState, call: &ToolCall) -> Gate {
        let decided = turn.open.as_ref().and_then(|open| open.decisions.get(&call.id));
        match decided {
            Some(Ok(())) => return Gate::Run,
            Some(Err(message)) => return Gate::Denied(message.clone()),
            None => {}
        }
        match self.agent.tools.approval_needed(call) {
            None => Gate::Run,
            Some(reason) => Gate::Ask(reason),
        }
    }

    async fn call_model(&self) -> Result<ModelResponse, ash_llm::LlmError> {
        self.inner.connections.started().await;
        let request = ModelRequest {
            system: system_prompt(
                &self.agent.package,
                self.workspace.root(),
                self.agent.tools.skills(),
                &self.inner.connections.instructions(),
            ),
            messages: self.state.history.clone(),
            tools: self.agent.tools.definitions(),
            ..ModelRequest::default()
        };
        // Dropping the stream (cancel, shutdown) aborts the request; the call has no side
        // effects and simply happens again.
        self.agent.model.stream(&request, CancellationToken::new()).collect().await
    }

    /// Stores a model output before any of its actions run.
    async fn record_step(
        &mut self,
        turn: &TurnState,
        mut response: ModelResponse,
    ) -> Result<(), StoreError> {
        unique_call_ids(&mut response.content);
        let turn_id = ids::turn_id(turn.sequence);
        let step = turn.step;
        let calls = calls_of(&response.content);
        let finish_reason =
            if calls.is_empty() { response.finish_reason } else { FinishReason::ToolCalls };
        let mut commit = self.commit();
        for part in &response.content {
            if let AssistantPart::Reasoning { text, .. } = part
                && !text.trim().is_empty()
            {
                commit.events.push(EventBody::ThinkingCompleted(ThinkingCompleted {
                    turn_id: turn_id.clone(),
                    step_index: step,
                    text: text.clone(),
                }));
            }
        }
        if let Some(text) = text_of(&response.content) {
            commit.events.push(EventBody::MessageCompleted(MessageCompleted {
                turn_id: turn_id.clone(),
                step_index: step,
                message: text,
                finish_reason,
            }));
        }
        if !calls.is_empty() {
            commit.events.push(EventBody::ActionsRequested(ActionsRequested {
                turn_id: turn_id.clone(),
                step_index: step,
                actions: calls.iter().map(|c| action_of(&self.agent.tools, c)).collect(),
            }));
        }
        commit.records.push(JournalRecord::StepOutput {
            turn: turn.sequence,
            step,
            content: response.content,
            finish_reason,
            usage: response.usage,
            cost_micro_usd: self.agent.price.map(|p| p.cost_micro_usd(&response.usage)),
        });
        commit.usage = response.usage;
        if let Some(first) = calls.first() {
            if self.agent.tools.approval_needed(first).is_some() {
                // It may wait for a person: started only once it may run.
                return self.apply(commit).await;
            }
            // The first action starts in the same commit as the output that asks for it: one
            // write (and one sync) less per step. After a crash it counts as in flight.
            commit.records.push(JournalRecord::ActionStarted {
                turn: turn.sequence,
                step,
                call_id: first.id.clone(),
                attempt: 1,
            });
            self.started.clone_from(&Some(first.id.clone()));
            return self.apply(commit).await;
        }
        // No actions: the step and the turn end in the same commit. The ended step's turn is
        // what replaying this commit's records gives.
        let mut replayed = RunState { turn: Some(turn.clone()), ..RunState::default() };
        replayed.apply_all(commit.records.clone());
        if let Some(open) = replayed.turn.clone() {
            step_finished(&mut commit, &open);
            replayed.apply_all(commit.records.last().cloned());
        }
        if let Some(ended) = &replayed.turn {
            let run_usage = add_usage(self.record.usage, commit.usage);
            let end = TurnEnd::Completed(StopReason::Completed);
            self.finish_turn(&mut commit, ended, &end, run_usage);
        }
        self.apply(commit).await
    }

    /// Runs one action (again, with a higher attempt, if a crash interrupted it) and stores its
    /// result; or, when it needs approval, records its denial or pauses the turn for an answer.
    async fn run_action(&mut self, turn: &TurnState, call: ToolCall) -> Result<Step, WorkerError> {
        let Some(open) = &turn.open else { return Ok(Step::Stop(Stop::Ended)) };
        match self.gate(turn, &call) {
            Gate::Run => {}
            Gate::Denied(message) => {
                let attempt = open.attempts.get(&call.id).copied().unwrap_or(1);
                let why = message.map_or_else(String::new, |m| format!(": {m}"));
                let outcome = Outcome::error(format!("a person denied this call{why}"));
                let mut commit = self.commit();
                push_result(&self.agent.tools, &mut commit, turn, &call, attempt, &outcome);
                if let Some(EventBody::ActionResult(result)) = commit.events.last_mut() {
                    result.status = ActionStatus::Rejected;
                }
                if open.results.len() + 1 == open.calls.len() {
                    step_finished(&mut commit, turn);
                }
                self.apply(commit).await?;
                return Ok(Step::Next);
            }
            Gate::Ask(reason) => {
                let request_id = format!("req_{}_{}_{}", turn.sequence, turn.step, call.id);
                let asked = InputRequested {
                    turn_id: ids::turn_id(turn.sequence),
                    step_index: turn.step,
                    request_id: request_id.clone(),
                    kind: "approval".to_owned(),
                    call_id: call.id.clone(),
                    tool_name: call.name.clone(),
                    input: serde_json::from_str(&call.arguments)
                        .unwrap_or_else(|_| Value::String(call.arguments.clone())),
                    reason: reason.clone(),
                };
                let pause = Pause::Approval {
                    request_id,
                    call_id: call.id.clone(),
                    tool_name: call.name.clone(),
                    reason,
                };
                return Ok(Step::Stop(self.pause(turn, pause, Some(asked)).await?));
            }
        }
        let attempt = if self.started.as_deref() == Some(call.id.as_str()) {
            // Its start was stored with the step's output, by this worker, just now.
            self.started = None;
            open.attempts.get(&call.id).copied().unwrap_or(1)
        } else {
            // A delegation its subagent's answer or resume let go on keeps its attempt.
            let reattach = open.reattach.as_deref() == Some(call.id.as_str());
            let attempt = open.attempts.get(&call.id).map_or(1, |a| a + u32::from(!reattach));
            let mut started = self.commit();
            started.records.push(JournalRecord::ActionStarted {
                turn: turn.sequence,
                step: turn.step,
                call_id: call.id.clone(),
                attempt,
            });
            self.apply(started).await?;
            attempt
        };

        let (outcome, progress_events) = self.execute(turn, &call, attempt).await;
        self.record.event_count += progress_events;
        let Some(outcome) = outcome else {
            return Ok(Step::Stop(Stop::Interrupted));
        };
        if let Some(child) = outcome.paused {
            return Ok(Step::Stop(self.pause_for_child(turn, &call, *child).await?));
        }
        self.save_carried().await?;
        let mut commit = self.commit();
        if let Some(completed) = outcome.completed.clone() {
            commit.events.push(subagent_event(&call, completed));
        }
        push_result(&self.agent.tools, &mut commit, turn, &call, attempt, &outcome);
        if open.results.len() + 1 == open.calls.len() {
            step_finished(&mut commit, turn);
        }
        self.apply(commit).await?;
        Ok(Step::Next)
    }

    /// Executes `call`; `None` when shutdown killed it and it must run again after a restart.
    /// What it reports is stored as it comes (`action.progress`, `sandbox.*`; see
    /// [`TurnWorker::report`]), up to its end even when it was told to stop; the number of
    /// events stored is returned too.
    async fn execute(
        &self,
        turn: &TurnState,
        call: &ToolCall,
        attempt: u32,
    ) -> (Option<Outcome>, u64) {
        let context = SessionContext {
            session_id: self.record.run_id.clone(),
            run_id: self.record.run_id.clone(),
            mode: self.record.mode,
            turn: SessionTurn { id: ids::turn_id(turn.sequence), sequence: turn.sequence },
            parent: self.state.parent.as_ref().map(|p| {
                serde_json::json!({
                    "runId": p.run_id,
                    "sessionId": p.session_id,
                    "turn": { "id": ids::turn_id(p.turn), "sequence": p.turn },
                })
            }),
            auth: self.state.auth(turn),
        };
        let delegation = crate::subagents::Delegation {
            inner: self.inner,
            parent: crate::store::ParentLink {
                run_id: self.record.run_id.clone(),
                session_id: self.record.run_id.clone(),
                turn: turn.sequence,
                step: turn.step,
                call_id: call.id.clone(),
            },
            attempt,
            caller: turn.caller.clone(),
        };
        let session = serde_json::to_value(&context).unwrap_or(Value::Null);
        let action_cancel = CancellationToken::new();
        let config = &self.inner.config;
        let dirs = PrivateDirs {
            project_dir: &config.project_dir,
            workspaces_dir: &config.workspaces_dir,
            connections_dir: &config.connections_dir,
            sandboxes_dir: &config.sandboxes_dir,
        };
        let policy = call_policy(&config.tool_policy, &dirs, self.workspace.root());
        let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<ToolEvent>(16);
        let ctx = CallContext {
            workspace: &self.workspace,
            project_dir: &config.project_dir,
            session: &session,
            env: &config.process_env,
            cancel: &action_cancel,
            sandbox: &config.sandbox,
            policy: &policy,
            events: Some(&events_tx),
            broker: self.inner.broker.as_ref(),
            sandboxes: (!self.agent.sandboxes.is_empty()).then_some(&self.sandboxes),
            delegation: Some(&delegation),
        };
        let running = self.agent.tools.call(call, &ctx);
        tokio::pin!(running);
        let mut reported = Reported::default();
        // `Some(false)`: the user cancelled; `Some(true)`: shutdown's grace is over. Either way
        // the call is told to stop, and what it reports until it has is still stored.
        let mut stopped: Option<bool> = None;
        let outcome = loop {
            tokio::select! {
                biased;
                Some(event) = events_rx.recv() => {
                    // What else is waiting goes in the same commit: one write for a burst.
                    let mut batch = vec![event];
                    while batch.len() < REPORT_BATCH {
                        match events_rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    self.report(&mut reported, turn, call, attempt, batch).await;
                }
                outcome = &mut running => break outcome,
                () = self.cancel.cancelled(), if stopped.is_none() => {
                    action_cancel.cancel();
                    stopped = Some(false);
                }
                () = self.inner.hard_stop.cancelled(), if stopped != Some(true) => {
                    action_cancel.cancel();
                    stopped = Some(true);
                }
            }
        };
        let mut rest = Vec::new();
        while let Ok(event) = events_rx.try_recv() {
            rest.push(event);
        }
        self.report(&mut reported, turn, call, attempt, rest).await;
        let outcome = match stopped {
            // Shutdown stopped a delegation: it re-attaches after the restart.
            _ if outcome.interrupted && self.inner.shutdown.is_cancelled() => None,
            None => Some(outcome),
            Some(false) => Some(Outcome::error("cancelled by the user")),
            // Killed at shutdown: no result, so it runs again after the restart.
            Some(true) => None,
        };
        (outcome, reported.stored)
    }

    /// Stores what a running call reported: progress at most every [`PROGRESS_EVERY`] and
    /// [`MAX_PROGRESS_EVENTS`] in all, sandbox notes up to [`MAX_SANDBOX_EVENTS`].
    async fn report(
        &self,
        reported: &mut Reported,
        turn: &TurnState,
        call: &ToolCall,
        attempt: u32,
        events: Vec<ToolEvent>,
    ) {
        let mut bodies = Vec::with_capacity(events.len());
        for event in events {
            bodies.push(match event {
                ToolEvent::Progress(progress) => {
                    let due = reported.last.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                    if !due || reported.progressed >= MAX_PROGRESS_EVENTS {
                        continue;
                    }
                    reported.last = Some(std::time::Instant::now());
                    reported.progressed += 1;
                    progress_event(turn, call, attempt, progress)
                }
                ToolEvent::Sandbox(note) => {
                    if reported.noted >= MAX_SANDBOX_EVENTS {
                        continue;
                    }
                    reported.noted += 1;
                    sandbox_event(turn, call, attempt, note)
                }
                // A child's events are bounded by its own limits; each appears once.
                ToolEvent::Subagent(note) => subagent_event(call, note),
            });
        }
        if !bodies.is_empty() {
            reported.stored += self.store_events(bodies).await;
        }
    }

    /// Stores and publishes, in one commit, events a running call reported; how many that was.
    async fn store_events(&self, bodies: Vec<EventBody>) -> u64 {
        let mut commit = self.commit();
        commit.events = bodies;
        match self.inner.store.commit(&self.record.run_id, commit).await {
            Ok(events) => {
                self.inner.hub.publish(&self.record.run_id, &events);
                events.len() as u64
            }
            Err(error) => {
                tracing::debug!(%error, "progress not stored");
                0
            }
        }
    }

    async fn end_turn(&mut self, turn: &TurnState, reason: StopReason) -> Result<Stop, StoreError> {
        let mut commit = self.commit();
        let end = match (self.record.mode, reason) {
            (RunMode::Task, StopReason::StepLimit) => TurnEnd::Failed(
                "step_limit".to_owned(),
                format!("the turn reached its limit of {} steps", self.max_steps()),
            ),
            (RunMode::Task, StopReason::TokenLimit) => TurnEnd::Failed(
                "token_limit".to_owned(),
                "the session reached its token budget (`limits` in agent.toml)".to_owned(),
            ),
            _ => TurnEnd::Completed(reason),
        };
        self.finish_turn(&mut commit, turn, &end, self.record.usage);
        self.apply(commit).await?;
        Ok(Stop::Ended)
    }

    async fn end_failed(
        &mut self,
        turn: &TurnState,
        code: &str,
        message: String,
    ) -> Result<Stop, StoreError> {
        let mut commit = self.commit();
        self.finish_turn(
            &mut commit,
            turn,
            &TurnEnd::Failed(code.to_owned(), message),
            self.record.usage,
        );
        self.apply(commit).await?;
        Ok(Stop::Ended)
    }

    /// Closes the open step with a "cancelled" result for every call that has none, then ends
    /// the turn. The conversation stays valid for the next turn.
    async fn end_cancelled(&mut self, turn: &TurnState) -> Result<Stop, StoreError> {
        let mut commit = self.commit();
        if let Some(open) = &turn.open {
            for call in open.calls.iter().skip(open.results.len()) {
                let attempt = open.attempts.get(&call.id).copied().unwrap_or(1);
                push_result(
                    &self.agent.tools,
                    &mut commit,
                    turn,
                    call,
                    attempt,
                    &Outcome::error("cancelled by the user"),
                );
            }
            step_finished(&mut commit, turn);
        }
        self.finish_turn(&mut commit, turn, &TurnEnd::Cancelled, self.record.usage);
        self.apply(commit).await?;
        Ok(Stop::Ended)
    }

    /// Adds the end of `turn` to `commit`: the turn event, then `session.waiting`
    /// (conversation) or the run's end (task), the status, and the lease release.
    fn finish_turn(&self, commit: &mut Commit, turn: &TurnState, end: &TurnEnd, run_usage: Usage) {
        let turn_id = ids::turn_id(turn.sequence);
        commit.records.push(JournalRecord::TurnEnded { turn: turn.sequence });
        let usage = turn.usage;
        let failure = match end {
            TurnEnd::Completed(stop_reason) => {
                commit.events.push(EventBody::TurnCompleted(TurnCompleted {
                    turn_id,
                    steps: turn.step,
                    stop_reason: *stop_reason,
                    usage,
                }));
                None
            }
            TurnEnd::Failed(code, message) => {
                commit.events.push(EventBody::TurnFailed(TurnFailed {
                    turn_id,
                    code: code.clone(),
                    message: message.clone(),
                    usage,
                }));
                Some((code.clone(), message.clone()))
            }
            TurnEnd::Cancelled => {
                commit.events.push(EventBody::TurnCancelled(TurnCancelled { turn_id, usage }));
                Some(("cancelled".to_owned(), "the run was cancelled".to_owned()))
            }
        };
        commit.release_lease = true;
        match (self.record.mode, failure) {
            (RunMode::Conversation, _) => {
                commit.events.push(EventBody::SessionWaiting(SessionWaiting {
                    continuation_token: self.record.continuation_token.clone(),
                    reason: None,
                }));
                commit.status = Some(RunStatus::Waiting);
            }
            (RunMode::Task, None) => {
                commit.events.push(EventBody::RunCompleted(RunCompleted {
                    output: turn.reply.clone(),
                    usage: run_usage,
                }));
                commit.status = Some(RunStatus::Completed);
            }
            (RunMode::Task, Some((code, message))) => {
                commit.events.push(EventBody::RunFailed(RunFailed { code, message }));
                commit.status = Some(RunStatus::Failed);
            }
        }
    }
}

/// The `action.progress` event of a call's progress report.
fn progress_event(
    turn: &TurnState,
    call: &ToolCall,
    attempt: u32,
    progress: ToolProgress,
) -> EventBody {
    EventBody::ActionProgress(ActionProgress {
        turn_id: ids::turn_id(turn.sequence),
        step_index: turn.step,
        call_id: call.id.clone(),
        attempt,
        progress: progress.progress,
        total: progress.total,
        message: progress.message,
    })
}

/// The `subagent.*` event of a delegation's note.
fn subagent_event(call: &ToolCall, note: SubagentNote) -> EventBody {
    let call_id = call.id.clone();
    match note {
        SubagentNote::Started { subagent, child_run_id, attempt } => {
            EventBody::SubagentStarted(ash_protocol::SubagentStarted {
                call_id,
                attempt,
                subagent_name: subagent,
                child_session_id: child_run_id.clone(),
                child_run_id,
            })
        }
        SubagentNote::Event { subagent, child_run_id, event } => {
            EventBody::SubagentEvent(ash_protocol::SubagentEvent {
                call_id,
                subagent_name: subagent,
                child_run_id,
                event,
            })
        }
        SubagentNote::Completed { subagent, status, output, error, usage } => {
            EventBody::SubagentCompleted(ash_protocol::SubagentCompleted {
                call_id,
                subagent_name: subagent,
                status,
                output,
                error,
                usage,
            })
        }
    }
}

/// The `sandbox.*` event of a call's sandbox note.
fn sandbox_event(turn: &TurnState, call: &ToolCall, attempt: u32, note: SandboxNote) -> EventBody {
    let call_id = call.id.clone();
    match note {
        SandboxNote::Command { sandbox, phase, command } => {
            EventBody::SandboxCommand(ash_protocol::SandboxCommand {
                turn_id: ids::turn_id(turn.sequence),
                step_index: turn.step,
                call_id,
                attempt,
                sandbox,
                phase,
                command,
            })
        }
        SandboxNote::Output { sandbox, stream, text } => {
            EventBody::SandboxOutput(ash_protocol::SandboxOutput {
                call_id,
                attempt,
                sandbox,
                stream,
                text,
            })
        }
        SandboxNote::Exited {
            sandbox,
            phase,
            exit_code,
            limit,
            error,
            elapsed_ms,
            cpu_time_ms,
            peak_memory_bytes,
            output_elided,
        } => EventBody::SandboxExited(ash_protocol::SandboxExited {
            call_id,
            attempt,
            sandbox,
            phase,
            exit_code,
            limit,
            error,
            elapsed_ms,
            cpu_time_ms,
            peak_memory_bytes,
            output_elided,
        }),
    }
}

/// What a running call reported so far.
#[derive(Default)]
struct Reported {
    /// Events stored.
    stored: u64,
    /// `action.progress` events stored.
    progressed: u64,
    /// `sandbox.*` events stored.
    noted: u64,
    /// When the last progress was stored.
    last: Option<std::time::Instant>,
}

/// What the loop does after an action.
enum Step {
    /// Go on with the turn.
    Next,
    /// The worker stops.
    Stop(Stop),
}

/// Whether a call may run.
enum Gate {
    /// It may.
    Run,
    /// A person denied it (with what they said).
    Denied(Option<String>),
    /// It waits for a person; why.
    Ask(String),
}

enum TurnEnd {
    Completed(StopReason),
    Failed(String, String),
    Cancelled,
}

/// Makes every tool call id of one model output unique: a repeated id gets `~2`, `~3`, … (and
/// never another call's id). Approvals, attempts, results and subagents are keyed by call id
/// within a step, so two calls must never share one.
fn unique_call_ids(content: &mut [AssistantPart]) {
    let mut seen = std::collections::HashSet::new();
    for part in content.iter_mut() {
        let AssistantPart::ToolCall(call) = part else { continue };
        if seen.insert(call.id.clone()) {
            continue;
        }
        let mut n = 2;
        let id = loop {
            let candidate = format!("{}~{n}", call.id);
            if !seen.contains(&candidate) {
                break candidate;
            }
            n += 1;
        };
        seen.insert(id.clone());
        call.id = id;
    }
}

/// The `actions.requested` entry of a call.
fn action_of(tools: &Registry, call: &ToolCall) -> Action {
    let input = serde_json::from_str::<Value>(&call.arguments)
        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
    if Registry::is_skill_call(&call.name) {
        Action::LoadSkill { call_id: call.id.clone(), input }
    } else if let Some(name) = tools.subagent(&call.name) {
        Action::SubagentCall { call_id: call.id.clone(), name: name.to_owned(), input }
    } else {
        Action::ToolCall { call_id: call.id.clone(), tool_name: call.name.clone(), input }
    }
}

/// Adds an action's journal record and `action.result` event to `commit`.
fn push_result(
    tools: &Registry,
    commit: &mut Commit,
    turn: &TurnState,
    call: &ToolCall,
    attempt: u32,
    outcome: &Outcome,
) {
    let result = if Registry::is_skill_call(&call.name) {
        let name = serde_json::from_str::<Value>(&call.arguments)
            .ok()
            .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        ActionOutput::LoadSkillResult { name }
    } else if let Some(name) = tools.subagent(&call.name) {
        ActionOutput::SubagentResult {
            subagent_name: name.to_owned(),
            output: outcome.output.clone(),
        }
    } else {
        ActionOutput::ToolResult { tool_name: call.name.clone(), output: outcome.output.clone() }
    };
    commit.events.push(EventBody::ActionResult(ActionResult {
        turn_id: ids::turn_id(turn.sequence),
        step_index: turn.step,
        call_id: call.id.clone(),
        attempt,
        status: if outcome.error.is_some() {
            ActionStatus::Failed
        } else {
            ActionStatus::Completed
        },
        result,
        error: outcome.error.clone().map(|message| ActionError { message }),
    }));
    commit.records.push(JournalRecord::ActionFinished {
        turn: turn.sequence,
        step: turn.step,
        result: ToolResultPart {
            call_id: call.id.clone(),
            tool_name: call.name.clone(),
            output: outcome.model_text(),
            is_error: outcome.error.is_some(),
            images: outcome.images.clone(),
        },
        child: outcome.child,
    });
}

/// Adds the end of the open step to `commit`.
fn step_finished(commit: &mut Commit, turn: &TurnState) {
    let (finish_reason, usage, cost) =
        turn.open.as_ref().map_or((FinishReason::Stop, Usage::default(), None), |o| {
            (o.finish_reason, o.usage, o.cost_micro_usd)
        });
    commit.records.push(JournalRecord::StepFinished { turn: turn.sequence, step: turn.step });
    commit.events.push(EventBody::StepCompleted(StepCompleted {
        turn_id: ids::turn_id(turn.sequence),
        step_index: turn.step,
        finish_reason,
        usage,
        #[expect(clippy::cast_precision_loss, reason = "dollars for people, not for sums")]
        cost_usd: cost.map(|micro| micro as f64 / 1e6),
    }));
}
