//! Benchmarks for ash-mcp against real servers: what one tool call through ash's client costs
//! beyond the same call from a bare rmcp client, over stdio (the Python SDK fixture's `add`)
//! and streamable HTTP (the reference server's `get-sum`); and the registry's work once five
//! servers answer: listing their 200 tools and compiling each input schema, as ash-core does
//! when a connection comes up.
//!
//! Run with `cargo bench -p ash-mcp --bench mcp [-- --calls N]`; needs the servers `.ci/run`
//! installs (`$ASH_TEST_MCP`).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ash_mcp::Client;
use ash_sandbox::{ExecRequest, Process, Sandbox, SandboxPolicy};
use ash_test_support::mcp::{McpServers, free_port};
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(60);

async fn start(argv: Vec<String>, env: &[(&str, &str)]) -> Process {
    let mut policy = SandboxPolicy::default();
    policy.limits.wall_time = Duration::from_secs(3600);
    let mut request = ExecRequest::new(argv, PathBuf::from("/"), policy);
    request.env = BTreeMap::from([
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), "/nonexistent".to_owned()),
    ]);
    for (k, v) in env {
        request.env.insert((*k).to_owned(), (*v).to_owned());
    }
    Sandbox::plain().spawn(&request, &CancellationToken::new()).await.unwrap()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let at = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[at]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `n` calls of `tool` with `args` through ash's client, each with the input check the
/// registry makes first; the per-call times.
async fn through_ash(
    client: &Client,
    tool: &str,
    args: &Value,
    schema: &Value,
    n: usize,
) -> Vec<Duration> {
    let validator = jsonschema::validator_for(schema).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let cancel = CancellationToken::new();
    let Value::Object(args) = args.clone() else { panic!() };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let input = Value::Object(args.clone());
        assert!(validator.is_valid(&input));
        let Value::Object(input) = input else { unreachable!() };
        let result = client.call(tool, input, LONG, &tx, &cancel).await.unwrap();
        std::hint::black_box(&result);
        out.push(started.elapsed());
    }
    out
}

/// `n` calls from a bare rmcp client (no handler, no checks).
async fn bare(
    peer: &rmcp::Peer<rmcp::RoleClient>,
    tool: &str,
    args: &Map<String, Value>,
    n: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.clone());
        let result = peer.call_tool(params).await.unwrap();
        std::hint::black_box(&result);
        out.push(started.elapsed());
    }
    out
}

fn report(label: &str, mut ash: Vec<Duration>, mut bare: Vec<Duration>) {
    let (ash50, ash99) = (percentile(&mut ash, 0.5), percentile(&mut ash, 0.99));
    let (bare50, bare99) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.99));
    let added = (ash50.as_secs_f64() - bare50.as_secs_f64()) * 1000.0;
    println!(
        "{label:<8} bare client p50 {} p99 {} · through ash p50 {} p99 {} · added p50 {added:+.3} ms",
        ms(bare50),
        ms(bare99),
        ms(ash50),
        ms(ash99),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let Some(servers) = McpServers::find() else { return };
    println!("{calls} calls each, after 50 warm-up calls");

    // stdio: two processes of the same server, one per client.
    let args = json!({"a": 2, "b": 3});
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]});
    let mut for_ash = start(servers.fixture_argv(&["stdio"]), &[]).await;
    let ash =
        Client::stdio(for_ash.stdout.take().unwrap(), for_ash.stdin.take().unwrap(), "bench", LONG)
            .await
            .unwrap();
    let mut for_bare = start(servers.fixture_argv(&["stdio"]), &[]).await;
    let bare_client =
        ().serve((for_bare.stdout.take().unwrap(), for_bare.stdin.take().unwrap())).await.unwrap();
    let Value::Object(map) = args.clone() else { panic!() };
    through_ash(&ash, "add", &args, &schema, 50).await;
    bare(bare_client.peer(), "add", &map, 50).await;
    let a = through_ash(&ash, "add", &args, &schema, calls).await;
    let b = bare(bare_client.peer(), "add", &map, calls).await;
    report("stdio", a, b);

    // Streamable HTTP: the reference server.
    let port = free_port();
    let _http = start(
        vec![servers.everything.display().to_string(), "streamableHttp".into()],
        &[("PORT", &port.to_string())],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let deadline = Instant::now() + LONG;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the reference server did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ash_http = Client::http(&url, Default::default(), "bench", LONG).await.unwrap();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.as_str());
    let bare_http = ().serve(transport).await.unwrap();
    let schema = json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]});
    through_ash(&ash_http, "get-sum", &args, &schema, 50).await;
    bare(bare_http.peer(), "get-sum", &map, 50).await;
    let a = through_ash(&ash_http, "get-sum", &args, &schema, calls).await;
    let b = bare(bare_http.peer(), "get-sum", &map, calls).await;
    report("http", a, b);

    // The registry once five servers answer: 5 × 40 tools listed and compiled.
    let mut processes = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut process = start(servers.fixture_argv(&["many", "31"]), &[]).await;
        let client = Client::stdio(
            process.stdout.take().unwrap(),
            process.stdin.take().unwrap(),
            "bench",
            LONG,
        )
        .await
        .unwrap();
        processes.push(process);
        clients.push(client);
    }
    let mut builds = Vec::new();
    let mut tools = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let lists = futures_join(clients.iter().map(|c| c.list_tools(LONG))).await;
        tools = 0;
        for listed in lists {
            for tool in listed.unwrap() {
                let validator = jsonschema::validator_for(&tool.input_schema).unwrap();
                std::hint::black_box(&validator);
                tools += 1;
            }
        }
        builds.push(started.elapsed());
    }
    let p50 = percentile(&mut builds, 0.5);
    let max = *builds.iter().max().unwrap();
    println!(
        "registry 5 servers, {tools} tools: listed and compiled p50 {} max {}",
        ms(p50),
        ms(max)
    );
}

/// Awaits all of `futures` concurrently.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    // Polled together: each awaits its own server.
    let joined = futures_util::future::join_all(handles).await;
    out.extend(joined);
    out
}
