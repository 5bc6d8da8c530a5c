//! `schedules/**/*.md`: recurring prompts with a 5-field UTC `cron` in the frontmatter.

use std::path::Path;

use crate::cron::CronExpr;
use crate::diagnostic::{FileDiag, Severity};
use crate::frontmatter;
use crate::load::{Ctx, modules};
use crate::names::is_slug;
use crate::slots;
use crate::source::{EntryKind, MAX_TREE_DEPTH};
use crate::spec::{Schedule, Source};

pub(super) fn load(ctx: &mut Ctx<'_>, dir: &Path) -> Vec<Schedule> {
    let mut out = Vec::new();
    walk(ctx, dir, "", 0, &mut out);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn walk(ctx: &mut Ctx<'_>, dir: &Path, prefix: &str, depth: usize, out: &mut Vec<Schedule>) {
    if depth > MAX_TREE_DEPTH {
        let rel = ctx.tree.rel(dir);
        ctx.diags.file(
            Severity::Error,
            "too-deep",
            &rel,
            format!("schedules nest deeper than {MAX_TREE_DEPTH} levels; the rest was skipped"),
            &slots::SCHEDULE,
        );
        return;
    }
    if !ctx.tree.enter(dir, &mut ctx.diags) {
        return;
    }
    for entry in ctx.tree.list(dir, &mut ctx.diags) {
        let rel = ctx.tree.rel(&entry.path);
        let (stem, ext) = entry.stem_and_ext();
        let segment = if entry.kind == EntryKind::Dir { entry.name.as_str() } else { stem };
        if !is_slug(segment) && (entry.kind == EntryKind::Dir || ext == Some("md")) {
            ctx.diags.file(
                Severity::Error,
                "invalid-name",
                &rel,
                format!("schedule path segment `{segment}` must be lowercase letters, digits, `-` or `_`"),
                &slots::SCHEDULE,
            );
            continue;
        }
        match (entry.kind, ext) {
            (EntryKind::Dir, _) => {
                walk(ctx, &entry.path, &format!("{prefix}{segment}/"), depth + 1, out)
            }
            (EntryKind::File, Some("md")) => {
                if let Some(schedule) = load_one(ctx, &entry.path, format!("{prefix}{segment}")) {
                    out.push(schedule);
                }
            }
            (EntryKind::File, _) if modules::report_slot_module(ctx, &entry, "schedules") => {}
            (EntryKind::File, _) => ctx.diags.file(
                Severity::Warning,
                "unknown-entry",
                &rel,
                "schedules are `<name>.md` files; this file is ignored",
                &slots::SCHEDULE,
            ),
        }
    }
    ctx.tree.leave();
}

fn load_one(ctx: &mut Ctx<'_>, path: &Path, name: String) -> Option<Schedule> {
    let (rel, text) = ctx.read(path, &slots::SCHEDULE)?;
    let errors_before = ctx.diags.error_count();
    let mut d = FileDiag::new(&rel, &text, &slots::SCHEDULE, &mut ctx.diags);
    let mut fm = frontmatter::parse(&text, &mut d);
    let cron = fm.string(&mut d, "cron", "a 5-field cron expression in quotes");
    let prompt = fm.body.trim().to_owned();
    let present = fm.present;
    fm.finish(&mut d);
    let cron = match cron {
        None => {
            d.error(
                "missing-key",
                present.then_some(0..3),
                "a schedule needs `cron` in its frontmatter",
                "`cron`: 5 fields (minute hour day-of-month month day-of-week), in UTC",
            );
            None
        }
        Some((text, at)) => match CronExpr::parse(&text) {
            Ok(expr) => Some(expr),
            Err(why) => {
                d.report_at(
                    Severity::Error,
                    "invalid-cron",
                    at,
                    format!("`cron: {text}`: {why}"),
                    "`cron`: 5 fields (minute hour day-of-month month day-of-week), in UTC, e.g. \"0 9 * * 1-5\"",
                );
                None
            }
        },
    };
    if prompt.is_empty() {
        d.error(
            "empty-prompt",
            None,
            "the schedule has no prompt after its frontmatter",
            "the prompt each run receives, as markdown",
        );
        return None;
    }
    if d.out.error_count() > errors_before {
        return None;
    }
    Some(Schedule { name, cron: cron?, prompt, source: Source::File(rel) })
}
