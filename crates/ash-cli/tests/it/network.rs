//! `ash node` and `ash peers`: real processes of one network on loopback.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{stderr, stdout};

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(crate) fn ash(home: &Path) -> Command {
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

pub(crate) fn stop(
    mut child: Child,
    mut lines: BufReader<std::process::ChildStdout>,
) -> Vec<Value> {
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

    // `ash status` tells of Alice's running node; Bob's, with none running, looks itself.
    let status = ash(&alice).args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["node"]["node"], "running", "{status}");
    assert_eq!(status["node"]["addresses"][0].as_str(), Some(address.as_str()), "{status}");
    let probe = ash(&bob)
        .args(["status", "--network", "--bootstrap", &address, "--no-mdns", "--json"])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(0), "{}", stderr(&probe));
    let probe: Value = serde_json::from_str(&stdout(&probe)).unwrap();
    assert_eq!(
        (probe["node"]["node"].as_str(), probe["node"]["peers"].as_u64()),
        (Some("probe"), Some(1)),
        "{probe}"
    );
    let alone = ash(&bob).args(["status", "--json"]).output().unwrap();
    let alone: Value = serde_json::from_str(&stdout(&alone)).unwrap();
    assert_eq!(alone["node"], serde_json::json!({ "node": "not running" }));

    // Alice's node saw Bob come and go, and stops cleanly on SIGTERM.
    let events = stop(node, lines);
    // (Whether Alice's catch-up with Bob ended before he left, and whether Bob's probe of
    // her reachability came back, depends on timing.)
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|k| !["synced", "reachability"].contains(k))
        .collect();
    // (Bob came twice: `ash peers`, then `ash status --network`.)
    assert_eq!(
        kinds,
        ["connected", "disconnected", "connected", "disconnected", "stopped"],
        "{events:?}"
    );
    // Stopped, the node leaves no state behind.
    assert!(!alice.join("run/node.json").exists());
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
    std::fs::create_dir_all(&admin).unwrap();
    // `ash network create` makes this machine the authority; the bonus is the network's rule.
    let out = ash(&admin)
        .args([
            "network",
            "create",
            "net",
            "--signup-bonus",
            "250",
            "-o",
            genesis.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let created: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(created["signupBonus"].as_u64(), Some(250), "{created}");
    // A genesis file changed after the fact is refused, naming the field.
    let tampered = root.path().join("tampered.toml");
    let text = std::fs::read_to_string(&genesis).unwrap();
    std::fs::write(&tampered, text.replace("signup_bonus = 250", "signup_bonus = 999999")).unwrap();
    let eve = root.path().join("eve");
    std::fs::create_dir_all(&eve).unwrap();
    let out = ash(&eve)
        .args(["join", "--network", tampered.to_str().unwrap(), "-u", "eve", "--offline"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "genesis: `id` {} does not match the file's contents",
            created["id"].as_str().unwrap()
        )),
        "{}",
        stderr(&out)
    );

    let (node, lines, address) = start(&admin, &["admin", "serve"]);
    let dana = root.path().join("dana");
    std::fs::create_dir_all(&dana).unwrap();
    let out = ash(&dana)
        .args(["join", "--network", genesis.to_str().unwrap(), "-u", "dana"])
        .args(["--bootstrap", &address, "--no-mdns", "--wait", "20s", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let joined: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (joined["signupReceived"].as_u64(), joined["balance"].as_u64()),
        (Some(250), Some(250)),
        "{joined}"
    );
    // The receipt is in Dana's own ledger.
    let status = ash(&dana).args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["balance"]["spendable"].as_u64(), Some(250), "{status}");
    // The authority's node said whom it minted for, once.
    let events = stop(node, lines);
    let minted: Vec<&Value> = events.iter().filter(|e| e["event"] == "minted").collect();
    assert_eq!(minted.len(), 1, "{events:?}");
    assert_eq!(
        (minted[0]["to"].as_str(), minted[0]["amount"].as_u64()),
        (joined["id"].as_str(), Some(250))
    );
}

/// `ash network create net <extra…>` in `admin`, writing `genesis`; its JSON.
fn create_network(admin: &Path, genesis: &Path, extra: &[&str]) -> Value {
    std::fs::create_dir_all(admin).unwrap();
    let out = ash(admin)
        .args(["network", "create", "net", "-o", genesis.to_str().unwrap(), "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// `ash join` of `home` as `name` through `address`, with `extra` arguments: exit code and
/// JSON (or stderr when there is none).
fn join_online(
    home: &Path,
    genesis: &Path,
    name: &str,
    address: &str,
    extra: &[&str],
) -> (Option<i32>, Value) {
    std::fs::create_dir_all(home).unwrap();
    let out = ash(home)
        .args(["join", "--network", genesis.to_str().unwrap(), "-u", name])
        .args(["--bootstrap", address, "--no-mdns", "--json"])
        .args(if extra.contains(&"--wait") { &[][..] } else { &["--wait", "20s"][..] })
        .args(extra)
        .output()
        .unwrap();
    let value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|_| Value::from(stderr(&out)));
    (out.status.code(), value)
}

#[test]
fn an_invite_network_mints_once_per_code_and_refuses_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    let admin = root.path().join("admin");
    let created = create_network(&admin, &genesis, &["--signup-cost", "invite"]);
    assert_eq!(created["signupCost"], "invite", "{created}");
    // Codes are issued before and while the node runs; the running node sees both.
    let codes = |n: &str| -> Vec<String> {
        let out = ash(&admin).args(["admin", "invite", "-n", n, "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let issued: Value = serde_json::from_str(&stdout(&out)).unwrap();
        issued["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
    };
    let first = codes("1");
    let (node, lines, address) = start(&admin, &["admin", "serve"]);
    let second = codes("1");
    assert!(first[0].starts_with("inv-") && first[0].len() == 36, "{first:?}");
    // The book keeps hashes, not codes.
    let book = std::fs::read_to_string(admin.join("admin/invites")).unwrap();
    assert!(!book.contains(&first[0][4..]), "{book}");

    // Without a code, nothing is created.
    let dana = root.path().join("dana");
    let (code, out) = join_online(&dana, &genesis, "dana", &address, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.as_str().unwrap().contains("admits by invitation"), "{out}");
    assert!(!dana.join("keys/identity.key").exists());
    // A made-up code: joined, but refused, and told why.
    let (code, out) = join_online(
        &dana,
        &genesis,
        "dana",
        &address,
        &["--invite", "inv-00000000000000000000000000000000"],
    );
    assert_eq!(
        (code, out["signupRefused"].as_str(), out["balance"].as_u64()),
        (Some(1), Some("this authority issued no such invite code"), Some(0)),
        "{out}"
    );
    // The real one, asked again by the same identity: admitted, and the bonus arrives.
    let (code, out) = join_online(&dana, &genesis, "dana", &address, &["--invite", &first[0]]);
    assert_eq!((code, out["signupReceived"].as_u64()), (Some(0), Some(100)), "{out}");
    // The same code for someone else is refused; the second code works for them.
    let erin = root.path().join("erin");
    let (code, out) = join_online(&erin, &genesis, "erin", &address, &["--invite", &first[0]]);
    assert_eq!(
        (code, out["signupRefused"].as_str()),
        (Some(1), Some("this invite code was already used by another identity")),
        "{out}"
    );
    let (code, out) = join_online(&erin, &genesis, "erin", &address, &["--invite", &second[0]]);
    assert_eq!((code, out["signupReceived"].as_u64()), (Some(0), Some(100)), "{out}");

    let events = stop(node, lines);
    let minted: Vec<&str> =
        events.iter().filter(|e| e["event"] == "minted").filter_map(|e| e["to"].as_str()).collect();
    assert_eq!(minted.len(), 2, "one mint per redeemed code: {events:?}");
    // Issuing on a network without invites is refused.
    let other = root.path().join("other");
    create_network(&other, &root.path().join("free.genesis.toml"), &[]);
    let out = ash(&other).args(["admin", "invite"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("has signup cost `none`"), "{}", stderr(&out));
}

#[test]
fn a_proof_of_work_network_mints_for_a_stamp_and_not_without() {
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    let admin = root.path().join("admin");
    let created = create_network(
        &admin,
        &genesis,
        &["--signup-cost", "pow", "--pow-bits", "12", "--price", "sonnet=5", "--price", "local=1"],
    );
    assert_eq!(
        (created["signupCost"].as_str(), created["prices"].clone()),
        (Some("pow"), serde_json::json!({ "local": 1, "sonnet": 5 })),
        "{created}"
    );
    let text = std::fs::read_to_string(&genesis).unwrap();
    assert!(text.contains("signup_cost = \"pow\"\nsignup_pow_bits = 12\n"), "{text}");
    let (node, lines, address) = start(&admin, &["admin", "serve"]);
    // Mallory joins offline and throws her stamp away: her node asks nothing and gets
    // nothing, though it meets the authority's node, which takes in her profile.
    let mallory = root.path().join("mallory");
    crate::ledger::join(&mallory, &genesis, "mallory");
    std::fs::remove_file(mallory.join("keys/signup")).unwrap();
    let (mallory_node, mallory_lines, _) = start(&mallory, &["node", "--bootstrap", &address]);
    // Frank's join works out the stamp and receives the bonus.
    let frank = root.path().join("frank");
    let (code, out) = join_online(&frank, &genesis, "frank", &address, &[]);
    assert_eq!(
        (code, out["signupReceived"].as_u64(), out["signupCost"].as_str()),
        (Some(0), Some(100), Some("pow")),
        "{out}"
    );
    let mallory_events = stop(mallory_node, mallory_lines);
    assert!(mallory_events.iter().any(|e| e["event"] == "connected"), "{mallory_events:?}");
    assert!(!mallory_events.iter().any(|e| e["event"] == "received"), "{mallory_events:?}");
    let events = stop(node, lines);
    let minted: Vec<&str> =
        events.iter().filter(|e| e["event"] == "minted").filter_map(|e| e["to"].as_str()).collect();
    assert_eq!(minted, [out["id"].as_str().unwrap()], "{events:?}");
}

/// Machines in network namespaces of their own, joined by veth pairs; removed when dropped.
pub(crate) struct Lan {
    names: Vec<String>,
}

/// Runs `ip <args>`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Lan {
    /// `machines` namespaces named after `tag`, or `None` without root or ip(8).
    fn machines(tag: &str, machines: usize) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() || Command::new("ip").arg("-V").output().is_err() {
            return None;
        }
        let tag = format!("ash{}{tag}", std::process::id());
        let names: Vec<String> = (0..machines).map(|n| format!("{tag}m{n}")).collect();
        let lan = Self { names };
        for name in &lan.names {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        Some(lan)
    }

    /// A cable from machine `a` (device `dev_a`, address `addr_a`) to machine `b`.
    fn cable(
        &self,
        (a, dev_a, addr_a): (usize, &str, &str),
        (b, dev_b, addr_b): (usize, &str, &str),
    ) {
        let (na, nb) = (&self.names[a], &self.names[b]);
        ip(&[
            "link", "add", dev_a, "netns", na, "type", "veth", "peer", "name", dev_b, "netns", nb,
        ]);
        for (name, dev, addr) in [(na, dev_a, addr_a), (nb, dev_b, addr_b)] {
            ip(&["-n", name, "addr", "add", addr, "dev", dev]);
            ip(&["-n", name, "link", "set", dev, "up"]);
        }
    }

    /// Two machines on one LAN: `10.77.<subnet>.1` and `.2`.
    pub(crate) fn new(subnet: u8) -> Option<Self> {
        let lan = Self::machines(&format!("n{subnet}"), 2)?;
        lan.cable(
            (0, "va", &format!("10.77.{subnet}.1/24")),
            (1, "vb", &format!("10.77.{subnet}.2/24")),
        );
        Some(lan)
    }

    /// Machine 0 on `10.77.<subnet>.0/24` and machine 2 on `10.78.<subnet>.0/24`, both
    /// cabled to machine 1 (`.254` on each). With `forwarding`, machine 1 routes between them;
    /// without, neither can reach the other at all.
    pub(crate) fn routed(subnet: u8, forwarding: bool) -> Option<Self> {
        let lan = Self::machines(&format!("r{subnet}"), 3)?;
        lan.cable(
            (0, "va", &format!("10.77.{subnet}.1/24")),
            (1, "ra", &format!("10.77.{subnet}.254/24")),
        );
        lan.cable(
            (2, "vb", &format!("10.78.{subnet}.1/24")),
            (1, "rb", &format!("10.78.{subnet}.254/24")),
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &lan.names[1], "sh", "-c"])
            .arg(format!("echo {} > /proc/sys/net/ipv4/ip_forward", if forwarding { 1 } else { 0 }))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if forwarding {
            ip(&[
                "-n",
                &lan.names[0],
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{subnet}.254"),
            ]);
            ip(&[
                "-n",
                &lan.names[2],
                "route",
                "add",
                "default",
                "via",
                &format!("10.78.{subnet}.254"),
            ]);
        }
        Some(lan)
    }

    /// `ash` run inside machine `n`.
    pub(crate) fn ash(&self, n: usize, home: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            // At most two minutes each: a test waiting for a line that never comes ends anyway.
            .args(["netns", "exec", &self.names[n], "timeout", "120", env!("CARGO_BIN_EXE_ash")])
            .env_clear()
            .env("ASH_HOME", home)
            .env("HOME", home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir(home);
        command
    }
}

impl Lan {
    /// `ash <args…> --port 0 --json` as a node in machine `n`, and its output lines.
    pub(crate) fn node(
        &self,
        n: usize,
        home: &Path,
        args: &[&str],
    ) -> (Child, BufReader<std::process::ChildStdout>) {
        let mut child = self
            .ash(n, home)
            .args(args)
            .args(["--port", "0", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        (child, lines)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

#[test]
fn two_machines_on_one_lan_find_each_other_by_mdns_with_no_configuration() {
    let Some(lan) = Lan::new(1) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("lan.genesis.toml");
    crate::ledger::new_network(&root.path().join("admin"), "lan", &genesis);
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    let alice_id = crate::ledger::join(&alice, &genesis, "alice");
    crate::ledger::join(&bob, &genesis, "bob");
    // Alice runs a node with no flags but a free port; Bob asks who is there.
    let (node, mut lines) = lan.node(0, &alice, &["node"]);
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert!(first.contains("\"listening\""), "{first}");
    // (mDNS answers on its own schedule; a busy machine may need another look.)
    let mut listed = Value::Null;
    for _ in 0..3 {
        let out = lan.ash(1, &bob).args(["peers", "--wait", "10s", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        listed = serde_json::from_str(&stdout(&out)).unwrap();
        if listed["peers"].as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
    }
    let peer = &listed["peers"][0];
    assert_eq!(
        (peer["id"].as_str(), peer["username"].as_str(), peer["foundBy"].as_str()),
        (Some(alice_id.as_str()), Some("alice"), Some("mdns")),
        "{listed}"
    );
    assert!(peer["addresses"].to_string().contains("10.77.1.1"), "{listed}");
    let events = stop(node, lines);
    assert_eq!(events.last().map(|e| e["event"].clone()), Some(Value::from("stopped")));
}

/// Reads `lines` until an event `pick` accepts, for at most `within`.
pub(crate) fn wait_event(
    lines: &mut BufReader<std::process::ChildStdout>,
    within: std::time::Duration,
    mut pick: impl FnMut(&Value) -> bool,
) -> Option<Value> {
    let deadline = std::time::Instant::now() + within;
    let mut line = String::new();
    while std::time::Instant::now() < deadline {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if let Ok(event) = serde_json::from_str::<Value>(&line)
            && pick(&event)
        {
            return Some(event);
        }
    }
    None
}

#[test]
fn a_partition_heals_and_the_ledgers_converge() {
    let Some(lan) = Lan::new(2) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    let admin = root.path().join("admin");
    let (authority_id, _) = crate::ledger::new_network(&admin, "net", &genesis);
    let (bob, carol) = (root.path().join("bob"), root.path().join("carol"));
    crate::ledger::join(&bob, &genesis, "bob");
    let carol_id = crate::ledger::join(&carol, &genesis, "carol");
    // The authority's node on one machine, Bob's on the other.
    let (mint, mut mint_lines) = lan.node(0, &admin, &["admin", "serve"]);
    let local = wait_event(&mut mint_lines, WAIT, |e| {
        e["event"] == "listening"
            && e["address"].as_str().is_some_and(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
    })
    .expect("the authority's node listens");
    let lan_address = wait_event(&mut mint_lines, WAIT, |e| {
        e["event"] == "listening"
            && e["address"].as_str().is_some_and(|a| a.starts_with("/ip4/10.77.2.1/tcp/"))
    })
    .expect("the authority's node listens on the LAN");
    // (Its address as well as mDNS: the test is about the partition, not discovery.)
    let (node, mut bob_lines) =
        lan.node(1, &bob, &["node", "--bootstrap", lan_address["address"].as_str().unwrap()]);
    wait_event(&mut bob_lines, WAIT, |e| e["event"] == "connected")
        .expect("Bob's node finds the authority's");

    // The link goes down; meanwhile Carol, on the authority's machine, gets her signup bonus.
    let link = |state: &str| {
        let out = Command::new("ip")
            .args(["-n", &lan.names[0], "link", "set", "va", state])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    link("down");
    let out = lan
        .ash(0, &carol)
        .args([
            "join",
            "--bootstrap",
            local["address"].as_str().unwrap(),
            "--no-mdns",
            "--wait",
            "20s",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let joined: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(joined["balance"].as_u64(), Some(100), "{joined}");

    // The link comes back: Bob's node learns Carol's profile and the authority's mint for her
    // (after Bob's own, minted when the nodes first met), verified. (Read from Bob's ledger file, which his node writes after every batch.)
    link("up");
    let rows_at_bob = |id: &str| -> Vec<(String, String)> {
        let out = ash(&bob).args(["history", id, "--json"]).output().unwrap();
        let rows: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
        rows.as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r["kind"].as_str().unwrap_or("").to_owned(),
                            r["verdict"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let converged = || {
        rows_at_bob(&carol_id).first().is_some_and(|(k, _)| k == "profile")
            && rows_at_bob(&authority_id).iter().filter(|(k, _)| k == "mint").count() == 2
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !converged() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    stop(node, bob_lines);
    stop(mint, mint_lines);
    let valid = |rows: Vec<(String, String)>| {
        rows.into_iter().filter(|(_, v)| v == "valid").map(|(k, _)| k).collect::<Vec<_>>()
    };
    assert_eq!(valid(rows_at_bob(&carol_id))[..1], ["profile".to_owned()]);
    assert_eq!(valid(rows_at_bob(&authority_id)), ["profile", "mint", "mint"]);
}

#[test]
fn a_node_killed_mid_run_restarts_on_an_intact_ledger_and_catches_up() {
    let Some(lan) = Lan::new(3) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    let admin = root.path().join("admin");
    crate::ledger::new_network(&admin, "net", &genesis);
    let bob = root.path().join("bob");
    let bob_id = crate::ledger::join(&bob, &genesis, "bob");
    let (mint, mut mint_lines) = lan.node(0, &admin, &["admin", "serve"]);
    let lan_address = wait_event(&mut mint_lines, WAIT, |e| {
        e["event"] == "listening"
            && e["address"].as_str().is_some_and(|a| a.starts_with("/ip4/10.77.3.1/tcp/"))
    })
    .expect("the authority's node listens on the LAN");
    let bootstrap = ["node", "--bootstrap", lan_address["address"].as_str().unwrap()];
    // Bob's node is killed outright once it has started taking in the network's ledger.
    let (mut node, mut lines) = lan.node(1, &bob, &bootstrap);
    wait_event(&mut lines, WAIT, |e| e["event"] == "connected")
        .expect("Bob's node finds the authority's");
    // (The ash process itself, not the `timeout` around it, which would leave it running.)
    let state: Value =
        serde_json::from_slice(&std::fs::read(bob.join("run/node.json")).unwrap()).unwrap();
    let pid = i32::try_from(state["pid"].as_u64().unwrap()).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    node.wait().unwrap();
    // Restarted, it opens what it stored (verified again) and gets the rest, its bonus too
    // (taken in before the kill or after the restart: either way it is in the ledger file).
    let (node, lines) = lan.node(1, &bob, &bootstrap);
    let spendable = || {
        let out = ash(&bob).args(["status", "--json"]).output().unwrap();
        serde_json::from_str::<Value>(&stdout(&out))
            .ok()
            .and_then(|s| s["balance"]["spendable"].as_u64())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while spendable() != Some(100) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    stop(node, lines);
    stop(mint, mint_lines);
    let status = ash(&bob).args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(
        (status["id"].as_str(), status["balance"]["spendable"].as_u64()),
        (Some(bob_id.as_str()), Some(100))
    );
    let verified = ash(&bob)
        .args(["ledger", "export", "-o", root.path().join("b.bundle").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
}

/// The first address `lines` says the node listens on that starts with `prefix`.
fn listening_at(lines: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let event = wait_event(lines, WAIT, |e| {
        e["event"] == "listening" && e["address"].as_str().is_some_and(|a| a.starts_with(prefix))
    });
    event.unwrap_or_else(|| panic!("no listen address starting with {prefix}"))["address"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_peer_behind_a_router_is_found_through_its_bootstrap_address() {
    let Some(lan) = Lan::routed(4, true) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    crate::ledger::new_network(&root.path().join("admin"), "net", &genesis);
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    let alice_id = crate::ledger::join(&alice, &genesis, "alice");
    crate::ledger::join(&bob, &genesis, "bob");
    // Alice on one subnet, Bob on the other, a router between: mDNS does not cross it, the
    // address does.
    let (a, mut alice_lines) = lan.node(0, &alice, &["node"]);
    let address = listening_at(&mut alice_lines, "/ip4/10.77.4.1/tcp/");
    let (b, mut bob_lines) = lan.node(2, &bob, &["node", "--bootstrap", &address]);
    let connected = wait_event(&mut bob_lines, WAIT, |e| e["event"] == "connected")
        .expect("Bob's node finds Alice's across the router");
    assert_eq!(
        (connected["peer"].as_str(), connected["foundBy"].as_str(), connected["relayed"].as_bool()),
        (Some(alice_id.as_str()), Some("dialled"), Some(false))
    );
    // And takes in her ledger: her profile.
    let synced = wait_event(&mut bob_lines, WAIT, |e| e["event"] == "synced")
        .expect("Bob's node catches up with Alice's");
    assert_eq!(synced["peer"].as_str(), Some(alice_id.as_str()), "{synced}");
    stop(b, bob_lines);
    stop(a, alice_lines);
}

#[test]
fn a_relay_carries_two_peers_that_cannot_reach_each_other() {
    let Some(lan) = Lan::routed(5, false) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    crate::ledger::new_network(&root.path().join("admin"), "net", &genesis);
    let (alice, relay, bob) =
        (root.path().join("alice"), root.path().join("relay"), root.path().join("bob"));
    let alice_id = crate::ledger::join(&alice, &genesis, "alice");
    crate::ledger::join(&relay, &genesis, "relay");
    let bob_id = crate::ledger::join(&bob, &genesis, "bob");
    // The relay sits on both subnets; Alice and Bob each see only it.
    let (r, mut relay_lines) = lan.node(1, &relay, &["node", "--relay", "--no-mdns"]);
    let relay_a = listening_at(&mut relay_lines, "/ip4/10.77.5.254/tcp/");
    let relay_b = listening_at(&mut relay_lines, "/ip4/10.78.5.254/tcp/");
    let (a, mut alice_lines) = lan.node(0, &alice, &["node", "--no-mdns", "--bootstrap", &relay_a]);
    // Alice keeps a reservation on the relay: she listens through it.
    let circuit = wait_event(&mut alice_lines, WAIT, |e| {
        e["event"] == "listening"
            && e["address"].as_str().is_some_and(|a| a.contains("/p2p-circuit/"))
    })
    .expect("Alice listens through the relay");
    // `/ip4/<the relay>/…/p2p/<relay>/p2p-circuit/p2p/<Alice>`, at the relay's address on
    // either subnet.
    let circuit = circuit["address"].as_str().unwrap();
    assert!(
        circuit.starts_with("/ip4/10.7") && circuit.contains("/p2p-circuit/p2p/12D3KooW"),
        "{circuit}"
    );
    let (b, mut bob_lines) = lan.node(2, &bob, &["node", "--no-mdns", "--bootstrap", &relay_b]);
    // Bob learns of Alice from the relay's routing table and reaches her through it.
    let connected = wait_event(&mut bob_lines, std::time::Duration::from_secs(90), |e| {
        e["event"] == "connected" && e["peer"].as_str() == Some(alice_id.as_str())
    })
    .expect("Bob's node reaches Alice's through the relay");
    assert_eq!(
        (connected["foundBy"].as_str(), connected["relayed"].as_bool()),
        (Some("routing"), Some(true)),
        "{connected}"
    );
    // Alice sees Bob come in through the relay too.
    let inbound = wait_event(&mut alice_lines, WAIT, |e| {
        e["event"] == "connected" && e["peer"].as_str() == Some(bob_id.as_str())
    })
    .expect("Alice's node sees Bob's");
    assert_eq!(inbound["relayed"].as_bool(), Some(true), "{inbound}");
    // (Identify ran over the circuit to confirm the network.) Alice's profile reaches Bob's
    // ledger, by the relay, the only way there is.
    let profile_at_bob = || {
        let out = ash(&bob).args(["history", &alice_id, "--json"]).output().unwrap();
        serde_json::from_str::<Value>(&stdout(&out))
            .is_ok_and(|rows| rows[0]["kind"] == "profile" && rows[0]["verdict"] == "valid")
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !profile_at_bob() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(profile_at_bob(), "Alice's profile never reached Bob's ledger");
    stop(b, bob_lines);
    stop(a, alice_lines);
    stop(r, relay_lines);
}

/// The hostile node of [`a_hostile_node_process_gets_nothing_forged_stored`], as a process of
/// its own (by itself, it skips): this test binary, run again inside a namespace with
/// `ASH_TEST_HOSTILE` set to
/// `<genesis file> <address to dial>`. It answers every catch-up with forged entries for
/// Carol's log (Mallory's signature relabelled as Carol's, Carol's own entries of another
/// network, junk), gossips heads claiming Carol's log is long, and forged proofs of
/// equivocation, until it is killed.
#[test]
fn hostile_node_process() {
    use ash_ledger::{Body, Genesis, LogWriter, Profile};
    use ash_net::{Net, NetConfig, NetEvent, NetworkId, Topic};
    use ash_protocol::{Gossip, LogHead, PeerInfo, PeerRequest, PeerResponse};
    let Ok(setup) = std::env::var("ASH_TEST_HOSTILE") else {
        eprintln!("skipping: the hostile node runs only as the namespace test's helper process");
        return;
    };
    let (genesis, address) = setup.split_once(' ').unwrap();
    let genesis = Genesis::from_toml(&std::fs::read_to_string(genesis).unwrap()).unwrap();
    let (mallory, carol) = (
        ash_identity::Identity::insecure_from_label("mallory"),
        ash_identity::Identity::insecure_from_label("carol"),
    );
    let profile = |name: &str| {
        Body::Profile(Profile {
            username: name.into(),
            sealing_key: mallory.sealing_public(),
            created_at: 1,
        })
    };
    // Mallory's entry with Carol's id in place of hers: the signature does not check.
    let mut relabelled = LogWriter::new(&mallory, genesis.id()).append(1, profile("carol")).bytes();
    let at = relabelled.windows(32).position(|w| w == mallory.node_id().as_bytes()).unwrap();
    relabelled[at..at + 32].copy_from_slice(carol.node_id().as_bytes());
    // Carol's own entries, of another network.
    let elsewhere = Genesis::new("elsewhere", 1, [carol.node_id()].into()).unwrap();
    let mut writer = LogWriter::new(&carol, elsewhere.id());
    let foreign: Vec<Vec<u8>> =
        (0..3).map(|i| writer.append(1 + i, profile(&format!("carol{i}"))).bytes()).collect();
    let mut forged = vec![relabelled.clone(), vec![0xff; 300]];
    forged.extend(foreign);
    let carol_id = carol.node_id().to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut config = NetConfig::new(NetworkId(genesis.id().0), "ash/hostile".into());
        config.listen = vec!["/ip4/0.0.0.0/tcp/0".into()];
        config.bootstrap = vec![address.to_owned()];
        config.mdns = false;
        let (net, mut events, _task) = Net::start(&mallory, config).unwrap().split();
        println!("ready");
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(300));
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(NetEvent::Request { request, responder, .. }) = event else { continue };
                    let answer = match request {
                        PeerRequest::LedgerHeads { .. } => PeerResponse::LedgerHeads {
                            heads: vec![LogHead { author: carol_id.clone(), seq: 1000, id: None, fork: Some(0), checkpoint: None }],
                            more: false,
                        },
                        PeerRequest::LedgerEntries { .. } => PeerResponse::LedgerEntries {
                            entries: forged.iter().cloned().map(serde_bytes::ByteBuf::from).collect(),
                        },
                        _ => PeerResponse::Info(PeerInfo::default()),
                    };
                    let _ = responder.respond(answer).await;
                }
                _ = tick.tick() => {
                    let heads = Gossip::Heads {
                        heads: vec![LogHead { author: carol_id.clone(), seq: 1000, id: None, fork: None, checkpoint: None }],
                    };
                    let _ = net.publish(Topic::LedgerHeads, &heads).await;
                    let proof = Gossip::Equivocation {
                        entries: vec![
                            serde_bytes::ByteBuf::from(relabelled.clone()),
                            serde_bytes::ByteBuf::from(forged[2].clone()),
                        ],
                    };
                    let _ = net.publish(Topic::LedgerHeads, &proof).await;
                }
            }
        }
    });
}

#[test]
fn a_hostile_node_process_gets_nothing_forged_stored() {
    let Some(lan) = Lan::new(6) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    crate::ledger::new_network(&root.path().join("admin"), "net", &genesis);
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    crate::ledger::join(&alice, &genesis, "alice");
    let bob_id = crate::ledger::join(&bob, &genesis, "bob");
    let carol_id = ash_identity::Identity::insecure_from_label("carol").node_id().to_string();
    let (a, mut alice_lines) = lan.node(0, &alice, &["node", "--no-mdns"]);
    let address = listening_at(&mut alice_lines, "/ip4/10.77.6.1/tcp/");
    // Mallory's process and Bob's node share the other machine.
    let mut hostile = Command::new("ip")
        .args(["netns", "exec", &lan.names[1], "timeout", "120"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "network::hostile_node_process", "--nocapture"])
        .env("ASH_TEST_HOSTILE", format!("{} {address}", genesis.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut hostile_out = BufReader::new(hostile.stdout.take().unwrap());
    let mut line = String::new();
    while hostile_out.read_line(&mut line).unwrap() > 0 && !line.contains("ready") {
        line.clear();
    }
    assert!(line.contains("ready"), "the hostile process did not start");
    // Alice's node takes Mallory's junk as unreadable and her forgeries to the verifier's door.
    let struck = wait_event(&mut alice_lines, WAIT, |e| {
        e["event"] == "synced" && e["unreadable"].as_u64().is_some_and(|n| n > 0)
    })
    .expect("Alice's node catches up with Mallory's and reads junk");
    assert_ne!(struck["peer"].as_str(), Some(bob_id.as_str()));
    // Bob's honest node, beside Mallory, still replicates with Alice's.
    let (b, bob_lines) = lan.node(1, &bob, &["node", "--no-mdns", "--bootstrap", &address]);
    let alice_has_bob = wait_event(&mut alice_lines, WAIT, |e| {
        e["event"] == "synced"
            && e["peer"].as_str() == Some(bob_id.as_str())
            && e["new"].as_u64() > Some(0)
    });
    assert!(alice_has_bob.is_some(), "Alice's node never took Bob's profile");
    // Some seconds of Mallory's gossip later, nobody holds anything of Carol's, nor froze her.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = hostile.kill();
    let _ = hostile.wait();
    stop(b, bob_lines);
    let events = stop(a, alice_lines);
    assert!(!events.iter().any(|e| e["event"] == "equivocated"), "{events:?}");
    for home in [&alice, &bob] {
        let out = ash(home).args(["history", &carol_id, "--json"]).output().unwrap();
        let rows: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
        assert!(rows.as_array().is_none_or(Vec::is_empty), "{}: {rows}", home.display());
        let status = ash(home).args(["status", "--json"]).output().unwrap();
        assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    }
    let out = ash(&alice).args(["history", &bob_id, "--json"]).output().unwrap();
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (rows[0]["kind"].as_str(), rows[0]["verdict"].as_str()),
        (Some("profile"), Some("valid"))
    );
}

#[test]
fn one_process_at_a_time_writes_a_homes_own_log() {
    let root = tempfile::tempdir().unwrap();
    let genesis = root.path().join("net.genesis.toml");
    let admin = root.path().join("admin");
    crate::ledger::new_network(&admin, "net", &genesis);
    let alice = root.path().join("alice");
    crate::ledger::join(&alice, &genesis, "alice");
    let (node, lines, address) = start_node(&alice);
    // A second node, a join and an import of the same home would append from their own idea of
    // the head: refused while the node runs, saying why.
    for args in [
        vec!["node", "--port", "0", "--no-mdns"],
        vec!["join", "--offline"],
        vec!["ledger", "import", "/nonexistent.bundle"],
    ] {
        let out = ash(&alice).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("another ash process writes this home's ledger"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Looking around only reads, so it still runs.
    let out = ash(&alice)
        .args(["status", "--network", "--bootstrap", &address, "--no-mdns", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stop(node, lines);
    // Once the node stopped, the home is free again.
    let out = ash(&alice).args(["join", "--offline"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
