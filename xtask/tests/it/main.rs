//! Tidy: the repository keeps the rules of ARCHITECTURE.md, and the checks catch breaks.

use serde_json::json;

#[test]
fn the_repository_is_tidy() {
    let problems = xtask::tidy(&xtask::workspace_root()).unwrap();
    assert!(problems.is_empty(), "tidy problems:\n{}", problems.join("\n"));
}

/// A package and its dependencies with their kind (`None` normal, `Some("dev")`).
type Package<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)]);

/// Builds `cargo metadata`-shaped JSON.
fn metadata(packages: &[Package<'_>], members: &[&str]) -> serde_json::Value {
    let id = |name: &str| format!("{name} 0.1.0");
    let pkgs: Vec<_> = packages
        .iter()
        .map(|(name, deps)| {
            json!({
                "id": id(name),
                "name": name,
                "dependencies": deps.iter().map(|(d, kind)| json!({"name": d, "kind": kind})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let nodes: Vec<_> = packages
        .iter()
        .map(|(name, deps)| {
            json!({
                "id": id(name),
                "deps": deps.iter().map(|(d, kind)| json!({"name": d, "pkg": id(d), "dep_kinds": [{"kind": kind}]})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "packages": pkgs,
        "workspace_members": members.iter().map(|m| id(m)).collect::<Vec<_>>(),
        "resolve": { "nodes": nodes },
    })
}

#[test]
fn broken_rules_are_reported() {
    let meta = metadata(
        &[
            ("ash-spec", &[("ash-protocol", None), ("helper", None)]),
            ("helper", &[("tokio", None)]),
            ("tokio", &[]),
            ("ash-protocol", &[("axum", None)]),
            ("axum", &[]),
            ("ash-core", &[("ash-store", None), ("ash-test-support", None), ("ash-server", None)]),
            ("ash-store", &[]),
            ("ash-server", &[]),
            ("ash-test-support", &[]),
            ("ash-cli", &[("clap", None), ("ash-server", None), ("ash-test-support", Some("dev"))]),
            ("clap", &[]),
        ],
        &[
            "ash-spec",
            "ash-protocol",
            "ash-core",
            "ash-store",
            "ash-server",
            "ash-test-support",
            "ash-cli",
        ],
    );
    let graph = xtask::Graph::from_metadata(&meta).unwrap();
    let problems = xtask::check_graph(&graph);
    assert_eq!(
        problems,
        [
            "ash-protocol depends on axum, which only ash-server, ash-test-support may use",
            "foundation crate ash-protocol pulls in axum",
            "foundation crate ash-spec pulls in tokio",
            "foundation crate ash-spec pulls in axum",
            "ash-core must not depend on ash-store",
            "ash-core depends on the edge crate ash-server; only ash-cli may",
            "ash-core depends on ash-test-support outside dev-dependencies",
        ]
    );
}

#[test]
fn files_without_headers_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("crates/x/src")).unwrap();
    std::fs::write(dir.path().join("crates/x/src/lib.rs"), "//! Owns x.\npub fn x() {}\n").unwrap();
    std::fs::write(dir.path().join("crates/x/src/bad.rs"), "// not a module doc\nfn y() {}\n")
        .unwrap();
    let problems = xtask::check_files(dir.path()).unwrap();
    assert_eq!(
        problems,
        ["crates/x/src/bad.rs: does not start with a `//!` header saying what it owns"]
    );
}
