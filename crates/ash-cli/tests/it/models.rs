//! `ash models`: the provider table with its layers, and `--prompt` against the scripted
//! provider and the fake model server.

use ash_protocol::{ModelsOutput, ProviderStatus};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use pretty_assertions::assert_eq;

use crate::{ash, ash_env, stderr, stdout};

#[test]
fn scripted_agent_answers_from_the_cli() {
    let fx = Fixture::new(
        r#"
//- agent/agent.toml
name = "demo"
model = "scripted/scripts/hello.jsonl"
//- agent/system.md
You are terse.
//- agent/scripts/hello.jsonl
{"reasoning": "Greet.", "text": "Hello there.", "usage": {"inputTokens": 12, "outputTokens": 4}}
"#,
    );
    let out = ash(fx.path(), &["models", "--prompt", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Hello there.\n");
    assert_eq!(
        stderr(&out),
        "Greet.\nusage: 12 input tokens (0 read from cache, 0 written to cache), 4 output tokens\nfinish: stop\n"
    );

    let out = ash(fx.path(), &["models", "--prompt", "hi", "--json"]);
    let types: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        ["response-started", "reasoning-delta", "text-delta", "text-delta", "usage", "finished"]
    );

    // The script has one turn; the CLI sends a fresh conversation each time, so it replays.
    let out = ash(fx.path(), &["models", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let summary: ModelsOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary.model.as_deref(), summary.ok),
        (Some("scripted/scripts/hello.jsonl"), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_config_points_a_provider_at_a_gateway() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Turn(Turn::text("Sunny in Paris.").usage(20, 5, 8, 0)));
    let fx = Fixture::new(
        r#"
//- agent/agent.toml
name = "weather"
model = "openai/gpt-test"
//- agent/system.md
You report the weather.
"#,
    );
    let home = fx.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!(
            "[providers.openai]\nbase_url = \"{}\"\napi_key_env = \"GATEWAY_KEY\"\n",
            server.base_url()
        ),
    )
    .unwrap();
    let (dir, home_str) = (fx.path().to_owned(), home.to_str().unwrap().to_owned());
    let run = move |args: &'static [&'static str], key: Option<&'static str>| {
        let (dir, home) = (dir.clone(), home_str.clone());
        tokio::task::spawn_blocking(move || {
            let mut env = vec![("ASH_HOME", home.as_str())];
            env.extend(key.map(|k| ("GATEWAY_KEY", k)));
            ash_env(&dir, args, &env)
        })
    };

    let out = run(&["models", "--json"], None).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary: ModelsOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary.error.as_deref(),
        Some("openai: no API key; set GATEWAY_KEY (or `api_key_env` in [providers.openai])")
    );
    let openai = summary.providers.iter().find(|p| p.name == "openai").unwrap();
    assert_eq!(
        openai,
        &ProviderStatus {
            name: "openai".into(),
            api: "openai".into(),
            base_url: Some(server.base_url()),
            api_key_env: Some("GATEWAY_KEY".into()),
            key_set: false,
            key_required: true,
        }
    );

    let out = run(&["models", "--prompt", "Weather?"], Some("gw-secret-key")).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Sunny in Paris.\n");
    assert!(stderr(&out).contains(
        "usage: 28 input tokens (8 read from cache, 0 written to cache), 5 output tokens"
    ));
    let request = &server.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer gw-secret-key");
    assert_eq!(
        request.body["messages"][0],
        serde_json::json!({"role": "system", "content": "You report the weather."})
    );

    // A failing call exits 1 and says why, without the key.
    server.push(Reply::error(401, &serde_json::json!({"error": {"message": "bad key"}})));
    let out = run(&["models", "--prompt", "Weather?"], Some("gw-secret-key")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: openai: HTTP 401: bad key; check that GATEWAY_KEY holds a valid key with access to this model\n"
    );
}

#[test]
fn a_broken_config_file_is_reported() {
    let fx = Fixture::new(
        "//- agent/agent.toml\nname = \"x\"\nmodel = \"ollama/qwen\"\n//- agent/system.md\nHi.\n//- home/config.toml\n[providers.local]\napi = \"grpc\"\n",
    );
    let home = fx.path().join("home");
    let out = ash_env(fx.path(), &["models", "--json"], &[("ASH_HOME", home.to_str().unwrap())]);
    let summary: ModelsOutput = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<(&str, &str)> =
        summary.diagnostics.iter().map(|d| (d.code.as_str(), d.message.as_str())).collect();
    assert_eq!(codes, [("invalid-value", "unknown provider api `grpc`")]);
    assert!(summary.ok, "the agent's own model still resolves");
}
