//! A tool result as MCP gives it → what ash keeps: the result itself for events (content
//! blocks, structured content and the error flag, as the protocol spells them), the text the
//! model reads, and the images it is shown. Nothing is flattened away below the bounds; above
//! them a block's data is left out and the model and the event both say so.

use ash_protocol::ToolImage;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

use crate::client::cut;

/// Largest base64 payload of one image, audio or blob block kept.
pub const MAX_BINARY_BYTES: usize = 4 << 20;
/// Largest text the model reads from one result.
pub const MAX_MODEL_TEXT_BYTES: usize = 256 << 10;
/// Images of one result shown to the model at most.
pub const MAX_IMAGES: usize = 8;

/// A tool call's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The result as the server gave it (`content`, `structuredContent`, `isError`), with
    /// oversized binary data left out.
    pub result: Value,
    /// What the model reads.
    pub text: String,
    /// Images the model is shown.
    pub images: Vec<ToolImage>,
    /// The server marked the result as a failure.
    pub is_error: bool,
}

pub(crate) fn convert(mut result: CallToolResult) -> ToolOutput {
    result.result_type = None;
    result.meta = None;
    let mut text = String::new();
    let mut images = Vec::new();
    let mut texts = 0;
    let mut omitted = Vec::new();
    for (index, block) in result.content.iter_mut().enumerate() {
        let line = match block {
            ContentBlock::Text(t) => {
                texts += 1;
                t.text.clone()
            }
            ContentBlock::Image(image) => {
                let bytes = image.data.len();
                if bytes > MAX_BINARY_BYTES {
                    omitted.push(index);
                    format!(
                        "[image {}, {bytes} bytes of base64: too large, left out]",
                        image.mime_type
                    )
                } else if images.len() < MAX_IMAGES {
                    images.push(ToolImage {
                        media_type: image.mime_type.clone(),
                        data: image.data.clone(),
                    });
                    format!("[image {} #{}: attached]", image.mime_type, images.len())
                } else {
                    format!("[image {}: more than {MAX_IMAGES} images, not shown]", image.mime_type)
                }
            }
            ContentBlock::Audio(audio) => {
                let bytes = audio.data.len();
                if bytes > MAX_BINARY_BYTES {
                    omitted.push(index);
                }
                format!(
                    "[audio {}, {bytes} bytes of base64: not shown to the model]",
                    audio.mime_type
                )
            }
            ContentBlock::ResourceLink(link) => {
                let mut line = format!("[resource link: {} <{}>", link.name, link.uri);
                if let Some(mime) = &link.mime_type {
                    line.push_str(&format!(" {mime}"));
                }
                if let Some(description) = &link.description {
                    line.push_str(&format!(" — {description}"));
                }
                line.push(']');
                line
            }
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { uri, mime_type, text, .. } => {
                    format!("[resource {uri}{}]\n{text}", mime(mime_type.as_deref()))
                }
                ResourceContents::BlobResourceContents { uri, mime_type, blob, .. } => {
                    if blob.len() > MAX_BINARY_BYTES {
                        omitted.push(index);
                    }
                    format!(
                        "[resource {uri}{}: {} bytes of base64 binary data, not shown to the model]",
                        mime(mime_type.as_deref()),
                        blob.len()
                    )
                }
                _ => "[resource of an unknown kind]".to_owned(),
            },
            _ => "[content of a kind ash does not know]".to_owned(),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&line);
    }
    if texts == 0
        && let Some(structured) = &result.structured_content
    {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&structured.to_string());
    }
    if text.is_empty() {
        text = "(the tool returned no content)".to_owned();
    }
    if text.len() > MAX_MODEL_TEXT_BYTES {
        let total = text.len();
        text = format!(
            "{}\n[… {} more bytes cut]",
            cut(&text, MAX_MODEL_TEXT_BYTES),
            total - MAX_MODEL_TEXT_BYTES
        );
    }
    let is_error = result.is_error == Some(true);
    let mut value = serde_json::to_value(&result).unwrap_or(Value::Null);
    if let Some(blocks) = value.get_mut("content").and_then(Value::as_array_mut) {
        for index in omitted {
            if let Some(block) = blocks.get_mut(index) {
                leave_out(block);
            }
        }
    }
    ToolOutput { result: value, text, images, is_error }
}

/// Replaces the base64 payload of an oversized block by its size.
fn leave_out(block: &mut Value) {
    let target = match block.get_mut("resource") {
        Some(resource) => resource,
        None => block,
    };
    if let Some(object) = target.as_object_mut() {
        for key in ["data", "blob"] {
            if let Some(Value::String(data)) = object.remove(key) {
                object.insert("omittedBytes".to_owned(), Value::from(data.len()));
            }
        }
    }
}

fn mime(mime: Option<&str>) -> String {
    mime.map(|m| format!(" ({m})")).unwrap_or_default()
}
