//! The node's ledger: the database and one long-lived verifier, fed entries incrementally.
//! Everything received goes through the verifier's door (signatures, network, place in the log)
//! before it is stored; nothing is trusted because a peer sent it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ash_identity::NodeId;
use ash_ledger::{Entry, Genesis, Verifier};
use ash_protocol::LogHead;
use ash_store::LedgerDb;

use crate::NodeError;

/// Milliseconds since the Unix epoch: the verifier's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The database and the verifier holding what it stores.
pub struct Ledger {
    db: LedgerDb,
    verifier: Verifier,
}

/// What inserting received entries did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Entries stored for the first time.
    pub new: u64,
    /// The logs that grew, with their new heads.
    pub heads: Vec<LogHead>,
}

impl Ledger {
    /// Opens the ledger at `path` for `genesis`'s network and verifies what it holds.
    pub fn open(path: &Path, genesis: Genesis) -> Result<Self, NodeError> {
        let db = LedgerDb::open(path).map_err(|e| NodeError::Ledger(e.to_string()))?;
        let verifier = db.load(genesis, now_ms()).map_err(|e| NodeError::Ledger(e.to_string()))?;
        Ok(Self { db, verifier })
    }

    /// The position of `author`'s judged head here.
    pub fn head_seq(&self, author: NodeId) -> Option<u64> {
        self.verifier.head(author).map(|e| e.seq)
    }

    /// Heads of the logs held, authors ascending after `after`, at most `limit`; and whether
    /// there are more.
    pub fn heads(&self, after: Option<NodeId>, limit: usize) -> (Vec<LogHead>, bool) {
        let mut authors: Vec<NodeId> =
            self.verifier.authors().filter(|a| after.is_none_or(|after| *a > after)).collect();
        authors.sort_unstable();
        authors.dedup();
        let more = authors.len() > limit;
        let heads = authors
            .into_iter()
            .take(limit)
            .filter_map(|author| {
                Some(LogHead { author: author.to_string(), seq: self.head_seq(author)? })
            })
            .collect();
        (heads, more)
    }

    /// The canonical bytes of `author`'s entries from `from_seq` on, along its judged chain:
    /// at most `limit` of them and about `max_bytes` in all.
    pub fn entries(
        &self,
        author: NodeId,
        from_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut size = 0;
        for entry in
            self.verifier.chain(author).into_iter().filter(|e| e.seq >= from_seq).take(limit)
        {
            let bytes = entry.bytes();
            size += bytes.len() + 8;
            if size > max_bytes && !out.is_empty() {
                break;
            }
            out.push(bytes);
        }
        out
    }

    /// Offers received entries to the verifier and stores what it accepts.
    pub fn insert(&mut self, entries: Vec<Entry>) -> Result<Inserted, NodeError> {
        let now = now_ms();
        self.verifier.set_now(now);
        let mut authors: Vec<NodeId> = entries.iter().map(|e| e.author).collect();
        self.verifier.insert_many(entries);
        let saved =
            self.db.save(&mut self.verifier, now).map_err(|e| NodeError::Ledger(e.to_string()))?;
        authors.sort_unstable();
        authors.dedup();
        let heads = if saved.new == 0 {
            Vec::new()
        } else {
            authors
                .into_iter()
                .filter_map(|a| Some(LogHead { author: a.to_string(), seq: self.head_seq(a)? }))
                .collect()
        };
        Ok(Inserted { new: saved.new, heads })
    }

    /// The verifier, for reading balances and profiles.
    pub const fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}
