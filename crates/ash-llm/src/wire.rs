//! `Decoder`: bytes of a streaming response in, `ModelEvent`s out, for either wire format.
//!
//! Owns the pipeline shared by both formats (bounded SSE parsing, a byte budget, truncation
//! detection) and the helpers that turn a provider's error body into a short, clean message.
//! Never does I/O: the HTTP client feeds it chunks, and benchmarks and tests feed it bytes.

use ash_protocol::ModelEvent;
use ash_spec::ProviderApi;
use serde_json::Value;

use crate::config::ResponseLimits;
use crate::error::LlmError;
use crate::sse::{SseError, SseEvent, SseParser};
use crate::{anthropic, openai};

/// One wire format's event handling.
pub(crate) trait WireDecoder {
    /// Handles one server-sent event.
    fn event(&mut self, event: &str, data: &str, out: &mut Vec<ModelEvent>)
    -> Result<(), LlmError>;
    /// The body ended: emit what closes the response, or fail if it was cut short.
    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), LlmError>;
}

enum Wire {
    OpenAi(openai::Decoder),
    Anthropic(anthropic::Decoder),
}

/// The per-event half of a decoder: the wire format, the limits it shares across formats, and
/// the first failure (later events are ignored once one happened).
struct Events {
    provider: String,
    wire: Wire,
    tool_calls: usize,
    max_tool_calls: usize,
    failure: Option<LlmError>,
}

impl Events {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<ModelEvent>) {
        if self.failure.is_some() {
            return;
        }
        let before = out.len();
        let result = match &mut self.wire {
            Wire::OpenAi(d) => d.event(&event.event, &event.data, out),
            Wire::Anthropic(d) => d.event(&event.event, &event.data, out),
        };
        if let Err(err) = result {
            self.failure = Some(err);
            return;
        }
        for index in before..out.len() {
            if matches!(out[index], ModelEvent::ToolCallStarted { .. }) {
                self.tool_calls += 1;
                if self.tool_calls > self.max_tool_calls {
                    // The call over the limit, and what follows it, is never handed out.
                    out.truncate(index);
                    self.failure = Some(LlmError::TooLarge {
                        provider: self.provider.clone(),
                        what: "tool calls per response",
                        limit: self.max_tool_calls.to_string(),
                    });
                    return;
                }
            }
        }
    }

    fn take_failure(&mut self) -> Result<(), LlmError> {
        self.failure.take().map_or(Ok(()), Err)
    }
}

/// Decodes one streaming response of the given wire format.
pub struct Decoder {
    sse: SseParser,
    events: Events,
    received: u64,
    max_response_bytes: u64,
    max_event_bytes: usize,
}

impl Decoder {
    /// A decoder for a response from `provider` (named in errors).
    pub fn new(api: ProviderApi, provider: &str, limits: &ResponseLimits) -> Self {
        let wire = match api {
            ProviderApi::OpenAi => Wire::OpenAi(openai::Decoder::new(provider)),
            ProviderApi::Anthropic => Wire::Anthropic(anthropic::Decoder::new(provider)),
        };
        Self {
            sse: SseParser::new(limits.max_event_bytes),
            events: Events {
                provider: provider.to_owned(),
                wire,
                tool_calls: 0,
                max_tool_calls: limits.max_tool_calls,
                failure: None,
            },
            received: 0,
            max_response_bytes: limits.max_response_bytes,
            max_event_bytes: limits.max_event_bytes,
        }
    }

    /// Feeds the next bytes of the body, appending the events they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ModelEvent>) -> Result<(), LlmError> {
        self.received += bytes.len() as u64;
        if self.received > self.max_response_bytes {
            return Err(LlmError::TooLarge {
                provider: self.events.provider.clone(),
                what: "response size",
                limit: human_bytes(self.max_response_bytes),
            });
        }
        let events = &mut self.events;
        let result = self.sse.feed(bytes, &mut |event: SseEvent| events.on_event(&event, out));
        self.check(result)?;
        self.events.take_failure()
    }

    /// The body ended; fails if the response was cut short.
    pub fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), LlmError> {
        let events = &mut self.events;
        let result = self.sse.finish(&mut |event: SseEvent| events.on_event(&event, out));
        self.check(result)?;
        self.events.take_failure()?;
        match &mut self.events.wire {
            Wire::OpenAi(d) => d.finish(out),
            Wire::Anthropic(d) => d.finish(out),
        }
    }

    fn check(&self, result: Result<(), SseError>) -> Result<(), LlmError> {
        result.map_err(|err| match err {
            SseError::NotUtf8 { line } => LlmError::Protocol {
                provider: self.events.provider.clone(),
                message: format!("line {line} of the event stream is not UTF-8"),
            },
            SseError::TooLarge => LlmError::TooLarge {
                provider: self.events.provider.clone(),
                what: "single event size",
                limit: human_bytes(self.max_event_bytes as u64),
            },
        })
    }
}

/// Most characters of a provider message kept in an error.
const MAX_MESSAGE_CHARS: usize = 500;

/// A provider message made safe to show: control characters replaced, whitespace collapsed,
/// length capped.
pub(crate) fn clean_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    let mut count = 0;
    for word in message.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if count > 0 {
            out.push(' ');
        }
        for c in word.chars() {
            if count == MAX_MESSAGE_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
        count += 1;
    }
    out
}

/// Describes invalid JSON in an event's data: what was expected, where, and how it began.
pub(crate) fn json_error(expected: &str, data: &str, err: &serde_json::Error) -> String {
    let start: String = data.chars().take(80).collect();
    format!("expected {expected} as JSON ({err}); data began `{}`", clean_message(&start))
}

/// The provider's message from an error body: JSON `error.message`, `error` (a string),
/// `message` or `detail`; an HTML page's `<title>`; otherwise the start of the text.
pub(crate) fn error_body_message(body: &[u8], content_type: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty response body".to_owned();
    }
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        let found = json
            .pointer("/error/message")
            .or_else(|| json.get("error").filter(|e| e.is_string()))
            .or_else(|| json.get("message"))
            .or_else(|| json.get("detail"))
            .and_then(Value::as_str);
        if let Some(message) = found {
            return clean_message(message);
        }
        return clean_message(text);
    }
    let lower = text.to_ascii_lowercase();
    if content_type.contains("html")
        || lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
    {
        // ASCII lowercasing keeps byte offsets, so positions in `lower` index `text`.
        let title = lower
            .find("<title>")
            .map(|i| i + "<title>".len())
            .and_then(|start| lower[start..].find("</title>").map(|len| &text[start..start + len]));
        return match title {
            Some(title) if !title.trim().is_empty() => {
                format!(
                    "an HTML page titled \"{}\" instead of an API response",
                    clean_message(title)
                )
            }
            _ => "an HTML page instead of an API response".to_owned(),
        };
    }
    clean_message(text)
}

pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
