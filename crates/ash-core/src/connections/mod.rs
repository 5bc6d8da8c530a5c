//! The connections of an engine's agent (`connections/*.toml`): MCP servers kept alive and
//! their tools, with the credentials that stay here — tool processes never see them.
//!
//! [`Connections`] is built once per engine; each MCP connection is supervised by a task the
//! engine owns ([`McpConnection::supervise`]), so registration is asynchronous: until a server
//! answers, its tools are offered as unavailable with the reason.

mod broker;
mod http;
mod mcp;
mod redact;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ash_sandbox::{Sandbox, SandboxPolicy};
use ash_spec::{ConnectionKind, Package};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use broker::{BROKER_PORT, Broker};
pub(crate) use http::{HttpConnection, HttpRequest};
pub(crate) use mcp::{McpConnection, server_net};

/// What starting a stdio server needs.
pub(crate) struct Launcher {
    pub(crate) sandbox: Arc<Sandbox>,
    /// The policy template of tool processes.
    pub(crate) policy: SandboxPolicy,
    pub(crate) project_dir: PathBuf,
    pub(crate) workspaces_dir: PathBuf,
    /// Each stdio server's own directory is `<connections_dir>/<name>`.
    pub(crate) connections_dir: PathBuf,
    /// Named sandboxes' directories, hidden from servers.
    pub(crate) sandboxes_dir: PathBuf,
    /// The base environment of every process.
    pub(crate) env: BTreeMap<String, String>,
    /// ash's version, told to servers.
    pub(crate) version: String,
}

impl Launcher {
    /// What `config` says about starting servers; its directories made absolute (they are
    /// already canonical in a started engine).
    pub(crate) fn new(config: &crate::EngineConfig) -> Self {
        let absolute = |p: &std::path::Path| {
            p.canonicalize().or_else(|_| std::path::absolute(p)).unwrap_or_else(|_| p.to_path_buf())
        };
        Self {
            sandbox: Arc::clone(&config.sandbox),
            policy: config.tool_policy.clone(),
            project_dir: absolute(&config.project_dir),
            workspaces_dir: absolute(&config.workspaces_dir),
            connections_dir: absolute(&config.connections_dir),
            sandboxes_dir: absolute(&config.sandboxes_dir),
            env: config.process_env.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    pub(crate) fn dirs(&self) -> crate::tools::PrivateDirs<'_> {
        crate::tools::PrivateDirs {
            project_dir: &self.project_dir,
            workspaces_dir: &self.workspaces_dir,
            connections_dir: &self.connections_dir,
            sandboxes_dir: &self.sandboxes_dir,
        }
    }
}

/// The connections of one package.
#[derive(Default)]
pub(crate) struct Connections {
    mcp: BTreeMap<String, Arc<McpConnection>>,
    http: BTreeMap<String, Arc<HttpConnection>>,
}

/// A connection that cannot be used as configured.
#[derive(Debug, thiserror::Error)]
#[error("connection `{name}` cannot be used: {why}")]
pub struct ConnectionError {
    name: String,
    why: String,
}

impl Connections {
    /// The connections of `package`, not started.
    pub(crate) fn new(package: &Package) -> Result<Self, ConnectionError> {
        let mut out = Self::default();
        for connection in &package.connections {
            match connection.kind {
                ConnectionKind::Mcp { .. } => {
                    let runtime = Arc::new(McpConnection::new(connection.clone()));
                    out.mcp.insert(connection.name.clone(), runtime);
                }
                ConnectionKind::Http { .. } => {
                    let runtime = HttpConnection::new(connection)
                        .map_err(|why| ConnectionError { name: connection.name.clone(), why })?;
                    out.http.insert(connection.name.clone(), Arc::new(runtime));
                }
            }
        }
        Ok(out)
    }

    /// The connections of `package` as `ash info` sees them without starting anything: the
    /// HTTP ones (building them contacts nothing), no MCP servers.
    pub(crate) fn offline(package: &Package) -> Result<Self, ConnectionError> {
        let mut all = Self::new(package)?;
        all.mcp.clear();
        Ok(all)
    }

    /// HTTP connection `name`.
    pub(crate) fn http(&self, name: &str) -> Option<&Arc<HttpConnection>> {
        self.http.get(name)
    }

    /// Whether the package has any connection.
    pub(crate) fn is_empty(&self) -> bool {
        self.mcp.is_empty() && self.http.is_empty()
    }

    /// The names and kinds of every connection.
    pub(crate) fn names(&self) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = self
            .mcp
            .keys()
            .map(|n| (n.clone(), "mcp"))
            .chain(self.http.keys().map(|n| (n.clone(), "http")))
            .collect();
        out.sort();
        out
    }

    /// Starts supervising every MCP connection in `tasks` until `stop`.
    pub(crate) fn start(&self, launcher: Launcher, tasks: &TaskTracker, stop: &CancellationToken) {
        let launcher = Arc::new(launcher);
        for connection in self.mcp.values() {
            tasks
                .spawn(Arc::clone(connection).supervise(Arc::clone(&launcher), stop.child_token()));
        }
    }

    /// MCP connection `name`.
    pub(crate) fn mcp(&self, name: &str) -> Option<&Arc<McpConnection>> {
        self.mcp.get(name)
    }

    /// The instructions of servers whose connection asks for them, by connection name.
    pub(crate) fn instructions(&self) -> Vec<(String, String)> {
        self.mcp
            .values()
            .filter(|c| c.connection.instructions)
            .filter_map(|c| c.instructions().map(|text| (c.name().to_owned(), text)))
            .collect()
    }

    /// Waits until every connection's first attempt is over, at most the longest connection
    /// timeout (capped at two minutes): a model call made right after the engine starts then
    /// sees the servers' tools rather than "still starting". A restart later is not waited for.
    pub(crate) async fn started(&self) {
        let longest = self.mcp.values().map(|c| c.connection.timeout_ms).max().unwrap_or(0);
        if longest > 0 {
            self.settled(Duration::from_millis(longest.min(120_000))).await;
        }
    }

    /// Waits (at most `within` in all) until every connection's first attempt is over.
    pub(crate) async fn settled(&self, within: Duration) {
        let all = async {
            for connection in self.mcp.values() {
                connection.settled(within).await;
            }
        };
        let _ = tokio::time::timeout(within, all).await;
    }
}
