//! The job messages peers send each other (specified in `docs/wire-protocols.md`; the flow is
//! in `docs/jobs.md`). Ids and hashes travel as lowercase hex; signatures and sealed bytes as
//! CBOR byte strings.

use serde::{Deserialize, Serialize};

/// Bytes of one chunk of a sealed package or result, as one answer carries it.
pub const JOB_CHUNK_BYTES: u32 = 4 << 20;
/// Largest sealed prompt a job carries.
pub const MAX_SEALED_PROMPT_BYTES: usize = 48 << 10;
/// Most agent kinds one announcement names.
pub const MAX_ANNOUNCED_AGENTS: usize = 8;
/// Most progress steps one progress report carries.
pub const MAX_PROGRESS_STEPS: usize = 64;
/// Longest text of one progress step or summary.
pub const MAX_PROGRESS_TEXT: usize = 1024;
/// Longest tier, agent kind, model or sandbox name in a job message.
pub const MAX_JOB_NAME: usize = 64;

/// A requester looking for an acceptor (gossip on the announcement topic). It carries no
/// prompt and no code; the requester is the gossip's signed source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAnnounce {
    /// The job (16 bytes, hex).
    pub job: String,
    /// The model tier asked for.
    pub tier: String,
    /// The agent kinds the requester accepts (`builtin`, `claude`, `codex`).
    pub agents: Vec<String>,
    /// The sealed package's size in bytes.
    pub size: u64,
    /// The price offered, in credits (the genesis's price for the tier).
    pub price: u64,
    /// Offers are taken until this time (ms since the Unix epoch).
    pub expires: u64,
    /// Set when the agent's model calls are to come back to the requester, who answers them
    /// with its own key (the price is then the network's `machine` price).
    #[serde(default)]
    pub routed: Option<JobRouted>,
}

/// How a requester answers a routed job's model calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRouted {
    /// The API its provider speaks: `anthropic` (Messages) or `openai` (Responses and Chat
    /// Completions).
    pub api: String,
    /// The one model calls may name.
    pub model: String,
}

/// The tier whose price a routed job pays: machine time only.
pub const MACHINE_TIER: &str = "machine";
/// Largest model call or answer body carried inline in its message; larger ones are fetched
/// in chunks ([`JobFile::Call`], [`JobFile::Answer`]).
pub const MAX_INLINE_BODY: usize = 48 << 10;
/// Largest model call or answer body a routed job carries.
pub const MAX_MODEL_BODY: u64 = 32 << 20;
/// Most headers a model call carries on.
pub const MAX_MODEL_HEADERS: usize = 16;

/// One model call of a routed job's agent (acceptor → requester). The requester answers it
/// with [`JobModelAnswer`] once its provider has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobModelCall {
    /// The job.
    pub job: String,
    /// The call's number: unique in the job, never used twice (not necessarily from 0).
    pub call: u64,
    /// `messages`, `responses` or `chat_completions`.
    pub api: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers to pass on (at most [`MAX_MODEL_HEADERS`], from the gateway's allow list).
    pub headers: Vec<(String, String)>,
    /// The body's size in bytes.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// The body, when at most [`MAX_INLINE_BODY`]; else fetched as [`JobFile::Call`].
    pub body: Option<serde_bytes::ByteBuf>,
}

/// The requester's answer to a model call (requester → acceptor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobModelAnswer {
    /// The job.
    pub job: String,
    /// The call answered.
    pub call: u64,
    /// The HTTP status the agent gets.
    pub status: u16,
    /// The content type.
    pub content_type: String,
    /// The body's size in bytes.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// The body, when at most [`MAX_INLINE_BODY`]; else fetched as [`JobFile::Answer`].
    pub body: Option<serde_bytes::ByteBuf>,
}

/// An acceptor's offer to run an announced job (acceptor → requester).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOffer {
    /// The job.
    pub job: String,
    /// The agent kind it would run.
    pub agent: String,
    /// The model the agent would use.
    pub model: String,
    /// The sandbox backend the agent would run in.
    pub sandbox: String,
}

/// The job's terms, whose hash the reservation carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTerms {
    /// The model tier.
    pub tier: String,
    /// The price in credits.
    pub price: u64,
    /// SHA-256 of the sealed package (hex).
    pub package: String,
    /// SHA-256 of the prompt's UTF-8 bytes (hex).
    pub prompt: String,
    /// The agent kind.
    pub agent: String,
    /// The model the acceptor offered to run, which the result's manifest must name.
    pub model: String,
    /// Whether the agent's model calls come back to the requester.
    pub routed: bool,
}

/// What the acceptor says ran, sealed with the result (so the commitment covers it): the
/// requester checks it against the terms.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobManifest {
    /// The agent kind that ran.
    pub agent: String,
    /// Its version, when it has one (`claude` and `codex` report theirs).
    #[serde(default)]
    pub version: String,
    /// Every model the agent's calls named.
    pub models: Vec<String>,
    /// Model calls made.
    pub calls: u64,
    /// Input tokens the answers reported.
    pub input_tokens: u64,
    /// Output tokens the answers reported.
    pub output_tokens: u64,
}

/// Most models a manifest may name.
pub const MAX_MANIFEST_MODELS: usize = 16;

/// The requester's choice of this acceptor (requester → acceptor): the reservation, the terms
/// and the sealed prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAssign {
    /// The job.
    pub job: String,
    /// The canonical bytes of the requester's `reserve` entry.
    pub reserve: serde_bytes::ByteBuf,
    /// The terms the reservation's hash covers.
    pub terms: JobTerms,
    /// The prompt, sealed to the acceptor (at most [`MAX_SEALED_PROMPT_BYTES`]).
    pub prompt: serde_bytes::ByteBuf,
    /// The sealed package's size in bytes; the acceptor fetches it in chunks of
    /// [`JOB_CHUNK_BYTES`].
    pub size: u64,
}

/// Which sealed file of a job a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobFile {
    /// The package (the acceptor fetches it from the requester).
    Package,
    /// The result (the requester fetches it from the acceptor).
    Result,
    /// A routed job's model call body (the requester fetches it from the acceptor).
    Call(u64),
    /// The answer to a model call (the acceptor fetches it from the requester).
    Answer(u64),
}

/// One step of an agent's work, as the acceptor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStep {
    /// `text` (what the agent said), `tool` (a tool it called), `usage` (tokens so far), or
    /// `note` (from the acceptor).
    pub kind: String,
    /// For people (at most [`MAX_PROGRESS_TEXT`] bytes).
    pub text: String,
}

/// What the result changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobSummary {
    /// Files changed.
    pub files: u64,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
    /// The agent's last words (at most [`MAX_PROGRESS_TEXT`] bytes).
    pub message: String,
}

/// How the acceptor's work on a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobEnd {
    /// A result is ready: the sealed diff's hash and size, and the acceptor's commitment to it.
    Delivered {
        /// SHA-256 of the sealed result (hex).
        result: String,
        /// Its size in bytes.
        size: u64,
        /// The acceptor's signature over `network ‖ reserve ‖ result` (64 bytes).
        commitment: serde_bytes::ByteBuf,
        /// What it changes.
        summary: JobSummary,
    },
    /// The acceptor gave the job up and signed the cancellation, so the requester releases the
    /// reservation with nothing paid.
    Cancelled {
        /// Why, for people.
        reason: String,
        /// The acceptor's signature over `network ‖ reserve` (64 bytes).
        signature: serde_bytes::ByteBuf,
    },
}
