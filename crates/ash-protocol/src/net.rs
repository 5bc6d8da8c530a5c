//! Messages peers send each other over ash's network (specified in `docs/wire-protocols.md`).
//!
//! Encoded as CBOR on the wire by `ash-net`; every request travels in an envelope whose id the
//! answer echoes. Field names are the serde defaults (snake_case); readers refuse unknown
//! variants but tolerate unknown fields, so a later version may add fields.

use serde::{Deserialize, Serialize};

/// A request addressed to one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerRequest {
    /// What the peer is and offers.
    Info,
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerResponse {
    /// The answer to [`PeerRequest::Info`].
    Info(PeerInfo),
    /// The request was refused.
    Error(PeerError),
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
    /// A stable code: `busy`, `rate_limited`, `unsupported`, `invalid`.
    pub code: String,
    /// For people.
    pub message: String,
}
