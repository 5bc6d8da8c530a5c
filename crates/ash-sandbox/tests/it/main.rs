//! Runs real processes through every backend this machine has and checks what comes back: the
//! plain behaviour (output, limits, cleanup), the escape suite (each way out must fail), what
//! must keep working (workspace, allowed hosts), and policy files.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![allow(clippy::print_stderr, reason = "skipped tests say why")]

mod escape;
mod hostile;
mod plain;
mod policy;
mod session;
mod spawn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ash_sandbox::{
    BackendChoice, BackendKind, ExecOutput, ExecRequest, Sandbox, SandboxConfig, SandboxPolicy,
};
use tokio_util::sync::CancellationToken;

/// A sandbox for `kind`, or `None` (with the reason on stderr) when this machine lacks it.
async fn sandbox(kind: BackendKind) -> Option<(Sandbox, tempfile::TempDir)> {
    let runtime = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(BackendChoice::Exactly(kind), runtime.path().to_path_buf());
    config.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_ash-sandbox-helper")));
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .is_ok_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0));
    match Sandbox::new(config).await {
        Ok(sandbox) => Some((sandbox, runtime)),
        Err(e) if kind == BackendKind::Bwrap || !userns => {
            eprintln!("skipping the {kind} backend: {e}");
            None
        }
        Err(e) => panic!("the {kind} backend must work on this machine: {e}"),
    }
}

/// The isolating backends this machine has (native always; bwrap where installed).
async fn isolating() -> Vec<(Sandbox, tempfile::TempDir)> {
    let mut out = Vec::new();
    for kind in [BackendKind::Native, BackendKind::Bwrap] {
        if let Some(s) = sandbox(kind).await {
            out.push(s);
        }
    }
    out
}

/// `bash -c script` in `cwd` with a plain PATH.
fn request(cwd: &Path, policy: SandboxPolicy, script: &str) -> ExecRequest {
    let mut req = ExecRequest::new(
        vec!["bash".into(), "-c".into(), script.into()],
        cwd.to_path_buf(),
        policy,
    );
    req.env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
    req
}

/// A strict policy for `ws` with a short wall time.
fn strict(ws: &Path) -> SandboxPolicy {
    let mut policy = SandboxPolicy::strict(ws);
    policy.limits.wall_time = Duration::from_secs(20);
    policy
}

/// Runs `request`; its writable roots (temporary directories of the test) are first handed
/// to the sandbox's user, as ash does with workspaces.
async fn run(sandbox: &Sandbox, request: &ExecRequest) -> ExecOutput {
    for dir in &request.policy.fs.writable {
        sandbox.adopt(dir).unwrap();
    }
    sandbox.exec(request, &CancellationToken::new()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
