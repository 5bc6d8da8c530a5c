//! Nodes on loopback, in one process: discovery by a bootstrap address, requests with their
//! answers, signed gossip, another network refused, request floods limited.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use ash_identity::Identity;
use ash_net::{Discovery, Net, NetConfig, NetEvent, NetHandle, NetworkId, Topic};
use ash_protocol::{Gossip, LogHead, PeerError, PeerInfo, PeerRequest, PeerResponse};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

fn config(network: u8, bootstrap: Vec<String>) -> NetConfig {
    let mut config = NetConfig::new(NetworkId([network; 32]), "ash/test".to_owned());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".to_owned()];
    config.bootstrap = bootstrap;
    config.mdns = false;
    config.gossip_heartbeat = Duration::from_millis(200);
    config.ping_interval = Duration::from_millis(500);
    config
}

/// The next event `pick` accepts (others are skipped), within [`WAIT`].
async fn next<T>(
    events: &mut mpsc::Receiver<NetEvent>,
    mut pick: impl FnMut(NetEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("the node stopped");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
    .expect("the event did not come")
}

/// A node of `network` and its first listen address.
async fn node(
    label: &str,
    network: u8,
    bootstrap: Vec<String>,
) -> (NetHandle, mpsc::Receiver<NetEvent>, String) {
    let identity = Identity::insecure_from_label(label);
    let (handle, mut events, _task) =
        Net::start(&identity, config(network, bootstrap)).unwrap().split();
    let address = next(&mut events, |e| match e {
        NetEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    (handle, events, address)
}

/// Answers every `Info` request (the other node's side of a conversation).
fn answer_info(
    mut events: mpsc::Receiver<NetEvent>,
) -> tokio::task::JoinHandle<mpsc::Receiver<NetEvent>> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetEvent::Request { request: PeerRequest::Info, responder, .. } = event {
                let info = PeerInfo {
                    version: "ash/test".into(),
                    serving: true,
                    agents: vec!["builtin".into()],
                };
                if responder.respond(PeerResponse::Info(info)).await.is_err() {
                    break;
                }
            }
        }
        events
    })
}

fn heads() -> Gossip {
    Gossip::Heads {
        heads: vec![LogHead {
            author: "ab".repeat(32),
            seq: 7,
            id: None,
            fork: None,
            checkpoint: None,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_found_by_a_bootstrap_address_answer_and_gossip() {
    let (a, mut a_events, a_address) = node("a", 1, vec![]).await;
    // Ed25519 peer ids print as 12D3KooW…; the address names this node.
    assert!(
        a_address.starts_with("/ip4/127.0.0.1/tcp/") && a_address.contains("/p2p/12D3KooW"),
        "{a_address}"
    );
    assert_eq!(a.listen_addresses().await.unwrap(), vec![a_address.clone()]);
    let (b, mut b_events, _) = node("b", 1, vec![a_address.clone()]).await;
    let found = next(&mut b_events, |e| match e {
        NetEvent::PeerConnected { node, found_by, relayed: false } => Some((node, found_by)),
        _ => None,
    })
    .await;
    assert_eq!(found, (a.local_node(), Discovery::Dialled));
    let found = next(&mut a_events, |e| match e {
        NetEvent::PeerConnected { node, found_by, relayed: false } => Some((node, found_by)),
        _ => None,
    })
    .await;
    assert_eq!(found, (b.local_node(), Discovery::Inbound));

    // What B sees of A.
    let peers = b.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        (peers[0].node, peers[0].agent_version.as_deref(), peers[0].found_by),
        (a.local_node(), Some("ash/test"), Discovery::Dialled)
    );

    // Signed gossip from B reaches A, with B as its author (retried until A's subscription
    // has reached B).
    let publish = tokio::time::timeout(WAIT, async {
        while b.publish(Topic::LedgerHeads, &heads()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    publish.await.expect("gossip never had a peer");
    let gossip = next(&mut a_events, |e| match e {
        NetEvent::Gossip { from, topic, message } => Some((from, topic, message)),
        _ => None,
    })
    .await;
    assert_eq!(gossip, (b.local_node(), Topic::LedgerHeads, heads()));

    // A request and its answer.
    let answering = answer_info(a_events);
    let answer = b.request(a.local_node(), PeerRequest::Info).await.unwrap();
    assert_eq!(
        answer,
        PeerResponse::Info(PeerInfo {
            version: "ash/test".into(),
            serving: true,
            agents: vec!["builtin".into()]
        })
    );

    // A flood is limited: a burst of twice the per-second rate passes, the rest is refused.
    // (Eight at a time: fewer than the answers a peer may keep waiting.)
    use futures_util::StreamExt as _;
    let answers: Vec<_> = futures_util::stream::iter(0..80)
        .map(|_| b.request(a.local_node(), PeerRequest::Info))
        .buffered(8)
        .collect()
        .await;
    let limited = answers
        .iter()
        .filter(|a| matches!(a, Ok(PeerResponse::Error(PeerError { code, .. })) if code == "rate_limited"))
        .count();
    let answered = answers.iter().filter(|a| matches!(a, Ok(PeerResponse::Info(_)))).count();
    assert_eq!(limited + answered, 80, "{answers:?}");
    assert!((39..=50).contains(&answered), "{answered} answered");

    a.shutdown().await;
    answering.await.unwrap();
    // B learns that A left.
    let gone = next(&mut b_events, |e| match e {
        NetEvent::PeerDisconnected { node } => Some(node),
        _ => None,
    })
    .await;
    assert_eq!(gone, a.local_node());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_network_is_refused() {
    let (a, mut a_events, a_address) = node("a2", 1, vec![]).await;
    let (c, mut c_events, _) = node("c2", 2, vec![a_address]).await;
    let refused = next(&mut a_events, |e| match e {
        NetEvent::Refused { reason, .. } => Some(reason),
        NetEvent::PeerConnected { node, .. } => panic!("{node} of another network was let in"),
        _ => None,
    })
    .await;
    assert_eq!(refused, format!("speaks `/ash/{}/1`, another network", "02".repeat(8)));
    let refused = next(&mut c_events, |e| match e {
        NetEvent::Refused { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(refused, format!("speaks `/ash/{}/1`, another network", "01".repeat(8)));
    assert_eq!(a.peers().await.unwrap(), vec![]);
    assert_eq!(c.peers().await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_and_their_sender_struck_then_blocked() {
    let (a, mut a_events, a_address) = node("a3", 1, vec![]).await;
    let (b, mut b_events, _) = node("b3", 1, vec![a_address.clone()]).await;
    next(&mut b_events, |e| matches!(e, NetEvent::PeerConnected { .. }).then_some(())).await;
    // 3,000 subjects of 64 hex digits: about 200 KiB, over the 64 KiB a request may be.
    let huge = PeerRequest::LedgerCheckpoints { subjects: vec!["ab".repeat(32); 3000] };
    for strike in 1..=3 {
        let answer = b.request(a.local_node(), huge.clone()).await;
        assert!(answer.is_err(), "strike {strike}: {answer:?}");
        let refused = next(&mut a_events, |e| match e {
            NetEvent::Refused { reason, .. } => Some(reason),
            _ => None,
        })
        .await;
        assert_eq!(refused, "sent a request larger than 65536 bytes");
        // A strike disconnects; B comes back once it has seen that (a dial made while the old
        // connection still stands adds nothing new), until the third strike blocks it.
        next(&mut b_events, |e| matches!(e, NetEvent::PeerDisconnected { .. }).then_some(())).await;
        if strike < 3 {
            let _ = b.dial(&a_address).await;
            next(&mut b_events, |e| matches!(e, NetEvent::PeerConnected { .. }).then_some(()))
                .await;
        }
    }
    let _ = b.dial(&a_address).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.peers().await.unwrap().is_empty(), "a blocked peer got back in");
    // An honest peer is still served.
    let (c, mut c_events, _) = node("c3", 1, vec![a_address]).await;
    next(&mut c_events, |e| matches!(e, NetEvent::PeerConnected { .. }).then_some(())).await;
    let answering = answer_info(a_events);
    assert!(matches!(
        c.request(a.local_node(), PeerRequest::Info).await,
        Ok(PeerResponse::Info(_))
    ));
    a.shutdown().await;
    answering.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_from_one_address_are_bounded() {
    let mut limited = config(1, vec![]);
    limited.max_inbound_per_ip = 2;
    let (a, mut a_events, _task) =
        Net::start(&Identity::insecure_from_label("a4"), limited).unwrap().split();
    let address = next(&mut a_events, |e| match e {
        NetEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let mut others = Vec::new();
    for label in ["b4", "c4", "d4"] {
        let (other, mut events, _) = node(label, 1, vec![address.clone()]).await;
        // One at a time, so that which one is turned away is certain.
        if label != "d4" {
            next(&mut events, |e| matches!(e, NetEvent::PeerConnected { .. }).then_some(())).await;
        }
        others.push((other, events));
    }
    let refused = next(&mut a_events, |e| match e {
        NetEvent::Refused { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(refused, "more than 2 connections from 127.0.0.1");
    let mut expected: Vec<_> = others[..2].iter().map(|(o, _)| o.local_node()).collect();
    expected.sort();
    // A peer is listed once identify confirmed it on this side too, which may come after its
    // own side saw the connection: look until both are, or the wait is over.
    let listed = || async {
        let mut peers: Vec<_> = a.peers().await.unwrap().into_iter().map(|p| p.node).collect();
        peers.sort();
        peers
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut peers = listed().await;
    while peers.len() < expected.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peers = listed().await;
    }
    assert_eq!(peers, expected);
    a.shutdown().await;
}

/// A plain libp2p peer (not ash): it speaks this network's identify version and gossips with
/// `authenticity` on the heads topic of network `network`.
mod plain {
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::{Swarm, gossipsub, identify, noise, tcp, yamux};

    #[derive(NetworkBehaviour)]
    pub(crate) struct Plain {
        identify: identify::Behaviour,
        pub(crate) gossip: gossipsub::Behaviour,
    }

    pub(crate) fn peer(network: u8, signed: bool) -> (Swarm<Plain>, gossipsub::IdentTopic) {
        let tag = format!("{network:02x}").repeat(8);
        let swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| {
                let authenticity = if signed {
                    gossipsub::MessageAuthenticity::Signed(key.clone())
                } else {
                    gossipsub::MessageAuthenticity::Anonymous
                };
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(if signed {
                        gossipsub::ValidationMode::Strict
                    } else {
                        gossipsub::ValidationMode::None
                    })
                    .build()
                    .unwrap();
                Plain {
                    identify: identify::Behaviour::new(identify::Config::new(
                        format!("/ash/{tag}/1"),
                        key.public(),
                    )),
                    gossip: gossipsub::Behaviour::new(authenticity, config).unwrap(),
                }
            })
            .unwrap()
            .build();
        (swarm, gossipsub::IdentTopic::new(format!("ash/{tag}/heads/1")))
    }
}

/// Runs `swarm`, publishing `data` on `topic` every 200 ms, for `time`.
async fn publish_for(
    swarm: &mut libp2p::Swarm<plain::Plain>,
    topic: &libp2p::gossipsub::IdentTopic,
    data: &[u8],
    time: Duration,
) {
    use futures_util::StreamExt as _;
    let deadline = tokio::time::Instant::now() + time;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tick.tick() => {
                let _ = swarm.behaviour_mut().gossip.publish(topic.clone(), data.to_vec());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_gossip_from_a_plain_libp2p_peer_goes_nowhere() {
    let (_a, mut a_events, a_address) = node("a6", 1, vec![]).await;
    let data = cbor4ii::serde::to_vec(Vec::new(), &heads()).unwrap();
    // Unsigned: dropped by strict validation before ash reads it.
    let (mut unsigned, topic) = plain::peer(1, false);
    unsigned.behaviour_mut().gossip.subscribe(&topic).unwrap();
    unsigned.dial(a_address.parse::<libp2p::Multiaddr>().unwrap()).unwrap();
    publish_for(&mut unsigned, &topic, &data, Duration::from_secs(2)).await;
    while let Ok(event) = a_events.try_recv() {
        assert!(
            !matches!(event, NetEvent::Gossip { .. }),
            "unsigned gossip got through: {event:?}"
        );
    }
    // The same bytes signed by the same kind of peer do arrive: the road was open.
    let (mut signed, topic) = plain::peer(1, true);
    signed.behaviour_mut().gossip.subscribe(&topic).unwrap();
    signed.dial(a_address.parse::<libp2p::Multiaddr>().unwrap()).unwrap();
    let (arrived, ()) = tokio::join!(
        next(&mut a_events, |e| match e {
            NetEvent::Gossip { message, .. } => Some(message),
            _ => None,
        }),
        publish_for(&mut signed, &topic, &data, Duration::from_secs(3)),
    );
    assert_eq!(arrived, heads());
}
