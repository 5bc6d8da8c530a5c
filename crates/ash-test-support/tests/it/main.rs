//! The `ash-fake-model` binary: starts, prints its URL, and answers both wire formats over real
//! HTTP until killed.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![allow(clippy::disallowed_methods, reason = "this test runs the fake server binary itself")]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// One HTTP/1.1 POST with `Connection: close`; returns the raw response.
fn post(addr: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Kills the server when the test ends, also when it fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_serves_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.jsonl");
    std::fs::write(&script, "# demo\n{\"text\": \"Hi from the script.\"}\n").unwrap();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_ash-fake-model"))
            .args(["--script", script.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("http://").unwrap().strip_suffix("/v1").unwrap().to_owned();

    let openai = post(&base, "/v1/chat/completions", r#"{"model":"m","stream":true}"#);
    let anthropic = post(&base, "/v1/messages", r#"{"model":"m","stream":true}"#);
    let missing = post(&base, "/v1/embeddings", "{}");
    drop(server);

    assert!(openai.starts_with("HTTP/1.1 200"), "{openai}");
    assert!(openai.contains("content-type: text/event-stream"), "{openai}");
    assert!(openai.contains(r#""delta":{"content":"Hi from "}"#), "{openai}");
    assert!(openai.contains("data: [DONE]"), "{openai}");
    assert!(anthropic.contains("event: message_start"), "{anthropic}");
    assert!(anthropic.contains(r#""text_delta","text":"Hi from "#), "{anthropic}");
    assert!(anthropic.contains("event: message_stop"), "{anthropic}");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    let out = Command::new(env!("CARGO_BIN_EXE_ash-fake-model")).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("ash-fake-model: unknown argument `--bogus`")
    );
}
