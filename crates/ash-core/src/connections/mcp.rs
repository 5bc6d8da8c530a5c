//! One MCP connection kept alive for an engine: its server started (a stdio server as a
//! long-lived process in ash's sandbox) or reached (streamable HTTP), initialized, its tools
//! listed and listed again when it says they changed; when it dies or stops answering, its
//! tools are unavailable with the reason while it is restarted with backoff.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ash_mcp::{Client, RemoteTool};
use ash_sandbox::{ExecRequest, Process};
use ash_spec::{Connection, ConnectionAuth, ConnectionKind, McpTransport, ServerNetwork};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Launcher;
use super::redact::Redactor;
use crate::tools::Schema;

/// First wait before a restart; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);
/// Least time between two listings of a server's tools when it says they changed.
const RELIST_EVERY: Duration = Duration::from_secs(1);
/// How often an HTTP server is asked whether it is still there.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A stdio server lives this long before it is restarted fresh.
const SERVER_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a server whose connection closed gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// Lines of a server's stderr kept for the reason it died.
const STDERR_LINES: usize = 8;

/// A tool as the server last described it, with its input schema compiled.
pub(crate) struct ServerTool {
    pub(crate) remote: RemoteTool,
    /// The compiled schema, or why it does not compile.
    pub(crate) schema: Result<Schema, String>,
}

enum Phase {
    Starting,
    Ready(Arc<Client>),
    Down(String),
}

struct State {
    phase: Phase,
    /// The tools the server offered last, kept while it is down.
    tools: BTreeMap<String, Arc<ServerTool>>,
    instructions: Option<String>,
}

/// One MCP connection of an engine.
pub(crate) struct McpConnection {
    pub(crate) connection: Connection,
    pub(crate) redactor: Redactor,
    state: RwLock<State>,
    /// Bumped on every change of phase or tools.
    generation: watch::Sender<u64>,
    /// Set once the first attempt to connect is over, either way.
    first_done: std::sync::atomic::AtomicBool,
    /// A call saw the session break: look now.
    wake: Notify,
}

impl McpConnection {
    pub(crate) fn new(connection: Connection) -> Self {
        Self {
            redactor: Redactor::of(&connection),
            connection,
            state: RwLock::new(State {
                phase: Phase::Starting,
                tools: BTreeMap::new(),
                instructions: None,
            }),
            generation: watch::channel(0).0,
            first_done: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.connection.name
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.write().unwrap_or_else(PoisonError::into_inner));
        self.generation.send_modify(|g| *g += 1);
    }

    /// The tool `remote` as the server last described it.
    pub(crate) fn described(&self, remote: &str) -> Option<Arc<ServerTool>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner).tools.get(remote).cloned()
    }

    /// The session and the tool, or why `remote` cannot be called now.
    pub(crate) fn callable(&self, remote: &str) -> Result<(Arc<Client>, Arc<ServerTool>), String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let client = match &state.phase {
            Phase::Starting => {
                return Err(format!("MCP server `{}` is still starting", self.name()));
            }
            Phase::Down(why) => {
                return Err(format!("MCP server `{}` is down: {why}", self.name()));
            }
            Phase::Ready(client) => client,
        };
        let Some(tool) = state.tools.get(remote) else {
            let offered: Vec<&str> = state.tools.keys().map(String::as_str).take(20).collect();
            return Err(format!(
                "MCP server `{}` does not offer `{remote}` (it offers: {})",
                self.name(),
                if offered.is_empty() { "nothing".to_owned() } else { offered.join(", ") }
            ));
        };
        if let Err(why) = &tool.schema {
            return Err(format!(
                "the input schema MCP server `{}` gives for `{remote}` is unusable: {why}",
                self.name()
            ));
        }
        Ok((Arc::clone(client), Arc::clone(tool)))
    }

    /// Whether `remote` is in the connection's `[tools]` allow list.
    pub(crate) fn allows(&self, remote: &str) -> bool {
        matches!(&self.connection.kind, ConnectionKind::Mcp { tools: Some(tools), .. } if tools.allow.iter().any(|t| t == remote))
    }

    /// The server's instructions, when it is up and gave some.
    pub(crate) fn instructions(&self) -> Option<String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match state.phase {
            Phase::Ready(_) => state.instructions.clone(),
            Phase::Starting | Phase::Down(_) => None,
        }
    }

    /// Where the connection stands: `None` when ready, else why not.
    pub(crate) fn problem(&self) -> Option<String> {
        match &self.state.read().unwrap_or_else(PoisonError::into_inner).phase {
            Phase::Ready(_) => None,
            Phase::Starting => Some("starting".into()),
            Phase::Down(why) => Some(why.clone()),
        }
    }

    /// Waits (at most `within`) until the connection is ready; whether it is.
    pub(crate) async fn ready(&self, within: Duration) -> bool {
        let mut changes = self.generation.subscribe();
        let wait = async {
            loop {
                if self.problem().is_none() {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }

    /// Waits (at most `within`) until the first attempt to connect is over, either way.
    pub(crate) async fn settled(&self, within: Duration) {
        use std::sync::atomic::Ordering;
        let mut changes = self.generation.subscribe();
        let wait = async {
            while !self.first_done.load(Ordering::Acquire) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
    }

    /// Waits (at most `within`) until a session other than `old` is ready; whether one is.
    pub(crate) async fn replaced(&self, old: &Arc<Client>, within: Duration) -> bool {
        let mut changes = self.generation.subscribe();
        let wait = async {
            loop {
                let fresh = matches!(
                    &self.state.read().unwrap_or_else(PoisonError::into_inner).phase,
                    Phase::Ready(client) if !Arc::ptr_eq(client, old)
                );
                if fresh {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }

    /// Whether the server is starting or down (rather than up without some tool).
    pub(crate) fn is_out(&self) -> bool {
        !matches!(self.state.read().unwrap_or_else(PoisonError::into_inner).phase, Phase::Ready(_))
    }

    /// A call saw the session break; the supervisor checks at once.
    pub(crate) fn broken(&self) {
        self.wake.notify_one();
    }

    /// Keeps the connection up until `stop`.
    pub(crate) async fn supervise(
        self: Arc<Self>,
        launcher: Arc<Launcher>,
        stop: CancellationToken,
    ) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let why = self.session(&launcher, &stop).await;
            let Some(why) = why else { return };
            let why = self.redactor.text(&why);
            tracing::warn!(connection = %self.name(), reason = %why, "MCP server unavailable; restarting");
            self.first_done.store(true, std::sync::atomic::Ordering::Release);
            self.update(|s| s.phase = Phase::Down(why));
            if started.elapsed() >= STABLE {
                backoff = FIRST_BACKOFF;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            self.update(|s| s.phase = Phase::Starting);
        }
    }

    /// One session: connect, list, then watch it; `None` when stopped, else why it ended.
    async fn session(&self, launcher: &Launcher, stop: &CancellationToken) -> Option<String> {
        let deadline = Duration::from_millis(self.connection.timeout_ms);
        let stderr = Stderr::default();
        let (client, process) = match self.connect(launcher, stop, &stderr).await {
            Ok(connected) => connected,
            Err(Ended::Stopped(process)) => {
                stopped(process).await;
                return None;
            }
            Err(Ended::Because(why, process)) => return Some(ended(why, process, &stderr).await),
        };
        let client = Arc::new(client);
        if let Err(why) = self.list(&client, deadline).await {
            return Some(ended(why, process, &stderr).await);
        }
        let instructions = client.server().instructions.as_deref().map(|i| self.redactor.text(i));
        self.first_done.store(true, std::sync::atomic::Ordering::Release);
        self.update(|s| {
            s.phase = Phase::Ready(Arc::clone(&client));
            s.instructions = instructions;
        });
        tracing::info!(connection = %self.name(), server = %client.server().name, "MCP server ready");
        let Some(why) = self.watch(&client, process.as_ref(), deadline, stop).await else {
            stopped(process).await;
            return None;
        };
        // The session is over: no call may take it while its end is read.
        let what = self.redactor.text(&why);
        self.update(|s| s.phase = Phase::Down(what));
        drop(client);
        Some(ended(why, process, &stderr).await)
    }

    /// Starts (stdio) or reaches (HTTP) the server and initializes a session.
    async fn connect(
        &self,
        launcher: &Launcher,
        stop: &CancellationToken,
        stderr: &Stderr,
    ) -> Result<(Client, Option<Process>), Ended> {
        let deadline = Duration::from_millis(self.connection.timeout_ms);
        let because = |why: String| Ended::Because(why, None);
        match &self.connection.kind {
            ConnectionKind::Mcp {
                transport: McpTransport::Stdio { command, env, network, read_only },
                ..
            } => {
                let server = Server { name: self.name(), command, env, network, read_only };
                let mut process = launcher.spawn_server(&server, stop).await.map_err(because)?;
                if let Some(err) = process.stderr.take() {
                    stderr.drain(err, self.name().to_owned(), self.redactor.clone());
                }
                let (Some(read), Some(write)) = (process.stdout.take(), process.stdin.take())
                else {
                    return Err(Ended::Because(
                        "the server's pipes were not opened".into(),
                        Some(process),
                    ));
                };
                let connected = tokio::select! {
                    connected = Client::stdio(read, write, &launcher.version, deadline) => connected,
                    () = stop.cancelled() => return Err(Ended::Stopped(Some(process))),
                };
                match connected {
                    Ok(client) => Ok((client, Some(process))),
                    Err(e) => Err(Ended::Because(e.to_string(), Some(process))),
                }
            }
            ConnectionKind::Mcp { transport: McpTransport::StreamableHttp { url }, .. } => {
                let headers = auth_headers(&self.connection.auth).map_err(because)?;
                let connected = tokio::select! {
                    connected = Client::http(url.expose(), headers, &launcher.version, deadline) => connected,
                    () = stop.cancelled() => return Err(Ended::Stopped(None)),
                };
                connected.map(|client| (client, None)).map_err(|e| because(e.to_string()))
            }
            ConnectionKind::Http { .. } => Err(because("not an MCP connection".into())),
        }
    }

    /// Watches a ready session: re-lists on change, notices the process exiting, asks the
    /// server whether it is there (HTTP every [`PING_EVERY`], either when a call saw trouble).
    /// `None` when stopped, else why the session is over.
    async fn watch(
        &self,
        client: &Client,
        process: Option<&Process>,
        deadline: Duration,
        stop: &CancellationToken,
    ) -> Option<String> {
        let mut listed = Instant::now();
        loop {
            let exited = async {
                match process {
                    Some(process) => process.exited().await,
                    None => std::future::pending().await,
                }
            };
            let ping = async {
                match process {
                    Some(_) => std::future::pending::<()>().await,
                    None => tokio::time::sleep(PING_EVERY).await,
                }
            };
            tokio::select! {                () = client.tools_changed() => {
                    // A storm of announcements is one listing a second: they coalesce while
                    // this waits.
                    let since = listed.elapsed();
                    if since < RELIST_EVERY {
                        tokio::time::sleep(RELIST_EVERY - since).await;
                    }
                    listed = Instant::now();
                    if let Err(why) = self.list(client, deadline).await {
                        return Some(why);
                    }
                }
                () = exited => return Some("the server exited".to_owned()),
                () = self.wake.notified() => {
                    if client.is_closed() {
                        // A process that closed its end is usually exiting: say so.
                        if let Some(process) = process
                            && tokio::time::timeout(EXIT_GRACE, process.exited()).await.is_ok()
                        {
                            return Some("the server exited".to_owned());
                        }
                        return Some("the connection to the server closed".to_owned());
                    }
                    if let Err(e) = client.ping(deadline).await {
                        return Some(format!("the server stopped answering: {e}"));
                    }
                }
                () = ping => {
                    if let Err(e) = client.ping(deadline).await {
                        return Some(format!("the server stopped answering: {e}"));
                    }
                }
                // Calls in flight finish with an error; the process goes with its handle.
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Lists the server's tools into the state.
    async fn list(&self, client: &Client, deadline: Duration) -> Result<(), String> {
        let listed = client
            .list_tools(deadline)
            .await
            .map_err(|e| format!("listing its tools failed: {e}"))?;
        // What a server says about its tools reaches the model and `/info`: secrets out first.
        let tools = listed
            .into_iter()
            .map(|mut remote| {
                remote.title = remote.title.map(|t| self.redactor.text(&t));
                remote.description = remote.description.map(|d| self.redactor.text(&d));
                self.redactor.json(&mut remote.input_schema);
                let schema = match &remote.problem {
                    Some(problem) => Err(problem.clone()),
                    None => Schema::compile(&remote.name, remote.input_schema.clone())
                        .map_err(|e| e.to_string()),
                };
                (remote.name.clone(), Arc::new(ServerTool { remote, schema }))
            })
            .collect();
        self.update(|s| s.tools = tools);
        Ok(())
    }
}

/// Why connecting did not give a session.
enum Ended {
    /// The engine is stopping (with the process when one was started).
    Stopped(Option<Process>),
    /// This, and the process when one was started.
    Because(String, Option<Process>),
}

/// Ends a stopped session's process within the supervisor's own task, so the sandbox releases
/// what the run held (cgroups, proxy) before the engine is gone.
async fn stopped(process: Option<Process>) {
    if let Some(process) = process {
        process.kill();
        let _ = tokio::time::timeout(EXIT_GRACE * 5, process.wait()).await;
    }
}

/// `why` a session ended, with the process's exit status and last stderr lines when it was
/// a process (which is killed if it still runs).
async fn ended(why: String, process: Option<Process>, stderr: &Stderr) -> String {
    let Some(process) = process else { return why };
    process.kill();
    let status = match process.wait().await {
        Ok(end) => match end.status {
            ash_sandbox::ExitStatus::Exited(code) => format!("exit code {code}"),
            ash_sandbox::ExitStatus::Signaled(signal) => format!("signal {signal}"),
        },
        Err(e) => e.to_string(),
    };
    let last = stderr.last().await;
    if last.is_empty() {
        format!("{why} ({status})")
    } else {
        format!("{why} ({status}); its last words on stderr: {}", last.join(" | "))
    }
}

/// The headers an HTTP MCP server gets: the connection's credentials, marked sensitive.
pub(crate) fn auth_headers(auth: &ConnectionAuth) -> Result<reqwest::header::HeaderMap, String> {
    use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
    let mut headers = HeaderMap::new();
    let value = |text: &str| {
        let mut value = HeaderValue::from_str(text)
            .map_err(|_| "the credentials hold characters a header cannot carry".to_owned())?;
        value.set_sensitive(true);
        Ok::<_, String>(value)
    };
    match auth {
        ConnectionAuth::None => {}
        ConnectionAuth::Bearer { token } => {
            headers.insert(AUTHORIZATION, value(&format!("Bearer {}", token.expose()))?);
        }
        ConnectionAuth::Basic { username, password } => {
            use base64::Engine as _;
            let pair = format!("{}:{}", username.expose(), password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.insert(AUTHORIZATION, value(&format!("Basic {encoded}"))?);
        }
        ConnectionAuth::ApiKey { header, value: key } => {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("`{header}` is not a header name"))?;
            headers.insert(name, value(key.expose())?);
        }
    }
    Ok(headers)
}

/// What a stdio server may reach.
pub(crate) fn server_net(network: &ServerNetwork) -> Result<ash_sandbox::NetPolicy, String> {
    Ok(match network {
        ServerNetwork::None => ash_sandbox::NetPolicy::None,
        ServerNetwork::Full => ash_sandbox::NetPolicy::Full,
        ServerNetwork::Allow(hosts) => ash_sandbox::NetPolicy::Allow(
            hosts
                .iter()
                .map(|h| {
                    h.parse()
                        .map_err(|e: ash_sandbox::PolicyError| format!("network host `{h}`: {e}"))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A stdio server's stderr: the task draining it (owned here, ended with the session) and the
/// last lines it kept.
#[derive(Default)]
struct Stderr {
    lines: Arc<Mutex<VecDeque<String>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Stderr {
    /// Starts draining `err`.
    fn drain(
        &self,
        err: tokio::process::ChildStderr,
        name: String,
        redactor: super::redact::Redactor,
    ) {
        let task = tokio::spawn(drain_stderr(err, name, redactor, Arc::clone(&self.lines)));
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// The last lines, once the process is gone and its pipe read to the end (or shortly).
    async fn last(&self) -> Vec<String> {
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut task) = task
            && tokio::time::timeout(EXIT_GRACE, &mut task).await.is_err()
        {
            task.abort();
        }
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

/// Characters of one stderr line kept.
const STDERR_LINE_BYTES: usize = 300;

/// Reads a server's stderr to its end, keeping its last lines (each cut, secrets out): never
/// more than a few kilobytes however the server writes, and never stopping early, so the
/// server never blocks on a full pipe.
async fn drain_stderr(
    mut err: tokio::process::ChildStderr,
    name: String,
    redactor: super::redact::Redactor,
    lines: Arc<Mutex<VecDeque<String>>>,
) {
    use tokio::io::AsyncReadExt as _;
    let mut line = Vec::with_capacity(STDERR_LINE_BYTES);
    let mut buf = [0u8; 4096];
    let keep = |line: &mut Vec<u8>| {
        let text = redactor.cut(&String::from_utf8_lossy(line), STDERR_LINE_BYTES);
        line.clear();
        if text.trim().is_empty() {
            return;
        }
        tracing::debug!(connection = %name, "{text}");
        let mut kept = lines.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(text);
    };
    loop {
        let n = match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in buf.get(..n).unwrap_or_default() {
            if byte == b'\n' {
                keep(&mut line);
            } else if line.len() < STDERR_LINE_BYTES * 4 {
                // Past this, the rest of the line is read and dropped.
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        keep(&mut line);
    }
}

/// A stdio server as its connection describes it.
#[derive(Clone, Copy)]
struct Server<'a> {
    name: &'a str,
    command: &'a [String],
    env: &'a BTreeMap<String, ash_spec::Interpolated>,
    network: &'a ServerNetwork,
    read_only: &'a [String],
}

impl Launcher {
    /// Starts stdio server `name`: `command` in its own directory, the project read-only,
    /// `env` added to the base environment, `network` as configured.
    async fn spawn_server(
        &self,
        server: &Server<'_>,
        stop: &CancellationToken,
    ) -> Result<Process, String> {
        let Server { name, command, env, network, read_only } = *server;
        let dir = self.connections_dir.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the server's directory {}: {e}", dir.display()))?;
        self.sandbox
            .adopt(&dir)
            .map_err(|e| format!("cannot hand the server its directory: {e}"))?;
        let argv = crate::tools::project_argv(command, &self.project_dir);
        let mut vars = self.env.clone();
        vars.insert("HOME".to_owned(), dir.display().to_string());
        for (key, value) in env {
            vars.insert(key.clone(), value.expose().to_owned());
        }
        let mut policy = crate::tools::call_policy(&self.policy, &self.dirs(), &dir);
        policy.net = server_net(network)?;
        policy.fs.read_only.extend(read_only.iter().map(std::path::PathBuf::from));
        policy.limits.wall_time = SERVER_LIFETIME;
        // A server idles most of its life; its CPU share is still capped.
        policy.limits.cpu_time = None;
        let request = ExecRequest { argv, cwd: dir, env: vars, stdin: Vec::new(), policy };
        self.sandbox
            .spawn(&request, stop)
            .await
            .map_err(|e| format!("could not start the server: {e}"))
    }
}
