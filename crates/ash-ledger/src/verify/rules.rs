//! The credit rules: one entry judged against the state its log's prefix left, and the state
//! it leaves. Pure: the same entry, state and named entries always give the same answer.

use std::collections::{BTreeMap, BTreeSet};

use ash_identity::{NodeId, SealingPublicKey, verify};
use serde::Serialize;

use crate::credits::Credits;
use crate::entry::{
    Body, Entry, Hash, JobId, MintKind, Profile, ReleaseReason, Reserve, countersigned,
};
use crate::genesis::Genesis;

/// The rule an entry broke. Reported (and serialised) by [`Rule::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// The entry belongs to another network.
    Network,
    /// The author's key is unusable or its signature does not verify.
    Signature,
    /// `prev` names an entry that is not the author's previous one.
    Chain,
    /// The time is before the latest time earlier in the log.
    Clock,
    /// Entry 0 must be a profile.
    FirstNotProfile,
    /// A profile field is out of range (username).
    Profile,
    /// A mint by an identity that is not a mint authority.
    MintNotAuthority,
    /// An authority's log may hold only its profiles and mints.
    AuthorityLog,
    /// A mint to an authority.
    MintToAuthority,
    /// An amount of zero or over the per-entry maximum.
    Amount,
    /// A mint reason over 200 bytes.
    Reason,
    /// A named entry was refused, so what depends on it is too.
    RefusedSource,
    /// A receive names something that is not a mint.
    NotAMint,
    /// A receive of a mint made out to someone else.
    NotRecipient,
    /// A mint this log already received.
    AlreadyReceived,
    /// A second signup mint received.
    DuplicateSignup,
    /// A reservation naming its own author as acceptor.
    SelfDealing,
    /// A deadline not after the reservation's time.
    Deadline,
    /// A reservation larger than the author's spendable credits.
    InsufficientBalance,
    /// The reservation named is not open in this log.
    UnknownReservation,
    /// A second receipt, or a release after the result was delivered.
    AlreadyDelivered,
    /// The acceptor's result commitment does not verify.
    Commitment,
    /// A decision without a receipt.
    NoReceipt,
    /// An expired release before the reservation's deadline.
    ReleaseBeforeDeadline,
    /// A cancellation whose acceptor signature does not verify.
    Cosignature,
    /// A collect names something that is neither a decision nor a receipt.
    NotCollectable,
    /// A collect by someone other than the reservation's acceptor.
    NotAParty,
    /// A timeout collect before the reservation's deadline.
    TimeoutBeforeDeadline,
    /// A collect after the claim window closed.
    ClaimWindow,
    /// A collect of no more than this log already collected for the reservation.
    NothingToCollect,
    /// A sum that does not fit in 64 bits.
    Overflow,
}

impl Rule {
    /// The rule's name, as in reports, JSON and docs/ledger-format.md.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Signature => "signature",
            Self::Chain => "chain",
            Self::Clock => "clock",
            Self::FirstNotProfile => "first-not-profile",
            Self::Profile => "profile",
            Self::MintNotAuthority => "mint-not-authority",
            Self::AuthorityLog => "authority-log",
            Self::MintToAuthority => "mint-to-authority",
            Self::Amount => "amount",
            Self::Reason => "reason",
            Self::RefusedSource => "refused-source",
            Self::NotAMint => "not-a-mint",
            Self::NotRecipient => "not-recipient",
            Self::AlreadyReceived => "already-received",
            Self::DuplicateSignup => "duplicate-signup",
            Self::SelfDealing => "self-dealing",
            Self::Deadline => "deadline",
            Self::InsufficientBalance => "insufficient-balance",
            Self::UnknownReservation => "unknown-reservation",
            Self::AlreadyDelivered => "already-delivered",
            Self::Commitment => "commitment",
            Self::NoReceipt => "no-receipt",
            Self::ReleaseBeforeDeadline => "release-before-deadline",
            Self::Cosignature => "cosignature",
            Self::NotCollectable => "not-collectable",
            Self::NotAParty => "not-a-party",
            Self::TimeoutBeforeDeadline => "timeout-before-deadline",
            Self::ClaimWindow => "claim-window",
            Self::NothingToCollect => "nothing-to-collect",
            Self::Overflow => "overflow",
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A broken rule and the specifics, for people.
pub(crate) type Broken = (Rule, String);

/// An open reservation in a requester's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Open {
    pub(crate) job: JobId,
    pub(crate) acceptor: NodeId,
    pub(crate) amount: Credits,
    pub(crate) deadline: u64,
    /// The receipt's id and the result's hash, once delivered.
    pub(crate) delivered: Option<(Hash, Hash)>,
}

/// What an acceptor's log collected for one reservation, kept while more could be owed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Collected {
    pub(crate) amount: Credits,
    /// The end of the claim window: after it nothing more can be collected.
    pub(crate) until: u64,
}

/// The state a log's prefix leaves: everything the rules need to judge its next entry, and
/// the identity's balance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogState {
    pub(crate) received: Credits,
    pub(crate) earned: Credits,
    pub(crate) paid: Credits,
    pub(crate) locked: Credits,
    /// The latest time in the prefix (valid or refused entries alike).
    pub(crate) last_time: u64,
    pub(crate) signup: bool,
    /// The latest valid profile: username and sealing key.
    pub(crate) profile: Option<(String, SealingPublicKey)>,
    /// The mints received (their ids): any order, each once.
    pub(crate) mints: BTreeSet<Hash>,
    /// Open reservations by reserve id.
    pub(crate) open: BTreeMap<Hash, Open>,
    /// Reservations collected for (as acceptor) whose claim window is still open.
    pub(crate) collected: BTreeMap<Hash, Collected>,
    /// `collected` by the end of its window, to forget closed windows without a scan.
    pub(crate) expiry: BTreeSet<(u64, Hash)>,
}

impl LogState {
    /// `received + earned − paid − locked`: what a reservation may use now.
    pub(crate) fn spendable(&self) -> i128 {
        i128::from(self.received.get()) + i128::from(self.earned.get())
            - i128::from(self.paid.get())
            - i128::from(self.locked.get())
    }
}

/// The entry another log's entry names, already valid, as the rules need it.
pub(crate) enum Named<'a> {
    /// Nothing named.
    None,
    /// A receive's mint.
    Mint(&'a Entry),
    /// A collect's source (a decide or a receipt) and the reservation it is about.
    Source { source: &'a Entry, reserve_id: Hash, reserve: &'a Reserve },
}

/// What a valid entry changes in its log's state (beyond the latest time), computed by
/// [`judge`] and made by [`LogState::apply`]: judging reads the state, applying owns it, so a
/// state is never copied to judge the next entry.
#[derive(Debug)]
pub(crate) enum Change {
    /// Nothing but the time (an authority's mint).
    Nothing,
    Profile(String, SealingPublicKey),
    Receive {
        received: Credits,
        signup: bool,
        mint: Hash,
    },
    Reserve {
        id: Hash,
        locked: Credits,
        open: Open,
    },
    Deliver {
        reserve: Hash,
        receipt: Hash,
        result: Hash,
    },
    /// A decision (`paid` set) or a release (`paid` unchanged) closes the reservation.
    Close {
        reserve: Hash,
        paid: Credits,
        locked: Credits,
    },
    Collect {
        reserve: Hash,
        earned: Credits,
        collected: Collected,
    },
}

impl LogState {
    /// Makes a valid entry's change at `time`, and forgets collected reservations whose claim
    /// window closed before it.
    pub(crate) fn apply(&mut self, time: u64, change: Change) {
        self.last_time = self.last_time.max(time);
        match change {
            Change::Nothing => {}
            Change::Profile(name, key) => self.profile = Some((name, key)),
            Change::Receive { received, signup, mint } => {
                self.received = received;
                self.signup |= signup;
                self.mints.insert(mint);
            }
            Change::Reserve { id, locked, open } => {
                self.locked = locked;
                self.open.insert(id, open);
            }
            Change::Deliver { reserve, receipt, result } => {
                if let Some(slot) = self.open.get_mut(&reserve) {
                    slot.delivered = Some((receipt, result));
                }
            }
            Change::Close { reserve, paid, locked } => {
                self.paid = paid;
                self.locked = locked;
                self.open.remove(&reserve);
            }
            Change::Collect { reserve, earned, collected } => {
                self.earned = earned;
                if let Some(old) = self.collected.insert(reserve, collected) {
                    self.expiry.remove(&(old.until, reserve));
                }
                self.expiry.insert((collected.until, reserve));
            }
        }
        let now = self.last_time;
        while let Some(&(until, id)) = self.expiry.first() {
            if until >= now {
                break;
            }
            self.expiry.pop_first();
            self.collected.remove(&id);
        }
    }

    /// Rebuilds the expiry index of `collected` (after decoding a checkpoint's state).
    pub(crate) fn index_expiry(&mut self) {
        self.expiry = self.collected.iter().map(|(id, c)| (c.until, *id)).collect();
    }
}

/// Judges `entry` (whose signature and place in its log are checked) against `state`, the state
/// its prefix left. Returns what it changes when valid. `countersigned` says that the entry's
/// counter-signature was already checked against this acceptor.
pub(crate) fn judge(
    genesis: &Genesis,
    entry: &Entry,
    state: &LogState,
    named: &Named<'_>,
    countersigned: Option<NodeId>,
) -> Result<Change, Broken> {
    let author = entry.author;
    if entry.seq > 0 && entry.time < state.last_time {
        return Err((
            Rule::Clock,
            format!("time {} is before {} earlier in the log", entry.time, state.last_time),
        ));
    }
    if entry.seq == 0 && !matches!(entry.body, Body::Profile(_)) {
        return Err((Rule::FirstNotProfile, format!("entry 0 is a {}", entry.body.kind())));
    }
    let authority = genesis.is_authority(&author);
    match (&entry.body, authority) {
        (Body::Mint(_), false) => {
            return Err((
                Rule::MintNotAuthority,
                format!("{} is not a mint authority", author.short()),
            ));
        }
        (Body::Profile(_) | Body::Mint(_), _) | (_, false) => {}
        (body, true) => {
            return Err((
                Rule::AuthorityLog,
                format!("a {} in a mint authority's log", body.kind()),
            ));
        }
    }
    let change = match &entry.body {
        Body::Profile(profile) => {
            let name = &profile.username;
            if !Profile::valid_username(name) {
                return Err((
                    Rule::Profile,
                    format!("username {name:?} is not 3–32 of a-z 0-9 _ -"),
                ));
            }
            Change::Profile(name.clone(), profile.sealing_key)
        }
        Body::Mint(mint) => {
            check_amount(mint.amount)?;
            if mint.reason.len() > 200 {
                return Err((
                    Rule::Reason,
                    format!("reason of {} bytes (at most 200)", mint.reason.len()),
                ));
            }
            if genesis.is_authority(&mint.recipient) {
                return Err((Rule::MintToAuthority, "authorities hold no credits".into()));
            }
            Change::Nothing
        }
        Body::Receive(_) => {
            let Named::Mint(mint_entry) = named else {
                return Err((Rule::NotAMint, "the named entry is not a mint".into()));
            };
            let Body::Mint(mint) = &mint_entry.body else {
                return Err((
                    Rule::NotAMint,
                    format!("the named entry is a {}", mint_entry.body.kind()),
                ));
            };
            // A mint is valid only in an authority's log, but a checkpoint vouches for its
            // subject's entries without the rules: a subject that is no authority mints nothing.
            if !genesis.is_authority(&mint_entry.author) {
                return Err((
                    Rule::NotAMint,
                    format!("{} is not a mint authority", mint_entry.author.short()),
                ));
            }
            if mint.recipient != author {
                return Err((
                    Rule::NotRecipient,
                    format!("the mint is for {}", mint.recipient.short()),
                ));
            }
            if state.mints.contains(&mint_entry.id()) {
                return Err((Rule::AlreadyReceived, "this log received the mint before".into()));
            }
            if mint.kind == MintKind::Signup && state.signup {
                return Err((Rule::DuplicateSignup, "a signup mint was already received".into()));
            }
            Change::Receive {
                received: add(state.received, mint.amount)?,
                signup: mint.kind == MintKind::Signup,
                mint: mint_entry.id(),
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
            let spendable = state.spendable();
            if i128::from(reserve.amount.get()) > spendable {
                return Err((
                    Rule::InsufficientBalance,
                    format!("reserves {} with {spendable} cr spendable", reserve.amount),
                ));
            }
            Change::Reserve {
                id: entry.id(),
                locked: add(state.locked, reserve.amount)?,
                open: Open {
                    job: reserve.job,
                    acceptor: reserve.acceptor,
                    amount: reserve.amount,
                    deadline: reserve.deadline,
                    delivered: None,
                },
            }
        }
        Body::Receipt(receipt) => {
            let open = open_reservation(state, receipt.reserve)?;
            if open.delivered.is_some() {
                return Err((
                    Rule::AlreadyDelivered,
                    "a receipt for it is already in the log".into(),
                ));
            }
            check_countersignature(entry, open.acceptor, countersigned, Rule::Commitment)?;
            Change::Deliver {
                reserve: receipt.reserve,
                receipt: entry.id(),
                result: receipt.result,
            }
        }
        Body::Decide(decide) => {
            let open = open_reservation(state, decide.reserve)?;
            if open.delivered.is_none() {
                return Err((Rule::NoReceipt, "no receipt for it is in the log".into()));
            }
            Change::Close {
                reserve: decide.reserve,
                paid: add(state.paid, decide.outcome.price(open.amount))?,
                locked: sub(state.locked, open.amount)?,
            }
        }
        Body::Release(release) => {
            let open = open_reservation(state, release.reserve)?;
            if open.delivered.is_some() {
                return Err((
                    Rule::AlreadyDelivered,
                    "the result was delivered: decide instead".into(),
                ));
            }
            match release.reason {
                ReleaseReason::Expired if entry.time < open.deadline => {
                    return Err((
                        Rule::ReleaseBeforeDeadline,
                        format!("at {} before the deadline {}", entry.time, open.deadline),
                    ));
                }
                ReleaseReason::Expired => {}
                ReleaseReason::Cancelled => {
                    check_countersignature(entry, open.acceptor, countersigned, Rule::Cosignature)?;
                }
            }
            Change::Close {
                reserve: release.reserve,
                paid: state.paid,
                locked: sub(state.locked, open.amount)?,
            }
        }
        Body::Collect(_) => {
            let Named::Source { source, reserve_id, reserve } = named else {
                return Err((
                    Rule::NotCollectable,
                    "the named entry is not a decision or receipt".into(),
                ));
            };
            if reserve.acceptor != author {
                return Err((
                    Rule::NotAParty,
                    format!("the reservation's acceptor is {}", reserve.acceptor.short()),
                ));
            }
            let until = reserve.deadline.saturating_add(genesis.claim_window_ms);
            let owed = match &source.body {
                Body::Decide(decide) => decide.outcome.price(reserve.amount),
                Body::Receipt(_) if entry.time < reserve.deadline => {
                    return Err((
                        Rule::TimeoutBeforeDeadline,
                        format!("at {} before the deadline {}", entry.time, reserve.deadline),
                    ));
                }
                Body::Receipt(_) => reserve.amount.half(),
                other => {
                    return Err((
                        Rule::NotCollectable,
                        format!("the named entry is a {}", other.kind()),
                    ));
                }
            };
            if entry.time > until {
                return Err((
                    Rule::ClaimWindow,
                    format!("at {} after the window closed at {until}", entry.time),
                ));
            }
            let already = state.collected.get(reserve_id).map_or(Credits::ZERO, |c| c.amount);
            let Some(more) = owed.checked_sub(already).filter(|m| *m > Credits::ZERO) else {
                return Err((
                    Rule::NothingToCollect,
                    format!("{already} already collected of {owed} owed"),
                ));
            };
            Change::Collect {
                reserve: *reserve_id,
                earned: add(state.earned, more)?,
                collected: Collected { amount: owed, until },
            }
        }
    };
    Ok(change)
}

fn open_reservation(state: &LogState, reserve: Hash) -> Result<&Open, Broken> {
    state.open.get(&reserve).ok_or_else(|| {
        (Rule::UnknownReservation, format!("no open reservation {reserve} in this log"))
    })
}

fn check_countersignature(
    entry: &Entry,
    signer: NodeId,
    checked: Option<NodeId>,
    rule: Rule,
) -> Result<(), Broken> {
    if checked == Some(signer) {
        return Ok(());
    }
    let Some((domain, bytes, signature)) = countersigned(entry.network, &entry.body) else {
        return Err((rule, "the acceptor's signature is missing".into()));
    };
    let valid =
        signer.public_key().is_ok_and(|key| verify(&key, domain, &bytes, &signature).is_ok());
    if valid {
        Ok(())
    } else {
        Err((rule, format!("the signature of {} does not verify", signer.short())))
    }
}

fn check_amount(amount: Credits) -> Result<(), Broken> {
    if amount == Credits::ZERO || amount > Credits::MAX_ENTRY {
        return Err((
            Rule::Amount,
            format!("{amount} is not between 1 and {}", Credits::MAX_ENTRY),
        ));
    }
    Ok(())
}

fn add(a: Credits, b: Credits) -> Result<Credits, Broken> {
    a.checked_add(b).ok_or_else(overflow)
}

fn sub(a: Credits, b: Credits) -> Result<Credits, Broken> {
    a.checked_sub(b).ok_or_else(overflow)
}

fn overflow() -> Broken {
    (Rule::Overflow, "a sum does not fit in 64 bits".into())
}
