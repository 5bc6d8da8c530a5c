//! Verification: which entries are valid, which are not and why, and the balances that follow.
//!
//! A log is valid up to its first invalid entry; everything after it is ignored (and counted).
//! Credits exist only through mints by a configured authority, and move only from a funded,
//! verified reservation to the acceptor it names. The rules are listed in `docs/ledger-format.md`
//! and named by [`Rule`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ash_identity::{Domain, NodeId, PublicKey, SignedItem, invalid_signatures, verify};
use serde::Serialize;

use crate::credits::Credits;
use crate::entry::{
    Body, Entry, Hash, MintKind, Outcome, Profile, ReleaseReason, Reserve, Settle,
    commitment_bytes, release_bytes,
};

/// What a verifier is told: who may mint, what time it is.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Identities whose mints create credits (the network config's mint authorities).
    pub authorities: BTreeSet<NodeId>,
    /// The verifier's clock (ms since the Unix epoch).
    pub now: u64,
    /// How far an entry's time may be ahead of `now` (ms).
    pub max_clock_skew: u64,
}

impl Rules {
    /// Default allowed clock skew: five minutes.
    pub const DEFAULT_SKEW: u64 = 5 * 60 * 1000;

    /// Rules with these authorities, at `now`, with the default skew.
    pub const fn new(authorities: BTreeSet<NodeId>, now: u64) -> Self {
        Self { authorities, now, max_clock_skew: Self::DEFAULT_SKEW }
    }
}

/// The rule an entry broke. Reported (and serialised) by [`Rule::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The author's key is unusable or its signature does not verify.
    Signature,
    /// A required counter-signature is missing, present where none belongs, or invalid.
    Cosignature,
    /// The acceptor's result commitment does not verify.
    Commitment,
    /// `prev` is not the hash of the previous entry.
    Chain,
    /// A sequence number is missing before this entry.
    Gap,
    /// The time is before the previous entry's.
    Clock,
    /// The time is too far ahead of the verifier's clock.
    FutureTime,
    /// Entry 0 must be a profile.
    FirstNotProfile,
    /// A profile field is out of range (username).
    Profile,
    /// A mint by an identity that is not a mint authority.
    MintNotAuthority,
    /// An authority's log may hold only its profile and mints.
    AuthorityLog,
    /// A mint to an authority.
    MintToAuthority,
    /// A second signup mint for the same identity.
    DuplicateSignupMint,
    /// An amount of zero or over the per-entry maximum.
    Amount,
    /// A mint reason over 200 bytes.
    Reason,
    /// A reservation naming its own author as acceptor.
    SelfDealing,
    /// A deadline not after the reservation's time.
    Deadline,
    /// A reservation larger than the author's available credits.
    InsufficientBalance,
    /// The reservation referred to is not in the requester's valid log.
    UnknownReservation,
    /// The settle or release does not match its reservation (hash, job, parties).
    ReservationMismatch,
    /// The reservation was already settled or released.
    ReservationResolved,
    /// Another settlement of the same reservation takes precedence.
    ConflictingSettlement,
    /// The author is neither the requester nor the acceptor.
    NotAParty,
    /// A settlement larger than the reservation.
    AboveReserved,
    /// A timeout settlement before the reservation's deadline.
    TimeoutBeforeDeadline,
    /// A timeout settlement over half the reservation.
    TimeoutAboveHalf,
    /// An expired release before the reservation's deadline.
    ReleaseBeforeDeadline,
    /// A sum that does not fit in 64 bits.
    Overflow,
}

impl Rule {
    /// The rule's name, as in reports, JSON and docs/ledger-format.md.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::Cosignature => "cosignature",
            Self::Commitment => "commitment",
            Self::Chain => "chain",
            Self::Gap => "gap",
            Self::Clock => "clock",
            Self::FutureTime => "future-time",
            Self::FirstNotProfile => "first-not-profile",
            Self::Profile => "profile",
            Self::MintNotAuthority => "mint-not-authority",
            Self::AuthorityLog => "authority-log",
            Self::MintToAuthority => "mint-to-authority",
            Self::DuplicateSignupMint => "duplicate-signup-mint",
            Self::Amount => "amount",
            Self::Reason => "reason",
            Self::SelfDealing => "self-dealing",
            Self::Deadline => "deadline",
            Self::InsufficientBalance => "insufficient-balance",
            Self::UnknownReservation => "unknown-reservation",
            Self::ReservationMismatch => "reservation-mismatch",
            Self::ReservationResolved => "reservation-resolved",
            Self::ConflictingSettlement => "conflicting-settlement",
            Self::NotAParty => "not-a-party",
            Self::AboveReserved => "above-reserved",
            Self::TimeoutBeforeDeadline => "timeout-before-deadline",
            Self::TimeoutAboveHalf => "timeout-above-half",
            Self::ReleaseBeforeDeadline => "release-before-deadline",
            Self::Overflow => "overflow",
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// An entry that failed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The log.
    pub author: NodeId,
    /// The entry.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
    /// Its kind.
    pub kind: &'static str,
    /// The rule broken.
    pub rule: Rule,
    /// Specifics, for people.
    pub detail: String,
    /// Later entries of the same log that were therefore ignored.
    pub ignored_after: u64,
}

/// Entries that could not be verified yet because a log they depend on is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The log.
    pub author: NodeId,
    /// The first entry waiting.
    pub seq: u64,
    /// How many entries wait (this one and all after it).
    pub count: u64,
    /// What is missing.
    pub waiting_for: String,
}

/// Proof that an identity signed two different entries at one position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// The first entry seen (the one kept in the log).
    pub kept: Entry,
    /// The conflicting entry.
    pub other: Entry,
}

/// Credits of one identity, derived from verified entries only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Credits minted to it.
    pub minted: Credits,
    /// Credits earned from settled jobs.
    pub earned: Credits,
    /// Credits paid for settled jobs.
    pub paid: Credits,
    /// Credits locked in open reservations.
    pub reserved: Credits,
    /// `minted + earned − paid − reserved` (negative only after fraud, see `overdrawn`).
    pub available: i64,
}

/// One identity as verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Who.
    pub id: NodeId,
    /// The latest profile's username, if any entry was verified.
    pub username: Option<String>,
    /// Entries received.
    pub length: u64,
    /// Entries verified (a prefix of the log).
    pub verified: u64,
    /// Hash of the last verified entry.
    pub head: Option<Hash>,
    /// Its credits.
    pub balance: Balance,
    /// Whether it is a mint authority.
    pub authority: bool,
    /// Equivocation was proven: its credits must not be accepted.
    pub frozen: bool,
}

/// The outcome of verifying a set of logs.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every identity seen (as author, recipient or party), by id.
    pub accounts: BTreeMap<NodeId, Account>,
    /// Every entry that broke a rule.
    pub rejected: Vec<Rejection>,
    /// Entries waiting for other logs.
    pub pending: Vec<Pending>,
    /// Proofs of equivocation.
    pub equivocations: Vec<Equivocation>,
}

impl Report {
    /// `true` when no entry was rejected and no equivocation was found.
    pub fn is_clean(&self) -> bool {
        self.rejected.is_empty() && self.equivocations.is_empty()
    }
}

type Key = (NodeId, u64);
/// A settle claiming a reservation: its settlement bytes, author and seq.
type Claim = (Vec<u8>, NodeId, u64);
/// One signature to check: signer, domain, bytes, signature, and the rule broken if invalid.
type Check<'e> = (NodeId, Domain, Cow<'e, [u8]>, &'e ash_identity::Signature, Rule);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    Settled,
    Released,
}

struct Reservation {
    hash: Hash,
    body: Reserve,
    status: Status,
}

#[derive(Default)]
struct Log {
    entries: Vec<Arc<Entry>>,
    /// Index of the next entry to process.
    cursor: usize,
    stop: Option<Stop>,
    username: Option<String>,
    /// Running view of the author's own log, for funding checks.
    own_earned: Credits,
    own_cost: Credits,
    /// Reservations this log already settled or released.
    resolved_here: HashSet<Key>,
    /// A signature problem found in the batch pass, by entry index.
    bad_signature: HashMap<usize, (Rule, String)>,
}

enum Stop {
    Rejected,
    Pending,
}

/// Verifies logs and keeps the state to verify more entries one at a time.
pub struct Verifier {
    rules: Rules,
    logs: BTreeMap<NodeId, Log>,
    keys: HashMap<NodeId, Option<PublicKey>>,
    reservations: HashMap<Key, Reservation>,
    /// The settlement each reservation resolves to, when any settle claims it.
    canonical: HashMap<Key, Claim>,
    minted: HashMap<NodeId, Credits>,
    signup_minted: HashSet<NodeId>,
    earned: HashMap<NodeId, Credits>,
    paid: HashMap<NodeId, Credits>,
    report: Report,
    frozen: HashSet<NodeId>,
}

impl Verifier {
    /// A verifier with nothing in it.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            logs: BTreeMap::new(),
            keys: HashMap::new(),
            reservations: HashMap::new(),
            canonical: HashMap::new(),
            minted: HashMap::new(),
            signup_minted: HashSet::new(),
            earned: HashMap::new(),
            paid: HashMap::new(),
            report: Report::default(),
            frozen: HashSet::new(),
        }
    }

    /// Verifies a whole set of entries (any order, any authors) and returns the report.
    /// Signatures are checked as one batch on all cores.
    pub fn verify_all(rules: Rules, entries: impl IntoIterator<Item = Entry>) -> (Self, Report) {
        let mut verifier = Self::new(rules);
        verifier.load(entries);
        verifier.check_signatures();
        verifier.find_canonical_settlements();
        verifier.process_all();
        let report = verifier.report();
        (verifier, report)
    }

    /// The current report (accounts recomputed from the verified state).
    pub fn report(&self) -> Report {
        let mut report = self.report.clone();
        report.accounts = self.accounts();
        report
    }

    /// Verifies one new entry against everything verified so far and records it if valid.
    /// `Ok(false)` means the entry was already known.
    pub fn append(&mut self, entry: Entry) -> Result<bool, Box<Rejection>> {
        self.append_one(entry).map_err(Box::new)
    }

    #[allow(clippy::result_large_err, reason = "private; boxed once at the public edge")]
    fn append_one(&mut self, entry: Entry) -> Result<bool, Rejection> {
        let author = entry.author;
        let log = self.logs.entry(author).or_default();
        let index = usize::try_from(entry.seq).unwrap_or(usize::MAX);
        if let Some(existing) = log.entries.get(index) {
            if existing.hash() == entry.hash() {
                return Ok(false);
            }
            let existing = Entry::clone(existing);
            return Err(self.equivocation(&existing, &entry));
        }
        if log.stop.is_some() || log.cursor != log.entries.len() {
            let detail = "the log already stopped at an earlier entry".to_owned();
            return Err(rejection(&entry, Rule::Gap, detail, 0));
        }
        if index != log.entries.len() {
            let detail = format!("expected entry {}, got {}", log.entries.len(), entry.seq);
            return Err(rejection(&entry, Rule::Gap, detail, 0));
        }
        let checks: Vec<(NodeId, Domain, Vec<u8>, ash_identity::Signature, Rule)> = self
            .signature_checks(&entry)
            .into_iter()
            .map(|(signer, domain, bytes, signature, rule)| {
                (signer, domain, bytes.into_owned(), *signature, rule)
            })
            .collect();
        for (key, domain, bytes, signature, rule) in &checks {
            let Some(key) = self.key(*key) else {
                return Err(rejection(&entry, *rule, "not a valid Ed25519 key".into(), 0));
            };
            if verify(&key, *domain, bytes, signature).is_err() {
                return Err(rejection(&entry, *rule, signature_detail(*rule), 0));
            }
        }
        let log = self.logs.entry(author).or_default();
        log.entries.push(Arc::new(entry));
        let entry = Arc::clone(&log.entries[index]);
        match self.process(&entry) {
            Ok(()) => {
                if let Some(log) = self.logs.get_mut(&author) {
                    log.cursor += 1;
                }
                // The first valid settle of a reservation seen here is its settlement; a
                // rejected one never claims it.
                if let Body::Settle(settle) = &entry.body {
                    let key = (settle.settlement.requester, settle.settlement.reserve_seq);
                    self.canonical.entry(key).or_insert((
                        settle.settlement.to_bytes(),
                        author,
                        entry.seq,
                    ));
                }
                Ok(true)
            }
            Err((rule, detail)) => {
                if let Some(log) = self.logs.get_mut(&author) {
                    log.entries.pop();
                }
                Err(rejection(&entry, rule, detail, 0))
            }
        }
    }

    fn equivocation(&mut self, kept: &Entry, other: &Entry) -> Rejection {
        let valid = self.key(other.author).is_some_and(|k| {
            verify(&k, Domain::LedgerEntry, other.signed_bytes(), &other.signature).is_ok()
        });
        let detail = if valid {
            self.frozen.insert(other.author);
            self.report
                .equivocations
                .push(Equivocation { kept: kept.clone(), other: other.clone() });
            format!("equivocation: entry {} was already signed as {}", other.seq, kept.hash())
        } else {
            "does not verify (and differs from the entry already known)".into()
        };
        rejection(other, Rule::Signature, detail, 0)
    }

    fn key(&mut self, id: NodeId) -> Option<PublicKey> {
        *self.keys.entry(id).or_insert_with(|| id.public_key().ok())
    }

    fn load(&mut self, entries: impl IntoIterator<Item = Entry>) {
        let mut by_author: BTreeMap<NodeId, BTreeMap<u64, Entry>> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for entry in entries {
            let log = by_author.entry(entry.author).or_default();
            match log.get(&entry.seq) {
                Some(kept) if kept.hash() == entry.hash() => {}
                Some(kept) => conflicts.push((kept.clone(), entry)),
                None => {
                    log.insert(entry.seq, entry);
                }
            }
        }
        // A settle carries its reservation whole: a requester who signed a different entry at
        // that position equivocated, even if its own log is shown without the original.
        let carried: Vec<Entry> = by_author
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|e| match &e.body {
                Body::Settle(settle) => Some(settle.reserve.clone()),
                _ => None,
            })
            .collect();
        for reserve in carried {
            if let Some(kept) = by_author.get(&reserve.author).and_then(|log| log.get(&reserve.seq))
                && kept.hash() != reserve.hash()
                && !conflicts.iter().any(|(_, o): &(Entry, Entry)| o.hash() == reserve.hash())
            {
                conflicts.push((kept.clone(), reserve));
            }
        }
        for (author, entries) in by_author {
            let mut log = Log::default();
            for (expected, (seq, entry)) in (0u64..).zip(entries) {
                if seq != expected {
                    self.report.pending.push(Pending {
                        author,
                        seq: expected,
                        count: 0,
                        waiting_for: format!(
                            "entry {expected} of {} (have {seq} next)",
                            author.short()
                        ),
                    });
                    break;
                }
                log.entries.push(Arc::new(entry));
            }
            self.logs.insert(author, log);
        }
        for (kept, other) in conflicts {
            let rejection = self.equivocation(&kept, &other);
            if self.report.equivocations.last().is_none_or(|e| e.other.hash() != rejection.hash) {
                self.report.rejected.push(rejection);
            }
        }
    }

    /// Batch-checks every signature, counter-signature, commitment and embedded reservation.
    fn check_signatures(&mut self) {
        let mut signers = BTreeSet::new();
        for entry in self.logs.values().flat_map(|log| &log.entries) {
            signers.insert(entry.author);
            if let Body::Settle(settle) = &entry.body {
                signers.extend([
                    settle.settlement.requester,
                    settle.settlement.acceptor,
                    settle.reserve.author,
                ]);
            }
            if let Body::Release(_) = &entry.body {
                signers.extend(self.release_acceptor(entry));
            }
        }
        for signer in signers {
            self.key(signer);
        }
        let this: &Self = self;
        let mut failed = Vec::new();
        let mut items = Vec::new();
        let mut owners: Vec<(NodeId, usize, Rule)> = Vec::new();
        let mut checks: Vec<(NodeId, usize, Check<'_>)> = Vec::new();
        for (author, log) in &this.logs {
            for (index, entry) in log.entries.iter().enumerate() {
                checks.extend(
                    this.signature_checks(entry).into_iter().map(|check| (*author, index, check)),
                );
            }
        }
        for (author, index, (signer, domain, bytes, signature, rule)) in &checks {
            match this.keys.get(signer) {
                Some(Some(key)) => {
                    items.push(SignedItem { key, domain: *domain, bytes, signature });
                    owners.push((*author, *index, *rule));
                }
                _ => failed.push((*author, *index, *rule, "not a valid Ed25519 key".to_owned())),
            }
        }
        for bad in invalid_signatures(&items) {
            let (author, index, rule) = owners[bad];
            failed.push((author, index, rule, signature_detail(rule)));
        }
        drop(items);
        drop(checks);
        for (author, index, rule, detail) in failed {
            if let Some(log) = self.logs.get_mut(&author) {
                log.bad_signature.entry(index).or_insert((rule, detail));
            }
        }
    }

    /// The acceptor of the reservation a release refers to, when it is in the same log.
    fn release_acceptor(&self, entry: &Entry) -> Option<NodeId> {
        let Body::Release(release) = &entry.body else { return None };
        let log = self.logs.get(&entry.author)?;
        match &log.entries.get(usize::try_from(release.reserve_seq).ok()?)?.body {
            Body::Reserve(r) => Some(r.acceptor),
            _ => None,
        }
    }

    /// Every signature an entry needs: (signer, domain, bytes, signature, rule if invalid).
    fn signature_checks<'e>(&self, entry: &'e Entry) -> Vec<Check<'e>> {
        let mut out = vec![(
            entry.author,
            Domain::LedgerEntry,
            Cow::Borrowed(entry.signed_bytes()),
            &entry.signature,
            Rule::Signature,
        )];
        match &entry.body {
            Body::Settle(settle) => {
                let s = &settle.settlement;
                if let Some(commitment) = &settle.commitment {
                    out.push((
                        s.acceptor,
                        Domain::LedgerResult,
                        Cow::Owned(commitment_bytes(s)),
                        commitment,
                        Rule::Commitment,
                    ));
                }
                // The carried reservation needs its own check only when the requester's log
                // does not hold the very same entry (whose signature is checked there).
                let r = &settle.reserve;
                let known = self
                    .logs
                    .get(&r.author)
                    .and_then(|log| log.entries.get(usize::try_from(r.seq).ok()?))
                    .is_some_and(|e| e.hash() == r.hash());
                if !known {
                    out.push((
                        r.author,
                        Domain::LedgerEntry,
                        Cow::Borrowed(r.signed_bytes()),
                        &r.signature,
                        Rule::Signature,
                    ));
                }
                if let Some(cosig) = &entry.cosignature {
                    let other = if entry.author == s.requester { s.acceptor } else { s.requester };
                    out.push((
                        other,
                        Domain::LedgerSettlement,
                        Cow::Owned(s.to_bytes()),
                        cosig,
                        Rule::Cosignature,
                    ));
                }
            }
            Body::Release(release) => {
                if let (Some(cosig), Some(acceptor)) =
                    (&entry.cosignature, self.release_acceptor(entry))
                {
                    out.push((
                        acceptor,
                        Domain::LedgerRelease,
                        Cow::Owned(release_bytes(entry.author, release)),
                        cosig,
                        Rule::Cosignature,
                    ));
                }
            }
            _ => {}
        }
        out
    }

    /// For each reservation claimed by settles: the requester's own copy if it is statically
    /// valid, else the acceptor's. Independent of processing order.
    fn find_canonical_settlements(&mut self) {
        let mut candidates: HashMap<Key, [Option<Claim>; 2]> = HashMap::new();
        for (author, log) in &self.logs {
            for (index, entry) in log.entries.iter().enumerate() {
                let Body::Settle(settle) = &entry.body else { continue };
                if log.bad_signature.contains_key(&index)
                    || self.static_settle_check(entry, settle).is_err()
                {
                    continue;
                }
                let s = &settle.settlement;
                let slot = usize::from(*author != s.requester);
                let pair = candidates.entry((s.requester, s.reserve_seq)).or_default();
                if pair[slot].is_none() {
                    pair[slot] = Some((s.to_bytes(), *author, entry.seq));
                }
            }
        }
        for (key, [requester, acceptor]) in candidates {
            if let Some(chosen) = requester.or(acceptor) {
                self.canonical.insert(key, chosen);
            }
        }
    }

    /// Checks a settle against the reservation it carries, without any other log.
    fn static_settle_check(&self, entry: &Entry, settle: &Settle) -> Result<(), (Rule, String)> {
        let s = &settle.settlement;
        let r = &settle.reserve;
        let Body::Reserve(reserve) = &r.body else {
            return Err((
                Rule::ReservationMismatch,
                format!("carries a {} entry, not a reserve", r.body.kind()),
            ));
        };
        if r.author != s.requester || r.seq != s.reserve_seq || r.hash() != s.reserve_hash {
            return Err((
                Rule::ReservationMismatch,
                "the carried reservation is not the one named".into(),
            ));
        }
        if reserve.job != s.job || reserve.acceptor != s.acceptor {
            return Err((
                Rule::ReservationMismatch,
                "job or acceptor differs from the reservation".into(),
            ));
        }
        if entry.author != s.requester && entry.author != s.acceptor {
            return Err((Rule::NotAParty, "the author is neither requester nor acceptor".into()));
        }
        if s.amount > reserve.amount {
            return Err((
                Rule::AboveReserved,
                format!("settles {} of a {} reservation", s.amount, reserve.amount),
            ));
        }
        match s.outcome {
            Outcome::Timeout => {
                if entry.author != s.acceptor {
                    return Err((Rule::NotAParty, "only the acceptor settles a timeout".into()));
                }
                if entry.cosignature.is_some() {
                    return Err((
                        Rule::Cosignature,
                        "a timeout settlement carries no counter-signature".into(),
                    ));
                }
                if entry.time < reserve.deadline {
                    return Err((
                        Rule::TimeoutBeforeDeadline,
                        format!("at {} before the deadline {}", entry.time, reserve.deadline),
                    ));
                }
                if s.amount > reserve.amount.half() {
                    return Err((
                        Rule::TimeoutAboveHalf,
                        format!(
                            "claims {} of a {} reservation (at most {})",
                            s.amount,
                            reserve.amount,
                            reserve.amount.half()
                        ),
                    ));
                }
            }
            Outcome::Accept | Outcome::Reject => {
                if entry.cosignature.is_none() {
                    return Err((
                        Rule::Cosignature,
                        "an accept or reject needs both parties' signatures".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn process_all(&mut self) {
        let authors: Vec<NodeId> = self.logs.keys().copied().collect();
        let (authorities, others): (Vec<NodeId>, Vec<NodeId>) =
            authors.into_iter().partition(|a| self.rules.authorities.contains(a));
        for author in authorities {
            self.run(author);
        }
        let mut queue: Vec<NodeId> = others.into_iter().rev().collect();
        let mut waiters: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        while let Some(author) = queue.pop() {
            match self.run(author) {
                Run::Done => {
                    queue.extend(waiters.remove(&author).unwrap_or_default());
                }
                Run::Blocked(on) => {
                    queue.extend(waiters.remove(&author).unwrap_or_default());
                    waiters.entry(on).or_default().push(author);
                }
            }
        }
        // Anything still waiting is part of a cycle, which hashes make impossible for honest
        // logs; leave it pending.
        for author in waiters.into_values().flatten() {
            self.stop_pending(author, "a circular reference between logs".into());
        }
    }

    /// Processes `author`'s log as far as it can go.
    fn run(&mut self, author: NodeId) -> Run {
        loop {
            let Some(log) = self.logs.get(&author) else { return Run::Done };
            if log.stop.is_some() || log.cursor >= log.entries.len() {
                return Run::Done;
            }
            let index = log.cursor;
            let entry = Arc::clone(&log.entries[index]);
            if let Some((rule, detail)) = log.bad_signature.get(&index).cloned() {
                self.stop_rejected(author, &entry, rule, detail);
                return Run::Done;
            }
            // A settle by the acceptor depends on the requester's log reaching the reservation.
            if let Body::Settle(settle) = &entry.body {
                let requester = settle.settlement.requester;
                if requester != author {
                    match self.dependency(requester, settle.settlement.reserve_seq) {
                        Dependency::Ready => {}
                        Dependency::Wait => return Run::Blocked(requester),
                        Dependency::Missing(why) => {
                            self.stop_pending(author, why);
                            return Run::Done;
                        }
                    }
                }
            }
            match self.process(&entry) {
                Ok(()) => {
                    if let Some(log) = self.logs.get_mut(&author) {
                        log.cursor += 1;
                    }
                }
                Err((rule, detail)) => {
                    self.stop_rejected(author, &entry, rule, detail);
                    return Run::Done;
                }
            }
        }
    }

    fn dependency(&self, requester: NodeId, seq: u64) -> Dependency {
        let Some(log) = self.logs.get(&requester) else {
            return Dependency::Missing(format!("the log of requester {}", requester.short()));
        };
        let needed = usize::try_from(seq).unwrap_or(usize::MAX);
        if log.cursor > needed {
            return Dependency::Ready;
        }
        match log.stop {
            // The verdict on the settle comes from `process`: the reservation is not valid.
            Some(Stop::Rejected) => Dependency::Ready,
            Some(Stop::Pending) => Dependency::Missing(format!(
                "entry {seq} of requester {}, which waits itself",
                requester.short()
            )),
            None if needed >= log.entries.len() => Dependency::Missing(format!(
                "entry {seq} of requester {} (have {})",
                requester.short(),
                log.entries.len()
            )),
            None => Dependency::Wait,
        }
    }

    fn stop_rejected(&mut self, author: NodeId, entry: &Entry, rule: Rule, detail: String) {
        let Some(log) = self.logs.get_mut(&author) else { return };
        let ignored = (log.entries.len() - log.cursor - 1) as u64;
        log.stop = Some(Stop::Rejected);
        self.report.rejected.push(rejection(entry, rule, detail, ignored));
    }

    fn stop_pending(&mut self, author: NodeId, waiting_for: String) {
        let Some(log) = self.logs.get_mut(&author) else { return };
        log.stop = Some(Stop::Pending);
        self.report.pending.push(Pending {
            author,
            seq: log.cursor as u64,
            count: (log.entries.len() - log.cursor) as u64,
            waiting_for,
        });
    }

    /// Applies the credit rules to the next entry of its log. Signatures are already checked.
    fn process(&mut self, entry: &Entry) -> Result<(), (Rule, String)> {
        let author = entry.author;
        let authority = self.rules.authorities.contains(&author);
        let (index, prev) = {
            let log = self.logs.get(&author).ok_or((Rule::Gap, "unknown log".to_owned()))?;
            let index = log.cursor;
            (
                index,
                index.checked_sub(1).and_then(|i| log.entries.get(i)).map(|e| (e.hash(), e.time)),
            )
        };
        let expected_prev = prev.map_or(Hash([0; 32]), |(hash, _)| hash);
        if entry.prev != expected_prev {
            return Err((
                Rule::Chain,
                format!("prev is {}, the previous entry's hash is {expected_prev}", entry.prev),
            ));
        }
        if let Some((_, prev_time)) = prev
            && entry.time < prev_time
        {
            return Err((
                Rule::Clock,
                format!("time {} is before the previous entry's {prev_time}", entry.time),
            ));
        }
        let latest = self.rules.now.saturating_add(self.rules.max_clock_skew);
        if entry.time > latest {
            return Err((Rule::FutureTime, format!("time {} is after {latest}", entry.time)));
        }
        if index == 0 && !matches!(entry.body, Body::Profile(_)) {
            return Err((Rule::FirstNotProfile, format!("entry 0 is a {}", entry.body.kind())));
        }
        if authority && !matches!(entry.body, Body::Profile(_) | Body::Mint(_)) {
            return Err((
                Rule::AuthorityLog,
                format!("a {} in a mint authority's log", entry.body.kind()),
            ));
        }
        if !matches!(entry.body, Body::Settle(_) | Body::Release(_)) && entry.cosignature.is_some()
        {
            return Err((
                Rule::Cosignature,
                format!("a {} carries no counter-signature", entry.body.kind()),
            ));
        }
        match &entry.body {
            Body::Profile(profile) => {
                let name = &profile.username;
                if !Profile::valid_username(name) {
                    return Err((
                        Rule::Profile,
                        format!("username {name:?} is not 3–32 of a-z 0-9 _ -"),
                    ));
                }
                if let Some(log) = self.logs.get_mut(&author) {
                    log.username = Some(name.clone());
                }
            }
            Body::Mint(mint) => {
                if !authority {
                    return Err((
                        Rule::MintNotAuthority,
                        format!("{} is not a mint authority", author.short()),
                    ));
                }
                check_amount(mint.amount)?;
                if mint.reason.len() > 200 {
                    return Err((
                        Rule::Reason,
                        format!("reason of {} bytes (at most 200)", mint.reason.len()),
                    ));
                }
                if self.rules.authorities.contains(&mint.recipient) {
                    return Err((Rule::MintToAuthority, "authorities hold no credits".into()));
                }
                if mint.kind == MintKind::Signup && self.signup_minted.contains(&mint.recipient) {
                    return Err((
                        Rule::DuplicateSignupMint,
                        format!("{} already received its signup mint", mint.recipient.short()),
                    ));
                }
                add(&mut self.minted, mint.recipient, mint.amount)?;
                if mint.kind == MintKind::Signup {
                    self.signup_minted.insert(mint.recipient);
                }
            }
            Body::Reserve(reserve) => {
                check_amount(reserve.amount)?;
                if reserve.acceptor == author {
                    return Err((Rule::SelfDealing, "the acceptor is the requester".into()));
                }
                if reserve.deadline <= entry.time {
                    return Err((
                        Rule::Deadline,
                        format!("deadline {} is not after {}", reserve.deadline, entry.time),
                    ));
                }
                let minted = self.minted.get(&author).copied().unwrap_or_default();
                let log =
                    self.logs.get_mut(&author).ok_or((Rule::Gap, "unknown log".to_owned()))?;
                let has = i128::from(minted.get()) + i128::from(log.own_earned.get())
                    - i128::from(log.own_cost.get());
                if i128::from(reserve.amount.get()) > has {
                    return Err((
                        Rule::InsufficientBalance,
                        format!("reserves {} with {has} cr available", reserve.amount),
                    ));
                }
                log.own_cost = log.own_cost.checked_add(reserve.amount).ok_or(overflow())?;
                self.reservations.insert(
                    (author, entry.seq),
                    Reservation { hash: entry.hash(), body: reserve.clone(), status: Status::Open },
                );
            }
            Body::Settle(settle) => self.settle(entry, settle)?,
            Body::Release(release) => {
                let key = (author, release.reserve_seq);
                let reservation =
                    self.reservations.get(&key).filter(|r| r.hash == release.reserve_hash).ok_or(
                        (
                            Rule::UnknownReservation,
                            format!("no reservation {} in this log", release.reserve_seq),
                        ),
                    )?;
                if reservation.body.job != release.job {
                    return Err((
                        Rule::ReservationMismatch,
                        "the job differs from the reservation".into(),
                    ));
                }
                if let Some((_, by, seq)) = self.canonical.get(&key) {
                    return Err((
                        Rule::ReservationResolved,
                        format!(
                            "reservation {} is settled by {} at entry {seq}",
                            release.reserve_seq,
                            by.short()
                        ),
                    ));
                }
                if reservation.status != Status::Open {
                    return Err((
                        Rule::ReservationResolved,
                        format!("reservation {} already ended", release.reserve_seq),
                    ));
                }
                match release.reason {
                    ReleaseReason::Expired => {
                        if entry.cosignature.is_some() {
                            return Err((
                                Rule::Cosignature,
                                "an expiry carries no counter-signature".into(),
                            ));
                        }
                        if entry.time < reservation.body.deadline {
                            return Err((
                                Rule::ReleaseBeforeDeadline,
                                format!(
                                    "at {} before the deadline {}",
                                    entry.time, reservation.body.deadline
                                ),
                            ));
                        }
                    }
                    ReleaseReason::Cancelled if entry.cosignature.is_none() => {
                        return Err((
                            Rule::Cosignature,
                            "a cancellation needs the acceptor's signature".into(),
                        ));
                    }
                    ReleaseReason::Cancelled => {}
                }
                let amount = reservation.body.amount;
                if let Some(r) = self.reservations.get_mut(&key) {
                    r.status = Status::Released;
                }
                let log =
                    self.logs.get_mut(&author).ok_or((Rule::Gap, "unknown log".to_owned()))?;
                log.own_cost = log.own_cost.checked_sub(amount).ok_or(overflow())?;
                log.resolved_here.insert(key);
            }
        }
        Ok(())
    }

    fn settle(&mut self, entry: &Entry, settle: &Settle) -> Result<(), (Rule, String)> {
        self.static_settle_check(entry, settle)?;
        let s = &settle.settlement;
        let key = (s.requester, s.reserve_seq);
        let reservation =
            self.reservations.get(&key).filter(|r| r.hash == s.reserve_hash).ok_or_else(|| {
                (
                    Rule::UnknownReservation,
                    format!(
                        "reservation {} of {} is not in its valid log",
                        s.reserve_seq,
                        s.requester.short()
                    ),
                )
            })?;
        let bytes = s.to_bytes();
        match self.canonical.get(&key) {
            Some((canonical, ..)) if *canonical == bytes => {}
            Some((_, by, seq)) => {
                return Err((
                    Rule::ConflictingSettlement,
                    format!(
                        "the reservation is settled differently by {} at entry {seq}",
                        by.short()
                    ),
                ));
            }
            None => {}
        }
        let log = self.logs.get(&entry.author).ok_or((Rule::Gap, "unknown log".to_owned()))?;
        if log.resolved_here.contains(&key) {
            return Err((
                Rule::ReservationResolved,
                format!("reservation {} was already settled in this log", s.reserve_seq),
            ));
        }
        let reserved = reservation.body.amount;
        match reservation.status {
            Status::Released => {
                return Err((
                    Rule::ReservationResolved,
                    format!("reservation {} was released", s.reserve_seq),
                ));
            }
            Status::Open => {
                add(&mut self.paid, s.requester, s.amount)?;
                add(&mut self.earned, s.acceptor, s.amount)?;
                if let Some(r) = self.reservations.get_mut(&key) {
                    r.status = Status::Settled;
                }
            }
            Status::Settled => {}
        }
        let log = self.logs.get_mut(&entry.author).ok_or((Rule::Gap, "unknown log".to_owned()))?;
        log.resolved_here.insert(key);
        if entry.author == s.acceptor {
            log.own_earned = log.own_earned.checked_add(s.amount).ok_or(overflow())?;
        } else {
            let refund = reserved.checked_sub(s.amount).ok_or(overflow())?;
            log.own_cost = log.own_cost.checked_sub(refund).ok_or(overflow())?;
        }
        Ok(())
    }

    fn accounts(&self) -> BTreeMap<NodeId, Account> {
        let mut ids: BTreeSet<NodeId> = self.logs.keys().copied().collect();
        ids.extend(self.minted.keys().copied());
        ids.extend(self.earned.keys().copied());
        let mut open: HashMap<NodeId, Credits> = HashMap::new();
        for ((requester, _), r) in &self.reservations {
            if r.status == Status::Open {
                let slot = open.entry(*requester).or_default();
                *slot = slot.checked_add(r.body.amount).unwrap_or(*slot);
            }
        }
        ids.into_iter()
            .map(|id| {
                let get =
                    |map: &HashMap<NodeId, Credits>| map.get(&id).copied().unwrap_or_default();
                let (minted, earned, paid, reserved) =
                    (get(&self.minted), get(&self.earned), get(&self.paid), get(&open));
                let available = i128::from(minted.get()) + i128::from(earned.get())
                    - i128::from(paid.get())
                    - i128::from(reserved.get());
                let log = self.logs.get(&id);
                let verified = log.map_or(0, |l| l.cursor);
                let account = Account {
                    id,
                    username: log.and_then(|l| l.username.clone()),
                    length: log.map_or(0, |l| l.entries.len() as u64),
                    verified: verified as u64,
                    head: verified
                        .checked_sub(1)
                        .and_then(|i| log?.entries.get(i))
                        .map(|e| e.hash()),
                    balance: Balance {
                        minted,
                        earned,
                        paid,
                        reserved,
                        available: i64::try_from(available).unwrap_or(i64::MIN),
                    },
                    authority: self.rules.authorities.contains(&id),
                    frozen: self.frozen.contains(&id),
                };
                (id, account)
            })
            .collect()
    }

    /// The verified entries of one log, oldest first.
    pub fn verified_entries(&self, author: NodeId) -> &[Arc<Entry>] {
        self.logs.get(&author).map_or(&[], |log| &log.entries[..log.cursor])
    }
}

enum Run {
    Done,
    Blocked(NodeId),
}

enum Dependency {
    Ready,
    Wait,
    Missing(String),
}

fn rejection(entry: &Entry, rule: Rule, detail: String, ignored_after: u64) -> Rejection {
    Rejection {
        author: entry.author,
        seq: entry.seq,
        hash: entry.hash(),
        kind: entry.body.kind(),
        rule,
        detail,
        ignored_after,
    }
}

fn signature_detail(rule: Rule) -> String {
    match rule {
        Rule::Commitment => "the acceptor's result commitment does not verify",
        Rule::Cosignature => "the counter-signature does not verify",
        _ => "the signature does not verify",
    }
    .into()
}

fn check_amount(amount: Credits) -> Result<(), (Rule, String)> {
    if amount == Credits::ZERO || amount > Credits::MAX_ENTRY {
        return Err((
            Rule::Amount,
            format!("{amount} is not between 1 and {}", Credits::MAX_ENTRY),
        ));
    }
    Ok(())
}

fn add(
    map: &mut HashMap<NodeId, Credits>,
    id: NodeId,
    amount: Credits,
) -> Result<(), (Rule, String)> {
    let slot = map.entry(id).or_default();
    *slot = slot.checked_add(amount).ok_or(overflow())?;
    Ok(())
}

fn overflow() -> (Rule, String) {
    (Rule::Overflow, "a sum does not fit in 64 bits".into())
}
