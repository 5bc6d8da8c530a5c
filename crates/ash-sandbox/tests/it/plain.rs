//! Behaviour every backend shares: output, exit codes, stdin, limits, cancellation, cleanup,
//! and errors that say what went wrong.

use std::time::Duration;

use ash_sandbox::{BackendKind, ExitStatus, LimitHit, SandboxError, SandboxPolicy};
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::{request, run, sandbox, strict, text};

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

fn plain_policy(ws: &std::path::Path) -> SandboxPolicy {
    let mut policy = strict(ws);
    policy.limits.output_bytes = 1024;
    policy
}

#[tokio::test]
async fn output_exit_code_stdin_cwd_and_a_cleared_environment_arrive() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(
            dir.path(),
            plain_policy(dir.path()),
            "cat; echo; pwd; echo \"home=${HOME:-unset} extra=$EXTRA\"; echo oops >&2; exit 3",
        );
        req.stdin = b"{\"x\":1}".to_vec();
        req.env.insert("EXTRA".into(), "yes".into());
        let out = run(&sb, &req).await;
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            (out.status, text(&out.stdout), text(&out.stderr), out.limit, out.backend),
            (
                ExitStatus::Exited(3),
                format!("{{\"x\":1}}\n{}\nhome=unset extra=yes\n", cwd.display()),
                "oops\n".to_owned(),
                None,
                sb.backend()
            )
        );
    }
}

#[tokio::test]
async fn a_flood_of_output_is_capped_and_the_command_still_finishes() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            &sb,
            &request(
                dir.path(),
                plain_policy(dir.path()),
                "head -c 5000000 /dev/zero; echo done >&2",
            ),
        )
        .await;
        assert_eq!(
            (
                out.status,
                out.stdout.len(),
                out.stdout_truncated,
                text(&out.stderr),
                out.stderr_truncated
            ),
            (ExitStatus::Exited(0), 1024, true, "done\n".to_owned(), false),
            "{}",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn the_wall_time_limit_kills_everything_the_command_started() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let mut policy = plain_policy(dir.path());
        policy.limits.wall_time = Duration::from_millis(500);
        let req = request(
            dir.path(),
            policy,
            &format!("(sleep 2; touch {}) & echo started; sleep 30", marker.display()),
        );
        let out = run(&sb, &req).await;
        assert_eq!(
            (out.status, text(&out.stdout), out.limit),
            (ExitStatus::Signaled(9), "started\n".to_owned(), Some(LimitHit::WallTime)),
            "{}",
            sb.backend()
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "{}: a background child outlived the limit", sb.backend());
    }
}

#[tokio::test]
async fn cancel_kills_the_command() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let req = request(dir.path(), plain_policy(dir.path()), "echo ready; exec sleep 30");
        sb.adopt(dir.path()).unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let canceller = async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            trigger.cancel();
        };
        let (out, ()) = tokio::join!(sb.exec(&req, &cancel), canceller);
        let out = out.unwrap();
        assert_eq!(
            (out.status, text(&out.stdout), out.limit),
            (ExitStatus::Signaled(9), "ready\n".to_owned(), Some(LimitHit::Cancelled)),
            "{}",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn a_command_that_ignores_large_stdin_still_finishes() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(dir.path(), plain_policy(dir.path()), "echo no-read");
        req.stdin = vec![b'x'; 4 * 1024 * 1024];
        let out = run(&sb, &req).await;
        assert_eq!(
            (out.status, text(&out.stdout)),
            (ExitStatus::Exited(0), "no-read\n".to_owned()),
            "{}",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn a_missing_program_an_empty_argv_and_a_bad_cwd_are_errors_that_say_so() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(dir.path(), plain_policy(dir.path()), "");
        sb.adopt(dir.path()).unwrap();
        req.argv = vec!["/nonexistent/program".into()];
        let err = sb.exec(&req, &CancellationToken::new()).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/program"), "{}: {message}", sb.backend());
        req.argv = vec!["no-such-command-anywhere".into()];
        let err = sb.exec(&req, &CancellationToken::new()).await.unwrap_err();
        assert!(err.to_string().contains("no-such-command-anywhere"), "{}: {err}", sb.backend());
        req.argv.clear();
        let err = sb.exec(&req, &CancellationToken::new()).await.unwrap_err();
        assert_eq!(err.to_string(), "the command is empty");
        req.argv = vec!["true".into()];
        req.cwd = dir.path().join("missing");
        let err = sb.exec(&req, &CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, SandboxError::Path { what: "working directory", .. }), "{err:?}");
    }
}

#[tokio::test]
async fn secrets_reach_the_process_but_not_the_captured_output() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = plain_policy(dir.path());
        policy.secrets.push(ash_sandbox::Secret {
            name: "API_KEY".into(),
            value: "sk-live-0123456789".into(),
            delivery: ash_sandbox::SecretDelivery::Env,
        });
        let req = request(
            dir.path(),
            policy,
            "echo \"key=$API_KEY\"; echo \"len=${#API_KEY}\"; printf '%s' \"$API_KEY\" | perl -ne 'print scalar reverse $_'; echo; echo \"$API_KEY\" >&2",
        );
        let out = run(&sb, &req).await;
        assert_eq!(
            (text(&out.stdout), text(&out.stderr)),
            (
                // Reversing it defeats redaction: documented, and shown here on purpose.
                "key=[redacted:API_KEY]\nlen=18\n9876543210-evil-ks\n".to_owned(),
                "[redacted:API_KEY]\n".to_owned()
            ),
            "{}",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn the_cpu_time_limit_stops_a_busy_loop() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = plain_policy(dir.path());
        policy.limits.cpu_time = Some(Duration::from_secs(1));
        let out = run(&sb, &request(dir.path(), policy, "while :; do :; done")).await;
        assert_eq!(
            (out.status.success(), out.limit),
            (false, Some(LimitHit::CpuTime)),
            "{}: {out:?}",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn the_disk_limit_stops_a_big_file_and_reports_total_growth() {
    for (sb, _rt) in all().await {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = plain_policy(dir.path());
        policy.limits.disk_bytes = Some(1 << 20);
        let out = run(
            &sb,
            &request(dir.path(), policy.clone(), "head -c 4000000 /dev/zero > big; echo after"),
        )
        .await;
        assert_eq!(out.limit, Some(LimitHit::Disk), "{}: {out:?}", sb.backend());
        let size = std::fs::metadata(dir.path().join("big")).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 1 << 20, "{}: wrote {size} bytes", sb.backend());
        let many = "for i in 1 2 3 4; do head -c 600000 /dev/zero > part$i; done";
        let out = run(&sb, &request(dir.path(), policy, many)).await;
        assert_eq!(
            (out.status, out.limit),
            (ExitStatus::Exited(0), Some(LimitHit::Disk)),
            "{}",
            sb.backend()
        );
    }
}
