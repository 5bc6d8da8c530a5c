//! `ash-fake-model`: the fake model server as a standalone process, for demos and benchmarks.
//!
//! Serves OpenAI (`/v1/chat/completions`) and Anthropic (`/v1/messages`) on loopback and answers
//! every request with the same turn, cycling through the lines of `--script` (the `scripted/`
//! JSONL format: `text`, `reasoning`, `toolCalls`) or a generated `--chunks N` text reply.
//! Prints the base URL on stdout, then serves until killed.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line tool")]

use std::net::SocketAddr;
use std::process::ExitCode;

use ash_test_support::{FakeModelServer, Reply, Turn};
use serde_json::Value;

const USAGE: &str = "usage: ash-fake-model [--port N] [--script FILE.jsonl | --chunks N | --edit PATH] [--delay-ms N]

Serves /v1/chat/completions and /v1/responses (OpenAI) and /v1/messages (Anthropic) on 127.0.0.1
and answers every request with the next scripted turn, cycling. Without --script it says \"Hello
from the fake model.\" --edit PATH plays a coding model that writes PATH with whichever tool the
agent offers (Claude Code, Codex, ash), then says so.";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ash-fake-model: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let mut port = 0u16;
    let mut turns = Vec::new();
    let mut delay = std::time::Duration::ZERO;
    let mut edit = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--chunks" => {
                let n: usize = value("--chunks")?.parse().map_err(|e| format!("--chunks: {e}"))?;
                turns.push(Turn::text(&"token ".repeat(n)).chunk_chars(6));
            }
            "--edit" => edit = Some(value("--edit")?),
            "--delay-ms" => {
                let ms: u64 =
                    value("--delay-ms")?.parse().map_err(|e| format!("--delay-ms: {e}"))?;
                delay = std::time::Duration::from_millis(ms);
            }
            "--script" => {
                let path = value("--script")?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let json: Value =
                        serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
                    turns.push(turn(&json));
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if turns.is_empty() {
        turns.push(Turn::text("Hello from the fake model."));
    }
    let server = FakeModelServer::bind(SocketAddr::from(([127, 0, 0, 1], port))).await;
    if let Some(path) = edit {
        turns.clear();
        server.push(Reply::edit(&path, "hello from the fake model\n", &format!("Wrote {path}.")));
    }
    for turn in turns {
        server.push(Reply::Turn(turn.delay(delay)));
    }
    server.repeat();
    println!("{}", server.base_url());
    std::future::pending::<()>().await;
    Ok(())
}

fn turn(json: &Value) -> Turn {
    let mut turn = Turn::empty();
    if let Some(reasoning) = json.get("reasoning").and_then(Value::as_str) {
        turn = turn.then_reasoning(reasoning, "fake-signature");
    }
    if let Some(text) = json.get("text").and_then(Value::as_str) {
        turn = turn.then_text(text);
    }
    for (n, call) in
        json.get("toolCalls").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        let name = call.get("name").and_then(Value::as_str).unwrap_or("tool");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("call_{n}"), str::to_owned);
        let input = call.get("input").cloned().unwrap_or_else(|| serde_json::json!({}));
        turn = turn.then_tool_call(&id, name, &input.to_string());
    }
    turn
}
