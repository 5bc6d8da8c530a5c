//! Named sandboxes (`sandboxes/*.toml`): their templates, each session's own copy, and the
//! environments a run's worker keeps open while it works.
//!
//! Owns the layout under [`crate::EngineConfig::sandboxes_dir`]:
//! - `templates/<tool>-<key>/`: what `bootstrap` left, built once per template key (the
//!   sandbox's backend, image, network, limits and bootstrap commands) in a staging directory
//!   and renamed into place, so a crash never leaves half a template; an older key's template
//!   is removed once the new one is in place;
//! - `sessions/<runId>/<tool>/`: the session's copy of the template, whose files persist
//!   across calls, restarts and takeovers of the run;
//! - `sessions/<runId>/<tool>.ready`: written once `on_session` succeeded; until then the next
//!   call runs `on_session` again.
//!
//! A worker opens a sandbox at its first call and keeps it (one view, one cgroup on the native
//! backend) until the run parks or ends: processes started in the background live that long,
//! files for good. Every command's start, output and end reach the run's stream as
//! `sandbox.*` events through the call's event channel. Never spawns except through
//! `ash-sandbox`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ash_protocol::{OutputStreamName, SandboxPhase};
use ash_sandbox::{
    BackendChoice, BackendKind, ExecOutput, Limits, OutputChunk, OutputSink, OutputStream, Sandbox,
    SandboxConfig, SandboxPolicy, SandboxSession, SessionCommand,
};
use ash_spec::{Package, SandboxBackend};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use crate::tools::{PrivateDirs, SandboxNote, ToolEvent, call_policy};

/// Longest a stretch of output waits before it is sent as one `sandbox.output` event.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Largest `sandbox.output` event, in bytes of text.
const FLUSH_BYTES: usize = 16 * 1024;
/// Output of one command sent as events; the rest is only in the call's result.
const STREAMED_BYTES: usize = 256 * 1024;
/// Characters of stderr quoted in an error.
const QUOTE_CHARS: usize = 600;

/// The agent's named sandboxes, engine-wide.
pub(crate) struct Sandboxes {
    named: BTreeMap<String, Named>,
    shared: Shared,
    /// Where this agent's templates live: `templates/` for the root, `templates/@a@b/` for
    /// subagent `a/b` (`@` is in no slug, so no template name collides).
    templates: PathBuf,
}

/// What every sandbox of an engine shares.
#[derive(Clone)]
pub(crate) struct Shared {
    /// `<state>/sandboxes`.
    pub(crate) dir: PathBuf,
    /// The engine's own backend (`auto`).
    pub(crate) sandbox: Arc<Sandbox>,
    /// How to build the other backends a sandbox names; `None`: only `auto` and `local`.
    pub(crate) config: Option<SandboxConfig>,
    /// The tool policy: its hidden paths hold for sandboxes too.
    pub(crate) policy: SandboxPolicy,
    /// The environment commands start from.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) project_dir: PathBuf,
    pub(crate) workspaces_dir: PathBuf,
    pub(crate) connections_dir: PathBuf,
}

/// One `sandboxes/<name>.toml`.
struct Named {
    spec: ash_spec::Sandbox,
    /// Directory name: the tool name, `[a-z0-9_]`.
    slug: String,
    /// The template key's hex, shortened.
    key: String,
    backend: tokio::sync::OnceCell<Result<Arc<Sandbox>, String>>,
    /// One template build at a time in this process (a rename settles races between processes).
    building: tokio::sync::Mutex<()>,
}

impl Sandboxes {
    pub(crate) fn new(package: &Package, agent: &str, shared: Shared) -> Self {
        let mut templates = shared.dir.join("templates");
        if !agent.is_empty() {
            templates.push(format!("@{}", agent.replace('/', "@")));
        }
        let named = package
            .sandboxes
            .iter()
            .map(|spec| {
                let key = spec.template_key();
                let key = key.trim_start_matches("sha256:").chars().take(16).collect();
                let named = Named {
                    slug: spec.tool_name(),
                    spec: spec.clone(),
                    key,
                    backend: tokio::sync::OnceCell::new(),
                    building: tokio::sync::Mutex::new(()),
                };
                (spec.name.clone(), named)
            })
            .collect();
        Self { named, shared, templates }
    }

    /// Whether the agent has any.
    pub(crate) fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    /// The backend sandbox `named` runs on, built at first use.
    async fn backend(&self, named: &Named) -> Result<Arc<Sandbox>, String> {
        named
            .backend
            .get_or_init(|| async {
                let kind = match named.spec.backend {
                    SandboxBackend::Auto => return Ok(Arc::clone(&self.shared.sandbox)),
                    SandboxBackend::Local => return Ok(Arc::new(Sandbox::plain())),
                    SandboxBackend::Bwrap => BackendKind::Bwrap,
                    SandboxBackend::Podman => BackendKind::Podman,
                    SandboxBackend::Docker => BackendKind::Docker,
                };
                let Some(base) = &self.shared.config else {
                    return Err(format!(
                        "this server cannot build the `{}` backend sandbox `{}` asks for",
                        kind.as_str(),
                        named.spec.name
                    ));
                };
                let mut config = base.clone();
                config.backend = BackendChoice::Exactly(kind);
                config.image.clone_from(&named.spec.image);
                Sandbox::new(config).await.map(Arc::new).map_err(|e| {
                    format!("sandbox `{}` needs the {kind} backend: {e}", named.spec.name)
                })
            })
            .await
            .clone()
    }

    /// The policy of sandbox `named`'s commands with `root` as their one writable directory:
    /// the system and the project read-only, the engine's private directories hidden.
    fn policy(&self, named: &Named, root: &Path) -> Result<SandboxPolicy, String> {
        let shared = &self.shared;
        let mut template = shared.policy.clone();
        template.net = crate::connections::server_net(&named.spec.network)?;
        template.limits = limits(&named.spec);
        let dirs = PrivateDirs {
            project_dir: &shared.project_dir,
            workspaces_dir: &shared.workspaces_dir,
            connections_dir: &shared.connections_dir,
            sandboxes_dir: &shared.dir,
        };
        Ok(call_policy(&template, &dirs, root))
    }

    /// The environment of a command in `root`.
    fn env(&self, named: &Named, root: &Path) -> BTreeMap<String, String> {
        let mut env = self.shared.env.clone();
        env.insert("HOME".to_owned(), root.display().to_string());
        env.insert("ASH_SANDBOX".to_owned(), named.spec.name.clone());
        env
    }

    /// The template of `named`, built now if this key has none.
    async fn template(&self, named: &Named, log: &Log<'_>) -> Result<PathBuf, String> {
        let templates = &self.templates;
        let dir = templates.join(format!("{}-{}", named.slug, named.key));
        if dir.is_dir() {
            return Ok(dir);
        }
        let _one = named.building.lock().await;
        if dir.is_dir() {
            return Ok(dir);
        }
        let io =
            |what: &str, e: std::io::Error| format!("sandbox `{}`: {what}: {e}", named.spec.name);
        std::fs::create_dir_all(templates).map_err(|e| io("cannot create its template", e))?;
        let staging =
            templates.join(format!(".{}-{}-{}", named.slug, named.key, crate::ids::ulid()));
        std::fs::create_dir(&staging).map_err(|e| io("cannot create its template", e))?;
        let built = self.bootstrap(named, &staging, log).await;
        if let Err(error) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
        match std::fs::rename(&staging, &dir) {
            Ok(()) => {}
            // Another process built it first: theirs stands.
            Err(_) if dir.is_dir() => {
                let _ = std::fs::remove_dir_all(&staging);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(io("cannot store its template", e));
            }
        }
        remove_older_templates(templates, &named.slug, &named.key);
        Ok(dir)
    }

    /// Runs `bootstrap` in `staging`, one command after another; the first that fails stops it.
    async fn bootstrap(&self, named: &Named, staging: &Path, log: &Log<'_>) -> Result<(), String> {
        let backend = self.backend(named).await?;
        backend.adopt(staging).map_err(|e| format!("sandbox `{}`: {e}", named.spec.name))?;
        if named.spec.bootstrap.is_empty() {
            return Ok(());
        }
        let policy = self.policy(named, staging)?;
        let session = backend
            .session(policy, staging.to_path_buf())
            .await
            .map_err(|e| format!("sandbox `{}`: {e}", named.spec.name))?;
        let mut result = Ok(());
        for command in &named.spec.bootstrap {
            let run = self.shell(named, staging, command);
            if let Err(error) = log.run(&session, &run, SandboxPhase::Bootstrap, command).await {
                result = Err(format!(
                    "sandbox `{}`: its bootstrap stopped (nothing was kept; the next call tries again): {error}",
                    named.spec.name
                ));
                break;
            }
        }
        session.close().await;
        result
    }

    /// `bash -c command` in `root` with `named`'s per-command limit.
    fn shell(&self, named: &Named, root: &Path, command: &str) -> SessionCommand {
        let mut run = SessionCommand::new(
            vec!["bash".to_owned(), "-c".to_owned(), command.to_owned()],
            root.to_path_buf(),
        );
        run.env = self.env(named, root);
        run.wall_time = Some(Duration::from_millis(named.spec.timeout_ms));
        run
    }
}

/// Limits of `spec`'s commands: ash's limits for untrusted code, with what `[limits]` sets.
fn limits(spec: &ash_spec::Sandbox) -> Limits {
    let mut limits = Limits::strict();
    let set = &spec.limits;
    limits.wall_time = Duration::from_millis(spec.timeout_ms);
    limits.cpu_time = None;
    if let Some(mb) = set.memory_mb {
        limits.memory_bytes = Some(mb.saturating_mul(1 << 20));
    }
    if let Some(percent) = set.cpu_percent {
        limits.cpu_percent = Some(u32::try_from(percent).unwrap_or(u32::MAX));
    }
    if let Some(pids) = set.pids {
        limits.pids = Some(pids);
    }
    if let Some(mb) = set.disk_mb {
        limits.disk_bytes = Some(mb.saturating_mul(1 << 20));
    }
    if let Some(kb) = set.output_kb {
        limits.output_bytes = usize::try_from(kb.saturating_mul(1024)).unwrap_or(usize::MAX);
    }
    limits
}

/// Removes the templates of `slug` other than `key`'s (sessions hold their own copies).
fn remove_older_templates(templates: &Path, slug: &str, key: &str) {
    let Ok(entries) = std::fs::read_dir(templates) else { return };
    let prefix = format!("{slug}-");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(other) = name.strip_prefix(&prefix) else { continue };
        // `<slug>-<16 hex>` exactly: a sandbox whose slug extends this one is not touched.
        if other != key && other.len() == key.len() && other.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The sandboxes one worker has open for its run.
pub(crate) struct Opened<'a> {
    sandboxes: &'a Sandboxes,
    run_id: String,
    open: tokio::sync::Mutex<HashMap<String, (Arc<SandboxSession>, PathBuf)>>,
}

/// Where a call's sandbox events go.
pub(crate) struct Log<'a> {
    pub(crate) events: Option<&'a Sender<ToolEvent>>,
    pub(crate) sandbox: &'a str,
    pub(crate) cancel: &'a CancellationToken,
}

impl<'a> Opened<'a> {
    pub(crate) fn new(sandboxes: &'a Sandboxes, run_id: &str) -> Self {
        Self { sandboxes, run_id: run_id.to_owned(), open: tokio::sync::Mutex::default() }
    }

    /// Sandbox `name` for this run, its directory made and `on_session` run first if needed;
    /// its session and its directory.
    pub(crate) async fn session(
        &self,
        name: &str,
        log: &Log<'_>,
    ) -> Result<(Arc<SandboxSession>, PathBuf), String> {
        let mut open = self.open.lock().await;
        if let Some((session, root)) = open.get(name) {
            return Ok((Arc::clone(session), root.clone()));
        }
        let sandboxes = self.sandboxes;
        let named =
            sandboxes.named.get(name).ok_or_else(|| format!("no sandbox is named `{name}`"))?;
        let base = sandboxes.shared.dir.join("sessions").join(&self.run_id);
        let root = base.join(&named.slug);
        let ready = base.join(format!("{}.ready", named.slug));
        let backend = sandboxes.backend(named).await?;
        let io = |what: &str, e: std::io::Error| format!("sandbox `{name}`: {what}: {e}");
        // A link here (from a snapshot another node stored) would make the sandbox's writable
        // root another directory: refused, never followed.
        if root.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!("sandbox `{name}`: its session directory is a link; refusing it"));
        }
        if !root.is_dir() {
            let template = sandboxes.template(named, log).await?;
            std::fs::create_dir_all(&base).map_err(|e| io("cannot create its directory", e))?;
            let staging = base.join(format!(".{}-{}", named.slug, crate::ids::ulid()));
            let copied = tokio::task::spawn_blocking({
                let (from, to) = (template.clone(), staging.clone());
                move || copy_tree(&from, &to)
            })
            .await
            .map_err(|e| io("cannot copy its template", std::io::Error::other(e)))
            .and_then(|r| r.map_err(|e| io("cannot copy its template", e)));
            let placed = copied.and_then(|()| {
                std::fs::rename(&staging, &root).map_err(|e| io("cannot create its directory", e))
            });
            if let Err(error) = placed {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(error);
            }
            backend.adopt(&root).map_err(|e| format!("sandbox `{name}`: {e}"))?;
        }
        let policy = sandboxes.policy(named, &root)?;
        let session = backend
            .session(policy, root.clone())
            .await
            .map_err(|e| format!("sandbox `{name}`: {e}"))?;
        if !ready.exists() {
            for command in &named.spec.on_session {
                let run = sandboxes.shell(named, &root, command);
                if let Err(error) = log.run(&session, &run, SandboxPhase::OnSession, command).await
                {
                    session.close().await;
                    return Err(format!(
                        "sandbox `{name}`: its on_session commands stopped (the next call runs them again): {error}"
                    ));
                }
            }
            std::fs::write(&ready, named.key.as_bytes())
                .map_err(|e| io("cannot record that on_session ran", e))?;
        }
        let session = Arc::new(session);
        open.insert(name.to_owned(), (Arc::clone(&session), root.clone()));
        Ok((session, root))
    }

    /// The command of a call in sandbox `name`: `bash -c command` in `cwd` (relative to the
    /// sandbox's directory), with its limit, or `timeout` when shorter.
    pub(crate) fn call_command(
        &self,
        name: &str,
        root: &Path,
        command: &str,
        cwd: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<SessionCommand, String> {
        let named = self
            .sandboxes
            .named
            .get(name)
            .ok_or_else(|| format!("no sandbox is named `{name}`"))?;
        let mut run = self.sandboxes.shell(named, root, command);
        if let Some(cwd) = cwd {
            run.cwd = inside(root, cwd)?;
        }
        if let (Some(asked), Some(limit)) = (timeout, run.wall_time) {
            run.wall_time = Some(asked.min(limit));
        }
        Ok(run)
    }

    /// Closes every open sandbox (what commands left running ends; files stay).
    pub(crate) async fn close(self) {
        for (_, (session, _)) in self.open.into_inner() {
            if let Ok(session) = Arc::try_unwrap(session) {
                session.close().await;
            }
        }
    }
}

/// `rel` below `root`, refused when it is absolute or climbs out.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let path = Path::new(rel);
    if path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!(
            "`cwd` must be a path inside the sandbox's directory, without `..`; got `{rel}`"
        ));
    }
    Ok(root.join(path))
}

impl Log<'_> {
    /// Runs `run` in `session`, telling the stream its start, output and end. `Err` when it
    /// could not run, failed or hit a limit, with the end of its stderr.
    pub(crate) async fn run(
        &self,
        session: &SandboxSession,
        run: &SessionCommand,
        phase: SandboxPhase,
        command: &str,
    ) -> Result<ExecOutput, String> {
        let out = self.exec(session, run, phase, command).await?;
        if let Some(limit) = out.limit {
            return Err(format!(
                "`{command}` was stopped: it reached its {} limit",
                limit.as_str()
            ));
        }
        if !out.status.success() {
            return Err(format!(
                "`{command}` failed with exit code {}{}",
                out.status.code(),
                crate::tools::quote_part(&out.stderr, QUOTE_CHARS, true)
                    .map(|q| format!(": {q}"))
                    .unwrap_or_default()
            ));
        }
        Ok(out)
    }

    /// Runs `run` in `session` and reports it, whatever its end.
    pub(crate) async fn exec(
        &self,
        session: &SandboxSession,
        run: &SessionCommand,
        phase: SandboxPhase,
        command: &str,
    ) -> Result<ExecOutput, String> {
        let sandbox = self.sandbox.to_owned();
        let Some(events) = self.events else {
            return session.exec(run, self.cancel, None).await.map_err(|e| e.to_string());
        };
        let _ = events
            .send(ToolEvent::Sandbox(SandboxNote::Command {
                sandbox: sandbox.clone(),
                phase,
                command: command.to_owned(),
            }))
            .await;
        let (tx, rx) = tokio::sync::mpsc::channel::<OutputChunk>(256);
        let exec = async {
            let sink = OutputSink(tx);
            session.exec(run, self.cancel, Some(&sink)).await
        };
        let (out, elided) = tokio::join!(exec, forward(rx, events, &sandbox));
        let (exit_code, limit, error, elapsed, usage) = match &out {
            Ok(out) => (
                Some(out.status.code()),
                out.limit.map(|l| l.as_str().to_owned()),
                None,
                out.elapsed,
                out.usage,
            ),
            Err(e) => (None, None, Some(e.to_string()), Duration::ZERO, None),
        };
        let _ = events
            .send(ToolEvent::Sandbox(SandboxNote::Exited {
                sandbox,
                phase,
                exit_code,
                limit,
                error,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                cpu_time_ms: usage.map(|u| u64::try_from(u.cpu_time.as_millis()).unwrap_or(0)),
                peak_memory_bytes: usage.map(|u| u.peak_memory_bytes),
                output_elided: elided,
            }))
            .await;
        out.map_err(|e| e.to_string())
    }
}

/// Sends the chunks of `rx` as `sandbox.output` events: merged per pipe, at most every
/// [`FLUSH_EVERY`] or [`FLUSH_BYTES`], [`STREAMED_BYTES`] in all, never splitting a UTF-8
/// character. Whether output was left out.
async fn forward(
    mut rx: tokio::sync::mpsc::Receiver<OutputChunk>,
    events: &Sender<ToolEvent>,
    sandbox: &str,
) -> bool {
    let mut pending: Option<(OutputStream, Vec<u8>)> = None;
    let mut sent = 0usize;
    let mut elided = false;
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flush = async |pending: &mut Option<(OutputStream, Vec<u8>)>, all: bool| {
        let Some((stream, bytes)) = pending.as_mut() else { return };
        let cut = if all { bytes.len() } else { utf8_prefix(bytes) };
        if cut == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
        bytes.drain(..cut);
        let stream = match stream {
            OutputStream::Stdout => OutputStreamName::Stdout,
            OutputStream::Stderr => OutputStreamName::Stderr,
        };
        let _ = events
            .send(ToolEvent::Sandbox(SandboxNote::Output {
                sandbox: sandbox.to_owned(),
                stream,
                text,
            }))
            .await;
    };
    loop {
        tokio::select! {
            chunk = rx.recv() => {
                let Some(chunk) = chunk else { break };
                if sent >= STREAMED_BYTES {
                    elided = true;
                    continue;
                }
                let room = STREAMED_BYTES - sent;
                let bytes = if chunk.bytes.len() > room {
                    elided = true;
                    &chunk.bytes[..room]
                } else {
                    &chunk.bytes[..]
                };
                sent += bytes.len();
                if pending.as_ref().is_some_and(|(s, _)| *s != chunk.stream) {
                    flush(&mut pending, true).await;
                    pending = None;
                }
                let (_, buffer) = pending.get_or_insert_with(|| (chunk.stream, Vec::new()));
                buffer.extend_from_slice(bytes);
                if buffer.len() >= FLUSH_BYTES {
                    flush(&mut pending, false).await;
                }
            }
            _ = tick.tick() => flush(&mut pending, false).await,
        }
    }
    flush(&mut pending, true).await;
    elided
}

/// The longest prefix of `bytes` that does not end inside a UTF-8 character.
fn utf8_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // Only an incomplete character at the very end is held back.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

/// Copies the tree at `from` to `to` (which must not exist): directories, regular files with
/// their modes, and symlinks as links. Anything else (a FIFO, a socket) is skipped.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir(to)?;
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((source, target)) = stack.pop() {
        for entry in std::fs::read_dir(&source)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let (src, dst) = (entry.path(), target.join(entry.file_name()));
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            } else if kind.is_dir() {
                std::fs::create_dir(&dst)?;
                let mode = entry.metadata()?.permissions().mode();
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode & 0o7777))?;
                stack.push((src, dst));
            } else if kind.is_file() {
                std::fs::copy(&src, &dst)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_cwd_stays_inside_the_sandbox() {
        let root = Path::new("/s/root");
        assert_eq!(inside(root, "src/app"), Ok(PathBuf::from("/s/root/src/app")));
        assert_eq!(inside(root, "."), Ok(PathBuf::from("/s/root/.")));
        for bad in ["../x", "/etc", "a/../../b"] {
            assert!(inside(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_is_cut_only_between_characters() {
        let text = "aé".as_bytes();
        assert_eq!(utf8_prefix(text), 3);
        assert_eq!(utf8_prefix(&text[..2]), 1);
        assert_eq!(utf8_prefix(b"\xff\xfeok"), 4);
    }

    #[test]
    fn copies_keep_modes_and_links() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("bin")).unwrap_or_default();
        std::fs::write(from.join("bin/run"), "#!/bin/sh\n").unwrap_or_default();
        std::fs::set_permissions(from.join("bin/run"), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_default();
        std::os::unix::fs::symlink("bin/run", from.join("link")).unwrap_or_default();
        let to = dir.path().join("to");
        copy_tree(&from, &to).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(to.join("bin/run")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o755));
        assert_eq!(std::fs::read_link(to.join("link")).ok(), Some(PathBuf::from("bin/run")));
    }
}
