//! The Anthropic Messages wire format (`POST {base}/messages`, `anthropic-version: 2023-06-01`).
//!
//! Owns the request body (system prompt, alternating user/assistant turns with `tool_use` and
//! `tool_result` blocks, thinking blocks sent back with their signatures, extended thinking from
//! `reasoning_effort`) and the decoder of its named events: `message_start`,
//! `content_block_start|delta|stop` (`text_delta`, `thinking_delta`, `signature_delta`,
//! `input_json_delta`), `message_delta`, `message_stop`, `ping` and `error`. Unknown events,
//! blocks and deltas are tolerated and skipped. Never does I/O.

use ash_protocol::{
    AssistantPart, FinishReason, Message, ModelEvent, ReasoningEffort, ToolCall, Usage, UserPart,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::LlmError;
use crate::request::{DEFAULT_ANTHROPIC_MAX_TOKENS, ModelRequest, tool_input};
use crate::wire::{WireDecoder, clean_message, json_error};

/// The API version header value.
pub(crate) const API_VERSION: &str = "2023-06-01";

/// Thinking budget per reasoning effort, in tokens.
fn thinking_budget(effort: ReasoningEffort) -> u32 {
    match effort {
        ReasoningEffort::Low => 2048,
        ReasoningEffort::Medium => 8192,
        ReasoningEffort::High => 24576,
    }
}

/// The request body.
pub(crate) fn request_body(model: &str, request: &ModelRequest) -> Value {
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        // The API wants user and assistant turns to alternate; tool results are user turns.
        match messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    };
    for message in &request.messages {
        match message {
            Message::User { content } => push(
                "user",
                content
                    .iter()
                    .filter_map(|part| match part {
                        UserPart::Text { text } if !text.is_empty() => {
                            Some(json!({"type": "text", "text": text}))
                        }
                        UserPart::Text { .. } => None,
                    })
                    .collect(),
            ),
            Message::Assistant { content } => push(
                "assistant",
                content
                    .iter()
                    .filter_map(|part| match part {
                        AssistantPart::Text { text } if !text.is_empty() => {
                            Some(json!({"type": "text", "text": text}))
                        }
                        AssistantPart::Text { .. } => None,
                        // Thinking without a signature came from another provider; the API
                        // would reject it.
                        AssistantPart::Reasoning { text, signature: Some(signature) } => Some(
                            json!({"type": "thinking", "thinking": text, "signature": signature}),
                        ),
                        AssistantPart::Reasoning { signature: None, .. } => None,
                        AssistantPart::RedactedReasoning { data } => {
                            Some(json!({"type": "redacted_thinking", "data": data}))
                        }
                        AssistantPart::ToolCall(call) => Some(tool_use(call)),
                    })
                    .collect(),
            ),
            Message::Tool { content } => push(
                "user",
                content
                    .iter()
                    .map(|result| {
                        let content = if result.images.is_empty() {
                            json!(result.output)
                        } else {
                            let mut blocks = vec![json!({"type": "text", "text": result.output})];
                            blocks.extend(result.images.iter().map(|image| {
                                json!({
                                    "type": "image",
                                    "source": {
                                        "type": "base64",
                                        "media_type": image.media_type,
                                        "data": image.data,
                                    },
                                })
                            }));
                            Value::Array(blocks)
                        };
                        let mut block = json!({
                            "type": "tool_result",
                            "tool_use_id": result.call_id,
                            "content": content,
                        });
                        if result.is_error {
                            block["is_error"] = json!(true);
                        }
                        block
                    })
                    .collect(),
            ),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();

    let budget = request.reasoning_effort.map(thinking_budget);
    let max_tokens = match (request.max_tokens, budget) {
        (Some(max), Some(budget)) if max <= budget => budget + max,
        (Some(max), _) => max,
        (None, Some(budget)) => budget + DEFAULT_ANTHROPIC_MAX_TOKENS,
        (None, None) => DEFAULT_ANTHROPIC_MAX_TOKENS,
    };
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages,
        "stream": true,
    });
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.input_schema,
                })
            })
            .collect();
    }
    match budget {
        // Extended thinking fixes the temperature; sending one is an error.
        Some(budget) => body["thinking"] = json!({"type": "enabled", "budget_tokens": budget}),
        None => {
            if let Some(t) = request.temperature {
                body["temperature"] = json!(t);
            }
        }
    }
    body
}

/// A `tool_use` block: the API wants `input` as an object, so arguments that do not parse (a
/// response cut off by `max_tokens`) are sent as `{}`; the tool error already told the model.
fn tool_use(call: &ToolCall) -> Value {
    let input = tool_input(call).unwrap_or_else(|_| Map::new());
    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input})
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    message: Option<MessageStart>,
    index: Option<u64>,
    content_block: Option<Value>,
    delta: Option<Value>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct MessageStart {
    id: Option<String>,
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Tool,
    Other,
}

/// Decoder state for one response.
pub(crate) struct Decoder {
    provider: String,
    /// Open blocks by index: kind and, for tools, the call id.
    blocks: Vec<(u64, Block, String)>,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    stop_reason: Option<String>,
    started: bool,
    done: bool,
}

impl Decoder {
    pub(crate) fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            blocks: Vec::new(),
            input: 0,
            output: 0,
            cache_read: 0,
            cache_write: 0,
            stop_reason: None,
            started: false,
            done: false,
        }
    }

    fn protocol(&self, message: impl Into<String>) -> LlmError {
        LlmError::Protocol { provider: self.provider.clone(), message: message.into() }
    }

    fn usage(&mut self, usage: WireUsage) -> ModelEvent {
        // Later reports carry cumulative counts for the fields they include.
        self.input = usage.input_tokens.unwrap_or(self.input);
        self.output = usage.output_tokens.unwrap_or(self.output);
        self.cache_write = usage.cache_creation_input_tokens.unwrap_or(self.cache_write);
        self.cache_read = usage.cache_read_input_tokens.unwrap_or(self.cache_read);
        ModelEvent::Usage {
            usage: Usage {
                input_tokens: self.input + self.cache_write + self.cache_read,
                output_tokens: self.output,
                cache_read_tokens: self.cache_read,
                cache_write_tokens: self.cache_write,
            },
        }
    }

    fn block(&self, index: Option<u64>) -> Option<&(u64, Block, String)> {
        let index = index?;
        self.blocks.iter().find(|(i, _, _)| *i == index)
    }

    fn start_block(
        &mut self,
        index: u64,
        block: &Value,
        out: &mut Vec<ModelEvent>,
    ) -> Result<(), LlmError> {
        let text =
            |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (kind, id) = match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let initial = text("text");
                if !initial.is_empty() {
                    out.push(ModelEvent::TextDelta { text: initial });
                }
                (Block::Text, String::new())
            }
            Some("thinking") => {
                let initial = text("thinking");
                if !initial.is_empty() {
                    out.push(ModelEvent::ReasoningDelta { text: initial });
                }
                (Block::Thinking, String::new())
            }
            Some("redacted_thinking") => {
                out.push(ModelEvent::RedactedReasoning { data: text("data") });
                (Block::Other, String::new())
            }
            Some("tool_use") => {
                let id = text("id");
                let name = text("name");
                if id.is_empty() || name.is_empty() {
                    return Err(self.protocol(format!("tool_use block {index} has no id or name")));
                }
                out.push(ModelEvent::ToolCallStarted { id: id.clone(), name });
                // Input normally streams as `input_json_delta`; a non-empty initial object
                // (some proxies send the whole input here) counts as the first fragment.
                if let Some(input) =
                    block.get("input").filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                {
                    out.push(ModelEvent::ToolCallDelta {
                        id: id.clone(),
                        delta: input.to_string(),
                    });
                }
                (Block::Tool, id)
            }
            // server_tool_use, web_search_tool_result, …: not ours to run; skipped.
            _ => (Block::Other, String::new()),
        };
        self.blocks.retain(|(i, _, _)| *i != index);
        self.blocks.push((index, kind, id));
        Ok(())
    }

    fn delta(
        &self,
        index: Option<u64>,
        delta: &Value,
        out: &mut Vec<ModelEvent>,
    ) -> Result<(), LlmError> {
        let Some((_, block, id)) = self.block(index) else {
            return Err(self.protocol(format!(
                "content_block_delta for block {index:?}, which was never started"
            )));
        };
        let field = |key: &str| delta.get(key).and_then(Value::as_str).map(str::to_owned);
        match (delta.get("type").and_then(Value::as_str), block) {
            (Some("text_delta"), Block::Text) => {
                if let Some(text) = field("text").filter(|t| !t.is_empty()) {
                    out.push(ModelEvent::TextDelta { text });
                }
            }
            (Some("thinking_delta"), Block::Thinking) => {
                if let Some(text) = field("thinking").filter(|t| !t.is_empty()) {
                    out.push(ModelEvent::ReasoningDelta { text });
                }
            }
            (Some("signature_delta"), Block::Thinking) => {
                if let Some(signature) = field("signature") {
                    out.push(ModelEvent::ReasoningSignature { signature });
                }
            }
            (Some("input_json_delta"), Block::Tool) => {
                if let Some(delta) = field("partial_json").filter(|t| !t.is_empty()) {
                    out.push(ModelEvent::ToolCallDelta { id: id.clone(), delta });
                }
            }
            (
                Some(
                    kind @ ("text_delta" | "thinking_delta" | "signature_delta"
                    | "input_json_delta"),
                ),
                block,
            ) if *block != Block::Other => {
                return Err(self.protocol(format!("{kind} for block {index:?} of another kind")));
            }
            // citations_delta and future delta types: tolerated.
            _ => {}
        }
        Ok(())
    }
}

impl WireDecoder for Decoder {
    fn event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ModelEvent>,
    ) -> Result<(), LlmError> {
        if self.done {
            return Ok(());
        }
        let envelope: Envelope = serde_json::from_str(data).map_err(|err| {
            let what =
                if event.is_empty() { "an event".to_owned() } else { format!("a `{event}` event") };
            self.protocol(json_error(&what, data, &err))
        })?;
        match envelope.kind.as_str() {
            "message_start" => {
                let message = envelope
                    .message
                    .ok_or_else(|| self.protocol("message_start without `message`"))?;
                self.started = true;
                out.push(ModelEvent::ResponseStarted { id: message.id, model: message.model });
                if let Some(usage) = message.usage {
                    let event = self.usage(usage);
                    out.push(event);
                }
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (envelope.index, envelope.content_block) else {
                    return Err(
                        self.protocol("content_block_start without `index` or `content_block`")
                    );
                };
                self.start_block(index, &block, out)?;
            }
            "content_block_delta" => {
                let delta = envelope
                    .delta
                    .ok_or_else(|| self.protocol("content_block_delta without `delta`"))?;
                self.delta(envelope.index, &delta, out)?;
            }
            "content_block_stop" => {
                if let Some((_, Block::Tool, id)) = self.block(envelope.index) {
                    out.push(ModelEvent::ToolCallEnded { id: id.clone() });
                }
                self.blocks.retain(|(i, _, _)| Some(*i) != envelope.index);
            }
            "message_delta" => {
                if let Some(reason) = envelope
                    .delta
                    .as_ref()
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = envelope.usage {
                    let event = self.usage(usage);
                    out.push(event);
                }
            }
            "message_stop" => {
                if !self.started {
                    return Err(self.protocol("message_stop before message_start"));
                }
                for (_, block, id) in std::mem::take(&mut self.blocks) {
                    if block == Block::Tool {
                        out.push(ModelEvent::ToolCallEnded { id });
                    }
                }
                let reason = match self.stop_reason.as_deref() {
                    Some("end_turn" | "stop_sequence") => FinishReason::Stop,
                    Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
                    Some("tool_use") => FinishReason::ToolCalls,
                    Some("refusal") => FinishReason::ContentFilter,
                    _ => FinishReason::Other,
                };
                out.push(ModelEvent::Finished { reason });
                self.done = true;
            }
            "error" => {
                let error = envelope.error.unwrap_or(Value::Null);
                let kind = error.get("type").and_then(Value::as_str).unwrap_or("error").to_owned();
                let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
                let retryable =
                    matches!(kind.as_str(), "overloaded_error" | "api_error" | "rate_limit_error");
                return Err(LlmError::Provider {
                    provider: self.provider.clone(),
                    kind,
                    message: clean_message(message),
                    retryable,
                });
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<ModelEvent>) -> Result<(), LlmError> {
        if self.done {
            Ok(())
        } else {
            Err(self.protocol("the stream ended before message_stop (truncated response)"))
        }
    }
}
