//! Command-line shape: every subcommand, flag and help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// ash: durable agents from a directory, and a network that shares idle machines.
#[derive(Debug, Parser)]
#[command(name = "ash", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
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
    Info(AgentDirArgs),
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
    /// Run one task-mode turn and print the answer
    ///
    /// Sends PROMPT to the agent in task mode, shows tool calls on stderr as they happen, and
    /// prints the final answer on stdout (or every event as NDJSON with --json). Exits 1 when
    /// the run fails.
    #[command(override_usage = "ash exec [OPTIONS] [DIR] <PROMPT>")]
    Exec(ExecArgs),
}

/// Durability and takeover settings shared by the serving commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Seconds a worker's claim on a run lasts without renewal; after a crash, the run
    /// continues once it expired
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub(crate) lease_ttl: u64,
    /// Commit with synchronous=NORMAL: survives a crash of ash, may lose the last commits on
    /// power loss; faster
    #[arg(long)]
    pub(crate) fast_sync: bool,
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
    /// SQLite file for runs and events [default: DIR/.ash/state/ash.db]
    #[arg(long, value_name = "PATH")]
    pub(crate) store: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) store_args: StoreArgs,
}

/// Arguments of `ash dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Agent project directory (holding agent/, or the agent files themselves)
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Talk to the ash server at this base URL instead of starting one (e.g. http://127.0.0.1:3000)
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Port for the local server (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// SQLite file for runs and events [default: DIR/.ash/state/ash.db]
    #[arg(long, value_name = "PATH")]
    pub(crate) store: Option<PathBuf>,
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
    /// Keep the run in this SQLite file instead of memory
    #[arg(long, value_name = "PATH")]
    pub(crate) store: Option<PathBuf>,
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
    /// The weather agent: prompt layers, a skill, a command tool, a sandbox
    Weather,
    /// agent.toml and system.md only
    Blank,
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
