//! An agent served to MCP clients as one tool: the client sends a message (and, to continue a
//! conversation, the continuation token of the previous answer) and gets the agent's answer,
//! with progress notifications while the run works. Over stdio ([`serve_stdio`]) or as a
//! streamable-HTTP tower service ([`http_service`]) that `ash-server` mounts behind its gate.
//!
//! The run behind an answer is the caller's business ([`Agent`]); this module only speaks MCP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ash_protocol::SessionAuthContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::error::McpError;

/// Who the agent is, as its MCP server and tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// The tool's name (`lower_snake_case`, the agent's name lowered).
    pub tool: String,
    /// The server's name (the agent's name).
    pub name: String,
    /// What the agent does: the tool's description.
    pub description: String,
    /// ash's version.
    pub version: String,
}

/// One message for the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The message.
    pub message: String,
    /// Continue the conversation this token names.
    pub continuation_token: Option<String>,
    /// Who asks (over HTTP, what the gate established; over stdio, `None`).
    pub caller: Option<SessionAuthContext>,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer's text.
    pub text: String,
    /// Continues this conversation with the next message.
    pub continuation_token: Option<String>,
    /// The run that answered (its events stay readable over the HTTP API).
    pub run_id: String,
    /// The session.
    pub session_id: String,
}

/// Tells the MCP client how a run is going.
#[derive(Clone)]
pub struct ProgressSink {
    target: Option<(Peer<RoleServer>, ProgressToken)>,
    count: Arc<AtomicU64>,
}

impl ProgressSink {
    /// A sink that says nothing (the client asked for no progress).
    pub fn none() -> Self {
        Self { target: None, count: Arc::default() }
    }

    /// Sends one progress message; a client that went away is not an error.
    pub async fn send(&self, message: &str) {
        let Some((peer, token)) = &self.target else { return };
        let step = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        #[expect(clippy::cast_precision_loss, reason = "a step count, far below 2^52")]
        let params = ProgressNotificationParam::new(token.clone(), step as f64)
            .with_message(crate::client::cut(message, 1000));
        let _ = peer.notify_progress(params).await;
    }
}

/// A future an [`Agent`] answers with.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Result<Answer, String>> + Send>>;

/// What answers the tool: an engine, in ash.
pub trait Agent: Send + Sync + 'static {
    /// Runs `ask` to its answer, reporting progress to `progress`. `stop` fires when the MCP
    /// client gave up waiting; the run itself may go on (it is durable), only the answer is
    /// no longer awaited. `Err` is a message the client reads as a tool error.
    fn ask(&self, ask: Ask, progress: ProgressSink, stop: CancellationToken) -> AnswerFuture;
}

/// The MCP server of one agent.
#[derive(Clone)]
struct AgentServer {
    info: Arc<AgentInfo>,
    agent: Arc<dyn Agent>,
}

/// The tool's input schema.
fn input_schema() -> Map<String, Value> {
    let Value::Object(schema) = json!({
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 1, "description": "What to ask or tell the agent."},
            "continuationToken": {"type": "string", "description": "Continue the conversation of an earlier answer: its continuationToken."}
        },
        "required": ["message"],
        "additionalProperties": false
    }) else {
        return Map::new();
    };
    schema
}

fn output_schema() -> Map<String, Value> {
    let Value::Object(schema) = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "continuationToken": {"type": ["string", "null"]},
            "runId": {"type": "string"},
            "sessionId": {"type": "string"}
        },
        "required": ["answer", "runId", "sessionId"]
    }) else {
        return Map::new();
    };
    schema
}

impl AgentServer {
    fn tool(&self) -> Tool {
        Tool::new(self.info.tool.clone(), self.info.description.clone(), Arc::new(input_schema()))
            .with_raw_output_schema(Arc::new(output_schema()))
    }

    fn parse(arguments: Option<&Map<String, Value>>) -> Result<(String, Option<String>), String> {
        let arguments = arguments.ok_or("give `message`, the text for the agent")?;
        for key in arguments.keys() {
            if key != "message" && key != "continuationToken" {
                return Err(format!(
                    "unknown argument `{key}`; give `message` and, to continue a conversation, `continuationToken`"
                ));
            }
        }
        let message = match arguments.get("message") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(Value::String(_)) => return Err("`message` is empty".into()),
            Some(_) => return Err("`message` must be a string".into()),
            None => return Err("give `message`, the text for the agent".into()),
        };
        let token = match arguments.get("continuationToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err("`continuationToken` must be a string".into()),
        };
        Ok((message, token))
    }
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.info.name.clone(), self.info.version.clone()))
            .with_instructions(format!(
                "{} Call `{}` with a message; pass the continuationToken of an answer to continue that conversation.",
                self.info.description, self.info.tool
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![self.tool()]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != self.info.tool {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`; this server offers `{}`", request.name, self.info.tool),
                None,
            ));
        }
        let (message, continuation_token) = match Self::parse(request.arguments.as_ref()) {
            Ok(parsed) => parsed,
            Err(why) => return Err(ErrorData::invalid_params(why, None)),
        };
        let caller = cx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<SessionAuthContext>())
            .cloned();
        let progress = match cx.meta.get_progress_token() {
            Some(token) => {
                ProgressSink { target: Some((cx.peer.clone(), token)), count: Arc::default() }
            }
            None => ProgressSink::none(),
        };
        let ask = Ask { message, continuation_token, caller };
        let answer = self.agent.ask(ask, progress, cx.ct.clone()).await;
        Ok(match answer {
            Ok(answer) => {
                let mut result =
                    CallToolResult::success(vec![ContentBlock::text(answer.text.clone())]);
                result.structured_content = Some(json!({
                    "answer": answer.text,
                    "continuationToken": answer.continuation_token,
                    "runId": answer.run_id,
                    "sessionId": answer.session_id,
                }));
                result
            }
            Err(why) => CallToolResult::error(vec![ContentBlock::text(why)]),
        }
        .into())
    }
}

/// Serves `agent` on `read`/`write` (the process's stdin and stdout) until the client closes
/// the stream or `stop` fires.
pub async fn serve_stdio<R, W>(
    info: AgentInfo,
    agent: Arc<dyn Agent>,
    read: R,
    write: W,
    stop: CancellationToken,
) -> Result<(), McpError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let server = AgentServer { info: Arc::new(info), agent };
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(read, write)
        .with_max_line_length(crate::client::MAX_LINE_BYTES);
    let running = server
        .serve_with_ct(transport, stop)
        .await
        .map_err(|e| McpError::Protocol(crate::client::cut(&e.to_string(), 600)))?;
    running.waiting().await.map(drop).map_err(|e| McpError::Transport(e.to_string()))
}

/// The streamable-HTTP service of `agent`, stateless (every request stands alone, so any node
/// can answer it), answering JSON unless progress has to stream. `allowed_hosts`: the `Host`
/// headers accepted (a server on loopback should accept only loopback names, against DNS
/// rebinding); `None` accepts any. Requests end when `stop` fires.
pub fn http_service(
    info: AgentInfo,
    agent: Arc<dyn Agent>,
    allowed_hosts: Option<Vec<String>>,
    stop: CancellationToken,
) -> StreamableHttpService<impl ServerHandler + Clone, NeverSessionManager> {
    let server = AgentServer { info: Arc::new(info), agent };
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_cancellation_token(stop);
    config = match allowed_hosts {
        Some(hosts) => config.with_allowed_hosts(hosts),
        None => config.disable_allowed_hosts(),
    };
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}
