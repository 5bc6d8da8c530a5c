//! What a node is told: its network, where it listens, whom it asks first, and the bounds.

use std::fmt;
use std::time::Duration;

/// Largest request one peer may send (CBOR bytes; requests are small questions).
pub const MAX_REQUEST_BYTES: u64 = 64 << 10;
/// Largest answer one peer may send (CBOR bytes).
pub const MAX_RESPONSE_BYTES: u64 = 8 << 20;
/// Largest gossip message.
pub const MAX_GOSSIP_BYTES: usize = 64 << 10;
/// Connections at once, in and out.
pub const MAX_CONNECTIONS: u32 = 256;
/// Connections at once to or from one peer.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Inbound connections from one IP address at once, by default.
pub const MAX_INBOUND_PER_IP: u32 = 16;
/// Requests from one peer waiting for this node's answer; beyond, it is told `busy`.
pub const MAX_PENDING_INBOUND_PER_PEER: usize = 16;
/// Requests one peer may send per second, on average (bursts of twice as many).
pub const REQUESTS_PER_PEER_PER_SECOND: u32 = 20;
/// Commands waiting for the event loop.
pub(crate) const COMMAND_QUEUE: usize = 64;
/// Events waiting for the caller; beyond, events are dropped and inbound requests refused.
pub(crate) const EVENT_QUEUE: usize = 1024;
/// How long a request waits for its answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Peers whose protocol violations disconnect them this many times are blocked for the
/// node's life.
pub(crate) const STRIKES_BEFORE_BLOCK: u32 = 3;
/// Peers remembered for their strikes, request rate and discovery; beyond, the oldest
/// memories are dropped.
pub(crate) const REMEMBERED_PEERS: usize = 4096;
/// Listen addresses kept per peer.
pub(crate) const MAX_ADDRESSES_PER_PEER: usize = 16;
/// Below this many peers, a node asks the DHT for more every 5 s (else every minute).
pub(crate) const FEW_PEERS: usize = 8;
/// Relays a node keeps a reservation on at once, so that peers who cannot reach it directly
/// still can.
pub(crate) const MAX_RELAYS: usize = 2;
/// As a relay: reservations held for others at once, and per peer.
pub(crate) const RELAY_MAX_RESERVATIONS: usize = 128;
pub(crate) const RELAY_MAX_RESERVATIONS_PER_PEER: usize = 2;
/// As a relay: circuits carried at once, and per peer.
pub(crate) const RELAY_MAX_CIRCUITS: usize = 64;
pub(crate) const RELAY_MAX_CIRCUITS_PER_PEER: usize = 4;
/// As a relay: how long one circuit lives and how many bytes it carries (then the peers
/// reconnect, directly if hole punching worked meanwhile).
pub(crate) const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(30 * 60);
pub(crate) const RELAY_CIRCUIT_BYTES: u64 = 64 << 20;
/// How long after start the first reachability probe (AutoNAT) goes out.
pub(crate) const NAT_PROBE_DELAY: Duration = Duration::from_secs(3);

/// The network a node belongs to: the id of its genesis (32 bytes). Protocol ids and gossip
/// topics carry its first 8 bytes in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkId(pub [u8; 32]);

impl NetworkId {
    /// The 16 hex digits protocol ids carry.
    pub fn tag(&self) -> String {
        ash_identity::encode_hex(&self.0[..8])
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({})", self.tag())
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The network.
    pub network: NetworkId,
    /// Multiaddrs to listen on (`/ip4/0.0.0.0/tcp/0`, `/ip4/0.0.0.0/udp/0/quic-v1`).
    pub listen: Vec<String>,
    /// Multiaddrs of peers to ask first, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Find peers on the local network by mDNS.
    pub mdns: bool,
    /// `ash/<version>`, sent in identify.
    pub agent_version: String,
    /// How often gossip heartbeats (shorter in tests).
    pub gossip_heartbeat: Duration,
    /// How often peers are pinged.
    pub ping_interval: Duration,
    /// Carry connections between peers that cannot reach each other (a relay server), and
    /// answer DHT queries from the start: for a well-connected node whose listen addresses
    /// others can reach.
    pub relay_server: bool,
    /// Inbound connections from one IP address at once; beyond, they are closed.
    pub max_inbound_per_ip: u32,
}

impl NetConfig {
    /// A node of `network` listening on every interface (TCP and QUIC, ports chosen by the
    /// system), with mDNS.
    pub fn new(network: NetworkId, agent_version: String) -> Self {
        Self {
            network,
            listen: vec!["/ip4/0.0.0.0/tcp/0".to_owned(), "/ip4/0.0.0.0/udp/0/quic-v1".to_owned()],
            bootstrap: Vec::new(),
            mdns: true,
            agent_version,
            gossip_heartbeat: Duration::from_secs(1),
            ping_interval: Duration::from_secs(15),
            relay_server: false,
            max_inbound_per_ip: MAX_INBOUND_PER_IP,
        }
    }

    /// The identify protocol version peers of the same network share.
    pub(crate) fn protocol_version(&self) -> String {
        format!("/ash/{}/1", self.network.tag())
    }

    /// The Kademlia protocol id of this network.
    pub(crate) fn kad_protocol(&self) -> String {
        format!("/ash/{}/kad/1", self.network.tag())
    }

    /// The request-response protocol id of this network.
    pub(crate) fn request_protocol(&self) -> String {
        format!("/ash/{}/request/1", self.network.tag())
    }

    /// The gossip topic name of `topic` in this network.
    pub(crate) fn topic_name(&self, topic: crate::Topic) -> String {
        format!("ash/{}/{}/1", self.network.tag(), topic.as_str())
    }
}
