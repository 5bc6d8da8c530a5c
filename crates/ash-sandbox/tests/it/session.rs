//! Sessions: one view for many commands, their usage counted one by one, output streamed.

use std::time::Duration;

use ash_sandbox::{BackendKind, LimitHit, OutputChunk, OutputSink, OutputStream, SessionCommand};
use tokio_util::sync::CancellationToken;

use crate::{sandbox, strict, text};

fn bash(ws: &std::path::Path, script: &str) -> SessionCommand {
    let mut command =
        SessionCommand::new(vec!["bash".into(), "-c".into(), script.into()], ws.to_path_buf());
    command.env.insert("PATH".into(), "/usr/bin:/bin".into());
    command
}

#[tokio::test]
async fn a_native_session_keeps_files_and_processes_until_it_is_closed() {
    let Some((sandbox, _runtime)) = sandbox(BackendKind::Native).await else { return };
    let sandbox = std::sync::Arc::new(sandbox);
    let ws = tempfile::tempdir().unwrap();
    sandbox.adopt(ws.path()).unwrap();
    let cancel = CancellationToken::new();
    let session = sandbox.session(strict(ws.path()), ws.path().to_path_buf()).await.unwrap();
    assert!(session.is_warm(), "the native backend keeps a standing view");

    let first = bash(ws.path(), "echo kept > file; sleep 300 & echo $! > pid; echo started");
    let out = session.exec(&first, &cancel, None).await.unwrap();
    assert_eq!((out.status.code(), text(&out.stdout)), (0, "started\n".to_owned()));
    let check = bash(ws.path(), "cat file; test -d /proc/$(cat pid) && echo alive");
    let out = session.exec(&check, &cancel, None).await.unwrap();
    assert_eq!(text(&out.stdout), "kept\nalive\n", "{}", text(&out.stderr));

    // A command past its own wall time is stopped; the session goes on.
    let mut slow = bash(ws.path(), "sleep 30");
    slow.wall_time = Some(Duration::from_millis(300));
    let out = session.exec(&slow, &cancel, None).await.unwrap();
    assert_eq!(out.limit, Some(LimitHit::WallTime));
    let out = session.exec(&check, &cancel, None).await.unwrap();
    assert_eq!(text(&out.stdout), "kept\nalive\n");

    // Closing ends what was left running; a new session on the same view sees no process.
    session.close().await;
    let again = sandbox.session(strict(ws.path()), ws.path().to_path_buf()).await.unwrap();
    let out = again
        .exec(&bash(ws.path(), "cat file; test -d /proc/$(cat pid) || echo gone"), &cancel, None)
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "kept\ngone\n");
    again.close().await;
}

#[tokio::test]
async fn each_command_reports_its_own_usage_and_streams_its_output() {
    for kind in [BackendKind::Native, BackendKind::Bwrap] {
        let Some((sandbox, _runtime)) = sandbox(kind).await else { continue };
        let sandbox = std::sync::Arc::new(sandbox);
        let ws = tempfile::tempdir().unwrap();
        sandbox.adopt(ws.path()).unwrap();
        let session = sandbox.session(strict(ws.path()), ws.path().to_path_buf()).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<OutputChunk>(1024);
        let sink = OutputSink(tx);
        // Busy for a while, holding some memory, printing on both pipes.
        let script = "x=$(head -c 20000000 /dev/zero | tr '\\0' a); i=0; \
                      while [ $i -lt 30000 ]; do i=$((i+1)); done; \
                      echo ${#x}; echo note >&2";
        let out = session
            .exec(&bash(ws.path(), script), &CancellationToken::new(), Some(&sink))
            .await
            .unwrap();
        assert_eq!(text(&out.stdout), "20000000\n", "{kind}: {}", text(&out.stderr));
        let usage = out.usage.unwrap_or_else(|| panic!("{kind}: the helper counts usage"));
        assert!(usage.cpu_time > Duration::ZERO, "{kind}: {usage:?}");
        assert!(usage.peak_memory_bytes > 20_000_000, "{kind}: {usage:?}");
        drop(sink);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(chunk) = rx.recv().await {
            match chunk.stream {
                OutputStream::Stdout => stdout.extend(chunk.bytes),
                OutputStream::Stderr => stderr.extend(chunk.bytes),
            }
        }
        assert_eq!((stdout, stderr), (out.stdout.clone(), out.stderr.clone()), "{kind}");

        // A quick command after it counts only itself.
        let out =
            session.exec(&bash(ws.path(), "true"), &CancellationToken::new(), None).await.unwrap();
        let small = out.usage.unwrap();
        assert!(small.peak_memory_bytes < 20_000_000, "{kind}: {small:?}");
        session.close().await;
    }
}

#[tokio::test]
async fn a_plain_session_keeps_files_and_refuses_to_stream_secrets() {
    let sandbox = std::sync::Arc::new(ash_sandbox::Sandbox::plain());
    let ws = tempfile::tempdir().unwrap();
    let session = sandbox.session(strict(ws.path()), ws.path().to_path_buf()).await.unwrap();
    assert!(!session.is_warm());
    let cancel = CancellationToken::new();
    session.exec(&bash(ws.path(), "echo kept > file"), &cancel, None).await.unwrap();
    let out = session.exec(&bash(ws.path(), "cat file"), &cancel, None).await.unwrap();
    assert_eq!((text(&out.stdout), out.usage), ("kept\n".to_owned(), None));
    session.close().await;

    let mut policy = strict(ws.path());
    policy.secrets.push(ash_sandbox::Secret {
        name: "TOKEN".into(),
        value: "s3cret-value".into(),
        delivery: ash_sandbox::SecretDelivery::Env,
    });
    let session = sandbox.session(policy, ws.path().to_path_buf()).await.unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let refused =
        session.exec(&bash(ws.path(), "echo $TOKEN"), &cancel, Some(&OutputSink(tx))).await;
    assert!(matches!(refused, Err(ash_sandbox::SandboxError::Unsupported { .. })), "{refused:?}");
    let out = session.exec(&bash(ws.path(), "echo $TOKEN"), &cancel, None).await.unwrap();
    assert!(!text(&out.stdout).contains("s3cret-value"), "{}", text(&out.stdout));
}
