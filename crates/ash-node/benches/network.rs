//! The network's figures, on loopback: how long the first peer takes to find (through a
//! bootstrap address, and by mDNS where multicast works), and how fast a ledger replicates
//! between two nodes (verified entries stored per second).
//!
//! `cargo bench -p ash-node --bench network` (README "Benchmarks").

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![allow(clippy::cast_precision_loss, reason = "rates for people")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash_identity::Identity;
use ash_ledger::{Body, Genesis, LogWriter, Profile};
use ash_net::{NetConfig, NetworkId};
use ash_node::{Ledger, Node, NodeConfig, NodeEvent};
use ash_protocol::PeerInfo;

const T: u64 = 1_765_000_000_000;
const RUNS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let admin = Identity::insecure_from_label("bench admin");
        let genesis = Genesis::new("bench", T, BTreeSet::from([admin.node_id()])).unwrap();
        // `-- NAME…` runs only those parts: bootstrap, mdns, long-logs, short-logs.
        let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
        if run("bootstrap") {
            first_peer(&genesis, false).await;
        }
        if run("mdns") {
            first_peer(&genesis, true).await;
        }
        if run("long-logs") {
            replication(&genesis, 100, 500).await;
        }
        if run("short-logs") {
            replication(&genesis, 10_000, 5).await;
        }
    });
}

fn identity(label: &str) -> Arc<Identity> {
    Arc::new(Identity::insecure_from_label(label))
}

fn config(
    genesis: &Genesis,
    ledger: &std::path::Path,
    bootstrap: Vec<String>,
    mdns: bool,
) -> NodeConfig {
    let mut net = NetConfig::new(NetworkId(genesis.id().0), "ash/bench".into());
    net.listen = vec![if mdns { "/ip4/0.0.0.0/tcp/0" } else { "/ip4/127.0.0.1/tcp/0" }.into()];
    net.bootstrap = bootstrap;
    net.mdns = mdns;
    NodeConfig {
        net,
        ledger: ledger.to_path_buf(),
        genesis: genesis.clone(),
        info: PeerInfo::default(),
        authority: None,
        signup: None,
        writer: true,
        jobs_dir: ledger.with_extension("jobs"),
        serve: None,
    }
}

async fn wait_for<T>(
    node: &mut Node,
    within: Duration,
    mut pick: impl FnMut(NodeEvent) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(within, async {
        loop {
            if let Some(found) = pick(node.next_event().await?) {
                return Some(found);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// From starting a node to its first peer of the network, with the other node already up.
async fn first_peer(genesis: &Genesis, mdns: bool) {
    let mut times = Vec::new();
    for run in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Node::start(
            identity(&format!("a{run}")),
            config(genesis, &dir.path().join("a.db"), vec![], mdns),
        )
        .unwrap();
        let address = wait_for(&mut a, Duration::from_secs(10), |e| match e {
            NodeEvent::Listening { address } => Some(address),
            _ => None,
        })
        .await
        .unwrap();
        let bootstrap = if mdns { vec![] } else { vec![address] };
        let started = Instant::now();
        let mut b = Node::start(
            identity(&format!("b{run}")),
            config(genesis, &dir.path().join("b.db"), bootstrap, mdns),
        )
        .unwrap();
        let found = wait_for(&mut b, Duration::from_secs(10), |e| match e {
            NodeEvent::PeerConnected { .. } => Some(()),
            _ => None,
        })
        .await;
        if found.is_some() {
            times.push(started.elapsed());
        }
        b.stop().await;
        a.stop().await;
    }
    let what = if mdns {
        "first peer by mDNS (target ≤ 1 s)"
    } else {
        "first peer through a bootstrap address (target ≤ 3 s)"
    };
    if times.is_empty() {
        println!("{what}: not found in 10 s (no multicast here?)");
    } else {
        report(what, &times);
    }
}

/// `authors` logs of `per_author` entries on one node; a second node connects and catches up.
async fn replication(genesis: &Genesis, authors: usize, per_author: usize) {
    let dir = tempfile::tempdir().unwrap();
    let a_db = dir.path().join("a.db");
    let total = (authors * per_author) as u64;
    {
        let mut ledger = Ledger::open(&a_db, genesis.clone()).unwrap();
        for n in 0..authors {
            let who = Identity::insecure_from_label(&format!("author {n}"));
            let mut writer = LogWriter::new(&who, genesis.id());
            let entries: Vec<_> = (0..per_author)
                .map(|i| {
                    let profile = Profile {
                        username: format!("user{n}x{i}"),
                        sealing_key: who.sealing_public(),
                        created_at: T,
                    };
                    writer.append(T + i as u64, Body::Profile(profile))
                })
                .collect();
            ledger.insert(entries).unwrap();
        }
    }
    let mut a = Node::start(identity("holder"), config(genesis, &a_db, vec![], false)).unwrap();
    let address = wait_for(&mut a, Duration::from_secs(10), |e| match e {
        NodeEvent::Listening { address } => Some(address),
        _ => None,
    })
    .await
    .unwrap();
    let started = Instant::now();
    let mut b = Node::start(
        identity("fetcher"),
        config(genesis, &dir.path().join("b.db"), vec![address], false),
    )
    .unwrap();
    let mut stored = 0;
    while stored < total {
        match wait_for(&mut b, Duration::from_secs(120), |e| match e {
            NodeEvent::Synced { new, .. } => Some(new),
            _ => None,
        })
        .await
        {
            Some(new) => stored += new,
            None => break,
        }
    }
    let elapsed = started.elapsed();
    println!(
        "replication of {total} entries ({authors} logs): {stored} stored in {:.2} s, {:.0} verified entries/s (target ≥ 50,000)",
        elapsed.as_secs_f64(),
        stored as f64 / elapsed.as_secs_f64()
    );
    b.stop().await;
    a.stop().await;
}

fn report(what: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: min {:.0} ms, median {:.0} ms, max {:.0} ms ({} runs)",
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1]),
        sorted.len()
    );
}
