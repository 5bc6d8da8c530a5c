//! `activate_skill` (alias `load_skill`): a skill's instructions and the paths of its files.

use ash_protocol::ToolDefinition;
use serde_json::{Map, Value, json};

use super::{
    ACTIVATE_SKILL, CallContext, CallFuture, Declared, Outcome, Runner, SchemaError, SkillEntry,
};

pub(crate) const SKILL_DESCRIPTION: &str = "Load a skill's instructions by name before following \
it. Returns the instructions and the paths of the skill's files in the workspace.";

/// The skill tool of a package with skills.
pub(crate) struct SkillTool {
    skills: Vec<SkillEntry>,
    declared: Declared,
}

impl SkillTool {
    pub(crate) fn new(skills: Vec<SkillEntry>) -> Result<Self, SchemaError> {
        let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
        let schema = json!({
            "type": "object",
            "properties": { "name": { "type": "string", "enum": names } },
            "required": ["name"],
            "additionalProperties": false
        });
        let declared = Declared::new(ACTIVATE_SKILL, SKILL_DESCRIPTION, schema)?;
        Ok(Self { skills, declared })
    }

    fn activate(&self, input: &Map<String, Value>) -> Outcome {
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

impl Runner for SkillTool {
    fn definition(&self) -> ToolDefinition {
        self.declared.definition()
    }

    fn check(&self, input: &Value) -> Vec<String> {
        self.declared.problems(input)
    }

    fn call<'a>(&'a self, input: Map<String, Value>, _ctx: &'a CallContext<'a>) -> CallFuture<'a> {
        let outcome = self.activate(&input);
        Box::pin(async move { outcome })
    }

    fn is_builtin(&self) -> bool {
        true
    }
}
