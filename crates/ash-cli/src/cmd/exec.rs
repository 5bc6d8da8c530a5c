//! `ash exec`: one task-mode turn in this process; the answer on stdout.

use anyhow::Context as _;
use ash_core::Inbound;
use ash_protocol::{EventBody, RunMode};

use crate::cli::ExecArgs;
use crate::cmd::harness::{self, StoreChoice};
use crate::cmd::start::runtime;
use crate::cmd::{Outcome, render};
use crate::output;

/// Prints a task run's progress (or its events with `json`) until it ends or pauses; success
/// when it completed, with the answer on stdout.
pub(crate) async fn follow_task(
    engine: &ash_core::Engine,
    run_id: &ash_core::RunId,
    json: bool,
) -> anyhow::Result<Outcome> {
    let mut follower = engine.follow(run_id, 0).await?.context("the run disappeared")?;
    let mut outcome = Outcome::Failure;
    let mut cancelled = false;
    loop {
        let event = tokio::select! {
            event = follower.next() => event?,
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                output::note("cancelling…");
                engine.cancel(run_id).await?;
                continue;
            }
        };
        let Some(event) = event else { break };
        if json {
            output::stdout(&format!("{}\n", serde_json::to_string(&event)?));
        } else {
            let lines = render::lines(&event.body, false);
            for line in lines.progress {
                output::note(&line);
            }
        }
        match &event.body {
            EventBody::RunCompleted(done) => {
                if !json {
                    let answer = done.output.clone().unwrap_or_default();
                    output::stdout(&format!("{}\n", answer.trim_end()));
                }
                outcome = Outcome::Success;
                break;
            }
            EventBody::RunFailed(_) => break,
            EventBody::SessionWaiting(waiting) => {
                if let Some(reason) = &waiting.reason {
                    output::note(&format!(
                        "the run paused ({}): {}; this command answers nothing, so it stops here — run the agent with `ash dev` or `ash start` to answer it",
                        reason.code, reason.message
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    Ok(outcome)
}

pub(crate) fn run(args: &ExecArgs) -> anyhow::Result<Outcome> {
    let (dir, prompt) = args.dir_and_prompt();
    runtime()?.block_on(async {
        let store = StoreChoice::from_arg(args.store.as_deref(), || StoreChoice::Memory)?;
        let harness = harness::start(&dir, store, &args.store_args, false).await?;
        if harness.scripted && !args.json {
            output::note(&harness::scripted_label(&harness.model));
        }
        let engine = &harness.engine;
        let accepted = engine.send(Inbound { mode: RunMode::Task, ..Inbound::new(prompt) }).await?;
        let outcome = follow_task(engine, &accepted.run_id, args.json).await?;
        engine.shutdown().await;
        Ok(outcome)
    })
}
