//! How long the screen takes to draw one frame in its heaviest states: a full transcript (the
//! 5,000 lines kept), scrolled to the bottom and scrolled up, and the diff viewer on a file at
//! the 256 KiB the viewer holds. The screen redraws after every key and update and five times a
//! second, so a frame must stay well under a millisecond or two.
//!
//! Run with `cargo bench -p ash-tui --bench render` (an optimised build). Prints the median and
//! the slowest of 200 frames for each case, on ratatui's test backend (no terminal I/O).
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "a benchmark binary")]

use std::time::{Duration, Instant};

use ash_tui::{
    App, Delivery, DiffFile, JobUpdate, KeyCode, KeyEvent, KeyModifiers, Session, Tone, Update,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const FRAMES: usize = 200;

fn session() -> Session {
    Session {
        version: "0.1.0".into(),
        identity: "d35c2ac75575".into(),
        username: Some("bob".into()),
        directory: "~/src/demo".into(),
        tier: "sonnet".into(),
        price: Some(6),
        agents: "any agent".into(),
        color: true,
        decide_within: Duration::from_secs(60),
        history: Vec::new(),
    }
}

fn transcript(app: &mut App) {
    let lines: Vec<(Tone, String)> = (0..5_000)
        .map(|i| (Tone::Agent, format!("● step {i}: read_file src/module_{i}.rs and then some words to wrap across the width of a terminal")))
        .collect();
    app.update(Update::Lines(lines));
}

fn time(name: &str, app: &App, width: u16, height: u16) {
    let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut times = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        let started = Instant::now();
        term.draw(|frame| app.render(frame)).unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{name:<44} median {:>8.1} µs   slowest {:>8.1} µs",
        times[FRAMES / 2].as_secs_f64() * 1e6,
        times[FRAMES - 1].as_secs_f64() * 1e6
    );
}

fn main() {
    let now = Instant::now();
    let mut app = App::new(session(), now);
    transcript(&mut app);
    time("transcript of 5,000 lines, 80x24", &app, 80, 24);
    time("transcript of 5,000 lines, 200x60", &app, 200, 60);
    for _ in 0..200 {
        app.key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
    }
    time("transcript scrolled up 2,000 rows, 200x60", &app, 200, 60);

    let mut app = App::new(session(), now);
    transcript(&mut app);
    let mut diff = String::from(
        "diff --git a/big.rs b/big.rs\n--- a/big.rs\n+++ b/big.rs\n@@ -1 +1,4000 @@\n",
    );
    while diff.len() < 256 << 10 {
        diff.push_str("+    let value = compute(input, &mut state).expect(\"a line of code\");\n");
    }
    for c in "big".chars() {
        app.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let delivery = Delivery {
        job: "5f0c2a9e41d7b3c8a6e2f1d0c9b8a7e6".into(),
        price: 6,
        summary: "done".into(),
        files: vec![DiffFile { path: "big.rs".into(), warning: None, diff }],
        insertions: 4000,
        deletions: 1,
    };
    app.update(Update::Job(JobUpdate::Delivered(Box::new(delivery))));
    app.key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE));
    time("diff viewer, 256 KiB file, top, 200x60", &app, 200, 60);
    for _ in 0..300 {
        app.key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
    }
    time("diff viewer, 256 KiB file, 3,000 rows down", &app, 200, 60);
}
