//! The network service: what a node does with its peers, over `ash-net`.
//!
//! Owns the node loop between the network and the ledger: answering peers' questions about the
//! ledger (heads and ranges of entries), catching up with every peer that connects or gossips
//! new heads (every received entry verified before it is stored, in bounded batches, at most
//! [`MAX_SYNCS`] catch-ups at once), and gossiping the heads of logs that grew here. The job
//! On a mint authority's node it mints the signup bonus for every identity it learns of that
//! paid the network's signup cost (an invite code from its [`InviteBook`], or a proof of work),
//! at a bounded rate; every node asks the authorities it meets to admit it, and takes the mints
//! made out to it into its own log. And the job flow on both sides ([`Jobs`]): announce,
//! offer, reserve, transfer, run, deliver, receipt, decide and collect, durable in `jobs.db`.
//!
//! Never reads the environment and never prints: the CLI gives it its configuration and shows
//! its [`NodeEvent`]s.

mod invites;
mod jobs;
mod ledger;
mod node;

pub use invites::{InviteBook, InviteError, MAX_INVITES, MAX_INVITES_AT_ONCE};
pub use jobs::{
    Abandoned, AcceptorRecord, AcceptorState, AgentEnd, AgentWork, CHUNKS_IN_FLIGHT, Delivered,
    GitFactory, JobAgent, JobError, JobEvent, JobSpec, Jobs, MAX_CONCURRENT_JOBS, MAX_PROMPT_BYTES,
    ModelProvider, Offer, Requested, RequesterRecord, RequesterState, RoutedAnswer, RoutedCall,
    RoutedModel, RoutedRecord, Routing, ServeConfig, Settlement,
};
pub use ledger::{Inserted, Ledger, TakenCheckpoints};
pub use node::{
    Authority, MAX_HEAD_PAGES, MAX_SYNC_CHECKPOINTS, MAX_SYNC_ENTRIES, MAX_SYNC_HEADS, MAX_SYNCS,
    MAX_WAITING_SYNCS, Node, NodeConfig, NodeEvent, SYNC_TIME,
};

/// Why the node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The network failed.
    #[error(transparent)]
    Net(#[from] ash_net::NetError),
    /// The ledger database failed.
    #[error("ledger: {0}")]
    Ledger(String),
    /// An invite code was not redeemed.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// The invite book could not be read or written.
    #[error("invites: {0}")]
    Invites(String),
    /// The ledger's rules refused an entry of this identity's own (a reservation the balance
    /// does not cover, a collection with nothing owed).
    #[error("the ledger refused this {kind} entry ({rule}): {detail}")]
    Refused {
        /// The entry's kind.
        kind: &'static str,
        /// The rule.
        rule: String,
        /// Specifics.
        detail: String,
    },
    /// The jobs file failed.
    #[error("jobs: {0}")]
    Jobs(String),
}
