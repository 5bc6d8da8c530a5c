//! Prompt assembly: `system.md` and the `system/` layers in order, the instructions of MCP
//! servers whose connection asks for them, then a section naming the live workspace, then the
//! skills catalogue.

use std::path::Path;

use ash_spec::Package;

use crate::tools::{ACTIVATE_SKILL, SkillEntry};

/// The system prompt of one step.
pub(crate) fn system_prompt(
    package: &Package,
    workspace: &Path,
    skills: &[SkillEntry],
    servers: &[(String, String)],
) -> String {
    let mut out = package.system_prompt();
    // Instructions of MCP servers whose connection asks for them (`instructions = true`).
    for (connection, instructions) in servers {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&format!("## MCP server `{connection}`\n\n{}", instructions.trim()));
    }
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str("## Workspace\n\n");
    out.push_str(&format!(
        "Your workspace is the directory `{}`. `bash` runs commands there, and `read_file` and \
         `write_file` take paths relative to it. Files you create there persist for this \
         session.",
        workspace.display()
    ));
    if !skills.is_empty() {
        out.push_str(&format!(
            "\n\n## Skills\n\nBefore following a skill, load its instructions with \
             `{ACTIVATE_SKILL}`. Its files are under `skills/` in the workspace.\n"
        ));
        for skill in skills {
            out.push_str(&format!("\n- `{}`: {}", skill.name, skill.description.trim()));
        }
    }
    out
}
