//! Subcommands. Each module has a `run` taking its parsed arguments.

mod build;
mod dev;
mod exec;
mod harness;
mod info;
mod init;
mod jobs;
mod ledger;
mod mcp;
mod models;
mod network;
mod pack;
mod render;
mod sandbox;
mod schedules;
mod start;
mod store;
mod tui;

pub(crate) use jobs::cut_text;
pub(crate) use ledger::write_private;
pub(crate) use start::runtime;

use crate::cli::{Cli, Command};

/// How a command that ran ended.
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran and the answer is no (e.g. the agent has errors).
    Failure,
    /// This exit code (a sandboxed command's own).
    Code(u8),
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let Some(command) = cli.command else {
        // `ash` alone: the TUI in a terminal; elsewhere the help, as a usage error.
        use std::io::IsTerminal as _;
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            return tui::open();
        }
        let help = <Cli as clap::CommandFactory>::command().render_long_help();
        crate::output::note(&help.to_string());
        return Ok(Outcome::Code(2));
    };
    match command {
        Command::Init(args) => init::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Build(args) => build::run(&args),
        Command::Models(args) => models::run(&args),
        Command::Start(args) => start::run(&args),
        Command::Dev(args) => dev::run(&args),
        Command::Mcp(args) => mcp::run(&args),
        Command::Exec(args) => exec::run(&args),
        Command::Schedules(args) => schedules::run(&args),
        Command::Sandbox(command) => sandbox::run(command),
        Command::Store(command) => store::run(command),
        Command::Join(args) => ledger::join(&args),
        Command::Status(args) => ledger::status(&args),
        Command::History(args) => ledger::history(&args),
        Command::Network(crate::cli::NetworkCommand::Create(args)) => ledger::network_create(&args),
        Command::Node(args) => network::node(&args),
        Command::Run(args) => jobs::run(&args),
        Command::Jobs(args) => jobs::list(&args),
        Command::Set(args) => jobs::set(&args),
        Command::Serve(args) => jobs::serve(&args),
        Command::Login(args) => crate::agents::login(&args),
        Command::Peers(args) => network::peers(&args),
        Command::Ledger(command) => ledger::run(command),
        Command::Admin(command) => ledger::admin(command),
        Command::Pack(command) => pack::run(command),
        Command::Apply(args) => pack::apply(&args),
    }
}
