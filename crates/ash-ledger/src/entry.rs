//! Ledger entries and their canonical bytes (see `docs/ledger-format.md`).

use std::fmt;

use ash_identity::{Domain, NodeId, SealingPublicKey, Signature, encode_hex};
use sha2::{Digest as _, Sha256};

use crate::codec::{DecodeError, Reader, Writer};
use crate::credits::Credits;

/// The entry format version written and accepted.
pub const ENTRY_VERSION: u8 = 2;
/// The largest encoded entry accepted (the largest kind, a profile, is under 300 bytes).
pub const MAX_ENTRY_BYTES: usize = 1024;

/// A SHA-256 hash: an entry's id, a network id, a result or a job's terms.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash(pub [u8; 32]);

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", encode_hex(&self.0[..6]))
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A job's id: 16 random bytes chosen by the requester.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub [u8; 16]);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl serde::Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What an entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Who this identity is; entry 0, and any later update.
    Profile(Profile),
    /// New credits from a mint authority, for one recipient to receive.
    Mint(Mint),
    /// The recipient takes a mint into its own log.
    Receive(Receive),
    /// A requester locks credits for one job and one acceptor until a deadline.
    Reserve(Reserve),
    /// The requester records that the acceptor delivered a result.
    Receipt(Receipt),
    /// The requester accepts (full price) or rejects (half) a delivered result.
    Decide(Decide),
    /// A reservation ends unpaid: expired, or cancelled with the acceptor's agreement.
    Release(Release),
    /// The acceptor takes what a decision (or a timeout) owes it into its own log.
    Collect(Collect),
}

impl Body {
    /// The kind's name, as in docs and reports.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Profile(_) => "profile",
            Self::Mint(_) => "mint",
            Self::Receive(_) => "receive",
            Self::Reserve(_) => "reserve",
            Self::Receipt(_) => "receipt",
            Self::Decide(_) => "decide",
            Self::Release(_) => "release",
            Self::Collect(_) => "collect",
        }
    }

    const fn code(&self) -> u8 {
        match self {
            Self::Profile(_) => 1,
            Self::Mint(_) => 2,
            Self::Receive(_) => 3,
            Self::Reserve(_) => 4,
            Self::Receipt(_) => 5,
            Self::Decide(_) => 6,
            Self::Release(_) => 7,
            Self::Collect(_) => 8,
        }
    }

    /// The entry of another log this one names by id and cannot be judged without (the mint
    /// a receive takes, the decision or receipt a collect is paid by).
    pub const fn names(&self) -> Option<Hash> {
        match self {
            Self::Receive(r) => Some(r.mint),
            Self::Collect(c) => Some(c.source),
            _ => None,
        }
    }
}

/// An identity's public profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// 3–32 characters of `a-z 0-9 _ -`; cosmetic, not unique.
    pub username: String,
    /// The X25519 key packages are sealed to (bound by the entry's signature).
    pub sealing_key: SealingPublicKey,
    /// When the identity was created (ms since the Unix epoch).
    pub created_at: u64,
}

impl Profile {
    /// Whether `name` is a valid username: 3–32 bytes of `a-z 0-9 _ -`.
    pub fn valid_username(name: &str) -> bool {
        (3..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    }
}

/// Why credits were minted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MintKind {
    /// The one signup bonus an identity may receive.
    Signup,
    /// Any other grant.
    Grant,
}

/// New credits, written by a mint authority in its own log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mint {
    /// Who may receive them.
    pub recipient: NodeId,
    /// How many (at least 1).
    pub amount: Credits,
    /// Signup bonus or grant.
    pub kind: MintKind,
    /// Why, for people (≤ 200 bytes).
    pub reason: String,
}

/// The recipient's receipt of a mint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receive {
    /// The mint entry's id.
    pub mint: Hash,
}

/// A requester's lock on credits for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserve {
    /// The job.
    pub job: JobId,
    /// The only identity that may be paid from it.
    pub acceptor: NodeId,
    /// The most that can be paid (at least 1).
    pub amount: Credits,
    /// Without a receipt, the requester may release it from this time (ms); with one, the
    /// acceptor may collect half from this time.
    pub deadline: u64,
    /// The hash of the job's [`Terms`].
    pub terms: Hash,
}

/// The requester's record that the acceptor delivered a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The reserve entry's id (in the same log).
    pub reserve: Hash,
    /// The hash of the delivered (sealed) result.
    pub result: Hash,
    /// The acceptor's signature over `network || reserve || result` (domain
    /// `ash/ledger/result/v2`).
    pub commitment: Signature,
}

/// How a delivered job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The requester applied the result: the full reserved amount is paid.
    Accept,
    /// The requester declined the result: half is paid, rounded down.
    Reject,
}

impl Outcome {
    /// What this outcome pays from a reservation of `reserved`.
    pub const fn price(self, reserved: Credits) -> Credits {
        match self {
            Self::Accept => reserved,
            Self::Reject => reserved.half(),
        }
    }
}

/// The requester's decision on a delivered result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decide {
    /// The reserve entry's id (in the same log).
    pub reserve: Hash,
    /// Accept or reject.
    pub outcome: Outcome,
}

/// Why a reservation ended unpaid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseReason {
    /// Past the deadline with nothing delivered.
    Expired,
    /// Cancelled with the acceptor's signature.
    Cancelled,
}

/// The end of a reservation without payment, in the requester's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The reserve entry's id (in the same log).
    pub reserve: Hash,
    /// Expired, or cancelled with the acceptor's signature.
    pub reason: ReleaseReason,
    /// For a cancellation: the acceptor's signature over `network || reserve` (domain
    /// `ash/ledger/cancel/v2`).
    pub cancel: Option<Signature>,
}

/// The acceptor's collection of what a decision (or, after the deadline, a receipt) owes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collect {
    /// The id of the requester's decide (its price) or receipt (half, as a timeout).
    pub source: Hash,
}

/// What a job is, as both parties agreed before the requester reserved credits for it. The
/// reservation carries its hash, so "the tier paid for is the tier run" can be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The model tier asked for (≤ 64 bytes).
    pub tier: String,
    /// The price agreed, in credits.
    pub price: Credits,
    /// The hash of the package the acceptor receives.
    pub package: Hash,
    /// The hash of the prompt.
    pub prompt: Hash,
    /// The agent kind asked for (≤ 64 bytes).
    pub agent: String,
    /// The model the acceptor offered to run (≤ 64 bytes); the result names the models the
    /// agent called, and one that differs is grounds to reject.
    pub model: String,
    /// Whether the agent's model calls go back to the requester, who answers them with its
    /// own key (the acceptor sells machine time only).
    pub routed: bool,
}

impl Terms {
    /// The longest tier, agent kind or model.
    pub const MAX_TEXT: usize = 64;

    /// `H("ash/ledger/terms/v3", bytes)`, the value a reservation's `terms` holds; `None` when
    /// the tier, the agent kind or the model is over [`Terms::MAX_TEXT`] bytes (they could not
    /// be told apart from others by their digest).
    pub fn digest(&self) -> Option<Hash> {
        if [&self.tier, &self.agent, &self.model].iter().any(|t| t.len() > Self::MAX_TEXT) {
            return None;
        }
        let mut w = Writer::default();
        w.u8(u8::try_from(self.tier.len()).unwrap_or(u8::MAX))
            .bytes(self.tier.as_bytes())
            .u64(self.price.get())
            .bytes(&self.package.0)
            .bytes(&self.prompt.0)
            .u8(u8::try_from(self.agent.len()).unwrap_or(u8::MAX))
            .bytes(self.agent.as_bytes())
            .u8(u8::try_from(self.model.len()).unwrap_or(u8::MAX))
            .bytes(self.model.as_bytes())
            .u8(u8::from(self.routed));
        Some(tagged_hash(b"ash/ledger/terms/v3", &w.0))
    }
}

/// One signed entry of an identity's log.
///
/// Built by [`crate::LogWriter`] or decoded with [`Entry::decode`], which accepts only the
/// canonical encoding: the fields determine the bytes ([`Entry::bytes`] encodes them again),
/// so two entries are equal exactly when their bytes are. The id is kept alongside.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The network it belongs to (the genesis id).
    pub network: Hash,
    /// Whose log this is; the signer.
    pub author: NodeId,
    /// Position in the log, from 0.
    pub seq: u64,
    /// Id of entry `seq − 1` (all zeros for entry 0).
    pub prev: Hash,
    /// When it was written (ms since the Unix epoch), by the author's clock.
    pub time: u64,
    /// What it records.
    pub body: Body,
    /// The author's signature over the signed part (domain `ash/ledger/entry/v2`).
    pub signature: Signature,
    id: Hash,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Entry({} #{} {} {:?})", self.author.short(), self.seq, self.body.kind(), self.id)
    }
}

/// Where an entry sits and when it was written: everything but its body and signature.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    pub(crate) network: Hash,
    pub(crate) author: NodeId,
    pub(crate) seq: u64,
    pub(crate) prev: Hash,
    pub(crate) time: u64,
}

impl Head {
    /// The signed part of an entry with this head and `body`.
    pub(crate) fn signed_bytes(&self, body: &Body) -> Vec<u8> {
        let mut payload = Writer::default();
        encode_body(body, &mut payload);
        let mut w = Writer::default();
        w.u8(ENTRY_VERSION)
            .bytes(&self.network.0)
            .id(self.author)
            .u64(self.seq)
            .bytes(&self.prev.0)
            .u64(self.time)
            .u8(body.code())
            // Bodies are far below 4 GiB: every field is bounded.
            .u32(u32::try_from(payload.0.len()).unwrap_or(u32::MAX))
            .bytes(&payload.0);
        w.0
    }
}

/// `H(tag, bytes)` = `SHA-256(tag || 0x00 || bytes)`.
pub(crate) fn tagged_hash(tag: &[u8], bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(tag);
    h.update([0u8]);
    h.update(bytes);
    Hash(h.finalize().into())
}

impl Entry {
    pub(crate) fn assemble(head: Head, body: Body, signed: &[u8], signature: Signature) -> Self {
        Self {
            network: head.network,
            author: head.author,
            seq: head.seq,
            prev: head.prev,
            time: head.time,
            body,
            signature,
            id: tagged_hash(b"ash/ledger/id/v2", signed),
        }
    }

    const fn head(&self) -> Head {
        Head {
            network: self.network,
            author: self.author,
            seq: self.seq,
            prev: self.prev,
            time: self.time,
        }
    }

    /// The canonical encoding of the whole entry (signed part and signature), encoded anew:
    /// entries are held decoded, not as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.signed_bytes();
        bytes.extend_from_slice(&self.signature.0);
        bytes
    }

    /// The bytes the author signs: everything but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.head().signed_bytes(&self.body)
    }

    /// The entry's id: `H("ash/ledger/id/v2", signed part)`. Only the author can change it.
    pub const fn id(&self) -> Hash {
        self.id
    }

    /// Decodes one entry, which must fill `bytes` exactly. Checks the form, not the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(DecodeError {
                offset: 0,
                what: format!(
                    "entry of {} bytes is over the {MAX_ENTRY_BYTES}-byte limit",
                    bytes.len()
                ),
            });
        }
        let mut r = Reader::new(bytes, 0);
        let version = r.u8("version")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError {
                offset: 0,
                what: format!(
                    "ledger entry version {version}; this ash reads version {ENTRY_VERSION} \
                     (see docs/ledger-format.md)"
                ),
            });
        }
        let network = Hash(r.array("network")?);
        let author = r.id("author")?;
        let seq = r.u64("seq")?;
        let prev = Hash(r.array("prev")?);
        let time = r.u64("time")?;
        let kind = r.u8("kind")?;
        let len = r.u32("payload length")? as usize;
        let payload_at = r.offset();
        let payload = r.take(len, "payload")?;
        let mut p = Reader::new(payload, payload_at);
        let body = decode_body(kind, &mut p)?;
        p.finish(body.kind())?;
        let signed_len = r.offset();
        let signature = r.signature("signature")?;
        r.finish("the entry")?;
        let head = Head { network, author, seq, prev, time };
        let signed = &bytes[..signed_len];
        // Every field has one encoding, so this holds for anything the reader accepted; it is
        // checked because an entry's identity rests on it.
        if head.signed_bytes(&body) != signed {
            return Err(DecodeError {
                offset: 0,
                what: "the entry is not in its canonical encoding".into(),
            });
        }
        Ok(Self::assemble(head, body, signed, signature))
    }
}

/// Bytes the acceptor signs to commit to a result (domain `ash/ledger/result/v2`).
pub fn commitment_bytes(network: Hash, reserve: Hash, result: Hash) -> Vec<u8> {
    [network.0, reserve.0, result.0].concat()
}

/// Bytes the acceptor signs to agree to a cancellation (domain `ash/ledger/cancel/v2`).
pub fn cancel_bytes(network: Hash, reserve: Hash) -> Vec<u8> {
    [network.0, reserve.0].concat()
}

/// The domain of each counter-signature an entry carries, with the bytes it signs.
pub(crate) fn countersigned(network: Hash, body: &Body) -> Option<(Domain, Vec<u8>, Signature)> {
    match body {
        Body::Receipt(r) => Some((
            Domain::LedgerResult,
            commitment_bytes(network, r.reserve, r.result),
            r.commitment,
        )),
        Body::Release(Release { reserve, cancel: Some(sig), .. }) => {
            Some((Domain::LedgerCancel, cancel_bytes(network, *reserve), *sig))
        }
        _ => None,
    }
}

fn encode_body(body: &Body, w: &mut Writer) {
    match body {
        Body::Profile(p) => {
            w.u8(u8::try_from(p.username.len()).unwrap_or(u8::MAX))
                .bytes(p.username.as_bytes())
                .bytes(&p.sealing_key.0)
                .u64(p.created_at);
        }
        Body::Mint(m) => {
            w.id(m.recipient)
                .u64(m.amount.get())
                .u8(match m.kind {
                    MintKind::Signup => 1,
                    MintKind::Grant => 2,
                })
                .u16(u16::try_from(m.reason.len()).unwrap_or(u16::MAX))
                .bytes(m.reason.as_bytes());
        }
        Body::Receive(r) => {
            w.bytes(&r.mint.0);
        }
        Body::Reserve(r) => {
            w.bytes(&r.job.0).id(r.acceptor).u64(r.amount.get()).u64(r.deadline).bytes(&r.terms.0);
        }
        Body::Receipt(r) => {
            w.bytes(&r.reserve.0).bytes(&r.result.0).bytes(&r.commitment.0);
        }
        Body::Decide(d) => {
            w.bytes(&d.reserve.0).u8(match d.outcome {
                Outcome::Accept => 1,
                Outcome::Reject => 2,
            });
        }
        Body::Release(r) => {
            w.bytes(&r.reserve.0);
            match (r.reason, &r.cancel) {
                (ReleaseReason::Cancelled, Some(sig)) => w.u8(2).bytes(&sig.0),
                // A cancellation without the acceptor's signature has no encoding; builders
                // never make one (see `LogWriter`).
                (ReleaseReason::Cancelled, None) | (ReleaseReason::Expired, _) => w.u8(1),
            };
        }
        Body::Collect(c) => {
            w.bytes(&c.source.0);
        }
    }
}

fn decode_body(kind: u8, r: &mut Reader<'_>) -> Result<Body, DecodeError> {
    Ok(match kind {
        1 => {
            let len = usize::from(r.u8("username length")?);
            Body::Profile(Profile {
                username: r.text(len, "username")?,
                sealing_key: SealingPublicKey(r.array("sealing key")?),
                created_at: r.u64("created at")?,
            })
        }
        2 => {
            let recipient = r.id("recipient")?;
            let amount = Credits::new(r.u64("amount")?);
            let kind = match r.u8("mint kind")? {
                1 => MintKind::Signup,
                2 => MintKind::Grant,
                other => return Err(r.error(format!("unknown mint kind {other}"))),
            };
            let len = usize::from(r.u16("reason length")?);
            Body::Mint(Mint { recipient, amount, kind, reason: r.text(len, "reason")? })
        }
        3 => Body::Receive(Receive { mint: Hash(r.array("mint id")?) }),
        4 => Body::Reserve(Reserve {
            job: JobId(r.array("job id")?),
            acceptor: r.id("acceptor")?,
            amount: Credits::new(r.u64("amount")?),
            deadline: r.u64("deadline")?,
            terms: Hash(r.array("terms")?),
        }),
        5 => Body::Receipt(Receipt {
            reserve: Hash(r.array("reserve id")?),
            result: Hash(r.array("result hash")?),
            commitment: r.signature("commitment")?,
        }),
        6 => Body::Decide(Decide {
            reserve: Hash(r.array("reserve id")?),
            outcome: match r.u8("outcome")? {
                1 => Outcome::Accept,
                2 => Outcome::Reject,
                other => return Err(r.error(format!("unknown outcome {other}"))),
            },
        }),
        7 => {
            let reserve = Hash(r.array("reserve id")?);
            match r.u8("release reason")? {
                1 => {
                    Body::Release(Release { reserve, reason: ReleaseReason::Expired, cancel: None })
                }
                2 => Body::Release(Release {
                    reserve,
                    reason: ReleaseReason::Cancelled,
                    cancel: Some(r.signature("cancel signature")?),
                }),
                other => return Err(r.error(format!("unknown release reason {other}"))),
            }
        }
        8 => Body::Collect(Collect { source: Hash(r.array("source id")?) }),
        other => return Err(r.error(format!("unknown entry kind {other}"))),
    })
}
