//! What an agent's tools may reach, end to end through `ash exec` and `ash sandbox exec`: not
//! the project's secret files or the run store, no network unless granted, and, for a normal
//! user as for root, never host root.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::Command;

use ash_protocol::{Event, EventBody};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::json;

use crate::{ash_env, stderr, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn tools_see_neither_secrets_nor_the_store_nor_the_network() {
    let model = FakeModelServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"t\"\nmodel = \"openai/gpt-test\"\n[providers.openai]\nbase_url = \"{}\"\n\
         //- agent/system.md\nBe brief.\n\
         //- .env\nAPI_KEY=sk-live-secret\n\
         //- deploy/.env.production\nDB_PASSWORD=hunter2\n\
         //- keys/server.pem\n-----BEGIN PRIVATE KEY-----\n\
         //- notes.txt\nvisible notes\n",
        model.base_url()
    ));
    let project = fx.path().canonicalize().unwrap();
    let store = project.join("runs.db");
    let p = project.display();
    let command = format!(
        "for f in {p}/.env {p}/deploy/.env.production {p}/keys/server.pem {p}/runs.db {p}/notes.txt; do \
           if [ -s $f ] && cat $f >/dev/null 2>&1; then echo \"read $f\"; else echo \"hidden $f\"; fi; done; \
         (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo offline"
    );
    model
        .push(Reply::Turn(Turn::empty().then_tool_call(
            "c1",
            "bash",
            &json!({ "command": command }).to_string(),
        )))
        .push(Reply::Turn(Turn::text("done")));
    let store_arg = store.display().to_string();
    let out = ash_env(
        fx.path(),
        &["exec", ".", "look around", "--json", "--store", &store_arg],
        &[("OPENAI_API_KEY", "sk-test")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .find_map(|e| match e.body {
            EventBody::ActionResult(r) => Some(serde_json::to_value(&r).unwrap()),
            _ => None,
        })
        .expect("a tool result");
    let output = result["result"]["output"]["stdout"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        output,
        format!(
            "hidden {p}/.env\nhidden {p}/deploy/.env.production\nhidden {p}/keys/server.pem\nhidden {p}/runs.db\nread {p}/notes.txt\noffline\n"
        ),
        "{result}"
    );
    drop(listener);
}

/// Runs this test's `ash` as an unprivileged user (`nobody`), from a copy the user can reach.
fn as_nobody(bin: &std::path::Path, cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("ASH_HOME", cwd.parent().unwrap_or(cwd).join(".ash-home"))
        .output()
        .expect("run setpriv")
}

#[test]
fn as_a_normal_user_the_sandbox_is_that_user_never_root() {
    if !nix::unistd::geteuid().is_root() {
        // Already a normal user: the escape suite of ash-sandbox covers this case directly.
        return;
    }
    let home = tempfile::Builder::new().prefix("ash-nobody-").tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = home.path().join("ash");
    std::fs::copy(env!("CARGO_BIN_EXE_ash"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ws = home.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::os::unix::fs::chown(&ws, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(home.path(), Some(65534), Some(65534)).unwrap();
    let mut backends = vec!["native"];
    if std::path::Path::new("/usr/bin/bwrap").exists() {
        backends.push("bwrap");
    }
    for backend in backends {
        let script = "touch made-$0; id -u; (echo x > /proc/sys/kernel/core_pattern) 2>/dev/null && echo wrote; \
            chmod u+s made-$0 2>/dev/null && echo setuid; echo done";
        let out = as_nobody(
            &bin,
            &ws,
            &[
                "sandbox",
                "exec",
                "--backend",
                backend,
                "-w",
                ".",
                "--",
                "sh",
                "-c",
                script,
                backend,
            ],
        );
        assert_eq!(
            (out.status.code(), stdout(&out)),
            (Some(0), "1000\ndone\n".to_owned()),
            "{backend}: {}",
            stderr(&out)
        );
        let made = std::fs::metadata(ws.join(format!("made-{backend}"))).unwrap();
        assert_eq!((made.uid(), made.mode() & 0o6000), (65534, 0), "{backend}");
    }
}

#[test]
fn the_builtin_coding_agent_is_a_valid_agent_with_the_file_tools() {
    let coder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/coder");
    let home = tempfile::tempdir().unwrap();
    let out = crate::ash_env(
        home.path(),
        &["info", coder.to_str().unwrap(), "--json"],
        &[("ASH_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    let info: ash_protocol::InfoOutput = serde_json::from_slice(&out.stdout).unwrap();
    let skills: Vec<&str> = info.agent.skills.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        (info.ok, info.agent.name.as_str(), skills, info.agent.unsupported.len()),
        (true, "ash-coder", vec!["git-work", "run-checks"], 0)
    );
    assert_eq!(
        info.agent.offered_tools,
        ["activate_skill", "bash", "edit_file", "read_file", "search_files", "write_file"]
    );
}
