//! `ash sandbox exec`/`check` through the real binary (which is also the sandbox helper), and
//! agent tools confined by the sandbox.

use std::fs;

use ash_test_support::Fixture;
use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{ash, ash_env, stderr, stdout};

#[test]
fn check_reports_the_native_backend_and_what_auto_picks() {
    let fx = Fixture::new("");
    let out = ash(fx.path(), &["sandbox", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let native =
        report["backends"].as_array().unwrap().iter().find(|b| b["backend"] == "native").unwrap();
    assert_eq!(
        (native["works"].as_bool(), report["auto"].as_str()),
        (Some(true), Some("native")),
        "{report}"
    );
    assert!(report["landlockAbi"].as_i64().is_some_and(|abi| abi >= 1), "{report}");
    let text = stdout(&ash(fx.path(), &["sandbox", "check"]));
    assert!(text.contains("auto picks: native") && text.contains("BACKEND"), "{text}");
}

#[test]
fn exec_confines_a_command_and_passes_its_exit_code() {
    let fx = Fixture::new("//- notes.txt\nproject notes\n//- home/.ssh/id_ed25519\nPRIVATE KEY\n");
    let home = fx.join("home");
    let home_key = home.join(".ssh/id_ed25519");
    let script = format!(
        "cat notes.txt; (echo new > made.txt) 2>/dev/null || echo read-only; cat {} 2>/dev/null || echo no-key; exit 4",
        home_key.display()
    );
    let home_str = home.display().to_string();
    let out =
        ash_env(fx.path(), &["sandbox", "exec", "--", "sh", "-c", &script], &[("HOME", &home_str)]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(4), "project notes\nread-only\nno-key\n".to_owned()),
        "{}",
        stderr(&out)
    );

    let write = || {
        ash_env(
            fx.path(),
            &["sandbox", "exec", "-w", ".", "--", "sh", "-c", "echo new > made.txt"],
            &[("HOME", &home_str)],
        )
    };
    // Under root, sandboxed commands run as an unprivileged uid that must own what they write.
    let check: serde_json::Value =
        serde_json::from_slice(&ash_env(fx.path(), &["sandbox", "check", "--json"], &[]).stdout)
            .unwrap();
    if let Some(id) = check["hostId"].as_u64() {
        let out = write();
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(&format!("`chown -R {id}:{id}` it")), "{}", stderr(&out));
        let id = u32::try_from(id).unwrap();
        std::os::unix::fs::chown(fx.path(), Some(id), Some(id)).unwrap();
    }
    let out = write();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(fx.join("made.txt")).unwrap(), "new\n");
}

#[test]
fn exec_json_reports_limits_and_redacts_secrets() {
    let fx = Fixture::new("");
    let out = ash_env(
        fx.path(),
        &[
            "sandbox",
            "exec",
            "--json",
            "--timeout",
            "500ms",
            "--secret",
            "API_KEY",
            "--",
            "sh",
            "-c",
            "echo $API_KEY; sleep 10",
        ],
        &[("API_KEY", "sk-test-abcdef")],
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let mut report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    report["elapsedMs"] = Value::Null;
    assert_eq!(
        report,
        serde_json::json!({
            "backend": "native", "exitCode": null, "signal": 9, "limit": "wall_time", "elapsedMs": null,
            "stdout": "[redacted:API_KEY]\n", "stderr": "", "stdoutTruncated": false, "stderrTruncated": false,
            "connections": [], "connectionsOmitted": 0,
        })
    );
}

#[test]
fn bad_sandbox_arguments_and_policy_files_are_errors_that_say_what_is_wrong() {
    let fx = Fixture::new(
        "//- bad.toml\n[network]\nmode = \"allow\"\nallow = [\"169.254.169.254\"]\n//- typo.toml\n[limits]\nmemroy = \"1G\"\n",
    );
    let cases: [(&[&str], &str); 6] = [
        (
            &["sandbox", "exec", "--net", "allow:https://x.com", "--", "true"],
            "write a host and port, not a URL",
        ),
        (
            &["sandbox", "exec", "--net", "sometimes", "--", "true"],
            "expected none, full, or allow:HOST[:PORT]",
        ),
        (&["sandbox", "exec", "--backend", "vm", "--", "true"], "unknown sandbox backend `vm`"),
        (
            &["sandbox", "exec", "--policy", "bad.toml", "--", "true"],
            "cloud metadata addresses are always blocked",
        ),
        (&["sandbox", "exec", "--policy", "typo.toml", "--", "true"], "unknown field `memroy`"),
        (
            &["sandbox", "exec", "--policy", "missing.toml", "--", "true"],
            "reading the policy file missing.toml",
        ),
    ];
    for (args, expected) in cases {
        let out = ash(fx.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
    let out = ash(fx.path(), &["sandbox", "exec", "--backend", "podman", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("the podman backend is not available"), "{}", stderr(&out));
}

#[test]
fn agent_tools_run_in_the_sandbox() {
    let fx = Fixture::new("");
    assert_eq!(ash(fx.path(), &["init", "demo"]).status.code(), Some(0));
    fs::create_dir_all(fx.join("home")).unwrap();
    fs::write(fx.join("home/secret.txt"), "home secret").unwrap();
    let command = format!(
        "cat {home}/secret.txt 2>&1; ls ../../ash.db >/dev/null 2>&1 || echo no-store; echo ws > here.txt && cat here.txt; hostname",
        home = fx.join("home").display()
    );
    let script = serde_json::json!({"toolCalls": [{"id": "c1", "name": "bash", "input": {"command": command}}]}).to_string()
        + "\n{\"text\":\"done\"}\n";
    fs::write(fx.join("demo/agent/scripts/demo.jsonl"), script).unwrap();
    let home = fx.join("home").display().to_string();
    let store = fx.join("demo/.ash/state/ash.db").display().to_string();
    let out = ash_env(
        fx.path(),
        &["exec", "demo", "go", "--json", "--store", &store],
        &[("HOME", &home)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(fx.join("demo/.ash/state/ash.db").exists());
    let all = stdout(&out);
    assert!(!all.contains("home secret"), "a tool read $HOME: {all}");
    assert!(
        all.contains("No such file or directory") || all.contains("Permission denied"),
        "{all}"
    );
    assert!(all.contains("no-store") && all.contains("ws\\nash-sandbox"), "{all}");
}

#[test]
fn a_named_sandbox_runs_isolated_with_its_template_and_streams_its_commands() {
    let fx = Fixture::new(
        "//- agent/agent.toml\nname = \"boxed\"\nmodel = \"scripted/demo.jsonl\"\n\
         //- agent/system.md\nUse the box.\n\
         //- agent/sandboxes/box.toml\ndescription = \"A box.\"\n\
         bootstrap = [\"echo prepared > ready.txt\"]\non_session = [\"date +%s > session.txt\"]\n\
         [limits]\nmemory_mb = 256\n",
    );
    fs::create_dir_all(fx.join("home")).unwrap();
    fs::write(fx.join("home/secret.txt"), "home secret").unwrap();
    let command = format!(
        "cat ready.txt; cat {home}/secret.txt 2>&1 || true; test -s session.txt && echo on-session; echo $HOME | grep -q sandboxes && echo home-ok; hostname",
        home = fx.join("home").display()
    );
    let script = serde_json::json!({"toolCalls": [{"id": "c1", "name": "box_sandbox", "input": {"command": command}}]}).to_string()
        + "\n{\"text\":\"done\"}\n";
    fs::write(fx.join("agent/demo.jsonl"), script).unwrap();
    let home = fx.join("home").display().to_string();
    let out = ash_env(fx.path(), &["exec", ".", "go", "--json"], &[("HOME", &home)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |ty: &str| events.iter().filter(|e| e["type"] == ty).collect::<Vec<_>>();
    let phases: Vec<&str> =
        of("sandbox.command").iter().map(|e| e["data"]["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["bootstrap", "on_session", "call"]);
    let result = &of("action.result")[0]["data"];
    let stdout_text = result["result"]["output"]["stdout"].as_str().unwrap();
    assert_eq!(result["status"], "completed", "{result}");
    assert!(stdout_text.starts_with("prepared\n"), "{stdout_text}");
    assert!(
        !stdout_text.contains("home secret"),
        "the sandbox read the host's $HOME: {stdout_text}"
    );
    assert!(stdout_text.contains("on-session\nhome-ok\n"), "{stdout_text}");
    let exited = of("sandbox.exited");
    let call_end = &exited.last().unwrap()["data"];
    assert_eq!(call_end["exitCode"], 0);
    if stdout_text.ends_with("ash-sandbox\n") {
        // An isolating backend ran it: the helper counted what it used.
        assert!(call_end["peakMemoryBytes"].as_u64().is_some_and(|m| m > 0), "{call_end}");
        assert!(result["result"]["output"]["usage"]["peakMemoryBytes"].is_u64(), "{result}");
    }
    let streamed: String = of("sandbox.output")
        .iter()
        .filter(|e| e["data"]["stream"] == "stdout")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert!(streamed.contains("prepared\n") && streamed.contains(stdout_text), "{streamed}");
}
