//! `ModelRequest`: what one model call sends, independent of the wire format.
//!
//! Owns the provider-neutral request and the parsing of a tool call's argument text. Never
//! knows how a provider spells any of it; `openai.rs` and `anthropic.rs` translate.

use ash_protocol::{Message, ReasoningEffort, ToolCall, ToolDefinition};
use serde_json::{Map, Value};

/// One model call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelRequest {
    /// The system prompt; empty for none.
    pub system: String,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Cap on generated tokens; the provider's default when `None` (Anthropic requires one, so
    /// ash sends [`DEFAULT_ANTHROPIC_MAX_TOKENS`]).
    pub max_tokens: Option<u32>,
    /// Sampling temperature; the provider's default when `None`.
    pub temperature: Option<f32>,
    /// Reasoning effort for models that support it (OpenAI `reasoning_effort`, Anthropic
    /// extended thinking with a budget per level).
    pub reasoning_effort: Option<ReasoningEffort>,
}

/// `max_tokens` sent to Anthropic when the request sets none.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u32 = 8192;

/// Why a tool call's arguments are unusable; the runtime sends this back to the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("arguments of tool `{tool}` (call {call_id}) {problem}")]
pub struct ToolArgumentsError {
    /// The tool the model called.
    pub tool: String,
    /// The call id.
    pub call_id: String,
    /// What is wrong.
    pub problem: String,
}

/// Parses a tool call's argument text into the JSON object the tool receives. Empty text (what
/// some providers send for a tool without parameters) is `{}`.
pub fn tool_input(call: &ToolCall) -> Result<Map<String, Value>, ToolArgumentsError> {
    let error = |problem: String| ToolArgumentsError {
        tool: call.name.clone(),
        call_id: call.id.clone(),
        problem,
    };
    if call.arguments.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(error(format!("must be a JSON object, not {}", kind(&other)))),
        Err(err) => Err(error(format!("are not valid JSON: {err}"))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
