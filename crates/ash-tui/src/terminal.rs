//! The loop that owns the terminal: raw mode and the alternate screen while it runs, keys and
//! resizes from a reader thread, updates from the caller, a redraw after each, and the
//! terminal given back on every way out (a return, an error, a panic).

use std::io::Write as _;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::{execute, terminal};
use tokio::sync::mpsc;

use crate::app::App;
use crate::model::{Action, Update};

/// How often the screen redraws without news (the spinner, the countdown).
const TICK: Duration = Duration::from_millis(200);
/// Terminal events queued at most.
const EVENT_QUEUE: usize = 256;

/// Why the screen stopped early.
#[derive(Debug)]
pub enum TuiError {
    /// The terminal could not be set up, drawn on or read (lost, closed).
    Terminal(std::io::Error),
}

impl std::error::Error for TuiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Terminal(e) => Some(e),
        }
    }
}

impl std::fmt::Display for TuiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Terminal(e) => write!(f, "the terminal: {e}"),
        }
    }
}

/// Raw mode and the alternate screen, undone when dropped.
struct Restore;

/// Whether the terminal was asked to tell Shift-Enter from Enter (the kitty keyboard
/// protocol), and so must be told to stop.
static ENHANCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Restore {
    fn enter() -> std::io::Result<Self> {
        terminal::enable_raw_mode()?;
        let restore = Self;
        execute!(std::io::stdout(), terminal::EnterAlternateScreen, event::EnableBracketedPaste)?;
        if terminal::supports_keyboard_enhancement().unwrap_or(false) {
            let flags = event::KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES;
            if execute!(std::io::stdout(), event::PushKeyboardEnhancementFlags(flags)).is_ok() {
                ENHANCED.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok(restore)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        give_back();
    }
}

fn give_back() {
    let mut out = std::io::stdout();
    if ENHANCED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        let _ = execute!(out, event::PopKeyboardEnhancementFlags);
    }
    let _ = execute!(
        out,
        event::DisableBracketedPaste,
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

/// Runs the screen on this process's terminal until the person quits, the caller closes
/// `updates`, or the terminal is lost. `actions` takes what the person asks for (a full queue
/// drops the action and says so on the screen). Returns the prompt history to keep.
pub async fn run(
    mut app: App,
    actions: mpsc::Sender<Action>,
    mut updates: mpsc::Receiver<Update>,
) -> Result<Vec<String>, TuiError> {
    let restore = Restore::enter().map_err(TuiError::Terminal)?;
    // A panic gives the terminal back before it is reported.
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let chained = std::sync::Arc::clone(&previous);
    std::panic::set_hook(Box::new(move |info| {
        give_back();
        chained(info);
    }));
    let result = drive(&mut app, &actions, &mut updates).await;
    drop(restore);
    let _ = std::panic::take_hook();
    if let Ok(previous) = std::sync::Arc::try_unwrap(previous) {
        std::panic::set_hook(previous);
    }
    result.map(|()| app.history().to_vec())
}

async fn drive(
    app: &mut App,
    actions: &mpsc::Sender<Action>,
    updates: &mut mpsc::Receiver<Update>,
) -> Result<(), TuiError> {
    let backend = CrosstermBackend::new(std::io::stdout());
    let mut term = Terminal::new(backend).map_err(TuiError::Terminal)?;
    term.clear().map_err(TuiError::Terminal)?;
    let (events_tx, mut events) = mpsc::channel::<std::io::Result<Event>>(EVENT_QUEUE);
    // The reader thread ends when this loop drops its receiver (it looks every 100 ms), or with
    // the process. It is not joined: on a terminal that hung up, crossterm's poll never returns
    // (it reads end-of-file again and again), and waiting for it would keep the process alive.
    std::thread::Builder::new()
        .name("ash-tui-input".into())
        .spawn(move || read_events(&events_tx))
        .map_err(TuiError::Terminal)?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        if let Err(e) = term.draw(|frame| app.render(frame)) {
            break Err(TuiError::Terminal(e));
        }
        let arrived = tokio::select! {
            event = events.recv() => Arrived::Event(event),
            update = updates.recv() => Arrived::Update(update),
            _ = tick.tick() => Arrived::Tick,
        };
        app.set_now(Instant::now());
        let asked = match arrived {
            Arrived::Event(Some(Ok(Event::Key(key)))) => app.key(key),
            Arrived::Event(Some(Ok(Event::Paste(text)))) => {
                app.paste(&text);
                Vec::new()
            }
            Arrived::Event(Some(Ok(Event::Resize(..)))) => {
                let _ = term.autoresize();
                Vec::new()
            }
            Arrived::Event(Some(Ok(_))) => Vec::new(),
            Arrived::Event(Some(Err(e))) => break Err(TuiError::Terminal(e)),
            Arrived::Event(None) => {
                break Err(TuiError::Terminal(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Arrived::Update(Some(update)) => {
                app.update(update);
                // Everything queued is shown in one frame.
                while let Ok(more) = updates.try_recv() {
                    app.update(more);
                }
                Vec::new()
            }
            Arrived::Update(None) => break Ok(()),
            Arrived::Tick => app.tick(Instant::now()),
        };
        for action in asked {
            if let Err(e) = actions.try_send(action) {
                app.not_sent(&e.into_inner());
            }
        }
        if app.should_quit() {
            break Ok(());
        }
    };
    drop(events);
    outcome
}

/// What woke the loop.
enum Arrived {
    Event(Option<std::io::Result<Event>>),
    Update(Option<Update>),
    Tick,
}

/// Reads terminal events until the receiver goes away or the terminal fails.
fn read_events(events: &mpsc::Sender<std::io::Result<Event>>) {
    loop {
        if events.is_closed() {
            return;
        }
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => {
                let read = event::read();
                let failed = read.is_err();
                if events.blocking_send(read).is_err() || failed {
                    return;
                }
            }
            Err(e) => {
                let _ = events.blocking_send(Err(e));
                return;
            }
        }
    }
}
