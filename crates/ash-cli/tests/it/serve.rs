//! `ash start`, `ash exec` and `ash dev` end to end: the real binary, real HTTP, the fake model
//! server, real tool processes, SQLite files, and SIGKILL.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ash_protocol::{Event, EventBody, MessageAccepted};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::{ash_env, stderr, stdout};

const PREFIX: &str = "/.well-known/ash/v1";

/// An agent whose `openai` provider is the fake server.
pub(crate) fn agent(server: &FakeModelServer, extra: &str) -> Fixture {
    Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"e2e\"\nmodel = \"openai/gpt-test\"\n[providers.openai]\nbase_url = \"{}\"\n\
         //- agent/system.md\nBe brief.\n{extra}",
        server.base_url()
    ))
}

/// A running `ash start`.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(dir: &Path, store: &Path) -> Self {
        Self::start_with(dir, store, &[], &[])
    }

    /// `ash start` with extra arguments and environment variables.
    pub(crate) fn start_with(
        dir: &Path,
        store: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ash"))
            .args(["start", ".", "--port", "0", "--lease-ttl", "1", "--store"])
            .arg(store)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("OPENAI_API_KEY", "sk-test")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ash start");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1);
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("on http://") {
                    let base: String = line[at + 3..].split_whitespace().next().unwrap().to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(base);
                    }
                }
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let Ok(base) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("ash start did not come up:\n{}", log.lock().unwrap())
        };
        Self { child, base, log }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}{path}", self.base)
    }

    /// The port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the base URL")
    }

    /// What the server logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn sigterm(mut self) -> (Option<i32>, String) {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        // Shutdown is bounded: a server that does not stop is a failure, not a hang.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the server did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().clone();
        (status.code(), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post_message(server: &Server, body: Value) -> (u16, Value, Option<String>) {
    let response = http().post(server.url("/message")).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let run_id = response.headers().get("x-ash-run-id").map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), run_id)
}

pub(crate) async fn accepted(server: &Server, body: Value) -> MessageAccepted {
    let (status, value, header) = post_message(server, body).await;
    assert_eq!(status, 202, "{value}");
    let accepted: MessageAccepted = serde_json::from_value(value).unwrap();
    assert_eq!(header.as_deref(), Some(accepted.run_id.as_str()));
    accepted
}

/// Reads the stream from `start` until an event of one of the `until` types.
pub(crate) async fn stream_until(
    server: &Server,
    run_id: &str,
    start: u64,
    until: &[&str],
) -> Vec<Event> {
    let url = server.url(&format!("/runs/{run_id}/stream?startIndex={start}"));
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/x-ndjson; charset=utf-8");
    assert_eq!(
        (&headers["x-ash-stream-version"], &headers["cache-control"]),
        (&"1".parse().unwrap(), &"no-store".parse().unwrap())
    );
    read_events(response, until).await
}

/// The events of an NDJSON stream response (heartbeats skipped) up to and including the first
/// of one of the `until` types, or to its end; fails after a minute.
pub(crate) async fn read_events(mut response: reqwest::Response, until: &[&str]) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .expect("stream timed out");
        let Some(chunk) = chunk.unwrap() else { return events };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let value: Value = serde_json::from_slice(&line).unwrap();
            if value["type"] == "stream.heartbeat" {
                continue;
            }
            let event: Event = serde_json::from_value(value).unwrap();
            let done = until.contains(&event.body.type_name());
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

pub(crate) fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.body.type_name()).collect()
}

pub(crate) fn indexes(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.meta.index).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_over_http_with_tools_skills_usage_and_resume() {
    let model = FakeModelServer::start().await;
    let fx = agent(
        &model,
        "//- agent/skills/count.md\n---\ndescription: Count words.\n---\nUse wc -w.\n\
         //- agent/tools/shout.toml\ndescription = \"Shout.\"\ncommand = [\"sh\", \"./shout.sh\"]\n[input_schema]\ntype = \"object\"\nproperties.text = { type = \"string\" }\nrequired = [\"text\"]\n\
         //- agent/tools/shout.sh\ntr a-z A-Z\n",
    );
    model
        .push(Reply::Turn(
            Turn::text("Loading.")
                .then_tool_call("a", "activate_skill", r#"{"name":"count"}"#)
                .then_tool_call("b", "shout", r#"{"text":"hi"}"#)
                .usage(100, 10, 0, 0),
        ))
        .push(Reply::Turn(Turn::text("Three words.").usage(200, 5, 50, 0)))
        .push(Reply::Turn(Turn::text("Bye.").usage(300, 1, 0, 0)));
    let server = Server::start(fx.path(), &fx.join("state/ash.db"));
    let first = accepted(&server, json!({"message": "count this please"})).await;
    assert_eq!(first.stream_path, format!("{PREFIX}/runs/{}/stream", first.run_id));
    let events = stream_until(&server, &first.run_id, 0, &["session.waiting"]).await;
    assert_eq!(
        types(&events),
        [
            "run.started",
            "turn.started",
            "message.received",
            "message.completed",
            "actions.requested",
            "action.result",
            "action.result",
            "step.completed",
            "message.completed",
            "step.completed",
            "turn.completed",
            "session.waiting",
        ]
    );
    let EventBody::ActionResult(shout) = &events[6].body else { panic!() };
    assert_eq!(shout.status, ash_protocol::ActionStatus::Completed);
    assert_eq!(
        serde_json::to_value(&shout.result).unwrap(),
        json!({"kind": "tool-result", "toolName": "shout", "output": {"TEXT": "HI"}})
    );
    let second =
        accepted(&server, json!({"message": "bye", "continuationToken": first.continuation_token}))
            .await;
    assert_eq!((second.run_id.as_str(), second.start_index), (first.run_id.as_str(), 12));
    // The session-addressed alias serves the same stream.
    let alias = http()
        .get(server.url(&format!("/sessions/{}/stream?startIndex=12", first.run_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(alias.status().as_u16(), 200);
    drop(alias);
    let full = {
        let mut out = stream_until(&server, &first.run_id, 0, &["session.waiting"]).await;
        out.extend(stream_until(&server, &first.run_id, 12, &["session.waiting"]).await);
        out
    };
    assert_eq!(indexes(&full), (0..18).collect::<Vec<_>>());
    for start in 0..18u64 {
        let rest = stream_until(&server, &first.run_id, start, &["session.waiting"]).await;
        assert_eq!(rest.last().map(|e| e.body.type_name()), Some("session.waiting"));
        let want: Vec<&Event> = full[start as usize..].iter().take(rest.len()).collect();
        assert_eq!(rest.iter().collect::<Vec<_>>(), want, "resume from {start}");
    }
    let info: Value = http()
        .get(server.url(&format!("/runs/{}", first.run_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            info["status"].clone(),
            info["turns"].clone(),
            info["eventCount"].clone(),
            info["usage"].clone()
        ),
        (
            json!("waiting"),
            json!(2),
            json!(18),
            json!({"inputTokens": 650, "outputTokens": 16, "cacheReadTokens": 50, "cacheWriteTokens": 0})
        )
    );
    let health: Value =
        http().get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({"ok": true, "status": "ready"}));
    let agent_info: Value =
        http().get(server.url("/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (agent_info["ok"].clone(), agent_info["agent"]["name"].clone()),
        (json!(true), json!("e2e"))
    );
    let (code, log) = server.sigterm();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("POST /.well-known/ash/v1/message 202"), "{log}");
    assert!(log.contains("ash: stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_json_errors_and_change_nothing() {
    let model = FakeModelServer::start().await;
    model.push(Reply::Hang);
    let fx = agent(&model, "");
    let server = Server::start(fx.path(), &fx.join("state/ash.db"));
    let run = accepted(&server, json!({"message": "hang"})).await;
    let post = |body: &'static [u8], content_type: Option<&'static str>| {
        let mut request = http().post(server.url("/message")).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send()
    };
    let mut seen = Vec::new();
    let mut check = |label: &str, status: u16, body: Value| {
        seen.push((
            label.to_owned(),
            status,
            body["ok"].clone(),
            body["code"].as_str().unwrap_or_default().to_owned(),
        ));
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{label}: {body}");
    };
    for (label, body, ct) in [
        ("no content type", &b"{\"message\":\"x\"}"[..], None),
        ("text content type", &b"{\"message\":\"x\"}"[..], Some("text/plain")),
        ("malformed", &b"{\"message\": "[..], Some("application/json")),
        ("not an object", &b"[1,2]"[..], Some("application/json")),
        ("missing message", &b"{\"msg\":\"x\"}"[..], Some("application/json")),
        ("empty message", &b"{\"message\":\"   \"}"[..], Some("application/json; charset=utf-8")),
        ("bad mode", &b"{\"message\":\"x\",\"mode\":\"party\"}"[..], Some("application/json")),
        (
            "unknown token",
            &b"{\"message\":\"x\",\"continuationToken\":\"ash:nope\"}"[..],
            Some("application/json"),
        ),
    ] {
        let response = post(body, ct).await.unwrap();
        let status = response.status().as_u16();
        check(label, status, response.json().await.unwrap());
    }
    let huge = json!({"message": "x".repeat(2 * 1024 * 1024)}).to_string();
    let response = http()
        .post(server.url("/message"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    check("oversized body", status, response.json().await.unwrap());
    let (status, body, _) = post_message(&server, json!({"message": "y".repeat(300_000)})).await;
    check("oversized message", status, body);
    let (status, body, _) = post_message(
        &server,
        json!({"message": "again", "continuationToken": run.continuation_token}),
    )
    .await;
    check("busy", status, body);
    for (label, path) in [
        ("negative startIndex", format!("/runs/{}/stream?startIndex=-1", run.run_id)),
        (
            "huge startIndex",
            format!("/runs/{}/stream?startIndex=99999999999999999999999", run.run_id),
        ),
        ("past the end", format!("/runs/{}/stream?startIndex=4", run.run_id)),
        ("unknown run stream", "/runs/wrun_nope/stream".to_owned()),
        ("unknown run", "/runs/wrun_nope".to_owned()),
        ("unknown route", "/nothing".to_owned()),
    ] {
        let response = http().get(server.url(&path)).send().await.unwrap();
        let status = response.status().as_u16();
        check(label, status, response.json().await.unwrap());
    }
    let response = http().post(server.url("/runs/wrun_nope/cancel")).send().await.unwrap();
    let status = response.status().as_u16();
    check("cancel unknown run", status, response.json().await.unwrap());
    let f = json!(false);
    let row = |l: &str, s: u16, c: &str| (l.to_owned(), s, f.clone(), c.to_owned());
    assert_eq!(
        seen,
        [
            row("no content type", 415, "unsupported_media_type"),
            row("text content type", 415, "unsupported_media_type"),
            row("malformed", 400, "invalid_json"),
            row("not an object", 400, "invalid_body"),
            row("missing message", 400, "invalid_body"),
            row("empty message", 400, "empty_message"),
            row("bad mode", 400, "invalid_body"),
            row("unknown token", 404, "unknown_continuation_token"),
            row("oversized body", 413, "body_too_large"),
            row("oversized message", 413, "message_too_large"),
            row("busy", 409, "session_busy"),
            row("negative startIndex", 400, "invalid_start_index"),
            row("huge startIndex", 400, "invalid_start_index"),
            row("past the end", 400, "invalid_start_index"),
            row("unknown run stream", 404, "run_not_found"),
            row("unknown run", 404, "run_not_found"),
            row("unknown route", 404, "route_not_found"),
            row("cancel unknown run", 404, "run_not_found"),
        ]
    );
    let info: Value = http()
        .get(server.url(&format!("/runs/{}", run.run_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["status"].clone(), info["eventCount"].clone(), info["turns"].clone()),
        (json!("running"), json!(3), json!(1))
    );
    // Cancel works while the model hangs, and the session takes the next message.
    let response =
        http().post(server.url(&format!("/runs/{}/cancel", run.run_id))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let events = stream_until(&server, &run.run_id, 0, &["session.waiting"]).await;
    assert_eq!(types(&events)[3..], ["turn.cancelled", "session.waiting"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn task_mode_over_http_ends_the_stream_with_the_run() {
    let model = FakeModelServer::start().await;
    model.push(Reply::Turn(Turn::text("done").usage(3, 1, 0, 0)));
    let fx = agent(&model, "");
    let server = Server::start(fx.path(), &fx.join("state/ash.db"));
    let run = accepted(&server, json!({"message": "do it", "mode": "task"})).await;
    // The stream closes by itself after the terminal event.
    let events = stream_until(&server, &run.run_id, 0, &[]).await;
    assert_eq!(types(&events).last(), Some(&"run.completed"));
    let EventBody::RunCompleted(done) = &events.last().unwrap().body else { panic!() };
    assert_eq!(done.output.as_deref(), Some("done"));
    let (status, body, _) = post_message(
        &server,
        json!({"message": "more", "continuationToken": run.continuation_token}),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (409, json!("session_ended")));
}

/// SIGKILLs `ash start` at a chosen point, restarts it on the same store, and checks the run
/// completes with one continuous history and each finished tool's side effect exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_step_continues_every_run_after_restart() {
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let store = fx.join("state/ash.db");
    // Run A is killed while its model call hangs; run B while its second tool runs.
    model.push(Reply::Hang).push(Reply::Turn(
        Turn::empty()
            .then_tool_call("t1", "bash", r#"{"command":"echo one >> once.log"}"#)
            .then_tool_call(
                "t2",
                "bash",
                r#"{"command":"echo start >> slow.log; sleep 3; echo end >> slow.log"}"#,
            ),
    ));
    let server = Server::start(fx.path(), &store);
    let a = accepted(&server, json!({"message": "A"})).await;
    stream_until(&server, &a.run_id, 0, &["message.received"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = accepted(&server, json!({"message": "B"})).await;
    stream_until(&server, &b.run_id, 0, &["action.result"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.sigkill();

    // After the restart: A's model call happens again, B's second tool runs again.
    model.push(Reply::Turn(Turn::text("A done"))).push(Reply::Turn(Turn::text("B done")));
    let server = Server::start(fx.path(), &store);
    for (run, label) in [(&a, "A"), (&b, "B")] {
        let events = stream_until(&server, &run.run_id, 0, &["session.waiting"]).await;
        assert_eq!(
            indexes(&events),
            (0..events.len() as u64).collect::<Vec<_>>(),
            "{label}: contiguous"
        );
        assert_eq!(types(&events).iter().filter(|t| **t == "run.started").count(), 1, "{label}");
        let replies: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::MessageCompleted(m) => Some(m.message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(replies, [format!("{label} done")], "{label}");
    }
    let b_events = stream_until(&server, &b.run_id, 0, &["session.waiting"]).await;
    let attempts: Vec<(String, u32)> = b_events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ActionResult(r) => Some((r.call_id.clone(), r.attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [("t1".to_owned(), 1), ("t2".to_owned(), 2)]);
    assert_eq!(types(&b_events).iter().filter(|t| **t == "actions.requested").count(), 1);
    let ws = fx.join("state/workspaces").join(&b.run_id);
    assert_eq!(std::fs::read_to_string(ws.join("once.log")).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(ws.join("slow.log")).unwrap(), "start\nstart\nend\n");
    // The model was asked: A (hung), B, A again, B again.
    assert_eq!(model.requests().len(), 4);
}

#[test]
fn exec_prints_the_answer_and_fails_with_exit_1() {
    let fx = Fixture::new("");
    let out = ash_env(fx.path(), &["init", "demo"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ash_env(&fx.join("demo"), &["exec", "What's the weather?"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "It's 72°F and sunny in Brooklyn, with a light breeze; tomorrow looks the same (noted in my forecast log).\n"
    );
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "note: `scripted/scripts/demo.jsonl` replays a scripted conversation offline"
        ),
        "{err}"
    );
    assert!(err.contains("→ get_weather {\"city\":\"Brooklyn\"}"), "{err}");

    let out = ash_env(fx.path(), &["exec", "demo", "weather?", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<Event> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(types(&events).last(), Some(&"run.completed"));

    // A script line that fails makes the run fail.
    std::fs::write(
        fx.join("demo/agent/scripts/demo.jsonl"),
        "{\"error\":\"the scripted model broke\"}\n",
    )
    .unwrap();
    let out = ash_env(fx.path(), &["exec", "demo", "weather?"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("run failed (model_error)"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn dev_reads_messages_from_a_pipe_and_keeps_the_session() {
    let fx = Fixture::new("");
    assert_eq!(ash_env(fx.path(), &["init", "demo"], &[]).status.code(), Some(0));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ash"))
        .args(["dev", "demo", "--store"])
        .arg(fx.join("dev.db"))
        .current_dir(fx.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/help\nweather?\nand tomorrow?\n/new\n/bogus\n/quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Let me load the weather skill first.\nIt's 72°F and sunny in Brooklyn, with a light breeze; tomorrow looks the same (noted in my forecast log).\n\
         This scripted demo answers one question. To talk to a real model, set `model = \"openai/gpt-4.1-mini\"` in agent/agent.toml and export OPENAI_API_KEY.\n"
    );
    let err = stderr(&out);
    for expected in [
        "/new     start a new session",
        "(new session)",
        "unknown command `/bogus`",
        "ash dev: `demo` on http://127.0.0.1:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn start_refuses_a_damaged_store_and_leaves_it_untouched() {
    let fx = Fixture::new("");
    assert_eq!(ash_env(fx.path(), &["init", "demo"], &[]).status.code(), Some(0));
    let garbage = b"not a database, but somebody's precious file".repeat(10);
    std::fs::write(fx.join("state.db"), &garbage).unwrap();
    let out = ash_env(fx.path(), &["start", "demo", "--port", "0", "--store", "state.db"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error: the store state.db is damaged or not an ash store")
            && err.contains("move it aside"),
        "{err}"
    );
    assert_eq!(std::fs::read(fx.join("state.db")).unwrap(), garbage);
}

const DEPLOY_TOOL: &str = "//- agent/tools/deploy.toml\ndescription = \"Deploy.\"\ncommand = [\"bash\", \"-c\", \"cat\"]\n\
    [input_schema]\ntype = \"object\"\nproperties.branch = { type = \"string\" }\n\
    [approval]\nwhen = [{ pointer = \"/branch\", equals = \"main\" }]\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_over_http_refuses_stale_answers_and_continues_on_the_right_one() {
    let model = FakeModelServer::start().await;
    let fx = agent(&model, DEPLOY_TOOL);
    model
        .push(Reply::Turn(Turn::empty().then_tool_call("c1", "deploy", r#"{"branch":"main"}"#)))
        .push(Reply::Turn(Turn::text("Deployed.")));
    let server = Server::start(fx.path(), &fx.join("state/ash.db"));
    let first = accepted(&server, json!({"message": "deploy main"})).await;
    let events = stream_until(&server, &first.run_id, 0, &["session.waiting"]).await;
    let asked = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::InputRequested(r) => Some(r.clone()),
            _ => None,
        })
        .expect("input.requested");
    let info: Value = http()
        .get(server.url(&format!("/runs/{}", first.run_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"], "paused");

    let input = server.url(&format!("/runs/{}/input", first.run_id));
    let post = |body: Value| {
        let input = input.clone();
        async move {
            let response = http().post(input).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let cases = [
        (json!({"requestId": asked.request_id, "decision": "maybe"}), 400, "invalid_body"),
        (json!({"requestId": asked.request_id}), 400, "invalid_body"),
        (json!({"requestId": "req_9_9_x", "decision": "approve"}), 409, "stale_answer"),
        (
            json!({"requestId": asked.request_id, "decision": "approve", "extra": 1}),
            400,
            "invalid_body",
        ),
        (
            json!({"requestId": asked.request_id, "decision": "deny", "message": "x".repeat(5000)}),
            400,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = post(body.clone()).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let (status, refused, _) = post_message(
        &server,
        json!({"message": "hello?", "continuationToken": first.continuation_token}),
    )
    .await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("session_paused")), "{refused}");
    let resume =
        http().post(server.url(&format!("/runs/{}/resume", first.run_id))).send().await.unwrap();
    assert_eq!(resume.status().as_u16(), 409);

    let (status, answer) =
        post(json!({"requestId": asked.request_id, "decision": "approve"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["ok"].as_bool(), answer["runId"].as_str()),
        (Some(true), Some(first.run_id.as_str()))
    );
    let (status, again) = post(json!({"requestId": asked.request_id, "decision": "approve"})).await;
    assert!(status == 409 && again["code"] != "", "{again}");
    let start = answer["startIndex"].as_u64().unwrap();
    let events = stream_until(&server, &first.run_id, start, &["session.waiting"]).await;
    assert_eq!(types(&events)[..2], ["input.resolved", "action.result"]);
    let replies: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::MessageCompleted(m) => Some(m.message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(replies, ["Deployed."]);
}

#[test]
fn dev_asks_at_the_prompt_before_a_call_that_needs_approval() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    model
        .push(Reply::Turn(Turn::empty().then_tool_call("c1", "deploy", r#"{"branch":"main"}"#)))
        .push(Reply::Turn(Turn::text("Deployed main.")))
        .push(Reply::Turn(Turn::empty().then_tool_call("c2", "deploy", r#"{"branch":"main"}"#)))
        .push(Reply::Turn(Turn::text("Not deployed.")));
    let fx = agent(&model, DEPLOY_TOOL);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ash"))
        .args(["dev", ".", "--store"])
        .arg(fx.join("dev.db"))
        .current_dir(fx.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OPENAI_API_KEY", "sk-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"deploy main\ny\nagain\nn not today\n/quit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Deployed main.\nNot deployed.\n");
    let err = stderr(&out);
    for expected in [
        "? `deploy` wants to run with {\"branch\":\"main\"} (/branch is \"main\")",
        "approve? [y/N]",
        "▶ approved",
        "▶ denied: not today",
        "← deploy denied: a person denied this call: not today",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let last = model.requests().last().unwrap().body.to_string();
    assert!(last.contains("not today"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_while_a_subagent_works_in_its_sandbox_resumes_one_child_once() {
    let model = FakeModelServer::start().await;
    let fx = agent(
        &model,
        "//- agent/subagents/builder/agent.toml\ndescription = \"Builds things in its box.\"\n\
         //- agent/subagents/builder/system.md\nYou build.\n\
         //- agent/subagents/builder/sandboxes/box.toml\nbootstrap = [\"echo prepared > prepared\"]\n",
    );
    let store = fx.join("state/ash.db");
    model
        .push(Reply::Turn(Turn::empty().then_tool_call(
            "d1",
            "builder",
            r#"{"message":"build it"}"#,
        )))
        .push(Reply::Turn(
            Turn::empty()
                .then_tool_call(
                    "b1",
                    "box_sandbox",
                    r#"{"command":"cat prepared; echo once >> once.log"}"#,
                )
                .then_tool_call(
                    "b2",
                    "box_sandbox",
                    r#"{"command":"echo start >> slow.log; sleep 3; echo end >> slow.log"}"#,
                ),
        ));
    let server = Server::start(fx.path(), &store);
    let run = accepted(&server, json!({"message": "build my thing"})).await;
    // Killed while the child's second sandbox command runs.
    let url = server.url(&format!("/runs/{}/stream?startIndex=0", run.run_id));
    let response = http().get(url).send().await.unwrap();
    let mut seen = read_events(response, &["subagent.event"]).await;
    while !seen.iter().any(|e| {
        matches!(&e.body, EventBody::SubagentEvent(s)
            if matches!(&s.event.body, EventBody::SandboxCommand(c) if c.call_id == "b2"))
    }) {
        let from = seen.last().map_or(0, |e| e.meta.index + 1);
        let url = server.url(&format!("/runs/{}/stream?startIndex={from}", run.run_id));
        let response = http().get(url).send().await.unwrap();
        seen.extend(read_events(response, &["subagent.event"]).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigkill();

    model.push(Reply::Turn(Turn::text("Built."))).push(Reply::Turn(Turn::text("It is built.")));
    let server = Server::start(fx.path(), &store);
    let events = stream_until(&server, &run.run_id, 0, &["session.waiting"]).await;
    assert_eq!(indexes(&events), (0..events.len() as u64).collect::<Vec<_>>(), "contiguous");
    let children: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SubagentStarted(s) => Some(s.child_run_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(children.len(), 1, "one child: {children:?}");
    let child_events: Vec<&Event> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SubagentEvent(s) => Some(s.event.as_ref()),
            _ => None,
        })
        .collect();
    let child_indexes: Vec<u64> = child_events.iter().map(|e| e.meta.index).collect();
    assert_eq!(
        child_indexes,
        (0..child_indexes.len() as u64).collect::<Vec<_>>(),
        "each child event once"
    );
    let commands: Vec<(String, String, u32)> = child_events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SandboxCommand(c) => {
                Some((format!("{:?}", c.phase), c.call_id.clone(), c.attempt))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        commands,
        [
            ("Bootstrap".to_owned(), "b1".to_owned(), 1),
            ("OnSession".to_owned(), "b1".to_owned(), 1),
            ("Call".to_owned(), "b1".to_owned(), 1),
            ("Call".to_owned(), "b2".to_owned(), 1),
            ("Call".to_owned(), "b2".to_owned(), 2),
        ][..]
            .iter()
            .filter(|(phase, _, _)| phase != "OnSession")
            .cloned()
            .collect::<Vec<_>>(),
        "bootstrap once, the finished call once, the interrupted one again"
    );
    let replies: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::MessageCompleted(m) => Some(m.message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(replies, ["It is built."]);
    let child = children.into_iter().next().unwrap();
    let dir = fx.join("state/sandboxes/sessions").join(&child).join("box_sandbox");
    assert_eq!(std::fs::read_to_string(dir.join("once.log")).unwrap(), "once\n");
    assert_eq!(std::fs::read_to_string(dir.join("slow.log")).unwrap(), "start\nstart\nend\n");
    assert_eq!(model.requests().len(), 4);
}

#[test]
fn schedules_are_listed_and_one_runs_now_with_the_schedule_principal() {
    let fx = Fixture::new(
        "//- agent/agent.toml\nname = \"cron\"\nmodel = \"scripted/demo.jsonl\"\n\
         //- agent/system.md\nBe brief.\n\
         //- agent/demo.jsonl\n{\"toolCalls\": [{\"id\": \"w\", \"name\": \"whoami\", \"input\": {}}]}\n{\"text\": \"tidied\"}\n\
         //- agent/tools/whoami.toml\ndescription = \"Who.\"\ncommand = [\"bash\", \"-c\", \"cat > /dev/null; echo \\\"$ASH_SESSION\\\"\"]\n\
         //- agent/schedules/nightly.md\n---\ncron: \"0 3 * * *\"\n---\nTidy up.\n",
    );
    let out = ash_env(fx.path(), &["schedules", ".", "--json", "--count", "2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &listed["schedules"][0];
    assert_eq!((row["name"].as_str(), row["cron"].as_str()), (Some("nightly"), Some("0 3 * * *")));
    let fires = row["nextFires"].as_array().unwrap();
    assert_eq!(fires.len(), 2);
    assert!(fires.iter().all(|f| f.as_str().unwrap().ends_with("T03:00:00Z")), "{fires:?}");

    let out = ash_env(fx.path(), &["schedules", ".", "--run", "nightly"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "tidied\n");
    let err = stderr(&out);
    assert!(err.contains("running schedule `nightly` now"), "{err}");
    assert!(
        err.contains("\\\"principalId\\\":\\\"ash:schedule:nightly\\\"")
            || err.contains("ash:schedule:nightly"),
        "{err}"
    );

    let out = ash_env(fx.path(), &["schedules", ".", "--run", "weekly"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no schedule named `weekly`"), "{}", stderr(&out));
}
