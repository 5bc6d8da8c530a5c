//! `ash node` and `ash peers`: real processes of one network on loopback.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{stderr, stdout};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn ash(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ash"));
    command.env_clear().env("ASH_HOME", home).env("HOME", home).env("PATH", PATH).current_dir(home);
    command
}

/// `ash node` on loopback, and the address it printed first.
fn start_node(home: &Path) -> (Child, BufReader<std::process::ChildStdout>, String) {
    start(home, &["node"])
}

/// `ash <command…>` as a node on loopback, and the address it printed first.
fn start(home: &Path, command: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = ash(home)
        .args(command)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    let event: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    assert_eq!(event["event"], "listening", "{event}");
    let address = event["address"].as_str().unwrap().to_owned();
    (child, lines, address)
}

fn stop(mut child: Child, mut lines: BufReader<std::process::ChildStdout>) -> Vec<Value> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    rest.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_peer_is_found_through_a_bootstrap_address_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("lan.genesis.toml");
    crate::ledger::new_network(&root.path().join("admin"), "lan", &genesis);
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    let alice_id = crate::ledger::join(&alice, &genesis, "alice");
    crate::ledger::join(&bob, &genesis, "bob");

    let (node, lines, address) = start_node(&alice);
    assert!(
        address.starts_with("/ip4/127.0.0.1/tcp/") && address.contains("/p2p/12D3KooW"),
        "{address}"
    );
    let out = ash(&bob)
        .args(["peers", "--bootstrap", &address, "--no-mdns", "--json", "--wait", "10s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(listed["discoveryMs"].as_u64().is_some(), "{listed}");
    let peer = &listed["peers"][0];
    // Bob's node caught up with Alice's ledger: her name and balance are verified, not claimed.
    assert_eq!(
        (peer["username"].as_str(), peer["balance"].as_u64()),
        (Some("alice"), Some(0)),
        "{listed}"
    );
    assert_eq!(
        (
            peer["id"].as_str(),
            peer["version"].as_str(),
            peer["serving"].as_bool(),
            peer["foundBy"].as_str(),
            listed["peers"].as_array().map(Vec::len)
        ),
        (
            Some(alice_id.as_str()),
            Some(concat!("ash/", env!("CARGO_PKG_VERSION"))),
            Some(false),
            Some("dialled"),
            Some(1)
        )
    );

    // Alice's node saw Bob come and go, and stops cleanly on SIGTERM.
    let events = stop(node, lines);
    // (Whether Alice's catch-up with Bob ended before he left depends on timing.)
    let kinds: Vec<&str> =
        events.iter().filter_map(|e| e["event"].as_str()).filter(|k| *k != "synced").collect();
    assert_eq!(kinds, ["connected", "disconnected", "stopped"], "{events:?}");
    assert_eq!(events[0]["foundBy"], "inbound");
}

#[test]
fn a_node_of_another_network_is_not_listed() {
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (root.path().join("one.toml"), root.path().join("two.toml"));
    crate::ledger::new_network(&root.path().join("admin1"), "one", &one);
    crate::ledger::new_network(&root.path().join("admin2"), "two", &two);
    let (alice, carol) = (root.path().join("alice"), root.path().join("carol"));
    crate::ledger::join(&alice, &one, "alice");
    crate::ledger::join(&carol, &two, "carol");
    let (node, lines, address) = start_node(&alice);
    let out = ash(&carol)
        .args(["peers", "--bootstrap", &address, "--no-mdns", "--wait", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "no peers of network two found in 2 s (mDNS off, 1 bootstrap address(es))\n"
    );
    let events = stop(node, lines);
    assert_eq!(events[0]["event"], "refused", "{events:?}");
    assert!(events[0]["reason"].as_str().unwrap().ends_with("another network"), "{events:?}");
}

#[test]
fn the_signup_bonus_arrives_by_itself_from_the_authority_node() {
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    let admin = root.path().join("admin");
    crate::ledger::new_network(&admin, "net", &genesis);
    let (node, lines, address) = start(&admin, &["admin", "serve"]);
    let dana = root.path().join("dana");
    std::fs::create_dir_all(&dana).unwrap();
    let out = ash(&dana)
        .args(["join", "--genesis", genesis.to_str().unwrap(), "-u", "dana"])
        .args(["--bootstrap", &address, "--no-mdns", "--wait", "20s", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let joined: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (joined["signupReceived"].as_u64(), joined["balance"].as_u64()),
        (Some(100), Some(100)),
        "{joined}"
    );
    // The receipt is in Dana's own ledger.
    let status = ash(&dana).args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["balance"]["spendable"].as_u64(), Some(100), "{status}");
    // The authority's node said whom it minted for, once.
    let events = stop(node, lines);
    let minted: Vec<&Value> = events.iter().filter(|e| e["event"] == "minted").collect();
    assert_eq!(minted.len(), 1, "{events:?}");
    assert_eq!(
        (minted[0]["to"].as_str(), minted[0]["amount"].as_u64()),
        (joined["id"].as_str(), Some(100))
    );
}
