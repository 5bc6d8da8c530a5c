//! `MemoryStore`: the [`Store`] for tests and throwaway runs. Nothing survives the process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ash_protocol::{Event, RunStatus, Usage};

use crate::store::{
    Commit, Fence, JournalRecord, Lease, LeaseState, NewRun, RunRecord, Store, StoreError,
    StoreFuture, StoreHealth, add_usage, check_expect, check_fence, lease_expiry, next_flags,
    now_ms, stamp_events,
};

/// A [`Store`] that keeps everything in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    runs: HashMap<String, Entry>,
    tokens: HashMap<String, String>,
    blobs: HashMap<String, Vec<u8>>,
    /// By run and area.
    snapshots: HashMap<(String, String), String>,
}

#[derive(Debug)]
struct Entry {
    record: RunRecord,
    events: Vec<Event>,
    journal: Vec<JournalRecord>,
    /// The last lease epoch handed out (it outlives the lease).
    epoch: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit: every commit is
        // checked before it mutates anything.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Entry {
    fn apply(&mut self, commit: Commit, now: i64) -> Vec<Event> {
        let (status, cancel) =
            next_flags(self.record.status, self.record.cancel_requested, &commit);
        let events = stamp_events(commit.events, self.record.event_count, now);
        let record = &mut self.record;
        record.event_count += events.len() as u64;
        record.journal_count += commit.records.len() as u64;
        record.status = status;
        record.cancel_requested = cancel;
        record.usage = add_usage(record.usage, commit.usage);
        record.turns = record.turns.saturating_add(commit.turns);
        record.updated_at_ms = now;
        if commit.release_lease {
            record.lease = None;
        }
        self.journal.extend(commit.records);
        self.events.extend(events.iter().cloned());
        events
    }
}

impl Entry {
    /// Gives the lease to `owner` under the next epoch.
    fn take_lease(&mut self, owner: &str, now: i64, ttl: Duration) -> Fence {
        self.epoch += 1;
        self.record.lease = Some(Lease {
            owner: owner.to_owned(),
            epoch: self.epoch,
            expires_at_ms: lease_expiry(now, ttl),
        });
        Fence { owner: owner.to_owned(), epoch: self.epoch }
    }
}

impl Store for MemoryStore {
    fn create_run(&self, run: NewRun, first: Commit) -> StoreFuture<'_, Vec<Event>> {
        let mut state = self.lock();
        if state.runs.contains_key(&run.run_id)
            || state.tokens.contains_key(&run.continuation_token)
        {
            return ready(Err(StoreError::Conflict {
                run_id: run.run_id,
                reason: "a run with this id or token exists".to_owned(),
            }));
        }
        let now = now_ms();
        let mut entry = Entry {
            record: RunRecord {
                run_id: run.run_id.clone(),
                continuation_token: run.continuation_token.clone(),
                mode: run.mode,
                status: RunStatus::Queued,
                turns: 0,
                event_count: 0,
                journal_count: 0,
                usage: Usage::default(),
                created_at_ms: now,
                updated_at_ms: now,
                lease: None,
                cancel_requested: false,
            },
            events: Vec::new(),
            journal: Vec::new(),
            epoch: 0,
        };
        let events = entry.apply(first, now);
        state.tokens.insert(run.continuation_token, run.run_id.clone());
        state.runs.insert(run.run_id, entry);
        ready(Ok(events))
    }

    fn commit<'a>(&'a self, run_id: &'a str, commit: Commit) -> StoreFuture<'a, Vec<Event>> {
        let mut state = self.lock();
        let Some(entry) = state.runs.get_mut(run_id) else {
            return ready(Err(StoreError::NotFound(run_id.to_owned())));
        };
        if let Err(e) = check_expect(&entry.record, &commit.expect) {
            return ready(Err(e));
        }
        ready(Ok(entry.apply(commit, now_ms())))
    }

    fn run<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        ready(Ok(self.lock().runs.get(run_id).map(|e| e.record.clone())))
    }

    fn run_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        let state = self.lock();
        let record =
            state.tokens.get(token).and_then(|id| state.runs.get(id)).map(|e| e.record.clone());
        ready(Ok(record))
    }

    fn events<'a>(
        &'a self,
        run_id: &'a str,
        from: u64,
        limit: usize,
        _max_bytes: usize,
    ) -> StoreFuture<'a, Vec<Event>> {
        // The events are in memory already; a page costs no more than the clones.
        let state = self.lock();
        let events = state.runs.get(run_id).map_or_else(Vec::new, |e| {
            let start = usize::try_from(from).unwrap_or(usize::MAX).min(e.events.len());
            e.events.iter().skip(start).take(limit).cloned().collect()
        });
        ready(Ok(events))
    }

    fn journal<'a>(&'a self, run_id: &'a str, from: u64) -> StoreFuture<'a, Vec<JournalRecord>> {
        let state = self.lock();
        let records = state.runs.get(run_id).map_or_else(Vec::new, |e| {
            let start = usize::try_from(from).unwrap_or(usize::MAX).min(e.journal.len());
            e.journal.iter().skip(start).cloned().collect()
        });
        ready(Ok(records))
    }

    fn acquire_lease<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<Fence>> {
        let mut state = self.lock();
        let now = now_ms();
        let fence = state.runs.get_mut(run_id).and_then(|entry| {
            let free = entry
                .record
                .lease
                .as_ref()
                .is_none_or(|lease| lease.owner == owner || lease.expires_at_ms <= now);
            (free && entry.record.status.is_active()).then(|| entry.take_lease(owner, now, ttl))
        });
        ready(Ok(fence))
    }

    fn renew_lease<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseState>> {
        let mut state = self.lock();
        let Some(entry) = state.runs.get_mut(run_id) else {
            return ready(Ok(None));
        };
        let record = &mut entry.record;
        match &mut record.lease {
            Some(lease) if lease.owner == fence.owner && lease.epoch == fence.epoch => {
                lease.expires_at_ms = lease_expiry(now_ms(), ttl);
                ready(Ok(Some(LeaseState { cancel_requested: record.cancel_requested })))
            }
            _ => ready(Ok(None)),
        }
    }

    fn release_lease<'a>(&'a self, run_id: &'a str, fence: &'a Fence) -> StoreFuture<'a, ()> {
        let mut state = self.lock();
        if let Some(entry) = state.runs.get_mut(run_id)
            && entry
                .record
                .lease
                .as_ref()
                .is_some_and(|l| l.owner == fence.owner && l.epoch == fence.epoch)
        {
            entry.record.lease = None;
        }
        ready(Ok(()))
    }

    fn claim_runs<'a>(
        &'a self,
        owner: &'a str,
        ttl: Duration,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(String, Fence)>> {
        let mut state = self.lock();
        let now = now_ms();
        let mut runs: Vec<(i64, String)> = state
            .runs
            .values()
            .map(|e| &e.record)
            .filter(|r| r.status.is_active())
            .filter(|r| r.lease.as_ref().is_none_or(|l| l.expires_at_ms <= now))
            .map(|r| (r.updated_at_ms, r.run_id.clone()))
            .collect();
        runs.sort();
        let claimed = runs
            .into_iter()
            .take(limit)
            .filter_map(|(_, id)| {
                let fence = state.runs.get_mut(&id)?.take_lease(owner, now, ttl);
                Some((id, fence))
            })
            .collect();
        ready(Ok(claimed))
    }

    fn missing_blobs<'a>(&'a self, hashes: &'a [String]) -> StoreFuture<'a, Vec<String>> {
        let state = self.lock();
        ready(Ok(hashes.iter().filter(|h| !state.blobs.contains_key(*h)).cloned().collect()))
    }

    fn put_blob<'a>(&'a self, hash: &'a str, data: &'a [u8]) -> StoreFuture<'a, ()> {
        self.lock().blobs.entry(hash.to_owned()).or_insert_with(|| data.to_vec());
        ready(Ok(()))
    }

    fn blob<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        ready(Ok(self.lock().blobs.get(hash).cloned()))
    }

    fn put_snapshot<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        area: &'a str,
        manifest: &'a str,
    ) -> StoreFuture<'a, ()> {
        let mut state = self.lock();
        let Some(entry) = state.runs.get(run_id) else {
            return ready(Err(StoreError::NotFound(run_id.to_owned())));
        };
        if let Err(e) = check_fence(&entry.record, fence) {
            return ready(Err(e));
        }
        state.snapshots.insert((run_id.to_owned(), area.to_owned()), manifest.to_owned());
        ready(Ok(()))
    }

    fn snapshot<'a>(&'a self, run_id: &'a str, area: &'a str) -> StoreFuture<'a, Option<String>> {
        let key = (run_id.to_owned(), area.to_owned());
        ready(Ok(self.lock().snapshots.get(&key).cloned()))
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        let state = self.lock();
        let now = now_ms();
        let mut health = StoreHealth { backend: "memory".to_owned(), ..StoreHealth::default() };
        for entry in state.runs.values() {
            let record = &entry.record;
            *health.runs_by_status.entry(record.status.as_str().to_owned()).or_default() += 1;
            if record.status.is_active() {
                match &record.lease {
                    Some(lease) if lease.expires_at_ms > now => health.leases_held += 1,
                    _ => health.leases_claimable += 1,
                }
            }
        }
        ready(Ok(health))
    }

    fn request_cancel<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunStatus>> {
        let mut state = self.lock();
        let Some(entry) = state.runs.get_mut(run_id) else {
            return ready(Ok(None));
        };
        if entry.record.status.is_active() {
            entry.record.cancel_requested = true;
        }
        ready(Ok(Some(entry.record.status)))
    }
}
