//! Messages peers send each other over ash's network (specified in `docs/wire-protocols.md`).
//!
//! Encoded as CBOR on the wire by `ash-net`; every request travels in an envelope whose id the
//! answer echoes. Field names are the serde defaults (snake_case); readers refuse unknown
//! variants but tolerate unknown fields, so a later version may add fields.

use serde::{Deserialize, Serialize};

use crate::job::{JobAnnounce, JobAssign, JobEnd, JobFile, JobOffer, JobStep};

/// A request addressed to one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerRequest {
    /// What the peer is and offers.
    Info,
    /// The heads of the ledger logs the peer holds, authors in ascending order after `after`
    /// (hex node id; paging), at most `limit` (capped at [`MAX_HEADS`]).
    LedgerHeads {
        /// The last author of the previous page.
        after: Option<String>,
        /// At most this many.
        limit: u32,
    },
    /// Entries of some logs (at most [`MAX_LOGS`]), each in order from its `from_seq`, the
    /// logs in the order given: at most `limit` entries in all (capped at [`MAX_ENTRIES`], and
    /// by the answer size).
    LedgerEntries {
        /// Which logs, from where.
        logs: Vec<LogStart>,
        /// At most this many entries.
        limit: u32,
    },
    /// The latest checkpoint held for each of these logs (at most [`MAX_LOGS`]; hex node ids).
    LedgerCheckpoints {
        /// Whose.
        subjects: Vec<String>,
    },
    /// To a mint authority's node: admit the asker (the identity its connection proves) to the
    /// signup bonus, with what the network's `signup_cost` asks. The bonus follows as a mint
    /// once the authority holds the asker's profile.
    Signup {
        /// The proof.
        proof: SignupProof,
    },
    /// An acceptor's offer for an announced job (to its requester).
    JobOffer(JobOffer),
    /// The requester chose the asked acceptor (to the acceptor).
    JobAssign(JobAssign),
    /// One chunk of a job's sealed package (asked of the requester) or result (asked of the
    /// acceptor), by its index in chunks of [`crate::JOB_CHUNK_BYTES`].
    JobChunk {
        /// The job.
        job: String,
        /// Which file.
        file: JobFile,
        /// Which chunk.
        index: u64,
    },
    /// The agent's progress on a job (to its requester), numbered from 0 so that a repeat is
    /// recognised.
    JobProgress {
        /// The job.
        job: String,
        /// The number of the first step.
        from: u64,
        /// At most [`crate::MAX_PROGRESS_STEPS`].
        steps: Vec<JobStep>,
    },
    /// The acceptor's work ended (to the requester): a result to fetch, or a cancellation.
    JobDone {
        /// The job.
        job: String,
        /// How.
        end: JobEnd,
    },
    /// Where a job stands (asked of the acceptor by a requester that was away).
    JobStatus {
        /// The job.
        job: String,
    },
    /// The requester's entries that settle a job (its receipt and decision), so that the
    /// acceptor collects without waiting for replication.
    JobSettled {
        /// The job.
        job: String,
        /// Canonical entry bytes.
        entries: Vec<serde_bytes::ByteBuf>,
    },
    /// A routed job's agent calls its model (to the requester).
    JobModelCall(crate::JobModelCall),
    /// The requester's answer to a model call (to the acceptor).
    JobModelAnswer(crate::JobModelAnswer),
}

/// What a new identity shows for its signup bonus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignupProof {
    /// Nothing (networks that ask for nothing mint without being asked).
    None,
    /// A code one of the mint authorities issued (at most [`MAX_INVITE_BYTES`]).
    Invite {
        /// The code.
        code: String,
    },
    /// A proof-of-work nonce for the asker's identity on this network.
    Work {
        /// The nonce.
        nonce: u64,
    },
}

/// Longest invite code.
pub const MAX_INVITE_BYTES: usize = 128;

/// The `type` of every [`PeerRequest`] this version knows. A request of another type is a
/// newer peer's: answered `unsupported`, not held against it.
pub const REQUEST_TYPES: [&str; 14] = [
    "info",
    "ledger_heads",
    "ledger_entries",
    "ledger_checkpoints",
    "signup",
    "job_offer",
    "job_assign",
    "job_chunk",
    "job_progress",
    "job_done",
    "job_status",
    "job_settled",
    "job_model_call",
    "job_model_answer",
];

/// The `type` of every [`Gossip`] message this version knows; others are a newer peer's and
/// are neither passed on nor held against anyone.
pub const GOSSIP_TYPES: [&str; 4] = ["heads", "equivocation", "checkpoint", "job_announce"];

/// Most heads one answer holds.
pub const MAX_HEADS: u32 = 4096;
/// Most entries one answer holds.
pub const MAX_ENTRIES: u32 = 4096;
/// Most logs one request for entries names.
pub const MAX_LOGS: usize = 256;

/// Where to start reading one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStart {
    /// The log's author (hex node id).
    pub author: String,
    /// The first position wanted.
    pub from_seq: u64,
}

/// The head of one ledger log: its author, and the position and id of its latest judged
/// entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// The author (hex node id).
    pub author: String,
    /// The latest judged position.
    pub seq: u64,
    /// The entry's id (hex); a peer holding another entry at that position has found a fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The lowest position where the sender holds two entries of this log (a proof of
    /// equivocation); a peer without the proof fetches the log from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<u64>,
    /// The position of the latest checkpoint the sender holds for this log; a peer holding
    /// none, or an older one, asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// What a node gossips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Gossip {
    /// Logs that changed here, with their new heads (on the ledger topic).
    Heads {
        /// At most [`MAX_GOSSIP_HEADS`].
        heads: Vec<LogHead>,
    },
    /// A checkpoint new to the sender (its canonical bytes, at most the gossip size), on the
    /// ledger topic; receivers check its witness signatures before they keep it.
    Checkpoint {
        /// The checkpoint.
        bytes: serde_bytes::ByteBuf,
    },
    /// Proof that an identity signed two entries at one position: both entries' canonical
    /// bytes (on the ledger topic). Every node that stores them freezes the identity.
    Equivocation {
        /// Exactly two entries.
        entries: Vec<serde_bytes::ByteBuf>,
    },
    /// A job looking for an acceptor (on the announcement topic).
    JobAnnounce(JobAnnounce),
}

/// Most heads one gossip message holds.
pub const MAX_GOSSIP_HEADS: usize = 512;

/// The answer to a [`PeerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerResponse {
    /// The answer to [`PeerRequest::Info`].
    Info(PeerInfo),
    /// The answer to [`PeerRequest::LedgerHeads`].
    LedgerHeads {
        /// Heads, authors ascending.
        heads: Vec<LogHead>,
        /// Whether there are more after the last.
        more: bool,
    },
    /// The answer to [`PeerRequest::LedgerEntries`]: each entry's canonical bytes, in order.
    LedgerEntries {
        /// The entries.
        entries: Vec<serde_bytes::ByteBuf>,
    },
    /// The answer to [`PeerRequest::LedgerCheckpoints`]: the canonical bytes of each checkpoint
    /// held, in the order asked (subjects without one are left out).
    LedgerCheckpoints {
        /// The checkpoints.
        checkpoints: Vec<serde_bytes::ByteBuf>,
    },
    /// The answer to [`PeerRequest::Signup`]: admitted (also when it was before).
    Admitted,
    /// Taken note of (offers, progress, ends, settlements).
    Noted,
    /// The answer to [`PeerRequest::JobAssign`]: the acceptor checked the reservation and
    /// takes the job.
    JobAccepted,
    /// The answer to [`PeerRequest::JobChunk`].
    JobChunk {
        /// The chunk's bytes (the last may be shorter).
        bytes: serde_bytes::ByteBuf,
    },
    /// The answer to [`PeerRequest::JobStatus`]: the acceptor's state of the job (`receiving`,
    /// `running`, `delivered`, `cancelled`, `collected`), and how it ended, if it did.
    JobStatus {
        /// The state.
        state: String,
        /// The end.
        end: Option<JobEnd>,
    },
    /// The request was refused.
    Error(PeerError),
}

impl PeerResponse {
    /// A refusal with its stable `code` and a message for people.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error(PeerError { code: code.to_owned(), message: message.into() })
    }
}

/// What a peer says of itself. Everything here is a claim: balances and names come from the
/// ledger, never from this.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `ash/<version>`.
    pub version: String,
    /// Whether it accepts jobs now.
    pub serving: bool,
    /// The agents it offers for jobs (`builtin`, `claude`, `codex`).
    pub agents: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerError {
    /// A stable code: `busy`, `rate_limited`, `unsupported`, `invalid`, `refused`.
    pub code: String,
    /// For people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `type` each value is written with.
    fn kind<T: Serialize>(value: &T) -> String {
        let json = serde_json::to_value(value).unwrap_or_default();
        json["type"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn the_lists_of_types_name_every_variant() {
        let requests = [
            PeerRequest::Info,
            PeerRequest::LedgerHeads { after: None, limit: 1 },
            PeerRequest::LedgerEntries { logs: Vec::new(), limit: 1 },
            PeerRequest::LedgerCheckpoints { subjects: Vec::new() },
            PeerRequest::Signup { proof: SignupProof::None },
            PeerRequest::JobOffer(crate::JobOffer {
                job: String::new(),
                agent: String::new(),
                model: String::new(),
                sandbox: String::new(),
            }),
            PeerRequest::JobAssign(crate::JobAssign {
                job: String::new(),
                reserve: serde_bytes::ByteBuf::new(),
                terms: crate::JobTerms {
                    model: "m".into(),
                    routed: false,
                    tier: String::new(),
                    price: 0,
                    package: String::new(),
                    prompt: String::new(),
                    agent: String::new(),
                },
                prompt: serde_bytes::ByteBuf::new(),
                size: 0,
            }),
            PeerRequest::JobChunk { job: String::new(), file: JobFile::Package, index: 0 },
            PeerRequest::JobProgress { job: String::new(), from: 0, steps: Vec::new() },
            PeerRequest::JobDone {
                job: String::new(),
                end: JobEnd::Cancelled {
                    reason: String::new(),
                    signature: serde_bytes::ByteBuf::new(),
                },
            },
            PeerRequest::JobStatus { job: String::new() },
            PeerRequest::JobSettled { job: String::new(), entries: Vec::new() },
            PeerRequest::JobModelCall(crate::JobModelCall {
                job: String::new(),
                call: 0,
                api: String::new(),
                query: String::new(),
                headers: Vec::new(),
                size: 0,
                sha256: String::new(),
                body: None,
            }),
            PeerRequest::JobModelAnswer(crate::JobModelAnswer {
                job: String::new(),
                call: 0,
                status: 200,
                content_type: String::new(),
                size: 0,
                sha256: String::new(),
                body: None,
            }),
        ];
        let kinds: Vec<String> = requests.iter().map(kind).collect();
        assert_eq!(kinds, REQUEST_TYPES);
        let gossip = [
            Gossip::Heads { heads: Vec::new() },
            Gossip::Equivocation { entries: Vec::new() },
            Gossip::Checkpoint { bytes: serde_bytes::ByteBuf::new() },
            Gossip::JobAnnounce(crate::JobAnnounce {
                job: String::new(),
                tier: String::new(),
                agents: Vec::new(),
                size: 0,
                price: 0,
                expires: 0,
                routed: None,
            }),
        ];
        let kinds: Vec<String> = gossip.iter().map(kind).collect();
        assert_eq!(kinds, GOSSIP_TYPES);
    }
}
