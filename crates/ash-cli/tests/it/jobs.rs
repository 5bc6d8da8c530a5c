//! `ash run` and `ash serve`: jobs between real processes on loopback, with ash's own coding
//! agent on scripted models, and balances checked on both sides afterwards.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::Value;

use super::network::{ash, stop, wait_event};
use super::stderr;

/// A network of two homes: Alice (the mint authority, who serves) and Bob (who asks).
pub(crate) struct Pair {
    pub(crate) root: tempfile::TempDir,
    pub(crate) alice: PathBuf,
    pub(crate) bob: PathBuf,
    pub(crate) repo: PathBuf,
}

pub(crate) fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository whose README.md has a TODO.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("README.md"), "# Demo\nTODO: write the docs\n").unwrap();
    std::fs::write(dir.join("main.rs"), "fn main() {}\n").unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ] {
        let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Pair {
    pub(crate) fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
        let genesis = root.path().join("demo.genesis.toml");
        for home in [&alice, &bob] {
            std::fs::create_dir_all(home).unwrap();
        }
        run_ok(
            ash(&alice)
                .args(["network", "create", "demo", "--signup-cost", "none", "-o"])
                .arg(&genesis),
        );
        run_ok(ash(&alice).args(["join", "--offline", "-u", "alice", "--network"]).arg(&genesis));
        let repo_dir = root.path().join("repo");
        repo(&repo_dir);
        Self { root, alice, bob, repo: repo_dir }
    }

    /// `ash serve` of Alice on a free loopback port, with `args`; its address once it listens
    /// and has minted Bob's bonus (Bob's profile is in her ledger only once he connects, so the
    /// bonus comes with his first command).
    pub(crate) fn serve(&self, args: &[&str]) -> (Child, BufReader<ChildStdout>, String) {
        self.serve_with(&[], args)
    }

    /// As [`Pair::serve`], with `env` added to Alice's environment.
    pub(crate) fn serve_with(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (Child, BufReader<ChildStdout>, String) {
        let mut child = ash(&self.alice)
            .envs(env.iter().copied())
            .args(["serve", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let listening =
            wait_event(&mut lines, Duration::from_secs(20), |e| e["event"] == "listening")
                .expect("ash serve did not listen");
        let address = listening["address"].as_str().unwrap().to_owned();
        (child, lines, address)
    }

    /// Bob's `ash run` in the repository, through `address`.
    pub(crate) fn run(&self, address: &str, args: &[&str]) -> std::process::Output {
        self.run_command(address, args).output().unwrap()
    }

    /// Bob's `ash run … --yes` in the background, its output piped.
    fn spawn_run(&self, address: &str) -> Child {
        self.run_command(address, &["resolve the TODO", "--yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run_command(&self, address: &str, args: &[&str]) -> Command {
        let mut command = ash(&self.bob);
        command
            .current_dir(&self.repo)
            .args(["run", "--no-mdns", "--json", "--wait", "20s", "--bootstrap", address])
            .args(args);
        command
    }

    /// Bob joins through Alice's node, and receives his signup bonus from it.
    pub(crate) fn bonus(&self, address: &str) {
        let genesis = self.root.path().join("demo.genesis.toml");
        run_ok(
            ash(&self.bob)
                .args(["join", "-u", "bob", "--no-mdns", "--bootstrap", address, "--network"])
                .arg(&genesis),
        );
        let balance = balance(&self.bob);
        assert_eq!(balance["received"], 100, "{balance}");
    }

    pub(crate) fn script(&self, name: &str, lines: &[Value]) -> String {
        let path = self.root.path().join(name);
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        format!("scripted:{}", path.display())
    }

    pub(crate) fn readme(&self) -> String {
        std::fs::read_to_string(self.repo.join("README.md")).unwrap()
    }
}

/// `ash status --json`'s balance of a home.
fn balance(home: &Path) -> Value {
    let out = run_ok(ash(home).args(["status", "--json"]));
    let status: Value = serde_json::from_str(&out).unwrap();
    status["balance"].clone()
}

/// (received, earned, paid, locked, spendable)
pub(crate) fn credits(home: &Path) -> (u64, u64, u64, u64, u64) {
    let b = balance(home);
    let n = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("{k} in {b}"));
    (n("received"), n("earned"), n("paid"), n("locked"), n("spendable"))
}

/// Words of a shell command line: spaces separate, double quotes group.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let readme = include_str!("../../../../README.md");
    let block = readme
        .split("<!-- quickstart:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- quickstart:end -->").next())
        .expect("README.md has a quick start between markers");
    let root = tempfile::tempdir().unwrap();
    let repo_dir = root.path().join("repo");
    repo(&repo_dir);
    let place = |text: &str| {
        text.replace(
            "/tmp/demo.genesis.toml",
            &root.path().join("demo.genesis.toml").display().to_string(),
        )
        .replace("/tmp/ash-", &format!("{}/ash-", root.path().display()))
    };
    let mut home: Option<PathBuf> = None;
    let mut serve: Option<(Child, BufReader<ChildStdout>)> = None;
    let mut address = String::new();
    let mut commands = 0;
    for line in block.lines().map(str::trim) {
        let line = line.split(" # ").next().unwrap_or(line).trim();
        if let Some(dir) = line.strip_prefix("export ASH_HOME=") {
            let dir = PathBuf::from(place(dir));
            std::fs::create_dir_all(&dir).unwrap();
            home = Some(dir);
            continue;
        }
        if !line.starts_with("ash ") {
            continue;
        }
        commands += 1;
        let line = place(line).replace("/ip4/127.0.0.1/tcp/4517/p2p/12D3KooW…", &address);
        let args = words(&line);
        let home = home.as_deref().expect("ASH_HOME is set before the first command");
        let mut command = ash(home);
        command.args(&args[1..]);
        if args[1] == "serve" {
            let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap());
            let mut text = String::new();
            while lines.read_line(&mut text).unwrap() > 0 {
                if let Some(found) = text.trim().strip_prefix("listening on /ip4/127.0.0.1/tcp/") {
                    address = format!("/ip4/127.0.0.1/tcp/{found}");
                    break;
                }
                text.clear();
            }
            assert!(!address.is_empty(), "ash serve printed no loopback address");
            serve = Some((child, lines));
        } else {
            let out = command.current_dir(&repo_dir).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{line}: {}", stderr(&out));
        }
    }
    assert_eq!(commands, 5, "the quick start is five commands");
    let readme_now = std::fs::read_to_string(repo_dir.join("README.md")).unwrap();
    assert_eq!(readme_now, "# Demo\nDONE: write the docs\n");
    let (bob, alice) = (root.path().join("ash-bob"), root.path().join("ash-alice"));
    assert_eq!(credits(&bob), (100, 0, 6, 0, 94));
    assert_eq!(credits(&alice), (100, 6, 0, 0, 106));
    let (mut child, _) = serve.expect("the quick start serves");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_job_comes_back_as_an_applied_diff_and_both_sides_settle() {
    let pair = Pair::new();
    let (serve, lines, address) = pair.serve(&["--model", "scripted"]);
    pair.bonus(&address);
    let out = pair.run(&address, &["resolve the TODO", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            result["state"].as_str(),
            result["outcome"].as_str(),
            result["applied"].as_bool(),
            result["files"].as_u64(),
            result["insertions"].as_u64(),
            result["deletions"].as_u64(),
            result["paid"].as_u64(),
            result["balance"].as_u64()
        ),
        (Some("decided"), Some("accept"), Some(true), Some(1), Some(1), Some(1), Some(6), Some(94)),
        "{result}"
    );
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    let events = stop(serve, lines);
    let states: Vec<&str> =
        events.iter().filter(|e| e["event"] == "job").filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states, ["offered", "assigned", "running", "delivered", "collected"], "{events:?}");
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    assert_eq!(credits(&pair.alice), (100, 6, 0, 0, 106));
    // Both histories show the job's settlement.
    let job = result["job"].as_str().unwrap();
    let history = |home: &Path| -> Vec<(String, i64, Option<String>)> {
        let rows: Value =
            serde_json::from_str(&run_ok(ash(home).args(["history", "--json"]))).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap().to_owned(),
                    r["change"].as_i64().unwrap(),
                    r["job"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    let j = Some(job.to_owned());
    assert_eq!(
        history(&pair.bob),
        [
            ("profile".to_owned(), 0, None),
            ("receive".to_owned(), 100, None),
            ("reserve".to_owned(), -6, j.clone()),
            ("receipt".to_owned(), 0, j.clone()),
            ("decide".to_owned(), 0, j.clone()),
        ]
    );
    assert_eq!(history(&pair.alice).last(), Some(&("collect".to_owned(), 6, j)));
    // (One file changed: the agent's skills were not copied into the repository.) Once
    // collected, nothing of the job is kept on the acceptor but its record.
    assert!(!pair.alice.join("jobs").join("ran").join(job).exists());
    assert!(pair.alice.join("jobs").join("jobs.db").exists());
}

#[test]
fn rejecting_a_result_pays_half_and_changes_nothing() {
    let pair = Pair::new();
    let (serve, lines, address) = pair.serve(&["--model", "scripted"]);
    pair.bonus(&address);
    // The tier `ash set` chose is the one paid for.
    assert_eq!(run_ok(ash(&pair.bob).args(["set", "claude-haiku"])), "model: haiku (2cr/task)\n");
    let unknown = ash(&pair.bob).args(["set", "gpt-9"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains(
            "unknown tier `gpt-9`; this network prices codex, haiku, machine, opus, sonnet"
        )
    );
    let out = pair.run(&address, &["resolve the TODO", "--no-apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (result["outcome"].as_str(), result["applied"].as_bool(), result["paid"].as_u64()),
        (Some("reject"), Some(false), Some(1)),
        "{result}"
    );
    assert_eq!(pair.readme(), "# Demo\nTODO: write the docs\n");
    stop(serve, lines);
    assert_eq!(credits(&pair.bob), (100, 0, 1, 0, 99));
    assert_eq!(credits(&pair.alice), (100, 1, 0, 0, 101));
}

#[test]
fn with_no_offer_in_time_nothing_is_charged() {
    let pair = Pair::new();
    let (serve, lines, address) = pair.serve(&["--model", "scripted"]);
    pair.bonus(&address);
    stop(serve, lines);
    let out = ash(&pair.bob)
        .current_dir(&pair.repo)
        .args(["run", "resolve the TODO", "--yes", "--no-mdns", "--wait", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no acceptor offered to run the job"), "{}", stderr(&out));
    assert_eq!(credits(&pair.bob), (100, 0, 0, 0, 100));
}

#[test]
fn an_agent_that_changes_nothing_costs_nothing() {
    let pair = Pair::new();
    let idle = pair.script("idle.jsonl", &[serde_json::json!({ "text": "Nothing to change." })]);
    let (serve, lines, address) = pair.serve(&["--model", &idle]);
    pair.bonus(&address);
    let out = pair.run(&address, &["resolve the TODO", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (result["state"].as_str(), result["reason"].as_str(), result["paid"].as_u64()),
        (Some("cancelled"), Some("the agent changed nothing (no change, no charge)"), Some(0)),
        "{result}"
    );
    stop(serve, lines);
    assert_eq!(credits(&pair.bob), (100, 0, 0, 0, 100));
    assert_eq!(credits(&pair.alice), (100, 0, 0, 0, 100));
}

#[test]
fn a_package_over_the_acceptors_limit_is_cancelled_at_once() {
    let pair = Pair::new();
    let (serve, lines, address) = pair.serve(&["--model", "scripted", "--max-package-mb", "0"]);
    pair.bonus(&address);
    let out = pair.run(&address, &["resolve the TODO", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["state"], "cancelled", "{result}");
    assert!(result["reason"].as_str().unwrap().contains("this node takes at most 0"), "{result}");
    stop(serve, lines);
    // Released with the acceptor's signed cancellation: nothing stays locked.
    assert_eq!(credits(&pair.bob), (100, 0, 0, 0, 100));
}

/// A free TCP port on loopback (bound and released).
/// A port free now and outside the kernel's range for outgoing connections (32768–60999), so
/// that a node restarted on it after a kill finds it still free even while other tests open
/// many connections.
fn free_port() -> u16 {
    let start = 20_000 + u16::try_from(std::process::id() % 10_000).unwrap_or(0);
    (start..32_000)
        .chain(20_000..start)
        .find(|port| {
            std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", *port)).is_ok()
        })
        .expect("a free port below 32000")
}

/// A scripted agent that waits before it edits (the delay is per streamed event: a few
/// seconds in all), time for a test to kill something.
pub(crate) fn slow_script(pair: &Pair) -> String {
    pair.script(
        "slow.jsonl",
        &[
            serde_json::json!({ "delayMs": 400, "toolCalls": [{ "id": "c1", "name": "search_files",
                "input": { "pattern": "TODO", "literal": true } }] }),
            serde_json::json!({ "toolCalls": [{ "id": "c2", "name": "edit_file",
                "input": { "path": "README.md", "old": "TODO", "new": "DONE" } }] }),
            serde_json::json!({ "text": "Resolved the TODO." }),
        ],
    )
}

fn kill9(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
}

fn job_event(lines: &mut BufReader<ChildStdout>, state: &str) -> Value {
    wait_event(lines, Duration::from_secs(60), |e| e["event"] == "job" && e["state"] == state)
        .unwrap_or_else(|| panic!("no job event `{state}`"))
}

#[test]
fn an_acceptor_killed_mid_run_takes_the_job_up_again_and_it_is_paid_once() {
    let pair = Pair::new();
    let slow = slow_script(&pair);
    let port = free_port().to_string();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let serve_args = ["--model", slow.as_str()];
    let start = |pair: &Pair| {
        let mut child = ash(&pair.alice)
            .args(["serve", "--listen", &listen, "--no-mdns", "--json"])
            .args(serve_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let at = wait_event(&mut lines, Duration::from_secs(20), |e| e["event"] == "listening")
            .expect("listening");
        (child, lines, at["address"].as_str().unwrap().to_owned())
    };
    let (mut serve, mut lines, address) = start(&pair);
    pair.bonus(&address);
    let run = pair.spawn_run(&address);
    let running = job_event(&mut lines, "running");
    kill9(&mut serve);
    // The same node comes back at the same address and finds the job where it was: running
    // again, or (when the kill came just as the agent finished) with its result delivered, to
    // be collected.
    let (serve, mut lines, _) = start(&pair);
    let again = wait_event(&mut lines, Duration::from_secs(60), |e| {
        e["event"] == "job" && matches!(e["state"].as_str(), Some("running" | "collected"))
    })
    .expect("the job is taken up again");
    assert_eq!(again["job"], running["job"]);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((result["job"].clone(), result["paid"].as_u64()), (running["job"].clone(), Some(6)));
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    if again["state"] == "running" {
        job_event(&mut lines, "collected");
    }
    stop(serve, lines);
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    assert_eq!(credits(&pair.alice), (100, 6, 0, 0, 106));
}

#[test]
fn a_requester_killed_mid_run_takes_its_result_up_again_with_resume() {
    let pair = Pair::new();
    let slow = slow_script(&pair);
    let (serve, mut lines, address) = pair.serve(&["--model", &slow]);
    pair.bonus(&address);
    let mut run = pair.spawn_run(&address);
    let running = job_event(&mut lines, "running");
    kill9(&mut run);
    // The acceptor delivers to nobody and keeps the sealed result.
    job_event(&mut lines, "delivered");
    let job = running["job"].as_str().unwrap();
    let listed = run_ok(ash(&pair.bob).args(["jobs", "--json"]));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        (listed["jobs"][0]["job"].as_str(), listed["jobs"][0]["state"].as_str()),
        (Some(job), Some("running")),
        "{listed}"
    );
    let out = ash(&pair.bob)
        .args(["run", "--resume", job, "--yes", "--json", "--no-mdns", "--bootstrap", &address])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((result["outcome"].as_str(), result["paid"].as_u64()), (Some("accept"), Some(6)));
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    // Resuming a decided job changes nothing and pays nothing again.
    let again = ash(&pair.bob)
        .args(["run", "--resume", job, "--yes", "--json", "--no-mdns", "--bootstrap", &address])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    job_event(&mut lines, "collected");
    stop(serve, lines);
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    assert_eq!(credits(&pair.alice), (100, 6, 0, 0, 106));
}

#[test]
fn a_job_crosses_a_router_between_two_machines() {
    // Bob's machine and Alice's are on two networks joined by a router (network namespaces).
    let Some(lan) = super::network::Lan::routed(7, true) else {
        eprintln!("skipping: needs root and ip(8) for network namespaces");
        return;
    };
    let pair = Pair::new();
    let (serve, mut lines) =
        lan.node(0, &pair.alice, &["serve", "--model", "scripted", "--no-mdns"]);
    let listening = wait_event(&mut lines, Duration::from_secs(20), |e| {
        e["event"] == "listening"
            && e["address"].as_str().is_some_and(|a| a.contains("/10.77.7.1/tcp/"))
    })
    .expect("ash serve listens on its LAN address");
    let address = listening["address"].as_str().unwrap().to_owned();
    let genesis = pair.root.path().join("demo.genesis.toml");
    let joined = lan
        .ash(2, &pair.bob)
        .args(["join", "-u", "bob", "--no-mdns", "--bootstrap", &address, "--network"])
        .arg(&genesis)
        .output()
        .unwrap();
    assert_eq!(joined.status.code(), Some(0), "{}", stderr(&joined));
    let out = lan
        .ash(2, &pair.bob)
        .current_dir(&pair.repo)
        .args(["run", "resolve the TODO", "--yes", "--json", "--no-mdns"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((result["outcome"].as_str(), result["paid"].as_u64()), (Some("accept"), Some(6)));
    assert_eq!(pair.readme(), "# Demo\nDONE: write the docs\n");
    job_event(&mut lines, "collected");
    stop(serve, lines);
    assert_eq!(credits(&pair.bob), (100, 0, 6, 0, 94));
    assert_eq!(credits(&pair.alice), (100, 6, 0, 0, 106));
}

#[test]
fn a_result_that_no_longer_applies_is_rejected_and_changes_nothing() {
    let pair = Pair::new();
    let slow = slow_script(&pair);
    let (serve, mut lines, address) = pair.serve(&["--model", &slow]);
    pair.bonus(&address);
    let run = pair.spawn_run(&address);
    job_event(&mut lines, "running");
    // Bob edits the same line while the agent works.
    std::fs::write(pair.repo.join("README.md"), "# Demo\nWIP: write the docs\n").unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            result["outcome"].as_str(),
            result["applied"].as_bool(),
            result["conflicts"].clone(),
            result["paid"].as_u64()
        ),
        (Some("reject"), Some(false), serde_json::json!(["README.md"]), Some(3)),
        "{result}"
    );
    assert_eq!(pair.readme(), "# Demo\nWIP: write the docs\n");
    job_event(&mut lines, "collected");
    stop(serve, lines);
    assert_eq!(credits(&pair.bob), (100, 0, 3, 0, 97));
    assert_eq!(credits(&pair.alice), (100, 3, 0, 0, 103));
}

#[test]
fn a_job_that_cannot_be_paid_or_asked_for_is_refused_before_anything_is_sent() {
    let pair = Pair::new();
    let genesis = pair.root.path().join("demo.genesis.toml");
    // Bob joins offline: an identity with no credits yet.
    run_ok(ash(&pair.bob).args(["join", "--offline", "-u", "bob", "--network"]).arg(&genesis));
    let long = "x".repeat(33 << 10);
    let cases: [(&[&str], i32, &str); 8] = [
        (&["run", "fix it"], 2, "no terminal to ask whether to apply the result on"),
        (&["run", "fix it", "--yes", "--agent", "gpt"], 2, "no agent `gpt`"),
        (&["run", "  ", "--yes"], 1, "the prompt is empty"),
        (&["run", &long, "--yes"], 1, "a job's prompt is at most 32768"),
        (&["run", "fix it", "--yes", "--tier", "gpt-9"], 1, "no price for the tier `gpt-9`"),
        (
            &["run", "fix it", "--yes", "--max-price", "5"],
            1,
            "costs 6 credits on this network, over --max-price 5",
        ),
        (&["run", "fix it", "--yes"], 1, "costs 6 credits and 0 are spendable"),
        (
            &["run", "--resume", "0123456789abcdef0123456789abcdef", "--yes"],
            2,
            "no job 0123456789abcdef0123456789abcdef was asked for",
        ),
    ];
    for (args, code, expected) in cases {
        let out = ash(&pair.bob)
            .current_dir(&pair.repo)
            .args(args)
            .args(["--no-mdns", "--wait", "1s"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
    // Nothing was reserved, and no job was recorded past its announcement.
    assert_eq!(credits(&pair.bob), (0, 0, 0, 0, 0));
    let listed: Value =
        serde_json::from_str(&run_ok(ash(&pair.bob).args(["jobs", "--json"]))).unwrap();
    assert_eq!(listed["jobs"], serde_json::json!([]));
}
