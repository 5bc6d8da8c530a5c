//! Command-line shape: every subcommand, flag and help text.

use std::path::PathBuf;

use ash_sandbox::{BackendChoice, NetPolicy};
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
    /// Run commands in a sandbox, or see what isolation this machine supports
    ///
    /// Every process ash starts (agent tools, network jobs) runs in a sandbox: a private
    /// filesystem view, no network or an allow list, and limits. `ash sandbox exec` runs any
    /// command that way; `ash sandbox check` shows which backends work here. See docs/sandbox.md.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

/// Durability, takeover and sandbox settings shared by the serving commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Where tool processes run: auto (the strongest available), native, bwrap, podman,
    /// docker, or plain (no isolation)
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub(crate) sandbox: BackendChoice,
    /// Network of tool processes: full, none, or `allow:HOST[:PORT],…`
    #[arg(long, value_name = "MODE", default_value = "full", value_parser = parse_net)]
    pub(crate) tool_network: NetPolicy,
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
