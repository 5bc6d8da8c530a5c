//! `ash sandbox check`: which backends and kernel features work on this machine, found by
//! running `true` through each backend rather than by guessing from version numbers.

use std::time::Duration;

use crate::sandbox::{BackendChoice, BackendKind, Sandbox, SandboxConfig};

/// What this machine supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The Landlock ABI the kernel enforces, if any.
    pub landlock_abi: Option<i32>,
    /// Whether the kernel offers seccomp filters.
    pub seccomp: bool,
    /// Whether user namespaces may be created (`/proc/sys/user/max_user_namespaces` > 0).
    pub user_namespaces: bool,
    /// cgroup controllers ash can create groups under (`memory (v1)`, …).
    pub cgroups: Vec<String>,
    /// Each backend, strongest first.
    pub backends: Vec<BackendCheck>,
    /// What `backend = auto` picks here.
    pub auto: BackendKind,
}

/// One backend's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendCheck {
    /// The backend.
    pub backend: BackendKind,
    /// Whether `true` ran under a strict policy.
    pub works: bool,
    /// Why not, or what it enforces.
    pub detail: String,
    /// Start-to-exit time of `true`.
    pub start: Option<Duration>,
}

/// Probes every backend with `config` (its `backend` field is ignored).
pub async fn check(config: &SandboxConfig) -> Check {
    let mut backends = Vec::new();
    let mut cgroups = Vec::new();
    for kind in BackendKind::ALL {
        let mut config = config.clone();
        config.backend = BackendChoice::Exactly(kind);
        let result = match Sandbox::new(config).await {
            Ok(sandbox) => {
                if cgroups.is_empty() {
                    cgroups = sandbox.cgroups();
                }
                sandbox.probe().await
            }
            Err(e) => Err(e),
        };
        backends.push(match result {
            Ok(start) => BackendCheck {
                backend: kind,
                works: true,
                detail: guarantees(kind).into(),
                start: Some(start),
            },
            Err(e) => {
                BackendCheck { backend: kind, works: false, detail: e.to_string(), start: None }
            }
        });
    }
    let auto = [BackendKind::Native, BackendKind::Bwrap]
        .into_iter()
        .find(|k| backends.iter().any(|b| b.backend == *k && b.works))
        .unwrap_or(BackendKind::Plain);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let max_userns =
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    Check {
        landlock_abi: crate::confine::landlock_abi(),
        seccomp: status.lines().any(|l| l.starts_with("Seccomp:")),
        user_namespaces: max_userns.trim().parse::<u64>().is_ok_and(|n| n > 0),
        cgroups,
        backends,
        auto,
    }
}

/// One line on what a backend enforces.
pub(crate) fn guarantees(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Native => {
            "namespaces, private filesystem view, Landlock, seccomp, rlimits, cgroups, allow-list proxy"
        }
        BackendKind::Bwrap => {
            "bubblewrap namespaces and view, plus Landlock, seccomp, rlimits, cgroups, allow-list proxy"
        }
        BackendKind::Podman | BackendKind::Docker => {
            "container: read-only image root, no capabilities, limits; network none or full"
        }
        BackendKind::Plain => "no isolation: time, output and rlimits only",
    }
}
