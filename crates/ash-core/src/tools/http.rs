//! `kind = "http"` tools: the input fills the path's `{field}` placeholders, the rest becomes
//! the query (GET, DELETE) or the JSON body (POST, PUT, PATCH); the request goes through the
//! tool's connection, which adds the credentials; the answer (or the part `response` points
//! at) is the result, and a status of 400 or more is an error the model reads.

use std::sync::Arc;
use std::time::Duration;

use ash_protocol::ToolDefinition;
use ash_spec::{HttpMethod, Operation, OperationParts};
use serde_json::{Map, Value};

use super::{CallContext, CallFuture, Declared, Outcome, Runner, SchemaError};
use crate::connections::{HttpConnection, HttpRequest};

/// Characters of an error answer's body quoted back to the model.
const QUOTE_CHARS: usize = 800;

pub(crate) struct HttpTool {
    declared: Declared,
    connection: Arc<HttpConnection>,
    method: HttpMethod,
    path: String,
    timeout: Duration,
    response: Option<String>,
    /// For an OpenAPI operation: where each input goes (else by method).
    parts: Option<OperationParts>,
}

/// An HTTP tool's settings, as its file gives them.
pub(crate) struct HttpToolSpec<'a> {
    pub(crate) method: HttpMethod,
    pub(crate) path: &'a str,
    pub(crate) timeout_ms: u64,
    pub(crate) response: Option<&'a str>,
}

impl HttpTool {
    pub(crate) fn new(
        tool: &ash_spec::Tool,
        spec: &HttpToolSpec<'_>,
        connection: Arc<HttpConnection>,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            declared: Declared::new(&tool.name, &tool.description, tool.input_schema.clone())?,
            connection,
            method: spec.method,
            path: spec.path.to_owned(),
            timeout: Duration::from_millis(spec.timeout_ms),
            response: spec.response.map(str::to_owned),
            parts: None,
        })
    }

    /// The tool of an `openapi` connection's operation.
    pub(crate) fn operation(
        name: &str,
        operation: &Operation,
        timeout_ms: u64,
        connection: Arc<HttpConnection>,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            declared: Declared::new(name, &operation.description, operation.input_schema.clone())?,
            connection,
            method: operation.method,
            path: operation.path.clone(),
            timeout: Duration::from_millis(timeout_ms),
            response: None,
            parts: Some(operation.parts.clone()),
        })
    }

    /// The request for `input`.
    fn request(&self, mut input: Map<String, Value>) -> Result<HttpRequest, String> {
        let mut path = String::new();
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            let field = &rest[open + 1..open + close];
            path.push_str(&rest[..open]);
            let value = input
                .remove(field)
                .ok_or_else(|| format!("`{field}` is required (the path names it)"))?;
            let text = scalar(&value)
                .ok_or_else(|| format!("`{field}` must be a string, number or boolean"))?;
            // One value fills one segment: a server decoding `%2F` must not see another path.
            if text.contains('/') || text.contains('\\') || text == "." || text == ".." {
                return Err(format!("`{field}` may not contain `/` or `\\`, nor be `.` or `..`"));
            }
            path.push_str(&encode_segment(&text));
            rest = &rest[open + close + 1..];
        }
        path.push_str(rest);
        if let Some(parts) = &self.parts {
            let mut query = Vec::new();
            let mut headers = std::collections::BTreeMap::new();
            for name in &parts.query {
                if let Some(value) = input.remove(name) {
                    push_query(&mut query, name, value);
                }
            }
            for name in &parts.header {
                if let Some(value) = input.remove(name).filter(|v| !v.is_null()) {
                    headers.insert(name.clone(), text(&value));
                }
            }
            let body = if parts.body { input.remove("body") } else { None };
            return Ok(HttpRequest {
                method: self.method.as_str().to_owned(),
                path,
                query,
                headers,
                body,
            });
        }
        let (query, body) = match self.method {
            HttpMethod::Get | HttpMethod::Delete => {
                let mut query = Vec::new();
                for (key, value) in input {
                    push_query(&mut query, &key, value);
                }
                (query, None)
            }
            HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch => {
                (Vec::new(), Some(Value::Object(input)))
            }
        };
        Ok(HttpRequest {
            method: self.method.as_str().to_owned(),
            path,
            query,
            headers: Default::default(),
            body,
        })
    }

    async fn run(&self, input: Map<String, Value>, ctx: &CallContext<'_>) -> Outcome {
        let request = match self.request(input) {
            Ok(request) => request,
            Err(why) => return Outcome::error(format!("tool `{}`: {why}", self.declared.name())),
        };
        let response = match self.connection.send(&request, self.timeout, ctx.cancel).await {
            Ok(response) => response,
            Err(why) => return Outcome::error(format!("tool `{}`: {why}", self.declared.name())),
        };
        if response.status >= 400 {
            let body = match &response.body {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let quoted: String = body.chars().take(QUOTE_CHARS).collect();
            return Outcome {
                output: response.to_json(),
                ..Outcome::error(format!(
                    "`{}` answered HTTP {}: {quoted}",
                    self.connection.name(),
                    response.status
                ))
            };
        }
        match &self.response {
            None => Outcome::ok(response.to_json()),
            Some(pointer) => match response.body.pointer(pointer) {
                Some(part) => Outcome::ok(part.clone()),
                None => Outcome {
                    output: response.to_json(),
                    ..Outcome::error(format!(
                        "tool `{}`: the answer has nothing at `{pointer}` (its `response` pointer)",
                        self.declared.name()
                    ))
                },
            },
        }
    }
}

/// Adds `key=value` to `query`: nothing for null, one pair per element of an array, and a
/// value that is not a scalar as its JSON.
fn push_query(query: &mut Vec<(String, String)>, key: &str, value: Value) {
    match value {
        Value::Null => {}
        Value::Array(items) => query.extend(items.iter().map(|item| (key.to_owned(), text(item)))),
        other => query.push((key.to_owned(), text(&other))),
    }
}

/// A value as text: a scalar as itself, anything else as its JSON.
fn text(value: &Value) -> String {
    scalar(value).unwrap_or_else(|| value.to_string())
}

/// A scalar as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `text` as one path segment: everything but unreserved characters percent-encoded, so a
/// value cannot add segments, a query or a fragment.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    // `.` and `..` alone are still segments that move: encode them too.
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

impl Runner for HttpTool {
    fn definition(&self) -> ToolDefinition {
        self.declared.definition()
    }

    fn check(&self, input: &Value) -> Vec<String> {
        self.declared.problems(input)
    }

    fn call<'a>(&'a self, input: Map<String, Value>, ctx: &'a CallContext<'a>) -> CallFuture<'a> {
        Box::pin(self.run(input, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn path_values_cannot_add_segments() {
        let cases = ["a/b", "..", ".", "x?y#z", "ü", "plain-1.2_~"];
        let encoded: Vec<String> = cases.iter().map(|c| encode_segment(c)).collect();
        assert_eq!(encoded, ["a%2Fb", "%2E%2E", "%2E", "x%3Fy%23z", "%C3%BC", "plain-1.2_~"]);
    }
}
