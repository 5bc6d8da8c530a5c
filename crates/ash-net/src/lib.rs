//! The peer-to-peer network: rust-libp2p behind a small handle. libp2p types never leave it.
//!
//! Owns the swarm and everything it needs: the transport (TCP and QUIC, Noise, Yamux), peer
//! discovery (mDNS on the LAN, Kademlia with bootstrap addresses), identify and ping, gossip
//! (signed, strictly validated) and requests addressed to one peer (CBOR request-response),
//! with every queue, message size, request rate and connection count bounded. Protocol ids
//! carry the network id, so two networks never mix; `docs/wire-protocols.md` specifies them.
//!
//! The shape is the project's template for long-lived state: [`Net::start`] spawns one private
//! event loop that owns the `Swarm`; callers hold a cloneable [`NetHandle`] that sends it
//! commands over a bounded channel (each with its own answer channel), and read [`NetEvent`]s
//! from one bounded receiver. The loop ends when every handle is dropped or on
//! [`NetHandle::shutdown`]; its task is owned by the [`Net`] returned.
//!
//! Never reads the environment, never touches the ledger or jobs: what messages mean is the
//! caller's (`ash-node`, `ash-cli`). The node's libp2p key is its ash identity key
//! ([`ash_identity::Identity::transport_secret`]), so a peer id *is* a [`NodeId`] and Noise
//! authenticates it.

mod behaviour;
mod codec;
mod config;
mod event_loop;
mod handle;
mod peer_id;

pub use ash_identity::NodeId;
pub use config::{
    MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, MAX_GOSSIP_BYTES, MAX_INBOUND_PER_IP,
    MAX_PENDING_INBOUND_PER_PEER, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, NetConfig, NetworkId,
    REQUESTS_PER_PEER_PER_SECOND,
};
pub use event_loop::check_bootstrap;
pub use handle::{
    Discovery, Net, NetError, NetEvent, NetHandle, NetTask, PeerSnapshot, Responder, Topic,
};
