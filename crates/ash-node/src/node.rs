//! The node service: a [`Net`] and the ledger, and the loop between them. It answers peers'
//! questions about the ledger, catches up with every peer that connects or gossips new heads,
//! and gossips the heads of logs that grew here.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ash_identity::{Identity, NodeId};
use ash_ledger::{Entry, Genesis, SignupCost};
use ash_net::{
    Discovery, MAX_RESPONSE_BYTES, Net, NetConfig, NetEvent, NetHandle, Responder, Topic,
};
use ash_protocol::{
    Gossip, LogHead, LogStart, MAX_ENTRIES, MAX_GOSSIP_HEADS, MAX_HEADS, MAX_INVITE_BYTES,
    MAX_LOGS, PeerInfo, PeerRequest, PeerResponse, SignupProof,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::invites::InviteBook;
use crate::jobs::Jobs;
use crate::ledger::{Inserted, Ledger, now_ms};
use crate::{InviteError, NodeError};

/// Catch-ups running at once; others wait their turn (at most [`MAX_WAITING_SYNCS`] peers).
pub const MAX_SYNCS: usize = 4;
/// Peers waiting for a catch-up slot; beyond, the periodic catch-up reaches them.
pub const MAX_WAITING_SYNCS: usize = 64;
/// Pages of heads asked of one peer in one catch-up (of [`MAX_HEADS`] each).
pub const MAX_HEAD_PAGES: usize = 64;
/// Heads taken from one peer in one catch-up.
pub const MAX_SYNC_HEADS: usize = 65_536;
/// New entries stored from one peer in one catch-up; the rest waits for the next.
pub const MAX_SYNC_ENTRIES: u64 = 100_000;
/// Checkpoints fetched from one peer in one catch-up.
pub const MAX_SYNC_CHECKPOINTS: usize = 4096;
/// How long one catch-up may take.
pub const SYNC_TIME: std::time::Duration = std::time::Duration::from_secs(60);
/// Answers to peers being prepared at once; beyond, peers are told `busy`.
const MAX_ANSWERS: usize = 16;
/// Events waiting for the caller; beyond, they are dropped.
const EVENT_QUEUE: usize = 256;
/// How often the service retries gossip and mints held-back signups.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Ticks between catch-ups with every connected peer.
const RESYNC_TICKS: u64 = 30;
/// Heads kept for gossip that could not go out yet.
const MAX_UNSENT_HEADS: usize = 4096;
/// Identities admitted to a signup and not minted for yet; beyond, askers are told `busy`.
const MAX_ADMITTED: usize = 65_536;
/// How long an admission waits for the identity's profile before it is forgotten.
const ADMISSION_TIME: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Proofs of equivocation gossiped at once; the rest go with the next catch-up.
const MAX_PROOFS_AT_ONCE: usize = 64;
/// How far back a catch-up looks for where a log forked, when the peer's entries do not
/// follow the ones held here.
const FORK_LOOKBACK: u64 = 64;
/// Largest entry a proof of equivocation may carry.
const MAX_PROOF_ENTRY_BYTES: usize = 16 << 10;
/// Largest checkpoint gossiped (the gossip limit, less room for the envelope); larger ones
/// travel by catch-up.
const MAX_GOSSIP_CHECKPOINT_BYTES: usize = 60 << 10;

/// A mint authority's node: it mints the signup bonus for every new identity it learns of.
#[derive(Debug, Clone)]
pub struct Authority {
    /// The authority's key (one of the genesis's authorities).
    pub key: Arc<Identity>,
    /// Credits per signup.
    pub signup_bonus: u64,
    /// Signups minted per minute at most (bursts of as many); the rest wait.
    pub signups_per_minute: u32,
    /// The codes this authority issued, on a network whose signup cost is an invite.
    pub invites: Option<InviteBook>,
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The network part.
    pub net: NetConfig,
    /// The ledger database.
    pub ledger: PathBuf,
    /// The network's genesis.
    pub genesis: Genesis,
    /// What the node says of itself.
    pub info: PeerInfo,
    /// Set on a mint authority's node.
    pub authority: Option<Authority>,
    /// What this node shows the mint authorities it meets for its signup bonus, on a network
    /// with a signup cost (`None`: it asks nothing of them).
    pub signup: Option<SignupProof>,
    /// Whether this node appends to its own log (receipts of mints, and an authority's mints).
    /// Exactly one process may per identity, or two would write different entries at one
    /// position: a fork, which freezes the identity. The caller holds the lock that says so;
    /// a node that does not (a short look around) only reads and replicates.
    pub writer: bool,
    /// Where the job records and files live (`$ASH_HOME/jobs`).
    pub jobs_dir: PathBuf,
    /// Set on a node that serves jobs.
    pub serve: Option<crate::ServeConfig>,
}

/// What the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// It listens on this address.
    Listening {
        /// Ending in `/p2p/<its id>`.
        address: String,
    },
    /// A peer of this network connected.
    PeerConnected {
        /// Who.
        node: NodeId,
        /// How it was found.
        found_by: Discovery,
        /// Whether the connection goes through a relay.
        relayed: bool,
    },
    /// What peers found of this node's reachability: the address they reached it at, or
    /// `None` when none could (relays carry its connections).
    Reachability {
        /// The address.
        public: Option<String>,
    },
    /// A peer left.
    PeerDisconnected {
        /// Who.
        node: NodeId,
    },
    /// A peer was refused (another network, a protocol violation).
    Refused {
        /// Its peer id.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Mints made out to this identity were taken into its log.
    Received {
        /// Their amounts.
        amounts: Vec<u64>,
        /// The spendable balance after.
        balance: u64,
    },
    /// A mint authority answered this node's signup: admitted (the bonus follows), or why it
    /// refused. (Busy authorities and failed connections are asked again later, silently.)
    SignupAnswered {
        /// The authority's node.
        authority: NodeId,
        /// Admitted, or the reason given.
        admitted: Result<(), String>,
    },
    /// A checkpoint (witnesses' signatures over an identity's state) newer than the one held
    /// was kept: received, or stored here by another process.
    Checkpoint {
        /// Whose state.
        subject: NodeId,
        /// At which position of its log.
        seq: u64,
    },
    /// An identity was proven to have signed two entries at one position: it is frozen
    /// (found here, or a proof received by gossip).
    Equivocated {
        /// Who.
        author: NodeId,
    },
    /// This authority minted signup bonuses.
    Minted {
        /// For whom.
        recipients: Vec<NodeId>,
        /// Credits each.
        amount: u64,
    },
    /// A job changed state (offered, assigned, running, delivered, collected, cancelled,
    /// released).
    Job {
        /// The job.
        job: String,
        /// Its new state.
        state: String,
        /// For people.
        detail: String,
    },
    /// A catch-up with a peer ended.
    Synced {
        /// With whom.
        from: NodeId,
        /// Entries stored for the first time.
        new: u64,
        /// Received entries that could not be read (a protocol violation).
        unreadable: u64,
    },
}

/// A running node.
pub struct Node {
    net: NetHandle,
    ledger: Arc<Mutex<Ledger>>,
    jobs: Arc<Jobs>,
    events: mpsc::Receiver<NodeEvent>,
    task: tokio::task::JoinHandle<()>,
}

/// Locks shared state (the ledger, the job flow's maps); a panic while it was held poisons
/// nothing a later holder cannot use (the verifier stores only what it judged; the maps hold
/// whole entries), so the lock is taken back.
pub(crate) fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    /// Opens the ledger and starts the network and the service loop, inside the current
    /// tokio runtime.
    pub fn start(identity: Arc<Identity>, config: NodeConfig) -> Result<Self, NodeError> {
        let genesis = config.genesis.clone();
        let ledger = Ledger::open(&config.ledger, config.genesis)?;
        // Admitted by invite before a restart and not minted for yet: the mint follows.
        let mut admitted = HashMap::new();
        if let Some(authority) = &config.authority
            && let Some(book) = &authority.invites
        {
            let minted = ledger.signups_minted_by(authority.key.node_id());
            let now = std::time::Instant::now();
            for who in book.admitted()? {
                if !minted.contains(&who) && admitted.len() < MAX_ADMITTED {
                    admitted.insert(who, now);
                }
            }
        }
        let ledger = Arc::new(Mutex::new(ledger));
        let (admissions_tx, admissions) = mpsc::channel(MAX_ANSWERS);
        let (net, net_events, net_task) =
            Net::start(&identity, config.net).map_err(NodeError::Net)?.split();
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let jobs = Jobs::open(
            net.clone(),
            Arc::clone(&ledger),
            Arc::clone(&identity),
            genesis.clone(),
            config.jobs_dir,
            config.serve,
            config.writer,
            events.clone(),
        )?;
        let signup_tokens =
            config.authority.as_ref().map_or(0.0, |a| f64::from(a.signups_per_minute));
        let service = Service {
            net: net.clone(),
            ledger: Arc::clone(&ledger),
            info: config.info,
            me: identity,
            authority: config.authority,
            genesis,
            signup: config.signup,
            writer: config.writer,
            admitted,
            admissions_tx,
            asks: JoinSet::new(),
            signup_tokens,
            refilled: std::time::Instant::now(),
            unsent: Vec::new(),
            events,
            syncs: JoinSet::new(),
            syncing: HashSet::new(),
            again: HashSet::new(),
            waiting: std::collections::VecDeque::new(),
            answers: Arc::new(tokio::sync::Semaphore::new(MAX_ANSWERS)),
            jobs: Arc::clone(&jobs),
        };
        jobs.start();
        let task = tokio::spawn(async move {
            service.run(net_events, admissions).await;
            net_task.stopped().await;
        });
        Ok(Self { net, ledger, jobs, events: receiver, task })
    }

    /// The network handle (requests, gossip, peers, shutdown).
    pub const fn net(&self) -> &NetHandle {
        &self.net
    }

    /// The job flow: ask for jobs, decide on results, list jobs.
    pub fn jobs(&self) -> Arc<Jobs> {
        Arc::clone(&self.jobs)
    }

    /// The ledger, shared with the service.
    pub fn ledger(&self) -> Arc<Mutex<Ledger>> {
        Arc::clone(&self.ledger)
    }

    /// The next event; `None` once the node stopped.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        self.events.recv().await
    }

    /// Stops the node and waits for it.
    pub async fn stop(self) {
        self.jobs.stop();
        self.net.shutdown().await;
        let Self { task, events, .. } = self;
        drop(events);
        let _ = task.await;
    }
}

struct Service {
    net: NetHandle,
    ledger: Arc<Mutex<Ledger>>,
    info: PeerInfo,
    me: Arc<Identity>,
    authority: Option<Authority>,
    genesis: Genesis,
    signup: Option<SignupProof>,
    writer: bool,
    /// On an authority's node, with a signup cost: who showed it and waits for the mint, and
    /// since when (admissions expire after [`ADMISSION_TIME`] without a profile to mint for;
    /// the asker's node asks again when it next connects).
    admitted: HashMap<NodeId, std::time::Instant>,
    /// Admissions by invite, redeemed off the loop.
    admissions_tx: mpsc::Sender<NodeId>,
    /// Signups this node asked of authorities, until they answer.
    asks: JoinSet<()>,
    signup_tokens: f64,
    refilled: std::time::Instant,
    unsent: Vec<LogHead>,
    events: mpsc::Sender<NodeEvent>,
    syncs: JoinSet<(NodeId, Synced)>,
    syncing: HashSet<NodeId>,
    /// Peers to catch up with again when their running catch-up ends.
    again: HashSet<NodeId>,
    /// Peers waiting for a slot, oldest first.
    waiting: std::collections::VecDeque<NodeId>,
    answers: Arc<tokio::sync::Semaphore>,
    jobs: Arc<Jobs>,
}

/// What one catch-up did (also when it ended early: what it stored still counts).
#[derive(Debug, Default)]
struct Synced {
    new: u64,
    /// Checkpoints taken: subject and position.
    checkpoints: Vec<(NodeId, u64)>,
    unreadable: u64,
    heads: Vec<LogHead>,
    /// Why it ended early.
    error: Option<NodeError>,
}

impl Service {
    async fn run(
        mut self,
        mut net_events: mpsc::Receiver<NetEvent>,
        mut admissions: mpsc::Receiver<NodeId>,
    ) {
        // What arrived while the node was down, or was minted for nobody yet.
        self.settle().await;
        let mut tick = tokio::time::interval(TICK);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                event = net_events.recv() => match event {
                    Some(event) => self.net_event(event).await,
                    None => break,
                },
                Some(done) = self.syncs.join_next(), if !self.syncs.is_empty() => {
                    if let Ok((peer, result)) = done {
                        self.synced(peer, result).await;
                    }
                }
                Some(_) = self.asks.join_next(), if !self.asks.is_empty() => {}
                Some(who) = admissions.recv() => {
                    if self.admitted.len() < MAX_ADMITTED {
                        self.admitted.insert(who, std::time::Instant::now());
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.tick(ticks).await;
                }
            }
        }
        self.syncs.shutdown().await;
        self.asks.shutdown().await;
    }

    fn emit(&self, event: NodeEvent) {
        let _ = self.events.try_send(event);
    }

    async fn net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Listening { address } => self.emit(NodeEvent::Listening { address }),
            NetEvent::Reachability { public } => self.emit(NodeEvent::Reachability { public }),
            NetEvent::PeerConnected { node, found_by, relayed } => {
                self.emit(NodeEvent::PeerConnected { node, found_by, relayed });
                self.ask_signup(node);
                self.catch_up(node, None);
            }
            NetEvent::PeerDisconnected { node } => self.emit(NodeEvent::PeerDisconnected { node }),
            NetEvent::Refused { peer, reason } => self.emit(NodeEvent::Refused { peer, reason }),
            NetEvent::Gossip { from, message: Gossip::Heads { heads }, .. } => {
                self.catch_up(from, Some(heads));
            }
            NetEvent::Gossip { from, message: Gossip::Equivocation { entries }, .. } => {
                self.take_proof(from, entries).await;
            }
            NetEvent::Gossip { message: Gossip::Checkpoint { bytes }, .. } => {
                let ledger = Arc::clone(&self.ledger);
                let taken = tokio::task::spawn_blocking(move || {
                    lock(&ledger).take_checkpoints(vec![bytes.into_vec()])
                })
                .await;
                if let Ok(Ok(taken)) = taken {
                    for (subject, seq, _) in taken.new {
                        self.emit(NodeEvent::Checkpoint { subject, seq });
                    }
                }
            }
            NetEvent::Gossip { from, message: Gossip::JobAnnounce(announce), .. } => {
                self.jobs.announced(from, announce);
            }
            NetEvent::Request {
                from,
                request:
                    request @ (PeerRequest::JobOffer(_)
                    | PeerRequest::JobAssign(_)
                    | PeerRequest::JobChunk { .. }
                    | PeerRequest::JobProgress { .. }
                    | PeerRequest::JobDone { .. }
                    | PeerRequest::JobStatus { .. }
                    | PeerRequest::JobSettled { .. }
                    | PeerRequest::JobModelCall(_)
                    | PeerRequest::JobModelAnswer(_)),
                responder,
            } => self.jobs.inbound(from, request, responder),
            // (The next tick mints for the admitted.)
            NetEvent::Request { from, request: PeerRequest::Signup { proof }, responder } => {
                self.admit(from, proof, responder).await;
            }
            NetEvent::Request { request, responder, .. } => self.answer(request, responder).await,
        }
    }

    /// A proof of equivocation from gossip: both entries go through the verifier's door like
    /// any other; if they are what they claim, the author is frozen here too. (Gossip already
    /// carried the proof on; this node does not announce it again.)
    async fn take_proof(&mut self, from: NodeId, entries: Vec<serde_bytes::ByteBuf>) {
        let decoded: Vec<Entry> = entries
            .iter()
            .filter(|b| b.len() <= MAX_PROOF_ENTRY_BYTES)
            .filter_map(|b| Entry::decode(b).ok())
            .collect();
        let is_proof = matches!(&decoded[..], [a, b]
            if a.author == b.author && a.seq == b.seq && a.id() != b.id());
        if !is_proof {
            tracing::debug!(%from, "gossiped an equivocation proof that is none");
            return;
        }
        let received: Vec<Vec<u8>> =
            entries.into_iter().map(serde_bytes::ByteBuf::into_vec).collect();
        match store(&self.ledger, decoded).await {
            Ok(inserted) if inserted.new > 0 => {
                self.emit(NodeEvent::Synced { from, new: inserted.new, unreadable: 0 });
            }
            Err(e) => tracing::warn!(error = %e, "storing a proof of equivocation failed"),
            Ok(_) => {}
        }
        // The received proof is known to the network already; others found here are not.
        self.tell_proofs(&received).await;
    }

    /// Takes in the checkpoints another process stored beside this node (`ash admin
    /// checkpoint`), and gossips them.
    async fn share_checkpoints(&mut self) {
        let ledger = Arc::clone(&self.ledger);
        let taken = tokio::task::spawn_blocking(move || lock(&ledger).reload_checkpoints()).await;
        let taken = match taken {
            Ok(Ok(taken)) => taken,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading stored checkpoints failed");
                return;
            }
            Err(_) => return,
        };
        for (subject, seq, bytes) in taken.new {
            self.emit(NodeEvent::Checkpoint { subject, seq });
            // Larger ones travel by catch-up only.
            if bytes.len() <= MAX_GOSSIP_CHECKPOINT_BYTES {
                let message = Gossip::Checkpoint { bytes: serde_bytes::ByteBuf::from(bytes) };
                if let Err(e) = self.net.publish(Topic::LedgerHeads, &message).await {
                    tracing::debug!(error = %e, "checkpoint not gossiped");
                }
            }
        }
    }

    /// Gossips the proofs of equivocation this node found and has not told yet.
    /// (A proof made of entries in `known` came by gossip: it is not sent again.)
    async fn tell_proofs(&mut self, known: &[Vec<u8>]) {
        let ledger = Arc::clone(&self.ledger);
        let proofs = tokio::task::spawn_blocking(move || {
            lock(&ledger).new_equivocations(MAX_PROOFS_AT_ONCE)
        })
        .await
        .unwrap_or_default();
        for (author, [kept, other]) in proofs {
            self.emit(NodeEvent::Equivocated { author });
            if known.contains(&kept) && known.contains(&other) {
                continue;
            }
            let message = Gossip::Equivocation {
                entries: vec![serde_bytes::ByteBuf::from(kept), serde_bytes::ByteBuf::from(other)],
            };
            if let Err(e) = self.net.publish(Topic::LedgerHeads, &message).await {
                tracing::debug!(error = %e, "proof of equivocation not gossiped");
            }
        }
    }

    /// Asks `peer`, if it is a mint authority, to admit this node to its signup bonus.
    fn ask_signup(&mut self, peer: NodeId) {
        let Some(proof) = self.signup.clone() else { return };
        if !self.genesis.is_authority(&peer) || peer == self.me.node_id() {
            return;
        }
        let (net, events) = (self.net.clone(), self.events.clone());
        self.asks.spawn(async move {
            let admitted = match net.request(peer, PeerRequest::Signup { proof }).await {
                Ok(PeerResponse::Admitted) => Ok(()),
                Ok(PeerResponse::Error(e)) if e.code == "refused" => Err(e.message),
                // Busy, or the connection failed: asked again on the next connection.
                other => {
                    tracing::debug!(%peer, answer = ?other, "signup not answered");
                    return;
                }
            };
            let _ = events.try_send(NodeEvent::SignupAnswered { authority: peer, admitted });
        });
    }

    /// As a mint authority's node: whether `from` paid the network's signup cost with
    /// `proof`, answered by `responder`; admitted identities receive the bonus at the next
    /// settle. An invite is redeemed off the loop (the book is a file).
    async fn admit(&mut self, from: NodeId, proof: SignupProof, responder: Responder) {
        let answer = match (&self.authority, self.genesis.signup_cost, proof) {
            (None, ..) => PeerResponse::error("unsupported", "this is not a mint authority's node"),
            _ if self.admitted.len() >= MAX_ADMITTED && !self.admitted.contains_key(&from) => {
                PeerResponse::error("busy", "too many signups waiting; ask again later")
            }
            (Some(_), SignupCost::None, _) => PeerResponse::Admitted,
            (Some(_), SignupCost::Work { .. }, SignupProof::Work { nonce }) => {
                if self.genesis.check_work(&from, nonce) {
                    self.admitted.insert(from, std::time::Instant::now());
                    PeerResponse::Admitted
                } else {
                    PeerResponse::error("refused", "the proof of work does not check")
                }
            }
            (Some(authority), SignupCost::Invite, SignupProof::Invite { code }) => {
                if code.len() > MAX_INVITE_BYTES {
                    PeerResponse::error("invalid", "the invite code is too long")
                } else if let Some(book) = authority.invites.clone() {
                    match Arc::clone(&self.answers).try_acquire_owned() {
                        Ok(permit) => {
                            let admissions = self.admissions_tx.clone();
                            tokio::spawn(async move {
                                let answer = redeem(book, code, from, admissions).await;
                                let _ = responder.respond(answer).await;
                                drop(permit);
                            });
                            return;
                        }
                        Err(_) => PeerResponse::error("busy", "too many questions at once"),
                    }
                } else {
                    PeerResponse::error("refused", "this authority's node holds no invite codes")
                }
            }
            (Some(_), cost, _) => PeerResponse::error(
                "refused",
                format!("this network's signup cost is `{}`", cost.as_str()),
            ),
        };
        let _ = responder.respond(answer).await;
    }

    /// Answers a peer from a task of its own (ledger reads run on the blocking pool), at most
    /// [`MAX_ANSWERS`] at once.
    async fn answer(&self, request: PeerRequest, responder: Responder) {
        let Ok(permit) = Arc::clone(&self.answers).try_acquire_owned() else {
            let busy = PeerResponse::error("busy", "too many questions at once");
            let _ = responder.respond(busy).await;
            return;
        };
        let (ledger, mut info) = (Arc::clone(&self.ledger), self.info.clone());
        // Serving may start and stop while the node runs (the TUI's `/serve`).
        info.serving = self.jobs.offering();
        tokio::spawn(async move {
            let response = tokio::task::spawn_blocking(move || respond(&ledger, info, request))
                .await
                .unwrap_or_else(|_| PeerResponse::error("busy", "failed"));
            let _ = responder.respond(response).await;
            drop(permit);
        });
    }

    /// Starts catching up with `peer` (on the heads it gossiped, or on all it holds), unless
    /// one is running with it or [`MAX_SYNCS`] are.
    fn catch_up(&mut self, peer: NodeId, heads: Option<Vec<LogHead>>) {
        if self.syncing.contains(&peer) {
            // Once the running one ends, everything the peer holds is looked at again.
            if self.again.len() < MAX_WAITING_SYNCS {
                self.again.insert(peer);
            }
            return;
        }
        if self.syncing.len() >= MAX_SYNCS {
            if !self.waiting.contains(&peer) && self.waiting.len() < MAX_WAITING_SYNCS {
                self.waiting.push_back(peer);
            }
            return;
        }
        self.syncing.insert(peer);
        let (net, ledger) = (self.net.clone(), Arc::clone(&self.ledger));
        self.syncs.spawn(async move {
            let mut synced = Synced::default();
            if tokio::time::timeout(SYNC_TIME, sync(&net, &ledger, peer, heads, &mut synced))
                .await
                .is_err()
            {
                synced.error = Some(NodeError::Ledger("the catch-up took too long".into()));
            }
            (peer, synced)
        });
    }

    async fn synced(&mut self, peer: NodeId, mut synced: Synced) {
        self.syncing.remove(&peer);
        if let Some(e) = &synced.error {
            tracing::debug!(%peer, error = %e, "catch-up ended early");
        }
        synced.heads.sort_by(|a, b| a.author.cmp(&b.author).then(b.seq.cmp(&a.seq)));
        synced.heads.dedup_by(|a, b| a.author == b.author);
        // The next in line, then this peer again if it asked meanwhile.
        if self.again.remove(&peer) {
            self.catch_up(peer, None);
        }
        while self.syncing.len() < MAX_SYNCS
            && let Some(next) = self.waiting.pop_front()
        {
            self.catch_up(next, None);
        }
        self.emit(NodeEvent::Synced { from: peer, new: synced.new, unreadable: synced.unreadable });
        for (subject, seq) in std::mem::take(&mut synced.checkpoints) {
            self.emit(NodeEvent::Checkpoint { subject, seq });
        }
        // Tell the others what grew here, and what forked.
        self.gossip(synced.heads).await;
        self.tell_proofs(&[]).await;
        if synced.new > 0 {
            self.settle().await;
        }
    }

    /// Gossips `heads`; what cannot go out now (no peer on the topic yet) is tried again on
    /// the next tick.
    async fn gossip(&mut self, heads: Vec<LogHead>) {
        self.unsent.extend(heads);
        self.unsent.sort_by(|a, b| a.author.cmp(&b.author).then(b.seq.cmp(&a.seq)));
        self.unsent.dedup_by(|a, b| a.author == b.author);
        let heads = std::mem::take(&mut self.unsent);
        for chunk in heads.chunks(MAX_GOSSIP_HEADS) {
            let message = Gossip::Heads { heads: chunk.to_vec() };
            if let Err(e) = self.net.publish(Topic::LedgerHeads, &message).await {
                tracing::debug!(error = %e, "heads not gossiped yet");
                self.unsent.extend_from_slice(chunk);
            }
        }
        self.unsent.truncate(MAX_UNSENT_HEADS);
    }

    /// Every [`TICK`]: gossip that could not go out, signups held back by the rate limit; every
    /// [`RESYNC_TICKS`], a catch-up with every peer, in case gossip was lost.
    async fn tick(&mut self, ticks: u64) {
        if !self.unsent.is_empty() {
            self.gossip(Vec::new()).await;
        }
        self.share_checkpoints().await;
        if self.authority.is_some() {
            self.settle().await;
            // Admissions whose profile never came are forgotten (the asker asks again); those
            // waiting only for the mint rate stay.
            let ledger = lock(&self.ledger);
            self.admitted.retain(|who, since| {
                since.elapsed() < ADMISSION_TIME || ledger.verifier().profile(*who).is_some()
            });
        }
        if ticks.is_multiple_of(RESYNC_TICKS)
            && let Ok(peers) = self.net.peers().await
        {
            // Until the signup bonus has come, the authorities connected are asked again (an
            // answer may have been lost, or the admission expired).
            let waiting = self.signup.is_some() && {
                let ledger = lock(&self.ledger);
                ledger.verifier().account(self.me.node_id()).balance.received.get() == 0
            };
            for peer in peers {
                self.catch_up(peer.node, None);
                if waiting {
                    self.ask_signup(peer.node);
                }
            }
        }
    }

    /// Takes mints made out to this identity into its log and, on an authority's node, mints
    /// the signup bonuses due (within the rate); gossips the heads that grew.
    async fn settle(&mut self) {
        if !self.writer {
            return;
        }
        let now = std::time::Instant::now();
        let mut max_signups = 0;
        if let Some(authority) = &self.authority {
            let rate = f64::from(authority.signups_per_minute);
            self.signup_tokens = (self.signup_tokens
                + now.duration_since(self.refilled).as_secs_f64() * rate / 60.0)
                .min(rate);
            self.refilled = now;
            max_signups = self.signup_tokens.floor() as usize;
        }
        let (ledger, me, authority) =
            (Arc::clone(&self.ledger), Arc::clone(&self.me), self.authority.clone());
        // With a signup cost, only the admitted; without, everyone with a profile.
        // With a signup cost, only the admitted, first come first minted; without, everyone
        // with a profile.
        let admitted = (self.genesis.signup_cost != SignupCost::None).then(|| {
            let mut order: Vec<(std::time::Instant, NodeId)> =
                self.admitted.iter().map(|(who, since)| (*since, *who)).collect();
            order.sort_unstable();
            order.into_iter().map(|(_, who)| who).collect::<Vec<NodeId>>()
        });
        let done = tokio::task::spawn_blocking(move || {
            let mut ledger = lock(&ledger);
            let received = ledger.receive_mints(&me)?;
            let minted = match &authority {
                Some(a) => {
                    ledger.mint_signups(&a.key, a.signup_bonus, max_signups, admitted.as_deref())?
                }
                None => Vec::new(),
            };
            let mut heads = Vec::new();
            for who in [Some(me.node_id()), authority.as_ref().map(|a| a.key.node_id())]
                .into_iter()
                .flatten()
            {
                if let Some(head) = ledger.log_head(who) {
                    heads.push(head);
                }
            }
            let balance = ledger.verifier().account(me.node_id()).balance.spendable.get();
            Ok::<_, NodeError>((received, minted, heads, balance))
        })
        .await;
        let (received, minted, heads, balance) = match done {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "settling the ledger failed");
                return;
            }
            Err(_) => return,
        };
        self.signup_tokens -= minted.len() as f64;
        for who in &minted {
            self.admitted.remove(who);
        }
        if !received.is_empty() {
            self.emit(NodeEvent::Received { amounts: received.clone(), balance });
        }
        if let (false, Some(authority)) = (minted.is_empty(), &self.authority) {
            self.emit(NodeEvent::Minted {
                recipients: minted.clone(),
                amount: authority.signup_bonus,
            });
        }
        if !received.is_empty() || !minted.is_empty() {
            self.gossip(heads).await;
        }
    }
}

/// Redeems an invite `code` for `from` (on the blocking pool), tells the service of the
/// admission, and says what to answer.
async fn redeem(
    book: InviteBook,
    code: String,
    from: NodeId,
    admissions: mpsc::Sender<NodeId>,
) -> PeerResponse {
    match tokio::task::spawn_blocking(move || book.redeem(&code, from, now_ms())).await {
        Ok(Ok(())) => {
            let _ = admissions.send(from).await;
            PeerResponse::Admitted
        }
        Ok(Err(NodeError::Invite(e @ (InviteError::Unknown | InviteError::Used)))) => {
            PeerResponse::error("refused", e.to_string())
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the invite book failed");
            PeerResponse::error("busy", "the invite book could not be read")
        }
        Err(_) => PeerResponse::error("busy", "failed"),
    }
}

/// The answer to one request.
fn respond(ledger: &Mutex<Ledger>, info: PeerInfo, request: PeerRequest) -> PeerResponse {
    let invalid = |message: String| PeerResponse::error("invalid", message);
    match request {
        PeerRequest::Info => PeerResponse::Info(info),
        // Routed to the job flow before they get here.
        PeerRequest::JobOffer(_)
        | PeerRequest::JobAssign(_)
        | PeerRequest::JobChunk { .. }
        | PeerRequest::JobProgress { .. }
        | PeerRequest::JobDone { .. }
        | PeerRequest::JobStatus { .. }
        | PeerRequest::JobSettled { .. }
        | PeerRequest::JobModelCall(_)
        | PeerRequest::JobModelAnswer(_) => PeerResponse::error("unsupported", "not answered here"),
        PeerRequest::LedgerCheckpoints { subjects } => {
            if subjects.len() > MAX_LOGS {
                return invalid(format!("at most {MAX_LOGS} logs per request"));
            }
            let mut ids = Vec::with_capacity(subjects.len());
            for subject in subjects {
                match subject.parse::<NodeId>() {
                    Ok(id) => ids.push(id),
                    Err(e) => return invalid(format!("subject: {e}")),
                }
            }
            let mut room = usize::try_from(MAX_RESPONSE_BYTES / 2).unwrap_or(usize::MAX);
            let checkpoints = lock(ledger)
                .checkpoints_for(&ids)
                .into_iter()
                .take_while(|c| {
                    let fits = c.len() + 8 <= room;
                    room = room.saturating_sub(c.len() + 8);
                    fits
                })
                .map(serde_bytes::ByteBuf::from)
                .collect();
            PeerResponse::LedgerCheckpoints { checkpoints }
        }
        // The service admits signups itself (they change its state); none reaches here.
        PeerRequest::Signup { .. } => {
            PeerResponse::error("unsupported", "signups are answered by the node's service")
        }
        PeerRequest::LedgerHeads { after, limit } => {
            match after.map(|a| a.parse::<NodeId>()).transpose() {
                Ok(after) => {
                    let (heads, more) = lock(ledger).heads(after, limit.min(MAX_HEADS) as usize);
                    PeerResponse::LedgerHeads { heads, more }
                }
                Err(e) => invalid(format!("after: {e}")),
            }
        }
        PeerRequest::LedgerEntries { logs, limit } => {
            if logs.len() > MAX_LOGS {
                return invalid(format!("at most {MAX_LOGS} logs per request"));
            }
            let mut starts = Vec::with_capacity(logs.len());
            for log in logs {
                match log.author.parse::<NodeId>() {
                    Ok(author) => starts.push((author, log.from_seq)),
                    Err(e) => return invalid(format!("author: {e}")),
                }
            }
            // Room for the envelope around the entries.
            let mut room = usize::try_from(MAX_RESPONSE_BYTES / 2).unwrap_or(usize::MAX);
            let mut left = limit.min(MAX_ENTRIES) as usize;
            let ledger = lock(ledger);
            let mut entries = Vec::new();
            for (author, from_seq) in starts {
                if left == 0 || room == 0 {
                    break;
                }
                for bytes in ledger.entries(author, from_seq, left, room) {
                    left = left.saturating_sub(1);
                    room = room.saturating_sub(bytes.len() + 8);
                    entries.push(serde_bytes::ByteBuf::from(bytes));
                }
            }
            PeerResponse::LedgerEntries { entries }
        }
    }
}

/// Fetches from `peer` every log it is ahead on (of `heads`, or of all it holds), in batches,
/// each verified before it is stored. Resumable: it starts from the local heads each time.
async fn sync(
    net: &NetHandle,
    ledger: &Arc<Mutex<Ledger>>,
    peer: NodeId,
    heads: Option<Vec<LogHead>>,
    synced: &mut Synced,
) {
    let heads = match heads {
        Some(heads) => heads,
        None => match all_heads(net, peer).await {
            Ok(heads) => heads,
            Err(e) => {
                synced.error = Some(e);
                return;
            }
        },
    };
    // The logs the peer is ahead on, and how far; and where it holds another entry at a
    // position held here (a fork, to fetch: its author equivocated).
    let mut behind: Vec<(NodeId, u64)> = Vec::new();
    let mut forks: Vec<LogStart> = Vec::new();
    // Logs the peer holds a newer checkpoint of.
    let mut checkpoints: Vec<NodeId> = Vec::new();
    {
        let ledger = lock(ledger);
        for head in heads.into_iter().take(MAX_SYNC_HEADS) {
            let Ok(author) = head.author.parse::<NodeId>() else {
                synced.unreadable += 1;
                continue;
            };
            if head.checkpoint.is_some_and(|at| ledger.checkpoint_seq(author) < Some(at))
                && checkpoints.len() < MAX_SYNC_CHECKPOINTS
            {
                checkpoints.push(author);
            }
            // A proof the peer holds and this node lacks: the log from the fork on, with the
            // other entries at each position.
            if let Some(at) = head.fork
                && !ledger.is_frozen(author)
                && forks.len() < MAX_LOGS
            {
                forks.push(LogStart { author: head.author.clone(), from_seq: at });
            }
            if ledger.head_seq(author).is_none_or(|seq| seq < head.seq) {
                behind.push((author, head.seq));
            } else if head.id.as_deref().is_some_and(|id| ledger.forks_at(author, head.seq, id))
                && forks.len() < MAX_LOGS
            {
                forks.push(LogStart { author: head.author, from_seq: head.seq });
            }
        }
    }
    // An answer asked for while the previous batch was being verified and stored, and the
    // batch it answers.
    let mut ready: Option<(Batch, Result<PeerResponse, ash_net::NetError>)> = None;
    while !behind.is_empty() && synced.new < MAX_SYNC_ENTRIES {
        let (batch, answer) = match ready.take() {
            Some(ready) => ready,
            None => {
                let batch = plan(ledger, behind.iter());
                let answer = net.request(peer, entries_request(&batch)).await;
                (batch, answer)
            }
        };
        let entries = match answer {
            Ok(PeerResponse::LedgerEntries { entries }) => entries,
            // Asked too fast: the peer's allowance refills.
            Ok(PeerResponse::Error(e)) if e.code == "rate_limited" || e.code == "busy" => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
            Ok(_) => return,
            Err(e) => {
                synced.error = Some(NodeError::Net(e));
                return;
            }
        };
        let wanted: HashMap<NodeId, u64> = batch.iter().map(|(a, from, _)| (*a, *from)).collect();
        let (decoded, got) = decode_answer(entries, &wanted, &mut synced.unreadable);
        if decoded.is_empty() {
            return;
        }
        // The next logs (none of this batch's, whose heads are about to move) are asked for
        // while this batch is verified and stored.
        let next = {
            let asked: HashSet<NodeId> = batch.iter().map(|(a, _, _)| *a).collect();
            plan(ledger, behind.iter().filter(|(a, _)| !asked.contains(a)))
        };
        let room = synced.new + (decoded.len() as u64) < MAX_SYNC_ENTRIES;
        let insert = store(ledger, decoded);
        let prefetch = async {
            if next.is_empty() || !room {
                return None;
            }
            Some(net.request(peer, entries_request(&next)).await)
        };
        let (inserted, fetched) = tokio::join!(insert, prefetch);
        ready = fetched.map(|answer| (next, answer));
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(e) => {
                synced.error = Some(e);
                return;
            }
        };
        synced.new += inserted.new;
        synced.heads.extend(inserted.heads);
        // A log of the batch that got entries stays while it moved and is not there yet (one
        // that did not move was refused, or waits for what the peer did not send). One that got
        // none stays if it came after the last that got some (the answer ran out of room), and
        // goes if it came before (the peer had nothing).
        let last_served = batch.iter().rposition(|(a, _, _)| got.contains_key(a));
        let ledger_now = lock(ledger);
        let place: HashMap<NodeId, usize> =
            batch.iter().enumerate().map(|(i, (a, _, _))| (*a, i)).collect();
        behind.retain(|(author, target)| {
            let Some(&i) = place.get(author) else { return true };
            if !got.contains_key(author) {
                return last_served.is_some_and(|last| i > last);
            }
            let from = wanted.get(author).copied().unwrap_or(0);
            let now = ledger_now.head_seq(*author).map_or(0, |s| s + 1);
            // Entries that do not follow the ones held here: the log forked further back.
            if now == from && from > 0 && forks.len() < MAX_LOGS {
                let from_seq = from.saturating_sub(FORK_LOOKBACK);
                forks.push(LogStart { author: author.to_string(), from_seq });
            }
            now > from && now <= *target
        });
    }
    if !forks.is_empty() {
        fetch_forks(net, ledger, peer, forks, synced).await;
    }
    for chunk in checkpoints.chunks(MAX_LOGS) {
        let subjects = chunk.iter().map(ToString::to_string).collect();
        let Ok(PeerResponse::LedgerCheckpoints { checkpoints }) =
            net.request(peer, PeerRequest::LedgerCheckpoints { subjects }).await
        else {
            return;
        };
        let received: Vec<Vec<u8>> =
            checkpoints.into_iter().take(chunk.len()).map(serde_bytes::ByteBuf::into_vec).collect();
        let shared = Arc::clone(ledger);
        match tokio::task::spawn_blocking(move || lock(&shared).take_checkpoints(received)).await {
            Ok(Ok(taken)) => {
                synced.unreadable += taken.refused;
                synced.checkpoints.extend(taken.new.into_iter().map(|(s, seq, _)| (s, seq)));
            }
            Ok(Err(e)) => synced.error = Some(e),
            Err(e) => synced.error = Some(NodeError::Ledger(e.to_string())),
        }
    }
}

/// Logs asked for in one request: each author, the first position asked, and the position the
/// peer is at.
type Batch = Vec<(NodeId, u64, u64)>;

/// The next logs to ask for (at most [`MAX_LOGS`]): each from after its local head, with the
/// position the peer is at.
fn plan<'a>(ledger: &Mutex<Ledger>, logs: impl Iterator<Item = &'a (NodeId, u64)>) -> Batch {
    let ledger = lock(ledger);
    logs.take(MAX_LOGS)
        .map(|(author, target)| (*author, ledger.head_seq(*author).map_or(0, |s| s + 1), *target))
        .collect()
}

/// The request for `batch`'s entries.
fn entries_request(batch: &[(NodeId, u64, u64)]) -> PeerRequest {
    let logs = batch
        .iter()
        .map(|(author, from, _)| LogStart { author: author.to_string(), from_seq: *from })
        .collect();
    PeerRequest::LedgerEntries { logs, limit: MAX_ENTRIES }
}

/// Fetches the peer's side of forks: its entries from each position given. The verifier keeps
/// the other entry at a position held here as a proof of equivocation when both are signed by
/// their author.
async fn fetch_forks(
    net: &NetHandle,
    ledger: &Arc<Mutex<Ledger>>,
    peer: NodeId,
    forks: Vec<LogStart>,
    synced: &mut Synced,
) {
    let wanted: HashMap<NodeId, u64> =
        forks.iter().filter_map(|f| Some((f.author.parse().ok()?, f.from_seq))).collect();
    let request = PeerRequest::LedgerEntries { logs: forks, limit: MAX_ENTRIES };
    let Ok(PeerResponse::LedgerEntries { entries }) = net.request(peer, request).await else {
        return;
    };
    let (decoded, _) = decode_answer(entries, &wanted, &mut synced.unreadable);
    match store(ledger, decoded).await {
        Ok(inserted) => synced.new += inserted.new,
        Err(e) => synced.error = Some(e),
    }
}

/// The entries of an answer that belong to the logs asked for (each at or after the first
/// position asked), and how many each log got; the rest count as `unreadable`.
fn decode_answer(
    entries: Vec<serde_bytes::ByteBuf>,
    wanted: &HashMap<NodeId, u64>,
    unreadable: &mut u64,
) -> (Vec<Entry>, HashMap<NodeId, usize>) {
    let mut decoded = Vec::with_capacity(entries.len());
    let mut got: HashMap<NodeId, usize> = HashMap::new();
    for bytes in entries.into_iter().take(MAX_ENTRIES as usize) {
        match Entry::decode(&bytes) {
            Ok(entry) if wanted.get(&entry.author).is_some_and(|from| entry.seq >= *from) => {
                *got.entry(entry.author).or_default() += 1;
                decoded.push(entry);
            }
            _ => *unreadable += 1,
        }
    }
    (decoded, got)
}

/// Offers `entries` to the ledger's verifier and stores what it accepts, on the blocking pool.
async fn store(ledger: &Arc<Mutex<Ledger>>, entries: Vec<Entry>) -> Result<Inserted, NodeError> {
    let ledger = Arc::clone(ledger);
    tokio::task::spawn_blocking(move || lock(&ledger).insert(entries))
        .await
        .unwrap_or_else(|e| Err(NodeError::Ledger(e.to_string())))
}

/// Every head `peer` holds, page by page (at most [`MAX_HEAD_PAGES`] and
/// [`MAX_SYNC_HEADS`]). A page longer than asked, or out of order, ends it.
async fn all_heads(net: &NetHandle, peer: NodeId) -> Result<Vec<LogHead>, NodeError> {
    let mut heads: Vec<LogHead> = Vec::new();
    let mut after: Option<NodeId> = None;
    for _ in 0..MAX_HEAD_PAGES {
        let request =
            PeerRequest::LedgerHeads { after: after.map(|a| a.to_string()), limit: MAX_HEADS };
        let PeerResponse::LedgerHeads { heads: page, more } =
            net.request(peer, request).await.map_err(NodeError::Net)?
        else {
            break;
        };
        if page.len() > MAX_HEADS as usize {
            break;
        }
        for head in page {
            let Ok(author) = head.author.parse::<NodeId>() else { return Ok(heads) };
            if after.is_some_and(|a| author <= a) || heads.len() >= MAX_SYNC_HEADS {
                return Ok(heads);
            }
            after = Some(author);
            heads.push(head);
        }
        if !more {
            break;
        }
    }
    Ok(heads)
}
