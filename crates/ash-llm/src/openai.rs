//! The OpenAI-compatible Chat Completions wire format (`POST {base}/chat/completions`).
//!
//! Owns the request body (`stream: true`, `stream_options.include_usage`, function tools, tool
//! messages) and the decoder of its `data:` chunks: text, reasoning (`reasoning_content` or
//! `reasoning`, as DeepSeek, vLLM, Ollama and OpenRouter send it), parallel tool calls whose
//! arguments arrive as fragments keyed by `index`, usage, finish reasons, in-stream errors and
//! `[DONE]`. Tolerates what compatible servers vary on: missing ids, missing `[DONE]`, unknown
//! fields. Never does I/O.

use ash_protocol::{AssistantPart, FinishReason, Message, ModelEvent, Usage, UserPart};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::LlmError;
use crate::request::ModelRequest;
use crate::wire::{WireDecoder, clean_message, json_error};

/// The request body.
pub(crate) fn request_body(provider: &str, model: &str, request: &ModelRequest) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        match message {
            Message::User { content } => {
                let text: Vec<&str> = content
                    .iter()
                    .map(|part| match part {
                        UserPart::Text { text } => text.as_str(),
                    })
                    .collect();
                messages.push(json!({"role": "user", "content": text.join("\n\n")}));
            }
            Message::Assistant { content } => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for part in content {
                    match part {
                        AssistantPart::Text { text: t } => text.push_str(t),
                        AssistantPart::ToolCall(call) => calls.push(json!({
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        })),
                        // Chat Completions has no way to send reasoning back.
                        AssistantPart::Reasoning { .. }
                        | AssistantPart::RedactedReasoning { .. } => {}
                    }
                }
                let mut msg =
                    json!({"role": "assistant", "content": (!text.is_empty()).then_some(text)});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Message::Tool { content } => {
                let mut images = Vec::new();
                for result in content {
                    // No error flag exists on the wire; the prefix carries it.
                    let output = if result.is_error {
                        format!("Error: {}", result.output)
                    } else {
                        result.output.clone()
                    };
                    messages.push(json!({
                        "role": "tool",
                        "tool_call_id": result.call_id,
                        "content": output,
                    }));
                    if !result.images.is_empty() {
                        images.push(json!({
                            "type": "text",
                            "text": format!("The images `{}` returned (call {}):", result.tool_name, result.call_id),
                        }));
                        images.extend(result.images.iter().map(|image| json!({
                            "type": "image_url",
                            "image_url": {"url": format!("data:{};base64,{}", image.media_type, image.data)},
                        })));
                    }
                }
                // A tool message holds text only: images follow as the user's, after all the
                // results (a tool message must answer its call directly).
                if !images.is_empty() {
                    messages.push(json!({"role": "user", "content": images}));
                }
            }
        }
    }
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.input_schema,
                    },
                })
            })
            .collect();
    }
    if let Some(max) = request.max_tokens {
        // OpenAI's reasoning models refuse `max_tokens`; compatible servers mostly know only it.
        let key = if provider == "openai" { "max_completion_tokens" } else { "max_tokens" };
        body[key] = json!(max);
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(effort) = request.reasoning_effort {
        body["reasoning_effort"] = json!(effort);
    }
    body
}

#[derive(Deserialize)]
struct Chunk {
    id: Option<String>,
    model: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<ChunkUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<u32>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

struct OpenCall {
    index: u32,
    id: String,
    name: String,
    /// Arguments received before the name was known.
    pending: String,
    started: bool,
}

/// Decoder state for one response.
pub(crate) struct Decoder {
    provider: String,
    started: bool,
    calls: Vec<OpenCall>,
    finish: Option<String>,
    done: bool,
}

impl Decoder {
    pub(crate) fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            started: false,
            calls: Vec::new(),
            finish: None,
            done: false,
        }
    }

    fn protocol(&self, message: String) -> LlmError {
        LlmError::Protocol { provider: self.provider.clone(), message }
    }

    fn tool_delta(
        &mut self,
        delta: ToolCallDelta,
        out: &mut Vec<ModelEvent>,
    ) -> Result<(), LlmError> {
        let function = delta.function.unwrap_or(FunctionDelta { name: None, arguments: None });
        // A missing index means "the call this id names", or a new call when the id is new.
        let index = match delta.index {
            Some(index) => index,
            None => match (&delta.id, self.calls.last()) {
                (Some(id), Some(last)) if *id != last.id => last.index + 1,
                (_, Some(last)) => last.index,
                (_, None) => 0,
            },
        };
        let position = match self.calls.iter().position(|c| c.index == index) {
            Some(position) => position,
            None => {
                let id =
                    delta.id.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{index}"));
                self.calls.push(OpenCall {
                    index,
                    id,
                    name: String::new(),
                    pending: String::new(),
                    started: false,
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[position];
        if let Some(name) = function.name.filter(|n| !n.is_empty())
            && !call.started
        {
            call.name.push_str(&name);
        }
        let arguments = function.arguments.unwrap_or_default();
        if call.started {
            if !arguments.is_empty() {
                out.push(ModelEvent::ToolCallDelta { id: call.id.clone(), delta: arguments });
            }
        } else {
            call.pending.push_str(&arguments);
            if !call.name.is_empty() {
                call.started = true;
                out.push(ModelEvent::ToolCallStarted {
                    id: call.id.clone(),
                    name: call.name.clone(),
                });
                if !call.pending.is_empty() {
                    let delta = std::mem::take(&mut call.pending);
                    out.push(ModelEvent::ToolCallDelta { id: call.id.clone(), delta });
                }
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), LlmError> {
        if let Some(call) = self.calls.iter().find(|c| !c.started) {
            return Err(self.protocol(format!(
                "tool call {} (`{}`) never received a name",
                call.index, call.id
            )));
        }
        for call in &self.calls {
            out.push(ModelEvent::ToolCallEnded { id: call.id.clone() });
        }
        let reason = match self.finish.as_deref() {
            Some("stop") if !self.calls.is_empty() => FinishReason::ToolCalls,
            Some("stop" | "end_turn" | "eos") => FinishReason::Stop,
            Some("length" | "max_tokens") => FinishReason::Length,
            Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
            Some("content_filter") => FinishReason::ContentFilter,
            Some("error") => FinishReason::Error,
            None if !self.calls.is_empty() => FinishReason::ToolCalls,
            _ => FinishReason::Other,
        };
        out.push(ModelEvent::Finished { reason });
        self.done = true;
        Ok(())
    }
}

impl WireDecoder for Decoder {
    fn event(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<ModelEvent>,
    ) -> Result<(), LlmError> {
        if self.done {
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            return self.end(out);
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|err| self.protocol(json_error("a chat completion chunk", data, &err)))?;
        if let Some(error) = chunk.error {
            return Err(in_stream_error(&self.provider, &error));
        }
        if !self.started {
            self.started = true;
            out.push(ModelEvent::ResponseStarted { id: chunk.id, model: chunk.model });
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) =
                    delta.reasoning_content.or(delta.reasoning).filter(|t| !t.is_empty())
                {
                    out.push(ModelEvent::ReasoningDelta { text });
                }
                if let Some(text) = delta.content.or(delta.refusal).filter(|t| !t.is_empty()) {
                    out.push(ModelEvent::TextDelta { text });
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.tool_delta(call, out)?;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(reason);
            }
        }
        if let Some(usage) = chunk.usage {
            let cached = usage.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
            out.push(ModelEvent::Usage {
                usage: Usage {
                    input_tokens: usage.prompt_tokens,
                    output_tokens: usage.completion_tokens,
                    cache_read_tokens: cached,
                    cache_write_tokens: 0,
                },
            });
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), LlmError> {
        if self.done {
            return Ok(());
        }
        // Some servers close without `[DONE]`; a finish reason already seen is enough.
        if self.finish.is_some() {
            return self.end(out);
        }
        Err(self
            .protocol("the stream ended before a finish reason (truncated response)".to_owned()))
    }
}

/// `{"error": {...}}` inside a stream (OpenRouter, vLLM and gateways send these).
fn in_stream_error(provider: &str, error: &Value) -> LlmError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("no message");
    let code = error.get("code");
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| code.map(|c| c.to_string().trim_matches('"').to_owned()))
        .unwrap_or_else(|| "error".to_owned());
    let numeric = code.and_then(Value::as_u64).unwrap_or(0);
    let retryable = numeric == 429
        || (500..600).contains(&numeric)
        || ["rate_limit", "server_error", "overloaded", "timeout"].iter().any(|k| kind.contains(k));
    LlmError::Provider {
        provider: provider.to_owned(),
        kind,
        message: clean_message(message),
        retryable,
    }
}
