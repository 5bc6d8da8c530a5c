//! The model gateway: a local HTTP endpoint an agent uses as its provider's base URL, so that
//! the agent's model calls go where ash sends them, with a credential the agent never holds.
//!
//! Owns the endpoint (HTTP/1 on a Unix socket a sandbox reaches through
//! `ash_sandbox::Service`, and on loopback TCP for an agent in ash's own process), the check of
//! the placeholder key the agent presents, the routes it answers (`/v1/messages` as Anthropic,
//! `/v1/responses` and `/v1/chat/completions` as OpenAI; `HEAD /` and `GET /` as a
//! preflight), the headers that go on (an allow list), the one model a run may name, budgets
//! of calls and tokens, and what each call used ([`UsageMeter`]). Where a call goes is an
//! [`Upstream`]: [`DirectUpstream`] adds the real key and calls the provider; another upstream
//! may carry the call elsewhere (a job's requester). Answers stream back as they come.
//!
//! Never logs a body or a key; the key lives only in the upstream's header.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use ash_spec::ProviderApi;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use reqwest::Url;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiKey, ProviderConfig};
use crate::error::LlmError;

/// Largest request body the gateway takes (a long conversation with its tools).
pub const MAX_CALL_BYTES: usize = 32 << 20;
/// Model calls passed on at once; more wait.
const CALLS_IN_FLIGHT: usize = 4;
/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 64;
/// Time for a request's head to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next piece of an answer from the upstream.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Request headers passed on to the upstream; every other header stays behind.
const FORWARDED_HEADERS: &[&str] =
    &["content-type", "accept", "anthropic-version", "anthropic-beta", "openai-beta"];
/// Longest line of an answer the usage meter reads (longer lines are skipped).
const MAX_METERED_LINE: usize = 1 << 20;

/// Tool types a provider runs itself (searching, fetching, running code, reaching MCP
/// servers): they cost outside the tokens a budget counts and reach the world from a
/// sandbox without network, so they are taken out of every call.
const SERVER_TOOLS: &[&str] = &[
    "web_search",
    "web_fetch",
    "code_execution",
    "code_interpreter",
    "image_generation",
    "file_search",
    "mcp",
];

/// Whether a request header goes on to the provider.
pub fn forwarded(name: &str) -> bool {
    FORWARDED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A call's body as the gateway passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened {
    /// The model it names.
    pub model: String,
    /// The body to send: the call's own, or with the provider-run tools taken out.
    pub body: Bytes,
}

/// Top-level fields taken out of every call: they change the price per token (priority
/// tiers, fast modes) without the token count showing it.
const PRICED_FIELDS: &[&str] = &["service_tier", "speed"];

/// A JSON object's members in order, as raw text; refuses a member named twice (a provider
/// reading the first and this reading the last would disagree on what was asked).
struct Members<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut members: Vec<(String, &'a serde_json::value::RawValue)> = Vec::new();
                while let Some((key, value)) =
                    map.next_entry::<String, &'a serde_json::value::RawValue>()?
                {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("`{key}` is named twice")));
                    }
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Reads what a call of `api` asks without building its body as a tree (a body of many tiny
/// values would take many times its size): the model, and whether it asks what a run may not.
/// Taken out: provider-run tools (and any tool whose head does not read), MCP servers at the
/// provider, price tiers. Refused: a field named twice, background answers, several answers
/// at once. A streamed Chat Completions call is made to report its usage.
pub fn screen(api: Api, body: &Bytes) -> Result<Screened, String> {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct ToolHead {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    let Members(top) = serde_json::from_slice(body).map_err(|e| {
        let e = e.to_string();
        if e.contains("named twice") {
            format!("the body names a field twice ({})", e.split(" at line").next().unwrap_or(&e))
        } else {
            "the body must be a JSON object".to_owned()
        }
    })?;
    let get = |name: &str| top.iter().find(|(k, _)| k == name).map(|(_, v)| v.get());
    let model = get("model")
        .and_then(|raw| serde_json::from_str::<String>(raw).ok())
        .ok_or("the body must be JSON naming a `model`")?;
    if get("background").is_some_and(|raw| !matches!(raw, "false" | "null")) {
        return Err("background answers are not allowed here".into());
    }
    if get("n").is_some_and(|raw| raw != "1") {
        return Err("one answer per call (`n` must be 1)".into());
    }
    let mut changed = false;
    let mut kept_tools = None;
    if let Some(raw) = get("tools") {
        let tools: Vec<&RawValue> =
            serde_json::from_str(raw).map_err(|_| "`tools` must be a list".to_owned())?;
        let kept: Vec<&RawValue> = tools
            .iter()
            .copied()
            .filter(|tool| match serde_json::from_str::<ToolHead>(tool.get()) {
                Ok(head) => !head.kind.is_some_and(|k| {
                    let k = k.to_ascii_lowercase();
                    SERVER_TOOLS.iter().any(|s| k.starts_with(s))
                }),
                Err(_) => false,
            })
            .collect();
        changed |= kept.len() != tools.len();
        kept_tools = Some(kept);
    }
    let dropped = |key: &str| key == "mcp_servers" || PRICED_FIELDS.contains(&key);
    changed |= top.iter().any(|(k, _)| dropped(k));
    let streamed = get("stream") == Some("true");
    let usage_asked = get("stream_options").is_some_and(|raw| {
        serde_json::from_str::<serde_json::Value>(raw)
            .is_ok_and(|v| v["include_usage"] == serde_json::Value::Bool(true))
    });
    let ask_usage = api == Api::ChatCompletions && streamed && !usage_asked;
    changed |= ask_usage;
    if !changed {
        return Ok(Screened { model, body: body.clone() });
    }
    let mut out = String::with_capacity(body.len() + 40);
    out.push('{');
    let mut first = true;
    let mut member = |out: &mut String, key: &str, value: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        out.push(':');
        out.push_str(value);
    };
    for (key, raw) in &top {
        if dropped(key) || (ask_usage && key == "stream_options") {
            continue;
        }
        match (key.as_str(), &kept_tools) {
            ("tools", Some(kept)) => {
                let list: Vec<&str> = kept.iter().map(|t| t.get()).collect();
                member(&mut out, key, &format!("[{}]", list.join(",")));
            }
            _ => member(&mut out, key, raw.get()),
        }
    }
    if ask_usage {
        member(&mut out, "stream_options", r#"{"include_usage":true}"#);
    }
    out.push('}');
    Ok(Screened { model, body: Bytes::from(out) })
}

/// The API a call speaks, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Anthropic Messages: `/v1/messages`.
    Messages,
    /// OpenAI Responses: `/v1/responses`.
    Responses,
    /// OpenAI Chat Completions: `/v1/chat/completions`.
    ChatCompletions,
}

impl Api {
    /// The API of a request path (`/v1/...`).
    pub fn from_path(path: &str) -> Option<Self> {
        match path.trim_end_matches('/') {
            "/v1/messages" => Some(Self::Messages),
            "/v1/responses" => Some(Self::Responses),
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            _ => None,
        }
    }

    /// Its name in job messages: `messages`, `responses`, `chat_completions`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Responses => "responses",
            Self::ChatCompletions => "chat_completions",
        }
    }

    /// The API named `name` (see [`Api::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Messages, Self::Responses, Self::ChatCompletions]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// The path below a provider's base URL (which ends in `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Responses => "responses",
            Self::ChatCompletions => "chat/completions",
        }
    }

    /// The provider family that speaks it.
    pub fn family(self) -> ProviderApi {
        match self {
            Self::Messages => ProviderApi::Anthropic,
            Self::Responses | Self::ChatCompletions => ProviderApi::OpenAi,
        }
    }

    /// An error body in this API's shape.
    pub fn error_body(self, kind: &str, message: &str) -> Bytes {
        let body = match self {
            Self::Messages => json!({"type": "error", "error": {"type": kind, "message": message}}),
            Self::Responses | Self::ChatCompletions => {
                json!({"error": {"type": kind, "message": message, "code": kind}})
            }
        };
        Bytes::from(body.to_string())
    }
}

/// One model call, as the gateway passes it on.
#[derive(Debug, Clone)]
pub struct ModelCall {
    /// The API.
    pub api: Api,
    /// The query string, without `?` (Claude Code sends `beta=true`).
    pub query: String,
    /// The allowed headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The model the body names.
    pub model: String,
    /// The body as sent.
    pub body: Bytes,
}

/// An upstream's answer.
pub struct ModelAnswer {
    /// HTTP status.
    pub status: u16,
    /// Its content type (`text/event-stream` for a streamed answer).
    pub content_type: String,
    /// The body.
    pub body: AnswerBody,
}

/// An answer's body: whole, or still arriving.
pub enum AnswerBody {
    /// All of it.
    Whole(Bytes),
    /// Pieces as they come; an `Err` ends the answer early.
    Streaming(mpsc::Receiver<Result<Bytes, String>>),
}

/// Where a gateway sends calls.
pub trait Upstream: Send + Sync + 'static {
    /// Sends `call`; the answer, or why there is none (for the agent: no key, no path of this
    /// machine).
    fn call(
        &self,
        call: ModelCall,
    ) -> Pin<Box<dyn Future<Output = Result<ModelAnswer, String>> + Send + '_>>;
}

/// A provider called directly, with its key added on the way out.
pub struct DirectUpstream {
    http: reqwest::Client,
    provider: String,
    api: ProviderApi,
    base: Url,
    key: Option<ApiKey>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for DirectUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectUpstream").field("provider", &self.provider).finish_non_exhaustive()
    }
}

impl DirectUpstream {
    /// `provider`'s endpoint and key. Its answers stop streaming once `cancel` fires.
    pub fn new(
        provider: &ProviderConfig,
        connect_timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<Self, LlmError> {
        let invalid = |reason: &str| LlmError::InvalidBaseUrl {
            provider: provider.name.clone(),
            url: provider.display_base_url().unwrap_or_default(),
            reason: reason.to_owned(),
        };
        let base = provider.base_url.as_deref().ok_or_else(|| invalid("none is set"))?;
        let mut base = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("it must be http or https"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if provider.key_required && provider.api_key.is_none() {
            return Err(LlmError::MissingKey {
                provider: provider.name.clone(),
                env: provider.api_key_env.clone().unwrap_or_else(|| "its key".to_owned()),
            });
        }
        let http =
            // No redirects: one to another host would carry the key there.
            reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|err| {
                LlmError::Request {
                    provider: provider.name.clone(),
                    reason: format!("cannot start the HTTP client: {err}"),
                }
            })?;
        Ok(Self {
            http,
            provider: provider.name.clone(),
            api: provider.api,
            base,
            key: provider.api_key.clone(),
            cancel,
        })
    }

    async fn send(&self, call: ModelCall) -> Result<ModelAnswer, String> {
        if call.api.family() != self.api {
            return Ok(refusal(
                call.api,
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!(
                    "this gateway's provider ({}) does not speak {:?}",
                    self.provider, call.api
                ),
            ));
        }
        let mut url = self.base.join(call.api.path()).map_err(|e| e.to_string())?;
        url.set_query((!call.query.is_empty()).then_some(call.query.as_str()));
        let mut request = self.http.post(url);
        for (name, value) in call.headers.iter().filter(|(name, _)| forwarded(name)) {
            request = request.header(name, value);
        }
        if let Some(key) = &self.key {
            request = match self.api {
                ProviderApi::Anthropic => request.header("x-api-key", key.expose()),
                ProviderApi::OpenAi => request.bearer_auth(key.expose()),
            };
        }
        let mut response = request.body(call.body).send().await.map_err(|e| {
            // reqwest's text names the URL, which never holds the key (headers do).
            format!("{}: {}", self.provider, e.without_url())
        })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let (tx, rx) = mpsc::channel(16);
        let cancel = self.cancel.clone();
        let provider = self.provider.clone();
        // Ends with the answer, when the reader goes away, or when the gateway stops.
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => break,
                    next = tokio::time::timeout(IDLE_TIMEOUT, response.chunk()) => next,
                };
                let item = match next {
                    Ok(Ok(Some(bytes))) => Ok(bytes),
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => Err(format!("{provider}: {}", e.without_url())),
                    Err(_) => Err(format!("{provider}: no data for {}s", IDLE_TIMEOUT.as_secs())),
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
        Ok(ModelAnswer { status, content_type, body: AnswerBody::Streaming(rx) })
    }
}

impl Upstream for DirectUpstream {
    fn call(
        &self,
        call: ModelCall,
    ) -> Pin<Box<dyn Future<Output = Result<ModelAnswer, String>> + Send + '_>> {
        Box::pin(self.send(call))
    }
}

/// How a gateway checks and bounds its calls.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The placeholder key the agent presents (`x-api-key` or `Authorization: Bearer`); other
    /// callers are refused.
    pub token: String,
    /// The only model calls may name; `None`: any.
    pub model: Option<String>,
    /// Most calls; further calls are refused.
    pub max_calls: Option<u64>,
    /// Most tokens (input and output, as the answers report them); once spent, further calls
    /// are refused.
    pub max_tokens: Option<u64>,
}

/// What the calls through a gateway used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayUsage {
    /// Calls passed on.
    pub calls: u64,
    /// Calls refused (wrong key, model, route, budget or body).
    pub refused: u64,
    /// The models calls named.
    pub models: BTreeSet<String>,
    /// Input tokens the answers reported (cache reads and writes included).
    pub input_tokens: u64,
    /// Output tokens the answers reported.
    pub output_tokens: u64,
}

struct Shared {
    upstream: Arc<dyn Upstream>,
    config: GatewayConfig,
    /// Calls passed on at once: a budget is checked before a call and counted after, so
    /// this bounds how far the calls in flight can pass it.
    in_flight: Arc<Semaphore>,
    usage: Mutex<GatewayUsage>,
    cancel: CancellationToken,
}

impl Shared {
    fn usage(&self) -> std::sync::MutexGuard<'_, GatewayUsage> {
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running gateway; [`Gateway::stop`] ends it.
pub struct Gateway {
    shared: Arc<Shared>,
    tcp: Option<SocketAddr>,
    socket: Option<PathBuf>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Serves on the Unix socket `unix` (created; it must not exist) and, when `tcp`, on
    /// `127.0.0.1` at a free port. Must be called within a Tokio runtime.
    pub async fn start(
        upstream: Arc<dyn Upstream>,
        config: GatewayConfig,
        unix: Option<&Path>,
        tcp: bool,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            upstream,
            config,
            in_flight: Arc::new(Semaphore::new(CALLS_IN_FLIGHT)),
            usage: Mutex::new(GatewayUsage::default()),
            cancel: CancellationToken::new(),
        });
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        let mut tcp_addr = None;
        if let Some(path) = unix {
            let listener = tokio::net::UnixListener::bind(path)?;
            tasks.spawn(serve(listener, Arc::clone(&shared), Arc::clone(&limit)));
        }
        if tcp {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            tcp_addr = Some(listener.local_addr()?);
            tasks.spawn(serve(listener, Arc::clone(&shared), Arc::clone(&limit)));
        }
        Ok(Self { shared, tcp: tcp_addr, socket: unix.map(Path::to_path_buf), tasks })
    }

    /// The loopback base URL (`http://127.0.0.1:PORT/v1`), when serving on TCP.
    pub fn base_url(&self) -> Option<String> {
        self.tcp.map(|addr| format!("http://{addr}/v1"))
    }

    /// What the calls so far used.
    pub fn usage(&self) -> GatewayUsage {
        self.shared.usage().clone()
    }

    /// Stops serving (open answers end), removes the socket, and returns what the calls used.
    pub async fn stop(mut self) -> GatewayUsage {
        self.shared.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
        self.usage()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// A listener the gateway serves: a Unix socket or loopback TCP.
trait Listener: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn next_stream(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn next_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn next_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Accepts connections on `listener` until the gateway stops; each is served by a task of
/// its own, at most as many at once as `limit` allows.
async fn serve<L: Listener>(listener: L, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shared.cancel.cancelled() => break,
            accepted = listener.next_stream() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        if let Ok(stream) = accepted {
            serve_connection(&mut connections, stream, &shared, &limit).await;
        }
    }
}

async fn serve_connection<S>(
    connections: &mut JoinSet<()>,
    stream: S,
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = Arc::clone(limit).acquire_owned().await else { return };
    let shared = Arc::clone(shared);
    connections.spawn(async move {
        let _permit = permit;
        let cancel = shared.cancel.clone();
        let service = hyper::service::service_fn(move |request| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(handle(&shared, request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            () = cancel.cancelled() => {}
            _ = connection => {}
        }
    });
}

type GatewayBody = ChannelBody;
/// What happens with a meter's reading when its answer ends.
type MeterEnd = Box<dyn FnOnce(&UsageMeter) + Send>;

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<GatewayBody> {
    let path = request.uri().path().to_owned();
    if path == "/" && matches!(*request.method(), Method::HEAD | Method::GET) {
        return respond(StatusCode::OK, "text/plain", AnswerBody::Whole(Bytes::new()), None);
    }
    let Some(api) = Api::from_path(&path) else {
        shared.usage().refused += 1;
        return plain_error(
            StatusCode::NOT_FOUND,
            &format!("no route {path} on ash's model gateway"),
        );
    };
    if request.method() != Method::POST {
        shared.usage().refused += 1;
        return error(api, StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "use POST");
    }
    if !presents(&request, &shared.config.token) {
        shared.usage().refused += 1;
        return error(
            api,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "this gateway takes only the key it gave its agent",
        );
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| forwarded(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let body = match Limited::new(request.into_body(), MAX_CALL_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            shared.usage().refused += 1;
            return error(
                api,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                &format!("a call may carry at most {} MiB", MAX_CALL_BYTES >> 20),
            );
        }
    };
    let Screened { model, body } = match screen(api, &body) {
        Ok(screened) => screened,
        Err(reason) => {
            shared.usage().refused += 1;
            return error(api, StatusCode::BAD_REQUEST, "invalid_request_error", &reason);
        }
    };
    // Held until the answer has been read to its end (and counted).
    let Ok(permit) = Arc::clone(&shared.in_flight).acquire_owned().await else {
        return error(api, StatusCode::SERVICE_UNAVAILABLE, "api_error", "the gateway stopped");
    };
    if let Some(refusal) = check_budget(shared, api, &model) {
        return refusal;
    }
    let sent = body.len() as u64;
    let call = ModelCall { api, query, headers, model, body };
    match shared.upstream.call(call).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let metered = meter(shared, sent, status.is_success(), permit);
            respond(status, &answer.content_type, answer.body, Some(metered))
        }
        Err(reason) => error(api, StatusCode::BAD_GATEWAY, "api_error", &reason),
    }
}

/// Counts the call, or refuses it when the model or the budget says so.
fn check_budget(shared: &Shared, api: Api, model: &str) -> Option<Response<GatewayBody>> {
    let config = &shared.config;
    let mut usage = shared.usage();
    let refusal = if config.model.as_deref().is_some_and(|allowed| allowed != model) {
        Some((
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "this run may call only the model `{}`, not `{model}`",
                config.model.as_deref().unwrap_or_default()
            ),
        ))
    } else if config.max_calls.is_some_and(|max| usage.calls >= max) {
        Some((
            StatusCode::TOO_MANY_REQUESTS,
            "budget_exceeded",
            format!("this run's budget of {} model calls is spent", usage.calls),
        ))
    } else if config
        .max_tokens
        .is_some_and(|max| usage.input_tokens.saturating_add(usage.output_tokens) >= max)
    {
        Some((
            StatusCode::TOO_MANY_REQUESTS,
            "budget_exceeded",
            format!(
                "this run's budget of {} tokens is spent",
                config.max_tokens.unwrap_or_default()
            ),
        ))
    } else {
        None
    };
    if let Some((status, kind, message)) = refusal {
        usage.refused += 1;
        return Some(error(api, status, kind, &message));
    }
    usage.calls += 1;
    usage.models.insert(model.to_owned());
    None
}

/// A meter's end: its totals land in this gateway's usage when the answer ends.
/// An answer that failed is charged what it reports, no estimate.
fn meter(
    shared: &Arc<Shared>,
    sent: u64,
    answered: bool,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> MeterEnd {
    let shared = Arc::clone(shared);
    Box::new(move |meter| {
        let _permit = permit;
        let (input, output) = if answered { meter.charged(sent) } else { meter.tokens() };
        let mut usage = shared.usage();
        usage.input_tokens = usage.input_tokens.saturating_add(input);
        usage.output_tokens = usage.output_tokens.saturating_add(output);
    })
}

/// Whether the request presents `token` as its key.
fn presents(request: &Request<Incoming>, token: &str) -> bool {
    let headers = request.headers();
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok()).or_else(|| {
        headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(api: Api, status: StatusCode, kind: &str, message: &str) -> Response<GatewayBody> {
    respond(status, "application/json", AnswerBody::Whole(api.error_body(kind, message)), None)
}

fn plain_error(status: StatusCode, message: &str) -> Response<GatewayBody> {
    let body = Bytes::from(json!({"error": {"type": "not_found", "message": message}}).to_string());
    respond(status, "application/json", AnswerBody::Whole(body), None)
}

/// A refusal from an upstream, in `api`'s error shape.
pub fn refusal(api: Api, status: StatusCode, kind: &str, message: &str) -> ModelAnswer {
    ModelAnswer {
        status: status.as_u16(),
        content_type: "application/json".to_owned(),
        body: AnswerBody::Whole(api.error_body(kind, message)),
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: AnswerBody,
    meter: Option<MeterEnd>,
) -> Response<GatewayBody> {
    let mut response = Response::new(ChannelBody::new(body, meter));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// An answer's body as hyper sends it, metered as it goes.
pub struct ChannelBody {
    body: Option<AnswerBody>,
    meter: UsageMeter,
    done: Option<MeterEnd>,
}

impl ChannelBody {
    fn new(body: AnswerBody, done: Option<MeterEnd>) -> Self {
        Self { body: Some(body), meter: UsageMeter::default(), done }
    }

    fn finish(&mut self) {
        self.body = None;
        if let Some(done) = self.done.take() {
            done(&self.meter);
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let next = match &mut this.body {
            None => return Poll::Ready(None),
            Some(AnswerBody::Whole(bytes)) => {
                let bytes = std::mem::take(bytes);
                this.body = None;
                Some(Ok(bytes))
            }
            Some(AnswerBody::Streaming(rx)) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
        };
        match next {
            Some(Ok(bytes)) => {
                this.meter.feed(&bytes);
                if this.body.is_none() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Some(Err(reason)) => {
                this.finish();
                Poll::Ready(Some(Err(std::io::Error::other(reason))))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Reads the token counts a model's answer reports, as its bytes go by: Anthropic's
/// `message_start` and `message_delta`, the Responses API's `response.completed`, a Chat
/// Completions usage chunk, or a whole JSON answer's `usage`.
#[derive(Debug, Default, Clone)]
pub struct UsageMeter {
    bytes: u64,
    complete: bool,
    line: Vec<u8>,
    skipping: bool,
    whole: Vec<u8>,
    input: u64,
    output: u64,
}

impl UsageMeter {
    /// Reads the next bytes of an answer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.bytes = self.bytes.saturating_add(bytes.len() as u64);
        if self.whole.len() < MAX_METERED_LINE {
            let room = MAX_METERED_LINE - self.whole.len();
            self.whole.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        for &byte in bytes {
            if byte == b'\n' {
                if !self.skipping {
                    let line = std::mem::take(&mut self.line);
                    self.read_line(&line);
                }
                self.line.clear();
                self.skipping = false;
            } else if self.line.len() >= MAX_METERED_LINE {
                self.skipping = true;
                self.line.clear();
            } else if !self.skipping {
                self.line.push(byte);
            }
        }
    }

    fn read_line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else { return };
        if let Ok(value) = serde_json::from_slice::<Value>(data.trim_ascii()) {
            self.read(&value);
        }
    }

    fn read(&mut self, value: &Value) {
        // The events after which nothing more is generated: the usage they carry is final.
        let kind = value["type"].as_str().unwrap_or_default();
        if matches!(kind, "message_delta" | "response.completed" | "response.incomplete")
            || value["usage"]["completion_tokens"].is_u64()
        {
            self.complete = true;
        }
        for usage in [&value["usage"], &value["message"]["usage"], &value["response"]["usage"]] {
            if !usage.is_object() {
                continue;
            }
            let n = |key: &str| usage[key].as_u64().unwrap_or(0);
            let input = n("input_tokens")
                .saturating_add(n("prompt_tokens"))
                .saturating_add(n("cache_creation_input_tokens"))
                .saturating_add(n("cache_read_input_tokens"));
            let output = n("output_tokens").saturating_add(n("completion_tokens"));
            // Anthropic reports input at the start and output (cumulative) at the end.
            self.input = self.input.max(input);
            self.output = self.output.max(output);
        }
    }

    /// `(input, output)` tokens of a call whose body was `sent` bytes: as the answer reports
    /// them, or, when it reports none, a byte count's estimate (four bytes a token) so that an
    /// answer that hides its usage still counts against a budget.
    /// An answer cut short (the reader hung up, the stream broke) before its final usage is
    /// charged at least the estimate too: what was generated until then was billed.
    pub fn charged(&self, sent: u64) -> (u64, u64) {
        let (input, output) = self.tokens();
        let whole = self.complete || serde_json::from_slice::<Value>(&self.whole).is_ok();
        match (input, output) {
            (0, 0) => (sent / 4, self.bytes / 4),
            _ if !whole => (input.max(sent / 4), output.max(self.bytes / 4)),
            reported => reported,
        }
    }

    /// `(input, output)` tokens reported so far. A whole JSON answer (not a stream) counts
    /// once it has all arrived.
    pub fn tokens(&self) -> (u64, u64) {
        if self.input == 0
            && self.output == 0
            && let Ok(value) = serde_json::from_slice::<Value>(&self.whole)
        {
            let mut whole = Self::default();
            whole.read(&value);
            return (whole.input, whole.output);
        }
        (self.input, self.output)
    }
}
