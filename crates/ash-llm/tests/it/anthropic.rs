//! Anthropic Messages end to end: headers, thinking, tool use, cache usage, history encoding.

use ash_llm::ModelRequest;
use ash_protocol::{
    AssistantPart, FinishReason, Message, ModelResponse, ReasoningEffort, ToolCall, ToolResultPart,
    Usage,
};
use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::json;

use crate::{KEY, client_with, complete, fast_config, request, weather_tool};

#[tokio::test]
async fn thinking_text_tool_use_and_cache_usage() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(
        Turn::empty()
            .then_reasoning("The user wants weather; call the tool.", "sig-123")
            .then_text("Let me check.")
            .then_tool_call("toolu_1", "get_weather", r#"{"city": "Paris"}"#)
            .then_tool_call("toolu_2", "get_weather", r#"{"city": "Rome"}"#)
            .usage(20, 30, 100, 50)
            .chunk_chars(5),
    ));
    let client = client_with(&server, fast_config());
    let mut req = request("Weather in Paris and Rome?");
    req.tools = vec![weather_tool()];
    req.reasoning_effort = Some(ReasoningEffort::Medium);
    req.temperature = Some(0.2);

    let response = complete(&client, "anthropic/claude-test", &req).await.unwrap();

    let call = |id: &str, city: &str| {
        AssistantPart::ToolCall(ToolCall {
            id: id.to_owned(),
            name: "get_weather".to_owned(),
            arguments: format!(r#"{{"city": "{city}"}}"#),
        })
    };
    assert_eq!(
        response,
        ModelResponse {
            id: Some("msg_fake".to_owned()),
            model: Some("claude-test".to_owned()),
            content: vec![
                AssistantPart::Reasoning {
                    text: "The user wants weather; call the tool.".to_owned(),
                    signature: Some("sig-123".to_owned()),
                },
                AssistantPart::Text { text: "Let me check.".to_owned() },
                call("toolu_1", "Paris"),
                call("toolu_2", "Rome"),
            ],
            usage: Usage {
                input_tokens: 170,
                output_tokens: 30,
                cache_read_tokens: 100,
                cache_write_tokens: 50
            },
            finish_reason: FinishReason::ToolCalls,
        }
    );
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-test",
            "max_tokens": 8192 + 8192,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]}],
            "stream": true,
            "system": "Be brief.",
            "tools": [{
                "name": "get_weather",
                "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }],
            "thinking": {"type": "enabled", "budget_tokens": 8192},
        })
    );
}

#[tokio::test]
async fn history_alternates_and_keeps_signed_thinking() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("Paris is sunny.").finish(FinishReason::Length)));
    let client = client_with(&server, fast_config());
    let req = ModelRequest {
        system: String::new(),
        messages: vec![
            Message::user("Weather?"),
            Message::Assistant {
                content: vec![
                    AssistantPart::Reasoning {
                        text: "signed".to_owned(),
                        signature: Some("s1".to_owned()),
                    },
                    AssistantPart::Reasoning {
                        text: "from another provider".to_owned(),
                        signature: None,
                    },
                    AssistantPart::RedactedReasoning { data: "opaque".to_owned() },
                    AssistantPart::Text { text: String::new() },
                    AssistantPart::ToolCall(ToolCall {
                        id: "t1".to_owned(),
                        name: "get_weather".to_owned(),
                        arguments: r#"{"city":"Paris"}"#.to_owned(),
                    }),
                    AssistantPart::ToolCall(ToolCall {
                        id: "t2".to_owned(),
                        name: "get_weather".to_owned(),
                        arguments: r#"{"city":"#.to_owned(),
                    }),
                ],
            },
            Message::Tool {
                content: vec![
                    ToolResultPart {
                        call_id: "t1".to_owned(),
                        tool_name: "get_weather".to_owned(),
                        output: "sunny".to_owned(),
                        is_error: false,
                        images: Vec::new(),
                    },
                    ToolResultPart {
                        call_id: "t2".to_owned(),
                        tool_name: "get_weather".to_owned(),
                        output: "invalid arguments".to_owned(),
                        is_error: true,
                        images: Vec::new(),
                    },
                ],
            },
            Message::user("And tomorrow?"),
        ],
        max_tokens: Some(100),
        temperature: Some(0.0),
        ..ModelRequest::default()
    };
    let response = complete(&client, "anthropic/claude-test", &req).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::Length);
    let body = &server.requests()[0].body;
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(body["temperature"], 0.0);
    assert!(body.get("system").is_none());
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "signed", "signature": "s1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "t2", "name": "get_weather", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "invalid arguments", "is_error": true},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ])
    );
}

#[tokio::test]
async fn unknown_events_blocks_and_deltas_are_tolerated() {
    let server = FakeModelServer::start().await;
    server.push(Reply::sse(&[
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: shiny_new_event\ndata: {\"type\":\"shiny_new_event\",\"x\":1}\n\n",
        ": a comment line\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"s\",\"name\":\"web_search\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ]));
    let client = client_with(&server, fast_config());
    let response = complete(&client, "anthropic/c", &request("x")).await.unwrap();
    assert_eq!(
        response,
        ModelResponse {
            id: Some("m".to_owned()),
            model: Some("c".to_owned()),
            content: vec![AssistantPart::Text { text: "ok".to_owned() }],
            usage: Usage { input_tokens: 3, output_tokens: 2, ..Usage::default() },
            finish_reason: FinishReason::Stop,
        }
    );
}
