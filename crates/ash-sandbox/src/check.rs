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
    /// What `backend = auto` picks here; `None`: nothing isolates, and `auto` refuses.
    pub auto: Option<BackendKind>,
    /// The host uid sandboxed processes run as, when this process is root (otherwise they
    /// run as this process's user).
    pub host_id: Option<u32>,
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
                let abi = sandbox.landlock_abi();
                sandbox.probe().await.map(|start| (start, abi))
            }
            Err(e) => Err(e),
        };
        backends.push(match result {
            Ok((start, abi)) => BackendCheck {
                backend: kind,
                works: true,
                detail: enforced(kind, abi),
                start: Some(start),
            },
            Err(e) => {
                BackendCheck { backend: kind, works: false, detail: e.to_string(), start: None }
            }
        });
    }
    let auto = [BackendKind::Native, BackendKind::Bwrap]
        .into_iter()
        .find(|k| backends.iter().any(|b| b.backend == *k && b.works));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let max_userns =
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    let landlock_abi = match config.landlock_abi {
        Some(cap) if cap <= 0 => None,
        Some(cap) => crate::confine::landlock_abi().map(|k| k.min(cap)),
        None => crate::confine::landlock_abi(),
    };
    Check {
        host_id: nix::unistd::geteuid().is_root().then_some(config.host_id),
        landlock_abi,
        seccomp: status.lines().any(|l| l.starts_with("Seccomp:")),
        user_namespaces: max_userns.trim().parse::<u64>().is_ok_and(|n| n > 0),
        cgroups,
        backends,
        auto,
    }
}

/// One line on what a backend enforces on this machine, with the Landlock ABI `abi` the
/// kernel gives (what is missing is said, not implied).
pub(crate) fn enforced(kind: BackendKind, abi: Option<i32>) -> String {
    let landlock = match abi {
        Some(abi) if abi >= 6 => format!("Landlock ABI {abi} (files, signals, abstract sockets)"),
        Some(abi) => format!(
            "Landlock ABI {abi} (files; signals and abstract sockets only by the namespaces)"
        ),
        None => {
            "NO Landlock (this kernel does not enforce it: the mount view is the only file wall)"
                .to_owned()
        }
    };
    match kind {
        BackendKind::Native => format!(
            "user, mount, pid, net, ipc, uts namespaces, private filesystem view, {landlock}, seccomp, rlimits, cgroups, allow-list proxy"
        ),
        BackendKind::Bwrap => format!(
            "bubblewrap namespaces and view, plus {landlock}, seccomp, rlimits, cgroups, allow-list proxy"
        ),
        BackendKind::Podman | BackendKind::Docker => {
            "container: read-only image root, no capabilities, limits; network none or full"
                .to_owned()
        }
        BackendKind::Plain => {
            "NO isolation: time, output and rlimits only; never picked by auto".to_owned()
        }
    }
}
