//! The acceptor's side: offer, check the assignment, fetch the package, run the agent, deliver
//! the sealed result with its commitment, collect.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ash_identity::NodeId;
use ash_ledger::{Body, Collect, Entry, Hash, MAX_ENTRY_BYTES, Outcome, Verdict};
use ash_pack::{Expect, JobId, Recipient};
use ash_protocol::{
    JobAnnounce, JobAssign, JobEnd, JobFile, JobOffer, JobRouted, JobStep, JobSummary, LogStart,
    MACHINE_TIER, MAX_JOB_NAME, MAX_PROGRESS_STEPS, MAX_PROGRESS_TEXT, MAX_SEALED_PROMPT_BYTES,
    PeerRequest, PeerResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::requester::ledger_terms;
use super::{
    AgentEnd, AgentWork, JobError, Jobs, MAX_OFFERS, MAX_OFFERS_PER_REQUESTER, MAX_PROMPT_BYTES,
    hash_file, remove, sha256_hex,
};
use crate::ledger::now_ms;
use crate::node::lock;

const SIDE: &str = "acceptor";
/// How often an undelivered end is pushed to a requester that did not take it.
const PUSH_EVERY_MS: u64 = 5_000;
/// Longest an announcement may ask offers for.
const MAX_ANNOUNCE_TIME_MS: u64 = 10 * 60 * 1000;
/// How long progress reports pause after one failed, and how long the last ones may take.
const PROGRESS_QUIET: Duration = Duration::from_secs(2);
/// How long an offer stays open after the announcement's expiry (the requester packs and
/// seals in between).
const OFFER_GRACE_MS: u64 = 30_000;
/// The earliest and latest deadline a reservation may set.
const MIN_DEADLINE_MS: u64 = 60_000;
const MAX_DEADLINE_MS: u64 = 24 * 60 * 60 * 1000;
/// How long the agent's run leaves before the deadline, for the result to travel.
const DELIVERY_MARGIN: Duration = Duration::from_secs(30);
/// A package download that makes no progress for this long is given up.
const FETCH_STALL: Duration = Duration::from_secs(120);
/// How long after the reservation's deadline the acceptor keeps trying to fetch the package.
const FETCH_RETRY: Duration = Duration::from_secs(2);

/// An offer made and not yet taken.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    requester: NodeId,
    tier: String,
    agent: String,
    model: String,
    routed: Option<JobRouted>,
    price: u64,
    expires: u64,
}

/// Where an accepted job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcceptorState {
    /// Fetching the package.
    Receiving,
    /// The agent runs.
    Running,
    /// The sealed result and its commitment are ready for the requester.
    Delivered,
    /// Paid.
    Collected,
    /// Given up, with a signed cancellation (nothing is paid).
    Cancelled,
    /// Delivered, but the ledger refused the collection (the requester's log does not owe it:
    /// no receipt by the claim window, or a settlement elsewhere); not tried again.
    Unpaid,
}

impl AcceptorState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Running => "running",
            Self::Delivered => "delivered",
            Self::Collected => "collected",
            Self::Cancelled => "cancelled",
            Self::Unpaid => "unpaid",
        }
    }
}

/// An accepted job as `jobs.db` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorRecord {
    /// The job.
    pub job: String,
    /// Where it stands.
    pub state: AcceptorState,
    /// Who asked.
    pub requester: NodeId,
    /// The tier.
    pub tier: String,
    /// The agent kind.
    pub agent: String,
    /// The model the terms name.
    #[serde(default)]
    pub model: String,
    /// Set when the job's model calls go back to its requester.
    #[serde(default)]
    pub routed: Option<JobRouted>,
    /// The price.
    pub price: u64,
    /// The reservation's id (hex).
    pub reserve: String,
    /// Its deadline (ms).
    pub deadline: u64,
    /// The package's hash (hex) and size.
    pub package: String,
    /// Its size.
    pub package_size: u64,
    /// How the work ended.
    pub end: Option<JobEnd>,
    /// When the end was last pushed (ms).
    pub pushed: u64,
    /// What was collected.
    pub collected: Option<u64>,
    /// When it was accepted (ms).
    pub created: u64,
    /// Why it ended unpaid, for people.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A collection under way; its job leaves the set when it ends.
struct Collecting<'a> {
    jobs: &'a Jobs,
    job: String,
}

impl Drop for Collecting<'_> {
    fn drop(&mut self) {
        lock(&self.jobs.collecting).remove(&self.job);
    }
}

impl Jobs {
    /// An announcement heard on the network: offers to run it if this node serves it.
    pub(crate) fn announced(self: &Arc<Self>, from: NodeId, announce: JobAnnounce) {
        let Some(serve) = self.serve_config() else { return };
        if !self.writer || from == self.me.node_id() || !super::valid_job_id(&announce.job) {
            return;
        }
        let now = now_ms();
        let served_tier = serve.tiers.is_empty() || serve.tiers.contains(&announce.tier);
        // The first agent asked for that serves the tier (or speaks the routed job's API),
        // and the model it runs.
        let routed = announce.routed.as_ref();
        let agent = serve.agents.iter().find_map(|a| {
            let asked = announce
                .agents
                .iter()
                .take(ash_protocol::MAX_ANNOUNCED_AGENTS)
                .any(|k| k == a.kind());
            let model = match routed {
                _ if !asked => None,
                Some(r) => a.routable(&r.api).then(|| r.model.clone()),
                None => a.model(&announce.tier),
            };
            model.map(|model| (a, model))
        });
        let why_not = if announce.expires <= now || announce.expires > now + MAX_ANNOUNCE_TIME_MS {
            Some("expired".to_owned())
        } else if !served_tier {
            Some(format!("tier {} not served", announce.tier))
        } else if self.genesis.price(&announce.tier) != Some(announce.price) {
            Some(format!("price {} is not the network's for {}", announce.price, announce.tier))
        } else if routed.is_some() != (announce.tier == MACHINE_TIER) {
            Some(format!("only a routed job is priced as {MACHINE_TIER} time, and it always is"))
        } else if routed.is_some() && !serve.routed {
            Some("jobs whose model calls go to their requester are not served".to_owned())
        } else if routed.is_some_and(|r| r.model.is_empty() || r.model.len() > MAX_JOB_NAME) {
            Some("the routed model's name is empty or too long".to_owned())
        } else if agent.is_none() {
            Some("no agent asked for serves the tier".to_owned())
        } else if announce.size > serve.limits.max_total_bytes {
            Some(format!("{} bytes is over this node's package limit", announce.size))
        } else if self.running.available_permits() == 0 {
            Some("every slot is taken".to_owned())
        } else if !serve.takes_more(*lock(&self.taken)) {
            Some("took as many jobs as it was told to".to_owned())
        } else {
            let ledger = lock(&self.ledger);
            let account = ledger.verifier().account(from);
            (account.frozen || account.balance.spendable.get() < announce.price)
                .then(|| "the requester's balance does not cover the price here".to_owned())
        };
        if let Some(reason) = why_not {
            tracing::debug!(job = %announce.job, peer = %from, %reason, "no offer");
            return;
        }
        let Some((agent, model)) = agent else { return };
        {
            let mut offers = lock(&self.offers);
            offers.retain(|_, o| o.expires > now);
            let key = (from, announce.job.clone());
            let mine = offers.values().filter(|o| o.requester == from).count();
            if offers.contains_key(&key)
                || offers.len() >= MAX_OFFERS
                || mine >= MAX_OFFERS_PER_REQUESTER
            {
                tracing::debug!(job = %announce.job, peer = %from, "no offer: too many open");
                return;
            }
            offers.insert(
                key,
                Offered {
                    requester: from,
                    tier: announce.tier.clone(),
                    agent: agent.kind().to_owned(),
                    model: model.clone(),
                    routed: announce.routed.clone(),
                    price: announce.price,
                    expires: announce.expires + OFFER_GRACE_MS,
                },
            );
        }
        let offer = JobOffer {
            job: announce.job.clone(),
            agent: agent.kind().to_owned(),
            model,
            sandbox: agent.sandbox().to_owned(),
        };
        let jobs = Arc::clone(self);
        self.spawn(async move {
            match Self::ask(&jobs.net, from, PeerRequest::JobOffer(offer)).await {
                Ok(PeerResponse::Noted) => {
                    jobs.emit(&announce.job, "offered", format!("offered to run it for {from}"));
                }
                other => {
                    tracing::debug!(job = %announce.job, answer = ?other, "offer not taken");
                    lock(&jobs.offers).remove(&(from, announce.job.clone()));
                }
            }
        });
    }

    /// The requester chose this node: every check before any work, then the job starts.
    pub(crate) async fn assigned(self: Arc<Self>, from: NodeId, assign: JobAssign) -> PeerResponse {
        let Some(serve) = self.serve_config() else {
            return PeerResponse::error("unsupported", "this node does not serve jobs");
        };
        // An assignment takes its offer, whether it holds or not (at once: a second assignment
        // for the same offer finds none).
        let offered = lock(&self.offers).remove(&(from, assign.job.clone()));
        let Some(offered) = offered else {
            return PeerResponse::error("refused", "this node made you no offer for this job");
        };
        // A job id is taken once here, whoever asked: another peer cannot reuse a job id it
        // heard to reach a job's files or record.
        match self.load::<AcceptorRecord>(&assign.job, SIDE).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return PeerResponse::error("refused", "this node already took a job with this id");
            }
            Err(e) => return PeerResponse::error("busy", e.to_string()),
        }
        let checked = self.check_assignment(from, &assign, &offered).await;
        let (entry, reserve) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                tracing::warn!(peer = %from, job = %assign.job, %reason, "assignment refused");
                return PeerResponse::error("refused", reason);
            }
        };
        let record = AcceptorRecord {
            job: assign.job.clone(),
            state: AcceptorState::Receiving,
            requester: from,
            tier: assign.terms.tier.clone(),
            agent: assign.terms.agent.clone(),
            model: assign.terms.model.clone(),
            routed: offered.routed.clone(),
            price: assign.terms.price,
            reserve: entry.id().to_string(),
            deadline: reserve.deadline,
            package: assign.terms.package.clone(),
            package_size: assign.size,
            end: None,
            pushed: 0,
            collected: None,
            created: now_ms(),
            reason: None,
        };
        // A valid reservation this node cannot take is cancelled at once, signed, so that the
        // requester gets its credits back now rather than at the deadline.
        // A node that stopped serving, or took as many jobs as it was told to (since it
        // offered), cancels too: the offer was honest when made.
        let permit = if assign.size > serve.max_package_bytes {
            Err(format!(
                "the package is {} bytes; this node takes at most {}",
                assign.size, serve.max_package_bytes
            ))
        } else if !self.take_one() {
            Err("this node no longer takes jobs".to_owned())
        } else {
            Arc::clone(&self.running).try_acquire_owned().map_err(|_| {
                self.give_back_one();
                "every slot of this node is taken".to_owned()
            })
        };
        let permit = match permit {
            Ok(permit) => permit,
            Err(reason) => {
                return match self.cancel_record(record, &reason).await {
                    Ok(end) => {
                        PeerResponse::JobStatus { state: "cancelled".into(), end: Some(end) }
                    }
                    Err(e) => PeerResponse::error("busy", e.to_string()),
                };
            }
        };
        let saved = async {
            let dir = self.job_dir(SIDE, &assign.job)?;
            std::fs::write(dir.join("prompt.sealed"), &assign.prompt)
                .map_err(|e| JobError::Local(e.to_string()))?;
            self.put_accepted(&record).await
        };
        if let Err(e) = saved.await {
            tracing::warn!(error = %e, "an accepted job could not be stored");
            self.give_back_one();
            return PeerResponse::error("busy", "this node cannot store the job now");
        }
        self.emit(&assign.job, "assigned", format!("{} credits, from {from}", record.price));
        let jobs = Arc::clone(&self);
        let job = assign.job.clone();
        self.spawn(async move { jobs.work(job, permit).await });
        PeerResponse::JobAccepted
    }

    /// Whether an assignment holds: the reservation (signed by the requester, naming this node,
    /// the offered price and these terms, valid in this ledger), the sealed prompt (from the
    /// requester, for this job, with the terms' hash) and the package size.
    async fn check_assignment(
        &self,
        from: NodeId,
        assign: &JobAssign,
        offered: &Offered,
    ) -> Result<(Entry, ash_ledger::Reserve), String> {
        let terms = &assign.terms;
        if terms.tier != offered.tier
            || terms.agent != offered.agent
            || terms.model != offered.model
            || terms.price != offered.price
            || terms.routed != offered.routed.is_some()
        {
            return Err("the terms are not the ones offered".into());
        }
        if assign.prompt.len() > MAX_SEALED_PROMPT_BYTES {
            return Err("the sealed prompt is over the limit".into());
        }
        if assign.reserve.len() > MAX_ENTRY_BYTES {
            return Err("the reservation is over the entry size limit".into());
        }
        let entry = Entry::decode(&assign.reserve)
            .map_err(|e| format!("the reservation does not decode: {e}"))?;
        let Body::Reserve(reserve) = &entry.body else {
            return Err("the reservation is not a reserve entry".into());
        };
        let id = JobId(reserve.job.0);
        let digest = ledger_terms(terms).and_then(|t| t.digest());
        if entry.author != from
            || id.to_string() != assign.job
            || reserve.acceptor != self.me.node_id()
            || reserve.amount.get() != terms.price
            || digest != Some(reserve.terms)
        {
            return Err("the reservation is not for this job, this node and these terms".into());
        }
        let now = now_ms();
        if reserve.deadline < now + MIN_DEADLINE_MS || reserve.deadline > now + MAX_DEADLINE_MS {
            return Err("the reservation's deadline is not between a minute and a day away".into());
        }
        let expect = Expect { sender: Some(from), job: Some(id) };
        let (_, prompt) = ash_pack::open_prompt(&assign.prompt, &self.me, expect, MAX_PROMPT_BYTES)
            .map_err(|e| format!("the prompt: {e}"))?;
        if sha256_hex(prompt.as_bytes()) != terms.prompt {
            return Err("the prompt is not the one the terms name".into());
        }
        self.take_reservation(from, &entry).await?;
        // Valid once means valid for ever: a reservation already settled or released (a
        // replay) is refused.
        if !lock(&self.ledger).settlement_of(from, entry.id()).is_empty() {
            return Err("the reservation is settled or released already".into());
        }
        Ok((entry.clone(), reserve.clone()))
    }

    /// Takes the requester's reservation into this ledger (catching up with the requester's
    /// log first if this node lacks entries before it); it must be valid here.
    async fn take_reservation(&self, from: NodeId, entry: &Entry) -> Result<(), String> {
        let id = entry.id();
        let insert = |entries: Vec<Entry>| {
            let ledger = Arc::clone(&self.ledger);
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut ledger = lock(&ledger);
                    ledger.insert(entries).map_err(|e| e.to_string())?;
                    Ok::<_, String>(ledger.verdict(&id))
                })
                .await
                .map_err(|e| e.to_string())?
            }
        };
        let mut verdict = insert(vec![entry.clone()]).await?;
        if !matches!(verdict, Some(Verdict::Valid)) {
            // This node may lack the requester's latest entries, or the mints they receive:
            // ask for the requester's log and the mint authorities'.
            let authors: Vec<NodeId> =
                std::iter::once(from).chain(self.genesis.authorities.iter().copied()).collect();
            let logs: Vec<LogStart> = {
                let ledger = lock(&self.ledger);
                authors
                    .iter()
                    .map(|a| LogStart {
                        author: a.to_string(),
                        from_seq: ledger.head_seq(*a).map_or(0, |s| s + 1),
                    })
                    .collect()
            };
            let ask = PeerRequest::LedgerEntries { logs, limit: ash_protocol::MAX_ENTRIES };
            if let Ok(PeerResponse::LedgerEntries { entries }) = self.net.request(from, ask).await {
                let entries: Vec<Entry> = entries
                    .iter()
                    .filter_map(|b| Entry::decode(b).ok())
                    .filter(|e| authors.contains(&e.author))
                    .collect();
                verdict = insert(entries).await?;
            }
        }
        match verdict {
            Some(Verdict::Valid) => Ok(()),
            Some(Verdict::Refused { rule, detail }) => {
                Err(format!("the reservation is refused by the ledger ({}): {detail}", rule.name()))
            }
            Some(Verdict::Pending { waiting_for }) => {
                Err(format!("the reservation cannot be judged yet: {waiting_for}"))
            }
            None => Err("the reservation does not follow the requester's log held here".into()),
        }
    }

    /// Works on an accepted job until it is delivered or cancelled (also after a restart: a
    /// download resumes, an interrupted run starts again in a fresh workspace).
    async fn work(self: Arc<Self>, job: String, permit: OwnedSemaphorePermit) {
        let _permit = permit;
        let Ok(Some((_, mut record))) = self.load::<AcceptorRecord>(&job, SIDE).await else {
            return;
        };
        if record.state == AcceptorState::Receiving {
            match self.receive(&record).await {
                Ok(()) => {
                    record.state = AcceptorState::Running;
                    if self.put_accepted(&record).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    let _ = self.cancel_record(record, &reason).await;
                    return;
                }
            }
        }
        if record.state != AcceptorState::Running {
            return;
        }
        self.emit(&job, "running", format!("the {} agent runs", record.agent));
        match self.run(&record).await {
            Ok(end) => {
                record.end = Some(end);
                record.state = AcceptorState::Delivered;
                if self.put_accepted(&record).await.is_ok() {
                    if let Some(JobEnd::Delivered { summary, .. }) = &record.end {
                        self.emit(
                            &job,
                            "delivered",
                            format!(
                                "{} files changed +{} -{}",
                                summary.files, summary.insertions, summary.deletions
                            ),
                        );
                    }
                    let jobs = Arc::clone(&self);
                    self.spawn(async move { jobs.push_end(&mut record).await });
                }
            }
            Err(reason) => {
                let _ = self.cancel_record(record, &reason).await;
            }
        }
    }

    /// Fetches the package until it is whole and is the one the terms name.
    async fn receive(&self, record: &AcceptorRecord) -> Result<(), String> {
        let dir = self.job_dir(SIDE, &record.job).map_err(|e| e.to_string())?;
        let path = dir.join("package.sealed");
        let mut last_progress = tokio::time::Instant::now();
        let mut had = 0;
        loop {
            let fetched = self
                .fetch(record.requester, &record.job, JobFile::Package, &path, record.package_size)
                .await;
            let have = std::fs::metadata(&path).map_or(0, |m| m.len());
            if have > had {
                (had, last_progress) = (have, tokio::time::Instant::now());
            }
            match fetched {
                Ok(()) => break,
                // A download cut off resumes, until the deadline, or until it has made no
                // progress for a while (a requester that stopped serving it).
                Err(JobError::Lost(reason))
                    if now_ms() < record.deadline && last_progress.elapsed() < FETCH_STALL =>
                {
                    tracing::info!(job = %record.job, %reason, "package download interrupted; resuming");
                    tokio::time::sleep(FETCH_RETRY).await;
                }
                Err(e) => return Err(format!("the package could not be fetched: {e}")),
            }
        }
        let hash = hash_file(&path).await?;
        if hash != record.package {
            remove(vec![path]).await;
            return Err("the package is not the one the terms name".into());
        }
        Ok(())
    }

    /// Unpacks, runs the agent, extracts and seals the diff, signs the commitment.
    async fn run(self: &Arc<Self>, record: &AcceptorRecord) -> Result<JobEnd, String> {
        let Some(serve) = self.serve_config() else {
            return Err("this node no longer serves jobs".into());
        };
        let Some(agent) = serve.agents.iter().find(|a| a.kind() == record.agent).cloned() else {
            return Err(format!("the {} agent is not served here any more", record.agent));
        };
        let dir = self.job_dir(SIDE, &record.job).map_err(|e| e.to_string())?;
        let id: JobId = record.job.parse().map_err(|_| "bad job id".to_owned())?;
        let requester = record.requester;
        let sealed = std::fs::read(dir.join("prompt.sealed")).map_err(|e| e.to_string())?;
        let expect = Expect { sender: Some(requester), job: Some(id) };
        let (_, prompt) = ash_pack::open_prompt(&sealed, &self.me, expect, MAX_PROMPT_BYTES)?;
        // A fresh workspace each time the run starts.
        let work = dir.join("work");
        let git_dir = dir.join("baseline.git");
        let scratch = dir.join("agent");
        remove(vec![work.clone(), git_dir.clone(), dir.join("runs"), scratch.clone()]).await;
        std::fs::create_dir(&scratch).map_err(|e| e.to_string())?;
        let (me, limits, package, dest) =
            (Arc::clone(&self.me), serve.limits, dir.join("package.sealed"), work.clone());
        let git_factory = Arc::clone(&serve.git);
        let (tree, gd) = (work.clone(), git_dir.clone());
        let base = tokio::task::spawn_blocking(move || {
            std::fs::create_dir(&gd).map_err(|e| e.to_string())?;
            let file = std::fs::File::open(&package).map_err(|e| e.to_string())?;
            ash_pack::open(std::io::BufReader::new(file), &me, expect, &limits, &dest)
                .map_err(|e| format!("the package cannot be unpacked: {e}"))?;
            let git = git_factory.for_tree(&tree, &gd)?;
            let base =
                ash_pack::baseline(&*git, &tree, &gd).map_err(|e| format!("the baseline: {e}"))?;
            // The same git extracts the diff once the agent is done.
            Ok::<_, String>((base, git))
        })
        .await
        .map_err(|e| e.to_string())??;
        let (base, git) = base;

        // The agent, with its steps forwarded to the requester.
        let (progress, mut steps) = mpsc::channel::<JobStep>(256);
        let (net, job) = (self.net.clone(), record.job.clone());
        let forward = tokio::spawn(async move {
            let mut sent = 0u64;
            // After a failed report, steps are dropped for a while rather than queued behind
            // a requester that is away (progress is best effort; the result is not).
            let mut quiet_until = tokio::time::Instant::now();
            while let Some(step) = steps.recv().await {
                let mut batch = vec![clip(&step)];
                while batch.len() < MAX_PROGRESS_STEPS {
                    match steps.try_recv() {
                        Ok(step) => batch.push(clip(&step)),
                        Err(_) => break,
                    }
                }
                let n = batch.len() as u64;
                if tokio::time::Instant::now() >= quiet_until {
                    let request =
                        PeerRequest::JobProgress { job: job.clone(), from: sent, steps: batch };
                    let sending = net.request(requester, request);
                    match tokio::time::timeout(PROGRESS_QUIET, sending).await {
                        Ok(Ok(_)) => {}
                        failed => {
                            tracing::debug!(answer = ?failed, "progress not delivered");
                            quiet_until = tokio::time::Instant::now() + PROGRESS_QUIET;
                        }
                    }
                }
                sent += n;
            }
        });
        // The run ends in time for the result to travel before the deadline.
        let left = Duration::from_millis(record.deadline.saturating_sub(now_ms()))
            .saturating_sub(DELIVERY_MARGIN);
        let run_time = serve.run_time.min(left);
        let run = agent.run(AgentWork {
            job: record.job.clone(),
            workspace: work.clone(),
            scratch,
            prompt,
            model: record.model.clone(),
            run_time,
            routed: record
                .routed
                .as_ref()
                .map(|r| Arc::new(self.routed_model(&record.job, requester, r))),
            progress,
        });
        let outcome = tokio::time::timeout(run_time, run).await;
        // The last steps go out before the end, unless the requester is not listening.
        let mut forward = forward;
        if tokio::time::timeout(PROGRESS_QUIET, &mut forward).await.is_err() {
            forward.abort();
        }
        let AgentEnd { summary: message, mut manifest } = match outcome {
            Err(_) => return Err(format!("the agent ran longer than {run_time:?}")),
            Ok(Err(reason)) => return Err(format!("the agent failed: {reason}")),
            Ok(Ok(end)) => end,
        };
        manifest.agent = record.agent.clone();
        manifest.models.truncate(ash_protocol::MAX_MANIFEST_MODELS);
        let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;

        // The result.
        let requester_key = lock(&self.ledger).verifier().profile(requester).map(|(_, k)| k);
        let Some(key) = requester_key else {
            return Err("the requester has no profile to seal the result to".into());
        };
        let (me, tree) = (Arc::clone(&self.me), work.clone());
        let out = dir.join("result.sealed");
        let extracted = tokio::task::spawn_blocking(move || {
            let diff = ash_pack::extract(&*git, &tree, &base, ash_pack::MAX_DIFF_BYTES)
                .map_err(|e| format!("the diff: {e}"))?;
            if diff.patch.is_empty() {
                return Ok(None);
            }
            ash_pack::screen(&diff.patch).map_err(|e| format!("the diff fails the screen: {e}"))?;
            let recipient = Recipient { node: requester, key };
            let sealed = ash_pack::seal_result(&manifest, &diff.patch, &me, &recipient, id)
                .map_err(|e| format!("sealing the diff: {e}"))?;
            write_synced(&out, &sealed).map_err(|e| e.to_string())?;
            Ok::<_, String>(Some((diff.summary, sealed.len() as u64, sha256_hex(&sealed))))
        })
        .await
        .map_err(|e| e.to_string())??;
        let Some((summary, size, hash)) = extracted else {
            return Err("the agent changed nothing (no change, no charge)".into());
        };
        let result = Hash(ash_identity::decode_hex::<32>(&hash).ok_or("bad hash")?);
        let commitment = ash_ledger::result_commitment(
            &self.me,
            self.genesis.id(),
            hash_of(&record.reserve),
            result,
        );
        Ok(JobEnd::Delivered {
            result: hash,
            size,
            commitment: serde_bytes::ByteBuf::from(commitment.0.to_vec()),
            summary: JobSummary {
                files: summary.files.len() as u64,
                insertions: summary.insertions,
                deletions: summary.deletions,
                message: clip_text(&self.private_paths_out(&message)),
            },
        })
    }

    /// Gives a job up with a signed cancellation, and tells the requester.
    async fn cancel_record(
        &self,
        mut record: AcceptorRecord,
        reason: &str,
    ) -> Result<JobEnd, JobError> {
        tracing::info!(job = %record.job, %reason, "job cancelled");
        // The requester learns why, but not where this node keeps its files.
        let reason = &self.private_paths_out(reason);
        let signature =
            ash_ledger::cancel_signature(&self.me, self.genesis.id(), hash_of(&record.reserve));
        let end = JobEnd::Cancelled {
            reason: clip_text(reason),
            signature: serde_bytes::ByteBuf::from(signature.0.to_vec()),
        };
        record.end = Some(end.clone());
        record.state = AcceptorState::Cancelled;
        self.put_accepted(&record).await?;
        // Nothing of a cancelled job is kept but its record.
        remove(vec![self.side_dir(SIDE, &record.job)]).await;
        self.emit(&record.job, "cancelled", reason.to_owned());
        self.push_end(&mut record).await;
        Ok(end)
    }

    /// Tells the requester how the job ended (it may be away: tried again later).
    async fn push_end(&self, record: &mut AcceptorRecord) {
        let Some(end) = record.end.clone() else { return };
        record.pushed = now_ms();
        let _ = self.put_accepted(record).await;
        let done = PeerRequest::JobDone { job: record.job.clone(), end };
        if let Err(e) = Self::ask(&self.net, record.requester, done).await {
            tracing::debug!(job = %record.job, error = %e, "the requester was not told");
        }
    }

    /// A chunk of a delivered result, for its requester.
    pub(crate) async fn result_chunk(&self, job: &str, from: NodeId, index: u64) -> PeerResponse {
        match self.load::<AcceptorRecord>(job, SIDE).await {
            Ok(Some((_, record)))
                if record.requester == from
                    && matches!(
                        record.state,
                        AcceptorState::Delivered | AcceptorState::Collected
                    ) =>
            {
                Self::read_chunk(self.side_dir(SIDE, job).join("result.sealed"), index).await
            }
            _ => PeerResponse::error("refused", "no result of this job for you"),
        }
    }

    /// Where an accepted job stands, for its requester.
    pub(crate) async fn status(&self, job: &str, from: NodeId) -> PeerResponse {
        match self.load::<AcceptorRecord>(job, SIDE).await {
            Ok(Some((_, record))) if record.requester == from => {
                PeerResponse::JobStatus { state: record.state.as_str().to_owned(), end: record.end }
            }
            _ => PeerResponse::error("invalid", "no such job"),
        }
    }

    /// The requester's receipt and decision: taken into the ledger, then collected.
    pub(crate) async fn settled(
        &self,
        job: &str,
        from: NodeId,
        entries: Vec<serde_bytes::ByteBuf>,
    ) -> PeerResponse {
        let Ok(Some((_, record))) = self.load::<AcceptorRecord>(job, SIDE).await else {
            return PeerResponse::error("invalid", "no such job");
        };
        if record.requester != from || entries.len() > 2 {
            return PeerResponse::error("refused", "not this job's settlement");
        }
        let decoded: Vec<Entry> = entries
            .iter()
            .filter(|b| b.len() <= MAX_ENTRY_BYTES)
            .filter_map(|b| Entry::decode(b).ok())
            .filter(|e| e.author == from)
            .collect();
        let ledger = Arc::clone(&self.ledger);
        let stored =
            tokio::task::spawn_blocking(move || lock(&ledger).insert(decoded).map(|i| i.new)).await;
        if let Ok(Ok(new)) = stored
            && new > 0
        {
            self.announce_log(from).await;
        }
        self.collect(record).await;
        PeerResponse::Noted
    }

    /// Collects what a delivered job's settlement owes: the decision's price, or half once the
    /// deadline has passed with only a receipt.
    async fn collect(&self, record: AcceptorRecord) {
        // One collection of a job at a time (the requester's `job_settled` and the tick may
        // both come), on the record as it is now.
        if !lock(&self.collecting).insert(record.job.clone()) {
            return;
        }
        let _collecting = Collecting { jobs: self, job: record.job.clone() };
        let Ok(Some((_, mut record))) = self.load::<AcceptorRecord>(&record.job, SIDE).await else {
            return;
        };
        if record.state != AcceptorState::Delivered {
            return;
        }
        let settlement =
            lock(&self.ledger).settlement_of(record.requester, hash_of(&record.reserve));
        let decision = settlement.iter().find_map(|e| match &e.body {
            Body::Decide(d) => Some((
                e.id(),
                d.outcome.price(ash_ledger::Credits::new(record.price)).get(),
                Some(d.outcome),
            )),
            _ => None,
        });
        let receipt = settlement.iter().find_map(|e| match &e.body {
            Body::Receipt(_) => Some((e.id(), record.price / 2, None)),
            _ => None,
        });
        let released = settlement.iter().any(|e| matches!(e.body, Body::Release(_)));
        let source = decision.or(receipt.filter(|_| now_ms() >= record.deadline));
        let Some((source, amount, outcome)) = source else {
            if released {
                record.state = AcceptorState::Cancelled;
                let _ = self.put_accepted(&record).await;
            }
            return;
        };
        let already = lock(&self.ledger).collected(self.me.node_id(), source);
        if !already {
            match self.append(Body::Collect(Collect { source })).await {
                Ok(_) => self.announce_head().await,
                Err(JobError::Node(crate::NodeError::Refused { rule, detail, .. })) => {
                    // The rules say nothing is owed here: final, never tried again.
                    tracing::warn!(job = %record.job, %rule, %detail, "collection refused");
                    record.state = AcceptorState::Unpaid;
                    record.reason =
                        Some(format!("the ledger refused the collection ({rule}): {detail}"));
                    let _ = self.put_accepted(&record).await;
                    self.emit(
                        &record.job,
                        "unpaid",
                        format!("the ledger refused the collection ({rule})"),
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %record.job, error = %e, "collection failed; tried again");
                    return;
                }
            }
        }
        record.collected = Some(amount);
        record.state = AcceptorState::Collected;
        if self.put_accepted(&record).await.is_ok() {
            // Settled: the requester has its result; nothing of the job is kept but its record.
            remove(vec![self.side_dir(SIDE, &record.job)]).await;
        }
        let how = match outcome {
            Some(Outcome::Accept) => "accepted",
            Some(Outcome::Reject) => "rejected",
            None => "undecided by the deadline",
        };
        *lock(&self.earned) += amount;
        self.emit(&record.job, "collected", format!("{amount} credits ({how})"));
    }

    /// Every second: collects what is owed, and pushes ends the requester has not taken.
    pub(crate) async fn acceptor_tick(&self) {
        let Ok(records) = self.unfinished::<AcceptorRecord>(SIDE, &["delivered"]).await else {
            return;
        };
        let now = now_ms();
        for mut record in records {
            if record.state != AcceptorState::Delivered {
                continue;
            }
            let receipted = !lock(&self.ledger)
                .settlement_of(record.requester, hash_of(&record.reserve))
                .is_empty();
            if receipted || now >= record.deadline {
                self.collect(record).await;
            } else if now >= record.pushed + PUSH_EVERY_MS {
                self.push_end(&mut record).await;
            }
        }
    }

    /// After a restart: the jobs accepted and not finished continue.
    pub(crate) async fn resume_accepted(self: &Arc<Self>) {
        let Ok(records) = self.unfinished::<AcceptorRecord>(SIDE, &["receiving", "running"]).await
        else {
            return;
        };
        for record in records {
            if matches!(record.state, AcceptorState::Receiving | AcceptorState::Running) {
                let jobs = Arc::clone(self);
                self.spawn(async move {
                    let Ok(permit) = Arc::clone(&jobs.running).acquire_owned().await else {
                        return;
                    };
                    jobs.work(record.job, permit).await;
                });
            }
        }
    }

    /// The accepted jobs held here, newest first.
    pub async fn accepted(&self) -> Result<Vec<AcceptorRecord>, JobError> {
        Ok(self.list::<AcceptorRecord>(SIDE).await?.into_iter().map(|(_, r)| r).collect())
    }

    /// `text` with this node's job directory left out.
    fn private_paths_out(&self, text: &str) -> String {
        let dir = self.dir.display().to_string();
        if dir.len() > 1 { text.replace(&dir, "<jobs>") } else { text.to_owned() }
    }

    async fn put_accepted(&self, record: &AcceptorRecord) -> Result<(), JobError> {
        Ok(self.save(&record.job, SIDE, record.state.as_str(), record).await?)
    }
}

/// A stored hash; a damaged one names no entry.
fn hash_of(hex: &str) -> Hash {
    Hash(ash_identity::decode_hex::<32>(hex).unwrap_or([0; 32]))
}

fn clip_text(text: &str) -> String {
    super::cut(text, MAX_PROGRESS_TEXT).to_owned()
}

fn clip(step: &JobStep) -> JobStep {
    JobStep { kind: clip_text(&step.kind).chars().take(16).collect(), text: clip_text(&step.text) }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
