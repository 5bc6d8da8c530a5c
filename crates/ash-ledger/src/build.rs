//! Writing entries: the next entry of one's own log, and the signatures an acceptor gives a
//! requester to put in its log.

use ash_identity::{Domain, Identity, Signature};

use crate::entry::{
    Body, Entry, Hash, Head, Release, ReleaseReason, cancel_bytes, commitment_bytes,
};

/// Appends entries to one identity's log on one network: keeps the next sequence number and
/// the head's id.
#[derive(Debug)]
pub struct LogWriter<'a> {
    identity: &'a Identity,
    network: Hash,
    next_seq: u64,
    head: Hash,
}

impl<'a> LogWriter<'a> {
    /// A writer for an empty log.
    pub const fn new(identity: &'a Identity, network: Hash) -> Self {
        Self { identity, network, next_seq: 0, head: Hash([0; 32]) }
    }

    /// A writer that continues after `last`, the newest verified entry of `identity`'s log.
    pub const fn resume(identity: &'a Identity, last: &Entry) -> Self {
        Self {
            identity,
            network: last.network,
            next_seq: last.seq.saturating_add(1),
            head: last.id(),
        }
    }

    /// The sequence number the next entry gets.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Signs and returns the next entry; the caller verifies and stores it.
    pub fn append(&mut self, time: u64, body: Body) -> Entry {
        let head = Head {
            network: self.network,
            author: self.identity.node_id(),
            seq: self.next_seq,
            prev: self.head,
            time,
        };
        let signed = head.signed_bytes(&body);
        let signature = self.identity.sign(Domain::LedgerEntry, &signed);
        let entry = Entry::assemble(head, body, &signed, signature);
        self.next_seq = self.next_seq.saturating_add(1);
        self.head = entry.id();
        entry
    }
}

/// The acceptor's commitment to `result` for the reservation `reserve`, which the requester's
/// receipt carries.
pub fn result_commitment(
    acceptor: &Identity,
    network: Hash,
    reserve: Hash,
    result: Hash,
) -> Signature {
    acceptor.sign(Domain::LedgerResult, &commitment_bytes(network, reserve, result))
}

impl Release {
    /// A release of `reserve` after its deadline, with nothing delivered.
    pub const fn expired(reserve: Hash) -> Self {
        Self { reserve, reason: ReleaseReason::Expired, cancel: None }
    }

    /// A cancellation of `reserve` with the acceptor's `signature` (from [`cancel_signature`]).
    pub const fn cancelled(reserve: Hash, signature: Signature) -> Self {
        Self { reserve, reason: ReleaseReason::Cancelled, cancel: Some(signature) }
    }
}

/// The acceptor's agreement to cancel the reservation `reserve`.
pub fn cancel_signature(acceptor: &Identity, network: Hash, reserve: Hash) -> Signature {
    acceptor.sign(Domain::LedgerCancel, &cancel_bytes(network, reserve))
}
