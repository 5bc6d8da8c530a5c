//! Rendering run events for people: what `ash dev` and `ash exec` print while a turn runs.

use ash_protocol::{Action, ActionOutput, ActionStatus, EventBody, FinishReason, SandboxPhase};
use serde_json::Value;

/// Characters of a tool input or output shown inline.
const PREVIEW_CHARS: usize = 240;

/// What to print for one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Lines {
    /// The agent's reply text (stdout).
    pub(crate) reply: Option<String>,
    /// Progress for people (stderr).
    pub(crate) progress: Vec<String>,
}

fn preview(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let one_line = text.replace('\n', "⏎");
    let mut short: String = one_line.chars().take(PREVIEW_CHARS).collect();
    if one_line.chars().nth(PREVIEW_CHARS).is_some() {
        short.push('…');
    }
    short
}

/// The lines an event produces. `narration_as_reply` prints text that precedes tool calls as
/// a reply too (the REPL does; `ash exec` keeps stdout for the final answer).
pub(crate) fn lines(body: &EventBody, narration_as_reply: bool) -> Lines {
    let mut out = Lines::default();
    match body {
        EventBody::MessageCompleted(m) => {
            if m.finish_reason != FinishReason::ToolCalls || narration_as_reply {
                out.reply = Some(m.message.clone());
            } else {
                out.progress.push(m.message.clone());
            }
        }
        EventBody::ThinkingCompleted(t) => {
            out.progress.push(format!("(thinking) {}", preview(&Value::String(t.text.clone()))))
        }
        EventBody::ActionsRequested(requested) => {
            for action in &requested.actions {
                out.progress.push(match action {
                    Action::ToolCall { tool_name, input, .. } => {
                        format!("→ {tool_name} {}", preview(input))
                    }
                    Action::LoadSkill { input, .. } => format!("→ skill {}", preview(input)),
                    Action::SubagentCall { name, input, .. } => {
                        format!("→ subagent {name} {}", preview(input))
                    }
                });
            }
        }
        EventBody::ActionProgress(p) => {
            let total = p.total.map(|t| format!("/{t}")).unwrap_or_default();
            let message = p.message.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
            out.progress.push(format!("  … {}{total}{message}", p.progress));
        }
        EventBody::ActionResult(result) => {
            let (name, output) = match &result.result {
                ActionOutput::ToolResult { tool_name, output } => {
                    (tool_name.as_str(), preview(output))
                }
                ActionOutput::LoadSkillResult { name } => (name.as_str(), "loaded".to_owned()),
                ActionOutput::SubagentResult { subagent_name, output } => {
                    (subagent_name.as_str(), preview(output))
                }
            };
            let attempt = if result.attempt > 1 {
                format!(" (attempt {})", result.attempt)
            } else {
                String::new()
            };
            out.progress.push(match (&result.status, &result.error) {
                (ActionStatus::Failed, Some(error)) => {
                    format!("← {name} failed{attempt}: {}", error.message)
                }
                (ActionStatus::Rejected, error) => format!(
                    "← {name} denied{}",
                    error.as_ref().map(|e| format!(": {}", e.message)).unwrap_or_default()
                ),
                _ => format!("← {name}{attempt}: {output}"),
            });
        }
        EventBody::SandboxCommand(c) => {
            let phase = match c.phase {
                SandboxPhase::Bootstrap => " (bootstrap)",
                SandboxPhase::OnSession => " (on_session)",
                SandboxPhase::Call => "",
            };
            out.progress.push(format!(
                "  [{}]{phase} $ {}",
                c.sandbox,
                preview(&Value::String(c.command.clone()))
            ));
        }
        EventBody::SandboxOutput(o) => {
            for line in o.text.lines() {
                out.progress.push(format!("  [{}] {line}", o.sandbox));
            }
        }
        EventBody::SandboxExited(e) if e.exit_code != Some(0) => {
            let how = match (&e.error, e.exit_code, &e.limit) {
                (Some(error), _, _) => format!("could not run: {error}"),
                (None, _, Some(limit)) => format!("stopped by its {limit} limit"),
                (None, Some(code), None) => format!("exit code {code}"),
                (None, None, None) => "ended".to_owned(),
            };
            out.progress.push(format!("  [{}] {how}", e.sandbox));
        }
        EventBody::InputRequested(r) => out.progress.push(format!(
            "  ⏸ {} waits for approval ({}): {}",
            r.tool_name,
            r.reason,
            preview(&r.input)
        )),
        EventBody::InputResolved(r) => {
            let why = r.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            out.progress.push(format!("  ▶ {}{why}", r.decision));
        }
        EventBody::TurnResumed(r) => out.progress.push(format!("  ▶ resumed ({})", r.code)),
        EventBody::TurnFailed(f) => {
            out.progress.push(format!("turn failed ({}): {}", f.code, f.message))
        }
        EventBody::TurnCancelled(_) => out.progress.push("turn cancelled".to_owned()),
        EventBody::RunFailed(f) => {
            out.progress.push(format!("run failed ({}): {}", f.code, f.message))
        }
        EventBody::TurnCompleted(t) => out.progress.push(format!(
            "({} step{}, {} tokens in, {} out)",
            t.steps,
            if t.steps == 1 { "" } else { "s" },
            t.usage.input_tokens,
            t.usage.output_tokens
        )),
        _ => {}
    }
    out
}
