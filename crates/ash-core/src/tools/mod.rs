//! The tools a run's model may call: the built-ins (`bash`, `read_file`, `write_file`,
//! `activate_skill` alias `load_skill`) and the package's command tools.
//!
//! A [`Toolbox`] is compiled once per engine: definitions for the model and, per name, what runs
//! it with a compiled input validator. Every call parses the arguments, validates them against
//! the tool's JSON Schema, and only then runs; every failure becomes an [`Outcome`] error that
//! goes back to the model, never a panic or an engine error.

mod builtin;
mod command;
mod http;
mod mcp;
mod sandbox;
mod skill;
mod subagent;

pub(crate) use command::{broker_over_tcp, quote_part};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ash_protocol::{ToolCall, ToolDefinition, ToolImage};
use ash_sandbox::{ExecRequest, Sandbox, SandboxPolicy};
use ash_spec::{Package, ToolKind, ToolOrigin};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::connections::Connections;
use crate::workspace::Workspace;

/// Name of the skill tool.
pub(crate) const ACTIVATE_SKILL: &str = "activate_skill";
/// Older name of the skill tool, still accepted.
pub(crate) const LOAD_SKILL: &str = "load_skill";

/// Most validation errors listed back to the model for one call.
const MAX_SCHEMA_ERRORS: usize = 5;

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The result shown in events (and, serialised, to the model).
    pub(crate) output: Value,
    /// Set when the call failed; the model sees this text as an error.
    pub(crate) error: Option<String>,
    /// The text the model sees, when it is not `output` serialised (an MCP result's content).
    pub(crate) text: Option<String>,
    /// Images for the model (an MCP result's image content).
    pub(crate) images: Vec<ToolImage>,
    /// What a subagent's run spent (tokens, micro-USD), for this run's budget.
    pub(crate) child: Option<(ash_protocol::Usage, u64)>,
    /// The subagent paused: this run pauses with it instead of taking a result.
    pub(crate) paused: Option<Box<crate::subagents::ChildPause>>,
    /// Shutdown stopped it before its end: no result; it runs again after the restart.
    pub(crate) interrupted: bool,
    /// A delegation's `subagent.completed`, stored in the result's commit.
    pub(crate) completed: Option<SubagentNote>,
}

impl Outcome {
    pub(crate) fn ok(output: Value) -> Self {
        Self {
            output,
            error: None,
            text: None,
            images: Vec::new(),
            child: None,
            paused: None,
            interrupted: false,
            completed: None,
        }
    }

    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self { error: Some(message.into()), ..Self::ok(Value::Null) }
    }

    /// A call shutdown stopped before its end.
    pub(crate) fn interrupted() -> Self {
        Self { interrupted: true, ..Self::error("the server is shutting down") }
    }

    /// A delegation whose subagent paused.
    pub(crate) fn paused(pause: crate::subagents::ChildPause) -> Self {
        Self { paused: Some(Box::new(pause)), ..Self::ok(Value::Null) }
    }

    /// The text the model sees.
    pub(crate) fn model_text(&self) -> String {
        match (&self.error, &self.text, &self.output) {
            (Some(error), _, _) => error.clone(),
            (None, Some(text), _) => text.clone(),
            (None, None, Value::String(text)) => text.clone(),
            (None, None, value) => value.to_string(),
        }
    }
}

/// What one call may use.
pub(crate) struct CallContext<'a> {
    /// The session's workspace.
    pub(crate) workspace: &'a Workspace,
    /// The project directory; command argv paths starting with `./` are relative to it.
    pub(crate) project_dir: &'a Path,
    /// The `getSession()` JSON passed to command tools in `ASH_SESSION`.
    pub(crate) session: &'a Value,
    /// Base environment of every process.
    pub(crate) env: &'a BTreeMap<String, String>,
    /// Cancels the call.
    pub(crate) cancel: &'a CancellationToken,
    /// Where processes run.
    pub(crate) sandbox: &'a Sandbox,
    /// The policy of this call's processes (workspace writable, project read-only).
    pub(crate) policy: &'a SandboxPolicy,
    /// Where a tool reports what happens while it runs (`action.progress` and `sandbox.*`
    /// events).
    pub(crate) events: Option<&'a tokio::sync::mpsc::Sender<ToolEvent>>,
    /// How command tools reach the agent's connections (when it has any).
    pub(crate) broker: Option<&'a crate::connections::Broker>,
    /// The run's named sandboxes (when the agent has any).
    pub(crate) sandboxes: Option<&'a crate::sandboxes::Opened<'a>>,
    /// How a subagent's tool starts its child run.
    pub(crate) delegation: Option<&'a crate::subagents::Delegation<'a>>,
}

/// Something a running call reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolEvent {
    /// Progress (at most one stored per `PROGRESS_EVERY`).
    Progress(ToolProgress),
    /// A named sandbox's command (every one stored).
    Sandbox(SandboxNote),
    /// A subagent's run, inline (every one stored).
    Subagent(SubagentNote),
}

/// A delegation as a call reports it; the worker adds the call id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SubagentNote {
    /// The child run started or was re-attached to.
    Started { subagent: String, child_run_id: String, attempt: u32 },
    /// One of its events.
    Event { subagent: String, child_run_id: String, event: Box<ash_protocol::Event> },
    /// It ended.
    Completed {
        subagent: String,
        status: String,
        output: Option<String>,
        error: Option<String>,
        usage: ash_protocol::Usage,
    },
}

/// A named sandbox's command as a call reports it; the worker adds turn, step, call and
/// attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SandboxNote {
    /// It started.
    Command { sandbox: String, phase: ash_protocol::SandboxPhase, command: String },
    /// It printed.
    Output { sandbox: String, stream: ash_protocol::OutputStreamName, text: String },
    /// It ended.
    Exited {
        sandbox: String,
        phase: ash_protocol::SandboxPhase,
        exit_code: Option<i32>,
        limit: Option<String>,
        error: Option<String>,
        elapsed_ms: u64,
        cpu_time_ms: Option<u64>,
        peak_memory_bytes: Option<u64>,
        output_elided: bool,
    },
}

/// One progress report of a running call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolProgress {
    /// How far (increasing).
    pub(crate) progress: f64,
    /// Out of how much, when known.
    pub(crate) total: Option<f64>,
    /// What the tool says it is doing.
    pub(crate) message: Option<String>,
}

/// Where an engine keeps what tool processes must not see: the project's `.ash/` (the store,
/// other workspaces), the workspaces, the stdio servers' own directories and the named
/// sandboxes' directories.
pub(crate) struct PrivateDirs<'a> {
    pub(crate) project_dir: &'a Path,
    pub(crate) workspaces_dir: &'a Path,
    pub(crate) connections_dir: &'a Path,
    pub(crate) sandboxes_dir: &'a Path,
}

/// The policy of a call in `workspace`: the template, plus the workspace writable and the
/// project read-only, with the project's `.ash/` (the store, other workspaces), every other
/// workspace, every MCP server's directory and every named sandbox's directory hidden.
pub(crate) fn call_policy(
    template: &SandboxPolicy,
    dirs: &PrivateDirs<'_>,
    workspace: &Path,
) -> SandboxPolicy {
    let mut policy = template.clone();
    policy.fs.read_only.push(dirs.project_dir.to_path_buf());
    policy.fs.hidden.push(dirs.project_dir.join(".ash"));
    policy.fs.hidden.push(dirs.workspaces_dir.to_path_buf());
    policy.fs.hidden.push(dirs.connections_dir.to_path_buf());
    policy.fs.hidden.push(dirs.sandboxes_dir.to_path_buf());
    policy.fs.writable.push(workspace.to_path_buf());
    policy
}

/// `argv` as it runs: an argument starting with `./` (an authored `./` or `../` path, stored
/// project-relative by the compiler) resolved against `project_dir`; the rest as written.
pub(crate) fn project_argv(argv: &[String], project_dir: &Path) -> Vec<String> {
    argv.iter()
        .map(|arg| match arg.strip_prefix("./") {
            Some(rel) => project_dir.join(rel).display().to_string(),
            None => arg.clone(),
        })
        .collect()
}

impl CallContext<'_> {
    /// A request for `argv` in the workspace under this call's policy, with `wall_time` and
    /// `output_bytes` as its limits.
    pub(crate) fn request(
        &self,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        stdin: Vec<u8>,
        wall_time: Duration,
        output_bytes: usize,
    ) -> ExecRequest {
        let mut policy = self.policy.clone();
        policy.limits.wall_time = wall_time;
        policy.limits.output_bytes = output_bytes;
        ExecRequest { argv, cwd: self.workspace.root().to_path_buf(), env, stdin, policy }
    }
}

/// A future a tool call returns.
pub(crate) type CallFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// Whether a tool can be called now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Availability {
    /// It can.
    Available,
    /// It cannot (its server is down, still starting, or no longer offers it), and why.
    Unavailable(String),
}

/// One model-visible tool: its definition, its input check and its call. Built-ins, command
/// tools, HTTP tools and MCP tools are runners; the [`Registry`] holds them by name.
pub(crate) trait Runner: Send + Sync {
    /// The definition the model is offered (for a server's tool, the server's current one).
    fn definition(&self) -> ToolDefinition;
    /// Whether it can be called now.
    fn availability(&self) -> Availability {
        Availability::Available
    }
    /// What is wrong with `input` by the tool's input schema (at most a few problems).
    fn check(&self, input: &Value) -> Vec<String>;
    /// Runs one call whose input passed [`Runner::check`]; never fails, a failure is an
    /// [`Outcome`] error.
    fn call<'a>(&'a self, input: Map<String, Value>, ctx: &'a CallContext<'a>) -> CallFuture<'a>;
    /// Whether this is one of the runtime's own tools.
    fn is_builtin(&self) -> bool {
        false
    }
}

/// A JSON Schema and its compiled validator.
pub(crate) struct Schema {
    pub(crate) value: Value,
    validator: jsonschema::Validator,
}

impl Schema {
    pub(crate) fn compile(tool: &str, value: Value) -> Result<Self, SchemaError> {
        let validator = jsonschema::validator_for(&value)
            .map_err(|e| SchemaError { tool: tool.to_owned(), reason: e.to_string() })?;
        Ok(Self { value, validator })
    }

    /// At most [`MAX_SCHEMA_ERRORS`] problems of `input`, each with where it is.
    pub(crate) fn problems(&self, input: &Value) -> Vec<String> {
        self.validator
            .iter_errors(input)
            .take(MAX_SCHEMA_ERRORS)
            .map(|e| {
                let at = e.instance_path().as_str();
                format!("at `{}`: {e}", if at.is_empty() { "/" } else { at })
            })
            .collect()
    }
}

/// What a tool fixed when it was built is offered as: its name, description and input schema
/// (compiled). The built-in, skill, command and HTTP tools declare themselves this way; an MCP
/// tool's definition is its server's, as last listed.
pub(crate) struct Declared {
    name: String,
    description: String,
    schema: Schema,
}

impl Declared {
    pub(crate) fn new(
        name: &str,
        description: &str,
        input_schema: Value,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            schema: Schema::compile(name, input_schema)?,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The definition the model is offered.
    pub(crate) fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            input_schema: self.schema.value.clone(),
        }
    }

    /// What is wrong with `input` by the input schema.
    pub(crate) fn problems(&self, input: &Value) -> Vec<String> {
        self.schema.problems(input)
    }
}

/// Skills a package offers.
#[derive(Debug, Clone)]
pub(crate) struct SkillEntry {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) body: String,
    pub(crate) files: Vec<String>,
}

/// The model-visible tools of one package, by name: one list, built from the spec's
/// `model_tools()` plus the runtime's built-ins, that the model request, `ash info` and
/// `GET /info` all read.
pub(crate) struct Registry {
    runners: BTreeMap<String, Arc<dyn Runner>>,
    skills: Vec<SkillEntry>,
    /// Tools whose calls may wait for a person, by name.
    approvals: BTreeMap<String, ash_spec::Approval>,
    /// Subagents' tools: tool name → subagent id.
    subagents: BTreeMap<String, String>,
}

/// A tool's schema failed to compile (the spec checked it, so this is a bug elsewhere).
#[derive(Debug, thiserror::Error)]
#[error("the input schema of tool `{tool}` does not compile: {reason}")]
pub struct SchemaError {
    tool: String,
    reason: String,
}

impl Registry {
    /// The tools of `package`; `seeded`: skill files are copied into each workspace (else
    /// the skill tool gives the instructions only). `connections` runs the package's
    /// connection tools; without it (`ash info` offline) they show as not connected.
    pub(crate) fn new(
        package: &Package,
        agent: &str,
        seeded: bool,
        connections: Option<&Connections>,
    ) -> Result<Self, SchemaError> {
        let mut runners: BTreeMap<String, Arc<dyn Runner>> = BTreeMap::new();
        for builtin in builtin::Builtin::all()? {
            runners.insert(builtin.name().to_owned(), Arc::new(builtin));
        }
        let skills: Vec<SkillEntry> = package
            .skills
            .iter()
            .map(|s| SkillEntry {
                name: s.name.clone(),
                description: s.description.clone(),
                body: s.body.clone(),
                files: if seeded {
                    s.files.iter().map(|f| format!("skills/{f}")).collect()
                } else {
                    Vec::new()
                },
            })
            .collect();
        if !skills.is_empty() {
            let tool = skill::SkillTool::new(skills.clone())?;
            runners.insert(ACTIVATE_SKILL.to_owned(), Arc::new(tool));
        }
        let mut approvals = BTreeMap::new();
        let mut subagents = BTreeMap::new();
        for tool in package.model_tools() {
            let approval = match tool.origin {
                ToolOrigin::Authored(authored) => Some(&authored.approval),
                ToolOrigin::Sandbox(named) => Some(&named.approval),
                _ => None,
            };
            if let Some(approval) = approval.filter(|a| **a != ash_spec::Approval::Never) {
                approvals.insert(tool.name.clone(), approval.clone());
            }
            let runner: Arc<dyn Runner> = match tool.origin {
                ToolOrigin::Authored(authored) => match &authored.kind {
                    ToolKind::Command { argv, timeout_ms, sandbox, connections } => {
                        Arc::new(command::CommandTool::new(
                            authored,
                            argv,
                            *timeout_ms,
                            connections,
                            sandbox.as_deref(),
                        )?)
                    }
                    ToolKind::Http { connection, method, path, timeout_ms, response } => {
                        match connections.and_then(|c| c.http(connection)) {
                            Some(live) => Arc::new(http::HttpTool::new(
                                authored,
                                &http::HttpToolSpec {
                                    method: *method,
                                    path,
                                    timeout_ms: *timeout_ms,
                                    response: response.as_deref(),
                                },
                                Arc::clone(live),
                            )?),
                            // Offline (`ash info`): described by the spec's surface.
                            None => continue,
                        }
                    }
                },
                ToolOrigin::OpenApi { connection, operation } => {
                    match connections.and_then(|c| c.http(&connection.name)) {
                        Some(live) => Arc::new(http::HttpTool::operation(
                            &tool.name,
                            operation,
                            connection.timeout_ms,
                            Arc::clone(live),
                        )?),
                        None => continue,
                    }
                }
                ToolOrigin::Mcp { connection, remote_name } => Arc::new(mcp::McpTool::new(
                    &tool.name,
                    &connection.name,
                    remote_name,
                    connections.and_then(|c| c.mcp(&connection.name)).cloned(),
                )),
                ToolOrigin::Sandbox(named) => Arc::new(sandbox::SandboxTool::new(
                    &tool.name,
                    &named.name,
                    &named.description,
                    named.timeout_ms,
                )?),
                ToolOrigin::Subagent(sub) => {
                    let path = crate::agents::child_path(agent, &sub.id);
                    let description = sub.package.description.clone().unwrap_or_default();
                    let tool =
                        subagent::SubagentTool::new(&tool.name, &sub.id, &path, &description)?;
                    subagents.insert(tool.definition().name, tool.id().to_owned());
                    Arc::new(tool)
                }
            };
            runners.insert(tool.name.clone(), runner);
        }
        Ok(Self { runners, skills, approvals, subagents })
    }

    /// The subagent whose tool `name` is, if it is one.
    pub(crate) fn subagent(&self, name: &str) -> Option<&str> {
        self.subagents.get(name).map(String::as_str)
    }

    /// Why `call` must wait for a person's approval before it runs (`None`: it need not).
    pub(crate) fn approval_needed(&self, call: &ToolCall) -> Option<String> {
        let approval = self.approvals.get(&call.name)?;
        let input = serde_json::from_str::<Value>(&call.arguments).unwrap_or(Value::Null);
        approval.required(&input)
    }

    /// Definitions for the model, sorted by name. An unavailable tool is still offered, its
    /// description saying why it cannot be called now, so the model can tell the user.
    pub(crate) fn definitions(&self) -> Vec<ToolDefinition> {
        self.runners
            .values()
            .map(|runner| {
                let mut definition = runner.definition();
                if let Availability::Unavailable(why) = runner.availability() {
                    definition.description =
                        format!("UNAVAILABLE right now ({why}). {}", definition.description);
                }
                definition
            })
            .collect()
    }

    /// Every tool with its availability, sorted by name.
    pub(crate) fn states(&self) -> impl Iterator<Item = (&str, &dyn Runner)> {
        self.runners.iter().map(|(name, runner)| (name.as_str(), runner.as_ref()))
    }

    /// The tool named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&dyn Runner> {
        self.runners.get(name).map(AsRef::as_ref)
    }

    /// The skills catalogue.
    pub(crate) fn skills(&self) -> &[SkillEntry] {
        &self.skills
    }

    /// The name a call is recorded under: `load_skill` calls count as `activate_skill`.
    pub(crate) fn is_skill_call(name: &str) -> bool {
        name == ACTIVATE_SKILL || name == LOAD_SKILL
    }

    /// Runs one call to completion; never fails, a failure is an [`Outcome`] error.
    pub(crate) async fn call(&self, call: &ToolCall, ctx: &CallContext<'_>) -> Outcome {
        let name = if call.name == LOAD_SKILL { ACTIVATE_SKILL } else { call.name.as_str() };
        let Some(runner) = self.runners.get(name) else {
            let known: Vec<&str> = self.runners.keys().map(String::as_str).collect();
            return Outcome::error(format!(
                "unknown tool `{}`; available tools: {}",
                call.name,
                known.join(", ")
            ));
        };
        if let Availability::Unavailable(why) = runner.availability() {
            return Outcome::error(format!("tool `{name}` is unavailable right now: {why}"));
        }
        let input = match ash_llm::tool_input(call) {
            Ok(input) => input,
            Err(e) => return Outcome::error(format!("{e}; send the arguments as a JSON object")),
        };
        let value = Value::Object(input);
        let problems = runner.check(&value);
        if !problems.is_empty() {
            return Outcome::error(format!(
                "the input of `{name}` does not match its schema: {}",
                problems.join("; ")
            ));
        }
        let Value::Object(input) = value else { return Outcome::error("input is not an object") };
        runner.call(input, ctx).await
    }
}
