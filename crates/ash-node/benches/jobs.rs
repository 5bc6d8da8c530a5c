//! The job flow's figures, on loopback, between real nodes: the round trip of a job whose
//! agent makes one edit at once (announce → offer → reserve → package → run → sealed diff →
//! receipt → applied → decided and collected), the package transfer's throughput (a 49 MB
//! source tree of 5,000 files, and 64 MiB that does not compress), one acceptor with 8 jobs at
//! once, and the round trip a routed job's model call adds (agent → acceptor → requester →
//! its provider, answering at once, → back), with small and 200 kB bodies, one call every
//! 100 ms.
//!
//! `cargo bench -p ash-node --bench jobs [-- round-trip|transfer|concurrent|routed]` (README
//! "Benchmarks"). The requester takes the first offer (the CLI waits 300 ms for more).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![allow(clippy::cast_precision_loss, reason = "rates for people")]

use std::collections::BTreeSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ash_identity::Identity;
use ash_ledger::{Body, Credits, Genesis, LogWriter, Mint, MintKind, Outcome, Profile, Receive};
use ash_net::{NetConfig, NetworkId};
use ash_node::{
    AgentEnd, AgentWork, JobAgent, JobSpec, Ledger, Node, NodeConfig, NodeEvent, Requested,
    ServeConfig,
};
use ash_protocol::PeerInfo;

#[path = "../tests/support/host_git.rs"]
mod host_git;

use host_git::HostGit;

const T: u64 = 1_765_000_000_000;
const RUNS: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    runtime.block_on(async {
        if run("round-trip") {
            round_trip().await;
        }
        if run("transfer") {
            transfer().await;
        }
        if run("concurrent") {
            concurrent().await;
        }
        if run("routed") {
            routed().await;
        }
    });
}

/// An agent that makes one edit (after `work`, standing for the agent's time).
struct OneEdit {
    work: Duration,
}

impl JobAgent for OneEdit {
    fn kind(&self) -> &str {
        "builtin"
    }
    fn model(&self, _tier: &str) -> Option<String> {
        Some("bench/one-edit".into())
    }
    fn routable(&self, _api: &str) -> bool {
        true
    }
    fn sandbox(&self) -> &str {
        "none"
    }
    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>> {
        let wait = self.work;
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            std::fs::write(work.workspace.join("EDITED.md"), "edited\n")
                .map_err(|e| e.to_string())?;
            let manifest =
                ash_protocol::JobManifest { models: vec![work.model], ..Default::default() };
            Ok(AgentEnd { summary: "one edit".into(), manifest })
        })
    }
}

/// A network of one acceptor and `requesters` requesters, each with credits, on loopback.
struct World {
    _root: tempfile::TempDir,
    requesters: Vec<Node>,
    events: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

async fn world(requesters: usize, slots: usize, work: Duration) -> World {
    world_with(requesters, slots, Arc::new(OneEdit { work })).await
}

async fn world_with(requesters: usize, slots: usize, agent: Arc<dyn JobAgent>) -> World {
    let root = tempfile::tempdir().unwrap();
    let authority = Identity::insecure_from_label("bench authority");
    let genesis = Genesis::new("jobs-bench", T, BTreeSet::from([authority.node_id()])).unwrap();
    let acceptor_id = Arc::new(Identity::insecure_from_label("bench acceptor"));
    let requester_ids: Vec<Arc<Identity>> = (0..requesters)
        .map(|n| Arc::new(Identity::insecure_from_label(&format!("bench requester {n}"))))
        .collect();
    // Every ledger starts with every profile and a grant for everyone.
    let mut entries = Vec::new();
    let mut admin = LogWriter::new(&authority, genesis.id());
    entries.push(admin.append(T, profile(&authority)));
    for who in std::iter::once(&acceptor_id).chain(&requester_ids) {
        let mut writer = LogWriter::new(who, genesis.id());
        entries.push(writer.append(T, profile(who)));
        let mint = admin.append(
            T + 1,
            Body::Mint(Mint {
                recipient: who.node_id(),
                amount: Credits::new(1_000_000),
                kind: MintKind::Grant,
                reason: "bench".into(),
            }),
        );
        entries.push(writer.append(T + 2, Body::Receive(Receive { mint: mint.id() })));
        entries.push(mint);
    }
    let start = |who: &Arc<Identity>, name: &str, bootstrap: Vec<String>, serve| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ledger = Ledger::open(&dir.join("ledger.db"), genesis.clone()).unwrap();
        ledger.insert(entries.clone()).unwrap();
        drop(ledger);
        let mut net = NetConfig::new(NetworkId(genesis.id().0), "ash/bench".into());
        net.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        net.bootstrap = bootstrap;
        net.mdns = false;
        net.gossip_heartbeat = Duration::from_millis(100);
        let config = NodeConfig {
            net,
            ledger: dir.join("ledger.db"),
            genesis: genesis.clone(),
            info: PeerInfo::default(),
            authority: None,
            signup: None,
            writer: true,
            jobs_dir: dir.join("jobs"),
            serve,
        };
        Node::start(Arc::clone(who), config).unwrap()
    };
    let serve = ServeConfig {
        agents: vec![agent],
        routed: true,
        tiers: Vec::new(),
        max_concurrent: slots,
        max_jobs: None,
        max_package_bytes: 1 << 30,
        limits: ash_pack::Limits::default(),
        run_time: Duration::from_secs(600),
        git: Arc::new(HostGit),
    };
    let mut acceptor = start(&acceptor_id, "acceptor", Vec::new(), Some(serve));
    let address = loop {
        if let Some(NodeEvent::Listening { address }) = acceptor.next_event().await {
            break address;
        }
    };
    let requesters: Vec<Node> = requester_ids
        .iter()
        .enumerate()
        .map(|(n, who)| start(who, &format!("requester{n}"), vec![address.clone()], None))
        .collect();
    // The acceptor's job events, timed, read by a task that owns the node until the process
    // ends.
    let events: Arc<Mutex<Vec<(Instant, String, String)>>> = Arc::default();
    let recorded = Arc::clone(&events);
    tokio::spawn(async move {
        while let Some(event) = acceptor.next_event().await {
            if let NodeEvent::Job { job, state, .. } = event {
                recorded.lock().unwrap().push((Instant::now(), job, state));
            }
        }
    });
    let world = World { _root: root, requesters, events };
    // Until each requester has heard the acceptor on the announcement topic, a job's first
    // announcement waits for the gossip mesh: one warm-up job each.
    for requester in &world.requesters {
        let repo = world._root.path().join("warm-up");
        small_repo(&repo);
        job(requester, &repo, true).await;
    }
    world
}

/// A repository of one file.
fn small_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("README.md"), "# bench\n").unwrap();
}

/// One job from `requester` on `repo`, decided (applied when `apply`); its duration.
async fn job(requester: &Node, repo: &Path, apply: bool) -> Duration {
    let start = Instant::now();
    let walk = ash_pack::walk(repo, &ash_pack::WalkOptions::default()).unwrap();
    let spec = JobSpec {
        prompt: "edit".into(),
        title: None,
        tier: "sonnet".into(),
        agents: vec!["builtin".into()],
        max_price: None,
        walk,
        pack: ash_pack::PackOptions::default(),
        offer_time: Duration::from_secs(30),
        choose_after: Duration::ZERO,
        run_time: Duration::from_secs(600),
        repo: None,
        routed: None,
    };
    let (events, mut sink) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move { while sink.recv().await.is_some() {} });
    let jobs = requester.jobs();
    let Requested::Delivered(delivered) = jobs.request(spec, events).await.unwrap() else {
        panic!("the job was cancelled");
    };
    let outcome = if apply {
        let journal = repo.with_extension("journal");
        let options = ash_pack::ApplyOptions { check_only: false, three_way: false };
        let target = repo.to_path_buf();
        let patch = delivered.patch.clone();
        tokio::task::spawn_blocking(move || {
            ash_pack::apply(&HostGit, &target, &patch, options, &journal).unwrap();
        })
        .await
        .unwrap();
        // The next run applies the same edit again.
        std::fs::remove_file(repo.join("EDITED.md")).unwrap();
        Outcome::Accept
    } else {
        Outcome::Reject
    };
    jobs.decide(&delivered.job, outcome).await.unwrap();
    start.elapsed()
}

fn report(what: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: min {:.1} ms, median {:.1} ms, max {:.1} ms ({} runs)",
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1]),
        sorted.len()
    );
}

async fn round_trip() {
    let world = world(1, 1, Duration::ZERO).await;
    let repo = world._root.path().join("repo");
    small_repo(&repo);
    let mut times = Vec::new();
    for _ in 0..RUNS {
        times.push(job(&world.requesters[0], &repo, true).await);
    }
    report("job round trip (announce → diff applied → decided and collected)", &times);
}

/// When the acceptor was assigned the newest job, and when its agent started (the package
/// fetched and checked in between).
fn transfer_time(world: &World) -> Duration {
    let events = world.events.lock().unwrap();
    let (_, job, _) = events.iter().rev().find(|(_, _, s)| s == "running").unwrap().clone();
    let at = |state: &str| {
        events.iter().find(|(_, j, s)| *j == job && s == state).map(|(t, _, _)| *t).unwrap()
    };
    at("running") - at("assigned")
}

async fn transfer() {
    let world = world(1, 1, Duration::ZERO).await;
    let tree = world._root.path().join("tree");
    let bytes = source_tree(&tree, 5000);
    let sealed = {
        let walk = ash_pack::walk(&tree, &ash_pack::WalkOptions::default()).unwrap();
        let me = Identity::insecure_from_label("bench sizer");
        let to = ash_pack::Recipient { node: me.node_id(), key: me.sealing_public() };
        let (_, _, out) = ash_pack::pack(
            &walk,
            &me,
            &to,
            ash_pack::JobId([0; 16]),
            &ash_pack::PackOptions::default(),
            Vec::new(),
        )
        .unwrap();
        out.len() as u64
    };
    let mut times = Vec::new();
    for _ in 0..3 {
        job(&world.requesters[0], &tree, false).await;
        times.push(transfer_time(&world));
    }
    times.sort();
    let median = times[1].as_secs_f64();
    println!(
        "package transfer, {:.1} MB tree of 5000 files ({:.1} MB sealed): median {:.0} ms, {:.0} MB/s of tree, {:.0} MB/s sealed",
        bytes as f64 / 1e6,
        sealed as f64 / 1e6,
        median * 1000.0,
        bytes as f64 / 1e6 / median,
        sealed as f64 / 1e6 / median
    );
    // Bytes that do not compress: the wire itself.
    let noise = world._root.path().join("noise");
    std::fs::create_dir_all(&noise).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u8> = (0..64 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(noise.join("noise.bin"), &data).unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        job(&world.requesters[0], &noise, false).await;
        times.push(transfer_time(&world));
    }
    times.sort();
    let median = times[1].as_secs_f64();
    println!(
        "package transfer, 64 MiB that does not compress: median {:.0} ms, {:.0} MB/s",
        median * 1000.0,
        (64 << 20) as f64 / 1e6 / median
    );
}

async fn concurrent() {
    let work = Duration::from_millis(500);
    let world = world(4, 8, work).await;
    let repos: Vec<_> = (0..8)
        .map(|n| {
            let dir = world._root.path().join(format!("repo{n}"));
            small_repo(&dir);
            dir
        })
        .collect();
    let single = job(&world.requesters[0], &repos[0], false).await;
    let start = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let world = Arc::new(world);
    for (n, repo) in repos.into_iter().enumerate() {
        let world = Arc::clone(&world);
        running.spawn(async move { job(&world.requesters[n % 4], &repo, false).await });
    }
    let mut each = Vec::new();
    while let Some(done) = running.join_next().await {
        each.push(done.unwrap());
    }
    println!(
        "one acceptor, 8 jobs at once (each agent works {} ms): all done in {:.0} ms; one alone takes {:.0} ms",
        work.as_millis(),
        start.elapsed().as_secs_f64() * 1000.0,
        single.as_secs_f64() * 1000.0
    );
    report("  each of the 8", &each);
}

/// A source-like tree: `src/pkgNN/modN/fileN.rs` of about 10 KB of words each.
fn source_tree(root: &Path, files: usize) -> u64 {
    let words =
        ["let", "value", "match", "buffer", "result", "config", "fn", "state", "node", "=>"];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut total = 0;
    for i in 0..files {
        let dir = root.join(format!("src/pkg{:02}/mod{}", i % 50, (i / 50) % 10));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::with_capacity(10_000);
        while text.len() < 9_800 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(words[(x % 10) as usize]);
            text.push(if x.is_multiple_of(7) { '\n' } else { ' ' });
            text.push_str(&format!("{}", x % 1000));
            text.push(' ');
        }
        total += text.len() as u64;
        std::fs::write(dir.join(format!("file{i}.rs")), text).unwrap();
    }
    total
}

fn profile(who: &Identity) -> Body {
    Body::Profile(Profile {
        username: "bench".into(),
        sealing_key: who.sealing_public(),
        created_at: T,
    })
}

/// An agent that makes `calls` model calls with bodies of `pad` bytes through the routed
/// model, timing each, then one edit.
struct Caller {
    calls: usize,
    pad: usize,
    times: Arc<Mutex<Vec<Duration>>>,
}

impl JobAgent for Caller {
    fn kind(&self) -> &str {
        "builtin"
    }
    fn model(&self, _tier: &str) -> Option<String> {
        Some("bench/caller".into())
    }
    fn routable(&self, _api: &str) -> bool {
        true
    }
    fn sandbox(&self) -> &str {
        "none"
    }
    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>> {
        let (calls, pad, times) = (self.calls, self.pad, Arc::clone(&self.times));
        Box::pin(async move {
            if let Some(routed) = &work.routed {
                let body = serde_json::json!({"model": work.model, "pad": "x".repeat(pad)});
                // One call every 100 ms: a model answers far slower than that, and back-to-back
                // calls would time the per-peer request limit (20 a second), not the way.
                let mut pace = tokio::time::interval(Duration::from_millis(100));
                for _ in 0..calls {
                    pace.tick().await;
                    let call = ash_node::RoutedCall {
                        api: "messages".into(),
                        query: String::new(),
                        headers: Vec::new(),
                        body: body.to_string().into_bytes(),
                    };
                    let start = Instant::now();
                    let answer = routed.call(call).await?;
                    times.lock().unwrap().push(start.elapsed());
                    assert_eq!(answer.status, 200);
                }
            }
            std::fs::write(work.workspace.join("EDITED.md"), "edited\n")
                .map_err(|e| e.to_string())?;
            let manifest =
                ash_protocol::JobManifest { models: vec![work.model], ..Default::default() };
            Ok(AgentEnd { summary: "called".into(), manifest })
        })
    }
}

/// Answers every call at once with `size` bytes: what is timed is the way there and back.
struct Instant0 {
    size: usize,
}

impl ash_node::ModelProvider for Instant0 {
    fn call(
        &self,
        _call: ash_node::RoutedCall,
    ) -> Pin<Box<dyn Future<Output = Result<ash_node::RoutedAnswer, String>> + Send + '_>> {
        let body = vec![b'y'; self.size];
        Box::pin(async move {
            Ok(ash_node::RoutedAnswer {
                status: 200,
                content_type: "text/event-stream".into(),
                body,
                tokens: 1,
            })
        })
    }
}

async fn routed() {
    for (pad, answer, what) in [
        (1_000, 2_000, "1 kB call, 2 kB answer (inline)"),
        (200_000, 200_000, "200 kB call, 200 kB answer (chunks)"),
    ] {
        let times = Arc::new(Mutex::new(Vec::new()));
        let caller = Arc::new(Caller { calls: 100, pad, times: Arc::clone(&times) });
        let world = world_with(1, 1, caller).await;
        times.lock().unwrap().clear();
        let repo = world._root.path().join("routed");
        small_repo(&repo);
        let walk = ash_pack::walk(&repo, &ash_pack::WalkOptions::default()).unwrap();
        let spec = JobSpec {
            prompt: "call".into(),
            title: None,
            tier: "machine".into(),
            agents: vec!["builtin".into()],
            max_price: None,
            walk,
            pack: ash_pack::PackOptions::default(),
            offer_time: Duration::from_secs(30),
            choose_after: Duration::ZERO,
            run_time: Duration::from_secs(600),
            repo: None,
            routed: Some(ash_node::Routing {
                provider_name: "bench".into(),
                api: "anthropic".into(),
                model: "bench/routed".into(),
                max_calls: 10_000,
                max_tokens: u64::MAX,
                provider: Arc::new(Instant0 { size: answer }),
            }),
        };
        let (events, mut sink) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move { while sink.recv().await.is_some() {} });
        let jobs = world.requesters[0].jobs();
        let Requested::Delivered(delivered) = jobs.request(spec, events).await.unwrap() else {
            panic!("the routed job was cancelled");
        };
        jobs.decide(&delivered.job, Outcome::Accept).await.unwrap();
        let mut times = times.lock().unwrap().clone();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "routed model call, {what}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} calls)",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 99 / 100]),
            ms(times[times.len() - 1]),
            times.len()
        );
    }
}
