//! Harness overhead: the engine over the SQLite store against a fake model that answers at once.
//!
//! Run with `cargo bench -p ash-store --bench harness` (an optimised build). Prints, for
//! `synchronous=FULL` (durable, the default) and `NORMAL`:
//! - per turn: POST-equivalent (`Engine::send`) to `session.waiting` for a one-step turn, p50/p99,
//!   minus the model call's median time measured separately against the same fake server;
//! - per step: the extra time of a turn with one more step (a `read_file` tool call), p50/p99;
//! - 1,000 concurrent sessions: wall time, turns per second, errors;
//! - memory per parked session: resident memory growth per session after 1,000 parked sessions,
//!   and the number of worker tasks and live channels left (both must be 0);
//! - per delegation: a turn that delegates to a subagent answering in one step, against the
//!   two-step turn, with the child's model call removed: what a child run costs beyond its model;
//! - parked approvals: 1,000 runs paused on a call that needs approval hold no worker task.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash_core::{Engine, EngineConfig, Inbound, Store};
use ash_llm::{Client, ClientConfig, Model, ModelRequest, ProviderTable};
use ash_protocol::Message;
use ash_spec::{LoadOptions, ModelRef, Provider, ProviderApi};
use ash_store::{Durability, SqliteStore};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use tokio_util::sync::CancellationToken;

const TURNS: usize = 300;
const CONCURRENT: usize = 1000;

fn model_for(server: &FakeModelServer, dir: &Path) -> Model {
    let env = BTreeMap::from([("OPENAI_API_KEY".to_owned(), "bench".to_owned())]);
    let mut table = ProviderTable::builtin(&env);
    let layer =
        Provider { api: ProviderApi::OpenAi, base_url: Some(server.base_url()), api_key_env: None };
    table.apply("openai", &layer, &env);
    let client = Client::new(table, ClientConfig::default()).unwrap();
    client.model(&ModelRef::parse("openai/bench").unwrap(), dir).unwrap()
}

fn engine(fx: &Fixture, server: &FakeModelServer, durability: Durability, name: &str) -> Engine {
    let (spec, _) =
        ash_spec::load(fx.path(), &LoadOptions::default()).unwrap().into_result().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&fx.join(&format!("{name}/ash.db")), durability).unwrap());
    let config = EngineConfig::new(fx.path(), fx.join(&format!("{name}/workspaces")));
    Engine::start(spec, model_for(server, fx.path()), store, config).unwrap()
}

/// Sends a message and waits for `session.waiting`; returns the elapsed time and the token.
async fn turn(engine: &Engine, token: Option<String>) -> (Duration, String) {
    let started = Instant::now();
    let accepted =
        engine.send(Inbound { continuation_token: token, ..Inbound::new("hi") }).await.unwrap();
    let mut follower =
        engine.follow(&accepted.run_id, accepted.start_index).await.unwrap().unwrap();
    while let Some(event) = follower.next().await.unwrap() {
        if event.body.type_name() == "session.waiting" {
            break;
        }
    }
    (started.elapsed(), accepted.continuation_token)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:>8.0} µs", d.as_secs_f64() * 1e6)
}

async fn model_median(server: &FakeModelServer, dir: &Path) -> Duration {
    let model = model_for(server, dir);
    let request = ModelRequest { messages: vec![Message::user("hi")], ..ModelRequest::default() };
    let mut times = Vec::new();
    for _ in 0..TURNS {
        let started = Instant::now();
        model.complete(&request, CancellationToken::new()).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

/// Turn latencies over `TURNS` turns, ten turns per session.
async fn turn_times(engine: &Engine) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut token = None;
    for i in 0..TURNS {
        if i % 10 == 0 {
            token = None;
        }
        let (elapsed, next) = turn(engine, token).await;
        token = Some(next);
        times.push(elapsed);
    }
    times.sort();
    times
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn scenario(durability: Durability, label: &str) {
    let fx = Fixture::new(
        "//- agent/agent.toml\nname = \"bench\"\nmodel = \"openai/bench\"\n//- agent/system.md\nBe brief.\n//- notes.txt\nhello\n",
    );
    println!("\n{label}");

    // One-step turns.
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("ok").usage(10, 1, 0, 0))).repeat();
    let model = model_median(&server, fx.path()).await;
    let one = engine(&fx, &server, durability, "one");
    let times = turn_times(&one).await;
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!("  model call alone (median)      {}", micros(model));
    println!(
        "  one-step turn  p50 {}  p99 {}   overhead p50 {}  p99 {}",
        micros(p50),
        micros(p99),
        micros(p50.saturating_sub(model)),
        micros(p99.saturating_sub(model))
    );
    one.shutdown().await;

    // Two-step turns: a read_file call, then the answer. The difference is one more step.
    let server = FakeModelServer::start().await;
    server
        .push(Reply::Turn(Turn::empty().then_tool_call(
            "c",
            "read_file",
            r#"{"path":"missing.txt"}"#,
        )))
        .push(Reply::Turn(Turn::text("ok")))
        .repeat();
    let two = engine(&fx, &server, durability, "two");
    let two_times = turn_times(&two).await;
    let step = |p: f64| {
        percentile(&two_times, p).saturating_sub(percentile(&times, p)).saturating_sub(model)
    };
    println!(
        "  two-step turn  p50 {}  p99 {}",
        micros(percentile(&two_times, 0.5)),
        micros(percentile(&two_times, 0.99))
    );
    println!(
        "  per-step overhead (tool step, model time removed)  p50 {}  p99 {}",
        micros(step(0.5)),
        micros(step(0.99))
    );
    two.shutdown().await;

    // 1,000 concurrent sessions.
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("ok"))).repeat();
    let many = engine(&fx, &server, durability, "many");
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT {
        let engine = many.clone();
        tasks.spawn(async move { turn(&engine, None).await });
    }
    let mut errors = 0;
    while let Some(result) = tasks.join_next().await {
        if result.is_err() {
            errors += 1;
        }
    }
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = rss_kib();
    println!(
        "  {CONCURRENT} concurrent sessions: {:.2} s, {:.0} turns/s, {errors} errors",
        wall.as_secs_f64(),
        CONCURRENT as f64 / wall.as_secs_f64()
    );
    println!(
        "  parked: {} worker tasks, {} live channels; resident memory +{} KiB for {CONCURRENT} sessions (≈{:.1} KiB each, allocator high-water included)",
        many.active_runs(),
        many.live_channels(),
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / CONCURRENT as f64
    );
    many.shutdown().await;

    // Delegation: the parent's tool step is a child run answering in one step.
    let delegating = Fixture::new(
        "//- agent/agent.toml\nname = \"bench\"\nmodel = \"openai/bench\"\n//- agent/system.md\nBe brief.\n\
         //- agent/subagents/helper/agent.toml\ndescription = \"Helps.\"\n\
         //- agent/tools/guarded.toml\ndescription = \"Needs approval.\"\ncommand = [\"true\"]\napproval = \"required\"\n",
    );
    let server = FakeModelServer::start().await;
    server
        .push(Reply::Turn(Turn::empty().then_tool_call("d", "helper", r#"{"message":"help"}"#)))
        .push(Reply::Turn(Turn::text("ok")))
        .push(Reply::Turn(Turn::text("ok")))
        .repeat();
    let parent = engine(&delegating, &server, durability, "delegate");
    let delegation_times = turn_times(&parent).await;
    let extra = |p: f64| {
        percentile(&delegation_times, p)
            .saturating_sub(percentile(&two_times, p))
            .saturating_sub(model)
    };
    println!(
        "  delegating turn  p50 {}  p99 {}",
        micros(percentile(&delegation_times, 0.5)),
        micros(percentile(&delegation_times, 0.99))
    );
    println!(
        "  per-delegation overhead (child run beyond its model call)  p50 {}  p99 {}",
        micros(extra(0.5)),
        micros(extra(0.99))
    );
    parent.shutdown().await;

    // Parked approvals hold nothing.
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::empty().then_tool_call("g", "guarded", "{}"))).repeat();
    let guarded = engine(&delegating, &server, durability, "guarded");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT {
        let engine = guarded.clone();
        tasks.spawn(async move { turn(&engine, None).await });
    }
    while tasks.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "  {CONCURRENT} runs paused on an approval: {} worker tasks, {} live channels",
        guarded.active_runs(),
        guarded.live_channels()
    );
    guarded.shutdown().await;
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        println!("ash harness benchmarks ({TURNS} turns per latency figure; SQLite store)");
        scenario(Durability::Full, "synchronous=FULL (durable, default)").await;
        scenario(Durability::Normal, "synchronous=NORMAL (--fast-sync)").await;
    });
}
