//! `skills/`: flat `skills/<name>.md` and packaged `skills/<name>/SKILL.md` with siblings.

use std::path::Path;

use crate::diagnostic::{FileDiag, Severity};
use crate::frontmatter;
use crate::load::{Ctx, modules};
use crate::names::{is_skill_name, lower_kebab_case};
use crate::slots::{self, SlotDoc};
use crate::source::EntryKind;
use crate::spec::{Skill, SkillKind, Source};

/// Longest catalogue description (the Agent Skills format's limit).
const MAX_DESCRIPTION_CHARS: usize = 1024;

pub(super) fn load(ctx: &mut Ctx<'_>, dir: &Path) -> Vec<Skill> {
    let mut skills: Vec<Skill> = Vec::new();
    for entry in ctx.tree.list(dir, &mut ctx.diags) {
        let rel = ctx.tree.rel(&entry.path);
        let (stem, ext) = entry.stem_and_ext();
        let skill = match (entry.kind, ext) {
            (EntryKind::File, Some("md")) => {
                let Some(name) = checked_name(ctx, &rel, stem, &slots::SKILL_FLAT) else {
                    continue;
                };
                flat(ctx, &entry.path, name)
            }
            (EntryKind::Dir, _) => {
                let skill_md = entry.path.join("SKILL.md");
                if !skill_md.exists() {
                    ctx.diags.file(
                        Severity::Warning,
                        "missing-skill-md",
                        &rel,
                        "this directory has no SKILL.md, so it is not a skill; it is ignored",
                        &slots::SKILL_PACKAGED,
                    );
                    continue;
                }
                let Some(name) = checked_name(ctx, &rel, &entry.name, &slots::SKILL_PACKAGED)
                else {
                    continue;
                };
                packaged(ctx, &entry.path, &skill_md, name)
            }
            (EntryKind::File, _) => {
                if !modules::report_slot_module(ctx, &entry, "skills") {
                    ctx.diags.file(
                        Severity::Warning,
                        "unknown-entry",
                        &rel,
                        "skills are `<name>.md` files or `<name>/SKILL.md` directories; this file is ignored",
                        &slots::SKILL_FLAT,
                    );
                }
                continue;
            }
        };
        let Some(skill) = skill else { continue };
        if let Some(first) = skills.iter().find(|s| s.name == skill.name) {
            ctx.diags.file(
                Severity::Error,
                "name-collision",
                skill.source.display(),
                format!(
                    "skill `{}` is also defined by {}; rename one of them",
                    skill.name,
                    first.source.display()
                ),
                &slots::SKILL_FLAT,
            );
            continue;
        }
        skills.push(skill);
    }
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    skills
}

fn checked_name(ctx: &mut Ctx<'_>, rel: &str, raw: &str, doc: &SlotDoc) -> Option<String> {
    if is_skill_name(raw) {
        return Some(raw.to_owned());
    }
    ctx.diags.file(
        Severity::Error,
        "invalid-name",
        rel,
        format!(
            "skill name `{raw}` must be lowercase letters, digits and single hyphens; rename it to `{}`",
            lower_kebab_case(raw)
        ),
        doc,
    );
    None
}

fn flat(ctx: &mut Ctx<'_>, path: &Path, name: String) -> Option<Skill> {
    let (rel, text) = ctx.read(path, &slots::SKILL_FLAT)?;
    let errors_before = ctx.diags.error_count();
    let mut d = FileDiag::new(&rel, &text, &slots::SKILL_FLAT, &mut ctx.diags);
    let mut fm = frontmatter::parse(&text, &mut d);
    let description = fm.string(&mut d, "description", "a one-line description");
    fm.accept(&["name"]);
    let body = fm.body.trim_start_matches(['\n', '\r']).to_owned();
    fm.finish(&mut d);
    let description = match description {
        Some((desc, at)) => check_description(&mut d, &desc, at)?,
        None => fallback_description(&body, &name),
    };
    if body.trim().is_empty() {
        d.warning(
            "empty-skill",
            None,
            "the skill has no body; activating it loads nothing",
            "markdown after the frontmatter",
        );
    }
    if d.out.error_count() > errors_before {
        return None;
    }
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    Some(Skill {
        name,
        kind: SkillKind::Flat,
        description,
        body,
        files: vec![file_name],
        license: None,
        metadata: Default::default(),
        source: Source::File(rel),
    })
}

fn packaged(ctx: &mut Ctx<'_>, dir: &Path, skill_md: &Path, name: String) -> Option<Skill> {
    let (rel, text) = ctx.read(skill_md, &slots::SKILL_PACKAGED)?;
    let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let errors_before = ctx.diags.error_count();
    let mut d = FileDiag::new(&rel, &text, &slots::SKILL_PACKAGED, &mut ctx.diags);
    let mut fm = frontmatter::parse(&text, &mut d);
    if let Some((declared, at)) = fm.string(&mut d, "name", "the directory name")
        && declared != name
    {
        d.report_at(
            Severity::Error,
            "skill-name-mismatch",
            at,
            format!("frontmatter `name: {declared}` differs from the directory name `{name}`"),
            "`name` equal to the skill's directory name, or no `name`",
        );
    }
    let description = fm.string(&mut d, "description", "a one-line description");
    let license = fm.string(&mut d, "license", "a license name").map(|(l, _)| l);
    let metadata = fm.string_map(&mut d, "metadata");
    // Keys of the Agent Skills format that ash accepts but does not act on.
    fm.accept(&["allowed-tools", "compatibility"]);
    let body = fm.body.trim_start_matches(['\n', '\r']).to_owned();
    let present = fm.present;
    fm.finish(&mut d);
    let description = match description {
        Some((desc, at)) => check_description(&mut d, &desc, at)?,
        None => {
            d.error(
                "missing-key",
                present.then_some(0..3),
                "packaged skills need a `description` in SKILL.md's frontmatter",
                "`description`: when the model should use this skill",
            );
            return None;
        }
    };
    if d.out.error_count() > errors_before {
        return None;
    }
    let files = ctx.tree.walk_files(dir, &slots::SKILL_PACKAGED, &mut ctx.diags);
    Some(Skill {
        name,
        kind: SkillKind::Packaged,
        description,
        body,
        files: files.into_iter().map(|f| format!("{dir_name}/{f}")).collect(),
        license,
        metadata,
        source: Source::File(rel),
    })
}

fn check_description(
    d: &mut FileDiag<'_>,
    desc: &str,
    at: Option<crate::diagnostic::Position>,
) -> Option<String> {
    let desc = desc.trim().to_owned();
    if desc.is_empty() {
        d.report_at(
            Severity::Error,
            "empty-description",
            at,
            "`description` is empty",
            "`description`: when to use the skill",
        );
        return None;
    }
    if desc.chars().count() > MAX_DESCRIPTION_CHARS {
        d.report_at(
            Severity::Error,
            "description-too-long",
            at,
            format!("`description` is longer than {MAX_DESCRIPTION_CHARS} characters"),
            "`description`: one or two sentences; put details in the body",
        );
        return None;
    }
    Some(desc)
}

/// The first non-empty line outside code fences, stripped of markdown markers.
fn fallback_description(body: &str, name: &str) -> String {
    let mut in_fence = false;
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let text = trimmed.trim_start_matches(['#', '>', '*', '-', ' ']).trim();
        if !text.is_empty() {
            return text.chars().take(MAX_DESCRIPTION_CHARS).collect();
        }
    }
    format!("Instructions for the {name} skill.")
}
