//! The `scripted/<file>` provider, from an agent directory.

use std::collections::BTreeMap;
use std::path::Path;

use ash_llm::{Client, ClientConfig, ModelRequest, ProviderTable};
use ash_protocol::{
    AssistantPart, FinishReason, Message, ModelResponse, ToolCall, ToolResultPart, Usage,
};
use ash_spec::{LoadOptions, ModelRef};
use ash_test_support::Fixture;
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

const AGENT: &str = r#"
//- agent/agent.toml
name = "demo"
model = "scripted/scripts/demo.jsonl"
//- agent/system.md
You are a demo.
//- agent/scripts/demo.jsonl
# turn 1: call a tool
{"reasoning": "Need the weather.", "toolCalls": [{"name": "get_weather", "input": {"city": "Paris"}}]}

# turn 2: answer
{"text": "It is sunny in Paris.", "usage": {"inputTokens": 42, "outputTokens": 7}}
{"error": "the model is down"}
"#;

fn client() -> Client {
    Client::new(ProviderTable::builtin(&BTreeMap::new()), ClientConfig::default()).unwrap()
}

#[tokio::test]
async fn replays_turns_by_position_from_an_agent_directory() {
    let fx = Fixture::new(AGENT);
    let loaded = ash_spec::load(fx.path(), &LoadOptions::default()).unwrap();
    let (spec, warnings) = loaded.into_result().unwrap();
    assert_eq!(warnings, vec![]);
    let package = spec.root();
    let model =
        client().model(package.model.as_ref().unwrap(), &fx.path().join(&package.dir)).unwrap();
    assert_eq!(model.name(), "scripted/scripts/demo.jsonl");

    let mut request = ModelRequest {
        system: "You are a demo.".into(),
        messages: vec![Message::user("Weather?")],
        ..ModelRequest::default()
    };
    let first = model.complete(&request, CancellationToken::new()).await.unwrap();
    assert_eq!(
        first,
        ModelResponse {
            id: Some("scripted-1".into()),
            model: None,
            content: vec![
                AssistantPart::Reasoning { text: "Need the weather.".into(), signature: None },
                AssistantPart::ToolCall(ToolCall {
                    id: "call_1_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                }),
            ],
            usage: Usage::default(),
            finish_reason: FinishReason::ToolCalls,
        }
    );
    request.messages.push(Message::Assistant { content: first.content });
    request.messages.push(Message::Tool {
        content: vec![ToolResultPart {
            call_id: "call_1_1".into(),
            tool_name: "get_weather".into(),
            output: "sunny".into(),
            is_error: false,
            images: Vec::new(),
        }],
    });
    // Asking again for the same position gives the same answer: replay is by position.
    for _ in 0..2 {
        let second = model.complete(&request, CancellationToken::new()).await.unwrap();
        assert_eq!(
            second.content,
            vec![AssistantPart::Text { text: "It is sunny in Paris.".into() }]
        );
        assert_eq!(second.usage, Usage { input_tokens: 42, output_tokens: 7, ..Usage::default() });
        assert_eq!(second.finish_reason, FinishReason::Stop);
    }
    request.messages.push(Message::Assistant {
        content: vec![AssistantPart::Text { text: "It is sunny in Paris.".into() }],
    });
    let err = model.complete(&request, CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.to_string(), "scripted: provider error (scripted_error): the model is down");
    request.messages.push(Message::Assistant { content: vec![] });
    let err = model.complete(&request, CancellationToken::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "scripts/demo.jsonl: the script has 3 turn(s) but this is model call 4; add a line for it"
    );
}

#[test]
fn bad_scripts_name_the_line() {
    let cases = [
        (
            "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n",
            "s.jsonl:2: unknown field `txt`, expected one of `reasoning`, `text`, `toolCalls`, `finish`, `usage`, `error`, `delayMs` at line 1 column 6; a line is a JSON object like {\"text\": \"Hello\"} or {\"toolCalls\": [{\"name\": \"get_weather\", \"input\": {\"city\": \"Paris\"}}]}",
        ),
        (
            "not json\n",
            "s.jsonl:1: expected ident at line 1 column 2; a line is a JSON object like {\"text\": \"Hello\"} or {\"toolCalls\": [{\"name\": \"get_weather\", \"input\": {\"city\": \"Paris\"}}]}",
        ),
        ("{}\n", "s.jsonl:1: the line needs `text`, `reasoning`, `toolCalls` or `error`"),
        (
            "{\"error\": \"x\", \"text\": \"y\"}\n",
            "s.jsonl:1: `error` cannot be combined with `text`, `reasoning` or `toolCalls`",
        ),
        (
            "{\"toolCalls\": [{\"name\": \"Bad Name\"}]}\n",
            "s.jsonl:1: tool call 1 has the invalid name `Bad Name`",
        ),
        (
            "{\"text\": \"x\", \"delayMs\": 999999}\n",
            "s.jsonl:1: `delayMs` is 999999; at most 10000 is allowed",
        ),
        (
            "# only a comment\n\n",
            "s.jsonl:0: the script has no turns; add one JSON object per line",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in cases {
        std::fs::write(dir.path().join("s.jsonl"), text).unwrap();
        let err =
            client().model(&ModelRef::parse("scripted/s.jsonl").unwrap(), dir.path()).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    for (path, want) in [
        (
            "scripted/../etc/passwd",
            "../etc/passwd:0: the script path must stay inside the agent directory",
        ),
        (
            "scripted/missing.jsonl",
            "missing.jsonl:0: cannot read the script: No such file or directory (os error 2)",
        ),
    ] {
        let err = client().model(&ModelRef::parse(path).unwrap(), dir.path()).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    let big = "{\"text\": \"x\"}\n".repeat(80_000);
    std::fs::write(dir.path().join("big.jsonl"), big).unwrap();
    let err = client()
        .model(&ModelRef::parse("scripted/big.jsonl").unwrap(), Path::new(dir.path()))
        .unwrap_err();
    assert_eq!(err.to_string(), "big.jsonl:0: the script is larger than 1048576 bytes");
}

#[test]
fn the_spec_checks_the_script_path() {
    let cases = [
        ("scripted/nope.jsonl", "script `nope.jsonl` does not exist next to agent.toml"),
        (
            "scripted/../x.jsonl",
            "script path `../x.jsonl` must stay inside the agent directory (no `..`, no leading `/`)",
        ),
    ];
    for (model, want) in cases {
        let fx = Fixture::new(&format!(
            "//- agent/agent.toml\nname = \"d\"\nmodel = \"{model}\"\n//- agent/system.md\nHi.\n"
        ));
        let loaded = ash_spec::load(fx.path(), &LoadOptions::default()).unwrap();
        let messages: Vec<String> = loaded
            .diagnostics()
            .iter()
            .map(|d| format!("{} {}: {}", d.code, d.file, d.message))
            .collect();
        assert_eq!(messages, vec![format!("scripted-model agent/agent.toml: {want}")]);
    }
}
