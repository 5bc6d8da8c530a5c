//! The workload agent frameworks are compared on, through ash's real path: a fresh session per
//! turn, one user message, two streamed Chat Completions calls to a local fake model that
//! answers at once (the first asks for `get_weather`, the second answers), and a command tool
//! that prints a small JSON object, run in the default (native) sandbox; the store durable
//! (SQLite, `synchronous=FULL`).
//!
//! `cargo bench -p ash-cli --bench turn [-- --turns N]` prints, for the engine in process and
//! for `ash start` over HTTP: p50/p99 per turn, the overhead beyond a bare streaming HTTP
//! client's two model calls, the breakdown (first model call, tool call, second model call,
//! the rest: commits and stream delivery), and 100 turns at once (turns/s).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark binary"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash_core::{Engine, EngineConfig, Inbound, Store};
use ash_llm::{Client, ClientConfig, Model, ProviderTable};
use ash_sandbox::{BackendChoice, BackendKind, Sandbox, SandboxConfig};
use ash_spec::{LoadOptions, ModelRef, Provider, ProviderApi};
use ash_store::{Durability, SqliteStore};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use common::{AshStart, percentile, weather_agent};
use serde_json::{Value, json};

mod common;

const CONCURRENT: usize = 100;

fn model_for(server: &FakeModelServer, dir: &Path) -> Model {
    let env = BTreeMap::from([("OPENAI_API_KEY".to_owned(), "bench".to_owned())]);
    let mut table = ProviderTable::builtin(&env);
    let layer =
        Provider { api: ProviderApi::OpenAi, base_url: Some(server.base_url()), api_key_env: None };
    table.apply("openai", &layer, &env);
    Client::new(table, ClientConfig::default())
        .unwrap()
        .model(&ModelRef::parse("openai/bench").unwrap(), dir)
        .unwrap()
}

async fn engine(fx: &Fixture, server: &FakeModelServer, state: &Path) -> Engine {
    let (spec, _) =
        ash_spec::load(fx.path(), &LoadOptions::default()).unwrap().into_result().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&state.join("ash.db"), Durability::Full).unwrap());
    let mut sandbox =
        SandboxConfig::new(BackendChoice::Exactly(BackendKind::Native), state.join("run"));
    sandbox.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_ash")));
    let mut config = EngineConfig::new(fx.path(), state.join("workspaces"));
    config.sandbox = Arc::new(Sandbox::new(sandbox).await.unwrap());
    Engine::start(spec, model_for(server, fx.path()), store, config).unwrap()
}

/// Event arrival times of one turn, from the moment the message was sent.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    accepted: Duration,
    actions: Duration,
    result: Duration,
    answer: Duration,
    waiting: Duration,
}

async fn engine_turn(engine: &Engine) -> Marks {
    engine_turn_in(engine, None).await.0
}

/// One turn, in the session `token` names (a fresh one without); returns the next token.
async fn engine_turn_in(engine: &Engine, token: Option<String>) -> (Marks, String) {
    let started = Instant::now();
    let accepted = engine
        .send(Inbound { continuation_token: token, ..Inbound::new("What's the weather in Paris?") })
        .await
        .unwrap();
    let mut marks = Marks { accepted: started.elapsed(), ..Marks::default() };
    let mut follower =
        engine.follow(&accepted.run_id, accepted.start_index).await.unwrap().unwrap();
    while let Some(event) = follower.next().await.unwrap() {
        let at = started.elapsed();
        match event.body.type_name() {
            "actions.requested" => marks.actions = at,
            "action.result" => marks.result = at,
            "message.completed" => marks.answer = at,
            "session.waiting" => {
                marks.waiting = at;
                break;
            }
            _ => {}
        }
    }
    (marks, accepted.continuation_token)
}

/// One turn over HTTP: POST /message, then the stream from its start index to `session.waiting`.
async fn http_turn(http: &reqwest::Client, base: &str) -> Marks {
    let started = Instant::now();
    let accepted: Value = http
        .post(format!("{base}/.well-known/ash/v1/message"))
        .json(&json!({"message": "What's the weather in Paris?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut marks = Marks { accepted: started.elapsed(), ..Marks::default() };
    let url = format!(
        "{base}{}?startIndex={}",
        accepted["streamPath"].as_str().unwrap(),
        accepted["startIndex"]
    );
    let mut response = http.get(url).send().await.unwrap();
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap();
            let at = started.elapsed();
            match event["type"].as_str().unwrap_or_default() {
                "actions.requested" => marks.actions = at,
                "action.result" => marks.result = at,
                "message.completed" => marks.answer = at,
                "session.waiting" => {
                    marks.waiting = at;
                    return marks;
                }
                _ => {}
            }
        }
    }
    marks
}

/// The fake model's two calls made by a bare streaming client (reqwest, one connection).
async fn bare_model_calls(server: &FakeModelServer, turns: usize) -> Duration {
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());
    let mut times = Vec::new();
    for _ in 0..turns {
        let started = Instant::now();
        for messages in [
            json!([{"role": "user", "content": "hi"}]),
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]),
        ] {
            let mut response = http
                .post(&url)
                .bearer_auth("bench")
                .json(&json!({"model": "bench", "stream": true, "messages": messages}))
                .send()
                .await
                .unwrap();
            while response.chunk().await.unwrap().is_some() {}
        }
        times.push(started.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

/// Runs [`CONCURRENT`] turns made by `turn` at once and prints the throughput.
async fn at_once<F, T>(turn: impl Fn() -> F)
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT {
        tasks.spawn(turn());
    }
    while tasks.join_next().await.is_some() {}
    let wall = started.elapsed();
    println!(
        "  {CONCURRENT} turns at once: {:.2} s, {:.0} turns/s",
        wall.as_secs_f64(),
        CONCURRENT as f64 / wall.as_secs_f64()
    );
}

fn ms(d: Duration) -> String {
    format!("{:>7.2} ms", d.as_secs_f64() * 1e3)
}

fn report(label: &str, marks: &[Marks], bare: Duration) {
    let column = |f: &dyn Fn(&Marks) -> Duration| {
        let mut v: Vec<Duration> = marks.iter().map(f).collect();
        v.sort();
        (percentile(&v, 0.5), percentile(&v, 0.99))
    };
    let (total50, total99) = column(&|m| m.waiting);
    println!("\n{label} ({} turns)", marks.len());
    println!("  turn                 p50 {}  p99 {}", ms(total50), ms(total99));
    println!(
        "  overhead beyond the bare client's two model calls ({}): p50 {}  p99 {}",
        ms(bare).trim(),
        ms(total50.saturating_sub(bare)),
        ms(total99.saturating_sub(bare))
    );
    type Part<'a> = (&'a str, &'a dyn Fn(&Marks) -> Duration);
    let parts: [Part<'_>; 5] = [
        ("accepted (message stored)", &|m| m.accepted),
        ("first model call", &|m| m.actions.saturating_sub(m.accepted)),
        ("tool call (sandboxed)", &|m| m.result.saturating_sub(m.actions)),
        ("second model call", &|m| m.answer.saturating_sub(m.result)),
        ("end of turn (commit, delivery)", &|m| m.waiting.saturating_sub(m.answer)),
    ];
    for (name, f) in parts {
        let (p50, p99) = column(f);
        println!("    {name:<32} p50 {}  p99 {}", ms(p50), ms(p99));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let turns = args
        .iter()
        .position(|a| a == "--turns")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(200usize);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let server = FakeModelServer::start().await;
        server
            .push(Reply::Turn(Turn::empty().then_tool_call(
                "c1",
                "get_weather",
                r#"{"city":"Paris"}"#,
            )))
            .push(Reply::Turn(Turn::text("It's 72°F in Paris.")))
            .by_step();
        let fx = weather_agent(&server, "bench");
        let bare = bare_model_calls(&server, turns).await;

        // In process.
        let state = tempfile::tempdir().unwrap();
        let engine = engine(&fx, &server, state.path()).await;
        for _ in 0..10 {
            engine_turn(&engine).await;
        }
        let mut marks = Vec::new();
        for _ in 0..turns {
            marks.push(engine_turn(&engine).await);
        }
        report("engine in process, native sandbox, SQLite FULL", &marks, bare);
        // Later turns of one session: its sandbox is kept (a zygote per workspace view).
        let mut later = Vec::new();
        for _ in 0..turns.div_ceil(10) {
            let (_, mut token) = engine_turn_in(&engine, None).await;
            for _ in 0..9 {
                let (marks, next) = engine_turn_in(&engine, Some(token)).await;
                later.push(marks);
                token = next;
            }
        }
        report("  the same, later turns of a session", &later, bare);
        at_once(|| {
            let engine = engine.clone();
            async move { engine_turn(&engine).await }
        })
        .await;
        engine.shutdown().await;

        // `ash start` over HTTP.
        let state = tempfile::tempdir().unwrap();
        let server = AshStart::start(fx.path(), &state.path().join("ash.db"), &[]);
        let base = server.base.clone();
        let http = reqwest::Client::new();
        for _ in 0..10 {
            http_turn(&http, &base).await;
        }
        let mut marks = Vec::new();
        for _ in 0..turns {
            marks.push(http_turn(&http, &base).await);
        }
        report("ash start over HTTP, native sandbox, SQLite FULL", &marks, bare);
        at_once(|| {
            let (http, base) = (http.clone(), base.clone());
            async move { http_turn(&http, &base).await }
        })
        .await;
    });
}
