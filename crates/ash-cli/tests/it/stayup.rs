//! `ash start` under clients that misbehave or are many: slow and silent clients are dropped,
//! the connection cap refuses cleanly, an exhausted descriptor table does not stop it,
//! shutdown does not wait for stalled clients, a store removed underneath is noticed and never
//! silently replaced, a reader that stops reading is dropped and resumes, event streams are
//! capped, and malformed requests get the JSON errors docs/api.md lists.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::serve::{Server, agent};
use crate::stderr;

const PREFIX: &str = "/.well-known/ash/v1";

/// Sends `request` on a new connection and reads the answer to its end (or 10 s).
fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body of a raw HTTP answer.
fn body_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body.trim()).unwrap_or(Value::Null)
}

fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Polls `/health` until it answers 200, for at most `limit`.
fn healthy_within(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let answer = raw(
            port,
            format!("GET {PREFIX}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        if status_of(&answer) == 200 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_silent_clients_are_dropped_and_the_cap_refuses_cleanly() {
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let server = Server::start_with(
        fx.path(),
        &fx.join("state/ash.db"),
        &["--max-connections", "20", "--request-timeout", "1"],
        &[],
    );
    let port = server.port();
    // Twenty clients that never finish their headers hold every slot.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(format!("GET {PREFIX}/health HTTP/1.1\r\nHost: x\r\n").as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = raw(port, format!("GET {PREFIX}/health HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(
        (status_of(&refused), body_of(&refused)["code"].clone()),
        (503, json!("too_many_connections")),
        "{refused}"
    );
    // The header time limit closes each of them.
    for stream in &mut slow {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest).is_ok();
        assert!(closed, "a client that never finished its headers was kept");
    }
    assert!(healthy_within(port, Duration::from_secs(10)));
    // A body that never arrives gets 408; a declared length over the limit 413 at once.
    let stalled = raw(
        port,
        format!("POST {PREFIX}/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"mess").as_bytes(),
    );
    assert_eq!(
        (status_of(&stalled), body_of(&stalled)["code"].clone()),
        (408, json!("body_timeout")),
        "{stalled}"
    );
    let huge = raw(
        port,
        format!("POST {PREFIX}/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        (status_of(&huge), body_of(&huge)["code"].clone()),
        (413, json!("body_too_large")),
        "{huge}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_the_documented_json_errors() {
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let server = Server::start_with(fx.path(), &fx.join("state/ash.db"), &[], &[]);
    let port = server.port();
    let post = |body: &str| {
        format!(
            "POST {PREFIX}/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("an array body", post(r#"["hi", null, "task"]"#), 400, "invalid_body"),
        ("a mode of the wrong type", post(r#"{"message":"hi","mode":1}"#), 400, "invalid_body"),
        ("not JSON", post("{nope"), 400, "invalid_json"),
        (
            "malformed chunked encoding",
            format!(
                "POST {PREFIX}/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
            ),
            400,
            "invalid_body",
        ),
        (
            "a wrong method",
            format!("DELETE {PREFIX}/message HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            "a run id that is not UTF-8",
            format!("GET {PREFIX}/runs/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            400,
            "invalid_run_id",
        ),
    ];
    let mut failures = Vec::new();
    for (name, request, status, code) in cases {
        let answer = raw(port, request.as_bytes());
        if (status_of(&answer), body_of(&answer)["code"].as_str()) != (status, Some(code)) {
            failures.push(format!("{name}: {answer}"));
        }
    }
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(model.requests().len(), 0, "nothing malformed reached the model");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_does_not_wait_for_stalled_clients() {
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let server =
        Server::start_with(fx.path(), &fx.join("state/ash.db"), &["--request-timeout", "600"], &[]);
    let port = server.port();
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .write_all(
            format!("POST {PREFIX}/message HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{{")
                .as_bytes(),
        )
        .unwrap();
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET ").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (code, log) = server.sigterm();
    assert_eq!(code, Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(20), "shutdown took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_descriptor_table_does_not_take_the_server_down() {
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    // Hard limit 300: the server raises its soft limit to it and keeps 256 in reserve, so it
    // takes 44 connections and refuses the rest cleanly instead of running out.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -Sn 300 && ulimit -Hn 300 && exec \"$0\" start . --port 0 --request-timeout 1 --store state/ash.db"])
        .arg(env!("CARGO_BIN_EXE_ash"))
        .current_dir(fx.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OPENAI_API_KEY", "sk-test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let port: u16 = loop {
        assert_eq!(stderr_pipe.read(&mut byte).unwrap(), 1, "ash start ended early");
        line.push(byte[0]);
        let text = String::from_utf8_lossy(&line).into_owned();
        if text.ends_with('\n') {
            if let Some(at) = text.find("http://127.0.0.1:") {
                assert!(text.contains("up to 44 connections, 300 open files"), "{text}");
                break text[at + 17..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
            line.clear();
        }
    };
    let held: Vec<TcpStream> =
        (0..200).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(held.len() >= 150, "connections opened: {}", held.len());
    assert!(healthy_within(port, Duration::from_secs(15)), "the server never became healthy again");
    drop(held);
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_removed_underneath_is_noticed_and_never_silently_replaced() {
    let model = FakeModelServer::start().await;
    model.repeat();
    model.push(Reply::Turn(Turn::text("hello")));
    let fx = agent(&model, "");
    let store = fx.join("state/ash.db");
    let server = Server::start_with(fx.path(), &store, &[], &[]);
    let port = server.port();
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{PREFIX}{p}");
    let first = client.post(url("/message")).json(&json!({"message": "hi"})).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 202);
    // Wait for the turn to end (a workspace exists from here on).
    let run: Value = first.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: Value = client
            .get(url(&format!("/runs/{}", run["runId"].as_str().unwrap())))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if info["status"] == "waiting" {
            break;
        }
        assert!(Instant::now() < deadline, "the turn did not end: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    let second =
        client.post(url("/message")).json(&json!({"message": "again"})).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 503);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["code"], "store_unavailable", "{second}");
    let health = client.get(url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    assert!(!store.exists(), "a fresh store was created in place of the removed one");
    let (_, log) = server.sigterm();
    assert!(log.contains("the store is gone"), "{log}");
    // A restart refuses to start empty where a store was; --new-store says to.
    let out = crate::ash_env(
        fx.path(),
        &["start", ".", "--port", "0", "--store", "state/ash.db"],
        &[("OPENAI_API_KEY", "sk-test")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is missing, but 1 session workspace(s) beside it show it held runs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_full_or_read_only_disk_is_not_called_damage() {
    if !nix::unistd::geteuid().is_root()
        || Command::new("unshare").arg("--version").output().is_err()
    {
        eprintln!("skipping: needs root and unshare(1) for a private tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fx = ash_test_support::Fixture::new(
        "//- agent/agent.toml\nname = \"d\"\nmodel = \"scripted/demo.jsonl\"\n//- agent/demo.jsonl\n{\"text\": \"hi\"}\n//- agent/system.md\nHi.\n",
    );
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let ash = env!("CARGO_BIN_EXE_ash");
    let run = |script: &str| {
        Command::new("unshare")
            .args(["-m", "sh", "-c", script])
            .arg(ash)
            .arg(&state)
            .current_dir(fx.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .output()
            .unwrap()
    };
    // A tmpfs too small for the store: the disk is full.
    let full = run(
        "mount -t tmpfs -o size=4k tmpfs \"$1\" && exec \"$0\" exec . hi --store \"$1\"/ash.db",
    );
    let text = String::from_utf8_lossy(&full.stderr).into_owned();
    assert_eq!(full.status.code(), Some(2), "{text}");
    assert!(
        text.contains("cannot write the store")
            && text.contains("intact")
            && !text.contains("damaged"),
        "{text}"
    );
    // An intact store on a filesystem that turned read-only.
    let made = run(
        "mount -t tmpfs tmpfs \"$1\" && \"$0\" exec . hi --store \"$1\"/ash.db >/dev/null 2>&1; mount -o remount,ro \"$1\" && exec \"$0\" exec . hi --store \"$1\"/ash.db",
    );
    let text = String::from_utf8_lossy(&made.stderr).into_owned();
    assert_eq!(made.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot write the store") && !text.contains("damaged"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_reading_is_dropped_resumes_by_start_index_and_streams_are_capped() {
    // One turn whose events (deltas of 64 KiB, then the whole text again) are far more than
    // loopback's socket buffers hold.
    let text = "x".repeat(6 * 1024 * 1024);
    let model = FakeModelServer::start().await;
    model.push(Reply::Turn(Turn::text(&text).chunk_chars(64 * 1024)));
    let fx = agent(&model, "");
    let server = Server::start_with(
        fx.path(),
        &fx.join("state/ash.db"),
        &["--stall-timeout", "1", "--max-streams", "1"],
        &[],
    );
    let port = server.port();
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{PREFIX}{p}");
    let run: Value = client
        .post(url("/message"))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream_url = |start: u64| {
        url(&format!("/runs/{}/stream?startIndex={start}", run["runId"].as_str().unwrap()))
    };
    // The whole history, read by a reader that keeps up (it holds the only stream slot).
    let whole = client.get(stream_url(0)).send().await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    let refused = client.get(stream_url(0)).send().await.unwrap();
    assert_eq!(
        (refused.status().as_u16(), refused.json::<Value>().await.unwrap()["code"].clone()),
        (503, json!("too_many_streams"))
    );
    let all = crate::serve::read_events(whole, &["session.waiting"]).await;
    let last = all.last().map(|e| e.body.type_name());
    assert_eq!(last, Some("session.waiting"));
    // Its slot is free again once it is gone; a reader that takes the headers and then stops
    // reading is cut once its writes stall, and the server stays healthy meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stalled = client.get(stream_url(0)).send().await.unwrap();
    assert_eq!(stalled.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(healthy_within(port, Duration::from_secs(1)));
    let mut buffer = Vec::new();
    let mut lines: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let cut = loop {
        match tokio::time::timeout_at(deadline.into(), stalled.chunk()).await {
            Err(_) => break false,
            Ok(Err(_) | Ok(None)) => break true,
            Ok(Ok(Some(chunk))) => buffer.extend_from_slice(&chunk),
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            lines.push(serde_json::from_slice(&line).unwrap());
        }
    };
    let got: Vec<u64> = lines.iter().filter_map(|l| l["meta"]["index"].as_u64()).collect();
    assert!(cut, "the stalled stream was never closed");
    assert!(got.len() < all.len(), "the stalled reader got all {} events", got.len());
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>(), "the events before the cut");
    // It comes back where it was cut and gets the rest, in order, nothing lost or repeated.
    let resumed = client.get(stream_url(got.len() as u64)).send().await.unwrap();
    let rest = crate::serve::read_events(resumed, &["session.waiting"]).await;
    let indexes: Vec<u64> = got.into_iter().chain(rest.iter().map(|e| e.meta.index)).collect();
    assert_eq!(indexes, all.iter().map(|e| e.meta.index).collect::<Vec<_>>());
}
