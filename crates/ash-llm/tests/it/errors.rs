//! Every failure path: statuses, bodies, malformed and truncated streams, retries, timeouts,
//! cancellation, connection failures, size limits, configuration errors. Each ends in a typed
//! error with a message naming the provider, or a tolerated event; none panics or hangs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ash_llm::{Client, ClientConfig, LlmError, ProviderTable, ResponseLimits};
use ash_protocol::{AssistantPart, ModelEvent};
use ash_spec::{ModelRef, Provider, ProviderApi};
use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{KEY, assert_no_key, client_with, complete, events, fast_config, model, request};

const HINT: &str = "check that OPENAI_API_KEY holds a valid key with access to this model";

struct Case {
    name: &'static str,
    model: &'static str,
    replies: Vec<Reply>,
    /// `Ok(text)` for a response, `Err(message)`; a message ending in `*` is a prefix.
    want: Result<&'static str, String>,
    requests: usize,
}

fn turn() -> Reply {
    Reply::Turn(Turn::text("fine"))
}

fn cases() -> Vec<Case> {
    let case = |name, model, replies, want, requests| Case { name, model, replies, want, requests };
    vec![
        case("429 then success", "openai/m", vec![Reply::rate_limited(0), turn()], Ok("fine"), 2),
        case("429 asking too long", "openai/m", vec![Reply::rate_limited(3600)], Err("openai: HTTP 429: Rate limit reached".into()), 1),
        case(
            "500 until attempts run out",
            "openai/m",
            vec![Reply::error(500, &json!({"error": {"message": "boom"}})); 3],
            Err("openai: HTTP 500: boom".into()),
            3,
        ),
        case(
            "401 is final and names the key variable",
            "openai/m",
            vec![Reply::error(401, &json!({"error": {"message": "Incorrect API key provided: sk-te****6789"}}))],
            Err(format!("openai: HTTP 401: Incorrect API key provided: sk-te****6789; {HINT}")),
            1,
        ),
        case(
            "403 as an HTML page",
            "openai/m",
            vec![Reply::html(403, "Forbidden")],
            Err(format!("openai: HTTP 403: an HTML page titled \"Forbidden\" instead of an API response; {HINT}")),
            1,
        ),
        case(
            "502 HTML from a proxy is retried",
            "openai/m",
            vec![Reply::html(502, "502 Bad Gateway"); 3],
            Err("openai: HTTP 502: an HTML page titled \"502 Bad Gateway\" instead of an API response".into()),
            3,
        ),
        case(
            "400 is final",
            "openai/m",
            vec![Reply::error(400, &json!({"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}}))],
            Err("openai: HTTP 400: max_tokens is too large".into()),
            1,
        ),
        case(
            "ollama-style error string",
            "openai/m",
            vec![Reply::error(404, &json!({"error": "model 'm' not found, try pulling it first"}))],
            Err("openai: HTTP 404: model 'm' not found, try pulling it first".into()),
            1,
        ),
        case(
            "empty error body",
            "openai/m",
            vec![Reply::body(500, "", vec![]); 3],
            Err("openai: HTTP 500: empty response body".into()),
            3,
        ),
        case(
            "invalid JSON in a chunk",
            "openai/m",
            vec![Reply::sse(&["data: {not json}\n\n"])],
            Err("openai: malformed response: expected a chat completion chunk as JSON (key must be a string at line 1 column 2); data began `{not json}`".into()),
            1,
        ),
        case(
            "stream ends without a finish reason",
            "openai/m",
            vec![Reply::sse(&["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"])],
            Err("openai: malformed response: the stream ended before a finish reason (truncated response)".into()),
            1,
        ),
        case(
            "anthropic stream ends before message_stop",
            "anthropic/m",
            vec![Reply::sse(&[
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n",
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"Hel\"}}\n\n",
            ])],
            Err("anthropic: malformed response: the stream ended before message_stop (truncated response)".into()),
            1,
        ),
        case(
            "connection dropped after content is not retried",
            "openai/m",
            vec![Reply::Turn(Turn::text("Hello world, how are you").drop_after(3)), turn()],
            Err("openai: the connection broke mid-response: *".into()),
            1,
        ),
        case(
            "connection dropped before content is retried",
            "openai/m",
            vec![Reply::Turn(Turn::text("lost").drop_after(1)), turn()],
            Ok("fine"),
            2,
        ),
        case(
            "200 with JSON instead of a stream",
            "openai/m",
            vec![Reply::body(200, "application/json", vec![json!({"choices": []}).to_string().into()])],
            Err("openai: malformed response: expected an event stream (text/event-stream) but got `application/json`: {\"choices\":[]}".into()),
            1,
        ),
        case(
            "non-UTF-8 stream",
            "openai/m",
            vec![Reply::body(200, "text/event-stream", vec![b"data: \xff\xfe\n\n".to_vec().into()])],
            Err("openai: malformed response: line 1 of the event stream is not UTF-8".into()),
            1,
        ),
        case(
            "in-stream 502 error is retried",
            "openai/m",
            vec![Reply::sse(&["data: {\"error\":{\"message\":\"upstream failed\",\"code\":502}}\n\n"]); 3],
            Err("openai: provider error (502): upstream failed".into()),
            3,
        ),
        case(
            "anthropic overload before content is retried",
            "anthropic/m",
            vec![
                Reply::sse(&["event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"]),
                turn(),
            ],
            Ok("fine"),
            2,
        ),
        case(
            "anthropic error after content is final",
            "anthropic/m",
            vec![
                Reply::sse(&[
                    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n",
                    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"Par\"}}\n\n",
                    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
                ]),
                turn(),
            ],
            Err("anthropic: provider error (overloaded_error): Overloaded".into()),
            1,
        ),
        case(
            "anthropic delta for a block never started",
            "anthropic/m",
            vec![Reply::sse(&[
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":4,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
            ])],
            Err("anthropic: malformed response: content_block_delta for block Some(4), which was never started".into()),
            1,
        ),
    ]
}

#[tokio::test]
async fn failure_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let server = FakeModelServer::start().await;
        for reply in case.replies {
            server.push(reply);
        }
        let client = client_with(&server, fast_config());
        let result = complete(&client, case.model, &request("x")).await;
        let got = match &result {
            Ok(response) => match response.content.as_slice() {
                [AssistantPart::Text { text }] => Ok(text.as_str()),
                other => panic!("{}: unexpected content {other:?}", case.name),
            },
            Err(err) => {
                assert_no_key(err);
                Err(err.to_string())
            }
        };
        let matches = match (&got, &case.want) {
            (Err(got), Err(want)) if want.ends_with('*') => {
                got.starts_with(want.trim_end_matches('*'))
            }
            (got, want) => got == want,
        };
        let requests = server.requests().len();
        if !matches || requests != case.requests {
            failures.push(format!(
                "{}:\n  got  {got:?} after {requests} request(s)\n  want {:?} after {} request(s)",
                case.name, case.want, case.requests
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn retry_after_partial_output_when_allowed() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("Hello world, how are you").drop_after(3)));
    server.push(Reply::Turn(Turn::text("Second try.")));
    let mut config = fast_config();
    config.retry.after_partial_output = true;
    let client = client_with(&server, config);
    let model = model(&client, "openai/m");
    let (events, error) = events(&model, &request("x")).await;
    assert!(error.is_none(), "{error:?}");
    let retry = events.iter().position(|e| matches!(e, ModelEvent::Retrying { .. })).unwrap();
    assert!(events[..retry].contains(&ModelEvent::TextDelta { text: "Hello wo".to_owned() }));
    let ModelEvent::Retrying { attempt, error } = &events[retry] else { unreachable!() };
    assert_eq!(*attempt, 2);
    assert!(error.starts_with("openai: the connection broke mid-response"), "{error}");
    let response = model.complete(&request("x"), CancellationToken::new()).await;
    // The queue is empty now: the fake answers 500 and the client says so.
    assert!(response.unwrap_err().to_string().contains("no scripted reply left"));
    let mut collector = ash_llm::Collector::new();
    for event in &events {
        collector.push(event);
    }
    assert_eq!(
        collector.finish().unwrap().content,
        vec![AssistantPart::Text { text: "Second try.".to_owned() }]
    );
}

#[tokio::test]
async fn no_response_times_out() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Hang).push(Reply::Hang);
    let mut config = fast_config();
    config.response_timeout = Duration::from_millis(300);
    config.retry.max_attempts = 2;
    let client = client_with(&server, config);
    let err = complete(&client, "openai/m", &request("x")).await.unwrap_err();
    assert_eq!(err.to_string(), "openai: waiting for the response took longer than 0.3s");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn silence_between_chunks_times_out() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("slow").delay(Duration::from_secs(30))));
    let mut config = fast_config();
    config.idle_timeout = Duration::from_millis(200);
    config.retry.max_attempts = 1;
    let client = client_with(&server, config);
    let err = complete(&client, "anthropic/m", &request("x")).await.unwrap_err();
    assert_eq!(err.to_string(), "anthropic: waiting for the next chunk took longer than 0.2s");
}

#[tokio::test]
async fn cancellation_mid_stream_ends_the_call() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(
        Turn::text("a long answer that streams slowly")
            .chunk_chars(2)
            .delay(Duration::from_millis(20)),
    ));
    let client = client_with(&server, fast_config());
    let cancel = CancellationToken::new();
    let mut stream = model(&client, "openai/m").stream(&request("x"), cancel.clone());
    let mut seen = 0;
    while let Some(event) = stream.next().await {
        if matches!(event.unwrap(), ModelEvent::TextDelta { .. }) {
            seen += 1;
            if seen == 2 {
                break;
            }
        }
    }
    cancel.cancel();
    assert!(matches!(stream.next().await, Some(Err(LlmError::Cancelled))));
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn cancellation_during_backoff() {
    let server = FakeModelServer::start().await;
    server.push(Reply::rate_limited(1));
    let mut config = fast_config();
    config.retry.max_retry_after = Duration::from_secs(3600);
    let client = client_with(&server, config);
    let cancel = CancellationToken::new();
    let mut stream = model(&client, "openai/m").stream(&request("x"), cancel.clone());
    let next =
        tokio::spawn(async move { stream.next().await.map(|r| r.map_err(|e| e.to_string())) });
    // Wait until the 429 was served, then cancel while the client sleeps before retrying.
    while server.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    cancel.cancel();
    assert_eq!(next.await.unwrap(), Some(Err("model call cancelled".to_owned())));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connection_refused_names_the_url_not_the_key() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = BTreeMap::from([("OPENAI_API_KEY".to_owned(), KEY.to_owned())]);
    let mut table = ProviderTable::builtin(&env);
    let url = format!("http://user:hunter2@127.0.0.1:{port}/v1");
    table.apply(
        "openai",
        &Provider { api: ProviderApi::OpenAi, base_url: Some(url), api_key_env: None },
        &env,
    );
    let client = Client::new(table, fast_config()).unwrap();
    let err = complete(&client, "openai/m", &request("x")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("openai: cannot connect to http://127.0.0.1:{port}/v1/chat/completions: connection failed")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert_no_key(&err);
}

#[tokio::test]
async fn size_limits() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text(&"x".repeat(4000)).chunk_chars(2000)));
    server.push(Reply::Turn(Turn::text(&"y".repeat(40_000)).chunk_chars(100)));
    server.push(Reply::sse(&[&("data: ".to_owned() + &"z".repeat(2000))]));
    let config = |event: usize, response: u64| ClientConfig {
        limits: ResponseLimits {
            max_event_bytes: event,
            max_response_bytes: response,
            ..ResponseLimits::default()
        },
        ..fast_config()
    };
    let one_event = client_with(&server, config(1024, 1 << 20));
    let err = complete(&one_event, "openai/m", &request("x")).await.unwrap_err();
    assert_eq!(err.to_string(), "openai: response exceeds the single event size limit of 1 KiB");
    let whole = client_with(&server, config(1 << 20, 16 << 10));
    let err = complete(&whole, "openai/m", &request("x")).await.unwrap_err();
    assert_eq!(err.to_string(), "openai: response exceeds the response size limit of 16 KiB");
    // An unterminated line longer than the limit is refused without buffering further.
    let err = complete(&one_event, "openai/m", &request("x")).await;
    assert_eq!(
        err.unwrap_err().to_string(),
        "openai: response exceeds the single event size limit of 1 KiB"
    );
}

#[test]
fn configuration_errors_before_any_request() {
    let empty = BTreeMap::new();
    let client = Client::new(ProviderTable::builtin(&empty), ClientConfig::default()).unwrap();
    let resolve = |name: &str| {
        client
            .model(&ModelRef::parse(name).unwrap(), Path::new("."))
            .map(|m| m.name().to_owned())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        resolve("openai/gpt-4.1-mini"),
        Err("openai: no API key; set OPENAI_API_KEY (or `api_key_env` in [providers.openai])"
            .to_owned())
    );
    assert_eq!(
        resolve("nope/x"),
        Err("unknown model provider `nope`; use one of anthropic, deepseek, groq, llamacpp, lmstudio, mistral, ollama, openai, openrouter, together, vllm, xai, scripted, or declare [providers.nope] in agent.toml".to_owned())
    );
    assert_eq!(resolve("ollama/qwen2.5"), Ok("ollama/qwen2.5".to_owned()));

    let mut table = ProviderTable::builtin(&empty);
    table.apply(
        "gateway",
        &Provider { api: ProviderApi::OpenAi, base_url: None, api_key_env: None },
        &empty,
    );
    table.apply(
        "ftp",
        &Provider {
            api: ProviderApi::OpenAi,
            base_url: Some("ftp://example.test".to_owned()),
            api_key_env: None,
        },
        &empty,
    );
    let client = Client::new(table, ClientConfig::default()).unwrap();
    let resolve = |name: &str| {
        client
            .model(&ModelRef::parse(name).unwrap(), Path::new("."))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        resolve("gateway/m"),
        Err("gateway: base URL `` is not usable: none is configured; set `base_url` in [providers.<name>]".to_owned())
    );
    assert_eq!(
        resolve("ftp/m"),
        Err("ftp: base URL `ftp://example.test/chat/completions` is not usable: it must be an http or https URL with a host".to_owned())
    );
}

#[test]
fn keys_never_show_in_debug() {
    let env = BTreeMap::from([("OPENAI_API_KEY".to_owned(), KEY.to_owned())]);
    let table = ProviderTable::builtin(&env);
    let client = Client::new(table.clone(), ClientConfig::default()).unwrap();
    let model = client.model(&ModelRef::parse("openai/m").unwrap(), Path::new(".")).unwrap();
    for text in [format!("{table:?}"), format!("{client:?}"), format!("{model:?}")] {
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
