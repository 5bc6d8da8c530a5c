//! `AgentSpec::builder()`: authoring the same model in Rust.
//!
//! Owns the builder API and the checks a code-authored agent must pass, which are the directory
//! loader's checks (names, schemas, references, collisions) applied to values instead of files.
//! Problems are returned as diagnostics whose file is `<code>`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cron::CronExpr;
use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::load::{MAX_SUBAGENT_DEPTH, check_collisions, check_input_schema};
use crate::names::{is_agent_name, is_skill_name, is_slug, is_tool_name, lower_snake_case};
use crate::slots::{self, SlotDoc};
use crate::spec::{
    AgentSpec, AuthStrategy, Connection, ConnectionKind, DEFAULT_SANDBOX_TIMEOUT_MS,
    DEFAULT_TOOL_TIMEOUT_MS, Layout, Limits, ModelRef, Package, PromptLayer, Provider, Sandbox,
    SandboxBackend, Schedule, Skill, SkillKind, Source, Subagent, Tool, ToolKind,
};

const CODE: &str = "<code>";

/// Builds an [`AgentSpec`] in code. Every setter is infallible; [`AgentSpecBuilder::build`]
/// checks everything at once and returns all problems.
#[derive(Debug, Clone)]
pub struct AgentSpecBuilder {
    package: Package,
    subagents: Vec<(String, AgentSpecBuilder)>,
    problems: Vec<Diagnostic>,
}

impl AgentSpec {
    /// Starts an agent named `name`.
    ///
    /// ```
    /// use serde_json::json;
    /// let spec = ash_spec::AgentSpec::builder("weather-agent")
    ///     .model("openai/gpt-4.1-mini")
    ///     .system("You are a weather-focused assistant.")
    ///     .command_tool(
    ///         "get_weather",
    ///         "Get the current weather for a city.",
    ///         json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    ///         ["sh", "agent/lib/get-weather.sh"],
    ///     )
    ///     .build()
    ///     .expect("valid agent");
    /// assert_eq!(spec.root().model_tools()[0].name, "get_weather");
    /// ```
    pub fn builder(name: impl Into<String>) -> AgentSpecBuilder {
        AgentSpecBuilder {
            package: Package::empty(name),
            subagents: Vec::new(),
            problems: Vec::new(),
        }
    }
}

impl AgentSpecBuilder {
    fn problem(&mut self, message: String, doc: &SlotDoc) {
        self.problems.push(Diagnostic {
            severity: Severity::Error,
            code: "invalid-value",
            file: CODE.to_owned(),
            position: None,
            message,
            expected: doc.expected.to_owned(),
            example: doc.example.to_owned(),
        });
    }

    /// Sets the description (required for subagents).
    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.package.description = Some(text.into());
        self
    }

    /// Sets the model, `provider/model`.
    #[must_use]
    pub fn model(mut self, model: &str) -> Self {
        match ModelRef::parse(model) {
            Ok(parsed) => self.package.model = Some(parsed),
            Err(why) => self.problem(why, &slots::AGENT_TOML),
        }
        self
    }

    /// Adds a metadata entry.
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.package.metadata.insert(key.into(), value.into());
        self
    }

    /// Appends a prompt layer (the first call is the base prompt, like `system.md`).
    #[must_use]
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.package.prompt.push(PromptLayer { source: Source::Code, content: text.into() });
        self
    }

    /// Adds a flat skill.
    #[must_use]
    pub fn skill(mut self, name: &str, description: &str, body: &str) -> Self {
        self.package.skills.push(Skill {
            name: name.to_owned(),
            kind: SkillKind::Flat,
            description: description.to_owned(),
            body: body.to_owned(),
            files: vec![format!("{name}.md")],
            license: None,
            metadata: BTreeMap::new(),
            source: Source::Code,
        });
        self
    }

    /// Adds a command tool with the default timeout and no sandbox.
    #[must_use]
    pub fn command_tool<I, S>(
        self,
        name: &str,
        description: &str,
        input_schema: Value,
        argv: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tool(Tool {
            name: name.to_owned(),
            description: description.to_owned(),
            input_schema,
            kind: ToolKind::Command {
                argv: argv.into_iter().map(Into::into).collect(),
                timeout_ms: DEFAULT_TOOL_TIMEOUT_MS,
                sandbox: None,
                connections: Vec::new(),
            },
            approval: crate::spec::Approval::Never,
            source: Source::Code,
        })
    }

    /// Adds any tool.
    #[must_use]
    pub fn tool(mut self, tool: Tool) -> Self {
        self.package.tools.push(tool);
        self
    }

    /// Adds a sandbox named `name` (its tool becomes `<name>_sandbox`) with shell hooks.
    #[must_use]
    pub fn sandbox(
        mut self,
        name: &str,
        description: &str,
        bootstrap: &[&str],
        on_session: &[&str],
    ) -> Self {
        self.package.sandboxes.push(Sandbox {
            name: name.to_owned(),
            description: description.to_owned(),
            backend: SandboxBackend::Auto,
            image: None,
            bootstrap: bootstrap.iter().map(|s| (*s).to_owned()).collect(),
            on_session: on_session.iter().map(|s| (*s).to_owned()).collect(),
            timeout_ms: DEFAULT_SANDBOX_TIMEOUT_MS,
            network: crate::spec::ServerNetwork::None,
            limits: crate::spec::SandboxLimits::default(),
            approval: crate::spec::Approval::Never,
            source: Source::Code,
        });
        self
    }

    /// Adds a connection (root only).
    #[must_use]
    pub fn connection(mut self, connection: Connection) -> Self {
        self.package.connections.push(connection);
        self
    }

    /// Adds a schedule (root only).
    #[must_use]
    pub fn schedule(mut self, name: &str, cron: &str, prompt: &str) -> Self {
        match CronExpr::parse(cron) {
            Ok(cron) => self.package.schedules.push(Schedule {
                name: name.to_owned(),
                cron,
                prompt: prompt.to_owned(),
                source: Source::Code,
            }),
            Err(why) => self.problem(format!("schedule `{name}`: {why}"), &slots::SCHEDULE),
        }
        self
    }

    /// Adds a subagent package.
    #[must_use]
    pub fn subagent(mut self, id: &str, subagent: AgentSpecBuilder) -> Self {
        self.subagents.push((id.to_owned(), subagent));
        self
    }

    /// Adds an inbound auth strategy.
    #[must_use]
    pub fn auth(mut self, strategy: AuthStrategy) -> Self {
        self.package.auth.push(strategy);
        self
    }

    /// Adds an IP or CIDR range to the inbound allow list.
    #[must_use]
    pub fn allow_ip(mut self, net: &str) -> Self {
        match crate::ipnet::IpNet::parse(net) {
            Ok(net) => self.package.ip_allow_list.push(net),
            Err(why) => self.problem(why, &slots::NETWORK),
        }
        self
    }

    /// Sets the budgets.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.package.limits = limits;
        self
    }

    /// Declares a model provider.
    #[must_use]
    pub fn provider(mut self, name: &str, provider: Provider) -> Self {
        self.package.providers.insert(name.to_owned(), provider);
        self
    }

    /// Checks everything and returns the spec, or every problem found.
    pub fn build(self) -> Result<AgentSpec, Vec<Diagnostic>> {
        let mut diags = Diagnostics::default();
        let root = self.finish(&mut diags, 0, None);
        if diags.has_errors() {
            return Err(diags.into_sorted());
        }
        Ok(AgentSpec { layout: Layout::Code, root, files: BTreeMap::new() })
    }

    fn finish(
        self,
        diags: &mut Diagnostics,
        depth: usize,
        root_connections: Option<&[Connection]>,
    ) -> Package {
        let Self { mut package, subagents, problems } = self;
        for problem in problems {
            diags.push(problem);
        }
        let mut errors: Vec<(String, &'static SlotDoc)> = Vec::new();
        let mut err = |message: String, doc: &'static SlotDoc| errors.push((message, doc));
        if !is_agent_name(&package.name) {
            err(
                format!(
                    "agent name `{}` must be lowercase letters, digits, `-`, `_` or `.`",
                    package.name
                ),
                &slots::AGENT_TOML,
            );
        }
        if depth > 0 && package.description.as_deref().is_none_or(|d| d.trim().is_empty()) {
            err(format!("subagent `{}` needs a description", package.name), &slots::SUBAGENT);
        }
        if depth > 0 && !(package.connections.is_empty() && package.schedules.is_empty()) {
            err(
                format!("subagent `{}`: connections and schedules are root-only", package.name),
                &slots::LAYOUT,
            );
        }
        for skill in &package.skills {
            if !is_skill_name(&skill.name) {
                err(
                    format!(
                        "skill name `{}` must be lowercase letters, digits and single hyphens",
                        skill.name
                    ),
                    &slots::SKILL_FLAT,
                );
            }
            if package.skills.iter().filter(|s| s.name == skill.name).count() > 1 {
                err(format!("skill `{}` is defined twice", skill.name), &slots::SKILL_FLAT);
            }
        }
        for sandbox in &package.sandboxes {
            if !is_slug(&sandbox.name) {
                err(
                    format!(
                        "sandbox name `{}` must be lowercase letters, digits, `-` or `_`",
                        sandbox.name
                    ),
                    &slots::SANDBOX,
                );
            }
        }
        let connections = root_connections.unwrap_or(&package.connections);
        for tool in &package.tools {
            if !is_tool_name(&tool.name) {
                err(
                    format!("tool name `{}` must match ^[a-z][a-z0-9_]{{0,63}}$", tool.name),
                    &slots::TOOL_COMMAND,
                );
            }
            if let Err(why) = check_input_schema(&tool.input_schema) {
                err(format!("tool `{}`: {why}", tool.name), &slots::TOOL_COMMAND);
            }
            match &tool.kind {
                ToolKind::Command { argv, sandbox, .. } => {
                    if argv.first().is_none_or(|a| a.trim().is_empty()) {
                        err(
                            format!("tool `{}` has an empty command", tool.name),
                            &slots::TOOL_COMMAND,
                        );
                    }
                    if let Some(name) = sandbox
                        && !package.sandboxes.iter().any(|s| &s.name == name)
                    {
                        err(
                            format!("tool `{}` names unknown sandbox `{name}`", tool.name),
                            &slots::TOOL_COMMAND,
                        );
                    }
                }
                ToolKind::Http { connection, .. } => {
                    let is_http = connections.iter().any(|c| {
                        &c.name == connection && matches!(c.kind, ConnectionKind::Http { .. })
                    });
                    if !is_http {
                        err(
                            format!(
                                "tool `{}` names unknown http connection `{connection}`",
                                tool.name
                            ),
                            &slots::TOOL_HTTP,
                        );
                    }
                }
            }
        }
        for (id, child) in subagents {
            if depth + 1 > MAX_SUBAGENT_DEPTH {
                err(
                    format!("subagent `{id}` nests deeper than {MAX_SUBAGENT_DEPTH} levels"),
                    &slots::SUBAGENT,
                );
                continue;
            }
            if !is_slug(&id) || !is_tool_name(&lower_snake_case(&id)) {
                err(
                    format!("subagent id `{id}` must be a slug starting with a letter"),
                    &slots::SUBAGENT,
                );
                continue;
            }
            let child = child.finish(diags, depth + 1, Some(connections));
            package.subagents.push(Subagent { id, package: Box::new(child), source: Source::Code });
        }
        for (message, doc) in errors {
            diags.file(Severity::Error, "invalid-value", CODE, message, doc);
        }
        package.skills.sort_by(|a, b| a.name.cmp(&b.name));
        package.tools.sort_by(|a, b| a.name.cmp(&b.name));
        package.sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
        package.connections.sort_by(|a, b| a.name.cmp(&b.name));
        package.schedules.sort_by(|a, b| a.name.cmp(&b.name));
        package.subagents.sort_by(|a, b| a.id.cmp(&b.id));
        check_collisions(diags, &package);
        package
    }
}
