//! What a caller asks for ([`ExecRequest`]) and gets back ([`ExecOutput`]), and the supervision
//! every backend shares: spawn in a fresh process group with a parent-death signal, feed stdin,
//! capture capped output, read the helper's reports, enforce the wall-clock limit and
//! cancellation, and kill the group when done.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::policy::{PolicyError, SandboxPolicy};
use crate::proxy::Connection;
use crate::spec::{REPORT_FD, Report, Rlimits};

/// How long output is still read after the command's process group was killed. A process that
/// left the group (with `setsid`) could otherwise hold the pipes open forever.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// A command to run under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up in the request's `PATH`.
    pub argv: Vec<String>,
    /// Working directory (absolute).
    pub cwd: PathBuf,
    /// The complete environment of the process; nothing is inherited. Secrets of the policy
    /// are added on top.
    pub env: BTreeMap<String, String>,
    /// Bytes written to stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// What the process may see, reach and consume.
    pub policy: SandboxPolicy,
}

impl ExecRequest {
    /// A request for `argv` in `cwd` under `policy`, with an empty environment and no input.
    pub fn new(argv: Vec<String>, cwd: PathBuf, policy: SandboxPolicy) -> Self {
        Self { argv, cwd, env: BTreeMap::new(), stdin: Vec::new(), policy }
    }
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The exit code, or 128 + signal as a shell reports it.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }
}

/// Which limit stopped the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// It ran past the wall-clock limit.
    WallTime,
    /// The caller cancelled it.
    Cancelled,
    /// It used more CPU time than allowed.
    CpuTime,
    /// The sandbox ran out of its memory limit (the kernel killed a process).
    Memory,
    /// A fork failed because the sandbox reached its process limit.
    Pids,
    /// It wrote more than its disk limit.
    Disk,
}

impl LimitHit {
    /// A short name for messages and JSON: `wall_time`, `memory`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WallTime => "wall_time",
            Self::Cancelled => "cancelled",
            Self::CpuTime => "cpu_time",
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Disk => "disk",
        }
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured stdout, at most the policy's `output_bytes`, secrets redacted.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the policy's `output_bytes`, secrets redacted.
    pub stderr: Vec<u8>,
    /// Whether stdout was longer than what was kept.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than what was kept.
    pub stderr_truncated: bool,
    /// The limit that ended it, if one did.
    pub limit: Option<LimitHit>,
    /// Time from spawn to exit.
    pub elapsed: Duration,
    /// The backend that ran it.
    pub backend: crate::BackendKind,
    /// Every connection the proxy allowed or denied, in order (`allow` policies only).
    pub connections: Vec<Connection>,
    /// Decisions made after the first thousand, counted but not kept.
    pub connections_omitted: u64,
    /// What the command used, where ash's helper ran it (the native and bwrap backends);
    /// `None` for plain and container runs.
    pub usage: Option<CommandUsage>,
}

/// What one command used, as the kernel counted it for the command and every descendant it
/// waited for (a shell's children included; a process left running in the background is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandUsage {
    /// User plus system CPU time.
    pub cpu_time: Duration,
    /// The largest resident set of any one of its processes, in bytes.
    pub peak_memory_bytes: u64,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request named no program.
    #[error("the command is empty")]
    EmptyArgv,
    /// The policy is unusable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A path of the request or policy does not exist or cannot be resolved.
    #[error("{what} `{path}`: {source}")]
    Path {
        /// Which path.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The backend cannot enforce this policy.
    #[error("the {backend} backend cannot {what}")]
    Unsupported {
        /// The backend.
        backend: crate::BackendKind,
        /// What it cannot do.
        what: &'static str,
    },
    /// `auto` found no backend that isolates here.
    #[error(
        "no sandbox backend isolates processes on this machine ({}); enable user namespaces (`sysctl kernel.unprivileged_userns_clone=1`, or `kernel.apparmor_restrict_unprivileged_userns=0`), install bubblewrap, or choose the `plain` backend explicitly to run without isolation",
        reasons.join("; ")
    )]
    NoIsolation {
        /// Why each isolating backend failed.
        reasons: Vec<String>,
    },
    /// The backend is not available on this machine.
    #[error("the {backend} backend is not available: {why}")]
    Unavailable {
        /// The backend.
        backend: crate::BackendKind,
        /// Why.
        why: String,
    },
    /// The program (or the backend's launcher) could not be started.
    #[error("could not start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Building the sandbox failed before the command ran.
    #[error("sandbox setup failed ({stage}): {message}")]
    Setup {
        /// The step that failed.
        stage: String,
        /// The reason.
        message: String,
    },
    /// The command could not be executed inside the sandbox.
    #[error("could not run the command in the sandbox: {0}")]
    Exec(String),
    /// Waiting for the process failed.
    #[error("lost track of `{program}`: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The proxy or another host-side resource could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// A process a backend prepared, and what supervision needs to know about it.
pub(crate) struct Launch {
    pub command: tokio::process::Command,
    /// Shown in errors.
    pub program: String,
    /// Bytes for stdin (a helper spec, then the command's input).
    pub stdin: Vec<u8>,
    /// Whether the child reports on fd 3 (the helper does).
    pub reports: bool,
    /// Open `cgroup.procs` files the child joins before it runs anything.
    pub cgroup_procs: Vec<RawFd>,
    /// Limits set in the child before it runs (plain backend; the helper sets its own).
    pub rlimits: Option<Rlimits>,
}

impl Launch {
    /// `command`, known as `program` in errors, with no input, reports, cgroups or rlimits.
    pub(crate) fn new(command: tokio::process::Command, program: String) -> Self {
        Self {
            command,
            program,
            stdin: Vec::new(),
            reports: false,
            cgroup_procs: Vec::new(),
            rlimits: None,
        }
    }
}

/// How a supervised process ended.
pub(crate) struct Waited {
    pub status: ExitStatus,
    pub limit: Option<LimitHit>,
    pub elapsed: Duration,
    pub reports: Vec<Report>,
}

/// What supervision saw: how the process ended and its captured output.
pub(crate) struct Supervised {
    pub waited: Waited,
    pub stdout: (Vec<u8>, bool),
    pub stderr: (Vec<u8>, bool),
}

/// A spawned process: its pipes, and what waiting for it needs.
pub(crate) struct Started {
    pub stdin: Option<tokio::process::ChildStdin>,
    pub stdout: Option<tokio::process::ChildStdout>,
    pub stderr: Option<tokio::process::ChildStderr>,
    pub waiter: Waiter,
}

/// Waits for a spawned process; kills its group on every way out.
pub(crate) struct Waiter {
    child: tokio::process::Child,
    group: Option<Pid>,
    report_read: Option<std::os::fd::OwnedFd>,
    started: Instant,
    program: String,
}

/// Spawns `launch` in a fresh process group with a parent-death signal, the report pipe on
/// fd 3 and its cgroups joined. Its stdin prefix (`launch.stdin`) is not written yet.
pub(crate) fn start(launch: &mut Launch) -> Result<Started, SandboxError> {
    let (report_read, report_write) = if launch.reports {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
            SandboxError::Io { what: "create the report pipe".into(), source: e.into() }
        })?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let write_fd = report_write.as_ref().map(|fd| fd.as_raw_fd());
    let cgroup_procs = launch.cgroup_procs.clone();
    let rlimits = launch.rlimits;
    let command = &mut launch.command;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    #[allow(unsafe_code, reason = "pre_exec is the only way to set these between fork and exec")]
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2),
    // dup2(2), fcntl(2), write(2) and setrlimit(2), which are async-signal-safe; it reads only
    // integers captured by value and a static byte string.
    unsafe {
        command.pre_exec(move || child_setup(write_fd, &cgroup_procs, rlimits.as_ref()));
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|source| SandboxError::Spawn { program: launch.program.clone(), source })?;
    // Our copy of the write end must close, or reading the reports never ends.
    drop(report_write);
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    Ok(Started {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        waiter: Waiter { child, group, report_read, started, program: launch.program.clone() },
    })
}

impl Waiter {
    /// The process group, killed when the process ends.
    pub(crate) fn group(&self) -> Option<Pid> {
        self.group
    }

    /// Waits for the process to end, `wall_time` to pass, or `cancel`; kills what is left of
    /// its group, then cancels `exited` and reads the helper's reports.
    pub(crate) async fn wait(
        mut self,
        wall_time: Duration,
        cancel: &CancellationToken,
        exited: &CancellationToken,
    ) -> Result<Waited, SandboxError> {
        let group = self.group;
        let child = &mut self.child;
        let wait = async {
            let (status, limit) = tokio::select! {
                status = child.wait() => (status, None),
                () = tokio::time::sleep(wall_time) => {
                    kill_group(group);
                    (child.wait().await, Some(LimitHit::WallTime))
                }
                () = cancel.cancelled() => {
                    kill_group(group);
                    (child.wait().await, Some(LimitHit::Cancelled))
                }
            };
            let elapsed = self.started.elapsed();
            // Whatever the command left running in its group goes with it.
            kill_group(group);
            exited.cancel();
            (status, limit, elapsed)
        };
        let report_read = self.report_read.take();
        let reports = async {
            let Some(fd) = report_read else { return Vec::new() };
            let pipe = tokio::fs::File::from_std(std::fs::File::from(fd));
            let (bytes, _) = read_capped(Some(pipe), 64 * 1024, exited).await;
            Report::parse_all(&bytes)
        };
        let ((status, limit, elapsed), reports) = tokio::join!(wait, reports);
        let status = status
            .map_err(|source| SandboxError::Wait { program: self.program.clone(), source })?;
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Exited(code),
            (None, Some(signal)) => ExitStatus::Signaled(signal),
            (None, None) => ExitStatus::Exited(-1),
        };
        Ok(Waited { status, limit, elapsed, reports })
    }
}

/// Spawns `launch`, writes its stdin, captures its output (`output_bytes` of each stream) and
/// supervises it to its end, `wall_time`, or `cancel`. The process group is killed in every
/// case before this returns.
pub(crate) async fn supervise(
    mut launch: Launch,
    wall_time: Duration,
    output_bytes: usize,
    cancel: &CancellationToken,
) -> Result<Supervised, SandboxError> {
    let Started { stdin, stdout, stderr, waiter } = start(&mut launch)?;
    let exited = CancellationToken::new();
    let feed = feed(stdin, &launch.stdin, &exited);
    let (waited, (), stdout, stderr) = tokio::join!(
        waiter.wait(wall_time, cancel, &exited),
        feed,
        read_capped(stdout, output_bytes, &exited),
        read_capped(stderr, output_bytes, &exited),
    );
    Ok(Supervised { waited: waited?, stdout, stderr })
}

/// Writes `bytes` to `stdin` and closes it, or gives up once the process exited. A command
/// that does not read its input closes the pipe; that is its business.
pub(crate) async fn feed(
    stdin: Option<impl tokio::io::AsyncWrite + Unpin>,
    bytes: &[u8],
    exited: &CancellationToken,
) {
    if let Some(mut stdin) = stdin {
        tokio::select! {
            _ = stdin.write_all(bytes) => {}
            () = exited.cancelled() => {}
        }
    }
}

/// In the child between fork and exec: die with ash, receive the report pipe as fd 3, join
/// the cgroups.
fn child_setup(
    report: Option<RawFd>,
    cgroup_procs: &[RawFd],
    rlimits: Option<&Rlimits>,
) -> io::Result<()> {
    use nix::libc;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
    if let Some(limits) = rlimits {
        limits.apply().map_err(|(_, e)| io::Error::from(e))?;
    }
    #[allow(unsafe_code, reason = "raw descriptor calls in a forked child")]
    // SAFETY: plain syscalls on descriptors the parent opened for this child; no memory is
    // shared or allocated.
    unsafe {
        if let Some(fd) = report {
            if fd == REPORT_FD {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, REPORT_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for fd in cgroup_procs {
            // "0" moves the writing process.
            if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // Whatever else ash has open (database files, sockets, pipes of other runs) stays here.
    crate::fds::cloexec_from(if report.is_some() { REPORT_FD + 1 } else { REPORT_FD });
    Ok(())
}

pub(crate) fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        // ESRCH (already gone) is the common, good case.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Reads `pipe` to its end, keeping the first `cap` bytes; stops `DRAIN_GRACE` after the
/// process exited even if something still holds the pipe open.
pub(crate) async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    cap: usize,
    exited: &CancellationToken,
) -> (Vec<u8>, bool) {
    read_teed(pipe, cap, exited, None).await
}

/// Which pipe a chunk of live output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a command's output as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The pipe.
    pub stream: OutputStream,
    /// The bytes, as read (a UTF-8 character may be split across two chunks).
    pub bytes: Vec<u8>,
}

/// Where a command's output goes while it runs, besides the captured copy. Chunks that do not
/// fit (the receiver is slow) are dropped rather than slowing the command: the captured output
/// at the end is complete up to its cap. Refused for policies with secrets, which are redacted
/// only from the captured copy.
#[derive(Debug, Clone)]
pub struct OutputSink(pub tokio::sync::mpsc::Sender<OutputChunk>);

/// [`read_capped`], also handing each read (up to the cap) to `tee`.
pub(crate) async fn read_teed(
    pipe: Option<impl AsyncRead + Unpin>,
    cap: usize,
    exited: &CancellationToken,
    tee: Option<(&OutputSink, OutputStream)>,
) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else { return (Vec::new(), false) };
    let mut kept = Vec::with_capacity(cap.min(8 * 1024));
    let mut truncated = false;
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = async {
        exited.cancelled().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::pin!(deadline);
    loop {
        let n = tokio::select! {
            read = pipe.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = &mut deadline => break,
        };
        let room = cap.saturating_sub(kept.len());
        let chunk = buf.get(..n).unwrap_or_default();
        if chunk.len() > room {
            truncated = true;
        }
        let keep = chunk.get(..room.min(chunk.len())).unwrap_or_default();
        if let Some((sink, stream)) = tee
            && !keep.is_empty()
        {
            let _ = sink.0.try_send(OutputChunk { stream, bytes: keep.to_vec() });
        }
        kept.extend_from_slice(keep);
    }
    (kept, truncated)
}
