//! The engine: accepts messages, owns one worker task per active run, serves run status,
//! cancellation and event followers, and shuts down without losing work.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ash_llm::Model;
use ash_protocol::{
    EventBody, MessageReceived, RunMode, RunStarted, RunStatus, SessionAuthContext, TurnStarted,
};
use ash_sandbox::{NetPolicy, Sandbox, SandboxPolicy};
use ash_spec::AgentSpec;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{Accepted, CancelOutcome, Inbound, RunId, RunSnapshot, SessionId};
use crate::connections::{Broker, Connections, Launcher};
use crate::hub::{Follower, Hub};
use crate::ids;
use crate::replay::RunState;
use crate::store::{Commit, Expect, JournalRecord, NewRun, RunRecord, Store, StoreError};

/// Steps per turn when `limits.max_steps_per_turn` is not set.
pub const DEFAULT_MAX_STEPS_PER_TURN: u32 = 50;
/// Largest accepted message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The project directory the agent was loaded from.
    pub project_dir: PathBuf,
    /// Where session workspaces are created (`<dir>/<runId>/`).
    pub workspaces_dir: PathBuf,
    /// Where each stdio MCP server gets its own directory (`<dir>/<connection>/`, its `HOME`
    /// and working directory), hidden from tools. By default `servers` beside the workspaces
    /// directory.
    pub connections_dir: PathBuf,
    /// Where named sandboxes keep their templates and each session's copy
    /// (`templates/`, `sessions/<runId>/`), hidden from tools. By default `sandboxes` beside
    /// the workspaces directory.
    pub sandboxes_dir: PathBuf,
    /// How to build the backends named sandboxes ask for by name (`bwrap`, `podman`,
    /// `docker`); `None`: only `auto` (this engine's [`EngineConfig::sandbox`]) and `local`.
    pub sandbox_config: Option<ash_sandbox::SandboxConfig>,
    /// One directory, made by the caller, that every run of this engine works in instead (a
    /// job's repository): skills are not copied into it, so they never show in its diff (the
    /// skill tool still gives their instructions).
    pub workspace: Option<PathBuf>,
    /// The environment every tool process starts from (`PATH`, `LANG`, …); nothing else of the
    /// server's environment reaches tools.
    pub process_env: BTreeMap<String, String>,
    /// How long a worker's claim on a run lasts without renewal. After a crash, another worker
    /// (or the restarted one) continues the run once this has passed.
    pub lease_ttl: Duration,
    /// How often the engine looks for runs whose worker died.
    pub sweep_interval: Duration,
    /// Look for such runs at all: off for one-off engines on a store others share, which
    /// must not take other nodes' runs (and leave them half-done when they exit).
    pub sweep: bool,
    /// On shutdown, how long running tool calls may finish before they are killed (and re-run
    /// after the restart).
    pub shutdown_grace: Duration,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Where tool processes run.
    pub sandbox: Arc<Sandbox>,
    /// The policy template of every tool process: network, limits and hidden paths. Each call
    /// adds its workspace (writable) and the project directory (read-only), and hides the
    /// project's `.ash/` state and the other workspaces.
    pub tool_policy: SandboxPolicy,
    /// Run an agent that configures items this engine does not execute
    /// ([`crate::unsupported`]), without them. Off: such an agent is refused.
    pub allow_unsupported: bool,
    /// What time it is, for session budgets (tests move it).
    pub clock: Arc<dyn Clock>,
    /// Resolves the models subagents name for themselves; `None`: every subagent must run on
    /// its parent's model.
    pub models: Option<Arc<dyn crate::agents::ResolveModel>>,
    /// Run the agent's schedules (`ash start`); off for one-off engines (`ash exec`, jobs).
    pub schedules: bool,
    /// How often the scheduler looks at the clock.
    pub schedule_tick: Duration,
}

/// The engine's time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

impl EngineConfig {
    /// Defaults for an agent in `project_dir` keeping workspaces under `workspaces_dir`.
    pub fn new(project_dir: impl Into<PathBuf>, workspaces_dir: impl Into<PathBuf>) -> Self {
        let workspaces_dir: PathBuf = workspaces_dir.into();
        Self {
            project_dir: project_dir.into(),
            connections_dir: workspaces_dir.with_file_name("servers"),
            sandboxes_dir: workspaces_dir.with_file_name("sandboxes"),
            sandbox_config: None,
            workspaces_dir,
            workspace: None,
            process_env: BTreeMap::from([
                ("PATH".to_owned(), ash_sandbox::DEFAULT_PATH.to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ]),
            lease_ttl: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(2),
            sweep: true,
            shutdown_grace: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            sandbox: Arc::new(Sandbox::plain()),
            tool_policy: default_tool_policy(),
            allow_unsupported: false,
            clock: Arc::new(SystemClock),
            models: None,
            schedules: false,
            schedule_tick: Duration::from_secs(1),
        }
    }
}

/// Tool processes by default: the system read-only, no network (an agent that needs APIs
/// names them in an allow list), and limits for untrusted code
/// ([`Limits::strict`](ash_sandbox::Limits::strict)).
pub fn default_tool_policy() -> SandboxPolicy {
    SandboxPolicy {
        net: NetPolicy::None,
        limits: ash_sandbox::Limits::strict(),
        ..SandboxPolicy::default()
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tool schema did not compile, or a subagent's model cannot be used.
    #[error(transparent)]
    Agents(#[from] crate::agents::AgentError),
    /// The project directory cannot be resolved.
    #[error("cannot resolve the project directory {path}: {source}")]
    Project {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The endpoint through which tools reach connections could not be opened.
    #[error("cannot open the endpoint tools reach connections through")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Command tools that call connections need a sandbox the endpoint can reach.
    #[error(
        "the command tools {0} list connections, which the {1} sandbox backend cannot reach through the runtime; use the native or bwrap backend"
    )]
    ConnectionsUnreachable(String, ash_sandbox::BackendKind),
    /// A connection cannot be used as configured.
    #[error(transparent)]
    Connection(#[from] crate::connections::ConnectionError),
    /// The agent configures items this engine does not execute.
    #[error("{}", unsupported_message(.0))]
    Unsupported(Vec<ash_protocol::UnsupportedInfo>),
    /// The workspaces directory could not be created.
    #[error("cannot create the workspaces directory {path}: {source}")]
    Workspaces {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn unsupported_message(items: &[ash_protocol::UnsupportedInfo]) -> String {
    let mut text = format!(
        "the agent configures {} item(s) this runtime does not execute yet; remove them, or run without them with --allow-unsupported:",
        items.len()
    );
    for item in items {
        text.push_str(&format!("\n  {}: `{}`: {}", item.source, item.item, item.reason));
    }
    text
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Empty or only whitespace.
    #[error("`message` is empty; send the text of the user's message")]
    EmptyMessage,
    /// Too long.
    #[error("`message` is {size} bytes; the limit is {limit}")]
    MessageTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No session has this token.
    #[error("no session has this continuation token; omit it to start a new session")]
    UnknownToken,
    /// The session is working on a turn.
    #[error("the session is {}; wait for `session.waiting` before sending the next message", .0.as_str())]
    Busy(RunStatus),
    /// The session paused in the middle of a turn.
    #[error("the session is paused: {0}")]
    Paused(String),
    /// The session ended.
    #[error("the session has ended ({}); start a new session without a continuation token", .0.as_str())]
    Ended(RunStatus),
    /// The engine is shutting down.
    #[error("the server is shutting down; retry against the restarted server")]
    ShuttingDown,
    /// No schedule has this name.
    #[error("the agent has no schedule named `{0}`")]
    UnknownSchedule(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a paused run could not continue.
#[derive(Debug, thiserror::Error)]
pub enum ContinueError {
    /// No run has this id.
    #[error("no run has this id")]
    UnknownRun,
    /// The run is not paused (it runs, waits for a message, or ended).
    #[error("the run is not paused (it is {}); nothing waits for an answer", .0.as_str())]
    NotPaused(RunStatus),
    /// The answer names another request than the one the run waits for, or came twice.
    #[error("{0}")]
    Stale(String),
    /// The budget that paused it is still spent.
    #[error("{0}; raise the limit in agent.toml and restart before resuming")]
    StillSpent(String),
    /// The answer is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Someone other than the session's own caller answered.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A person's answer to an `input.requested`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The request answered.
    pub request_id: String,
    /// Whether the call may run.
    pub approve: bool,
    /// What they said (shown to the model with a denial).
    pub message: Option<String>,
    /// Who answered, when the agent requires authentication.
    pub caller: Option<SessionAuthContext>,
}

/// The harness engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("owner", &self.inner.owner_id).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) spec: AgentSpec,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: EngineConfig,
    /// The root agent and every subagent: tools, sandboxes, model and price of each.
    pub(crate) agents: crate::agents::Agents,
    pub(crate) connections: Arc<Connections>,
    /// How command tools reach the connections (present when the agent has any).
    pub(crate) broker: Option<Broker>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) owner_id: String,
    active: Mutex<HashMap<String, ActiveRun>>,
    tasks: TaskTracker,
    /// Stop taking work; workers stop at the next safe point.
    pub(crate) shutdown: CancellationToken,
    /// The grace period is over: running actions are killed.
    pub(crate) hard_stop: CancellationToken,
    /// Rate limit of repeated worker warnings.
    quiet: Quiet,
}

struct ActiveRun {
    /// Set when a message arrived while the worker was finishing: it must look again.
    again: bool,
    /// Wakes the worker to check for a cancel request now.
    wake: Arc<Notify>,
}

impl Engine {
    /// Starts an engine for `spec`, answering with `model`, keeping state in `store`. It
    /// immediately resumes every unfinished run whose worker is gone.
    pub fn start(
        spec: AgentSpec,
        model: Model,
        store: Arc<dyn Store>,
        mut config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let unsupported = crate::support::unsupported(&spec);
        if !unsupported.is_empty() && !config.allow_unsupported {
            return Err(EngineError::Unsupported(unsupported));
        }
        std::fs::create_dir_all(&config.workspaces_dir)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                // Workspaces hold what tools wrote: other local users have no business there.
                std::fs::set_permissions(
                    &config.workspaces_dir,
                    std::fs::Permissions::from_mode(0o700),
                )
            })
            .map_err(|source| EngineError::Workspaces {
                path: config.workspaces_dir.clone(),
                source,
            })?;
        // Tools run in their workspace: paths into the project must not depend on the cwd.
        config.project_dir = config
            .project_dir
            .canonicalize()
            .map_err(|source| EngineError::Project { path: config.project_dir.clone(), source })?;
        config.workspaces_dir = config.workspaces_dir.canonicalize().map_err(|source| {
            EngineError::Workspaces { path: config.workspaces_dir.clone(), source }
        })?;
        config.connections_dir = std::path::absolute(&config.connections_dir)
            .unwrap_or_else(|_| config.connections_dir.clone());
        config.sandboxes_dir = std::path::absolute(&config.sandboxes_dir)
            .unwrap_or_else(|_| config.sandboxes_dir.clone());
        let shared = crate::sandboxes::Shared {
            dir: config.sandboxes_dir.clone(),
            sandbox: Arc::clone(&config.sandbox),
            config: config.sandbox_config.clone(),
            policy: config.tool_policy.clone(),
            env: config.process_env.clone(),
            project_dir: config.project_dir.clone(),
            workspaces_dir: config.workspaces_dir.clone(),
            connections_dir: config.connections_dir.clone(),
        };
        let connections = Arc::new(Connections::new(spec.root())?);
        let agents = crate::agents::Agents::new(
            spec.root(),
            model,
            &crate::agents::Build {
                seeded: config.workspace.is_none(),
                connections: &connections,
                shared: &shared,
                models: config.models.as_deref(),
                project_dir: &config.project_dir,
            },
        )?;
        let mut inner = Inner {
            spec,
            store,
            config,
            agents,
            broker: None,
            connections,
            hub: Arc::new(Hub::default()),
            owner_id: ids::owner_id(),
            active: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            quiet: Quiet::default(),
        };
        let backend = inner.config.sandbox.backend();
        if matches!(backend, ash_sandbox::BackendKind::Podman | ash_sandbox::BackendKind::Docker) {
            let callers: Vec<String> = inner
                .spec
                .root()
                .tools
                .iter()
                .filter(|t| matches!(&t.kind, ash_spec::ToolKind::Command { connections, .. } if !connections.is_empty()))
                .map(|t| format!("`{}`", t.name))
                .collect();
            if !callers.is_empty() {
                return Err(EngineError::ConnectionsUnreachable(callers.join(", "), backend));
            }
        }
        if !inner.connections.is_empty() {
            let socket = inner
                .config
                .sandbox
                .service_socket("connections")
                .map_err(|e| EngineError::Broker(Box::new(e)))?; // Loopback TCP only where the relay cannot go: no isolation, or the host's network
            // (containers were refused above). The one rule `tools::command` follows too.
            let tcp = crate::tools::broker_over_tcp(backend, &inner.config.tool_policy.net);
            let broker = Broker::start(
                Arc::clone(&inner.connections),
                socket,
                tcp,
                &inner.tasks,
                &inner.shutdown,
            )
            .map_err(|e| EngineError::Broker(Box::new(e)))?;
            inner.broker = Some(broker);
        }
        let inner = Arc::new(inner);
        inner.connections.start(Launcher::new(&inner.config), &inner.tasks, &inner.shutdown);
        if inner.config.sweep {
            inner.tasks.spawn(sweep(Arc::clone(&inner)));
        }
        if let Some(changes) = inner.store.changes() {
            inner.tasks.spawn(follow_changes(Arc::clone(&inner), changes));
        }
        if inner.config.schedules && !inner.spec.root().schedules.is_empty() {
            let tick = inner.config.schedule_tick;
            inner.tasks.spawn(crate::schedules::run(Arc::clone(&inner), tick));
        }
        Ok(Self { inner })
    }

    /// The agent.
    pub fn spec(&self) -> &AgentSpec {
        &self.inner.spec
    }

    /// What the agent configures that this engine does not execute (empty unless the engine
    /// was started with [`EngineConfig::allow_unsupported`]).
    pub fn unsupported(&self) -> Vec<ash_protocol::UnsupportedInfo> {
        crate::support::unsupported(&self.inner.spec)
    }

    /// The agent surface as this engine runs it: tools as the model is offered them, with
    /// each MCP tool's live state (`GET /info`).
    pub fn surface(
        &self,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> ash_protocol::AgentSurface {
        crate::support::surface_of(&self.inner.spec, &self.inner.agents.root().tools, now)
    }

    /// Waits (at most `within`) until every MCP connection has made its first attempt: ready,
    /// or down with a reason.
    pub async fn connections_settled(&self, within: Duration) {
        self.inner.connections.settled(within).await;
    }

    /// The tools the model is offered, built-ins included, sorted by name.
    pub fn offered_tools(&self) -> Vec<String> {
        self.inner.agents.root().tools.states().map(|(name, _)| name.to_owned()).collect()
    }

    /// This engine's lease owner id.
    pub fn owner_id(&self) -> &str {
        &self.inner.owner_id
    }

    /// Accepts a message: starts a session, or continues the waiting session `token` names.
    /// Returns as soon as the message is stored; the turn runs in the background.
    pub async fn send(&self, request: Inbound) -> Result<Accepted, SendError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(SendError::ShuttingDown);
        }
        if request.message.len() > inner.config.max_message_bytes {
            return Err(SendError::MessageTooLarge {
                size: request.message.len(),
                limit: inner.config.max_message_bytes,
            });
        }
        if request.message.trim().is_empty() {
            return Err(SendError::EmptyMessage);
        }
        let (run_id, token, start_index) = match request.continuation_token {
            None => {
                let run_id = ids::run_id();
                let token = ids::continuation_token();
                let mode = request.mode;
                let mut first = turn_commit(
                    Expect::Status(RunStatus::Queued),
                    0,
                    request.message,
                    request.caller,
                );
                first.events.insert(
                    0,
                    EventBody::RunStarted(RunStarted {
                        run_id: run_id.clone(),
                        session_id: run_id.clone(),
                        mode,
                    }),
                );
                let run =
                    NewRun { run_id: run_id.clone(), continuation_token: token.clone(), mode };
                let events = inner.store.create_run(run, first).await?;
                inner.hub.publish(&run_id, &events);
                (run_id, token, 0)
            }
            Some(token) => {
                let record =
                    inner.store.run_by_token(&token).await?.ok_or(SendError::UnknownToken)?;
                match record.status {
                    RunStatus::Waiting => {}
                    RunStatus::Paused => {
                        let state = inner.replayed(&record.run_id).await?;
                        let why = state
                            .turn
                            .and_then(|t| t.paused)
                            .map_or_else(|| "it waits".to_owned(), |p| p.message());
                        return Err(SendError::Paused(why));
                    }
                    status if status.is_terminal() => return Err(SendError::Ended(status)),
                    status => return Err(SendError::Busy(status)),
                }
                let commit = turn_commit(
                    Expect::Status(RunStatus::Waiting),
                    record.turns,
                    request.message,
                    request.caller,
                );
                let events = match inner.store.commit(&record.run_id, commit).await {
                    Ok(events) => events,
                    // Another message won the race for this turn.
                    Err(StoreError::Conflict { .. }) => {
                        return Err(SendError::Busy(RunStatus::Queued));
                    }
                    Err(e) => return Err(e.into()),
                };
                inner.hub.publish(&record.run_id, &events);
                let start = events.first().map_or(record.event_count, |e| e.meta.index);
                (record.run_id, token, start)
            }
        };
        inner.ensure_worker(&run_id);
        Ok(Accepted {
            session_id: SessionId::new(run_id.clone()),
            run_id: RunId::new(run_id),
            continuation_token: token,
            start_index,
        })
    }

    /// Status and usage of a run; `None` for an unknown run.
    pub async fn run_info(&self, run_id: &RunId) -> Result<Option<RunSnapshot>, StoreError> {
        Ok(self.inner.store.run(run_id.as_str()).await?.map(|r| RunSnapshot {
            session_id: SessionId::new(r.run_id.clone()),
            run_id: RunId::new(r.run_id),
            mode: r.mode,
            status: r.status,
            turns: r.turns,
            event_count: r.event_count,
            usage: r.usage,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        }))
    }

    /// Answers the approval a paused run waits for: the call runs (approved) or gets a
    /// `rejected` result (denied), and the turn continues. Returns the index of the first
    /// event the answer added. A stale or repeated answer is refused and changes nothing. An
    /// approval inside a subagent is answered on the run that delegated to it (the root).
    pub async fn answer(&self, run_id: &RunId, answer: Answer) -> Result<u64, ContinueError> {
        self.inner.answer(run_id.as_str(), answer, false).await
    }

    /// Continues a run paused on a spent budget once the budget allows it again (after the
    /// limit was raised and the server restarted), its paused subagents first. Returns the index
    /// of the first event added.
    /// `caller` is checked like an answer's: the session's own.
    pub async fn resume(
        &self,
        run_id: &RunId,
        caller: Option<&SessionAuthContext>,
    ) -> Result<u64, ContinueError> {
        self.inner.resume(run_id.as_str(), caller).await
    }

    /// Asks the run's worker, wherever it runs, to cancel the active turn; `None` for an
    /// unknown run. A paused turn is ended too, and so are the subagent runs it waits on.
    pub async fn cancel(&self, run_id: &RunId) -> Result<Option<CancelOutcome>, StoreError> {
        self.inner.cancel_run(run_id.as_str()).await
    }

    /// Starts schedule `name` now, outside its cron times (`ash schedules --run`): a task-mode
    /// run with its prompt and the `schedule` principal.
    pub async fn fire_schedule(&self, name: &str) -> Result<Accepted, SendError> {
        let Some(schedule) = self.inner.spec.root().schedules.iter().find(|s| s.name == name)
        else {
            return Err(SendError::UnknownSchedule(name.to_owned()));
        };
        let run_id = ids::run_id();
        let token =
            crate::schedules::start_run(&self.inner, &run_id, &schedule.name, &schedule.prompt)
                .await?
                .unwrap_or_default();
        Ok(Accepted {
            session_id: SessionId::new(run_id.clone()),
            run_id: RunId::new(run_id),
            continuation_token: token,
            start_index: 0,
        })
    }

    /// Follows `run_id`'s events from index `start`; `None` for an unknown run.
    pub async fn follow(&self, run_id: &RunId, start: u64) -> Result<Option<Follower>, StoreError> {
        if self.inner.store.run(run_id.as_str()).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(Follower::new(
            run_id.as_str().to_owned(),
            start,
            Arc::clone(&self.inner.store),
            Arc::clone(&self.inner.hub),
            self.inner.hard_stop.clone(),
        )))
    }

    /// Whether the engine can do its work: its store is still usable.
    pub async fn health(&self) -> Result<(), StoreError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(StoreError::Backend("the engine is shutting down".to_owned()));
        }
        self.inner.store.check().await
    }

    /// The store's health: its backend, pool, runs by status and leases.
    pub async fn store_health(&self) -> Result<crate::store::StoreHealth, StoreError> {
        self.inner.store.health().await
    }

    /// Runs with a live worker task (a parked session has none).
    pub fn active_runs(&self) -> usize {
        self.inner.lock_active().len()
    }

    /// Runs with a live event channel (a parked session without readers has none).
    pub fn live_channels(&self) -> usize {
        self.inner.hub.channel_count()
    }

    /// Stops taking messages, lets workers reach a safe point (model calls stop at once and
    /// repeat after a restart; tool calls get [`EngineConfig::shutdown_grace`] to finish), ends
    /// followers, and waits for every task.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutdown.cancel();
        inner.tasks.close();
        if tokio::time::timeout(inner.config.shutdown_grace, inner.tasks.wait()).await.is_err() {
            inner.hard_stop.cancel();
            inner.tasks.wait().await;
        }
        inner.hard_stop.cancel();
    }
}

/// A new task-mode run `run_id` whose first turn is `message` from `caller`: its row and its
/// first commit (`opened` goes first in its journal, for a subagent's run). Schedules and
/// delegations create runs this way.
pub(crate) fn task_run(
    run_id: &str,
    message: String,
    caller: Option<SessionAuthContext>,
    opened: Option<JournalRecord>,
) -> (NewRun, Commit) {
    let mut first = turn_commit(Expect::Status(RunStatus::Queued), 0, message, caller);
    first.events.insert(
        0,
        EventBody::RunStarted(RunStarted {
            run_id: run_id.to_owned(),
            session_id: run_id.to_owned(),
            mode: RunMode::Task,
        }),
    );
    if let Some(opened) = opened {
        first.records.insert(0, opened);
    }
    let run = NewRun {
        run_id: run_id.to_owned(),
        continuation_token: ids::continuation_token(),
        mode: RunMode::Task,
    };
    (run, first)
}

/// The commit that queues turn `sequence` with `message` from `caller`.
fn turn_commit(
    expect: Expect,
    sequence: u32,
    message: String,
    caller: Option<SessionAuthContext>,
) -> Commit {
    let turn_id = ids::turn_id(sequence);
    let mut commit = Commit::new(expect);
    commit.events = vec![
        EventBody::TurnStarted(TurnStarted { turn_id: turn_id.clone(), sequence }),
        EventBody::MessageReceived(MessageReceived { turn_id, message: message.clone() }),
    ];
    commit.records = vec![JournalRecord::TurnQueued { sequence, message, caller }];
    commit.status = Some(RunStatus::Queued);
    commit.turns = 1;
    commit
}

impl Inner {
    fn lock_active(&self) -> MutexGuard<'_, HashMap<String, ActiveRun>> {
        self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes `run_id`'s worker, if this engine has one, to look at its cancel flag now.
    pub(crate) fn wake(&self, run_id: &str) {
        if let Some(run) = self.lock_active().get(run_id) {
            run.wake.notify_one();
        }
    }

    /// Wakes every worker of this engine.
    fn wake_all(&self) {
        for run in self.lock_active().values() {
            run.wake.notify_one();
        }
    }

    /// `run_id`'s journal, replayed.
    pub(crate) async fn replayed(&self, run_id: &str) -> Result<RunState, StoreError> {
        let mut state = RunState::default();
        state.apply_all(self.store.journal(run_id, 0).await?);
        Ok(state)
    }

    /// Makes sure a worker task owns `run_id` and will see its latest message.
    pub(crate) fn ensure_worker(self: &Arc<Self>, run_id: &str) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut active = self.lock_active();
        if let Some(run) = active.get_mut(run_id) {
            run.again = true;
            return;
        }
        let wake = Arc::new(Notify::new());
        active.insert(run_id.to_owned(), ActiveRun { again: false, wake: Arc::clone(&wake) });
        drop(active);
        self.tasks.spawn(worker(Arc::clone(self), run_id.to_owned(), wake));
    }

    /// Called by a worker about to exit: `true` means work arrived and it must go on.
    fn worker_should_continue(&self, run_id: &str) -> bool {
        let mut active = self.lock_active();
        match active.get_mut(run_id) {
            Some(run) if run.again && !self.shutdown.is_cancelled() => {
                run.again = false;
                true
            }
            _ => {
                active.remove(run_id);
                false
            }
        }
    }

    /// Which session budget `record` (whose journal replays to `state`) has spent at `now_ms`,
    /// if any: its code and what was reached.
    pub(crate) fn budget_spent(
        &self,
        agent: &crate::agents::Agent,
        record: &RunRecord,
        state: &RunState,
        now_ms: i64,
    ) -> Option<(String, String)> {
        let limits = &agent.package.limits;
        // What its subagents spent counts too.
        let (usage, cost) = state.spent(record.usage);
        if let Some(max) = limits.max_input_tokens_per_session
            && usage.input_tokens >= max
        {
            return Some((
                "token_budget".to_owned(),
                format!(
                    "the session used {} input tokens of its {max} (`limits.max_input_tokens_per_session`)",
                    usage.input_tokens
                ),
            ));
        }
        if let Some(max) = limits.max_output_tokens_per_session
            && usage.output_tokens >= max
        {
            return Some((
                "token_budget".to_owned(),
                format!(
                    "the session used {} output tokens of its {max} (`limits.max_output_tokens_per_session`)",
                    usage.output_tokens
                ),
            ));
        }
        if let Some(max) = limits.max_cost_micro_usd_per_session
            && cost >= max
        {
            return Some((
                "cost_budget".to_owned(),
                format!(
                    "the session spent ${:.4} of its ${:.4} (`limits.max_cost_usd_per_session`)",
                    dollars(cost),
                    dollars(max)
                ),
            ));
        }
        if let Some(max) = limits.session_timeout_ms {
            let age = now_ms.saturating_sub(record.created_at_ms);
            if u64::try_from(age).unwrap_or(0) >= max {
                return Some((
                    "session_timeout".to_owned(),
                    format!(
                        "the session is {} s old, past its limit of {} s (`limits.session_timeout_ms`)",
                        age / 1000,
                        max / 1000
                    ),
                ));
            }
        }
        let grant = state.grant?;
        let over = |spent: u64, left: Option<u64>| left.is_some_and(|left| spent >= left);
        let delegated = "of what the run that delegated to it had left; raise the root's limit";
        if over(usage.input_tokens, grant.input_tokens)
            || over(usage.output_tokens, grant.output_tokens)
        {
            return Some((
                "token_budget".to_owned(),
                format!("the subagent used the tokens {delegated}"),
            ));
        }
        if over(cost, grant.cost_micro_usd) {
            return Some((
                "cost_budget".to_owned(),
                format!("the subagent spent the money {delegated}"),
            ));
        }
        if grant.deadline_ms.is_some_and(|deadline| now_ms >= deadline) {
            return Some((
                "session_timeout".to_owned(),
                format!("the subagent ran out of the session time {delegated}"),
            ));
        }
        None
    }

    /// What a run may still spend (its own limits, and what its parent granted it): the grant
    /// of a subagent it delegates to.
    pub(crate) fn remaining(
        &self,
        agent: &crate::agents::Agent,
        record: &RunRecord,
        state: &RunState,
    ) -> crate::store::Grant {
        let limits = &agent.package.limits;
        let (usage, cost) = state.spent(record.usage);
        let granted = state.grant.unwrap_or_default();
        let least = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let left = |limit: Option<u64>, spent: u64| limit.map(|l| l.saturating_sub(spent));
        let deadline = limits
            .session_timeout_ms
            .map(|t| record.created_at_ms.saturating_add(i64::try_from(t).unwrap_or(i64::MAX)));
        crate::store::Grant {
            input_tokens: least(
                left(limits.max_input_tokens_per_session, usage.input_tokens),
                left(granted.input_tokens, usage.input_tokens),
            ),
            output_tokens: least(
                left(limits.max_output_tokens_per_session, usage.output_tokens),
                left(granted.output_tokens, usage.output_tokens),
            ),
            cost_micro_usd: least(
                left(limits.max_cost_micro_usd_per_session, cost),
                left(granted.cost_micro_usd, cost),
            ),
            deadline_ms: match (deadline, granted.deadline_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Micro-dollars as dollars, for messages.
#[expect(clippy::cast_precision_loss, reason = "for people to read")]
fn dollars(micro: u64) -> f64 {
    micro as f64 / 1e6
}

/// At most one "worker stopped" warning per this long; the others are counted.
const WORKER_WARNING_EVERY: Duration = Duration::from_secs(30);

/// A warning that would repeat every sweep (a store that is gone, say) is written once per
/// [`WORKER_WARNING_EVERY`], with how many were held back.
#[derive(Default)]
pub(crate) struct Quiet {
    last: Mutex<Option<std::time::Instant>>,
    held: std::sync::atomic::AtomicU64,
}

impl Quiet {
    /// Whether to write now; if so, how many were held back since the last one.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < WORKER_WARNING_EVERY) {
            self.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        *last = Some(std::time::Instant::now());
        Some(self.held.swap(0, std::sync::atomic::Ordering::Relaxed))
    }
}

async fn worker(inner: Arc<Inner>, run_id: String, wake: Arc<Notify>) {
    loop {
        let failed = crate::owner::drive(&inner, &run_id, &wake).await.err();
        if let Some(error) = &failed
            && let Some(held) = inner.quiet.allow()
        {
            tracing::warn!(run_id = %run_id, %error, held_back = held, "run worker stopped; the run resumes after its lease expires");
        }
        // Without a sweep (a one-off engine on a shared store) nothing else brings the run
        // back: this worker tries again, a second later, until it parks or ends.
        if failed.is_some() && !inner.config.sweep {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                () = inner.shutdown.cancelled() => {}
            }
        }
        if !inner.worker_should_continue(&run_id) {
            break;
        }
    }
}

/// Passes what other processes commit to this one: readers of a changed run read the store
/// again, and a worker here renews its lease at once (so a cancel asked on another node
/// reaches it without waiting for the next renewal).
async fn follow_changes(
    inner: Arc<Inner>,
    mut changes: tokio::sync::broadcast::Receiver<crate::store::StoreChange>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = inner.shutdown.cancelled() => return,
        };
        match change {
            Ok(crate::store::StoreChange::Run(run_id)) => {
                inner.hub.poke(Some(&run_id));
                inner.wake(&run_id);
            }
            Ok(crate::store::StoreChange::Any) | Err(RecvError::Lagged(_)) => {
                inner.hub.poke(None);
                inner.wake_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Resumes runs whose worker is gone, now and every `sweep_interval`.
async fn sweep(inner: Arc<Inner>) {
    loop {
        // Claimed atomically: several engines sharing a store never sweep up the same run.
        // The worker takes the lease again under its own epoch.
        let ttl = inner.config.lease_ttl;
        match inner.store.claim_runs(&inner.owner_id, ttl, 64).await {
            Ok(runs) => {
                for (run_id, _) in runs {
                    inner.ensure_worker(&run_id);
                }
            }
            Err(error) => {
                if let Some(held) = inner.quiet.allow() {
                    tracing::warn!(%error, held_back = held, "cannot list unfinished runs");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(inner.config.sweep_interval) => {}
            () = inner.shutdown.cancelled() => return,
        }
    }
}
