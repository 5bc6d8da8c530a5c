//! Turns: tool calls, skills, command tools, task mode, cancel, limits, resume after shutdown.

use std::sync::Arc;
use std::time::Duration;

use ash_core::{CancelOutcome, Inbound, MemoryStore, RunId, SendError, Store};
use ash_protocol::{
    Action, ActionOutput, ActionStatus, EventBody, RunMode, RunStatus, StopReason, Usage,
};
use ash_test_support::{Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::{Harness, bodies, read_until, send, types};

fn results(
    events: &[ash_protocol::Event],
) -> Vec<(String, u32, ActionStatus, Value, Option<String>)> {
    bodies(events, "action.result")
        .into_iter()
        .map(|b| match b {
            EventBody::ActionResult(r) => {
                let output = match &r.result {
                    ActionOutput::ToolResult { output, .. } => output.clone(),
                    ActionOutput::LoadSkillResult { name } => json!({ "skill": name }),
                    ActionOutput::SubagentResult { subagent_name, output } => {
                        json!({ "subagent": subagent_name, "output": output })
                    }
                };
                (
                    r.call_id.clone(),
                    r.attempt,
                    r.status,
                    output,
                    r.error.as_ref().map(|e| e.message.clone()),
                )
            }
            _ => unreachable!(),
        })
        .collect()
}

#[tokio::test]
async fn a_conversation_runs_tools_parks_and_continues_with_its_history() {
    let h = Harness::new("//- agent/system.md\nYou are terse.\n").await;
    h.server
        .push(Reply::Turn(
            Turn::text("Writing a file.")
                .then_tool_call("c1", "write_file", r#"{"path":"notes/a.txt","content":"hello"}"#)
                .then_tool_call("c2", "bash", r#"{"command":"cat notes/a.txt; echo; pwd"}"#)
                .usage(10, 5, 0, 0),
        ))
        .push(Reply::Turn(Turn::text("Done: hello.").usage(20, 3, 4, 0)))
        .push(Reply::Turn(Turn::text("Still here.").usage(30, 2, 0, 0)));
    let first = h.send("make a note", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    assert_eq!(
        types(&events),
        [
            "run.started",
            "turn.started",
            "message.received",
            "message.completed",
            "actions.requested",
            "action.result",
            "action.result",
            "step.completed",
            "message.completed",
            "step.completed",
            "turn.completed",
            "session.waiting",
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.meta.index).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    let workspace = h.workspace(first.run_id.as_str()).canonicalize().unwrap();
    assert_eq!(
        results(&events),
        [
            (
                "c1".into(),
                1,
                ActionStatus::Completed,
                json!({"path": "notes/a.txt", "bytes": 5}),
                None
            ),
            (
                "c2".into(),
                1,
                ActionStatus::Completed,
                json!({"exitCode": 0, "stdout": format!("hello\n{}\n", workspace.display()), "stderr": ""}),
                None
            ),
        ]
    );
    let EventBody::TurnCompleted(done) = bodies(&events, "turn.completed")[0] else {
        unreachable!()
    };
    assert_eq!(
        (done.steps, done.stop_reason, done.usage),
        (
            2,
            StopReason::Completed,
            Usage {
                input_tokens: 34,
                output_tokens: 8,
                cache_read_tokens: 4,
                cache_write_tokens: 0
            }
        )
    );
    let EventBody::SessionWaiting(waiting) = bodies(&events, "session.waiting")[0] else {
        unreachable!()
    };
    assert_eq!(waiting.continuation_token, first.continuation_token);

    // The follow-up continues the same run, from the next index, with the whole history.
    let second = h.send("still there?", Some(&first.continuation_token)).await;
    assert_eq!((second.run_id.as_str(), second.start_index), (first.run_id.as_str(), 12));
    let more = read_until(&h.engine, &first.run_id, 12, &["session.waiting"]).await;
    assert_eq!(
        types(&more),
        [
            "turn.started",
            "message.received",
            "message.completed",
            "step.completed",
            "turn.completed",
            "session.waiting"
        ]
    );
    let requests = h.server.requests();
    let roles: Vec<&str> = requests[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool", "assistant", "user"]);
    let system = requests[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are terse.\n\n## Workspace\n\nYour workspace is the directory `"),
        "{system}"
    );
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["bash", "edit_file", "read_file", "search_files", "write_file"]);
    let info = h.engine.run_info(&first.run_id).await.unwrap().unwrap();
    assert_eq!(
        (
            info.status,
            info.turns,
            info.event_count,
            info.usage.input_tokens,
            info.usage.output_tokens
        ),
        (RunStatus::Waiting, 2, 18, 64, 10)
    );
    // A parked session holds no worker and, without readers, no channel.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((h.engine.active_runs(), h.engine.live_channels()), (0, 0));
}

#[tokio::test]
async fn files_are_edited_in_place_and_searched() {
    let h = Harness::new("//- agent/system.md\nYou code.\n").await;
    let source = "fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n// a - b is wrong\n";
    h.server
        .push(Reply::Turn(
            Turn::text("Fixing.")
                .then_tool_call(
                    "w",
                    "write_file",
                    &json!({ "path": "src/lib.rs", "content": source }).to_string(),
                )
                .then_tool_call("s", "search_files", r#"{"pattern":"a - b","literal":true}"#)
                .then_tool_call(
                    "e1",
                    "edit_file",
                    r#"{"path":"src/lib.rs","old":"a - b","new":"a + b"}"#,
                )
                .then_tool_call(
                    "e2",
                    "edit_file",
                    r#"{"path":"src/lib.rs","old":"    a - b\n","new":"    a + b\n"}"#,
                )
                .then_tool_call("e3", "edit_file", r#"{"path":"../escape.rs","old":"x","new":"y"}"#)
                .then_tool_call("s2", "search_files", r#"{"pattern":"fn \\w+\\(","path":"src"}"#),
        ))
        .push(Reply::Turn(Turn::text("Fixed.")));
    let sent = h.send("fix add", None).await;
    let events = read_until(&h.engine, &sent.run_id, 0, &["session.waiting"]).await;
    let got: Vec<(String, Value, Option<String>)> =
        results(&events).into_iter().map(|(id, _, _, output, error)| (id, output, error)).collect();
    assert_eq!(
        got[1..],
        [
            (
                "s".to_owned(),
                json!({ "matches": [
                    { "path": "src/lib.rs", "line": 2, "text": "    a - b" },
                    { "path": "src/lib.rs", "line": 4, "text": "// a - b is wrong" },
                ], "truncated": false }),
                None
            ),
            (
                "e1".to_owned(),
                Value::Null,
                Some("`src/lib.rs`: `old` occurs 2 times; add surrounding lines to make it unique, or set replaceAll".to_owned())
            ),
            ("e2".to_owned(), json!({ "path": "src/lib.rs", "replacements": 1 }), None),
            ("e3".to_owned(), Value::Null, Some("`../escape.rs` is outside the workspace; use a path relative to the workspace root".to_owned())),
            (
                "s2".to_owned(),
                json!({ "matches": [{ "path": "src/lib.rs", "line": 1, "text": "fn add(a: i32, b: i32) -> i32 {" }], "truncated": false }),
                None
            ),
        ]
    );
    let workspace = h.workspace(sent.run_id.as_str());
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/lib.rs")).unwrap(),
        "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n// a - b is wrong\n"
    );
}

#[tokio::test]
async fn task_mode_ends_the_run_with_its_output_and_refuses_follow_ups() {
    let h = Harness::new("").await;
    h.server.push(Reply::Turn(Turn::text("42").usage(7, 1, 0, 0)));
    let accepted = send(&h.engine, "answer", None, Some(RunMode::Task)).await;
    let events = read_until(&h.engine, &accepted.run_id, 0, &["run.completed", "run.failed"]).await;
    assert_eq!(
        types(&events),
        [
            "run.started",
            "turn.started",
            "message.received",
            "message.completed",
            "step.completed",
            "turn.completed",
            "run.completed"
        ]
    );
    let EventBody::RunCompleted(done) = &events[6].body else { unreachable!() };
    assert_eq!((done.output.as_deref(), done.usage.input_tokens), (Some("42"), 7));
    let err = h
        .engine
        .send(Inbound {
            continuation_token: Some(accepted.continuation_token.clone()),
            ..Inbound::new("more")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Ended(RunStatus::Completed)), "{err:?}");
    // The follower ends after the terminal event.
    let mut follower = h.engine.follow(&accepted.run_id, 0).await.unwrap().unwrap();
    let mut n = 0;
    while follower.next().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 7);
}

#[tokio::test]
async fn skills_are_catalogued_seeded_and_activated_under_both_names() {
    let h = Harness::new(
        "//- agent/skills/pdf/SKILL.md\n---\ndescription: Fill PDF forms.\n---\nUse scripts/fill.py.\n\
         //- agent/skills/pdf/scripts/fill.py\nprint('fill')\n\
         //- agent/skills/greet.md\n---\ndescription: Greet people.\n---\nSay hi.\n",
    )
    .await;
    h.server
        .push(Reply::Turn(
            Turn::empty()
                .then_tool_call("s1", "activate_skill", r#"{"name":"pdf"}"#)
                .then_tool_call("s2", "load_skill", r#"{"name":"greet"}"#)
                .then_tool_call("s3", "activate_skill", r#"{"name":"nope"}"#)
                .then_tool_call("s4", "bash", r#"{"command":"cat skills/pdf/scripts/fill.py"}"#),
        ))
        .push(Reply::Turn(Turn::text("ok")));
    let run = h.send("fill it", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    let EventBody::ActionsRequested(requested) = bodies(&events, "actions.requested")[0] else {
        unreachable!()
    };
    assert_eq!(
        requested.actions[..2],
        [
            Action::LoadSkill { call_id: "s1".into(), input: json!({"name": "pdf"}) },
            Action::LoadSkill { call_id: "s2".into(), input: json!({"name": "greet"}) },
        ]
    );
    let got = results(&events);
    assert_eq!(got[0].3, json!({"skill": "pdf"}));
    assert_eq!(got[1].2, ActionStatus::Completed);
    assert_eq!(got[3].3["stdout"], json!("print('fill')\n"));
    assert_eq!(got[2].2, ActionStatus::Failed);
    assert!(got[2].4.as_deref().unwrap().contains("\"nope\" is not one of"), "{:?}", got[2].4);
    // The model saw the instructions and the files.
    let request = &h.server.requests()[1].body;
    let tool_messages: Vec<&Value> =
        request["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").collect();
    let first: Value = serde_json::from_str(tool_messages[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"name": "pdf", "instructions": "Use scripts/fill.py.\n", "files": ["skills/pdf/SKILL.md", "skills/pdf/scripts/fill.py"]})
    );
    let system = h.server.requests()[0].body["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(system.ends_with("## Skills\n\nBefore following a skill, load its instructions with `activate_skill`. Its files are under `skills/` in the workspace.\n\n- `greet`: Greet people.\n- `pdf`: Fill PDF forms."), "{system}");
}

#[tokio::test]
async fn command_tools_validate_input_and_report_bad_output_to_the_model() {
    let h = Harness::new(
        "//- agent/tools/lookup.toml\ndescription = \"Look up a city.\"\ncommand = [\"sh\", \"./lookup.sh\"]\ntimeout_ms = 1500\n\
         [input_schema]\ntype = \"object\"\nproperties.city = { type = \"string\", minLength = 1 }\nproperties.mode = { type = \"string\" }\nrequired = [\"city\"]\n\
         //- agent/tools/lookup.sh\n\
         input=$(cat)\n\
         case \"$input\" in\n\
           *plain*) echo 'not json';;\n\
           *hang*) sleep 30;;\n\
           *fail*) echo 'city database offline' >&2; exit 4;;\n\
           *flood*) head -c 3000000 /dev/zero | tr '\\0' x;;\n\
           *) printf '{\"input\":%s,\"session\":%s}' \"$input\" \"$ASH_SESSION\";;\n\
         esac\n",
    )
    .await;
    h.server
        .push(Reply::Turn(
            Turn::empty()
                .then_tool_call("t1", "lookup", r#"{"city":""}"#)
                .then_tool_call("t2", "lookup", r#"{"city":"Oslo"}"#)
                .then_tool_call("t3", "lookup", r#"{"city":"x","mode":"plain"}"#)
                .then_tool_call("t4", "lookup", r#"{"city":"x","mode":"hang"}"#)
                .then_tool_call("t5", "lookup", r#"{"city":"x","mode":"fail"}"#)
                .then_tool_call("t6", "lookup", r#"{"city": "Oslo""#)
                .then_tool_call("t7", "no_such_tool", "{}")
                .then_tool_call("t8", "lookup", r#"{"city":"x","mode":"flood"}"#),
        ))
        .push(Reply::Turn(Turn::text("ok")));
    let run = h.send("look", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    let got = results(&events);
    let errors: Vec<Option<String>> = got.iter().map(|r| r.4.clone()).collect();
    assert_eq!(
        errors,
        [
            Some("the input of `lookup` does not match its schema: at `/city`: \"\" is shorter than 1 character".to_owned()),
            None,
            Some("tool `lookup` must print one JSON value on stdout, but printed `not json` (expected ident at line 1 column 2)".to_owned()),
            Some("tool `lookup` did not finish within 1500 ms and was killed".to_owned()),
            Some("tool `lookup` failed with exit code 4: city database offline".to_owned()),
            errors[5].clone(),
            Some("unknown tool `no_such_tool`; available tools: bash, edit_file, lookup, read_file, search_files, write_file".to_owned()),
            Some("tool `lookup` printed more than 1048576 bytes; its output was discarded".to_owned()),
        ]
    );
    assert!(
        errors[5].as_deref().unwrap().contains("send the arguments as a JSON object"),
        "{errors:?}"
    );
    assert_eq!(
        got[1].3,
        json!({
            "input": {"city": "Oslo"},
            "session": {
                "sessionId": run.run_id.as_str(), "runId": run.run_id.as_str(), "mode": "conversation",
                "turn": {"id": "turn_0", "sequence": 0}, "parent": null,
                "auth": {"current": null, "initiator": null}
            }
        })
    );
    let EventBody::ActionsRequested(requested) = bodies(&events, "actions.requested")[0] else {
        unreachable!()
    };
    assert_eq!(
        requested.actions[5],
        Action::ToolCall {
            call_id: "t6".into(),
            tool_name: "lookup".into(),
            input: json!("{\"city\": \"Oslo\"")
        }
    );
}

#[tokio::test]
async fn workspace_paths_cannot_leave_the_workspace() {
    let h = Harness::new("").await;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    h.server
        .push(Reply::Turn(
            Turn::empty()
                .then_tool_call("p1", "read_file", r#"{"path":"../../etc/passwd"}"#)
                .then_tool_call("p2", "read_file", &json!({"path": secret}).to_string())
                .then_tool_call("p3", "bash", &json!({"command": format!("ln -s {} link; ln -s {}/new dangling", secret.display(), outside.path().display())}).to_string())
                .then_tool_call("p4", "read_file", r#"{"path":"link"}"#)
                .then_tool_call("p5", "write_file", r#"{"path":"dangling","content":"x"}"#)
                .then_tool_call("p6", "write_file", r#"{"path":"a/../b.txt","content":"fine"}"#)
                .then_tool_call("p7", "read_file", r#"{"path":"b.txt"}"#),
        ))
        .push(Reply::Turn(Turn::text("ok")));
    let run = h.send("go", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    let got = results(&events);
    let outcome: Vec<(ActionStatus, Option<String>)> =
        got.iter().map(|r| (r.2, r.4.clone())).collect();
    let outside_err = |p: &str| {
        Some(format!("`{p}` is outside the workspace; use a path relative to the workspace root"))
    };
    assert_eq!(
        outcome,
        [
            (ActionStatus::Failed, outside_err("../../etc/passwd")),
            (ActionStatus::Failed, outside_err(&secret.display().to_string())),
            (ActionStatus::Completed, None),
            (ActionStatus::Failed, outside_err("link")),
            (ActionStatus::Failed, outside_err("dangling")),
            (ActionStatus::Completed, None),
            (ActionStatus::Completed, None),
        ]
    );
    assert!(!outside.path().join("new").exists());
    assert_eq!(got[6].3["content"], json!("fine"));
}

#[tokio::test]
async fn cancel_stops_a_running_tool_and_the_session_takes_the_next_message() {
    let h = Harness::new("").await;
    h.server
        .push(Reply::Turn(
            Turn::empty().then_tool_call("h1", "bash", r#"{"command":"sleep 30"}"#).then_tool_call(
                "h2",
                "bash",
                r#"{"command":"echo never"}"#,
            ),
        ))
        .push(Reply::Turn(Turn::text("after cancel")));
    let run = h.send("hang", None).await;
    read_until(&h.engine, &run.run_id, 0, &["actions.requested"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let accepted = h.engine.cancel(&run.run_id).await.unwrap().unwrap();
    assert_eq!(accepted, CancelOutcome::Cancelling);
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    assert_eq!(
        types(&events)[4..],
        ["action.result", "action.result", "step.completed", "turn.cancelled", "session.waiting"]
    );
    let got = results(&events);
    assert_eq!(
        got.iter().map(|r| r.4.clone()).collect::<Vec<_>>(),
        [Some("cancelled by the user".to_owned()), Some("cancelled by the user".to_owned())]
    );
    assert_eq!(h.engine.cancel(&run.run_id).await.unwrap().unwrap(), CancelOutcome::NoActiveTurn);
    assert!(h.engine.cancel(&RunId::new("wrun_nope")).await.unwrap().is_none());
    // The history stays valid: the next turn sends both tool results.
    h.send("again", Some(&run.continuation_token)).await;
    let more = read_until(&h.engine, &run.run_id, events.len() as u64, &["session.waiting"]).await;
    assert_eq!(
        types(&more),
        [
            "turn.started",
            "message.received",
            "message.completed",
            "step.completed",
            "turn.completed",
            "session.waiting"
        ]
    );
    let roles: Vec<String> = h.server.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool", "user"]);
}

#[tokio::test]
async fn bad_messages_and_busy_sessions_are_refused_without_touching_the_run() {
    let h = Harness::new("").await;
    h.server.push(Reply::Hang);
    let run = h.send("hi", None).await;
    let err = |e: SendError| e.to_string();
    let attempt = |message: &str, token: Option<&str>| {
        h.engine
            .send(Inbound { continuation_token: token.map(str::to_owned), ..Inbound::new(message) })
    };
    assert_eq!(
        err(attempt("  \n", None).await.unwrap_err()),
        "`message` is empty; send the text of the user's message"
    );
    assert_eq!(
        err(attempt(&"x".repeat(300_000), None).await.unwrap_err()),
        "`message` is 300000 bytes; the limit is 262144"
    );
    assert_eq!(
        err(attempt("hi", Some("ash:unknown")).await.unwrap_err()),
        "no session has this continuation token; omit it to start a new session"
    );
    let busy = attempt("hi", Some(&run.continuation_token)).await.unwrap_err();
    assert!(matches!(busy, SendError::Busy(_)), "{busy:?}");
    let info = h.engine.run_info(&run.run_id).await.unwrap().unwrap();
    assert_eq!((info.turns, info.event_count), (1, 3));
    assert!(h.engine.run_info(&RunId::new("wrun_missing")).await.unwrap().is_none());
    assert!(h.engine.follow(&RunId::new("wrun_missing"), 0).await.unwrap().is_none());
}

#[tokio::test]
async fn a_model_error_fails_the_turn_but_not_the_session() {
    let h = Harness::new("").await;
    h.server
        .push(Reply::error(400, &json!({"error": {"message": "context too long"}})))
        .push(Reply::Turn(Turn::text("recovered")));
    let run = h.send("hi", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    assert_eq!(types(&events)[3..], ["turn.failed", "session.waiting"]);
    let EventBody::TurnFailed(failed) = &events[3].body else { unreachable!() };
    assert_eq!(failed.code, "model_error");
    assert!(failed.message.contains("context too long"), "{}", failed.message);
    h.send("again", Some(&run.continuation_token)).await;
    let more = read_until(&h.engine, &run.run_id, 5, &["session.waiting"]).await;
    assert_eq!(
        types(&more)[2..],
        ["message.completed", "step.completed", "turn.completed", "session.waiting"]
    );
}

#[tokio::test]
async fn the_step_limit_ends_a_turn_that_keeps_calling_tools() {
    let h = Harness::new("//- agent/agent.toml\nname = \"tester\"\nmodel = \"openai/gpt-test\"\n[limits]\nmax_steps_per_turn = 2\n").await;
    h.server
        .push(Reply::Turn(Turn::empty().then_tool_call("l", "bash", r#"{"command":"true"}"#)))
        .repeat();
    let run = h.send("loop", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    let EventBody::TurnCompleted(done) = bodies(&events, "turn.completed")[0] else {
        unreachable!()
    };
    assert_eq!((done.steps, done.stop_reason), (2, StopReason::StepLimit));
    assert_eq!(h.server.requests().len(), 2);
}

#[tokio::test]
async fn an_action_interrupted_by_shutdown_runs_again_with_the_next_attempt() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let h =
        Harness::with("", Arc::clone(&store), |c| c.shutdown_grace = Duration::from_millis(100))
            .await;
    h.server
        .push(Reply::Turn(
            Turn::empty()
                .then_tool_call("d1", "bash", r#"{"command":"echo run >> once.log"}"#)
                .then_tool_call(
                    "d2",
                    "bash",
                    r#"{"command":"echo start >> twice.log; sleep 2; echo end >> twice.log"}"#,
                ),
        ))
        .push(Reply::Turn(Turn::text("finished")));
    let run = h.send("work", None).await;
    read_until(&h.engine, &run.run_id, 0, &["action.result"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.engine.shutdown().await;
    assert_eq!(store.run(run.run_id.as_str()).await.unwrap().unwrap().status, RunStatus::Running);

    let restarted = h.restart(|_| {});
    let events = read_until(&restarted, &run.run_id, 0, &["session.waiting"]).await;
    let got = results(&events);
    assert_eq!(got.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(), [("d1", 1), ("d2", 2)]);
    let ws = h.workspace(run.run_id.as_str());
    assert_eq!(std::fs::read_to_string(ws.join("once.log")).unwrap(), "run\n");
    assert_eq!(std::fs::read_to_string(ws.join("twice.log")).unwrap(), "start\nstart\nend\n");
    assert_eq!(types(&events).iter().filter(|t| **t == "actions.requested").count(), 1);
    assert_eq!(
        events.iter().map(|e| e.meta.index).collect::<Vec<_>>(),
        (0..events.len() as u64).collect::<Vec<_>>()
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn following_from_any_index_returns_exactly_the_rest() {
    let h = Harness::new("").await;
    h.server
        .push(Reply::Turn(Turn::text("a").then_tool_call("x", "bash", r#"{"command":"echo hi"}"#)))
        .push(Reply::Turn(Turn::text("b")));
    let run = h.send("go", None).await;
    let all = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    for start in 0..all.len() {
        let rest = read_until(&h.engine, &run.run_id, start as u64, &["session.waiting"]).await;
        assert_eq!(rest, all[start..], "from {start}");
    }
    // Beyond the end: nothing until something new arrives.
    let mut follower = h.engine.follow(&run.run_id, 1000).await.unwrap().unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), follower.next()).await.is_err());
}
