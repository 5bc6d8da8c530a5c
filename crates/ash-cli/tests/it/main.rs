//! End-to-end tests of the `ash` binary: real processes, real directories.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code fails loudly")]
#![allow(clippy::disallowed_methods, reason = "these tests run the ash binary itself")]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use ash_test_support::Fixture;
use pretty_assertions::assert_eq;

mod agents;
mod auth;
mod connections;
mod jobs;
mod ledger;
mod models;
mod network;
mod nodes;
mod pack;
mod sandbox;
mod serve;
mod stayup;
mod tools;
mod tui;

/// Runs `ash` with `args` in `cwd`, with a clean, fixed environment.
fn ash(cwd: &Path, args: &[&str]) -> Output {
    ash_env(cwd, args, &[])
}

/// Runs `ash` with a clean, fixed environment plus `env`.
fn ash_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ash"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .envs(env.iter().copied())
        .output()
        .expect("run ash")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn init_then_info_then_build() {
    let fx = Fixture::new("");
    let out = ash(fx.path(), &["init", "demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("created the weather agent `demo` in demo"));

    let out = ash(fx.path(), &["info", "demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out).replace(fx.path().to_str().unwrap(), "<tmp>");
    let text: String = text
        .lines()
        .map(|l| if l.contains("template sha256:") { "      template sha256:<key>" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("info_text", text);

    let out = ash(fx.path(), &["info", "demo", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let info: ash_protocol::InfoOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert!(info.ok);
    assert_eq!(info.agent.name, "demo");
    let tools: Vec<&str> = info.agent.tools.iter().map(ash_core::tool_name).collect();
    assert_eq!(
        tools,
        [
            "activate_skill",
            "bash",
            "edit_file",
            "forecaster",
            "get_weather",
            "notes_sandbox",
            "read_file",
            "search_files",
            "write_file"
        ]
    );
    assert_eq!(info.agent.offered_tools, tools);
    assert_eq!(info.agent.unsupported, []);

    let out = ash(fx.path(), &["build", "demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = fs::read(fx.join("demo/.ash/manifest.json")).unwrap();
    let out = ash(fx.path(), &["build", "demo", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let result: ash_protocol::BuildOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result.ok);
    assert_eq!(
        first,
        fs::read(fx.join("demo/.ash/manifest.json")).unwrap(),
        "builds are reproducible"
    );
    let manifest: ash_protocol::AgentManifest = serde_json::from_slice(&first).unwrap();
    assert_eq!(Some(manifest.content_hash), result.content_hash);
}

#[test]
fn the_scaffolded_tool_script_runs() {
    let fx = Fixture::new("");
    assert_eq!(ash(fx.path(), &["init", "w"]).status.code(), Some(0));
    let mut child = Command::new("sh")
        .arg(fx.join("w/agent/lib/get-weather.sh"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(br#"{"city": "Paris"}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["city"], "Paris");
    assert_eq!(value["temperatureF"], 72);
}

#[test]
fn init_blank_template() {
    let fx = Fixture::new("");
    let out = ash(fx.path(), &["init", "my-bot", "--template", "blank"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(fx.join("my-bot/agent/agent.toml")).unwrap(),
        "name = \"my-bot\"\ndescription = \"A new ash agent.\"\nmodel = \"openai/gpt-4.1-mini\"\n"
    );
    assert_eq!(ash(fx.path(), &["info", "my-bot"]).status.code(), Some(0));
}

#[test]
fn init_coder_template_is_ash_s_coding_agent_and_runs_offline() {
    let fx = Fixture::new("");
    let out = ash(fx.path(), &["init", "my-coder", "--template", "coder"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The shipped files are the repository's `examples/coder/`, with the directory's name.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/coder");
    for rel in ["agent/system.md", "agent/skills/git-work.md", "agent/scripts/demo.jsonl"] {
        assert_eq!(
            fs::read_to_string(fx.join("my-coder").join(rel)).unwrap(),
            fs::read_to_string(example.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let toml = fs::read_to_string(fx.join("my-coder/agent/agent.toml")).unwrap();
    assert!(toml.starts_with("name = \"my-coder\"\n"), "{toml}");
    assert_eq!(ash(fx.path(), &["info", "my-coder"]).status.code(), Some(0));
    // Its scripted demo runs with no model account: it looks for a TODO with search_files,
    // tries edit_file, and answers.
    let home = fx.join("home");
    let out = ash_env(
        fx.path(),
        &["exec", "my-coder", "resolve the TODO", "--json"],
        &[("ASH_HOME", home.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // (The run's workspace is empty: there is no README.md to edit.)
    let called: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "action.result")
        .map(|e| {
            let name = e["data"]["result"]["toolName"].as_str().unwrap_or("").to_owned();
            (name, e["data"]["status"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert_eq!(
        called,
        [
            ("search_files".to_owned(), "completed".to_owned()),
            ("edit_file".to_owned(), "failed".to_owned())
        ],
        "{text}"
    );
    assert!(text.contains("ash-coder's scripted demo"), "{text}");
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let fx = Fixture::new("//- taken/keep.txt\nmine\n");
    let out = ash(fx.path(), &["init", "taken"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: taken is not empty; ash init only writes into an empty or new directory (try `ash init taken/my-agent`)\n"
    );
    let entries: Vec<_> = fs::read_dir(fx.join("taken")).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn info_and_build_on_a_broken_agent() {
    let fx = Fixture::new(
        r#"
//- agent/agent.toml
model = "nope"
//- agent/system.md
Hi.
//- agent/tools/t.toml
description = "T."
"#,
    );
    let out = ash(fx.path(), &["info"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("diagnostics: 2 error(s), 0 warning(s)"), "{text}");
    assert!(
        text.contains("error[invalid-model]: agent/agent.toml:1:9: `nope` has no provider"),
        "{text}"
    );

    let out = ash(fx.path(), &["info", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let info: ash_protocol::InfoOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!info.ok);
    assert_eq!(info.diagnostics.len(), 2);

    let out = ash(fx.path(), &["build"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refusing to build"), "{}", stderr(&out));
    assert!(!fx.join(".ash").exists(), "nothing is written when the agent has errors");
}

#[test]
fn missing_directory_is_a_usage_error() {
    let fx = Fixture::new("");
    let out = ash(fx.path(), &["info", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: loading the agent in nowhere\n  caused by: nowhere: no such directory\n"
    );
}

#[test]
fn env_interpolation_reads_the_process_environment() {
    let fx = Fixture::new(
        r#"
//- agent/agent.toml
[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "${ASH_BASIC_PASSWORD}"
//- agent/system.md
Hi.
"#,
    );
    let out = ash(fx.path(), &["info"]);
    assert_eq!(out.status.code(), Some(1), "missing variable is an error");
    let out = Command::new(env!("CARGO_BIN_EXE_ash"))
        .args(["info", "--json"])
        .current_dir(fx.path())
        .env_clear()
        .env("ASH_BASIC_PASSWORD", "s3cret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("${ASH_BASIC_PASSWORD}") && !text.contains("s3cret-value"));
}

#[test]
fn help_texts() {
    let fx = Fixture::new("");
    let mut all = String::new();
    for args in [
        &["--help"][..],
        &["init", "--help"],
        &["info", "--help"],
        &["build", "--help"],
        &["models", "--help"],
        &["start", "--help"],
        &["dev", "--help"],
        &["exec", "--help"],
        &["sandbox", "--help"],
        &["sandbox", "exec", "--help"],
        &["sandbox", "check", "--help"],
        &["store", "migrate", "--help"],
        &["run", "--help"],
        &["serve", "--help"],
        &["jobs", "--help"],
        &["login", "--help"],
    ] {
        let out = ash(fx.path(), args);
        assert_eq!(out.status.code(), Some(0));
        all.push_str(&format!("$ ash {}\n{}\n", args.join(" "), stdout(&out)));
    }
    insta::assert_snapshot!("help", all);
}
