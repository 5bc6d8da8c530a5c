//! The delegation tool of a subagent (`subagents/<id>/`): the model gives it a task, the
//! subagent works on it as a child run, and its final reply is the result.

use ash_protocol::ToolDefinition;
use serde_json::{Map, Value};

use super::{CallContext, CallFuture, Declared, Outcome, Runner, SchemaError};

/// A subagent's tool.
pub(crate) struct SubagentTool {
    declared: Declared,
    /// The subagent's id.
    id: String,
    /// Its path among the engine's agents.
    path: String,
}

impl SubagentTool {
    pub(crate) fn new(
        tool: &str,
        id: &str,
        path: &str,
        description: &str,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            declared: Declared::new(tool, description, ash_spec::subagent_input_schema())?,
            id: id.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The subagent's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Runner for SubagentTool {
    fn definition(&self) -> ToolDefinition {
        self.declared.definition()
    }

    fn check(&self, input: &Value) -> Vec<String> {
        self.declared.problems(input)
    }

    fn call<'a>(&'a self, input: Map<String, Value>, ctx: &'a CallContext<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let Some(delegation) = ctx.delegation else {
                return Outcome::error(format!("subagent `{}` cannot be reached here", self.id));
            };
            let message =
                input.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
            if message.trim().is_empty() {
                return Outcome::error("`message` is empty; give the subagent its task");
            }
            delegation.run(&self.id, &self.path, message, ctx.events, ctx.cancel).await
        })
    }
}
