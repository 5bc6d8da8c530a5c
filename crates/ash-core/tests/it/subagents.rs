//! Subagents through the engine: a child run per delegation, its events inline on the parent's
//! stream, re-attached after a restart, its approvals answered on the root, cancelled with it.

use std::sync::Arc;

use ash_core::{Answer, MemoryStore, RunId};
use ash_protocol::{ActionOutput, ActionStatus, Event, EventBody, RunStatus};
use ash_test_support::{Reply, Turn};
use serde_json::{Value, json};

use crate::{Harness, bodies, read_until, types};

const REVIEWER: &str = r#"
//- agent/subagents/reviewer/agent.toml
description = "Reviews a change and says whether it is fine."
//- agent/subagents/reviewer/system.md
You review changes.
//- agent/subagents/reviewer/tools/look.toml
description = "Looks at the change."
command = ["bash", "-c", "cat > /dev/null; echo \"$ASH_SESSION\""]
"#;

fn delegate(id: &str, message: &str) -> Turn {
    Turn::empty().then_tool_call(id, "reviewer", &json!({ "message": message }).to_string())
}

/// The child events the parent forwarded, in order.
fn inline(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SubagentEvent(s) => Some((*s.event).clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_delegation_runs_a_child_and_streams_its_events_inline() {
    let h = Harness::with(REVIEWER, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(delegate("d1", "review the change")))
        .push(Reply::Turn(Turn::empty().then_tool_call("l1", "look", "{}")))
        .push(Reply::Turn(Turn::text("Looks good.")))
        .push(Reply::Turn(Turn::text("The reviewer says it is fine.")));
    let first = h.send("is my change fine?", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let seq: Vec<&str> = types(&events)
        .into_iter()
        .filter(|t| t.starts_with("subagent.") || t.starts_with("action"))
        .collect();
    assert_eq!(seq.first(), Some(&"actions.requested"));
    assert_eq!(seq[1], "subagent.started");
    assert_eq!(
        seq.iter().rev().take(2).copied().collect::<Vec<_>>(),
        ["action.result", "subagent.completed"]
    );
    let Some(EventBody::ActionsRequested(requested)) =
        bodies(&events, "actions.requested").first().copied().cloned()
    else {
        panic!()
    };
    assert!(
        matches!(&requested.actions[0], ash_protocol::Action::SubagentCall { name, .. } if name == "reviewer")
    );
    let Some(EventBody::SubagentStarted(started)) =
        bodies(&events, "subagent.started").first().copied().cloned()
    else {
        panic!()
    };
    // The child is a run of its own: task mode, completed, its events all forwarded once.
    let child = RunId::new(started.child_run_id.clone());
    let info = h.engine.run_info(&child).await.unwrap().unwrap();
    assert_eq!((info.status, info.mode), (RunStatus::Completed, ash_protocol::RunMode::Task));
    let child_events = read_until(&h.engine, &child, 0, &["run.completed"]).await;
    let forwarded = inline(&events);
    assert_eq!(forwarded, child_events, "every child event, in order, once");
    // The child's tool saw its parent in ASH_SESSION.
    let look = child_events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ActionResult(r) => match &r.result {
                ActionOutput::ToolResult { output, .. } => Some(output.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(look["parent"]["runId"], json!(first.run_id.as_str()));
    assert_eq!(look["parent"]["turn"], json!({"id": "turn_0", "sequence": 0}));
    assert_eq!(look["runId"], json!(started.child_run_id));
    // The parent's result is the child's reply.
    let Some(EventBody::ActionResult(result)) =
        bodies(&events, "action.result").first().copied().cloned()
    else {
        panic!()
    };
    assert_eq!(
        (result.status, result.result),
        (
            ActionStatus::Completed,
            ActionOutput::SubagentResult {
                subagent_name: "reviewer".to_owned(),
                output: json!("Looks good.")
            }
        )
    );
    let Some(EventBody::SubagentCompleted(done)) =
        bodies(&events, "subagent.completed").first().copied().cloned()
    else {
        panic!()
    };
    assert_eq!((done.status.as_str(), done.output.as_deref()), ("completed", Some("Looks good.")));
    assert_eq!(done.usage.input_tokens, 20, "two child model calls of 10 tokens");
    // The child's model request carried its own prompt and tools, not the parent's.
    let requests = h.server.requests();
    let child_request = requests[1].body.to_string();
    assert!(
        child_request.contains("You review changes.") && child_request.contains("\"look\""),
        "{child_request}"
    );
    assert!(!child_request.contains("\"reviewer\""), "the child is not offered itself");

    // The next turn reuses the call id (models do): it is another delegation, another child.
    h.server
        .push(Reply::Turn(delegate("d1", "review again")))
        .push(Reply::Turn(Turn::text("Still good.")))
        .push(Reply::Turn(Turn::text("Fine again.")));
    let next = h.send("and now?", Some(&first.continuation_token)).await;
    let events = read_until(&h.engine, &next.run_id, next.start_index, &["session.waiting"]).await;
    let Some(EventBody::SubagentStarted(again)) =
        bodies(&events, "subagent.started").first().copied().cloned()
    else {
        panic!()
    };
    assert_ne!(again.child_run_id, started.child_run_id);
    let Some(EventBody::SubagentCompleted(done)) =
        bodies(&events, "subagent.completed").first().copied().cloned()
    else {
        panic!()
    };
    assert_eq!(done.output.as_deref(), Some("Still good."));
}

#[tokio::test]
async fn a_restarted_parent_reattaches_to_its_child_and_forwards_each_event_once() {
    let slow = r#"
//- agent/subagents/reviewer/agent.toml
description = "Reviews slowly."
//- agent/subagents/reviewer/tools/slow.toml
description = "Takes its time."
command = ["bash", "-c", "cat > /dev/null; sleep 1; echo '\"slept\"'"]
//- agent/subagents/reviewer/tools/quick.toml
description = "Is quick."
command = ["bash", "-c", "cat > /dev/null; echo '\"quick\"'"]
"#;
    let h = Harness::with(slow, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(delegate("d1", "review slowly")))
        .push(Reply::Turn(
            Turn::empty().then_tool_call("q1", "quick", "{}").then_tool_call("s1", "slow", "{}"),
        ))
        .push(Reply::Turn(Turn::text("Reviewed.")))
        .push(Reply::Turn(Turn::text("Done.")));
    let first = h.send("review", None).await;
    // Stop the server while the child's slow tool runs (its quick one has finished).
    read_until(&h.engine, &first.run_id, 0, &["subagent.event"]).await;
    while h.server.requests().len() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    h.engine.shutdown().await;
    let engine = h.restart(|_| {});
    let events = read_until(&engine, &first.run_id, 0, &["session.waiting"]).await;
    let started: Vec<(String, u32)> = bodies(&events, "subagent.started")
        .into_iter()
        .map(|b| match b {
            EventBody::SubagentStarted(s) => (s.child_run_id.clone(), s.attempt),
            _ => unreachable!(),
        })
        .collect();
    assert!(
        !started.is_empty() && started.iter().all(|(c, _)| *c == started[0].0),
        "one child: {started:?}"
    );
    let forwarded = inline(&events);
    let indexes: Vec<u64> = forwarded.iter().map(|e| e.meta.index).collect();
    let expected: Vec<u64> = (0..indexes.len() as u64).collect();
    assert_eq!(indexes, expected, "each child event forwarded once, in order");
    // The quick tool finished once; only the interrupted slow one ran again.
    let quick_runs = forwarded
        .iter()
        .filter(|e| matches!(&e.body, EventBody::ActionResult(r) if r.call_id == "q1"))
        .count();
    assert_eq!(quick_runs, 1);
    let Some(EventBody::SubagentCompleted(done)) =
        bodies(&events, "subagent.completed").first().copied().cloned()
    else {
        panic!()
    };
    assert_eq!(done.output.as_deref(), Some("Reviewed."));
    assert_eq!(types(&events).last(), Some(&"session.waiting"));
    engine.shutdown().await;
}

#[tokio::test]
async fn an_approval_inside_a_subagent_is_answered_on_the_root_and_cancel_reaches_the_child() {
    let guarded = r#"
//- agent/subagents/reviewer/agent.toml
description = "Merges when told."
//- agent/subagents/reviewer/tools/merge.toml
description = "Merges."
command = ["bash", "-c", "cat > /dev/null; echo '\"merged\"'"]
approval = "required"
"#;
    let h = Harness::with(guarded, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(delegate("d1", "merge it")))
        .push(Reply::Turn(Turn::empty().then_tool_call("m1", "merge", "{}")))
        .push(Reply::Turn(Turn::text("Merged.")))
        .push(Reply::Turn(Turn::text("It is merged.")));
    let first = h.send("merge my change", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let Some(EventBody::InputRequested(asked)) =
        bodies(&events, "input.requested").first().copied().cloned()
    else {
        panic!("the root asks: {:?}", types(&events))
    };
    assert_eq!((asked.tool_name.as_str(), asked.call_id.as_str()), ("merge", "m1"));
    assert!(asked.reason.starts_with("in subagent `reviewer`:"), "{}", asked.reason);
    assert_eq!(h.engine.run_info(&first.run_id).await.unwrap().unwrap().status, RunStatus::Paused);
    let child = RunId::new(asked.request_id.split('/').next().unwrap());
    assert_eq!(h.engine.run_info(&child).await.unwrap().unwrap().status, RunStatus::Paused);
    let answer =
        |id: &str| Answer { request_id: id.to_owned(), approve: true, message: None, caller: None };
    // The child's own request id is not an answer to the root.
    let inner_id = asked.request_id.split_once('/').unwrap().1.to_owned();
    assert!(h.engine.answer(&first.run_id, answer(&inner_id)).await.is_err());
    // The child is answered through its root only.
    let direct = h.engine.answer(&child, answer(&inner_id)).await;
    assert!(
        matches!(&direct, Err(ash_core::ContinueError::Stale(why)) if why.contains("delegated")),
        "{direct:?}"
    );
    let start = h.engine.answer(&first.run_id, answer(&asked.request_id)).await.unwrap();
    let events = read_until(&h.engine, &first.run_id, start, &["session.waiting"]).await;
    let Some(EventBody::ActionResult(result)) =
        bodies(&events, "action.result").last().copied().cloned()
    else {
        panic!()
    };
    assert_eq!(
        result.result,
        ActionOutput::SubagentResult {
            subagent_name: "reviewer".to_owned(),
            output: json!("Merged.")
        }
    );
    let merged = inline(&events)
        .iter()
        .filter(|e| matches!(&e.body, EventBody::ActionResult(r) if r.call_id == "m1"))
        .count();
    assert_eq!(merged, 1);

    // Cancelling a parent paused on its child's approval ends both.
    h.server
        .push(Reply::Turn(delegate("d2", "merge again")))
        .push(Reply::Turn(Turn::empty().then_tool_call("m2", "merge", "{}")));
    let next = h.send("again", Some(&first.continuation_token)).await;
    let events = read_until(&h.engine, &next.run_id, next.start_index, &["session.waiting"]).await;
    let Some(EventBody::InputRequested(asked)) =
        bodies(&events, "input.requested").first().copied().cloned()
    else {
        panic!()
    };
    let child = RunId::new(asked.request_id.split('/').next().unwrap());
    let count = h.engine.run_info(&first.run_id).await.unwrap().unwrap().event_count;
    h.engine.cancel(&first.run_id).await.unwrap();
    let events = read_until(&h.engine, &first.run_id, count, &["session.waiting"]).await;
    assert!(types(&events).contains(&"turn.cancelled"), "{:?}", types(&events));
    let child_events = read_until(&h.engine, &child, 0, &["run.failed"]).await;
    assert!(types(&child_events).contains(&"turn.cancelled"), "{:?}", types(&child_events));
    let _: Value = json!(null);
}

#[tokio::test]
async fn a_subagent_spends_only_what_its_parent_has_left_and_a_raised_budget_resumes_both() {
    // Each fake model call writes 5 tokens; the root may write 12 in all.
    let files = "[limits]\nmax_output_tokens_per_session = 12\n\
        //- agent/subagents/reviewer/agent.toml\ndescription = \"Works in steps.\"\n\
        //- agent/subagents/reviewer/tools/step.toml\ndescription = \"A step.\"\ncommand = [\"bash\", \"-c\", \"cat > /dev/null; echo '\\\"ok\\\"'\"]\n";
    let h = Harness::with(files, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(delegate("d1", "work")))
        .push(Reply::Turn(Turn::empty().then_tool_call("s1", "step", "{}")))
        .push(Reply::Turn(Turn::empty().then_tool_call("s2", "step", "{}")))
        .push(Reply::Turn(Turn::text("Worked.")))
        .push(Reply::Turn(Turn::text("All done.")));
    let first = h.send("work a lot", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let Some(EventBody::SessionWaiting(waiting)) =
        bodies(&events, "session.waiting").pop().cloned()
    else {
        panic!()
    };
    let reason = waiting.reason.expect("the root paused with its child");
    assert_eq!(reason.code, "token_budget");
    assert!(reason.message.contains("delegated"), "{}", reason.message);
    assert_eq!(h.server.requests().len(), 3, "the child stopped at the root's budget");
    assert_eq!(h.engine.run_info(&first.run_id).await.unwrap().unwrap().status, RunStatus::Paused);

    // Raised at the root and resumed there: the child gets the new room and finishes.
    h.engine.shutdown().await;
    let file = h.fixture.path().join("agent/agent.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace("= 12", "= 100");
    std::fs::write(&file, text).unwrap();
    let engine = h.restart(|_| {});
    let start = engine.resume(&first.run_id, None).await.unwrap();
    let events = read_until(&engine, &first.run_id, start, &["session.waiting"]).await;
    let Some(EventBody::SubagentCompleted(done)) =
        bodies(&events, "subagent.completed").first().copied().cloned()
    else {
        panic!("{:?}", types(&events))
    };
    assert_eq!(done.output.as_deref(), Some("Worked."));
    assert_eq!(h.server.requests().len(), 5);
    engine.shutdown().await;
}
