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
