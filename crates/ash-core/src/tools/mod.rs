//! The tools a run's model may call: the built-ins (`bash`, `read_file`, `write_file`,
//! `activate_skill` alias `load_skill`) and the package's command tools.
//!
//! A [`Toolbox`] is compiled once per engine: definitions for the model and, per name, what runs
//! it with a compiled input validator. Every call parses the arguments, validates them against
//! the tool's JSON Schema, and only then runs; every failure becomes an [`Outcome`] error that
//! goes back to the model, never a panic or an engine error.

mod builtin;
mod command;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use ash_protocol::{ToolCall, ToolDefinition};
use ash_sandbox::{ExecRequest, Sandbox, SandboxPolicy};
use ash_spec::{Package, ToolKind};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

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
}

impl Outcome {
    pub(crate) fn ok(output: Value) -> Self {
        Self { output, error: None }
    }

    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self { output: Value::Null, error: Some(message.into()) }
    }

    /// The text the model sees.
    pub(crate) fn model_text(&self) -> String {
        match (&self.error, &self.output) {
            (Some(error), _) => error.clone(),
            (None, Value::String(text)) => text.clone(),
            (None, value) => value.to_string(),
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
}

/// The policy of a call in `workspace`: the template, plus the workspace writable and the
/// project read-only, with the project's `.ash/` (the store, other workspaces) and every other
/// workspace hidden.
pub(crate) fn call_policy(
    template: &SandboxPolicy,
    project_dir: &Path,
    workspaces_dir: &Path,
    workspace: &Path,
) -> SandboxPolicy {
    let mut policy = template.clone();
    policy.fs.read_only.push(project_dir.to_path_buf());
    policy.fs.hidden.push(project_dir.join(".ash"));
    policy.fs.hidden.push(workspaces_dir.to_path_buf());
    policy.fs.writable.push(workspace.to_path_buf());
    policy
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

enum Runner {
    Bash,
    ReadFile,
    WriteFile,
    EditFile,
    Search,
    Skill,
    Command { argv: Vec<String>, timeout: Duration },
}

struct Entry {
    runner: Runner,
    validator: jsonschema::Validator,
}

/// Skills a package offers.
#[derive(Debug, Clone)]
pub(crate) struct SkillEntry {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) body: String,
    pub(crate) files: Vec<String>,
}

/// The model-visible tools of one package.
pub(crate) struct Toolbox {
    definitions: Vec<ToolDefinition>,
    entries: HashMap<String, Entry>,
    skills: Vec<SkillEntry>,
}

/// A tool's schema failed to compile (the spec checked it, so this is a bug elsewhere).
#[derive(Debug, thiserror::Error)]
#[error("the input schema of tool `{tool}` does not compile: {reason}")]
pub struct SchemaError {
    tool: String,
    reason: String,
}

fn validator(tool: &str, schema: &Value) -> Result<jsonschema::Validator, SchemaError> {
    jsonschema::validator_for(schema)
        .map_err(|e| SchemaError { tool: tool.to_owned(), reason: e.to_string() })
}

impl Toolbox {
    /// Compiles the tools of `package`.
    /// The tools of `package`; `seeded`: skill files are copied into each workspace (else
    /// the skill tool gives the instructions only).
    pub(crate) fn new(package: &Package, seeded: bool) -> Result<Self, SchemaError> {
        let mut definitions = Vec::new();
        let mut entries = HashMap::new();
        let mut add = |name: &str, description: &str, schema: Value, runner: Runner| {
            let validator = validator(name, &schema)?;
            definitions.push(ToolDefinition {
                name: name.to_owned(),
                description: description.to_owned(),
                input_schema: schema,
            });
            entries.insert(name.to_owned(), Entry { runner, validator });
            Ok::<(), SchemaError>(())
        };
        add("bash", builtin::BASH_DESCRIPTION, builtin::bash_schema(), Runner::Bash)?;
        add("read_file", builtin::READ_DESCRIPTION, builtin::read_schema(), Runner::ReadFile)?;
        add("write_file", builtin::WRITE_DESCRIPTION, builtin::write_schema(), Runner::WriteFile)?;
        add("edit_file", builtin::EDIT_DESCRIPTION, builtin::edit_schema(), Runner::EditFile)?;
        add("search_files", builtin::SEARCH_DESCRIPTION, builtin::search_schema(), Runner::Search)?;
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
            let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
            add(
                ACTIVATE_SKILL,
                builtin::SKILL_DESCRIPTION,
                builtin::skill_schema(&names),
                Runner::Skill,
            )?;
        }
        // Tool kinds this runtime does not execute are left out; `crate::support` lists them.
        for tool in &package.tools {
            match &tool.kind {
                ToolKind::Command { argv, timeout_ms, sandbox: _ } => add(
                    &tool.name,
                    &tool.description,
                    tool.input_schema.clone(),
                    Runner::Command {
                        argv: argv.clone(),
                        timeout: Duration::from_millis(*timeout_ms),
                    },
                )?,
                ToolKind::Http { .. } => {}
            }
        }
        definitions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { definitions, entries, skills })
    }

    /// Tool definitions for the model, sorted by name.
    pub(crate) fn definitions(&self) -> &[ToolDefinition] {
        &self.definitions
    }

    /// Definitions of the built-in tools offered (not the package's own).
    pub(crate) fn builtins(&self) -> impl Iterator<Item = &ToolDefinition> {
        self.definitions.iter().filter(|d| {
            self.entries.get(&d.name).is_some_and(|e| !matches!(e.runner, Runner::Command { .. }))
        })
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
        let Some(entry) = self.entries.get(name) else {
            let known: Vec<&str> = self.definitions.iter().map(|d| d.name.as_str()).collect();
            return Outcome::error(format!(
                "unknown tool `{}`; available tools: {}",
                call.name,
                known.join(", ")
            ));
        };
        let input = match ash_llm::tool_input(call) {
            Ok(input) => input,
            Err(e) => return Outcome::error(format!("{e}; send the arguments as a JSON object")),
        };
        let value = Value::Object(input);
        let problems: Vec<String> = entry
            .validator
            .iter_errors(&value)
            .take(MAX_SCHEMA_ERRORS)
            .map(|e| {
                let at = e.instance_path().as_str();
                format!("at `{}`: {e}", if at.is_empty() { "/" } else { at })
            })
            .collect();
        if !problems.is_empty() {
            return Outcome::error(format!(
                "the input of `{name}` does not match its schema: {}",
                problems.join("; ")
            ));
        }
        let Value::Object(input) = value else { return Outcome::error("input is not an object") };
        match &entry.runner {
            Runner::Bash => builtin::bash(&input, ctx).await,
            Runner::ReadFile => builtin::read_file(&input, ctx).await,
            Runner::WriteFile => builtin::write_file(&input, ctx).await,
            Runner::EditFile => builtin::edit_file(&input, ctx).await,
            Runner::Search => builtin::search(&input, ctx).await,
            Runner::Skill => self.activate_skill(&input),
            Runner::Command { argv, timeout } => {
                command::run(name, argv, *timeout, &input, ctx).await
            }
        }
    }

    fn activate_skill(&self, input: &Map<String, Value>) -> Outcome {
        let name = input.get("name").and_then(Value::as_str).unwrap_or_default();
        match self.skills.iter().find(|s| s.name == name) {
            Some(skill) => Outcome::ok(json!({
                "name": skill.name,
                "instructions": skill.body,
                "files": skill.files,
            })),
            None => {
                let known: Vec<&str> = self.skills.iter().map(|s| s.name.as_str()).collect();
                Outcome::error(format!(
                    "unknown skill `{name}`; available skills: {}",
                    known.join(", ")
                ))
            }
        }
    }
}
