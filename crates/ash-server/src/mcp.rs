//! The agent as one MCP tool over an [`Engine`]: a message (and the continuation token of an
//! earlier answer) becomes a durable run like any `POST /message`; its events become progress
//! notifications; the turn's last message is the answer. `ash mcp` serves it over stdio and
//! `ash start` at `/.well-known/ash/v1/mcp`, behind the gate.

use std::sync::Arc;

use ash_core::{Engine, Inbound};
use ash_mcp::server::{Agent, AgentInfo, Answer, AnswerFuture, Ask, ProgressSink};
use ash_protocol::{Action, ActionOutput, EventBody, RunMode};
use tokio_util::sync::CancellationToken;

/// The tool name of an agent: its name lowered to `lower_snake_case` (`weather-agent` →
/// `weather_agent`), or `ask` when that leaves no valid tool name.
pub fn tool_name(agent: &str) -> String {
    let lowered = ash_spec::lower_snake_case(agent);
    if ash_spec::is_tool_name(&lowered) { lowered } else { "ask".to_owned() }
}

/// Who `engine`'s agent is, as an MCP server and tool.
pub fn agent_info(engine: &Engine) -> AgentInfo {
    let root = engine.spec().root();
    AgentInfo {
        tool: tool_name(&root.name),
        name: root.name.clone(),
        description: root
            .description
            .clone()
            .unwrap_or_else(|| format!("Ask the agent `{}`.", root.name)),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The agent of `engine`, answering MCP tool calls.
pub fn engine_agent(engine: Engine) -> Arc<dyn Agent> {
    Arc::new(EngineAgent { engine })
}

struct EngineAgent {
    engine: Engine,
}

impl Agent for EngineAgent {
    fn ask(&self, ask: Ask, progress: ProgressSink, stop: CancellationToken) -> AnswerFuture {
        let engine = self.engine.clone();
        Box::pin(async move {
            let inbound = Inbound {
                message: ask.message,
                continuation_token: ask.continuation_token,
                mode: RunMode::Conversation,
                caller: ask.caller,
            };
            let accepted = engine.send(inbound).await.map_err(|e| e.to_string())?;
            let run = accepted.run_id.clone();
            let mut follower = match engine.follow(&run, accepted.start_index).await {
                Ok(Some(follower)) => follower,
                Ok(None) => return Err(format!("run {run} vanished")),
                Err(e) => return Err(e.to_string()),
            };
            let mut answer = String::new();
            loop {
                let event = tokio::select! {
                    event = follower.next() => event,
                    () = stop.cancelled() => {
                        return Err(format!(
                            "stopped waiting; run {run} goes on (its events: GET /.well-known/ash/v1/runs/{run}/stream)"
                        ));
                    }
                };
                let event = match event {
                    Ok(Some(event)) => event,
                    Ok(None) => return Err(format!("run {run} ended without an answer")),
                    Err(e) => return Err(e.to_string()),
                };
                match &event.body {
                    EventBody::MessageCompleted(m) if !m.message.trim().is_empty() => {
                        answer.clone_from(&m.message);
                    }
                    EventBody::ActionsRequested(requested) => {
                        for action in &requested.actions {
                            let what = match action {
                                Action::ToolCall { tool_name, .. } => {
                                    format!("calling {tool_name}")
                                }
                                Action::LoadSkill { .. } => "loading a skill".to_owned(),
                                Action::SubagentCall { name, .. } => {
                                    format!("delegating to {name}")
                                }
                            };
                            progress.send(&what).await;
                        }
                    }
                    EventBody::ActionResult(result) => {
                        let name = match &result.result {
                            ActionOutput::ToolResult { tool_name, .. } => tool_name.as_str(),
                            ActionOutput::LoadSkillResult { name } => name.as_str(),
                            ActionOutput::SubagentResult { subagent_name, .. } => {
                                subagent_name.as_str()
                            }
                        };
                        let how = if result.error.is_some() { "failed" } else { "done" };
                        progress.send(&format!("{name} {how}")).await;
                    }
                    EventBody::ActionProgress(p) => {
                        if let Some(message) = &p.message {
                            progress.send(message).await;
                        }
                    }
                    EventBody::TurnFailed(failed) => {
                        return Err(format!(
                            "the turn failed ({}): {}",
                            failed.code, failed.message
                        ));
                    }
                    EventBody::TurnCancelled(_) => return Err("the turn was cancelled".to_owned()),
                    EventBody::RunFailed(failed) => {
                        return Err(format!(
                            "the run failed ({}): {}",
                            failed.code, failed.message
                        ));
                    }
                    EventBody::SessionWaiting(waiting) if waiting.reason.is_some() => {
                        let reason = waiting.reason.as_ref().map(|r| r.message.as_str());
                        return Err(format!(
                            "the run {run} paused: {}; it continues over the HTTP API",
                            reason.unwrap_or_default()
                        ));
                    }
                    EventBody::SessionWaiting(waiting) => {
                        return Ok(Answer {
                            text: answer,
                            continuation_token: Some(waiting.continuation_token.clone()),
                            run_id: run.to_string(),
                            session_id: accepted.session_id.to_string(),
                        });
                    }
                    EventBody::RunCompleted(done) => {
                        return Ok(Answer {
                            text: done.output.clone().unwrap_or(answer),
                            continuation_token: None,
                            run_id: run.to_string(),
                            session_id: accepted.session_id.to_string(),
                        });
                    }
                    _ => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tool_name;

    #[test]
    fn tool_names_are_lowered_agent_names() {
        let cases = [
            ("weather-agent", "weather_agent"),
            ("Coder", "coder"),
            ("--", "ask"),
            ("9lives", "ask"),
        ];
        let got: Vec<(&str, String)> =
            cases.iter().map(|(name, _)| (*name, tool_name(name))).collect();
        let want: Vec<(&str, String)> =
            cases.iter().map(|(name, tool)| (*name, (*tool).to_owned())).collect();
        assert_eq!(got, want);
    }
}
