//! What the screen and its caller say to each other: [`Action`]s out, [`Update`]s in, and the
//! [`Session`] the screen opens with.

use std::time::Duration;

use zeroize::Zeroizing;

/// What the screen knows when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// ash's version, for the header.
    pub version: String,
    /// The identity's short id.
    pub identity: String,
    /// Its username, when it has a profile.
    pub username: Option<String>,
    /// The working directory (the repository jobs are asked for), as people read it.
    pub directory: String,
    /// The tier jobs pay for, and its price per job.
    pub tier: String,
    /// The tier's price, when the network prices it.
    pub price: Option<u64>,
    /// The agent kinds jobs ask for.
    pub agents: String,
    /// Whether to use colour (off under `NO_COLOR`).
    pub color: bool,
    /// How long the apply prompt waits before it answers no (half the price).
    pub decide_within: Duration,
    /// Earlier prompt lines, oldest first.
    pub history: Vec<String>,
}

/// What the screen asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the network to work on the repository.
    Ask(String),
    /// Stop the job in focus (nothing is reserved before an acceptor is chosen; after, the
    /// screen stops following it and the reservation runs to its deadline).
    Cancel,
    /// Apply the delivered result of `job` (full price) or not (half).
    Decide {
        /// The job.
        job: String,
        /// Apply it.
        apply: bool,
    },
    /// Start serving jobs in the background of this screen.
    Serve {
        /// Jobs to take before stopping (`None`: no end).
        max_jobs: Option<u64>,
        /// The model the built-in agent runs on, when given.
        model: Option<String>,
    },
    /// Stop offering; the job running finishes.
    StopServing,
    /// This identity, its balance, the network and the agents.
    Status,
    /// The ledger history of this identity, or of another one.
    History(Option<String>),
    /// The peers connected now.
    Peers,
    /// Switch the tier (remembered); `None`: send the tiers for the picker.
    Model(Option<String>),
    /// Forget the conversation: the next prompt starts afresh.
    NewConversation,
    /// Where each provider's key comes from.
    Login,
    /// The key typed for a provider or agent, as named in `/login NAME` (never shown, never
    /// kept by the screen).
    LoginKey {
        /// The provider.
        target: String,
        /// The key.
        key: Zeroizing<String>,
    },
    /// The person is leaving.
    Quit,
}

/// How a transcript line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Ordinary text.
    Plain,
    /// Less important (echoes, hints).
    Dim,
    /// Something went well.
    Good,
    /// Something went wrong.
    Bad,
    /// Worth a look.
    Warn,
    /// The agent's own words and steps.
    Agent,
}

/// What the caller tells the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Lines for the transcript.
    Lines(Vec<(Tone, String)>),
    /// The job in focus moved on.
    Job(JobUpdate),
    /// The balance (spendable credits; `None` while unknown), the peers connected, and the
    /// jobs this identity has served and been paid for.
    Status {
        /// Spendable credits.
        balance: Option<u64>,
        /// Peers connected.
        peers: usize,
        /// Jobs served and collected for.
        served: u64,
    },
    /// The conversation carried into the next prompt: its turns, and how much of a job's
    /// prompt it takes (percent).
    Conversation {
        /// Turns remembered.
        turns: usize,
        /// Percent of the prompt limit they take.
        ctx: u8,
    },
    /// The tiers and their prices, for the `/model` picker.
    Tiers(Vec<(String, u64)>),
    /// The tier jobs pay for now.
    Tier {
        /// Its name.
        tier: String,
        /// Its price.
        price: Option<u64>,
    },
    /// How this node serves (`None`: it does not).
    Serving(Option<ServePanel>),
}

/// A step of the job in focus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobUpdate {
    /// A job asked for in an earlier session is followed again.
    Resumed {
        /// The job.
        job: String,
        /// Its prompt's first line.
        title: String,
    },
    /// The repository is being packed.
    Packing {
        /// Files, directories and links.
        entries: u64,
        /// Bytes of content.
        bytes: u64,
    },
    /// The package is sealed.
    Packed {
        /// Sealed bytes.
        bytes: u64,
    },
    /// The job was announced.
    Announced {
        /// Its id.
        job: String,
        /// Its price.
        price: u64,
    },
    /// An acceptor was chosen.
    Matched {
        /// Its short id.
        acceptor: String,
        /// Its agent.
        agent: String,
        /// The model.
        model: String,
    },
    /// Credits were reserved.
    Reserved {
        /// How many.
        amount: u64,
    },
    /// The acceptor fetched this much of the package.
    Uploading {
        /// Bytes fetched.
        sent: u64,
        /// Of this many.
        total: u64,
    },
    /// A step of the agent's work.
    Step(String),
    /// The result is here.
    Received {
        /// Files changed.
        files: u64,
        /// Lines added.
        insertions: u64,
        /// Lines removed.
        deletions: u64,
    },
    /// The result waits for the decision.
    Delivered(Box<Delivery>),
    /// The decision was written.
    Settled {
        /// Whether the result was applied.
        applied: bool,
        /// Credits paid.
        paid: u64,
        /// What happened, for people (conflicts, the files applied).
        detail: Vec<String>,
    },
    /// The job ended without a result to decide on (no offer, cancelled, failed).
    Ended {
        /// Whether it ended as the person wanted (a cancellation they asked for).
        tone: Tone,
        /// Why.
        message: String,
    },
}

/// A delivered result, for the diff viewer and the apply prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job: String,
    /// The price: applying pays it, not applying half.
    pub price: u64,
    /// The agent's last words.
    pub summary: String,
    /// The files, in the patch's order.
    pub files: Vec<DiffFile>,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
}

/// One file of a delivered result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffFile {
    /// Its path.
    pub path: String,
    /// Why it deserves a look before applying (a sensitive target), if it does.
    pub warning: Option<String>,
    /// Its part of the patch.
    pub diff: String,
}

/// The serving panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServePanel {
    /// The agents served, as people read them.
    pub agents: String,
    /// Jobs taken since serving began.
    pub accepted: u64,
    /// Jobs running now.
    pub running: usize,
    /// Credits collected for jobs since serving began.
    pub earned: u64,
    /// Jobs to take before stopping.
    pub max_jobs: Option<u64>,
    /// Whether it still offers (false: it finishes what it took, then stops).
    pub offering: bool,
}
