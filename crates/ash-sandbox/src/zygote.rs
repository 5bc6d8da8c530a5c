//! Zygotes: one long-lived native sandbox per filesystem view, which builds the namespaces and
//! the view once and then forks each command on request.
//!
//! Owns the ash side: starting a zygote (the helper with `zygote`), keying zygotes by what
//! their view holds (paths, network, user, `/tmp` size, Landlock ABI), sending a command with
//! its pipes and cgroup files over a `SOCK_SEQPACKET` socket, reading its end, killing it on
//! time-out or cancel, and retiring zygotes that idle. Every command still gets its own
//! session, user namespace (under root), rlimits, Landlock and seccomp in the forked child,
//! and its own cgroups (which take whatever it leaves running when the run ends). What
//! zygotes do not serve (allow-list networks, secret files, no usable cgroups) goes through a
//! fresh helper as before.

use std::collections::HashMap;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::exec::{
    ExitStatus, LimitHit, OutputSink, OutputStream, SandboxError, Supervised, Waited, read_teed,
};
use crate::spec::{HELPER_ARG, HelperSpec, Report, Rlimits, ZYGOTE_ARG, ZygoteRequest};

/// A zygote unused this long is retired.
const IDLE: Duration = Duration::from_secs(30);
/// Zygotes kept at once; the least recently used goes first.
const MAX_ZYGOTES: usize = 32;
/// Time a new zygote has to build its view.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long output is still read after the command ended.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// The zygotes of one [`crate::Sandbox`].
#[derive(Debug, Default)]
pub(crate) struct Zygotes {
    live: Mutex<HashMap<String, Arc<Zygote>>>,
}

/// One running zygote.
#[derive(Debug)]
pub(crate) struct Zygote {
    control: OwnedFd,
    _process: tokio::process::Child,
    next: AtomicU64,
    used: Mutex<Instant>,
}

impl Zygotes {
    /// The zygote for `spec`'s view, started if there is none.
    pub(crate) async fn get(
        &self,
        helper: &Path,
        spec: &HelperSpec,
    ) -> Result<Arc<Zygote>, SandboxError> {
        let key = view_key(spec);
        {
            let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            live.retain(|_, z| z.idle() < IDLE);
            if let Some(zygote) = live.get(&key) {
                return Ok(Arc::clone(zygote));
            }
        }
        let zygote = Arc::new(Zygote::start(helper, spec).await?);
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.len() >= MAX_ZYGOTES
            && let Some(oldest) = live.iter().max_by_key(|(_, z)| z.idle()).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(key, Arc::clone(&zygote));
        Ok(zygote)
    }

    /// Forgets a zygote that failed (it is killed when its last user lets go).
    pub(crate) fn retire(&self, spec: &HelperSpec) {
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.remove(&view_key(spec));
    }
}

/// What a zygote's view is made of: requests with the same key may share one.
fn view_key(spec: &HelperSpec) -> String {
    serde_json::json!([
        spec.read_only,
        spec.writable,
        spec.hidden,
        spec.share_net,
        spec.tmp_bytes,
        spec.uid,
        spec.host_id,
        spec.landlock_abi,
    ])
    .to_string()
}

impl Zygote {
    fn idle(&self) -> Duration {
        self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
    }

    async fn start(helper: &Path, spec: &HelperSpec) -> Result<Self, SandboxError> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let io =
            |what: &str, e: nix::Error| SandboxError::Io { what: what.into(), source: e.into() };
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| io("create a zygote socket", e))?;
        let (report_r, report_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("create a pipe", e))?;
        // No code runs between fork and exec, so the standard library spawns with
        // `posix_spawn` (a vfork) instead of copying ash's whole address space: the pipe and
        // the socket travel as stdout and stderr, and the helper moves them into place.
        let mut command = crate::backends::command(helper);
        command
            .args([HELPER_ARG, ZYGOTE_ARG])
            .arg(std::process::id().to_string())
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::from(report_w))
            .stderr(std::process::Stdio::from(theirs))
            .process_group(0)
            .kill_on_drop(true);
        let mut process = command.spawn().map_err(|source| SandboxError::Spawn {
            program: helper.display().to_string(),
            source,
        })?;
        // The child holds its copies now; dropping `command` closes ours.
        drop(command);
        let mut template = spec.clone();
        template.zygote = true;
        template.argv = vec!["zygote".into()];
        if let Some(mut stdin) = process.stdin.take() {
            let _ = stdin.write_all(&template.encode()).await;
        }
        let mut report = tokio::net::unix::pipe::Receiver::from_owned_fd(report_r)
            .map_err(|source| SandboxError::Io { what: "read a zygote's report".into(), source })?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while report.read(&mut byte).await.ok() == Some(1) {
                if byte[0] == b'\n' {
                    return Report::parse_all(&line).into_iter().next();
                }
                line.push(byte[0]);
            }
            None
        })
        .await;
        match ready {
            Ok(Some(Report::Ready)) => Ok(Self {
                control: ours,
                _process: process,
                next: AtomicU64::new(0),
                used: Mutex::new(Instant::now()),
            }),
            Ok(Some(Report::Setup { stage, message })) => {
                Err(SandboxError::Setup { stage, message })
            }
            _ => Err(SandboxError::Setup {
                stage: "start a zygote".into(),
                message: "it did not report ready".into(),
            }),
        }
    }

    fn send(&self, request: &ZygoteRequest, fds: &[RawFd]) -> Result<(), SandboxError> {
        let bytes = serde_json::to_vec(request).unwrap_or_default();
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        sendmsg::<()>(
            self.control.as_raw_fd(),
            &[std::io::IoSlice::new(&bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(|e| SandboxError::Io {
            what: "send a command to a zygote".into(),
            source: e.into(),
        })
    }

    /// Runs one command in this zygote and supervises it to its end, `wall_time` or `cancel`.
    #[expect(clippy::too_many_arguments, reason = "the pieces of one supervised run")]
    pub(crate) async fn run(
        &self,
        argv: Vec<String>,
        cwd: std::path::PathBuf,
        env: std::collections::BTreeMap<String, String>,
        rlimits: Rlimits,
        stdin: &[u8],
        cgroup_procs: &[RawFd],
        wall_time: Duration,
        output_bytes: usize,
        cancel: &CancellationToken,
        sink: Option<&OutputSink>,
    ) -> Result<Supervised, SandboxError> {
        use tokio::net::unix::pipe::{Receiver, Sender};
        *self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        let io = |what: &str, e: std::io::Error| SandboxError::Io { what: what.into(), source: e };
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| io("create a pipe", e.into()))
        };
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (rep_r, rep_w) = pipe()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fds =
            vec![in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd(), rep_w.as_raw_fd()];
        fds.extend_from_slice(cgroup_procs);
        let request =
            ZygoteRequest::Run { id, argv, cwd, env, rlimits, cgroups: cgroup_procs.len() };
        let started = Instant::now();
        self.send(&request, &fds)?;
        drop((in_r, out_w, err_w, rep_w));
        let stdin_pipe = Sender::from_owned_fd(in_w).map_err(|e| io("feed stdin", e))?;
        let stdout = Receiver::from_owned_fd(out_r).map_err(|e| io("read stdout", e))?;
        let stderr = Receiver::from_owned_fd(err_r).map_err(|e| io("read stderr", e))?;
        let mut reports = Receiver::from_owned_fd(rep_r).map_err(|e| io("read reports", e))?;
        let exited = CancellationToken::new();
        let wait = async {
            let mut bytes = Vec::new();
            let mut buf = [0u8; 1024];
            let read = async {
                loop {
                    match reports.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    }
                    if bytes.len() > 64 * 1024 {
                        break;
                    }
                }
            };
            tokio::pin!(read);
            let limit = tokio::select! {
                () = &mut read => None,
                () = tokio::time::sleep(wall_time) => Some(LimitHit::WallTime),
                () = cancel.cancelled() => Some(LimitHit::Cancelled),
            };
            if limit.is_some() {
                let _ = self.send(&ZygoteRequest::Kill { id }, &[]);
                read.await;
            }
            let elapsed = started.elapsed();
            exited.cancel();
            (Report::parse_all(&bytes), limit, elapsed)
        };
        let feed = crate::exec::feed(Some(stdin_pipe), stdin, &exited);
        let ((reports, limit, elapsed), (), stdout, stderr) = tokio::join!(
            wait,
            feed,
            read_teed(Some(stdout), output_bytes, &exited, sink.map(|s| (s, OutputStream::Stdout))),
            read_teed(Some(stderr), output_bytes, &exited, sink.map(|s| (s, OutputStream::Stderr))),
        );
        let _ = DRAIN_GRACE;
        let status = reports.iter().find_map(|r| match r {
            Report::Exit { code, .. } => Some(ExitStatus::Exited(*code)),
            Report::Signal { signal, .. } => Some(ExitStatus::Signaled(*signal)),
            _ => None,
        });
        let failed_early =
            reports.iter().any(|r| matches!(r, Report::Setup { .. } | Report::Exec { .. }));
        let Some(status) = status.or(failed_early.then_some(ExitStatus::Exited(127))) else {
            return Err(SandboxError::Wait {
                program: "zygote".into(),
                source: std::io::Error::other("the zygote ended before the command"),
            });
        };
        Ok(Supervised { waited: Waited { status, limit, elapsed, reports }, stdout, stderr })
    }
}
