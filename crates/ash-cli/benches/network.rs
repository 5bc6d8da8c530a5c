//! A network of real `ash node` processes, each in a network namespace of its own on one
//! bridge (a LAN): how long it takes to converge on one ledger, and what a connected peer costs
//! in memory.
//!
//! `cargo bench -p ash-cli --bench network [-- --nodes N] [--settle SECONDS]` (default 20
//! nodes, 15 s; needs root and ip(8), and says so and stops without them) prints:
//!
//! - **convergence**: every node joined offline with its own profile; all start at once, each
//!   told only the first node's address (mDNS off: the LAN is not the point). Time until every
//!   node's ledger holds every profile (each node's `run/node.json` counts the entries it
//!   received), and the connections each node then holds;
//! - **memory**: `--settle` seconds later (the nodes keep finding each other through the DHT),
//!   the resident memory of a lone node and of each node of the network, and what one
//!   connected peer adds (each node's memory above the lone node's, over its connections).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark binary"
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Namespaces on one bridge, removed when dropped.
struct Lan {
    switch: String,
    nodes: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Lan {
    fn new(n: usize) -> Self {
        let tag = format!("ashb{}", std::process::id());
        let lan = Self {
            switch: format!("{tag}sw"),
            nodes: (0..n).map(|i| format!("{tag}n{i}")).collect(),
        };
        ip(&["netns", "add", &lan.switch]);
        ip(&["-n", &lan.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan.switch, "link", "set", "br0", "up"]);
        for (i, name) in lan.nodes.iter().enumerate() {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
            let port = format!("p{i}");
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                name,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &lan.switch,
            ]);
            ip(&["-n", &lan.switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &lan.switch, "link", "set", &port, "up"]);
            ip(&["-n", name, "addr", "add", &address(i), "dev", "eth0"]);
            ip(&["-n", name, "link", "set", "eth0", "up"]);
        }
        lan
    }

    fn ash(&self, i: usize, home: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.nodes[i], env!("CARGO_BIN_EXE_ash")])
            .env("ASH_HOME", home)
            .env("HOME", home)
            .current_dir(home);
        command
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in self.nodes.iter().chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn address(i: usize) -> String {
    format!("10.79.{}.{}/16", i / 250, i % 250 + 1)
}

fn run(command: &mut Command) -> Value {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A node running in namespace `i`, its output lines, and its first LAN address.
struct Running {
    child: Child,
    home: PathBuf,
}

fn start(lan: &Lan, i: usize, home: &Path, bootstrap: Option<&str>) -> (Running, String) {
    let mut command = lan.ash(i, home);
    command.args(["node", "--port", "4517", "--no-mdns", "--json"]);
    if let Some(address) = bootstrap {
        command.args(["--bootstrap", address]);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let prefix = format!("/ip4/{}/tcp/", address(i).trim_end_matches("/16"));
    let mut listening = String::new();
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap() > 0 {
        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if let Some(a) = event["address"].as_str().filter(|a| a.starts_with(&prefix)) {
            listening = a.to_owned();
            break;
        }
        line.clear();
    }
    // Keep reading so that the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.lines() {});
    (Running { child, home: home.to_path_buf() }, listening)
}

impl Running {
    fn state(&self) -> Value {
        std::fs::read(self.home.join("run/node.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Resident memory of the node's process (its pid is in its state file), in KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self.state()["pid"].as_u64().unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let pid = self.state()["pid"].as_i64().unwrap_or(0);
        if pid > 0 {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(20);
    let settle: u64 = args
        .iter()
        .position(|a| a == "--settle")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(15);
    let root_ok = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
    if !root_ok || Command::new("ip").arg("-V").output().is_err() {
        println!("skipped: the network benchmark needs root and ip(8) for network namespaces");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let genesis = dir.path().join("net.genesis.toml");
    let admin = dir.path().join("admin");
    std::fs::create_dir_all(&admin).unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_ash"))
        .args(["network", "create", "bench", "-o", genesis.to_str().unwrap(), "--json"])
        .env("ASH_HOME", &admin));
    let homes: Vec<PathBuf> = (0..=n).map(|i| dir.path().join(format!("n{i}"))).collect();
    for (i, home) in homes.iter().enumerate() {
        std::fs::create_dir_all(home).unwrap();
        run(Command::new(env!("CARGO_BIN_EXE_ash"))
            .args(["join", "--network", genesis.to_str().unwrap(), "-u", &format!("node{i}")])
            .args(["--offline", "--json"])
            .env("ASH_HOME", home));
    }
    // One namespace more than nodes: the lone node's.
    let lan = Lan::new(n + 1);

    // A lone node, for the baseline.
    let (lone, _) = start(&lan, n, &homes[n], None);
    std::thread::sleep(Duration::from_secs(3));
    let lone_kib = lone.rss_kib();
    lone.stop();

    let started = Instant::now();
    let (first, first_address) = start(&lan, 0, &homes[0], None);
    let mut nodes = vec![first];
    for (i, home) in homes.iter().enumerate().take(n).skip(1) {
        nodes.push(start(&lan, i, home, Some(&first_address)).0);
    }
    let everyone_up = started.elapsed();
    let want = (n - 1) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let converged = loop {
        let received: Vec<u64> =
            nodes.iter().map(|r| r.state()["receivedEntries"].as_u64().unwrap_or(0)).collect();
        if received.iter().all(|r| *r >= want) {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline {
            println!("not converged after 120 s: entries received per node {received:?}");
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Time for the nodes to find each other through the DHT (they ask again every 5 s while
    // they know few peers), then memory.
    std::thread::sleep(Duration::from_secs(settle));
    let peers: Vec<usize> =
        nodes.iter().map(|r| r.state()["peers"].as_array().map_or(0, Vec::len)).collect();
    let rss: Vec<u64> = nodes.iter().map(Running::rss_kib).collect();
    for node in nodes {
        node.stop();
    }
    println!("network of {n} `ash node` processes, one namespace each, on one bridge");
    println!(
        "  all started in {:.0} ms (each told the first node's address)",
        everyone_up.as_secs_f64() * 1000.0
    );
    if let Some(at) = converged {
        println!(
            "  converged on one ledger ({n} profiles everywhere) {:.0} ms after the first start",
            at.as_secs_f64() * 1000.0
        );
    }
    let (min, max) = (peers.iter().min().unwrap_or(&0), peers.iter().max().unwrap_or(&0));
    println!(
        "  connections per node: {min}–{max} (mean {:.1})",
        peers.iter().sum::<usize>() as f64 / n as f64
    );
    let mean_rss = rss.iter().sum::<u64>() as f64 / n as f64;
    println!(
        "  resident memory: lone node {:.1} MiB; in the network {:.1} MiB on average ({:.1}–{:.1})",
        lone_kib as f64 / 1024.0,
        mean_rss / 1024.0,
        *rss.iter().min().unwrap_or(&0) as f64 / 1024.0,
        *rss.iter().max().unwrap_or(&0) as f64 / 1024.0
    );
    let per_peer: Vec<f64> = rss
        .iter()
        .zip(&peers)
        .filter(|(_, p)| **p > 0)
        .map(|(r, p)| (*r as f64 - lone_kib as f64) / *p as f64)
        .collect();
    if !per_peer.is_empty() {
        println!(
            "  memory per connected peer: {:.0} KiB (each node's memory above the lone node's, over its connections; mean)",
            per_peer.iter().sum::<f64>() / per_peer.len() as f64
        );
    }
}
