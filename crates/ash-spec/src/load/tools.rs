//! `tools/*.toml`: command tools and HTTP tools, with validated JSON Schema input.

use std::path::Path;

use serde_json::{Value, json};

use crate::diagnostic::{FileDiag, Severity};
use crate::load::{Ctx, modules};
use crate::names::{is_tool_name, lower_snake_case};
use crate::slots;
use crate::source::{EntryKind, Tree};
use crate::spec::{
    Connection, ConnectionKind, DEFAULT_TOOL_TIMEOUT_MS, HttpMethod, MAX_TOOL_TIMEOUT_MS, Sandbox,
    Source, Tool, ToolKind,
};
use crate::toml_doc::{self, Fields, Located};

/// What a tool may refer to.
pub(super) struct Scope<'a> {
    pub(super) sandboxes: &'a [Sandbox],
    pub(super) connections: &'a [Connection],
}

pub(super) fn load(ctx: &mut Ctx<'_>, dir: &Path, scope: &Scope<'_>) -> Vec<Tool> {
    let mut tools = Vec::new();
    let mut others = Vec::new();
    for entry in ctx.tree.list(dir, &mut ctx.diags) {
        let rel = ctx.tree.rel(&entry.path);
        let (stem, ext) = entry.stem_and_ext();
        match (entry.kind, ext) {
            (EntryKind::File, Some("toml")) => {
                let stem = stem.to_owned();
                if let Some(tool) = load_one(ctx, &entry.path, &stem, scope) {
                    tools.push(tool);
                }
            }
            (EntryKind::File, _) if modules::report_slot_module(ctx, &entry, "tools") => {}
            (EntryKind::Dir, _) => ctx.diags.file(
                Severity::Warning,
                "unknown-entry",
                &rel,
                "tools/ is not read recursively; this directory is ignored",
                &slots::TOOL_COMMAND,
            ),
            (EntryKind::File, _) => others.push(rel),
        }
    }
    // A script beside the tool file that runs it is fine; anything else is probably a typo.
    for rel in others {
        let used = tools.iter().any(|t| match &t.kind {
            ToolKind::Command { argv, .. } => {
                argv.iter().any(|a| a.strip_prefix("./") == Some(rel.as_str()))
            }
            ToolKind::Http { .. } => false,
        });
        if !used {
            ctx.diags.file(
                Severity::Warning,
                "unknown-entry",
                &rel,
                "tools are `<name>.toml` files and this file is not used by one; it is ignored",
                &slots::TOOL_COMMAND,
            );
        }
    }
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    tools
}

fn load_one(ctx: &mut Ctx<'_>, path: &Path, stem: &str, scope: &Scope<'_>) -> Option<Tool> {
    let (rel, src) = ctx.read(path, &slots::TOOL_COMMAND)?;
    let Ctx { tree, diags, .. } = ctx;
    let mut d = FileDiag::new(&rel, &src, &slots::TOOL_COMMAND, diags);
    let doc = toml_doc::parse(&src, &mut d)?;
    let mut fields = Fields::root(&doc);

    let is_http = match fields.string(&mut d, "kind", "`command` or `http`") {
        None => false,
        Some(kind) => match kind.value.as_str() {
            "command" => false,
            "http" => true,
            other => {
                d.error(
                    "invalid-value",
                    Some(kind.span),
                    format!("unknown tool kind `{other}`"),
                    "`kind`: `command` (the default) or `http`",
                );
                return None;
            }
        },
    };
    if is_http {
        d.doc = &slots::TOOL_HTTP;
    }

    let name = tool_name(&mut d, &mut fields, stem);
    let description =
        fields.required_string(&mut d, "description", "what the tool does, for the model");
    let description = description.and_then(|desc| {
        if desc.value.trim().is_empty() {
            d.error(
                "empty-description",
                Some(desc.span),
                "`description` is empty",
                "`description`: what the tool does",
            );
            None
        } else {
            Some(desc.value.trim().to_owned())
        }
    });
    let schema = input_schema(&mut d, &mut fields);
    let timeout_ms = fields
        .integer(&mut d, "timeout_ms", 1, MAX_TOOL_TIMEOUT_MS)
        .map_or(DEFAULT_TOOL_TIMEOUT_MS, |t| t.value);

    let kind = if is_http {
        http_kind(&mut d, &mut fields, scope, schema.as_ref(), timeout_ms)
    } else {
        let argv = if fields.has("command") {
            fields.strings(&mut d, "command", "an argv list such as [\"sh\", \"../lib/run.sh\"]")
        } else {
            fields.missing(&mut d, "command", "an argv list such as [\"sh\", \"../lib/run.sh\"]");
            None
        };
        let tool_dir = path.parent().unwrap_or(path);
        let argv = argv.and_then(|argv| resolve_argv(&mut d, tree, tool_dir, "command", &argv));
        let sandbox = fields.string(&mut d, "sandbox", "the name of a sandbox in sandboxes/");
        let sandbox = match sandbox {
            None => Some(None),
            Some(s) if scope.sandboxes.iter().any(|sb| sb.name == s.value) => Some(Some(s.value)),
            Some(s) => {
                let known: Vec<&str> = scope.sandboxes.iter().map(|sb| sb.name.as_str()).collect();
                d.error(
                    "unknown-sandbox",
                    Some(s.span),
                    format!(
                        "no sandbox named `{}` in this package (known: {})",
                        s.value,
                        list_or_none(&known)
                    ),
                    "`sandbox`: the file name of a sandboxes/<name>.toml in the same package",
                );
                None
            }
        };
        let connections = if fields.has("connections") {
            fields.strings(&mut d, "connections", "a list of connection names").map(|names| {
                let mut ok = Vec::new();
                for name in names {
                    if scope.connections.iter().any(|c| c.name == name.value) {
                        if !ok.contains(&name.value) {
                            ok.push(name.value);
                        }
                    } else {
                        let known: Vec<&str> =
                            scope.connections.iter().map(|c| c.name.as_str()).collect();
                        d.error(
                            "unknown-connection",
                            Some(name.span),
                            format!(
                                "no connection named `{}` (known: {})",
                                name.value,
                                list_or_none(&known)
                            ),
                            "`connections`: names of connections/<name>.toml files",
                        );
                    }
                }
                ok
            })
        } else {
            Some(Vec::new())
        };
        match (argv, sandbox, connections) {
            (Some(argv), Some(sandbox), Some(connections)) => {
                Some(ToolKind::Command { argv, timeout_ms, sandbox, connections })
            }
            _ => None,
        }
    };
    let approval = super::approval::approval(&mut d, &mut fields);
    fields.finish(&mut d);
    Some(Tool {
        name: name?,
        description: description?,
        input_schema: schema?,
        kind: kind?,
        approval: approval?,
        source: Source::File(rel),
    })
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

fn tool_name(d: &mut FileDiag<'_>, fields: &mut Fields<'_, '_>, stem: &str) -> Option<String> {
    match fields.string(d, "name", "a lower_snake_case tool name") {
        Some(name) if is_tool_name(&name.value) => Some(name.value),
        Some(name) => {
            d.error(
                "invalid-name",
                Some(name.span),
                format!(
                    "tool name `{}` must match ^[a-z][a-z0-9_]{{0,63}}$; use `{}`",
                    name.value,
                    lower_snake_case(&name.value)
                ),
                "`name`: lower_snake_case, starting with a letter, at most 64 characters",
            );
            None
        }
        None => {
            let lowered = lower_snake_case(stem);
            if is_tool_name(&lowered) {
                Some(lowered)
            } else {
                d.error(
                    "invalid-name",
                    None,
                    format!("the file name `{stem}` does not lower to a valid tool name (`{lowered}`); rename the file or set `name`"),
                    "a file name starting with a letter, or an explicit `name`",
                );
                None
            }
        }
    }
}

/// Reads and validates `input_schema`; absent means "no input" (an empty object).
fn input_schema(d: &mut FileDiag<'_>, fields: &mut Fields<'_, '_>) -> Option<Value> {
    if !fields.has("input_schema") {
        return Some(json!({ "type": "object", "properties": {} }));
    }
    let schema = fields.json(d, "input_schema")?;
    let Located { value, span } = schema;
    let expected = "`input_schema`: a JSON Schema object with type = \"object\"";
    if let Err(why) = check_input_schema(&value) {
        d.error("invalid-schema", Some(span), why, expected);
        return None;
    }
    Some(value)
}

/// Checks that `schema` is a valid JSON Schema describing an object; the error says why not.
pub(crate) fn check_input_schema(schema: &Value) -> Result<(), String> {
    if schema.get("type") != Some(&Value::String("object".to_owned())) {
        return Err("`input_schema` must describe an object (`type = \"object\"`): models call tools with a JSON object".to_owned());
    }
    if let Err(err) = jsonschema::meta::validate(schema) {
        let at = err.instance_path().as_str();
        let at = if at.is_empty() { "/" } else { at };
        return Err(format!("`input_schema` is not a valid JSON Schema: {err} (at `{at}`)"));
    }
    if let Err(err) = jsonschema::validator_for(schema) {
        return Err(format!("`input_schema` cannot be compiled: {err}"));
    }
    Ok(())
}

fn http_kind(
    d: &mut FileDiag<'_>,
    fields: &mut Fields<'_, '_>,
    scope: &Scope<'_>,
    schema: Option<&Value>,
    timeout_ms: u64,
) -> Option<ToolKind> {
    let connection = fields.required_string(d, "connection", "the name of an http connection");
    let connection = connection.and_then(|c| {
        let found = scope.connections.iter().find(|conn| conn.name == c.value);
        match found.map(|conn| &conn.kind) {
            Some(ConnectionKind::Http { .. }) => Some(c.value),
            Some(ConnectionKind::Mcp { .. }) => {
                d.error(
                    "wrong-connection-kind",
                    Some(c.span),
                    format!(
                        "connection `{}` is an MCP connection; HTTP tools need kind = \"http\"",
                        c.value
                    ),
                    "`connection`: the name of a connections/<name>.toml with kind = \"http\"",
                );
                None
            }
            None => {
                let known: Vec<&str> = scope
                    .connections
                    .iter()
                    .filter(|c| matches!(c.kind, ConnectionKind::Http { .. }))
                    .map(|c| c.name.as_str())
                    .collect();
                d.error(
                    "unknown-connection",
                    Some(c.span),
                    format!(
                        "no http connection named `{}` (known: {})",
                        c.value,
                        list_or_none(&known)
                    ),
                    "`connection`: the name of a connections/<name>.toml with kind = \"http\"",
                );
                None
            }
        }
    });
    let method = match fields.string(d, "method", "GET, POST, PUT, PATCH or DELETE") {
        None => Some(HttpMethod::Get),
        Some(m) => HttpMethod::parse(&m.value).or_else(|| {
            d.error(
                "invalid-value",
                Some(m.span),
                format!("unknown HTTP method `{}`", m.value),
                "`method`: GET, POST, PUT, PATCH or DELETE (upper case)",
            );
            None
        }),
    };
    let path = fields.required_string(d, "path", "a path starting with `/`");
    let path = path.and_then(|p| check_http_path(d, &p, schema));
    let response = match fields.string(d, "response", "a JSON Pointer such as \"/data/items\"") {
        None => Some(None),
        Some(pointer) if pointer.value.is_empty() || pointer.value.starts_with('/') => {
            Some(Some(pointer.value))
        }
        Some(pointer) => {
            d.error(
                "invalid-value",
                Some(pointer.span),
                format!("`{}` is not a JSON Pointer", pointer.value),
                "`response`: a JSON Pointer into the answer, starting with `/` (\"/data/items\")",
            );
            None
        }
    };
    Some(ToolKind::Http {
        connection: connection?,
        method: method?,
        path: path?,
        timeout_ms,
        response: response?,
    })
}

fn check_http_path(
    d: &mut FileDiag<'_>,
    path: &Located<String>,
    schema: Option<&Value>,
) -> Option<String> {
    let expected = "`path`: starts with `/`; `{field}` placeholders name required input properties";
    if !path.value.starts_with('/') || path.value.chars().any(char::is_whitespace) {
        d.error(
            "invalid-value",
            Some(path.span.clone()),
            "`path` must start with `/` and contain no spaces",
            expected,
        );
        return None;
    }
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut rest = path.value.as_str();
    let mut ok = true;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            d.error(
                "invalid-value",
                Some(path.span.clone()),
                "`path` has a `{` without `}`",
                expected,
            );
            return None;
        };
        let field = &rest[open + 1..open + close];
        if !required.contains(&field) {
            ok = false;
            d.error(
                "invalid-value",
                Some(path.span.clone()),
                format!("placeholder `{{{field}}}` is not a required property of `input_schema`"),
                expected,
            );
        }
        rest = &rest[open + close + 1..];
    }
    ok.then(|| path.value.clone())
}

/// Resolves `./` and `../` argv elements against `base` to project-relative paths; they must
/// exist and stay inside the agent directory. Other elements are kept as written.
pub(super) fn resolve_argv(
    d: &mut FileDiag<'_>,
    tree: &Tree,
    base: &Path,
    key: &str,
    argv: &[Located<String>],
) -> Option<Vec<String>> {
    let expected = format!(
        "`{key}`: a non-empty argv list; `./` and `../` paths are relative to this file and stay inside the agent directory"
    );
    if argv.is_empty() || argv[0].value.trim().is_empty() {
        let span = argv.first().map(|a| a.span.clone());
        d.error("invalid-value", span, format!("`{key}` needs at least a program"), expected);
        return None;
    }
    let mut out = Vec::with_capacity(argv.len());
    let mut ok = true;
    for arg in argv {
        if arg.value.contains('\0') {
            ok = false;
            d.error(
                "invalid-value",
                Some(arg.span.clone()),
                "arguments cannot contain NUL bytes",
                expected.as_str(),
            );
            continue;
        }
        if !(arg.value.starts_with("./") || arg.value.starts_with("../")) {
            out.push(arg.value.clone());
            continue;
        }
        let joined = base.join(&arg.value);
        if !joined.exists() {
            ok = false;
            d.error(
                "missing-file",
                Some(arg.span.clone()),
                format!("`{}` does not exist (relative to {})", arg.value, tree.rel(base)),
                expected.as_str(),
            );
        } else if tree.inside(&joined).is_none() {
            ok = false;
            d.error(
                "path-escape",
                Some(arg.span.clone()),
                format!("`{}` leads outside the agent directory", arg.value),
                expected.as_str(),
            );
        } else {
            // `./` marks a project-relative path for whoever runs the command.
            out.push(format!("./{}", normalize(&tree.rel(&joined))));
        }
    }
    ok.then_some(out)
}

/// Removes `.` and folds `..` in a `/`-separated relative path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}
