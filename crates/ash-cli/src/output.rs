//! The only module that prints. stdout carries data (text or JSON); stderr carries messages for
//! people. A closed stdout (e.g. `ash info | head`) is not an error.
#![allow(clippy::print_stderr, reason = "this module is the CLI's output channel")]

use std::io::{self, BufRead as _, Write as _};

use anyhow::Context as _;

use ash_spec::Diagnostic;

/// Writes text to stdout, ignoring a closed pipe.
pub(crate) fn stdout(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes raw bytes to stdout (a sandboxed command's output), ignoring a closed pipe.
pub(crate) fn stdout_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// Writes raw bytes to stderr.
pub(crate) fn stderr_bytes(bytes: &[u8]) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(bytes).and_then(|()| err.flush());
}

/// Writes one JSON document (pretty, newline-terminated) to stdout.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    stdout(&text);
    Ok(())
}

/// A message for people.
pub(crate) fn note(text: &str) {
    eprintln!("{text}");
}

/// Text for people without a newline, shown at once (streamed reasoning).
pub(crate) fn note_partial(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Diagnostics, rendered for people, to stderr.
pub(crate) fn diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprint!("{d}");
    }
}

/// A fatal error with its causes.
pub(crate) fn error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Asks a yes-or-no question on the terminal (`/dev/tty`); `None` when there is no terminal
/// to ask on (standard input is not one).
pub(crate) fn confirm(question: &str) -> anyhow::Result<Option<bool>> {
    use std::io::IsTerminal as _;
    if !io::stdin().is_terminal() {
        return Ok(None);
    }
    let Ok(tty) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") else {
        return Ok(None);
    };
    let mut writer = &tty;
    writer.write_all(format!("{question} [y/N] ").as_bytes()).and_then(|()| writer.flush())?;
    let mut line = String::new();
    io::BufReader::new(&tty).read_line(&mut line).context("reading the answer")?;
    let answer = line.trim();
    Ok(Some(answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")))
}

/// Asks a yes-or-no question on the terminal, waiting at most `within`; `None` when there is
/// no terminal, or no answer came in time.
pub(crate) fn ask_within(question: &str, within: std::time::Duration) -> Option<bool> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
    let mut writer = &tty;
    writer.write_all(format!("{question} ").as_bytes()).and_then(|()| writer.flush()).ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = tty.try_clone().ok()?;
    // The reader is left blocked if no answer comes; the process ends soon after.
    std::thread::spawn(move || {
        let mut line = String::new();
        if io::BufReader::new(reader).read_line(&mut line).is_ok() {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(within).ok();
    if line.is_none() {
        let _ = writer.write_all(b"\n");
    }
    let answer = line?.trim().to_ascii_lowercase();
    Some(answer == "y" || answer == "yes")
}

/// Asks for a secret on the terminal (`/dev/tty`, so piped stdin stays the REPL's), without
/// echoing what is typed.
pub(crate) fn prompt_secret(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("there is no terminal to ask on; set the secret in the environment instead")?;
    let mut writer = &tty;
    writer.write_all(prompt.as_bytes()).and_then(|()| writer.flush())?;
    let original = tcgetattr(&tty).context("reading the terminal's settings")?;
    let mut quiet = original.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet).context("turning off the terminal's echo")?;
    let mut line = String::new();
    let read = io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &original);
    let _ = writer.write_all(b"\n");
    read.context("reading the secret")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
