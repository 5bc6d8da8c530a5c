//! What of an agent this runtime executes, and what it only parses.
//!
//! Owns the list of configured items the engine does not run yet (a command tool in a named
//! sandbox that lists connections) and the runtime's view of the agent surface: the tools the model is
//! really offered, built-ins included. [`crate::Engine::start`] refuses an agent with such
//! items unless [`crate::EngineConfig::allow_unsupported`] says to run without them; `ash info`
//! and `GET /info` show this same list, so what they show is what runs.

use ash_protocol::{AgentSurface, ToolInfo, UnsupportedInfo};
use ash_spec::{AgentSpec, ToolKind};
use chrono::{DateTime, Utc};

use crate::tools::{Availability, Registry};

/// The items of `spec` this runtime parses but does not execute, in file order.
pub fn unsupported(spec: &AgentSpec) -> Vec<UnsupportedInfo> {
    let root = spec.root();
    let mut out = Vec::new();
    let mut push = |source: &str, item: String, reason: String, tools: Vec<String>| {
        out.push(UnsupportedInfo { source: source.to_owned(), item, reason, tools });
    };
    let mut packages = vec![root];
    let mut at = 0;
    while let Some(package) = packages.get(at).copied() {
        packages.extend(package.subagents.iter().map(|s| s.package.as_ref()));
        at += 1;
    }
    for tool in packages.iter().flat_map(|p| &p.tools) {
        match &tool.kind {
            ToolKind::Command { sandbox: Some(sandbox), connections, .. }
                if !connections.is_empty() =>
            {
                push(
                    tool.source.display(),
                    format!("tools/{}.connections", tool.name),
                    format!(
                        "a command tool in a named sandbox (`{sandbox}`) cannot reach connections yet; `{}` would run without them",
                        tool.name
                    ),
                    Vec::new(),
                );
            }
            ToolKind::Command { .. } | ToolKind::Http { .. } => {}
        }
    }
    out
}

/// The agent surface as this runtime runs it, offline (no connection is started, so their
/// tools show as not connected): the authored surface plus the built-in tools, the names of
/// the tools the model is offered, and the unsupported items. `now` fixes the schedules' next
/// fire times.
pub fn runtime_surface(spec: &AgentSpec, now: Option<DateTime<Utc>>) -> AgentSurface {
    let offline = crate::connections::Connections::offline(spec.root()).unwrap_or_default();
    match Registry::new(spec.root(), "", true, Some(&offline)) {
        Ok(registry) => surface_of(spec, &registry, now),
        // The spec's schemas were checked when it was built, so this does not happen.
        Err(_) => {
            let mut surface = spec.surface(now);
            surface.unsupported = unsupported(spec);
            surface
        }
    }
}

/// The agent surface with every MCP connection started and asked for its tools (`ash info
/// --connect`): each allow-listed tool with the server's description and schema, or why it
/// is unavailable. Waits at most `within` for the servers, then stops them.
pub async fn connected_surface(
    spec: &AgentSpec,
    config: &crate::EngineConfig,
    now: Option<DateTime<Utc>>,
    within: std::time::Duration,
) -> AgentSurface {
    let Ok(connections) = crate::connections::Connections::new(spec.root()) else {
        return runtime_surface(spec, now);
    };
    let Ok(registry) = Registry::new(spec.root(), "", true, Some(&connections)) else {
        return runtime_surface(spec, now);
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let stop = tokio_util::sync::CancellationToken::new();
    connections.start(crate::connections::Launcher::new(config), &tasks, &stop);
    connections.settled(within).await;
    let surface = surface_of(spec, &registry, now);
    stop.cancel();
    tasks.close();
    // Each supervisor ends its server within a few seconds; more is not waited for.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait()).await;
    surface
}

/// The surface of `spec` with the tools as `registry` offers them: the model request, `ash
/// info` and `GET /info` read this one list.
pub(crate) fn surface_of(
    spec: &AgentSpec,
    registry: &Registry,
    now: Option<DateTime<Utc>>,
) -> AgentSurface {
    let mut surface = spec.surface(now);
    for (_, runner) in registry.states().filter(|(_, runner)| runner.is_builtin()) {
        let builtin = runner.definition();
        surface.tools.push(ToolInfo::Builtin {
            name: builtin.name,
            description: builtin.description,
            input_schema: builtin.input_schema,
        });
    }
    for tool in &mut surface.tools {
        if let ToolInfo::Mcp { name, description, input_schema, unavailable, .. } = tool
            && let Some(runner) = registry.get(name)
        {
            match runner.availability() {
                Availability::Available => {
                    let definition = runner.definition();
                    *description = Some(definition.description);
                    *input_schema = Some(definition.input_schema);
                }
                Availability::Unavailable(why) => *unavailable = Some(why),
            }
        }
    }
    surface.tools.sort_by(|a, b| tool_name(a).cmp(tool_name(b)));
    surface.offered_tools = registry.states().map(|(name, _)| name.to_owned()).collect();
    surface.unsupported = unsupported(spec);
    surface
}

/// A tool's model-visible name.
pub fn tool_name(tool: &ToolInfo) -> &str {
    match tool {
        ToolInfo::Builtin { name, .. }
        | ToolInfo::Command { name, .. }
        | ToolInfo::Sandbox { name, .. }
        | ToolInfo::Mcp { name, .. }
        | ToolInfo::Subagent { name, .. } => name,
        ToolInfo::Http(http) => &http.name,
    }
}
