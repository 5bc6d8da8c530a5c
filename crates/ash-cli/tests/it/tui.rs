//! `ash` alone in a real terminal: tmux runs the TUI, `send-keys` types, `capture-pane` reads
//! the screen, against a real acceptor (`ash serve` with the built-in agent on a scripted
//! model) on loopback; the diff lands in the repository and the balances move.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;

use super::jobs::{Pair, credits, run_ok, slow_script};
use super::network::{ash, stop};

/// A tmux server of its own running `ash` in one window.
struct Screen {
    socket: PathBuf,
}

impl Screen {
    /// `ash` (no arguments) in `cwd` with `home`, on a `width`×`height` terminal.
    fn open(home: &Path, cwd: &Path, width: u16, height: u16) -> Self {
        let socket = home.join(format!("tmux-{}.sock", std::process::id()));
        let command = format!(
            "env -i ASH_HOME={home} HOME={home} PATH=/usr/local/bin:/usr/bin:/bin TERM=xterm-256color LANG=C.UTF-8 NO_COLOR=1 {bin}",
            home = home.display(),
            bin = env!("CARGO_BIN_EXE_ash"),
        );
        let screen = Self { socket };
        screen.tmux(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-c",
            cwd.to_str().unwrap(),
            &command,
        ]);
        screen
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("tmux runs (CI installs it)")
    }

    /// What the terminal shows now.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "0"]).stdout).into_owned()
    }

    /// Types `text` as it is.
    fn typed(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "0", "-l", text]);
    }

    /// Types `line` and presses Enter.
    fn submit(&self, line: &str) {
        self.typed(line);
        self.press("Enter");
    }

    /// Presses a key by tmux's name for it (`Enter`, `Escape`, `C-c`).
    fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "0", key]);
    }

    /// Waits until the screen shows `needle`, and returns the screen.
    fn wait_for(&self, needle: &str, within: Duration) -> String {
        self.wait_until(&format!("{needle:?}"), within, |text| text.contains(needle))
    }

    /// Waits until the screen is as `done` wants it, and returns the screen.
    fn wait_until(&self, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            assert!(started.elapsed() < within, "the screen never showed {what}:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `ash` exited (its window, and so the session, closed).
    fn wait_closed(&self, within: Duration) {
        let started = Instant::now();
        while self.tmux(&["has-session"]).status.success() {
            assert!(started.elapsed() < within, "ash did not exit:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn a_job_asked_for_in_the_tui_is_applied_and_paid() {
    let pair = Pair::new();
    let (serve, lines, address) = pair.serve(&["--model", "scripted"]);
    pair.bonus(&address);
    // Bob's home remembers Alice's address from his join.
    let screen = Screen::open(&pair.bob, &pair.repo, 100, 30);
    screen.wait_for(" · 100cr · 1 peer · sonnet 6cr · any agent · served 0", LONG);
    screen.submit("resolve the TODO");
    let deciding = screen.wait_for("Apply? y = apply (6cr) · n = leave the tree (3cr)", LONG);
    for line in ["❯ resolve the TODO", "● matched", "⎿ 1 file changed +1 / -1", "  • README.md"]
    {
        assert!(deciding.contains(line), "{line:?} in\n{deciding}");
    }
    // The diff viewer shows the change; the decision is taken from the prompt.
    screen.press("d");
    screen.wait_for("+DONE: write the docs", LONG);
    screen.press("Escape");
    screen.press("y");
    screen.wait_for("⎿ patch applied · 6cr spent", LONG);
    // The job is a turn of the conversation the next prompt carries.
    screen.wait_for(" · 94cr · 1 peer · sonnet 6cr · any agent · served 0 · turn 1 ctx ", LONG);
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    // A smaller terminal redraws: the prompt line and the status bar stay at the bottom.
    screen.tmux(&["resize-window", "-t", "0", "-x", "80", "-y", "24"]);
    screen.wait_until("24 rows ending in the status bar", LONG, |text| {
        let rows: Vec<&str> = text.lines().collect();
        rows.len() == 24
            && rows[21].starts_with("❯ type a prompt")
            && rows[23].starts_with(' ')
            && rows[23].contains(" · 94cr · 1 peer")
            && rows.iter().all(|r| r.chars().count() <= 80)
    });
    screen.submit("/quit");
    screen.wait_closed(LONG);
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    let events = stop(serve, lines);
    let collected = events.iter().any(|e| e["event"] == "job" && e["state"] == "collected");
    assert!(collected, "{events:?}");
    // What the session typed is kept for the next one.
    let history = std::fs::read_to_string(pair.bob.join("tui-history")).unwrap();
    assert_eq!(history, "\"resolve the TODO\"\n\"/quit\"\n");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(pair.bob.join("tui-history")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn quitting_mid_job_asks_and_the_job_is_back_after_a_restart() {
    let pair = Pair::new();
    let slow = slow_script(&pair);
    let (serve, lines, address) = pair.serve(&["--model", &slow]);
    pair.bonus(&address);
    let screen = Screen::open(&pair.bob, &pair.repo, 80, 24);
    screen.wait_for(" · 100cr · 1 peer", LONG);
    screen.submit("resolve the TODO");
    screen.wait_for("● matched", LONG);
    screen.submit("/quit");
    screen.wait_for("(y/n)", LONG);
    screen.press("y");
    screen.wait_closed(LONG);
    drop(screen);

    // The job is durable: the next screen follows it to its result.
    let screen = Screen::open(&pair.bob, &pair.repo, 80, 24);
    screen.wait_for("continues: resolve the TODO", LONG);
    screen.wait_for("Apply?", LONG);
    screen.press("n");
    screen.wait_for("⎿ not applied · 3cr spent", LONG);
    assert_eq!(pair.readme(), "# Demo\nTODO: write the docs\n");
    screen.press("C-c");
    screen.press("C-c");
    screen.wait_closed(LONG);
    assert_eq!(credits(&pair.bob), (100, 0, 3, 0, 97));
    drop(stop(serve, lines));
}

#[test]
fn the_tui_serves_jobs_in_its_background() {
    let pair = Pair::new();
    // Alice, the network's mint authority, serves from her screen.
    let screen = Screen::open(&pair.alice, pair.root.path(), 100, 30);
    screen.wait_for("0 peers", LONG);
    screen.submit("/serve -n 1 --model scripted");
    screen.wait_for("⚙ serving builtin · accepted 0/1 · running 0 · earned 0cr", LONG);
    // Her screen's node listens where `ash status` of her home says.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pair.alice.join("run").join("node.json")).unwrap())
            .unwrap();
    let address = state["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.starts_with("/ip4/127.0.0.1/"))
        .unwrap()
        .to_owned();
    pair.bonus(&address);
    let out = pair.run(&address, &["resolve the TODO", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    // It took its one job, was paid, and stops offering.
    screen.wait_for("collected: 6 credits (accepted)", LONG);
    screen.wait_for(" · 106cr · ", LONG);
    screen.wait_for(" · served 1", LONG);
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    screen.press("C-c");
    screen.press("C-c");
    screen.wait_closed(LONG);
}

#[test]
fn a_lost_terminal_ends_the_screen_and_keeps_the_home() {
    let pair = Pair::new();
    let screen = Screen::open(&pair.alice, &pair.repo, 80, 24);
    screen.wait_for("type a prompt", LONG);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pair.alice.join("run").join("node.json")).unwrap())
            .unwrap();
    let pid = state["pid"].as_u64().unwrap();
    // The terminal goes away (its server is killed): ash exits instead of running blind.
    screen.tmux(&["kill-server"]);
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let started = Instant::now();
    while proc.exists() && !zombie(&proc) {
        assert!(started.elapsed() < LONG, "ash {pid} still runs without its terminal");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(screen);
    // The home is usable at once: its writer lock was let go, and a new screen opens on it.
    let again = Screen::open(&pair.alice, &pair.repo, 80, 24);
    again.wait_for("type a prompt", LONG);
    drop(again);
    let log = std::fs::read_to_string(pair.alice.join("logs").join("tui.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// Whether the process at `/proc/<pid>` has exited and waits to be reaped.
fn zombie(proc: &Path) -> bool {
    std::fs::read_to_string(proc.join("stat"))
        .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[test]
fn outside_a_terminal_ash_alone_prints_its_help() {
    let home = tempfile::tempdir().unwrap();
    let out = ash(home.path()).stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = String::from_utf8_lossy(&out.stderr);
    assert!(
        help.contains("Usage: ash [COMMAND]") && help.contains("opens the full-screen TUI"),
        "{help}"
    );
    assert_eq!(out.stdout, b"");
}

#[test]
fn cancelling_says_what_it_costs_and_a_reserved_job_comes_back() {
    let pair = Pair::new();
    // Alice serves only opus: Bob's sonnet job finds no acceptor, and Esc cancels it freely.
    let (serve, lines, address) = pair.serve(&["--model", "scripted", "--tier", "opus"]);
    pair.bonus(&address);
    let screen = Screen::open(&pair.bob, &pair.repo, 100, 30);
    screen.wait_for(" · 100cr · 1 peer", LONG);
    screen.submit("resolve the TODO");
    screen.wait_for("⎿ announced", LONG);
    screen.press("Escape");
    screen.wait_for("cancelled before an acceptor was chosen · nothing was charged", LONG);
    let jobs = run_ok(ash(&pair.bob).args(["jobs", "--json"]));
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs["jobs"][0]["state"], "no-offer", "{jobs}");
    screen.press("C-c");
    screen.press("C-c");
    screen.wait_closed(LONG);
    drop(screen);
    drop(stop(serve, lines));

    // Alice serves sonnet, slowly: once matched, Ctrl-C stops following and the credits stay
    // reserved; the next screen takes the job up and it is decided there.
    let slow = slow_script(&pair);
    let (serve, lines, address) = pair.serve(&["--model", &slow]);
    // Bob's home finds Alice's new address as if given with --bootstrap before.
    std::fs::write(pair.bob.join("bootstrap.txt"), format!("{address}\n")).unwrap();
    let screen = Screen::open(&pair.bob, &pair.repo, 100, 30);
    screen.wait_for(" · 100cr · 1 peer", LONG);
    screen.submit("resolve the TODO");
    screen.wait_for("⎿ reserved 6cr", LONG);
    screen.press("C-c");
    screen.wait_for("its 6cr stay reserved", LONG);
    screen.wait_for(" · 94cr · ", LONG);
    screen.submit("/q");
    screen.wait_closed(LONG);
    drop(screen);
    let screen = Screen::open(&pair.bob, &pair.repo, 100, 30);
    screen.wait_for("continues: resolve the TODO", LONG);
    screen.wait_for("Apply?", LONG);
    screen.press("y");
    screen.wait_for("⎿ patch applied · 6cr spent", LONG);
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    screen.submit("/q");
    screen.wait_closed(LONG);
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    drop(stop(serve, lines));
}
