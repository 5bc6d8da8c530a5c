//! Connections end to end through `ash start`: the protocol's reference MCP server over stdio
//! in ash's sandbox, a server on the official Python SDK over streamable HTTP with bearer auth,
//! one whose credentials are missing; what `GET /info` and `ash info --connect` show, what the
//! model gets, and that no secret reaches an event, a log or an error.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ash_protocol::{ActionOutput, AgentSurface, EventBody, ToolInfo};
use ash_test_support::mcp::{McpServers, free_port};
use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::serve::{Server, agent, read_events};

const TOKEN: &str = "fixture-bearer-token-4711";

/// The Python fixture over streamable HTTP on `port`, demanding `TOKEN`.
struct HttpFixture(Child);

impl HttpFixture {
    async fn start(servers: &McpServers, port: u16) -> Self {
        let argv = servers.fixture_argv(&["http", &port.to_string(), TOKEN]);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the fixture did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self(child)
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory holding every installed server (read-only for the stdio server's sandbox).
fn install_root(servers: &McpServers) -> String {
    let mut root = servers.everything.as_path();
    while !root.ends_with("node") {
        root = root.parent().unwrap();
    }
    root.display().to_string()
}

fn connections(servers: &McpServers, port: u16) -> String {
    format!(
        r#"//- agent/connections/everything.toml
kind = "mcp"

[transport]
type = "stdio"
command = ["{everything}", "stdio"]
read_only = ["{root}"]

[tools]
allow = ["get-sum", "get-tiny-image"]
namespace = "everything"
//- agent/connections/fixture.toml
kind = "mcp"

[transport]
type = "streamable-http"
url = "http://127.0.0.1:{port}/mcp"

[auth]
kind = "bearer"
token = "${{FIXTURE_TOKEN}}"

[tools]
allow = ["add"]
namespace = "fixture"
//- agent/tools/sum-via-runtime.toml
description = "Adds 1 and 2 with the fixture server, through the runtime; tries a tool the connection does not allow."
connections = ["fixture"]
command = ["bash", "-c", "code=$(curl -s -o /dev/null -w '%{{http_code}}' -H \"Authorization: Bearer $ASH_CONNECTIONS_TOKEN\" -d '{{}}' \"$ASH_CONNECTIONS_URL/connections/fixture/tools/hang\"); sum=$(curl -s -H \"Authorization: Bearer $ASH_CONNECTIONS_TOKEN\" -d '{{\"a\":1,\"b\":2}}' \"$ASH_CONNECTIONS_URL/connections/fixture/tools/add\"); printf '{{\"forbidden\": %s, \"sum\": %s}}' \"$code\" \"$sum\""]
//- agent/connections/locked.toml
kind = "mcp"

[transport]
type = "streamable-http"
url = "http://127.0.0.1:{port}/mcp"

[tools]
allow = ["add"]
namespace = "locked"
"#,
        everything = servers.everything.display(),
        root = install_root(servers),
    )
}

async fn info(server: &Server) -> AgentSurface {
    let url = format!("{}/.well-known/ash/v1/info", server.base);
    let value: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    serde_json::from_value(value["agent"].clone()).unwrap()
}

fn tool<'a>(surface: &'a AgentSurface, name: &str) -> &'a ToolInfo {
    surface
        .tools
        .iter()
        .find(|t| match t {
            ToolInfo::Mcp { name: n, .. } => n == name,
            _ => false,
        })
        .unwrap_or_else(|| panic!("no tool {name}"))
}

/// Waits until `GET /info` shows every MCP tool settled (available, or down for a reason
/// other than starting).
async fn settled(server: &Server) -> AgentSurface {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let surface = info(server).await;
        let starting = surface.tools.iter().any(|t| {
            matches!(t, ToolInfo::Mcp { unavailable: Some(why), .. } if why.contains("starting"))
        });
        if !starting {
            return surface;
        }
        assert!(Instant::now() < deadline, "connections did not settle: {surface:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_servers_over_stdio_in_the_sandbox_and_over_http_with_bearer_auth() {
    let Some(servers) = McpServers::find() else { return };
    let port = free_port();
    let _fixture = HttpFixture::start(&servers, port).await;
    let model = FakeModelServer::start().await;
    let dir = agent(&model, &connections(&servers, port));
    let store = dir.path().join("state/runs.db");
    let server = Server::start_with(dir.path(), &store, &[], &[("FIXTURE_TOKEN", TOKEN)]);

    let surface = settled(&server).await;
    let ToolInfo::Mcp { description, input_schema, unavailable, .. } =
        tool(&surface, "everything__get-sum")
    else {
        unreachable!()
    };
    assert_eq!(
        (description.as_deref(), unavailable, input_schema.as_ref().map(|s| &s["required"])),
        (Some("Returns the sum of two numbers"), &None, Some(&json!(["a", "b"])))
    );
    let ToolInfo::Mcp { unavailable, .. } = tool(&surface, "fixture__add") else { unreachable!() };
    assert_eq!(unavailable, &None);
    let ToolInfo::Mcp { unavailable, .. } = tool(&surface, "locked__add") else { unreachable!() };
    let why = unavailable.clone().unwrap();
    assert!(why.contains("unauthorized") && why.contains("[auth]"), "{why}");

    model
        .push(Reply::Turn(
            Turn::text("Adding.")
                .then_tool_call("c1", "everything__get-sum", r#"{"a":2,"b":3}"#)
                .then_tool_call("c2", "fixture__add", r#"{"a":20,"b":22}"#)
                .then_tool_call("c3", "everything__get-tiny-image", "{}")
                .then_tool_call("c4", "locked__add", r#"{"a":1,"b":1}"#)
                .then_tool_call("c5", "sum_via_runtime", "{}"),
        ))
        .push(Reply::Turn(Turn::text("5 and 42.")));
    let response = reqwest::Client::new()
        .post(format!("{}/.well-known/ash/v1/message", server.base))
        .json(&json!({"message": "add"}))
        .send()
        .await
        .unwrap();
    let accepted: Value = response.json().await.unwrap();
    let stream = reqwest::get(format!(
        "{}/.well-known/ash/v1/runs/{}/stream",
        server.base,
        accepted["runId"].as_str().unwrap()
    ))
    .await
    .unwrap();
    let events = read_events(stream, &["session.waiting"]).await;
    let results: Vec<(String, Option<String>)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ActionResult(r) => {
                let ActionOutput::ToolResult { output, .. } = &r.result else { return None };
                let text = output["content"][0]["text"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| output["content"][0]["type"].as_str().map(str::to_owned));
                Some((r.call_id.clone(), r.error.as_ref().map(|e| e.message.clone()).or(text)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        results[..3].to_vec(),
        [
            ("c1".to_owned(), Some("The sum of 2 and 3 is 5.".to_owned())),
            ("c2".to_owned(), Some("42".to_owned())),
            ("c3".to_owned(), Some("Here's the image you requested:".to_owned())),
        ]
    );
    assert!(results[3].1.as_deref().is_some_and(|e| e.starts_with("tool `locked__add` is unavailable right now: MCP server `locked` is down: the server refused the request as unauthorized")), "{results:?}");
    // The command tool, in the native sandbox, reached the HTTP server's `add` through the
    // runtime's relayed endpoint without holding the bearer token.
    let via = events.iter().find_map(|e| match &e.body {
        EventBody::ActionResult(r) if r.call_id == "c5" => Some(r.clone()),
        _ => None,
    });
    let via = via.unwrap();
    let ActionOutput::ToolResult { output, .. } = &via.result else { unreachable!() };
    assert_eq!(
        (&output["sum"]["content"][0]["text"], &output["forbidden"], &via.error),
        (&json!("3"), &json!(403), &None),
        "{output}"
    );
    let second = &model.requests()[1].body;
    assert!(second.to_string().contains("data:image/png;base64,"), "the model sees the image");

    let everything = serde_json::to_string(&events).unwrap() + &server.log();
    assert!(!everything.contains(TOKEN), "the token leaked");
}

#[test]
fn info_connect_shows_what_the_servers_offer_and_info_alone_starts_none() {
    let Some(servers) = McpServers::find() else { return };
    let model = tokio::runtime::Runtime::new().unwrap().block_on(FakeModelServer::start());
    let dir = agent(&model, &connections(&servers, free_port()));
    let offline = crate::ash(dir.path(), &["info", "."]);
    let text = crate::stdout(&offline);
    assert!(
        text.contains("everything__get-sum  mcp  tool `get-sum` of connection everything"),
        "{text}"
    );
    assert!(text.contains("UNAVAILABLE: not connected (`ash info` does not start servers; `ash info --connect` does)"), "{text}");
    let connected =
        crate::ash_env(dir.path(), &["info", ".", "--connect"], &[("FIXTURE_TOKEN", TOKEN)]);
    let text = crate::stdout(&connected);
    assert!(
        text.contains("Returns the sum of two numbers"),
        "{text}\n{}",
        crate::stderr(&connected)
    );
    assert!(text.contains(r#""required":["a","b"]"#), "{text}");
    // Nothing listens on the HTTP fixture's port in this test.
    assert!(
        text.contains("fixture__add  mcp")
            && text.contains("UNAVAILABLE: MCP server `fixture` is down"),
        "{text}"
    );
}

/// Runs the Python SDK's client (`client.py`) with `args`, feeding it `calls`; its report.
fn python_client(servers: &McpServers, args: &[&str], calls: &Value) -> Value {
    let mut child = Command::new(&servers.python)
        .arg(&servers.client)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), calls.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the MCP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The scripted conversation both transports get: a tool call then an answer, then a second
/// answer in the same session.
fn conversation(model: &FakeModelServer) {
    model
        .push(Reply::Turn(Turn::text("Noting it.").then_tool_call(
            "w1",
            "write_file",
            r#"{"path":"note.txt","content":"hi"}"#,
        )))
        .push(Reply::Turn(Turn::text("Hello from the agent.")))
        .push(Reply::Turn(Turn::text("Second answer.")));
}

/// What a report says, without ids.
fn answers(report: &Value) -> Vec<Value> {
    report["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| match a.get("error") {
            Some(error) => json!({"error": error}),
            None => json!({"isError": a["isError"], "text": a["text"], "progress": a["progress"]}),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_is_an_mcp_tool_over_stdio_for_an_independent_client() {
    let Some(servers) = McpServers::find() else { return };
    let model = FakeModelServer::start().await;
    conversation(&model);
    let dir = agent(&model, "");
    let spec = json!({
        "command": [env!("CARGO_BIN_EXE_ash"), "mcp", "."],
        "env": {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-test"},
        "cwd": dir.path(),
    });
    let calls = json!([
        {"message": "say hello"},
        {"message": "and again", "continue": true},
        {"raw": {"msg": "no message"}},
    ]);
    let servers2 = servers.clone();
    let report = tokio::task::spawn_blocking(move || {
        python_client(&servers2, &["stdio", &spec.to_string()], &calls)
    })
    .await
    .unwrap();
    assert_eq!(report["server"], "e2e");
    let tool = &report["tools"][0];
    assert_eq!(
        (&tool["name"], &tool["inputSchema"]["required"]),
        (&json!("e2e"), &json!(["message"]))
    );
    let answers = answers(&report);
    assert_eq!(
        answers[..2].to_vec(),
        [
            json!({"isError": false, "text": ["Hello from the agent."], "progress": ["calling write_file", "write_file done"]}),
            json!({"isError": false, "text": ["Second answer."], "progress": []}),
        ]
    );
    assert!(
        answers[2]["error"].as_str().unwrap().contains("unknown argument `msg`"),
        "{answers:?}"
    );
    // One durable session: the second answer continued the first run.
    let first = &report["answers"][0]["structured"];
    let second = &report["answers"][1]["structured"];
    assert_eq!(first["runId"], second["runId"]);
    assert!(first["continuationToken"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn ash_start_serves_the_agent_as_an_mcp_tool_behind_its_auth() {
    let Some(servers) = McpServers::find() else { return };
    let model = FakeModelServer::start().await;
    conversation(&model);
    // The agent requires HTTP basic credentials.
    let dir = ash_test_support::Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"e2e\"\nmodel = \"openai/gpt-test\"\n\n\
         [[auth.strategies]]\nkind = \"http-basic\"\nusername = \"ops\"\npassword = \"${{OPS_PASSWORD}}\"\n\n\
         [providers.openai]\nbase_url = \"{}\"\n//- agent/system.md\nBe brief.\n",
        model.base_url()
    ));
    let store = dir.path().join("state/runs.db");
    let server = Server::start_with(dir.path(), &store, &[], &[("OPS_PASSWORD", "open-sesame-42")]);
    let url = format!("{}/.well-known/ash/v1/mcp", server.base);

    let refused = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    use base64::Engine as _;
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:open-sesame-42"));
    let calls = json!([{"message": "say hello"}, {"message": "and again", "continue": true}]);
    let servers2 = servers.clone();
    let report = tokio::task::spawn_blocking(move || {
        python_client(&servers2, &["http", &url, &basic], &calls)
    })
    .await
    .unwrap();
    assert_eq!(
        answers(&report),
        [
            json!({"isError": false, "text": ["Hello from the agent."], "progress": ["calling write_file", "write_file done"]}),
            json!({"isError": false, "text": ["Second answer."], "progress": []}),
        ]
    );
    // The run is an ordinary durable run: its events are on the HTTP API too.
    let run = report["answers"][0]["structured"]["runId"].as_str().unwrap().to_owned();
    let info: Value = reqwest::Client::new()
        .get(format!("{}/.well-known/ash/v1/runs/{run}", server.base))
        .basic_auth("ops", Some("open-sesame-42"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["turns"], 2, "{info}");
}

/// The connection file the README shows under "Connect an MCP server".
fn readme_connection() -> String {
    let readme = include_str!("../../../../README.md");
    let section =
        readme.split("### Connect an MCP server").nth(1).expect("the README's MCP section");
    let block = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
    block.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_readme_s_mcp_connection_works_against_the_real_server_from_npm() {
    if McpServers::find().is_none() {
        return;
    }
    let dir = ash_test_support::Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"readme\"\nmodel = \"scripted/demo.jsonl\"\n\
         //- agent/demo.jsonl\n\
         {{\"toolCalls\": [{{\"name\": \"everything__get-sum\", \"input\": {{\"a\": 2, \"b\": 3}}}}]}}\n\
         {{\"text\": \"done\"}}\n\
         //- agent/system.md\nAdd.\n\
         //- agent/connections/everything.toml\n{}\n",
        readme_connection()
    ));
    let out = crate::ash_env(dir.path(), &["exec", ".", "add 2 and 3", "--json"], &[]);
    let text = crate::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", crate::stderr(&out));
    let result = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "action.result")
        .expect("an action.result");
    assert_eq!(
        result["data"]["result"]["output"]["content"][0]["text"], "The sum of 2 and 3 is 5.",
        "{result}"
    );
}
