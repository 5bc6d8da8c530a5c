//! Model conversation and stream types: what a step sends to a model and what comes back.
//!
//! Owns the provider-neutral shapes that the durable run log stores and replays: messages and
//! their parts, tool definitions, the streamed `ModelEvent`s, token `Usage`, `FinishReason`, and
//! the collected `ModelResponse`. Field names are camelCase; enum tags are kebab-case, matching
//! the seed's event vocabulary (`tool-calls`, `content-filter`).
//!
//! Never knows a wire format: converting to and from OpenAI or Anthropic JSON is `ash-llm`'s job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of a conversation, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Message {
    /// What the user (or the runtime speaking for them) said.
    User {
        /// Text parts, in order.
        content: Vec<UserPart>,
    },
    /// What the model answered in one step.
    Assistant {
        /// Parts in the order the model produced them.
        content: Vec<AssistantPart>,
    },
    /// Results of the tool calls the previous assistant message requested.
    Tool {
        /// One result per call.
        content: Vec<ToolResultPart>,
    },
}

impl Message {
    /// A user message holding one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Self::User { content: vec![UserPart::Text { text: text.into() }] }
    }
}

/// A part of a user message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum UserPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
}

/// A part of an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AssistantPart {
    /// Visible text.
    Text {
        /// The text.
        text: String,
    },
    /// Reasoning the provider exposed (Anthropic thinking, OpenAI-compatible `reasoning_content`).
    Reasoning {
        /// The reasoning text.
        text: String,
        /// Provider signature that must be sent back unchanged with the block (Anthropic).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the provider returned encrypted; kept only to send back.
    RedactedReasoning {
        /// Opaque provider data.
        data: String,
    },
    /// A request to call a tool.
    ToolCall(ToolCall),
}

/// A tool call as the model wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// Provider-assigned call id; the matching result echoes it.
    pub id: String,
    /// Tool name as the model called it.
    pub name: String,
    /// The arguments exactly as the model produced them: JSON text, possibly invalid.
    /// `ash-llm` parses it; an invalid document goes back to the model as a tool error.
    pub arguments: String,
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultPart {
    /// The `ToolCall::id` this answers.
    pub call_id: String,
    /// The tool that ran.
    pub tool_name: String,
    /// Output text shown to the model (JSON results are serialised).
    pub output: String,
    /// Whether the call failed; the model sees the output as an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// Images the tool returned (an MCP tool's image content), shown to the model after the
    /// text where the provider takes images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ToolImage>,
}

/// An image in a tool result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolImage {
    /// Its media type, e.g. `image/png`.
    pub media_type: String,
    /// The image, base64-encoded.
    pub data: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDefinition {
    /// Model-visible name.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the input object.
    pub input_schema: Value,
}

/// How hard a reasoning model should think, where the provider supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasoningEffort {
    /// Least reasoning.
    Low,
    /// The provider's middle setting.
    Medium,
    /// Most reasoning.
    High,
}

/// One event of a streamed model response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ModelEvent {
    /// The provider accepted the request.
    ResponseStarted {
        /// Provider response id, when it sends one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The model that answered, when the provider says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// More visible text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// More reasoning text.
    ReasoningDelta {
        /// The new text.
        text: String,
    },
    /// The signature of the current reasoning block (Anthropic).
    ReasoningSignature {
        /// Opaque signature.
        signature: String,
    },
    /// An encrypted reasoning block (Anthropic `redacted_thinking`).
    RedactedReasoning {
        /// Opaque data.
        data: String,
    },
    /// A tool call begins.
    ToolCallStarted {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolCallDelta {
        /// Call id.
        id: String,
        /// The fragment, appended to what came before.
        delta: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnded {
        /// Call id.
        id: String,
    },
    /// Token usage so far; later reports replace earlier ones.
    Usage {
        /// The counts.
        usage: Usage,
    },
    /// The response is complete.
    Finished {
        /// Why the model stopped.
        reason: FinishReason,
    },
    /// The request failed after partial output and is being retried because the caller allowed
    /// it: everything since `ResponseStarted` is void; a new response follows.
    Retrying {
        /// The attempt about to start, from 2.
        attempt: u32,
        /// Why the previous attempt failed.
        error: String,
    },
}

/// Token counts for one model call.
///
/// `input_tokens` counts every prompt token the provider processed, including those read from or
/// written to a cache; the cache counts say how many of them were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens, cache included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

/// Why a model stopped, in the AI SDK's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The output token limit was reached.
    Length,
    /// The model wants tool results before it continues.
    ToolCalls,
    /// The provider withheld content.
    ContentFilter,
    /// The provider reported an error.
    Error,
    /// Anything else the provider said.
    Other,
}

/// A whole model response, collected from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelResponse {
    /// Provider response id, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model that answered, when the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The assistant message's parts, in order.
    pub content: Vec<AssistantPart>,
    /// Token usage.
    pub usage: Usage,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
}
