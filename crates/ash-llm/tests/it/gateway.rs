//! The model gateway against the fake model server: the real key reaches the provider and
//! only there, the agent's placeholder goes no further, and calls the run may not make are
//! refused with the error body of the API they spoke.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ash_llm::gateway::{DirectUpstream, Gateway, GatewayConfig, GatewayUsage, UsageMeter};
use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{KEY, client_with, fast_config};

const PLACEHOLDER: &str = "ash-placeholder-0123";

async fn gateway(server: &FakeModelServer, provider: &str, config: GatewayConfig) -> Gateway {
    let client = client_with(server, fast_config());
    let provider = client.providers().get(provider).unwrap();
    let upstream =
        DirectUpstream::new(provider, Duration::from_secs(2), CancellationToken::new()).unwrap();
    Gateway::start(Arc::new(upstream), config, None, true).await.unwrap()
}

fn config() -> GatewayConfig {
    GatewayConfig { token: PLACEHOLDER.into(), model: None, max_calls: None, max_tokens: None }
}

async fn post(
    gateway: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, String) {
    let base = gateway.base_url().unwrap();
    let url = format!("{}{path}", base.trim_end_matches("/v1"));
    let mut request = reqwest::Client::new().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_key_is_added_on_the_way_out_and_the_placeholder_stays_behind() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("hi").usage(11, 7, 2, 3)));
    server.push(Reply::Turn(Turn::text("hello").usage(5, 4, 0, 0)));
    let gw = gateway(&server, "anthropic", config()).await;
    let body = json!({"model": "claude-x", "max_tokens": 10, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let headers = [
        ("x-api-key", PLACEHOLDER),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "claude-code-20250219"),
        ("x-claude-code-session-id", "session-1"),
    ];
    let (status, text) = post(&gw, "/v1/messages?beta=true", &headers, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    let (status, _) = post(&gw, "/v1/messages", &headers, &body).await;
    assert_eq!(status, 200);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.path, "/v1/messages");
    assert_eq!(first.headers.get("x-api-key").map(String::as_str), Some(KEY));
    assert_eq!(
        first.headers.get("anthropic-beta").map(String::as_str),
        Some("claude-code-20250219")
    );
    assert_eq!(first.headers.get("x-claude-code-session-id"), None);
    assert_eq!(first.body, body);
    for request in &requests {
        assert!(!format!("{request:?}").contains(PLACEHOLDER), "{request:?}");
    }
    let usage = gw.stop().await;
    assert_eq!(
        usage,
        GatewayUsage {
            calls: 2,
            refused: 0,
            models: BTreeSet::from(["claude-x".to_owned()]),
            input_tokens: 11 + 2 + 3 + 5,
            output_tokens: 7 + 4,
        }
    );
}

#[tokio::test]
async fn openai_calls_carry_the_key_as_a_bearer_token() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("ok").usage(3, 2, 0, 0)));
    let gw = gateway(&server, "openai", config()).await;
    let body = json!({"model": "gpt-x", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let auth = format!("Bearer {PLACEHOLDER}");
    let (status, text) =
        post(&gw, "/v1/chat/completions", &[("authorization", auth.as_str())], &body).await;
    assert_eq!(status, 200, "{text}");
    let requests = server.requests();
    assert_eq!(
        requests[0].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {KEY}").as_str())
    );
    // An Anthropic route on an OpenAI provider goes nowhere.
    let (status, text) = post(
        &gw,
        "/v1/messages",
        &[("x-api-key", PLACEHOLDER)],
        &json!({"model": "gpt-x", "messages": []}),
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(server.requests().len(), 1);
    let usage = gw.stop().await;
    assert_eq!((usage.input_tokens, usage.output_tokens), (3, 2));
}

#[tokio::test]
async fn calls_the_run_may_not_make_are_refused_before_the_provider_sees_them() {
    let server = FakeModelServer::start().await;
    server.repeat().push(Reply::Turn(Turn::text("ok").usage(60, 50, 0, 0)));
    let limited = GatewayConfig {
        model: Some("claude-x".into()),
        max_calls: Some(3),
        max_tokens: Some(200),
        ..config()
    };
    let gw = gateway(&server, "anthropic", limited).await;
    let good = json!({"model": "claude-x", "stream": true, "messages": []});
    let key = [("x-api-key", PLACEHOLDER)];
    let anthropic_error = |kind: &str, message: &str| {
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Value, u16, String);
    let cases: Vec<Case<'_>> = vec![
        (
            "no key",
            vec![],
            good.clone(),
            401,
            anthropic_error(
                "authentication_error",
                "this gateway takes only the key it gave its agent",
            ),
        ),
        (
            "the real key's place taken by another",
            vec![("x-api-key", "sk-other")],
            good.clone(),
            401,
            anthropic_error(
                "authentication_error",
                "this gateway takes only the key it gave its agent",
            ),
        ),
        (
            "another model",
            key.to_vec(),
            json!({"model": "claude-opus", "messages": []}),
            400,
            anthropic_error(
                "invalid_request_error",
                "this run may call only the model `claude-x`, not `claude-opus`",
            ),
        ),
        (
            "no model",
            key.to_vec(),
            json!({"messages": []}),
            400,
            anthropic_error("invalid_request_error", "the body must be JSON naming a `model`"),
        ),
    ];
    for (case, headers, body, status, expected) in cases {
        assert_eq!(post(&gw, "/v1/messages", &headers, &body).await, (status, expected), "{case}");
    }
    assert_eq!(server.requests().len(), 0);
    // 110 tokens a call: the second call passes (110 < 200), the third finds the budget spent.
    for _ in 0..2 {
        assert_eq!(post(&gw, "/v1/messages", &key, &good).await.0, 200);
    }
    assert_eq!(
        post(&gw, "/v1/messages", &key, &good).await,
        (429, anthropic_error("budget_exceeded", "this run's budget of 200 tokens is spent"))
    );
    assert_eq!(server.requests().len(), 2);
    // Unknown routes and a preflight.
    let base = gw.base_url().unwrap();
    let root = base.trim_end_matches("/v1");
    let client = reqwest::Client::new();
    assert_eq!(client.head(root).send().await.unwrap().status().as_u16(), 200);
    let other = client.post(format!("{root}/v1/files")).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let usage = gw.stop().await;
    assert_eq!((usage.calls, usage.refused), (2, 6));
}

#[tokio::test]
async fn a_provider_that_is_down_is_a_bad_gateway_that_names_no_key() {
    let server = FakeModelServer::start().await;
    let gw = gateway(&server, "anthropic", config()).await;
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, text) = post(
        &gw,
        "/v1/messages",
        &[("x-api-key", PLACEHOLDER)],
        &json!({"model": "claude-x", "messages": []}),
    )
    .await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("anthropic: "), "{text}");
    assert!(!text.contains(KEY), "{text}");
}

#[test]
fn the_meter_reads_each_wire_format_and_skips_what_is_not_usage() {
    let cases: [(&str, &str, (u64, u64)); 5] = [
        (
            "anthropic",
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"cache_read_input_tokens\":1,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12}}\n\n",
            (10, 12),
        ),
        (
            "responses",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":30,\"output_tokens\":4}}}\n\n",
            (30, 4),
        ),
        (
            "chat",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
            (8, 2),
        ),
        ("whole json", "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}", (5, 6)),
        ("junk", "data: {not json\n\ndata: 12\n\n", (0, 0)),
    ];
    for (case, text, expected) in cases {
        // Fed a byte at a time: a line split anywhere still counts.
        let mut meter = UsageMeter::default();
        for byte in text.as_bytes() {
            meter.feed(std::slice::from_ref(byte));
        }
        assert_eq!(meter.tokens(), expected, "{case}");
    }
}

#[tokio::test]
async fn provider_run_tools_are_taken_out_and_unmeterable_calls_refused() {
    let server = FakeModelServer::start().await;
    server.repeat().push(Reply::Turn(Turn::text("ok").usage(3, 2, 0, 0)));
    let gw = gateway(&server, "anthropic", config()).await;
    let key = [("x-api-key", PLACEHOLDER)];
    let body = json!({
        "model": "claude-x",
        "messages": [],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search"},
            {"name": "Write", "input_schema": {"type": "object"}},
            {"type": "code_execution_20250522", "name": "code_execution"},
        ],
        "mcp_servers": [{"type": "url", "url": "https://example.com/mcp"}],
    });
    assert_eq!(post(&gw, "/v1/messages", &key, &body).await.0, 200);
    let sent = &server.requests()[0].body;
    assert_eq!(
        (sent["tools"].clone(), sent.get("mcp_servers")),
        (json!([{"name": "Write", "input_schema": {"type": "object"}}]), None)
    );
    assert_eq!(sent["model"], "claude-x");
    // A body without provider-run tools goes on byte for byte.
    let plain = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post(&gw, "/v1/messages", &key, &plain).await.0, 200);
    assert_eq!(server.requests()[1].body, plain);
    let refused = |message: &str| {
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
            .to_string()
    };
    for (body, why) in [
        (
            json!({"model": "claude-x", "background": true}),
            "background answers are not allowed here",
        ),
        (json!({"model": "claude-x", "n": 3}), "one answer per call (`n` must be 1)"),
        (json!(["model"]), "the body must be a JSON object"),
    ] {
        assert_eq!(post(&gw, "/v1/messages", &key, &body).await, (400, refused(why)), "{body}");
    }
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn an_answer_that_hides_its_usage_is_charged_by_its_bytes() {
    let mut meter = UsageMeter::default();
    meter.feed(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"hello there\"}}]}\n\ndata: [DONE]\n\n",
    );
    assert_eq!(meter.tokens(), (0, 0));
    assert_eq!(meter.charged(400), (100, 17));
    let mut reported = UsageMeter::default();
    reported.feed(b"data: {\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2}}\n\n");
    assert_eq!(reported.charged(400), (8, 2));
}

#[tokio::test]
async fn bodies_built_to_read_two_ways_are_refused_or_made_plain() {
    let server = FakeModelServer::start().await;
    server.repeat().push(Reply::Turn(Turn::text("ok").usage(3, 2, 0, 0)));
    let gw = gateway(&server, "openai", config()).await;
    let auth = format!("Bearer {PLACEHOLDER}");
    let send = |body: String| {
        let url = format!("{}/chat/completions", gw.base_url().unwrap());
        let auth = auth.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let refused = |message: &str| {
        json!({"error": {"type": "invalid_request_error", "message": message, "code": "invalid_request_error"}})
            .to_string()
    };
    for (body, why) in [
        (
            r#"{"model":"gpt-x","model":"gpt-other","messages":[]}"#,
            "the body names a field twice (`model` is named twice)",
        ),
        (r#"{"model":"gpt-x","background":"true"}"#, "background answers are not allowed here"),
        (r#"{"model":"gpt-x","n":1.0}"#, "one answer per call (`n` must be 1)"),
    ] {
        assert_eq!(send(body.to_owned()).await, (400, refused(why)), "{body}");
    }
    assert_eq!(server.requests().len(), 0);
    // A tool whose head does not read (its type named twice) is taken out like a provider's
    // own; price tiers go; a streamed call is made to report its usage.
    let body = r#"{"model":"gpt-x","stream":true,"service_tier":"priority","messages":[],
        "tools":[{"type":"web_search","type":"web_search"},{"type":"function","name":"f"}]}"#;
    assert_eq!(send(body.to_owned()).await.0, 200);
    let sent = &server.requests()[0].body;
    assert_eq!(
        sent,
        &json!({"model": "gpt-x", "stream": true, "messages": [],
            "tools": [{"type": "function", "name": "f"}],
            "stream_options": {"include_usage": true}})
    );
    let usage = gw.stop().await;
    assert_eq!((usage.input_tokens, usage.output_tokens), (3, 2));
}

#[test]
fn an_answer_cut_short_is_charged_at_least_its_bytes() {
    // Anthropic's start (input known, output 1) and some text, then the reader hung up.
    let mut meter = UsageMeter::default();
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
    meter.feed(start.as_bytes());
    meter.feed("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n\n".repeat(50).as_bytes());
    let (input, output) = meter.charged(400);
    assert_eq!(input, 100);
    assert!(output > 1000, "{output}");
    // The same answer to its end is charged what it reports.
    meter.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12}}\n\n");
    assert_eq!(meter.charged(400), (10, 12));
}
