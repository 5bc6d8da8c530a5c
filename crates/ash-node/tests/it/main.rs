//! Nodes on loopback with real ledgers: logs replicate both ways on connection, and a hostile
//! peer's forged or unreadable entries are never stored.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ash_identity::{Identity, NodeId};
use ash_ledger::{Body, Credits, Entry, Genesis, LogWriter, Mint, MintKind, Profile, SignupCost};
use ash_net::{Net, NetConfig, NetEvent, NetworkId};
use ash_node::{Authority, Ledger, Node, NodeConfig, NodeEvent};
use ash_protocol::{Gossip, LogHead, PeerError, PeerInfo, PeerRequest, PeerResponse, SignupProof};

#[path = "../support/host_git.rs"]
mod host_git;
mod jobs;

const WAIT: Duration = Duration::from_secs(20);
const T: u64 = 1_765_000_000_000;

fn genesis(authority: &Identity) -> Genesis {
    Genesis::new("testnet", T, BTreeSet::from([authority.node_id()])).unwrap()
}

fn profile<'a>(who: &'a Identity, genesis: &Genesis, name: &str) -> (Entry, LogWriter<'a>) {
    let mut writer = LogWriter::new(who, genesis.id());
    let body = Body::Profile(Profile {
        username: name.into(),
        sealing_key: who.sealing_public(),
        created_at: T,
    });
    (writer.append(T, body), writer)
}

fn net_config(genesis: &Genesis, bootstrap: Vec<String>) -> NetConfig {
    let mut net = NetConfig::new(NetworkId(genesis.id().0), "ash/test".into());
    net.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    net.bootstrap = bootstrap;
    net.mdns = false;
    net.gossip_heartbeat = Duration::from_millis(200);
    net
}

fn node(who: &Identity, genesis: &Genesis, ledger: &Path, bootstrap: Vec<String>) -> Node {
    node_with(who, genesis, ledger, bootstrap, None)
}

fn node_with(
    who: &Identity,
    genesis: &Genesis,
    ledger: &Path,
    bootstrap: Vec<String>,
    authority: Option<Authority>,
) -> Node {
    signing_up(who, genesis, ledger, bootstrap, authority, None)
}

fn signing_up(
    who: &Identity,
    genesis: &Genesis,
    ledger: &Path,
    bootstrap: Vec<String>,
    authority: Option<Authority>,
    signup: Option<SignupProof>,
) -> Node {
    let config = NodeConfig {
        net: net_config(genesis, bootstrap),
        ledger: ledger.to_path_buf(),
        genesis: genesis.clone(),
        info: PeerInfo::default(),
        authority,
        signup,
        writer: true,
        jobs_dir: ledger.with_extension("jobs"),
        serve: None,
    };
    // Identities are not Clone: the node gets its own copy of the same key.
    let mut secret = *who.transport_secret();
    let copy = Identity::from_secrets(&secret, &[7; 32]).unwrap();
    secret.fill(0);
    Node::start(Arc::new(copy), config).unwrap()
}

async fn next<T>(node: &mut Node, mut pick: impl FnMut(NodeEvent) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(found) = pick(node.next_event().await.expect("the node stopped")) {
                return found;
            }
        }
    })
    .await
    .expect("the event did not come")
}

fn username(node: &Node, id: NodeId) -> Option<String> {
    let ledger = node.ledger();
    let ledger = ledger.lock().unwrap();
    ledger.verifier().account(id).username
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_replicate_both_ways_and_forged_entries_are_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, alice, bob) = (
        Identity::insecure_from_label("admin"),
        Identity::insecure_from_label("alice"),
        Identity::insecure_from_label("bob"),
    );
    let genesis = genesis(&admin);
    // A holds alice and the authority (its profile and a signup mint for alice); B holds bob.
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    {
        let mut ledger = Ledger::open(&a_db, genesis.clone()).unwrap();
        let (alice_profile, _) = profile(&alice, &genesis, "alice");
        let (admin_profile, mut writer) = profile(&admin, &genesis, "admin");
        let mint = writer.append(
            T + 1,
            Body::Mint(Mint {
                recipient: alice.node_id(),
                amount: Credits::new(100),
                kind: MintKind::Signup,
                reason: "signup".into(),
            }),
        );
        let inserted = ledger.insert(vec![alice_profile, admin_profile, mint]).unwrap();
        assert_eq!(inserted.new, 3);
        let mut ledger = Ledger::open(&b_db, genesis.clone()).unwrap();
        assert_eq!(ledger.insert(vec![profile(&bob, &genesis, "bob").0]).unwrap().new, 1);
    }
    let mut a = node(&alice, &genesis, &a_db, vec![]);
    let a_address = next(&mut a, |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let mut b = node(&bob, &genesis, &b_db, vec![a_address]);
    // (Heads gossiped before a connection's catch-up may start an empty one first.)
    let from_a = next(&mut b, |e| match e {
        NodeEvent::Synced { from, new, unreadable } if new > 0 => Some((from, new, unreadable)),
        _ => None,
    })
    .await;
    // (Alice's node took the mint made out to her into her log when it started: 4 entries.)
    assert_eq!(from_a, (alice.node_id(), 4, 0));
    let from_b = next(&mut a, |e| match e {
        NodeEvent::Synced { from, new, unreadable } if new > 0 => Some((from, new, unreadable)),
        _ => None,
    })
    .await;
    assert_eq!(from_b, (bob.node_id(), 1, 0));
    assert_eq!(username(&b, alice.node_id()).as_deref(), Some("alice"));
    assert_eq!(username(&b, admin.node_id()).as_deref(), Some("admin"));
    let balance =
        b.ledger().lock().unwrap().verifier().account(alice.node_id()).balance.spendable.get();
    assert_eq!(balance, 100);
    assert_eq!(username(&a, bob.node_id()).as_deref(), Some("bob"));

    // A hostile node offers carol's log: her profile with a broken signature, a profile
    // carol never signed (mallory's, relabelled), and bytes that are no entry at all.
    let (carol, mallory) =
        (Identity::insecure_from_label("carol"), Identity::insecure_from_label("mallory"));
    let mut forged = profile(&carol, &genesis, "carol").0.bytes();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let relabelled = {
        let mut bytes = profile(&mallory, &genesis, "carol").0.bytes();
        let theirs = mallory.node_id();
        let at = bytes.windows(32).position(|w| w == theirs.as_bytes()).unwrap();
        bytes[at..at + 32].copy_from_slice(carol.node_id().as_bytes());
        bytes
    };
    let offered = [forged, relabelled, b"not an entry".to_vec()];
    let b_address = b.net().listen_addresses().await.unwrap().remove(0);
    let hostile = Net::start(&mallory, net_config(&genesis, vec![b_address])).unwrap();
    let (hostile_net, mut hostile_events, _task) = hostile.split();
    let carol_id = carol.node_id().to_string();
    tokio::spawn(async move {
        while let Some(event) = hostile_events.recv().await {
            let NetEvent::Request { request, responder, .. } = event else { continue };
            let answer = match request {
                PeerRequest::LedgerHeads { .. } => PeerResponse::LedgerHeads {
                    heads: vec![LogHead {
                        author: carol_id.clone(),
                        seq: 0,
                        id: None,
                        fork: None,
                        checkpoint: None,
                    }],
                    more: false,
                },
                PeerRequest::LedgerEntries { .. } => PeerResponse::LedgerEntries {
                    entries: offered.iter().cloned().map(serde_bytes::ByteBuf::from).collect(),
                },
                _ => PeerResponse::Info(PeerInfo::default()),
            };
            let _ = responder.respond(answer).await;
        }
    });
    let from_hostile = next(&mut b, |e| match e {
        NodeEvent::Synced { from, new, unreadable } if from == mallory.node_id() => {
            Some((new, unreadable))
        }
        _ => None,
    })
    .await;
    // The relabelled entry and the flipped signature decode but fail the door; the junk is
    // unreadable. Nothing of carol's is stored.
    assert_eq!(from_hostile, (0, 1));
    assert_eq!(username(&b, carol.node_id()), None);
    let reopened = {
        let ledger = b.ledger();
        let ledger = ledger.lock().unwrap();
        ledger.heads(None, 100).0
    };
    let authors: BTreeSet<String> = reopened.into_iter().map(|h| h.author).collect();
    let expected: BTreeSet<String> =
        [&admin, &alice, &bob].iter().map(|i| i.node_id().to_string()).collect();
    assert_eq!(authors, expected);
    hostile_net.shutdown().await;
    a.stop().await;
    b.stop().await;
    // What B stored survives a restart, verified again on open.
    let ledger = Ledger::open(&b_db, genesis).unwrap();
    assert_eq!(ledger.verifier().account(alice.node_id()).username.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_node_mints_the_signup_bonus_and_it_arrives_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, dana) =
        (Identity::insecure_from_label("admin2"), Identity::insecure_from_label("dana"));
    let genesis = genesis(&admin);
    let (admin_db, dana_db) = (dir.path().join("admin.db"), dir.path().join("dana.db"));
    // Dana has just joined: her profile and nothing else.
    {
        let mut ledger = Ledger::open(&dana_db, genesis.clone()).unwrap();
        assert_eq!(ledger.insert(vec![profile(&dana, &genesis, "dana").0]).unwrap().new, 1);
    }
    let key = {
        let secret = admin.transport_secret();
        Arc::new(Identity::from_secrets(&secret, &[9; 32]).unwrap())
    };
    let authority = Authority { key, signup_bonus: 100, signups_per_minute: 10, invites: None };
    let mut mint = node_with(&admin, &genesis, &admin_db, vec![], Some(authority));
    let address = next(&mut mint, |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let mut newcomer = node(&dana, &genesis, &dana_db, vec![address]);
    let minted = next(&mut mint, |e| match e {
        NodeEvent::Minted { recipients, amount } => Some((recipients, amount)),
        _ => None,
    })
    .await;
    assert_eq!(minted, (vec![dana.node_id()], 100));
    let received = next(&mut newcomer, |e| match e {
        NodeEvent::Received { amounts, balance } => Some((amounts, balance)),
        _ => None,
    })
    .await;
    assert_eq!(received, (vec![100], 100));
    // Once only: the authority's log holds one signup mint for her, and her receipt reaches it.
    newcomer.stop().await;
    mint.stop().await;
    let ledger = Ledger::open(&admin_db, genesis.clone()).unwrap();
    let mints = ledger
        .verifier()
        .valid_entries(admin.node_id())
        .iter()
        .filter(|e| matches!(&e.body, Body::Mint(m) if m.recipient == dana.node_id()))
        .count();
    assert_eq!(mints, 1);
    let ledger = Ledger::open(&dana_db, genesis).unwrap();
    assert_eq!(ledger.verifier().account(dana.node_id()).balance.spendable.get(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_of_work_network_mints_only_for_the_askers_own_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, dana, mallory) = (
        Identity::insecure_from_label("admin3"),
        Identity::insecure_from_label("dana3"),
        Identity::insecure_from_label("mallory3"),
    );
    let genesis = genesis(&admin).with_signup_cost(SignupCost::Work { bits: 10 }).unwrap();
    let db = |name: &str| dir.path().join(format!("{name}.db"));
    for (who, name) in [(&dana, "dana"), (&mallory, "mallory")] {
        let mut ledger = Ledger::open(&db(name), genesis.clone()).unwrap();
        assert_eq!(ledger.insert(vec![profile(who, &genesis, name).0]).unwrap().new, 1);
    }
    let key = Arc::new(Identity::from_secrets(&admin.transport_secret(), &[9; 32]).unwrap());
    let authority = Authority { key, signup_bonus: 100, signups_per_minute: 10, invites: None };
    let mut mint = node_with(&admin, &genesis, &db("admin"), vec![], Some(authority));
    let address = next(&mut mint, |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    // Mallory asks by hand, with everything but her own stamp.
    let mut hostile = node(&mallory, &genesis, &db("mallory"), vec![address.clone()]);
    next(&mut hostile, |e| matches!(e, NodeEvent::PeerConnected { .. }).then_some(())).await;
    let dana_stamp = genesis.solve_work(&dana.node_id(), 0, |_| false).unwrap();
    let mut wrong = 0;
    while genesis.check_work(&mallory.node_id(), wrong) {
        wrong += 1;
    }
    let refused = |code: &str, message: &str| {
        PeerResponse::Error(PeerError { code: code.into(), message: message.into() })
    };
    let does_not_check = refused("refused", "the proof of work does not check");
    for (proof, answer) in [
        (SignupProof::Work { nonce: wrong }, &does_not_check),
        // Dana's stamp is Dana's: bound to the identity the connection proves.
        (SignupProof::Work { nonce: dana_stamp }, &does_not_check),
        (SignupProof::None, &refused("refused", "this network's signup cost is `pow`")),
        (
            SignupProof::Invite { code: "inv-00".into() },
            &refused("refused", "this network's signup cost is `pow`"),
        ),
    ] {
        let got = hostile.net().request(admin.node_id(), PeerRequest::Signup { proof }).await;
        assert_eq!(got.as_ref(), Ok(answer));
    }
    // A node that is no authority's says so.
    let hostile_address = hostile.net().listen_addresses().await.unwrap().remove(0);
    let mut bystander = node(&dana, &genesis, &db("bystander"), vec![hostile_address]);
    next(&mut bystander, |e| matches!(e, NodeEvent::PeerConnected { .. }).then_some(())).await;
    let proof = SignupProof::Work { nonce: 0 };
    let got = hostile.net().request(dana.node_id(), PeerRequest::Signup { proof }).await;
    assert_eq!(got, Ok(refused("unsupported", "this is not a mint authority's node")));
    bystander.stop().await;

    // Dana's node shows her stamp by itself and receives the bonus; Mallory's profile, which
    // the authority holds, earns nothing.
    let proof = Some(SignupProof::Work { nonce: dana_stamp });
    let mut newcomer = signing_up(&dana, &genesis, &db("dana"), vec![address], None, proof);
    let answered = next(&mut newcomer, |e| match e {
        NodeEvent::SignupAnswered { authority, admitted } => Some((authority, admitted)),
        _ => None,
    })
    .await;
    assert_eq!(answered, (admin.node_id(), Ok(())));
    let minted = next(&mut mint, |e| match e {
        NodeEvent::Minted { recipients, .. } => Some(recipients),
        _ => None,
    })
    .await;
    assert_eq!(minted, vec![dana.node_id()]);
    let received = next(&mut newcomer, |e| match e {
        NodeEvent::Received { balance, .. } => Some(balance),
        _ => None,
    })
    .await;
    assert_eq!(received, 100);
    newcomer.stop().await;
    hostile.stop().await;
    mint.stop().await;
    let ledger = Ledger::open(&db("admin"), genesis).unwrap();
    assert_eq!(ledger.verifier().account(mallory.node_id()).username.as_deref(), Some("mallory"));
    let mints: Vec<NodeId> = ledger
        .verifier()
        .valid_entries(admin.node_id())
        .iter()
        .filter_map(|e| match &e.body {
            Body::Mint(m) => Some(m.recipient),
            _ => None,
        })
        .collect();
    assert_eq!(mints, [dana.node_id()]);
}

/// `who`'s log: a profile, then one more entry per reason (positions 1, 2, …).
fn forked(mallory: &Identity, genesis: &Genesis, reasons: &[&str]) -> Vec<Entry> {
    let (first, mut writer) = profile(mallory, genesis, "mallory");
    let mut entries = vec![first];
    for (i, reason) in reasons.iter().enumerate() {
        let body = Body::Profile(Profile {
            username: format!("{reason}{i}"),
            sealing_key: mallory.sealing_public(),
            created_at: T,
        });
        entries.push(writer.append(T + 1, body));
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocation_is_found_across_nodes_and_reaches_latecomers() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, mallory) =
        (Identity::insecure_from_label("admin4"), Identity::insecure_from_label("mallory4"));
    let (alice, bob, carol) = (
        Identity::insecure_from_label("alice4"),
        Identity::insecure_from_label("bob4"),
        Identity::insecure_from_label("carol4"),
    );
    let genesis = genesis(&admin);
    let db = |name: &str| dir.path().join(format!("{name}.db"));
    // Mallory showed Alice one log and Bob another: the same profile, then different entries
    // at position 1; Alice's goes on to position 2, so Bob's catch-up finds entries that do
    // not follow his and must look back for the fork.
    let to_alice = forked(&mallory, &genesis, &["left", "left"]);
    let to_bob = forked(&mallory, &genesis, &["right"]);
    assert_eq!(to_alice[0], to_bob[0]);
    for (name, entries) in [("alice", to_alice.clone()), ("bob", to_bob.clone())] {
        let mut ledger = Ledger::open(&db(name), genesis.clone()).unwrap();
        assert_eq!(ledger.insert(entries.clone()).unwrap().new, entries.len() as u64);
    }
    let mut a = node(&alice, &genesis, &db("alice"), vec![]);
    let address = next(&mut a, |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let mut b = node(&bob, &genesis, &db("bob"), vec![address.clone()]);
    // Both find it: Bob looking back from Alice's position 2, Alice comparing Bob's head id at
    // position 1 with hers.
    for side in [&mut a, &mut b] {
        let found = next(side, |e| match e {
            NodeEvent::Equivocated { author } => Some(author),
            _ => None,
        })
        .await;
        assert_eq!(found, mallory.node_id());
    }
    // Carol arrives later, holding nothing of Mallory's (the gossiped proof went by before
    // her): Alice's heads say where the fork lies, and her catch-up fetches both sides.
    let mut c = node(&carol, &genesis, &db("carol"), vec![address]);
    let found = next(&mut c, |e| match e {
        NodeEvent::Equivocated { author } => Some(author),
        _ => None,
    })
    .await;
    assert_eq!(found, mallory.node_id());
    for node in [a, b, c] {
        node.stop().await;
    }
    for name in ["alice", "bob", "carol"] {
        let ledger = Ledger::open(&db(name), genesis.clone()).unwrap();
        let account = ledger.verifier().account(mallory.node_id());
        assert!(account.frozen, "{name}: {account:?}");
        assert_eq!(ledger.verifier().equivocations().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_proof_of_equivocation_freezes_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, mallory, alice, eve) = (
        Identity::insecure_from_label("admin5"),
        Identity::insecure_from_label("mallory5"),
        Identity::insecure_from_label("alice5"),
        Identity::insecure_from_label("eve5"),
    );
    let genesis = genesis(&admin);
    let db = |name: &str| dir.path().join(format!("{name}.db"));
    let honest = forked(&alice, &genesis, &["a"]);
    {
        let mut ledger = Ledger::open(&db("mallory"), genesis.clone()).unwrap();
        ledger.insert(honest.clone()).unwrap();
    }
    let mut a = node(&mallory, &genesis, &db("mallory"), vec![]);
    let address = next(&mut a, |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let mut e = node(&eve, &genesis, &db("eve"), vec![address]);
    // Eve's node holds Alice's log after catching up.
    next(&mut e, |ev| matches!(ev, NodeEvent::Synced { new: 2, .. }).then_some(())).await;
    // Mallory gossips "proofs" against Alice: her real entry at position 1 beside a copy with
    // one byte changed (its signature no longer checks), the same entry twice, and entries of
    // two positions.
    let real = honest[1].bytes();
    let mut forged = real.clone();
    let at = forged.windows(2).position(|w| w == b"a0").unwrap();
    forged[at] = b'b';
    assert!(Entry::decode(&forged).is_ok_and(|e| e.seq == 1 && e.author == alice.node_id()));
    for pair in [
        vec![real.clone(), forged],
        vec![real.clone(), real.clone()],
        vec![real.clone(), honest[0].bytes()],
    ] {
        let message = Gossip::Equivocation {
            entries: pair.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        };
        while a.net().publish(ash_net::Topic::LedgerHeads, &message).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Nothing comes of it; a real catch-up afterwards still works.
    let quiet = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(NodeEvent::Equivocated { author }) = e.next_event().await {
                return author;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
    {
        let ledger = e.ledger();
        let ledger = ledger.lock().unwrap();
        assert!(!ledger.verifier().account(alice.node_id()).frozen);
        assert!(ledger.verifier().equivocations().is_empty());
    }
    // Had Alice really signed two entries at position 1, the same road carries the proof.
    let other = forked(&alice, &genesis, &["z"]).remove(1);
    let message = Gossip::Equivocation {
        entries: vec![serde_bytes::ByteBuf::from(real), serde_bytes::ByteBuf::from(other.bytes())],
    };
    a.net().publish(ash_net::Topic::LedgerHeads, &message).await.unwrap();
    let found = next(&mut e, |ev| match ev {
        NodeEvent::Equivocated { author } => Some(author),
        _ => None,
    })
    .await;
    assert_eq!(found, alice.node_id());
    a.stop().await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_written_beside_a_node_reach_every_peer_and_forged_ones_none() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, alice, bob, carol, mallory) = (
        Identity::insecure_from_label("admin6"),
        Identity::insecure_from_label("alice6"),
        Identity::insecure_from_label("bob6"),
        Identity::insecure_from_label("carol6"),
        Identity::insecure_from_label("mallory6"),
    );
    let genesis = genesis(&admin);
    let db = |name: &str| dir.path().join(format!("{name}.db"));
    {
        let mut ledger = Ledger::open(&db("alice"), genesis.clone()).unwrap();
        ledger.insert(forked(&alice, &genesis, &["a"])).unwrap();
    }
    let mut a = node(&alice, &genesis, &db("alice"), vec![]);
    let address = next(&mut a, |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let mut b = node(&bob, &genesis, &db("bob"), vec![address.clone()]);
    next(&mut b, |e| matches!(e, NodeEvent::Synced { new: 2, .. }).then_some(())).await;

    // Mallory, no witness, gossips a checkpoint of Alice's log she signed herself.
    let hostile = Net::start(&mallory, net_config(&genesis, vec![address.clone()])).unwrap();
    let (hostile_net, _hostile_events, _task) = hostile.split();
    let now = T + 10;
    let mut store = ash_store::LedgerDb::open(&db("alice")).unwrap();
    let mut verifier = store.load(genesis.clone(), now).unwrap();
    let unsigned = verifier.checkpoint(alice.node_id(), now).unwrap();
    let mut forged = unsigned.clone();
    forged.sign(&mallory);
    let message = Gossip::Checkpoint { bytes: serde_bytes::ByteBuf::from(forged.to_bytes()) };
    while hostile_net.publish(ash_net::Topic::LedgerHeads, &message).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The witness signs one beside Alice's running node (as `ash admin checkpoint` would):
    // her node takes it from the file and gossips it; Bob's takes it, and only it.
    let mut signed = unsigned;
    signed.sign(&admin);
    verifier.add_checkpoint(signed.clone()).unwrap();
    store.save(&mut verifier, now).unwrap();
    drop(store);
    for side in [&mut a, &mut b] {
        let got = next(side, |e| match e {
            NodeEvent::Checkpoint { subject, seq } => Some((subject, seq)),
            _ => None,
        })
        .await;
        assert_eq!(got, (alice.node_id(), 1));
    }
    // Carol, arriving later, takes it by catch-up: Alice's heads name its position.
    let mut c = node(&carol, &genesis, &db("carol"), vec![address]);
    let got = next(&mut c, |e| match e {
        NodeEvent::Checkpoint { subject, seq } => Some((subject, seq)),
        _ => None,
    })
    .await;
    assert_eq!(got, (alice.node_id(), 1));
    hostile_net.shutdown().await;
    for node in [a, b, c] {
        node.stop().await;
    }
    for name in ["bob", "carol"] {
        let ledger = Ledger::open(&db(name), genesis.clone()).unwrap();
        assert_eq!(ledger.verifier().checkpoint_of(alice.node_id()), Some(&signed), "{name}");
    }
}
