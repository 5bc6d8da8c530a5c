//! Where the real MCP servers of the connection tests are: the protocol's reference server
//! (npm `@modelcontextprotocol/server-everything`) and `mcp/fixture_server.py`, a server on the
//! official Python SDK (PyPI `mcp`). `.ci/run` installs both under `$ASH_TEST_MCP` (default
//! `~/.cache/ash/mcp`): `node/node_modules/.bin/mcp-server-everything` and `python/bin/python`.

use std::path::PathBuf;

/// The installed servers.
#[derive(Debug, Clone)]
pub struct McpServers {
    /// `mcp-server-everything` (argument `stdio` or `streamableHttp`, port from `PORT`).
    pub everything: PathBuf,
    /// A Python with the `mcp` SDK.
    pub python: PathBuf,
    /// The fixture server script (modes in its docstring).
    pub fixture: PathBuf,
    /// An independent MCP client on the Python SDK (`mcp/client.py`, usage in its docstring).
    pub client: PathBuf,
}

impl McpServers {
    /// The installed servers, or `None` (with the reason on stderr) when they are missing.
    #[allow(clippy::disallowed_methods, clippy::print_stderr, reason = "tests find their tools")]
    pub fn find() -> Option<Self> {
        let root = std::env::var_os("ASH_TEST_MCP").map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ash/mcp"))
        })?;
        let servers = Self {
            everything: root.join("node/node_modules/.bin/mcp-server-everything"),
            python: root.join("python/bin/python"),
            fixture: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp/fixture_server.py"),
            client: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp/client.py"),
        };
        if servers.everything.exists() && servers.python.exists() {
            Some(servers)
        } else {
            eprintln!(
                "skipping: the MCP servers are not installed under {} (bash .ci/run installs them, or set ASH_TEST_MCP)",
                root.display()
            );
            None
        }
    }

    /// The fixture server's argv in `mode` (`stdio`, `silent`, `garbage`, `http PORT [TOKEN]`).
    pub fn fixture_argv(&self, mode: &[&str]) -> Vec<String> {
        let mut argv = vec![self.python.display().to_string(), self.fixture.display().to_string()];
        argv.extend(mode.iter().map(|m| (*m).to_owned()));
        argv
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}
