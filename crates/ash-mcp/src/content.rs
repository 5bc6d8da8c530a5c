//! A tool result as MCP gives it → what ash keeps: the result itself for events (content
//! blocks, structured content and the error flag, as the protocol spells them), the text the
//! model reads, and the images it is shown. Nothing is flattened away below the bounds; above
//! them a block's data is left out and the model and the event both say so.

use ash_protocol::ToolImage;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

/// Largest base64 payload of one image, audio or blob block kept.
pub const MAX_BINARY_BYTES: usize = 4 << 20;
/// Largest text the model reads from one result: the caller cuts there, after redacting.
pub const MAX_MODEL_TEXT_BYTES: usize = 256 << 10;
/// Images of one result shown to the model at most.
pub const MAX_IMAGES: usize = 8;
/// Base64 bytes of the images of one result shown to the model at most (what providers take
/// in one request, with room for the conversation).
pub const MAX_IMAGE_BYTES: usize = 5 << 20;

/// The image types every provider takes, and how each file starts.
const IMAGE_TYPES: [(&str, &[u8]); 4] = [
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/gif", b"GIF8"),
    ("image/webp", b"RIFF"),
];

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
                let shown: usize = images.iter().map(|i: &ToolImage| i.data.len()).sum();
                let mime: String =
                    image.mime_type.chars().filter(|c| !c.is_control()).take(100).collect();
                if bytes > MAX_BINARY_BYTES {
                    omitted.push(index);
                    format!("[image {mime}, {bytes} bytes of base64: too large, left out]")
                } else if let Err(why) = check_image(&image.mime_type, &image.data) {
                    format!("[image {mime}: not shown to the model: {why}]")
                } else if images.len() >= MAX_IMAGES || shown + bytes > MAX_IMAGE_BYTES {
                    format!("[image {mime}: more images than a request takes, not shown]")
                } else {
                    images.push(ToolImage {
                        media_type: image.mime_type.clone(),
                        data: image.data.clone(),
                    });
                    format!("[image {mime} #{}: attached]", images.len())
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

/// Whether `data` is an image of a type every provider takes, and really of `mime`.
fn check_image(mime: &str, data: &str) -> Result<(), String> {
    use base64::Engine as _;
    let Some((_, magic)) = IMAGE_TYPES.iter().find(|(m, _)| *m == mime) else {
        return Err(format!(
            "`{}` is not one of png, jpeg, gif or webp",
            mime.chars().take(100).collect::<String>()
        ));
    };
    let head: String = data.chars().take(24).collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(head.as_bytes())
        .map_err(|_| "its data is not base64".to_owned())?;
    if !decoded.starts_with(magic) {
        return Err(format!("its data is not a {mime} file"));
    }
    // The rest must be base64 too: a provider refuses the whole request otherwise.
    if !data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        || !data.len().is_multiple_of(4)
    {
        return Err("its data is not base64".into());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use rmcp::model::{CallToolResult, ContentBlock};

    use super::convert;

    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAACAAFUok9dAAAAAElFTkSuQmCC";

    #[test]
    fn only_real_images_of_common_types_reach_the_model() {
        let blocks = vec![
            ContentBlock::image(PNG, "image/png"),
            ContentBlock::image("PHN2Zz48L3N2Zz4=", "image/svg+xml"),
            ContentBlock::image(PNG, "image/jpeg"),
            ContentBlock::image("not base64 at all!", "image/png"),
        ];
        let out = convert(CallToolResult::success(blocks));
        assert_eq!(out.images.len(), 1);
        assert_eq!(
            out.text,
            [
                "[image image/png #1: attached]",
                "[image image/svg+xml: not shown to the model: `image/svg+xml` is not one of png, jpeg, gif or webp]",
                "[image image/jpeg: not shown to the model: its data is not a image/jpeg file]",
                "[image image/png: not shown to the model: its data is not base64]",
            ]
            .join("\n")
        );
    }
}
