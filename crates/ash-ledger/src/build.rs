//! Writing entries: the next entry of one's own log, and the signatures the other party adds.

use ash_identity::{Domain, Identity, Signature};

use crate::entry::{Body, Entry, Hash, Head, Release, Settlement, commitment_bytes, release_bytes};

/// Appends entries to one identity's log: keeps the next sequence number and the head hash.
#[derive(Debug)]
pub struct LogWriter<'a> {
    identity: &'a Identity,
    next_seq: u64,
    head: Hash,
}

impl<'a> LogWriter<'a> {
    /// A writer for an empty log.
    pub const fn new(identity: &'a Identity) -> Self {
        Self { identity, next_seq: 0, head: Hash([0; 32]) }
    }

    /// A writer that continues after `last`, the newest entry of `identity`'s log.
    pub const fn resume(identity: &'a Identity, last: &Entry) -> Self {
        Self { identity, next_seq: last.seq.saturating_add(1), head: last.hash() }
    }

    /// The sequence number the next entry gets.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Signs and returns the next entry. `cosignature` is the other party's signature (see
    /// [`Entry::cosignature`]); the caller appends the entry to storage.
    pub fn append(&mut self, time: u64, body: Body, cosignature: Option<Signature>) -> Entry {
        let head =
            Head { author: self.identity.node_id(), seq: self.next_seq, prev: self.head, time };
        let signed = head.signed_bytes(&body);
        let signature = self.identity.sign(Domain::LedgerEntry, &signed);
        let entry = Entry::assemble(head, body, signed, signature, cosignature);
        self.next_seq = self.next_seq.saturating_add(1);
        self.head = entry.hash();
        entry
    }
}

/// The acceptor's commitment to a result, given to the requester with the result.
pub fn result_commitment(acceptor: &Identity, settlement: &Settlement) -> Signature {
    acceptor.sign(Domain::LedgerResult, &commitment_bytes(settlement))
}

impl Settlement {
    /// This party's counter-signature on the settlement.
    pub fn cosign(&self, party: &Identity) -> Signature {
        party.sign(Domain::LedgerSettlement, &self.to_bytes())
    }
}

impl Release {
    /// The acceptor's agreement to cancel `requester`'s reservation.
    pub fn cosign(&self, acceptor: &Identity, requester: ash_identity::NodeId) -> Signature {
        acceptor.sign(Domain::LedgerRelease, &release_bytes(requester, self))
    }
}
