//! The protocols a node speaks, assembled into one libp2p behaviour.

use ash_protocol::{PeerRequest, PeerResponse};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity, kad, mdns, ping, relay, request_response,
};
use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::config::{
    MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, MAX_GOSSIP_BYTES, MAX_PENDING_INBOUND_PER_PEER,
    NAT_PROBE_DELAY, NetConfig, RELAY_CIRCUIT_BYTES, RELAY_CIRCUIT_DURATION, RELAY_MAX_CIRCUITS,
    RELAY_MAX_CIRCUITS_PER_PEER, RELAY_MAX_RESERVATIONS, RELAY_MAX_RESERVATIONS_PER_PEER,
    REQUEST_TIMEOUT,
};

/// A request on the wire: the id the answer echoes, and the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RequestEnvelope {
    pub id: u64,
    pub body: PeerRequest,
}

/// An answer on the wire: the id of the request it answers, and the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResponseEnvelope {
    pub id: u64,
    pub body: PeerResponse,
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub relay: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::Behaviour,
    pub gossip: gossipsub::Behaviour,
    pub request: request_response::Behaviour<Codec>,
}

impl Behaviour {
    pub(crate) fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        config: &NetConfig,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(MAX_CONNECTIONS))
            // A quarter is kept for connections this node makes: strangers dialling in cannot
            // take every slot.
            .with_max_established_incoming(Some(MAX_CONNECTIONS / 4 * 3))
            .with_max_pending_incoming(Some(MAX_CONNECTIONS / 4))
            .with_max_pending_outgoing(Some(MAX_CONNECTIONS / 4))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
        let identify = identify::Behaviour::new(
            identify::Config::new(config.protocol_version(), key.public())
                .with_agent_version(config.agent_version.clone())
                .with_push_listen_addr_updates(true),
        );
        let ping = ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval));
        let kad_protocol =
            StreamProtocol::try_from_owned(config.kad_protocol()).map_err(|e| e.to_string())?;
        let mut kad_config = kad::Config::new(kad_protocol);
        kad_config.set_periodic_bootstrap_interval(Some(std::time::Duration::from_secs(60)));
        let mut kad =
            kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
        // Answer DHT queries once a peer confirmed that this node's address reaches it
        // (AutoNAT; libp2p's automatic mode), or from the start on a relay, which says it is
        // reachable.
        kad.set_mode(config.relay_server.then_some(kad::Mode::Server));
        let relay = config.relay_server.then(|| {
            relay::Behaviour::new(
                peer,
                relay::Config {
                    max_reservations: RELAY_MAX_RESERVATIONS,
                    max_reservations_per_peer: RELAY_MAX_RESERVATIONS_PER_PEER,
                    max_circuits: RELAY_MAX_CIRCUITS,
                    max_circuits_per_peer: RELAY_MAX_CIRCUITS_PER_PEER,
                    max_circuit_duration: RELAY_CIRCUIT_DURATION,
                    max_circuit_bytes: RELAY_CIRCUIT_BYTES,
                    ..relay::Config::default()
                },
            )
        });
        let autonat = autonat::Behaviour::new(
            peer,
            autonat::Config {
                boot_delay: NAT_PROBE_DELAY,
                // Reachable means reachable by the peers of this network, which may all be on
                // one private network.
                only_global_ips: false,
                ..autonat::Config::default()
            },
        );
        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(config.gossip_heartbeat)
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Nothing is forwarded before ash has read it: unreadable messages stop here.
            .validate_messages()
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .build()
            .map_err(|e| e.to_string())?;
        let gossip = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(str::to_owned)?;
        let request_protocol =
            StreamProtocol::try_from_owned(config.request_protocol()).map_err(|e| e.to_string())?;
        let request = request_response::Behaviour::with_codec(
            Codec,
            [(request_protocol, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(REQUEST_TIMEOUT)
                .with_max_concurrent_streams(MAX_PENDING_INBOUND_PER_PEER * 4),
        );
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            blocked: allow_block_list::Behaviour::default(),
            identify,
            ping,
            kad,
            mdns: Toggle::from(mdns),
            relay_client,
            relay: Toggle::from(relay),
            dcutr: dcutr::Behaviour::new(peer),
            autonat,
            gossip,
            request,
        })
    }
}
