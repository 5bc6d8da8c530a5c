//! One conformance suite for every `ash_core::Store`: the memory store, SQLite and PostgreSQL
//! must agree on atomicity, preconditions, leases and their fencing, claims, cancel flags and
//! event indexes, also with many workers at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ash_core::{Commit, Expect, Fence, JournalRecord, NewRun, Store, StoreError};
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

fn lease(fence: &Fence) -> Commit {
    Commit::new(Expect::Lease(fence.clone()))
}

/// A fence nobody was given.
fn forged(owner: &str) -> Fence {
    Fence { owner: owner.to_owned(), epoch: 1 }
}

async fn take(store: &Arc<dyn Store>, run: &str, owner: &str, ttl: Duration) -> Fence {
    store
        .acquire_lease(run, owner, ttl)
        .await
        .expect("acquire")
        .unwrap_or_else(|| panic!("{owner} could not take {run}"))
}

const TTL: Duration = Duration::from_secs(60);

/// Runs every check against stores made by `make` (one fresh, empty store per check).
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    creates_and_reads_back(make().await).await;
    refuses_duplicate_runs(make().await).await;
    racing_creates_make_one_run(make().await).await;
    preconditions_guard_commits(make().await).await;
    leases_are_exclusive_until_they_expire(make().await).await;
    every_taking_fences_the_one_before(make().await).await;
    claims_take_active_unleased_runs(make().await).await;
    racing_claimers_never_share_a_run(make().await).await;
    cancel_flags_follow_the_status(make().await).await;
    events_page_from_any_index(make().await).await;
    concurrent_commits_are_answered_each_on_their_own(make().await).await;
    workers_that_claim_commit_and_die_never_interleave(make().await).await;
    health_counts_runs_and_leases(make().await).await;
    blobs_and_fenced_snapshots(make().await).await;
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
    let refused = store.commit("r1", lease(&forged("nobody"))).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "lease precondition: {refused:?}");
    assert_eq!(store.run("r1").await.expect("read"), before, "refused commits change nothing");
    let missing = store.commit("nope", lease(&forged("a"))).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "unknown run: {missing:?}");

    let a = take(&store, "r1", "a", TTL).await;
    let mut park = lease(&a);
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
    let short = Duration::from_millis(300);
    let a1 = take(&store, "r1", "a", short).await;
    assert_eq!(a1.epoch, 1, "the first taking");
    let a = take(&store, "r1", "a", short).await;
    assert_eq!(a.epoch, 2, "a again: the next epoch");
    assert_eq!(store.acquire_lease("r1", "b", TTL).await.expect("b"), None, "b waits");
    assert!(store.renew_lease("r1", &a, short).await.expect("renew").is_some());
    assert_eq!(
        store.renew_lease("r1", &forged("b"), TTL).await.expect("renew"),
        None,
        "b cannot renew"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = take(&store, "r1", "b", TTL).await;
    assert_eq!(b.epoch, 3, "b takes an expired lease");
    assert_eq!(store.renew_lease("r1", &a, TTL).await.expect("renew"), None, "a lost it");
    let stale = store.commit("r1", lease(&a)).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "a's writes are fenced: {stale:?}");
    store.commit("r1", lease(&b)).await.expect("b writes");
    store.release_lease("r1", &a).await.expect("release by a non-owner is a no-op");
    let held = store.run("r1").await.expect("read").expect("exists").lease.expect("held");
    assert_eq!((held.owner.as_str(), held.epoch), ("b", 3));
    store.release_lease("r1", &b).await.expect("release");
    assert_eq!(store.run("r1").await.expect("read").expect("exists").lease, None);
    assert_eq!(store.acquire_lease("nope", "a", TTL).await.expect("unknown run"), None);
    let again = take(&store, "r1", "c", TTL).await;
    assert_eq!(again.epoch, 4, "epochs outlive a release");
}

/// A worker that lost its lease and took it back (same owner, a restarted task, a late
/// renewal) holds a new epoch; whatever still carries the old one is refused, late or not.
async fn every_taking_fences_the_one_before(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    let old = take(&store, "r1", "a", TTL).await;
    let new = take(&store, "r1", "a", TTL).await;
    assert!(new.epoch > old.epoch);
    let before = store.run("r1").await.expect("read");
    let mut late = lease(&old);
    late.events = vec![turn_started(7)];
    let refused = store.commit("r1", late).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "old epoch: {refused:?}");
    assert_eq!(store.renew_lease("r1", &old, TTL).await.expect("renew"), None, "old renewal");
    store.release_lease("r1", &old).await.expect("old release is a no-op");
    assert_eq!(store.run("r1").await.expect("read"), before, "nothing changed");
    let mut current = lease(&new);
    current.events = vec![turn_started(8)];
    assert_eq!(store.commit("r1", current).await.expect("new epoch writes").len(), 1);
    // A forged epoch ahead of the current one is refused too.
    let ahead = Fence { owner: "a".to_owned(), epoch: new.epoch + 1 };
    assert!(matches!(store.commit("r1", lease(&ahead)).await, Err(StoreError::Conflict { .. })));
}

async fn claims_take_active_unleased_runs(store: Arc<dyn Store>) {
    for id in ["r1", "r2", "r3"] {
        store.create_run(new_run(id), first_commit()).await.expect("create");
    }
    take(&store, "r2", "a", TTL).await;
    let a3 = take(&store, "r3", "a", TTL).await;
    let mut park = lease(&a3);
    park.status = Some(RunStatus::Waiting);
    park.release_lease = true;
    store.commit("r3", park).await.expect("park");
    let claimed = store.claim_runs("b", TTL, 10).await.expect("claim");
    assert_eq!(claimed, [("r1".to_owned(), Fence { owner: "b".to_owned(), epoch: 1 })]);
    assert_eq!(store.claim_runs("c", TTL, 10).await.expect("claim"), [], "r1 is b's now");
    assert_eq!(
        store.acquire_lease("r3", "b", TTL).await.expect("lease"),
        None,
        "a waiting run has no work"
    );
    // The claim is a lease like any other: its fence writes.
    store.commit("r1", lease(&claimed[0].1)).await.expect("the claim's fence writes");
}

/// Claimers racing over the same runs take each run once between them.
async fn racing_claimers_never_share_a_run(store: Arc<dyn Store>) {
    const RUNS: usize = 60;
    for n in 0..RUNS {
        store.create_run(new_run(&format!("r{n}")), first_commit()).await.expect("create");
    }
    let claimers: Vec<_> = (0..6)
        .map(|c| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let owner = format!("node{c}");
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_runs(&owner, TTL, 4).await.expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    for (run, fence) in claimed {
                        assert_eq!(fence.owner, owner);
                        mine.push(run);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    all.sort();
    let mut expected: Vec<String> = (0..RUNS).map(|n| format!("r{n}")).collect();
    expected.sort();
    assert_eq!(all, expected, "each run claimed exactly once");
}

/// Concurrent creates of one id (a schedule's fire or a delegation, attempted by several
/// nodes): one run, made once.
async fn racing_creates_make_one_run(store: Arc<dyn Store>) {
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_run(new_run("fire"), first_commit()).await })
        })
        .collect();
    let mut made = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(_) => made += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(made, 1);
    assert_eq!(store.run("fire").await.expect("read").expect("exists").event_count, 2);
}

async fn cancel_flags_follow_the_status(store: Arc<dyn Store>) {
    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    let a = take(&store, "r1", "a", TTL).await;
    let mut running = lease(&a);
    running.status = Some(RunStatus::Running);
    store.commit("r1", running).await.expect("running");
    assert_eq!(store.request_cancel("r1").await.expect("cancel"), Some(RunStatus::Running));
    assert_eq!(
        store.renew_lease("r1", &a, TTL).await.expect("renew").map(|s| s.cancel_requested),
        Some(true)
    );
    store.commit("r1", lease(&a)).await.expect("an unrelated write keeps the flag");
    assert!(store.run("r1").await.expect("read").expect("exists").cancel_requested);
    let mut park = lease(&a);
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
    let a = take(&store, "r1", "a", TTL).await;
    for n in 0..10 {
        let mut commit = lease(&a);
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
    let mut fences = Vec::new();
    for n in 0..RUNS {
        let id = format!("r{n}");
        store.create_run(new_run(&id), first_commit()).await.expect("create");
        fences.push(take(&store, &id, "a", TTL).await);
    }
    let mut tasks = Vec::new();
    for round in 0..3u32 {
        for (n, held) in fences.iter().enumerate() {
            let store = Arc::clone(&store);
            // Every third run is written by a worker that does not hold its lease.
            let fence = if n % 3 == 0 { forged("b") } else { held.clone() };
            tasks.push(tokio::spawn(async move {
                let mut commit = lease(&fence);
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

/// Workers claim runs, take their leases, commit step by step and renew, while some of them
/// die mid-run (they stop renewing, and their late writes arrive after a takeover). Every run
/// ends once; its events stay contiguous, and no write of an older lease lands after a newer
/// one: the epochs in each run's log never go down.
async fn workers_that_claim_commit_and_die_never_interleave(store: Arc<dyn Store>) {
    const RUNS: usize = 12;
    const STEPS: u32 = 6;
    let ttl = Duration::from_millis(400);
    for n in 0..RUNS {
        store.create_run(new_run(&format!("r{n}")), first_commit()).await.expect("create");
    }
    let workers: Vec<_> = (0..5u32)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { claim_and_work(store, w, ttl).await })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    for n in 0..RUNS {
        let id = format!("r{n}");
        let run = store.run(&id).await.expect("read").expect("exists");
        assert_eq!(run.status, RunStatus::Completed, "{id} ended");
        let events = store.events(&id, 0, 10_000, usize::MAX).await.expect("events");
        let indexes: Vec<u64> = events.iter().map(|e| e.meta.index).collect();
        assert_eq!(indexes, (0..run.event_count).collect::<Vec<_>>(), "{id}: contiguous");
        let marks: Vec<(u64, u32)> = events.iter().filter_map(mark_of).collect();
        assert!(marks.windows(2).all(|w| w[0].0 <= w[1].0), "{id}: epochs went down: {marks:?}");
        // Every step landed at least once, and the last one ended the run once.
        let mut steps: Vec<u32> = marks.iter().map(|m| m.1).collect();
        steps.dedup();
        assert_eq!(steps, (0..=STEPS).collect::<Vec<_>>(), "{id}: steps in order");
        assert_eq!(marks.iter().filter(|m| m.1 == STEPS).count(), 1, "{id}: ended once");
    }
}

/// A step's event names its epoch and step: `turn_<epoch>_<step>`.
fn mark_of(event: &ash_protocol::Event) -> Option<(u64, u32)> {
    let EventBody::TurnStarted(started) = &event.body else { return None };
    let (epoch, step) = started.turn_id.strip_prefix("turn_")?.split_once('_')?;
    Some((epoch.parse().ok()?, step.parse().ok()?))
}

/// One worker: claims a run, works it to its end from where its log stands, and claims again
/// until nothing is left. Worker 0 and 1 die after their second step of each run.
async fn claim_and_work(store: Arc<dyn Store>, worker: u32, ttl: Duration) {
    const STEPS: u32 = 6;
    let owner = format!("w{worker}");
    loop {
        let claimed = store.claim_runs(&owner, ttl, 1).await.expect("claim");
        let Some((run_id, claim)) = claimed.into_iter().next() else {
            let health = store.health().await.expect("health");
            if health.leases_held + health.leases_claimable == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(fence) = store.acquire_lease(&run_id, &owner, ttl).await.expect("acquire") else {
            continue;
        };
        assert!(fence.epoch > claim.epoch, "re-taking moves the epoch");
        let events = store.events(&run_id, 0, 10_000, usize::MAX).await.expect("events");
        let done = events.iter().filter_map(mark_of).map(|m| m.1 + 1).max().unwrap_or(0);
        for step in done..=STEPS {
            if worker < 2 && step >= done + 2 {
                // Dies: no renewal, no release. After the takeover, one late write arrives.
                tokio::time::sleep(ttl + Duration::from_millis(300)).await;
                let mut late = lease(&fence);
                late.events = vec![EventBody::TurnStarted(TurnStarted {
                    turn_id: format!("turn_{}_{step}", fence.epoch),
                    sequence: step,
                })];
                let outcome = store.commit(&run_id, late).await;
                assert!(
                    matches!(outcome, Ok(_) | Err(StoreError::Conflict { .. })),
                    "late write: {outcome:?}"
                );
                break;
            }
            let mut commit = lease(&fence);
            commit.events = vec![EventBody::TurnStarted(TurnStarted {
                turn_id: format!("turn_{}_{step}", fence.epoch),
                sequence: step,
            })];
            if step == STEPS {
                commit.status = Some(RunStatus::Completed);
                commit.release_lease = true;
            }
            match store.commit(&run_id, commit).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => break,
                Err(other) => panic!("commit: {other:?}"),
            }
            if store.renew_lease(&run_id, &fence, ttl).await.expect("renew").is_none()
                && step != STEPS
            {
                break;
            }
        }
    }
}

async fn health_counts_runs_and_leases(store: Arc<dyn Store>) {
    for id in ["r1", "r2", "r3"] {
        store.create_run(new_run(id), first_commit()).await.expect("create");
    }
    let a = take(&store, "r1", "a", TTL).await;
    let mut park = lease(&a);
    park.status = Some(RunStatus::Waiting);
    park.release_lease = true;
    store.commit("r1", park).await.expect("park");
    take(&store, "r2", "a", TTL).await;
    let health = store.health().await.expect("health");
    assert_eq!(
        (
            health.runs_by_status.into_iter().collect::<Vec<_>>(),
            health.leases_held,
            health.leases_claimable
        ),
        (vec![("queued".to_owned(), 2), ("waiting".to_owned(), 1)], 1, 1)
    );
}

/// Contents kept by hash (once), and each run's snapshots written only by its lease holder.
async fn blobs_and_fenced_snapshots(store: Arc<dyn Store>) {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    assert_eq!(
        store.missing_blobs(&[a.clone(), b.clone()]).await.expect("missing"),
        [a.clone(), b.clone()]
    );
    store.put_blob(&a, b"hello\0world").await.expect("put");
    store.put_blob(&a, b"ignored: already kept").await.expect("put again");
    let both = [a.clone(), b.clone()];
    assert_eq!(store.missing_blobs(&both).await.expect("missing"), std::slice::from_ref(&b));
    assert_eq!(store.blob(&a).await.expect("blob").as_deref(), Some(&b"hello\0world"[..]));
    assert_eq!(store.blob(&b).await.expect("blob"), None);
    let big = vec![7u8; 3 * 1024 * 1024];
    store.put_blob(&b, &big).await.expect("a large blob");
    assert_eq!(store.blob(&b).await.expect("blob").map(|d| d.len()), Some(big.len()));

    store.create_run(new_run("r1"), first_commit()).await.expect("create");
    assert_eq!(store.snapshot("r1", "workspace").await.expect("snapshot"), None);
    let old = take(&store, "r1", "a", TTL).await;
    store.put_snapshot("r1", &old, "workspace", "{\"v\":1}").await.expect("put");
    // Taken again (a restarted worker): the old fence is stale.
    let new = take(&store, "r1", "a", TTL).await;
    let stale = store.put_snapshot("r1", &old, "workspace", "{\"v\":2}").await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "an old lease: {stale:?}");
    assert_eq!(
        store.snapshot("r1", "workspace").await.expect("read").as_deref(),
        Some("{\"v\":1}")
    );
    store.put_snapshot("r1", &new, "workspace", "{\"v\":3}").await.expect("the holder writes");
    store.put_snapshot("r1", &new, "sandboxes", "{}").await.expect("another area");
    assert_eq!(
        store.snapshot("r1", "workspace").await.expect("read").as_deref(),
        Some("{\"v\":3}")
    );
    assert_eq!(store.snapshot("r1", "sandboxes").await.expect("read").as_deref(), Some("{}"));
    let unknown = store.put_snapshot("nope", &new, "workspace", "{}").await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))), "{unknown:?}");
}
