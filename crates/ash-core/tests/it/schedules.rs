//! Schedules: each fire time starts one task-mode run with the `schedule` principal, exactly
//! once across restarts; time is moved, never waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ash_core::{Clock, MemoryStore, RunId};
use ash_protocol::RunStatus;
use ash_test_support::{Reply, Turn};
use chrono::TimeZone as _;

use crate::{Harness, read_until};

/// A clock set to a fixed instant the test moves.
#[derive(Debug)]
struct At(AtomicI64);

impl Clock for At {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const NIGHTLY: &str = "//- agent/schedules/nightly.md\n---\ncron: \"0 3 * * *\"\n---\nTidy up: echo the time.\n\
    //- agent/tools/whoami.toml\ndescription = \"Who runs.\"\ncommand = [\"bash\", \"-c\", \"cat > /dev/null; echo \\\"$ASH_SESSION\\\"\"]\n";

fn ms(h: u32, m: u32, s: u32) -> i64 {
    chrono::Utc.with_ymd_and_hms(2026, 12, 8, h, m, s).single().unwrap().timestamp_millis()
}

/// Every run the engine has, by polling the runs a fire would create.
async fn fired(engine: &ash_core::Engine, at: i64) -> Option<ash_core::RunSnapshot> {
    let fire = chrono::DateTime::from_timestamp_millis(at).unwrap();
    let id = ash_core::schedule_run_id("nightly", fire);
    engine.run_info(&RunId::new(id)).await.unwrap()
}

#[tokio::test]
async fn a_schedule_fires_once_per_fire_time_across_a_restart() {
    let clock = Arc::new(At(AtomicI64::new(ms(2, 59, 0))));
    let store: Arc<dyn ash_core::Store> = Arc::new(MemoryStore::new());
    let tweak = |config: &mut ash_core::EngineConfig| {
        config.clock = clock.clone();
        config.schedules = true;
        config.schedule_tick = Duration::from_millis(20);
    };
    let h = Harness::with(NIGHTLY, Arc::clone(&store), tweak).await;
    h.server
        .push(Reply::Turn(Turn::empty().then_tool_call("w", "whoami", "{}")))
        .push(Reply::Turn(Turn::text("Tidied.")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fired(&h.engine, ms(3, 0, 0)).await.is_none(), "not before its time");
    assert_eq!(h.server.requests().len(), 0);

    clock.0.store(ms(3, 0, 5), Ordering::Relaxed);
    let run = loop {
        if let Some(run) = fired(&h.engine, ms(3, 0, 0)).await {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let events = read_until(&h.engine, &run.run_id, 0, &["run.completed"]).await;
    assert_eq!(run.mode, ash_protocol::RunMode::Task);
    let who = events
        .iter()
        .find_map(|e| match &e.body {
            ash_protocol::EventBody::ActionResult(r) => match &r.result {
                ash_protocol::ActionOutput::ToolResult { output, .. } => Some(output.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(who["auth"]["initiator"]["authenticator"], "schedule");
    assert_eq!(who["auth"]["initiator"]["principalId"], "ash:schedule:nightly");
    assert_eq!(who["auth"]["current"]["principalType"], "runtime");

    // Restarted within the hour: the 03:00 fire is due again, and is not run twice.
    h.engine.shutdown().await;
    let engine = h.restart(tweak);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.server.requests().len(), 2, "no second run of the 03:00 fire");
    let again = engine.run_info(&run.run_id).await.unwrap().unwrap();
    assert_eq!((again.status, again.turns), (RunStatus::Completed, 1));

    // A day and a half later, the missed 03:00 fire of the next day is over an hour old:
    // skipped; the one after runs.
    engine.shutdown().await;
    clock.0.store(ms(3, 0, 0) + 36 * 3_600_000, Ordering::Relaxed);
    let engine = h.restart(tweak);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fired(&engine, ms(3, 0, 0) + 24 * 3_600_000).await.is_none(), "skipped");
    h.server.push(Reply::Turn(Turn::text("Tidied again.")));
    clock.0.store(ms(3, 0, 1) + 48 * 3_600_000, Ordering::Relaxed);
    let run = loop {
        if let Some(run) = fired(&engine, ms(3, 0, 0) + 48 * 3_600_000).await {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    read_until(&engine, &run.run_id, 0, &["run.completed"]).await;
    engine.shutdown().await;
}
