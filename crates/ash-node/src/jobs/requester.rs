//! The requester's side: announce, choose, pack and reserve, assign, follow, receive, decide.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash_identity::{NodeId, PublicKey, Signature, encode_hex};
use ash_ledger::{Body, Credits, Decide, Entry, Hash, Outcome, Receipt, Release, Reserve, Terms};
use ash_pack::{Expect, JobId, PackOptions, PatchFile, Recipient, Walk};
use ash_protocol::{
    Gossip, JobAnnounce, JobAssign, JobEnd, JobManifest, JobStep, JobSummary, JobTerms,
    MACHINE_TIER, PeerRequest, PeerResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::routed::{ModelProvider, RoutedRecord, Routing};
use super::{
    Inbound, JobError, Jobs, MAX_PROMPT_BYTES, Offer, file_sha256, hash_file, remove, sha256_hex,
};
use crate::ledger::now_ms;
use crate::node::lock;

const SIDE: &str = "requester";
/// Progress steps kept for one job at most.
const MAX_STEPS_PER_JOB: u64 = 4096;
/// How often an announcement nobody offered for is said again.
const ANNOUNCE_AGAIN: Duration = Duration::from_millis(500);
/// Time added to a reservation's deadline for the assignment's way to the acceptor.
const TRANSIT_MS: u64 = 10_000;
/// How often a requester asks its acceptor where the job stands, in case a message was lost.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// A job to ask for.
#[derive(Debug)]
pub struct JobSpec {
    /// What the agent is to do.
    pub prompt: String,
    /// What the job is called in the records (`ash jobs`, a resumed job's line); `None`:
    /// the prompt's first line. (The TUI's prompt opens with the earlier conversation.)
    pub title: Option<String>,
    /// The model tier (priced by the genesis).
    pub tier: String,
    /// The agent kinds accepted.
    pub agents: Vec<String>,
    /// The most this job may cost; a higher price is refused before anything is announced.
    pub max_price: Option<u64>,
    /// The repository's files, as packed.
    pub walk: Walk,
    /// How to pack.
    pub pack: PackOptions,
    /// How long to wait for a first offer.
    pub offer_time: Duration,
    /// How long to wait for more offers after the first.
    pub choose_after: Duration,
    /// How long the acceptor has to deliver (the reservation's deadline).
    pub run_time: Duration,
    /// The repository, for the record.
    pub repo: Option<PathBuf>,
    /// Set when the agent's model calls are to come back here and be answered with this
    /// node's own provider; the tier is then [`MACHINE_TIER`].
    pub routed: Option<Routing>,
}

/// What happens to a job, as the requester follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// The job has its id and its record; nothing is announced or reserved yet.
    Asked {
        /// Its id.
        job: String,
    },
    /// The job was announced.
    Announced {
        /// Its id.
        job: String,
        /// Its price.
        price: u64,
    },
    /// An acceptor was chosen.
    Matched(Offer),
    /// The package was sealed for it.
    Packed {
        /// Sealed bytes.
        bytes: u64,
        /// Files, directories and links.
        entries: u64,
    },
    /// Credits were reserved.
    Reserved {
        /// How many.
        amount: u64,
    },
    /// The package is being sealed for the chosen acceptor.
    Packing {
        /// Files, directories and links.
        entries: u64,
        /// Bytes of file content.
        bytes: u64,
    },
    /// The acceptor took the job and is fetching the package.
    Assigned,
    /// The acceptor has fetched this much of the package.
    Uploaded {
        /// Bytes fetched.
        sent: u64,
        /// The package's size.
        total: u64,
    },
    /// A step of the agent's work.
    Step(JobStep),
    /// The result is here: receipted, screened, and waiting for the decision.
    Received(JobSummary),
}

/// A delivered result, receipted and screened, waiting for the requester's decision.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The job.
    pub job: String,
    /// Who ran it.
    pub acceptor: NodeId,
    /// The patch (`git diff --binary`).
    pub patch: Vec<u8>,
    /// Its files, screened.
    pub files: Vec<PatchFile>,
    /// What the acceptor says it changes.
    pub summary: JobSummary,
    /// What the acceptor says ran, sealed with the result (the commitment covers it).
    pub manifest: JobManifest,
    /// Why what ran is not what the terms name (a model other than the one offered): grounds
    /// to reject.
    pub mismatch: Option<String>,
    /// The reserved price: accepting pays it, rejecting half.
    pub price: u64,
}

/// How a requested job ended.
#[derive(Debug, Clone)]
pub enum Requested {
    /// A result to decide on.
    Delivered(Box<Delivered>),
    /// The acceptor gave it up and signed the cancellation; the reservation was released and
    /// nothing paid.
    Cancelled {
        /// The job.
        job: String,
        /// The acceptor's reason.
        reason: String,
    },
}

/// Where a job stands once this process stopped following it ([`Jobs::abandon`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// No acceptor was chosen: nothing was reserved, and the job ended.
    NothingReserved,
    /// Credits are reserved for its acceptor: the job goes on there, and the reservation is
    /// released if it gives the job up or the deadline passes undelivered.
    Held {
        /// The reserved price.
        price: u64,
        /// The reservation's deadline (ms).
        deadline: u64,
    },
    /// It had already ended so.
    Ended(RequesterState),
}

/// A decision, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Accepted or rejected.
    pub outcome: Outcome,
    /// What it pays.
    pub paid: u64,
}

/// Where a requested job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequesterState {
    /// Looking for offers.
    Announced,
    /// Nobody offered; nothing was charged.
    NoOffer,
    /// Credits are reserved for the chosen acceptor.
    Reserved,
    /// The acceptor took the job.
    Running,
    /// The result was receipted.
    Received,
    /// The decision was written.
    Decided,
    /// The result was refused (screen or commitment); it is never paid.
    Refused,
    /// The reservation was released (cancelled by the acceptor, or expired).
    Released,
}

impl RequesterState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Announced => "announced",
            Self::NoOffer => "no-offer",
            Self::Reserved => "reserved",
            Self::Running => "running",
            Self::Received => "received",
            Self::Decided => "decided",
            Self::Refused => "refused",
            Self::Released => "released",
        }
    }
}

/// A requested job as `jobs.db` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequesterRecord {
    /// The job.
    pub job: String,
    /// Where it stands.
    pub state: RequesterState,
    /// The repository it came from.
    pub repo: Option<String>,
    /// The tier.
    pub tier: String,
    /// The price.
    pub price: u64,
    /// The first line of the prompt (at most 120 bytes), for history.
    pub title: String,
    /// The chosen acceptor.
    pub acceptor: Option<NodeId>,
    /// The agent kind and model offered.
    pub agent: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The sealed package's size.
    pub package_size: u64,
    /// The reserve entry's id (hex).
    pub reserve: Option<String>,
    /// Its deadline (ms).
    pub deadline: u64,
    /// The receipt's id (hex); the entry itself is in the ledger.
    pub receipt: Option<String>,
    /// The decision: `accept` or `reject`.
    pub outcome: Option<String>,
    /// What the decision paid.
    pub paid: Option<u64>,
    /// What the result changes.
    pub summary: Option<JobSummary>,
    /// How the acceptor's work ended, if it said so while no `ash run` was following.
    pub end: Option<JobEnd>,
    /// Why it ended as it did, for people.
    pub reason: Option<String>,
    /// When it was asked for (ms).
    pub created: u64,
    /// Set for a routed job: how its model calls are answered.
    #[serde(default)]
    pub routed: Option<RoutedRecord>,
}

/// A job followed by this process: where its acceptor's messages go, until dropped.
struct Live<'a> {
    jobs: &'a Jobs,
    job: String,
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        lock(&self.jobs.live).remove(&self.job);
    }
}

/// Messages for a followed job queued at most.
const LIVE_QUEUE: usize = 256;

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Accept => "accept",
        Outcome::Reject => "reject",
    }
}

impl Jobs {
    /// Asks the network for `spec`, reporting to `events`, until a result is delivered (and
    /// receipted) or the job ends without one.
    pub async fn request(
        self: &Arc<Self>,
        spec: JobSpec,
        events: mpsc::Sender<JobEvent>,
    ) -> Result<Requested, JobError> {
        if !self.writer {
            return Err(JobError::Refused(
                "this node only reads the ledger; it cannot reserve credits".into(),
            ));
        }
        if spec.prompt.trim().is_empty() {
            return Err(JobError::Refused("the prompt is empty".into()));
        }
        if spec.prompt.len() > MAX_PROMPT_BYTES {
            return Err(JobError::Refused(format!(
                "the prompt is {} bytes; a job's prompt is at most {MAX_PROMPT_BYTES}",
                spec.prompt.len()
            )));
        }
        if spec.routed.is_some() != (spec.tier == MACHINE_TIER) {
            return Err(JobError::Refused(format!(
                "a job whose model calls come back here is priced as `{MACHINE_TIER}` time, and only it is"
            )));
        }
        if let Some(routing) = &spec.routed
            && (routing.model.is_empty()
                || routing.model.len() > ash_protocol::MAX_JOB_NAME
                || !matches!(routing.api.as_str(), "anthropic" | "openai"))
        {
            return Err(JobError::Refused(
                "a routed job names a model (at most 64 bytes) of an anthropic or openai provider"
                    .into(),
            ));
        }
        let Some(price) = self.genesis.price(&spec.tier) else {
            let tiers: Vec<String> = self.genesis.price_list().into_keys().collect();
            return Err(JobError::Refused(format!(
                "this network has no price for the tier `{}`; it prices {}",
                spec.tier,
                tiers.join(", ")
            )));
        };
        if let Some(max) = spec.max_price
            && price > max
        {
            return Err(JobError::Refused(format!(
                "the tier `{}` costs {price} credits on this network, over --max-price {max}",
                spec.tier
            )));
        }
        let spendable =
            lock(&self.ledger).verifier().account(self.me.node_id()).balance.spendable.get();
        if spendable < price {
            return Err(JobError::Refused(format!(
                "the tier `{}` costs {price} credits and {spendable} are spendable; earn credits with `ash serve`, or choose a cheaper tier",
                spec.tier
            )));
        }
        let id = JobId::random().map_err(|e| JobError::Local(e.to_string()))?;
        let job = id.to_string();
        let (_live, mut inbound) = self.go_live(&job);
        let mut record = RequesterRecord {
            job: job.clone(),
            state: RequesterState::Announced,
            repo: spec.repo.as_ref().map(|p| p.display().to_string()),
            tier: spec.tier.clone(),
            price,
            title: title(spec.title.as_deref().unwrap_or(&spec.prompt)),
            acceptor: None,
            agent: None,
            model: None,
            package_size: 0,
            reserve: None,
            deadline: 0,
            receipt: None,
            outcome: None,
            paid: None,
            summary: None,
            end: None,
            reason: None,
            created: now_ms(),
            routed: spec.routed.as_ref().map(Routing::record),
        };
        self.put_requested(&record).await?;
        let _ = events.send(JobEvent::Asked { job: job.clone() }).await;

        // Announce, and take offers.
        let expires = now_ms() + u64::try_from(spec.offer_time.as_millis()).unwrap_or(u64::MAX);
        let announce = Gossip::JobAnnounce(JobAnnounce {
            job: job.clone(),
            tier: spec.tier.clone(),
            agents: spec.agents.clone(),
            size: spec.walk.total_size(),
            price,
            expires,
            routed: spec.routed.as_ref().map(Routing::announced),
        });
        let start = Instant::now();
        let mut published = false;
        let mut last = Instant::now();
        let mut offers: Vec<Offer> = Vec::new();
        let mut first: Option<Instant> = None;
        let mut retry = tokio::time::interval(Duration::from_millis(100));
        loop {
            let waited = start.elapsed();
            let limit = match first {
                Some(at) => (at + spec.choose_after).saturating_duration_since(Instant::now()),
                None => spec.offer_time.saturating_sub(waited),
            };
            if limit.is_zero() {
                break;
            }
            tokio::select! {
                _ = retry.tick(), if !published || (first.is_none() && last.elapsed() >= ANNOUNCE_AGAIN) => {
                    // Until a peer hears the topic, publishing fails; it is tried again. Once
                    // out, it is said again while nobody offers: acceptors busy at first, or
                    // met since, offer then (each offers once per job).
                    last = Instant::now();
                    match self.net.publish(ash_net::Topic::Announcements, &announce).await {
                        Ok(()) if !published => {
                            published = true;
                            let _ = events.send(JobEvent::Announced { job: job.clone(), price }).await;
                        }
                        Ok(()) => {}
                        Err(e) => tracing::debug!(error = %e, "announcement not published yet"),
                    }
                }
                message = inbound.recv() => match message {
                    Some((from, Inbound::Offer(offer))) if offer.acceptor == from => {
                        let model_ok =
                            spec.routed.as_ref().is_none_or(|r| r.model == offer.model);
                        if from != self.me.node_id()
                            && spec.agents.contains(&offer.agent)
                            && model_ok
                            && !offers.iter().any(|o| o.acceptor == from)
                        {
                            first.get_or_insert_with(Instant::now);
                            offers.push(offer);
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                () = tokio::time::sleep(limit) => {}
            }
        }
        // The first offer whose acceptor has a profile to seal to.
        let chosen = offers.into_iter().find_map(|offer| {
            let key = lock(&self.ledger).verifier().profile(offer.acceptor).map(|(_, key)| key)?;
            Some((offer, key))
        });
        let Some((offer, sealing_key)) = chosen else {
            record.state = RequesterState::NoOffer;
            record.reason = Some("no acceptor offered".into());
            self.put_requested(&record).await?;
            return Err(JobError::NoOffer(spec.offer_time));
        };
        let acceptor = offer.acceptor;
        record.acceptor = Some(acceptor);
        record.agent = Some(offer.agent.clone());
        record.model = Some(offer.model.clone());
        let _ = events.send(JobEvent::Matched(offer.clone())).await;

        // Pack and seal for the chosen acceptor.
        let _ = events
            .send(JobEvent::Packing {
                entries: spec.walk.entries.len() as u64,
                bytes: spec.walk.total_size(),
            })
            .await;
        let dir = self.job_dir(SIDE, &job)?;
        let package_path = dir.join("package.sealed");
        let recipient = Recipient { node: acceptor, key: sealing_key };
        let (me, walk, options, path) =
            (Arc::clone(&self.me), spec.walk, spec.pack.clone(), package_path.clone());
        let packed = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            let writer = std::io::BufWriter::new(file);
            let (info, _, writer) = ash_pack::pack(&walk, &me, &recipient, id, &options, writer)
                .map_err(|e| e.to_string())?;
            writer
                .into_inner()
                .map_err(|e| e.to_string())?
                .sync_all()
                .map_err(|e| e.to_string())?;
            let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
            let hash = file_sha256(&path).map_err(|e| e.to_string())?;
            Ok::<_, String>((info, size, hash))
        })
        .await
        .map_err(|e| JobError::Local(e.to_string()))?
        .map_err(|e| JobError::Local(format!("packing the repository: {e}")))?;
        let (info, size, package_hash) = packed;
        record.package_size = size;
        let _ = events.send(JobEvent::Packed { bytes: size, entries: info.entries }).await;
        let sealed_prompt = ash_pack::seal_prompt(&spec.prompt, &self.me, &recipient, id)
            .map_err(|e| JobError::Local(format!("sealing the prompt: {e}")))?;

        // Reserve.
        let terms = JobTerms {
            tier: spec.tier.clone(),
            price,
            package: package_hash.clone(),
            prompt: sha256_hex(spec.prompt.as_bytes()),
            agent: offer.agent.clone(),
            model: offer.model.clone(),
            routed: spec.routed.is_some(),
        };
        let Some(terms_hash) = ledger_terms(&terms).and_then(|t| t.digest()) else {
            return Err(JobError::Refused("the tier or agent name is too long".into()));
        };
        // The acceptor has `run_time` from when the assignment reaches it: a little more is
        // given for the messages on the way (an acceptor refuses a deadline under a minute).
        let deadline = now_ms()
            .saturating_add(u64::try_from(spec.run_time.as_millis()).unwrap_or(u64::MAX))
            .saturating_add(TRANSIT_MS);
        let reserve = Body::Reserve(Reserve {
            job: ash_ledger::JobId(id.0),
            acceptor,
            amount: Credits::new(price),
            deadline,
            terms: terms_hash,
        });
        // The entry and the record that names it are written together or not at all as far as
        // this future goes: a caller that drops it (a cancellation, Ctrl-C) while they are
        // written does not leave a reservation no record knows of (which nothing would
        // release). [`Jobs::abandon`] waits for them.
        let held = Arc::clone(&self.reserving).lock_owned().await;
        let jobs = Arc::clone(self);
        let mut reserved = record.clone();
        let written = tokio::spawn(async move {
            let _held = held;
            let entry = jobs.append(reserve).await?;
            reserved.reserve = Some(entry.id().to_string());
            reserved.deadline = deadline;
            reserved.state = RequesterState::Reserved;
            jobs.put_requested(&reserved).await?;
            Ok::<_, JobError>((entry, reserved))
        });
        let (entry, reserved) = written.await.map_err(|e| JobError::Local(e.to_string()))??;
        record = reserved;
        self.announce_head().await;
        let _ = events.send(JobEvent::Reserved { amount: price }).await;

        // A routed job's model calls are answered from here on, while this follows it.
        let _route = spec.routed.clone().map(|r| self.follow_routed(&job, acceptor, r));

        // Assign.
        let assign = PeerRequest::JobAssign(JobAssign {
            job: job.clone(),
            reserve: serde_bytes::ByteBuf::from(entry.bytes()),
            terms,
            prompt: serde_bytes::ByteBuf::from(sealed_prompt),
            size,
        });
        match Self::ask(&self.net, acceptor, assign).await {
            Ok(PeerResponse::JobAccepted) => {}
            Ok(PeerResponse::JobStatus { end: Some(end @ JobEnd::Cancelled { .. }), .. }) => {
                return self.ended(&mut record, acceptor, end, &events).await;
            }
            Ok(PeerResponse::Error(e)) => {
                return Err(self
                    .lost(&mut record, format!("{acceptor} refused the job: {}", e.message))
                    .await);
            }
            Ok(other) => {
                return Err(self
                    .lost(&mut record, format!("{acceptor} answered the job with {other:?}"))
                    .await);
            }
            Err(e) => {
                return Err(self
                    .lost(&mut record, format!("{acceptor} cannot be reached: {e}"))
                    .await);
            }
        }
        record.state = RequesterState::Running;
        self.put_requested(&record).await?;
        let _ = events.send(JobEvent::Assigned).await;

        self.follow(&mut record, acceptor, inbound, &events).await
    }

    /// Follows a job its acceptor runs until it ends (or its deadline passes): steps as they
    /// come, and every [`STATUS_EVERY`] a question in case a message was lost.
    async fn follow(
        &self,
        record: &mut RequesterRecord,
        acceptor: NodeId,
        mut inbound: mpsc::Receiver<(NodeId, Inbound)>,
        events: &mpsc::Sender<JobEvent>,
    ) -> Result<Requested, JobError> {
        let job = record.job.clone();
        let mut next_step = 0u64;
        let mut status = tokio::time::interval(STATUS_EVERY);
        let end = loop {
            if let Some(end) = record.end.take() {
                break end;
            }
            let left = Duration::from_millis(record.deadline.saturating_sub(now_ms()));
            if left.is_zero() {
                return Err(self
                    .lost(record, "no result came before the deadline".to_owned())
                    .await);
            }
            tokio::select! {
                message = inbound.recv() => match message {
                    Some((from, Inbound::Progress { from: first, steps })) if from == acceptor => {
                        for (i, step) in steps.into_iter().enumerate() {
                            if first + i as u64 == next_step {
                                next_step += 1;
                                let _ = events.send(JobEvent::Step(step)).await;
                            }
                        }
                    }
                    Some((from, Inbound::Done(end))) if from == acceptor => break end,
                    Some((from, Inbound::Fetched(sent))) if from == acceptor => {
                        let total = record.package_size;
                        let _ = events.send(JobEvent::Uploaded { sent, total }).await;
                    }
                    Some(_) => {}
                    None => return Err(JobError::Local("the node stopped".into())),
                },
                _ = status.tick() => {
                    let ask = PeerRequest::JobStatus { job: job.clone() };
                    if let Ok(PeerResponse::JobStatus { end: Some(end), .. }) =
                        Self::ask(&self.net, acceptor, ask).await
                    {
                        break end;
                    }
                }
                () = tokio::time::sleep(left) => {}
            }
        };
        self.ended(record, acceptor, end, events).await
    }

    /// Takes up a job this home asked for whose `ash run` ended early (killed, or the
    /// connection lost): follows it if it runs, fetches a result delivered meanwhile, or
    /// returns the received result again for the decision.
    /// A routed job's calls are answered by `provider` while this follows it (`None`: they
    /// are refused, and its agent fails).
    pub async fn resume(
        self: &Arc<Self>,
        job: &str,
        provider: Option<Arc<dyn ModelProvider>>,
        events: mpsc::Sender<JobEvent>,
    ) -> Result<Requested, JobError> {
        if !self.writer {
            return Err(JobError::Refused("this node only reads the ledger".into()));
        }
        let Some((_, mut record)) = self.load::<RequesterRecord>(job, SIDE).await? else {
            return Err(JobError::Refused(format!("no job {job} was asked for here")));
        };
        let Some(acceptor) = record.acceptor else {
            return Err(JobError::Refused(format!(
                "job {job} never found an acceptor; nothing was reserved"
            )));
        };
        match record.state {
            RequesterState::Reserved | RequesterState::Running | RequesterState::Received => {}
            state => {
                return Err(JobError::Refused(format!(
                    "job {job} is {}; there is nothing to resume",
                    state.as_str()
                )));
            }
        }
        let (_live, inbound) = self.go_live(job);
        // A routed job's calls are answered again (its budget counts from here).
        let _route = match (&record.routed, provider) {
            (Some(routed), Some(provider)) => {
                Some(self.follow_routed(job, acceptor, routed.with(provider)))
            }
            _ => None,
        };
        if record.state == RequesterState::Received {
            // The result is here and receipted: only the decision is missing.
            let end = self.status_of(&record, acceptor).await?;
            return self.ended(&mut record, acceptor, end, &events).await;
        }
        // Steps received while no `ash run` followed.
        for step in self.steps(job).await? {
            let _ = events.send(JobEvent::Step(step)).await;
        }
        self.follow(&mut record, acceptor, inbound, &events).await
    }

    /// The receipt a job's record names, as the ledger holds it.
    /// This identity's own entry settling `reserve` that `kind` picks, if one is written.
    fn settled_by(&self, reserve: Hash, kind: impl Fn(&Body) -> bool) -> Option<Entry> {
        lock(&self.ledger)
            .settlement_of(self.me.node_id(), reserve)
            .into_iter()
            .find(|e| kind(&e.body))
    }

    fn receipt_of(&self, record: &RequesterRecord) -> Option<Entry> {
        let id = record.receipt.as_deref().and_then(hash_of)?;
        lock(&self.ledger).verifier().entry(&id).map(|e| (**e).clone())
    }

    /// Routes `job`'s messages to the returned receiver while the guard lives.
    fn go_live(&self, job: &str) -> (Live<'_>, mpsc::Receiver<(NodeId, Inbound)>) {
        let (tx, inbound) = mpsc::channel(LIVE_QUEUE);
        lock(&self.live).insert(job.to_owned(), tx);
        (Live { jobs: self, job: job.to_owned() }, inbound)
    }

    /// Where the messages of `job` go, while a task of this process follows it.
    fn route(&self, job: &str) -> Option<mpsc::Sender<(NodeId, Inbound)>> {
        lock(&self.live).get(job).cloned()
    }

    /// The acceptor's end of a job, asked of it.
    async fn status_of(
        &self,
        record: &RequesterRecord,
        acceptor: NodeId,
    ) -> Result<JobEnd, JobError> {
        if let Some(end) = &record.end {
            return Ok(end.clone());
        }
        let ask = PeerRequest::JobStatus { job: record.job.clone() };
        match Self::ask(&self.net, acceptor, ask).await {
            Ok(PeerResponse::JobStatus { end: Some(end), .. }) => Ok(end),
            Ok(other) => {
                Err(JobError::Lost(format!("{acceptor} has no result to give: {other:?}")))
            }
            Err(e) => Err(JobError::Lost(format!("{acceptor} cannot be reached: {e}"))),
        }
    }

    /// Takes the acceptor's end of the job: a cancellation releases the reservation; a result
    /// is fetched, checked, receipted and screened.
    async fn ended(
        &self,
        record: &mut RequesterRecord,
        acceptor: NodeId,
        end: JobEnd,
        events: &mpsc::Sender<JobEvent>,
    ) -> Result<Requested, JobError> {
        let job = record.job.clone();
        let reserve = record
            .reserve
            .as_deref()
            .and_then(hash_of)
            .ok_or_else(|| JobError::Local("no reservation".into()))?;
        let network = self.genesis.id();
        let key = acceptor.public_key().map_err(|e| JobError::BadResult(e.to_string()))?;
        match end {
            JobEnd::Cancelled { reason, signature } => {
                let signature = signature_of(&signature).ok_or_else(|| {
                    JobError::BadResult("a cancellation without a signature".into())
                })?;
                if !verifies(
                    &key,
                    ash_identity::Domain::LedgerCancel,
                    &ash_ledger::cancel_bytes(network, reserve),
                    &signature,
                ) {
                    return Err(JobError::BadResult(
                        "the cancellation's signature does not verify".into(),
                    ));
                }
                // A release written before (by a run cut short before its record) is taken
                // as it is.
                if self.settled_by(reserve, |b| matches!(b, Body::Release(_))).is_none() {
                    self.append(Body::Release(Release::cancelled(reserve, signature))).await?;
                }
                record.state = RequesterState::Released;
                record.reason = Some(reason.chars().take(1024).collect());
                self.put_requested(record).await?;
                self.announce_head().await;
                remove(vec![self.side_dir(SIDE, &job)]).await;
                Ok(Requested::Cancelled { job, reason })
            }
            JobEnd::Delivered { result, size, commitment, summary } => {
                let refuse = |reason: String| JobError::BadResult(reason);
                // A job receipted before is only ever the result it receipted.
                if let Some(Body::Receipt(receipted)) = self.receipt_of(record).map(|e| e.body)
                    && encode_hex(&receipted.result.0) != result
                {
                    return Err(refuse(format!(
                        "{acceptor} now offers another result than the one receipted"
                    )));
                }
                let checked = async {
                    // After the deadline the reservation is the requester's to release: a late
                    // result is not receipted.
                    if record.receipt.is_none() && now_ms() > record.deadline {
                        return Err(refuse(
                            "the result came after the reservation's deadline".into(),
                        ));
                    }
                    let result_hash = ash_identity::decode_hex::<32>(&result)
                        .map(Hash)
                        .ok_or_else(|| refuse("the result hash is not 64 hex digits".into()))?;
                    let signature = signature_of(&commitment)
                        .ok_or_else(|| refuse("a result without a commitment".into()))?;
                    let bytes = ash_ledger::commitment_bytes(network, reserve, result_hash);
                    if !verifies(&key, ash_identity::Domain::LedgerResult, &bytes, &signature) {
                        return Err(refuse("the result commitment does not verify".into()));
                    }
                    if size > ash_pack::MAX_DIFF_BYTES {
                        return Err(refuse(format!("the result is {size} bytes")));
                    }
                    let dir = self.job_dir(SIDE, &job)?;
                    let path = dir.join("result.sealed");
                    self.fetch(acceptor, &job, ash_protocol::JobFile::Result, &path, size).await?;
                    let hash = hash_file(&path).await.map_err(JobError::Local)?;
                    if hash != result {
                        let _ = std::fs::remove_file(&path);
                        return Err(refuse("the result is not the one committed to".into()));
                    }
                    let me = Arc::clone(&self.me);
                    let id = job.parse::<JobId>().map_err(|e| JobError::Local(e.to_string()))?;
                    let (patch, files, manifest) = tokio::task::spawn_blocking(move || {
                        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                        let expect = Expect { sender: Some(acceptor), job: Some(id) };
                        let opened =
                            ash_pack::open_result(file, &me, expect, ash_pack::MAX_DIFF_BYTES)
                                .map_err(|e| e.to_string())?;
                        let manifest: JobManifest = serde_json::from_slice(&opened.manifest)
                            .map_err(|e| format!("the result's manifest does not parse: {e}"))?;
                        let files = ash_pack::screen(&opened.patch).map_err(|e| e.to_string())?;
                        Ok::<_, String>((opened.patch, files, manifest))
                    })
                    .await
                    .map_err(|e| JobError::Local(e.to_string()))?
                    .map_err(refuse)?;
                    Ok((result_hash, signature, patch, files, manifest))
                };
                let (result_hash, signature, patch, files, manifest) = match checked.await {
                    Ok(checked) => checked,
                    Err(e @ JobError::BadResult(_)) => {
                        tracing::warn!(peer = %acceptor, %job, error = %e, "result refused");
                        record.state = RequesterState::Refused;
                        record.reason = Some(e.to_string());
                        self.put_requested(record).await?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                // (A resumed job that was receipted before is not receipted again.)
                if record.receipt.is_none() {
                    // A receipt written before (by a run cut short before its record) is taken
                    // as it is, if it is for this result.
                    let receipt = match self.settled_by(reserve, |b| matches!(b, Body::Receipt(_)))
                    {
                        Some(written) => match &written.body {
                            Body::Receipt(r) if r.result == result_hash => written,
                            _ => {
                                return Err(refuse(format!(
                                    "{acceptor} now offers another result than the one receipted"
                                )));
                            }
                        },
                        None => {
                            self.append(Body::Receipt(Receipt {
                                reserve,
                                result: result_hash,
                                commitment: signature,
                            }))
                            .await?
                        }
                    };
                    record.receipt = Some(receipt.id().to_string());
                }
                record.summary = Some(summary.clone());
                record.state = RequesterState::Received;
                self.put_requested(record).await?;
                self.announce_head().await;
                let _ = events.send(JobEvent::Received(summary.clone())).await;
                let mismatch = mismatch(record, &manifest);
                if let Some(why) = &mismatch {
                    tracing::warn!(peer = %acceptor, %job, %why, "the result is not what the terms name");
                }
                Ok(Requested::Delivered(Box::new(Delivered {
                    job,
                    acceptor,
                    patch,
                    files,
                    summary,
                    manifest,
                    mismatch,
                    price: record.price,
                })))
            }
        }
    }

    /// Writes the decision on a received job and tells its acceptor.
    pub async fn decide(&self, job: &str, outcome: Outcome) -> Result<Settlement, JobError> {
        let Some((_, mut record)) = self.load::<RequesterRecord>(job, SIDE).await? else {
            return Err(JobError::Refused(format!("no job {job} was asked for here")));
        };
        if record.state != RequesterState::Received {
            return Err(JobError::Refused(format!(
                "job {job} is {}, not waiting for a decision",
                record.state.as_str()
            )));
        }
        let (Some(reserve), Some(acceptor)) =
            (record.reserve.as_deref().and_then(hash_of), record.acceptor)
        else {
            return Err(JobError::Local("the record has no reservation".into()));
        };
        // A decision written before (by a run cut short before its record) stands, whatever
        // is asked now: a reservation is decided once.
        let written = self.settled_by(reserve, |b| matches!(b, Body::Decide(_))).and_then(|e| {
            let Body::Decide(d) = &e.body else { return None };
            let outcome = d.outcome;
            Some((e, outcome))
        });
        let (decide, outcome) = match written {
            Some(written) => written,
            None => (self.append(Body::Decide(Decide { reserve, outcome })).await?, outcome),
        };
        let paid = outcome.price(Credits::new(record.price)).get();
        record.outcome = Some(outcome_name(outcome).to_owned());
        record.paid = Some(paid);
        record.state = RequesterState::Decided;
        self.put_requested(&record).await?;
        self.announce_head().await;
        remove(vec![self.side_dir(SIDE, job).join("package.sealed")]).await;
        let mut entries = Vec::new();
        if let Some(receipt) = self.receipt_of(&record) {
            entries.push(serde_bytes::ByteBuf::from(receipt.bytes()));
        }
        entries.push(serde_bytes::ByteBuf::from(decide.bytes()));
        let settled = PeerRequest::JobSettled { job: job.to_owned(), entries };
        if let Err(e) = Self::ask(&self.net, acceptor, settled).await {
            // Replication carries the entries to the acceptor as well.
            tracing::debug!(%job, error = %e, "the acceptor was not told of the decision");
        }
        tracing::info!(%job, outcome = outcome_name(outcome), paid, "decided");
        Ok(Settlement { outcome, paid })
    }

    /// The requested jobs held here, newest first.
    pub async fn requested(&self) -> Result<Vec<RequesterRecord>, JobError> {
        Ok(self.list::<RequesterRecord>(SIDE).await?.into_iter().map(|(_, r)| r).collect())
    }

    /// The progress steps received for a job.
    pub async fn steps(&self, job: &str) -> Result<Vec<JobStep>, JobError> {
        let job = job.to_owned();
        let steps = self.db(move |db| db.steps(&job)).await?;
        Ok(steps.iter().filter_map(|s| serde_json::from_str(s).ok()).collect())
    }

    /// Gives up following `job`, whose [`Jobs::request`] or [`Jobs::resume`] future was
    /// dropped: waits for a reservation being written to be written, then says where the job
    /// stands. A job no acceptor was chosen for ends here (nothing was reserved); a reserved
    /// one stays as it is, for [`Jobs::resume`] or the release at its deadline.
    pub async fn abandon(&self, job: &str) -> Result<Abandoned, JobError> {
        let _written = self.reserving.lock().await;
        let Some((_, mut record)) = self.load::<RequesterRecord>(job, SIDE).await? else {
            return Err(JobError::Refused(format!("no job {job} was asked for here")));
        };
        Ok(match record.state {
            RequesterState::Announced => {
                record.state = RequesterState::NoOffer;
                record.reason = Some("cancelled before an acceptor was chosen".into());
                self.put_requested(&record).await?;
                Abandoned::NothingReserved
            }
            RequesterState::Reserved | RequesterState::Running | RequesterState::Received => {
                Abandoned::Held { price: record.price, deadline: record.deadline }
            }
            state => Abandoned::Ended(state),
        })
    }

    async fn put_requested(&self, record: &RequesterRecord) -> Result<(), JobError> {
        Ok(self.save(&record.job, SIDE, record.state.as_str(), record).await?)
    }

    /// The acceptor is gone or refused after the reservation: the job ends, and the
    /// reservation is released once its deadline passes.
    async fn lost(&self, record: &mut RequesterRecord, reason: String) -> JobError {
        tracing::warn!(job = %record.job, %reason, "job lost");
        record.reason = Some(reason.clone());
        if let Err(e) = self.put_requested(record).await {
            return e;
        }
        JobError::Lost(format!(
            "{reason}; the reservation is released after its deadline (nothing is paid)"
        ))
    }

    /// Appends an entry to this identity's log.
    pub(crate) async fn append(&self, body: Body) -> Result<Entry, JobError> {
        let (ledger, me) = (Arc::clone(&self.ledger), Arc::clone(&self.me));
        tokio::task::spawn_blocking(move || lock(&ledger).append_entry(&me, body))
            .await
            .map_err(|e| JobError::Local(e.to_string()))?
            .map_err(JobError::Node)
    }

    /// An acceptor's offer for one of this process's jobs.
    pub(crate) fn offered(&self, from: NodeId, offer: ash_protocol::JobOffer) -> PeerResponse {
        let names = [&offer.agent, &offer.model, &offer.sandbox];
        if names.iter().any(|n| n.len() > ash_protocol::MAX_JOB_NAME) {
            return PeerResponse::error("invalid", "a name in the offer is too long");
        }
        let route = self.route(&offer.job);
        let Some(route) = route else {
            return PeerResponse::error("closed", "this job takes no offers");
        };
        let offer = Offer {
            acceptor: from,
            agent: offer.agent,
            model: offer.model,
            sandbox: offer.sandbox,
        };
        match route.try_send((from, Inbound::Offer(offer))) {
            Ok(()) => PeerResponse::Noted,
            Err(_) => PeerResponse::error("closed", "this job takes no more offers"),
        }
    }

    /// Progress or an end from the acceptor of one of this node's jobs: to the task following
    /// it, or, with none, into the record for later.
    pub(crate) async fn to_requester(
        &self,
        job: &str,
        from: NodeId,
        message: Inbound,
    ) -> PeerResponse {
        let Ok(Some((_, mut record))) = self.load::<RequesterRecord>(job, SIDE).await else {
            return PeerResponse::error("invalid", "no such job");
        };
        if record.acceptor != Some(from) {
            return PeerResponse::error("refused", "this job is not yours");
        }
        if let Inbound::Progress { from: first, steps } = &message {
            if record.state != RequesterState::Running
                || first.saturating_add(steps.len() as u64) > MAX_STEPS_PER_JOB
            {
                return PeerResponse::error("refused", "this job takes no more progress");
            }
            if steps.len() > ash_protocol::MAX_PROGRESS_STEPS
                || steps
                    .iter()
                    .any(|s| s.text.len() > ash_protocol::MAX_PROGRESS_TEXT || s.kind.len() > 16)
            {
                return PeerResponse::error("invalid", "too many or too long progress steps");
            }
            let lines: Vec<String> =
                steps.iter().filter_map(|s| serde_json::to_string(s).ok()).collect();
            let (id, first) = (job.to_owned(), *first);
            if let Err(e) = self.db(move |db| db.add_steps(&id, first, &lines)).await {
                tracing::warn!(error = %e, "progress not stored");
            }
        }
        match (self.route(job), message) {
            // (A follower that does not keep up loses progress marks, never the answer.)
            (Some(route), message) => {
                let _ = route.try_send((from, message));
            }
            (None, Inbound::Done(end)) if matches!(record.state, RequesterState::Running) => {
                record.end = Some(end);
                if let Err(e) = self.put_requested(&record).await {
                    tracing::warn!(error = %e, "job end not stored");
                }
            }
            (None, _) => {}
        }
        PeerResponse::Noted
    }

    /// A chunk of a job's package, for its acceptor.
    pub(crate) async fn package_chunk(&self, job: &str, from: NodeId, index: u64) -> PeerResponse {
        match self.load::<RequesterRecord>(job, SIDE).await {
            Ok(Some((_, record)))
                if record.acceptor == Some(from)
                    && matches!(
                        record.state,
                        RequesterState::Reserved | RequesterState::Running
                    ) =>
            {
                let answer =
                    Self::read_chunk(self.side_dir(SIDE, job).join("package.sealed"), index).await;
                if let PeerResponse::JobChunk { bytes } = &answer {
                    let chunk = u64::from(ash_protocol::JOB_CHUNK_BYTES);
                    let sent = index.saturating_mul(chunk).saturating_add(bytes.len() as u64);
                    let route = self.route(job);
                    // (A full queue loses a progress mark, nothing else.)
                    if let Some(route) = route {
                        let _ = route.try_send((from, Inbound::Fetched(sent)));
                    }
                }
                answer
            }
            _ => PeerResponse::error("refused", "no package of this job for you"),
        }
    }

    /// Releases the reservations of jobs that ended without a result once their deadline has
    /// passed.
    pub(crate) async fn requester_tick(&self) {
        let open = &["reserved", "running", "refused"];
        let Ok(records) = self.unfinished::<RequesterRecord>(SIDE, open).await else { return };
        let now = now_ms();
        for mut record in records {
            let open = matches!(
                record.state,
                RequesterState::Reserved | RequesterState::Running | RequesterState::Refused
            );
            let live = lock(&self.live).contains_key(&record.job);
            let Some(reserve) = record.reserve.as_deref().and_then(hash_of) else { continue };
            if !open || live || record.deadline == 0 || now < record.deadline + 1 {
                continue;
            }
            // Only a reservation nothing settled is released (a receipt made it payable).
            if !lock(&self.ledger).settlement_of(self.me.node_id(), reserve).is_empty() {
                continue;
            }
            match self.append(Body::Release(Release::expired(reserve))).await {
                Ok(_) => {
                    record.state = RequesterState::Released;
                    record.reason.get_or_insert_with(|| "expired".to_owned());
                    let _ = self.put_requested(&record).await;
                    self.announce_head().await;
                    remove(vec![self.side_dir(SIDE, &record.job)]).await;
                    self.emit(
                        &record.job,
                        "released",
                        format!("{} credits released", record.price),
                    );
                }
                Err(JobError::Node(crate::NodeError::Refused { rule, detail, .. })) => {
                    // Final: the rules say this reservation cannot be released; never tried
                    // again (a deadline of 0 is never passed).
                    tracing::warn!(job = %record.job, %rule, %detail, "release refused");
                    record.reason =
                        Some(format!("the ledger refused the release ({rule}): {detail}"));
                    record.deadline = 0;
                    let _ = self.put_requested(&record).await;
                }
                Err(e) => tracing::warn!(job = %record.job, error = %e, "release failed"),
            }
        }
    }
}

/// The first line of a prompt, cut to 120 bytes.
fn title(prompt: &str) -> String {
    let line = prompt.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    super::cut(line, 120).to_owned()
}

/// The ledger's form of the terms; `None` when a hash is not 64 hex digits.
/// Why the manifest does not match the job's terms: another agent, a model other than the
/// one offered, or none at all.
fn mismatch(record: &RequesterRecord, manifest: &JobManifest) -> Option<String> {
    let model = record.model.as_deref().unwrap_or_default();
    let agent = record.agent.as_deref().unwrap_or_default();
    if manifest.agent != agent {
        return Some(format!("the {} agent ran, and the terms name {agent}", manifest.agent));
    }
    if manifest.models.is_empty() {
        return Some(format!("the result names no model; the terms name {model}"));
    }
    let others: Vec<&str> =
        manifest.models.iter().map(String::as_str).filter(|m| *m != model).collect();
    (!others.is_empty())
        .then(|| format!("the agent called {}, and the terms name {model} only", others.join(", ")))
}

pub(crate) fn ledger_terms(terms: &JobTerms) -> Option<Terms> {
    Some(Terms {
        tier: terms.tier.clone(),
        price: Credits::new(terms.price),
        package: Hash(ash_identity::decode_hex::<32>(&terms.package)?),
        prompt: Hash(ash_identity::decode_hex::<32>(&terms.prompt)?),
        agent: terms.agent.clone(),
        model: terms.model.clone(),
        routed: terms.routed,
    })
}

pub(crate) fn signature_of(bytes: &[u8]) -> Option<Signature> {
    <[u8; 64]>::try_from(bytes).ok().map(Signature)
}

pub(crate) fn verifies(
    key: &PublicKey,
    domain: ash_identity::Domain,
    bytes: &[u8],
    signature: &Signature,
) -> bool {
    ash_identity::verify(key, domain, bytes, signature).is_ok()
}

/// A stored hash.
pub(crate) fn hash_of(hex: &str) -> Option<Hash> {
    ash_identity::decode_hex::<32>(hex).map(Hash)
}
