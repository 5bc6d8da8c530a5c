//! The node service: a [`Net`] and the ledger, and the loop between them. It answers peers'
//! questions about the ledger, catches up with every peer that connects or gossips new heads,
//! and gossips the heads of logs that grew here.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ash_identity::{Identity, NodeId};
use ash_ledger::{Entry, Genesis};
use ash_net::{
    Discovery, MAX_RESPONSE_BYTES, Net, NetConfig, NetEvent, NetHandle, Responder, Topic,
};
use ash_protocol::{
    Gossip, LogHead, MAX_ENTRIES, MAX_GOSSIP_HEADS, MAX_HEADS, PeerError, PeerInfo, PeerRequest,
    PeerResponse,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::NodeError;
use crate::ledger::Ledger;

/// Catch-ups running at once; a peer that would start another waits for its next gossip.
pub const MAX_SYNCS: usize = 4;
/// Pages of heads asked of one peer in one catch-up (of [`MAX_HEADS`] each).
pub const MAX_HEAD_PAGES: usize = 64;
/// Events waiting for the caller; beyond, they are dropped.
const EVENT_QUEUE: usize = 256;

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
    events: mpsc::Receiver<NodeEvent>,
    task: tokio::task::JoinHandle<()>,
}

/// Locks the ledger; a panic while it was held poisons nothing the verifier has not already
/// stored, so the lock is taken back.
pub(crate) fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    /// Opens the ledger and starts the network and the service loop, inside the current
    /// tokio runtime.
    pub fn start(identity: &Identity, config: NodeConfig) -> Result<Self, NodeError> {
        let ledger = Arc::new(Mutex::new(Ledger::open(&config.ledger, config.genesis)?));
        let (net, net_events, net_task) =
            Net::start(identity, config.net).map_err(NodeError::Net)?.split();
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let service = Service {
            net: net.clone(),
            ledger: Arc::clone(&ledger),
            info: config.info,
            events,
            syncs: JoinSet::new(),
            syncing: HashSet::new(),
        };
        let task = tokio::spawn(async move {
            service.run(net_events).await;
            net_task.stopped().await;
        });
        Ok(Self { net, ledger, events: receiver, task })
    }

    /// The network handle (requests, gossip, peers, shutdown).
    pub const fn net(&self) -> &NetHandle {
        &self.net
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
    events: mpsc::Sender<NodeEvent>,
    syncs: JoinSet<(NodeId, Result<Synced, NodeError>)>,
    syncing: HashSet<NodeId>,
}

/// What one catch-up did.
#[derive(Debug, Default)]
struct Synced {
    new: u64,
    unreadable: u64,
    heads: Vec<LogHead>,
}

impl Service {
    async fn run(mut self, mut net_events: mpsc::Receiver<NetEvent>) {
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
            }
        }
        self.syncs.shutdown().await;
    }

    fn emit(&self, event: NodeEvent) {
        let _ = self.events.try_send(event);
    }

    async fn net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Listening { address } => self.emit(NodeEvent::Listening { address }),
            NetEvent::PeerConnected { node, found_by } => {
                self.emit(NodeEvent::PeerConnected { node, found_by });
                self.catch_up(node, None);
            }
            NetEvent::PeerDisconnected { node } => self.emit(NodeEvent::PeerDisconnected { node }),
            NetEvent::Refused { peer, reason } => self.emit(NodeEvent::Refused { peer, reason }),
            NetEvent::Gossip { from, message: Gossip::Heads { heads }, .. } => {
                self.catch_up(from, Some(heads));
            }
            NetEvent::Request { request, responder, .. } => self.answer(request, responder).await,
        }
    }

    async fn answer(&self, request: PeerRequest, responder: Responder) {
        let invalid =
            |message: String| PeerResponse::Error(PeerError { code: "invalid".into(), message });
        let response = match request {
            PeerRequest::Info => PeerResponse::Info(self.info.clone()),
            PeerRequest::LedgerHeads { after, limit } => {
                match after.map(|a| a.parse::<NodeId>()).transpose() {
                    Ok(after) => {
                        let limit = limit.min(MAX_HEADS) as usize;
                        let (heads, more) = lock(&self.ledger).heads(after, limit);
                        PeerResponse::LedgerHeads { heads, more }
                    }
                    Err(e) => invalid(format!("after: {e}")),
                }
            }
            PeerRequest::LedgerEntries { author, from_seq, limit } => {
                match author.parse::<NodeId>() {
                    Ok(author) => {
                        let limit = limit.min(MAX_ENTRIES) as usize;
                        // Room for the envelope around the entries.
                        let max = usize::try_from(MAX_RESPONSE_BYTES / 2).unwrap_or(usize::MAX);
                        let entries = lock(&self.ledger).entries(author, from_seq, limit, max);
                        PeerResponse::LedgerEntries {
                            entries: entries.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                        }
                    }
                    Err(e) => invalid(format!("author: {e}")),
                }
            }
        };
        let _ = responder.respond(response).await;
    }

    /// Starts catching up with `peer` (on the heads it gossiped, or on all it holds), unless
    /// one is running with it or [`MAX_SYNCS`] are.
    fn catch_up(&mut self, peer: NodeId, heads: Option<Vec<LogHead>>) {
        if self.syncing.contains(&peer) || self.syncing.len() >= MAX_SYNCS {
            return;
        }
        self.syncing.insert(peer);
        let (net, ledger) = (self.net.clone(), Arc::clone(&self.ledger));
        self.syncs.spawn(async move { (peer, sync(&net, &ledger, peer, heads).await) });
    }

    async fn synced(&mut self, peer: NodeId, result: Result<Synced, NodeError>) {
        self.syncing.remove(&peer);
        let synced = match result {
            Ok(synced) => synced,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "catch-up failed");
                return;
            }
        };
        self.emit(NodeEvent::Synced { from: peer, new: synced.new, unreadable: synced.unreadable });
        // Tell the others what grew here.
        for chunk in synced.heads.chunks(MAX_GOSSIP_HEADS) {
            let message = Gossip::Heads { heads: chunk.to_vec() };
            if let Err(e) = self.net.publish(Topic::LedgerHeads, &message).await {
                tracing::debug!(error = %e, "heads not gossiped");
            }
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
) -> Result<Synced, NodeError> {
    let heads = match heads {
        Some(heads) => heads,
        None => all_heads(net, peer).await?,
    };
    let mut synced = Synced::default();
    for head in heads {
        let Ok(author) = head.author.parse::<NodeId>() else {
            synced.unreadable += 1;
            continue;
        };
        loop {
            let from = lock(ledger).head_seq(author).map_or(0, |seq| seq + 1);
            if from > head.seq {
                break;
            }
            let request = PeerRequest::LedgerEntries {
                author: author.to_string(),
                from_seq: from,
                limit: MAX_ENTRIES,
            };
            let PeerResponse::LedgerEntries { entries } =
                net.request(peer, request).await.map_err(NodeError::Net)?
            else {
                break;
            };
            let mut decoded = Vec::with_capacity(entries.len());
            for bytes in entries {
                match Entry::decode(&bytes) {
                    Ok(entry) if entry.author == author && entry.seq >= from => decoded.push(entry),
                    _ => synced.unreadable += 1,
                }
            }
            if decoded.is_empty() {
                break;
            }
            let shared = Arc::clone(ledger);
            let inserted = tokio::task::spawn_blocking(move || lock(&shared).insert(decoded))
                .await
                .map_err(|e| NodeError::Ledger(e.to_string()))??;
            synced.new += inserted.new;
            synced.heads.extend(inserted.heads);
            // Nothing new (refused, or waiting for what the peer did not send): stop here.
            if inserted.new == 0 {
                break;
            }
        }
    }
    synced.heads.sort_by(|a, b| a.author.cmp(&b.author).then(b.seq.cmp(&a.seq)));
    synced.heads.dedup_by(|a, b| a.author == b.author);
    Ok(synced)
}

/// Every head `peer` holds, page by page (at most [`MAX_HEAD_PAGES`]).
async fn all_heads(net: &NetHandle, peer: NodeId) -> Result<Vec<LogHead>, NodeError> {
    let mut heads = Vec::new();
    let mut after = None;
    for _ in 0..MAX_HEAD_PAGES {
        let request = PeerRequest::LedgerHeads { after: after.clone(), limit: MAX_HEADS };
        let PeerResponse::LedgerHeads { heads: page, more } =
            net.request(peer, request).await.map_err(NodeError::Net)?
        else {
            break;
        };
        after = page.last().map(|h| h.author.clone());
        heads.extend(page);
        if !more || after.is_none() {
            break;
        }
    }
    Ok(heads)
}
