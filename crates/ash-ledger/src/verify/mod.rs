//! Verification: which entries are valid, which are refused and why, which wait, and the
//! balances that follow.
//!
//! An entry is accepted into the verifier only with a valid author signature, our network and a
//! place in its author's log (the predecessor held, or entry 0); entries whose predecessor is not
//! here yet wait in a bounded quarantine. An accepted entry is judged by [`rules::judge`] once its
//! predecessor is judged and the entry it names (if any) is; its verdict never changes after. So
//! the verdicts are a function of the entries present, whatever order they came in.

mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ash_identity::{Domain, NodeId, PublicKey, SignedItem, invalid_signatures, verify};
use serde::Serialize;

pub use rules::Rule;
pub(crate) use rules::{Collected, LogState, Open};
use rules::{Named, judge};

use crate::checkpoint::Checkpoint;
use crate::credits::Credits;
use crate::entry::{Body, Entry, Hash, countersigned};
use crate::genesis::Genesis;

/// Distinct entries kept at one position of one log; beyond, a further variant is dropped
/// (the equivocation is proven already).
pub const MAX_VARIANTS: usize = 4;
/// Entries waiting for their predecessor, at most; the oldest is dropped first.
pub const MAX_QUARANTINE: usize = 100_000;
/// How far an entry's time may be ahead of the verifier's clock before it waits (5 minutes).
pub const DEFAULT_SKEW: u64 = 5 * 60 * 1000;
/// A signature to check: signer, domain, signed bytes, signature.
type Check<'a> = (NodeId, Domain, &'a [u8], &'a ash_identity::Signature);

/// How far apart the states kept along an equivocating author's log are.
const SNAPSHOT_EVERY: u64 = 16;
const BAD_SIGNATURE: &str = "the author's signature does not verify";

/// An entry's standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// It counts.
    Valid,
    /// It broke `rule`; it has no effect, and its log goes on without it.
    Refused {
        /// The rule.
        rule: Rule,
        /// Specifics, for people.
        detail: String,
    },
    /// It cannot be judged yet: it waits for `waiting_for`.
    Pending {
        /// What is missing, for people.
        waiting_for: String,
    },
}

/// What became of an entry offered to [`Verifier::insert`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Accepted; its verdict so far.
    Accepted(Verdict),
    /// The same entry was already here.
    Known,
    /// Its predecessor is not here: it waits in quarantine.
    Quarantined,
    /// Refused at the door (network, signature, chain): not kept.
    Refused(Rule, String),
    /// A further variant at a position that already holds [`MAX_VARIANTS`]: not kept.
    Dropped,
}

/// An entry refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The log.
    pub author: NodeId,
    /// The entry.
    pub seq: u64,
    /// Its id.
    pub id: Hash,
    /// Its kind.
    pub kind: &'static str,
    /// The rule broken.
    pub rule: Rule,
    /// Specifics, for people.
    pub detail: String,
}

/// An entry that cannot be judged yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The log.
    pub author: NodeId,
    /// The entry.
    pub seq: u64,
    /// Its id.
    pub id: Hash,
    /// What it waits for.
    pub waiting_for: String,
}

/// Proof that an identity signed two different entries at one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// The entry held first.
    pub kept: Arc<Entry>,
    /// The other one.
    pub other: Arc<Entry>,
}

/// Credits of one identity, from its own valid entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Credits received from mints.
    pub received: Credits,
    /// Credits collected for jobs done.
    pub earned: Credits,
    /// Credits paid for jobs decided.
    pub paid: Credits,
    /// Credits locked in open reservations.
    pub locked: Credits,
    /// What a reservation may use now: `received + earned − paid − locked`, or 0 when frozen.
    pub spendable: Credits,
}

/// One identity as verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Who.
    pub id: NodeId,
    /// The latest valid profile's username.
    pub username: Option<String>,
    /// Entries held (all positions and variants).
    pub entries: u64,
    /// Entries judged valid.
    pub valid: u64,
    /// Entries refused by a rule.
    pub refused: u64,
    /// The log's judged head: the latest judged entry (of the branch with the lowest id at a
    /// fork).
    pub head: Option<Hash>,
    /// Its seq.
    pub head_seq: Option<u64>,
    /// Its credits.
    pub balance: Balance,
    /// Whether it is a mint authority.
    pub authority: bool,
    /// Equivocation was proven: its credits must not be accepted.
    pub frozen: bool,
}

/// The outcome of verifying.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every identity with a log here, by id.
    pub accounts: BTreeMap<NodeId, Account>,
    /// Entries refused, by a rule or at the door.
    pub refused: Vec<Refusal>,
    /// Entries that cannot be judged yet.
    pub pending: Vec<Pending>,
    /// Entries waiting for their predecessor.
    pub quarantined: u64,
    /// Proofs of equivocation.
    pub equivocations: Vec<Equivocation>,
}

impl Report {
    /// `true` when nothing was refused, nothing waits and nobody equivocated.
    pub fn is_clean(&self) -> bool {
        self.refused.is_empty()
            && self.pending.is_empty()
            && self.quarantined == 0
            && self.equivocations.is_empty()
    }
}

struct Node {
    entry: Arc<Entry>,
    verdict: Verdict,
}

/// The verifier: entries by id, their verdicts, and the state each log's judged head left.
pub struct Verifier {
    genesis: Genesis,
    now: u64,
    skew: u64,
    keys: HashMap<NodeId, Option<PublicKey>>,
    nodes: HashMap<Hash, Node>,
    /// The first entry held at each position of each log.
    positions: HashMap<(NodeId, u64), Hash>,
    /// The other entries held at a position whose author equivocated (at most
    /// [`MAX_VARIANTS`] in all with the first).
    variants: HashMap<(NodeId, u64), Vec<Hash>>,
    /// The state after an entry, kept for entries whose successor is not judged yet.
    states: HashMap<Hash, LogState>,
    /// Per log: the judged head (highest seq, lowest id at a tie).
    heads: HashMap<NodeId, (u64, Hash)>,
    /// Entries to retry once the key entry is judged or arrives.
    waiting: HashMap<Hash, Vec<Hash>>,
    /// Entries dated too far ahead of the clock.
    early: BTreeSet<Hash>,
    /// Quarantine: entries by id, their ids by the predecessor they wait for, arrival order.
    orphans: HashMap<Hash, Entry>,
    orphans_by_prev: HashMap<Hash, BTreeSet<Hash>>,
    orphan_order: VecDeque<Hash>,
    door: Vec<Refusal>,
    equivocations: Vec<Equivocation>,
    frozen: BTreeSet<NodeId>,
    checkpoints: HashMap<NodeId, Checkpoint>,
    /// Entries that took their verdict from a checkpoint rather than the rules.
    anchored: HashSet<Hash>,
    /// Per log: entries held, valid, refused.
    counts: HashMap<NodeId, (u64, u64, u64)>,
    /// Entries placed or judged since [`Verifier::take_changed`] last ran.
    changed: BTreeSet<Hash>,
    /// Receipts and cancellations (by id) whose counter-signature verified in a batch, and
    /// under which acceptor; dropped when the entry is judged.
    countersigned: HashMap<Hash, NodeId>,
}

impl Verifier {
    /// A verifier for `genesis`'s network with nothing in it, at the clock `now` (ms).
    pub fn new(genesis: Genesis, now: u64) -> Self {
        Self {
            genesis,
            now,
            skew: DEFAULT_SKEW,
            keys: HashMap::new(),
            nodes: HashMap::new(),
            positions: HashMap::new(),
            variants: HashMap::new(),
            states: HashMap::new(),
            heads: HashMap::new(),
            waiting: HashMap::new(),
            early: BTreeSet::new(),
            orphans: HashMap::new(),
            orphans_by_prev: HashMap::new(),
            orphan_order: VecDeque::new(),
            door: Vec::new(),
            equivocations: Vec::new(),
            frozen: BTreeSet::new(),
            checkpoints: HashMap::new(),
            anchored: HashSet::new(),
            counts: HashMap::new(),
            changed: BTreeSet::new(),
            countersigned: HashMap::new(),
        }
    }

    /// Marks entries held here as changed, so that the next [`Verifier::take_changed`] returns
    /// them: for a store whose stored verdicts are behind what loading them reached.
    pub fn mark_changed(&mut self, ids: impl IntoIterator<Item = Hash>) {
        self.changed.extend(ids.into_iter().filter(|id| self.nodes.contains_key(id)));
    }

    /// The entries placed or judged since the last call, with their verdicts now, for a store
    /// to write.
    pub fn take_changed(&mut self) -> Vec<(Arc<Entry>, Verdict)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|id| self.nodes.get(&id).map(|n| (Arc::clone(&n.entry), n.verdict.clone())))
            .collect()
    }

    /// The entries in quarantine (waiting for their predecessor), oldest first.
    pub fn quarantined(&self) -> impl Iterator<Item = &Entry> {
        self.orphan_order.iter().filter_map(|id| self.orphans.get(id))
    }

    /// The checkpoints that count here, one per subject (the latest).
    pub fn checkpoints(&self) -> impl Iterator<Item = &Checkpoint> {
        self.checkpoints.values()
    }

    /// The identities with a log here.
    pub fn authors(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.counts.keys().copied()
    }

    /// Records `id`'s verdict, keeping the per-log counts.
    fn set_verdict(&mut self, id: Hash, verdict: Verdict) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let slot = self.counts.entry(node.entry.author).or_default();
        match &node.verdict {
            Verdict::Valid => slot.1 -= 1,
            Verdict::Refused { .. } => slot.2 -= 1,
            Verdict::Pending { .. } => {}
        }
        match &verdict {
            Verdict::Valid => slot.1 += 1,
            Verdict::Refused { .. } => slot.2 += 1,
            Verdict::Pending { .. } => {}
        }
        node.verdict = verdict;
        self.changed.insert(id);
    }

    /// The network's genesis.
    pub const fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Verifies a whole set of entries (any order, any authors). Author signatures are checked
    /// as one batch on all cores; the verdicts are those of inserting them one by one in any
    /// order.
    pub fn verify_all(
        genesis: Genesis,
        now: u64,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Self {
        let mut verifier = Self::new(genesis, now);
        verifier.insert_many(entries.into_iter().collect());
        verifier
    }

    /// Offers many entries at once (a bundle): what [`Verifier::insert`] does for each, with
    /// the author signatures, and the acceptors' counter-signatures of receipts and
    /// cancellations, checked as batches on all cores. Returns each entry's admission, in the
    /// order given. Duplicates and entries held already cost no signature check, nor do entries
    /// of another network.
    pub fn insert_many(&mut self, entries: Vec<Entry>) -> Vec<Admission> {
        self.offer(entries, false)
    }

    /// [`Verifier::insert_many`] for entries whose author signatures were checked before they
    /// were stored (the ledger database holds only such entries).
    pub fn insert_many_checked(&mut self, entries: Vec<Entry>) -> Vec<Admission> {
        self.offer(entries, true)
    }

    fn offer(&mut self, entries: Vec<Entry>, signatures_checked: bool) -> Vec<Admission> {
        let mut admissions = vec![Admission::Known; entries.len()];
        // Each log in order, so that few entries wait for a predecessor; byte-identical copies
        // once.
        let mut order: Vec<(usize, Entry)> = entries.into_iter().enumerate().collect();
        order.sort_unstable_by(|(_, a), (_, b)| {
            (a.author, a.seq, a.id()).cmp(&(b.author, b.seq, b.id()))
        });
        order.dedup_by(|(_, a), (_, b)| a == b);
        let mut fresh = Vec::with_capacity(order.len());
        for (i, entry) in order {
            if self.holds(&entry.id()) {
                continue;
            }
            if entry.network != self.genesis.id() {
                admissions[i] = self.refuse_other_network(&entry);
                continue;
            }
            fresh.push((i, entry));
        }
        let bad = if signatures_checked {
            BTreeSet::new()
        } else {
            self.bad_signatures(fresh.iter().map(|(_, e)| e))
        };
        self.check_countersignatures(fresh.iter().map(|(_, e)| e));
        for (n, (i, entry)) in fresh.into_iter().enumerate() {
            let id = entry.id();
            admissions[i] = if bad.contains(&n) {
                self.refuse_at_door(&entry, Rule::Signature, BAD_SIGNATURE)
            } else {
                self.admit(entry)
            };
            if !matches!(admissions[i], Admission::Accepted(_) | Admission::Quarantined) {
                self.countersigned.remove(&id);
            }
        }
        admissions
    }

    /// Checks, as one batch, the counter-signatures of the receipts and cancellations among
    /// `entries` whose reservation is among them or held here, and remembers which verified
    /// under which acceptor; the rules then skip checking those again. One that does not
    /// verify is simply not remembered: the rules check it and refuse the entry.
    fn check_countersignatures<'e>(&mut self, entries: impl Iterator<Item = &'e Entry> + Clone) {
        let batch: HashMap<Hash, &Entry> = entries
            .clone()
            .filter(|e| matches!(e.body, Body::Reserve(_)))
            .map(|e| (e.id(), e))
            .collect();
        let mut wanted = Vec::new();
        for entry in entries {
            let reserve = match &entry.body {
                Body::Receipt(r) => r.reserve,
                Body::Release(r) if r.cancel.is_some() => r.reserve,
                _ => continue,
            };
            let held = self.nodes.get(&reserve).map(|n| &*n.entry);
            let Some(reserve) = batch.get(&reserve).copied().or(held) else { continue };
            let Body::Reserve(body) = &reserve.body else { continue };
            if reserve.author != entry.author {
                continue;
            }
            let Some((domain, bytes, signature)) = countersigned(entry.network, &entry.body) else {
                continue;
            };
            wanted.push((entry.id(), body.acceptor, domain, bytes, signature));
        }
        let checks: Vec<Check<'_>> = wanted
            .iter()
            .map(|(_, acceptor, domain, bytes, signature)| {
                (*acceptor, *domain, &bytes[..], signature)
            })
            .collect();
        let bad = self.failing(&checks);
        for (i, (id, acceptor, ..)) in wanted.iter().enumerate() {
            if !bad.contains(&i) {
                self.countersigned.insert(*id, *acceptor);
            }
        }
    }

    /// Offers one entry: checks its signature, places it, and judges what can be judged.
    pub fn insert(&mut self, entry: Entry) -> Admission {
        if self.holds(&entry.id()) {
            return Admission::Known;
        }
        if entry.network != self.genesis.id() {
            return self.refuse_other_network(&entry);
        }
        let valid = self.key(entry.author).is_some_and(|key| {
            verify(&key, Domain::LedgerEntry, &entry.signed_bytes(), &entry.signature).is_ok()
        });
        if !valid {
            return self.refuse_at_door(&entry, Rule::Signature, BAD_SIGNATURE);
        }
        self.admit(entry)
    }

    fn holds(&self, id: &Hash) -> bool {
        self.nodes.contains_key(id) || self.orphans.contains_key(id)
    }

    fn refuse_other_network(&mut self, entry: &Entry) -> Admission {
        let detail = format!("network {} is not this one ({})", entry.network, self.genesis.id());
        self.refuse_at_door(entry, Rule::Network, &detail)
    }

    /// Offers an entry whose signature was checked before it was stored (the ledger database
    /// holds only such entries).
    pub fn insert_checked(&mut self, entry: Entry) -> Admission {
        if self.holds(&entry.id()) {
            return Admission::Known;
        }
        self.admit(entry)
    }

    /// Moves the clock on, judging entries that were dated ahead of it.
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
        let ready: Vec<Hash> = std::mem::take(&mut self.early).into_iter().collect();
        self.run(ready);
    }

    /// Adds a checkpoint. Counts only with a quorum of valid witness signatures; then the
    /// subject's entries on its chain up to the head take their verdicts from it, and later ones
    /// are judged from its state.
    pub fn add_checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), crate::CheckpointError> {
        checkpoint.check(&self.genesis)?;
        let subject = checkpoint.subject;
        if self.checkpoints.get(&subject).is_some_and(|c| c.seq >= checkpoint.seq) {
            return Ok(());
        }
        let head = checkpoint.head;
        self.checkpoints.insert(subject, checkpoint);
        self.anchor(head);
        Ok(())
    }

    /// An entry's verdict, if the entry is here (quarantined entries count as pending).
    pub fn verdict(&self, id: &Hash) -> Option<&Verdict> {
        self.nodes.get(id).map(|n| &n.verdict)
    }

    /// The id of the entry held first at `author`'s position `seq`, if any.
    pub fn first_at(&self, author: NodeId, seq: u64) -> Option<Hash> {
        self.positions.get(&(author, seq)).copied()
    }

    /// The other entries held at `author`'s position `seq` (besides the first).
    pub fn variants_at(&self, author: NodeId, seq: u64) -> Vec<Arc<Entry>> {
        self.variants
            .get(&(author, seq))
            .map(|ids| ids.iter().filter_map(|id| self.entry(id).cloned()).collect())
            .unwrap_or_default()
    }

    /// The checkpoint of `subject` that counts here, if any.
    pub fn checkpoint_of(&self, subject: NodeId) -> Option<&Checkpoint> {
        self.checkpoints.get(&subject)
    }

    /// Whether `author` was proven to equivocate.
    pub fn is_frozen(&self, author: NodeId) -> bool {
        self.frozen.contains(&author)
    }

    /// The proofs of equivocation found so far, in the order found.
    pub fn equivocations(&self) -> &[Equivocation] {
        &self.equivocations
    }

    /// An entry held here by its id.
    pub fn entry(&self, id: &Hash) -> Option<&Arc<Entry>> {
        self.nodes.get(id).map(|n| &n.entry)
    }

    /// The valid entries of `author`'s log along its judged head's chain, oldest first.
    pub fn valid_entries(&self, author: NodeId) -> Vec<Arc<Entry>> {
        self.chain(author)
            .into_iter()
            .filter(|e| self.verdict(&e.id()) == Some(&Verdict::Valid))
            .collect()
    }

    /// The entries of `author`'s log along its judged head's chain, oldest first, with verdicts.
    pub fn chain(&self, author: NodeId) -> Vec<Arc<Entry>> {
        let mut out = Vec::new();
        let mut at = self.heads.get(&author).map(|(_, id)| *id);
        while let Some(id) = at {
            let Some(node) = self.nodes.get(&id) else { break };
            out.push(Arc::clone(&node.entry));
            at = (node.entry.seq > 0).then_some(node.entry.prev);
        }
        out.reverse();
        out
    }

    /// The judged head of `author`'s log: its latest valid-or-refused entry.
    pub fn head(&self, author: NodeId) -> Option<Arc<Entry>> {
        let (_, id) = self.heads.get(&author)?;
        self.entry(id).cloned()
    }

    /// `author`'s latest valid profile: username and sealing key. Comes from verified entries
    /// only.
    pub fn profile(&self, author: NodeId) -> Option<(String, ash_identity::SealingPublicKey)> {
        self.head_state(author).and_then(|s| s.profile)
    }

    /// A checkpoint of `subject` at its judged head, unsigned: witnesses sign it with
    /// [`Checkpoint::sign`]. `None` when the subject is frozen, has nothing judged, or has
    /// entries still waiting below its head.
    pub fn checkpoint(&self, subject: NodeId, time: u64) -> Option<Checkpoint> {
        if self.frozen.contains(&subject) {
            return None;
        }
        let (seq, head) = *self.heads.get(&subject)?;
        let state = self.state_at(head)?;
        let chain = self.chain(subject);
        let mut refused: Vec<u64> = chain
            .iter()
            .filter(|e| matches!(self.verdict(&e.id()), Some(Verdict::Refused { .. })))
            .map(|e| e.seq)
            .collect();
        if let Some(old) = self.checkpoints.get(&subject) {
            refused.extend(old.refused.iter().copied());
            refused.sort_unstable();
            refused.dedup();
        }
        // The encoding's counts are bounded: such a log is not checkpointed.
        if refused.len() > usize::from(u16::MAX) {
            return None;
        }
        Some(Checkpoint {
            network: self.genesis.id(),
            subject,
            seq,
            head,
            time,
            refused,
            state,
            signatures: Vec::new(),
        })
    }

    /// Valid mints made out to `recipient` that its log has not received (and no second signup),
    /// oldest first per authority.
    pub fn receivable_mints(&self, recipient: NodeId) -> Vec<Arc<Entry>> {
        let state = self.head_state(recipient).unwrap_or_default();
        let mut out: Vec<Arc<Entry>> = self
            .nodes
            .values()
            .filter(|n| n.verdict == Verdict::Valid)
            .filter(|n| match &n.entry.body {
                Body::Mint(m) => {
                    m.recipient == recipient
                        && !state.mints.contains(&n.entry.id())
                        && !(m.kind == crate::MintKind::Signup && state.signup)
                }
                _ => false,
            })
            .map(|n| Arc::clone(&n.entry))
            .collect();
        out.sort_by_key(|e| (e.author, e.seq));
        // A second signup would be refused: keep the first only.
        let mut signup = state.signup;
        out.retain(|e| match &e.body {
            Body::Mint(m) if m.kind == crate::MintKind::Signup => {
                !std::mem::replace(&mut signup, true)
            }
            _ => true,
        });
        out
    }

    /// Whether a checkpoint says what the rules say: `Some(true)` when its head is judged here
    /// by the rules with the same state and refused entries, `Some(false)` when not, `None`
    /// when its head is not here or not judged.
    pub fn agrees_with(&self, checkpoint: &Checkpoint) -> Option<bool> {
        let node = self.nodes.get(&checkpoint.head)?;
        if matches!(node.verdict, Verdict::Pending { .. })
            || node.entry.author != checkpoint.subject
        {
            return None;
        }
        let state = self.state_at(checkpoint.head)?;
        let mut refused = Vec::new();
        let mut at = Some(checkpoint.head);
        while let Some(id) = at {
            let node = self.nodes.get(&id)?;
            if matches!(node.verdict, Verdict::Refused { .. }) {
                refused.push(node.entry.seq);
            }
            at = (node.entry.seq > 0).then_some(node.entry.prev);
        }
        refused.reverse();
        Some(
            state == checkpoint.state
                && refused == checkpoint.refused
                && !self.frozen.contains(&checkpoint.subject),
        )
    }

    /// The report: accounts, refusals, what waits, equivocations.
    pub fn report(&self) -> Report {
        let mut report = Report {
            // A copy with a bad signature of an entry held here is not a refusal of the entry.
            refused: self
                .door
                .iter()
                .filter(|r| !self.nodes.contains_key(&r.id))
                .cloned()
                .collect(),
            quarantined: self.orphans.len() as u64,
            equivocations: self.equivocations.clone(),
            ..Report::default()
        };
        for (id, node) in &self.nodes {
            let entry = &node.entry;
            match &node.verdict {
                Verdict::Valid => {}
                Verdict::Refused { rule, detail } => {
                    report.refused.push(Refusal {
                        author: entry.author,
                        seq: entry.seq,
                        id: *id,
                        kind: entry.body.kind(),
                        rule: *rule,
                        detail: detail.clone(),
                    });
                }
                Verdict::Pending { waiting_for } => report.pending.push(Pending {
                    author: entry.author,
                    seq: entry.seq,
                    id: *id,
                    waiting_for: waiting_for.clone(),
                }),
            }
        }
        report.refused.sort_by_key(|r| (r.author, r.seq, r.id));
        report.pending.sort_by_key(|p| (p.author, p.seq, p.id));
        for id in self.counts.keys() {
            report.accounts.insert(*id, self.account(*id));
        }
        report
    }

    /// One identity's account.
    pub fn account(&self, id: NodeId) -> Account {
        let (entries, valid, refused) = self.counts.get(&id).copied().unwrap_or_default();
        let state = self.head_state(id).unwrap_or_default();
        let frozen = self.frozen.contains(&id);
        let head = self.heads.get(&id).copied();
        Account {
            id,
            username: state.profile.as_ref().map(|(name, _)| name.clone()),
            entries,
            valid,
            refused,
            head: head.map(|(_, h)| h),
            head_seq: head.map(|(s, _)| s),
            balance: balance_of(&state, frozen),
            authority: self.genesis.is_authority(&id),
            frozen,
        }
    }

    fn head_state(&self, author: NodeId) -> Option<LogState> {
        let (_, head) = self.heads.get(&author)?;
        self.state_at(*head)
    }

    fn key(&mut self, id: NodeId) -> Option<PublicKey> {
        *self.keys.entry(id).or_insert_with(|| id.public_key().ok())
    }

    /// The positions in `entries` whose author signature does not verify.
    fn bad_signatures<'e>(&mut self, entries: impl Iterator<Item = &'e Entry>) -> BTreeSet<usize> {
        // Signed parts are encoded for the check, a chunk at a time, so that checking a large
        // bundle does not hold a second copy of it.
        const CHUNK: usize = 16_384;
        let entries: Vec<&Entry> = entries.collect();
        let mut bad = BTreeSet::new();
        for (c, chunk) in entries.chunks(CHUNK).enumerate() {
            let signed: Vec<Vec<u8>> = chunk.iter().map(|e| e.signed_bytes()).collect();
            let checks: Vec<Check<'_>> = chunk
                .iter()
                .zip(&signed)
                .map(|(e, bytes)| (e.author, Domain::LedgerEntry, &bytes[..], &e.signature))
                .collect();
            bad.extend(self.failing(&checks).into_iter().map(|i| c * CHUNK + i));
        }
        bad
    }

    /// The positions in `checks` whose signature does not verify under its signer's key (an
    /// unusable key counts as not verifying), checked as one batch on all cores.
    fn failing(&mut self, checks: &[Check<'_>]) -> BTreeSet<usize> {
        let keys: Vec<Option<PublicKey>> = checks.iter().map(|c| self.key(c.0)).collect();
        let mut bad = BTreeSet::new();
        let mut items = Vec::with_capacity(checks.len());
        let mut indices = Vec::with_capacity(checks.len());
        for (i, ((_, domain, bytes, signature), key)) in checks.iter().zip(&keys).enumerate() {
            match key {
                Some(key) => {
                    indices.push(i);
                    items.push(SignedItem { key, domain: *domain, bytes, signature });
                }
                None => {
                    bad.insert(i);
                }
            }
        }
        bad.extend(invalid_signatures(&items).into_iter().map(|i| indices[i]));
        bad
    }

    fn refuse_at_door(&mut self, entry: &Entry, rule: Rule, detail: &str) -> Admission {
        self.door.push(Refusal {
            author: entry.author,
            seq: entry.seq,
            id: entry.id(),
            kind: entry.body.kind(),
            rule,
            detail: detail.to_owned(),
        });
        Admission::Refused(rule, detail.to_owned())
    }

    /// Places a signature-checked entry in its log, or in quarantine, and then the quarantined
    /// entries that were waiting for it (a loop, not recursion: a quarantined log can be long).
    fn admit(&mut self, entry: Entry) -> Admission {
        let id = entry.id();
        let (admission, mut released) = self.place(entry);
        while let Some(orphan) = released.pop() {
            if let Some(entry) = self.orphans.remove(&orphan) {
                released.extend(self.place(entry).1);
            }
        }
        match admission {
            Admission::Accepted(_) => Admission::Accepted(
                self.verdict(&id)
                    .cloned()
                    .unwrap_or(Verdict::Pending { waiting_for: "judgement".into() }),
            ),
            other => other,
        }
    }

    /// Places one entry; returns its admission and the quarantined entries it releases.
    fn place(&mut self, entry: Entry) -> (Admission, Vec<Hash>) {
        let id = entry.id();
        if self.holds(&id) {
            return (Admission::Known, Vec::new());
        }
        if entry.network != self.genesis.id() {
            return (self.refuse_other_network(&entry), Vec::new());
        }
        if entry.seq == 0 && entry.prev != Hash::default() {
            let refused = self.refuse_at_door(&entry, Rule::Chain, "entry 0 must have a zero prev");
            return (refused, Vec::new());
        }
        if entry.seq > 0 {
            match self.nodes.get(&entry.prev) {
                Some(prev)
                    if prev.entry.author == entry.author && prev.entry.seq + 1 == entry.seq => {}
                Some(_) => {
                    let refused = self.refuse_at_door(
                        &entry,
                        Rule::Chain,
                        "prev names an entry that is not the author's previous one",
                    );
                    return (refused, Vec::new());
                }
                None if !self.anchored_by_checkpoint(&entry) => {
                    return (self.quarantine(entry), Vec::new());
                }
                None => {}
            }
        }
        // An ancestor of a checkpoint's head that arrives after it takes its verdict from the
        // checkpoint, as the ones held when the checkpoint came did.
        let from_checkpoint = entry.seq > 0
            && !self.nodes.contains_key(&entry.prev)
            && self.checkpoints.get(&entry.author).is_some_and(|c| c.head != id);
        let at = (entry.author, entry.seq);
        let first = match self.positions.get(&at) {
            Some(first) => {
                let more = self.variants.entry(at).or_default();
                if 1 + more.len() >= MAX_VARIANTS {
                    return (Admission::Dropped, Vec::new());
                }
                more.push(id);
                Some(*first)
            }
            None => {
                self.positions.insert(at, id);
                None
            }
        };
        let entry = Arc::new(entry);
        if let Some(first) = first.and_then(|f| self.nodes.get(&f)) {
            self.equivocations
                .push(Equivocation { kept: Arc::clone(&first.entry), other: Arc::clone(&entry) });
            self.frozen.insert(entry.author);
        }
        let pending = Verdict::Pending { waiting_for: "judgement".into() };
        self.counts.entry(entry.author).or_default().0 += 1;
        self.changed.insert(id);
        let verdict = from_checkpoint.then(|| self.checkpoint_verdict(&entry));
        self.nodes.insert(id, Node { entry, verdict: pending });
        let mut queue = vec![id];
        if let Some(verdict) = verdict {
            self.anchored.insert(id);
            self.set_verdict(id, verdict);
            queue.clear();
        }
        // Whoever waited for this entry to arrive (its successors in quarantine, entries that
        // name it) can move now.
        queue.extend(self.waiting.remove(&id).unwrap_or_default());
        let released: Vec<Hash> =
            self.orphans_by_prev.remove(&id).unwrap_or_default().into_iter().collect();
        self.run(queue);
        self.anchor_if_checkpointed(id);
        (Admission::Accepted(Verdict::Valid), released)
    }

    fn quarantine(&mut self, entry: Entry) -> Admission {
        while self.orphans.len() >= MAX_QUARANTINE {
            let Some(old) = self.orphan_order.pop_front() else { break };
            if let Some(gone) = self.orphans.remove(&old)
                && let Some(list) = self.orphans_by_prev.get_mut(&gone.prev)
            {
                list.remove(&old);
            }
        }
        let id = entry.id();
        self.orphans_by_prev.entry(entry.prev).or_default().insert(id);
        self.orphan_order.push_back(id);
        self.orphans.insert(id, entry);
        Admission::Quarantined
    }

    /// Whether a checkpoint vouches for `entry` without its predecessor: it is the checkpoint's
    /// head, or the predecessor of an entry that took its verdict from the checkpoint. (Chains
    /// held in quarantine when the checkpoint comes are walked by [`Verifier::anchor`].)
    fn anchored_by_checkpoint(&self, entry: &Entry) -> bool {
        let Some(checkpoint) = self.checkpoints.get(&entry.author) else { return false };
        if entry.id() == checkpoint.head {
            return true;
        }
        if entry.seq >= checkpoint.seq {
            return false;
        }
        self.held_at((entry.author, entry.seq + 1)).any(|child| {
            self.anchored.contains(child)
                && self.nodes.get(child).is_some_and(|n| n.entry.prev == entry.id())
        })
    }

    /// The ids held at one position of a log: the first, then any variants.
    fn held_at(&self, at: (NodeId, u64)) -> impl Iterator<Item = &Hash> {
        self.positions.get(&at).into_iter().chain(self.variants.get(&at).into_iter().flatten())
    }

    /// The verdict a checkpoint gives an entry on its chain.
    fn checkpoint_verdict(&self, entry: &Entry) -> Verdict {
        let refused = self
            .checkpoints
            .get(&entry.author)
            .is_some_and(|c| c.refused.binary_search(&entry.seq).is_ok());
        if refused {
            Verdict::Refused { rule: Rule::Chain, detail: "refused, says a checkpoint".into() }
        } else {
            Verdict::Valid
        }
    }

    fn anchor_if_checkpointed(&mut self, id: Hash) {
        let Some(node) = self.nodes.get(&id) else { return };
        if self.checkpoints.get(&node.entry.author).is_some_and(|c| c.head == id) {
            self.anchor(id);
        }
    }

    /// Gives the checkpoint's verdicts to its head and the ancestors held (bringing them out of
    /// quarantine), and its state to the head.
    fn anchor(&mut self, head: Hash) {
        let Some(node) = self
            .nodes
            .get(&head)
            .map(|n| Arc::clone(&n.entry))
            .or_else(|| self.orphans.get(&head).cloned().map(Arc::new))
        else {
            return;
        };
        let Some(checkpoint) = self
            .checkpoints
            .get(&node.author)
            .filter(|c| c.head == head && c.seq == node.seq)
            .cloned()
        else {
            return;
        };
        let mut chain = Vec::new();
        let mut at = Some(head);
        while let Some(id) = at {
            let entry = match (self.nodes.get(&id), self.orphans.remove(&id)) {
                (Some(n), _) => Arc::clone(&n.entry),
                (None, Some(orphan)) => Arc::new(orphan),
                (None, None) => break,
            };
            at = (entry.seq > 0).then_some(entry.prev);
            chain.push(entry);
        }
        let mut woken = Vec::new();
        let mut released = BTreeSet::new();
        for entry in chain {
            let id = entry.id();
            let already =
                self.nodes.get(&id).is_some_and(|n| !matches!(n.verdict, Verdict::Pending { .. }));
            if already {
                continue;
            }
            let verdict = if checkpoint.refused.binary_search(&entry.seq).is_ok() {
                Verdict::Refused { rule: Rule::Chain, detail: "refused, says a checkpoint".into() }
            } else {
                Verdict::Valid
            };
            let at = (entry.author, entry.seq);
            match self.positions.get(&at).copied() {
                None => {
                    self.positions.insert(at, id);
                }
                Some(first) if first == id => {}
                Some(first) => {
                    let more = self.variants.entry(at).or_default();
                    if !more.contains(&id) {
                        more.push(id);
                    }
                    // Another entry already held at a position of the checkpoint's chain.
                    if let Some(kept) = self.nodes.get(&first).map(|n| Arc::clone(&n.entry)) {
                        self.equivocations.push(Equivocation { kept, other: Arc::clone(&entry) });
                        self.frozen.insert(entry.author);
                    }
                }
            }
            self.anchored.insert(id);
            released.extend(self.orphans_by_prev.remove(&id).unwrap_or_default());
            if !self.nodes.contains_key(&id) {
                self.counts.entry(entry.author).or_default().0 += 1;
                let pending = Verdict::Pending { waiting_for: "judgement".into() };
                self.nodes.insert(id, Node { entry, verdict: pending });
            }
            self.set_verdict(id, verdict);
            woken.extend(self.waiting.remove(&id).unwrap_or_default());
        }
        self.states.entry(head).or_insert(checkpoint.state);
        self.note_head(node.author, node.seq, head);
        // The entries waiting in quarantine for any entry of the chain: the head's successors,
        // and other entries at the chain's positions (equivocations).
        for child in released {
            if let Some(entry) = self.orphans.remove(&child) {
                self.admit(entry);
            }
        }
        self.run(woken);
    }

    /// Judges queued entries, and whatever their verdicts unblock.
    fn run(&mut self, mut queue: Vec<Hash>) {
        while let Some(id) = queue.pop() {
            if let Some(verdict) = self.try_judge(id) {
                self.set_verdict(id, verdict);
                queue.extend(self.waiting.remove(&id).unwrap_or_default());
            }
        }
    }

    fn wait(&mut self, id: Hash, on: Hash, what: String) -> Option<Verdict> {
        // Pushed without a search: a list can be long (many entries naming one missing entry),
        // and a duplicate only means one more try once `on` moves.
        self.waiting.entry(on).or_default().push(id);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.verdict = Verdict::Pending { waiting_for: what };
        }
        None
    }

    /// The verdict of a pending entry, when everything it depends on is judged.
    fn try_judge(&mut self, id: Hash) -> Option<Verdict> {
        let node = self.nodes.get(&id)?;
        if !matches!(node.verdict, Verdict::Pending { .. }) {
            return None;
        }
        let entry = Arc::clone(&node.entry);
        if entry.seq > 0 {
            match self.nodes.get(&entry.prev).map(|n| &n.verdict) {
                Some(Verdict::Pending { .. }) | None => {
                    return self.wait(
                        id,
                        entry.prev,
                        format!("entry {} of its log", entry.seq - 1),
                    );
                }
                Some(_) => {}
            }
        }
        if entry.time > self.now.saturating_add(self.skew) {
            self.early.insert(id);
            if let Some(node) = self.nodes.get_mut(&id) {
                node.verdict =
                    Verdict::Pending { waiting_for: format!("the clock to reach {}", entry.time) };
            }
            return None;
        }
        let named = match entry.body.names() {
            None => None,
            Some(named) => match self.nodes.get(&named).map(|n| (&n.verdict, Arc::clone(&n.entry)))
            {
                None | Some((Verdict::Pending { .. }, _)) => {
                    return self.wait(id, named, format!("entry {named}"));
                }
                Some((Verdict::Refused { rule, .. }, _)) => {
                    let detail = format!("the named entry {named} was refused ({})", rule.name());
                    return Some(self.refused(id, &entry, Rule::RefusedSource, detail));
                }
                Some((Verdict::Valid, named)) => Some(named),
            },
        };
        let reserve = match collected_reserve(&entry, named.as_deref()) {
            None => None,
            Some(rid) => match self.nodes.get(&rid).map(|n| Arc::clone(&n.entry)) {
                None => return self.wait(id, rid, format!("reservation {rid}")),
                Some(r) => Some(r),
            },
        };
        let mut state = self.state_before(&entry, id)?;
        let view = view(named.as_deref(), reserve.as_deref());
        let checked = self.countersigned.remove(&id);
        let verdict = match judge(&self.genesis, &entry, &state, &view, checked) {
            Ok(change) => {
                state.apply(entry.time, change);
                Verdict::Valid
            }
            Err((rule, detail)) => {
                state.last_time = state.last_time.max(entry.time);
                Verdict::Refused { rule, detail }
            }
        };
        self.states.insert(id, state);
        self.note_head(entry.author, entry.seq, id);
        Some(verdict)
    }

    fn refused(&mut self, id: Hash, entry: &Entry, rule: Rule, detail: String) -> Verdict {
        self.countersigned.remove(&id);
        if let Some(mut state) = self.state_before(entry, id) {
            state.last_time = state.last_time.max(entry.time);
            self.states.insert(id, state);
        }
        self.note_head(entry.author, entry.seq, id);
        Verdict::Refused { rule, detail }
    }

    /// The state `entry`'s prefix left, to judge `entry` (whose id is `id`) from. Moved out of
    /// `states` when nothing else will need it (no other child of the predecessor waits, and
    /// the predecessor is not a checkpoint's head, whose state later entries replay from);
    /// copied otherwise. Moving is what keeps judging a log linear: a state holds the log's
    /// open and recently collected reservations.
    fn state_before(&mut self, entry: &Entry, id: Hash) -> Option<LogState> {
        if entry.seq == 0 {
            return Some(LogState::default());
        }
        if self.releasable(entry.prev, id)
            && let Some(state) = self.states.remove(&entry.prev)
        {
            return Some(state);
        }
        if !self.frozen.contains(&entry.author) {
            return self.state_at(entry.prev);
        }
        // An author that equivocated can make every position a fork, each needing the state
        // before it again: keep states along the way so each replay is short.
        let mut snapshots = Vec::new();
        let state = self.replay(entry.prev, Some(&mut snapshots));
        for (at, snapshot) in snapshots {
            self.states.entry(at).or_insert(snapshot);
        }
        state
    }

    /// Whether the state after `id` can go once its child `judged` is judged.
    fn releasable(&self, id: Hash, judged: Hash) -> bool {
        let Some(node) = self.nodes.get(&id) else { return false };
        let author = node.entry.author;
        if self.checkpoints.get(&author).is_some_and(|c| c.head == id) {
            return false;
        }
        if node.entry.seq % SNAPSHOT_EVERY == 0 && self.frozen.contains(&author) {
            return false;
        }
        let waiting_sibling = self.held_at((author, node.entry.seq + 1)).any(|c| {
            *c != judged
                && self.nodes.get(c).is_some_and(|n| {
                    n.entry.prev == id && matches!(n.verdict, Verdict::Pending { .. })
                })
        });
        !waiting_sibling
    }

    fn note_head(&mut self, author: NodeId, seq: u64, id: Hash) {
        let slot = self.heads.entry(author).or_insert((seq, id));
        if seq > slot.0 || (seq == slot.0 && id < slot.1) {
            *slot = (seq, id);
        }
    }

    /// The state after the judged entry `id`: kept, or replayed from the nearest entry whose
    /// state is kept (a checkpoint's head, or the start of the log).
    fn state_at(&self, id: Hash) -> Option<LogState> {
        self.replay(id, None)
    }

    /// [`Verifier::state_at`], also handing out the states met on the way at every
    /// [`SNAPSHOT_EVERY`]th position, to be kept.
    fn replay(
        &self,
        id: Hash,
        mut snapshots: Option<&mut Vec<(Hash, LogState)>>,
    ) -> Option<LogState> {
        let mut path = Vec::new();
        let mut at = id;
        let mut state = loop {
            if let Some(state) = self.states.get(&at) {
                break state.clone();
            }
            let node = self.nodes.get(&at)?;
            path.push(Arc::clone(&node.entry));
            if node.entry.seq == 0 {
                break LogState::default();
            }
            at = node.entry.prev;
        };
        for entry in path.iter().rev() {
            state = match self.nodes.get(&entry.id()).map(|n| &n.verdict)? {
                Verdict::Valid => {
                    let named = entry
                        .body
                        .names()
                        .and_then(|n| self.nodes.get(&n))
                        .map(|n| Arc::clone(&n.entry));
                    let reserve = collected_reserve(entry, named.as_deref())
                        .and_then(|r| self.nodes.get(&r))
                        .map(|n| Arc::clone(&n.entry));
                    let view = view(named.as_deref(), reserve.as_deref());
                    let change = judge(&self.genesis, entry, &state, &view, None).ok()?;
                    let mut s = state;
                    s.apply(entry.time, change);
                    s
                }
                Verdict::Refused { .. } => {
                    let mut s = state;
                    s.last_time = s.last_time.max(entry.time);
                    s
                }
                Verdict::Pending { .. } => return None,
            };
            if let Some(out) = snapshots.as_deref_mut()
                && entry.seq % SNAPSHOT_EVERY == 0
                && entry.id() != id
            {
                out.push((entry.id(), state.clone()));
            }
        }
        Some(state)
    }
}

/// The reservation a collect's named decision or receipt is about (a collect needs it too).
fn collected_reserve(entry: &Entry, named: Option<&Entry>) -> Option<Hash> {
    if !matches!(entry.body, Body::Collect(_)) {
        return None;
    }
    match named.map(|n| &n.body) {
        Some(Body::Decide(d)) => Some(d.reserve),
        Some(Body::Receipt(r)) => Some(r.reserve),
        _ => None,
    }
}

/// What the rules see of the entries an entry names: a collect's source and reservation (in
/// one log), or a receive's mint.
fn view<'a>(named: Option<&'a Entry>, reserve: Option<&'a Entry>) -> Named<'a> {
    match (named, reserve) {
        (Some(n), Some(r)) => match &r.body {
            Body::Reserve(body) if r.author == n.author => {
                Named::Source { source: n, reserve_id: r.id(), reserve: body }
            }
            _ => Named::None,
        },
        (Some(n), None) if matches!(n.body, Body::Mint(_)) => Named::Mint(n),
        _ => Named::None,
    }
}

/// The balance a state shows; frozen identities can spend nothing.
pub(crate) fn balance_of(state: &LogState, frozen: bool) -> Balance {
    let spendable = if frozen { 0 } else { state.spendable().max(0) };
    Balance {
        received: state.received,
        earned: state.earned,
        paid: state.paid,
        locked: state.locked,
        spendable: Credits::new(u64::try_from(spendable).unwrap_or(u64::MAX)),
    }
}
