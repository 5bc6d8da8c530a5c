//! The decoder on raw bytes: chunk boundaries anywhere, hostile input, limits.

use ash_llm::{Decoder, LlmError, ResponseLimits};
use ash_protocol::ModelEvent;
use ash_spec::ProviderApi;
use pretty_assertions::assert_eq;

const OPENAI: &str = concat!(
    "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"h\u{e9}llo \u{1f600}\"}}]}\r\n\r\n",
    ": keep-alive\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"ignored second choice\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n",
    "data: [DONE]\n\n",
    "data: {\"after\":\"done is ignored\"}\n\n",
);

const ANTHROPIC: &str = concat!(
    "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"x\",\"model\":\"c\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\r\n\r\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hm\u{e9}\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"opaque\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\"},\"usage\":{\"output_tokens\":3}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn decode(
    api: ProviderApi,
    chunks: &[&[u8]],
    limits: &ResponseLimits,
) -> Result<Vec<ModelEvent>, String> {
    let mut decoder = Decoder::new(api, "p", limits);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut out).map_err(|e| e.to_string())?;
    }
    decoder.finish(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn every_split_point_gives_the_same_events() {
    let limits = ResponseLimits::default();
    for (api, text) in [(ProviderApi::OpenAi, OPENAI), (ProviderApi::Anthropic, ANTHROPIC)] {
        let bytes = text.as_bytes();
        let whole = decode(api, &[bytes], &limits).unwrap();
        for cut in 1..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(decode(api, &[a, b], &limits).unwrap(), whole, "{api:?} cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(api, &bytewise, &limits).unwrap(), whole);
    }
}

#[test]
fn openai_events() {
    let events =
        decode(ProviderApi::OpenAi, &[OPENAI.as_bytes()], &ResponseLimits::default()).unwrap();
    assert_eq!(
        events,
        vec![
            ModelEvent::ResponseStarted { id: Some("c".into()), model: Some("m".into()) },
            ModelEvent::TextDelta { text: "h\u{e9}llo \u{1f600}".into() },
            ModelEvent::ToolCallStarted { id: "a".into(), name: "f".into() },
            ModelEvent::ToolCallDelta { id: "a".into(), delta: "{\"x\":".into() },
            ModelEvent::ToolCallDelta { id: "a".into(), delta: "1}".into() },
            ModelEvent::Usage {
                usage: ash_protocol::Usage {
                    input_tokens: 9,
                    output_tokens: 4,
                    ..Default::default()
                }
            },
            ModelEvent::ToolCallEnded { id: "a".into() },
            ModelEvent::Finished { reason: ash_protocol::FinishReason::ToolCalls },
        ]
    );
}

#[test]
fn anthropic_events() {
    let events =
        decode(ProviderApi::Anthropic, &[ANTHROPIC.as_bytes()], &ResponseLimits::default())
            .unwrap();
    let usage = |output| ModelEvent::Usage {
        usage: ash_protocol::Usage { input_tokens: 5, output_tokens: output, ..Default::default() },
    };
    assert_eq!(
        events,
        vec![
            ModelEvent::ResponseStarted { id: Some("x".into()), model: Some("c".into()) },
            usage(1),
            ModelEvent::ReasoningDelta { text: "hm\u{e9}".into() },
            ModelEvent::ReasoningSignature { signature: "sig".into() },
            ModelEvent::RedactedReasoning { data: "opaque".into() },
            usage(3),
            ModelEvent::Finished { reason: ash_protocol::FinishReason::ContentFilter },
        ]
    );
}

#[test]
fn hostile_input() {
    let small =
        ResponseLimits { max_event_bytes: 256, max_tool_calls: 2, ..ResponseLimits::default() };
    let calls = (0..3)
        .map(|i| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{i},\"id\":\"c{i}\",\"function\":{{\"name\":\"f\"}}}}]}}}}]}}\n\n"))
        .collect::<String>();
    let anthropic_calls = (0..3)
        .map(|i| format!("event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t{i}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"))
        .collect::<String>();
    let cases: Vec<(ProviderApi, Vec<u8>, &str)> = vec![
        (ProviderApi::OpenAi, calls.into_bytes(), "p: response exceeds the tool calls per response limit of 2"),
        (
            ProviderApi::Anthropic,
            format!("event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{}}}}\n\n{anthropic_calls}").into_bytes(),
            "p: response exceeds the tool calls per response limit of 2",
        ),
        (ProviderApi::OpenAi, vec![b'a'; 300], "p: response exceeds the single event size limit of 256 bytes"),
        (ProviderApi::OpenAi, b"data: [1,2]\n\n".to_vec(), "p: malformed response: expected a chat completion chunk as JSON (invalid type: integer `1`, expected a string at line 1 column 2); data began `[1,2]`"),
        (ProviderApi::OpenAi, b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n".to_vec(), "p: malformed response: tool call 0 (`call_0`) never received a name"),
        (ProviderApi::OpenAi, Vec::new(), "p: malformed response: the stream ended before a finish reason (truncated response)"),
        (ProviderApi::Anthropic, b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec(), "p: malformed response: message_stop before message_start"),
        (ProviderApi::Anthropic, b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n".to_vec(), "p: malformed response: message_start without `message`"),
        (ProviderApi::Anthropic, b"data: {\"no_type\":1}\n\n".to_vec(), "p: malformed response: expected an event as JSON (missing field `type` at line 1 column 13); data began `{\"no_type\":1}`"),
        (
            ProviderApi::Anthropic,
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n".to_vec(),
            "p: malformed response: input_json_delta for block Some(0) of another kind",
        ),
        (ProviderApi::Anthropic, b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\"}}\n\n".to_vec(), "p: malformed response: tool_use block 0 has no id or name"),
    ];
    for (api, bytes, want) in cases {
        assert_eq!(
            decode(api, &[&bytes], &small),
            Err(want.to_owned()),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn errors_are_typed() {
    let mut decoder = Decoder::new(ProviderApi::OpenAi, "p", &ResponseLimits::default());
    let err = decoder.feed(b"data: {\"error\":{\"message\":\"Rate\\nlimited\",\"type\":\"rate_limit_exceeded\"}}\n\n", &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, LlmError::Provider { retryable: true, .. }), "{err:?}");
    assert_eq!(err.to_string(), "p: provider error (rate_limit_exceeded): Rate limited");
}
