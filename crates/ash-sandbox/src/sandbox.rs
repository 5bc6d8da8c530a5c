//! [`Sandbox`]: one configured backend and the way every request goes through it — validate
//! the policy, resolve paths, start the proxy and the cgroups the policy needs, launch through
//! the backend, supervise, then read what the kernel counted, clean up, and redact.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cgroup::{CgroupRun, Cgroups, Counters, Kind};
use crate::exec::{
    ExecOutput, ExecRequest, ExitStatus, Launch, LimitHit, OutputSink, OutputStream, SandboxError,
    Waited, read_teed,
};
use crate::policy::Limits;
use crate::policy::Service;
use crate::policy::{NetPolicy, SandboxPolicy, SecretDelivery};
use crate::proxy::Connection;
use crate::proxy::Proxy;
use crate::spec::{DEFAULT_PATH, HelperSpec, PROXY_PORT, Report, Rlimits, find_program};

/// Size of the sandbox's private `/tmp` when the policy sets no disk limit.
const DEFAULT_TMP_BYTES: u64 = 512 << 20;

/// How processes are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// No isolation: own process group, limits, output caps, cleared environment.
    Plain,
    /// ash's own: namespaces, a private filesystem view, Landlock, seccomp, rlimits, cgroups.
    Native,
    /// bubblewrap builds the namespaces and view; ash's helper adds Landlock, seccomp and
    /// rlimits inside.
    Bwrap,
    /// A Podman container.
    Podman,
    /// A Docker container.
    Docker,
}

impl BackendKind {
    /// Every backend, strongest first (as `auto` tries them).
    pub const ALL: [Self; 5] = [Self::Native, Self::Bwrap, Self::Podman, Self::Docker, Self::Plain];

    /// Its name in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Native => "native",
            Self::Bwrap => "bwrap",
            Self::Podman => "podman",
            Self::Docker => "docker",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The strongest that works here: native, then bubblewrap, else plain.
    #[default]
    Auto,
    /// Exactly this one (an error if it is not available).
    Exactly(BackendKind),
}

impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "bubblewrap" => Self::Exactly(BackendKind::Bwrap),
            other => Self::Exactly(
                BackendKind::ALL.into_iter().find(|k| k.as_str() == other).ok_or_else(|| {
                    format!("unknown sandbox backend `{other}`; expected auto, native, bwrap, podman, docker or plain")
                })?,
            ),
        })
    }
}

/// How to build a [`Sandbox`]. The CLI fills it from its environment; libraries never read
/// the environment themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The backend.
    pub backend: BackendChoice,
    /// The binary that runs [`helper_main`](crate::helper_main) when given
    /// [`HELPER_ARG`](crate::HELPER_ARG): the `ash` binary itself. Needed by the native and
    /// bubblewrap backends.
    pub helper: Option<PathBuf>,
    /// A private directory for proxy sockets.
    pub runtime_dir: PathBuf,
    /// Directories searched for `bwrap`, `podman` and `docker` (a `PATH` value).
    pub search_path: String,
    /// The image podman and docker run.
    pub image: Option<String>,
    /// The unprivileged host uid and gid sandboxed processes run as when ash runs as root
    /// (the CLI takes root's range from `/etc/subuid`, else [`DEFAULT_HOST_ID`]). Writable
    /// roots must belong to it ([`Sandbox::adopt`]).
    pub host_id: u32,
    /// The highest Landlock ABI to rely on (`Some(0)`: none); `None` uses what the kernel
    /// offers. Set lower to see what an older kernel enforces.
    pub landlock_abi: Option<i32>,
    /// Keep one pre-built native sandbox per filesystem view and fork commands from it
    /// (milliseconds saved per command); off: every command builds its sandbox afresh.
    pub zygotes: bool,
}

/// The host id of sandboxed processes under a root-run ash when no subordinate range is
/// configured: far above the ids of real users and of the usual subordinate ranges.
pub const DEFAULT_HOST_ID: u32 = 2_000_000_000;

impl SandboxConfig {
    /// A configuration for `backend` with no helper, no image, and the usual binary
    /// directories.
    pub fn new(backend: BackendChoice, runtime_dir: PathBuf) -> Self {
        Self {
            backend,
            helper: None,
            runtime_dir,
            search_path: DEFAULT_PATH.into(),
            image: None,
            host_id: DEFAULT_HOST_ID,
            landlock_abi: None,
            zygotes: true,
        }
    }
}

/// A configured backend. Cheap to share (`Arc`); every [`Sandbox::exec`] is independent.
#[derive(Debug)]
pub struct Sandbox {
    pub(crate) kind: BackendKind,
    pub(crate) config: SandboxConfig,
    tools: Tools,
    pub(crate) cgroups: Option<Cgroups>,
    pub(crate) zygotes: crate::zygote::Zygotes,
}

/// Launchers found on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tools {
    pub bwrap: Option<PathBuf>,
    pub podman: Option<PathBuf>,
    pub docker: Option<PathBuf>,
}

impl Tools {
    pub(crate) fn find(search_path: &str) -> Self {
        let find = |name| find_program(search_path, name);
        Self { bwrap: find("bwrap"), podman: find("podman"), docker: find("docker") }
    }
}

impl Sandbox {
    /// The plain backend: no isolation, no helper needed. For trusted commands and tests.
    pub fn plain() -> Self {
        Self {
            kind: BackendKind::Plain,
            // A directory of this user's own below /tmp, never /tmp itself: the runtime
            // directory is made private (0700) when first used.
            config: SandboxConfig::new(
                BackendChoice::Exactly(BackendKind::Plain),
                PathBuf::from(format!("/tmp/ash-runtime-{}", nix::unistd::geteuid().as_raw())),
            ),
            tools: Tools::default(),
            cgroups: None,
            zygotes: crate::zygote::Zygotes::default(),
        }
    }

    /// Resolves the configured backend (probing `auto` by running `true` in each candidate)
    /// and finds the cgroups this process may use.
    pub async fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let tools = Tools::find(&config.search_path);
        let cgroups = tokio::task::spawn_blocking(Cgroups::discover).await.unwrap_or(None);
        let mut sandbox = Self {
            kind: BackendKind::Plain,
            config,
            tools,
            cgroups,
            zygotes: crate::zygote::Zygotes::default(),
        };
        match sandbox.config.backend {
            BackendChoice::Exactly(kind) => {
                sandbox.kind = kind;
                sandbox.available()?;
            }
            BackendChoice::Auto => {
                // `auto` never means "no isolation": without a working isolating backend it
                // refuses, saying why each failed; `plain` must be chosen by name.
                let mut reasons = Vec::new();
                for kind in [BackendKind::Native, BackendKind::Bwrap] {
                    sandbox.kind = kind;
                    match sandbox.probe().await {
                        Ok(_) => return Ok(sandbox),
                        Err(e) => reasons.push(e.to_string()),
                    }
                }
                return Err(SandboxError::NoIsolation { reasons });
            }
        }
        Ok(sandbox)
    }

    /// Whether this process runs as root (sandboxed processes then run as
    /// [`SandboxConfig::host_id`]).
    fn as_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Makes `path` (a directory ash created for sandboxed writes, such as a session
    /// workspace) usable as a writable root: under a root-run ash it is handed, with
    /// everything below it, to [`SandboxConfig::host_id`] and closed to others (0700);
    /// otherwise only closed to others. Symlinks are not followed.
    pub fn adopt(&self, path: &Path) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt as _;
        let io = |what: &str, source| SandboxError::Io {
            what: format!("{what} {}", path.display()),
            source,
        };
        if Self::as_root()
            && let Some(parent) = path.parent()
        {
            // Another user who could rename anything on the way could swap in a link and have
            // root hand over (or expose) a host directory.
            only_root_can_change(parent)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("close", e))?;
        if !Self::as_root() {
            return Ok(());
        }
        let id = Some(self.config.host_id);
        let mut stack = vec![path.to_path_buf()];
        while let Some(next) = stack.pop() {
            std::os::unix::fs::lchown(&next, id, id).map_err(|e| io("hand over", e))?;
            let meta = std::fs::symlink_metadata(&next).map_err(|e| io("read", e))?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&next).map_err(|e| io("list", e))? {
                    stack.push(entry.map_err(|e| io("list", e))?.path());
                }
            }
        }
        Ok(())
    }

    /// The host uid (and gid) that must own what sandboxed processes may change: `Some`
    /// under a root-run ash with an isolating backend, `None` when they run as ash's user.
    pub fn host_owner(&self) -> Option<u32> {
        (Self::as_root() && self.kind != BackendKind::Plain).then_some(self.config.host_id)
    }

    /// Under a root-run ash, every writable root must belong to the sandbox's host id: the
    /// sandboxed process is never root, so it could not write anything else.
    fn check_writable_owner(&self, writable: &[PathBuf]) -> Result<(), SandboxError> {
        use std::os::unix::fs::MetadataExt as _;
        if !Self::as_root() || self.kind == BackendKind::Plain {
            return Ok(());
        }
        for path in writable {
            let owner = std::fs::metadata(path).map(|m| m.uid()).unwrap_or(0);
            if owner != self.config.host_id {
                return Err(SandboxError::Path {
                    what: "writable path",
                    path: path.clone(),
                    source: std::io::Error::other(format!(
                        "ash runs as root, so sandboxed commands run as the unprivileged uid {id}, which does not own it; `chown -R {id}:{id}` it, or run ash as a normal user",
                        id = self.config.host_id
                    )),
                });
            }
        }
        Ok(())
    }

    /// A fresh path for the Unix socket of a [`Service`] named `name` (`a-z 0-9 -`), in this
    /// sandbox's private runtime directory, where socket paths stay short enough to bind.
    /// Nothing is created at the path; an old socket there is removed.
    pub fn service_socket(&self, name: &str) -> Result<PathBuf, SandboxError> {
        static SERVICES: AtomicU64 = AtomicU64::new(0);
        private_dir(&self.config.runtime_dir)?;
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .take(16)
            .collect();
        let n = SERVICES.fetch_add(1, Ordering::Relaxed);
        let path = self.config.runtime_dir.join(format!("{}-{n}.{clean}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Ok(path)
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.kind
    }

    /// The cgroup controllers in use (`memory (v1)`, …), empty when limits fall back to
    /// rlimits.
    pub fn cgroups(&self) -> Vec<String> {
        self.cgroups.as_ref().map(Cgroups::describe).unwrap_or_default()
    }

    /// Whether the backend's launcher is present (not whether it works: see [`Self::probe`]).
    fn available(&self) -> Result<(), SandboxError> {
        let missing =
            |why: &str| Err(SandboxError::Unavailable { backend: self.kind, why: why.to_owned() });
        match self.kind {
            BackendKind::Plain => Ok(()),
            BackendKind::Native if self.config.helper.is_none() => {
                missing("no helper binary was configured")
            }
            BackendKind::Native => Ok(()),
            BackendKind::Bwrap if self.tools.bwrap.is_none() => {
                missing("`bwrap` is not installed (apt install bubblewrap)")
            }
            BackendKind::Bwrap if self.config.helper.is_none() => {
                missing("no helper binary was configured")
            }
            BackendKind::Bwrap if Self::as_root() => missing(
                "ash runs as root, and bubblewrap would map the sandbox to host root; use the native backend (or run ash as a normal user)",
            ),
            BackendKind::Bwrap => Ok(()),
            BackendKind::Podman if self.tools.podman.is_none() => {
                missing("`podman` is not installed")
            }
            BackendKind::Docker if self.tools.docker.is_none() => {
                missing("`docker` is not installed")
            }
            BackendKind::Podman | BackendKind::Docker if self.config.image.is_none() => {
                missing("no container image was configured (set `image`)")
            }
            BackendKind::Podman | BackendKind::Docker => Ok(()),
        }
    }

    /// Runs `true` under a strict policy: whether this backend works here, and how long it took.
    pub async fn probe(&self) -> Result<Duration, SandboxError> {
        self.available()?;
        let mut policy = SandboxPolicy::default();
        policy.limits.wall_time = Duration::from_secs(20);
        let mut request = ExecRequest::new(vec!["true".into()], PathBuf::from("/"), policy);
        request.env.insert("PATH".into(), "/usr/bin:/bin".into());
        let out = self.exec(&request, &CancellationToken::new()).await?;
        if out.status.success() {
            Ok(out.elapsed)
        } else {
            Err(SandboxError::Unavailable {
                backend: self.kind,
                why: format!(
                    "`true` exited with {}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }

    /// Runs `request` to its end, a limit, or `cancel`. Everything it started is gone when
    /// this returns.
    pub async fn exec(
        &self,
        request: &ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, SandboxError> {
        self.exec_streaming(request, cancel, None).await
    }

    /// [`Sandbox::exec`], also handing the output to `sink` as it is read. A policy with
    /// secrets is refused a sink: they are redacted only from the captured copy.
    pub async fn exec_streaming(
        &self,
        request: &ExecRequest,
        cancel: &CancellationToken,
        sink: Option<&OutputSink>,
    ) -> Result<ExecOutput, SandboxError> {
        if sink.is_some() && !request.policy.secrets.is_empty() {
            return Err(SandboxError::Unsupported {
                backend: self.kind,
                what: "stream the output of a command that holds secrets (they are redacted only from the captured output)",
            });
        }
        let prepared = self.prepare(request).await?;
        let stop = cancel.child_token();
        let limits = prepared.run.limits;
        // A native run without an allow-list proxy or secret files, whose leftovers its cgroups
        // can take, goes to the zygote of its view: no new helper, namespaces or mounts.
        let zygote = self.config.zygotes
            && self.kind == BackendKind::Native
            && prepared.spec.forwards.is_empty()
            && prepared.spec.secret_files.is_empty()
            && prepared.run.cgroup.is_some();
        if zygote && let Ok(helper) = self.helper() {
            match self.zygotes.get(helper, &prepared.spec).await {
                Ok(z) => {
                    let Prepared { spec, launch, mut run } = prepared;
                    // The cgroup counts the run's processes (and tells the limit was hit); the
                    // per-user count stays a backstop just above it.
                    let mut rlimits = spec.rlimits;
                    if self.cgroups.as_ref().is_some_and(|c| c.has(Kind::Pids)) {
                        rlimits.nproc = rlimits.nproc.map(|n| n.saturating_add(2));
                    }
                    let disk_hit = AtomicBool::new(false);
                    let done = CancellationToken::new();
                    let supervise = async {
                        let out = z
                            .run(
                                spec.argv.clone(),
                                spec.cwd.clone(),
                                spec.env.clone(),
                                rlimits,
                                &request.stdin,
                                &launch.cgroup_procs,
                                limits.wall_time,
                                limits.output_bytes,
                                &stop,
                                sink,
                            )
                            .await;
                        if out.is_err() {
                            self.zygotes.retire(&spec);
                        }
                        done.cancel();
                        out
                    };
                    let watch = run.watch_disk(&done, &disk_hit, &stop);
                    let (supervised, ()) = tokio::join!(supervise, watch);
                    let supervised = match supervised {
                        Ok(supervised) => supervised,
                        Err(e) => {
                            run.release().await;
                            return Err(e);
                        }
                    };
                    let ended =
                        run.conclude(&supervised.waited, disk_hit.load(Ordering::Relaxed)).await?;
                    return Ok(self.output(
                        ended,
                        supervised.stdout,
                        supervised.stderr,
                        &request.policy.secrets,
                    ));
                }
                Err(error) => tracing::debug!(%error, "no zygote; starting a helper"),
            }
        }
        let mut process = self.start(prepared, &stop).await?;
        let exited = process.exited.clone();
        let feed = crate::exec::feed(process.stdin.take(), &request.stdin, &exited);
        let (stdout, stderr) = (process.stdout.take(), process.stderr.take());
        let ((), stdout, stderr, ended) = tokio::join!(
            feed,
            read_teed(
                stdout,
                limits.output_bytes,
                &exited,
                sink.map(|s| (s, OutputStream::Stdout))
            ),
            read_teed(
                stderr,
                limits.output_bytes,
                &exited,
                sink.map(|s| (s, OutputStream::Stderr))
            ),
            process.finish(),
        );
        Ok(self.output(ended?, stdout, stderr, &request.policy.secrets))
    }

    /// The caller's view of a finished run: its output capped and with secrets redacted.
    pub(crate) fn output(
        &self,
        ended: Ended,
        (mut stdout, stdout_truncated): (Vec<u8>, bool),
        (mut stderr, stderr_truncated): (Vec<u8>, bool),
        secrets: &[crate::policy::Secret],
    ) -> ExecOutput {
        crate::redact::redact(&mut stdout, secrets, stdout_truncated);
        crate::redact::redact(&mut stderr, secrets, stderr_truncated);
        ExecOutput {
            status: ended.status,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            limit: ended.limit,
            elapsed: ended.elapsed,
            backend: self.kind,
            connections: ended.connections,
            connections_omitted: ended.connections_omitted,
            usage: ended.usage,
        }
    }

    /// Starts `request` and hands back its pipes: a long-lived process (a server on stdio)
    /// under the same policy, limits and cleanup as [`Sandbox::exec`]. `request.stdin` is
    /// ignored; write to [`Process::stdin`]. The process ends at its wall-time limit, on
    /// `cancel`, on [`Process::kill`], or when the [`Process`] is dropped; what it started is
    /// gone and its proxy and cgroups released by the time [`Process::wait`] returns. Secrets
    /// are not redacted from a stream: a process that prints one hands it to its reader.
    pub async fn spawn(
        &self,
        request: &ExecRequest,
        cancel: &CancellationToken,
    ) -> Result<Process, SandboxError> {
        let prepared = self.prepare(request).await?;
        self.start(prepared, cancel).await
    }

    /// Everything a run needs before its process starts: checks, paths, proxy, cgroups and
    /// the backend's launch.
    pub(crate) async fn prepare(&self, request: &ExecRequest) -> Result<Prepared, SandboxError> {
        if request.argv.is_empty() {
            return Err(SandboxError::EmptyArgv);
        }
        let policy = &request.policy;
        policy.validate()?;
        let view = View::resolve(request)?;
        self.check_writable_owner(&view.writable)?;
        if matches!(policy.net, NetPolicy::Full)
            && matches!(self.kind, BackendKind::Native | BackendKind::Bwrap)
            && self.landlock_abi().is_none_or(|abi| abi < 6)
        {
            return Err(SandboxError::Unsupported {
                backend: self.kind,
                what: "give `full` network here: on this kernel (Landlock ABI below 6) the host's abstract Unix sockets would be reachable; use `none` or an allow list",
            });
        }
        // Unique in this process, across every `Sandbox` in it (names are per process).
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let name = format!("ash-{}-{run}", std::process::id());

        let mut env = request.env.clone();
        for secret in policy.secrets.iter().filter(|s| s.delivery == SecretDelivery::Env) {
            env.insert(secret.name.clone(), secret.value.clone());
        }
        if !policy.services.is_empty()
            && !matches!(self.kind, BackendKind::Native | BackendKind::Bwrap)
        {
            return Err(SandboxError::Unsupported {
                backend: self.kind,
                what: "give a process services on its own loopback (use the native or bwrap backend)",
            });
        }
        let proxy = match (&policy.net, self.kind) {
            (
                NetPolicy::Allow(_),
                BackendKind::Plain | BackendKind::Podman | BackendKind::Docker,
            ) => {
                return Err(SandboxError::Unsupported {
                    backend: self.kind,
                    what: "enforce a network allow list (use the native or bwrap backend)",
                });
            }
            (NetPolicy::Allow(rules), _) => {
                private_dir(&self.config.runtime_dir)?;
                let path = self.config.runtime_dir.join(format!("{name}.proxy.sock"));
                let _ = std::fs::remove_file(&path);
                let proxy = Proxy::start(path, rules.clone()).map_err(|source| {
                    SandboxError::Io { what: "start the network proxy".into(), source }
                })?;
                let url = format!("http://127.0.0.1:{PROXY_PORT}");
                for key in [
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "http_proxy",
                    "https_proxy",
                    "ALL_PROXY",
                    "all_proxy",
                ] {
                    env.insert(key.into(), url.clone());
                }
                env.remove("NO_PROXY");
                env.remove("no_proxy");
                // The sandbox's own loopback holds only ash's relays (its services): clients
                // reach them directly, not through the proxy, which refuses loopback.
                if !policy.services.is_empty() {
                    env.insert("NO_PROXY".into(), "127.0.0.1,localhost".into());
                    env.insert("no_proxy".into(), "127.0.0.1,localhost".into());
                }
                Some(proxy)
            }
            _ => None,
        };
        let limits = &policy.limits;
        let cgroup = match &self.cgroups {
            Some(cgroups)
                if self.kind != BackendKind::Podman && self.kind != BackendKind::Docker =>
            {
                cgroups.create(&name, limits).map_err(|source| SandboxError::Io {
                    what: "create the sandbox's cgroups".into(),
                    source,
                })?
            }
            _ => None,
        };
        let memory_by_cgroup = self.cgroups.as_ref().is_some_and(|c| c.has(Kind::Memory));
        let rlimits = Rlimits {
            cpu_secs: limits.cpu_time.map(|d| d.as_secs().max(1)),
            address_space: if memory_by_cgroup { None } else { limits.memory_bytes },
            // Counted per user namespace, so only where the sandbox has its own.
            nproc: if matches!(self.kind, BackendKind::Native | BackendKind::Bwrap) {
                limits.pids
            } else {
                None
            },
            nofile: limits.open_files,
            fsize: limits.disk_bytes,
        };
        let spec = HelperSpec {
            argv: request.argv.clone(),
            cwd: view.cwd.clone(),
            env,
            isolate: true,
            share_net: matches!(policy.net, NetPolicy::Full),
            read_only: view.read_only.clone(),
            writable: view.writable.clone(),
            hidden: view.hidden.clone(),
            tmp_bytes: limits.disk_bytes.unwrap_or(DEFAULT_TMP_BYTES),
            forwards: proxy
                .as_ref()
                .map(|p| (PROXY_PORT, p.path().to_path_buf()))
                .into_iter()
                .chain(
                    policy.services.iter().map(|Service { port, socket }| (*port, socket.clone())),
                )
                .collect(),
            secret_files: policy
                .secrets
                .iter()
                .filter(|s| s.delivery == SecretDelivery::File)
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            uid: policy.user.id(),
            host_id: (Self::as_root() && self.kind == BackendKind::Native)
                .then_some(self.config.host_id),
            landlock_abi: self.config.landlock_abi,
            rlimits,
            zygote: false,
        };
        let disk_before = match limits.disk_bytes {
            Some(_) => Some(disk_usage(view.writable.clone()).await),
            None => None,
        };
        let mut launch = match self.kind {
            BackendKind::Plain => crate::backends::plain(&spec, &[]),
            BackendKind::Native => crate::backends::native(self.helper()?, &spec, &[]),
            BackendKind::Bwrap => crate::backends::bwrap(
                self.tool(self.tools.bwrap.as_ref())?,
                self.helper()?,
                &spec,
                &[],
            ),
            BackendKind::Podman | BackendKind::Docker => {
                let runtime = self.tool(self.container_runtime())?;
                crate::backends::container(
                    self.kind,
                    runtime,
                    self.config.image.as_deref().unwrap_or_default(),
                    &name,
                    &spec,
                    limits,
                    &[],
                )
            }
        };
        if let Some(cgroup) = &cgroup {
            launch.cgroup_procs = cgroup.procs_fds();
        }
        Ok(Prepared {
            spec,
            launch,
            run: Run {
                name,
                container: self.container_runtime().cloned(),
                proxy,
                cgroup,
                disk_before,
                writable: view.writable,
                limits: *limits,
            },
        })
    }

    /// Spawns a prepared run and writes the backend's stdin prefix (the helper's spec); a
    /// task owned by the returned [`Process`] waits for it and cleans up.
    async fn start(
        &self,
        prepared: Prepared,
        cancel: &CancellationToken,
    ) -> Result<Process, SandboxError> {
        let Prepared { mut launch, mut run, spec: _ } = prepared;
        let started = match crate::exec::start(&mut launch) {
            Ok(started) => started,
            Err(e) => {
                run.release().await;
                return Err(e);
            }
        };
        let crate::exec::Started { mut stdin, stdout, stderr, waiter } = started;
        let group = waiter.group();
        let stop = cancel.child_token();
        let exited = CancellationToken::new();
        let prefix = std::mem::take(&mut launch.stdin);
        let task = {
            let stop = stop.clone();
            let exited = exited.clone();
            tokio::spawn(async move {
                let disk_hit = AtomicBool::new(false);
                let done = CancellationToken::new();
                let wait = async {
                    let waited = waiter.wait(run.limits.wall_time, &stop, &exited).await;
                    done.cancel();
                    waited
                };
                let watch = run.watch_disk(&done, &disk_hit, &stop);
                let (waited, ()) = tokio::join!(wait, watch);
                match waited {
                    Ok(waited) => run.conclude(&waited, disk_hit.load(Ordering::Relaxed)).await,
                    Err(e) => {
                        run.release().await;
                        Err(e)
                    }
                }
            })
        };
        let mut process =
            Process { stdin: None, stdout, stderr, kill: stop, exited, group, task: Some(task) };
        if !prefix.is_empty()
            && let Some(pipe) = stdin.as_mut()
        {
            use tokio::io::AsyncWriteExt as _;
            // The helper reads its spec at once; one that does not is stuck, not slow. One
            // that closed its stdin has exited or is exiting: its end (a setup report, an
            // exit status) is what the caller learns from `wait`.
            let written = tokio::select! {
                written = tokio::time::timeout(PREFIX_TIMEOUT, pipe.write_all(&prefix)) => written,
                () = process.exited.cancelled() => Ok(Ok(())),
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => stdin = None,
                Err(_) => {
                    process.kill();
                    drop(stdin);
                    return Err(match process.wait().await {
                        Err(e) => e,
                        Ok(_) => SandboxError::Io {
                            what: "hand the sandbox its spec".into(),
                            source: std::io::Error::other("the helper did not read it"),
                        },
                    });
                }
            }
        }
        process.stdin = stdin;
        Ok(process)
    }

    /// The Landlock ABI sandboxed commands get: the kernel's, capped by
    /// [`SandboxConfig::landlock_abi`]; `None` when there is none.
    pub fn landlock_abi(&self) -> Option<i32> {
        let kernel = crate::confine::landlock_abi();
        match self.config.landlock_abi {
            Some(cap) if cap <= 0 => None,
            Some(cap) => kernel.map(|k| k.min(cap)),
            None => kernel,
        }
    }

    /// The `podman` or `docker` binary, for those backends.
    fn container_runtime(&self) -> Option<&PathBuf> {
        match self.kind {
            BackendKind::Podman => self.tools.podman.as_ref(),
            BackendKind::Docker => self.tools.docker.as_ref(),
            BackendKind::Plain | BackendKind::Native | BackendKind::Bwrap => None,
        }
    }

    pub(crate) fn helper(&self) -> Result<&Path, SandboxError> {
        self.config.helper.as_deref().ok_or(SandboxError::Unavailable {
            backend: self.kind,
            why: "no helper binary was configured".into(),
        })
    }

    fn tool<'a>(&self, tool: Option<&'a PathBuf>) -> Result<&'a Path, SandboxError> {
        tool.map(PathBuf::as_path).ok_or(SandboxError::Unavailable {
            backend: self.kind,
            why: "its launcher is not installed".into(),
        })
    }
}

/// How long a helper may take to read its spec.
const PREFIX_TIMEOUT: Duration = Duration::from_secs(30);

/// A run ready to start: the helper spec, the backend's launch and what the run holds.
pub(crate) struct Prepared {
    pub(crate) spec: HelperSpec,
    launch: Launch,
    pub(crate) run: Run,
}

/// What one run holds on the host until it is over: its proxy, cgroups, container name and
/// the disk baseline.
pub(crate) struct Run {
    name: String,
    container: Option<PathBuf>,
    proxy: Option<Proxy>,
    pub(crate) cgroup: Option<CgroupRun>,
    disk_before: Option<u64>,
    writable: Vec<PathBuf>,
    limits: Limits,
}

/// How a run ended and what the proxy decided.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) status: ExitStatus,
    pub(crate) limit: Option<LimitHit>,
    pub(crate) elapsed: Duration,
    pub(crate) connections: Vec<Connection>,
    pub(crate) connections_omitted: u64,
    pub(crate) usage: Option<crate::exec::CommandUsage>,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Run {
    /// Measures the writable roots until `done` and stops the run (`stop`) once they grew past
    /// the disk limit, so the limit holds while the command runs.
    async fn watch_disk(
        &self,
        done: &CancellationToken,
        hit: &AtomicBool,
        stop: &CancellationToken,
    ) {
        let (Some(before), Some(max)) = (self.disk_before, self.limits.disk_bytes) else { return };
        if watch_disk(self.writable.clone(), before, max, done).await {
            hit.store(true, Ordering::Relaxed);
            stop.cancel();
        }
    }

    /// Releases what the run held: the container, the cgroups (their counters) and the proxy
    /// (its decisions).
    pub(crate) async fn release(&mut self) -> (Counters, (Vec<Connection>, u64)) {
        if let Some(runtime) = &self.container {
            crate::backends::remove_container(runtime, &self.name).await;
        }
        let counters = match self.cgroup.take() {
            Some(cgroup) => cgroup.finish().await,
            None => Counters::default(),
        };
        let decisions = match self.proxy.take() {
            Some(proxy) => proxy.stop().await,
            None => (Vec::new(), 0),
        };
        (counters, decisions)
    }

    /// Releases what the run held and reads how it ended.
    async fn conclude(mut self, waited: &Waited, disk_hit: bool) -> Result<Ended, SandboxError> {
        let (counters, (connections, connections_omitted)) = self.release().await;
        let mut status = waited.status;
        if let Some(failure) = Report::failure(&waited.reports) {
            return Err(failure);
        }
        for report in &waited.reports {
            match report {
                Report::Exit { code, .. } => status = ExitStatus::Exited(*code),
                Report::Signal { signal, .. } => status = ExitStatus::Signaled(*signal),
                Report::Setup { .. } | Report::Exec { .. } | Report::Ready => {}
            }
        }
        let limits = &self.limits;
        let grew = disk_hit
            || match (self.disk_before, limits.disk_bytes) {
                (Some(before), Some(max)) => {
                    disk_usage(self.writable.clone()).await.saturating_sub(before) >= max
                }
                _ => false,
            };
        let limit = if disk_hit { Some(LimitHit::Disk) } else { waited.limit };
        let limit = limit.or_else(|| {
            let sig = match status {
                ExitStatus::Signaled(sig) => Some(sig),
                ExitStatus::Exited(_) => None,
            };
            match sig {
                Some(s) if s == nix::libc::SIGXCPU => Some(LimitHit::CpuTime),
                Some(s) if s == nix::libc::SIGXFSZ => Some(LimitHit::Disk),
                Some(s) if s == nix::libc::SIGKILL && counters.oom_kills > 0 => {
                    Some(LimitHit::Memory)
                }
                Some(s)
                    if s == nix::libc::SIGKILL
                        && limits.cpu_time.is_some_and(|c| waited.elapsed >= c) =>
                {
                    Some(LimitHit::CpuTime)
                }
                _ if counters.oom_kills > 0 && !status.success() => Some(LimitHit::Memory),
                _ if counters.pids_max_hits > 0 && !status.success() => Some(LimitHit::Pids),
                _ if grew => Some(LimitHit::Disk),
                _ => None,
            }
        });
        let usage =
            waited.reports.iter().find_map(Report::usage).map(crate::spec::RunUsage::public);
        Ok(Ended {
            status,
            limit,
            elapsed: waited.elapsed,
            connections,
            connections_omitted,
            usage,
        })
    }
}

/// A process started by [`Sandbox::spawn`]: its pipes, and the handle to wait for it or kill
/// it. Dropping it kills the process; the run's cleanup then finishes in the background.
#[derive(Debug)]
pub struct Process {
    /// The process's stdin; dropping it closes the pipe.
    pub stdin: Option<tokio::process::ChildStdin>,
    /// The process's stdout.
    pub stdout: Option<tokio::process::ChildStdout>,
    /// The process's stderr.
    pub stderr: Option<tokio::process::ChildStderr>,
    kill: CancellationToken,
    exited: CancellationToken,
    group: Option<nix::unistd::Pid>,
    task: Option<tokio::task::JoinHandle<Result<Ended, SandboxError>>>,
}

/// How a spawned process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEnd {
    /// Its exit status.
    pub status: ExitStatus,
    /// The limit that ended it, if one did ([`LimitHit::Cancelled`] after [`Process::kill`]).
    pub limit: Option<LimitHit>,
    /// Time from spawn to exit.
    pub elapsed: Duration,
    /// Every connection the proxy allowed or denied, in order (`allow` policies only).
    pub connections: Vec<Connection>,
}

impl Process {
    /// Kills the process and everything it started; [`Process::wait`] then returns.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Whether the process has exited (its pipes may still hold output).
    pub fn has_exited(&self) -> bool {
        self.exited.is_cancelled()
    }

    /// Resolves once the process has exited.
    pub async fn exited(&self) {
        self.exited.cancelled().await;
    }

    /// Waits for the process to end and its run to be cleaned up.
    pub async fn wait(mut self) -> Result<ProcessEnd, SandboxError> {
        let ended = self.finish().await?;
        Ok(ProcessEnd {
            status: ended.status,
            limit: ended.limit,
            elapsed: ended.elapsed,
            connections: ended.connections,
        })
    }

    async fn finish(&mut self) -> Result<Ended, SandboxError> {
        let Some(task) = self.task.take() else {
            return Err(SandboxError::Io {
                what: "wait for the process".into(),
                source: std::io::Error::other("it was already waited for"),
            });
        };
        match task.await {
            Ok(ended) => ended,
            Err(join) => Err(SandboxError::Io {
                what: "supervise the process".into(),
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.kill.cancel();
            // At once, not when the supervising task next runs.
            crate::exec::kill_group(self.group);
        }
    }
}

/// The request's paths, made canonical so the view and the rules agree with the kernel.
struct View {
    cwd: PathBuf,
    read_only: Vec<PathBuf>,
    writable: Vec<PathBuf>,
    hidden: Vec<PathBuf>,
}

impl View {
    fn resolve(request: &ExecRequest) -> Result<Self, SandboxError> {
        let fs = &request.policy.fs;
        let canonical = |what: &'static str, path: &Path| {
            std::fs::canonicalize(path).map_err(|source| SandboxError::Path {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let cwd = canonical("working directory", &request.cwd)?;
        let writable = fs
            .writable
            .iter()
            .map(|p| canonical("writable path", p))
            .collect::<Result<Vec<_>, _>>()?;
        // Missing read-only paths are skipped (not every system has /lib32); symlinked ones
        // (merged /usr) are kept as written so the view recreates the link.
        let read_only = fs.read_only.clone();
        let mut hidden: Vec<PathBuf> = Vec::new();
        for path in &fs.hidden {
            hidden.push(path.clone());
            if let Ok(real) = std::fs::canonicalize(path)
                && &real != path
            {
                hidden.push(real);
            }
        }
        let visible = |p: &Path| {
            p == Path::new("/")
                || p.starts_with("/tmp")
                || writable
                    .iter()
                    .chain(read_only.iter())
                    .any(|root| p.starts_with(root) || p.starts_with(canonicalish(root)))
        };
        if !visible(&cwd) {
            return Err(SandboxError::Path {
                what: "working directory",
                path: cwd,
                source: std::io::Error::other(
                    "it is not inside the sandbox's view; add it to `writable` or `read_only`",
                ),
            });
        }
        Ok(Self { cwd, read_only, writable, hidden })
    }
}

fn canonicalish(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Creates (if needed) a directory for ash's own sockets and checks that only this user can
/// reach it: a real directory, not a link, owned by us, closed to others.
fn private_dir(dir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let io =
        |what: &str, source| SandboxError::Io { what: format!("{what} {}", dir.display()), source };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("create", e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io("inspect", e))?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || !ours {
        return Err(io(
            "use",
            std::io::Error::other(
                "it must be a directory (not a link) owned by this user; remove it or fix its owner",
            ),
        ));
    }
    // A shared directory (sticky, like /tmp) is never taken over: closing it would lock every
    // other user out of it.
    if meta.mode() & 0o1000 != 0 {
        return Err(io(
            "use",
            std::io::Error::other(
                "it is a shared (sticky) directory; give the sandbox a runtime directory of its own",
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("close", e))?;
    }
    Ok(())
}

/// For a root-run ash: `dir` and every directory above it can be changed by root alone (each
/// owned by root and not writable by others, or sticky with a root-owned entry on the path).
fn only_root_can_change(dir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::MetadataExt as _;
    let mut child_is_root: Option<bool> = None;
    let mut current = Some(dir);
    while let Some(path) = current {
        let meta = std::fs::symlink_metadata(path).map_err(|source| SandboxError::Io {
            what: format!("inspect {}", path.display()),
            source,
        })?;
        let open_to_others = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        let safe = meta.uid() == 0
            && (!open_to_others || (meta.is_dir() && sticky && child_is_root != Some(false)));
        if !safe {
            return Err(SandboxError::Path {
                what: "directory",
                path: path.to_path_buf(),
                source: std::io::Error::other(
                    "another user can change it; as root, ash hands only directories below root-owned, closed ones to the sandbox user — fix its owner and mode (`chown root:`, `chmod go-w`)",
                ),
            });
        }
        child_is_root = Some(meta.uid() == 0);
        current = path.parent();
    }
    Ok(())
}

/// The first pause between two measurements of the writable roots while a command runs.
const DISK_POLL: Duration = Duration::from_millis(200);

/// What each directory entry counts toward the disk limit besides its blocks (an inode and
/// its name), so millions of empty files are not free.
const ENTRY_BYTES: u64 = 256;
/// Directories deeper than this below a writable root are not entered.
const MAX_WALK_DEPTH: usize = 256;

/// Measures `roots` until `done`, pausing at least four times as long as a measurement takes
/// (so a tree of many files costs a bounded share of a core); `true` once they grew by `max`
/// or more over `before`.
async fn watch_disk(roots: Vec<PathBuf>, before: u64, max: u64, done: &CancellationToken) -> bool {
    let mut pause = DISK_POLL;
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = done.cancelled() => return false,
        }
        let started = std::time::Instant::now();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let measuring = disk_usage_until(roots.clone(), std::sync::Arc::clone(&stop));
        let now = tokio::select! {
            now = measuring => now,
            () = done.cancelled() => {
                // The walk ends at its next entries; the run's result does not wait for it.
                stop.store(true, Ordering::Relaxed);
                return false;
            }
        };
        if now.saturating_sub(before) >= max {
            return true;
        }
        pause = DISK_POLL.max(started.elapsed() * 4);
    }
}

/// Bytes the writable roots take: blocks allocated (so sparse files count what they use) plus
/// [`ENTRY_BYTES`] per entry.
async fn disk_usage(roots: Vec<PathBuf>) -> u64 {
    disk_usage_until(roots, std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))).await
}

async fn disk_usage_until(
    roots: Vec<PathBuf>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    tokio::task::spawn_blocking(move || roots.iter().map(|root| walk_usage(root, &stop)).sum())
        .await
        .unwrap_or(0)
}

/// Walks one root through directory descriptors, never following a link and never leaving its
/// filesystem, so a command that swaps a directory for a link cannot point the walk at the
/// host; depth first, so at most [`MAX_WALK_DEPTH`] directories are open at once; stops early
/// (with what it counted) once `stop` is set.
fn walk_usage(root: &Path, stop: &std::sync::atomic::AtomicBool) -> u64 {
    use nix::dir::Dir;
    use nix::sys::stat::{Mode, fstat};
    let Ok(top) = Dir::open(root, WALK_FLAGS, Mode::empty()) else { return 0 };
    let Ok(device) = fstat(&top).map(|s| s.st_dev) else { return 0 };
    let mut walk = Walk { device, stop, seen: 0, total: 0 };
    walk.dir(top, 0);
    walk.total
}

const WALK_FLAGS: nix::fcntl::OFlag = nix::fcntl::OFlag::O_RDONLY
    .union(nix::fcntl::OFlag::O_DIRECTORY)
    .union(nix::fcntl::OFlag::O_NOFOLLOW)
    .union(nix::fcntl::OFlag::O_CLOEXEC);

struct Walk<'a> {
    device: u64,
    stop: &'a std::sync::atomic::AtomicBool,
    seen: u64,
    total: u64,
}

impl Walk<'_> {
    fn dir(&mut self, mut dir: nix::dir::Dir, depth: usize) {
        use nix::fcntl::AtFlags;
        use nix::sys::stat::{Mode, SFlag, fstatat};
        let names: Vec<std::ffi::CString> = dir
            .iter()
            .flatten()
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.to_bytes() != b"." && n.to_bytes() != b"..")
            .collect();
        for name in names {
            self.seen += 1;
            if self.seen.is_multiple_of(1024) && self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.total = self.total.saturating_add(ENTRY_BYTES);
            let Ok(stat) = fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            let blocks = u64::try_from(stat.st_blocks).unwrap_or(0);
            self.total = self.total.saturating_add(blocks.saturating_mul(512));
            let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR
                && stat.st_dev == self.device
                && depth < MAX_WALK_DEPTH
                && let Ok(child) =
                    nix::dir::Dir::openat(&dir, name.as_c_str(), WALK_FLAGS, Mode::empty())
            {
                self.dir(child, depth + 1);
            }
        }
    }
}
