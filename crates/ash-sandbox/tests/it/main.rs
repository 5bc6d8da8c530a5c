//! Runs real processes through `ash_sandbox::exec` and checks what comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ash_sandbox::{ExecOutput, ExecRequest, ExitStatus, LimitHit, Limits, SandboxError, exec};
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

fn request(dir: &Path, script: &str) -> ExecRequest {
    ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: dir.to_path_buf(),
        env: BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
        stdin: Vec::new(),
        limits: Limits { wall_time: Duration::from_secs(20), output_bytes: 1024 },
    }
}

async fn run(request: &ExecRequest) -> ExecOutput {
    exec(request, &CancellationToken::new()).await.unwrap()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn output_exit_code_stdin_cwd_and_a_cleared_environment_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "cat; echo; pwd; echo \"home=${HOME:-unset} extra=$EXTRA\"; echo oops >&2; exit 3",
    );
    req.stdin = b"{\"x\":1}".to_vec();
    req.env.insert("EXTRA".into(), "yes".into());
    let out = run(&req).await;
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(
        (out.status, text(&out.stdout), text(&out.stderr), out.limit),
        (
            ExitStatus::Exited(3),
            format!("{{\"x\":1}}\n{}\nhome=unset extra=yes\n", cwd.display()).as_str(),
            "oops\n",
            None
        )
    );
}

#[tokio::test]
async fn a_flood_of_output_is_capped_and_the_command_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&request(dir.path(), "head -c 5000000 /dev/zero; echo done >&2")).await;
    assert_eq!(
        (
            out.status,
            out.stdout.len(),
            out.stdout_truncated,
            text(&out.stderr),
            out.stderr_truncated
        ),
        (ExitStatus::Exited(0), 1024, true, "done\n", false)
    );
}

#[tokio::test]
async fn the_wall_time_limit_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let mut req = request(
        dir.path(),
        &format!("(sleep 2; touch {}) & echo started; sleep 30", marker.display()),
    );
    req.limits.wall_time = Duration::from_millis(300);
    let out = run(&req).await;
    assert_eq!(
        (out.status, text(&out.stdout), out.limit),
        (ExitStatus::Signaled(9), "started\n", Some(LimitHit::WallTime))
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!marker.exists(), "a background child outlived the limit");
}

#[tokio::test]
async fn background_children_do_not_outlive_a_finished_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let req = request(dir.path(), &format!("(sleep 1; touch {}) & exit 0", marker.display()));
    let out = run(&req).await;
    assert_eq!((out.status, out.limit), (ExitStatus::Exited(0), None));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "a background child outlived the command");
}

#[tokio::test]
async fn cancel_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path(), "echo ready; exec sleep 30");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let canceller = async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    };
    let (out, ()) = tokio::join!(exec(&req, &cancel), canceller);
    let out = out.unwrap();
    assert_eq!(
        (out.status, text(&out.stdout), out.limit),
        (ExitStatus::Signaled(9), "ready\n", Some(LimitHit::Cancelled))
    );
    assert!(out.elapsed < Duration::from_secs(10), "cancel waited for the command: {out:?}");
}

#[tokio::test]
async fn a_command_that_ignores_large_stdin_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(dir.path(), "echo no-read");
    req.stdin = vec![b'x'; 4 * 1024 * 1024];
    let out = run(&req).await;
    assert_eq!((out.status, text(&out.stdout)), (ExitStatus::Exited(0), "no-read\n"));
}

#[tokio::test]
async fn a_missing_program_and_an_empty_argv_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(dir.path(), "");
    req.argv = vec!["/nonexistent/program".into()];
    let err = exec(&req, &CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::Spawn { program, .. } if program == "/nonexistent/program"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("could not start `/nonexistent/program`: "), "{err}");
    req.argv.clear();
    let err = exec(&req, &CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.to_string(), "the command is empty");
}

#[test]
fn exit_codes_read_like_a_shell() {
    assert_eq!(
        [ExitStatus::Exited(0), ExitStatus::Exited(2), ExitStatus::Signaled(9)]
            .map(|s| (s.success(), s.code())),
        [(true, 0), (false, 2), (false, 137)]
    );
}
