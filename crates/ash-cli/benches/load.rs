//! `ash start` under load, measured from outside the process: what a crowd of sessions, a
//! crowd of idle sockets and a crowd of readers that never read cost in time and memory.
//!
//! `cargo bench -p ash-cli --bench load [-- --sessions N [--no-tool] --idle N --readers N
//! [--answer-kib K] [--server ARGS…]]`
//! prints (arguments after `--server` go to `ash start`, e.g. `--fast-sync`):
//!
//! - **sessions at once**: N (default 1,000) fresh sessions sent together, each the compared
//!   workload (two model calls, one sandboxed command tool) with a model that takes 0.2 s per
//!   call; sessions/s, end-to-end p50/p99, errors, and the server's resident memory before,
//!   at its peak, and once every session is parked (waiting for its next message);
//! - **idle connections**: N (default 10,000) sockets opened and left silent; `/health` latency
//!   on a fresh connection meanwhile, and resident memory;
//! - **readers that never read**: N (default 1,000) streams of one long session (16 turns of
//!   answers of `--answer-kib` KiB, 512 by default: 8 MiB of events) requested and never
//!   read; `/health` latency and resident memory.
//!
//! The server runs with the default sandbox (native) and a durable SQLite store.
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

use ash_test_support::{FakeModelServer, Reply, Turn};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const PREFIX: &str = "/.well-known/ash/v1";

mod common;

use common::{AshStart, percentile, weather_agent};

/// `ash start` for `project`, its store in `state`, a long request timeout (the idle sockets
/// must stay) and `extra`.
fn start(project: &Path, state: &Path, extra: &[String]) -> AshStart {
    let mut args = vec!["--request-timeout".to_owned(), "120".to_owned()];
    args.extend_from_slice(extra);
    AshStart::start(project, &state.join("ash.db"), &args)
}

/// What the load benchmark reads of the server.
impl AshStart {
    /// `127.0.0.1:PORT`.
    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Resident and peak resident memory, in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU time of the server and its reaped children (sandbox helpers and tools), in seconds.
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name's closing parenthesis; utime is the 12th of them.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ticks: f64 =
            after.split(' ').skip(11).take(4).map(|f| f.parse::<f64>().unwrap_or(0.0)).sum();
        ticks / 100.0
    }

    /// `/health` on a fresh connection: the status and how long the answer took.
    async fn health(&self) -> (u16, Duration) {
        let started = Instant::now();
        let mut stream = TcpStream::connect(self.addr()).await.unwrap();
        stream
            .write_all(
                format!("GET {PREFIX}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, started.elapsed())
    }

    /// `/health` twenty times; prints the latencies and the memory.
    async fn report_health(&self, label: &str) {
        let mut times = Vec::new();
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let (status, took) = self.health().await;
            statuses.push(status);
            times.push(took);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.sort();
        statuses.dedup();
        let (rss, peak) = self.memory();
        println!(
            "  {label}: /health {statuses:?} p50 {} max {}; RSS {rss:.0} MiB (peak {peak:.0} MiB)",
            ms(percentile(&times, 0.5)),
            ms(times[times.len() - 1]),
        );
    }
}

/// One session over HTTP: POST /message (a fresh session unless `token`), then its stream to
/// `session.waiting`. Returns the time taken and the next continuation token.
async fn session(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let mut body = json!({"message": "What's the weather in Paris?"});
    if let Some(token) = token {
        body["continuationToken"] = json!(token);
    }
    let response = http
        .post(format!("{base}{PREFIX}/message"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let accepted: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {accepted}"));
    }
    let url = format!(
        "{base}{}?startIndex={}",
        accepted["streamPath"].as_str().unwrap_or_default(),
        accepted["startIndex"]
    );
    let mut response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
            match event["type"].as_str().unwrap_or_default() {
                "session.waiting" => {
                    let token = accepted["continuationToken"].as_str().unwrap_or_default();
                    return Ok((started.elapsed(), token.to_owned()));
                }
                "run.failed" => return Err(event.to_string()),
                _ => {}
            }
        }
    }
    Err("the stream ended before session.waiting".to_owned())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Sessions sent together: throughput, latency, errors and memory.
async fn sessions_at_once(count: usize, with_tool: bool, extra: &[String]) {
    let model = FakeModelServer::start().await;
    let latency = Duration::from_millis(200);
    if with_tool {
        model.push(Reply::Turn(
            Turn::empty()
                .then_tool_call("c1", "get_weather", r#"{"city":"Paris"}"#)
                .latency(latency),
        ));
    }
    model.push(Reply::Turn(Turn::text("It's 72°F in Paris.").latency(latency))).by_step();
    let fx = weather_agent(&model, "load");
    let state = tempfile::tempdir().unwrap();
    let server = start(fx.path(), state.path(), extra);
    let http = reqwest::Client::new();
    for _ in 0..5 {
        session(&http, &server.base, None).await.unwrap();
    }
    let (before, _) = server.memory();
    if with_tool {
        println!(
            "\n{count} sessions at once (model 0.2 s per call, two calls and a sandboxed tool each)"
        );
    } else {
        println!("\n{count} sessions at once (model 0.2 s per call, one call each, no tool)");
    }
    let cpu = server.cpu();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (http, base) = (http.clone(), server.base.clone());
        tasks.spawn(async move { session(&http, &base, None).await });
    }
    let mut times = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok((took, _)) => times.push(took),
            Err(error) => errors.push(error),
        }
    }
    let wall = started.elapsed();
    let cpu = server.cpu() - cpu;
    times.sort();
    println!(
        "  server CPU (with its sandboxes) {:.1} ms per session, {:.0}% of the machine",
        cpu * 1e3 / count as f64,
        cpu / wall.as_secs_f64() / 2.0 * 100.0
    );
    println!(
        "  {:.2} s, {:.0} sessions/s; end to end p50 {} p99 {}; {} errors{}",
        wall.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        errors.len(),
        errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    // Let the workers settle, then see what the parked sessions hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (parked, peak) = server.memory();
    println!(
        "  RSS before {before:.0} MiB, peak {peak:.0} MiB ({:.0} KiB per active session), \
         after with {count} sessions parked {parked:.0} MiB",
        (peak - before).max(0.0) * 1024.0 / count as f64
    );
}

/// Idle sockets: `/health` and memory while they are held.
async fn idle_connections(count: usize, extra: &[String]) {
    let model = FakeModelServer::start().await;
    let fx = weather_agent(&model, "load");
    let state = tempfile::tempdir().unwrap();
    let server = start(fx.path(), state.path(), extra);
    println!("\n{count} idle connections");
    server.report_health("before").await;
    let started = Instant::now();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match TcpStream::connect(server.addr()).await {
            Ok(stream) => held.push(stream),
            Err(error) => {
                println!("  connect failed after {}: {error}", held.len());
                break;
            }
        }
    }
    println!("  {} opened in {:.2} s", held.len(), started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.report_health("held").await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.report_health("released").await;
}

/// Readers of one long stream that never read a byte of it.
async fn stalled_readers(count: usize, answer_kib: usize, extra: &[String]) {
    let model = FakeModelServer::start().await;
    model
        .push(Reply::Turn(Turn::text(&"x".repeat(answer_kib * 1024)).chunk_chars(64 * 1024)))
        .repeat();
    let fx = weather_agent(&model, "load");
    let state = tempfile::tempdir().unwrap();
    let server = start(fx.path(), state.path(), extra);
    let http = reqwest::Client::new();
    let (_, mut token) = session(&http, &server.base, None).await.unwrap();
    for _ in 0..15 {
        token = session(&http, &server.base, Some(&token)).await.unwrap().1;
    }
    let accepted: Value = http
        .post(format!("{}{PREFIX}/message", server.base))
        .json(&json!({"message": "and now?", "continuationToken": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = accepted["streamPath"].as_str().unwrap().to_owned();
    println!(
        "\n{count} readers that never read (a session of 16 turns of {answer_kib} KiB answers)"
    );
    server.report_health("before").await;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(format!("GET {path}?startIndex=0 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.report_health("held").await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.report_health("released").await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sessions = arg(&args, "--sessions", 1000);
    let idle = arg(&args, "--idle", 10_000);
    let readers = arg(&args, "--readers", 1000);
    // Anything after `--server` goes to `ash start` (e.g. `--fast-sync`).
    let extra: Vec<String> = args
        .iter()
        .position(|a| a == "--server")
        .map(|i| args[i + 1..].iter().filter(|a| *a != "--bench").cloned().collect())
        .unwrap_or_default();
    // The client side holds as many sockets as the server does.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        if sessions > 0 {
            sessions_at_once(sessions, !args.iter().any(|a| a == "--no-tool"), &extra).await;
        }
        if idle > 0 {
            idle_connections(idle, &extra).await;
        }
        if readers > 0 {
            stalled_readers(readers, arg(&args, "--answer-kib", 512), &extra).await;
        }
    });
}
