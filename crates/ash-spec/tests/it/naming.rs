//! Naming rules and collisions between model-visible names.

use insta::assert_snapshot;

use crate::check;

#[test]
fn names_lower_to_model_visible_forms() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/tools/getWeatherNow.toml
description = "camelCase file"
command = ["true"]
//- agent/tools/list-files.toml
description = "kebab file"
command = ["true"]
//- agent/sandboxes/repo-shell.toml
//- agent/sandboxes/build_box.toml
//- agent/connections/my-db.toml
kind = "mcp"
[transport]
type = "streamable-http"
url = "https://db.example/mcp"
[tools]
allow = ["run_query"]
//- agent/subagents/code-reviewer/agent.toml
description = "Reviews code."
"#
    ));
}

#[test]
fn every_kind_of_collision_is_an_error() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/tools/repo_shell_sandbox.toml
description = "Clashes with the sandbox tool."
command = ["true"]
//- agent/sandboxes/repo-shell.toml
//- agent/tools/researcher.toml
description = "Clashes with the subagent tool."
command = ["true"]
//- agent/subagents/researcher/agent.toml
description = "Research."
//- agent/tools/db-query.toml
name = "db__query"
description = "Clashes with the MCP tool."
command = ["true"]
//- agent/connections/db.toml
kind = "mcp"
[transport]
type = "streamable-http"
url = "https://db.example/mcp"
[tools]
allow = ["query"]
//- agent/tools/one.toml
name = "same_name"
description = "First."
command = ["true"]
//- agent/tools/two.toml
name = "same_name"
description = "Second."
command = ["true"]
//- agent/tools/reserved.toml
name = "activate_skill"
description = "Reserved."
command = ["true"]
//- agent/skills/dup.md
Flat.
//- agent/skills/dup/SKILL.md
---
description: Packaged.
---
Body.
"#
    ));
}

#[test]
fn subagent_tools_do_not_collide_with_the_parent() {
    // Each package has its own tool namespace: the same name in parent and child is fine.
    let spec = crate::check_spec(
        r#"
//- agent/system.md
Hi.
//- agent/tools/search.toml
description = "Parent search."
command = ["true"]
//- agent/subagents/helper/agent.toml
description = "Helps."
//- agent/subagents/helper/tools/search.toml
description = "Child search."
command = ["true"]
"#,
    );
    let names: Vec<String> = spec.root().model_tools().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["helper", "search"]);
}
