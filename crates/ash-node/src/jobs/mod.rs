//! The job flow on both sides (`docs/jobs.md`): the requester's announce, choice,
//! reservation, upload, receipt and decision; the acceptor's offers, checks, download, agent
//! run, delivery and collection. Every step is written to `jobs.db` before the next begins,
//! and the ledger entry of a step is written before the job's row.
//!
//! The agent and git come from the caller ([`JobAgent`], [`GitFactory`]): this module never
//! spawns a process itself.

mod acceptor;
mod requester;
mod routed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ash_identity::{Identity, NodeId};
use ash_ledger::Genesis;
use ash_net::{NetHandle, Responder};
use ash_protocol::{JobManifest, JobStep, PeerRequest, PeerResponse};
use ash_store::JobsDb;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

pub use acceptor::{AcceptorRecord, AcceptorState};
pub use requester::{
    Abandoned, Delivered, JobEvent, JobSpec, Requested, RequesterRecord, RequesterState, Settlement,
};
pub use routed::{ModelProvider, RoutedAnswer, RoutedCall, RoutedModel, RoutedRecord, Routing};

use crate::ledger::{Ledger, now_ms};
use crate::node::lock;
use crate::{NodeError, NodeEvent};

/// Jobs one acceptor runs at once at most, whatever it is told.
pub const MAX_CONCURRENT_JOBS: usize = 64;
/// Chunks of a package or result asked for at once.
pub const CHUNKS_IN_FLIGHT: usize = 4;
/// Longest prompt a job carries (bytes of UTF-8).
pub const MAX_PROMPT_BYTES: usize = 32 << 10;
/// Offers an acceptor has open at once, and per requester.
const MAX_OFFERS: usize = 256;
const MAX_OFFERS_PER_REQUESTER: usize = 4;
/// How many times a job message is asked again of a busy or rate-limiting peer.
const PATIENCE: usize = 10;
/// Inbound job requests handled at once; beyond, peers are told `busy`.
const MAX_JOB_ANSWERS: usize = 32;

/// What runs a job's agent: the built-in agent, or an outside coding agent.
pub trait JobAgent: Send + Sync {
    /// `builtin`, `claude`, `codex`.
    fn kind(&self) -> &str;
    /// The model it runs for jobs of `tier`, as offers name it; `None`: it does not serve
    /// the tier.
    fn model(&self, tier: &str) -> Option<String>;
    /// Whether it can run routed jobs whose requester answers in `api` (`anthropic` or
    /// `openai`): Claude Code speaks only the first, Codex only the second.
    fn routable(&self, api: &str) -> bool;
    /// The sandbox backend it runs in.
    fn sandbox(&self) -> &str;
    /// Works on `work.workspace` as `work.prompt` asks, calling only `work.model`; returns the
    /// agent's last words and what ran, or why it failed (for the requester: no secrets, no
    /// paths of this machine).
    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>>;
}

/// One agent run.
#[derive(Debug)]
pub struct AgentWork {
    /// The job.
    pub job: String,
    /// The unpacked repository, writable; nothing else of this machine's state is.
    pub workspace: PathBuf,
    /// A directory of the job's own outside the workspace (the agent's home, its gateway's
    /// files), empty at the start and removed with the job.
    pub scratch: PathBuf,
    /// What the requester asks.
    pub prompt: String,
    /// The model the terms name: the only one the agent may call.
    pub model: String,
    /// How long the run may take at most (it is cut off then).
    pub run_time: Duration,
    /// Set for a routed job: the agent's model calls go to the requester through this, and
    /// this node's own key is never used.
    pub routed: Option<Arc<RoutedModel>>,
    /// Where the agent reports its steps (bounded; a full queue drops steps).
    pub progress: mpsc::Sender<JobStep>,
}

/// How an agent's run ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnd {
    /// The agent's last words.
    pub summary: String,
    /// What ran: sealed with the result, for the requester to check against the terms.
    pub manifest: JobManifest,
}

/// Makes the git that records a job's baseline and extracts its diff, isolated over one tree.
pub trait GitFactory: Send + Sync {
    /// Git over `tree`, with its own repository at `git_dir` (which exists); both are given
    /// to the user sandboxed processes run as, so that the agent's tools may write the tree.
    fn for_tree(
        &self,
        tree: &Path,
        git_dir: &Path,
    ) -> Result<Box<dyn ash_pack::Git + Send>, String>;
}

/// How this node serves jobs.
#[derive(Clone)]
pub struct ServeConfig {
    /// The agents offered.
    pub agents: Vec<Arc<dyn JobAgent>>,
    /// The tiers served (empty: every tier the genesis prices).
    pub tiers: Vec<String>,
    /// Whether jobs whose model calls go back to their requester are served (priced as
    /// machine time).
    pub routed: bool,
    /// Jobs run at once (at most [`MAX_CONCURRENT_JOBS`]).
    pub max_concurrent: usize,
    /// Jobs to take before this node stops offering (`None`: no end).
    pub max_jobs: Option<u64>,
    /// Largest sealed package taken.
    pub max_package_bytes: u64,
    /// What an unpacked package may hold.
    pub limits: ash_pack::Limits,
    /// Longest agent run.
    pub run_time: Duration,
    /// Git for baselines and diffs.
    pub git: Arc<dyn GitFactory>,
}

impl ServeConfig {
    /// Whether a node that took `taken` jobs since it began serving takes another.
    pub(crate) fn takes_more(&self, taken: u64) -> bool {
        self.max_jobs.is_none_or(|max| taken < max)
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let agents: Vec<&str> = self.agents.iter().map(|a| a.kind()).collect();
        f.debug_struct("ServeConfig")
            .field("agents", &agents)
            .field("tiers", &self.tiers)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_jobs", &self.max_jobs)
            .field("max_package_bytes", &self.max_package_bytes)
            .field("run_time", &self.run_time)
            .finish_non_exhaustive()
    }
}

/// Why a job could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The job was refused before anything was spent.
    #[error("{0}")]
    Refused(String),
    /// No acceptor offered in time; nothing was charged.
    #[error("no acceptor offered to run the job within {0:?}; nothing was charged")]
    NoOffer(Duration),
    /// The acceptor went away; the reservation is released after its deadline.
    #[error("{0}")]
    Lost(String),
    /// The delivered result was refused (it failed the screen or the commitment); it is never
    /// paid.
    #[error("the result was refused: {0}")]
    BadResult(String),
    /// Packing, sealing or a file of the job failed.
    #[error("{0}")]
    Local(String),
}

/// An acceptor's offer as the requester sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Who.
    pub acceptor: NodeId,
    /// The agent kind.
    pub agent: String,
    /// The model.
    pub model: String,
    /// The sandbox backend.
    pub sandbox: String,
}

/// What the requester's job task hears from its acceptor.
#[derive(Debug)]
pub(crate) enum Inbound {
    Offer(Offer),
    Progress {
        from: u64,
        steps: Vec<JobStep>,
    },
    Done(ash_protocol::JobEnd),
    /// The acceptor fetched the package up to this byte.
    Fetched(u64),
}

/// The job flow of one node: shared by the node's service (which routes peers' job messages
/// here), the requester's calls, and the acceptor's tasks.
pub struct Jobs {
    pub(crate) net: NetHandle,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) me: Arc<Identity>,
    pub(crate) genesis: Genesis,
    pub(crate) dir: PathBuf,
    db: Arc<Mutex<JobsDb>>,
    /// How this node serves jobs now (`None`: it does not); switched by [`Jobs::serve`].
    serve: RwLock<Option<ServeConfig>>,
    /// Whether the acceptor's unfinished jobs were taken up (once, when serving began).
    resumed: AtomicBool,
    pub(crate) writer: bool,
    pub(crate) events: mpsc::Sender<NodeEvent>,
    /// Requester jobs in progress in this process: where their acceptor's messages go.
    live: Mutex<HashMap<String, mpsc::Sender<(NodeId, Inbound)>>>,
    /// Acceptor: offers made and not yet assigned, by requester and job: the tier, the agent
    /// kind, the price and when the offer lapses.
    offers: Mutex<HashMap<(NodeId, String), acceptor::Offered>>,
    /// Acceptor: jobs running here now, and how many were taken.
    pub(crate) running: Arc<Semaphore>,
    /// How many permits `running` was given.
    slots: Mutex<usize>,
    pub(crate) taken: Mutex<u64>,
    /// Credits collected for jobs run here since serving last began.
    pub(crate) earned: Mutex<u64>,
    /// Acceptor: jobs being collected now.
    collecting: Mutex<std::collections::HashSet<String>>,
    /// Held while a reservation and the record naming it are written.
    reserving: Arc<tokio::sync::Mutex<()>>,
    answers: Arc<Semaphore>,
    /// Requester: routed jobs followed here, whose model calls it answers.
    routes: Mutex<HashMap<String, Arc<routed::Route>>>,
    /// Acceptor: model calls of routed jobs waiting on their requester, by job and number.
    calls: Mutex<HashMap<(String, u64), routed::Pending>>,
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// The SHA-256 of `bytes`, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    ash_identity::encode_hex(&Sha256::digest(bytes))
}

/// The SHA-256 of a file, in hex.
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(ash_identity::encode_hex(&hasher.finalize()))
}

/// The SHA-256 of a file, in hex, off the async threads.
pub(crate) async fn hash_file(path: &Path) -> Result<String, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || file_sha256(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Removes a job's files (or some of them), off the async threads; what cannot be removed is
/// logged and left.
pub(crate) async fn remove(paths: Vec<PathBuf>) {
    let _ = tokio::task::spawn_blocking(move || {
        for path in paths {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "job files not removed");
            }
        }
    })
    .await;
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A job id as text: 32 lowercase hex digits.
pub(crate) fn valid_job_id(job: &str) -> bool {
    ash_identity::decode_hex::<16>(job).is_some() && job.bytes().all(|b| !b.is_ascii_uppercase())
}

impl Jobs {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        net: NetHandle,
        ledger: Arc<Mutex<Ledger>>,
        me: Arc<Identity>,
        genesis: Genesis,
        dir: PathBuf,
        serve: Option<ServeConfig>,
        writer: bool,
        events: mpsc::Sender<NodeEvent>,
    ) -> Result<Arc<Self>, NodeError> {
        let db = JobsDb::open(&dir.join("jobs.db")).map_err(|e| NodeError::Jobs(e.to_string()))?;
        let slots = serve.as_ref().map_or(1, |s| s.max_concurrent.clamp(1, MAX_CONCURRENT_JOBS));
        Ok(Arc::new(Self {
            net,
            ledger,
            me,
            genesis,
            dir,
            db: Arc::new(Mutex::new(db)),
            serve: RwLock::new(serve),
            resumed: AtomicBool::new(false),
            writer,
            events,
            live: Mutex::new(HashMap::new()),
            offers: Mutex::new(HashMap::new()),
            running: Arc::new(Semaphore::new(slots)),
            slots: Mutex::new(slots),
            taken: Mutex::new(0),
            earned: Mutex::new(0),
            collecting: Mutex::new(std::collections::HashSet::new()),
            reserving: Arc::new(tokio::sync::Mutex::new(())),
            answers: Arc::new(Semaphore::new(MAX_JOB_ANSWERS)),
            routes: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
        }))
    }

    /// Starts the background work: the acceptor's unfinished jobs continue, and every second
    /// deliveries are retried, collections made and expired reservations released.
    pub(crate) fn start(self: &Arc<Self>) {
        let jobs = Arc::clone(self);
        self.spawn(async move { jobs.background().await });
    }

    /// Runs `task` owned by this job flow (aborted when the node stops).
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        // Finished tasks are reaped as new ones come.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Stops every task of the job flow.
    pub(crate) fn stop(&self) {
        lock(&self.tasks).abort_all();
    }

    async fn background(self: Arc<Self>) {
        if self.writer
            && self.serve_config().is_some()
            && !self.resumed.swap(true, Ordering::SeqCst)
        {
            self.resume_accepted().await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if !self.writer {
                continue;
            }
            self.acceptor_tick().await;
            self.requester_tick().await;
        }
    }

    /// Runs `f` on the jobs file, off the async threads.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&JobsDb) -> Result<T, ash_store::JobsDbError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let db = lock(&db);
            f(&db)
        })
        .await
        .map_err(|e| NodeError::Jobs(e.to_string()))?
        .map_err(|e| NodeError::Jobs(e.to_string()))
    }

    /// Writes a job record.
    pub(crate) async fn save<R: Serialize>(
        &self,
        id: &str,
        side: &'static str,
        state: &str,
        record: &R,
    ) -> Result<(), NodeError> {
        let json = serde_json::to_string(record).map_err(|e| NodeError::Jobs(e.to_string()))?;
        let (id, state) = (id.to_owned(), state.to_owned());
        self.db(move |db| db.put(&id, side, &state, &json, now_ms())).await
    }

    /// Reads a job record.
    pub(crate) async fn load<R: for<'de> Deserialize<'de>>(
        &self,
        id: &str,
        side: &'static str,
    ) -> Result<Option<(String, R)>, NodeError> {
        let id = id.to_owned();
        let Some(row) = self.db(move |db| db.get(&id, side)).await? else { return Ok(None) };
        let record = serde_json::from_str(&row.record)
            .map_err(|e| NodeError::Jobs(format!("job {}: damaged record: {e}", row.id)))?;
        Ok(Some((row.state, record)))
    }

    /// The records of one side, newest first.
    pub(crate) async fn list<R: for<'de> Deserialize<'de>>(
        &self,
        side: &'static str,
    ) -> Result<Vec<(String, R)>, NodeError> {
        let rows = self.db(move |db| db.list(Some(side), 10_000)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_str(&row.record) {
                Ok(record) => out.push((row.state, record)),
                Err(e) => tracing::warn!(job = %row.id, error = %e, "damaged job record skipped"),
            }
        }
        Ok(out)
    }

    /// Where one side's job keeps its files (`asked/<job>` or `ran/<job>`: a job id another
    /// peer chose never meets this node's own).
    pub(crate) fn side_dir(&self, side: &str, job: &str) -> PathBuf {
        self.dir.join(if side == "requester" { "asked" } else { "ran" }).join(job)
    }

    /// The records of one side in one of `states`.
    pub(crate) async fn unfinished<R: for<'de> Deserialize<'de>>(
        &self,
        side: &'static str,
        states: &'static [&'static str],
    ) -> Result<Vec<R>, NodeError> {
        let rows = self.db(move |db| db.in_states(side, states)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match serde_json::from_str(&row.record) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!(job = %row.id, error = %e, "damaged job record skipped");
                    None
                }
            })
            .collect())
    }

    /// The directory of one side's job files, created closed to other local users.
    pub(crate) fn job_dir(&self, side: &str, job: &str) -> Result<PathBuf, NodeError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = self.side_dir(side, job);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| NodeError::Jobs(format!("{}: {e}", dir.display())))?;
        Ok(dir)
    }

    pub(crate) fn emit(&self, job: &str, state: &str, detail: String) {
        let _ = self.events.try_send(NodeEvent::Job {
            job: job.to_owned(),
            state: state.into(),
            detail,
        });
    }

    /// This identity's spendable credits, as the ledger here has them.
    pub fn balance(&self) -> u64 {
        lock(&self.ledger).verifier().account(self.me.node_id()).balance.spendable.get()
    }

    /// How this node serves jobs now, if it does.
    pub(crate) fn serve_config(&self) -> Option<ServeConfig> {
        self.serve.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Starts serving jobs as `config` says, or changes how (a node started without serving
    /// may begin later: the TUI's `/serve`). Jobs taken count from here for
    /// [`ServeConfig::max_jobs`]; jobs this node took before and left unfinished are taken up
    /// again, once. The number of jobs run at once grows to `config.max_concurrent` if it was
    /// lower, and never shrinks below what was allowed before.
    pub fn serve(self: &Arc<Self>, config: ServeConfig) {
        let wanted = config.max_concurrent.clamp(1, MAX_CONCURRENT_JOBS);
        {
            let mut slots = lock(&self.slots);
            if wanted > *slots {
                self.running.add_permits(wanted - *slots);
                *slots = wanted;
            }
        }
        *lock(&self.taken) = 0;
        *lock(&self.earned) = 0;
        *self.serve.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(config);
        if self.writer && !self.resumed.swap(true, Ordering::SeqCst) {
            let jobs = Arc::clone(self);
            self.spawn(async move { jobs.resume_accepted().await });
        }
    }

    /// Stops offering to run jobs: an assignment for an offer already made is cancelled at
    /// once with this node's signature (the requester's credits come back); the jobs already
    /// taken run to their end and are collected.
    pub fn stop_serving(&self) {
        let taken = *lock(&self.taken);
        if let Some(config) =
            self.serve.write().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut()
        {
            config.max_jobs = Some(taken);
        }
    }

    /// Counts one more job taken, if serving allows another; false when it does not.
    pub(crate) fn take_one(&self) -> bool {
        let config = self.serve_config();
        let mut taken = lock(&self.taken);
        match config {
            Some(serve) if serve.takes_more(*taken) => {
                *taken += 1;
                true
            }
            _ => false,
        }
    }

    /// Gives back a job counted by [`Jobs::take_one`] that was not taken after all.
    pub(crate) fn give_back_one(&self) {
        let mut taken = lock(&self.taken);
        *taken = taken.saturating_sub(1);
    }

    /// Whether this node offers to run jobs now: it serves, and has not taken as many jobs
    /// as it was told to.
    pub fn offering(&self) -> bool {
        let taken = *lock(&self.taken);
        self.serve_config().is_some_and(|s| s.takes_more(taken))
    }

    /// Jobs taken since serving began, jobs running now, and the credits collected since.
    pub fn serving_counts(&self) -> (u64, usize, u64) {
        let slots = *lock(&self.slots);
        let running = slots.saturating_sub(self.running.available_permits());
        (*lock(&self.taken), running, *lock(&self.earned))
    }

    /// Gossips the head of this identity's log, after it grew.
    pub(crate) async fn announce_head(&self) {
        self.announce_log(self.me.node_id()).await;
    }

    /// Gossips the head of `author`'s log, after it grew here.
    pub(crate) async fn announce_log(&self, author: NodeId) {
        let head = lock(&self.ledger).log_head(author);
        if let Some(head) = head {
            let message = ash_protocol::Gossip::Heads { heads: vec![head] };
            if let Err(e) = self.net.publish(ash_net::Topic::LedgerHeads, &message).await {
                tracing::debug!(error = %e, "head not gossiped");
            }
        }
    }

    /// A peer's job message: handled in a task of its own, at most [`MAX_JOB_ANSWERS`] at once.
    pub(crate) fn inbound(
        self: &Arc<Self>,
        from: NodeId,
        request: PeerRequest,
        responder: Responder,
    ) {
        let Ok(permit) = Arc::clone(&self.answers).try_acquire_owned() else {
            tokio::spawn(async move {
                let busy = PeerResponse::error("busy", "too many job messages at once");
                let _ = responder.respond(busy).await;
            });
            return;
        };
        let jobs = Arc::clone(self);
        self.spawn(async move {
            let answer = jobs.answer(from, request).await;
            let _ = responder.respond(answer).await;
            drop(permit);
        });
    }

    async fn answer(self: Arc<Self>, from: NodeId, request: PeerRequest) -> PeerResponse {
        let job = match &request {
            PeerRequest::JobOffer(o) => o.job.clone(),
            PeerRequest::JobAssign(a) => a.job.clone(),
            PeerRequest::JobChunk { job, .. }
            | PeerRequest::JobProgress { job, .. }
            | PeerRequest::JobDone { job, .. }
            | PeerRequest::JobStatus { job }
            | PeerRequest::JobSettled { job, .. } => job.clone(),
            PeerRequest::JobModelCall(c) => c.job.clone(),
            PeerRequest::JobModelAnswer(a) => a.job.clone(),
            _ => return PeerResponse::error("unsupported", "not a job message"),
        };
        if !valid_job_id(&job) {
            return PeerResponse::error("invalid", "a job id is 32 lowercase hex digits");
        }
        let answer = match request {
            PeerRequest::JobOffer(offer) => self.offered(from, offer),
            PeerRequest::JobProgress { from: first, steps, .. } => {
                self.to_requester(&job, from, Inbound::Progress { from: first, steps }).await
            }
            PeerRequest::JobDone { end, .. } => {
                self.to_requester(&job, from, Inbound::Done(end)).await
            }
            PeerRequest::JobChunk { file: ash_protocol::JobFile::Package, index, .. } => {
                self.package_chunk(&job, from, index).await
            }
            PeerRequest::JobAssign(assign) => self.assigned(from, assign).await,
            PeerRequest::JobChunk { file: ash_protocol::JobFile::Result, index, .. } => {
                self.result_chunk(&job, from, index).await
            }
            PeerRequest::JobChunk {
                file: file @ (ash_protocol::JobFile::Call(_) | ash_protocol::JobFile::Answer(_)),
                index,
                ..
            } => self.model_chunk(&job, from, file, index),
            PeerRequest::JobModelCall(call) => self.model_call(from, call),
            PeerRequest::JobModelAnswer(answer) => self.model_answer(from, answer),
            PeerRequest::JobStatus { .. } => self.status(&job, from).await,
            PeerRequest::JobSettled { entries, .. } => self.settled(&job, from, entries).await,
            _ => PeerResponse::error("unsupported", "not a job message"),
        };
        if let PeerResponse::Error(e) = &answer {
            tracing::info!(peer = %from, %job, code = %e.code, reason = %e.message, "job message refused");
        }
        answer
    }

    /// Asks `peer`, and asks again (a little later, a few times) while it answers that it is
    /// busy or that this node asks too fast: a job's messages matter more than its pace.
    pub(crate) async fn ask(
        net: &NetHandle,
        peer: NodeId,
        request: PeerRequest,
    ) -> Result<PeerResponse, ash_net::NetError> {
        let mut wait = Duration::from_millis(50);
        for _ in 0..PATIENCE {
            match net.request(peer, request.clone()).await {
                Ok(PeerResponse::Error(e)) if e.code == "rate_limited" || e.code == "busy" => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
        net.request(peer, request).await
    }

    /// Reads chunk `index` of `path` (chunks of [`ash_protocol::JOB_CHUNK_BYTES`]).
    pub(crate) async fn read_chunk(path: PathBuf, index: u64) -> PeerResponse {
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
            use std::io::{Read as _, Seek as _};
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            let chunk = u64::from(ash_protocol::JOB_CHUNK_BYTES);
            let Some(start) = index.checked_mul(chunk).filter(|s| *s < size.max(1)) else {
                return Ok(None);
            };
            file.seek(std::io::SeekFrom::Start(start))?;
            let mut bytes = Vec::with_capacity(chunk.min(size - start.min(size)) as usize);
            file.take(chunk).read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        })
        .await;
        match read {
            Ok(Ok(Some(bytes))) => {
                PeerResponse::JobChunk { bytes: serde_bytes::ByteBuf::from(bytes) }
            }
            Ok(Ok(None)) => PeerResponse::error("invalid", "no such chunk"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a job file could not be read");
                PeerResponse::error("busy", "the file cannot be read now")
            }
            Err(_) => PeerResponse::error("busy", "failed"),
        }
    }

    /// Fetches the file of `size` bytes that `peer` holds for `job` into `path`, from the
    /// first chunk not yet there, [`CHUNKS_IN_FLIGHT`] at a time.
    pub(crate) async fn fetch(
        &self,
        peer: NodeId,
        job: &str,
        file: ash_protocol::JobFile,
        path: &Path,
        size: u64,
    ) -> Result<(), JobError> {
        let chunk = u64::from(ash_protocol::JOB_CHUNK_BYTES);
        let have = std::fs::metadata(path).map_or(0, |m| m.len());
        // Only whole chunks count: a cut last write is fetched again.
        let have = if have >= size { size } else { have / chunk * chunk };
        let opened = path.to_path_buf();
        let mut out = tokio::task::spawn_blocking(move || {
            use std::io::Seek as _;
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&opened)?;
            out.set_len(have)?;
            out.seek(std::io::SeekFrom::Start(have))?;
            Ok::<_, std::io::Error>(out)
        })
        .await
        .map_err(|e| JobError::Local(e.to_string()))?
        .map_err(|e| JobError::Local(format!("{}: {e}", path.display())))?;
        let total = size.div_ceil(chunk);
        let mut next = have / chunk;
        // Requests still in flight when this ends early (an error, or the caller's drop) are
        // given up.
        let mut flight = Flight::default();
        let mut asked = next;
        while next < total {
            while asked < total && flight.0.len() < CHUNKS_IN_FLIGHT {
                let (net, job) = (self.net.clone(), job.to_owned());
                let index = asked;
                flight.0.push_back(tokio::spawn(async move {
                    Self::ask(&net, peer, PeerRequest::JobChunk { job, file, index }).await
                }));
                asked += 1;
            }
            let Some(handle) = flight.0.pop_front() else { break };
            let answer = handle.await.map_err(|e| JobError::Local(e.to_string()))?;
            let what = file_name(file);
            let bytes = match answer {
                Ok(PeerResponse::JobChunk { bytes }) => bytes.into_vec(),
                Ok(PeerResponse::Error(e)) => {
                    let message = e.message;
                    return Err(JobError::Lost(format!(
                        "{peer} refused chunk {next} of the {what}: {message}"
                    )));
                }
                Ok(other) => {
                    return Err(JobError::Lost(format!(
                        "{peer} answered chunk {next} with {other:?}"
                    )));
                }
                Err(e) => return Err(JobError::Lost(e.to_string())),
            };
            let expected = chunk.min(size - next * chunk);
            if bytes.len() as u64 != expected {
                return Err(JobError::Lost(format!(
                    "{peer} sent {} bytes for chunk {next} of the {what}, not {expected}",
                    bytes.len()
                )));
            }
            out = tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                out.write_all(&bytes).map(|()| out)
            })
            .await
            .map_err(|e| JobError::Local(e.to_string()))?
            .map_err(|e| JobError::Local(e.to_string()))?;
            next += 1;
        }
        tokio::task::spawn_blocking(move || out.sync_all())
            .await
            .map_err(|e| JobError::Local(e.to_string()))?
            .map_err(|e| JobError::Local(e.to_string()))?;
        Ok(())
    }
}

/// Chunk requests under way, oldest first; dropped, it gives up the rest.
#[derive(Default)]
struct Flight(
    std::collections::VecDeque<tokio::task::JoinHandle<Result<PeerResponse, ash_net::NetError>>>,
);

impl Drop for Flight {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

const fn file_name(file: ash_protocol::JobFile) -> &'static str {
    match file {
        ash_protocol::JobFile::Package => "package",
        ash_protocol::JobFile::Result => "result",
        ash_protocol::JobFile::Call(_) => "model call",
        ash_protocol::JobFile::Answer(_) => "model answer",
    }
}
