//! `ash node` and `ash peers`: this machine's node of its network, in the foreground or for a
//! moment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ash_identity::Identity;
use ash_net::{NetConfig, NetHandle, NetworkId, PeerSnapshot};
use ash_node::{Authority, Node, NodeConfig, NodeEvent};
use ash_protocol::{PeerInfo, PeerRequest, PeerResponse};
use serde_json::json;

use super::Outcome;
use super::ledger::{Home, now_ms};
use super::start::{runtime, shutdown_signal};
use crate::cli::{AdminServeArgs, NodeArgs, PeersArgs};
use crate::output;

/// How long `ash peers` keeps looking once the first peer is found, for the others nearby.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long `ash peers` waits for each peer's answer.
const ASK: Duration = Duration::from_secs(3);

fn agent_version() -> String {
    format!("ash/{}", env!("CARGO_PKG_VERSION"))
}

/// The node's configuration: this home's network and ledger, the given listen and bootstrap
/// addresses.
pub(crate) fn config(
    home: &Home,
    listen: Vec<String>,
    bootstrap: &[String],
    mdns: bool,
) -> anyhow::Result<NodeConfig> {
    let genesis = home.genesis()?;
    let mut net = NetConfig::new(NetworkId(genesis.id().0), agent_version());
    net.listen = listen;
    // The genesis's addresses, the ones given before (remembered), then the ones given now.
    let remembered = remember_bootstrap(home, bootstrap);
    let mut all: Vec<String> = Vec::new();
    for address in genesis.bootstrap.iter().chain(&remembered).chain(bootstrap) {
        if !all.contains(address) {
            all.push(address.clone());
        }
    }
    net.bootstrap = all;
    net.mdns = mdns;
    // What this identity shows the mint authorities, if the network asks (an authority's node
    // that has not joined asks nothing).
    let signup = home.identity().ok().and_then(|me| home.signup_proof(&genesis, &me.node_id()));
    Ok(NodeConfig {
        net,
        ledger: home.ledger_path(),
        genesis,
        info: own_info(),
        authority: None,
        signup,
        // Short looks around only read; callers that hold the home's writer lock say so.
        writer: false,
        jobs_dir: home.jobs_dir(),
        serve: None,
    })
}

/// The mint authority's settings when this home holds the key of one of the network's
/// authorities: its node mints the signup bonuses too.
pub(crate) fn home_authority(home: &Home, genesis: &ash_ledger::Genesis) -> Option<Authority> {
    let key = home.authority().ok().filter(|key| genesis.is_authority(&key.node_id()))?;
    let invites = (genesis.signup_cost == ash_ledger::SignupCost::Invite).then(|| home.invites());
    Some(Authority {
        key: Arc::new(key),
        signup_bonus: genesis.signup_bonus.unwrap_or(100),
        signups_per_minute: 30,
        invites,
    })
}

/// Addresses given with `--bootstrap` are remembered in this file, so that later commands
/// of the same home find the network the same way.
const REMEMBERED_FILE: &str = "bootstrap.txt";
/// Addresses remembered at most (the newest first).
const MAX_REMEMBERED: usize = 16;

/// The addresses given before (newest first), after remembering `given` (which must parse as
/// bootstrap addresses; others are left out, and the node refuses them as it starts).
fn remember_bootstrap(home: &Home, given: &[String]) -> Vec<String> {
    let path = home.dir().join(REMEMBERED_FILE);
    let held: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| ash_net::check_bootstrap(l).is_ok())
        .map(str::to_owned)
        .collect();
    let fresh: Vec<&String> =
        given.iter().filter(|a| ash_net::check_bootstrap(a).is_ok()).collect();
    if fresh.is_empty() {
        return held;
    }
    let mut all: Vec<String> = fresh.into_iter().cloned().collect();
    for address in held {
        if !all.contains(&address) {
            all.push(address);
        }
    }
    all.truncate(MAX_REMEMBERED);
    let mut text = all.join("\n");
    text.push('\n');
    if let Err(e) = std::fs::write(&path, text) {
        tracing::debug!(error = %e, "bootstrap addresses not remembered");
    }
    all
}

/// What this node says of itself when asked.
fn own_info() -> PeerInfo {
    PeerInfo { version: agent_version(), serving: false, agents: Vec::new() }
}

/// The listen addresses: those given, else TCP and QUIC on every interface at `port`.
pub(crate) fn listen_addresses(listen: &[String], port: u16) -> Vec<String> {
    if listen.is_empty() {
        vec![format!("/ip4/0.0.0.0/tcp/{port}"), format!("/ip4/0.0.0.0/udp/{port}/quic-v1")]
    } else {
        listen.to_vec()
    }
}

pub(crate) fn node(args: &NodeArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    let identity = Arc::new(home.identity()?);
    let config = node_config(&home, args)?;
    run_node(identity, config, args.json, &state_file(&home))
}

/// `ash admin serve`: a node that mints the signup bonus for every identity it learns of.
pub(crate) fn admin_serve(args: &AdminServeArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    let key = Arc::new(home.authority()?);
    let genesis = home.genesis()?;
    if !genesis.is_authority(&key.node_id()) {
        anyhow::bail!(
            "this authority ({}) is not in the genesis of `{}`: its mints would count for nothing",
            key.node_id().short(),
            genesis.name
        );
    }
    // The authority's key speaks for the node: newcomers show their signup proof to the
    // genesis's authorities, and know this node by that key.
    let identity = Arc::clone(&key);
    let mut config = node_config(&home, &args.node)?;
    config.signup = None;
    let signup_bonus = match (genesis.signup_bonus, args.signup_bonus) {
        (Some(set), Some(asked)) if set != asked => anyhow::bail!(
            "the genesis of `{}` sets the signup bonus to {set}; --signup-bonus {asked} would mint what it does not allow",
            genesis.name
        ),
        (Some(set), _) => set,
        (None, asked) => asked.unwrap_or(100),
    };
    let invites = (genesis.signup_cost == ash_ledger::SignupCost::Invite).then(|| home.invites());
    config.authority =
        Some(Authority { key, signup_bonus, signups_per_minute: args.signups_per_minute, invites });
    run_node(identity, config, args.node.json, &state_file(&home))
}

/// The configuration of a node in the foreground, as `args` ask.
pub(crate) fn node_config(home: &Home, args: &NodeArgs) -> anyhow::Result<NodeConfig> {
    let listen = listen_addresses(&args.listen, args.port);
    let mut config = config(home, listen, &args.bootstrap, !args.no_mdns)?;
    config.net.relay_server = args.relay;
    config.writer = true;
    Ok(config)
}

/// Runs a node in the foreground until Ctrl-C or SIGTERM, printing what happens.
/// What a running `ash node` says of itself in `$ASH_HOME/run/node.json`, for `ash status`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeState {
    /// The node's process.
    pub(crate) pid: u32,
    /// When it started (ms since the Unix epoch).
    pub(crate) started: u64,
    /// Where it listens.
    pub(crate) addresses: Vec<String>,
    /// Connected peers (node ids).
    pub(crate) peers: Vec<String>,
    /// When a catch-up last brought new entries (ms since the Unix epoch).
    pub(crate) last_sync: Option<u64>,
    /// Entries received from peers since it started.
    pub(crate) received_entries: u64,
}

impl NodeState {
    /// This process's node, starting now.
    pub(crate) fn now() -> Self {
        Self { pid: std::process::id(), started: now_ms(), ..Self::default() }
    }

    /// What `event` changes of the state.
    pub(crate) fn track(&mut self, event: &NodeEvent) {
        match event {
            NodeEvent::Listening { address } => self.addresses.push(address.clone()),
            NodeEvent::PeerConnected { node, .. } => self.peers.push(node.to_string()),
            NodeEvent::PeerDisconnected { node } => {
                let gone = node.to_string();
                self.peers.retain(|p| *p != gone);
            }
            NodeEvent::Synced { new, .. } if *new > 0 => {
                self.last_sync = Some(now_ms());
                self.received_entries += new;
            }
            _ => {}
        }
    }
}

/// The state file of this home's running node.
pub(crate) fn state_file(home: &Home) -> std::path::PathBuf {
    home.run_dir().join("node.json")
}

/// The running node's state, if a node of this home runs.
pub(crate) fn running_node(home: &Home) -> Option<NodeState> {
    let state: NodeState = serde_json::from_slice(&std::fs::read(state_file(home)).ok()?).ok()?;
    std::path::Path::new("/proc").join(state.pid.to_string()).exists().then_some(state)
}

pub(crate) fn write_state(path: &std::path::Path, state: &NodeState) {
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec_pretty(state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::debug!(error = %e, "node state not written");
    }
}

pub(crate) fn run_node(
    identity: Arc<Identity>,
    config: NodeConfig,
    json: bool,
    state_path: &std::path::Path,
) -> anyhow::Result<Outcome> {
    let line = |event: &str, fields: serde_json::Value, text: String| {
        if json {
            let mut value = json!({ "event": event });
            if let (Some(map), Some(extra)) = (value.as_object_mut(), fields.as_object()) {
                map.extend(extra.clone());
            }
            output::stdout(&format!("{value}\n"));
        } else {
            output::stdout(&format!("{text}\n"));
        }
    };
    runtime()?.block_on(async {
        let mut node = Node::start(identity, config).with_context(
            || "starting the network node (is another `ash node` using the port? try --port)",
        )?;
        let signal = shutdown_signal();
        tokio::pin!(signal);
        if let Some(dir) = state_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut state = NodeState::now();
        write_state(state_path, &state);
        loop {
            let event = tokio::select! {
                () = &mut signal => break,
                event = node.next_event() => event,
            };
            if let Some(event) = &event {
                state.track(event);
            }
            write_state(state_path, &state);
            {
                match event {
                    None => break,
                    Some(NodeEvent::Listening { address }) => line(
                        "listening",
                        json!({ "address": address }),
                        format!("listening on {address}"),
                    ),
                    Some(NodeEvent::PeerConnected { node, found_by, relayed }) => line(
                        "connected",
                        json!({ "peer": node, "foundBy": found_by.as_str(), "relayed": relayed }),
                        format!(
                            "peer {node} connected ({}{})",
                            found_by.as_str(),
                            if relayed { ", through a relay" } else { "" }
                        ),
                    ),
                    Some(NodeEvent::SignupAnswered { authority, admitted }) => line(
                        "signup",
                        json!({
                            "authority": authority,
                            "admitted": admitted.is_ok(),
                            "reason": admitted.as_ref().err(),
                        }),
                        match &admitted {
                            Ok(()) => format!("the mint authority {authority} admitted this identity to the signup bonus"),
                            Err(reason) => format!("the mint authority {authority} refused the signup: {reason}"),
                        },
                    ),
                    Some(NodeEvent::Checkpoint { subject, seq }) => line(
                        "checkpoint",
                        json!({ "subject": subject, "seq": seq }),
                        format!("checkpoint of {subject} at entry {seq}"),
                    ),
                    Some(NodeEvent::Equivocated { author }) => line(
                        "equivocated",
                        json!({ "author": author }),
                        format!("{author} signed two entries at one position: frozen"),
                    ),
                    Some(NodeEvent::Reachability { public }) => line(
                        "reachability",
                        json!({ "public": public }),
                        match public {
                            Some(address) => format!("peers reach this node at {address}"),
                            None => "peers cannot reach this node directly; relays carry its connections".to_owned(),
                        },
                    ),
                    Some(NodeEvent::PeerDisconnected { node }) => line(
                        "disconnected",
                        json!({ "peer": node }),
                        format!("peer {node} disconnected"),
                    ),
                    Some(NodeEvent::Refused { peer, reason }) => line(
                        "refused",
                        json!({ "peer": peer, "reason": reason }),
                        format!("refused {peer}: {reason}"),
                    ),
                    Some(NodeEvent::Received { amounts, balance }) => line(
                        "received",
                        json!({ "amounts": amounts, "balance": balance }),
                        format!(
                            "received {} credits; balance {balance}",
                            amounts.iter().sum::<u64>()
                        ),
                    ),
                    Some(NodeEvent::Minted { recipients, amount }) => {
                        for to in recipients {
                            line(
                                "minted",
                                json!({ "to": to, "amount": amount }),
                                format!("minted the signup bonus of {amount} for {to}"),
                            );
                        }
                    }
                    Some(NodeEvent::Job { job, state, detail }) => line(
                        "job",
                        json!({ "job": job, "state": state, "detail": detail }),
                        format!("job {job}: {state} ({detail})"),
                    ),
                    Some(NodeEvent::Synced { from, new, unreadable }) => {
                        if new > 0 || unreadable > 0 {
                            line(
                                "synced",
                                json!({ "peer": from, "new": new, "unreadable": unreadable }),
                                format!(
                                    "ledger: {new} new entries from {from}{}",
                                    if unreadable > 0 {
                                        format!(" ({unreadable} unreadable)")
                                    } else {
                                        String::new()
                                    }
                                ),
                            );
                        }
                    }
                }
            }
        }
        let _ = std::fs::remove_file(state_path);
        node.stop().await;
        line("stopped", json!({}), "stopped".to_owned());
        Ok(Outcome::Success)
    })
}

/// A peer as `ash peers` shows it.
struct Listed {
    snapshot: PeerSnapshot,
    info: Option<PeerInfo>,
}

pub(crate) fn peers(args: &PeersArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let identity = home.identity()?;
    let genesis = home.genesis()?;
    // Any free port: a running `ash node` keeps its own.
    let config = config(&home, listen_addresses(&[], 0), &args.bootstrap, !args.no_mdns)?;
    let started = Instant::now();
    let (found, first, rows) = runtime()?.block_on(async {
        let mut node = Node::start(Arc::new(identity), config)?;
        let first = look(&mut node, started, args.wait).await.first;
        let found = ask_all(node.net(), node.net().peers().await?).await;
        let ledger = node.ledger();
        let rows: Vec<(Option<String>, Option<u64>)> = {
            let ledger = ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            found
                .iter()
                .map(|listed| {
                    let account = ledger.verifier().account(listed.snapshot.node);
                    (
                        account.username,
                        (account.entries > 0).then(|| account.balance.spendable.get()),
                    )
                })
                .collect()
        };
        node.stop().await;
        Ok::<_, anyhow::Error>((found, first, rows))
    })?;
    let rows: Vec<(&Listed, Option<String>, Option<u64>)> = found
        .iter()
        .zip(rows)
        .map(|(listed, (username, balance))| (listed, username, balance))
        .collect();
    if args.json {
        let peers: Vec<serde_json::Value> = rows
            .iter()
            .map(|(listed, username, balance)| {
                json!({
                    "id": listed.snapshot.node,
                    "username": username,
                    "balance": balance,
                    "version": listed.snapshot.agent_version,
                    "serving": listed.info.as_ref().map(|i| i.serving),
                    "agents": listed.info.as_ref().map(|i| i.agents.clone()),
                    "addresses": listed.snapshot.addresses,
                    "rttMs": listed.snapshot.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    "foundBy": listed.snapshot.found_by.as_str(),
                    "relayed": listed.snapshot.relayed,
                })
            })
            .collect();
        output::json(&json!({
            "network": { "name": genesis.name, "id": genesis.id() },
            "discoveryMs": first.map(|d| d.as_millis()),
            "peers": peers,
        }))?;
        return Ok(Outcome::Success);
    }
    let mut text = match first {
        Some(at) => format!(
            "{} peer(s) of network {} online; the first found in {:.2} s\n",
            rows.len(),
            genesis.name,
            at.as_secs_f64()
        ),
        None => format!(
            "no peers of network {} found in {} s (mDNS {}, {} bootstrap address(es))\n",
            genesis.name,
            args.wait.as_secs(),
            if args.no_mdns { "off" } else { "on" },
            args.bootstrap.len()
        ),
    };
    for (listed, username, balance) in &rows {
        let agents = listed
            .info
            .as_ref()
            .map(
                |i| if i.agents.is_empty() { "not serving".to_owned() } else { i.agents.join(",") },
            )
            .unwrap_or_else(|| "?".to_owned());
        text.push_str(&format!(
            "  {:<16} {}  {:>8}  {:<12} {:>8}  {}\n",
            username.as_deref().unwrap_or("(unknown)"),
            listed.snapshot.node.short(),
            balance.map_or_else(|| "?".to_owned(), |b| format!("{b} cr")),
            agents,
            listed
                .snapshot
                .rtt
                .map_or_else(|| "?".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0)),
            listed.snapshot.addresses.first().map_or("", String::as_str),
        ));
    }
    output::stdout(&text);
    Ok(Outcome::Success)
}

/// What a short look at the network found.
struct Look {
    /// When the first peer connected, after the node started.
    first: Option<Duration>,
    /// Ledger entries the catch-ups brought in.
    new: u64,
}

/// Lets a node started at `started` look around: until `wait` passes, or [`SETTLE`] after the
/// first peer is found, or sooner once every peer found has been caught up with.
async fn look(node: &mut Node, started: Instant, wait: Duration) -> Look {
    let mut found = Look { first: None, new: 0 };
    let (mut connected, mut synced) = (0usize, 0usize);
    let deadline = tokio::time::Instant::from_std(started + wait);
    loop {
        let until = match found.first {
            Some(at) => tokio::time::Instant::from_std(started + at + SETTLE).min(deadline),
            None => deadline,
        };
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            event = node.next_event() => match event {
                None => break,
                Some(NodeEvent::PeerConnected { .. }) => {
                    connected += 1;
                    found.first.get_or_insert_with(|| started.elapsed());
                }
                // Every peer's ledger is in: nothing more to wait for.
                Some(NodeEvent::Synced { new, .. }) => {
                    synced += 1;
                    found.new += new;
                    if synced >= connected
                        && found.first.is_some_and(|at| started.elapsed() >= at + SETTLE / 3)
                    {
                        break;
                    }
                }
                Some(_) => {}
            },
        }
    }
    found
}

/// Asks every peer what it offers, at once, each for at most [`ASK`].
async fn ask_all(handle: &NetHandle, peers: Vec<PeerSnapshot>) -> Vec<Listed> {
    let asks = peers.into_iter().map(|snapshot| async move {
        let info = match tokio::time::timeout(ASK, handle.request(snapshot.node, PeerRequest::Info))
            .await
        {
            Ok(Ok(PeerResponse::Info(info))) => Some(info),
            _ => None,
        };
        Listed { snapshot, info }
    });
    futures_util::future::join_all(asks).await
}

/// How a signup ended.
pub(crate) enum Signup {
    /// The bonus arrived: credits, and the balance after.
    Received { amount: u64, balance: u64 },
    /// A mint authority refused it, for this reason.
    Refused(String),
    /// Nothing came in time.
    Nothing,
}

/// After `ash join`: a node for a moment, to send the new profile out (and the signup proof,
/// if the network asks for one) and take in the signup bonus the mint authority's node sends
/// back. Gives up after `wait`, or sooner when no peer is found at all or an authority refuses.
pub(crate) fn await_signup(
    home: &Home,
    identity: Identity,
    bootstrap: &[String],
    mdns: bool,
    wait: Duration,
) -> anyhow::Result<Signup> {
    /// Without any peer by then, nobody will send the bonus now.
    const ALONE: Duration = Duration::from_secs(3);
    /// How long the node stays up after the bonus arrived, for peers to fetch the receipt.
    const RECEIPT_GRACE: Duration = Duration::from_millis(1500);
    let mut config = config(home, listen_addresses(&[], 0), bootstrap, mdns)?;
    let authorities = config.genesis.authorities.len();
    // `ash join` holds the home's writer lock: this node receives the bonus into the log.
    config.writer = true;
    runtime()?.block_on(async {
        let mut node = Node::start(Arc::new(identity), config)?;
        let started = tokio::time::Instant::now();
        let mut peers = 0usize;
        let mut outcome = Signup::Nothing;
        let mut refusals = std::collections::HashSet::new();
        loop {
            let until =
                if peers == 0 { (started + ALONE).min(started + wait) } else { started + wait };
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                event = node.next_event() => match event {
                    None => break,
                    Some(NodeEvent::PeerConnected { .. }) => peers += 1,
                    Some(NodeEvent::Received { amounts, balance }) => {
                        outcome = Signup::Received { amount: amounts.iter().sum(), balance };
                        // A moment for the peers to fetch the receipt.
                        tokio::time::sleep(RECEIPT_GRACE).await;
                        break;
                    }
                    // Each authority holds its own codes: only when every one refused is it
                    // over.
                    Some(NodeEvent::SignupAnswered { authority, admitted: Err(reason) }) => {
                        refusals.insert(authority);
                        outcome = Signup::Refused(reason);
                        if refusals.len() >= authorities {
                            break;
                        }
                    }
                    Some(_) => {}
                },
            }
        }
        node.stop().await;
        Ok(outcome)
    })
}

/// `ash status --network` with no node running here: a short-lived node looks for peers (at most
/// `wait`, or a moment after the first) and catches up with them. Returns the peers found, when
/// the first was, and the entries received.
pub(crate) fn probe(
    home: &Home,
    bootstrap: &[String],
    mdns: bool,
    wait: Duration,
) -> anyhow::Result<(usize, Option<Duration>, u64)> {
    let identity = Arc::new(home.identity()?);
    let config = config(home, listen_addresses(&[], 0), bootstrap, mdns)?;
    let started = Instant::now();
    runtime()?.block_on(async {
        let mut node = Node::start(identity, config)?;
        let Look { first, new } = look(&mut node, started, wait).await;
        let peers = node.net().peers().await.map_or(0, |p| p.len());
        node.stop().await;
        Ok((peers, first, new))
    })
}
