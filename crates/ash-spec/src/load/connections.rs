//! `connections/*.toml`: MCP and HTTP connections with runtime-owned auth and policy.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diagnostic::FileDiag;
use crate::interpolate::Interpolated;
use crate::load::agent_toml::check_url;
use crate::load::tools::resolve_argv;
use crate::load::{Ctx, interpolate, load_named_tomls};
use crate::names::{is_tool_name, lower_snake_case};
use crate::slots;
use crate::spec::{
    Connection, ConnectionAuth, ConnectionKind, DEFAULT_CONNECTION_TIMEOUT_MS, MAX_RETRY_ATTEMPTS,
    MAX_TOOL_TIMEOUT_MS, McpTools, McpTransport, OpenApiTools, ServerNetwork, Source,
};
use crate::toml_doc::{self, Fields};

pub(super) fn load(ctx: &mut Ctx<'_>, dir: &Path) -> Vec<Connection> {
    let mut out =
        load_named_tomls(ctx, dir, "connections", "connection", &slots::CONNECTION, load_one);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn load_one(ctx: &mut Ctx<'_>, path: &Path, name: String) -> Option<Connection> {
    let (rel, src) = ctx.read(path, &slots::CONNECTION)?;
    let Ctx { tree, diags, env } = ctx;
    let env = *env;
    let mut d = FileDiag::new(&rel, &src, &slots::CONNECTION, diags);
    let doc = toml_doc::parse(&src, &mut d)?;
    let mut fields = Fields::root(&doc);
    let kind_text = fields.required_string(&mut d, "kind", "`mcp`, `http` or `openapi`")?;
    let mut instructions = false;

    let kind = match kind_text.value.as_str() {
        "mcp" => {
            let transport = match fields.table(&mut d, "transport", "a table") {
                None => {
                    fields.missing(&mut d, "transport", "a [transport] table");
                    None
                }
                Some(mut t) => {
                    let parsed =
                        match t.required_string(&mut d, "type", "`streamable-http` or `stdio`") {
                            None => None,
                            Some(ty) if ty.value == "streamable-http" => {
                                let url = t.required_string(&mut d, "url", "the server URL");
                                url.and_then(|u| {
                                    let resolved =
                                        interpolate(&mut d, env, &t.name("url"), &u, false)?;
                                    match check_url(resolved.expose()) {
                                        Ok(()) => {
                                            Some(McpTransport::StreamableHttp { url: resolved })
                                        }
                                        Err(why) => {
                                            d.error(
                                                "invalid-url",
                                                Some(u.span),
                                                format!("`{}` {why}", t.name("url")),
                                                "`url`: an http or https URL",
                                            );
                                            None
                                        }
                                    }
                                })
                            }
                            Some(ty) if ty.value == "stdio" => {
                                let argv = if t.has("command") {
                                    t.strings(&mut d, "command", "an argv list")
                                } else {
                                    t.missing(&mut d, "command", "an argv list");
                                    None
                                };
                                let base = path.parent().unwrap_or(path);
                                let command = argv.and_then(|argv| {
                                    resolve_argv(&mut d, tree, base, "transport.command", &argv)
                                });
                                let env_vars = server_env(&mut d, env, &mut t);
                                let network = server_network(&mut d, &mut t);
                                let read_only = server_read_only(&mut d, env, &mut t);
                                match (command, env_vars, network, read_only) {
                                    (Some(command), Some(env), Some(network), Some(read_only)) => {
                                        Some(McpTransport::Stdio {
                                            command,
                                            env,
                                            network,
                                            read_only,
                                        })
                                    }
                                    _ => None,
                                }
                            }
                            Some(ty) => {
                                d.error(
                                    "invalid-value",
                                    Some(ty.span),
                                    format!("unknown MCP transport `{}`", ty.value),
                                    "`transport.type`: `streamable-http` or `stdio`",
                                );
                                None
                            }
                        };
                    t.finish(&mut d);
                    parsed
                }
            };
            let tools = mcp_tools(&mut d, &mut fields, &name);
            instructions = fields.boolean(&mut d, "instructions").is_some_and(|b| b.value);
            Some(ConnectionKind::Mcp { transport: transport?, tools: tools? })
        }
        "http" | "openapi" => {
            let openapi = if kind_text.value == "openapi" {
                let base = path.parent().unwrap_or(path);
                openapi_tools(&mut d, tree, base, &mut fields, &name)
            } else {
                Some(None)
            };
            let base_url = if kind_text.value == "openapi" {
                fields.string(&mut d, "base_url", "an http(s) URL")
            } else {
                fields.required_string(&mut d, "base_url", "an http(s) URL")
            };
            let base_url = match (base_url, &openapi) {
                (Some(u), _) => {
                    let resolved = interpolate(&mut d, env, "base_url", &u, false);
                    resolved.and_then(|resolved| match check_url(resolved.expose()) {
                        Ok(()) => Some(resolved),
                        Err(why) => {
                            d.error(
                                "invalid-url",
                                Some(u.span),
                                format!("`base_url` {why}"),
                                "`base_url`: an http or https URL",
                            );
                            None
                        }
                    })
                }
                // The document's first server.
                (None, Some(Some((_, Some(server))))) => {
                    Some(Interpolated::literal(server.clone()))
                }
                (None, Some(Some((_, None)))) => {
                    fields.missing(
                        &mut d,
                        "base_url",
                        "the API's URL (the document names no absolute server)",
                    );
                    None
                }
                (None, _) => None,
            };
            let mut headers = BTreeMap::new();
            let mut headers_ok = true;
            for (key, value) in fields.string_map(&mut d, "headers") {
                if !is_header_name(&key.value) {
                    headers_ok = false;
                    d.error(
                        "invalid-value",
                        Some(key.span),
                        format!("`{}` is not a valid HTTP header name", key.value),
                        "header names: letters, digits and `-`",
                    );
                    continue;
                }
                match interpolate(&mut d, env, &format!("headers.{}", key.value), &value, false) {
                    Some(v) => {
                        headers.insert(key.value, v);
                    }
                    None => headers_ok = false,
                }
            }
            match (base_url, headers_ok, openapi) {
                (Some(base_url), true, Some(api)) => Some(ConnectionKind::Http {
                    base_url,
                    headers,
                    openapi: api.map(|(api, _)| api),
                }),
                _ => None,
            }
        }
        other => {
            d.error(
                "invalid-value",
                Some(kind_text.span),
                format!("unknown connection kind `{other}`"),
                "`kind`: `mcp`, `http` or `openapi`",
            );
            return None;
        }
    };

    let auth = match fields.table(&mut d, "auth", "a table") {
        None => Some(ConnectionAuth::None),
        Some(mut a) => {
            let parsed = connection_auth(&mut d, env, &mut a);
            a.finish(&mut d);
            parsed
        }
    };
    let (timeout_ms, retry_attempts) = match fields.table(&mut d, "policy", "a table") {
        None => (DEFAULT_CONNECTION_TIMEOUT_MS, 0),
        Some(mut p) => {
            let timeout = p
                .integer(&mut d, "timeout_ms", 1, MAX_TOOL_TIMEOUT_MS)
                .map_or(DEFAULT_CONNECTION_TIMEOUT_MS, |t| t.value);
            let retries = p
                .integer(&mut d, "retry_attempts", 0, u64::from(MAX_RETRY_ATTEMPTS))
                .and_then(|r| u32::try_from(r.value).ok())
                .unwrap_or(0);
            p.finish(&mut d);
            (timeout, retries)
        }
    };
    fields.finish(&mut d);
    Some(Connection {
        name,
        kind: kind?,
        auth: auth?,
        timeout_ms,
        retry_attempts,
        instructions,
        source: Source::File(rel),
    })
}

/// `spec` and `[operations]` of an `openapi` connection: the document read and the allowed
/// operations checked; with the document's first server URL. `Some(None)` never happens
/// here (that is a plain `http` connection); `None` on error.
fn openapi_tools(
    d: &mut FileDiag<'_>,
    tree: &mut crate::source::Tree,
    base: &Path,
    fields: &mut Fields<'_, '_>,
    connection: &str,
) -> Option<Option<(OpenApiTools, Option<String>)>> {
    if let Some(url) = fields.string(d, "spec_url", "a URL") {
        d.error(
            "unsupported",
            Some(url.span),
            "`spec_url` is not supported: ash reads OpenAPI documents from the agent directory, so what the agent offers is what was built",
            "download the document into lib/ and write `spec = \"../lib/<file>\"`",
        );
    }
    let spec = fields.required_string(d, "spec", "the OpenAPI document, e.g. \"../lib/shop.yaml\"");
    let Some(mut ops) = fields.table(d, "operations", "a table") else {
        fields.missing(
            d,
            "operations",
            "an [operations] table with `allow`, the operationIds offered as tools",
        );
        return None;
    };
    let mut ok = true;
    let namespace = namespace(d, &mut ops, "operations", connection).unwrap_or_else(|lowered| {
        ok = false;
        lowered
    });
    let allow = if ops.has("allow") {
        ops.strings(d, "allow", "a list of the document's operationIds")
    } else {
        ops.missing(d, "allow", "a list of the document's operationIds");
        None
    };
    ops.finish(d);
    // The allow list first: only the operations it names are built.
    let doc = spec.and_then(|spec| {
        if !(spec.value.starts_with("./") || spec.value.starts_with("../")) {
            d.error(
                "invalid-value",
                Some(spec.span),
                format!(
                    "`spec` = `{}` must be a path relative to this file (`./` or `../`)",
                    spec.value
                ),
                "`spec`: a path such as \"../lib/shop.openapi.yaml\"",
            );
            return None;
        }
        let path = base.join(&spec.value);
        let text = match tree.read_named(&path, crate::source::MAX_ASSET_BYTES) {
            Ok(text) => text,
            Err(why) => {
                d.error(
                    "invalid-value",
                    Some(spec.span),
                    format!("`spec` = `{}`: {why}", spec.value),
                    "`spec`: an OpenAPI 3 document inside the agent directory",
                );
                return None;
            }
        };
        let wanted = |id: &str| allow.as_ref().is_some_and(|a| a.iter().any(|x| x.value == id));
        match crate::openapi::parse_openapi(&text, &wanted) {
            Ok(doc) => Some((doc, format!("./{}", tree.rel(&path)), spec.span)),
            Err(why) => {
                d.error(
                    "invalid-openapi",
                    Some(spec.span),
                    format!("`spec` = `{}`: {why}", spec.value),
                    "an OpenAPI 3.0 or 3.1 document, JSON or YAML",
                );
                None
            }
        }
    });
    let (doc, spec, _) = doc?;
    let mut operations = Vec::new();
    for id in allow? {
        let Some(operation) = doc.operations.iter().find(|o| o.id == id.value) else {
            ok = false;
            let known: Vec<&str> = doc.operations.iter().map(|o| o.id.as_str()).take(20).collect();
            d.error(
                "unknown-operation",
                Some(id.span),
                format!(
                    "the document has no operation `{}` (it has: {})",
                    id.value,
                    known.join(", ")
                ),
                "`operations.allow`: operationIds of the document",
            );
            continue;
        };
        if let Some(why) = &operation.unusable {
            ok = false;
            d.error(
                "unusable-operation",
                Some(id.span),
                format!("operation `{}` cannot be offered: {why}", id.value),
                "`operations.allow`: operations with JSON bodies and path, query or header parameters",
            );
            continue;
        }
        let tool = format!("{namespace}__{}", lower_snake_case(&operation.id));
        if tool.len() > crate::names::MAX_TOOL_NAME_LEN {
            ok = false;
            d.error(
                "invalid-name",
                Some(id.span),
                format!(
                    "operation `{}` would be the tool `{tool}`, longer than {} characters",
                    id.value,
                    crate::names::MAX_TOOL_NAME_LEN
                ),
                "a shorter `operations.namespace`",
            );
            continue;
        }
        if operations.iter().any(|o: &crate::openapi::Operation| o.id == operation.id) {
            continue;
        }
        operations.push(operation.clone());
    }
    ok.then(|| {
        Some((
            OpenApiTools { spec, title: doc.title.clone(), namespace, operations },
            doc.server.clone(),
        ))
    })
}

/// Most variables `[transport.env]` may set.
const MAX_SERVER_ENV: usize = 64;

/// `[transport.env]` of a stdio server: names a process environment accepts, values with
/// `${VAR}`s resolved. `None` on error.
fn server_env(
    d: &mut FileDiag<'_>,
    env: &BTreeMap<String, String>,
    t: &mut Fields<'_, '_>,
) -> Option<BTreeMap<String, Interpolated>> {
    let mut out = BTreeMap::new();
    let mut ok = true;
    let entries = t.string_map(d, "env");
    if entries.len() > MAX_SERVER_ENV {
        d.error(
            "too-many",
            entries.first().map(|(k, _)| k.span.clone()),
            format!("`transport.env` sets {} variables; at most {MAX_SERVER_ENV}", entries.len()),
            "`transport.env`: the variables the server needs",
        );
        return None;
    }
    for (key, value) in entries {
        let name_ok = key.value.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            ok = false;
            d.error(
                "invalid-name",
                Some(key.span),
                format!("`{}` is not an environment variable name", key.value),
                "`transport.env` keys: letters, digits and `_`, not starting with a digit",
            );
            continue;
        }
        // The server's own settings, often its credentials: treated as secrets.
        match interpolate(d, env, &format!("transport.env.{}", key.value), &value, true) {
            Some(v) => {
                out.insert(key.value, v);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `transport.read_only` of a stdio server: absolute host paths (`${VAR}`s resolved), at most
/// 32. `None` on error.
fn server_read_only(
    d: &mut FileDiag<'_>,
    env: &BTreeMap<String, String>,
    t: &mut Fields<'_, '_>,
) -> Option<Vec<String>> {
    if !t.has("read_only") {
        return Some(Vec::new());
    }
    let paths = t.strings(d, "read_only", "a list of absolute paths")?;
    let mut out = Vec::new();
    let mut ok = true;
    if paths.len() > 32 {
        d.error(
            "too-many",
            paths.first().map(|p| p.span.clone()),
            format!("`transport.read_only` lists {} paths; at most 32", paths.len()),
            "`transport.read_only`: the few directories the server's program needs",
        );
        return None;
    }
    for path in paths {
        let Some(resolved) = interpolate(d, env, "transport.read_only", &path, false) else {
            ok = false;
            continue;
        };
        let text = resolved.expose();
        let valid = text.starts_with('/')
            && !text.contains('\0')
            && !std::path::Path::new(text)
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if valid {
            out.push(text.to_owned());
        } else {
            ok = false;
            d.error(
                "invalid-value",
                Some(path.span),
                format!("`{}` is not an absolute path without `..`", path.value),
                "`transport.read_only`: absolute paths such as \"/opt/mcp\" or \"${HOME}/.venvs/mcp\"",
            );
        }
    }
    ok.then_some(out)
}

/// `network` of a sandboxed process (a stdio server's `transport.network`, a named
/// sandbox's `network`): `"none"` (the default), `"full"`, or a list of hosts. `None` on error.
pub(super) fn server_network(
    d: &mut FileDiag<'_>,
    t: &mut Fields<'_, '_>,
) -> Option<ServerNetwork> {
    const EXPECTED: &str =
        "`\"none\"`, `\"full\"`, or a list of hosts such as [\"api.github.com\"]";
    if !t.has("network") {
        return Some(ServerNetwork::None);
    }
    if t.is_string("network") {
        let word = t.string(d, "network", EXPECTED)?;
        return match word.value.as_str() {
            "none" => Some(ServerNetwork::None),
            "full" => Some(ServerNetwork::Full),
            other => {
                d.error(
                    "invalid-value",
                    Some(word.span),
                    format!("unknown network `{other}`"),
                    format!("`{}`: {EXPECTED}", t.name("network")),
                );
                None
            }
        };
    }
    let hosts = t.strings(d, "network", EXPECTED)?;
    let mut out = Vec::new();
    let mut ok = true;
    for host in hosts {
        let valid = !host.value.is_empty()
            && host.value.len() <= 253
            && host.value.chars().all(|c| c.is_ascii_alphanumeric() || ".-*:[]".contains(c));
        if valid {
            out.push(host.value);
        } else {
            ok = false;
            d.error(
                "invalid-value",
                Some(host.span),
                format!("`{}` is not a host", host.value),
                format!(
                    "`{}`: hosts such as `api.github.com`, `*.example.com` or `10.0.0.5:8080`",
                    t.name("network")
                ),
            );
        }
    }
    ok.then_some(ServerNetwork::Allow(out))
}

/// `namespace` in the `[table]` that lowers remote names into model-visible tools (`tools` of
/// an MCP connection, `operations` of an OpenAPI one): lower_snake_case, by default the
/// connection's name lowered. An invalid one is reported and `Err` holds it lowered.
fn namespace(
    d: &mut FileDiag<'_>,
    t: &mut Fields<'_, '_>,
    table: &str,
    connection: &str,
) -> Result<String, String> {
    match t.string(d, "namespace", "a lower_snake_case prefix") {
        Some(ns) if is_tool_name(&ns.value) => Ok(ns.value),
        Some(ns) => {
            let lowered = lower_snake_case(&ns.value);
            d.error(
                "invalid-name",
                Some(ns.span),
                format!("namespace `{}` must be lower_snake_case; use `{lowered}`", ns.value),
                format!("`{table}.namespace`: lower_snake_case, starting with a letter"),
            );
            Err(lowered)
        }
        None => Ok(lower_snake_case(connection)),
    }
}

/// `[tools]`: `Some(None)` when absent (nothing lowered), `None` on error.
fn mcp_tools(
    d: &mut FileDiag<'_>,
    fields: &mut Fields<'_, '_>,
    connection: &str,
) -> Option<Option<McpTools>> {
    let Some(mut t) = fields.table(d, "tools", "a table") else { return Some(None) };
    let mut ok = true;
    match t.string(d, "mode", "`allow`") {
        Some(mode) if mode.value != "allow" => {
            ok = false;
            d.error(
                "invalid-value",
                Some(mode.span),
                format!("tool mode `{}` is not supported", mode.value),
                "`tools.mode`: `allow`, with the exposed tools listed in `allow`",
            );
        }
        _ => {}
    }
    let namespace = namespace(d, &mut t, "tools", connection).unwrap_or_else(|lowered| {
        ok = false;
        lowered
    });
    let allow = if t.has("allow") {
        t.strings(d, "allow", "a list of the server's tool names")
    } else {
        t.missing(d, "allow", "a list of the server's tool names");
        None
    };
    let mut names = Vec::new();
    for tool in allow.unwrap_or_default() {
        let visible = format!("{namespace}__{}", tool.value);
        if tool.value.is_empty() || !crate::names::is_model_tool_name(&visible) {
            ok = false;
            d.error(
                "invalid-name",
                Some(tool.span),
                format!("MCP tool `{}` cannot be exposed as `{visible}` (letters, digits, `_` and `-`, 64 characters in all)", tool.value),
                "`tools.allow`: the server's tool names, each fitting `<namespace>__<tool>` in 64 characters",
            );
        } else if names.contains(&tool.value) {
            d.warning(
                "duplicate-entry",
                Some(tool.span),
                format!("`{}` is listed twice", tool.value),
                "each tool once",
            );
        } else {
            names.push(tool.value);
        }
    }
    if ok && names.is_empty() {
        d.warning(
            "empty-allow-list",
            Some(t.span()),
            "`tools.allow` is empty, so the model sees none of this server's tools",
            "`tools.allow`: at least one tool name",
        );
    }
    t.finish(d);
    ok.then_some(Some(McpTools { allow: names, namespace }))
}

fn connection_auth(
    d: &mut FileDiag<'_>,
    env: &BTreeMap<String, String>,
    a: &mut Fields<'_, '_>,
) -> Option<ConnectionAuth> {
    let kind = a.required_string(d, "kind", "`none`, `api-key`, `basic` or `bearer`")?;
    let secret = |d: &mut FileDiag<'_>, a: &mut Fields<'_, '_>, key: &str, is_secret: bool| {
        let value = a.required_string(d, key, "\"${ENV_VAR}\"")?;
        interpolate(d, env, &a.name(key), &value, is_secret)
    };
    match kind.value.as_str() {
        "none" => Some(ConnectionAuth::None),
        "api-key" => {
            let header = match a.string(d, "header", "an HTTP header name") {
                None => Some("x-api-key".to_owned()),
                Some(h) if is_header_name(&h.value) => Some(h.value),
                Some(h) => {
                    d.error(
                        "invalid-value",
                        Some(h.span),
                        format!("`{}` is not a valid HTTP header name", h.value),
                        "`auth.header`: letters, digits and `-`",
                    );
                    None
                }
            };
            let value = secret(d, a, "value", true);
            Some(ConnectionAuth::ApiKey { header: header?, value: value? })
        }
        "basic" => {
            let username = secret(d, a, "username", false);
            let password = secret(d, a, "password", true);
            Some(ConnectionAuth::Basic { username: username?, password: password? })
        }
        "bearer" => Some(ConnectionAuth::Bearer { token: secret(d, a, "token", true)? }),
        "service-account" => {
            d.error(
                "unsupported",
                Some(kind.span),
                "`service-account` auth is not supported yet",
                "`auth.kind`: `none`, `api-key`, `basic` or `bearer` (e.g. a token minted outside ash)",
            );
            None
        }
        other => {
            d.error(
                "invalid-value",
                Some(kind.span),
                format!("unknown auth kind `{other}`"),
                "`auth.kind`: `none`, `api-key`, `basic` or `bearer`",
            );
            None
        }
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
