//! Jobs run by the real Claude Code and Codex CLIs (the pinned npm releases `.ci/run`
//! installs) against the fake model server, through ash's model gateway: the key reaches the
//! provider and nothing inside the sandbox holds it; `ash login` refuses subscription tokens.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};

use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::Value;

use super::jobs::{Pair, credits, run_ok};
use super::network::{ash, stop};
use super::stderr;

/// The pinned CLIs' `bin` directory: `$ASH_TEST_AGENT_CLIS`, else where `.ci/run` installs
/// them; `None` (the test says it skips) when neither holds them.
fn agent_clis() -> Option<PathBuf> {
    let dir = std::env::var_os("ASH_TEST_AGENT_CLIS").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/ash/agent-clis/node_modules/.bin"))
    })?;
    (dir.join("claude").exists() && dir.join("codex").exists()).then_some(dir)
}

macro_rules! need_clis {
    () => {
        match agent_clis() {
            Some(dir) => dir,
            None => {
                eprintln!(
                    "skipping: the agent CLIs are not installed (bash .ci/run installs them, or set ASH_TEST_AGENT_CLIS)"
                );
                return;
            }
        }
    };
}

/// The API key Alice serves with; nothing in a sandbox, diff, log or stream may hold it.
const KEY_HEAD: &str = "sk-ant-api03-";
const KEY_TAIL: &str = "ashTestKEY0123456789abcdef";
const OPENAI_KEY_HEAD: &str = "sk-proj-";

fn anthropic_key() -> String {
    format!("{KEY_HEAD}{KEY_TAIL}")
}

fn openai_key() -> String {
    format!("{OPENAI_KEY_HEAD}{KEY_TAIL}")
}

/// A network where Alice serves with the CLIs at `clis` against `model`.
struct Served {
    pair: Pair,
    path: String,
}

impl Served {
    fn new(clis: &Path, model: &FakeModelServer) -> Self {
        let pair = Pair::new();
        std::fs::write(
            pair.alice.join("config.toml"),
            format!(
                "[providers.anthropic]\nbase_url = \"{url}\"\n\n[providers.openai]\nbase_url = \"{url}\"\n",
                url = model.base_url()
            ),
        )
        .unwrap();
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", clis.display());
        Self { pair, path }
    }

    fn login(&self, target: &str, key: &str) -> std::process::Output {
        login(&self.pair.alice, &self.path, target, key)
    }

    fn serve(&self, args: &[&str]) -> (Child, std::io::BufReader<ChildStdout>, String) {
        self.pair.serve_with(&[("PATH", &self.path)], args)
    }
}

/// `ash login TARGET --stdin` in `home`, the key piped in.
fn login(home: &Path, path: &str, target: &str, key: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = ash(home)
        .env("PATH", path)
        .args(["login", target, "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{key}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Stops `serve` and returns its events and everything it logged.
fn stop_all(mut serve: Child, lines: std::io::BufReader<ChildStdout>) -> (Vec<Value>, String) {
    let mut err = serve.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let events = stop(serve, lines);
    (events, drain.join().unwrap())
}

/// A shell command that reports, into files of the repository, the environment it sees and
/// every file and process environment that holds `key` (spelt in two halves, so that the
/// command itself never holds it).
fn search_for(head: &str, tail: &str) -> String {
    format!(
        "A='{head}'; B='{tail}'; K=\"$A$B\"; env | sort > SEEN_ENV.txt; \
         grep -rlsF -- \"$K\" \"$PWD\" \"$HOME/..\" /tmp /run /etc /var /root /home /opt > FOUND.txt; \
         for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do grep -lsF -- \"$K\" \"$f\" >> FOUND.txt; done; \
         echo searched >> FOUND.txt"
    )
}

#[test]
fn claude_code_runs_a_job_with_a_key_it_never_holds() {
    let clis = need_clis!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    // The agent writes a file, searches its sandbox for the key, and stops.
    let said = "Wrote HELLO.md, and searched.";
    model.push(Reply::edit("HELLO.md", "hello from claude\n", said));
    model.push(Reply::Turn(Turn::empty().then_tool_call(
        "toolu_2",
        "Bash",
        &serde_json::json!({"command": search_for(KEY_HEAD, KEY_TAIL)}).to_string(),
    )));
    model.push(Reply::edit("HELLO.md", "hello from claude\n", said));
    let served = Served::new(&clis, &model);
    let login = served.login("claude", &anthropic_key());
    assert_eq!(login.status.code(), Some(0), "{}", stderr(&login));
    let status = run_ok(ash(&served.pair.alice).env("PATH", &served.path).arg("status"));
    assert!(status.contains("agent claude: ready — "), "{status}");
    assert!(status.contains("anthropic key from `ash login`"), "{status}");
    let (serve, lines, address) = served.serve(&["--agents", "claude"]);
    served.pair.bonus(&address);
    let out =
        served.pair.run(&address, &["say hello", "--agent", "claude", "--tier", "sonnet", "--yes"]);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{}\n{result}", stderr(&out));
    assert_eq!(
        (result["outcome"].as_str(), result["paid"].as_u64(), result["models"].clone()),
        (Some("accept"), Some(6), serde_json::json!(["claude-sonnet-4-5"])),
        "{result}"
    );
    let repo = &served.pair.repo;
    assert_eq!(std::fs::read_to_string(repo.join("HELLO.md")).unwrap(), "hello from claude\n");
    // Inside the sandbox: a placeholder key, the gateway on the sandbox's own loopback, and
    // no file or process environment holding the real key.
    let seen = std::fs::read_to_string(repo.join("SEEN_ENV.txt")).unwrap();
    assert!(seen.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:8788\n"), "{seen}");
    assert!(seen.contains("ANTHROPIC_API_KEY=ash-run-"), "{seen}");
    assert_eq!(std::fs::read_to_string(repo.join("FOUND.txt")).unwrap(), "searched\n");
    // Outside: every call reached the provider with the real key, and named the offered model.
    let requests = model.requests();
    let calls: Vec<_> = requests.iter().filter(|r| r.path.ends_with("/messages")).collect();
    assert_eq!(calls.len(), 3, "{requests:#?}");
    for call in &calls {
        assert_eq!(call.headers.get("x-api-key"), Some(&anthropic_key()));
        assert_eq!(call.body["model"], "claude-sonnet-4-5");
    }
    let (events, log) = stop_all(serve, lines);
    let everything =
        format!("{events:?}{log}{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!everything.contains(KEY_TAIL), "the key leaked: {everything}");
    let diff =
        run_ok(std::process::Command::new("git").current_dir(repo).args(["status", "--porcelain"]));
    assert!(!diff.contains("events.jsonl"), "{diff}");
    assert_eq!(credits(&served.pair.bob), (100, 0, 6, 0, 94));
}

#[test]
fn codex_runs_a_job_with_a_key_it_never_holds() {
    let clis = need_clis!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    let said = "Wrote HELLO.md, and searched.";
    model.push(Reply::edit("HELLO.md", "hello from codex\n", said));
    model.push(Reply::Turn(Turn::empty().then_tool_call(
        "call_2",
        "exec_command",
        &serde_json::json!({"cmd": search_for(OPENAI_KEY_HEAD, KEY_TAIL)}).to_string(),
    )));
    model.push(Reply::edit("HELLO.md", "hello from codex\n", said));
    let served = Served::new(&clis, &model);
    let login = served.login("codex", &openai_key());
    assert_eq!(login.status.code(), Some(0), "{}", stderr(&login));
    let (serve, lines, address) = served.serve(&["--agents", "codex"]);
    served.pair.bonus(&address);
    let out =
        served.pair.run(&address, &["say hello", "--agent", "codex", "--tier", "codex", "--yes"]);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{}\n{result}", stderr(&out));
    assert_eq!(
        (result["outcome"].as_str(), result["paid"].as_u64(), result["models"].clone()),
        (Some("accept"), Some(2), serde_json::json!(["gpt-5.5"])),
        "{result}"
    );
    assert_eq!(result["message"], said, "{result}");
    let repo = &served.pair.repo;
    assert_eq!(std::fs::read_to_string(repo.join("HELLO.md")).unwrap(), "hello from codex\n");
    let seen = std::fs::read_to_string(repo.join("SEEN_ENV.txt")).unwrap();
    assert!(seen.contains("ASH_MODEL_KEY=ash-run-"), "{seen}");
    assert_eq!(std::fs::read_to_string(repo.join("FOUND.txt")).unwrap(), "searched\n");
    let requests = model.requests();
    let calls: Vec<_> = requests.iter().filter(|r| r.path.ends_with("/responses")).collect();
    assert_eq!(calls.len(), 3, "{requests:#?}");
    for call in &calls {
        assert_eq!(call.headers.get("authorization"), Some(&format!("Bearer {}", openai_key())));
        assert_eq!(call.body["model"], "gpt-5.5");
    }
    let (events, log) = stop_all(serve, lines);
    let everything =
        format!("{events:?}{log}{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!everything.contains(KEY_TAIL), "the key leaked: {everything}");
    assert_eq!(credits(&served.pair.bob), (100, 0, 2, 0, 98));
}

#[test]
fn subscription_sign_ins_and_refused_keys_are_not_stored() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    model.refuse_key("sk-ant-api03-revoked");
    let served = Served::new(Path::new("/nonexistent"), &model);
    let cases = [
        ("claude", "sk-ant-oat01-abcdef", "this is a Claude subscription sign-in token"),
        ("codex", "eyJhbGciOiJSUzI1NiJ9.e30.sig", "this is a ChatGPT sign-in token"),
        (
            "anthropic",
            "sk-ant-api03-revoked",
            "anthropic refused the key (HTTP 401 Unauthorized): invalid x-api-key",
        ),
        ("gemini", "k", "no agent or provider `gemini`"),
    ];
    for (target, key, expected) in cases {
        let out = served.login(target, key);
        assert_eq!(out.status.code(), Some(2), "{target}");
        assert!(stderr(&out).contains(expected), "{target}: {}", stderr(&out));
        assert!(!stderr(&out).contains(key) || target == "gemini", "{}", stderr(&out));
    }
    assert!(!served.pair.alice.join("keys").join("anthropic").exists());
    assert!(!served.pair.alice.join("keys").join("openai").exists());
    // A good key is stored 0600 after the provider accepted it.
    let out = served.login("anthropic", &anthropic_key());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let file = served.pair.alice.join("keys").join("anthropic");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{}\n", anthropic_key()));
    // With only Claude Code's subscription sign-in at hand, there is nothing to store.
    let out = ash(&served.pair.alice)
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-xyz")
        .args(["login", "claude"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("CLAUDE_CODE_OAUTH_TOKEN holds a Claude subscription sign-in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn routed_jobs_are_answered_with_the_requesters_key_for_every_agent() {
    let clis = need_clis!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    model.repeat().push(Reply::edit("ROUTED.md", "routed\n", "Wrote ROUTED.md."));
    let served = Served::new(&clis, &model);
    let pair = &served.pair;
    // Alice has no key at all: she serves routed jobs only, with every agent.
    std::fs::remove_file(pair.alice.join("config.toml")).unwrap();
    std::fs::write(
        pair.bob.join("config.toml"),
        format!(
            "[providers.anthropic]\nbase_url = \"{url}\"\n\n[providers.openai]\nbase_url = \"{url}\"\n",
            url = model.base_url()
        ),
    )
    .unwrap();
    // `ash status` says what each agent can serve here.
    let status: Value = serde_json::from_str(&run_ok(
        ash(&pair.alice).env("PATH", &served.path).args(["status", "--json"]),
    ))
    .unwrap();
    let serves: Vec<(&str, &str)> = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["serves"].as_str().unwrap()))
        .collect();
    assert_eq!(serves, [("builtin", "all"), ("claude", "routed"), ("codex", "routed")]);
    let (serve, lines, address) =
        served.serve(&["--agents", "claude,codex,builtin", "--model", "scripted"]);
    pair.bonus(&address);
    for (target, key) in [("anthropic", anthropic_key()), ("openai", openai_key())] {
        let out = login(&pair.bob, &served.path, target, &key);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let cases = [
        ("claude", None, "claude-sonnet-4-5", "/v1/messages"),
        ("codex", None, "gpt-5.5", "/v1/responses"),
        ("builtin", Some("anthropic/claude-routed"), "claude-routed", "/v1/messages"),
    ];
    let mut spent = 0;
    for (agent, chosen, called, path) in cases {
        let before = model.requests().len();
        let mut args = vec!["say hello", "--agent", agent, "--route", "--yes"];
        if let Some(chosen) = chosen {
            args.extend(["--model", chosen]);
        }
        let out = pair.run(&address, &args);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(out.status.code(), Some(0), "{agent}: {}\n{result}", stderr(&out));
        assert_eq!(
            (result["outcome"].as_str(), result["paid"].as_u64(), result["models"].clone()),
            (Some("accept"), Some(1), serde_json::json!([called])),
            "{agent}: {result}"
        );
        spent += 1;
        let repo = &pair.repo;
        assert_eq!(std::fs::read_to_string(repo.join("ROUTED.md")).unwrap(), "routed\n");
        run_ok(std::process::Command::new("git").current_dir(repo).args(["add", "-A"]));
        run_ok(std::process::Command::new("git").current_dir(repo).args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            agent,
        ]));
        std::fs::remove_file(repo.join("ROUTED.md")).unwrap();
        run_ok(
            std::process::Command::new("git").current_dir(repo).args(["commit", "-qam", "undo"]),
        );
        // Every call of this job went to Bob's provider with Bob's key, for the one model.
        let requests = model.requests();
        let calls: Vec<_> = requests[before..].iter().filter(|r| r.path == path).collect();
        assert!(calls.len() >= 2, "{agent}: {requests:#?}");
        for call in calls {
            let key = call.headers.get("x-api-key").cloned().or_else(|| {
                call.headers
                    .get("authorization")
                    .map(|v| v.trim_start_matches("Bearer ").to_owned())
            });
            let expected = if path == "/v1/messages" { anthropic_key() } else { openai_key() };
            assert_eq!(key, Some(expected), "{agent}");
            assert_eq!(call.body["model"], called, "{agent}");
        }
    }
    let (events, log) = stop_all(serve, lines);
    assert!(!format!("{events:?}{log}").contains(KEY_TAIL));
    assert_eq!(credits(&pair.bob), (100, 0, spent, 0, 100 - spent));
}

#[test]
fn a_model_server_that_is_down_or_hangs_ends_the_job_within_its_limits() {
    let clis = need_clis!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    let served = Served::new(&clis, &model);
    for (target, key) in [("claude", anthropic_key()), ("codex", openai_key())] {
        let out = served.login(target, &key);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let (serve, lines, address) = served.serve(&["--agents", "claude,codex"]);
    served.pair.bonus(&address);
    // Codex against a server that answers 500 to everything (no retries): the job is given up
    // at once, signed, and nothing is charged.
    model.repeat().push(Reply::error(500, &serde_json::json!({"error": {"message": "down"}})));
    let out =
        served.pair.run(&address, &["say hello", "--agent", "codex", "--tier", "codex", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (result["state"].as_str(), result["paid"].as_u64()),
        (Some("cancelled"), Some(0)),
        "{result}"
    );
    assert!(result["reason"].as_str().unwrap().starts_with("the agent failed"), "{result}");
    // Claude against a server that never answers: the run is cut off at its time (the
    // reservation's minute, less the delivery margin), and nothing is charged.
    model.clear().push(Reply::Hang);
    let out = served.pair.run(
        &address,
        &["say hello", "--agent", "claude", "--tier", "sonnet", "--yes", "--max-run-minutes", "1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (result["state"].as_str(), result["paid"].as_u64()),
        (Some("cancelled"), Some(0)),
        "{result}"
    );
    assert!(result["reason"].as_str().unwrap().contains("ran longer than"), "{result}");
    let _ = stop_all(serve, lines);
    assert_eq!(credits(&served.pair.bob), (100, 0, 0, 0, 100));
}
