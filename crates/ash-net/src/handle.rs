//! What callers hold: the handle that sends the event loop commands, the events it reports,
//! and the [`Net`] that owns its task.

use std::time::Duration;

use ash_identity::{Identity, NodeId};
use ash_protocol::{Gossip, PeerRequest, PeerResponse};
use tokio::sync::{mpsc, oneshot};

use crate::config::{COMMAND_QUEUE, EVENT_QUEUE, NetConfig};
use crate::event_loop::{Command, EventLoop};

/// Gossip topics: one each for what the whole network hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Job announcements (no prompt, no code).
    Announcements,
    /// Ledger heads: per identity, the position and id of its newest entry.
    LedgerHeads,
}

impl Topic {
    /// Every topic, as a node subscribes to them.
    pub const ALL: [Self; 2] = [Self::Announcements, Self::LedgerHeads];

    /// Its name inside the topic id.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Announcements => "announce",
            Self::LedgerHeads => "heads",
        }
    }
}

/// How a peer was first found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// mDNS on the local network.
    Mdns,
    /// A bootstrap address, or an address dialled on request.
    Dialled,
    /// It connected to us.
    Inbound,
    /// The DHT, or a peer's announcement of its addresses.
    Routing,
}

impl Discovery {
    /// For people and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mdns => "mdns",
            Self::Dialled => "dialled",
            Self::Inbound => "inbound",
            Self::Routing => "routing",
        }
    }
}

/// A connected peer of this network, as the node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Its identity.
    pub node: NodeId,
    /// Addresses it listens on, as it said (identify) or as it was found.
    pub addresses: Vec<String>,
    /// Its `ash/<version>`.
    pub agent_version: Option<String>,
    /// The last ping's round trip.
    pub rtt: Option<Duration>,
    /// How it was found.
    pub found_by: Discovery,
    /// Whether the connection goes through a relay.
    pub relayed: bool,
}

/// What the network reports.
#[derive(Debug)]
pub enum NetEvent {
    /// The node listens on this address (ending in `/p2p/<its id>`).
    Listening {
        /// The multiaddr.
        address: String,
    },
    /// A peer of this network connected (identify confirmed the network).
    PeerConnected {
        /// Who.
        node: NodeId,
        /// How it was found.
        found_by: Discovery,
        /// Whether the connection goes through a relay.
        relayed: bool,
    },
    /// What a peer found of this node's reachability (AutoNAT): `Some(address)` when a peer
    /// reached it there, `None` when none could (then relays carry its connections).
    Reachability {
        /// The address peers reach.
        public: Option<String>,
    },
    /// A peer's last connection closed.
    PeerDisconnected {
        /// Who.
        node: NodeId,
    },
    /// A signed gossip message from a peer of this network.
    Gossip {
        /// Its author (the signature was checked).
        from: NodeId,
        /// The topic.
        topic: Topic,
        /// What it said.
        message: Gossip,
    },
    /// A peer asks this node something; answer with the responder (an unanswered request
    /// times out for the peer).
    Request {
        /// Who asks.
        from: NodeId,
        /// What.
        request: PeerRequest,
        /// Where the answer goes.
        responder: Responder,
    },
    /// A peer was refused or disconnected for breaking the protocol, or for being of another
    /// network.
    Refused {
        /// Its peer id, as libp2p prints it.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// An address could not be read or used.
    #[error("{address}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// The node could not be built (key, transport or protocol setup).
    #[error("cannot start the network node: {0}")]
    Start(String),
    /// The node has stopped.
    #[error("the network node has stopped")]
    Stopped,
    /// A request to a peer failed.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
    },
    /// A gossip message could not be published.
    #[error("cannot publish: {0}")]
    Publish(String),
}

/// The way to answer one inbound request.
#[derive(Debug)]
pub struct Responder {
    pub(crate) key: u64,
    pub(crate) commands: mpsc::Sender<Command>,
}

impl Responder {
    /// Sends the answer.
    pub async fn respond(self, response: PeerResponse) -> Result<(), NetError> {
        self.commands
            .send(Command::Respond { key: self.key, response })
            .await
            .map_err(|_| NetError::Stopped)
    }
}

/// A cloneable way to command the node. The node stops when every handle is gone.
#[derive(Debug, Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    local: NodeId,
}

impl NetHandle {
    /// This node's identity.
    pub const fn local_node(&self) -> NodeId {
        self.local
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| NetError::Stopped)?;
        answer.await.map_err(|_| NetError::Stopped)
    }

    /// The addresses the node listens on, each ending in `/p2p/<its id>`.
    pub async fn listen_addresses(&self) -> Result<Vec<String>, NetError> {
        self.ask(|reply| Command::ListenAddresses { reply }).await
    }

    /// The connected peers of this network.
    pub async fn peers(&self) -> Result<Vec<PeerSnapshot>, NetError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Dials a multiaddr (ending in `/p2p/<peer id>`); returns once the dial has started.
    pub async fn dial(&self, address: &str) -> Result<(), NetError> {
        let address = address.to_owned();
        self.ask(|reply| Command::Dial { address, reply }).await?
    }

    /// Asks one peer something and waits for its answer (at most 30 s).
    pub async fn request(
        &self,
        node: NodeId,
        request: PeerRequest,
    ) -> Result<PeerResponse, NetError> {
        self.ask(|reply| Command::Request { node, request, reply }).await?
    }

    /// Publishes `message`, signed, on `topic`.
    pub async fn publish(&self, topic: Topic, message: &Gossip) -> Result<(), NetError> {
        let data = cbor4ii::serde::to_vec(Vec::new(), message)
            .map_err(|e| NetError::Publish(e.to_string()))?;
        self.ask(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Stops the node: connections close and the event loop ends.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// A running node: its handle, its events and the task of its event loop.
#[derive(Debug)]
pub struct Net {
    handle: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    task: NetTask,
}

/// The task of a node's event loop.
#[derive(Debug)]
pub struct NetTask(tokio::task::JoinHandle<()>);

impl NetTask {
    /// Waits for the event loop to end (after [`NetHandle::shutdown`], or once every handle
    /// is dropped).
    pub async fn stopped(self) {
        let _ = self.0.await;
    }
}

impl Net {
    /// Starts a node for `identity` inside the current tokio runtime: listens, dials the
    /// bootstrap addresses, and runs until [`NetHandle::shutdown`] or until every handle is
    /// dropped.
    pub fn start(identity: &Identity, config: NetConfig) -> Result<Self, NetError> {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (events, events_receiver) = mpsc::channel(EVENT_QUEUE);
        let event_loop = EventLoop::new(identity, config, receiver, commands.downgrade(), events)?;
        let task = NetTask(tokio::spawn(event_loop.run()));
        Ok(Self {
            handle: NetHandle { commands, local: identity.node_id() },
            events: events_receiver,
            task,
        })
    }

    /// The handle.
    pub const fn handle(&self) -> &NetHandle {
        &self.handle
    }

    /// The handle, the events (bounded: read them, or events are dropped and requests
    /// refused) and the task.
    pub fn split(self) -> (NetHandle, mpsc::Receiver<NetEvent>, NetTask) {
        (self.handle, self.events, self.task)
    }
}
