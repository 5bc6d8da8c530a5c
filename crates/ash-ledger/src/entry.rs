//! Ledger entries and their canonical bytes (see `docs/ledger-format.md`).

use std::fmt;

use ash_identity::{NodeId, SealingPublicKey, Signature, encode_hex};
use sha2::{Digest as _, Sha256};

use crate::codec::{DecodeError, Reader, Writer};
use crate::credits::Credits;

/// The entry format version written and accepted.
pub const ENTRY_VERSION: u8 = 1;
/// The largest encoded entry accepted (a settle holding its reservation is about 600 bytes).
pub const MAX_ENTRY_BYTES: usize = 4096;
const HASH_TAG: &[u8] = b"ash/ledger/hash/v1\0";

/// A SHA-256 hash of an entry (or of a job result).
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
    /// Who this identity is; always entry 0.
    Profile(Profile),
    /// New credits from a mint authority (only in an authority's log).
    Mint(Mint),
    /// A requester locks credits for one job and one acceptor until a deadline.
    Reserve(Reserve),
    /// A reservation is paid out (accept, reject or timeout).
    Settle(Box<Settle>),
    /// A reservation ends unpaid (expired, or cancelled with the acceptor's agreement).
    Release(Release),
}

impl Body {
    /// The kind's name, as in docs and reports.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Profile(_) => "profile",
            Self::Mint(_) => "mint",
            Self::Reserve(_) => "reserve",
            Self::Settle(_) => "settle",
            Self::Release(_) => "release",
        }
    }

    const fn code(&self) -> u8 {
        match self {
            Self::Profile(_) => 1,
            Self::Mint(_) => 2,
            Self::Reserve(_) => 3,
            Self::Settle(_) => 4,
            Self::Release(_) => 5,
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
    /// Who receives them.
    pub recipient: NodeId,
    /// How many (at least 1).
    pub amount: Credits,
    /// Signup bonus or grant.
    pub kind: MintKind,
    /// Why, for people (≤ 200 bytes).
    pub reason: String,
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
    /// After this time (ms) the acceptor may settle at the timeout price, or the requester
    /// may release it.
    pub deadline: u64,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The requester applied the result.
    Accept,
    /// The requester declined the result.
    Reject,
    /// The requester went silent past the deadline.
    Timeout,
}

/// The payment both parties agree on (or the acceptor claims after a timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The job.
    pub job: JobId,
    /// Who pays.
    pub requester: NodeId,
    /// Who is paid.
    pub acceptor: NodeId,
    /// Sequence number of the reserve entry in the requester's log.
    pub reserve_seq: u64,
    /// Hash of that reserve entry.
    pub reserve_hash: Hash,
    /// Hash of the result the acceptor delivered (its diff).
    pub result_hash: Hash,
    /// Accept, reject or timeout.
    pub outcome: Outcome,
    /// Credits paid (≤ the reservation; ≤ half of it for a timeout).
    pub amount: Credits,
}

impl Settlement {
    /// The canonical bytes both parties sign.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode(&mut w);
        w.0
    }

    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.job.0)
            .id(self.requester)
            .id(self.acceptor)
            .u64(self.reserve_seq)
            .bytes(&self.reserve_hash.0)
            .bytes(&self.result_hash.0)
            .u8(match self.outcome {
                Outcome::Accept => 1,
                Outcome::Reject => 2,
                Outcome::Timeout => 3,
            })
            .u64(self.amount.get());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            job: JobId(r.array("job id")?),
            requester: r.id("requester")?,
            acceptor: r.id("acceptor")?,
            reserve_seq: r.u64("reserve seq")?,
            reserve_hash: Hash(r.array("reserve hash")?),
            result_hash: Hash(r.array("result hash")?),
            outcome: match r.u8("outcome")? {
                1 => Outcome::Accept,
                2 => Outcome::Reject,
                3 => Outcome::Timeout,
                other => return Err(r.error(format!("unknown outcome {other}"))),
            },
            amount: Credits::new(r.u64("amount")?),
        })
    }
}

/// A settle entry: the settlement, the acceptor's result commitment and the reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settle {
    /// What is paid.
    pub settlement: Settlement,
    /// For a timeout only: the acceptor's signature over the result it delivered (domain
    /// `ash/ledger/result/v1`). An accept or reject is signed by both parties instead.
    pub commitment: Option<Signature>,
    /// The requester's reserve entry, carried whole so the settle can be checked on its own.
    pub reserve: Entry,
}

/// Why a reservation ended unpaid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseReason {
    /// Past the deadline with no settlement.
    Expired,
    /// Cancelled with the acceptor's counter-signature.
    Cancelled,
}

/// The end of a reservation without payment, in the requester's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The job.
    pub job: JobId,
    /// Sequence number of the reserve entry (in the same log).
    pub reserve_seq: u64,
    /// Hash of that reserve entry.
    pub reserve_hash: Hash,
    /// Expired or cancelled.
    pub reason: ReleaseReason,
}

/// One signed entry of an identity's log.
///
/// Built by [`crate::LogWriter`] or decoded with [`Entry::decode`]; the canonical bytes and the
/// hash are kept alongside the fields and always agree with them.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whose log this is; the signer.
    pub author: NodeId,
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of entry `seq − 1` (all zeros for entry 0).
    pub prev: Hash,
    /// When it was written (ms since the Unix epoch), by the author's clock.
    pub time: u64,
    /// What it records.
    pub body: Body,
    /// The author's signature over the signed bytes (domain `ash/ledger/entry/v1`).
    pub signature: Signature,
    /// The counterparty's signature: over the settlement (domain `ash/ledger/settlement/v1`)
    /// for an accept or reject settle, over the release (domain `ash/ledger/release/v1`) for a
    /// cancelled release; absent otherwise.
    pub cosignature: Option<Signature>,
    bytes: Vec<u8>,
    signed_len: usize,
    hash: Hash,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Entry({} #{} {} {:?})",
            self.author.short(),
            self.seq,
            self.body.kind(),
            self.hash
        )
    }
}

/// Where an entry sits and when it was written: everything but its body and signatures.
#[derive(Clone, Copy)]
pub(crate) struct Head {
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
            .id(self.author)
            .u64(self.seq)
            .bytes(&self.prev.0)
            .u64(self.time)
            .u8(body.code())
            // Bodies are bounded far below 4 GiB by MAX_ENTRY_BYTES checks on decode and by
            // the builders' field limits.
            .u32(u32::try_from(payload.0.len()).unwrap_or(u32::MAX))
            .bytes(&payload.0);
        w.0
    }
}

impl Entry {
    pub(crate) fn assemble(
        head: Head,
        body: Body,
        signed: Vec<u8>,
        signature: Signature,
        cosignature: Option<Signature>,
    ) -> Self {
        let signed_len = signed.len();
        let mut w = Writer(signed);
        w.bytes(&signature.0);
        match cosignature {
            Some(cosig) => w.u8(1).bytes(&cosig.0),
            None => w.u8(0),
        };
        let bytes = w.0;
        Self {
            author: head.author,
            seq: head.seq,
            prev: head.prev,
            time: head.time,
            body,
            signature,
            cosignature,
            hash: hash_bytes(&bytes),
            bytes,
            signed_len,
        }
    }

    /// The canonical encoding of the whole entry.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes the author signs: everything before the signature.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..self.signed_len]
    }

    /// The entry's hash: `SHA-256("ash/ledger/hash/v1" 0x00 || bytes)`.
    pub const fn hash(&self) -> Hash {
        self.hash
    }

    /// Decodes one entry, which must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_at(bytes, 0, true)
    }

    fn decode_at(bytes: &[u8], base: usize, outer: bool) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(DecodeError {
                offset: base,
                what: format!(
                    "entry of {} bytes is over the {MAX_ENTRY_BYTES}-byte limit",
                    bytes.len()
                ),
            });
        }
        let mut r = Reader::new(bytes, base);
        let version = r.u8("version")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError {
                offset: base,
                what: format!("unsupported entry version {version}"),
            });
        }
        let author = r.id("author")?;
        let seq = r.u64("seq")?;
        let prev = Hash(r.array("prev hash")?);
        let time = r.u64("time")?;
        let kind = r.u8("kind")?;
        let len = r.u32("payload length")? as usize;
        let payload_at = r.offset();
        let payload = r.take(len, "payload")?;
        let mut p = Reader::new(payload, payload_at);
        let body = decode_body(kind, &mut p, outer)?;
        p.finish(body.kind())?;
        let signed_len = r.offset() - base;
        let signature = r.signature("signature")?;
        let cosignature = match r.u8("cosignature flag")? {
            0 => None,
            1 => Some(r.signature("cosignature")?),
            other => return Err(r.error(format!("cosignature flag must be 0 or 1, not {other}"))),
        };
        r.finish("the entry")?;
        Ok(Self {
            author,
            seq,
            prev,
            time,
            body,
            signature,
            cosignature,
            bytes: bytes.to_vec(),
            signed_len,
            hash: hash_bytes(bytes),
        })
    }
}

fn hash_bytes(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(HASH_TAG);
    h.update(bytes);
    Hash(h.finalize().into())
}

/// Bytes the acceptor signs to commit to a result (domain `ash/ledger/result/v1`).
pub(crate) fn commitment_bytes(s: &Settlement) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(&s.job.0)
        .id(s.requester)
        .id(s.acceptor)
        .bytes(&s.reserve_hash.0)
        .bytes(&s.result_hash.0);
    w.0
}

/// Bytes the acceptor counter-signs to cancel a reservation (domain `ash/ledger/release/v1`).
pub(crate) fn release_bytes(requester: NodeId, release: &Release) -> Vec<u8> {
    let mut w = Writer::default();
    w.id(requester).bytes(&release.job.0).u64(release.reserve_seq).bytes(&release.reserve_hash.0);
    w.0
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
        Body::Reserve(r) => {
            w.bytes(&r.job.0).id(r.acceptor).u64(r.amount.get()).u64(r.deadline);
        }
        Body::Settle(s) => {
            s.settlement.encode(w);
            if let Some(commitment) = &s.commitment {
                w.bytes(&commitment.0);
            }
            w.u32(u32::try_from(s.reserve.bytes().len()).unwrap_or(u32::MAX))
                .bytes(s.reserve.bytes());
        }
        Body::Release(r) => {
            w.bytes(&r.job.0).u64(r.reserve_seq).bytes(&r.reserve_hash.0).u8(match r.reason {
                ReleaseReason::Expired => 1,
                ReleaseReason::Cancelled => 2,
            });
        }
    }
}

fn decode_body(kind: u8, r: &mut Reader<'_>, outer: bool) -> Result<Body, DecodeError> {
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
        3 => Body::Reserve(Reserve {
            job: JobId(r.array("job id")?),
            acceptor: r.id("acceptor")?,
            amount: Credits::new(r.u64("amount")?),
            deadline: r.u64("deadline")?,
        }),
        4 => {
            if !outer {
                return Err(r.error("a settle cannot be nested inside a settle"));
            }
            let settlement = Settlement::decode(r)?;
            let commitment = match settlement.outcome {
                Outcome::Timeout => Some(r.signature("commitment")?),
                Outcome::Accept | Outcome::Reject => None,
            };
            let len = r.u32("reservation length")? as usize;
            let at = r.offset();
            let reserve = Entry::decode_at(r.take(len, "reservation")?, at, false)?;
            Body::Settle(Box::new(Settle { settlement, commitment, reserve }))
        }
        5 => Body::Release(Release {
            job: JobId(r.array("job id")?),
            reserve_seq: r.u64("reserve seq")?,
            reserve_hash: Hash(r.array("reserve hash")?),
            reason: match r.u8("release reason")? {
                1 => ReleaseReason::Expired,
                2 => ReleaseReason::Cancelled,
                other => return Err(r.error(format!("unknown release reason {other}"))),
            },
        }),
        other => return Err(r.error(format!("unknown entry kind {other}"))),
    })
}
