//! Command-line shape: every subcommand, flag and help text.

use std::path::PathBuf;

use ash_sandbox::{BackendChoice, NetPolicy};
use clap::{Parser, Subcommand, ValueEnum};

/// ash: durable agents from a directory, and a network that shares idle machines.
///
/// `ash` alone, in a terminal, opens the full-screen TUI: ask the network for work on this
/// repository, decide on the diff that comes back, serve other people's jobs, and watch the
/// balance (docs/tui.md).
#[derive(Debug, Parser)]
#[command(name = "ash", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Scaffold a new agent directory
    ///
    /// Writes a working agent in the nested layout (DIR/agent/). Refuses to touch a directory
    /// that already has files in it.
    Init(InitArgs),
    /// Validate an agent directory and show what it resolves to
    ///
    /// Prints prompt layers, skills, tools with their model-visible names and schemas, sandboxes,
    /// connections, schedules with their next fire time, subagents, and every diagnostic.
    /// Exits 1 when the agent has errors.
    Info(InfoArgs),
    /// Compile an agent directory into DIR/.ash/
    ///
    /// Writes .ash/manifest.json (format version, content hashes, resolved surface) and
    /// .ash/diagnostics.json. Two builds of the same tree are byte-for-byte identical. Writes
    /// nothing and exits 1 when the agent has errors.
    Build(AgentDirArgs),
    /// Show the model providers and try the agent's model
    ///
    /// Lists every provider (built in, from $ASH_HOME/config.toml, from the agent's providers
    /// tables) with its wire format, base URL and whether its key variable is set,
    /// and says whether the agent's `model` resolves. With --prompt, sends one message (with the
    /// agent's system prompt, without tools) and streams the answer: text on stdout; reasoning,
    /// tool calls and usage on stderr. Exits 1 when the model does not resolve or the call fails.
    Models(ModelsArgs),
    /// Serve an agent over HTTP
    ///
    /// Compiles the agent directory and serves the harness API under /.well-known/ash/v1/
    /// (message, runs/:runId/stream, runs/:runId, runs/:runId/cancel, info, health; see
    /// docs/api.md). Runs are durable: state lives in a SQLite file, and a server killed at any
    /// point continues every unfinished run when it starts again. Logs one line per request on
    /// stderr (ASH_LOG=warn to quiet it). Stops cleanly on Ctrl-C or SIGTERM.
    Start(StartArgs),
    /// Serve an agent and talk to it in a REPL
    ///
    /// Starts the server (as `ash start`, on a free port unless --port) and reads messages from
    /// the terminal: assistant text, tool calls and results render as they arrive; follow-ups
    /// continue the session; Ctrl-C cancels the running turn. Commands: /new, /help, /quit.
    /// Works with piped stdin too (one message per line). With --url, talks to a running server
    /// instead.
    Dev(DevArgs),
    /// Serve an agent to MCP clients over stdio
    ///
    /// Speaks the Model Context Protocol on stdin and stdout (logs go to stderr), offering the
    /// agent as one tool named after it that takes `message` and, to continue a conversation,
    /// `continuationToken`, and answers with the agent's reply, its continuationToken and run id.
    /// Progress notifications follow the run's events. Every call is a durable run in the
    /// store, like a message sent to `ash start` (which serves the same tool over streamable HTTP
    /// at /.well-known/ash/v1/mcp, behind the agent's auth). Configure it in an MCP client as
    /// the command `ash mcp /path/to/agent`.
    Mcp(McpArgs),
    /// Run one task-mode turn and print the answer
    ///
    /// Sends PROMPT to the agent in task mode, shows tool calls on stderr as they happen, and
    /// prints the final answer on stdout (or every event as NDJSON with --json). Exits 1 when
    /// the run fails.
    #[command(override_usage = "ash exec [OPTIONS] [DIR] <PROMPT>")]
    Exec(ExecArgs),
    /// List the agent's schedules and their next fire times, or run one now
    ///
    /// Schedules are `schedules/<name>.md` files with a 5-field `cron:` (UTC) and the prompt as
    /// their body. `ash start` fires each at its times as a task-mode run with the `schedule`
    /// principal, once per fire time even across restarts; a fire missed while no server ran
    /// runs late only if it is the most recent one and at most an hour old. `--run NAME` runs
    /// one now in this process, like `ash exec` (exits 1 when the run fails).
    Schedules(SchedulesArgs),
    /// Run commands in a sandbox, or see what isolation this machine supports
    ///
    /// Every process ash starts (agent tools, network jobs) runs in a sandbox: a private
    /// filesystem view, no network or an allow list, and limits. `ash sandbox exec` runs any
    /// command that way; `ash sandbox check` shows which backends work here. See docs/sandbox.md.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Manage the store of runs and events: bring its schema up to date
    ///
    /// SQLite files are brought up to date when they are opened. A PostgreSQL database shared
    /// by several nodes is created empty by the first `ash start`, but an older schema is only
    /// changed by `ash store migrate`, so that no running node meets a schema it does not know:
    /// stop the old nodes, migrate, start the new ones.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Create this machine's network identity and its profile entry
    ///
    /// Installs the network's genesis file (--genesis, the first time) as $ASH_HOME/genesis.toml,
    /// writes an Ed25519 identity and an X25519 sealing key to $ASH_HOME/keys/identity.key
    /// (mode 0600) and appends the profile entry (username, sealing key) to the local ledger,
    /// $ASH_HOME/ledger.db. Running it again prints the existing identity.
    Join(JoinArgs),
    /// Show this identity and its credit balance
    ///
    /// Spendable credits are what a reservation may use now: received mints plus earned, minus
    /// paid and locked, all from this identity's own verified log (zero if it was proven to
    /// equivocate). Read from the verified state the last import or write left; nothing is
    /// re-verified. With this home's `ash node` running, also its peers and when the ledger
    /// last brought news; with --network and no node running, a short-lived node looks for
    /// peers and catches up first.
    Status(StatusArgs),
    /// List an identity's ledger entries with the running balance
    ///
    /// Shows ID's log (default: this machine's identity), oldest first: each entry's effect on
    /// its spendable credits and the balance after it; refused entries with the rule they broke.
    History(HistoryArgs),
    /// Create a network: this machine becomes its mint authority
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Ask the network to work on this repository; apply the diff that comes back
    ///
    /// Packs the repository as `ash pack` does (git's ignore rules; secrets refused), announces
    /// the job (no prompt, no code), takes the first acceptor that offers within --wait,
    /// reserves the tier's price on the ledger, sends the sealed package and prompt to that
    /// acceptor only, shows its agent's steps as they come, and checks, screens and shows the
    /// diff. Then asks `Apply? (y=full price · n=half · 60s = half)`; --yes and --no-apply answer
    /// in advance. See docs/jobs.md.
    #[command(override_usage = "ash run [OPTIONS] <PROMPT>\n       ash run --resume JOB [OPTIONS]")]
    Run(RunArgs),
    /// Choose the model tier `ash run` pays for when --tier is not given
    ///
    /// The tier must be one the network's genesis prices (haiku, sonnet, opus, codex by
    /// default; `claude-haiku`, `claude-sonnet` and `claude-opus` are accepted too). Kept in
    /// $ASH_HOME/tier.
    Set(SetArgs),
    /// List the jobs this home asked for and the jobs it ran for others
    ///
    /// Newest first: the job, the side (asked or ran), its state, the tier and price, what was
    /// paid or collected, the other party, and the first line of the prompt (asked side only).
    Jobs(JsonArgs),
    /// Run this machine's node and do other people's jobs for credits
    ///
    /// A node as `ash node` runs it that also offers to run announced jobs with ash's own
    /// coding agent, on the model given by --model, each in a fresh workspace under an isolating
    /// sandbox (nothing of $ASH_HOME or your home visible, no network for its tools, limits).
    /// Prints each job's steps. On the network's mint authority's home it mints signup bonuses
    /// too. See docs/jobs.md.
    Serve(ServeArgs),
    /// Store the API key an agent serves jobs with, after checking it with the provider
    ///
    /// `claude` and `anthropic` store an Anthropic key, `codex` and `openai` an OpenAI key, in
    /// $ASH_HOME/keys/ (0600). The key is taken from ANTHROPIC_API_KEY / OPENAI_API_KEY when
    /// set, else from stdin (--stdin) or typed on the terminal. Subscription sign-ins (Claude
    /// Pro/Max tokens, ChatGPT sign-ins) are refused: the providers allow them for their
    /// holder's own use only. The key never enters a job's sandbox: agents reach the provider
    /// through ash, which adds it on the way out. Without an argument, shows where each key
    /// comes from.
    Login(LoginArgs),
    /// Run this machine's network node in the foreground
    ///
    /// Listens on TCP and QUIC on every interface (port 4517 unless --port or --listen), finds
    /// peers of this network on the local network (mDNS) and through --bootstrap addresses, and
    /// serves until Ctrl-C or SIGTERM. Prints each address it listens on: give one to others as
    /// their --bootstrap. See docs/network.md.
    Node(NodeArgs),
    /// List the peers of this network that are online
    ///
    /// Starts a short-lived node (mDNS and --bootstrap), waits until peers are found or --wait
    /// passes, and lists them: username and spendable balance from the local ledger (verified,
    /// never what the peer says), the agents each offers, its addresses and round-trip time.
    Peers(PeersArgs),
    /// Verify, export and import ledger bundles
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Mint authority commands: create the authority key, mint credits
    #[command(subcommand)]
    Admin(AdminCommand),
    /// See what a package of a directory would hold; seal, open and share packages
    ///
    /// A package is what `ash run` sends to a peer: the files git would list (`.gitignore`,
    /// `.git/info/exclude`, the global excludes file, negations; tracked files always), minus
    /// secrets that never leave (`.env*`, private keys, credential files, `.git/`) and the
    /// root's `.ashignore`; tar + zstd, encrypted to one recipient. See docs/package-format.md.
    #[command(subcommand)]
    Pack(PackCommand),
    /// Apply a result diff (sealed or plain) to a tree, all of it or nothing
    ///
    /// Screens every path first (no `.git/`, no `..`, no absolute paths, no symlinks that
    /// leave the tree, no submodules), checks that the whole patch applies, and only then
    /// writes it. Conflicts are listed per file and nothing changes. A sealed diff is opened
    /// with this machine's identity.
    Apply(ApplyArgs),
}

/// `ash pack …`
#[derive(Debug, Subcommand)]
pub(crate) enum PackCommand {
    /// List what a package of DIR would hold, what is left out and why, and likely secrets
    List(PackListArgs),
    /// Seal a package of DIR for one recipient
    ///
    /// Refuses if the secret scan finds likely secrets (tokens, private keys) in included
    /// files: exclude them in .ashignore, or pass --allow-secrets to send them anyway.
    Create(PackCreateArgs),
    /// Open a package sealed to this machine's identity into a new directory
    ///
    /// Verifies the sender's signature and every chunk, and refuses traversal, absolute paths,
    /// links leaving the tree, hard links, devices and size, count or compression-ratio bombs
    /// before anything is written outside --into; on any error the directory is removed. Then
    /// records the tree as unpacked (git in an isolating sandbox, in a git directory under
    /// $ASH_HOME/workspaces) so that `ash pack result` can send back what changed.
    Open(PackOpenArgs),
    /// Seal the changes made in a directory `ash pack open` unpacked, for its sender
    ///
    /// The diff is taken against the tree as it was unpacked (recorded by `ash pack open` in a
    /// git directory of ash's own, outside the tree), with git running in an isolating sandbox
    /// because the tree is not yours; the sealed result goes to the package's sender (or
    /// --to / --to-key), bound to the package's job, for `ash apply`.
    Result(PackResultArgs),
    /// Print this identity's sealing key, for others to seal packages to (--to-key)
    Key(JsonArgs),
}

/// Arguments of `ash pack list`.
#[derive(Debug, clap::Args)]
pub(crate) struct PackListArgs {
    /// The tree (default: the current directory)
    #[arg(value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash pack create`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("recipient").required(true).args(["to", "to_key"]))]
pub(crate) struct PackCreateArgs {
    /// The tree (default: the current directory)
    #[arg(value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Recipient by node id; its sealing key comes from its profile in the local ledger
    #[arg(long, value_name = "NODE_ID")]
    pub(crate) to: Option<String>,
    /// Recipient by a file holding its `ash pack key` output
    #[arg(long, value_name = "FILE")]
    pub(crate) to_key: Option<PathBuf>,
    /// Where to write the sealed package
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// The job id to bind (32 hex digits; default: random)
    #[arg(long, value_name = "HEX")]
    pub(crate) job: Option<String>,
    /// Send even though the secret scan found likely secrets
    #[arg(long)]
    pub(crate) allow_secrets: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash pack open`.
#[derive(Debug, clap::Args)]
pub(crate) struct PackOpenArgs {
    /// The sealed package
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// A new (or empty) directory to unpack into
    #[arg(long, value_name = "DIR")]
    pub(crate) into: PathBuf,
    /// Refuse unless it was sealed by this node id
    #[arg(long, value_name = "NODE_ID")]
    pub(crate) from: Option<String>,
    /// Most bytes of file content (e.g. 2GiB)
    #[arg(long, value_name = "SIZE", default_value = "2GiB", value_parser = parse_size)]
    pub(crate) max_bytes: u64,
    /// Most entries
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub(crate) max_entries: u64,
    /// Most decompressed bytes per compressed byte
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) max_ratio: u64,
    /// Where git runs to record the tree as unpacked (for `ash pack result`): auto, native or
    /// bwrap; never plain
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub(crate) sandbox: BackendChoice,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash pack result`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("recipient").args(["to", "to_key"]))]
pub(crate) struct PackResultArgs {
    /// The directory `ash pack open` unpacked (default: the current directory)
    #[arg(value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Where to write the sealed result
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// Seal for this node id instead of the package's sender (its profile in the local ledger)
    #[arg(long, value_name = "NODE_ID")]
    pub(crate) to: Option<String>,
    /// Seal for the holder of this `ash pack key` output instead of the package's sender
    #[arg(long, value_name = "FILE")]
    pub(crate) to_key: Option<PathBuf>,
    /// Largest diff (e.g. 100MiB; at most 1GiB)
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub(crate) max_bytes: u64,
    /// Where git runs: auto (the strongest available), native or bwrap; never plain
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub(crate) sandbox: BackendChoice,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// The diff: a sealed result (opened with this identity) or a plain `git diff --binary`
    #[arg(value_name = "PATCH")]
    pub(crate) patch: PathBuf,
    /// The tree to change (default: the current directory)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) into: PathBuf,
    /// Only check that it applies; change nothing
    #[arg(long)]
    pub(crate) check: bool,
    /// Merge where the patch does not apply cleanly, leaving conflict markers (the tree must
    /// be a git repository's root)
    #[arg(long = "3way")]
    pub(crate) three_way: bool,
    /// Refuse a sealed diff unless it was sealed by this node id
    #[arg(long, value_name = "NODE_ID")]
    pub(crate) from: Option<String>,
    /// Write files that run code or change how git treats files (CI, build and package
    /// scripts, hooks, editor tasks, new executables) without asking
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Just `--json`.
#[derive(Debug, clap::Args)]
pub(crate) struct JsonArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ash network …`
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCommand {
    /// Write a new network's genesis file, with this machine as its mint authority
    ///
    /// Creates the authority key if there is none ($ASH_HOME/keys/authority.key), writes the
    /// genesis (default NAME.genesis.toml here), installs it, and prints its path and network
    /// id. Give the file to everyone who joins: `ash join --network FILE --username NAME`.
    Create(NetworkCreateArgs),
}

/// Arguments of `ash network create`.
#[derive(Debug, clap::Args)]
pub(crate) struct NetworkCreateArgs {
    /// The network's name: 1–64 of a-z 0-9 . _ -
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Where to write the genesis [default: NAME.genesis.toml in the current directory]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Credits the authority's node gives each new identity (part of the network's id)
    #[arg(long, value_name = "CREDITS", default_value_t = 100)]
    pub(crate) signup_bonus: u64,
    #[command(flatten)]
    pub(crate) terms: NetworkTermsArgs,
    /// A node to ask first, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable; not part of the id)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash node`.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// Multiaddr to listen on (repeatable; default TCP and QUIC on every interface at --port)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<String>,
    /// Port for the default listen addresses (0: any free port)
    #[arg(long, value_name = "PORT", default_value_t = 4517)]
    pub(crate) port: u16,
    /// A peer to ask first, `/ip4/…/tcp/…/p2p/<peer id>` as another node prints it (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Do not look for peers on the local network
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// Relay for peers that cannot reach each other directly, and answer DHT queries: for a
    /// machine others can reach at its listen addresses
    #[arg(long)]
    pub(crate) relay: bool,
    /// Print JSON lines instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// What the agent is to do
    #[arg(value_name = "PROMPT", required_unless_present = "resume")]
    pub(crate) prompt: Option<String>,
    /// Take up a job this home asked for whose `ash run` ended early (killed, or cut off):
    /// follow it, fetch its result, and decide (`ash jobs` lists them)
    #[arg(long, value_name = "JOB", conflicts_with = "prompt")]
    pub(crate) resume: Option<String>,
    /// The repository to send (default: the current directory)
    #[arg(long, short = 'C', value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
    /// The model tier to pay for (the network's genesis prices each) [default: sonnet]
    #[arg(long, value_name = "TIER")]
    pub(crate) tier: Option<String>,
    /// The agents accepted (repeatable): builtin, claude, codex
    #[arg(long = "agent", value_name = "KIND", default_value = "builtin")]
    pub(crate) agents: Vec<String>,
    /// Answer the agent's model calls here, with your own provider and key (`ash login`),
    /// and pay the acceptor for machine time only (the network's `machine` price). Takes one
    /// --agent; the model is --model
    #[arg(long)]
    pub(crate) route: bool,
    /// With --route: the model that answers (`provider/model`) [default: claude:
    /// anthropic/claude-sonnet-4-5, codex: openai/gpt-5.5]
    #[arg(long, value_name = "PROVIDER/MODEL", requires = "route")]
    pub(crate) model: Option<String>,
    /// With --route: most model calls answered on your key
    #[arg(long, value_name = "N", default_value_t = 200, requires = "route")]
    pub(crate) max_calls: u64,
    /// With --route: most tokens (input and output) spent on your key; later calls are refused
    #[arg(long, value_name = "N", default_value_t = 2_000_000, requires = "route")]
    pub(crate) max_tokens: u64,
    /// Refuse to pay more than this many credits
    #[arg(long, value_name = "CREDITS")]
    pub(crate) max_price: Option<u64>,
    /// Apply the result without asking (pays the full price)
    #[arg(long, short = 'y', conflicts_with = "no_apply")]
    pub(crate) yes: bool,
    /// Do not apply the result (pays half the price)
    #[arg(long)]
    pub(crate) no_apply: bool,
    /// How long to wait for an acceptor's offer
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) wait: std::time::Duration,
    /// Minutes the acceptor has to deliver (the reservation's deadline)
    #[arg(long, value_name = "MINUTES", default_value_t = 30)]
    pub(crate) max_run_minutes: u64,
    /// Send files that look like secrets anyway
    #[arg(long)]
    pub(crate) allow_secrets: bool,
    /// A peer to ask first (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Do not look for peers on the local network
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// Print one JSON document at the end instead of progress lines
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// claude, codex, anthropic or openai
    #[arg(value_name = "AGENT|PROVIDER")]
    pub(crate) target: Option<String>,
    /// Read the key from stdin
    #[arg(long)]
    pub(crate) stdin: bool,
    /// Store the key without asking the provider whether it is good
    #[arg(long)]
    pub(crate) no_check: bool,
}

/// Arguments of `ash set`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetArgs {
    /// The tier
    #[arg(value_name = "TIER")]
    pub(crate) tier: String,
}

/// Arguments of `ash serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    /// The model the built-in agent runs on (`provider/model`), or `scripted` for the offline
    /// demo (`scripted:FILE` replays a conversation of your own, one JSON object per line)
    #[arg(long, value_name = "MODEL")]
    pub(crate) model: Option<String>,
    /// The agents offered: builtin, claude, codex (repeatable or comma-separated); claude and
    /// codex must be installed and have an API key (`ash login`)
    #[arg(long, value_name = "KIND", default_value = "builtin", value_delimiter = ',')]
    pub(crate) agents: Vec<String>,
    /// The model an outside agent runs for a tier, over its default (repeatable): claude runs
    /// claude-haiku-4-5, claude-sonnet-4-5 and claude-opus-4-5 for haiku, sonnet and opus;
    /// codex runs gpt-5.5 for codex
    #[arg(long, value_name = "AGENT:TIER=MODEL")]
    pub(crate) tier_model: Vec<String>,
    /// Do not serve routed jobs (whose model calls go back to the requester, who answers them
    /// with its own key; priced as machine time). Without a key, an agent serves only those
    #[arg(long)]
    pub(crate) no_routed: bool,
    /// The tiers served (repeatable; default: every tier the network prices)
    #[arg(long = "tier", value_name = "TIER")]
    pub(crate) tiers: Vec<String>,
    /// Jobs run at once
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub(crate) max_concurrent: usize,
    /// Stop offering after this many jobs
    #[arg(long, short = 'n', value_name = "N")]
    pub(crate) jobs: Option<u64>,
    /// Largest sealed package taken, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub(crate) max_package_mb: u64,
    /// Longest agent run, in minutes
    #[arg(long, value_name = "MINUTES", default_value_t = 20)]
    pub(crate) max_run_minutes: u64,
    /// Sandbox backend for the agent's tools and git (never plain)
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub(crate) sandbox: BackendChoice,
}

/// Arguments of `ash admin serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminServeArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    /// Credits per signup [default: the genesis's `signup_bonus`, else 100]
    #[arg(long, value_name = "CREDITS")]
    pub(crate) signup_bonus: Option<u64>,
    /// Signups minted per minute at most
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub(crate) signups_per_minute: u32,
}

/// Arguments of `ash status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// With no `ash node` running here, look for peers and catch up with them first
    #[arg(long)]
    pub(crate) network: bool,
    /// A peer to ask first, for --network (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Do not look for peers on the local network
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// How long --network looks for peers, at most
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub(crate) wait: std::time::Duration,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash peers`.
#[derive(Debug, clap::Args)]
pub(crate) struct PeersArgs {
    /// A peer to ask first, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Do not look for peers on the local network
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// How long to look for peers, at most (e.g. 5s)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub(crate) wait: std::time::Duration,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash join`.
#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    /// The network's genesis file (from its mint authority); installed as
    /// $ASH_HOME/genesis.toml, needed the first time
    #[arg(long, alias = "network", value_name = "FILE")]
    pub(crate) genesis: Option<PathBuf>,
    /// Your username: 3–32 of a-z 0-9 _ - (shown to peers; not unique)
    #[arg(long, short = 'u', value_name = "NAME")]
    pub(crate) username: Option<String>,
    /// A peer to ask first, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Do not look for peers on the local network
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// How long to wait for the signup bonus from the mint authority's node
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub(crate) wait: std::time::Duration,
    /// The invite code a mint authority gave you, on a network that admits by invitation
    #[arg(long, value_name = "CODE")]
    pub(crate) invite: Option<String>,
    /// Do not go online: the signup bonus arrives the next time a node of this identity runs
    #[arg(long)]
    pub(crate) offline: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash history`.
#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// Whose history (a node id, 64 hex digits); default: this machine's identity
    #[arg(value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ash ledger …`
#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Verify a bundle file and print every balance and every refused entry
    ///
    /// Judges every entry by the rules of docs/ledger-format.md (signatures, network, chains,
    /// mints by the genesis's authorities, funding, receipts, decisions, collects) without
    /// trusting any checkpoint, and reports each checkpoint that disagrees. Prints each
    /// identity's balance and each refused or waiting entry with the rule or what it waits for.
    /// Exits 1 unless everything is valid and nobody equivocated.
    Verify(LedgerVerifyArgs),
    /// Write the stored ledger (or some logs of it and what they depend on) to a bundle file
    Export(LedgerExportArgs),
    /// Verify a bundle file's entries and store the ones that belong
    ///
    /// Only entries signed by their author, of this network and in place in their log are
    /// stored, each with its verdict; entries waiting for their predecessor are kept in a
    /// bounded quarantine; the rest is refused and reported. Mints made out to this identity are
    /// then received into its own log.
    Import(LedgerImportArgs),
}

/// Arguments of `ash ledger verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct LedgerVerifyArgs {
    /// The bundle file
    #[arg(value_name = "BUNDLE")]
    pub(crate) bundle: PathBuf,
    /// The network's genesis file [default: $ASH_HOME/genesis.toml]
    #[arg(long, value_name = "FILE")]
    pub(crate) genesis: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash ledger export`.
#[derive(Debug, clap::Args)]
pub(crate) struct LedgerExportArgs {
    /// Only these identities' logs, plus the logs their entries depend on; default: everything
    #[arg(value_name = "ID")]
    pub(crate) ids: Vec<String>,
    /// Write to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// Arguments of `ash ledger import`.
#[derive(Debug, clap::Args)]
pub(crate) struct LedgerImportArgs {
    /// The bundle file
    #[arg(value_name = "BUNDLE")]
    pub(crate) bundle: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ash admin …`
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Create the mint authority key (or print the existing one)
    ///
    /// Writes $ASH_HOME/keys/authority.key (mode 0600) and prints its node id, to list in a
    /// network's genesis (`ash admin genesis`).
    Keygen(JsonArgs),
    /// Write a new network's genesis file
    ///
    /// The genesis names the network, its mint authorities (default: this machine's authority
    /// key), its checkpoint witnesses and quorum, and the claim window; its hash is the network
    /// id every ledger signature binds. Installed as $ASH_HOME/genesis.toml; give the file to
    /// every participant (`ash join --genesis FILE`).
    Genesis(AdminGenesisArgs),
    /// Run the mint authority's node: the signup bonus for every new identity, over the network
    ///
    /// A node like `ash node`, speaking with the authority key, that also mints the signup
    /// bonus (once per identity, at most --signups-per-minute) for every identity with a
    /// profile it learns of that paid the network's signup cost; the newcomer's node takes it
    /// into its log by itself. Needs this machine's authority key (`ash admin keygen`) to be
    /// one of the genesis's authorities. It holds this home's ledger: to be online as your own
    /// identity too, run `ash node` from another ASH_HOME.
    Serve(AdminServeArgs),
    /// Mint credits to an identity (mint authority only)
    ///
    /// Appends a mint entry to the authority's log in the local ledger, after verifying it. The
    /// recipient receives it into its own log when it imports the authority's entries
    /// (`ash ledger export`, then `ash ledger import`); one signup mint counts per identity.
    Mint(AdminMintArgs),
    /// Issue invite codes, on a network whose signup cost is an invite
    ///
    /// Each code admits one identity to the signup bonus: the newcomer runs
    /// `ash join --invite CODE`, and this authority's node (`ash admin serve`) redeems it and
    /// mints. Only the codes' hashes are kept ($ASH_HOME/admin/invites); a running node sees
    /// new codes at once.
    Invite(AdminInviteArgs),
    /// Sign checkpoints of identities' verified state (witness only)
    ///
    /// For each identity (default: every one not proven to equivocate), signs its state at its
    /// latest judged entry with the authority key, which the genesis must list as a witness.
    /// Peers then verify that identity from the checkpoint instead of from its whole history.
    Checkpoint(AdminCheckpointArgs),
}

/// What a new identity pays for its signup bonus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SignupCostArg {
    /// Nothing: every identity with a profile receives it
    None,
    /// A single-use code from a mint authority (`ash admin invite`)
    Invite,
    /// A proof-of-work stamp `ash join` computes (--pow-bits)
    Pow,
}

/// A network's terms beyond its authorities, all part of its id.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetworkTermsArgs {
    /// What a new identity pays for its signup bonus, so that identities cost something
    #[arg(long, value_enum, value_name = "COST", default_value = "none")]
    pub(crate) signup_cost: SignupCostArg,
    /// Leading zero bits of the proof-of-work stamp (each bit doubles the work; 20 takes about
    /// a second) [default: 20]
    #[arg(long, value_name = "BITS")]
    pub(crate) pow_bits: Option<u8>,
    /// Credits per job of a model tier, `TIER=CREDITS` (repeatable; replaces the default
    /// haiku=2 sonnet=6 opus=30 codex=2)
    #[arg(long, value_name = "TIER=CREDITS")]
    pub(crate) price: Vec<String>,
}

/// Arguments of `ash admin invite`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminInviteArgs {
    /// How many codes
    #[arg(long, short = 'n', value_name = "N", default_value_t = 1)]
    pub(crate) count: usize,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash admin genesis`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminGenesisArgs {
    /// The network's name: 1–64 of a-z 0-9 . _ -
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,
    /// A mint authority's node id (repeatable) [default: this machine's authority key]
    #[arg(long, value_name = "ID")]
    pub(crate) authority: Vec<String>,
    /// A checkpoint witness's node id (repeatable) [default: the authorities]
    #[arg(long, value_name = "ID")]
    pub(crate) witness: Vec<String>,
    /// Witness signatures a checkpoint needs [default: a majority]
    #[arg(long, value_name = "N")]
    pub(crate) quorum: Option<u16>,
    /// How long after a job's deadline a payment may be collected, in hours [default: 168]
    #[arg(long, value_name = "HOURS")]
    pub(crate) claim_window_hours: Option<u64>,
    /// Credits the authority's node gives each new identity (part of the network's id)
    #[arg(long, value_name = "CREDITS")]
    pub(crate) signup_bonus: Option<u64>,
    #[command(flatten)]
    pub(crate) terms: NetworkTermsArgs,
    /// A node to ask first, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable; not part of the id)
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Also write the genesis to FILE
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash admin checkpoint`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminCheckpointArgs {
    /// Whose state (node ids); default: every identity not proven to equivocate
    #[arg(value_name = "ID")]
    pub(crate) ids: Vec<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash admin mint`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminMintArgs {
    /// Who receives the credits (a node id, 64 hex digits)
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// How many credits (1 to 10^12)
    #[arg(value_name = "AMOUNT")]
    pub(crate) amount: u64,
    /// Why, for people (at most 200 bytes)
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// This is the identity's one signup bonus
    #[arg(long)]
    pub(crate) signup: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

/// Durability, takeover and sandbox settings shared by the serving commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Where tool processes run: auto (the strongest available), native, bwrap, podman,
    /// docker, or plain (no isolation)
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub(crate) sandbox: BackendChoice,
    /// Network of tool processes: none (the default: tools reach nothing, not even this
    /// server), `allow:HOST[:PORT],…` (only those, through a filtering proxy), or full (the
    /// host's network, loopback included)
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = parse_net)]
    pub(crate) tool_network: NetPolicy,
    /// Seconds a worker's claim on a run lasts without renewal; after a crash, the run
    /// continues once it expired
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub(crate) lease_ttl: u64,
    /// Commit with synchronous=NORMAL: survives a crash of ash, may lose the last commits on
    /// power loss; faster
    #[arg(long)]
    pub(crate) fast_sync: bool,
    /// Run an agent that configures items this runtime does not execute yet (named sandboxes,
    /// connections, HTTP tools, subagents, schedules, cost and session-time limits) without
    /// them; each ignored item is printed at every start. Without it such an agent is refused
    #[arg(long)]
    pub(crate) allow_unsupported: bool,
    /// Start an empty store even though session workspaces beside it show that one existed
    /// (without it, a missing store is an error: it was deleted or moved, and its runs with it)
    #[arg(long)]
    pub(crate) new_store: bool,
    /// Where session workspaces, named sandboxes and MCP servers' directories live on this
    /// machine [default: beside a SQLite store; DIR/.ash/state with PostgreSQL]
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// With PostgreSQL: most database connections this process opens
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub(crate) pool_size: usize,
}

/// Arguments of `ash start`.
#[derive(Debug, clap::Args)]
pub(crate) struct StartArgs {
    /// Agent project directory (holding agent/, or the agent files themselves)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Port to listen on (0 picks a free one; the log line names it)
    #[arg(long, default_value_t = 3000)]
    pub(crate) port: u16,
    /// Where runs and events are kept: a SQLite file, or a `postgres://…` URL of a database
    /// that several `ash start` nodes share [default: ASH_STORE, else DIR/.ash/state/ash.db]
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) store: Option<String>,
    /// Connections open at once (at most the open-file limit less a reserve); beyond, a client
    /// gets `503 too_many_connections`
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub(crate) max_connections: usize,
    /// Seconds a client has to send a request's headers, or its body; also how long a
    /// kept-alive connection may idle
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub(crate) request_timeout: u64,
    /// Seconds a response may make no progress (a client that stopped reading) before its
    /// connection is closed; streams resume by `startIndex`
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) stall_timeout: u64,
    /// Event streams open at once; beyond, a reader gets `503 too_many_streams`
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub(crate) max_streams: usize,
    #[command(flatten)]
    pub(crate) store_args: StoreArgs,
}

/// Arguments of `ash dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Agent project directory (holding agent/, or the agent files themselves), or the base
    /// URL of a running ash server (http://… or https://…) to talk to instead of starting one
    #[arg(default_value = ".", value_name = "DIR|URL")]
    pub(crate) target: String,
    /// Talk to the ash server at this base URL instead of starting one (e.g. http://127.0.0.1:3000)
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Authenticate with HTTP Basic as USER; the password comes from ASH_PASSWORD, else from a
    /// prompt on the terminal (never from the command line)
    #[arg(long, value_name = "USER", conflicts_with = "token")]
    pub(crate) basic: Option<String>,
    /// Authenticate with a bearer token from ASH_TOKEN, else from a prompt on the terminal
    /// (never from the command line)
    #[arg(long)]
    pub(crate) token: bool,
    /// Port for the local server (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Where runs and events are kept: a SQLite file, or a `postgres://…` URL
    /// [default: DIR/.ash/state/ash.db]
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) store: Option<String>,
    #[command(flatten)]
    pub(crate) store_args: StoreArgs,
}

/// Arguments of `ash mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct McpArgs {
    /// Agent project directory (holding agent/, or the agent files themselves)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Where runs and events are kept: a SQLite file, or a `postgres://…` URL
    /// [default: DIR/.ash/state/ash.db]
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) store: Option<String>,
    #[command(flatten)]
    pub(crate) store_args: StoreArgs,
}

/// Arguments of `ash exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// `[DIR] PROMPT`: the agent project directory (default: the current one) and the task
    #[arg(num_args = 1..=2, required = true, value_name = "ARGS")]
    pub(crate) args: Vec<String>,
    /// Print every event as one JSON line on stdout (see docs/api.md)
    #[arg(long)]
    pub(crate) json: bool,
    /// Keep the run in this SQLite file (or `postgres://…` database) instead of memory
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) store: Option<String>,
    #[command(flatten)]
    pub(crate) store_args: StoreArgs,
}

/// Arguments of `ash schedules`.
#[derive(Debug, clap::Args)]
pub(crate) struct SchedulesArgs {
    /// Agent project directory (holding agent/, or the agent files themselves)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Print JSON on stdout: the list, or (with --run) every event as one line
    #[arg(long)]
    pub(crate) json: bool,
    /// How many next fire times to list per schedule
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(usize))]
    pub(crate) count: usize,
    /// Run this schedule now instead of listing
    #[arg(long, value_name = "NAME")]
    pub(crate) run: Option<String>,
    /// With --run: keep the run in this SQLite file (or `postgres://…` database) instead of
    /// memory
    #[arg(long, value_name = "PATH|URL", requires = "run")]
    pub(crate) store: Option<String>,
    #[command(flatten)]
    pub(crate) store_args: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Directory to create (must be empty or missing)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Which starting point to scaffold
    #[arg(long, value_enum, default_value_t = Template::Weather)]
    pub(crate) template: Template,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Template {
    /// The weather agent: prompt layers, a skill, a command tool, a named sandbox, a subagent
    Weather,
    /// agent.toml and system.md only
    Blank,
    /// ash's own coding agent (file tools, git and checks skills, a scripted offline demo)
    Coder,
}

/// Arguments of the commands that read an agent directory (`info`, `build`).
#[derive(Debug, clap::Args)]
pub(crate) struct AgentDirArgs {
    /// Agent project directory (holding agent/, or the agent files themselves)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Print one JSON document on stdout instead of text (see docs/cli-json.md)
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `ash info`.
#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    pub(crate) agent: AgentDirArgs,
    /// Start the agent's MCP servers (stdio ones in the sandbox) and show the tools they offer
    /// with their descriptions and schemas, or why each is unavailable; then stop them. Without
    /// it, nothing is started or contacted
    #[arg(long)]
    pub(crate) connect: bool,
    /// Sandbox backend of the servers --connect starts: auto (the strongest available, never
    /// none), native, bwrap, podman, docker, or plain (no isolation)
    #[arg(long, default_value = "auto", value_parser = parse_backend, requires = "connect")]
    pub(crate) sandbox: BackendChoice,
}

/// Arguments of `ash models`.
#[derive(Debug, clap::Args)]
pub(crate) struct ModelsArgs {
    /// Agent project directory (holding agent/, or the agent files themselves)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Send this message to the agent's model and stream the answer
    #[arg(long, value_name = "TEXT")]
    pub(crate) prompt: Option<String>,
    /// Print JSON: the summary as one document, or with --prompt one model event per line
    #[arg(long)]
    pub(crate) json: bool,
}

impl ExecArgs {
    /// The project directory and the prompt.
    pub(crate) fn dir_and_prompt(&self) -> (PathBuf, &str) {
        match self.args.as_slice() {
            [dir, prompt] => (PathBuf::from(dir), prompt.as_str()),
            [prompt] => (PathBuf::from("."), prompt.as_str()),
            _ => (PathBuf::from("."), ""),
        }
    }
}

/// `ash store …`
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Bring a store's schema to this ash's version (and say which it was)
    Migrate(StoreMigrateArgs),
}

/// Arguments of `ash store migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreMigrateArgs {
    /// The store: a SQLite file or a `postgres://…` URL [default: ASH_STORE]
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) store: Option<String>,
    /// Print one JSON object: {store, from, to}
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ash sandbox …`
#[derive(Debug, Subcommand)]
pub(crate) enum SandboxCommand {
    /// Run a command under a sandbox policy
    ///
    /// The command sees the system read-only, the working directory read-only (writable with
    /// --writable .), a private /tmp, no network unless --net says otherwise, and none of
    /// $HOME or $ASH_HOME. Its exit code becomes ash's; output is captured (capped, secrets
    /// redacted) and printed when it ends. Piped stdin is passed on. With --json, prints one
    /// object with status, limit hit, output and every proxy decision.
    #[command(override_usage = "ash sandbox exec [OPTIONS] -- <COMMAND>...")]
    Exec(Box<SandboxExecArgs>),
    /// Show which backends and kernel features work on this machine
    ///
    /// Runs `true` through every backend (native, bwrap, podman, docker, plain) and reports
    /// whether it worked and how long it took, the Landlock ABI, seccomp, user namespaces, the
    /// usable cgroup controllers, and what `auto` picks.
    Check(SandboxCheckArgs),
}

/// Arguments of `ash sandbox exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct SandboxExecArgs {
    /// Start from this policy file (TOML; see docs/sandbox.md); the flags below add to it
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Network: none, full, or `allow:HOST[:PORT],…` (through ash's filtering proxy)
    #[arg(long, value_name = "MODE", value_parser = parse_net)]
    pub(crate) net: Option<NetPolicy>,
    /// Make DIR visible and writable (repeatable)
    #[arg(long, short = 'w', value_name = "DIR")]
    pub(crate) writable: Vec<PathBuf>,
    /// Make DIR visible read-only (repeatable)
    #[arg(long, value_name = "DIR")]
    pub(crate) read_only: Vec<PathBuf>,
    /// Working directory [default: the current one]
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<PathBuf>,
    /// auto, native, bwrap, podman, docker or plain
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub(crate) backend: BackendChoice,
    /// Image for the podman and docker backends
    #[arg(long, value_name = "IMAGE")]
    pub(crate) image: Option<String>,
    /// Wall-clock limit, e.g. 30s, 5m [default: 10m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// Memory limit of the whole sandbox, e.g. 512M
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memory: Option<u64>,
    /// Most processes alive at once
    #[arg(long, value_name = "N")]
    pub(crate) pids: Option<u64>,
    /// Pass variable NAME from this environment, or set NAME=VALUE (repeatable); PATH, LANG,
    /// LC_ALL, TZ and TERM pass by default
    #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]")]
    pub(crate) env: Vec<String>,
    /// Pass variable NAME from this environment as a secret: the command gets it, captured
    /// output shows `[redacted:NAME]` instead (repeatable)
    #[arg(long = "secret", value_name = "NAME")]
    pub(crate) secrets: Vec<String>,
    /// Print one JSON object instead of the command's output (see docs/cli-json.md)
    #[arg(long)]
    pub(crate) json: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

/// Arguments of `ash sandbox check`.
#[derive(Debug, clap::Args)]
pub(crate) struct SandboxCheckArgs {
    /// Image to try the podman and docker backends with
    #[arg(long, value_name = "IMAGE")]
    pub(crate) image: Option<String>,
    /// Print JSON (see docs/cli-json.md)
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_backend(text: &str) -> Result<BackendChoice, String> {
    text.parse()
}

/// `none`, `full`, or `allow:HOST[:PORT],…`.
pub(crate) fn parse_net(text: &str) -> Result<NetPolicy, String> {
    match text {
        "none" => Ok(NetPolicy::None),
        "full" => Ok(NetPolicy::Full),
        other => {
            let Some(list) = other.strip_prefix("allow:") else {
                return Err("expected none, full, or allow:HOST[:PORT],…".into());
            };
            let rules = list
                .split(',')
                .map(|h| h.parse().map_err(|e: ash_sandbox::PolicyError| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(NetPolicy::Allow(rules))
        }
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    ash_sandbox::parse_duration(text).map_err(str::to_owned)
}

fn parse_size(text: &str) -> Result<u64, String> {
    ash_sandbox::parse_bytes(text).map_err(str::to_owned)
}
