//! The `scripted/<file>` provider: replays model turns from a JSONL file, offline.
//!
//! Owns the script format (documented in `docs/models.md`) and its replay. The turn answered is
//! chosen by position — the request's number of assistant messages — not by hidden state, so a
//! run that resumes after a restart gets the same answers. Never touches the network.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read as _;
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use ash_protocol::{FinishReason, Message, ModelEvent, Usage};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::error::LlmError;
use crate::request::ModelRequest;

/// Largest script file.
const MAX_SCRIPT_BYTES: u64 = ash_spec::MAX_TEXT_BYTES;
/// Longest pause a script may ask for between chunks.
const MAX_DELAY_MS: u64 = 10_000;

/// One line of a script.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Line {
    reasoning: Option<String>,
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<LineCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    error: Option<String>,
    #[serde(default)]
    delay_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineCall {
    id: Option<String>,
    name: String,
    #[serde(default)]
    input: Map<String, Value>,
}

/// A loaded script.
#[derive(Debug)]
pub(crate) struct Script {
    path: String,
    turns: Vec<Turn>,
}

#[derive(Debug)]
struct Turn {
    events: Vec<ModelEvent>,
    error: Option<String>,
    delay: Duration,
}

impl Script {
    /// Reads and checks `relative` (below `package_dir`).
    pub(crate) fn load(package_dir: &Path, relative: &str) -> Result<Self, LlmError> {
        let display = relative.to_owned();
        let fail = |line: usize, message: String| LlmError::Script {
            path: display.clone(),
            line,
            message,
        };
        if !Path::new(relative).components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(fail(0, "the script path must stay inside the agent directory".to_owned()));
        }
        let path = package_dir.join(relative);
        let mut text = String::new();
        File::open(&path)
            .and_then(|file| file.take(MAX_SCRIPT_BYTES + 1).read_to_string(&mut text))
            .map_err(|err| fail(0, format!("cannot read the script: {err}")))?;
        if text.len() as u64 > MAX_SCRIPT_BYTES {
            return Err(fail(0, format!("the script is larger than {MAX_SCRIPT_BYTES} bytes")));
        }
        let mut turns = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let parsed: Line = serde_json::from_str(trimmed).map_err(|err| fail(number + 1, format!(
                "{err}; a line is a JSON object like {{\"text\": \"Hello\"}} or {{\"toolCalls\": [{{\"name\": \"get_weather\", \"input\": {{\"city\": \"Paris\"}}}}]}}"
            )))?;
            turns.push(turn(turns.len(), parsed).map_err(|message| fail(number + 1, message))?);
        }
        if turns.is_empty() {
            return Err(fail(
                0,
                "the script has no turns; add one JSON object per line".to_owned(),
            ));
        }
        Ok(Self { path: display, turns })
    }
}

fn turn(index: usize, line: Line) -> Result<Turn, String> {
    if line.delay_ms > MAX_DELAY_MS {
        return Err(format!("`delayMs` is {}; at most {MAX_DELAY_MS} is allowed", line.delay_ms));
    }
    let delay = Duration::from_millis(line.delay_ms);
    if let Some(error) = line.error {
        if line.text.is_some() || line.reasoning.is_some() || !line.tool_calls.is_empty() {
            return Err(
                "`error` cannot be combined with `text`, `reasoning` or `toolCalls`".to_owned()
            );
        }
        return Ok(Turn { events: Vec::new(), error: Some(error), delay });
    }
    if line.text.is_none() && line.reasoning.is_none() && line.tool_calls.is_empty() {
        return Err("the line needs `text`, `reasoning`, `toolCalls` or `error`".to_owned());
    }
    let mut events = vec![ModelEvent::ResponseStarted {
        id: Some(format!("scripted-{}", index + 1)),
        model: None,
    }];
    if let Some(reasoning) = line.reasoning {
        events.extend(words(&reasoning).map(|text| ModelEvent::ReasoningDelta { text }));
    }
    if let Some(text) = line.text {
        events.extend(words(&text).map(|text| ModelEvent::TextDelta { text }));
    }
    let has_calls = !line.tool_calls.is_empty();
    for (n, call) in line.tool_calls.into_iter().enumerate() {
        if !ash_spec::is_model_tool_name(&call.name) {
            return Err(format!("tool call {} has the invalid name `{}`", n + 1, call.name));
        }
        let id = call.id.unwrap_or_else(|| format!("call_{}_{}", index + 1, n + 1));
        events.push(ModelEvent::ToolCallStarted { id: id.clone(), name: call.name });
        events.push(ModelEvent::ToolCallDelta {
            id: id.clone(),
            delta: Value::Object(call.input).to_string(),
        });
        events.push(ModelEvent::ToolCallEnded { id });
    }
    events.push(ModelEvent::Usage { usage: line.usage.unwrap_or_default() });
    let reason =
        line.finish.unwrap_or(if has_calls { FinishReason::ToolCalls } else { FinishReason::Stop });
    events.push(ModelEvent::Finished { reason });
    Ok(Turn { events, error: None, delay })
}

/// Text cut after each space, so it streams word by word.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_inclusive(' ').map(str::to_owned)
}

/// Replay of one turn.
pub(crate) struct ScriptedStream {
    events: VecDeque<ModelEvent>,
    error: Option<LlmError>,
    delay: Duration,
}

impl ScriptedStream {
    pub(crate) fn new(script: &Arc<Script>, request: &ModelRequest) -> Self {
        let index =
            request.messages.iter().filter(|m| matches!(m, Message::Assistant { .. })).count();
        let Some(turn) = script.turns.get(index) else {
            return Self {
                events: VecDeque::new(),
                error: Some(LlmError::ScriptExhausted {
                    path: script.path.clone(),
                    turns: script.turns.len(),
                    requested: index + 1,
                }),
                delay: Duration::ZERO,
            };
        };
        Self {
            events: turn.events.iter().cloned().collect(),
            error: turn.error.as_ref().map(|message| LlmError::Provider {
                provider: ash_spec::SCRIPTED_PROVIDER.to_owned(),
                kind: "scripted_error".to_owned(),
                message: message.clone(),
                retryable: false,
            }),
            delay: turn.delay,
        }
    }

    pub(crate) async fn next(
        &mut self,
        cancel: &CancellationToken,
    ) -> Option<Result<ModelEvent, LlmError>> {
        if cancel.is_cancelled() {
            return self.cancelled();
        }
        if !self.delay.is_zero() && (!self.events.is_empty() || self.error.is_some()) {
            tokio::select! {
                () = cancel.cancelled() => return self.cancelled(),
                () = tokio::time::sleep(self.delay) => {}
            }
        }
        match self.events.pop_front() {
            Some(event) => Some(Ok(event)),
            None => self.error.take().map(Err),
        }
    }

    /// Ends the replay: nothing more is handed out.
    fn cancelled(&mut self) -> Option<Result<ModelEvent, LlmError>> {
        self.events.clear();
        self.error = None;
        Some(Err(LlmError::Cancelled))
    }
}
