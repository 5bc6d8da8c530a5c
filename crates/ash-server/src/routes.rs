//! The routes, their request parsing, and the server loop with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ash_core::{Answer, CancelOutcome, Engine, Inbound, RunId, RunSnapshot};
use ash_protocol::{
    API_PREFIX, CancelAccepted, Health, InputAnswer, MessageAccepted, MessageRequest,
    RUN_ID_HEADER, RunContinues, RunInfo, SESSION_ID_HEADER, STREAM_FORMAT_HEADER, STREAM_VERSION,
    STREAM_VERSION_HEADER, SessionAuthContext,
};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::{self, Gate, GateError, OidcConfig};
use crate::error::HttpError;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// A heartbeat line goes out after this long without an event.
    pub heartbeat: Duration,
    /// How OIDC issuers' keys are fetched and cached.
    pub oidc: OidcConfig,
    /// Connections open at once; beyond, a connection gets `503` and is closed.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a kept-alive connection may idle.
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// A response write that makes no progress this long closes the connection (a reader that
    /// stopped reading; it resumes by `startIndex`).
    pub write_stall_timeout: Duration,
    /// Event streams open at once; beyond, `503 too_many_streams`.
    pub max_streams: usize,
    /// On shutdown, how long in-flight requests may finish before their connections close.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            heartbeat: Duration::from_secs(15),
            oidc: OidcConfig::default(),
            max_connections: 16_384,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
            max_streams: 4096,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
struct App {
    engine: Engine,
    config: ServerConfig,
    streams: Arc<tokio::sync::Semaphore>,
}

/// The API router over `engine`, behind the gate of its agent's `[network]` and `auth`
/// configuration. Serve it with connect info (`SocketAddr`): without a peer address, an agent
/// with an IP allow list answers every request with 403.
pub fn router(engine: Engine, config: ServerConfig) -> Result<Router, GateError> {
    let gate = Arc::new(Gate::new(engine.spec().root(), &config.oidc)?);
    Ok(router_with_gate(engine, config, gate, None, tokio_util::sync::CancellationToken::new()))
}

/// The `Host` names the MCP endpoint accepts when the server listens on loopback only: a page
/// in a browser on this machine cannot reach it through a rebound DNS name.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn router_with_gate(
    engine: Engine,
    config: ServerConfig,
    gate: Arc<Gate>,
    mcp_hosts: Option<Vec<String>>,
    stop: tokio_util::sync::CancellationToken,
) -> Router {
    let mcp = ash_mcp::server::http_service(
        crate::mcp::agent_info(&engine),
        crate::mcp::engine_agent(engine.clone()),
        mcp_hosts,
        stop,
    );
    // rmcp reads the body itself: it is read here first, within the same size and time limits
    // as every other body, so a slow or endless one cannot hold a connection.
    let limits = (config.max_body_bytes, config.body_timeout);
    let mcp = Router::new()
        .route_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(limits, buffered_body));
    let api = Router::new()
        .merge(mcp)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/info", get(info))
        .route("/message", post(message))
        .route("/runs/{run_id}", get(run_info))
        .route("/runs/{run_id}/stream", get(stream))
        .route("/runs/{run_id}/cancel", post(cancel))
        .route("/runs/{run_id}/input", post(input))
        .route("/runs/{run_id}/resume", post(resume))
        .route("/sessions/{session_id}/stream", get(stream))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(App {
            streams: Arc::new(tokio::sync::Semaphore::new(config.max_streams)),
            engine,
            config,
        });
    Router::new()
        .nest(API_PREFIX, api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(gate, auth::guard))
        .layer(middleware::from_fn(log_and_no_store))
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The agent's access configuration cannot be enforced.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// Accepting or serving connections failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `engine` on `listener` until `shutdown` resolves; then stops accepting connections,
/// lets workers reach a safe point, ends open streams, and returns.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let gate = Arc::new(Gate::new(engine.spec().root(), &config.oidc)?);
    let stop = tokio_util::sync::CancellationToken::new();
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let mcp_hosts = loopback.then(|| LOOPBACK_HOSTS.map(str::to_owned).to_vec());
    let app = router_with_gate(
        engine.clone(),
        config.clone(),
        Arc::clone(&gate),
        mcp_hosts,
        stop.child_token(),
    );
    let server = crate::server::accept_loop(listener, app, config, stop.clone());
    let drain = async {
        shutdown.await;
        stop.cancel();
        engine.shutdown().await;
    };
    let prefetch = async {
        tokio::select! {
            () = gate.prefetch() => {}
            () = stop.cancelled() => {}
        }
    };
    tokio::join!(server, drain, prefetch);
    Ok(())
}

/// Reads the request's body whole, at most `limit` bytes within `timeout`, before the handler.
async fn buffered_body(
    State((limit, timeout)): State<(usize, Duration)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(_)) => HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
        .into_response(),
        Err(_) => HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {} s", timeout.as_secs()),
        )
        .into_response(),
    }
}

/// One log line per request, and `cache-control: no-store` on every response.
async fn log_and_no_store(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(
        target: "ash::http",
        "{method} {path} {} {}ms",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

async fn method_not_allowed(request: Request) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed here; docs/api.md lists each route's method", request.method()),
    )
}

/// A `:runId` path segment, or a JSON error when it is not valid text.
fn run_id_of(path: Result<Path<String>, PathRejection>) -> Result<String, HttpError> {
    path.map(|Path(id)| id).map_err(|_| {
        HttpError::bad_request("invalid_run_id", "the run id in the path is not valid UTF-8 text")
    })
}

async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!(
            "no such route; the API lives under {API_PREFIX}/ (health, metrics, info, message, runs/:runId, runs/:runId/stream, runs/:runId/cancel, runs/:runId/input, runs/:runId/resume, mcp)"
        ),
    )
}

/// Ready only while the engine can work: a store that is gone makes it `503`.
async fn health(State(app): State<App>) -> Response {
    match app.engine.health().await {
        Ok(()) => Json(Health { ok: true, status: "ready".to_owned() }).into_response(),
        Err(e) => {
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
                .into_response()
        }
    }
}

/// The store's and the engine's state in Prometheus' text format: runs by status, leases held
/// and waiting for a worker, the connection pool, and this node's live workers.
async fn metrics(State(app): State<App>) -> Response {
    use std::fmt::Write as _;
    let mut out = String::new();
    let health = app.engine.store_health().await;
    let _ =
        writeln!(out, "# HELP ash_store_up Whether the store answered.\n# TYPE ash_store_up gauge");
    let backend = health.as_ref().map_or("unknown", |h| h.backend.as_str());
    let _ = writeln!(out, "ash_store_up{{backend=\"{backend}\"}} {}", u8::from(health.is_ok()));
    if let Ok(health) = &health {
        let _ = writeln!(out, "# HELP ash_store_runs Runs by status.\n# TYPE ash_store_runs gauge");
        for (status, count) in &health.runs_by_status {
            let _ = writeln!(out, "ash_store_runs{{status=\"{status}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP ash_store_leases Active runs whose lease is held, or free or expired (claimable).\n# TYPE ash_store_leases gauge"
        );
        let _ = writeln!(out, "ash_store_leases{{state=\"held\"}} {}", health.leases_held);
        let _ =
            writeln!(out, "ash_store_leases{{state=\"claimable\"}} {}", health.leases_claimable);
        if let Some(pool) = &health.pool {
            let _ = writeln!(
                out,
                "# HELP ash_store_pool Database connections: most, open, idle, and callers waiting.\n# TYPE ash_store_pool gauge"
            );
            for (state, value) in [
                ("max", pool.max_size),
                ("open", pool.size),
                ("idle", pool.available),
                ("waiting", pool.waiting),
            ] {
                let _ = writeln!(out, "ash_store_pool{{state=\"{state}\"}} {value}");
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP ash_engine_active_runs Runs with a worker on this node.\n# TYPE ash_engine_active_runs gauge\nash_engine_active_runs {}",
        app.engine.active_runs()
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
        .into_response()
}

async fn info(State(app): State<App>) -> Response {
    let agent = app.engine.surface(Some(chrono::Utc::now()));
    Json(json!({ "ok": true, "agent": agent })).into_response()
}

async fn message(
    State(app): State<App>,
    caller: Option<Extension<SessionAuthContext>>,
    request: Request,
) -> Result<Response, HttpError> {
    let body = json_body(request, app.config.max_body_bytes, app.config.body_timeout).await?;
    // Only an object is a message: serde would also read a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_none_or(|b| *b != b'{') {
        let is_json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        return Err(HttpError::bad_request(
            if is_json { "invalid_body" } else { "invalid_json" },
            "the body must be a JSON object: {\"message\": \"…\", \"continuationToken\"?: \"…\", \"mode\"?: \"conversation\" | \"task\"}",
        ));
    }
    let parsed: MessageRequest = serde_json::from_slice(&body).map_err(|e| {
        // JSON of the wrong shape is `invalid_body` whatever serde calls the mismatch.
        let shape = e.is_data() || serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        let code = if shape { "invalid_body" } else { "invalid_json" };
        HttpError::bad_request(
            code,
            format!(
                "{}: {e}; send {{\"message\": \"…\", \"continuationToken\"?: \"…\", \"mode\"?: \"conversation\" | \"task\"}}",
                if shape { "the body has the wrong shape" } else { "the body is not valid JSON" }
            ),
        )
    })?;
    let inbound = Inbound {
        message: parsed.message,
        continuation_token: parsed.continuation_token,
        mode: parsed.mode.unwrap_or_default(),
        caller: caller.map(|Extension(c)| c),
    };
    let accepted = app.engine.send(inbound).await?;
    let run_id = HeaderValue::from_str(accepted.run_id.as_str()).map_err(|e| {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })?;
    let body = MessageAccepted {
        ok: true,
        stream_path: format!("{API_PREFIX}/runs/{}/stream", accepted.run_id),
        run_id: accepted.run_id.to_string(),
        session_id: accepted.session_id.to_string(),
        continuation_token: accepted.continuation_token,
        start_index: accepted.start_index,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    response.headers_mut().insert(RUN_ID_HEADER, run_id);
    Ok(response)
}

/// Reads a JSON request body: checks the content type, the size limit (a declared length
/// before reading), and the time it may take.
async fn json_body(
    request: Request,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, HttpError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence != "application/json" {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected `content-type: application/json`, got {}",
                if content_type.is_empty() {
                    "none".to_owned()
                } else {
                    format!("`{content_type}`")
                }
            ),
        ));
    }
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(_)) => Err(HttpError::bad_request(
            "invalid_body",
            "the request body could not be read (malformed chunked encoding or a broken connection)",
        )),
        Err(_) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

/// Whether reading a body failed because it exceeded the limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.to_string().contains("length limit exceeded") {
            return true;
        }
        source = e.source();
    }
    false
}

async fn run_info(
    State(app): State<App>,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let run_id = run_id_of(run_id)?;
    match app.engine.run_info(&RunId::new(run_id.clone())).await? {
        Some(snapshot) => Ok(Json(run_info_body(&snapshot)).into_response()),
        None => Err(HttpError::run_not_found(&run_id)),
    }
}

fn run_info_body(r: &RunSnapshot) -> RunInfo {
    RunInfo {
        ok: true,
        run_id: r.run_id.to_string(),
        session_id: r.session_id.to_string(),
        mode: r.mode,
        status: r.status,
        turns: r.turns,
        event_count: r.event_count,
        usage: r.usage,
        created_at: ash_core::rfc3339(r.created_at_ms),
        updated_at: ash_core::rfc3339(r.updated_at_ms),
    }
}

async fn cancel(
    State(app): State<App>,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let run_id = run_id_of(run_id)?;
    let (status, text) = match app.engine.cancel(&RunId::new(run_id.clone())).await? {
        Some(CancelOutcome::Cancelling) => (StatusCode::ACCEPTED, "cancelling"),
        Some(CancelOutcome::NoActiveTurn) => (StatusCode::OK, "no_active_turn"),
        None => return Err(HttpError::run_not_found(&run_id)),
    };
    Ok((status, Json(CancelAccepted { ok: true, status: text.to_owned() })).into_response())
}

/// `POST /runs/:runId/input`: the answer to the approval a paused run waits for.
async fn input(
    State(app): State<App>,
    run_id: Result<Path<String>, PathRejection>,
    caller: Option<Extension<SessionAuthContext>>,
    request: Request,
) -> Result<Response, HttpError> {
    let run_id = run_id_of(run_id)?;
    let body = json_body(request, app.config.max_body_bytes, app.config.body_timeout).await?;
    let expected =
        "send {\"requestId\": \"…\", \"decision\": \"approve\" | \"deny\", \"message\"?: \"…\"}";
    let parsed: InputAnswer = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request("invalid_body", format!("{e}; {expected}")))?;
    let approve = match parsed.decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(HttpError::bad_request(
                "invalid_body",
                format!("`decision` is `{other}`; {expected}"),
            ));
        }
    };
    let answer = Answer {
        request_id: parsed.request_id,
        approve,
        message: parsed.message,
        caller: caller.map(|Extension(c)| c),
    };
    let start_index = app.engine.answer(&RunId::new(run_id.clone()), answer).await?;
    Ok(Json(RunContinues { ok: true, run_id, start_index }).into_response())
}

/// `POST /runs/:runId/resume`: continues a run paused on a budget that now allows it.
async fn resume(
    State(app): State<App>,
    run_id: Result<Path<String>, PathRejection>,
    caller: Option<Extension<SessionAuthContext>>,
) -> Result<Response, HttpError> {
    let run_id = run_id_of(run_id)?;
    let caller = caller.map(|Extension(c)| c);
    let start_index = app.engine.resume(&RunId::new(run_id.clone()), caller.as_ref()).await?;
    Ok(Json(RunContinues { ok: true, run_id, start_index }).into_response())
}

/// `startIndex` from the query: absent is 0; anything but a non-negative integer is refused.
fn start_index(query: Option<&str>) -> Result<u64, HttpError> {
    let Some(query) = query else { return Ok(0) };
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "startIndex" {
            found = Some(value);
        }
    }
    let Some(value) = found else { return Ok(0) };
    value.parse::<u64>().map_err(|_| {
        let shown: String = value.chars().take(40).collect();
        HttpError::bad_request(
            "invalid_start_index",
            format!("`startIndex` must be a non-negative integer, got `{shown}`"),
        )
    })
}

async fn stream(
    State(app): State<App>,
    run_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, HttpError> {
    let run_id = run_id_of(run_id)?;
    let start = start_index(request.uri().query())?;
    let id = RunId::new(run_id.clone());
    let Some(info) = app.engine.run_info(&id).await? else {
        return Err(HttpError::run_not_found(&run_id));
    };
    if start > info.event_count {
        return Err(HttpError::bad_request(
            "invalid_start_index",
            format!(
                "`startIndex` {start} is past the end of the run, which has {} events; resume from at most {}",
                info.event_count, info.event_count
            ),
        ));
    }
    let Some(follower) = app.engine.follow(&id, start).await? else {
        return Err(HttpError::run_not_found(&run_id));
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson; charset=utf-8"),
    );
    headers.insert(STREAM_FORMAT_HEADER, HeaderValue::from_static("ndjson"));
    headers.insert(STREAM_VERSION_HEADER, HeaderValue::from(STREAM_VERSION));
    if let Ok(id) = HeaderValue::from_str(&run_id) {
        headers.insert(RUN_ID_HEADER, id.clone());
        headers.insert(SESSION_ID_HEADER, id);
    }
    let Ok(permit) = Arc::clone(&app.streams).try_acquire_owned() else {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "the server has {} event streams open, as many as it allows; retry shortly",
                app.config.max_streams
            ),
        ));
    };
    let body: Body = crate::stream::body(follower, app.config.heartbeat, permit);
    Ok((headers, body).into_response())
}
