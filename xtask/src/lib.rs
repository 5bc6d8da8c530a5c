//! Repository checks for ash ("tidy"), run as tests and by `cargo xtask tidy`.
//!
//! Owns the rules of `ARCHITECTURE.md` that a machine can check: dependency direction between
//! ash crates, which crate may use each heavy outside dependency, that every Rust file opens
//! with a `//!` header, and that no test is marked to be ignored. Reads `cargo metadata` and files;
//! never changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Foundation crates: pure data and logic, synchronous I/O at most.
pub const FOUNDATION: &[&str] =
    &["ash-protocol", "ash-identity", "ash-spec", "ash-ledger", "ash-pack"];
/// Edge crates: nothing but `ash-cli` may depend on them.
pub const EDGES: &[&str] = &["ash-server", "ash-tui", "ash-node", "ash-cli"];
/// Outside crates the foundation must not pull in, even transitively.
pub const NOT_IN_FOUNDATION: &[&str] =
    &["tokio", "reqwest", "hyper", "axum", "libp2p", "rusqlite", "tokio-postgres"];

/// Heavy outside crates and the only workspace members that may depend on them directly
/// (normal or build dependencies; dev-dependencies are free).
pub const ROOMS: &[(&str, &[&str])] = &[
    ("axum", &["ash-server", "ash-test-support"]),
    ("rusqlite", &["ash-store"]),
    ("tokio-postgres", &["ash-store"]),
    ("libp2p", &["ash-net"]),
    ("ratatui", &["ash-tui"]),
    ("crossterm", &["ash-tui"]),
    ("clap", &["ash-cli"]),
    ("tracing-subscriber", &["ash-cli"]),
    ("anyhow", &["ash-cli", "xtask"]),
    ("rmcp", &["ash-mcp"]),
    ("landlock", &["ash-sandbox"]),
    ("seccompiler", &["ash-sandbox"]),
    ("ed25519-dalek", &["ash-identity"]),
    ("curve25519-dalek", &["ash-identity"]),
    ("x25519-dalek", &["ash-identity"]),
    ("hpke", &["ash-pack"]),
    ("aes-gcm", &["ash-pack"]),
    ("zstd", &["ash-pack"]),
    // The package walk, and the `search_files` tool's walk of a workspace (git's ignore rules both).
    ("ignore", &["ash-pack", "ash-core"]),
];

/// Pairs `(a, b)`: `a` must not depend on `b`, even transitively.
pub const FORBIDDEN_PATHS: &[(&str, &str)] = &[
    ("ash-core", "ash-store"),
    ("ash-core", "ash-net"),
    ("ash-core", "axum"),
    ("ash-core", "ash-ledger"),
    ("ash-ledger", "ash-core"),
    ("ash-net", "ash-core"),
    ("ash-pack", "ash-core"),
    // The MCP adapter speaks the protocol; engines and stores are its callers' business.
    ("ash-mcp", "ash-core"),
    ("ash-mcp", "ash-sandbox"),
];

/// The dependency graph of the workspace, reduced to what the rules need.
#[derive(Debug, Default)]
pub struct Graph {
    /// Workspace member names.
    pub members: BTreeSet<String>,
    /// Direct non-dev dependencies of each member, by name.
    pub direct: BTreeMap<String, BTreeSet<String>>,
    /// Direct dev-dependencies of each member, by name.
    pub dev: BTreeMap<String, BTreeSet<String>>,
    /// Non-dev edges of the resolved graph (every package), by name.
    pub resolved: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Reads `cargo metadata` output.
    pub fn from_metadata(metadata: &Value) -> anyhow::Result<Self> {
        let mut graph = Self::default();
        let ids: BTreeMap<&str, &str> = metadata["packages"]
            .as_array()
            .context("metadata has no packages")?
            .iter()
            .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
            .collect();
        for member in metadata["workspace_members"].as_array().context("no workspace_members")? {
            let id = member.as_str().context("member id")?;
            graph.members.insert(ids.get(id).context("unknown member")?.to_string());
        }
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let Some(name) = package["name"].as_str() else { continue };
            if !graph.members.contains(name) {
                continue;
            }
            for dep in package["dependencies"].as_array().into_iter().flatten() {
                let Some(dep_name) = dep["name"].as_str() else { continue };
                let bucket = if dep["kind"].as_str() == Some("dev") {
                    &mut graph.dev
                } else {
                    &mut graph.direct
                };
                bucket.entry(name.to_owned()).or_default().insert(dep_name.to_owned());
            }
        }
        for node in metadata["resolve"]["nodes"].as_array().into_iter().flatten() {
            let Some(name) = node["id"].as_str().and_then(|id| ids.get(id)) else { continue };
            let entry = graph.resolved.entry((*name).to_owned()).or_default();
            for dep in node["deps"].as_array().into_iter().flatten() {
                let normal = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].as_str() != Some("dev"));
                if let (true, Some(dep_name)) =
                    (normal, dep["pkg"].as_str().and_then(|id| ids.get(id)))
                {
                    entry.insert((*dep_name).to_owned());
                }
            }
        }
        Ok(graph)
    }

    /// Everything `from` reaches through non-dev edges.
    pub fn reachable(&self, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(next) = stack.pop() {
            for dep in self.resolved.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen
    }
}

/// Every rule broken by `graph`, as sentences.
pub fn check_graph(graph: &Graph) -> Vec<String> {
    let mut problems = Vec::new();
    for (dep, allowed) in ROOMS {
        for (member, deps) in &graph.direct {
            if deps.contains(*dep) && !allowed.contains(&member.as_str()) {
                problems.push(format!(
                    "{member} depends on {dep}, which only {} may use",
                    allowed.join(", ")
                ));
            }
        }
    }
    for member in FOUNDATION.iter().filter(|m| graph.members.contains(**m)) {
        let reach = graph.reachable(member);
        for banned in NOT_IN_FOUNDATION {
            if reach.contains(*banned) {
                problems.push(format!("foundation crate {member} pulls in {banned}"));
            }
        }
    }
    for (from, to) in FORBIDDEN_PATHS {
        if graph.members.contains(*from) && graph.reachable(from).contains(*to) {
            problems.push(format!("{from} must not depend on {to}"));
        }
    }
    for (member, deps) in &graph.direct {
        for edge in EDGES {
            if deps.contains(*edge) && member != "ash-cli" {
                problems
                    .push(format!("{member} depends on the edge crate {edge}; only ash-cli may"));
            }
        }
        if deps.contains("ash-test-support") {
            problems.push(format!("{member} depends on ash-test-support outside dev-dependencies"));
        }
    }
    problems
}

/// Every `.rs` file below `root`'s `crates/` and `xtask/` that breaks a file rule.
pub fn check_files(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        collect_rs(&root.join(dir), &mut files)?;
    }
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let rel = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!("{rel}: does not start with a `//!` header saying what it owns"));
        }
        let ignore_attr = concat!("#[", "ignore");
        if text.contains(ignore_attr) {
            problems.push(format!("{rel}: ignores a test; return early with a reason instead"));
        }
    }
    Ok(problems)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && name != "snapshots" && !name.starts_with('.') {
                collect_rs(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs `cargo metadata` for the workspace at `root`.
pub fn metadata(root: &Path) -> anyhow::Result<Value> {
    #[expect(
        clippy::disallowed_methods,
        reason = "xtask drives cargo itself; it is not ash runtime code"
    )]
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("parsing cargo metadata")
}

/// The workspace root (the parent of `xtask/`): where cargo says the package is as it runs
/// (a binary built in another checkout of the same sources may be reused from a shared target
/// directory), else where it was when built.
pub fn workspace_root() -> PathBuf {
    #[expect(
        clippy::disallowed_methods,
        reason = "xtask is development tooling run by cargo, not ash runtime code"
    )]
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// All problems in the repository.
pub fn tidy(root: &Path) -> anyhow::Result<Vec<String>> {
    let graph = Graph::from_metadata(&metadata(root)?)?;
    let mut problems = check_graph(&graph);
    problems.extend(check_files(root)?);
    Ok(problems)
}
