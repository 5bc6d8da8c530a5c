//! OpenAI-compatible Chat Completions end to end: the request on the wire, the events, the
//! collected response.

use ash_llm::{ModelRequest, tool_input};
use ash_protocol::{
    AssistantPart, FinishReason, Message, ModelEvent, ModelResponse, ReasoningEffort, ToolCall,
    ToolResultPart, Usage,
};
use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::json;

use crate::{KEY, client_with, complete, events, fast_config, model, request, weather_tool};

#[tokio::test]
async fn text_with_usage_and_the_exact_request() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("Hello, world! It is sunny.").usage(12, 7, 3, 0)));
    let client = client_with(&server, fast_config());
    let mut req = request("Weather?");
    req.tools = vec![weather_tool()];
    req.max_tokens = Some(256);
    req.temperature = Some(0.5);
    req.reasoning_effort = Some(ReasoningEffort::Low);

    let response = complete(&client, "openai/gpt-test", &req).await.unwrap();

    assert_eq!(
        response,
        ModelResponse {
            id: Some("chatcmpl-fake".to_owned()),
            model: Some("gpt-test".to_owned()),
            content: vec![AssistantPart::Text { text: "Hello, world! It is sunny.".to_owned() }],
            usage: Usage {
                input_tokens: 15,
                output_tokens: 7,
                cache_read_tokens: 3,
                cache_write_tokens: 0
            },
            finish_reason: FinishReason::Stop,
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(sent.headers["accept"], "text/event-stream");
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }}],
            "max_completion_tokens": 256,
            "temperature": 0.5,
            "reasoning_effort": "low",
        })
    );
}

#[tokio::test]
async fn events_stream_in_order() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(
        Turn::empty()
            .then_reasoning("Think.", "")
            .then_text("Hi there")
            .then_tool_call("c1", "get_weather", r#"{"city":"Oslo"}"#)
            .chunk_chars(6),
    ));
    let client = client_with(&server, fast_config());
    let (events, error) = events(&model(&client, "openai/gpt-test"), &request("x")).await;
    assert!(error.is_none(), "{error:?}");
    let text = |t: &str| ModelEvent::TextDelta { text: t.to_owned() };
    assert_eq!(
        events,
        vec![
            ModelEvent::ResponseStarted {
                id: Some("chatcmpl-fake".to_owned()),
                model: Some("gpt-test".to_owned())
            },
            ModelEvent::ReasoningDelta { text: "Think.".to_owned() },
            text("Hi the"),
            text("re"),
            ModelEvent::ToolCallStarted { id: "c1".to_owned(), name: "get_weather".to_owned() },
            ModelEvent::ToolCallDelta { id: "c1".to_owned(), delta: r#"{"city"#.to_owned() },
            ModelEvent::ToolCallDelta { id: "c1".to_owned(), delta: r#"":"Osl"#.to_owned() },
            ModelEvent::ToolCallDelta { id: "c1".to_owned(), delta: r#"o"}"#.to_owned() },
            ModelEvent::Usage {
                usage: Usage { input_tokens: 10, output_tokens: 5, ..Usage::default() }
            },
            ModelEvent::ToolCallEnded { id: "c1".to_owned() },
            ModelEvent::Finished { reason: FinishReason::ToolCalls },
        ]
    );
}

#[tokio::test]
async fn parallel_tool_calls_with_interleaved_fragments() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(
        Turn::empty()
            .then_tool_call("call_a", "get_weather", r#"{"city": "Paris"}"#)
            .then_tool_call("call_b", "get_weather", r#"{"city": "Lisbon"}"#)
            .then_tool_call("call_c", "get_time", "")
            .interleave()
            .chunk_chars(3),
    ));
    let client = client_with(&server, fast_config());
    let response = complete(&client, "openai/gpt-test", &request("x")).await.unwrap();
    let call = |id: &str, name: &str, arguments: &str| {
        AssistantPart::ToolCall(ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        })
    };
    assert_eq!(
        response.content,
        vec![
            call("call_a", "get_weather", r#"{"city": "Paris"}"#),
            call("call_b", "get_weather", r#"{"city": "Lisbon"}"#),
            call("call_c", "get_time", ""),
        ]
    );
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    let AssistantPart::ToolCall(b) = &response.content[1] else { unreachable!() };
    assert_eq!(tool_input(b).unwrap(), json!({"city": "Lisbon"}).as_object().unwrap().clone());
    let AssistantPart::ToolCall(c) = &response.content[2] else { unreachable!() };
    assert_eq!(tool_input(c).unwrap(), serde_json::Map::new());
}

#[tokio::test]
async fn history_with_tool_results_is_sent_in_chat_format() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("Done.")));
    let client = client_with(&server, fast_config());
    let req = ModelRequest {
        system: String::new(),
        messages: vec![
            Message::user("Weather in Paris and Oslo?"),
            Message::Assistant {
                content: vec![
                    AssistantPart::Reasoning { text: "two calls".to_owned(), signature: None },
                    AssistantPart::Text { text: "Checking.".to_owned() },
                    AssistantPart::ToolCall(ToolCall {
                        id: "a".to_owned(),
                        name: "get_weather".to_owned(),
                        arguments: r#"{"city":"Paris"}"#.to_owned(),
                    }),
                    AssistantPart::ToolCall(ToolCall {
                        id: "b".to_owned(),
                        name: "get_weather".to_owned(),
                        arguments: r#"{"city":"Oslo"}"#.to_owned(),
                    }),
                ],
            },
            Message::Tool {
                content: vec![
                    ToolResultPart {
                        call_id: "a".to_owned(),
                        tool_name: "get_weather".to_owned(),
                        output: "sunny".to_owned(),
                        is_error: false,
                        images: Vec::new(),
                    },
                    ToolResultPart {
                        call_id: "b".to_owned(),
                        tool_name: "get_weather".to_owned(),
                        output: "unknown city".to_owned(),
                        is_error: true,
                        images: Vec::new(),
                    },
                ],
            },
        ],
        ..ModelRequest::default()
    };
    complete(&client, "openai/gpt-test", &req).await.unwrap();
    assert_eq!(
        server.requests()[0].body["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "b", "content": "Error: unknown city"},
        ])
    );
}

#[tokio::test]
async fn compatible_servers_without_ids_or_done() {
    // Ollama-style: whole tool call in one chunk without an id, `finish_reason: "stop"` and no
    // `[DONE]` before the connection closes.
    let server = FakeModelServer::start().await;
    server.push(Reply::sse(&[
        "data: {\"model\":\"qwen\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Rome\\\"}\"}}]}}]}\n\n",
        "data: {\"model\":\"qwen\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    ]));
    let client = client_with(&server, fast_config());
    let response = complete(&client, "openai/qwen", &request("x")).await.unwrap();
    assert_eq!(
        response,
        ModelResponse {
            id: None,
            model: Some("qwen".to_owned()),
            content: vec![AssistantPart::ToolCall(ToolCall {
                id: "call_0".to_owned(),
                name: "get_weather".to_owned(),
                arguments: r#"{"city":"Rome"}"#.to_owned(),
            })],
            usage: Usage::default(),
            finish_reason: FinishReason::ToolCalls,
        }
    );
}

#[tokio::test]
async fn invalid_tool_arguments_reach_the_caller_as_typed_errors() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(
        Turn::empty()
            .then_tool_call("a", "get_weather", r#"{"city": "Par"#)
            .then_tool_call("b", "get_weather", r#"["Paris"]"#)
            .finish(FinishReason::Length),
    ));
    let client = client_with(&server, fast_config());
    let response = complete(&client, "openai/m", &request("x")).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::Length);
    let errors: Vec<String> = response
        .content
        .iter()
        .filter_map(|part| match part {
            AssistantPart::ToolCall(call) => Some(tool_input(call).unwrap_err().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            "arguments of tool `get_weather` (call a) are not valid JSON: EOF while parsing a string at line 1 column 13",
            "arguments of tool `get_weather` (call b) must be a JSON object, not an array",
        ]
    );
}
