//! Human in the loop and budgets: a paused run holds no task, continues on an answer or a
//! raised budget, and refuses stale, repeated or foreign answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ash_core::{Answer, Clock, ContinueError, MemoryStore, RunId, SendError};
use ash_protocol::{ActionStatus, EventBody, RunStatus};
use ash_test_support::{Reply, Turn};

use crate::{Harness, bodies, read_until, types};

const DEPLOY: &str = r#"
//- agent/tools/deploy.toml
description = "Deploy a branch."
command = ["bash", "-c", "cat; echo"]
[input_schema]
type = "object"
properties.branch = { type = "string" }
[approval]
when = [{ pointer = "/branch", equals = "main" }]
"#;

fn answer(request_id: &str, approve: bool, message: Option<&str>) -> Answer {
    Answer {
        request_id: request_id.to_owned(),
        approve,
        message: message.map(str::to_owned),
        caller: None,
    }
}

/// `(callId, status, error)` of every `action.result`.
fn results(events: &[ash_protocol::Event]) -> Vec<(String, ActionStatus, Option<String>)> {
    bodies(events, "action.result")
        .into_iter()
        .map(|b| match b {
            EventBody::ActionResult(r) => {
                (r.call_id.clone(), r.status, r.error.as_ref().map(|e| e.message.clone()))
            }
            _ => unreachable!(),
        })
        .collect()
}

#[tokio::test]
async fn an_approval_pauses_the_run_without_a_task_and_an_answer_continues_it() {
    let h = Harness::with(DEPLOY, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(
            Turn::empty()
                .then_tool_call("c1", "deploy", r#"{"branch":"dev"}"#)
                .then_tool_call("c2", "deploy", r#"{"branch":"main"}"#)
                .then_tool_call("c3", "deploy", r#"{"branch":"main"}"#),
        ))
        .push(Reply::Turn(Turn::text("Deployed dev and main.")));
    let first = h.send("deploy everything", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let tail: Vec<&str> = types(&events).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["session.waiting", "input.requested", "action.result"]);
    let Some(EventBody::InputRequested(asked)) =
        bodies(&events, "input.requested").first().copied().cloned()
    else {
        panic!("no input.requested")
    };
    assert_eq!(
        (
            asked.call_id.as_str(),
            asked.tool_name.as_str(),
            asked.kind.as_str(),
            asked.reason.as_str()
        ),
        ("c2", "deploy", "approval", "/branch is \"main\"")
    );
    assert_eq!(asked.input, serde_json::json!({"branch": "main"}));
    let Some(EventBody::SessionWaiting(waiting)) =
        bodies(&events, "session.waiting").pop().cloned()
    else {
        panic!()
    };
    assert_eq!(waiting.reason.as_ref().map(|r| r.code.as_str()), Some("input_required"));
    let info = h.engine.run_info(&first.run_id).await.unwrap().unwrap();
    assert_eq!(info.status, RunStatus::Paused);
    // The paused run holds no worker.
    for _ in 0..200 {
        if h.engine.active_runs() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.engine.active_runs(), 0);

    // A message, a wrong request and a resume are refused; nothing changes.
    let refused = h
        .engine
        .send(ash_core::Inbound {
            continuation_token: Some(first.continuation_token.clone()),
            ..ash_core::Inbound::new("hello?")
        })
        .await;
    assert!(
        matches!(&refused, Err(SendError::Paused(why)) if why.contains("waits for approval")),
        "{refused:?}"
    );
    let stale = h.engine.answer(&first.run_id, answer("req_0_0_other", true, None)).await;
    assert!(matches!(&stale, Err(ContinueError::Stale(_))), "{stale:?}");
    let resume = h.engine.resume(&first.run_id, None).await;
    assert!(matches!(&resume, Err(ContinueError::Stale(_))), "{resume:?}");
    let unknown =
        h.engine.answer(&RunId::new("wrun_nope"), answer(&asked.request_id, true, None)).await;
    assert!(matches!(unknown, Err(ContinueError::UnknownRun)));
    assert_eq!(
        h.engine.run_info(&first.run_id).await.unwrap().unwrap().event_count,
        info.event_count
    );

    // A restarted server still has it paused; the answer goes to the new one.
    h.engine.shutdown().await;
    let engine = h.restart(|_| {});
    let start = engine.answer(&first.run_id, answer(&asked.request_id, true, None)).await.unwrap();
    let again = engine.answer(&first.run_id, answer(&asked.request_id, true, None)).await;
    assert!(
        matches!(&again, Err(ContinueError::NotPaused(_) | ContinueError::Stale(_))),
        "{again:?}"
    );
    let events = read_until(&engine, &first.run_id, start, &["session.waiting"]).await;
    assert_eq!(types(&events)[0], "input.resolved");
    // c2 ran; c3 asks in turn.
    assert_eq!(results(&events), [("c2".to_owned(), ActionStatus::Completed, None)]);
    let Some(EventBody::InputRequested(second)) =
        bodies(&events, "input.requested").first().copied().cloned()
    else {
        panic!("c3 must ask too")
    };
    assert_eq!(second.call_id, "c3");
    let start = engine
        .answer(&first.run_id, answer(&second.request_id, false, Some("not on a Friday")))
        .await
        .unwrap();
    let events = read_until(&engine, &first.run_id, start, &["session.waiting"]).await;
    assert_eq!(
        results(&events),
        [(
            "c3".to_owned(),
            ActionStatus::Rejected,
            Some("a person denied this call: not on a Friday".to_owned())
        )]
    );
    assert_eq!(types(&events).last(), Some(&"session.waiting"));
    // The model saw the denial.
    let last = h.server.requests().last().unwrap().body.to_string();
    assert!(last.contains("not on a Friday"), "{last}");
    engine.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_paused_run_ends_its_turn() {
    let h = Harness::with(DEPLOY, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server.push(Reply::Turn(Turn::empty().then_tool_call(
        "c1",
        "deploy",
        r#"{"branch":"main"}"#,
    )));
    let first = h.send("deploy main", None).await;
    read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let info = h.engine.run_info(&first.run_id).await.unwrap().unwrap();
    h.engine.cancel(&first.run_id).await.unwrap();
    let events = read_until(&h.engine, &first.run_id, info.event_count, &["session.waiting"]).await;
    assert_eq!(results(&events)[0].2.as_deref(), Some("cancelled by the user"));
    assert!(types(&events).contains(&"turn.cancelled"), "{:?}", types(&events));
    assert_eq!(h.engine.run_info(&first.run_id).await.unwrap().unwrap().status, RunStatus::Waiting);
}

/// A clock the test moves.
#[derive(Debug, Default)]
struct Manual(AtomicI64);

impl Clock for Manual {
    fn now_ms(&self) -> i64 {
        ash_core::now_ms() + self.0.load(Ordering::Relaxed)
    }
}

#[tokio::test]
async fn a_spent_budget_pauses_the_run_and_a_raised_one_resumes_it() {
    // $1 per million tokens: each step of the fake model (10 in, 5 out) costs 15 micro-USD.
    let agent = |budget: &str| {
        format!(
            "[limits]\nmax_cost_usd_per_session = {budget}\n[prices.\"openai/gpt-test\"]\ninput = 1.0\noutput = 1.0\n\
             //- agent/tools/echo.toml\ndescription = \"Echo.\"\ncommand = [\"bash\", \"-c\", \"cat\"]\n"
        )
    };
    let h = Harness::with(&agent("0.00001"), Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(Turn::empty().then_tool_call("c1", "echo", "{}")))
        .push(Reply::Turn(Turn::text("Done.")));
    let first = h.send("spend", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let Some(EventBody::StepCompleted(step)) = bodies(&events, "step.completed").pop().cloned()
    else {
        panic!()
    };
    assert_eq!(step.cost_usd, Some(0.000_015));
    let Some(EventBody::SessionWaiting(waiting)) =
        bodies(&events, "session.waiting").pop().cloned()
    else {
        panic!()
    };
    let reason = waiting.reason.unwrap();
    assert_eq!(reason.code, "cost_budget");
    assert!(
        reason.message.contains("spent $0.0000 of its $0.0000")
            || reason.message.contains("max_cost_usd_per_session"),
        "{}",
        reason.message
    );
    assert_eq!(h.engine.run_info(&first.run_id).await.unwrap().unwrap().status, RunStatus::Paused);
    assert_eq!(h.server.requests().len(), 1, "no model call past the budget");
    let still = h.engine.resume(&first.run_id, None).await;
    assert!(matches!(&still, Err(ContinueError::StillSpent(_))), "{still:?}");

    // Raised and restarted: resume continues the same turn.
    h.engine.shutdown().await;
    let file = h.fixture.path().join("agent/agent.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace("0.00001", "1.0");
    std::fs::write(&file, text).unwrap();
    let engine = h.restart(|_| {});
    let start = engine.resume(&first.run_id, None).await.unwrap();
    let events = read_until(&engine, &first.run_id, start, &["session.waiting"]).await;
    assert_eq!(types(&events)[0], "turn.resumed");
    assert!(types(&events).contains(&"turn.completed"), "{:?}", types(&events));
    assert_eq!(h.server.requests().len(), 2);
    engine.shutdown().await;

    // A session past its time limit pauses before its next model call (time moved, not waited).
    let clock = Arc::new(Manual::default());
    let h = Harness::with(
        "[limits]\nsession_timeout_ms = 60000\n",
        Arc::new(MemoryStore::new()),
        |config| config.clock = clock.clone(),
    )
    .await;
    h.server.push(Reply::Turn(Turn::text("One.")));
    let first = h.send("one", None).await;
    read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    clock.0.store(61_000, Ordering::Relaxed);
    let next = h.send("two", Some(&first.continuation_token)).await;
    let events = read_until(&h.engine, &next.run_id, next.start_index, &["session.waiting"]).await;
    let Some(EventBody::SessionWaiting(waiting)) =
        bodies(&events, "session.waiting").pop().cloned()
    else {
        panic!()
    };
    assert_eq!(waiting.reason.map(|r| r.code), Some("session_timeout".to_owned()));
    assert_eq!(h.server.requests().len(), 1);
}

#[tokio::test]
async fn calls_sharing_an_id_are_told_apart_and_each_asks_for_itself() {
    let h = Harness::with(DEPLOY, Arc::new(MemoryStore::new()), |_| {}).await;
    // A model that reuses one id: a harmless call, then one that needs approval.
    h.server
        .push(Reply::Turn(
            Turn::empty().then_tool_call("x", "deploy", r#"{"branch":"main"}"#).then_tool_call(
                "x",
                "deploy",
                r#"{"branch":"main"}"#,
            ),
        ))
        .push(Reply::Turn(Turn::text("Both done.")));
    let first = h.send("deploy twice", None).await;
    let events = read_until(&h.engine, &first.run_id, 0, &["session.waiting"]).await;
    let Some(EventBody::ActionsRequested(requested)) =
        bodies(&events, "actions.requested").first().copied().cloned()
    else {
        panic!()
    };
    let ids: Vec<String> = requested
        .actions
        .iter()
        .map(|a| match a {
            ash_protocol::Action::ToolCall { call_id, .. } => call_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["x", "x~2"]);
    let Some(EventBody::InputRequested(asked)) =
        bodies(&events, "input.requested").first().copied().cloned()
    else {
        panic!()
    };
    assert_eq!(asked.call_id, "x");
    let start =
        h.engine.answer(&first.run_id, answer(&asked.request_id, true, None)).await.unwrap();
    // The second call asks on its own: one approval never covers another call.
    let events = read_until(&h.engine, &first.run_id, start, &["session.waiting"]).await;
    let Some(EventBody::InputRequested(second)) =
        bodies(&events, "input.requested").first().copied().cloned()
    else {
        panic!("the second call must ask too: {:?}", types(&events))
    };
    assert_eq!(second.call_id, "x~2");
    assert_ne!(second.request_id, asked.request_id);
}
