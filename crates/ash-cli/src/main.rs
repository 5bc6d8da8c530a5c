//! The `ash` binary: parses the command line, runs one command, maps the outcome to an exit code.
//!
//! Owns process-level concerns only: argument parsing (`cli`), reading the environment
//! (`config`), printing (`output`). Commands live in `cmd/`. Exit codes: 0 success, 1 "ran, and
//! the answer is no" (e.g. the agent has errors), 2 usage or internal error.

mod agents;
mod cli;
mod cmd;
mod config;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // The sandbox helper is this binary re-executed; it must run before anything else
    // (single-threaded, with nothing parsed or opened).
    if std::env::args_os().nth(1).is_some_and(|arg| arg == ash_sandbox::HELPER_ARG) {
        ash_sandbox::helper_main();
    }
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(cmd::Outcome::Success) => ExitCode::SUCCESS,
        Ok(cmd::Outcome::Failure) => ExitCode::from(1),
        Ok(cmd::Outcome::Code(code)) => ExitCode::from(code),
        Err(err) => {
            output::error(&err);
            ExitCode::from(2)
        }
    }
}
