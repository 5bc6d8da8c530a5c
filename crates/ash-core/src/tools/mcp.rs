//! An allow-listed tool of an MCP connection (`<namespace>__<tool>`): its definition and input
//! schema are the server's, its call goes through the connection with the connection's
//! timeout and retry policy, its progress becomes `action.progress` events, and its result
//! keeps the server's content (text, images, resources, structured content).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ash_mcp::CallError;
use ash_protocol::ToolDefinition;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{Availability, CallContext, CallFuture, Outcome, Runner, ToolEvent, ToolProgress};
use crate::connections::McpConnection;

/// Why a tool of a connection the runtime did not start cannot be called.
const OFFLINE: &str =
    "not connected (`ash info` does not start servers; `ash info --connect` does)";

pub(crate) struct McpTool {
    name: String,
    remote: String,
    connection_name: String,
    connection: Option<Arc<McpConnection>>,
}

impl McpTool {
    pub(crate) fn new(
        name: &str,
        connection: &str,
        remote: &str,
        live: Option<Arc<McpConnection>>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            remote: remote.to_owned(),
            connection_name: connection.to_owned(),
            connection: live,
        }
    }

    async fn run(&self, input: Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
        let Some(connection) = &self.connection else { return Outcome::error(OFFLINE) };
        let spec = &connection.connection;
        let timeout = Duration::from_millis(spec.timeout_ms);
        let started = Instant::now();
        let (progress_tx, mut progress_rx) = mpsc::channel::<ash_mcp::Progress>(32);
        let forward = async {
            while let Some(p) = progress_rx.recv().await {
                if let Some(sink) = ctx.events {
                    let message = p.message.map(|m| connection.redactor.cut(&m, 500));
                    let _ = sink.try_send(ToolEvent::Progress(ToolProgress {
                        progress: p.progress,
                        total: p.total,
                        message,
                    }));
                }
            }
        };
        // Owns the progress sender, so `forward` ends when the attempts do.
        let attempts = async move {
            let progress_tx = progress_tx;
            let mut attempt = 0;
            loop {
                let (client, tool) = match connection.callable(&self.remote) {
                    Ok(ready) => ready,
                    Err(why) => {
                        // A server starting or restarting answers soon: wait for it within the
                        // timeout. A server that is up without this tool does not change.
                        let left = timeout.saturating_sub(started.elapsed());
                        if attempt < spec.retry_attempts
                            && connection.is_out()
                            && connection.ready(left).await
                        {
                            attempt += 1;
                            continue;
                        }
                        return Err(why);
                    }
                };
                let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
                match client.call(&self.remote, input.clone(), left, &progress_tx, ctx.cancel).await
                {
                    Ok(output) => return Ok(output),
                    Err(e) => {
                        let broke = matches!(e, CallError::NotSent(_) | CallError::Failed(_));
                        // A call that timed out may mean a server that stopped reading: the
                        // supervisor asks it whether it is there.
                        if broke || matches!(e, CallError::Timeout(_)) {
                            connection.broken();
                        }
                        // Only a call that never reached the server, or one the server says
                        // is safe to repeat, is tried again.
                        let again = matches!(e, CallError::NotSent(_))
                            || (tool.remote.idempotent
                                && matches!(e, CallError::Failed(_) | CallError::Timeout(_)));
                        if again && attempt < spec.retry_attempts && !ctx.cancel.is_cancelled() {
                            attempt += 1;
                            let left = timeout.saturating_sub(started.elapsed());
                            // The broken session is still the one on record until its
                            // supervisor notices: wait for another.
                            if broke && !connection.replaced(&client, left).await {
                                return Err(describe(
                                    &e,
                                    &self.connection_name,
                                    &self.remote,
                                    timeout,
                                ));
                            }
                            continue;
                        }
                        return Err(describe(&e, &self.connection_name, &self.remote, timeout));
                    }
                }
            }
        };
        let (result, ()) = tokio::join!(attempts, forward);
        match result {
            Err(why) => Outcome::error(connection.redactor.text(&why)),
            Ok(output) => {
                let mut result = output.result;
                connection.redactor.json(&mut result);
                let mut text = connection.redactor.text(&output.text);
                if text.len() > ash_mcp::MAX_MODEL_TEXT_BYTES {
                    let total = text.len();
                    let end = text.floor_char_boundary(ash_mcp::MAX_MODEL_TEXT_BYTES);
                    text.truncate(end);
                    text.push_str(&format!("\n[… {} more bytes cut]", total - end));
                }
                Outcome {
                    output: result,
                    error: output.is_error.then(|| text.clone()),
                    text: Some(text),
                    images: output.images,
                    ..Outcome::ok(Value::Null)
                }
            }
        }
    }
}

/// A failed call in words for the model.
fn describe(error: &CallError, connection: &str, remote: &str, timeout: Duration) -> String {
    match error {
        CallError::Cancelled => "cancelled".to_owned(),
        CallError::Timeout(_) => format!(
            "MCP server `{connection}` did not answer `{remote}` within {} ms (the connection's timeout_ms); it was told to stop",
            timeout.as_millis()
        ),
        CallError::Rejected { code, message } => {
            format!("MCP server `{connection}` refused `{remote}` (error {code}): {message}")
        }
        CallError::NotSent(e) | CallError::Failed(e) => {
            format!("calling `{remote}` on MCP server `{connection}` failed: {e}")
        }
    }
}

impl Runner for McpTool {
    fn definition(&self) -> ToolDefinition {
        match self.connection.as_ref().and_then(|c| c.described(&self.remote)) {
            Some(tool) => ToolDefinition {
                name: self.name.clone(),
                description: tool
                    .remote
                    .description
                    .clone()
                    .or_else(|| tool.remote.title.clone())
                    .unwrap_or_else(|| {
                        format!("`{}` of MCP server `{}`.", self.remote, self.connection_name)
                    }),
                input_schema: tool.remote.input_schema.clone(),
            },
            None => ToolDefinition {
                name: self.name.clone(),
                description: format!("`{}` of MCP server `{}`.", self.remote, self.connection_name),
                input_schema: json!({"type": "object"}),
            },
        }
    }

    fn availability(&self) -> Availability {
        match &self.connection {
            None => Availability::Unavailable(OFFLINE.to_owned()),
            Some(connection) => match connection.callable(&self.remote) {
                Ok(_) => Availability::Available,
                Err(why) => Availability::Unavailable(connection.redactor.text(&why)),
            },
        }
    }

    fn check(&self, input: &Value) -> Vec<String> {
        match self.connection.as_ref().and_then(|c| c.described(&self.remote)) {
            Some(tool) => match &tool.schema {
                Ok(schema) => schema.problems(input),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    fn call<'a>(&'a self, input: Map<String, Value>, ctx: &'a CallContext<'a>) -> CallFuture<'a> {
        Box::pin(self.run(input, ctx))
    }
}
