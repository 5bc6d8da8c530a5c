//! Loading an agent directory: layout discovery, the package walk, and cross-slot checks.
//!
//! Owns which entries of a package are slots, the order slots are read in (so references
//! resolve), root-only slots, subagent recursion and the model-visible name collision check.
//! Each slot's own format lives in a sibling file. Never executes, never writes.

mod agent_toml;
mod approval;
mod connections;
mod modules;
mod prompt;
mod sandboxes;
mod schedules;
mod skills;
mod tools;

pub(crate) use agent_toml::parse_providers;
pub(crate) use tools::check_input_schema;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics, FileDiag, Severity};
use crate::interpolate::{Interpolated, resolve};
use crate::names::{
    RESERVED_TOOL_NAMES, is_slug, is_tool_name, lower_kebab_case, lower_snake_case,
};
use crate::slots::{self, SlotDoc};
use crate::source::{Entry, EntryKind, Tree};
use crate::spec::{AgentSpec, Connection, Layout, Package, Source, Subagent};
use crate::toml_doc::Located;

/// Deepest subagent nesting accepted (root = 0). Deeper trees are almost certainly a mistake or
/// a cycle, and each level multiplies the prompts a turn can fan out to.
pub const MAX_SUBAGENT_DEPTH: usize = 8;

/// What the caller hands in: the environment used for `${VAR}` interpolation.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Variables `${NAME}` may reference. `ash-cli` passes the process environment.
    pub env: BTreeMap<String, String>,
}

/// The outcome of loading: everything that resolved, and every problem found.
#[derive(Debug)]
pub struct Loaded {
    spec: AgentSpec,
    diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// The agent as far as it resolved; items with errors are left out.
    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// Errors first, then warnings.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// The spec and its warnings, or every diagnostic when there is an error.
    pub fn into_result(self) -> Result<(AgentSpec, Vec<Diagnostic>), Vec<Diagnostic>> {
        if self.has_errors() { Err(self.diagnostics) } else { Ok((self.spec, self.diagnostics)) }
    }
}

/// Why a directory could not be loaded at all (problems inside it are diagnostics instead).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist.
    #[error("{}: no such directory", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a file.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Entries a package may hold; anything else in a nested or subagent package is warned about.
const SLOT_ENTRIES: &[&str] = &[
    "agent.toml",
    "system.md",
    "system",
    "instructions.md",
    "instructions",
    "skills",
    "tools",
    "sandboxes",
    "connections",
    "schedules",
    "subagents",
    "lib",
    "scripts",
];

/// Slots of later ash versions or other frameworks, recognised so the warning can say so.
const UNSUPPORTED_ENTRIES: &[&str] =
    &["channels", "hooks", "evals", "sandbox", "instrumentation.ts"];

/// Reads `dir` (the project directory) into an [`AgentSpec`] plus diagnostics.
pub fn load(dir: &Path, options: &LoadOptions) -> Result<Loaded, LoadError> {
    let meta = fs::metadata(dir).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => LoadError::NotFound { path: dir.to_owned() },
        _ => LoadError::Io { path: dir.to_owned(), source },
    })?;
    if !meta.is_dir() {
        return Err(LoadError::NotADirectory { path: dir.to_owned() });
    }
    let project_canonical =
        fs::canonicalize(dir).map_err(|source| LoadError::Io { path: dir.to_owned(), source })?;

    let mut diags = Diagnostics::default();
    let nested = dir.join("agent");
    let nested_ok = match fs::canonicalize(&nested) {
        Ok(target) if target.starts_with(&project_canonical) => target.is_dir(),
        Ok(_) => {
            diags.file(
                Severity::Error,
                "symlink-escape",
                "agent",
                "agent/ is a symlink leading outside the project directory; it was not followed",
                &slots::LAYOUT,
            );
            false
        }
        Err(_) => false,
    };
    let (layout, agent_root) =
        if nested_ok { (Layout::Nested, nested) } else { (Layout::Flat, dir.to_owned()) };
    let boundary = fs::canonicalize(&agent_root)
        .map_err(|source| LoadError::Io { path: agent_root.clone(), source })?;

    let mut ctx = Ctx { tree: Tree::new(dir.to_owned(), boundary), diags, env: &options.env };
    if layout == Layout::Nested {
        for stray in ["agent.toml", "system.md", "instructions.md"] {
            if dir.join(stray).exists() {
                ctx.diags.file(
                    Severity::Warning,
                    "mixed-layout",
                    stray,
                    format!("ignored: agent/ exists, so the agent is read from agent/{stray}"),
                    &slots::LAYOUT,
                );
            }
        }
    }
    let default_name = default_agent_name(&project_canonical);
    let root = load_package(
        &mut ctx,
        &agent_root,
        &PackageRole::Root { default_name, nested: layout == Layout::Nested },
        &[],
    )
    .unwrap_or_else(|| Package::empty("agent"));
    if layout == Layout::Flat && is_blank(&root) && !ctx.diags.has_errors() {
        ctx.diags.file(
            Severity::Error,
            "no-agent",
            ".",
            "no agent here: there is neither an agent/ directory nor agent.toml or system.md",
            &slots::LAYOUT,
        );
    }
    let Ctx { tree, diags, .. } = ctx;
    Ok(Loaded {
        spec: AgentSpec { layout, root, files: tree.files },
        diagnostics: diags.into_sorted(),
    })
}

fn is_blank(package: &Package) -> bool {
    package.prompt.is_empty()
        && package.model.is_none()
        && package.skills.is_empty()
        && package.tools.is_empty()
        && package.sandboxes.is_empty()
        && package.subagents.is_empty()
        && package.connections.is_empty()
        && package.schedules.is_empty()
}

/// The name an agent gets without `name` in agent.toml: its directory's name in kebab-case, or
/// `agent` when nothing usable is left.
pub fn default_agent_name(dir: &Path) -> String {
    let base = dir.file_name().and_then(|n| n.to_str()).unwrap_or("agent");
    let name = lower_kebab_case(base);
    if name.is_empty() { "agent".to_owned() } else { name }
}

/// Shared state of one load.
pub(crate) struct Ctx<'e> {
    pub(crate) tree: Tree,
    pub(crate) diags: Diagnostics,
    pub(crate) env: &'e BTreeMap<String, String>,
}

impl Ctx<'_> {
    /// Reads a text file; the returned text is owned so diagnostics can borrow `self` again.
    pub(crate) fn read(&mut self, path: &Path, doc: &SlotDoc) -> Option<(String, String)> {
        let rel = self.tree.rel(path);
        let text = self.tree.read_text(path, doc, &mut self.diags)?;
        Some((rel, text))
    }
}

/// Resolves `${VAR}`s in a field, reporting problems at the field. For secret fields, a literal
/// value draws a warning. Messages name the variable, never its value.
pub(crate) fn interpolate(
    d: &mut FileDiag<'_>,
    env: &BTreeMap<String, String>,
    field: &str,
    value: &Located<String>,
    secret: bool,
) -> Option<Interpolated> {
    match resolve(&value.value, env) {
        Ok(resolved) => {
            if secret && !resolved.uses_env() {
                d.warning(
                    "literal-secret",
                    Some(value.span.clone()),
                    format!(
                        "`{field}` is written literally; anyone who can read this file can read the secret"
                    ),
                    format!("`{field}` = \"${{SOME_ENV_VAR}}\", read from the environment at load time"),
                );
            }
            Some(resolved)
        }
        Err(err) => {
            d.error(
                "env-interpolation",
                Some(value.span.clone()),
                format!("`{field}`: {err}"),
                "every ${VAR} set to a non-empty value in the environment ash runs in",
            );
            None
        }
    }
}

/// Whether a package is the root or a subagent.
pub(crate) enum PackageRole {
    Root { default_name: String, nested: bool },
    Subagent { id: String, depth: usize },
}

impl PackageRole {
    fn is_root(&self) -> bool {
        matches!(self, Self::Root { .. })
    }
}

/// Loads one package. `root_connections` lets a subagent's HTTP tools use the root's connections.
fn load_package(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    role: &PackageRole,
    root_connections: &[Connection],
) -> Option<Package> {
    let strict = match role {
        PackageRole::Root { nested, .. } => *nested,
        PackageRole::Subagent { .. } => true,
    };
    if !ctx.tree.enter(dir, &mut ctx.diags) {
        return None;
    }
    let entries = ctx.tree.list(dir, &mut ctx.diags);
    let find = |name: &str| entries.iter().find(|e| e.name == name);
    let dir_slot = |ctx: &mut Ctx<'_>, name: &str| -> Option<PathBuf> {
        let entry = find(name)?;
        if entry.kind == EntryKind::Dir {
            Some(entry.path.clone())
        } else {
            let rel = ctx.tree.rel(&entry.path);
            ctx.diags.file(
                Severity::Error,
                "slot-not-a-directory",
                &rel,
                format!("`{name}` must be a directory"),
                &slots::LAYOUT,
            );
            None
        }
    };

    let mut package = Package::empty(match role {
        PackageRole::Root { default_name, .. } => default_name.clone(),
        PackageRole::Subagent { id, .. } => id.clone(),
    });
    package.dir = ctx.tree.rel(dir);

    // agent.toml first: it names the package and declares providers.
    if let Some(entry) = find("agent.toml").filter(|e| e.kind == EntryKind::File) {
        agent_toml::load(ctx, &entry.path, role, &mut package);
    } else if let PackageRole::Subagent { id, .. } = role {
        let rel = format!("{}/agent.toml", ctx.tree.rel(dir));
        ctx.diags.file(
            Severity::Error,
            "subagent-description",
            &rel,
            format!("subagent `{id}` has no agent.toml with a `description`; the parent model needs it to decide when to delegate"),
            &slots::SUBAGENT,
        );
    }

    prompt::load(ctx, &entries, &mut package);

    if let Some(path) = dir_slot(ctx, "lib") {
        package.lib = Some(ctx.tree.rel(&path));
        // lib/ is hashed so a changed helper changes the manifest, but never mounted.
        ctx.tree.walk_files(&path, &slots::FILE, &mut ctx.diags);
    }
    if let Some(path) = dir_slot(ctx, "scripts") {
        // Model scripts for the `scripted/` provider; hashed, never mounted.
        ctx.tree.walk_files(&path, &slots::FILE, &mut ctx.diags);
    }
    if let Some(path) = dir_slot(ctx, "sandboxes") {
        package.sandboxes = sandboxes::load(ctx, &path);
    }
    if let Some(path) = dir_slot(ctx, "connections") {
        if role.is_root() {
            package.connections = connections::load(ctx, &path);
        } else {
            root_only(ctx, &path, "connections");
        }
    }
    if let Some(path) = dir_slot(ctx, "schedules") {
        if role.is_root() {
            package.schedules = schedules::load(ctx, &path);
        } else {
            root_only(ctx, &path, "schedules");
        }
    }
    if let Some(path) = dir_slot(ctx, "skills") {
        package.skills = skills::load(ctx, &path);
    }
    // Connections are root-only; a subagent's HTTP tools use the root's.
    let connections = if role.is_root() { &package.connections[..] } else { root_connections };
    if let Some(path) = dir_slot(ctx, "tools") {
        let scope = tools::Scope { sandboxes: &package.sandboxes, connections };
        package.tools = tools::load(ctx, &path, &scope);
    }
    if let Some(path) = dir_slot(ctx, "subagents") {
        let depth = match role {
            PackageRole::Root { .. } => 0,
            PackageRole::Subagent { depth, .. } => *depth,
        };
        package.subagents = load_subagents(ctx, &path, depth + 1, connections);
    }

    for entry in &entries {
        classify_other(ctx, entry, strict);
    }
    check_collisions(&mut ctx.diags, &package);
    ctx.tree.leave();
    Some(package)
}

/// Loads every `<name>.toml` file of slot directory `dir` whose name is a slug, with
/// `load_one(ctx, path, name)`. Module files, bad names and other entries are reported.
pub(crate) fn load_named_tomls<T>(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    slot: &str,
    noun: &str,
    doc: &SlotDoc,
    mut load_one: impl FnMut(&mut Ctx<'_>, &Path, String) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for entry in ctx.tree.list(dir, &mut ctx.diags) {
        let rel = ctx.tree.rel(&entry.path);
        let (stem, ext) = entry.stem_and_ext();
        match (entry.kind, ext) {
            (EntryKind::File, Some("toml")) if is_slug(stem) => {
                let name = stem.to_owned();
                out.extend(load_one(ctx, &entry.path, name));
            }
            (EntryKind::File, Some("toml")) => ctx.diags.file(
                Severity::Error,
                "invalid-name",
                &rel,
                format!(
                    "{noun} name `{stem}` must be lowercase letters, digits, `-` or `_`; rename the file to `{}.toml`",
                    lower_kebab_case(stem)
                ),
                doc,
            ),
            (EntryKind::File, _) if modules::report_slot_module(ctx, &entry, slot) => {}
            _ => ctx.diags.file(
                Severity::Warning,
                "unknown-entry",
                &rel,
                format!("{slot} are `<name>.toml` files; this entry is ignored"),
                doc,
            ),
        }
    }
    out
}

fn root_only(ctx: &mut Ctx<'_>, path: &Path, slot: &str) {
    let rel = ctx.tree.rel(path);
    ctx.diags.file(
        Severity::Error,
        "root-only",
        &rel,
        format!("{slot}/ is only read from the root agent; move it there"),
        &slots::LAYOUT,
    );
}

/// Reports entries that are not slots: module files, unsupported slots, strays.
fn classify_other(ctx: &mut Ctx<'_>, entry: &Entry, strict: bool) {
    if SLOT_ENTRIES.contains(&entry.name.as_str()) {
        return;
    }
    if modules::report_root_module(ctx, entry) {
        return;
    }
    if !strict {
        return;
    }
    let rel = ctx.tree.rel(&entry.path);
    if UNSUPPORTED_ENTRIES.contains(&entry.name.as_str()) {
        ctx.diags.file(
            Severity::Warning,
            "unsupported-slot",
            &rel,
            format!("`{}` is not supported by this version of ash; it is ignored", entry.name),
            &slots::LAYOUT,
        );
    } else if !entry.name.eq_ignore_ascii_case("README.md") {
        ctx.diags.file(
            Severity::Warning,
            "unknown-entry",
            &rel,
            format!("`{}` is not an agent slot; it is ignored", entry.name),
            &slots::LAYOUT,
        );
    }
}

fn load_subagents(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    depth: usize,
    root_connections: &[Connection],
) -> Vec<Subagent> {
    let mut out = Vec::new();
    for entry in ctx.tree.list(dir, &mut ctx.diags) {
        let rel = ctx.tree.rel(&entry.path);
        if entry.kind != EntryKind::Dir {
            if !modules::report_slot_module(ctx, &entry, "subagents") {
                ctx.diags.file(
                    Severity::Warning,
                    "unknown-entry",
                    &rel,
                    "subagents are directories (`subagents/<id>/agent.toml`); this file is ignored",
                    &slots::SUBAGENT,
                );
            }
            continue;
        }
        if depth > MAX_SUBAGENT_DEPTH {
            ctx.diags.file(
                Severity::Error,
                "subagent-depth",
                &rel,
                format!("subagents nest deeper than {MAX_SUBAGENT_DEPTH} levels; this one was not loaded"),
                &slots::SUBAGENT,
            );
            continue;
        }
        let id = entry.name.clone();
        if !is_slug(&id) {
            ctx.diags.file(
                Severity::Error,
                "invalid-name",
                &rel,
                format!(
                    "subagent id `{id}` must be lowercase letters, digits, `-` or `_`; rename the directory to `{}`",
                    lower_kebab_case(&id)
                ),
                &slots::SUBAGENT,
            );
            continue;
        }
        let tool_name = lower_snake_case(&id);
        if !is_tool_name(&tool_name) {
            ctx.diags.file(
                Severity::Error,
                "invalid-name",
                &rel,
                format!("subagent id `{id}` lowers to `{tool_name}`, which is not a valid tool name (it must start with a letter)"),
                &slots::SUBAGENT,
            );
            continue;
        }
        let role = PackageRole::Subagent { id: id.clone(), depth };
        let Some(package) = load_package(ctx, &entry.path, &role, root_connections) else {
            continue;
        };
        out.push(Subagent { id, package: Box::new(package), source: Source::File(rel) });
    }
    out
}

/// Every model-visible name in a package must be unique and not reserved.
pub(crate) fn check_collisions(diags: &mut Diagnostics, package: &Package) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for tool in package.model_tools() {
        let (what, source) = describe_origin(&tool.origin);
        let file = source.display().to_owned();
        if RESERVED_TOOL_NAMES.contains(&tool.name.as_str()) {
            diags.file(
                Severity::Error,
                "reserved-name",
                &file,
                format!(
                    "{what} `{}` takes a name ash reserves for its own tool; rename it",
                    tool.name
                ),
                &slots::TOOL_COMMAND,
            );
            continue;
        }
        if let Some(first) = seen.get(&tool.name) {
            diags.file(
                Severity::Error,
                "name-collision",
                &file,
                format!(
                    "{what} is exposed to the model as `{}`, which {first} already uses; rename one of them",
                    tool.name
                ),
                &slots::TOOL_COMMAND,
            );
        } else {
            seen.insert(tool.name.clone(), format!("{what} from {file}"));
        }
    }
}

fn describe_origin<'a>(origin: &'a crate::spec::ToolOrigin<'a>) -> (&'static str, &'a Source) {
    use crate::spec::ToolOrigin;
    match origin {
        ToolOrigin::Authored(tool) => ("the tool", &tool.source),
        ToolOrigin::Sandbox(sandbox) => ("the sandbox tool", &sandbox.source),
        ToolOrigin::Mcp { connection, .. } => ("the MCP tool", &connection.source),
        ToolOrigin::OpenApi { connection, .. } => ("the OpenAPI operation", &connection.source),
        ToolOrigin::Subagent(subagent) => ("the subagent tool", &subagent.source),
    }
}
