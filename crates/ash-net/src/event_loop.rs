//! The one task that owns the swarm: it turns commands into swarm calls and swarm events into
//! [`NetEvent`]s, and keeps every per-peer bound.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ash_identity::{Identity, NodeId};
use ash_protocol::{PeerRequest, PeerResponse};
use futures_util::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, IdentTopic, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{
    Multiaddr, PeerId, Swarm, autonat, dcutr, identify, mdns, noise, ping, relay, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{Behaviour, BehaviourEvent, RequestEnvelope, ResponseEnvelope};
use crate::codec::{Incoming, Tagged};
use crate::config::{
    FEW_PEERS, MAX_ADDRESSES_PER_PEER, MAX_PENDING_INBOUND_PER_PEER, MAX_RELAYS, NetConfig,
    REMEMBERED_PEERS, REQUEST_TIMEOUT, REQUESTS_PER_PEER_PER_SECOND, STRIKES_BEFORE_BLOCK,
};
use crate::handle::{Discovery, NetError, NetEvent, PeerSnapshot, Responder, Topic};
use crate::peer_id::{keypair, node_of, peer_of};

/// What handles ask of the loop.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddresses {
        reply: oneshot::Sender<Vec<String>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerSnapshot>>,
    },
    Dial {
        address: String,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        node: NodeId,
        request: PeerRequest,
        reply: oneshot::Sender<Result<PeerResponse, NetError>>,
    },
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Respond {
        key: u64,
        response: PeerResponse,
    },
    Shutdown,
}

/// A request this node sent and waits on.
struct Outbound {
    id: u64,
    node: NodeId,
    reply: oneshot::Sender<Result<PeerResponse, NetError>>,
}

/// A request a peer sent, waiting for the caller's answer.
struct Inbound {
    peer: PeerId,
    id: u64,
    since: Instant,
    channel: ResponseChannel<ResponseEnvelope>,
}

/// What the loop knows of a peer while it is connected.
struct PeerState {
    node: NodeId,
    connections: u32,
    /// Set once identify confirmed the peer speaks this network.
    confirmed: bool,
    addresses: BTreeSet<Multiaddr>,
    /// The address of its first connection, and whether this node dialled it.
    remote: Multiaddr,
    dialer: bool,
    agent_version: Option<String>,
    rtt: Option<Duration>,
    found_by: Discovery,
    /// Request tokens (refilled at [`REQUESTS_PER_PEER_PER_SECOND`], at most twice that).
    tokens: f64,
    refilled: Instant,
    pending_inbound: usize,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    local_peer: PeerId,
    commands: mpsc::Receiver<Command>,
    /// For responders; weak, so that the loop ends when the last handle goes.
    responder_commands: mpsc::WeakSender<Command>,
    events: mpsc::Sender<NetEvent>,
    topics: HashMap<TopicHash, Topic>,
    peers: HashMap<PeerId, PeerState>,
    /// How peers about to be dialled were found.
    found: HashMap<PeerId, Discovery>,
    strikes: HashMap<PeerId, u32>,
    /// Request tokens of peers that disconnected, so that reconnecting refills nothing.
    buckets: HashMap<PeerId, (f64, Instant)>,
    outbound: HashMap<OutboundRequestId, Outbound>,
    inbound: HashMap<u64, Inbound>,
    /// Inbound connections open per source (IP address, IPv6 /64 or relay), and the source of
    /// each.
    inbound_ips: HashMap<Source, u32>,
    connection_ips: HashMap<libp2p::swarm::ConnectionId, Source>,
    /// Listeners through relays (reservations held or asked for), and each relay.
    relays: HashMap<ListenerId, PeerId>,
    /// Whether every configured listen address is on loopback (then a relay offers those).
    loopback_only: bool,
    next_id: u64,
    dropped_events: u64,
}

impl EventLoop {
    pub(crate) fn new(
        identity: &Identity,
        config: NetConfig,
        commands: mpsc::Receiver<Command>,
        responder_commands: mpsc::WeakSender<Command>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<Self, NetError> {
        let mut secret = *identity.transport_secret();
        let key = keypair(&mut secret)
            .ok_or_else(|| NetError::Start("the identity key is not an Ed25519 key".into()))?;
        let start = |e: &dyn std::fmt::Display| NetError::Start(e.to_string());
        let behaviour_config = config.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| start(&e))?
            .with_quic()
            .with_dns()
            .map_err(|e| start(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| start(&e))?
            .with_behaviour(|key, relay_client| {
                Behaviour::new(key, relay_client, &behaviour_config)
            })
            .map_err(|e| start(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        let local_peer = *swarm.local_peer_id();
        let mut topics = HashMap::new();
        for topic in Topic::ALL {
            let ident = IdentTopic::new(config.topic_name(topic));
            swarm.behaviour_mut().gossip.subscribe(&ident).map_err(|e| start(&e))?;
            topics.insert(ident.hash(), topic);
        }
        let mut loopback_only = true;
        for address in &config.listen {
            let addr = parse(address)?;
            loopback_only &= is_loopback(&addr);
            swarm.listen_on(addr).map_err(|e| NetError::Address {
                address: address.clone(),
                reason: describe(&e),
            })?;
        }
        let mut found = HashMap::new();
        for address in &config.bootstrap {
            let addr = parse(address)?;
            let Some(peer) = peer_in(&addr) else {
                return Err(NetError::Address {
                    address: address.clone(),
                    reason: "a bootstrap address must end in /p2p/<peer id>".into(),
                });
            };
            // A genesis may list this very node.
            if peer == local_peer {
                continue;
            }
            swarm.behaviour_mut().kad.add_address(&peer, without_peer(&addr));
            found.insert(peer, Discovery::Dialled);
            swarm.dial(addr).map_err(|e| NetError::Address {
                address: address.clone(),
                reason: describe(&e),
            })?;
        }
        Ok(Self {
            swarm,
            config,
            local_peer,
            commands,
            responder_commands,
            events,
            topics,
            peers: HashMap::new(),
            found,
            strikes: HashMap::new(),
            buckets: HashMap::new(),
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            relays: HashMap::new(),
            inbound_ips: HashMap::new(),
            connection_ips: HashMap::new(),
            loopback_only,
            next_id: 1,
            dropped_events: 0,
        })
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                event = self.swarm.select_next_some() => self.swarm_event(event),
                _ = tick.tick() => {
                    self.prune();
                    self.look_for_peers();
                }
            }
        }
        // Requests still waiting learn that the node stopped.
        for (_, outbound) in self.outbound.drain() {
            let _ = outbound.reply.send(Err(NetError::Stopped));
        }
        tracing::debug!(dropped_events = self.dropped_events, "network node stopped");
    }

    fn emit(&mut self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            self.dropped_events += 1;
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::ListenAddresses { reply } => {
                let local = self.local_peer;
                let addresses =
                    self.swarm.listeners().map(|a| with_peer(a, local).to_string()).collect();
                let _ = reply.send(addresses);
            }
            Command::Peers { reply } => {
                let mut peers: Vec<PeerSnapshot> = self
                    .peers
                    .values()
                    .filter(|p| p.confirmed)
                    .map(|p| PeerSnapshot {
                        node: p.node,
                        addresses: p.addresses.iter().map(ToString::to_string).collect(),
                        agent_version: p.agent_version.clone(),
                        rtt: p.rtt,
                        found_by: p.found_by,
                        relayed: is_relayed(&p.remote),
                    })
                    .collect();
                peers.sort_by_key(|p| p.node);
                let _ = reply.send(peers);
            }
            Command::Dial { address, reply } => {
                let result = parse(&address).and_then(|addr| {
                    if let Some(peer) = peer_in(&addr) {
                        self.found.entry(peer).or_insert(Discovery::Dialled);
                    }
                    self.swarm
                        .dial(addr)
                        .map_err(|e| NetError::Address { address, reason: describe(&e) })
                });
                let _ = reply.send(result);
            }
            Command::Request { node, request, reply } => {
                let Some(peer) = peer_of(node) else {
                    let _ = reply.send(Err(NetError::Request {
                        peer: node,
                        reason: "not an Ed25519 node id".into(),
                    }));
                    return;
                };
                let id = self.next_id;
                self.next_id += 1;
                let request_id = self
                    .swarm
                    .behaviour_mut()
                    .request
                    .send_request(&peer, Incoming::Request(RequestEnvelope { id, body: request }));
                self.outbound.insert(request_id, Outbound { id, node, reply });
            }
            Command::Publish { topic, data, reply } => {
                let hash = IdentTopic::new(self.config.topic_name(topic)).hash();
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(hash, data)
                    .map(|_| ())
                    .map_err(|e| NetError::Publish(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Respond { key, response } => {
                let Some(inbound) = self.inbound.remove(&key) else { return };
                if let Some(state) = self.peers.get_mut(&inbound.peer) {
                    state.pending_inbound = state.pending_inbound.saturating_sub(1);
                }
                self.answer(inbound.channel, inbound.id, response);
            }
            Command::Shutdown => {}
        }
    }

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                // A relay offers the addresses it listens on to those it relays for: it is
                // meant to be reachable there (loopback only when it listens nowhere else).
                if self.config.relay_server
                    && !is_relayed(&address)
                    && (self.loopback_only || !is_loopback(&address))
                {
                    self.swarm.add_external_address(without_peer(&address));
                }
                let address = with_peer(&address, self.local_peer).to_string();
                self.emit(NetEvent::Listening { address });
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                // A relay went away: another may take its place.
                if let Some(relay) = self.relays.remove(&listener_id) {
                    tracing::debug!(%relay, "relay reservation ended");
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
                // Many identities from one address cost one machine little: inbound
                // connections per IP address are bounded.
                if let libp2p::core::ConnectedPoint::Listener { local_addr, send_back_addr } =
                    &endpoint
                    && let Some(ip) =
                        source_of(if is_relayed(local_addr) { local_addr } else { send_back_addr })
                {
                    let count = self.inbound_ips.entry(ip).or_insert(0);
                    *count += 1;
                    self.connection_ips.insert(connection_id, ip);
                    if *count > self.config.max_inbound_per_ip {
                        let limit = self.config.max_inbound_per_ip;
                        let _ = self.swarm.close_connection(connection_id);
                        self.emit(NetEvent::Refused {
                            peer: peer_id.to_string(),
                            reason: format!("more than {limit} connections from {ip}"),
                        });
                        return;
                    }
                }
                let Some(node) = node_of(&peer_id) else {
                    // Not an Ed25519 key: not an ash node.
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                let found_by = self.found.remove(&peer_id).unwrap_or(if endpoint.is_dialer() {
                    Discovery::Routing
                } else {
                    Discovery::Inbound
                });
                let (tokens, refilled) = self
                    .buckets
                    .remove(&peer_id)
                    .unwrap_or((f64::from(REQUESTS_PER_PEER_PER_SECOND) * 2.0, Instant::now()));
                let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    node,
                    connections: 0,
                    confirmed: false,
                    addresses: BTreeSet::new(),
                    // (A connection relayed to this node names the circuit only locally.)
                    remote: match &endpoint {
                        libp2p::core::ConnectedPoint::Listener { local_addr, .. }
                            if is_relayed(local_addr) =>
                        {
                            local_addr.clone()
                        }
                        _ => endpoint.get_remote_address().clone(),
                    },
                    dialer: endpoint.is_dialer(),
                    agent_version: None,
                    rtt: None,
                    found_by,
                    tokens,
                    refilled,
                    pending_inbound: 0,
                });
                state.connections += 1;
                if endpoint.is_dialer() {
                    state.addresses.insert(without_peer(endpoint.get_remote_address()));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, connection_id, .. } => {
                if let Some(ip) = self.connection_ips.remove(&connection_id)
                    && let Some(count) = self.inbound_ips.get_mut(&ip)
                {
                    *count -= 1;
                    if *count == 0 {
                        self.inbound_ips.remove(&ip);
                    }
                }
                if num_established == 0
                    && let Some(state) = self.peers.remove(&peer_id)
                {
                    remember(&mut self.buckets, peer_id, (state.tokens, state.refilled));
                    if state.confirmed {
                        self.emit(NetEvent::PeerDisconnected { node: state.node });
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.behaviour_event(event),
            _ => {}
        }
    }

    fn behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.identified(peer_id, info);
            }
            BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    if peer == self.local_peer || self.peers.contains_key(&peer) {
                        continue;
                    }
                    if self.found.len() >= REMEMBERED_PEERS {
                        continue;
                    }
                    self.found.entry(peer).or_insert(Discovery::Mdns);
                    let dial = DialOpts::peer_id(peer)
                        .addresses(vec![address])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(dial);
                }
            }
            BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                message_id,
                propagation_source,
            }) => {
                // Nothing is forwarded until it is judged here: readable messages of a topic
                // of this network by an ash identity go on, the rest stops (and counts
                // against whoever passed it on, in gossipsub's score).
                let judged = match (
                    self.topics.get(&message.topic).copied(),
                    message.source.as_ref().and_then(node_of),
                ) {
                    (Some(topic), Some(from)) => {
                        cbor4ii::serde::from_slice::<ash_protocol::Gossip>(&message.data)
                            .map(|decoded| (topic, from, decoded))
                            .map_err(|e| format!("gossiped an unreadable message: {e}"))
                    }
                    _ => Err("gossiped on an unknown topic or without an ash author".to_owned()),
                };
                // A message of a type this version does not know (a newer peer's) is neither
                // passed on nor held against anyone.
                let unknown = judged.is_err()
                    && self.topics.contains_key(&message.topic)
                    && message.source.as_ref().and_then(node_of).is_some()
                    && cbor4ii::serde::from_slice::<Tagged>(&message.data)
                        .is_ok_and(|t| !ash_protocol::GOSSIP_TYPES.contains(&t.kind.as_str()));
                let acceptance = match (&judged, unknown) {
                    (Ok(_), _) => gossipsub::MessageAcceptance::Accept,
                    (Err(_), true) => gossipsub::MessageAcceptance::Ignore,
                    (Err(_), false) => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm.behaviour_mut().gossip.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance,
                );
                match judged {
                    Ok((topic, from, message)) => {
                        self.emit(NetEvent::Gossip { from, topic, message });
                    }
                    Err(_) if unknown => {}
                    // Honest nodes forward only what they could read: whoever passed this on
                    // wrote it or did not check it.
                    Err(reason) => self.strike(propagation_source, &reason),
                }
            }
            BehaviourEvent::Request(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request: Incoming::Request(request),
                        channel,
                        ..
                    } => self.inbound_request(peer, request, channel),
                    // A newer peer's request: said so, not struck.
                    request_response::Message::Request {
                        request: Incoming::Unknown { id, kind },
                        channel,
                        ..
                    } => {
                        // Charged like any request.
                        let body = if self.take_token(peer) {
                            PeerResponse::error(
                                "unsupported",
                                format!("this node does not know requests of type `{kind}`"),
                            )
                        } else {
                            PeerResponse::error("rate_limited", "too many requests; slow down")
                        };
                        self.answer(channel, id, body);
                    }
                    // No answer: the stream closes with the connection.
                    request_response::Message::Request {
                        request: Incoming::Unreadable(reason),
                        ..
                    } => self.strike(peer, &format!("sent {reason}")),
                    request_response::Message::Response { request_id, response } => {
                        let Some(outbound) = self.outbound.remove(&request_id) else { return };
                        if response.id != outbound.id {
                            let _ = outbound.reply.send(Err(NetError::Request {
                                peer: outbound.node,
                                reason: "the answer does not echo the request's id".into(),
                            }));
                            self.strike(peer, "answered with another request's id");
                            return;
                        }
                        let _ = outbound.reply.send(Ok(response.body));
                    }
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                let public = match new {
                    autonat::NatStatus::Public(address) => {
                        Some(with_peer(&address, self.local_peer).to_string())
                    }
                    autonat::NatStatus::Private | autonat::NatStatus::Unknown => None,
                };
                self.emit(NetEvent::Reachability { public });
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::debug!(relay = %relay_peer_id, "relay reservation accepted");
            }
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => {
                tracing::debug!(peer = %remote_peer_id, ok = result.is_ok(), "direct connection upgrade");
            }
            BehaviourEvent::Request(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(outbound) = self.outbound.remove(&request_id) {
                    let _ = outbound.reply.send(Err(NetError::Request {
                        peer: outbound.node,
                        reason: error.to_string(),
                    }));
                }
                // An answer that is too large or does not decode (the codec says
                // `InvalidData`); one that never came is not struck.
                if let request_response::OutboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.strike(peer, &format!("answered with {e}"));
                }
            }
            _ => {}
        }
    }

    fn identified(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != self.config.protocol_version() {
            let reason = format!("speaks `{}`, another network", info.protocol_version);
            self.emit(NetEvent::Refused { peer: peer.to_string(), reason });
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else { return };
        state.agent_version = Some(info.agent_version);
        // What it says now replaces what it said before (identify pushes come again).
        let addresses: BTreeSet<Multiaddr> =
            info.listen_addrs.iter().take(MAX_ADDRESSES_PER_PEER).map(without_peer).collect();
        // New addresses (a relay reservation made since) are routing news for others.
        // The routing table holds what the peer says now: at most MAX_ADDRESSES_PER_PEER.
        let known = if state.confirmed { state.addresses.clone() } else { BTreeSet::new() };
        for address in known.difference(&addresses) {
            self.swarm.behaviour_mut().kad.remove_address(&peer, address);
        }
        for address in addresses.difference(&known) {
            self.swarm.behaviour_mut().kad.add_address(&peer, address.clone());
        }
        state.addresses = addresses;
        let relay_at = (!self.config.relay_server
            && info.protocols.contains(&relay::HOP_PROTOCOL_NAME)
            && !is_relayed(&state.remote))
        .then(|| relay_address(&state.remote, state.dialer, &info.listen_addrs))
        .flatten();
        if !state.confirmed {
            state.confirmed = true;
            let (node, found_by, relayed) = (state.node, state.found_by, is_relayed(&state.remote));
            self.emit(NetEvent::PeerConnected { node, found_by, relayed });
            // A first peer: learn the rest of the network from it.
            if self.peers.values().filter(|p| p.confirmed).count() == 1 {
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
            }
        }
        if let Some(address) = relay_at {
            self.reserve(peer, address);
        }
    }

    /// Listens through relay `peer` at `address`, so that peers who cannot reach this node
    /// directly still can; at most [`MAX_RELAYS`] at once.
    fn reserve(&mut self, peer: PeerId, address: Multiaddr) {
        if self.relays.len() >= MAX_RELAYS || self.relays.values().any(|r| *r == peer) {
            return;
        }
        let circuit = address.with(Protocol::P2p(peer)).with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit) {
            Ok(listener) => {
                self.relays.insert(listener, peer);
            }
            Err(e) => tracing::debug!(relay = %peer, error = %e, "relay not used"),
        }
    }

    fn inbound_request(
        &mut self,
        peer: PeerId,
        request: RequestEnvelope,
        channel: ResponseChannel<ResponseEnvelope>,
    ) {
        // Only peers of this network can open this protocol (its id carries the network), so
        // a request need not wait for identify.
        if !self.peers.contains_key(&peer) {
            self.answer(channel, request.id, PeerResponse::error("invalid", "no connection"));
            return;
        }
        let had_token = self.take_token(peer);
        let Some(state) = self.peers.get_mut(&peer) else { return };
        let refused = if !had_token {
            Some(PeerResponse::error("rate_limited", "too many requests; slow down"))
        } else if state.pending_inbound >= MAX_PENDING_INBOUND_PER_PEER {
            Some(PeerResponse::error("busy", "too many requests waiting for an answer"))
        } else {
            None
        };
        let from = state.node;
        if let Some(body) = refused {
            self.answer(channel, request.id, body);
            return;
        }
        let Some(commands) = self.responder_commands.upgrade() else { return };
        let key = self.next_id;
        self.next_id += 1;
        let responder = Responder { key, commands };
        if self
            .events
            .try_send(NetEvent::Request { from, request: request.body, responder })
            .is_err()
        {
            self.dropped_events += 1;
            self.answer(
                channel,
                request.id,
                PeerResponse::error("busy", "this node is not keeping up"),
            );
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.pending_inbound += 1;
        }
        let since = Instant::now();
        self.inbound.insert(key, Inbound { peer, id: request.id, since, channel });
    }

    /// Sends `body` as the answer to request `id` on `channel`.
    fn answer(&mut self, channel: ResponseChannel<ResponseEnvelope>, id: u64, body: PeerResponse) {
        let _ = self
            .swarm
            .behaviour_mut()
            .request
            .send_response(channel, ResponseEnvelope { id, body });
    }

    /// Takes one of `peer`'s request tokens; `false` when it has none left (or no connection).
    fn take_token(&mut self, peer: PeerId) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else { return false };
        let now = Instant::now();
        let rate = f64::from(REQUESTS_PER_PEER_PER_SECOND);
        state.tokens = (state.tokens + now.duration_since(state.refilled).as_secs_f64() * rate)
            .min(rate * 2.0);
        state.refilled = now;
        let had = state.tokens >= 1.0;
        state.tokens = (state.tokens - 1.0).max(0.0);
        had
    }

    /// A protocol violation: disconnect, and block after [`STRIKES_BEFORE_BLOCK`].
    fn strike(&mut self, peer: PeerId, reason: &str) {
        if self.strikes.len() >= REMEMBERED_PEERS && !self.strikes.contains_key(&peer) {
            self.strikes.clear();
        }
        let strikes = self.strikes.entry(peer).or_insert(0);
        *strikes += 1;
        if *strikes >= STRIKES_BEFORE_BLOCK {
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        }
        let _ = self.swarm.disconnect_peer_id(peer);
        self.emit(NetEvent::Refused { peer: peer.to_string(), reason: reason.to_owned() });
    }

    /// While this node knows few peers, asks the DHT again every tick: the peers it asked
    /// first may have answered nothing then (they answer queries only once reachable).
    fn look_for_peers(&mut self) {
        let confirmed = self.peers.values().filter(|p| p.confirmed).count();
        if (1..FEW_PEERS).contains(&confirmed) {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// Forgets answers the caller never gave (the peer's request times out).
    fn prune(&mut self) {
        let expired: Vec<u64> = self
            .inbound
            .iter()
            .filter(|(_, i)| i.since.elapsed() > REQUEST_TIMEOUT)
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            if let Some(inbound) = self.inbound.remove(&key)
                && let Some(state) = self.peers.get_mut(&inbound.peer)
            {
                state.pending_inbound = state.pending_inbound.saturating_sub(1);
            }
        }
    }
}

/// Remembers `value` for `peer`, forgetting everything once [`REMEMBERED_PEERS`] are held
/// (cheap, and a flood of fresh identities gains nothing from it).
fn remember<V>(map: &mut HashMap<PeerId, V>, peer: PeerId, value: V) {
    if map.len() >= REMEMBERED_PEERS {
        map.clear();
    }
    map.insert(peer, value);
}

/// An error and its causes, as one line (some transports' errors say nothing themselves).
fn describe(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() { format!("{error:?}") } else { parts.join(": ") }
}

/// Whether `address` can be a bootstrap address: a multiaddr ending in `/p2p/<peer id>`.
pub fn check_bootstrap(address: &str) -> Result<(), NetError> {
    let parsed = parse(address)?;
    match peer_in(&parsed) {
        Some(_) => Ok(()),
        None => Err(NetError::Address {
            address: address.to_owned(),
            reason: "a bootstrap address must end in /p2p/<peer id>".into(),
        }),
    }
}

fn parse(address: &str) -> Result<Multiaddr, NetError> {
    address.parse().map_err(|e: libp2p::multiaddr::Error| NetError::Address {
        address: address.to_owned(),
        reason: e.to_string(),
    })
}

/// The peer a multiaddr ends in.
fn peer_in(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Where an inbound connection came from, for the bound on connections per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// An IPv4 address.
    V4(std::net::Ipv4Addr),
    /// An IPv6 /64 (one machine is commonly given a whole /64).
    V6([u8; 8]),
    /// A relay, which carries connections from peers whose addresses it alone sees.
    Relay(PeerId),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(prefix) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(prefix);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
            Self::Relay(peer) => write!(f, "relay {peer}"),
        }
    }
}

/// The source of a connection from `address`.
fn source_of(address: &Multiaddr) -> Option<Source> {
    if is_relayed(address) {
        // The relay is the last peer named before `/p2p-circuit`.
        let mut relay = None;
        for protocol in address.iter() {
            match protocol {
                Protocol::P2p(peer) => relay = Some(peer),
                Protocol::P2pCircuit => break,
                _ => {}
            }
        }
        return relay.map(Source::Relay);
    }
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(Source::V4(ip)),
        Protocol::Ip6(ip) => {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&ip.octets()[..8]);
            Some(Source::V6(prefix))
        }
        _ => None,
    }
}

/// Whether `address` goes through a relay.
fn is_relayed(address: &Multiaddr) -> bool {
    address.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

fn is_loopback(address: &Multiaddr) -> bool {
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Where to reach a relay for a reservation: the address this node dialled, else the one of
/// its listen addresses on the host it connected from.
fn relay_address(remote: &Multiaddr, dialer: bool, listen: &[Multiaddr]) -> Option<Multiaddr> {
    if dialer {
        return Some(without_peer(remote));
    }
    let host = remote.iter().next()?;
    listen
        .iter()
        .find(|a| a.iter().next().as_ref() == Some(&host) && !is_relayed(a))
        .map(without_peer)
}

/// `address` without the `/p2p/<peer>` it ends in (a relayed address keeps its relay's).
fn without_peer(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

fn with_peer(address: &Multiaddr, peer: PeerId) -> Multiaddr {
    without_peer(address).with(Protocol::P2p(peer))
}
