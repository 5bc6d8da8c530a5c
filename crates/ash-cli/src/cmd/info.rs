//! `ash info`: load an agent directory and show its resolved surface and diagnostics.
//!
//! Text and `--json` render the same `InfoOutput`, so they cannot disagree.

use std::fmt::Write as _;

use anyhow::Context as _;
use ash_protocol::{AgentSurface, InfoOutput, MANIFEST_FORMAT_VERSION, ToolInfo};
use chrono::{DateTime, Utc};

use std::time::Duration;

use crate::cli::{AgentDirArgs, InfoArgs};
use crate::cmd::Outcome;
use crate::{config, output};

/// How long `--connect` waits for the servers.
const CONNECT_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn run(args: &InfoArgs) -> anyhow::Result<Outcome> {
    let AgentDirArgs { dir, json } = &args.agent;
    let loaded = ash_spec::load(dir, &config::load_options())
        .with_context(|| format!("loading the agent in {}", dir.display()))?;
    let mut info = info_output(&loaded, Utc::now());
    if args.connect && !loaded.has_errors() {
        let state = tempfile::Builder::new().prefix("ash-info-").tempdir()?;
        let runtime = crate::cmd::start::runtime()?;
        info.agent = runtime.block_on(async {
            let config = crate::cmd::harness::tool_config(
                dir,
                state.path(),
                args.sandbox,
                ash_sandbox::NetPolicy::None,
            )
            .await?;
            output::note("starting the agent's MCP servers to ask for their tools…");
            let surface =
                ash_core::connected_surface(loaded.spec(), &config, Some(Utc::now()), CONNECT_WAIT)
                    .await;
            anyhow::Ok(surface)
        })?;
    }
    if *json {
        output::json(&info)?;
    } else {
        output::stdout(&render(&info));
    }
    Ok(if info.ok { Outcome::Success } else { Outcome::Failure })
}

/// The `--json` document; `now` fixes the schedules' next fire times.
pub(crate) fn info_output(loaded: &ash_spec::Loaded, now: DateTime<Utc>) -> InfoOutput {
    let spec = loaded.spec();
    InfoOutput {
        format_version: MANIFEST_FORMAT_VERSION,
        layout: spec.layout().as_str().to_owned(),
        agent_root: spec.layout().agent_root().to_owned(),
        ok: !loaded.has_errors(),
        agent: ash_core::runtime_surface(spec, Some(now)),
        diagnostics: loaded.diagnostics().iter().map(ash_spec::Diagnostic::to_info).collect(),
    }
}

/// The text rendering.
pub(crate) fn render(info: &InfoOutput) -> String {
    let mut out = String::new();
    let root = if info.agent_root == "." {
        "the directory itself".to_owned()
    } else {
        format!("{}/", info.agent_root)
    };
    let _ = writeln!(out, "agent {} ({} layout: {root})", info.agent.name, info.layout);
    render_surface(&mut out, &info.agent, "");
    out.push('\n');
    let n_errors =
        info.diagnostics.iter().filter(|d| d.severity == ash_protocol::SeverityInfo::Error).count();
    let n_warnings = info.diagnostics.len() - n_errors;
    if info.diagnostics.is_empty() {
        out.push_str("diagnostics: none\n");
    } else {
        let _ = writeln!(out, "diagnostics: {n_errors} error(s), {n_warnings} warning(s)");
        for d in &info.diagnostics {
            let severity = match d.severity {
                ash_protocol::SeverityInfo::Error => "error",
                ash_protocol::SeverityInfo::Warning => "warning",
            };
            let at = match (d.line, d.column) {
                (Some(l), Some(c)) => format!(":{l}:{c}"),
                _ => String::new(),
            };
            let _ = writeln!(out, "{severity}[{}]: {}{at}: {}", d.code, d.file, d.message);
            let _ = writeln!(out, "  expected: {}", d.expected);
            out.push_str("  example:\n");
            for line in d.example.lines() {
                let _ = writeln!(out, "    | {line}");
            }
        }
    }
    out
}

fn render_surface(out: &mut String, a: &AgentSurface, indent: &str) {
    if let Some(desc) = &a.description {
        let _ = writeln!(out, "{indent}  {desc}");
    }
    let _ = writeln!(
        out,
        "{indent}  model: {}",
        a.model.as_deref().unwrap_or("(not set; subagents inherit the parent's)")
    );
    for (k, v) in &a.metadata {
        let _ = writeln!(out, "{indent}  metadata {k}: {v}");
    }

    section(out, indent, "prompt layers", a.prompt.len());
    for (idx, layer) in a.prompt.iter().enumerate() {
        let _ = writeln!(
            out,
            "{indent}  {}. {} ({} bytes)",
            idx + 1,
            layer.source,
            layer.content.len()
        );
    }

    section(out, indent, "skills", a.skills.len());
    for s in &a.skills {
        let _ = writeln!(out, "{indent}  {}  {}", s.name, s.description);
        let _ = writeln!(
            out,
            "{indent}      {} skill, {} file(s) seeded: {}",
            s.kind,
            s.files.len(),
            s.source
        );
    }

    section(out, indent, "tools", a.tools.len());
    for t in &a.tools {
        match t {
            ToolInfo::Builtin { name, description, .. } => {
                let first = description.split(". ").next().unwrap_or(description);
                let _ =
                    writeln!(out, "{indent}  {name}  built-in  {}", first.trim_end_matches('.'));
            }
            ToolInfo::Command {
                name,
                description,
                input_schema,
                argv,
                timeout_ms,
                sandbox,
                ..
            } => {
                let _ = writeln!(out, "{indent}  {name}  command  {description}");
                let place = sandbox.as_ref().map_or(String::new(), |s| format!(" in sandbox {s}"));
                let _ = writeln!(
                    out,
                    "{indent}      runs: {}{place} (timeout {timeout_ms} ms)",
                    argv.join(" ")
                );
                let _ = writeln!(out, "{indent}      input: {input_schema}");
            }
            ToolInfo::Http(h) => {
                let _ = writeln!(out, "{indent}  {}  http  {}", h.name, h.description);
                let _ = writeln!(
                    out,
                    "{indent}      calls: {} {} on connection {} (timeout {} ms)",
                    h.method, h.path, h.connection, h.timeout_ms
                );
                let _ = writeln!(out, "{indent}      input: {}", h.input_schema);
            }
            ToolInfo::Sandbox { name, description, sandbox, .. } => {
                let _ = writeln!(out, "{indent}  {name}  sandbox  {description}");
                let _ = writeln!(out, "{indent}      runs a shell command in sandbox {sandbox}");
            }
            ToolInfo::Mcp {
                name,
                connection,
                remote_name,
                description,
                input_schema,
                unavailable,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "{indent}  {name}  mcp  tool `{remote_name}` of connection {connection}"
                );
                if let Some(description) = description {
                    let _ = writeln!(out, "{indent}      {}", description.trim());
                }
                if let Some(schema) = input_schema {
                    let _ = writeln!(out, "{indent}      input: {schema}");
                }
                if let Some(why) = unavailable {
                    let _ = writeln!(out, "{indent}      UNAVAILABLE: {why}");
                }
            }
            ToolInfo::Subagent { name, description, subagent, .. } => {
                let _ = writeln!(out, "{indent}  {name}  subagent  {description}");
                let _ = writeln!(out, "{indent}      delegates to subagents/{subagent}");
            }
        }
        let name = ash_core::tool_name(t);
        if let Some(item) = a.unsupported.iter().find(|u| u.tools.iter().any(|n| n == name)) {
            let _ = writeln!(out, "{indent}      NOT OFFERED: {}", item.reason);
        }
    }
    if indent.is_empty() && !a.offered_tools.is_empty() {
        let _ = writeln!(out, "  the model is offered: {}", a.offered_tools.join(", "));
    }

    section(out, indent, "sandboxes", a.sandboxes.len());
    for s in &a.sandboxes {
        let _ = writeln!(
            out,
            "{indent}  {} -> {}  backend {}, {} bootstrap and {} on_session command(s), timeout {} ms",
            s.name,
            s.tool_name,
            s.backend,
            s.bootstrap.len(),
            s.on_session.len(),
            s.timeout_ms
        );
        let _ = writeln!(out, "{indent}      template {}", s.template_key);
    }

    section(out, indent, "connections", a.connections.len());
    for c in &a.connections {
        let target = match (&c.transport, &c.base_url) {
            (Some(ash_protocol::TransportInfo::StreamableHttp { url }), _) => {
                format!("streamable-http {url}")
            }
            (Some(ash_protocol::TransportInfo::Stdio { command, env, network, .. }), _) => {
                let network = match network {
                    ash_protocol::ServerNetworkInfo::None => "no network".to_owned(),
                    ash_protocol::ServerNetworkInfo::Full => "full network".to_owned(),
                    ash_protocol::ServerNetworkInfo::Allow { hosts } => {
                        format!("network {}", hosts.join(", "))
                    }
                };
                let env: Vec<&str> = env.keys().map(String::as_str).collect();
                let env =
                    if env.is_empty() { String::new() } else { format!(", env {}", env.join(" ")) };
                format!("stdio {} ({network}{env})", command.join(" "))
            }
            (None, Some(url)) => url.clone(),
            (None, None) => String::new(),
        };
        let _ = writeln!(out, "{indent}  {}  {}  {target}", c.name, c.kind);
        let _ = writeln!(
            out,
            "{indent}      timeout {} ms, {} retr{}",
            c.policy.timeout_ms,
            c.policy.retry_attempts,
            if c.policy.retry_attempts == 1 { "y" } else { "ies" }
        );
    }

    section(out, indent, "schedules", a.schedules.len());
    for s in &a.schedules {
        let next = s.next_fire_at.as_deref().unwrap_or("never");
        let _ = writeln!(out, "{indent}  {}  {}  next {next}", s.name, s.cron);
    }

    section(out, indent, "subagents", a.subagents.len());
    for s in &a.subagents {
        let _ = writeln!(out, "{indent}  └─ {} (tool {}, {})", s.id, s.tool_name, s.source);
        render_surface(out, &s.agent, &format!("{indent}     "));
    }

    let l = &a.limits;
    let limits: Vec<String> = [
        ("max_steps_per_turn", l.max_steps_per_turn.map(u64::from)),
        ("max_input_tokens_per_session", l.max_input_tokens_per_session),
        ("max_output_tokens_per_session", l.max_output_tokens_per_session),
        ("max_cost_micro_usd_per_session", l.max_cost_micro_usd_per_session),
        ("session_timeout_ms", l.session_timeout_ms),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
    .collect();
    if !limits.is_empty() {
        let _ = writeln!(out, "{indent}limits: {}", limits.join(", "));
    }
    for (name, p) in &a.providers {
        let base = p.base_url.as_deref().unwrap_or("default URL");
        let key = p.api_key_env.as_deref().map_or(String::new(), |k| format!(", key from ${k}"));
        let _ = writeln!(out, "{indent}provider {name}: {} API at {base}{key}", p.api);
    }
    if let Some(lib) = &a.lib {
        let _ = writeln!(out, "{indent}lib: {lib} (never mounted into workspaces)");
    }
    if !a.network.ip_allow_list.is_empty() {
        let _ = writeln!(out, "{indent}ip allow list: {}", a.network.ip_allow_list.join(", "));
    }
    if !a.network.trusted_proxies.is_empty() {
        let _ = writeln!(out, "{indent}trusted proxies: {}", a.network.trusted_proxies.join(", "));
    }
    if !a.auth.strategies.is_empty() {
        let kinds: Vec<&str> = a
            .auth
            .strategies
            .iter()
            .map(|s| match s {
                ash_protocol::AuthStrategyInfo::HttpBasic { .. } => "http-basic",
                ash_protocol::AuthStrategyInfo::JwtHmac { .. } => "jwt-hmac",
                ash_protocol::AuthStrategyInfo::JwtEcdsa { .. } => "jwt-ecdsa",
                ash_protocol::AuthStrategyInfo::Oidc { .. } => "oidc",
            })
            .collect();
        let _ = writeln!(out, "{indent}auth: {} (enforced on every route)", kinds.join(", "));
    }
    if !a.unsupported.is_empty() {
        let _ = writeln!(
            out,
            "\nnot executed by this runtime ({}); `ash start`, `ash dev` and `ash exec` refuse to run until they are removed, or run without them with --allow-unsupported:",
            a.unsupported.len()
        );
        for u in &a.unsupported {
            let _ = writeln!(out, "  {}: `{}`: {}", u.source, u.item, u.reason);
        }
    }
}

fn section(out: &mut String, indent: &str, title: &str, n: usize) {
    if indent.is_empty() {
        out.push('\n');
    }
    if n == 0 {
        let _ = writeln!(out, "{indent}{title}: none");
    } else {
        let _ = writeln!(out, "{indent}{title} ({n}):");
    }
}
