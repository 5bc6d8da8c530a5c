//! Live delivery of stored events to stream readers, and the [`Follower`] that joins history
//! and live events without a gap or a duplicate.
//!
//! Events are published only after the store committed them. A follower subscribes first, then
//! reads the store from its cursor, then waits for live events; whenever a live event is not the
//! one it expects (it lagged, or arrived ahead), it reads the store again. So the store is the
//! truth and the channel only a wake-up with a fast path.
//!
//! When other processes write to the same store (several nodes on PostgreSQL), their events
//! never pass through this hub: the store's change feed pokes the run's channel instead, and a
//! poked follower reads the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use ash_protocol::Event;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// Live events kept per run for slow readers before they must re-read the store.
const CHANNEL_CAPACITY: usize = 256;
/// On a store other processes write to, how often an idle reader reads the store anyway: the
/// change feed is the fast path, this the floor when a notification was lost.
const SHARED_POLL: std::time::Duration = std::time::Duration::from_secs(5);
/// Events read from the store per page.
const PAGE: usize = 256;
/// Stored JSON per page: a page ends with the event that reaches it, so a reader that does
/// not read pins at most this plus one event, beside the one line being written to it.
const PAGE_BYTES: usize = 64 * 1024;

/// What a run's channel carries.
#[derive(Debug, Clone)]
enum Live {
    /// An event this process stored.
    Event(Arc<Event>),
    /// Another process stored something: read the store.
    Poke,
}

type Channels = HashMap<String, broadcast::Sender<Live>>;

/// Per-run broadcast channels, created on first subscription and dropped with the last reader.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    channels: Mutex<Channels>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells `run_id`'s readers (every run's, for `None`) that the store changed underneath.
    pub(crate) fn poke(&self, run_id: Option<&str>) {
        let channels = self.lock();
        match run_id {
            Some(run_id) => {
                if let Some(sender) = channels.get(run_id) {
                    let _ = sender.send(Live::Poke);
                }
            }
            None => {
                for sender in channels.values() {
                    let _ = sender.send(Live::Poke);
                }
            }
        }
    }

    /// Sends stored events to current readers of `run_id`.
    pub(crate) fn publish(&self, run_id: &str, events: &[Event]) {
        let mut channels = self.lock();
        if let Some(sender) = channels.get(run_id) {
            if sender.receiver_count() == 0 {
                channels.remove(run_id);
                return;
            }
            for event in events {
                // No receiver left between the check and the send is fine: nothing to deliver.
                let _ = sender.send(Live::Event(Arc::new(event.clone())));
            }
        }
    }

    fn subscribe(&self, run_id: &str) -> broadcast::Receiver<Live> {
        self.lock()
            .entry(run_id.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    fn unsubscribe(&self, run_id: &str) {
        let mut channels = self.lock();
        if channels.get(run_id).is_some_and(|s| s.receiver_count() == 0) {
            channels.remove(run_id);
        }
    }

    /// Runs with a live channel (for tests of the cleanup).
    pub(crate) fn channel_count(&self) -> usize {
        self.lock().len()
    }
}

/// Reads a run's events from a cursor: history from the store, then live ones.
pub struct Follower {
    run_id: String,
    next: u64,
    receiver: Option<broadcast::Receiver<Live>>,
    buffer: VecDeque<Event>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    stop: CancellationToken,
    done: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("run_id", &self.run_id).field("next", &self.next).finish()
    }
}

impl Follower {
    pub(crate) fn new(
        run_id: String,
        start: u64,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        stop: CancellationToken,
    ) -> Self {
        // Subscribe before the first store read so nothing committed in between is missed.
        let receiver = Some(hub.subscribe(&run_id));
        Self {
            run_id,
            next: start,
            receiver,
            buffer: VecDeque::new(),
            store,
            hub,
            stop,
            done: false,
        }
    }

    /// Index of the next event this follower returns.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// The next event; `None` after the run's terminal event or when the engine shuts down.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Option<Event>, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = event.meta.index + 1;
                if event.body.is_terminal() {
                    self.done = true;
                }
                return Ok(Some(event));
            }
            if self.done || self.stop.is_cancelled() {
                return Ok(None);
            }
            let page = self.store.events(&self.run_id, self.next, PAGE, PAGE_BYTES).await?;
            if !page.is_empty() {
                self.buffer.extend(page);
                continue;
            }
            let Some(receiver) = self.receiver.as_mut() else { return Ok(None) };
            let shared = self.store.is_shared();
            let received = tokio::select! {
                received = receiver.recv() => received,
                () = self.stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(SHARED_POLL), if shared => continue,
            };
            match received {
                Ok(Live::Event(event)) if event.meta.index == self.next => {
                    self.buffer.push_back((*event).clone())
                }
                // Old (already read from the store), ahead (missed some), or stored by another
                // process: the store decides.
                Ok(Live::Event(_) | Live::Poke) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.hub.unsubscribe(&self.run_id);
    }
}
