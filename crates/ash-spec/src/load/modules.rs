//! TypeScript/JavaScript module files (`agent.ts`, `tools/*.ts`, …) from the seed's format.
//!
//! ash does not run authored modules. Each one found in a slot is an error whose example is the
//! declarative equivalent, named after the file, so migrating is copy, paste, fill in.

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::Ctx;
use crate::names::lower_snake_case;
use crate::source::{Entry, EntryKind};

const MODULE_EXTS: &[&str] = &["ts", "mts", "cts", "tsx", "js", "mjs", "cjs", "jsx"];

fn is_module(entry: &Entry) -> bool {
    entry.kind == EntryKind::File
        && entry.stem_and_ext().1.is_some_and(|ext| MODULE_EXTS.contains(&ext))
}

/// Reports `agent.ts`, `system.ts` and `instructions.ts` at a package root.
pub(super) fn report_root_module(ctx: &mut Ctx<'_>, entry: &Entry) -> bool {
    if !is_module(entry) {
        return false;
    }
    let (stem, _) = entry.stem_and_ext();
    let example = match stem {
        "agent" => "# agent.toml\n\
                    name = \"my-agent\"\n\
                    model = \"openai/gpt-4.1-mini\"\n\
                    \n\
                    [network]\n\
                    ip_allow_list = [\"127.0.0.1\"]"
            .to_owned(),
        "system" | "instructions" => {
            format!("# {stem}.md\nYou are a concise assistant. (The prompt text, as markdown.)")
        }
        _ => return false,
    };
    report(ctx, entry, &example);
    true
}

/// Reports a module file inside slot directory `slot`.
pub(super) fn report_slot_module(ctx: &mut Ctx<'_>, entry: &Entry, slot: &str) -> bool {
    if !is_module(entry) {
        return false;
    }
    let (stem, _) = entry.stem_and_ext();
    let snake = lower_snake_case(stem);
    let example = match slot {
        "tools" => format!(
            "# tools/{stem}.toml\n\
             name = \"{snake}\"\n\
             description = \"What the tool does.\"\n\
             command = [\"sh\", \"../lib/{stem}.sh\"]\n\
             \n\
             [input_schema]\n\
             type = \"object\"\n\
             properties.city = {{ type = \"string\" }}"
        ),
        "sandboxes" => format!(
            "# sandboxes/{stem}.toml\n\
             description = \"What the model may do in this shell.\"\n\
             bootstrap = [\"mkdir -p repo\"]\n\
             on_session = [\"touch .session-ready\"]"
        ),
        "connections" => format!(
            "# connections/{stem}.toml\n\
             kind = \"mcp\"\n\
             \n\
             [transport]\n\
             type = \"streamable-http\"\n\
             url = \"${{{}_MCP_URL}}\"\n\
             \n\
             [tools]\n\
             mode = \"allow\"\n\
             allow = [\"query\"]\n\
             namespace = \"{snake}\"",
            snake.to_uppercase()
        ),
        "schedules" => format!(
            "# schedules/{stem}.md\n---\ncron: \"0 * * * *\"\n---\nThe prompt for each run."
        ),
        "skills" => format!(
            "# skills/{stem}.md\n---\ndescription: When to use this skill.\n---\nThe procedure."
        ),
        "system" => format!("# system/{stem}.md\nThe layer's text, as markdown."),
        _ => format!("# subagents/{stem}/agent.toml\ndescription = \"What the subagent does.\""),
    };
    report(ctx, entry, &example);
    true
}

fn report(ctx: &mut Ctx<'_>, entry: &Entry, example: &str) {
    let rel = ctx.tree.rel(&entry.path);
    ctx.diags.push(Diagnostic {
        severity: Severity::Error,
        code: "module-file",
        file: rel,
        position: None,
        message: format!(
            "`{}` is a TypeScript/JavaScript module; ash does not run authored modules, so it was not loaded",
            entry.name
        ),
        expected: "the declarative equivalent beside it (TOML or markdown); put helper code in lib/ \
                   and call it from a command tool"
            .to_owned(),
        example: example.to_owned(),
    });
}
