//! Named sandboxes through the engine: a template built once per definition, a copy per
//! session whose files outlive calls and restarts, `on_session` once per session, every
//! command's start, output and end on the stream.

use std::sync::Arc;

use ash_core::MemoryStore;
use ash_protocol::{ActionStatus, EventBody, SandboxPhase};
use ash_test_support::{Reply, Turn};
use serde_json::{Value, json};

use crate::{Harness, bodies, read_until};

const SANDBOX: &str = r#"
//- agent/sandboxes/repo-shell.toml
description = "A shell with a prepared repo."
bootstrap = ["mkdir -p repo && echo template > repo/origin", "echo built"]
on_session = ["echo session >> repo/sessions"]
timeout_ms = 20000
//- agent/tools/where.toml
description = "Says where it runs."
command = ["bash", "-c", "echo \"{\\\"pwd\\\": \\\"$(pwd)\\\", \\\"origin\\\": \\\"$(cat repo/origin)\\\"}\""]
sandbox = "repo-shell"
"#;

/// `(phase, command)` of every `sandbox.command` event.
fn commands(events: &[ash_protocol::Event]) -> Vec<(SandboxPhase, String)> {
    bodies(events, "sandbox.command")
        .into_iter()
        .map(|b| match b {
            EventBody::SandboxCommand(c) => (c.phase, c.command.clone()),
            _ => unreachable!(),
        })
        .collect()
}

/// `(callId, status, output, error)` of every `action.result`.
fn results(events: &[ash_protocol::Event]) -> Vec<(String, ActionStatus, Value, Option<String>)> {
    bodies(events, "action.result")
        .into_iter()
        .map(|b| match b {
            EventBody::ActionResult(r) => {
                let output = match &r.result {
                    ash_protocol::ActionOutput::ToolResult { output, .. } => output.clone(),
                    other => panic!("{other:?}"),
                };
                (r.call_id.clone(), r.status, output, r.error.as_ref().map(|e| e.message.clone()))
            }
            _ => unreachable!(),
        })
        .collect()
}

fn call(id: &str, args: &Value) -> Turn {
    Turn::empty().then_tool_call(id, "repo_shell_sandbox", &args.to_string())
}

#[tokio::test]
async fn a_template_is_built_once_and_each_session_keeps_its_own_copy() {
    let h = Harness::with(SANDBOX, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(
            call("c1", &json!({"command": "cat repo/origin repo/sessions; echo mine > note; echo err >&2; exit 3"}))
                .then_tool_call("c2", "repo_shell_sandbox", r#"{"command": "cat ../note sessions; pwd", "cwd": "repo"}"#)
                .then_tool_call("c3", "repo_shell_sandbox", r#"{"command": "true", "cwd": "../.."}"#)
                .then_tool_call("c4", "where", "{}"),
        ))
        .push(Reply::Turn(Turn::text("Done.")));
    let first = h.send("work in the sandbox", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    assert_eq!(
        commands(&events),
        [
            (SandboxPhase::Bootstrap, "mkdir -p repo && echo template > repo/origin".to_owned()),
            (SandboxPhase::Bootstrap, "echo built".to_owned()),
            (SandboxPhase::OnSession, "echo session >> repo/sessions".to_owned()),
            (
                SandboxPhase::Call,
                "cat repo/origin repo/sessions; echo mine > note; echo err >&2; exit 3".to_owned()
            ),
            (SandboxPhase::Call, "cat ../note sessions; pwd".to_owned()),
            (
                SandboxPhase::Call,
                r#"bash -c echo "{\"pwd\": \"$(pwd)\", \"origin\": \"$(cat repo/origin)\"}""#
                    .to_owned()
            ),
        ]
    );
    let root = h
        .state
        .path()
        .join("sandboxes/sessions")
        .join(first.run_id.as_str())
        .join("repo_shell_sandbox");
    let root = root.canonicalize().unwrap();
    let got = results(&events);
    assert_eq!(
        got[..2].to_vec(),
        [
            (
                "c1".to_owned(),
                ActionStatus::Completed,
                json!({"exitCode": 3, "stdout": "template\nsession\n", "stderr": "err\n"}),
                None
            ),
            (
                "c2".to_owned(),
                ActionStatus::Completed,
                json!({"exitCode": 0, "stdout": format!("mine\nsession\n{}/repo\n", root.display()), "stderr": ""}),
                None
            ),
        ]
    );
    assert_eq!(got[2].1, ActionStatus::Failed);
    assert!(got[2].3.as_deref().is_some_and(|e| e.contains("without `..`")), "{:?}", got[2]);
    assert_eq!(
        (got[3].1, got[3].2.clone()),
        (ActionStatus::Completed, json!({"pwd": root.display().to_string(), "origin": "template"}))
    );
    // Output reached the stream as it came, and each command's end with its exit code.
    let outputs: Vec<(String, String)> = bodies(&events, "sandbox.output")
        .into_iter()
        .map(|b| match b {
            EventBody::SandboxOutput(o) => (format!("{:?}", o.stream), o.text.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert!(outputs.contains(&("Stderr".to_owned(), "err\n".to_owned())), "{outputs:?}");
    let exits: Vec<(SandboxPhase, Option<i32>)> = bodies(&events, "sandbox.exited")
        .into_iter()
        .map(|b| match b {
            EventBody::SandboxExited(e) => (e.phase, e.exit_code),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(exits[3], (SandboxPhase::Call, Some(3)));

    // The next turn of the same session: no bootstrap, no on_session, files still there.
    h.server
        .push(Reply::Turn(call("c5", &json!({"command": "cat note repo/sessions"}))))
        .push(Reply::Turn(Turn::text("Again.")));
    let next = h.send("again", Some(&first.continuation_token)).await;
    let events = read_until(&h.engine, &next.run_id, next.start_index, &["session.waiting"]).await;
    assert_eq!(commands(&events), [(SandboxPhase::Call, "cat note repo/sessions".to_owned())]);
    assert_eq!(results(&events)[0].2["stdout"], json!("mine\nsession\n"));

    // A second session: the template is reused, on_session runs for it, the first session's
    // files are not there.
    h.server
        .push(Reply::Turn(call(
            "d1",
            &json!({"command": "cat repo/origin repo/sessions; ls note"}),
        )))
        .push(Reply::Turn(Turn::text("Second.")));
    let second = h.send("another session", None).await;
    let events = read_until(&h.engine, &second.run_id, 0, &["session.waiting"]).await;
    assert_eq!(
        commands(&events),
        [
            (SandboxPhase::OnSession, "echo session >> repo/sessions".to_owned()),
            (SandboxPhase::Call, "cat repo/origin repo/sessions; ls note".to_owned()),
        ]
    );
    assert_eq!(results(&events)[0].2["stdout"], json!("template\nsession\n"));
    assert_eq!(results(&events)[0].2["exitCode"], json!(2));
}

#[tokio::test]
async fn a_changed_definition_builds_a_new_template_and_a_failed_bootstrap_keeps_nothing() {
    let h = Harness::with(SANDBOX, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(call("c1", &json!({"command": "cat repo/origin"}))))
        .push(Reply::Turn(Turn::text("Done.")));
    let first = h.send("one", None).await;
    read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let templates = h.state.path().join("sandboxes/templates");
    let listed = || {
        let mut names: Vec<String> = std::fs::read_dir(&templates)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listed();
    assert_eq!(before.len(), 1, "{before:?}");

    // Restarted with a bootstrap that fails: the call says why, nothing is kept, and the
    // old session's copy is untouched.
    h.engine.shutdown().await;
    let file = h.fixture.path().join("agent/sandboxes/repo-shell.toml");
    std::fs::write(&file, "bootstrap = [\"echo half > repo-half\", \"echo broken >&2; exit 7\"]\n")
        .unwrap();
    let engine = h.restart(|_| {});
    h.server
        .push(Reply::Turn(call("c1", &json!({"command": "echo hi"}))))
        .push(Reply::Turn(Turn::text("Failed.")));
    let failed = crate::send(&engine, "fails", None, None).await;
    let events = read_until(&engine, &failed.run_id, 0, &["session.waiting"]).await;
    let result = &results(&events)[0];
    assert_eq!(result.1, ActionStatus::Failed);
    let error = result.3.clone().unwrap();
    assert!(
        error.contains("bootstrap stopped")
            && error.contains("exit code 7")
            && error.contains("broken"),
        "{error}"
    );
    assert_eq!(listed(), before, "a failed bootstrap leaves no template, not even a staging copy");

    // Fixed: the new definition gets its own template, the old one is gone.
    engine.shutdown().await;
    std::fs::write(&file, "bootstrap = [\"echo second > made\"]\n").unwrap();
    let engine = h.restart(|_| {});
    h.server
        .push(Reply::Turn(call("c1", &json!({"command": "cat made"}))))
        .push(Reply::Turn(Turn::text("Rebuilt.")));
    let rebuilt = crate::send(&engine, "rebuilt", None, None).await;
    let events = read_until(&engine, &rebuilt.run_id, 0, &["session.waiting"]).await;
    assert_eq!(commands(&events)[0], (SandboxPhase::Bootstrap, "echo second > made".to_owned()));
    assert_eq!(results(&events)[0].2["stdout"], json!("second\n"));
    let after = listed();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    // The first session kept its copy of the first template.
    let old = h.state.path().join("sandboxes/sessions").join(first.run_id.as_str());
    assert_eq!(
        std::fs::read_to_string(old.join("repo_shell_sandbox/repo/origin")).unwrap(),
        "template\n"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_command_flooding_output_is_capped_in_its_result_and_in_the_stream() {
    let flood = "//- agent/sandboxes/box.toml\n[limits]\noutput_kb = 64\n";
    let h = Harness::with(flood, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(Turn::empty().then_tool_call(
            "f",
            "box_sandbox",
            r#"{"command":"head -c 3000000 /dev/zero | tr '\\0' a"}"#,
        )))
        .push(Reply::Turn(Turn::text("Flooded.")));
    let first = h.send("flood", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let result = &results(&events)[0];
    assert_eq!(result.1, ActionStatus::Completed);
    assert_eq!(result.2["truncated"], json!(true));
    assert_eq!(result.2["stdout"].as_str().unwrap().len(), 64 * 1024);
    let streamed: usize = bodies(&events, "sandbox.output")
        .into_iter()
        .map(|b| match b {
            EventBody::SandboxOutput(o) => o.text.len(),
            _ => unreachable!(),
        })
        .sum();
    assert!(streamed <= 256 * 1024, "{streamed}");
}
