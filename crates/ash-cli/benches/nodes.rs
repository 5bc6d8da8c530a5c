//! Several `ash start` nodes on one PostgreSQL database, measured from outside the processes.
//!
//! `cargo bench -p ash-cli --bench nodes [-- --turns N] [--sessions N] [--ttl SECS]` needs a
//! PostgreSQL server: `ASH_TEST_POSTGRES` (an admin URL; `bash .ci/postgres start` prints one).
//! Each part runs on a fresh database and prints:
//!
//! - **per-turn time**: N (default 100) sessions one after another, each the compared workload
//!   (two model calls, one sandboxed command tool; the model answers at once), on SQLite
//!   (`synchronous=FULL`) and on PostgreSQL: p50/p99 from POST to `session.waiting`;
//! - **cross-node stream latency**: the same sessions posted to node A while node B streams
//!   them: for each event, from its store timestamp (the database's clock, this machine) to
//!   the moment B's reader has it; against a reader on A;
//! - **takeover**: a node SIGKILLed mid-tool with `--lease-ttl SECS` (default 2), five times:
//!   from the kill to another node holding the run's lease (polled in the database);
//! - **turns/s with 1, 2 and 3 nodes**: N (default 60) sessions at once, posted round-robin.
//!
//! The servers use the native sandbox.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark binary"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use ash_test_support::postgres::{Postgres, psql};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use serde_json::{Value, json};

mod common;

use common::{AshStart, percentile, weather_agent};

const PREFIX: &str = "/.well-known/ash/v1";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A node on `store` with its own state directory under `project`.
fn node(project: &Path, store: &str, n: usize, extra: &[&str]) -> AshStart {
    let mut args =
        vec!["--state-dir".to_owned(), project.join(format!("node{n}")).display().to_string()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    AshStart::start(project, Path::new(store), &args)
}

/// The compared workload's replies, by step: every session gets them in order.
fn script_workload(model: &FakeModelServer) {
    model
        .clear()
        .push(Reply::Turn(Turn::empty().then_tool_call("c1", "get_weather", r#"{"city":"Paris"}"#)))
        .push(Reply::Turn(Turn::text("It's 72°F in Paris.")))
        .by_step();
}

/// POSTs `message` as a fresh session to `base`; its run id.
async fn post(http: &reqwest::Client, base: &str, message: &str) -> String {
    let accepted: Value = http
        .post(format!("{base}{PREFIX}/message"))
        .json(&json!({ "message": message }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    accepted["runId"].as_str().expect("accepted").to_owned()
}

/// POST a fresh session to `post`, read its stream on `read` to `session.waiting`. Returns the
/// time taken and, per event, how long after its store timestamp `read` delivered it.
async fn one_session(http: &reqwest::Client, post: &str, read: &str) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let run_id = self::post(http, post, "What's the weather in Paris?").await;
    let mut response =
        http.get(format!("{read}{PREFIX}/runs/{run_id}/stream?startIndex=0")).send().await.unwrap();
    let mut lags = Vec::new();
    let mut buffer = Vec::new();
    loop {
        let chunk = response.chunk().await.unwrap().expect("the stream ended early");
        let now = chrono::Utc::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap();
            if let Some(at) = event["meta"]["at"].as_str() {
                let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
                let lag = now.signed_duration_since(at).to_std().unwrap_or_default();
                lags.push(lag);
            }
            if event["type"] == "session.waiting" {
                return (started.elapsed(), lags);
            }
        }
    }
}

async fn per_turn(project: &Fixture, store: &str, turns: u64) -> Vec<Duration> {
    let server = node(project.path(), store, 9, &[]);
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..turns {
        times.push(one_session(&http, &server.base, &server.base).await.0);
    }
    times.sort();
    times
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let Some(pg) = Postgres::shared("the nodes benchmark") else { return };
    let turns = arg("--turns", 100);
    let sessions = arg("--sessions", 60);
    let ttl = arg("--ttl", 2);
    let model = FakeModelServer::start().await;
    let project = weather_agent(&model, "bench");
    script_workload(&model);

    println!("per-turn time, {turns} sessions one after another (two model calls, one tool):");
    let sqlite = per_turn(&project, project.join("sqlite/ash.db").to_str().unwrap(), turns).await;
    let postgres = per_turn(&project, &pg.fresh_database(), turns).await;
    for (label, times) in [("SQLite (FULL)", &sqlite), ("PostgreSQL", &postgres)] {
        println!(
            "  {label:<14} p50 {}  p99 {}",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.99))
        );
    }

    println!("stream latency, from an event's store timestamp to a reader having it:");
    let url = pg.fresh_database();
    let (a, b) = (node(project.path(), &url, 0, &[]), node(project.path(), &url, 1, &[]));
    let http = reqwest::Client::new();
    for (label, reader) in [("same node", &a), ("other node", &b)] {
        let mut lags = Vec::new();
        for _ in 0..turns / 2 {
            lags.extend(one_session(&http, &a.base, &reader.base).await.1);
        }
        lags.sort();
        println!(
            "  {label:<14} p50 {}  p99 {}  ({} events)",
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99)),
            lags.len()
        );
    }
    drop((a, b));

    takeover(&model, &pg, ttl).await;
    script_workload(&model);

    println!("throughput, {sessions} sessions at once, posted round-robin:");
    for count in 1..=3usize {
        let url = pg.fresh_database();
        let nodes: Vec<AshStart> =
            (0..count).map(|n| node(project.path(), &url, 10 + n, &[])).collect();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for s in 0..sessions {
            let base = nodes[usize::try_from(s).unwrap() % count].base.clone();
            let http = http.clone();
            tasks.push(tokio::spawn(async move { one_session(&http, &base, &base).await.0 }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        let took = started.elapsed();
        times.sort();
        println!(
            "  {count} node(s): {:.1} turns/s, p50 {} p99 {}",
            sessions as f64 / took.as_secs_f64(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
}

/// Five times: a run's node is SIGKILLed while its tool sleeps; the time until another node
/// holds the run's lease.
async fn takeover(model: &FakeModelServer, pg: &Postgres, ttl: u64) {
    println!("takeover after SIGKILL, lease TTL {ttl} s:");
    let slow = Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"slow\"\nmodel = \"openai/bench\"\n[providers.openai]\nbase_url = \"{}\"\n\
         //- agent/system.md\nWork.\n\
         //- agent/tools/slow.toml\ndescription = \"Works slowly.\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; sleep 30\"]\n\
         [input_schema]\ntype = \"object\"\n",
        model.base_url()
    ));
    let url = pg.fresh_database();
    let ttl_arg = ttl.to_string();
    let mut nodes: Vec<Option<AshStart>> =
        (0..3).map(|n| Some(node(slow.path(), &url, n, &["--lease-ttl", &ttl_arg]))).collect();
    // Each slot's state directory number: a replaced node gets a fresh one.
    let mut dirs: Vec<usize> = (0..3).collect();
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for round in 0..5 {
        let Some(entry) = nodes.iter().position(Option::is_some) else { break };
        let base = nodes[entry].as_ref().unwrap().base.clone();
        model
            .clear()
            .push(Reply::Turn(Turn::empty().then_tool_call("s", "slow", "{}")))
            .push(Reply::Turn(Turn::text("done")))
            .by_step();
        let run_id = post(&http, &base, "work").await;
        // Wait until some node works on it (its workspace exists), then kill that one.
        let working = loop {
            if let Some(n) = (0..3).find(|n| {
                let dir = dirs[*n];
                nodes[*n].is_some() && slow.join(&format!("node{dir}/workspaces/{run_id}")).exists()
            }) {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = psql(&url, &format!("SELECT lease_epoch FROM runs WHERE run_id = '{run_id}'"));
        let killed = Instant::now();
        nodes[working].take();
        loop {
            assert!(killed.elapsed() < Duration::from_secs(120), "no node took the run over");
            let now = psql(
                &url,
                &format!(
                    "SELECT lease_epoch FROM runs WHERE run_id = '{run_id}' AND lease_owner IS NOT NULL"
                ),
            );
            if !now.is_empty() && now != before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(killed.elapsed());
        println!("  round {round}: {}", ms(killed.elapsed()));
        // A new node in the dead one's place.
        dirs[working] = 3 + round;
        nodes[working] = Some(node(slow.path(), &url, 3 + round, &["--lease-ttl", &ttl_arg]));
    }
    times.sort();
    println!(
        "  p50 {}  max {}  (target: TTL + 1 s = {} s)",
        ms(percentile(&times, 0.5)),
        ms(times[times.len() - 1]),
        ttl + 1
    );
}
