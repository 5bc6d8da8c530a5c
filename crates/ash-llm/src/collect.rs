//! `Collector`: folds a stream of `ModelEvent`s into the `ModelResponse` the run log stores.
//!
//! Owns the rules for turning deltas into parts: consecutive text deltas form one text part,
//! consecutive reasoning deltas one reasoning part (a signature attaches to it), tool-call
//! fragments join by call id in the order the calls started, and `Retrying` discards everything.

use ash_protocol::{AssistantPart, FinishReason, ModelEvent, ModelResponse, ToolCall, Usage};

/// Accumulates one response.
#[derive(Debug, Default)]
pub struct Collector {
    id: Option<String>,
    model: Option<String>,
    content: Vec<AssistantPart>,
    usage: Usage,
    finish: Option<FinishReason>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in one event.
    pub fn push(&mut self, event: &ModelEvent) {
        match event {
            ModelEvent::ResponseStarted { id, model } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            ModelEvent::TextDelta { text } => match self.content.last_mut() {
                Some(AssistantPart::Text { text: last }) => last.push_str(text),
                _ => self.content.push(AssistantPart::Text { text: text.clone() }),
            },
            ModelEvent::ReasoningDelta { text } => match self.content.last_mut() {
                Some(AssistantPart::Reasoning { text: last, signature: None }) => {
                    last.push_str(text)
                }
                _ => self
                    .content
                    .push(AssistantPart::Reasoning { text: text.clone(), signature: None }),
            },
            ModelEvent::ReasoningSignature { signature } => match self.content.last_mut() {
                Some(AssistantPart::Reasoning { signature: slot @ None, .. }) => {
                    *slot = Some(signature.clone());
                }
                _ => self.content.push(AssistantPart::Reasoning {
                    text: String::new(),
                    signature: Some(signature.clone()),
                }),
            },
            ModelEvent::RedactedReasoning { data } => {
                self.content.push(AssistantPart::RedactedReasoning { data: data.clone() });
            }
            ModelEvent::ToolCallStarted { id, name } => {
                self.content.push(AssistantPart::ToolCall(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                }));
            }
            ModelEvent::ToolCallDelta { id, delta } => {
                let call = self.content.iter_mut().rev().find_map(|part| match part {
                    AssistantPart::ToolCall(call) if call.id == *id => Some(call),
                    _ => None,
                });
                if let Some(call) = call {
                    call.arguments.push_str(delta);
                }
            }
            ModelEvent::ToolCallEnded { .. } => {}
            ModelEvent::Usage { usage } => self.usage = *usage,
            ModelEvent::Finished { reason } => self.finish = Some(*reason),
            ModelEvent::Retrying { .. } => *self = Self::default(),
        }
    }

    /// The response, or `None` if no `Finished` event arrived.
    pub fn finish(self) -> Option<ModelResponse> {
        Some(ModelResponse {
            id: self.id,
            model: self.model,
            content: self.content,
            usage: self.usage,
            finish_reason: self.finish?,
        })
    }
}
