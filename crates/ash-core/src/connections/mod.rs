//! The connections of an engine's agent (`connections/*.toml`): MCP servers kept alive and
//! their tools, with the credentials that stay here — tool processes never see them.
//!
//! [`Connections`] is built once per engine; each MCP connection is supervised by a task the
//! engine owns ([`McpConnection::supervise`]), so registration is asynchronous: until a server
//! answers, its tools are offered as unavailable with the reason.

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

pub(crate) use mcp::McpConnection;

/// What starting a stdio server needs.
pub(crate) struct Launcher {
    pub(crate) sandbox: Arc<Sandbox>,
    /// The policy template of tool processes.
    pub(crate) policy: SandboxPolicy,
    pub(crate) project_dir: PathBuf,
    pub(crate) workspaces_dir: PathBuf,
    /// Each stdio server's own directory is `<connections_dir>/<name>`.
    pub(crate) connections_dir: PathBuf,
    /// The base environment of every process.
    pub(crate) env: BTreeMap<String, String>,
    /// ash's version, told to servers.
    pub(crate) version: String,
}

/// The connections of one package.
#[derive(Default)]
pub(crate) struct Connections {
    mcp: BTreeMap<String, Arc<McpConnection>>,
}

impl Connections {
    /// The connections of `package`, not started.
    pub(crate) fn new(package: &Package) -> Self {
        let mcp = package
            .connections
            .iter()
            .filter(|c| matches!(c.kind, ConnectionKind::Mcp { .. }))
            .map(|c| (c.name.clone(), Arc::new(McpConnection::new(c.clone()))))
            .collect();
        Self { mcp }
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
