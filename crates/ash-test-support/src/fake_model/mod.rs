//! `FakeModelServer`: an axum server on 127.0.0.1:0 that answers like OpenAI and Anthropic.
//!
//! Owns the reply queue (each request takes the next `Reply`, or cycles them in repeat mode),
//! request recording, and the HTTP side of fault injection: error statuses with bodies and
//! headers, slow chunks, connections dropped mid-body, responses that never come. The wire
//! rendering of a `Turn` lives in `wire.rs`, written from the providers' documentation and
//! independent of `ash-llm`'s parser, so each checks the other.

mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ash_protocol::FinishReason;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A model turn, rendered in the wire format of the endpoint that was called.
    Turn(Turn),
    /// A literal response: status, headers and body chunks.
    Raw {
        /// HTTP status.
        status: u16,
        /// Extra headers (the content type included).
        headers: Vec<(String, String)>,
        /// Body chunks, sent one at a time.
        chunks: Vec<Bytes>,
        /// Pause before each chunk.
        delay: Duration,
        /// Break the connection after the last chunk instead of ending the body.
        drop: bool,
    },
    /// Accept the request and never answer.
    Hang,
    /// Behave as a coding model that writes one file: a call of whichever writing tool the
    /// request offers (Claude Code's `Write` with the absolute path under the `Primary working
    /// directory` its system prompt names, then `Bash`; Codex's freeform `apply_patch`, then
    /// `exec_command`; ash's `write_file`), or `summary` as text once the request carries the
    /// tool's result. With [`FakeModelServer::repeat`], one `Edit` serves a whole episode.
    Edit {
        /// The file, relative to the agent's working directory.
        path: String,
        /// Its new content.
        content: String,
        /// The last words.
        summary: String,
    },
}

impl Reply {
    /// `status` with these body chunks and, unless empty, this content type; sent at once.
    pub fn body(status: u16, content_type: &str, chunks: Vec<Bytes>) -> Self {
        let headers = if content_type.is_empty() {
            Vec::new()
        } else {
            vec![("content-type".into(), content_type.into())]
        };
        Self::Raw { status, headers, chunks, delay: Duration::ZERO, drop: false }
    }

    /// A JSON error body with `status`.
    pub fn error(status: u16, body: &Value) -> Self {
        Self::body(status, "application/json", vec![Bytes::from(body.to_string())])
    }

    /// 429 with `retry-after: seconds` and an OpenAI-style error body.
    pub fn rate_limited(seconds: u64) -> Self {
        let mut reply = Self::error(
            429,
            &serde_json::json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}),
        );
        if let Self::Raw { headers, .. } = &mut reply {
            headers.push(("retry-after".into(), seconds.to_string()));
        }
        reply
    }

    /// An HTML page with `status`, as proxies and captive portals send.
    pub fn html(status: u16, title: &str) -> Self {
        let page = format!(
            "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        );
        Self::body(status, "text/html; charset=utf-8", vec![Bytes::from(page)])
    }

    /// A coding model's episode that writes `content` to `path` and says `summary`.
    pub fn edit(path: &str, content: &str, summary: &str) -> Self {
        Self::Edit { path: path.into(), content: content.into(), summary: summary.into() }
    }

    /// A 200 event stream made of exactly these chunks.
    pub fn sse(chunks: &[&str]) -> Self {
        let chunks = chunks.iter().map(|c| Bytes::from(c.to_string())).collect();
        Self::body(200, "text/event-stream", chunks)
    }
}

/// A model turn: parts in order, usage, finish reason, and streaming behaviour.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Content in the order it is streamed.
    pub parts: Vec<TurnPart>,
    /// Token counts reported.
    pub usage: WireUsage,
    /// Finish reason; by default `tool-calls` when there are tool calls, else `stop`.
    pub finish: Option<FinishReason>,
    /// Characters per text, reasoning or argument fragment.
    pub chunk_chars: usize,
    /// Pause before each frame.
    pub delay: Duration,
    /// Pause before the response starts (the model's time to first token).
    pub latency: Duration,
    /// Break the connection after this many frames.
    pub drop_after: Option<usize>,
    /// Interleave the argument fragments of parallel tool calls (OpenAI format).
    pub interleave: bool,
}

/// One part of a `Turn`.
#[derive(Debug, Clone)]
pub enum TurnPart {
    /// Visible text.
    Text(String),
    /// Reasoning: OpenAI-compatible `reasoning_content`, Anthropic `thinking` with a signature.
    Reasoning {
        /// The text.
        text: String,
        /// Anthropic signature.
        signature: String,
    },
    /// A tool call.
    ToolCall {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Argument JSON text, sent in fragments.
        arguments: String,
    },
}

/// Token counts in the fake's terms: `input` excludes cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireUsage {
    /// Uncached prompt tokens.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
    /// Prompt tokens read from cache.
    pub cache_read: u64,
    /// Prompt tokens written to cache (Anthropic only).
    pub cache_write: u64,
}

impl Turn {
    fn new(parts: Vec<TurnPart>) -> Self {
        Self {
            parts,
            usage: WireUsage { input: 10, output: 5, cache_read: 0, cache_write: 0 },
            finish: None,
            chunk_chars: 8,
            delay: Duration::ZERO,
            latency: Duration::ZERO,
            drop_after: None,
            interleave: false,
        }
    }

    /// A turn that says `text`.
    pub fn text(text: &str) -> Self {
        Self::new(vec![TurnPart::Text(text.to_owned())])
    }

    /// A turn with no parts yet.
    pub fn empty() -> Self {
        Self::new(Vec::new())
    }

    /// Adds text.
    pub fn then_text(mut self, text: &str) -> Self {
        self.parts.push(TurnPart::Text(text.to_owned()));
        self
    }

    /// Adds reasoning with a signature.
    pub fn then_reasoning(mut self, text: &str, signature: &str) -> Self {
        self.parts
            .push(TurnPart::Reasoning { text: text.to_owned(), signature: signature.to_owned() });
        self
    }

    /// Adds a tool call.
    pub fn then_tool_call(mut self, id: &str, name: &str, arguments: &str) -> Self {
        self.parts.push(TurnPart::ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        });
        self
    }

    /// Sets the usage.
    pub fn usage(mut self, input: u64, output: u64, cache_read: u64, cache_write: u64) -> Self {
        self.usage = WireUsage { input, output, cache_read, cache_write };
        self
    }

    /// Sets the finish reason.
    pub fn finish(mut self, reason: FinishReason) -> Self {
        self.finish = Some(reason);
        self
    }

    /// Sets the fragment size.
    pub fn chunk_chars(mut self, chars: usize) -> Self {
        self.chunk_chars = chars.max(1);
        self
    }

    /// Pauses before each frame.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Pauses before the response starts, as a model thinking would.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Breaks the connection after `frames` frames.
    pub fn drop_after(mut self, frames: usize) -> Self {
        self.drop_after = Some(frames);
        self
    }

    /// Interleaves parallel tool-call fragments.
    pub fn interleave(mut self) -> Self {
        self.interleave = true;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers with lowercase names.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, `Null` when it was not JSON.
    pub body: Value,
}

#[derive(Debug, Default)]
struct State {
    replies: VecDeque<Reply>,
    repeat: bool,
    by_step: bool,
    requests: Vec<RecordedRequest>,
    refused_keys: Vec<String>,
}

/// The fake server. Stops when dropped.
#[derive(Debug)]
pub struct FakeModelServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FakeModelServer {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Self {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn bind(addr: SocketAddr) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move { handle(&state, &uri, &headers, &body).await }
        });
        let listener =
            tokio::net::TcpListener::bind(addr).await.expect("bind the fake model server");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// The base URL to configure as a provider's `base_url`: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply.
    pub fn push(&self, reply: Reply) -> &Self {
        self.lock().replies.push_back(reply);
        self
    }

    /// Answers every request with the queued replies in a cycle instead of consuming them.
    pub fn repeat(&self) -> &Self {
        self.lock().repeat = true;
        self
    }

    /// Answers each request with the queued reply at the position of its step: the number of
    /// assistant messages it carries. Concurrent conversations then each get their replies in
    /// order, as from a real model.
    pub fn by_step(&self) -> &Self {
        self.lock().by_step = true;
        self
    }

    /// Answers every request that presents `key` (`x-api-key` or `Authorization: Bearer`)
    /// with 401, as a provider does a revoked key.
    pub fn refuse_key(&self, key: &str) -> &Self {
        self.lock().refused_keys.push(key.to_owned());
        self
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the queued replies (repeat mode stays as it is).
    pub fn clear(&self) -> &Self {
        self.lock().replies.clear();
        self
    }

    /// Replies not yet used.
    pub fn remaining(&self) -> usize {
        self.lock().replies.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    state: &Mutex<State>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    let path = uri.path().to_owned();
    if path == "/" {
        // Claude Code's preflight (`HEAD` on the base URL).
        return respond(200, &[], Vec::new(), Duration::ZERO, false);
    }
    let key = headers
        .get("x-api-key")
        .or_else(|| headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_owned());
    let refused = key.is_some_and(|k| {
        state.lock().unwrap_or_else(PoisonError::into_inner).refused_keys.contains(&k)
    });
    if refused || path.ends_with("/models") {
        let (status, body) = if refused {
            (
                401,
                json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
            )
        } else {
            (
                200,
                json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "type": "model"}]}),
            )
        };
        let body = vec![Bytes::from(body.to_string())];
        return respond(
            status,
            &[("content-type", "application/json")],
            body,
            Duration::ZERO,
            false,
        );
    }
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (reply, number) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests.push(RecordedRequest {
            path: path.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                })
                .collect(),
            body: json.clone(),
        });
        let reply = if state.by_step {
            let step = json["messages"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
            let len = state.replies.len().max(1);
            state.replies.get(step % len).cloned()
        } else {
            let reply = state.replies.pop_front();
            if let (Some(reply), true) = (&reply, state.repeat) {
                state.replies.push_back(reply.clone());
            }
            reply
        };
        (reply, state.requests.len())
    };
    let format = if path.ends_with("/chat/completions") {
        Some(wire::Format::OpenAi)
    } else if path.ends_with("/messages") {
        Some(wire::Format::Anthropic)
    } else if path.ends_with("/responses") {
        Some(wire::Format::Responses)
    } else {
        None
    };
    let error = |status, message: String, kind: &str| {
        Reply::error(status, &serde_json::json!({"error": {"message": message, "type": kind}}))
    };
    let latency = match &reply {
        Some(Reply::Turn(turn)) => turn.latency,
        _ => Duration::ZERO,
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let reply = match (format, reply) {
        (None, _) => error(404, format!("fake model server: no route {path}"), "not_found"),
        (_, None) => error(
            500,
            format!("fake model server: no scripted reply left for request {number}"),
            "fake_exhausted",
        ),
        (Some(format), Some(Reply::Turn(turn))) => render_turn(format, &turn, &json),
        (Some(format), Some(Reply::Edit { path, content, summary })) => {
            render_turn(format, &edit_turn(&json, &path, &content, &summary), &json)
        }
        (_, Some(reply)) => reply,
    };
    // Every `Turn` was rendered to `Raw` above; what is left is `Hang`.
    let Reply::Raw { status, headers, chunks, delay, drop } = reply else {
        return std::future::pending().await;
    };
    let headers: Vec<(&str, &str)> =
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    respond(status, &headers, chunks, delay, drop)
}

/// A turn as the 200 event stream the endpoint's wire format would send.
fn render_turn(format: wire::Format, turn: &Turn, request: &Value) -> Reply {
    let model = request.get("model").and_then(Value::as_str).unwrap_or("fake-model");
    let mut chunks = wire::render(format, turn, model, request);
    let drop = turn.drop_after.is_some_and(|n| n < chunks.len());
    if let Some(n) = turn.drop_after {
        chunks.truncate(n);
    }
    Reply::Raw {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        chunks,
        delay: turn.delay,
        drop,
    }
}

/// The turn of [`Reply::Edit`] for `request`.
fn edit_turn(request: &Value, path: &str, content: &str, summary: &str) -> Turn {
    let has_result = request["messages"].as_array().is_some_and(|messages| {
        messages.iter().any(|m| {
            m["role"] == "tool"
                || m["content"]
                    .as_array()
                    .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
        })
    }) || request["input"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|i| i["type"] == "function_call_output" || i["type"] == "custom_tool_call_output")
    });
    if has_result {
        return Turn::text(summary);
    }
    let offered: Vec<&str> = request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().or_else(|| t["function"]["name"].as_str()))
                .collect()
        })
        .unwrap_or_default();
    let quoted = format!("'{}'", content.replace('\'', "'\\''"));
    let shell = format!("printf %s {quoted} > '{path}'");
    let call =
        |name: &str, arguments: String| Turn::empty().then_tool_call("call_edit", name, &arguments);
    if offered.contains(&"Write") {
        let text = request.to_string();
        let cwd = text
            .split("Primary working directory: ")
            .nth(1)
            .and_then(|rest| rest.split(['\\', '\n', '"']).next())
            .unwrap_or(".");
        call("Write", json!({"file_path": format!("{cwd}/{path}"), "content": content}).to_string())
    } else if offered.contains(&"apply_patch") {
        let lines: String = content.lines().map(|l| format!("+{l}\n")).collect();
        call(
            "apply_patch",
            format!("*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"),
        )
    } else if offered.contains(&"write_file") {
        call("write_file", json!({"path": path, "content": content}).to_string())
    } else if offered.contains(&"exec_command") {
        call("exec_command", json!({"cmd": shell}).to_string())
    } else if offered.contains(&"Bash") {
        call("Bash", json!({"command": shell}).to_string())
    } else {
        Turn::text(&format!("fake model server: no tool to write with among {offered:?}"))
    }
}

fn respond(
    status: u16,
    headers: &[(&str, &str)],
    chunks: Vec<Bytes>,
    delay: Duration,
    drop: bool,
) -> Response<Body> {
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), drop),
        move |(mut chunks, drop)| async move {
            match chunks.next() {
                Some(chunk) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<_, std::io::Error>(chunk), (chunks, drop)))
                }
                // An error from the body stream makes hyper abort the connection mid-body. The pause
                // lets hyper flush the frames already yielded, so the client sees them first.
                None if drop => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Err(std::io::Error::other("fake model server: dropped connection")),
                        (chunks, false),
                    ))
                }
                None => None,
            }
        },
    );
    let mut response =
        Response::builder().status(StatusCode::from_u16(status).expect("a valid status"));
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Body::from_stream(stream)).expect("a valid response")
}
