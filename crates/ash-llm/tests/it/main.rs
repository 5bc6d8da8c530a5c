//! ash-llm integration tests: both wire formats against the fake model server over loopback,
//! every error path, the decoder on hostile bytes, and the scripted provider from an agent
//! directory.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod anthropic;
mod decoder;
mod errors;
mod gateway;
mod openai;
mod scripted;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ash_llm::{Client, ClientConfig, LlmError, Model, ModelRequest, ProviderTable, RetryPolicy};
use ash_protocol::{Message, ModelEvent, ModelResponse, ToolDefinition};
use ash_spec::{ModelRef, Provider, ProviderApi};
use ash_test_support::FakeModelServer;
use tokio_util::sync::CancellationToken;

/// The key tests put in the environment map; no output may ever contain it.
const KEY: &str = "sk-test-SECRET-0123456789";

/// Fast retries and short timeouts, so failing paths finish quickly.
fn fast_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(2),
            after_partial_output: false,
        },
        jitter_seed: Some(7),
        ..ClientConfig::default()
    }
}

/// A client whose built-in `openai` and `anthropic` providers point at `server`.
fn client_with(server: &FakeModelServer, config: ClientConfig) -> Client {
    let env: BTreeMap<String, String> = [("OPENAI_API_KEY", KEY), ("ANTHROPIC_API_KEY", KEY)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut table = ProviderTable::builtin(&env);
    for (name, api) in [("openai", ProviderApi::OpenAi), ("anthropic", ProviderApi::Anthropic)] {
        let layer = Provider { api, base_url: Some(server.base_url()), api_key_env: None };
        table.apply(name, &layer, &env);
    }
    Client::new(table, config).unwrap()
}

fn model(client: &Client, name: &str) -> Model {
    client.model(&ModelRef::parse(name).unwrap(), Path::new(".")).unwrap()
}

/// Calls `name` through `client` and collects the response.
async fn complete(
    client: &Client,
    name: &str,
    request: &ModelRequest,
) -> Result<ModelResponse, LlmError> {
    model(client, name).complete(request, CancellationToken::new()).await
}

fn request(text: &str) -> ModelRequest {
    ModelRequest {
        system: "Be brief.".to_owned(),
        messages: vec![Message::user(text)],
        ..ModelRequest::default()
    }
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".to_owned(),
        description: "Current weather for a city".to_owned(),
        input_schema: serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }),
    }
}

/// Every event of a call, or the error that ended it.
async fn events(model: &Model, request: &ModelRequest) -> (Vec<ModelEvent>, Option<LlmError>) {
    let mut stream = model.stream(request, CancellationToken::new());
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => events.push(event),
            Err(err) => return (events, Some(err)),
        }
    }
    (events, None)
}

/// Asserts that neither the error's message nor its `Debug` form holds the key.
fn assert_no_key(err: &LlmError) {
    assert!(!err.to_string().contains(KEY), "{err}");
    assert!(!format!("{err:?}").contains(KEY), "{err:?}");
}
