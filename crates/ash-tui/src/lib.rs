//! ash's full-screen terminal interface: what `ash` alone opens in a terminal.
//!
//! Owns the screen and nothing else: the prompt line (editing, history, slash-command
//! completion), the transcript of jobs with their progress, the diff viewer, the apply prompt
//! with its countdown, the serving panel and the status bar ([`App`], drawn by ratatui), and
//! the loop that owns the terminal ([`run`]: raw mode, the alternate screen, resizing, a lost
//! terminal, restoring it on every way out).
//!
//! Never decides anything about jobs, credits or the network, and never touches a file or the
//! environment: it turns keys into [`Action`]s for its caller, and shows the [`Update`]s its
//! caller sends back. The caller (`ash-cli`) carries the actions out on the node's handles.

mod app;
mod input;
mod model;
mod terminal;
mod view;

pub use app::{App, COMMANDS};
pub use model::{Action, Delivery, DiffFile, JobUpdate, ServePanel, Session, Tone, Update};
pub use terminal::{TuiError, run};

/// Re-exported for callers that build key events (tests, scripted input).
pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
