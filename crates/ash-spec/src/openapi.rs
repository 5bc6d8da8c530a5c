//! OpenAPI 3 documents (JSON or YAML) → the operations an `openapi` connection offers as
//! tools: each with its method, path template, a JSON Schema of its input (path, query and
//! header parameters by name, the JSON request body as `body`) and where each input goes.
//!
//! Local `$ref`s (`#/components/...`) are inlined, recursion cut at a fixed depth; anything an
//! operation needs that ash cannot send (a non-JSON body, a cookie, an external `$ref`) makes
//! that operation unusable, with the reason. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::spec::HttpMethod;

/// Deepest `$ref` nesting inlined; deeper schemas accept anything.
const MAX_REF_DEPTH: usize = 16;
/// Most schema nodes one operation's input may inline; a larger one makes it unusable.
const MAX_SCHEMA_NODES: usize = 20_000;
/// Most operations read from one document.
pub const MAX_OPERATIONS: usize = 1000;
/// Longest description kept per operation.
const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Where an operation's inputs go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OperationParts {
    /// Input fields filling `{name}` in the path.
    pub path: Vec<String>,
    /// Input fields sent as query parameters.
    pub query: Vec<String>,
    /// Input fields sent as headers.
    pub header: Vec<String>,
    /// Whether the input's `body` is the JSON request body.
    pub body: bool,
}

/// One operation of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `operationId`, or `<method>_<path>` when the document gives none.
    pub id: String,
    /// Method.
    pub method: HttpMethod,
    /// Path template below the server URL, `{name}` placeholders.
    pub path: String,
    /// Summary and description.
    pub description: String,
    /// JSON Schema of the tool's input.
    pub input_schema: Value,
    /// Where each input goes.
    pub parts: OperationParts,
    /// Why ash cannot call it, if it cannot.
    pub unusable: Option<String>,
}

/// What a document offers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpenApiDoc {
    /// Its API's title.
    pub title: String,
    /// The first server URL, if absolute.
    pub server: Option<String>,
    /// Its operations, in document order.
    pub operations: Vec<Operation>,
}

/// Parses an OpenAPI 3.0 or 3.1 document; the inputs of the operations `wanted` accepts are
/// built (the others keep an empty schema: building every input of a large document would
/// cost for nothing).
pub fn parse_openapi(text: &str, wanted: &dyn Fn(&str) -> bool) -> Result<OpenApiDoc, String> {
    let root: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => serde_saphyr::from_str(text)
            .map_err(|e| format!("the document is neither JSON nor YAML: {e}"))?,
    };
    let version = root.get("openapi").and_then(Value::as_str).unwrap_or_default();
    if !version.starts_with("3.") {
        if root.get("swagger").is_some() {
            return Err(
                "this is a Swagger 2 document; convert it to OpenAPI 3 (e.g. with swagger2openapi)"
                    .into(),
            );
        }
        return Err("`openapi` must name version 3.0 or 3.1".into());
    }
    let title = root.pointer("/info/title").and_then(Value::as_str).unwrap_or_default().to_owned();
    // Only a plain absolute URL: one with `{variables}` needs `base_url`.
    let server = root
        .pointer("/servers/0/url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .filter(|u| !u.contains('{') && !u.chars().any(char::is_whitespace))
        .map(str::to_owned);
    let paths =
        root.get("paths").and_then(Value::as_object).ok_or("the document has no `paths`")?;
    let mut operations = Vec::new();
    for (path, item) in paths {
        let item = resolve(&root, item);
        let Some(item) = item.as_object() else { continue };
        let shared: Vec<Value> =
            item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for (key, method) in [
            ("get", HttpMethod::Get),
            ("post", HttpMethod::Post),
            ("put", HttpMethod::Put),
            ("patch", HttpMethod::Patch),
            ("delete", HttpMethod::Delete),
        ] {
            let Some(op) = item.get(key).and_then(Value::as_object) else { continue };
            if operations.len() == MAX_OPERATIONS {
                return Err(format!("the document has more than {MAX_OPERATIONS} operations"));
            }
            operations.push(operation(&root, path, key, method, op, &shared, wanted));
        }
    }
    Ok(OpenApiDoc { title, server, operations })
}

/// `value`, or what its local `$ref` points at (one level).
fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => root.pointer(pointer).unwrap_or(value),
        None => value,
    }
}

/// Inlines local `$ref`s: a reference already being inlined further up (recursion) becomes
/// `{}`, as does anything deeper than [`MAX_REF_DEPTH`]; more than [`MAX_SCHEMA_NODES`] nodes
/// in all is an error.
struct Inliner<'a> {
    root: &'a Value,
    /// The references being inlined, outermost first.
    chain: Vec<String>,
    nodes: usize,
}

impl Inliner<'_> {
    /// `schema` with every local `$ref` inlined; an external `$ref` is an error.
    fn inline(&mut self, schema: &Value) -> Result<Value, String> {
        self.nodes += 1;
        if self.nodes > MAX_SCHEMA_NODES {
            return Err(format!("its input schema expands past {MAX_SCHEMA_NODES} nodes"));
        }
        match schema {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                    let Some(pointer) = reference.strip_prefix('#') else {
                        return Err(format!("it refers to `{reference}` outside the document"));
                    };
                    if self.chain.len() >= MAX_REF_DEPTH
                        || self.chain.iter().any(|r| r == reference)
                    {
                        return Ok(json!({}));
                    }
                    let target = self
                        .root
                        .pointer(pointer)
                        .ok_or_else(|| format!("`{reference}` points at nothing"))?;
                    self.chain.push(reference.to_owned());
                    let inlined = self.inline(target);
                    self.chain.pop();
                    return inlined;
                }
                let mut out = Map::new();
                for (key, value) in map {
                    // Documentation-only keys of OpenAPI that are not JSON Schema.
                    if matches!(key.as_str(), "xml" | "externalDocs" | "example" | "discriminator")
                    {
                        continue;
                    }
                    out.insert(key.clone(), self.inline(value)?);
                }
                // OpenAPI 3.0's `nullable` is JSON Schema's `type: [T, "null"]`.
                if out.remove("nullable") == Some(Value::Bool(true))
                    && let Some(Value::String(ty)) = out.get("type").cloned()
                {
                    out.insert("type".into(), json!([ty, "null"]));
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => {
                items.iter().map(|i| self.inline(i)).collect::<Result<_, _>>().map(Value::Array)
            }
            other => Ok(other.clone()),
        }
    }
}

fn operation(
    root: &Value,
    path: &str,
    key: &str,
    method: HttpMethod,
    op: &Map<String, Value>,
    shared: &[Value],
    wanted: &dyn Fn(&str) -> bool,
) -> Operation {
    let id = op
        .get("operationId")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{key}_{}", path.trim_matches('/')), str::to_owned);
    let mut description = [op.get("summary"), op.get("description")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if description.is_empty() {
        description = format!("{} {path}", method.as_str());
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        description = description.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>() + "…";
    }
    let mut result = Operation {
        id,
        method,
        path: path.to_owned(),
        description,
        input_schema: json!({"type": "object"}),
        parts: OperationParts::default(),
        unusable: None,
    };
    if !wanted(&result.id) {
        return result;
    }
    let mut inliner = Inliner { root, chain: Vec::new(), nodes: 0 };
    match input(&mut inliner, path, op, shared) {
        Ok((schema, parts)) => {
            result.input_schema = schema;
            result.parts = parts;
        }
        Err(why) => result.unusable = Some(why),
    }
    result
}

fn input(
    inliner: &mut Inliner<'_>,
    path: &str,
    op: &Map<String, Value>,
    shared: &[Value],
) -> Result<(Value, OperationParts), String> {
    let root = inliner.root;
    // Operation parameters override path-level ones of the same name and place.
    let mut params: BTreeMap<(String, String), Value> = BTreeMap::new();
    let own = op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
    for param in shared.iter().chain(own.iter()) {
        let param = resolve(root, param);
        let name = param.get("name").and_then(Value::as_str).ok_or("a parameter has no name")?;
        let place = param.get("in").and_then(Value::as_str).ok_or("a parameter has no `in`")?;
        params.insert((place.to_owned(), name.to_owned()), param.clone());
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut parts = OperationParts::default();
    for ((place, name), param) in &params {
        let is_required = param.get("required").and_then(Value::as_bool).unwrap_or(place == "path");
        let list = match place.as_str() {
            "path" => &mut parts.path,
            "query" => &mut parts.query,
            "header"
                if crate::names::RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) =>
            {
                return Err(format!("header parameter `{name}` is one the connection sets itself"));
            }
            "header" => &mut parts.header,
            "cookie" if !is_required => continue,
            other => {
                return Err(format!(
                    "parameter `{name}` is sent in `{other}`, which ash does not send"
                ));
            }
        };
        if properties.contains_key(name) {
            return Err(format!("two parameters are named `{name}`"));
        }
        let mut schema = match param.get("schema") {
            Some(schema) => inliner.inline(schema)?,
            None => json!({"type": "string"}),
        };
        if let (Some(text), Value::Object(map)) =
            (param.get("description").and_then(Value::as_str), &mut schema)
        {
            map.entry("description").or_insert_with(|| Value::String(text.to_owned()));
        }
        properties.insert(name.clone(), schema);
        list.push(name.clone());
        if is_required {
            required.push(Value::String(name.clone()));
        }
    }
    for placeholder in placeholders(path) {
        if !parts.path.contains(&placeholder) {
            return Err(format!(
                "the path names `{{{placeholder}}}` but no path parameter describes it"
            ));
        }
    }
    if let Some(body) = op.get("requestBody") {
        let body = resolve(root, body);
        let content = body.get("content").and_then(Value::as_object);
        let json_schema = content.and_then(|c| {
            c.iter().find(|(media, _)| {
                media.starts_with("application/json") || media.ends_with("+json")
            })
        });
        let body_required = body.get("required").and_then(Value::as_bool).unwrap_or(false);
        match json_schema {
            Some((_, media)) => {
                if properties.contains_key("body") {
                    return Err("a parameter is named `body`, which the request body needs".into());
                }
                let schema = media.get("schema").map_or(Ok(json!({})), |s| inliner.inline(s))?;
                properties.insert("body".into(), schema);
                parts.body = true;
                if body_required {
                    required.push(Value::String("body".into()));
                }
            }
            None if body_required => {
                let media: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
                return Err(format!("its request body is not JSON ({media:?})"));
            }
            None => {}
        }
    }
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    Ok((schema, parts))
}

/// The `{name}` placeholders of a path template.
pub fn placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push(rest[open + 1..open + close].to_owned());
        rest = &rest[open + close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    const DOC: &str = r##"
openapi: 3.0.3
info: {title: Shop}
servers: [{url: "https://shop.example/v1"}]
components:
  schemas:
    Order:
      type: object
      properties:
        item: {type: string}
        parent: {$ref: "#/components/schemas/Order"}
      nullable: false
paths:
  /orders/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: getOrder
      summary: Look up an order.
      parameters:
        - {name: expand, in: query, schema: {type: string, nullable: true}}
    delete:
      operationId: deleteOrder
      parameters:
        - {name: session, in: cookie, required: true}
  /orders:
    post:
      operationId: createOrder
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
  /upload:
    put:
      requestBody:
        required: true
        content:
          application/octet-stream: {}
"##;

    #[test]
    fn operations_become_tool_inputs_with_refs_inlined() {
        let doc = parse_openapi(DOC, &|_| true).unwrap();
        assert_eq!(
            (doc.title.as_str(), doc.server.as_deref()),
            ("Shop", Some("https://shop.example/v1"))
        );
        let summary: Vec<(&str, &str, Option<&str>)> = doc
            .operations
            .iter()
            .map(|o| (o.id.as_str(), o.method.as_str(), o.unusable.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("getOrder", "GET", None),
                (
                    "deleteOrder",
                    "DELETE",
                    Some("parameter `session` is sent in `cookie`, which ash does not send")
                ),
                ("createOrder", "POST", None),
                (
                    "put_upload",
                    "PUT",
                    Some("its request body is not JSON ([\"application/octet-stream\"])")
                ),
            ]
        );
        let get = &doc.operations[0];
        assert_eq!(
            get.input_schema,
            json!({
                "type": "object",
                "properties": {
                    "expand": {"type": ["string", "null"]},
                    "id": {"type": "string"},
                },
                "required": ["id"],
                "additionalProperties": false,
            })
        );
        assert_eq!(
            get.parts,
            OperationParts {
                path: vec!["id".into()],
                query: vec!["expand".into()],
                header: vec![],
                body: false
            }
        );
        let create = &doc.operations[2];
        assert_eq!(create.input_schema["required"], json!(["body"]));
        // The recursive reference is cut, not followed forever.
        assert!(create.input_schema.to_string().len() < 20_000);
        assert_eq!(
            create.input_schema["properties"]["body"]["properties"]["item"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn a_schema_that_refers_to_itself_in_many_places_is_cut_not_expanded() {
        // A tree whose every branch refers back: expanding it level by level would be k^depth.
        let doc = r##"{"openapi": "3.1.0", "info": {"title": "t"},
          "components": {"schemas": {"Node": {"type": "object", "properties": {
            "a": {"$ref": "#/components/schemas/Node"}, "b": {"$ref": "#/components/schemas/Node"},
            "c": {"$ref": "#/components/schemas/Node"}, "d": {"$ref": "#/components/schemas/Node"},
            "e": {"items": {"$ref": "#/components/schemas/Node"}}}}}},
          "paths": {"/n": {"post": {"operationId": "put", "requestBody": {"required": true,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}}"##;
        let doc = parse_openapi(doc, &|_| true).unwrap();
        let body = &doc.operations[0].input_schema["properties"]["body"];
        assert_eq!(body["properties"]["a"], json!({}));
        assert_eq!(body["properties"]["e"]["items"], json!({}));
        // Operations nobody asked for are not built.
        let lazy = parse_openapi(DOC, &|id| id == "getOrder").unwrap();
        assert_eq!(lazy.operations[2].input_schema, json!({"type": "object"}));
    }

    #[test]
    fn documents_ash_cannot_read_are_refused_with_the_reason() {
        let cases = [
            (
                "swagger: '2.0'\npaths: {}",
                "this is a Swagger 2 document; convert it to OpenAPI 3 (e.g. with swagger2openapi)",
            ),
            ("openapi: 3.1.0\ninfo: {title: x}", "the document has no `paths`"),
            ("{\"openapi\": \"4.0\"}", "`openapi` must name version 3.0 or 3.1"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_openapi(text, &|_| true).unwrap_err(), want);
        }
    }
}
