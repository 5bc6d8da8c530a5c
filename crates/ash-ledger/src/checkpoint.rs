//! Checkpoints: one identity's state at one position of its log, signed by a quorum of the
//! network's witnesses, so a peer can verify that identity from there instead of from the
//! network's whole history (see docs/ledger-format.md, "Checkpoints").

use std::collections::BTreeSet;

use ash_identity::{Domain, Identity, NodeId, SealingPublicKey, Signature, verify};

use crate::codec::{DecodeError, Reader, Writer};
use crate::credits::Credits;
use crate::entry::{Hash, JobId};
use crate::genesis::Genesis;
use crate::verify::{Collected, LogState, Open};

/// The checkpoint format version written and read.
pub const CHECKPOINT_VERSION: u8 = 2;
/// The largest checkpoint read: its body and its signatures.
pub(crate) const MAX_CHECKPOINT_BYTES: usize = 1 << 20;

/// One identity's state after one entry, and the witnesses that vouch for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The network.
    pub network: Hash,
    /// Whose log.
    pub subject: NodeId,
    /// The position of `head`.
    pub seq: u64,
    /// The id of the subject's entry at `seq`.
    pub head: Hash,
    /// When the witnesses made it (ms), for people.
    pub time: u64,
    /// The seqs of refused entries at or below `seq`.
    pub refused: Vec<u64>,
    pub(crate) state: LogState,
    /// Witness signatures over the body (domain `ash/ledger/checkpoint/v2`).
    pub signatures: Vec<(NodeId, Signature)>,
}

/// Why a checkpoint does not count.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// It belongs to another network.
    #[error("the checkpoint is for network {found}, not {expected}")]
    Network {
        /// The network it names.
        found: Hash,
        /// Ours.
        expected: Hash,
    },
    /// A witness appears twice among the signatures (a signer writes one each).
    #[error("a witness signs the checkpoint twice")]
    RepeatedWitness,
    /// Its refused seqs do not ascend, or pass its own position.
    #[error("the checkpoint's refused seqs must ascend and not pass its position")]
    Unordered,
    /// Its lists are longer than the encoding can count.
    #[error("the checkpoint holds more entries than its encoding can count")]
    TooLarge,
    /// Too few distinct witnesses of the genesis signed it validly.
    #[error("{valid} valid witness signatures; the network needs {quorum}")]
    Quorum {
        /// Valid signatures by distinct witnesses.
        valid: usize,
        /// The genesis's quorum.
        quorum: u16,
    },
}

impl Checkpoint {
    /// The bytes witnesses sign.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(CHECKPOINT_VERSION)
            .bytes(&self.network.0)
            .id(self.subject)
            .u64(self.seq)
            .bytes(&self.head.0)
            .u64(self.time)
            .u16(u16::try_from(self.refused.len()).unwrap_or(u16::MAX));
        for seq in &self.refused {
            w.u64(*seq);
        }
        encode_state(&self.state, &mut w);
        w.0
    }

    /// Adds `witness`'s signature (replacing an earlier one of the same witness).
    pub fn sign(&mut self, witness: &Identity) {
        let signature = witness.sign(Domain::LedgerCheckpoint, &self.body_bytes());
        self.signatures.retain(|(id, _)| *id != witness.node_id());
        self.signatures.push((witness.node_id(), signature));
        self.signatures.sort_by_key(|(id, _)| *id);
    }

    /// Checks the network, that the body fits its encoding, and the quorum of valid witness
    /// signatures (each witness counted once).
    pub fn check(&self, genesis: &Genesis) -> Result<(), CheckpointError> {
        if self.network != genesis.id() {
            return Err(CheckpointError::Network { found: self.network, expected: genesis.id() });
        }
        if self.refused.len() > usize::from(u16::MAX)
            || self.signatures.len() > usize::from(u16::MAX)
        {
            return Err(CheckpointError::TooLarge);
        }
        if !self.refused.windows(2).all(|w| w[0] < w[1])
            || self.refused.last().is_some_and(|last| *last > self.seq)
        {
            return Err(CheckpointError::Unordered);
        }
        let body = self.body_bytes();
        let mut seen = BTreeSet::new();
        if !self.signatures.iter().all(|(id, _)| seen.insert(*id)) {
            return Err(CheckpointError::RepeatedWitness);
        }
        let signers: BTreeSet<NodeId> = self
            .signatures
            .iter()
            .filter(|(id, sig)| {
                genesis.witnesses.contains(id)
                    && id
                        .public_key()
                        .is_ok_and(|key| verify(&key, Domain::LedgerCheckpoint, &body, sig).is_ok())
            })
            .map(|(id, _)| *id)
            .collect();
        if signers.len() < usize::from(genesis.checkpoint_quorum) {
            return Err(CheckpointError::Quorum {
                valid: signers.len(),
                quorum: genesis.checkpoint_quorum,
            });
        }
        Ok(())
    }

    /// The encoding: body length, body, signature count, then `(witness || sig)` pairs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = self.body_bytes();
        let mut w = Writer::default();
        w.u32(u32::try_from(body.len()).unwrap_or(u32::MAX)).bytes(&body);
        w.u16(u16::try_from(self.signatures.len()).unwrap_or(u16::MAX));
        for (id, sig) in &self.signatures {
            w.id(*id).bytes(&sig.0);
        }
        w.0
    }

    /// Decodes a checkpoint (form only; [`Checkpoint::check`] says whether it counts).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_CHECKPOINT_BYTES {
            return Err(DecodeError {
                offset: 0,
                what: format!("checkpoint of {} bytes is over the limit", bytes.len()),
            });
        }
        let mut r = Reader::new(bytes, 0);
        let len = r.u32("body length")? as usize;
        let body_at = r.offset();
        let mut b = Reader::new(r.take(len, "body")?, body_at);
        let version = b.u8("version")?;
        if version != CHECKPOINT_VERSION {
            return Err(b.error(format!(
                "checkpoint version {version}; this ash reads version {CHECKPOINT_VERSION}"
            )));
        }
        let network = Hash(b.array("network")?);
        let subject = b.id("subject")?;
        let seq = b.u64("seq")?;
        let head = Hash(b.array("head")?);
        let time = b.u64("time")?;
        let count = b.u16("refused count")?;
        let mut refused = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let at = b.u64("refused seq")?;
            if at > seq || refused.last().is_some_and(|last| *last >= at) {
                return Err(b.error("refused seqs must ascend and not pass the checkpoint"));
            }
            refused.push(at);
        }
        let state = decode_state(&mut b)?;
        b.finish("the checkpoint body")?;
        let signers = r.u16("signature count")?;
        let mut signatures = Vec::with_capacity(usize::from(signers));
        for _ in 0..signers {
            signatures.push((r.id("witness")?, r.signature("witness signature")?));
        }
        r.finish("the checkpoint")?;
        Ok(Self { network, subject, seq, head, time, refused, state, signatures })
    }

    /// The subject's balance at the checkpoint.
    pub fn balance(&self) -> crate::Balance {
        crate::verify::balance_of(&self.state, false)
    }
}

fn encode_state(s: &LogState, w: &mut Writer) {
    w.u64(s.received.get()).u64(s.earned.get()).u64(s.paid.get()).u64(s.locked.get());
    w.u64(s.last_time).u8(u8::from(s.signup));
    match &s.profile {
        Some((name, key)) => {
            w.u8(u8::try_from(name.len()).unwrap_or(u8::MAX)).bytes(name.as_bytes()).bytes(&key.0)
        }
        None => w.u8(0),
    };
    w.u32(u32::try_from(s.mints.len()).unwrap_or(u32::MAX));
    for mint in &s.mints {
        w.bytes(&mint.0);
    }
    w.u32(u32::try_from(s.open.len()).unwrap_or(u32::MAX));
    for (id, open) in &s.open {
        w.bytes(&id.0)
            .bytes(&open.job.0)
            .id(open.acceptor)
            .u64(open.amount.get())
            .u64(open.deadline);
        match &open.delivered {
            Some((receipt, result)) => w.u8(1).bytes(&receipt.0).bytes(&result.0),
            None => w.u8(0),
        };
    }
    w.u32(u32::try_from(s.collected.len()).unwrap_or(u32::MAX));
    for (id, c) in &s.collected {
        w.bytes(&id.0).u64(c.amount.get()).u64(c.until);
    }
}

fn decode_state(r: &mut Reader<'_>) -> Result<LogState, DecodeError> {
    let mut s = LogState {
        received: Credits::new(r.u64("received")?),
        earned: Credits::new(r.u64("earned")?),
        paid: Credits::new(r.u64("paid")?),
        locked: Credits::new(r.u64("locked")?),
        last_time: r.u64("last time")?,
        signup: match r.u8("signup")? {
            0 => false,
            1 => true,
            other => return Err(r.error(format!("signup must be 0 or 1, not {other}"))),
        },
        ..LogState::default()
    };
    let name_len = usize::from(r.u8("username length")?);
    if name_len > 0 {
        let name = r.text(name_len, "username")?;
        s.profile = Some((name, SealingPublicKey(r.array("sealing key")?)));
    }
    for _ in 0..r.u32("mints count")? {
        if !s.mints.insert(Hash(r.array("mint id")?)) {
            return Err(r.error("a mint appears twice"));
        }
    }
    for _ in 0..r.u32("open count")? {
        let id = Hash(r.array("reserve id")?);
        let open = Open {
            job: JobId(r.array("job id")?),
            acceptor: r.id("acceptor")?,
            amount: Credits::new(r.u64("amount")?),
            deadline: r.u64("deadline")?,
            delivered: match r.u8("delivered")? {
                0 => None,
                1 => Some((Hash(r.array("receipt id")?), Hash(r.array("result")?))),
                other => return Err(r.error(format!("delivered must be 0 or 1, not {other}"))),
            },
        };
        if s.open.insert(id, open).is_some() {
            return Err(r.error("a reservation appears twice"));
        }
    }
    for _ in 0..r.u32("collected count")? {
        let id = Hash(r.array("reserve id")?);
        let c = Collected { amount: Credits::new(r.u64("collected")?), until: r.u64("until")? };
        if s.collected.insert(id, c).is_some() {
            return Err(r.error("a collected reservation appears twice"));
        }
    }
    s.index_expiry();
    Ok(s)
}
