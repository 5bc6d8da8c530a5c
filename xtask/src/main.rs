//! `cargo xtask tidy`: prints every broken repository rule and exits 1 if there is one.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line tool")]

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    if task != "tidy" {
        eprintln!("usage: cargo xtask tidy");
        return ExitCode::from(2);
    }
    match xtask::tidy(&xtask::workspace_root()) {
        Ok(problems) if problems.is_empty() => {
            println!("tidy: ok");
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            for problem in problems {
                println!("tidy: {problem}");
            }
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
