//! [`Client`]: one MCP session with a server an agent connects to, over a process's pipes or
//! streamable HTTP — initialize with a deadline, list tools in bounded pages, call a tool with a
//! timeout, cancellation and progress, and notice a server that went away.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientCapabilities,
    ClientConfig, ClientRequest, Implementation, PaginatedRequestParams, PingRequest,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::content::{ToolOutput, convert};
use crate::error::{CallError, McpError};

/// Longest line a server may write on stdio; a longer message is dropped (the call it
/// answered then ends at its timeout).
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// Largest input schema of a tool kept; a larger one makes the tool unusable.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// Pages of `tools/list` read at most.
const MAX_PAGES: usize = 20;
/// Tools a server may offer at most.
pub const MAX_TOOLS: usize = 1000;
/// Progress notifications kept for calls not yet registered (see [`Dispatch`]).
const ORPHANS: usize = 64;

/// A tool as its server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteTool {
    /// Its name on the server.
    pub name: String,
    /// Its title, if any.
    pub title: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of its input.
    pub input_schema: Value,
    /// JSON Schema of its structured output, if declared.
    pub output_schema: Option<Value>,
    /// The server says calling it twice does no more than calling it once (or it only reads).
    pub idempotent: bool,
    /// Why the tool cannot be offered as the server describes it (a schema that is not an
    /// object, or too large).
    pub problem: Option<String>,
}

/// One progress notification of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// How far (increasing).
    pub progress: f64,
    /// Out of how much, when known.
    pub total: Option<f64>,
    /// What the server says it is doing.
    pub message: Option<String>,
}

/// Who the server said it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The protocol version agreed.
    pub protocol_version: String,
    /// Its instructions for the model, if it gave any.
    pub instructions: Option<String>,
}

/// Routes progress notifications to the calls waiting for them. A notification can arrive
/// before its call is registered (the token is known only once the request is queued), so
/// unknown ones wait in a small ring and are handed over on registration.
#[derive(Default)]
struct Dispatch {
    calls: HashMap<ProgressToken, mpsc::Sender<Progress>>,
    orphans: VecDeque<(ProgressToken, Progress)>,
}

#[derive(Clone)]
struct Handler {
    dispatch: Arc<Mutex<Dispatch>>,
    tools_changed: Arc<Notify>,
    client: Implementation,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), self.client.clone())
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        // Messages are cut by the caller, after it took its secrets out.
        let progress =
            Progress { progress: params.progress, total: params.total, message: params.message };
        let mut dispatch = self.dispatch.lock().unwrap_or_else(PoisonError::into_inner);
        match dispatch.calls.get(&params.progress_token) {
            // A call that does not keep up loses notifications, never blocks the session.
            Some(sender) => {
                let _ = sender.try_send(progress);
            }
            None => {
                if dispatch.orphans.len() == ORPHANS {
                    dispatch.orphans.pop_front();
                }
                dispatch.orphans.push_back((params.progress_token, progress));
            }
        }
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }
}

impl Dispatch {
    fn register(&mut self, token: ProgressToken, sender: mpsc::Sender<Progress>) {
        let mut kept = VecDeque::new();
        for (t, p) in self.orphans.drain(..) {
            if t == token {
                let _ = sender.try_send(p);
            } else {
                kept.push_back((t, p));
            }
        }
        self.orphans = kept;
        self.calls.insert(token, sender);
    }
}

/// A call's progress registration, removed when the call ends or is dropped.
struct Registered<'a> {
    dispatch: &'a Mutex<Dispatch>,
    token: ProgressToken,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.dispatch.lock().unwrap_or_else(PoisonError::into_inner).calls.remove(&self.token);
    }
}

/// One MCP session. Dropping it closes the session (a stdio server then sees its stdin end).
pub struct Client {
    service: RunningService<RoleClient, Handler>,
    info: ServerInfo,
    closed: CancellationToken,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("server", &self.info.name).finish_non_exhaustive()
    }
}

/// How ash introduces itself to servers.
fn implementation(client_name: &str, version: &str) -> Implementation {
    Implementation::new(client_name.to_owned(), version.to_owned())
}

impl Client {
    /// Starts a session with a server on `read`/`write` (a process's stdout and stdin) and
    /// initializes it within `deadline`.
    pub async fn stdio<R, W>(
        read: R,
        write: W,
        client_version: &str,
        deadline: Duration,
    ) -> Result<Self, McpError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let transport =
            AsyncRwTransport::new_client(read, write).with_max_line_length(MAX_LINE_BYTES);
        Self::start(transport, client_version, deadline).await
    }

    /// Starts a session with the server at `url`, sending `headers` (credentials marked
    /// sensitive) with every request, and initializes it within `deadline`.
    pub async fn http(
        url: &str,
        headers: reqwest::header::HeaderMap,
        client_version: &str,
        deadline: Duration,
    ) -> Result<Self, McpError> {
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(deadline)
            // A redirect could carry the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| McpError::Setup(e.to_string()))?;
        let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned())
            .reinit_on_expired_session(false);
        let transport = StreamableHttpClientTransport::with_client(http, config);
        Self::start(transport, client_version, deadline).await
    }

    async fn start<T, E, A>(
        transport: T,
        client_version: &str,
        deadline: Duration,
    ) -> Result<Self, McpError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let handler = Handler {
            dispatch: Arc::default(),
            tools_changed: Arc::new(Notify::new()),
            client: implementation("ash", client_version),
        };
        let service = match tokio::time::timeout(deadline, handler.serve(transport)).await {
            Err(_) => return Err(McpError::InitTimeout(deadline)),
            Ok(Err(e)) => return Err(McpError::from_init(&e)),
            Ok(Ok(service)) => service,
        };
        let peer = service.peer().clone();
        let info = peer.peer_info().map(|info| ServerInfo {
            name: info.server_info.as_ref().map(|i| cut(&i.name, 200)).unwrap_or_default(),
            version: info.server_info.as_ref().map(|i| cut(&i.version, 100)).unwrap_or_default(),
            protocol_version: info.protocol_version.to_string(),
            instructions: info.instructions.as_ref().map(|i| cut(i, 64 * 1024)),
        });
        let Some(info) = info else {
            return Err(McpError::Protocol("the server did not answer initialize".into()));
        };
        let closed = CancellationToken::new();
        Ok(Self { service, info, closed })
    }

    /// Who the server is.
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// Resolves when the server announces that its tool list changed.
    pub async fn tools_changed(&self) {
        self.service.service().tools_changed.notified().await;
    }

    /// Whether the session is over (the server's process ended or the session was closed).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled() || self.service.peer().is_transport_closed()
    }

    /// Asks whether the server is still there, within `deadline`.
    pub async fn ping(&self, deadline: Duration) -> Result<(), McpError> {
        let request = ClientRequest::PingRequest(PingRequest::default());
        let options = PeerRequestOptions::with_timeout(deadline);
        let handle = self
            .service
            .peer()
            .send_request_with_option(request, options)
            .await
            .map_err(|e| self.session_error(&e))?;
        handle.await_response().await.map(drop).map_err(|e| self.session_error(&e))
    }

    /// The server's tools: at most [`MAX_TOOLS`] over at most 20 pages, each page within
    /// `deadline`.
    pub async fn list_tools(&self, deadline: Duration) -> Result<Vec<RemoteTool>, McpError> {
        let peer = self.service.peer();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0.. {
            if page == MAX_PAGES {
                return Err(McpError::Protocol(format!(
                    "the tool list goes on past {MAX_PAGES} pages"
                )));
            }
            let params = PaginatedRequestParams::default().with_cursor(cursor.take());
            let listed = match tokio::time::timeout(deadline, peer.list_tools(Some(params))).await {
                Err(_) => return Err(McpError::Timeout(deadline)),
                Ok(listed) => listed.map_err(|e| self.session_error(&e))?,
            };
            for tool in listed.tools {
                if out.len() == MAX_TOOLS {
                    return Err(McpError::Protocol(format!(
                        "the server offers more than {MAX_TOOLS} tools"
                    )));
                }
                let annotations = tool.annotations.as_ref();
                let input_schema = Value::Object((*tool.input_schema).clone());
                out.push(RemoteTool {
                    name: cut(&tool.name, 200),
                    title: tool.title.as_ref().map(|t| cut(t, 200)),
                    description: tool.description.as_ref().map(|d| cut(d, 16 * 1024)),
                    problem: schema_problem(&input_schema),
                    input_schema,
                    output_schema: tool
                        .output_schema
                        .as_ref()
                        .map(|s| Value::Object((**s).clone())),
                    idempotent: annotations.is_some_and(|a| {
                        a.idempotent_hint == Some(true) || a.read_only_hint == Some(true)
                    }),
                });
            }
            match listed.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Calls `name` with `arguments`: answered within `deadline`, abandoned (the server is
    /// told) on `cancel`, its progress notifications sent to `progress`.
    pub async fn call(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        deadline: Duration,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
    ) -> Result<ToolOutput, CallError> {
        let peer = self.service.peer();
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(
            CallToolRequestParams::new(name.to_owned()).with_arguments(arguments),
        ));
        let options = PeerRequestOptions::with_timeout(deadline);
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| CallError::NotSent(self.session_error(&e)))?;
        let id = handle.id.clone();
        let token = handle.progress_token.clone();
        let dispatch = &self.service.service().dispatch;
        dispatch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(token.clone(), progress.clone());
        // Unregistered however this future ends, dropped included.
        let _registered = Registered { dispatch, token };
        let answer = tokio::select! {
            answer = handle.await_response() => Some(answer),
            () = cancel.cancelled() => None,
        };
        let Some(answer) = answer else {
            let notice =
                CancelledNotificationParam::new(Some(id), Some("cancelled by the user".into()));
            let _ = peer.notify_cancelled(notice).await;
            return Err(CallError::Cancelled);
        };
        match answer {
            Ok(ServerResult::CallToolResult(result)) => Ok(convert(result)),
            Ok(other) => Err(CallError::Failed(McpError::Protocol(format!(
                "the server answered a tool call with {}",
                result_kind(&other)
            )))),
            Err(ServiceError::Timeout { timeout }) => Err(CallError::Timeout(timeout)),
            Err(ServiceError::McpError(e)) => {
                Err(CallError::Rejected { code: e.code.0, message: cut(&e.message, 2000) })
            }
            Err(e) => Err(CallError::Failed(self.session_error(&e))),
        }
    }

    /// A session-level failure; a closed transport marks the session over.
    fn session_error(&self, error: &ServiceError) -> McpError {
        let error = McpError::from_service(error);
        if matches!(error, McpError::Closed) || self.service.peer().is_transport_closed() {
            self.closed.cancel();
        }
        error
    }

    /// Ends the session.
    pub async fn close(mut self) {
        self.closed.cancel();
        let _ = self.service.close_with_timeout(Duration::from_secs(2)).await;
    }
}

/// What makes a tool's input schema unusable for a model: not an object schema, or too large.
fn schema_problem(schema: &Value) -> Option<String> {
    if let Some(ty) = schema.get("type")
        && ty != "object"
    {
        return Some(format!("its input schema is of type {ty}, not an object"));
    }
    let size = schema.to_string().len();
    (size > MAX_SCHEMA_BYTES)
        .then(|| format!("its input schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES}"))
}

fn result_kind(result: &ServerResult) -> &'static str {
    match result {
        ServerResult::EmptyResult(_) => "an empty result",
        _ => "something other than a tool result",
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
