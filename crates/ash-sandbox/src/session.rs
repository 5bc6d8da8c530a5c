//! [`SandboxSession`]: one environment that many commands run in, one after another.
//!
//! Owns what a session keeps between commands: on the native backend, the zygote that holds
//! its filesystem view and one set of cgroups that every command joins (their limits cover the
//! session; what a command leaves running in the background lives on until the session is
//! closed). Each command still gets its own process group, rlimits, Landlock and seccomp, its
//! wall-time limit and its own usage counted. Where a zygote cannot serve the policy (another
//! backend, an allow-list network, secret files, no cgroups), each command is a fresh
//! [`Sandbox::exec_streaming`] under the same policy: the files persist, processes do not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cgroup::Kind;
use crate::exec::{ExecOutput, ExecRequest, ExitStatus, LimitHit, OutputSink, SandboxError};
use crate::policy::{NetPolicy, SandboxPolicy, SecretDelivery};
use crate::sandbox::{BackendKind, Ended, Run, Sandbox};
use crate::spec::{HelperSpec, Report};
use crate::zygote::Zygote;

/// One command of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCommand {
    /// Program and arguments; the program is looked up in the command's `PATH`.
    pub argv: Vec<String>,
    /// Working directory: inside the session's view.
    pub cwd: PathBuf,
    /// The complete environment; the policy's secrets are added on top.
    pub env: BTreeMap<String, String>,
    /// Bytes written to stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// This command's wall-time limit; `None`: the policy's.
    pub wall_time: Option<Duration>,
}

impl SessionCommand {
    /// `argv` in `cwd` with an empty environment and no input.
    pub fn new(argv: Vec<String>, cwd: PathBuf) -> Self {
        Self { argv, cwd, env: BTreeMap::new(), stdin: Vec::new(), wall_time: None }
    }
}

/// A long-lived environment: one policy, one view, commands run one at a time. Close it with
/// [`SandboxSession::close`]; dropping it releases the same things in the background.
#[derive(Debug)]
pub struct SandboxSession {
    sandbox: Arc<Sandbox>,
    policy: SandboxPolicy,
    warm: Option<Warm>,
    /// One command at a time: their usage and limits are read from shared counters.
    serial: tokio::sync::Mutex<()>,
}

/// The native session's standing parts.
#[derive(Debug)]
struct Warm {
    zygote: Arc<Zygote>,
    spec: HelperSpec,
    run: Mutex<Option<Run>>,
    /// The zygote failed once: later commands take the cold path.
    broken: AtomicBool,
}

impl Sandbox {
    /// Opens a session under `policy`, whose commands start in `cwd` unless they say
    /// otherwise. On the native backend this builds the view and the cgroups now.
    pub async fn session(
        self: &Arc<Self>,
        policy: SandboxPolicy,
        cwd: PathBuf,
    ) -> Result<SandboxSession, SandboxError> {
        policy.validate()?;
        let warm = if self.config.zygotes
            && self.kind == BackendKind::Native
            && !matches!(policy.net, NetPolicy::Allow(_))
            && policy.services.is_empty()
            && !policy.secrets.iter().any(|s| s.delivery == SecretDelivery::File)
            && self.cgroups.is_some()
        {
            self.warm(&policy, cwd).await?
        } else {
            None
        };
        Ok(SandboxSession { sandbox: Arc::clone(self), policy, warm, serial: Default::default() })
    }

    async fn warm(
        &self,
        policy: &SandboxPolicy,
        cwd: PathBuf,
    ) -> Result<Option<Warm>, SandboxError> {
        let request = ExecRequest::new(vec!["true".into()], cwd, policy.clone());
        let prepared = self.prepare(&request).await?;
        let (spec, mut run) = (prepared.spec, prepared.run);
        if run.cgroup.is_none() {
            // Nothing would collect what commands leave running: no session to keep.
            run.release().await;
            return Ok(None);
        }
        let zygote = match self.zygotes.get(self.helper()?, &spec).await {
            Ok(zygote) => zygote,
            Err(error) => {
                tracing::debug!(%error, "no zygote for the session; each command starts afresh");
                run.release().await;
                return Ok(None);
            }
        };
        Ok(Some(Warm { zygote, spec, run: Mutex::new(Some(run)), broken: AtomicBool::new(false) }))
    }
}

impl SandboxSession {
    /// Whether commands run in a standing view (native zygote) rather than one each.
    pub fn is_warm(&self) -> bool {
        self.warm.as_ref().is_some_and(|w| !w.broken.load(Ordering::Relaxed))
    }

    /// The policy every command runs under.
    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    /// Runs `command` to its end, its wall-time limit or `cancel`, handing its output to
    /// `sink` as it comes. Commands of one session run one at a time.
    pub async fn exec(
        &self,
        command: &SessionCommand,
        cancel: &CancellationToken,
        sink: Option<&OutputSink>,
    ) -> Result<ExecOutput, SandboxError> {
        let _one = self.serial.lock().await;
        if let Some(warm) = &self.warm
            && !warm.broken.load(Ordering::Relaxed)
        {
            match self.exec_warm(warm, command, cancel, sink).await {
                Err(SandboxError::Unsupported { backend, what }) => {
                    return Err(SandboxError::Unsupported { backend, what });
                }
                Err(error) => {
                    tracing::debug!(%error, "the session's zygote failed; commands start afresh");
                    warm.broken.store(true, Ordering::Relaxed);
                }
                Ok(out) => return Ok(out),
            }
        }
        let mut request =
            ExecRequest::new(command.argv.clone(), command.cwd.clone(), self.policy.clone());
        request.env.clone_from(&command.env);
        request.stdin.clone_from(&command.stdin);
        if let Some(wall_time) = command.wall_time {
            request.policy.limits.wall_time = wall_time;
        }
        self.sandbox.exec_streaming(&request, cancel, sink).await
    }

    async fn exec_warm(
        &self,
        warm: &Warm,
        command: &SessionCommand,
        cancel: &CancellationToken,
        sink: Option<&OutputSink>,
    ) -> Result<ExecOutput, SandboxError> {
        let sandbox = &self.sandbox;
        if sink.is_some() && !self.policy.secrets.is_empty() {
            return Err(SandboxError::Unsupported {
                backend: sandbox.kind,
                what: "stream the output of a command that holds secrets (they are redacted only from the captured output)",
            });
        }
        if command.argv.is_empty() {
            return Err(SandboxError::EmptyArgv);
        }
        let mut env = command.env.clone();
        for secret in self.policy.secrets.iter().filter(|s| s.delivery == SecretDelivery::Env) {
            env.insert(secret.name.clone(), secret.value.clone());
        }
        let mut rlimits = warm.spec.rlimits;
        if sandbox.cgroups.as_ref().is_some_and(|c| c.has(Kind::Pids)) {
            // The session's cgroup counts processes; the per-user count is a backstop above it.
            rlimits.nproc = rlimits.nproc.map(|n| n.saturating_add(2));
        }
        let (procs, before) = {
            let run = warm.run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let cgroup = run.as_ref().and_then(|r| r.cgroup.as_ref());
            (
                cgroup.map(crate::cgroup::CgroupRun::procs_fds).unwrap_or_default(),
                cgroup.map(crate::cgroup::CgroupRun::counters).unwrap_or_default(),
            )
        };
        let limits = self.policy.limits;
        let supervised = warm
            .zygote
            .run(
                command.argv.clone(),
                command.cwd.clone(),
                env,
                rlimits,
                &command.stdin,
                &procs,
                command.wall_time.unwrap_or(limits.wall_time),
                limits.output_bytes,
                cancel,
                sink,
            )
            .await?;
        let after = {
            let run = warm.run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            run.as_ref()
                .and_then(|r| r.cgroup.as_ref())
                .map(crate::cgroup::CgroupRun::counters)
                .unwrap_or_default()
        };
        let waited = &supervised.waited;
        if let Some(failure) = Report::failure(&waited.reports) {
            return Err(failure);
        }
        let status = waited.status;
        let failed = !status.success();
        let counted = match status {
            ExitStatus::Signaled(s) if s == nix::libc::SIGXCPU => Some(LimitHit::CpuTime),
            ExitStatus::Signaled(s) if s == nix::libc::SIGXFSZ => Some(LimitHit::Disk),
            _ if failed && after.oom_kills > before.oom_kills => Some(LimitHit::Memory),
            _ if failed && after.pids_max_hits > before.pids_max_hits => Some(LimitHit::Pids),
            _ => None,
        };
        let limit = waited.limit.or(counted);
        let usage =
            waited.reports.iter().find_map(Report::usage).map(crate::spec::RunUsage::public);
        let ended = Ended {
            status,
            limit,
            elapsed: waited.elapsed,
            connections: Vec::new(),
            connections_omitted: 0,
            usage,
        };
        Ok(sandbox.output(ended, supervised.stdout, supervised.stderr, &self.policy.secrets))
    }

    /// Ends whatever commands left running and releases the session's cgroups.
    pub async fn close(self) {
        if let Some(run) = self.take_run() {
            let mut run = run;
            run.release().await;
        }
    }

    fn take_run(&self) -> Option<Run> {
        self.warm
            .as_ref()
            .and_then(|w| w.run.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take())
    }
}

impl Drop for SandboxSession {
    fn drop(&mut self) {
        if let Some(mut run) = self.take_run()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                run.release().await;
            });
        }
    }
}
