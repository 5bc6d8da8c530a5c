//! The routes, their request parsing, and the server loop with graceful shutdown.

use std::future::Future;
use std::time::{Duration, Instant};

use ash_core::Engine;
use ash_protocol::{
    API_PREFIX, Health, MessageRequest, RUN_ID_HEADER, SESSION_ID_HEADER, STREAM_FORMAT_HEADER,
    STREAM_VERSION, STREAM_VERSION_HEADER,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::error::HttpError;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// A heartbeat line goes out after this long without an event.
    pub heartbeat: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, heartbeat: Duration::from_secs(15) }
    }
}

#[derive(Clone)]
struct App {
    engine: Engine,
    config: ServerConfig,
}

/// The API router over `engine`.
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/message", post(message))
        .route("/runs/{run_id}", get(run_info))
        .route("/runs/{run_id}/stream", get(stream))
        .route("/runs/{run_id}/cancel", post(cancel))
        .route("/sessions/{session_id}/stream", get(stream))
        .fallback(not_found)
        .with_state(App { engine, config });
    Router::new()
        .nest(API_PREFIX, api)
        .fallback(not_found)
        .layer(middleware::from_fn(log_and_no_store))
}

/// Serves `engine` on `listener` until `shutdown` resolves; then stops accepting connections,
/// lets workers reach a safe point, ends open streams, and returns.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(engine.clone(), config);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let stop = stop.clone();
        async move { stop.cancelled().await }
    });
    let drain = async {
        shutdown.await;
        stop.cancel();
        engine.shutdown().await;
    };
    let (served, ()) = tokio::join!(server.into_future(), drain);
    served
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

async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!(
            "no such route; the API lives under {API_PREFIX}/ (health, info, message, runs/:runId, runs/:runId/stream, runs/:runId/cancel)"
        ),
    )
}

async fn health() -> Json<Health> {
    Json(Health { ok: true, status: "ready".to_owned() })
}

async fn info(State(app): State<App>) -> Response {
    Json(json!({ "ok": true, "agent": app.engine.spec().surface(Some(chrono::Utc::now())) }))
        .into_response()
}

async fn message(State(app): State<App>, request: Request) -> Result<Response, HttpError> {
    let body = json_body(request, app.config.max_body_bytes).await?;
    let parsed: MessageRequest = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() { "invalid_body" } else { "invalid_json" };
        HttpError::bad_request(
            code,
            format!(
                "{}: {e}; send {{\"message\": \"…\", \"continuationToken\"?: \"…\", \"mode\"?: \"conversation\" | \"task\"}}",
                if e.is_data() { "the body has the wrong shape" } else { "the body is not valid JSON" }
            ),
        )
    })?;
    let accepted = app.engine.send(parsed).await?;
    let run_id = HeaderValue::from_str(&accepted.run_id).map_err(|e| {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })?;
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    response.headers_mut().insert(RUN_ID_HEADER, run_id);
    Ok(response)
}

/// Reads a JSON request body: checks the content type and the size limit.
async fn json_body(request: Request, limit: usize) -> Result<bytes::Bytes, HttpError> {
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
    axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })
}

async fn run_info(
    State(app): State<App>,
    Path(run_id): Path<String>,
) -> Result<Response, HttpError> {
    match app.engine.run_info(&run_id).await? {
        Some(info) => Ok(Json(info).into_response()),
        None => Err(HttpError::run_not_found(&run_id)),
    }
}

async fn cancel(State(app): State<App>, Path(run_id): Path<String>) -> Result<Response, HttpError> {
    match app.engine.cancel(&run_id).await? {
        Some(accepted) => {
            let status =
                if accepted.status == "cancelling" { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok((status, Json(accepted)).into_response())
        }
        None => Err(HttpError::run_not_found(&run_id)),
    }
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
    Path(run_id): Path<String>,
    request: Request,
) -> Result<Response, HttpError> {
    let start = start_index(request.uri().query())?;
    let Some(info) = app.engine.run_info(&run_id).await? else {
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
    let Some(follower) = app.engine.follow(&run_id, start).await? else {
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
    let body: Body = crate::stream::body(follower, app.config.heartbeat);
    Ok((headers, body).into_response())
}
