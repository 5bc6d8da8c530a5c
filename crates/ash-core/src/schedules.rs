//! Schedules (`schedules/*.md`, root only): each fire time starts a task-mode run of the root
//! agent with the schedule's prompt and the `schedule` principal, exactly once.
//!
//! Owns the scheduler task and the fire rule. A fire's run id is derived from the schedule's
//! name and the fire time, so the store's refusal of a second run with the same id makes a
//! fire happen once however many times it is attempted — after a restart, or by several
//! engines sharing a store. Fires missed while no engine ran: only the most recent one, and
//! only if it is at most [`CATCH_UP`] old when the scheduler starts, runs (late); older ones
//! are skipped and logged. Time is the engine's [`crate::Clock`], so tests move it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ash_protocol::{AttributeValue, Authenticator, PrincipalType, SessionAuthContext};
use chrono::{DateTime, Utc};

use crate::engine::Inner;
use crate::ids;
use crate::store::StoreError;

/// How late a fire may still run: missed fires older than this are skipped.
pub const CATCH_UP: Duration = Duration::from_secs(3600);

/// `wrun_<26 Crockford characters of SHA-256(name, fire time)>`: one run per fire.
pub fn fire_run_id(name: &str, at: DateTime<Utc>) -> String {
    ids::derived_run_id(
        b"ash.schedule.v1",
        &[name.as_bytes(), &at.timestamp_millis().to_be_bytes()],
    )
}

/// The principal scheduled runs carry: `ash:schedule:<name>`.
pub(crate) fn principal(name: &str) -> SessionAuthContext {
    SessionAuthContext {
        authenticator: Authenticator::Schedule,
        issuer: None,
        subject: None,
        principal_id: format!("ash:schedule:{name}"),
        principal_type: PrincipalType::Runtime,
        attributes: BTreeMap::from([("schedule".to_owned(), AttributeValue::One(name.to_owned()))]),
    }
}

/// Creates the run of schedule `name` with `prompt` under `run_id` and returns its
/// continuation token; `Ok(None)` when that run exists already (the fire happened).
pub(crate) async fn start_run(
    inner: &Arc<Inner>,
    run_id: &str,
    name: &str,
    prompt: &str,
) -> Result<Option<String>, StoreError> {
    let (run, first) =
        crate::engine::task_run(run_id, prompt.to_owned(), Some(principal(name)), None);
    let token = run.continuation_token.clone();
    match inner.store.create_run(run, first).await {
        Ok(events) => {
            inner.hub.publish(run_id, &events);
            inner.ensure_worker(run_id);
            Ok(Some(token))
        }
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The scheduler: fires every schedule of the root agent at its times until shutdown, looking
/// at the clock every `tick`.
pub(crate) async fn run(inner: Arc<Inner>, tick: Duration) {
    let schedules = inner.spec.root().schedules.clone();
    let now = |inner: &Inner| {
        DateTime::<Utc>::from_timestamp_millis(inner.config.clock.now_ms()).unwrap_or_default()
    };
    let catch_up = chrono::Duration::from_std(CATCH_UP).unwrap_or_default();
    let start = now(&inner);
    // The next fire of each schedule: the most recent one if it is recent enough to run late.
    let mut due: Vec<Option<DateTime<Utc>>> = schedules
        .iter()
        .map(|s| match s.cron.latest_at_or_before(start) {
            Some(latest) if start - latest <= catch_up => Some(latest),
            _ => s.cron.next_after(start),
        })
        .collect();
    loop {
        let at = now(&inner);
        for (schedule, next) in schedules.iter().zip(due.iter_mut()) {
            while let Some(fire) = *next
                && fire <= at
            {
                if at - fire <= catch_up {
                    let id = fire_run_id(&schedule.name, fire);
                    match start_run(&inner, &id, &schedule.name, &schedule.prompt).await {
                        Ok(Some(_)) => {
                            tracing::info!(schedule = %schedule.name, %fire, run_id = %id, "schedule fired")
                        }
                        Ok(None) => {}
                        Err(error) => {
                            // Tried again at the next tick.
                            tracing::warn!(schedule = %schedule.name, %fire, %error, "cannot start a scheduled run");
                            break;
                        }
                    }
                } else {
                    tracing::warn!(schedule = %schedule.name, %fire, "skipped a fire more than an hour late");
                }
                *next = schedule.cron.next_after(fire);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = inner.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    #[test]
    fn a_fire_has_one_run_id() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 12, 8, 3, 0, 0).single().unwrap_or_default();
        let a = super::fire_run_id("nightly", at);
        assert_eq!(a, super::fire_run_id("nightly", at));
        assert_ne!(a, super::fire_run_id("nightly", at + chrono::Duration::minutes(1)));
        assert_ne!(a, super::fire_run_id("hourly", at));
        assert_eq!(super::principal("nightly").principal_id, "ash:schedule:nightly".to_owned());
    }
}
