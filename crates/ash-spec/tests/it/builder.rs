//! `AgentSpec::builder()` produces the same model as the directory.

use ash_spec::AgentSpec;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Drops where things were authored, keeping what they are.
fn erase_sources(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in ["source", "lib"] {
                if map.contains_key(key) {
                    map.insert(key.to_owned(), Value::Null);
                }
            }
            map.values_mut().for_each(erase_sources);
        }
        Value::Array(items) => items.iter_mut().for_each(erase_sources),
        _ => {}
    }
}

fn weather_by_builder() -> AgentSpec {
    AgentSpec::builder("weather-agent")
        .description("Answers weather questions, defaulting to the user's usual location.")
        .model("scripted/scripts/demo.jsonl")
        .limits(ash_spec::Limits { max_steps_per_turn: Some(16), ..Default::default() })
        .system(include_str!("../../../../examples/weather-agent/agent/system.md"))
        .system(include_str!("../../../../examples/weather-agent/agent/system/my-location.md"))
        .skill(
            "get-weather",
            "Use the weather tool before answering forecast or temperature questions.",
            "When the user asks about weather, temperature, or forecast conditions, call the `get_weather` tool before answering.\n",
        )
        .tool(ash_spec::Tool {
            name: "get_weather".to_owned(),
            description: "Get the current weather for a city.".to_owned(),
            input_schema: json!({
                "additionalProperties": false,
                "properties": { "city": { "description": "City name, e.g. Brooklyn", "type": "string" } },
                "required": ["city"],
                "type": "object"
            }),
            kind: ash_spec::ToolKind::Command {
                connections: Vec::new(),
                argv: vec!["sh".to_owned(), "./agent/lib/get-weather.sh".to_owned()],
                timeout_ms: 10_000,
                sandbox: None,
            },
            approval: ash_spec::Approval::Never,
            source: ash_spec::Source::Code,
        })
        .sandbox(
            "notes",
            "A scratch shell whose files last for the session; keep the forecast log (forecasts.csv) here.",
            &["echo city,forecast > forecasts.csv"],
            &[],
        )
        .subagent(
            "forecaster",
            AgentSpec::builder("forecaster")
                .description("Forecasts tomorrow's weather for a city. Give it the city.")
                .model("scripted/scripts/forecast.jsonl")
                .system(include_str!(
                    "../../../../examples/weather-agent/agent/subagents/forecaster/system.md"
                )),
        )
        .build()
        .unwrap()
}

#[test]
fn builder_and_directory_compile_to_one_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/weather-agent");
    let (from_dir, warnings) =
        ash_spec::load(&dir, &crate::options()).unwrap().into_result().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut a = serde_json::to_value(from_dir.surface(None)).unwrap();
    let mut b = serde_json::to_value(weather_by_builder().surface(None)).unwrap();
    erase_sources(&mut a);
    erase_sources(&mut b);
    assert_eq!(a, b);
}

#[test]
fn builder_reports_every_problem() {
    let errors = AgentSpec::builder("Bad Name")
        .model("no-slash")
        .skill("Bad_Skill", "d", "b")
        .command_tool("Bad-Tool", "d", json!({"type": "array"}), ["true"])
        .sandbox("box", "d", &[], &[])
        .command_tool("box_sandbox", "collides", json!({"type": "object"}), ["true"])
        .schedule("nightly", "61 * * * *", "x")
        .subagent("helper", AgentSpec::builder("helper"))
        .build()
        .unwrap_err();
    let messages: Vec<String> =
        errors.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    insta::assert_snapshot!(messages.join("\n"));
}
