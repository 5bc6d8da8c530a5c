//! The screen in every state, drawn on ratatui's test backend (fixed ids and times), and what
//! each key asks of the caller.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code fails loudly")]

use std::time::{Duration, Instant};

use ash_tui::{
    Action, App, Delivery, DiffFile, JobUpdate, KeyCode, KeyEvent, KeyModifiers, ServePanel,
    Session, Tone, Update,
};
use pretty_assertions::assert_eq;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

const JOB: &str = "5f0c2a9e41d7b3c8a6e2f1d0c9b8a7e6";

fn session(color: bool) -> Session {
    Session {
        version: "0.1.0".into(),
        identity: "d35c2ac75575".into(),
        username: Some("bob".into()),
        directory: "~/src/demo".into(),
        tier: "sonnet".into(),
        price: Some(6),
        agents: "any agent".into(),
        color,
        decide_within: Duration::from_secs(60),
        history: vec!["fix the flaky test".into()],
    }
}

/// A screen opened at `t0`, with a balance and peers known.
fn app(t0: Instant) -> App {
    let mut app = App::new(session(false), t0);
    app.update(Update::Status { balance: Some(100), peers: 2, served: 3 });
    app
}

/// The screen's cells after one frame.
fn frame(app: &App, width: u16, height: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
    term.draw(|frame| app.render(frame)).unwrap();
    term.backend().buffer().clone()
}

fn draw(app: &App, width: u16, height: u16) -> String {
    let buffer = frame(app, width, height);
    let mut rows = Vec::new();
    for y in 0..height {
        let mut row = String::new();
        for x in 0..width {
            row.push_str(buffer[(x, y)].symbol());
        }
        rows.push(row.trim_end().to_owned());
    }
    rows.join("\n")
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn typed(app: &mut App, text: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    for c in text.chars() {
        actions.extend(app.key(key(KeyCode::Char(c))));
    }
    actions
}

fn delivery() -> Delivery {
    Delivery {
        job: JOB.into(),
        price: 6,
        summary: "Resolved the TODO in README.md.".into(),
        files: vec![
            DiffFile {
                path: "README.md".into(),
                warning: None,
                diff: "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,2 +1,2 @@\n # Demo\n-TODO: write the docs\n+DONE: write the docs\n".into(),
            },
            DiffFile {
                path: ".github/workflows/ci.yml".into(),
                warning: Some("a CI workflow: it runs with the repository's secrets".into()),
                diff: "diff --git a/.github/workflows/ci.yml b/.github/workflows/ci.yml\n--- a/.github/workflows/ci.yml\n+++ b/.github/workflows/ci.yml\n@@ -1 +1 @@\n-on: push\n+on: [push, pull_request]\n".into(),
            },
        ],
        insertions: 2,
        deletions: 2,
    }
}

/// A job asked for and followed up to the point where its result waits.
fn through_delivery(app: &mut App, t0: Instant) {
    let asked = typed(app, "resolve the TODO");
    assert_eq!(asked, []);
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Ask("resolve the TODO".into())]);
    for update in [
        JobUpdate::Announced { job: JOB.into(), price: 6 },
        JobUpdate::Matched {
            acceptor: "a1b2c3d4e5f6".into(),
            agent: "builtin".into(),
            model: "scripted".into(),
        },
        JobUpdate::Packed { bytes: 12_345 },
        JobUpdate::Reserved { amount: 6 },
        JobUpdate::Uploading { sent: 12_345, total: 12_345 },
        JobUpdate::Step("read_file README.md".into()),
        JobUpdate::Step("write_file README.md".into()),
        JobUpdate::Received { files: 2, insertions: 2, deletions: 2 },
    ] {
        app.update(Update::Job(update));
    }
    app.set_now(t0 + Duration::from_secs(65));
    app.update(Update::Job(JobUpdate::Delivered(Box::new(delivery()))));
}

#[test]
fn the_screen_in_each_state() {
    let t0 = Instant::now();
    let mut app = app(t0);
    insta::assert_snapshot!("opened", draw(&app, 80, 24));

    typed(&mut app, "/s");
    insta::assert_snapshot!("completing", draw(&app, 80, 24));
    app.key(key(KeyCode::Esc));

    typed(&mut app, "resolve the TODO");
    app.key(key(KeyCode::Enter));
    app.update(Update::Job(JobUpdate::Announced { job: JOB.into(), price: 6 }));
    app.update(Update::Job(JobUpdate::Matched {
        acceptor: "a1b2c3d4e5f6".into(),
        agent: "builtin".into(),
        model: "scripted".into(),
    }));
    app.update(Update::Job(JobUpdate::Packed { bytes: 2_400_000 }));
    app.update(Update::Job(JobUpdate::Uploading { sent: 1_200_000, total: 2_400_000 }));
    app.tick(t0 + Duration::from_secs(3));
    insta::assert_snapshot!("uploading", draw(&app, 80, 24));

    app.update(Update::Job(JobUpdate::Uploading { sent: 2_400_000, total: 2_400_000 }));
    app.update(Update::Job(JobUpdate::Step("read_file README.md".into())));
    app.tick(t0 + Duration::from_secs(65));
    insta::assert_snapshot!("running", draw(&app, 80, 24));

    app.update(Update::Job(JobUpdate::Received { files: 2, insertions: 2, deletions: 2 }));
    app.update(Update::Job(JobUpdate::Delivered(Box::new(delivery()))));
    app.tick(t0 + Duration::from_secs(78));
    insta::assert_snapshot!("deciding", draw(&app, 80, 24));

    app.key(key(KeyCode::Char('d')));
    insta::assert_snapshot!("diff_first_file", draw(&app, 80, 24));
    app.key(key(KeyCode::Down));
    insta::assert_snapshot!("diff_sensitive_file", draw(&app, 80, 24));
    app.key(key(KeyCode::Esc));

    let decided = app.key(key(KeyCode::Char('y')));
    assert_eq!(decided, [Action::Decide { job: JOB.into(), apply: true }]);
    app.update(Update::Job(JobUpdate::Settled {
        applied: true,
        paid: 6,
        detail: vec!["2 file(s) applied to ~/src/demo".into()],
    }));
    app.update(Update::Status { balance: Some(94), peers: 2, served: 3 });
    app.update(Update::Conversation { turns: 1, ctx: 4 });
    insta::assert_snapshot!("settled", draw(&app, 80, 24));
}

#[test]
fn serving_login_and_quitting_are_drawn() {
    let t0 = Instant::now();
    let mut app = app(t0);
    typed(&mut app, "/serve -n 3");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Serve { max_jobs: Some(3), model: None }]);
    app.update(Update::Serving(Some(ServePanel {
        agents: "builtin, claude".into(),
        accepted: 1,
        running: 1,
        earned: 12,
        max_jobs: Some(3),
        offering: true,
    })));
    app.update(Update::Lines(vec![(
        Tone::Dim,
        "⚙ job 9e41d7b3 running: the builtin agent runs".into(),
    )]));
    insta::assert_snapshot!("serving", draw(&app, 80, 24));
    assert_eq!(app.key(key(KeyCode::Esc)), [Action::StopServing]);

    typed(&mut app, "/login anthropic");
    assert_eq!(app.key(key(KeyCode::Enter)), []);
    app.paste("sk-ant-api03-secret");
    insta::assert_snapshot!("secret", draw(&app, 80, 24));
    let sent = app.key(key(KeyCode::Enter));
    let [Action::LoginKey { target, key: secret }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!((target.as_str(), secret.as_str()), ("anthropic", "sk-ant-api03-secret"));
    // The key is never on the screen, in the transcript or in the history.
    assert!(!draw(&app, 80, 24).contains("secret"));
    assert!(!app.history().iter().any(|h| h.contains("sk-ant")));

    typed(&mut app, "fix it");
    app.key(key(KeyCode::Enter));
    typed(&mut app, "/quit");
    assert_eq!(app.key(key(KeyCode::Enter)), []);
    insta::assert_snapshot!("confirm_quit", draw(&app, 80, 24));
    assert_eq!(app.key(key(KeyCode::Char('y'))), [Action::Quit]);
    assert!(app.should_quit());
}

#[test]
fn small_and_wide_terminals() {
    let t0 = Instant::now();
    let mut app = app(t0);
    through_delivery(&mut app, t0);
    insta::assert_snapshot!("too_small", draw(&app, 30, 8));
    insta::assert_snapshot!("wide_deciding", draw(&app, 120, 16));
}

#[test]
fn no_colour_means_no_colour() {
    let t0 = Instant::now();
    for color in [false, true] {
        let mut app = App::new(session(color), t0);
        through_delivery(&mut app, t0);
        app.key(key(KeyCode::Char('d')));
        let coloured = frame(&app, 80, 24)
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count();
        assert_eq!(coloured > 0, color, "colour {color}: {coloured} coloured cells");
    }
}

#[test]
fn the_apply_prompt_answers_no_when_its_time_is_up() {
    let t0 = Instant::now();
    let mut app = app(t0);
    through_delivery(&mut app, t0);
    assert_eq!(app.tick(t0 + Duration::from_secs(65 + 59)), []);
    assert_eq!(
        app.tick(t0 + Duration::from_secs(65 + 60)),
        [Action::Decide { job: JOB.into(), apply: false }]
    );
    // Once: a later tick or key does not decide again.
    assert_eq!(app.tick(t0 + Duration::from_secs(200)), []);
    assert_eq!(app.key(key(KeyCode::Char('y'))), []);
}

#[test]
fn keys_ask_for_what_they_say() {
    let t0 = Instant::now();
    let mut app = app(t0);
    // Plain text asks; a second prompt while one is in flight is refused.
    typed(&mut app, "one");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Ask("one".into())]);
    typed(&mut app, "two");
    assert_eq!(app.key(key(KeyCode::Enter)), []);
    // Esc before an acceptor is chosen cancels; Ctrl-C cancels, and a second quits.
    assert_eq!(app.key(key(KeyCode::Esc)), [Action::Cancel]);
    assert_eq!(app.key(ctrl('c')), [Action::Cancel]);
    app.set_now(t0 + Duration::from_millis(500));
    assert_eq!(app.key(ctrl('c')), [Action::Quit]);

    let mut app = self::app(t0);
    // A backslash or alt-enter makes a newline; the prompt keeps it.
    typed(&mut app, "first\\");
    assert_eq!(app.key(key(KeyCode::Enter)), []);
    typed(&mut app, "second");
    app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
    typed(&mut app, "third");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Ask("first\nsecond\nthird".into())]);
    app.update(Update::Job(JobUpdate::Ended { tone: Tone::Warn, message: "no acceptor".into() }));
    // History: the earlier session's line, then this one's.
    app.key(key(KeyCode::Up));
    app.key(key(KeyCode::Up));
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Ask("fix the flaky test".into())]);
    app.update(Update::Job(JobUpdate::Ended { tone: Tone::Warn, message: "no acceptor".into() }));
    // Tab completes a command; commands take their arguments.
    typed(&mut app, "/hi");
    app.key(key(KeyCode::Tab));
    typed(&mut app, " abc");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::History(Some("abc".into()))]);
    for (line, expected) in [
        ("/status", vec![Action::Status]),
        ("/PEERS", vec![Action::Peers]),
        ("/model opus", vec![Action::Model(Some("opus".into()))]),
        ("/model", vec![Action::Model(None)]),
        ("/login", vec![Action::Login]),
        // `/` alone is the help, and an ambiguous start is not completed to a command.
        ("/", vec![]),
        ("/c", vec![]),
        ("/serve 2", vec![Action::Serve { max_jobs: Some(2), model: None }]),
        (
            "/serve --model openai/gpt-4.1-mini",
            vec![Action::Serve { max_jobs: None, model: Some("openai/gpt-4.1-mini".into()) }],
        ),
        ("/serve -n 0", vec![]),
        ("/serve -n", vec![]),
        ("/nope", vec![]),
        ("/apply", vec![]),
        ("/cancel", vec![]),
    ] {
        typed(&mut app, line);
        assert_eq!(app.key(key(KeyCode::Enter)), expected, "{line}");
    }
    // With nothing under way, /quit quits at once.
    typed(&mut app, "/q");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Quit]);
}

#[test]
fn a_job_taken_up_again_shows_and_decides() {
    let t0 = Instant::now();
    let mut app = app(t0);
    app.update(Update::Job(JobUpdate::Resumed {
        job: JOB.into(),
        title: "resolve the TODO".into(),
    }));
    app.update(Update::Job(JobUpdate::Delivered(Box::new(delivery()))));
    insta::assert_snapshot!("resumed", draw(&app, 80, 24));
    typed(&mut app, "/reject");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Decide { job: JOB.into(), apply: false }]);
}

#[test]
fn a_key_typed_after_login_is_never_kept() {
    let t0 = Instant::now();
    let mut app = app(t0);
    // The key on the command line itself: refused, not shown, not kept.
    typed(&mut app, "/login openai sk-proj-abcdef");
    assert_eq!(app.key(key(KeyCode::Enter)), []);
    assert!(!draw(&app, 80, 24).contains("sk-proj"));
    assert!(!app.history().iter().any(|h| h.contains("sk-proj") || h.contains("/login")));
    // Escape leaves the masked prompt without sending anything.
    typed(&mut app, "/login openai");
    app.key(key(KeyCode::Enter));
    typed(&mut app, "sk-proj-abcdef");
    assert_eq!(app.key(key(KeyCode::Esc)), []);
    assert!(!draw(&app, 80, 24).contains("sk-proj"));
    // A paste is capped, and control characters are dropped.
    typed(&mut app, "/login openai");
    app.key(key(KeyCode::Enter));
    app.paste(&format!("sk-\u{1b}[2J{}", "x".repeat(10_000)));
    let sent = app.key(key(KeyCode::Enter));
    let [Action::LoginKey { target, key: secret }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(
        (target.as_str(), secret.len(), secret.starts_with("sk-[2J")),
        ("openai", 4096, true)
    );
}

#[test]
fn news_of_a_cancelled_job_does_not_bring_it_back() {
    let t0 = Instant::now();
    let mut app = app(t0);
    typed(&mut app, "one");
    app.key(key(KeyCode::Enter));
    assert_eq!(app.key(ctrl('c')), [Action::Cancel]);
    app.update(Update::Job(JobUpdate::Ended { tone: Tone::Dim, message: "cancelled".into() }));
    // Steps the job sent before it was cancelled arrive late: they are dropped.
    app.update(Update::Job(JobUpdate::Step("read_file README.md".into())));
    app.update(Update::Job(JobUpdate::Delivered(Box::new(delivery()))));
    app.set_now(t0 + Duration::from_secs(5));
    typed(&mut app, "two");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Ask("two".into())]);
    assert!(!draw(&app, 80, 24).contains("read_file"));
}

#[test]
fn a_result_offered_again_after_a_failed_apply_can_be_decided() {
    let t0 = Instant::now();
    let mut app = app(t0);
    through_delivery(&mut app, t0);
    assert_eq!(app.key(key(KeyCode::Char('y'))), [Action::Decide { job: JOB.into(), apply: true }]);
    // The apply failed (nothing decided): the caller offers the result again.
    app.update(Update::Lines(vec![(Tone::Bad, "git failed; nothing was decided".into())]));
    app.update(Update::Job(JobUpdate::Delivered(Box::new(delivery()))));
    assert_eq!(
        app.key(key(KeyCode::Char('n'))),
        [Action::Decide { job: JOB.into(), apply: false }]
    );
}

#[test]
fn a_long_file_list_scrolls_with_the_selection() {
    let t0 = Instant::now();
    let mut app = app(t0);
    let mut many = delivery();
    many.files = (0..40)
        .map(|i| DiffFile {
            path: format!("src/file{i:02}.rs"),
            warning: (i == 39).then(|| "a build script: it runs when the project builds".into()),
            diff: format!("diff --git a/src/file{i:02}.rs b/src/file{i:02}.rs\n+line\n"),
        })
        .collect();
    typed(&mut app, "many");
    app.key(key(KeyCode::Enter));
    app.update(Update::Job(JobUpdate::Delivered(Box::new(many))));
    app.key(key(KeyCode::Char('d')));
    for _ in 0..39 {
        app.key(key(KeyCode::Down));
    }
    insta::assert_snapshot!("diff_last_of_many", draw(&app, 80, 24));
}

#[test]
fn the_model_picker_chooses_a_tier() {
    let t0 = Instant::now();
    let mut app = app(t0);
    typed(&mut app, "/model");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Model(None)]);
    app.update(Update::Tiers(vec![
        ("codex".into(), 2),
        ("haiku".into(), 2),
        ("opus".into(), 30),
        ("sonnet".into(), 6),
    ]));
    insta::assert_snapshot!("model_picker", draw(&app, 80, 24));
    app.key(key(KeyCode::Up));
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Model(Some("opus".into()))]);
    // Esc closes it without a choice; /new and /clear forget the conversation.
    app.update(Update::Tiers(vec![("haiku".into(), 2)]));
    assert_eq!(app.key(key(KeyCode::Esc)), []);
    typed(&mut app, "/new");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::NewConversation]);
    typed(&mut app, "/clear");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::NewConversation]);
}

#[test]
fn an_action_the_caller_could_not_take_is_undone() {
    let t0 = Instant::now();
    let mut app = app(t0);
    through_delivery(&mut app, t0);
    let decided = app.key(key(KeyCode::Char('y')));
    app.not_sent(&decided[0]);
    // The result waits again, and the answer can be given again.
    assert_eq!(
        app.key(key(KeyCode::Char('n'))),
        [Action::Decide { job: JOB.into(), apply: false }]
    );
    app.update(Update::Job(JobUpdate::Settled { applied: false, paid: 3, detail: Vec::new() }));
    typed(&mut app, "again");
    let asked = app.key(key(KeyCode::Enter));
    app.not_sent(&asked[0]);
    typed(&mut app, "again");
    assert_eq!(app.key(key(KeyCode::Enter)), [Action::Ask("again".into())]);
}

#[test]
fn paging_up_stops_at_the_top_and_down_comes_back() {
    let t0 = Instant::now();
    let mut app = app(t0);
    let lines: Vec<(Tone, String)> = (1..=40).map(|i| (Tone::Plain, format!("line {i}"))).collect();
    app.update(Update::Lines(lines));
    let bottom = draw(&app, 80, 24);
    assert!(bottom.contains("line 40") && !bottom.contains("line 20\n"), "{bottom}");
    for _ in 0..30 {
        app.key(key(KeyCode::PageUp));
        draw(&app, 80, 24);
    }
    let top = draw(&app, 80, 24);
    assert!(top.contains("type what the network") && top.contains("line 1\n"), "{top}");
    // However often PgUp was pressed, as few PgDn come back down as it takes.
    for _ in 0..3 {
        app.key(key(KeyCode::PageDown));
    }
    assert_eq!(draw(&app, 80, 24), bottom);
}

#[test]
fn an_acceptors_text_never_reaches_the_terminal_as_control_sequences() {
    let t0 = Instant::now();
    let mut app = app(t0);
    typed(&mut app, "go");
    app.key(key(KeyCode::Enter));
    // A clipboard write (OSC 52), a screen clear and a bell, in a step, a summary and a path.
    let hostile = "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{1b}[31mred\r";
    app.update(Update::Job(JobUpdate::Step(hostile.into())));
    let mut result = delivery();
    result.summary = hostile.into();
    result.files[0].path = format!("README{hostile}.md");
    app.update(Update::Job(JobUpdate::Delivered(Box::new(result))));
    for view in [false, true] {
        if view {
            app.key(key(KeyCode::Char('d')));
        }
        let controls: Vec<String> = frame(&app, 80, 24)
            .content()
            .iter()
            .map(|c| c.symbol().to_owned())
            .filter(|s| s.chars().any(char::is_control))
            .collect();
        assert_eq!(controls, Vec::<String>::new(), "diff viewer open: {view}");
    }
}
