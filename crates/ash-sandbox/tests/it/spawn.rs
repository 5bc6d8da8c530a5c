//! Long-lived processes (`Sandbox::spawn`): a conversation over stdin and stdout, and every way
//! a spawned process ends — its own exit, `kill`, the wall clock, a dropped handle — leaving
//! nothing behind.

use std::time::Duration;

use ash_sandbox::{BackendKind, ExitStatus, LimitHit, ProcessEnd};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

use super::{request, sandbox, strict};

/// Every backend this machine has, plain included.
async fn all() -> Vec<(ash_sandbox::Sandbox, tempfile::TempDir)> {
    let mut out = Vec::new();
    for kind in [BackendKind::Plain, BackendKind::Native, BackendKind::Bwrap] {
        if let Some(s) = sandbox(kind).await {
            out.push(s);
        }
    }
    out
}

/// Spawns `bash -c script` in `dir` under `policy`.
async fn spawn(
    sb: &ash_sandbox::Sandbox,
    dir: &std::path::Path,
    policy: ash_sandbox::SandboxPolicy,
    script: &str,
    cancel: &CancellationToken,
) -> ash_sandbox::Process {
    sb.spawn(&request(dir, policy, script), cancel).await.unwrap()
}

/// The end without the proxy's decisions or the time taken.
fn end(end: &ProcessEnd) -> (ExitStatus, Option<LimitHit>) {
    (end.status, end.limit)
}

#[tokio::test]
async fn a_spawned_process_answers_line_by_line_and_ends_when_its_stdin_closes() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        sb.adopt(dir.path()).unwrap();
        let req = request(
            dir.path(),
            strict(dir.path()),
            "while read -r line; do echo \"got $line\"; done; echo bye >&2",
        );
        let mut process = sb.spawn(&req, &CancellationToken::new()).await.unwrap();
        let mut stdin = process.stdin.take().unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        for word in ["one", "two", "three"] {
            stdin.write_all(format!("{word}\n").as_bytes()).await.unwrap();
            // Each answer arrives before the next question is asked: a real conversation.
            let answer = lines.next_line().await.unwrap();
            assert_eq!(answer, Some(format!("got {word}")), "{}", sb.backend());
        }
        drop(stdin);
        assert_eq!(lines.next_line().await.unwrap(), None, "{}", sb.backend());
        let mut stderr = BufReader::new(process.stderr.take().unwrap()).lines();
        assert_eq!(stderr.next_line().await.unwrap(), Some("bye".to_owned()), "{}", sb.backend());
        let ended = process.wait().await.unwrap();
        assert_eq!(end(&ended), (ExitStatus::Exited(0), None), "{}", sb.backend());
    }
}

#[tokio::test]
async fn kill_the_wall_clock_and_cancel_end_a_spawned_process_and_what_it_started() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        sb.adopt(dir.path()).unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & echo up; exec sleep 60", marker.display());

        let never = CancellationToken::new();
        let mut process = spawn(&sb, dir.path(), strict(dir.path()), &script, &never).await;
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap(), Some("up".to_owned()));
        process.kill();
        let killed = process.wait().await.unwrap();

        let mut policy = strict(dir.path());
        policy.limits.wall_time = Duration::from_millis(300);
        let timed = spawn(&sb, dir.path(), policy, &script, &never).await.wait().await.unwrap();

        let cancel = CancellationToken::new();
        let process = spawn(&sb, dir.path(), strict(dir.path()), &script, &cancel).await;
        cancel.cancel();
        let cancelled = process.wait().await.unwrap();

        assert_eq!(
            [end(&killed), end(&timed), end(&cancelled)],
            [
                (ExitStatus::Signaled(9), Some(LimitHit::Cancelled)),
                (ExitStatus::Signaled(9), Some(LimitHit::WallTime)),
                (ExitStatus::Signaled(9), Some(LimitHit::Cancelled)),
            ],
            "{}",
            sb.backend()
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "{}: a background child outlived its process", sb.backend());
    }
}

#[tokio::test]
async fn dropping_a_spawned_process_kills_it() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        sb.adopt(dir.path()).unwrap();
        let marker = dir.path().join("survived");
        let script = format!("echo up; sleep 2; touch {}", marker.display());
        let never = CancellationToken::new();
        let mut process = spawn(&sb, dir.path(), strict(dir.path()), &script, &never).await;
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap(), Some("up".to_owned()));
        drop(process);
        // Its stdout closes once everything holding it is gone.
        assert_eq!(lines.next_line().await.unwrap(), None, "{}", sb.backend());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "{}: a dropped process lived on", sb.backend());
    }
}

#[tokio::test]
async fn a_program_that_cannot_start_is_an_error_that_names_it() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        sb.adopt(dir.path()).unwrap();
        let mut req = request(dir.path(), strict(dir.path()), "");
        req.argv = vec!["no-such-server-anywhere".into()];
        // The plain backend fails to spawn; the isolating ones learn it from the helper.
        let message = match sb.spawn(&req, &CancellationToken::new()).await {
            Err(e) => e.to_string(),
            Ok(process) => process.wait().await.unwrap_err().to_string(),
        };
        assert!(message.contains("no-such-server-anywhere"), "{}: {message}", sb.backend());
    }
}
