//! `sandboxes/*.toml`: named command environments, each exposed as a `<slug>_sandbox` tool.

use std::path::Path;

use crate::diagnostic::FileDiag;
use crate::load::{Ctx, load_named_tomls};
use crate::names::{is_tool_name, lower_snake_case};
use crate::slots;
use crate::spec::{
    DEFAULT_SANDBOX_TIMEOUT_MS, MAX_TOOL_TIMEOUT_MS, Sandbox, SandboxBackend, SandboxLimits, Source,
};
use crate::toml_doc::{self, Fields, Located};

/// Most commands in one hook list; a longer list belongs in a script under lib/.
const MAX_HOOK_COMMANDS: usize = 64;

pub(super) fn load(ctx: &mut Ctx<'_>, dir: &Path) -> Vec<Sandbox> {
    let mut out = load_named_tomls(ctx, dir, "sandboxes", "sandbox", &slots::SANDBOX, load_one);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn load_one(ctx: &mut Ctx<'_>, path: &Path, name: String) -> Option<Sandbox> {
    let (rel, src) = ctx.read(path, &slots::SANDBOX)?;
    let mut d = FileDiag::new(&rel, &src, &slots::SANDBOX, &mut ctx.diags);
    let doc = toml_doc::parse(&src, &mut d)?;
    let mut fields = Fields::root(&doc);
    if let Some(explicit) = fields.string(&mut d, "name", "no `name`") {
        d.warning(
            "sandbox-name",
            Some(explicit.span),
            format!("sandbox names come from the file path; `name` is ignored and the sandbox is `{name}`"),
            "no `name` key; rename the file to rename the sandbox",
        );
    }
    let tool_name = format!("{}_sandbox", lower_snake_case(&name));
    if !is_tool_name(&tool_name) {
        d.error(
            "invalid-name",
            None,
            format!("sandbox `{name}` lowers to `{tool_name}`, which is not a valid tool name; rename the file to start with a letter"),
            "a file name starting with a lowercase letter",
        );
        return None;
    }
    let description =
        match fields.string(&mut d, "description", "what the model may do in this sandbox") {
            Some(desc) if desc.value.trim().is_empty() => {
                d.error(
                    "empty-description",
                    Some(desc.span),
                    "`description` is empty",
                    "`description`: what the sandbox is for",
                );
                return None;
            }
            Some(desc) => desc.value.trim().to_owned(),
            None => format!("Run a shell command in the {name} sandbox."),
        };
    let backend = match fields.string(&mut d, "backend", "auto, local, bwrap, podman or docker") {
        None => Some(SandboxBackend::Auto),
        Some(b) => SandboxBackend::parse(&b.value).or_else(|| {
            d.error(
                "invalid-value",
                Some(b.span),
                format!("unknown sandbox backend `{}`", b.value),
                "`backend`: auto, local, bwrap, podman or docker",
            );
            None
        }),
    };
    let image = fields.string(&mut d, "image", "a container image reference").map(|i| i.value);
    if let (Some(backend), None) = (backend, &image)
        && matches!(backend, SandboxBackend::Podman | SandboxBackend::Docker)
    {
        d.error(
            "missing-key",
            None,
            format!("backend `{}` needs an `image`", backend.as_str()),
            "`image`: a container image such as \"debian:bookworm-slim\"",
        );
        return None;
    }
    let bootstrap = hook(&mut d, &mut fields, "bootstrap");
    let on_session = hook(&mut d, &mut fields, "on_session");
    let timeout_ms = fields
        .integer(&mut d, "timeout_ms", 1, MAX_TOOL_TIMEOUT_MS)
        .map_or(DEFAULT_SANDBOX_TIMEOUT_MS, |t| t.value);
    let network = super::connections::server_network(&mut d, &mut fields);
    let limits = limits(&mut d, &mut fields);
    let approval = super::approval::approval(&mut d, &mut fields);
    if let (Some(backend), Some(crate::spec::ServerNetwork::Allow(_))) = (backend, &network)
        && matches!(
            backend,
            SandboxBackend::Local | SandboxBackend::Podman | SandboxBackend::Docker
        )
    {
        d.error(
            "unsupported",
            None,
            format!(
                "backend `{}` cannot enforce a network allow list; use `auto` or `bwrap`, or `network = \"full\"`",
                backend.as_str()
            ),
            "`network`: a host list needs the `auto` or `bwrap` backend",
        );
        return None;
    }
    fields.finish(&mut d);
    Some(Sandbox {
        name,
        description,
        backend: backend?,
        image,
        bootstrap: bootstrap?,
        on_session: on_session?,
        timeout_ms,
        network: network?,
        limits: limits?,
        approval: approval?,
        source: Source::File(rel),
    })
}

/// `[limits]`: what the sandbox's commands may consume.
fn limits(d: &mut FileDiag<'_>, fields: &mut Fields<'_, '_>) -> Option<SandboxLimits> {
    if !fields.has("limits") {
        return Some(SandboxLimits::default());
    }
    const KNOWN: [&str; 5] = ["memory_mb", "cpu_percent", "pids", "disk_mb", "output_kb"];
    let mut t = fields.table(d, "limits", "a table of limits")?;
    let mut ok = t.keys().iter().all(|k| KNOWN.contains(&k.as_str()));
    let mut int = |t: &mut Fields<'_, '_>, key: &str, max: u64| {
        let present = t.has(key);
        let value = t.integer(d, key, 1, max).map(|v| v.value);
        ok &= !present || value.is_some();
        value
    };
    let out = SandboxLimits {
        memory_mb: int(&mut t, "memory_mb", 1 << 20),
        cpu_percent: int(&mut t, "cpu_percent", 100 * 1024),
        pids: int(&mut t, "pids", 1 << 20),
        disk_mb: int(&mut t, "disk_mb", 1 << 24),
        output_kb: int(&mut t, "output_kb", 64 * 1024),
    };
    t.finish_strict(d, "a limit ash does not know would not be enforced");
    ok.then_some(out)
}

fn hook(d: &mut FileDiag<'_>, fields: &mut Fields<'_, '_>, key: &str) -> Option<Vec<String>> {
    if !fields.has(key) {
        return Some(Vec::new());
    }
    let commands = fields.strings(d, key, "a list of shell command strings")?;
    if commands.len() > MAX_HOOK_COMMANDS {
        d.error(
            "too-many-commands",
            commands.first().map(|c| c.span.clone()),
            format!("`{key}` has {} commands; the limit is {MAX_HOOK_COMMANDS}", commands.len()),
            format!("`{key}`: at most {MAX_HOOK_COMMANDS} commands; move longer setups into a script in lib/"),
        );
        return None;
    }
    let mut out = Vec::with_capacity(commands.len());
    for Located { value, span } in commands {
        if value.trim().is_empty() || value.contains('\0') {
            d.error(
                "invalid-value",
                Some(span),
                format!("`{key}` holds an empty command or a NUL byte"),
                format!("`{key}`: non-empty shell commands"),
            );
            return None;
        }
        out.push(value);
    }
    Some(out)
}
