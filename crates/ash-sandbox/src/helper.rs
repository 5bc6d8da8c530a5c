//! The sandbox helper: the process the native backend starts (the `ash` binary re-executed with
//! [`HELPER_ARG`](crate::HELPER_ARG)). It runs single-threaded, so it may do what a `pre_exec`
//! hook in a multi-threaded server must not: enter new user, mount, pid, network, ipc and uts
//! namespaces, build the filesystem view and `pivot_root` into it, then, in the process that
//! becomes the command, set rlimits, apply Landlock and seccomp, and `exec`.
//!
//! Process shape (native): helper (ash's child, host pid namespace) → init (pid 1 of the new
//! namespace: builds the view, runs the network forwarder, reaps) → command. When the command
//! ends, init reports its status on fd 3 and exits, and the kernel kills everything left in the
//! namespace. Inside bubblewrap (`isolate = false`) the view and namespaces already exist and
//! the helper only confines, forwards and reports.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd as _, FromRawFd as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, execve, fork, getgid, getuid, pivot_root, setsid};

use crate::spec::{
    DEFAULT_PATH, HelperSpec, REPORT_FD, Report, Rlimits, RunUsage, ZYGOTE_FD, ZygoteRequest,
    find_program, forward_socket,
};

/// Parts of `/proc` that change the whole machine; read-only in every sandbox.
pub(crate) const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];

/// Exit code of the helper when the sandbox could not be set up.
const SETUP_FAILED: i32 = 125;
/// Connections the forwarder carries at once; more wait in the listen backlog.
const MAX_FORWARDED: usize = 128;

/// A failed setup step: which, and why.
struct Failure {
    stage: String,
    message: String,
}

trait Stage<T> {
    fn stage(self, stage: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> Stage<T> for Result<T, E> {
    fn stage(self, stage: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| Failure { stage: stage(), message: e.to_string() })
    }
}

/// Runs the helper and exits; call it first thing in `main` when `argv[1]` is
/// [`HELPER_ARG`](crate::HELPER_ARG), before any thread exists.
pub fn helper_main() -> ! {
    let zygote = std::env::args().nth(2).as_deref() == Some(crate::spec::ZYGOTE_ARG);
    if zygote {
        // ash starts a zygote without running code between fork and exec (a spawn, not a
        // fork of its whole address space): the report pipe comes as stdout and the command
        // socket as stderr; they move to their places here.
        place_zygote_fds();
    }
    #[allow(unsafe_code, reason = "taking ownership of the report descriptor ash passed")]
    // SAFETY: ash starts the helper with fd 3 open on the write end of its report pipe and
    // nothing else in this process uses fd 3; we own it from here on.
    let mut report = unsafe { File::from_raw_fd(REPORT_FD) };
    // The command must not inherit it (and forge reports).
    let _ = fcntl(report.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    // Nothing else ash (or bubblewrap) had open may reach the command; a zygote keeps the
    // socket its commands come on.
    crate::fds::close_from(if zygote { ZYGOTE_FD + 1 } else { REPORT_FD + 1 });
    let code = match run(&mut report) {
        Ok(code) => code,
        Err(failure) => {
            Report::Setup { stage: failure.stage, message: failure.message }.send(&mut report);
            SETUP_FAILED
        }
    };
    std::process::exit(code)
}

/// Moves a zygote's report pipe (stdout) to [`REPORT_FD`] and its command socket (stderr)
/// to [`ZYGOTE_FD`], points stdout and stderr at `/dev/null`, and asks to be killed with ash
/// (whose pid is the argument after `zygote`). On failure, or if ash is gone already, the
/// zygote exits at once: ash sees no `ready` report and says so.
fn place_zygote_fds() {
    let placed = dup2_raw(1, REPORT_FD)
        .and_then(|()| dup2_raw(2, ZYGOTE_FD))
        .and_then(|()| {
            let null = fs::OpenOptions::new().write(true).open("/dev/null")?;
            dup2_raw(std::os::fd::AsRawFd::as_raw_fd(&null), 1)?;
            dup2_raw(std::os::fd::AsRawFd::as_raw_fd(&null), 2)
        })
        .and_then(|()| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    // Asked after the exec, so ash may already be gone: then its pid is no longer our parent.
    let parent = std::env::args().nth(3);
    let orphaned = parent != Some(nix::unistd::getppid().as_raw().to_string());
    if placed.is_err() || orphaned {
        std::process::exit(SETUP_FAILED);
    }
}

fn dup2_raw(from: i32, to: i32) -> io::Result<()> {
    #[allow(unsafe_code, reason = "placing inherited descriptors at fixed numbers")]
    // SAFETY: dup2 on descriptors this process inherited, before anything else uses them.
    let done = unsafe { nix::libc::dup2(from, to) };
    if done < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Reads fd 0 without buffering, so the command's stdin that follows the spec stays unread.
struct RawStdin;

impl Read for RawStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(io::stdin().as_fd(), buf).map_err(io::Error::from)
    }
}

fn run(report: &mut File) -> Result<i32, Failure> {
    let spec = HelperSpec::decode(&mut RawStdin).stage(|| "read the sandbox spec".into())?;
    if !spec.isolate {
        return init(&spec, report);
    }
    let (uid, gid) = (getuid(), getgid());
    // Under a root-run ash the namespaces need no user namespace (root may create them), and
    // init, which builds the view, stays root; the command alone becomes the unprivileged
    // host id, in a user namespace of its own (`become_sandbox_user`). Otherwise a user
    // namespace maps our one uid to the sandbox user.
    let privileged = spec.host_id.is_some() && uid.is_root();
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if !privileged {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if !spec.share_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).stage(|| "create namespaces (unshare)".into())?;
    if !privileged {
        // Writing setgroups=deny first is required before an unprivileged gid_map.
        fs::write("/proc/self/uid_map", format!("{} {uid} 1\n", spec.uid))
            .stage(|| "write uid_map".into())?;
        fs::write("/proc/self/setgroups", "deny\n").stage(|| "write setgroups".into())?;
        fs::write("/proc/self/gid_map", format!("{} {gid} 1\n", spec.uid))
            .stage(|| "write gid_map".into())?;
    }
    #[allow(unsafe_code, reason = "fork is the only way into the new pid namespace")]
    // SAFETY: the helper is single-threaded (no thread has been started), so the child may
    // allocate and use any library function.
    match unsafe { fork() }.stage(|| "fork the namespace init".into())? {
        ForkResult::Child => {
            let code = match init(&spec, report) {
                Ok(code) => code,
                Err(failure) => {
                    Report::Setup { stage: failure.stage, message: failure.message }.send(report);
                    SETUP_FAILED
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => Ok(wait_exit_code(child)),
    }
}

fn wait_exit_code(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return SETUP_FAILED,
        }
    }
}

/// Pid 1 of the sandbox (native) or the helper inside bubblewrap: builds the view if asked,
/// starts the command, forwards connections to the proxy and services, reaps, and reports the
/// command's end.
fn init(spec: &HelperSpec, report: &mut File) -> Result<i32, Failure> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .stage(|| "set the parent-death signal".into())?;
    if !spec.isolate {
        write_secret_files(spec, Path::new("/run/secrets"))?;
    }
    if spec.isolate {
        build_view(spec)?;
        nix::unistd::sethostname("ash-sandbox").stage(|| "set the hostname".into())?;
        if !spec.share_net {
            loopback_up().stage(|| "bring up the sandbox's loopback".into())?;
        }
    }
    if spec.zygote {
        return zygote_loop(spec, report);
    }
    // Bound before the command starts, so its first connections wait in the backlog.
    let mut listeners = Vec::with_capacity(spec.forwards.len());
    for (port, _) in &spec.forwards {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, *port))
            .stage(|| format!("listen on 127.0.0.1:{port} for ash's forward"))?;
        listeners.push((listener, forward_socket(*port)));
    }
    #[allow(unsafe_code, reason = "fork starts the command while init stays to reap")]
    // SAFETY: init is single-threaded here; the forwarder thread starts after the fork.
    let command = match unsafe { fork() }.stage(|| "fork the command".into())? {
        ForkResult::Child => {
            let message = match exec_command(spec) {
                Err(failure) if failure.stage == "exec" => {
                    Report::Exec { message: failure.message }
                }
                Err(failure) => Report::Setup { stage: failure.stage, message: failure.message },
                Ok(never) => match never {},
            };
            message.send(report);
            std::process::exit(127)
        }
        ForkResult::Parent { child } => child,
    };
    for (listener, socket) in listeners {
        // Detached on purpose: init exits when the command does, which ends the thread.
        std::thread::spawn(move || forward(&listener, &socket));
    }
    loop {
        match wait_usage(false) {
            Ok(Some((WaitStatus::Exited(pid, code), usage))) if pid == command => {
                Report::Exit { code, usage: Some(usage) }.send(report);
                return Ok(0);
            }
            Ok(Some((WaitStatus::Signaled(pid, signal, _), usage))) if pid == command => {
                Report::Signal { signal: signal as i32, usage: Some(usage) }.send(report);
                return Ok(0);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).stage(|| "wait for the command".into()),
        }
    }
}

/// Reaps one child (any; without blocking when `nohang`) and reads what it used: its own CPU
/// time and resident set, and those of the descendants it waited for. `None`: none ended yet.
fn wait_usage(nohang: bool) -> Result<Option<(WaitStatus, RunUsage)>, Errno> {
    let mut status: nix::libc::c_int = 0;
    #[allow(unsafe_code, reason = "zero-initialising a C struct for wait4 to fill")]
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let options = if nohang { nix::libc::WNOHANG } else { 0 };
    #[allow(unsafe_code, reason = "nix has no wait4, the only call that gives one child's usage")]
    // SAFETY: `status` and `usage` are valid for writes for the whole call; wait4 has no other
    // preconditions.
    let pid = unsafe { nix::libc::wait4(-1, &raw mut status, options, &raw mut usage) };
    if pid < 0 {
        return Err(Errno::last());
    }
    if pid == 0 {
        return Ok(None);
    }
    let micros = |t: nix::libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    let used = RunUsage {
        cpu_us: micros(usage.ru_utime).saturating_add(micros(usage.ru_stime)),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    };
    Ok(Some((WaitStatus::from_raw(Pid::from_raw(pid), status)?, used)))
}

/// A zygote's life as the namespace's init: the view is built; each request on
/// [`ZYGOTE_FD`] becomes a forked command (steps as [`exec_command`]) whose end is reported on
/// the request's own report pipe; children are reaped as they end. Returns when ash closes the
/// socket, which ends the namespace and everything in it.
fn zygote_loop(spec: &HelperSpec, report: &mut File) -> Result<i32, Failure> {
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd as _, OwnedFd};

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

    #[allow(unsafe_code, reason = "taking ownership of the socket ash passed")]
    // SAFETY: ash starts a zygote with its command socket on ZYGOTE_FD and nothing else in this
    // process uses that number.
    let control = unsafe { OwnedFd::from_raw_fd(ZYGOTE_FD) };
    let _ = fcntl(control.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    let mut children = SigSet::empty();
    children.add(Signal::SIGCHLD);
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&children), Some(&mut previous))
        .stage(|| "block SIGCHLD".into())?;
    let reaped = SignalFd::with_flags(&children, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .stage(|| "watch for ended commands".into())?;
    // Landlock rules and seccomp filters are built once; each command's process applies them.
    let prepared_template = spec.clone();
    Report::Ready.send(report);
    let mut running: HashMap<i32, (u64, File)> = HashMap::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut ready = Some(
        crate::confine::Prepared::new(spec)
            .map_err(|message| Failure { stage: "prepare confinement".into(), message })?,
    );
    loop {
        let mut fds = [
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
            PollFd::new(reaped.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).stage(|| "wait for commands".into()),
        }
        let control_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let reap_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        if reap_ready {
            while reaped.read_signal().ok().flatten().is_some() {}
            loop {
                match wait_usage(true) {
                    Ok(Some((WaitStatus::Exited(pid, code), usage))) => {
                        if let Some((_, mut out)) = running.remove(&pid.as_raw()) {
                            Report::Exit { code, usage: Some(usage) }.send(&mut out);
                        }
                    }
                    Ok(Some((WaitStatus::Signaled(pid, signal, _), usage))) => {
                        if let Some((_, mut out)) = running.remove(&pid.as_raw()) {
                            Report::Signal { signal: signal as i32, usage: Some(usage) }
                                .send(&mut out);
                        }
                    }
                    Ok(None | Some((WaitStatus::StillAlive, _))) | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
        }
        if !control_ready {
            continue;
        }
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 64]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let message = match recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(_) => return Ok(0),
        };
        let mut received: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    #[allow(unsafe_code, reason = "taking ownership of received descriptors")]
                    // SAFETY: SCM_RIGHTS installed these descriptors in this process for us.
                    received.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        let len = message.bytes;
        if len == 0 {
            // ash closed the socket: the zygote's work is over.
            return Ok(0);
        }
        let Ok(request) = serde_json::from_slice::<ZygoteRequest>(&buf[..len]) else { continue };
        match request {
            ZygoteRequest::Kill { id } => {
                for (pid, (run, _)) in &running {
                    if *run == id {
                        let _ = nix::sys::signal::killpg(Pid::from_raw(*pid), Signal::SIGKILL);
                        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
                    }
                }
            }
            ZygoteRequest::Run { id, argv, cwd, env, rlimits, cgroups } => {
                if received.len() != 4 + cgroups {
                    continue;
                }
                // Each command's process consumes one prepared copy (fork duplicates it); the
                // zygote makes the next one ahead of time.
                let mut prepared =
                    Some(match ready.take() {
                        Some(p) => p,
                        None => crate::confine::Prepared::new(&prepared_template).map_err(
                            |message| Failure { stage: "prepare confinement".into(), message },
                        )?,
                    });
                let mut child_spec = spec.clone();
                child_spec.argv = argv;
                child_spec.cwd = cwd;
                child_spec.env = env;
                child_spec.rlimits = rlimits;
                #[allow(unsafe_code, reason = "fork is how a zygote starts a command")]
                // SAFETY: the zygote is single-threaded (no forwarder runs in this mode).
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => {
                        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
                        let code = start_in_zygote(&child_spec, &received, prepared.take());
                        std::process::exit(code)
                    }
                    Ok(ForkResult::Parent { child }) => {
                        ready = prepared.take();
                        let mut fds = received.into_iter();
                        let (_, _, _) = (fds.next(), fds.next(), fds.next());
                        if let Some(report) = fds.next() {
                            running.insert(child.as_raw(), (id, File::from(report)));
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// In a zygote's child: the request's pipes as stdin, stdout and stderr, its report pipe on
/// fd 3, its cgroups joined, then the steps every command takes.
fn start_in_zygote(
    spec: &HelperSpec,
    fds: &[std::os::fd::OwnedFd],
    prepared: Option<crate::confine::Prepared>,
) -> i32 {
    use std::os::fd::AsRawFd as _;
    let [stdin, stdout, stderr, report, cgroups @ ..] = fds else { return SETUP_FAILED };
    let moved =
        [(stdin, 0), (stdout, 1), (stderr, 2), (report, REPORT_FD)].iter().all(|(fd, to)| {
            #[allow(unsafe_code, reason = "placing descriptors in a forked child")]
            // SAFETY: dup2 on descriptors this process owns.
            unsafe {
                nix::libc::dup2(fd.as_raw_fd(), *to) >= 0
            }
        });
    #[allow(unsafe_code, reason = "the report descriptor the child writes failures on")]
    // SAFETY: fd 3 was just made a copy of the request's report pipe.
    let mut report = unsafe { File::from_raw_fd(REPORT_FD) };
    let _ = fcntl(report.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    if !moved {
        Report::Setup {
            stage: "place the command's descriptors".into(),
            message: "dup2 failed".into(),
        }
        .send(&mut report);
        return SETUP_FAILED;
    }
    for cgroup in cgroups {
        if nix::unistd::write(cgroup, b"0").is_err() {
            Report::Setup {
                stage: "join the run's cgroups".into(),
                message: "write failed".into(),
            }
            .send(&mut report);
            return SETUP_FAILED;
        }
    }
    // Everything above the report pipe goes at exec (the prepared Landlock ruleset is one of
    // them, and is applied before).
    crate::fds::cloexec_from(REPORT_FD + 1);
    let message = match exec_confined(spec, prepared) {
        Err(failure) if failure.stage == "exec" => Report::Exec { message: failure.message },
        Err(failure) => Report::Setup { stage: failure.stage, message: failure.message },
        Ok(never) => match never {},
    };
    message.send(&mut report);
    127
}

/// Relays each TCP connection to a forwarded port to the host socket bound at `socket`.
fn forward(listener: &TcpListener, socket: &Path) {
    let active = Arc::new(AtomicUsize::new(0));
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        if active.load(Ordering::Relaxed) >= MAX_FORWARDED {
            continue;
        }
        let Ok(unix) = UnixStream::connect(socket) else { continue };
        active.fetch_add(1, Ordering::Relaxed);
        let active = Arc::clone(&active);
        std::thread::spawn(move || {
            splice(tcp, unix);
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn splice(tcp: TcpStream, unix: UnixStream) {
    let (Ok(mut tcp_r), Ok(mut unix_r)) = (tcp.try_clone(), unix.try_clone()) else { return };
    let (mut tcp_w, mut unix_w) = (tcp, unix);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut tcp_r, &mut unix_w);
        let _ = unix_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = io::copy(&mut unix_r, &mut tcp_w);
    let _ = tcp_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// The command's last steps: session, limits, Landlock, seccomp, `exec`. Returns only on
/// failure.
fn exec_command(spec: &HelperSpec) -> Result<std::convert::Infallible, Failure> {
    exec_confined(spec, None)
}

/// [`exec_command`], with the Landlock ruleset and seccomp filters a zygote prepared.
fn exec_confined(
    spec: &HelperSpec,
    prepared: Option<crate::confine::Prepared>,
) -> Result<std::convert::Infallible, Failure> {
    setsid().stage(|| "start a new session".into())?;
    // Under a root-run ash every run has the same host id: the process limit must be counted
    // in the command's own user namespace, so the limits come after entering it.
    if let Some(host) = spec.host_id.filter(|_| spec.isolate && getuid().is_root()) {
        become_sandbox_user(host, spec.uid)?;
    }
    set_rlimits(&spec.rlimits)?;
    chdir(&spec.cwd).stage(|| format!("enter the working directory {}", spec.cwd.display()))?;
    match prepared {
        Some(prepared) => {
            if let Some(ruleset) = prepared.ruleset {
                crate::confine::restrict(ruleset).stage(|| "apply Landlock".into())?;
            }
            crate::confine::seccomp_with(&prepared.filters)
                .stage(|| "apply the seccomp filter".into())?;
        }
        None => {
            crate::confine::landlock(spec).stage(|| "apply Landlock".into())?;
            crate::confine::seccomp().stage(|| "apply the seccomp filter".into())?;
        }
    }
    let program = resolve_program(spec).stage(|| "exec".into())?;
    let argv = cstrings(spec.argv.iter().map(String::as_str)).stage(|| "exec".into())?;
    let env = cstrings(
        spec.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    )
    .stage(|| "exec".into())?;
    let err = execve(&program, &argv, &env).map_err(|e| e.desc()).err().unwrap_or("exec returned");
    Err(Failure { stage: "exec".into(), message: format!("`{}`: {err}", spec.argv.join(" ")) })
}

/// Under a root-run ash (init is host root): becomes the unprivileged host id `host`, with no
/// supplementary groups and no capabilities, then enters a user namespace of its own where
/// that id is the sandbox user (`inside`: 1000, or 0 for `user = "root"`).
fn become_sandbox_user(host: u32, inside: u32) -> Result<(), Failure> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let (uid, gid) = (Uid::from_raw(host), Gid::from_raw(host));
    setgroups(&[]).stage(|| "drop supplementary groups".into())?;
    setresgid(gid, gid, gid).stage(|| "become the sandbox group".into())?;
    setresuid(uid, uid, uid).stage(|| "become the sandbox user".into())?;
    // Changing credentials made this process non-dumpable, which hides its own /proc files
    // (the maps below) from it; the command's exec would make it dumpable again anyway.
    nix::sys::prctl::set_dumpable(true).stage(|| "allow writing our own maps".into())?;
    unshare(CloneFlags::CLONE_NEWUSER).stage(|| "create the sandbox user namespace".into())?;
    fs::write("/proc/self/uid_map", format!("{inside} {host} 1\n"))
        .stage(|| "write uid_map".into())?;
    fs::write("/proc/self/setgroups", "deny\n").stage(|| "write setgroups".into())?;
    fs::write("/proc/self/gid_map", format!("{inside} {host} 1\n")).stage(|| "write gid_map".into())
}

fn cstrings<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, String> {
    items.map(|s| CString::new(s).map_err(|_| format!("`{s}` contains a NUL byte"))).collect()
}

/// Finds `argv[0]` in the command's own `PATH` (not the helper's, which is empty).
fn resolve_program(spec: &HelperSpec) -> Result<CString, String> {
    let name = spec.argv.first().ok_or("the command is empty")?;
    let search = spec.env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
    let found = find_program(search, name)
        .ok_or_else(|| format!("`{name}`: command not found in the sandbox's PATH"))?;
    CString::new(found.into_os_string().into_encoded_bytes()).map_err(|_| "NUL in path".into())
}

fn set_rlimits(limits: &Rlimits) -> Result<(), Failure> {
    limits
        .apply()
        .map_err(|(name, e)| Failure { stage: format!("set {name}"), message: e.to_string() })?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).stage(|| "set RLIMIT_CORE".into())
}

/// What goes where in the new root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Entry {
    Proc,
    Dev,
    Run,
    Tmp,
    ReadOnly,
    Writable,
    Hidden,
}

/// The mount plan: one entry per path, strongest kind wins, shallow paths first.
pub(crate) fn plan(spec: &HelperSpec) -> Vec<(PathBuf, Entry)> {
    let mut map = std::collections::BTreeMap::<PathBuf, Entry>::new();
    let mut put = |path: &Path, entry: Entry| {
        let slot = map.entry(path.to_path_buf()).or_insert(entry);
        *slot = (*slot).max(entry);
    };
    for p in &spec.read_only {
        put(p, Entry::ReadOnly);
    }
    for p in &spec.writable {
        put(p, Entry::Writable);
    }
    for p in &spec.hidden {
        put(p, Entry::Hidden);
    }
    for (p, e) in [("/proc", Entry::Proc), ("/dev", Entry::Dev), ("/run", Entry::Run)] {
        map.insert(PathBuf::from(p), e);
    }
    map.entry(PathBuf::from("/tmp")).or_insert(Entry::Tmp);
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_by_key(|(p, e)| (p.components().count(), *e));
    entries
}

const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";

fn under(root: &str, path: &Path) -> PathBuf {
    Path::new(root).join(path.strip_prefix("/").unwrap_or(path))
}

fn build_view(spec: &HelperSpec) -> Result<(), Failure> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .stage(|| "make mounts private".into())?;
    // A scratch root whose /oldroot is the host's root: bind sources stay reachable even
    // where the new view puts a tmpfs over them (such as /tmp).
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )
    .stage(|| "mount the scratch root".into())?;
    for dir in ["/tmp/oldroot", "/tmp/newroot"] {
        fs::create_dir(dir).stage(|| format!("create {dir}"))?;
    }
    pivot_root("/tmp", "/tmp/oldroot").stage(|| "pivot into the scratch root".into())?;
    chdir("/").stage(|| "enter the scratch root".into())?;
    mount(
        Some("tmpfs"),
        NEW,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .stage(|| "mount the new root".into())?;
    fs::write("/empty", b"").stage(|| "create the placeholder for hidden files".into())?;
    fs::set_permissions("/empty", fs::Permissions::from_mode(0o000))
        .stage(|| "protect the placeholder".into())?;

    let mut hidden_dirs = Vec::new();
    for (path, entry) in plan(spec) {
        let target = under(NEW, &path);
        match entry {
            Entry::ReadOnly | Entry::Writable => bind(&path, &target, entry == Entry::ReadOnly)?,
            Entry::Hidden => {
                if hide(&target)? {
                    hidden_dirs.push(target);
                }
            }
            Entry::Proc => {
                make_dir(&target)?;
                mount(
                    Some("proc"),
                    &target,
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    none,
                )
                .stage(|| "mount /proc".into())?;
                // Global kernel knobs stay out of reach even where file modes would allow.
                for sub in PROC_READ_ONLY {
                    let path = target.join(sub);
                    if fs::symlink_metadata(&path).is_err() {
                        continue;
                    }
                    mount(Some(&path), &path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
                        .stage(|| format!("bind /proc/{sub}"))?;
                    mount(
                        none,
                        &path,
                        none,
                        MsFlags::MS_BIND
                            | MsFlags::MS_REMOUNT
                            | MsFlags::MS_RDONLY
                            | MsFlags::MS_NOSUID
                            | MsFlags::MS_NODEV
                            | MsFlags::MS_NOEXEC,
                        none,
                    )
                    .stage(|| format!("make /proc/{sub} read-only"))?;
                }
            }
            Entry::Dev => build_dev(&target)?,
            Entry::Tmp => {
                make_dir(&target)?;
                let opts = format!("mode=1777,size={}", spec.tmp_bytes);
                mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                )
                .stage(|| "mount /tmp".into())?;
            }
            Entry::Run => build_run(spec, &target)?,
        }
    }
    // Read-only only now: a writable path below a hidden one needed its mount point created.
    for dir in hidden_dirs {
        mount(
            none,
            &dir,
            none,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=4k"),
        )
        .stage(|| format!("hide {}", dir.display()))?;
    }

    chdir(NEW).stage(|| "enter the new root".into())?;
    pivot_root(".", ".").stage(|| "pivot into the new root".into())?;
    umount2(".", MntFlags::MNT_DETACH).stage(|| "detach the host's root".into())?;
    chdir("/").stage(|| "enter /".into())?;
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        none,
    )
    .stage(|| "make the new root read-only".into())?;
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), Failure> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .stage(|| format!("create {}", path.display()))
}

fn make_file(path: &Path) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        make_dir(parent)?;
    }
    if fs::symlink_metadata(path).is_err() {
        File::create(path).stage(|| format!("create {}", path.display()))?;
    }
    Ok(())
}

/// Binds host `path` at `target`, read-only or not, keeping the flags the kernel locks
/// (nosuid, nodev, noexec, atime) and adding nosuid and nodev.
fn bind(path: &Path, target: &Path, read_only: bool) -> Result<(), Failure> {
    let source = under(OLD, path);
    let meta = match fs::symlink_metadata(&source) {
        Ok(meta) => meta,
        // Missing system directories (no /lib32 here) are simply absent.
        Err(_) if read_only => return Ok(()),
        Err(e) => return Err(e).stage(|| format!("writable path {}", path.display())),
    };
    if meta.file_type().is_symlink() {
        // `/bin -> usr/bin` on merged-/usr systems: keep the link, the target is bound itself.
        let link = fs::read_link(&source).stage(|| format!("read link {}", path.display()))?;
        if let Some(parent) = target.parent() {
            make_dir(parent)?;
        }
        return std::os::unix::fs::symlink(&link, target)
            .stage(|| format!("link {}", path.display()));
    }
    if meta.is_dir() {
        make_dir(target)?;
    } else {
        make_file(target)?;
    }
    let none: Option<&str> = None;
    mount(Some(&source), target, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
        .stage(|| format!("bind {}", path.display()))?;
    let locked = statvfs(target).map(|s| s.flags()).unwrap_or(FsFlags::empty());
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if locked.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(none, target, none, flags, none).stage(|| format!("remount {}", path.display()))
}

/// Covers `target` with an empty directory (returns true: the caller makes it read-only once
/// everything is mounted) or an unreadable empty file.
fn hide(target: &Path) -> Result<bool, Failure> {
    let none: Option<&str> = None;
    let Ok(meta) = fs::symlink_metadata(target) else { return Ok(false) };
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=4k"),
        )
        .stage(|| format!("hide {}", target.display()))?;
        Ok(true)
    } else if meta.is_file() {
        mount(Some("/empty"), target, none, MsFlags::MS_BIND, none)
            .stage(|| format!("hide {}", target.display()))?;
        mount(
            none,
            target,
            none,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV,
            none,
        )
        .stage(|| format!("hide {}", target.display()))?;
        Ok(false)
    } else {
        Ok(false)
    }
}

/// A minimal /dev: the harmless character devices bound from the host, the usual links, and a
/// private /dev/shm.
fn build_dev(target: &Path) -> Result<(), Failure> {
    let none: Option<&str> = None;
    make_dir(target)?;
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .stage(|| "mount /dev".into())?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let source = Path::new(OLD).join("dev").join(node);
        if fs::symlink_metadata(&source).is_err() {
            continue;
        }
        let dest = target.join(node);
        make_file(&dest)?;
        mount(Some(&source), &dest, none, MsFlags::MS_BIND, none)
            .stage(|| format!("bind /dev/{node}"))?;
    }
    for (name, link) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(link, target.join(name))
            .stage(|| format!("link /dev/{name}"))?;
    }
    let shm = target.join("shm");
    make_dir(&shm)?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=64m"),
    )
    .stage(|| "mount /dev/shm".into())?;
    mount(
        none,
        target,
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .stage(|| "make /dev read-only".into())
}

/// /run: the forwarded sockets under /run/ash and secret files under /run/secrets, then
/// read-only.
fn build_run(spec: &HelperSpec, target: &Path) -> Result<(), Failure> {
    let none: Option<&str> = None;
    make_dir(target)?;
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=1m"),
    )
    .stage(|| "mount /run".into())?;
    for (port, socket) in &spec.forwards {
        let dest = under(NEW, &forward_socket(*port));
        make_file(&dest)?;
        mount(Some(&under(OLD, socket)), &dest, none, MsFlags::MS_BIND, none)
            .stage(|| format!("bind the socket behind port {port}"))?;
    }
    if !spec.secret_files.is_empty() {
        let dir = target.join("secrets");
        fs::DirBuilder::new().mode(0o700).create(&dir).stage(|| "create /run/secrets".into())?;
        write_secret_files(spec, &dir)?;
    }
    mount(
        none,
        target,
        none,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=1m"),
    )
    .stage(|| "make /run read-only".into())
}

/// Writes each secret file (mode 0400) into `dir`, then makes `dir` read-and-search only.
fn write_secret_files(spec: &HelperSpec, dir: &Path) -> Result<(), Failure> {
    if spec.secret_files.is_empty() {
        return Ok(());
    }
    // Under a root-run ash, init writes as the namespace's root: hand the files to the user
    // the command runs as.
    let owner = spec.host_id.filter(|_| spec.isolate && getuid().is_root()).map(|host| {
        (Some(nix::unistd::Uid::from_raw(host)), Some(nix::unistd::Gid::from_raw(host)))
    });
    for (name, value) in &spec.secret_files {
        let path = dir.join(name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, value.as_bytes()))
            .stage(|| format!("write secret file {name}"))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&path, uid, gid)
                .stage(|| format!("hand over secret file {name}"))?;
        }
    }
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(dir, uid, gid).stage(|| "hand over /run/secrets".into())?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o500))
        .stage(|| "close /run/secrets".into())
}

/// Sets `IFF_UP` on `lo` in the new network namespace (it starts down).
fn loopback_up() -> io::Result<()> {
    use nix::libc;
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    #[allow(unsafe_code, reason = "SIOCSIFFLAGS has no safe wrapper")]
    // SAFETY: `req` is a zeroed, properly sized ifreq with a NUL-terminated name; the ioctls
    // read and write only within it, and `socket` is an open descriptor for their duration.
    unsafe {
        use std::os::fd::AsRawFd as _;
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_puts_shallow_paths_first_and_the_strongest_kind_wins() {
        let spec = HelperSpec {
            argv: vec![],
            cwd: "/".into(),
            env: Default::default(),
            isolate: true,
            share_net: false,
            read_only: vec!["/usr".into(), "/home/a/ws".into(), "/etc".into()],
            writable: vec!["/home/a/ws".into(), "/tmp/x".into()],
            hidden: vec!["/home".into(), "/etc/shadow".into()],
            tmp_bytes: 1,
            forwards: vec![],
            secret_files: vec![],
            uid: 1000,
            host_id: None,
            landlock_abi: None,
            rlimits: Rlimits::default(),
            zygote: false,
        };
        let plan: Vec<(String, Entry)> =
            plan(&spec).into_iter().map(|(p, e)| (p.display().to_string(), e)).collect();
        let expected: Vec<(String, Entry)> = [
            ("/proc", Entry::Proc),
            ("/dev", Entry::Dev),
            ("/run", Entry::Run),
            ("/tmp", Entry::Tmp),
            ("/etc", Entry::ReadOnly),
            ("/usr", Entry::ReadOnly),
            ("/home", Entry::Hidden),
            ("/tmp/x", Entry::Writable),
            ("/etc/shadow", Entry::Hidden),
            ("/home/a/ws", Entry::Writable),
        ]
        .into_iter()
        .map(|(p, e)| (p.to_owned(), e))
        .collect();
        assert_eq!(plan, expected);
    }
}
