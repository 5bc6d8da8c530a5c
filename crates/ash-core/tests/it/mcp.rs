//! MCP connections through the engine: a server on the official Python SDK started as a
//! long-lived process, its tools offered to the model with the server's schemas, called with
//! content, images, progress and errors kept, its secrets out of every event, a crash seen
//! and the server restarted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ash_core::MemoryStore;
use ash_protocol::{ActionOutput, ActionStatus, EventBody, ToolInfo};
use ash_test_support::mcp::McpServers;
use ash_test_support::{Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::{Harness, bodies, read_until};

const SECRET: &str = "super-secret-value-123";

fn connection(servers: &McpServers) -> String {
    connection_allowing(
        servers,
        r#"["add", "image", "slow", "setting", "crash", "hang", "missing_tool"]"#,
    )
}

fn connection_allowing(servers: &McpServers, allow: &str) -> String {
    let argv: Vec<String> =
        servers.fixture_argv(&["stdio"]).iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"//- agent/connections/fixture.toml
kind = "mcp"
instructions = true

[transport]
type = "stdio"
command = [{}]

[transport.env]
FIXTURE_SETTING = "${{FIXTURE_SETTING}}"

[tools]
allow = {allow}
namespace = "fixture"

[policy]
timeout_ms = 2000
retry_attempts = 1
"#,
        argv.join(", ")
    )
}

/// `(call id, status, output, error)` of each `action.result`.
fn results(events: &[ash_protocol::Event]) -> Vec<(String, ActionStatus, Value, Option<String>)> {
    bodies(events, "action.result")
        .into_iter()
        .map(|b| match b {
            EventBody::ActionResult(r) => {
                let ActionOutput::ToolResult { output, .. } = &r.result else { unreachable!() };
                (
                    r.call_id.clone(),
                    r.status,
                    output.clone(),
                    r.error.as_ref().map(|e| e.message.clone()),
                )
            }
            _ => unreachable!(),
        })
        .collect()
}

fn mcp_tool<'a>(surface: &'a ash_protocol::AgentSurface, name: &str) -> &'a ToolInfo {
    surface.tools.iter().find(|t| ash_core::tool_name(t) == name).unwrap()
}

#[tokio::test]
async fn a_stdio_server_s_tools_are_called_with_content_progress_errors_and_no_secret() {
    let Some(servers) = McpServers::find() else { return };
    let env = BTreeMap::from([("FIXTURE_SETTING".to_owned(), SECRET.to_owned())]);
    let h =
        Harness::with_env(&connection(&servers), &env, Arc::new(MemoryStore::new()), |_| {}).await;
    h.engine.connections_settled(Duration::from_secs(30)).await;

    let surface = h.engine.surface(None);
    let ToolInfo::Mcp { description, input_schema, unavailable, .. } =
        mcp_tool(&surface, "fixture__add")
    else {
        panic!()
    };
    assert_eq!(
        (description.as_deref(), unavailable, input_schema.as_ref().map(|s| &s["required"])),
        (Some("Add two integers."), &None, Some(&json!(["a", "b"])))
    );
    let ToolInfo::Mcp { unavailable, .. } = mcp_tool(&surface, "fixture__missing_tool") else {
        panic!()
    };
    assert!(
        unavailable.as_deref().is_some_and(|u| u.contains("does not offer `missing_tool`")),
        "{unavailable:?}"
    );

    h.server
        .push(Reply::Turn(
            Turn::text("Using the server.")
                .then_tool_call("c1", "fixture__add", r#"{"a":2,"b":3}"#)
                .then_tool_call("c2", "fixture__image", "{}")
                .then_tool_call("c3", "fixture__setting", "{}")
                .then_tool_call("c4", "fixture__slow", r#"{"steps":4}"#)
                .then_tool_call("c5", "fixture__add", r#"{"a":"x","b":1}"#)
                .then_tool_call("c6", "fixture__missing_tool", "{}")
                .then_tool_call("c7", "fixture__huge", r#"{"kb":300}"#),
        ))
        .push(Reply::Turn(Turn::text("Done.")));
    let first = h.send("use the fixture", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let results = results(&events);
    let png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAACAAFUok9dAAAAAElFTkSuQmCC";
    assert_eq!(
        results[..4].to_vec(),
        [
            (
                "c1".to_owned(),
                ActionStatus::Completed,
                json!({"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}, "isError": false}),
                None
            ),
            (
                "c2".to_owned(),
                ActionStatus::Completed,
                json!({"content": [{"type": "image", "data": png, "mimeType": "image/png"}], "isError": false}),
                None
            ),
            (
                "c3".to_owned(),
                ActionStatus::Completed,
                json!({"content": [{"type": "text", "text": "<redacted>"}], "structuredContent": {"result": "<redacted>"}, "isError": false}),
                None
            ),
            (
                "c4".to_owned(),
                ActionStatus::Completed,
                json!({"content": [{"type": "text", "text": "done after 4 steps"}], "structuredContent": {"result": "done after 4 steps"}, "isError": false}),
                None
            ),
        ]
    );
    assert_eq!(
        results[4].3.as_deref(),
        Some(
            r#"the input of `fixture__add` does not match its schema: at `/a`: "x" is not of type "integer""#
        )
    );
    assert_eq!(
        results[5].3.as_deref(),
        Some(
            "tool `fixture__missing_tool` is unavailable right now: MCP server `fixture` does not offer `missing_tool` (it offers: add, crash, fail, grow, hang, huge, image, setting, slow)"
        )
    );
    let progress: Vec<_> = bodies(&events, "action.progress")
        .into_iter()
        .map(|b| match b {
            EventBody::ActionProgress(p) => (p.call_id.clone(), p.total, p.message.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert!(
        !progress.is_empty()
            && progress.iter().all(|(id, total, m)| id == "c4"
                && *total == Some(4.0)
                && m.as_deref().is_some_and(|m| m.ends_with(" of 4"))),
        "{progress:?}"
    );
    let stream = serde_json::to_string(&events).unwrap();
    assert!(!stream.contains(SECRET), "a secret reached the events");

    let requests = h.server.requests();
    let first_request = &requests[0].body;
    let system = first_request["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("## MCP server `fixture`\n\nFixture server: call add to add numbers."),
        "{system}"
    );
    let tools = first_request["tools"].as_array().unwrap();
    let add = tools.iter().find(|t| t["function"]["name"] == "fixture__add").unwrap();
    assert_eq!(add["function"]["description"], "Add two integers.");
    let missing = tools.iter().find(|t| t["function"]["name"] == "fixture__missing_tool").unwrap();
    assert!(
        missing["function"]["description"].as_str().unwrap().starts_with("UNAVAILABLE right now (")
    );
    // The model reads the results, and sees the image.
    let second = serde_json::to_string(&requests[1].body).unwrap();
    assert!(!second.contains(SECRET), "a secret reached the model");
    let messages = requests[1].body["messages"].as_array().unwrap();
    let image_message =
        messages.iter().find(|m| m["role"] == "user" && m["content"].is_array()).unwrap();
    assert_eq!(
        image_message["content"][1]["image_url"]["url"],
        format!("data:image/png;base64,{png}")
    );
    let add_result =
        messages.iter().find(|m| m["role"] == "tool" && m["tool_call_id"] == "c1").unwrap();
    assert_eq!(add_result["content"], "5");
}

#[tokio::test]
async fn a_crashed_server_is_restarted_and_a_hung_call_times_out() {
    let Some(servers) = McpServers::find() else { return };
    let env = BTreeMap::from([("FIXTURE_SETTING".to_owned(), SECRET.to_owned())]);
    let h =
        Harness::with_env(&connection(&servers), &env, Arc::new(MemoryStore::new()), |_| {}).await;
    h.engine.connections_settled(Duration::from_secs(30)).await;
    h.server
        .push(Reply::Turn(Turn::text("Crash it.").then_tool_call("d1", "fixture__crash", "{}")))
        .push(Reply::Turn(Turn::text("It crashed.")))
        .push(Reply::Turn(Turn::text("Again.").then_tool_call(
            "d2",
            "fixture__add",
            r#"{"a":1,"b":2}"#,
        )))
        .push(Reply::Turn(Turn::text("Back.")))
        .push(Reply::Turn(Turn::text("Wait.").then_tool_call("d3", "fixture__hang", "{}")))
        .push(Reply::Turn(Turn::text("Gave up.")));
    let run = h.send("crash the server", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    let crashed = results(&events);
    assert_eq!(crashed.len(), 1);
    assert_eq!(crashed[0].1, ActionStatus::Failed);
    let why = crashed[0].3.clone().unwrap();
    assert!(
        why.starts_with(
            "calling `crash` on MCP server `fixture` failed: the connection to the server closed"
        ),
        "{why}"
    );

    // Down with the reason, then back by itself.
    let mut reasons = Vec::new();
    for _ in 0..200 {
        let surface = h.engine.surface(None);
        let ToolInfo::Mcp { unavailable, .. } = mcp_tool(&surface, "fixture__add") else {
            panic!()
        };
        match unavailable {
            Some(why) => reasons.push(why.clone()),
            None if !reasons.is_empty() => break,
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("MCP server `fixture` is down: the server exited (exit code 3)")),
        "{reasons:?}"
    );
    let next = h.send("try again", Some(&run.continuation_token)).await;
    let events =
        read_until(&h.engine, &next.run_id, events.len() as u64, &["session.waiting"]).await;
    assert_eq!(results(&events)[0].2["content"], json!([{"type": "text", "text": "3"}]));

    let last = h.send("hang", Some(&run.continuation_token)).await;
    let start = events.last().unwrap().meta.index + 1;
    let events = read_until(&h.engine, &last.run_id, start, &["session.waiting"]).await;
    assert_eq!(
        results(&events)[0].3.as_deref(),
        Some(
            "MCP server `fixture` did not answer `hang` within 2000 ms (the connection's timeout_ms); it was told to stop"
        )
    );
}

#[tokio::test]
async fn a_tool_the_server_adds_mid_session_becomes_callable() {
    let Some(servers) = McpServers::find() else { return };
    let env = BTreeMap::from([("FIXTURE_SETTING".to_owned(), SECRET.to_owned())]);
    let files = connection_allowing(&servers, r#"["grow", "late"]"#);
    let h = Harness::with_env(&files, &env, Arc::new(MemoryStore::new()), |_| {}).await;
    h.engine.connections_settled(Duration::from_secs(30)).await;
    let surface = h.engine.surface(None);
    let ToolInfo::Mcp { unavailable, .. } = mcp_tool(&surface, "fixture__late") else { panic!() };
    assert!(
        unavailable.as_deref().is_some_and(|u| u.contains("does not offer `late`")),
        "{unavailable:?}"
    );
    h.server
        .push(Reply::Turn(Turn::text("Growing.").then_tool_call("g1", "fixture__grow", "{}")))
        .push(Reply::Turn(Turn::text("Grown.")))
        .push(Reply::Turn(Turn::text("Late.").then_tool_call("l1", "fixture__late", "{}")))
        .push(Reply::Turn(Turn::text("Done.")));
    let run = h.send("grow", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    assert_eq!(results(&events)[0].3, None);
    // The server said its list changed; the runtime listed it again.
    let mut offered = false;
    for _ in 0..200 {
        let surface = h.engine.surface(None);
        if let ToolInfo::Mcp { unavailable: None, description, .. } =
            mcp_tool(&surface, "fixture__late")
        {
            assert_eq!(description.as_deref(), Some("Appears after grow is called."));
            offered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offered, "the new tool was never offered");
    let next = h.send("call it", Some(&run.continuation_token)).await;
    let start = events.last().unwrap().meta.index + 1;
    let events = read_until(&h.engine, &next.run_id, start, &["session.waiting"]).await;
    assert_eq!(
        results(&events)[0].2["content"],
        json!([{"type": "text", "text": "late tool answered"}])
    );
}
