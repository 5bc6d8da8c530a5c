//! Integration tests for ash-spec: fixtures in, rendered spec and diagnostics out.
//!
//! Every test goes through `check`, which writes a fixture, loads it with a fixed environment
//! and renders the result as stable text, so an API change edits one function.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod build;
mod builder;
mod hostile;
mod naming;
mod slots;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ash_spec::{LoadOptions, Loaded, Package, ToolKind, ToolOrigin};
use ash_test_support::Fixture;
use chrono::{DateTime, TimeZone as _, Utc};

/// The moment schedule fire times are computed from.
pub(crate) fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 11, 16, 0).single().unwrap()
}

/// The environment `${VAR}` references resolve against.
pub(crate) fn options() -> LoadOptions {
    let env: BTreeMap<String, String> = [
        ("ASH_BASIC_PASSWORD", "top-secret-password"),
        ("ASH_HMAC_SECRET", "0123456789abcdef0123456789abcdef-hmac"),
        ("MCP_TOKEN", "tok-very-secret"),
        ("EMPTY_VAR", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    LoadOptions { env }
}

pub(crate) fn load(fx: &Fixture) -> Loaded {
    ash_spec::load(fx.path(), &options()).unwrap()
}

/// Loads `fixture` and renders it.
pub(crate) fn check(fixture: &str) -> String {
    let fx = Fixture::new(fixture);
    render(&load(&fx))
}

/// The spec as short lines, then one line per diagnostic.
pub(crate) fn render(loaded: &Loaded) -> String {
    let mut out = String::new();
    let spec = loaded.spec();
    let _ = writeln!(out, "layout {}", spec.layout().as_str());
    render_package(&mut out, spec.root(), "");
    out.push_str("--\n");
    out.push_str(&diagnostics(loaded));
    out
}

pub(crate) fn diagnostics(loaded: &Loaded) -> String {
    let mut out = String::new();
    for d in loaded.diagnostics() {
        let severity = match d.severity {
            ash_spec::Severity::Error => "error",
            ash_spec::Severity::Warning => "warning",
        };
        let at = d.position.map_or(String::new(), |p| format!(":{}:{}", p.line, p.column));
        let _ = writeln!(out, "{severity}[{}] {}{at}: {}", d.code, d.file, d.message);
    }
    out
}

fn render_package(out: &mut String, p: &Package, indent: &str) {
    let model = p.model.as_ref().map_or("-".to_owned(), ToString::to_string);
    // A name defaulted from the temporary directory is random; show that it was defaulted.
    let name = if p.name.starts_with("ash-fixture-") { "<dir-name>" } else { p.name.as_str() };
    let _ = writeln!(out, "{indent}agent {name} model={model}");
    if let Some(desc) = &p.description {
        let _ = writeln!(out, "{indent}  description: {desc}");
    }
    for layer in &p.prompt {
        let _ = writeln!(
            out,
            "{indent}  prompt {}: {:?}",
            layer.source.display(),
            layer.content.trim()
        );
    }
    for s in &p.skills {
        let _ = writeln!(
            out,
            "{indent}  skill {} ({:?}): {} files={:?}",
            s.name, s.kind, s.description, s.files
        );
    }
    for t in p.model_tools() {
        let what = match t.origin {
            ToolOrigin::Authored(tool) => match &tool.kind {
                ToolKind::Command { argv, timeout_ms, sandbox, .. } => {
                    format!("command {argv:?} timeout={timeout_ms} sandbox={sandbox:?}")
                }
                ToolKind::Http { connection, method, path, .. } => {
                    format!("http {} {path} via {connection}", method.as_str())
                }
            },
            ToolOrigin::Sandbox(s) => format!("sandbox {}", s.name),
            ToolOrigin::Mcp { connection, remote_name } => {
                format!("mcp {}.{remote_name}", connection.name)
            }
            ToolOrigin::OpenApi { connection, operation } => {
                format!("openapi {}.{}", connection.name, operation.id)
            }
            ToolOrigin::Subagent(s) => format!("subagent {}", s.id),
        };
        let _ = writeln!(out, "{indent}  tool {}: {what}", t.name);
    }
    for c in &p.connections {
        let _ = writeln!(out, "{indent}  connection {}", c.name);
    }
    for s in &p.schedules {
        let next = s.cron.next_after(fixed_now()).map_or("never".to_owned(), |t| t.to_rfc3339());
        let _ = writeln!(out, "{indent}  schedule {} {:?} next={next}", s.name, s.cron.as_str());
    }
    if let Some(lib) = &p.lib {
        let _ = writeln!(out, "{indent}  lib {lib}");
    }
    for s in &p.subagents {
        let _ = writeln!(out, "{indent}  subagent {} (tool {}):", s.id, s.tool_name());
        render_package(out, &s.package, &format!("{indent}    "));
    }
}

/// The surface as JSON with a fixed `now`.
pub(crate) fn surface_json(loaded: &Loaded) -> serde_json::Value {
    serde_json::to_value(loaded.spec().surface(Some(fixed_now()))).unwrap()
}

/// Loads `fixture` and returns the spec, failing the test on any error.
pub(crate) fn check_spec(fixture: &str) -> ash_spec::AgentSpec {
    let fx = Fixture::new(fixture);
    match load(&fx).into_result() {
        Ok((spec, _)) => spec,
        Err(diagnostics) => panic!("unexpected errors: {diagnostics:#?}"),
    }
}
