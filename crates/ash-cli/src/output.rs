//! The only module that prints. stdout carries data (text or JSON); stderr carries messages for
//! people. A closed stdout (e.g. `ash info | head`) is not an error.
#![allow(clippy::print_stderr, reason = "this module is the CLI's output channel")]

use std::io::{self, Write as _};

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
