//! Start overhead per backend: start-to-exit of `/bin/true` through [`Sandbox::exec`] against a
//! plain `fork`+`exec`+`wait` of the same program.
//!
//! Run with `cargo bench -p ash-sandbox --bench start` (an optimised build). Prints, for each
//! backend this machine has, p50 and p99 over 200 runs and the p50 added over the baseline;
//! also the native backend with cgroup limits (memory, pids), with an allow-list proxy, and a
//! command in a warm [`ash_sandbox::SandboxSession`] (what a named sandbox's call costs) against
//! a one-shot exec under the same policy.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "a benchmark binary"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ash_sandbox::{
    BackendChoice, BackendKind, ExecRequest, NetPolicy, Sandbox, SandboxConfig, SandboxPolicy,
    SessionCommand,
};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let i = (last as f64 * p).round() as usize;
    sorted[i.min(last)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(label: &str, mut samples: Vec<Duration>, baseline: Option<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    let p99 = percentile(&samples, 0.99);
    let added = baseline
        .map_or_else(String::new, |b| format!("  added p50 {:>6.2} ms", ms(p50.saturating_sub(b))));
    println!("{label:<28} p50 {:>6.2} ms  p99 {:>6.2} ms{added}", ms(p50), ms(p99));
    p50
}

async fn sandbox(kind: BackendKind, runtime: &Path) -> Option<Sandbox> {
    let mut config = SandboxConfig::new(BackendChoice::Exactly(kind), runtime.to_path_buf());
    config.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_ash-sandbox-helper")));
    match Sandbox::new(config).await {
        Ok(s) => Some(s),
        Err(e) => {
            println!("{:<28} skipped: {e}", kind.as_str());
            None
        }
    }
}

async fn measure(sandbox: &Sandbox, policy: &SandboxPolicy) -> Vec<Duration> {
    let mut request =
        ExecRequest::new(vec!["/bin/true".into()], PathBuf::from("/"), policy.clone());
    request.env.insert("PATH".into(), "/usr/bin:/bin".into());
    let cancel = CancellationToken::new();
    for _ in 0..10 {
        sandbox.exec(&request, &cancel).await.unwrap();
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = sandbox.exec(&request, &cancel).await.unwrap();
        assert!(out.status.success(), "{out:?}");
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::main]
async fn main() {
    let runtime = tempfile::tempdir().unwrap();
    println!("start-to-exit of /bin/true, {RUNS} runs each");
    let mut baseline = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let status = std::process::Command::new("/bin/true").status().unwrap();
        assert!(status.success());
        baseline.push(started.elapsed());
    }
    let base = report("spawn (no ash)", baseline, None);
    let policy = SandboxPolicy::default();
    for kind in [BackendKind::Plain, BackendKind::Native, BackendKind::Bwrap] {
        if let Some(sb) = sandbox(kind, runtime.path()).await {
            report(kind.as_str(), measure(&sb, &policy).await, Some(base));
        }
    }
    if let Some(sb) = sandbox(BackendKind::Native, runtime.path()).await {
        let mut limited = policy.clone();
        limited.limits.memory_bytes = Some(256 << 20);
        limited.limits.pids = Some(64);
        report("native + cgroup limits", measure(&sb, &limited).await, Some(base));
        let mut allow = policy.clone();
        allow.net = NetPolicy::Allow(vec!["api.openai.com:443".parse().unwrap()]);
        report("native + allow-list proxy", measure(&sb, &allow).await, Some(base));

        // A named sandbox's policy: strict limits, one writable directory.
        let dir = tempfile::tempdir().unwrap();
        sb.adopt(dir.path()).unwrap();
        let strict = SandboxPolicy::strict(dir.path());
        let one_shot = report("native one-shot (strict)", measure(&sb, &strict).await, Some(base));
        let sb = std::sync::Arc::new(sb);
        let session = sb.session(strict, dir.path().to_path_buf()).await.unwrap();
        let mut command = SessionCommand::new(vec!["/bin/true".into()], dir.path().to_path_buf());
        command.env.insert("PATH".into(), "/usr/bin:/bin".into());
        let cancel = CancellationToken::new();
        for _ in 0..10 {
            session.exec(&command, &cancel, None).await.unwrap();
        }
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let out = session.exec(&command, &cancel, None).await.unwrap();
            assert!(out.status.success(), "{out:?}");
            samples.push(started.elapsed());
        }
        let warm = report("native session (warm)", samples, Some(base));
        println!(
            "a warm session saves {:.2} ms p50 per command over a one-shot exec",
            ms(one_shot.saturating_sub(warm))
        );
        session.close().await;
    }
}
