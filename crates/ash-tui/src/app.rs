//! The screen's state: what each key does, what each update shows. Time comes in from the
//! caller (`now`), so that every state can be drawn the same way twice.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use zeroize::Zeroizing;

use crate::input::Input;
use crate::model::{Action, Delivery, JobUpdate, ServePanel, Session, Tone, Update};

/// Transcript lines kept at most; older ones scroll away for good.
const MAX_TRANSCRIPT: usize = 5_000;
/// A second Ctrl-C within this quits.
const DOUBLE_PRESS: Duration = Duration::from_secs(2);
/// Longest agent step shown (characters).
const MAX_STEP_CHARS: usize = 200;
/// Files of a result listed in the transcript at most (the diff viewer lists them all).
const MAX_LISTED_FILES: usize = 50;
/// Longest key taken (bytes).
const MAX_SECRET: usize = 4096;

/// The slash commands, with their arguments and what they do: `/help` lists them and the
/// prompt line completes them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/serve", "[-n N] [--model M]", "serve jobs in the background of this screen"),
    ("/status", "", "identity, balance, network and agents"),
    ("/history", "[id]", "ledger entries with the running balance"),
    ("/peers", "", "the peers connected now"),
    ("/model", "[tier]", "switch the tier jobs pay for (a picker without one)"),
    ("/new", "", "start a new conversation: the next prompt carries no earlier turns"),
    ("/login", "[provider]", "store a provider's API key, or list them"),
    ("/apply", "", "apply the result in focus (full price)"),
    ("/reject", "", "leave the tree as it is (half the price)"),
    ("/diff", "", "open the result's diff"),
    ("/cancel", "", "stop the job in focus"),
    ("/clear", "", "clear the transcript and the conversation"),
    ("/help", "", "this list"),
    ("/quit", "", "leave (jobs carry on when ash starts again)"),
];

/// What the prompt line is for now.
#[derive(Debug)]
enum Mode {
    /// Typing prompts and commands.
    Normal,
    /// A key for `target`, masked.
    Secret { target: String, hint: String, text: Zeroizing<String> },
    /// Quitting with a job under way: y or n.
    ConfirmQuit,
    /// Choosing a tier: the tiers with their prices, and the row chosen.
    Picker { tiers: Vec<(String, u64)>, selected: usize },
}

/// A result waiting for the decision, and until when.
#[derive(Debug)]
struct Pending {
    delivery: Delivery,
    deadline: Instant,
    /// The decision was sent; the screen waits for it to be written.
    decided: bool,
}

/// The diff viewer's place.
#[derive(Debug, Default, Clone, Copy)]
struct Viewer {
    file: usize,
    scroll: usize,
}

/// The job in focus.
#[derive(Debug)]
struct Focus {
    job: Option<String>,
    since: Instant,
    /// What it does now, for the in-flight line.
    phase: String,
    /// Whether an acceptor was chosen (before, cancelling costs nothing).
    matched: bool,
    upload: Option<(u64, u64)>,
}

/// Everything on the screen.
#[derive(Debug)]
pub struct App {
    pub(crate) session: Session,
    pub(crate) transcript: VecDeque<(Tone, String)>,
    pub(crate) input: Input,
    mode: Mode,
    focus: Option<Focus>,
    pending: Option<Pending>,
    viewer: Option<Viewer>,
    pub(crate) balance: Option<u64>,
    pub(crate) peers: usize,
    pub(crate) served: u64,
    /// Turns of the conversation remembered, and the share of a prompt they take (percent).
    pub(crate) turns: usize,
    pub(crate) ctx: u8,
    pub(crate) serving: Option<ServePanel>,
    /// Lines scrolled up from the bottom of the transcript, and the most there are (known
    /// once drawn; `usize::MAX` until the top was reached).
    pub(crate) scroll: usize,
    pub(crate) max_scroll: std::cell::Cell<usize>,
    /// The completion menu's selected row, and whether the person moved it (Enter then takes
    /// the selection; otherwise only a single match is completed).
    pub(crate) menu: usize,
    menu_moved: bool,
    ctrl_c: Option<Instant>,
    quit: bool,
    pub(crate) now: Instant,
    pub(crate) ticks: usize,
}

impl App {
    /// A screen for `session`, opened at `now`.
    pub fn new(session: Session, now: Instant) -> Self {
        let input = Input::new(session.history.clone());
        let mut app = Self {
            session,
            transcript: VecDeque::new(),
            input,
            mode: Mode::Normal,
            focus: None,
            pending: None,
            viewer: None,
            balance: None,
            peers: 0,
            served: 0,
            turns: 0,
            ctx: 0,
            serving: None,
            scroll: 0,
            max_scroll: std::cell::Cell::new(usize::MAX),
            menu: 0,
            menu_moved: false,
            ctrl_c: None,
            quit: false,
            now,
            ticks: 0,
        };
        app.line(Tone::Dim, "type what the network should do in this repository, or /help");
        app
    }

    /// Whether the person asked to leave.
    pub const fn should_quit(&self) -> bool {
        self.quit
    }

    /// The prompt lines typed, oldest first (for the caller to keep).
    pub fn history(&self) -> &[String] {
        self.input.history()
    }

    /// A line for the transcript.
    fn line(&mut self, tone: Tone, text: impl Into<String>) {
        self.transcript.push_back((tone, text.into()));
        if self.transcript.len() > MAX_TRANSCRIPT {
            self.transcript.pop_front();
        }
    }

    /// The time now, for what the next key or update does (no spinner turn, no expiry).
    pub const fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// Time passes: the spinner turns, and an apply prompt whose time is up answers no.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.now = now;
        self.ticks = self.ticks.wrapping_add(1);
        match &mut self.pending {
            Some(p) if !p.decided && now >= p.deadline => {
                p.decided = true;
                let job = p.delivery.job.clone();
                let secs = self.session.decide_within.as_secs();
                self.line(
                    Tone::Warn,
                    format!("⎿ no answer in {secs}s · not applied (half the price)"),
                );
                vec![Action::Decide { job, apply: false }]
            }
            _ => Vec::new(),
        }
    }

    /// The in-flight line: what the job in focus does, and for how long.
    pub(crate) fn in_flight(&self) -> Option<String> {
        let focus = self.focus.as_ref()?;
        let elapsed = self.now.saturating_duration_since(focus.since).as_secs();
        let spinner = SPINNER[self.ticks % SPINNER.len()];
        let job = focus.job.as_deref().map_or_else(String::new, |j| format!(" {}", short(j)));
        let phase = match (focus.upload, &self.pending) {
            (_, Some(p)) if !p.decided => "waiting for your decision".to_owned(),
            (Some((sent, total)), _) if sent < total => upload_bar(sent, total),
            _ => focus.phase.clone(),
        };
        Some(format!("{spinner} job{job} · {phase} · {}", clock(elapsed)))
    }

    /// The apply prompt, while a result waits.
    pub(crate) fn apply_prompt(&self) -> Option<String> {
        let p = self.pending.as_ref().filter(|p| !p.decided)?;
        let left = p.deadline.saturating_duration_since(self.now).as_secs();
        let (full, half) = (p.delivery.price, p.delivery.price / 2);
        Some(format!(
            "Apply? y = apply ({full}cr) · n = leave the tree ({half}cr) · d = diff · n in {left}s"
        ))
    }

    /// The secret being typed, masked, and what it is for.
    pub(crate) fn secret(&self) -> Option<(String, usize)> {
        match &self.mode {
            Mode::Secret { target, hint, text } => {
                Some((format!("{hint} for {target} (hidden; esc cancels)"), text.chars().count()))
            }
            _ => None,
        }
    }

    pub(crate) const fn confirming_quit(&self) -> bool {
        matches!(self.mode, Mode::ConfirmQuit)
    }

    /// Whether leaving now would leave something under way: a job in focus, or a job served.
    fn quit_needs_asking(&self) -> bool {
        self.focus.is_some() || self.serving.as_ref().is_some_and(|s| s.running > 0)
    }

    /// The question asked before leaving, worded by what is under way.
    pub(crate) fn quit_question(&self) -> String {
        let mut parts = Vec::new();
        match &self.focus {
            Some(f) if f.matched => parts.push(
                "your job carries on at its acceptor and shows here again when ash starts"
                    .to_owned(),
            ),
            Some(_) => parts.push(
                "your job has no acceptor yet and is dropped (nothing is charged)".to_owned(),
            ),
            None => {}
        }
        if let Some(s) = self.serving.as_ref().filter(|s| s.running > 0) {
            parts.push(format!(
                "{} job(s) you serve stop until you /serve again (unpaid if their deadline passes)",
                s.running
            ));
        }
        format!("{}. quit now? (y/n)", parts.join("; "))
    }

    /// The delivery and the viewer's place, while the diff viewer is open.
    pub(crate) fn viewing(&self) -> Option<(&Delivery, usize, usize)> {
        let viewer = self.viewer?;
        let p = self.pending.as_ref()?;
        Some((&p.delivery, viewer.file, viewer.scroll))
    }

    /// The commands the prompt line's text could be, while it is a command's name.
    pub(crate) fn completions(&self) -> Vec<&'static (&'static str, &'static str, &'static str)> {
        let text = self.input.text();
        if !matches!(self.mode, Mode::Normal) || !text.starts_with('/') || text.contains(' ') {
            return Vec::new();
        }
        let typed = text.to_ascii_lowercase();
        COMMANDS.iter().filter(|(name, _, _)| name.starts_with(&typed)).collect()
    }

    /// Something the caller says.
    pub fn update(&mut self, update: Update) {
        match update {
            Update::Lines(lines) => {
                for (tone, text) in lines {
                    for line in text.split('\n') {
                        self.line(tone, line);
                    }
                }
            }
            Update::Status { balance, peers, served } => {
                self.balance = balance;
                self.peers = peers;
                self.served = served;
            }
            Update::Conversation { turns, ctx } => {
                self.turns = turns;
                self.ctx = ctx;
            }
            Update::Tiers(tiers) => {
                if !tiers.is_empty() && matches!(self.mode, Mode::Normal) {
                    let selected =
                        tiers.iter().position(|(t, _)| *t == self.session.tier).unwrap_or(0);
                    self.mode = Mode::Picker { tiers, selected };
                }
            }
            Update::Tier { tier, price } => {
                self.session.tier = tier;
                self.session.price = price;
            }
            Update::Serving(panel) => self.serving = panel,
            Update::Job(job) => self.job(job),
        }
    }

    fn job(&mut self, update: JobUpdate) {
        // Late news of a job no longer in focus (cancelled) is not shown as a new one.
        if self.focus.is_none() && !matches!(update, JobUpdate::Resumed { .. }) {
            if let JobUpdate::Ended { tone, message } = update {
                self.line(tone, format!("⎿ {message}"));
            }
            return;
        }
        let now = self.now;
        let focus = self.focus.get_or_insert_with(|| Focus {
            job: None,
            since: now,
            phase: String::new(),
            matched: false,
            upload: None,
        });
        match update {
            JobUpdate::Resumed { job, title } => {
                focus.job = Some(job.clone());
                focus.matched = true;
                focus.phase = "following the acceptor".into();
                self.line(Tone::Plain, format!("↻ job {} continues: {title}", short(&job)));
            }
            JobUpdate::Packing { entries, bytes } => {
                focus.phase = format!("packaging {entries} entries ({})", human(bytes));
            }
            JobUpdate::Packed { bytes } => {
                focus.phase = "reserving".into();
                self.line(Tone::Good, format!("✓ packaged ({})", human(bytes)));
            }
            JobUpdate::Announced { job, price } => {
                focus.phase = "waiting for an acceptor (esc cancels)".into();
                self.line(Tone::Dim, format!("⎿ announced ({}) · {price}cr", short(&job)));
                if let Some(f) = &mut self.focus {
                    f.job = Some(job);
                }
            }
            JobUpdate::Matched { acceptor, agent, model } => {
                focus.matched = true;
                focus.phase = "packaging".into();
                self.line(Tone::Plain, format!("● matched {acceptor} · {agent} · {model}"));
            }
            JobUpdate::Reserved { amount } => {
                self.line(Tone::Dim, format!("⎿ reserved {amount}cr"));
            }
            JobUpdate::Uploading { sent, total } => {
                focus.upload = Some((sent, total));
                if sent >= total {
                    focus.phase = "running".into();
                    self.line(Tone::Dim, format!("↑ {} uploaded · running…", human(total)));
                }
            }
            JobUpdate::Step(text) => {
                focus.phase = "running".into();
                let text: String = text.chars().take(MAX_STEP_CHARS).collect();
                self.line(Tone::Agent, format!("● {text}"));
            }
            JobUpdate::Received { files, insertions, deletions } => {
                focus.phase = "checking the result".into();
                let s = if files == 1 { "" } else { "s" };
                self.line(
                    Tone::Plain,
                    format!("⎿ {files} file{s} changed +{insertions} / -{deletions}"),
                );
            }
            JobUpdate::Delivered(delivery) => {
                // Sensitive files first: an acceptor chooses the order.
                let mut listed: Vec<_> = delivery.files.iter().collect();
                listed.sort_by_key(|f| f.warning.is_none());
                for file in listed.iter().take(MAX_LISTED_FILES) {
                    match &file.warning {
                        Some(why) => self.line(Tone::Warn, format!("  • {} ! {why}", file.path)),
                        None => self.line(Tone::Plain, format!("  • {}", file.path)),
                    }
                }
                if listed.len() > MAX_LISTED_FILES {
                    let more = listed.len() - MAX_LISTED_FILES;
                    self.line(Tone::Dim, format!("  … and {more} more (d shows them all)"));
                }
                if !delivery.summary.trim().is_empty() {
                    self.line(Tone::Agent, "agent:");
                    for line in markdown(&delivery.summary) {
                        self.line(Tone::Agent, format!("  {line}"));
                    }
                }
                self.pending = Some(Pending {
                    delivery: *delivery,
                    deadline: now + self.session.decide_within,
                    decided: false,
                });
            }
            JobUpdate::Settled { applied, paid, detail } => {
                for line in detail {
                    self.line(Tone::Dim, format!("  {line}"));
                }
                if applied {
                    self.line(Tone::Good, format!("⎿ patch applied · {paid}cr spent"));
                } else {
                    self.line(Tone::Plain, format!("⎿ not applied · {paid}cr spent"));
                }
                self.end_job();
            }
            JobUpdate::Ended { tone, message } => {
                self.line(tone, format!("⎿ {message}"));
                self.end_job();
            }
        }
    }

    fn end_job(&mut self) {
        self.focus = None;
        self.pending = None;
        self.viewer = None;
    }

    /// An action the caller could not take (its queue was full): what it changed here is
    /// undone, so that nothing waits for an answer that never comes.
    pub fn not_sent(&mut self, action: &Action) {
        self.line(Tone::Warn, "busy: that was not taken; try again in a moment");
        match action {
            Action::Decide { job, .. } => {
                if let Some(p) = self.pending.as_mut().filter(|p| p.delivery.job == *job) {
                    p.decided = false;
                    p.deadline = p.deadline.max(self.now + Duration::from_secs(10));
                }
            }
            Action::Ask(_) => self.focus = None,
            _ => {}
        }
    }

    /// Pasted text goes into the prompt line (or the secret).
    pub fn paste(&mut self, text: &str) {
        match &mut self.mode {
            Mode::Secret { text: secret, .. } => {
                let room = MAX_SECRET.saturating_sub(secret.len());
                secret.extend(text.trim().chars().filter(|c| !c.is_control()).take(room));
                while secret.len() > MAX_SECRET {
                    secret.pop();
                }
            }
            Mode::Normal => self.input.insert(text),
            Mode::ConfirmQuit | Mode::Picker { .. } => {}
        }
    }

    /// A key was pressed.
    pub fn key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return self.ctrl_c();
        }
        self.ctrl_c = None;
        match self.mode {
            Mode::ConfirmQuit => return self.confirm_quit(key),
            Mode::Secret { .. } => return self.secret_key(key),
            Mode::Picker { .. } => return self.picker_key(key),
            Mode::Normal => {}
        }
        if self.viewer.is_some() {
            return self.viewer_key(key);
        }
        // The apply prompt answers single keys on an empty line.
        if self.input.is_empty()
            && !ctrl
            && let Some(p) = self.pending.as_ref().filter(|p| !p.decided)
        {
            match key.code {
                KeyCode::Char('y' | 'Y') => return self.decide(true),
                KeyCode::Char('n' | 'N') => return self.decide(false),
                KeyCode::Char('d' | 'D') => {
                    if !p.delivery.files.is_empty() {
                        self.viewer = Some(Viewer::default());
                    }
                    return Vec::new();
                }
                _ => {}
            }
        }
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        let menu = self.completions().len();
        match key.code {
            KeyCode::Enter if alt || shift => self.input.insert("\n"),
            KeyCode::Enter if self.input.text()[..self.input.cursor()].ends_with('\\') => {
                self.input.backspace();
                self.input.insert("\n");
            }
            KeyCode::Enter => {
                // A command is completed on Enter when the person chose it in the menu, or
                // when only one command fits what was typed (never `/` alone: that is /help).
                if menu > 0 && (self.menu_moved || (menu == 1 && self.input.text() != "/")) {
                    self.complete();
                }
                self.menu = 0;
                self.menu_moved = false;
                self.scroll = 0;
                return self.submit_line();
            }
            KeyCode::Tab => self.complete(),
            KeyCode::Esc => return self.escape(),
            KeyCode::Up if menu > 0 => {
                self.menu = (self.menu + menu - 1) % menu;
                self.menu_moved = true;
            }
            KeyCode::Down if menu > 0 => {
                self.menu = (self.menu + 1) % menu;
                self.menu_moved = true;
            }
            KeyCode::Up => self.input.older(),
            KeyCode::Down => self.input.newer(),
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_add(10).min(self.max_scroll.get());
            }
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.delete_to_start(),
            KeyCode::Char('w') if ctrl => self.input.delete_word(),
            KeyCode::Char('l') if ctrl => self.transcript.clear(),
            KeyCode::Char(c) if !ctrl => {
                self.input.insert(c.encode_utf8(&mut [0; 4]));
                self.menu = 0;
                self.menu_moved = false;
            }
            _ => {}
        }
        Vec::new()
    }

    fn complete(&mut self) {
        let options = self.completions();
        if let Some((name, _, _)) = options.get(self.menu.min(options.len().saturating_sub(1))) {
            let name = *name;
            self.input.set(name);
        }
    }

    fn ctrl_c(&mut self) -> Vec<Action> {
        let now = self.now;
        if self.ctrl_c.is_some_and(|at| now.saturating_duration_since(at) < DOUBLE_PRESS) {
            self.quit = true;
            return vec![Action::Quit];
        }
        self.ctrl_c = Some(now);
        if let Mode::Secret { .. } | Mode::ConfirmQuit | Mode::Picker { .. } = self.mode {
            self.mode = Mode::Normal;
            return Vec::new();
        }
        if self.focus.is_some() && self.pending.is_none() {
            self.line(Tone::Dim, "cancelling… (Ctrl-C again quits)");
            return vec![Action::Cancel];
        }
        if !self.input.is_empty() {
            self.input.set("");
            return Vec::new();
        }
        self.line(Tone::Dim, "press Ctrl-C again to quit");
        Vec::new()
    }

    fn escape(&mut self) -> Vec<Action> {
        if !self.input.is_empty() {
            self.input.set("");
            self.menu = 0;
            return Vec::new();
        }
        if self.focus.as_ref().is_some_and(|f| !f.matched) {
            return vec![Action::Cancel];
        }
        if self.serving.as_ref().is_some_and(|s| s.offering) {
            return vec![Action::StopServing];
        }
        self.scroll = 0;
        Vec::new()
    }

    fn picker_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let Mode::Picker { tiers, selected } = &mut self.mode else { return Vec::new() };
        let count = tiers.len().max(1);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => *selected = (*selected + count - 1) % count,
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                *selected = (*selected + 1) % count
            }
            KeyCode::Enter => {
                let tier = tiers.get(*selected).map(|(t, _)| t.clone());
                self.mode = Mode::Normal;
                if let Some(tier) = tier {
                    return vec![Action::Model(Some(tier))];
                }
            }
            KeyCode::Esc | KeyCode::Char('q') => self.mode = Mode::Normal,
            _ => {}
        }
        Vec::new()
    }

    /// The `/model` picker's rows (tier, price, chosen), while it is open.
    pub(crate) fn picker(&self) -> Option<(&[(String, u64)], usize)> {
        match &self.mode {
            Mode::Picker { tiers, selected } => Some((tiers, *selected)),
            _ => None,
        }
    }

    fn confirm_quit(&mut self, key: KeyEvent) -> Vec<Action> {
        match key.code {
            KeyCode::Char('y' | 'Y') => {
                self.quit = true;
                vec![Action::Quit]
            }
            KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn secret_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let Mode::Secret { text, .. } = &mut self.mode else { return Vec::new() };
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.line(Tone::Dim, "⎿ no key stored");
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if text.len() < MAX_SECRET => text.push(c),
            KeyCode::Enter => {
                let Mode::Secret { target, text, .. } =
                    std::mem::replace(&mut self.mode, Mode::Normal)
                else {
                    return Vec::new();
                };
                if text.trim().is_empty() {
                    self.line(Tone::Dim, "⎿ no key stored");
                    return Vec::new();
                }
                self.line(Tone::Dim, format!("⎿ checking the key for {target}…"));
                return vec![Action::LoginKey { target, key: text }];
            }
            _ => {}
        }
        Vec::new()
    }

    fn viewer_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let Some(files) = self.pending.as_ref().map(|p| p.delivery.files.len()) else {
            self.viewer = None;
            return Vec::new();
        };
        let Some(viewer) = &mut self.viewer else { return Vec::new() };
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => self.viewer = None,
            KeyCode::Up | KeyCode::Char('k') => {
                viewer.file = viewer.file.saturating_sub(1);
                viewer.scroll = 0;
            }
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                viewer.file = (viewer.file + 1).min(files.saturating_sub(1));
                viewer.scroll = 0;
            }
            KeyCode::PageDown | KeyCode::Char(' ') => {
                viewer.scroll = viewer.scroll.saturating_add(10)
            }
            KeyCode::PageUp => viewer.scroll = viewer.scroll.saturating_sub(10),
            // Decided from the viewer as from the prompt.
            KeyCode::Char('y' | 'Y') => return self.decide(true),
            KeyCode::Char('n' | 'N') => return self.decide(false),
            _ => {}
        }
        Vec::new()
    }

    fn decide(&mut self, apply: bool) -> Vec<Action> {
        let Some(p) = self.pending.as_mut().filter(|p| !p.decided) else {
            self.line(Tone::Dim, "no result waits for a decision");
            return Vec::new();
        };
        p.decided = true;
        self.viewer = None;
        let job = p.delivery.job.clone();
        self.line(Tone::Dim, if apply { "❯ apply" } else { "❯ leave the tree as it is" });
        vec![Action::Decide { job, apply }]
    }

    /// Submits the prompt line. `/login NAME` asks for the key at once, masked, and neither it
    /// nor anything typed after the name is kept in the history or shown.
    fn submit_line(&mut self) -> Vec<Action> {
        let text = self.input.text().trim().to_owned();
        let mut words = text.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("/login")) {
            let args: Vec<&str> = words.collect();
            self.input.set("");
            return match args.as_slice() {
                [] => {
                    self.line(Tone::Dim, "❯ /login");
                    vec![Action::Login]
                }
                [target] => {
                    self.line(Tone::Dim, format!("❯ /login {target}"));
                    self.mode = Mode::Secret {
                        target: (*target).to_owned(),
                        hint: "paste the API key".to_owned(),
                        text: Zeroizing::new(String::new()),
                    };
                    Vec::new()
                }
                _ => {
                    self.line(
                        Tone::Warn,
                        "/login takes a provider only (e.g. /login anthropic); the key is asked for next, hidden — nothing was kept",
                    );
                    Vec::new()
                }
            };
        }
        let line = self.input.take();
        self.submit(&line)
    }

    /// A submitted line: a command or a prompt.
    fn submit(&mut self, line: &str) -> Vec<Action> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Vec::new();
        }
        if !trimmed.starts_with('/') {
            if self.pending.as_ref().is_some_and(|p| !p.decided) {
                self.line(Tone::Warn, "a result waits for your decision: y, n, or d for its diff");
                return Vec::new();
            }
            if self.focus.is_some() {
                self.line(Tone::Warn, "a job is already in flight; wait for it, or /cancel it");
                return Vec::new();
            }
            for (i, part) in trimmed.split('\n').enumerate() {
                self.line(Tone::Plain, format!("{} {part}", if i == 0 { "❯" } else { " " }));
            }
            self.focus = Some(Focus {
                job: None,
                since: self.now,
                phase: "packaging".into(),
                matched: false,
                upload: None,
            });
            return vec![Action::Ask(trimmed.to_owned())];
        }
        let mut words = trimmed.split_whitespace();
        let name = words.next().unwrap_or_default().to_ascii_lowercase();
        let args: Vec<&str> = words.collect();
        if name != "/clear" {
            self.line(Tone::Dim, format!("❯ {trimmed}"));
        }
        let one = args.first().map(|a| (*a).to_owned());
        match name.as_str() {
            "/help" | "/" => {
                for (name, args, what) in COMMANDS {
                    let usage =
                        if args.is_empty() { (*name).to_owned() } else { format!("{name} {args}") };
                    self.line(Tone::Plain, format!("  {usage:<28} {what}"));
                }
                self.line(
                    Tone::Dim,
                    "  keys: enter sends · alt-enter or \\ newline · ↑↓ history · tab completes · pgup/pgdn scroll · esc stops · ctrl-c cancels, twice quits",
                );
                Vec::new()
            }
            "/quit" | "/q" | "/exit" => {
                if self.quit_needs_asking() {
                    self.mode = Mode::ConfirmQuit;
                    Vec::new()
                } else {
                    self.quit = true;
                    vec![Action::Quit]
                }
            }
            "/clear" | "/new" if self.focus.is_some() => {
                self.line(Tone::Warn, "a job is in flight; the conversation changes once it ends");
                Vec::new()
            }
            "/clear" => {
                self.transcript.clear();
                self.scroll = 0;
                vec![Action::NewConversation]
            }
            "/new" => {
                self.line(Tone::Dim, "─── new conversation · turn history cleared ───");
                vec![Action::NewConversation]
            }
            "/status" => vec![Action::Status],
            "/peers" => vec![Action::Peers],
            "/history" => vec![Action::History(one)],
            "/model" => vec![Action::Model(one)],

            "/apply" => self.decide(true),
            "/reject" => self.decide(false),
            "/diff" => {
                match &self.pending {
                    Some(p) if !p.delivery.files.is_empty() => {
                        self.viewer = Some(Viewer::default())
                    }
                    _ => self.line(Tone::Dim, "no result to show"),
                }
                Vec::new()
            }
            "/cancel" => {
                if self.focus.is_some() && self.pending.is_none() {
                    vec![Action::Cancel]
                } else if self.pending.is_some() {
                    self.line(Tone::Dim, "the result is here: /reject leaves the tree as it is");
                    Vec::new()
                } else {
                    self.line(Tone::Dim, "no job in flight");
                    Vec::new()
                }
            }
            "/serve" => self.serve(&args),
            other => {
                self.line(Tone::Warn, format!("unknown command: {other} (try /help)"));
                Vec::new()
            }
        }
    }

    fn serve(&mut self, args: &[&str]) -> Vec<Action> {
        if self.serving.as_ref().is_some_and(|s| s.offering) {
            self.line(Tone::Dim, "already serving · esc stops");
            return Vec::new();
        }
        let (mut max_jobs, mut model) = (None, None);
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "-n" | "--jobs" => match rest.next().and_then(|n| n.parse::<u64>().ok()) {
                    Some(n) if n > 0 => max_jobs = Some(n),
                    _ => {
                        self.line(Tone::Warn, "/serve -n takes a positive number of jobs");
                        return Vec::new();
                    }
                },
                "--model" => match rest.next() {
                    Some(m) => model = Some((*m).to_owned()),
                    None => {
                        self.line(Tone::Warn, "/serve --model takes PROVIDER/MODEL");
                        return Vec::new();
                    }
                },
                n if n.parse::<u64>().is_ok_and(|n| n > 0) => max_jobs = n.parse().ok(),
                other => {
                    self.line(
                        Tone::Warn,
                        format!("/serve: unknown argument `{other}` (try /help)"),
                    );
                    return Vec::new();
                }
            }
        }
        vec![Action::Serve { max_jobs, model }]
    }
}

/// The agent's last words, written in markdown, as terminal lines: headers and emphasis
/// lose their marks, bullets become `•`, tables become rows of cells, code fences go.
pub(crate) fn markdown(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            continue;
        }
        // A table's separator row says nothing; its rows become cells joined by `·`.
        if trimmed.starts_with('|') {
            let cells: Vec<&str> = trimmed.trim_matches('|').split('|').map(str::trim).collect();
            if cells.iter().all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' '))) {
                continue;
            }
            out.push(plain(&cells.join(" · ")));
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        let shown =
            if let Some(rest) = trimmed.strip_prefix("- ").or_else(|| trimmed.strip_prefix("* ")) {
                format!("{indent}• {}", plain(rest))
            } else if trimmed.starts_with('#') {
                plain(trimmed.trim_start_matches('#').trim_start()).to_uppercase()
            } else {
                format!("{indent}{}", plain(trimmed))
            };
        out.push(shown);
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// Inline markdown without its marks: `**bold**`, `__bold__`, `` `code` ``.
fn plain(text: &str) -> String {
    text.replace("**", "").replace("__", "").replace('`', "")
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The first 8 characters of an id.
pub(crate) fn short(id: &str) -> &str {
    cut(id, 8)
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `1m 05s`.
pub(crate) fn clock(secs: u64) -> String {
    if secs < 60 { format!("{secs}s") } else { format!("{}m {:02}s", secs / 60, secs % 60) }
}

/// `12.3 KB`.
pub(crate) fn human(bytes: u64) -> String {
    match bytes {
        b if b < 1000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} GB", b as f64 / 1e9),
    }
}

/// `uploading ███▒░░ 45% · 1.2/2.4 MB`.
fn upload_bar(sent: u64, total: u64) -> String {
    const WIDTH: u64 = 12;
    let filled = (sent.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let pct = (sent.min(total) * 100).checked_div(total).unwrap_or(100);
    let filled = usize::try_from(filled).unwrap_or(0);
    format!(
        "uploading {}{} {pct}% · {} / {}",
        "█".repeat(filled),
        "░".repeat(12usize.saturating_sub(filled)),
        human(sent),
        human(total)
    )
}

#[cfg(test)]
mod tests {
    use super::markdown;

    #[test]
    fn markdown_becomes_plain_terminal_lines() {
        let text = "## Done\n\nI **fixed** the `TODO`:\n- README.md\n  * nested\n\n| file | lines |\n|---|:-:|\n| a.rs | +2 |\n```rust\nfn x() {}\n```\n";
        assert_eq!(
            markdown(text),
            [
                "DONE",
                "",
                "I fixed the TODO:",
                "• README.md",
                "  • nested",
                "",
                "file · lines",
                "a.rs · +2",
                "fn x() {}"
            ]
        );
    }
}
