//! The local endpoint through which a command tool reaches its agent's connections while the
//! credentials stay here: the tool gets `ASH_CONNECTIONS_URL` and a token valid for its one
//! call (`ASH_CONNECTIONS_TOKEN`), never a connection's secret. Inside an isolating sandbox the
//! URL is a port of the sandbox's own loopback relayed to this broker's Unix socket; without
//! one (or with the host's network) it is a loopback TCP port.
//!
//! Routes (JSON in and out; `Authorization: Bearer $ASH_CONNECTIONS_TOKEN`):
//! - `GET /connections`: the agent's connections, `{"connections":[{"name","kind"}]}`;
//! - `POST /connections/{name}/request` (HTTP connections): `{"method","path","query",
//!   "headers","body"}` → `{"status","headers","body"}`;
//! - `POST /connections/{name}/tools/{tool}` (MCP connections): the tool's arguments →
//!   `{"content","structuredContent","isError"}`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Connections;
use super::http::{HttpRequest, MAX_REQUEST_BYTES};

/// The port of the broker on a sandbox's own loopback.
pub(crate) const BROKER_PORT: u16 = 7390;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Time to send a request's headers.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a token allows while its call runs.
#[derive(Clone)]
struct Grant {
    /// The connections the tool declared.
    connections: Vec<String>,
    /// Fires when the call ends: its requests in flight stop.
    ended: CancellationToken,
}

type Passes = Arc<Mutex<HashMap<String, Grant>>>;

/// A token valid while its call runs; dropping it ends it and the requests it started.
pub(crate) struct Pass {
    token: String,
    passes: Passes,
}

impl Pass {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let grant = self.passes.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.token);
        if let Some(grant) = grant {
            grant.ended.cancel();
        }
    }
}

/// The broker of one engine.
pub(crate) struct Broker {
    socket: PathBuf,
    tcp: Option<SocketAddr>,
    passes: Passes,
}

struct Shared {
    connections: Arc<Connections>,
    passes: Passes,
    stop: CancellationToken,
}

impl Broker {
    /// Listens on `socket` (relayed into isolating sandboxes) and, when `tcp` (tools that
    /// share the host's network, or run without isolation), on a loopback TCP port; serving in
    /// `tasks` until `stop`. Each listener has its own connection limit. Called inside the
    /// runtime.
    pub(crate) fn start(
        connections: Arc<Connections>,
        socket: PathBuf,
        tcp: bool,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> std::io::Result<Self> {
        let passes: Passes = Arc::default();
        let unix = tokio::net::UnixListener::bind(&socket)?;
        let shared =
            Arc::new(Shared { connections, passes: Arc::clone(&passes), stop: stop.child_token() });
        let unix_shared = Arc::clone(&shared);
        tasks.spawn(async move {
            let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            accept(|| async { unix.accept().await.map(|(s, _)| s) }, unix_shared, limit).await;
        });
        let mut tcp_addr = None;
        if tcp {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tcp_addr = Some(listener.local_addr()?);
            tasks.spawn(async move {
                let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
                accept(|| async { listener.accept().await.map(|(s, _)| s) }, shared, limit).await;
            });
        }
        Ok(Self { socket, tcp: tcp_addr, passes })
    }

    /// A fresh token for one call that may reach `connections`: 244 random bits (two v4
    /// UUIDs, from the OS's generator).
    pub(crate) fn pass(&self, connections: &[String]) -> Pass {
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let grant = Grant { connections: connections.to_vec(), ended: CancellationToken::new() };
        self.passes.lock().unwrap_or_else(PoisonError::into_inner).insert(token.clone(), grant);
        Pass { token, passes: Arc::clone(&self.passes) }
    }

    /// The host socket, relayed into isolating sandboxes at [`BROKER_PORT`].
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The loopback TCP address, for processes that share the host's network.
    pub(crate) fn tcp(&self) -> Option<SocketAddr> {
        self.tcp
    }
}

async fn accept<F, Fut, S>(next: F, shared: Arc<Shared>, limit: Arc<Semaphore>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = shared.stop.cancelled() => break,
            stream = next() => stream,
            Some(_) = connections.join_next() => continue,
        };
        let Ok(stream) = stream else {
            // Out of descriptors, say: not a loop that spins.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                () = shared.stop.cancelled() => break,
            }
        };
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else { break };
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let _permit = permit;
            let stop = shared.stop.clone();
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

fn answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    answer(status, &json!({"error": message}))
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let token = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let grant = token.and_then(|t| {
        shared.passes.lock().unwrap_or_else(PoisonError::into_inner).get(&t).cloned()
    });
    let Some(grant) = grant else {
        return error(
            StatusCode::UNAUTHORIZED,
            "send `Authorization: Bearer $ASH_CONNECTIONS_TOKEN`; the token is valid while the tool call runs",
        );
    };
    // The request ends with the call that made it (each step below watches `grant.ended`, so a
    // call in flight is told to stop), or with the engine.
    tokio::select! {
        response = serve(shared, &grant, request) => response,
        () = shared.stop.cancelled() => {
            error(StatusCode::SERVICE_UNAVAILABLE, "the agent is shutting down")
        }
    }
}

async fn serve(
    shared: &Shared,
    grant: &Grant,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read = Limited::new(request.into_body(), MAX_REQUEST_BYTES).collect();
    let read = tokio::select! {
        read = read => read,
        () = grant.ended.cancelled() => {
            return error(StatusCode::GONE, "the tool call this token belonged to has ended");
        }
    };
    let body = match read {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("bodies are at most {MAX_REQUEST_BYTES} bytes"),
            );
        }
    };
    let connections = &shared.connections;
    let known_names = || {
        if grant.connections.is_empty() { "none".to_owned() } else { grant.connections.join(", ") }
    };
    let granted = |name: &str| grant.connections.iter().any(|c| c == name);
    match (method, segments.as_slice()) {
        (Method::GET, ["connections"]) => {
            let list: Vec<Value> = connections
                .names()
                .into_iter()
                .filter(|(name, _)| granted(name))
                .map(|(name, kind)| json!({"name": name, "kind": kind}))
                .collect();
            answer(StatusCode::OK, &json!({"connections": list}))
        }
        (_, ["connections", name, ..]) if !granted(name) => error(
            StatusCode::FORBIDDEN,
            &format!("this tool may reach only the connections its file lists: {}", known_names()),
        ),
        (Method::POST, ["connections", name, "request"]) => {
            let Some(http) = connections.http(name) else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "`{name}` is an MCP connection: call its tools with POST /connections/{name}/tools/TOOL"
                    ),
                );
            };
            let request = match parse_request(&body) {
                Ok(request) => request,
                Err(why) => return error(StatusCode::BAD_REQUEST, &why),
            };
            let timeout = Duration::from_millis(http.connection.timeout_ms);
            match http.send(&request, timeout, &grant.ended).await {
                Ok(response) => answer(StatusCode::OK, &response.to_json()),
                Err(why) => error(StatusCode::BAD_GATEWAY, &why),
            }
        }
        (Method::POST, ["connections", name, "tools", tool]) => {
            let Some(mcp) = connections.mcp(name) else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "`{name}` is an HTTP connection: send requests with POST /connections/{name}/request"
                    ),
                );
            };
            let arguments = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(map)) => map,
                Ok(Value::Null) | Err(_) if body.is_empty() => Map::new(),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the body must be the tool's arguments as a JSON object",
                    );
                }
            };
            // The tools the connection allows, no others.
            let (client, _) = match mcp.callable(tool) {
                Ok(ready) if mcp.allows(tool) => ready,
                Ok(_) => {
                    return error(
                        StatusCode::FORBIDDEN,
                        &format!(
                            "`{tool}` is not in the [tools] allow list of connection `{name}`"
                        ),
                    );
                }
                Err(why) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, &mcp.redactor.text(&why));
                }
            };
            let (progress, _ignored) = tokio::sync::mpsc::channel(1);
            let timeout = Duration::from_millis(mcp.connection.timeout_ms);
            match client.call(tool, arguments, timeout, &progress, &grant.ended).await {
                Ok(output) => {
                    let mut result = output.result;
                    mcp.redactor.json(&mut result);
                    answer(StatusCode::OK, &result)
                }
                Err(e) => {
                    if matches!(e, ash_mcp::CallError::NotSent(_) | ash_mcp::CallError::Failed(_)) {
                        mcp.broken();
                    }
                    error(StatusCode::BAD_GATEWAY, &mcp.redactor.text(&e.to_string()))
                }
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "routes: GET /connections, POST /connections/NAME/request, POST /connections/NAME/tools/TOOL",
        ),
    }
}

/// A broker request body → a connection request.
fn parse_request(body: &[u8]) -> Result<HttpRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("the body must be a JSON object".into());
    };
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let method = match object.remove("method") {
        None => "GET".to_owned(),
        Some(Value::String(m)) => m,
        Some(_) => return Err("`method` must be a string".into()),
    };
    let Some(Value::String(path)) = object.remove("path") else {
        return Err("`path` (a string starting with `/`) is required".into());
    };
    let mut query = Vec::new();
    match object.remove("query") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match value {
                    Value::Array(items) => {
                        for item in &items {
                            query.push((
                                key.clone(),
                                text(item).ok_or(format!("query `{key}`: scalars only"))?,
                            ));
                        }
                    }
                    other => query.push((
                        key.clone(),
                        text(&other).ok_or(format!("query `{key}`: scalars only"))?,
                    )),
                }
            }
        }
        Some(_) => return Err("`query` must be an object".into()),
    }
    let mut headers = BTreeMap::new();
    match object.remove("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                headers
                    .insert(key.clone(), text(&value).ok_or(format!("header `{key}`: a string"))?);
            }
        }
        Some(_) => return Err("`headers` must be an object".into()),
    }
    let body = object.remove("body");
    if let Some(key) = object.keys().next() {
        return Err(format!("unknown field `{key}`; give method, path, query, headers and body"));
    }
    Ok(HttpRequest { method, path, query, headers, body })
}
