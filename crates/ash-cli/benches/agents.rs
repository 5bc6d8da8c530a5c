//! What a job adds to an outside agent: the same Claude Code or Codex episode (write one file,
//! against the fake model server) run directly as `agent-clis.md` runs it, and run as a job
//! between two `ash` homes on loopback (`ash run --agent … --yes`: announce, offer, reserve,
//! package, sandboxed run behind the gateway, sealed diff, apply, settle).
//!
//! `cargo bench -p ash-cli --bench agents [-- --runs N]` (default 5). Needs the pinned CLIs
//! (`.ci/run` installs them; or `ASH_TEST_AGENT_CLIS`), and says so and stops without them.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs,
    reason = "a benchmark binary"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ash_test_support::{FakeModelServer, Reply};

const ASH: &str = env!("CARGO_BIN_EXE_ash");

fn clis() -> Option<PathBuf> {
    let dir = std::env::var_os("ASH_TEST_AGENT_CLIS").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/ash/agent-clis/node_modules/.bin"))
    })?;
    (dir.join("claude").exists() && dir.join("codex").exists()).then_some(dir)
}

fn ash(home: &Path, path: &str) -> Command {
    let mut command = Command::new(ASH);
    command.env_clear().env("ASH_HOME", home).env("HOME", home).env("PATH", path);
    command
}

fn ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(repo: &Path, args: &[&str]) {
    ok(Command::new("git").current_dir(repo).args(args));
}

/// A repository with one commit; `reset` puts it back.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("README.md"), "# bench\n").unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]);
}

fn reset(dir: &Path) {
    git(dir, &["reset", "-q", "--hard"]);
    git(dir, &["clean", "-qfd"]);
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One episode of `kind` run directly, as agent-clis.md runs it.
fn direct(kind: &str, clis: &Path, base: &str, work: &Path, repo: &Path) -> Duration {
    let home = work.join(format!("{kind}-home"));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", clis.display());
    let mut command = Command::new(clis.join(kind));
    command
        .current_dir(repo)
        .env_clear()
        .env("PATH", &path)
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if kind == "claude" {
        command
            .env("ANTHROPIC_BASE_URL", base.trim_end_matches("/v1"))
            .env("ANTHROPIC_API_KEY", "sk-ant-bench")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_MAX_RETRIES", "1")
            .env("IS_SANDBOX", "1")
            .args(["-p", "write hello", "--output-format", "stream-json", "--verbose"])
            .args(["--permission-mode", "bypassPermissions", "--model", "claude-sonnet-4-5"])
            .arg("--no-session-persistence");
    } else {
        std::fs::write(
            home.join(".codex/config.toml"),
            format!(
                "model = \"gpt-5.5\"\nmodel_provider = \"b\"\n[model_providers.b]\nname = \"b\"\nbase_url = \"{base}\"\nenv_key = \"K\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n[analytics]\nenabled = false\n[features]\nplugins = false\nremote_plugin = false\nunbounded_connection_retries = false\n"
            ),
        )
        .unwrap();
        command
            .env("CODEX_HOME", home.join(".codex"))
            .env("TMPDIR", home.join("tmp"))
            .env("K", "sk-bench")
            .args(["exec", "--json", "--dangerously-bypass-approvals-and-sandbox"])
            .args(["--skip-git-repo-check", "write hello"]);
    }
    let start = Instant::now();
    let status = command.status().unwrap();
    let took = start.elapsed();
    assert!(status.success(), "{kind} failed");
    assert!(repo.join("HELLO.md").exists(), "{kind} wrote nothing");
    reset(repo);
    took
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let Some(clis) = clis() else {
        println!("the agent CLIs are not installed (bash .ci/run installs them); nothing measured");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    model.repeat().push(Reply::edit("HELLO.md", "hello\n", "Wrote HELLO.md."));
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("direct");
    let direct_repo = root.path().join("direct-repo");
    repo(&direct_repo);
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", clis.display());

    // Two homes on loopback: Alice serves both CLIs with keys, Bob asks.
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    let genesis = root.path().join("bench.genesis.toml");
    for home in [&alice, &bob] {
        std::fs::create_dir_all(home).unwrap();
        std::fs::write(
            home.join("config.toml"),
            format!(
                "[providers.anthropic]\nbase_url = \"{u}\"\n[providers.openai]\nbase_url = \"{u}\"\n",
                u = model.base_url()
            ),
        )
        .unwrap();
    }
    ok(ash(&alice, &path)
        .args(["network", "create", "bench", "--signup-cost", "none", "-o"])
        .arg(&genesis));
    ok(ash(&alice, &path).args(["join", "--offline", "-u", "alice", "--network"]).arg(&genesis));
    for (target, key) in [("claude", "sk-ant-api03-bench"), ("codex", "sk-proj-bench")] {
        let mut child = ash(&alice, &path)
            .args(["login", target, "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{key}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }
    let mut serve = ash(&alice, &path)
        .args(["serve", "--agents", "claude,codex", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--no-mdns", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(lines.read_line(&mut line).unwrap() > 0, "ash serve stopped");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "listening" {
            break event["address"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.lines() {});
    ok(ash(&bob, &path)
        .args(["join", "-u", "bob", "--no-mdns", "--bootstrap", &address, "--network"])
        .arg(&genesis));
    let job_repo = root.path().join("job-repo");
    repo(&job_repo);

    println!("{runs} runs each, against the fake model server on loopback:");
    for (kind, tier) in [("claude", "sonnet"), ("codex", "codex")] {
        let mut direct_times: Vec<Duration> = (0..runs)
            .map(|_| direct(kind, &clis, &model.base_url(), &work, &direct_repo))
            .collect();
        let mut job_times = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            ok(ash(&bob, &path).current_dir(&job_repo).args([
                "run",
                "write hello",
                "--agent",
                kind,
                "--tier",
                tier,
                "--yes",
                "--json",
                "--no-mdns",
                "--bootstrap",
                &address,
            ]));
            job_times.push(start.elapsed());
            assert!(job_repo.join("HELLO.md").exists(), "the {kind} job applied nothing");
            git(&job_repo, &["add", "-A"]);
            git(&job_repo, &["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "job"]);
            git(&job_repo, &["rm", "-q", "HELLO.md"]);
            git(&job_repo, &["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "undo"]);
        }
        let (d, j) = (median(&mut direct_times), median(&mut job_times));
        println!(
            "{kind}: directly median {:.0} ms; as a job median {:.0} ms (min {:.0}, max {:.0}); a job adds {:.0} ms",
            ms(d),
            ms(j),
            ms(job_times[0]),
            ms(job_times[job_times.len() - 1]),
            ms(j.saturating_sub(d))
        );
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(serve.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = serve.wait();
}
