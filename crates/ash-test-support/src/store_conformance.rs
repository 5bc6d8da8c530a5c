//! One conformance suite for every `ash_core::Store`: the memory store, SQLite, and later
//! PostgreSQL must agree on atomicity, preconditions, leases, cancel flags and event indexes.

use std::sync::Arc;
use std::time::Duration;

use ash_core::{Commit, Expect, JournalRecord, NewRun, Store, StoreError};
use ash_protocol::{EventBody, RunMode, RunStatus, SessionWaiting, TurnStarted, Usage};

fn turn_started(sequence: u32) -> EventBody {
    EventBody::TurnStarted(TurnStarted { turn_id: format!("turn_{sequence}"), sequence })
}

fn new_run(id: &str) -> NewRun {
    NewRun {
        run_id: id.to_owned(),
        continuation_token: format!("ash:{id}"),
        mode: RunMode::Conversation,
    }
}

fn first_commit() -> Commit {
    let mut commit = Commit::new(Expect::Status(RunStatus::Queued));
    commit.records =
        vec![JournalRecord::TurnQueued { sequence: 0, message: "hi".to_owned(), caller: None }];
    commit.events = vec![turn_started(0), turn_started(1)];
    commit.status = Some(RunStatus::Queued);
    commit.turns = 1;
    commit.usage =
        Usage { input_tokens: 1, output_tokens: 2, cache_read_tokens: 3, cache_write_tokens: 4 };
    commit
}

fn lease(owner: &str) -> Commit {
    Commit::new(Expect::Lease(owner.to_owned()))
}

const TTL: Duration = Duration::from_secs(60);

/// Runs every check against stores made by `make` (one fresh store per check).
pub async fn run_all<F>(make: F)
where
    F: Fn() -> Arc<dyn Store>,
{
    creates_and_reads_back(make()).await;
    refuses_duplicate_runs(make()).await;
    preconditions_guard_commits(make()).await;
    leases_are_exclusive_until_they_expire(make()).await;
    claimable_runs_are_active_and_unleased(make()).await;
    cancel_flags_follow_the_status(make()).await;
    events_page_from_any_index(make()).await;
    concurrent_commits_are_answered_each_on_their_own(make()).await;
}

async fn creates_and_reads_back(store: Arc<dyn Store>) {
    let events = store.create_run(new_run("r1"), first_commit()).await.expect("create");
    let meta: Vec<u64> = events.iter().map(|e| e.meta.index).collect();
    assert_eq!(meta, [0, 1], "create: indexes");
    assert!(
        events.iter().all(|e| e.meta.id.starts_with("evt_") && e.meta.id.len() == 30),
        "event ids: {events:?}"
    );
    let record = store.run("r1").await.expect("read").expect("exists");
    assert_eq!(
        (
            record.status,
            record.turns,
            record.event_count,
            record.journal_count,
            record.usage,
            record.lease.clone(),
            record.cancel_requested
        ),
        (
            RunStatus::Queued,
            1,
            2,
            1,
            Usage {
                input_tokens: 1,
                output_tokens: 2,
                cache_read_tokens: 3,
                cache_write_tokens: 4
            },
            None,
            false
        ),
        "create: record"
    );
    assert_eq!(store.run_by_token("ash:r1").await.expect("by token"), Some(record.clone()));
    assert_eq!(store.run_by_token("ash:nope").await.expect("by token"), None);
    assert_eq!(store.run("nope").await.expect("read"), None);
    assert_eq!(
        store.events("r1", 0, 10, usize::MAX).await.expect("events"),
        events,
        "events round-trip"
    );
    assert_eq!(
        store.journal("r1", 0).await.expect("journal"),
        [JournalRecord::TurnQueued { sequence: 0, message: "hi".to_owned(), caller: None }]
    );
    assert_eq!(store.journal("r1", 1).await.expect("journal"), []);
}

async fn refuses_duplicate_runs(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    let again = store.create_run(new_run("r1"), first_commit()).await;
    assert!(matches!(again, Err(StoreError::Conflict { .. })), "duplicate id: {again:?}");
    let mut same_token = new_run("r2");
    same_token.continuation_token = "ash:r1".to_owned();
    let clash = store.create_run(same_token, first_commit()).await;
    assert!(matches!(clash, Err(StoreError::Conflict { .. })), "duplicate token: {clash:?}");
    assert_eq!(store.run("r2").await.expect("read"), None);
    assert_eq!(
        store.events("r1", 0, 10, usize::MAX).await.expect("events").len(),
        2,
        "first run intact"
    );
}

async fn preconditions_guard_commits(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    let before = store.run("r1").await.expect("read");
    let mut follow_up = Commit::new(Expect::Status(RunStatus::Waiting));
    follow_up.events = vec![turn_started(9)];
    let refused = store.commit("r1", follow_up.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "status precondition: {refused:?}"
    );
    let refused = store.commit("r1", lease("nobody")).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "lease precondition: {refused:?}");
    assert_eq!(store.run("r1").await.expect("read"), before, "refused commits change nothing");
    let missing = store.commit("nope", lease("a")).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "unknown run: {missing:?}");

    assert!(store.acquire_lease("r1", "a", TTL).await.expect("lease"));
    let mut park = lease("a");
    park.events = vec![EventBody::SessionWaiting(SessionWaiting {
        continuation_token: "ash:r1".to_owned(),
        reason: None,
    })];
    park.status = Some(RunStatus::Waiting);
    park.release_lease = true;
    let events = store.commit("r1", park).await.expect("park");
    assert_eq!(events.iter().map(|e| e.meta.index).collect::<Vec<_>>(), [2]);
    let parked = store.run("r1").await.expect("read").expect("exists");
    assert_eq!((parked.status, parked.lease), (RunStatus::Waiting, None));
    let events = store.commit("r1", follow_up).await.expect("follow-up on a waiting run");
    assert_eq!(events.iter().map(|e| e.meta.index).collect::<Vec<_>>(), [3]);
}

async fn leases_are_exclusive_until_they_expire(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    assert!(
        store.acquire_lease("r1", "a", Duration::from_millis(300)).await.expect("a"),
        "a takes it"
    );
    assert!(
        store.acquire_lease("r1", "a", Duration::from_millis(300)).await.expect("a"),
        "a again"
    );
    assert!(!store.acquire_lease("r1", "b", TTL).await.expect("b"), "b waits");
    assert!(
        store.renew_lease("r1", "a", Duration::from_millis(300)).await.expect("renew").is_some()
    );
    assert_eq!(store.renew_lease("r1", "b", TTL).await.expect("renew"), None, "b cannot renew");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.acquire_lease("r1", "b", TTL).await.expect("b"), "b takes an expired lease");
    assert_eq!(store.renew_lease("r1", "a", TTL).await.expect("renew"), None, "a lost it");
    let stale = store.commit("r1", lease("a")).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "a's writes are fenced: {stale:?}");
    store.commit("r1", lease("b")).await.expect("b writes");
    store.release_lease("r1", "a").await.expect("release by a non-owner is a no-op");
    assert_eq!(
        store.run("r1").await.expect("read").expect("exists").lease.map(|l| l.owner),
        Some("b".to_owned())
    );
    store.release_lease("r1", "b").await.expect("release");
    assert_eq!(store.run("r1").await.expect("read").expect("exists").lease, None);
    assert!(!store.acquire_lease("nope", "a", TTL).await.expect("unknown run"));
}

async fn claimable_runs_are_active_and_unleased(store: Arc<dyn Store>) {
    for id in ["r1", "r2", "r3"] {
        store.create_run(new_run(id), first_commit()).await.expect("create");
    }
    assert!(store.acquire_lease("r2", "a", TTL).await.expect("lease"));
    assert!(store.acquire_lease("r3", "a", TTL).await.expect("lease"));
    let mut park = lease("a");
    park.status = Some(RunStatus::Waiting);
    park.release_lease = true;
    store.commit("r3", park).await.expect("park");
    assert_eq!(store.claimable_runs(10).await.expect("claimable"), ["r1"]);
    assert!(
        !store.acquire_lease("r3", "b", TTL).await.expect("lease"),
        "a waiting run has no work"
    );
}

async fn cancel_flags_follow_the_status(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    assert!(store.acquire_lease("r1", "a", TTL).await.expect("lease"));
    let mut running = lease("a");
    running.status = Some(RunStatus::Running);
    store.commit("r1", running).await.expect("running");
    assert_eq!(store.request_cancel("r1").await.expect("cancel"), Some(RunStatus::Running));
    assert_eq!(
        store.renew_lease("r1", "a", TTL).await.expect("renew").map(|s| s.cancel_requested),
        Some(true)
    );
    store.commit("r1", lease("a")).await.expect("an unrelated write keeps the flag");
    assert!(store.run("r1").await.expect("read").expect("exists").cancel_requested);
    let mut park = lease("a");
    park.status = Some(RunStatus::Waiting);
    store.commit("r1", park).await.expect("park");
    assert!(
        !store.run("r1").await.expect("read").expect("exists").cancel_requested,
        "parking clears it"
    );
    assert_eq!(store.request_cancel("r1").await.expect("cancel"), Some(RunStatus::Waiting));
    assert!(
        !store.run("r1").await.expect("read").expect("exists").cancel_requested,
        "nothing to cancel"
    );
    assert_eq!(store.request_cancel("nope").await.expect("cancel"), None);
}

async fn events_page_from_any_index(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    assert!(store.acquire_lease("r1", "a", TTL).await.expect("lease"));
    for n in 0..10 {
        let mut commit = lease("a");
        commit.events = vec![turn_started(n), turn_started(n + 100)];
        store.commit("r1", commit).await.expect("commit");
    }
    let all = store.events("r1", 0, 1000, usize::MAX).await.expect("events");
    assert_eq!(all.iter().map(|e| e.meta.index).collect::<Vec<_>>(), (0..22).collect::<Vec<_>>());
    assert_eq!(store.events("r1", 5, 3, usize::MAX).await.expect("page"), all[5..8]);
    assert_eq!(store.events("r1", 22, 10, usize::MAX).await.expect("end"), []);
    assert_eq!(store.events("r1", u64::MAX, 10, usize::MAX).await.expect("far"), []);
    assert_eq!(store.events("nope", 0, 10, usize::MAX).await.expect("unknown run"), []);
    // A byte budget smaller than any event still yields every event, page by page.
    let mut paged = Vec::new();
    loop {
        let page = store.events("r1", paged.len() as u64, 1000, 1).await.expect("small page");
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages within a byte budget");
    assert_eq!(store.run("r1").await.expect("read").expect("exists").event_count, 22);
}

/// Commits to many runs at once (which a store may write together): each gets its own outcome,
/// a refused one changes nothing, and the accepted ones all land with their own indexes.
async fn concurrent_commits_are_answered_each_on_their_own(store: Arc<dyn Store>) {
    const RUNS: usize = 40;
    for n in 0..RUNS {
        let id = format!("r{n}");
        store.create_run(new_run(&id), first_commit()).await.expect("create");
        assert!(store.acquire_lease(&id, "a", TTL).await.expect("lease"));
    }
    let mut tasks = Vec::new();
    for round in 0..3u32 {
        for n in 0..RUNS {
            let store = Arc::clone(&store);
            // Every third run is written by a worker that does not hold its lease.
            let owner = if n % 3 == 0 { "b" } else { "a" };
            tasks.push(tokio::spawn(async move {
                let mut commit = lease(owner);
                commit.events = vec![turn_started(10 + round)];
                (n, store.commit(&format!("r{n}"), commit).await)
            }));
        }
        // The next round once this one is answered, so each run's commits stay in order.
        for task in tasks.drain(..) {
            let (n, outcome) = task.await.expect("task");
            match outcome {
                Ok(events) if n % 3 != 0 => {
                    let index = 2 + u64::from(round);
                    assert_eq!(
                        events.iter().map(|e| e.meta.index).collect::<Vec<_>>(),
                        [index],
                        "run r{n}, round {round}"
                    );
                }
                Err(StoreError::Conflict { run_id, .. }) if n % 3 == 0 => {
                    assert_eq!(run_id, format!("r{n}"));
                }
                other => panic!("run r{n}, round {round}: unexpected {other:?}"),
            }
        }
    }
    for n in 0..RUNS {
        let run = store.run(&format!("r{n}")).await.expect("read").expect("exists");
        assert_eq!(run.event_count, if n % 3 == 0 { 2 } else { 5 }, "run r{n}");
    }
}
