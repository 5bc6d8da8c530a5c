//! The node's ledger: the database and one long-lived verifier, fed entries incrementally.
//! Everything received goes through the verifier's door (signatures, network, place in the log)
//! before it is stored; nothing is trusted because a peer sent it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::{HashMap, HashSet};

use ash_identity::{Identity, NodeId};
use ash_ledger::{
    Admission, Body, Checkpoint, Credits, Entry, Genesis, LogWriter, Mint, MintKind, Profile,
    Receive, Verdict, Verifier,
};
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
    /// Proofs of equivocation already handed out by [`Ledger::new_equivocations`].
    told: usize,
    /// The file's `data_version` when this ledger last looked for others' writes.
    seen: u64,
    /// The lowest position of a proof of equivocation in each log that has one, and how many
    /// proofs that takes in.
    forks: HashMap<NodeId, u64>,
    indexed: usize,
}

/// What taking in received checkpoints did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakenCheckpoints {
    /// The ones newer than what was held, kept and stored: subject, position, bytes.
    pub new: Vec<(NodeId, u64, Vec<u8>)>,
    /// The ones that are not checkpoints of this network with a quorum of its witnesses.
    pub refused: u64,
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
        let seen = db.data_version().map_err(|e| NodeError::Ledger(e.to_string()))?;
        // Proofs found before a restart are news for peers once more.
        let mut ledger = Self { db, verifier, told: 0, seen, forks: HashMap::new(), indexed: 0 };
        ledger.index_forks();
        Ok(ledger)
    }

    /// Takes the proofs of equivocation found since the last call into [`Ledger::forks`].
    fn index_forks(&mut self) {
        let all = self.verifier.equivocations();
        for proof in all.get(self.indexed..).unwrap_or_default() {
            let at = self.forks.entry(proof.kept.author).or_insert(proof.kept.seq);
            *at = (*at).min(proof.kept.seq);
        }
        self.indexed = all.len();
    }

    /// Takes in received checkpoints: each is kept only if it is of this network, carries a
    /// quorum of its witnesses' signatures, and is newer than the one held for its subject;
    /// what was kept is stored.
    pub fn take_checkpoints(
        &mut self,
        received: Vec<Vec<u8>>,
    ) -> Result<TakenCheckpoints, NodeError> {
        let mut taken = TakenCheckpoints::default();
        for bytes in received {
            let Ok(checkpoint) = Checkpoint::decode(&bytes) else {
                taken.refused += 1;
                continue;
            };
            let (subject, seq) = (checkpoint.subject, checkpoint.seq);
            if self.verifier.checkpoint_of(subject).is_some_and(|held| held.seq >= seq) {
                continue;
            }
            match self.verifier.add_checkpoint(checkpoint) {
                Ok(()) => taken.new.push((subject, seq, bytes)),
                Err(_) => taken.refused += 1,
            }
        }
        if !taken.new.is_empty() {
            // A checkpoint can prove an equivocation too.
            self.index_forks();
            self.save()?;
        }
        Ok(taken)
    }

    /// The canonical bytes of the checkpoints held for `subjects`, in that order.
    pub fn checkpoints_for(&self, subjects: &[NodeId]) -> Vec<Vec<u8>> {
        subjects
            .iter()
            .filter_map(|s| self.verifier.checkpoint_of(*s))
            .map(Checkpoint::to_bytes)
            .collect()
    }

    /// Checkpoints another process stored in the file since the last look (`ash admin
    /// checkpoint` beside a running node): taken in like received ones. Cheap when nothing
    /// changed.
    pub fn reload_checkpoints(&mut self) -> Result<TakenCheckpoints, NodeError> {
        let version = self.db.data_version().map_err(|e| NodeError::Ledger(e.to_string()))?;
        if version == self.seen {
            return Ok(TakenCheckpoints::default());
        }
        self.seen = version;
        let stored = self.db.checkpoints().map_err(|e| NodeError::Ledger(e.to_string()))?;
        self.take_checkpoints(stored.iter().map(Checkpoint::to_bytes).collect())
    }

    /// The head of `author`'s log here: position and entry id.
    pub fn log_head(&self, author: NodeId) -> Option<LogHead> {
        let head = self.verifier.head(author)?;
        Some(LogHead {
            author: author.to_string(),
            seq: head.seq,
            id: Some(head.id().to_string()),
            fork: self.fork_position(author),
            checkpoint: self.checkpoint_seq(author),
        })
    }

    /// The position of the checkpoint of `author` held here, if any.
    pub fn checkpoint_seq(&self, author: NodeId) -> Option<u64> {
        self.verifier.checkpoint_of(author).map(|c| c.seq)
    }

    /// The lowest position of `author`'s log where a proof of equivocation lies, if any.
    pub fn fork_position(&self, author: NodeId) -> Option<u64> {
        self.forks.get(&author).copied()
    }

    /// Whether `author` was proven to equivocate here.
    pub fn is_frozen(&self, author: NodeId) -> bool {
        self.verifier.is_frozen(author)
    }

    /// Whether a peer's head (`id`, hex, at `author`'s position `seq`) is another entry than
    /// the one held here at that position, and one this ledger does not hold yet: a fork to
    /// fetch.
    pub fn forks_at(&self, author: NodeId, seq: u64, id: &str) -> bool {
        let Some(held) = self.verifier.first_at(author, seq) else { return false };
        let Some(theirs) = ash_identity::decode_hex(id).map(ash_ledger::Hash) else {
            return false;
        };
        held != theirs && self.verifier.entry(&theirs).is_none()
    }

    /// Proofs of equivocation found since the last call, at most `max`: each pair's
    /// canonical bytes.
    pub fn new_equivocations(&mut self, max: usize) -> Vec<(NodeId, [Vec<u8>; 2])> {
        let all = self.verifier.equivocations();
        let new: Vec<(NodeId, [Vec<u8>; 2])> = all
            .get(self.told..)
            .unwrap_or_default()
            .iter()
            .take(max)
            .map(|e| (e.kept.author, [e.kept.bytes(), e.other.bytes()]))
            .collect();
        self.told += new.len();
        new
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
        // Only logs with a judged head count, so a page is never empty while more follow.
        let mut heads = Vec::new();
        let mut rest = authors.into_iter().filter_map(|author| self.log_head(author));
        heads.extend(rest.by_ref().take(limit));
        let more = rest.next().is_some();
        (heads, more)
    }

    /// The canonical bytes of `author`'s entries from `from_seq` on, along its judged chain,
    /// each followed by the other entries held at its position (proofs of equivocation): at
    /// most `limit` of them and about `max_bytes` in all.
    pub fn entries(
        &self,
        author: NodeId,
        from_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut size = 0;
        let frozen = self.verifier.is_frozen(author);
        'chain: for entry in self.verifier.chain(author).into_iter().filter(|e| e.seq >= from_seq) {
            let variants =
                if frozen { self.verifier.variants_at(author, entry.seq) } else { Vec::new() };
            for entry in std::iter::once(entry).chain(variants) {
                let bytes = entry.bytes();
                size += bytes.len() + 8;
                if out.len() >= limit || (size > max_bytes && !out.is_empty()) {
                    break 'chain;
                }
                out.push(bytes);
            }
        }
        out
    }

    /// Offers received entries to the verifier and stores what it accepts.
    pub fn insert(&mut self, entries: Vec<Entry>) -> Result<Inserted, NodeError> {
        let now = now_ms();
        self.verifier.set_now(now);
        let mut authors: Vec<NodeId> = entries.iter().map(|e| e.author).collect();
        self.verifier.insert_many(entries);
        self.index_forks();
        let saved =
            self.db.save(&mut self.verifier, now).map_err(|e| NodeError::Ledger(e.to_string()))?;
        authors.sort_unstable();
        authors.dedup();
        let heads = if saved.new == 0 {
            Vec::new()
        } else {
            authors.into_iter().filter_map(|a| self.log_head(a)).collect()
        };
        Ok(Inserted { new: saved.new, heads })
    }

    /// Appends `body` to `who`'s own log, verified like any other entry, and stores it;
    /// returns the entry. A body the rules refuse (a reservation the balance does not cover,
    /// a collection with nothing owed) is an error, and nothing is stored.
    pub fn append_entry(&mut self, who: &Identity, body: Body) -> Result<Entry, NodeError> {
        let entry = self.append(who, body)?;
        self.save()?;
        Ok(entry)
    }

    /// The verdict on the entry with `id`, if it is held.
    pub fn verdict(&self, id: &ash_ledger::Hash) -> Option<Verdict> {
        self.verifier.verdict(id).cloned()
    }

    /// The valid entries of `author` that refer to the reservation `reserve` (its receipt,
    /// decision or release), in log order.
    pub fn settlement_of(&self, author: NodeId, reserve: ash_ledger::Hash) -> Vec<Entry> {
        self.verifier
            .valid_entries(author)
            .iter()
            .filter(|e| match &e.body {
                Body::Receipt(r) => r.reserve == reserve,
                Body::Decide(d) => d.reserve == reserve,
                Body::Release(r) => r.reserve == reserve,
                _ => false,
            })
            .map(|e| (**e).clone())
            .collect()
    }

    /// Whether `author` has a valid collection of `source` (a decision or receipt).
    pub fn collected(&self, author: NodeId, source: ash_ledger::Hash) -> bool {
        self.verifier
            .valid_entries(author)
            .iter()
            .any(|e| matches!(&e.body, Body::Collect(c) if c.source == source))
    }

    /// Appends a new entry to `who`'s own log, verified like any other.
    fn append(&mut self, who: &Identity, body: Body) -> Result<Entry, NodeError> {
        let head = self.verifier.head(who.node_id());
        let mut writer = match &head {
            Some(last) => LogWriter::resume(who, last),
            None => LogWriter::new(who, self.verifier.genesis().id()),
        };
        let time = head.map_or(0, |h| h.time).max(now_ms());
        let kind = body.kind();
        let entry = writer.append(time, body);
        match self.verifier.insert(entry.clone()) {
            Admission::Accepted(Verdict::Valid) => Ok(entry),
            Admission::Accepted(Verdict::Refused { rule, detail }) => {
                // A refused entry has no effect and its log goes on after it; it is kept, as
                // every peer will judge it the same.
                self.save()?;
                Err(NodeError::Refused { kind, rule: rule.name().to_owned(), detail })
            }
            other => Err(NodeError::Ledger(format!("own {kind} entry not accepted: {other:?}"))),
        }
    }

    /// Takes the mints made out to `me` into its own log (one `receive` entry each) and stores
    /// them; returns the amounts. Nothing if `me` has no profile here yet.
    pub fn receive_mints(&mut self, me: &Identity) -> Result<Vec<u64>, NodeError> {
        if self.verifier.profile(me.node_id()).is_none() {
            return Ok(Vec::new());
        }
        let mut received = Vec::new();
        for mint in self.verifier.receivable_mints(me.node_id()) {
            let Body::Mint(m) = &mint.body else { continue };
            let amount = m.amount.get();
            self.append(me, Body::Receive(Receive { mint: mint.id() }))?;
            received.push(amount);
        }
        if !received.is_empty() {
            self.save()?;
        }
        Ok(received)
    }

    /// As mint authority `authority`: a signup mint of `bonus` for each identity with a valid
    /// profile that this authority has not minted one for, at most `max`; stored. Given
    /// `admitted`, only those, in that order (first come, first minted); else every such
    /// identity. Returns the recipients.
    pub fn mint_signups(
        &mut self,
        authority: &Identity,
        bonus: u64,
        max: usize,
        admitted: Option<&[NodeId]>,
    ) -> Result<Vec<NodeId>, NodeError> {
        let me = authority.node_id();
        if !self.verifier.genesis().is_authority(&me) || max == 0 {
            return Ok(Vec::new());
        }
        let minted = self.signups_minted_by(me);
        let owed =
            |a: &NodeId| *a != me && !minted.contains(a) && self.verifier.profile(*a).is_some();
        let mut due: Vec<NodeId> = match admitted {
            Some(admitted) => admitted.iter().copied().filter(owed).collect(),
            None => {
                let mut all: Vec<NodeId> = self.verifier.authors().filter(owed).collect();
                all.sort_unstable();
                all
            }
        };
        let mut seen = HashSet::new();
        due.retain(|a| seen.insert(*a));
        due.truncate(max);
        if due.is_empty() {
            return Ok(due);
        }
        if self.verifier.profile(me).is_none() {
            let profile = Profile {
                username: "mint-authority".into(),
                sealing_key: authority.sealing_public(),
                created_at: now_ms(),
            };
            self.append(authority, Body::Profile(profile))?;
        }
        for recipient in &due {
            let mint = Mint {
                recipient: *recipient,
                amount: Credits::new(bonus),
                kind: MintKind::Signup,
                reason: "signup bonus".into(),
            };
            self.append(authority, Body::Mint(mint))?;
        }
        self.save()?;
        Ok(due)
    }

    /// The identities `authority` minted a signup bonus for.
    pub fn signups_minted_by(&self, authority: NodeId) -> HashSet<NodeId> {
        self.verifier
            .valid_entries(authority)
            .iter()
            .filter_map(|e| match &e.body {
                Body::Mint(m) if m.kind == MintKind::Signup => Some(m.recipient),
                _ => None,
            })
            .collect()
    }

    fn save(&mut self) -> Result<(), NodeError> {
        self.db
            .save(&mut self.verifier, now_ms())
            .map(|_| ())
            .map_err(|e| NodeError::Ledger(e.to_string()))
    }

    /// The verifier, for reading balances and profiles.
    pub const fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}
