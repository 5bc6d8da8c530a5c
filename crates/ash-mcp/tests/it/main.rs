//! The MCP client against real servers nobody on the team wrote: the protocol's reference
//! server (npm) over stdio and streamable HTTP, and a server on the official Python SDK
//! (`ash-test-support/mcp/fixture_server.py`) for auth, crashes, hangs, garbage, huge results
//! and a tool list that changes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![allow(clippy::print_stderr, reason = "skipped tests say why")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ash_mcp::{CallError, Client, McpError, Progress};
use ash_sandbox::{ExecRequest, Process, Sandbox, SandboxPolicy};
use ash_test_support::mcp::{McpServers, free_port};
use pretty_assertions::assert_eq;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(30);

macro_rules! servers {
    () => {
        match McpServers::find() {
            Some(servers) => servers,
            None => return,
        }
    };
}

/// Starts `argv` (unisolated: these tests are about the protocol) with `env` added.
async fn start(argv: Vec<String>, env: &[(&str, &str)]) -> Process {
    let mut policy = SandboxPolicy::default();
    policy.limits.wall_time = Duration::from_secs(300);
    let mut request = ExecRequest::new(argv, PathBuf::from("/tmp"), policy);
    request.env = BTreeMap::from([
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), "/tmp".to_owned()),
    ]);
    for (k, v) in env {
        request.env.insert((*k).to_owned(), (*v).to_owned());
    }
    Sandbox::plain().spawn(&request, &CancellationToken::new()).await.unwrap()
}

/// A session with the stdio server `argv`; the process stays with the caller.
async fn stdio(argv: Vec<String>) -> (Client, Process) {
    let mut process = start(argv, &[]).await;
    let read = process.stdout.take().unwrap();
    let write = process.stdin.take().unwrap();
    let client = Client::stdio(read, write, "test", LONG).await.unwrap();
    (client, process)
}

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Calls `name` and collects its progress.
async fn call(
    client: &Client,
    name: &str,
    input: Value,
) -> (Result<ash_mcp::ToolOutput, CallError>, Vec<Progress>) {
    let (tx, mut rx) = mpsc::channel(64);
    let result = client.call(name, args(input), LONG, &tx, &CancellationToken::new()).await;
    drop(tx);
    let mut progress = Vec::new();
    while let Some(p) = rx.recv().await {
        progress.push(p);
    }
    (result, progress)
}

/// Waits until `port` on loopback accepts connections.
async fn listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

#[tokio::test]
async fn the_reference_server_over_stdio_gives_text_images_structured_content_resources_and_progress()
 {
    let servers = servers!();
    let (client, _process) =
        stdio(vec![servers.everything.display().to_string(), "stdio".into()]).await;
    assert_eq!(client.server().name, "mcp-servers/everything");
    assert!(client.server().instructions.as_deref().is_some_and(|i| i.contains("Everything")));
    let tools = client.list_tools(LONG).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "echo",
        "get-sum",
        "get-tiny-image",
        "get-structured-content",
        "trigger-long-running-operation",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let sum = tools.iter().find(|t| t.name == "get-sum").unwrap();
    assert_eq!(sum.input_schema["required"], json!(["a", "b"]));

    let (sum, _) = call(&client, "get-sum", json!({"a": 2, "b": 3})).await;
    let sum = sum.unwrap();
    assert_eq!((sum.text.as_str(), sum.is_error), ("The sum of 2 and 3 is 5.", false));
    assert_eq!(
        sum.result["content"],
        json!([{"type": "text", "text": "The sum of 2 and 3 is 5."}])
    );

    let (image, _) = call(&client, "get-tiny-image", json!({})).await;
    let image = image.unwrap();
    assert_eq!(image.images.len(), 1);
    assert_eq!(image.images[0].media_type, "image/png");
    assert!(image.text.contains("[image image/png #1: attached]"), "{}", image.text);
    let blocks = image.result["content"].as_array().unwrap();
    assert!(
        blocks.iter().any(|b| b["type"] == "image" && b["data"] == image.images[0].data.as_str())
    );

    let (weather, _) =
        call(&client, "get-structured-content", json!({"location": "New York"})).await;
    let weather = weather.unwrap();
    assert!(weather.result["structuredContent"].is_object(), "{}", weather.result);
    assert!(weather.result["structuredContent"].get("temperature").is_some(), "{}", weather.result);

    let (links, _) = call(&client, "get-resource-links", json!({"count": 2})).await;
    let links = links.unwrap();
    let kinds: Vec<&str> = links.result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "resource_link").count(), 2, "{kinds:?}");
    assert_eq!(links.text.matches("[resource link: ").count(), 2, "{}", links.text);

    let (reference, _) =
        call(&client, "get-resource-reference", json!({"resourceType": "Text", "resourceId": 1}))
            .await;
    let reference = reference.unwrap();
    assert!(
        reference.result["content"].as_array().unwrap().iter().any(|b| b["type"] == "resource"),
        "{}",
        reference.result
    );
    assert!(reference.text.contains("[resource "), "{}", reference.text);

    let (long, progress) =
        call(&client, "trigger-long-running-operation", json!({"duration": 1, "steps": 4})).await;
    assert!(!long.unwrap().is_error);
    let steps: Vec<f64> = progress.iter().map(|p| p.progress).collect();
    assert!(!steps.is_empty() && progress.iter().all(|p| p.total == Some(4.0)), "{progress:?}");
    client.close().await;
}

#[tokio::test]
async fn the_reference_server_over_streamable_http() {
    let servers = servers!();
    let port = free_port();
    let _server = start(
        vec![servers.everything.display().to_string(), "streamableHttp".into()],
        &[("PORT", &port.to_string())],
    )
    .await;
    listening(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = Client::http(&url, Default::default(), "test", LONG).await.unwrap();
    let (echo, _) = call(&client, "echo", json!({"message": "over http"})).await;
    assert_eq!(echo.unwrap().text, "Echo: over http");
    let (_, progress) =
        call(&client, "trigger-long-running-operation", json!({"duration": 1, "steps": 2})).await;
    assert!(!progress.is_empty(), "progress over HTTP");
}

#[tokio::test]
async fn bearer_auth_over_http_refused_without_the_token_and_accepted_with_it() {
    let servers = servers!();
    let port = free_port();
    let _server =
        start(servers.fixture_argv(&["http", &port.to_string(), "s3cret-token"]), &[]).await;
    listening(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let refused = Client::http(&url, Default::default(), "test", LONG).await.unwrap_err();
    assert!(matches!(refused, McpError::Unauthorized(_)), "{refused:?}");
    assert!(refused.to_string().contains("[auth]"), "{refused}");

    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_static("Bearer s3cret-token");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let client = Client::http(&url, headers, "test", LONG).await.unwrap();
    assert_eq!(
        client.server().instructions.as_deref(),
        Some("Fixture server: call add to add numbers.")
    );
    let (sum, _) = call(&client, "add", json!({"a": 2, "b": 40})).await;
    let sum = sum.unwrap();
    assert_eq!(
        (sum.text.as_str(), &sum.result["structuredContent"]),
        ("42", &json!({"result": 42}))
    );
}

#[tokio::test]
async fn a_server_that_crashes_mid_call_ends_the_call_and_the_session() {
    let servers = servers!();
    let (client, process) = stdio(servers.fixture_argv(&["stdio"])).await;
    let (crashed, _) = call(&client, "crash", json!({})).await;
    assert_eq!(crashed.unwrap_err(), CallError::Failed(McpError::Closed));
    assert!(client.is_closed());
    let ended = process.wait().await.unwrap();
    assert_eq!(ended.status, ash_sandbox::ExitStatus::Exited(3));
}

#[tokio::test]
async fn a_call_that_never_answers_times_out_and_a_cancelled_one_stops_and_the_session_goes_on() {
    let servers = servers!();
    let (client, _process) = stdio(servers.fixture_argv(&["stdio"])).await;
    let (tx, _rx) = mpsc::channel(4);
    let timed = client
        .call("hang", Map::new(), Duration::from_millis(300), &tx, &CancellationToken::new())
        .await;
    assert_eq!(timed.unwrap_err(), CallError::Timeout(Duration::from_millis(300)));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let cancelled = client.call("hang", Map::new(), LONG, &tx, &cancel).await;
    assert_eq!(cancelled.unwrap_err(), CallError::Cancelled);
    let (sum, _) = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(sum.unwrap().text, "2");
}

#[tokio::test]
async fn failures_unknown_tools_huge_results_and_a_changing_tool_list() {
    let servers = servers!();
    let (client, _process) = stdio(servers.fixture_argv(&["stdio"])).await;
    let (failed, _) = call(&client, "fail", json!({})).await;
    let failed = failed.unwrap();
    assert_eq!(
        (failed.is_error, failed.text.as_str()),
        (true, "Error executing tool fail: the fixture fails on purpose")
    );
    let (unknown, _) = call(&client, "no_such_tool", json!({})).await;
    // The SDK reports an unknown tool as a failed result or a JSON-RPC error; either way it
    // says which tool.
    match unknown {
        Ok(out) => assert!(out.is_error && out.text.contains("no_such_tool"), "{out:?}"),
        Err(CallError::Rejected { message, .. }) => {
            assert!(message.contains("no_such_tool"), "{message}")
        }
        Err(other) => panic!("{other:?}"),
    }
    let (huge, _) = call(&client, "huge", json!({"kb": 300})).await;
    let huge = huge.unwrap();
    // Whole: the caller cuts, after taking its secrets out.
    assert_eq!(huge.text.len(), 300 * 1024);

    let before = client.list_tools(LONG).await.unwrap().len();
    let changed = client.tools_changed();
    let ((grown, _), ()) = tokio::join!(call(&client, "grow", json!({})), async {
        tokio::time::timeout(LONG, changed).await.expect("tools/list_changed arrives");
    });
    assert_eq!(grown.unwrap().text, "grown");
    let after = client.list_tools(LONG).await.unwrap();
    assert_eq!(after.len(), before + 1);
    assert!(after.iter().any(|t| t.name == "late"));
}

#[tokio::test]
async fn a_server_that_never_initializes_or_speaks_garbage_is_refused_in_time() {
    let servers = servers!();
    for mode in ["silent", "garbage"] {
        let mut process = start(servers.fixture_argv(&[mode]), &[]).await;
        let read = process.stdout.take().unwrap();
        let write = process.stdin.take().unwrap();
        let error =
            Client::stdio(read, write, "test", Duration::from_millis(1500)).await.unwrap_err();
        assert_eq!(error, McpError::InitTimeout(Duration::from_millis(1500)), "{mode}");
    }
}
