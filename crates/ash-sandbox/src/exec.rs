//! Running one command: spawn in a fresh process group, feed stdin, capture capped output,
//! enforce the wall-clock limit and cancellation, and kill the group when done (or when ash
//! itself dies: the command gets SIGKILL as its parent-death signal).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

/// How long output is still read after the command's process group was killed. A process that
/// left the group (with `setsid`) could otherwise hold the pipes open forever.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What a command may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before the process group is killed.
    pub wall_time: Duration,
    /// Bytes kept of stdout, and separately of stderr; the rest is read and discarded.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { wall_time: Duration::from_secs(30), output_bytes: 1024 * 1024 }
    }
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up in the request's `PATH`.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The complete environment of the process; nothing is inherited.
    pub env: BTreeMap<String, String>,
    /// Bytes written to stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// Limits.
    pub limits: Limits,
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
    /// It ran past [`Limits::wall_time`].
    WallTime,
    /// The caller cancelled it.
    Cancelled,
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured stdout, at most [`Limits::output_bytes`].
    pub stdout: Vec<u8>,
    /// Captured stderr, at most [`Limits::output_bytes`].
    pub stderr: Vec<u8>,
    /// Whether stdout was longer than what was kept.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than what was kept.
    pub stderr_truncated: bool,
    /// The limit that ended it, if one did.
    pub limit: Option<LimitHit>,
    /// Time from spawn to exit.
    pub elapsed: Duration,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request named no program.
    #[error("the command is empty")]
    EmptyArgv,
    /// The program could not be started.
    #[error("could not start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Waiting for the process failed.
    #[error("lost track of `{program}`: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// Runs `request` to its end, its wall-clock limit, or `cancel`, whichever comes first. The
/// process group is killed in every case before this returns.
pub async fn exec(
    request: &ExecRequest,
    cancel: &CancellationToken,
) -> Result<ExecOutput, SandboxError> {
    let Some((program, args)) = request.argv.split_first() else {
        return Err(SandboxError::EmptyArgv);
    };
    #[expect(clippy::disallowed_methods, reason = "ash-sandbox is the one place that spawns")]
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&request.cwd)
        .env_clear()
        .envs(&request.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // If ash dies (even by SIGKILL), the command dies with it instead of running on unowned;
    // its run re-executes it after the restart.
    #[allow(unsafe_code, reason = "pre_exec is the only way to set the parent-death signal")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it touches no memory of the parent.
    unsafe {
        command
            .pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|source| SandboxError::Spawn { program: program.clone(), source })?;
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let exited = CancellationToken::new();
    let cap = request.limits.output_bytes;

    let wait = async {
        let (status, limit) = tokio::select! {
            status = child.wait() => (status, None),
            () = tokio::time::sleep(request.limits.wall_time) => {
                kill_group(group);
                (child.wait().await, Some(LimitHit::WallTime))
            }
            () = cancel.cancelled() => {
                kill_group(group);
                (child.wait().await, Some(LimitHit::Cancelled))
            }
        };
        let elapsed = started.elapsed();
        // Whatever the command left running in its group goes with it.
        kill_group(group);
        exited.cancel();
        (status, limit, elapsed)
    };
    let feed = async {
        if let Some(mut stdin) = stdin {
            tokio::select! {
                // A command that does not read its input closes the pipe; that is its business.
                _ = stdin.write_all(&request.stdin) => {}
                () = exited.cancelled() => {}
            }
        }
    };
    let ((status, limit, elapsed), (), out, err) = tokio::join!(
        wait,
        feed,
        read_capped(stdout, cap, &exited),
        read_capped(stderr, cap, &exited)
    );
    let status =
        status.map_err(|source| SandboxError::Wait { program: program.clone(), source })?;
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Exited(code),
        (None, Some(signal)) => ExitStatus::Signaled(signal),
        (None, None) => ExitStatus::Exited(-1),
    };
    Ok(ExecOutput {
        status,
        stdout: out.0,
        stderr: err.0,
        stdout_truncated: out.1,
        stderr_truncated: err.1,
        limit,
        elapsed,
    })
}

fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        // ESRCH (already gone) is the common, good case.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Reads `pipe` to its end, keeping the first `cap` bytes; stops `DRAIN_GRACE` after the
/// process exited even if something still holds the pipe open.
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    cap: usize,
    exited: &CancellationToken,
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
        kept.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
    }
    (kept, truncated)
}
