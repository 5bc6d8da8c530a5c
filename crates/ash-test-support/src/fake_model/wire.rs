//! Renders a `Turn` as the frames a real provider would stream.
//!
//! OpenAI Chat Completions: `data: {chunk}` frames (role, `reasoning_content`, `content`,
//! `tool_calls` fragments keyed by `index`, a finish chunk, a usage chunk when
//! `stream_options.include_usage` asked for it) and `data: [DONE]`. Anthropic Messages: named
//! events `message_start`, `ping`, `content_block_start|delta|stop`, `message_delta`,
//! `message_stop`. OpenAI Responses (as Codex reads it): `response.created`, per item
//! `response.output_item.added`, text deltas and `response.output_item.done` (`message`,
//! `function_call`, or `custom_tool_call` for a tool the request declared `custom`), then
//! `response.completed` with the usage. One frame per `Bytes`, so tests can drop the
//! connection between frames.

use ash_protocol::FinishReason;
use axum::body::Bytes;
use serde_json::{Value, json};

use super::{Turn, TurnPart};

#[derive(Debug, Clone, Copy)]
pub(super) enum Format {
    OpenAi,
    Anthropic,
    Responses,
}

pub(super) fn render(format: Format, turn: &Turn, model: &str, request: &Value) -> Vec<Bytes> {
    let include_usage =
        request.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
    match format {
        Format::OpenAi => openai(turn, model, include_usage),
        Format::Anthropic => anthropic(turn, model),
        Format::Responses => responses(turn, model, request),
    }
}

fn responses(turn: &Turn, model: &str, request: &Value) -> Vec<Bytes> {
    let event = |data: Value| {
        let name = data["type"].as_str().unwrap_or_default().to_owned();
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    };
    let custom = |name: &str| {
        request["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["type"] == "custom" && t["name"] == name))
    };
    let id = "resp_fake";
    let mut frames = vec![event(json!({"type": "response.created", "response": {
        "id": id, "object": "response", "status": "in_progress", "model": model, "output": [],
    }}))];
    let mut items = Vec::new();
    for (index, part) in turn.parts.iter().enumerate() {
        let item = match part {
            TurnPart::Text(text) => {
                frames.push(event(json!({"type": "response.output_item.added", "output_index": index,
                    "item": {"type": "message", "id": format!("msg_{index}"), "role": "assistant", "status": "in_progress", "content": []}})));
                for piece in pieces(text, turn.chunk_chars) {
                    frames.push(event(
                        json!({"type": "response.output_text.delta", "output_index": index,
                        "item_id": format!("msg_{index}"), "content_index": 0, "delta": piece}),
                    ));
                }
                json!({"type": "message", "id": format!("msg_{index}"), "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]})
            }
            TurnPart::Reasoning { text, .. } => {
                json!({"type": "reasoning", "id": format!("rs_{index}"),
                "summary": [{"type": "summary_text", "text": text}]})
            }
            TurnPart::ToolCall { id, name, arguments } if custom(name) => json!({
                "type": "custom_tool_call", "id": format!("ctc_{index}"), "call_id": id, "name": name,
                "input": arguments, "status": "completed"}),
            TurnPart::ToolCall { id, name, arguments } => json!({
                "type": "function_call", "id": format!("fc_{index}"), "call_id": id, "name": name,
                "arguments": arguments, "status": "completed"}),
        };
        frames.push(event(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        ));
        items.push(item);
    }
    let u = turn.usage;
    frames.push(event(json!({"type": "response.completed", "response": {
        "id": id, "object": "response", "status": "completed", "model": model, "output": items,
        "usage": {
            "input_tokens": u.input + u.cache_read,
            "input_tokens_details": {"cached_tokens": u.cache_read},
            "output_tokens": u.output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.input + u.cache_read + u.output,
        },
    }})));
    frames
}

fn pieces(text: &str, chars: usize) -> Vec<String> {
    let all: Vec<char> = text.chars().collect();
    all.chunks(chars.max(1)).map(|c| c.iter().collect()).collect()
}

fn has_calls(turn: &Turn) -> bool {
    turn.parts.iter().any(|p| matches!(p, TurnPart::ToolCall { .. }))
}

fn openai(turn: &Turn, model: &str, include_usage: bool) -> Vec<Bytes> {
    let chunk = |delta: Value, finish: Value| {
        let body = json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {body}\n\n"))
    };
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let mut calls: Vec<Vec<Value>> = Vec::new();
    for part in &turn.parts {
        match part {
            TurnPart::Text(text) => {
                for piece in pieces(text, turn.chunk_chars) {
                    frames.push(chunk(json!({"content": piece}), Value::Null));
                }
            }
            TurnPart::Reasoning { text, .. } => {
                for piece in pieces(text, turn.chunk_chars) {
                    frames.push(chunk(json!({"reasoning_content": piece}), Value::Null));
                }
            }
            TurnPart::ToolCall { id, name, arguments } => {
                let index = calls.len();
                let mut deltas = vec![json!({"tool_calls": [{
                    "index": index, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]})];
                for piece in pieces(arguments, turn.chunk_chars) {
                    deltas.push(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                    );
                }
                if turn.interleave {
                    calls.push(deltas);
                } else {
                    frames.extend(deltas.into_iter().map(|d| chunk(d, Value::Null)));
                    calls.push(Vec::new());
                }
            }
        }
    }
    // Interleaved: the first fragment of each call, then the second of each, and so on.
    let longest = calls.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..longest {
        for call in &calls {
            if let Some(delta) = call.get(round) {
                frames.push(chunk(delta.clone(), Value::Null));
            }
        }
    }
    let finish = match turn.finish {
        Some(FinishReason::Stop) => "stop",
        Some(FinishReason::Length) => "length",
        Some(FinishReason::ToolCalls) => "tool_calls",
        Some(FinishReason::ContentFilter) => "content_filter",
        Some(FinishReason::Error | FinishReason::Other) => "other",
        None if has_calls(turn) => "tool_calls",
        None => "stop",
    };
    frames.push(chunk(json!({}), json!(finish)));
    if include_usage {
        let u = turn.usage;
        let body = json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": u.input + u.cache_read,
                "completion_tokens": u.output,
                "total_tokens": u.input + u.cache_read + u.output,
                "prompt_tokens_details": {"cached_tokens": u.cache_read},
            },
        });
        frames.push(Bytes::from(format!("data: {body}\n\n")));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn anthropic(turn: &Turn, model: &str) -> Vec<Bytes> {
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let u = turn.usage;
    let mut frames = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {
                    "input_tokens": u.input,
                    "cache_creation_input_tokens": u.cache_write,
                    "cache_read_input_tokens": u.cache_read,
                    "output_tokens": 1,
                },
            }}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for (index, part) in turn.parts.iter().enumerate() {
        let delta = |delta: Value| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )
        };
        let (start, deltas): (Value, Vec<Bytes>) = match part {
            TurnPart::Text(text) => (
                json!({"type": "text", "text": ""}),
                pieces(text, turn.chunk_chars)
                    .into_iter()
                    .map(|p| delta(json!({"type": "text_delta", "text": p})))
                    .collect(),
            ),
            TurnPart::Reasoning { text, signature } => {
                let mut deltas: Vec<Bytes> = pieces(text, turn.chunk_chars)
                    .into_iter()
                    .map(|p| delta(json!({"type": "thinking_delta", "thinking": p})))
                    .collect();
                deltas.push(delta(json!({"type": "signature_delta", "signature": signature})));
                (json!({"type": "thinking", "thinking": ""}), deltas)
            }
            TurnPart::ToolCall { id, name, arguments } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                pieces(arguments, turn.chunk_chars)
                    .into_iter()
                    .map(|p| delta(json!({"type": "input_json_delta", "partial_json": p})))
                    .collect(),
            ),
        };
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        frames.extend(deltas);
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    let stop = match turn.finish {
        Some(FinishReason::Stop) => "end_turn",
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Error | FinishReason::Other) => "pause_turn",
        None if has_calls(turn) => "tool_use",
        None => "end_turn",
    };
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": u.output}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    frames
}
