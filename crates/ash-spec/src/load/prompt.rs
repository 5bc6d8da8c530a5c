//! The base prompt: `system.md` (or `instructions.md`) and the `system/` (or `instructions/`)
//! layers, in file-name order, non-recursive.

use std::path::Path;

use crate::diagnostic::Severity;
use crate::load::{Ctx, modules};
use crate::slots;
use crate::source::{Entry, EntryKind};
use crate::spec::{Package, PromptLayer, Source};

pub(super) fn load(ctx: &mut Ctx<'_>, entries: &[Entry], package: &mut Package) {
    let file = |name: &str| entries.iter().find(|e| e.name == name && e.kind == EntryKind::File);
    let folder = |name: &str| entries.iter().find(|e| e.name == name && e.kind == EntryKind::Dir);

    match (file("system.md"), file("instructions.md")) {
        (Some(system), Some(instructions)) => {
            let rel = ctx.tree.rel(&instructions.path);
            ctx.diags.file(
                Severity::Error,
                "duplicate-prompt",
                &rel,
                "both system.md and instructions.md exist; they are aliases, keep one",
                &slots::SYSTEM,
            );
            push_layer(ctx, &system.path, package);
        }
        (Some(main), None) | (None, Some(main)) => push_layer(ctx, &main.path, package),
        (None, None) => {}
    }

    let layers = match (folder("system"), folder("instructions")) {
        (Some(system), Some(instructions)) => {
            let rel = ctx.tree.rel(&instructions.path);
            ctx.diags.file(
                Severity::Error,
                "duplicate-prompt",
                &rel,
                "both system/ and instructions/ exist; they are aliases, keep one",
                &slots::SYSTEM,
            );
            Some(system)
        }
        (one, other) => one.or(other),
    };
    if let Some(layers) = layers {
        for entry in ctx.tree.list(&layers.path, &mut ctx.diags) {
            let rel = ctx.tree.rel(&entry.path);
            match (entry.kind, entry.stem_and_ext().1) {
                (EntryKind::File, Some("md")) => push_layer(ctx, &entry.path, package),
                (EntryKind::File, _) if modules::report_slot_module(ctx, &entry, "system") => {}
                (EntryKind::Dir, _) => ctx.diags.file(
                    Severity::Warning,
                    "nested-layer",
                    &rel,
                    "prompt layers are not read recursively; this directory is ignored",
                    &slots::SYSTEM,
                ),
                (EntryKind::File, _) => ctx.diags.file(
                    Severity::Warning,
                    "unknown-entry",
                    &rel,
                    "prompt layers are markdown files (`.md`); this file is ignored",
                    &slots::SYSTEM,
                ),
            }
        }
    }
}

fn push_layer(ctx: &mut Ctx<'_>, path: &Path, package: &mut Package) {
    let Some((rel, text)) = ctx.read(path, &slots::SYSTEM) else { return };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim().is_empty() {
        ctx.diags.file(
            Severity::Warning,
            "empty-prompt",
            &rel,
            "the prompt file is empty; it adds nothing",
            &slots::SYSTEM,
        );
        return;
    }
    package.prompt.push(PromptLayer { source: Source::File(rel), content: text.to_owned() });
}
