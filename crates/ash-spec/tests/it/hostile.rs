//! Hostile and broken directories: diagnostics, never a panic, never a write.

use std::os::unix::fs::PermissionsExt as _;

use ash_test_support::Fixture;
use insta::assert_snapshot;

use crate::{check, load, render};

#[test]
fn invalid_toml_reports_every_syntax_error() {
    assert_snapshot!(check(
        r#"
//- agent/agent.toml
name = "x
model =
[limits
//- agent/tools/t.toml
description = "ok"
command = ["true"
"#
    ));
}

#[test]
fn invalid_yaml_frontmatter() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/skills/a.md
---
description: [unclosed
---
Body.
//- agent/skills/b.md
---
- a list
- not a map
---
Body.
//- agent/skills/c.md
---
description: 42
---
Body.
//- agent/skills/d.md
---
description: never closed
Body.
//- agent/schedules/s.md
---
cron: &a "0 * * * *"
extra: *a
---
Aliases are fine; unknown keys warn.
"#
    ));
}

#[test]
fn yaml_alias_bombs_are_refused() {
    let mut yaml = String::from(
        "---\na0: &a0 [\"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\"]\n",
    );
    for i in 1..12 {
        let prev = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    yaml.push_str("description: boom\n---\nBody.\n");
    let fx = Fixture::new("//- agent/system.md\nHi.\n");
    fx.write("agent/skills/bomb.md", &yaml);
    let loaded = load(&fx);
    assert!(loaded.has_errors(), "{}", render(&loaded));
    assert!(crate::diagnostics(&loaded).contains("agent/skills/bomb.md"));
}

#[test]
fn huge_files_are_refused_without_reading_them_whole() {
    let fx = Fixture::new("//- agent/agent.toml\nname = \"big\"\n");
    let big = "x".repeat(usize::try_from(ash_spec::MAX_TEXT_BYTES).unwrap() + 1);
    fx.write("agent/system.md", &big);
    fx.write("agent/skills/also-big.md", &big);
    assert_snapshot!(render(&load(&fx)));
}

#[test]
fn non_utf8_names_and_contents() {
    use std::os::unix::ffi::OsStrExt as _;
    let fx = Fixture::new("//- agent/system.md\nHi.\n");
    let bad_name = std::ffi::OsStr::from_bytes(b"caf\xe9.md");
    std::fs::create_dir_all(fx.join("agent/skills")).unwrap();
    std::fs::write(fx.join("agent/skills").join(bad_name), "x").unwrap();
    fx.write_bytes("agent/system/latin1.md", b"caf\xe9\n");
    let rendered = render(&load(&fx));
    assert_snapshot!(rendered);
}

#[test]
fn symlinks_that_leave_the_agent_are_not_followed() {
    let outside = Fixture::new(
        "//- secret.md\nTOP SECRET\n//- tool.toml\ndescription = \"x\"\ncommand = [\"true\"]\n",
    );
    let fx = Fixture::new(
        "//- agent/system.md\nHi.\n//- agent/tools/ok.toml\ndescription = \"ok\"\ncommand = [\"true\"]\n",
    );
    fx.symlink(outside.join("secret.md").to_str().unwrap(), "agent/system/leak.md");
    fx.symlink(outside.join("tool.toml").to_str().unwrap(), "agent/tools/leak.toml");
    fx.symlink("../../../nowhere", "agent/skills/broken.md");
    fx.symlink("../system.md", "agent/system/inside.md");
    let loaded = load(&fx);
    let rendered = render(&loaded);
    assert!(!rendered.contains("TOP SECRET"));
    assert_snapshot!(rendered.replace(outside.path().to_str().unwrap(), "<outside>"));
}

#[test]
fn symlink_cycles_are_detected() {
    let fx = Fixture::new(
        "//- agent/system.md\nHi.\n//- agent/subagents/a/agent.toml\ndescription = \"A.\"\n//- agent/skills/pkg/SKILL.md\n---\ndescription: P.\n---\nBody.\n",
    );
    // a/subagents/loop -> a: an infinite package tree.
    fx.symlink("..", "agent/subagents/a/subagents/loop");
    // pkg/self -> pkg: an infinite skill directory.
    fx.symlink(".", "agent/skills/pkg/self");
    assert_snapshot!(render(&load(&fx)));
}

#[test]
fn special_files_are_skipped_not_read() {
    let fx = Fixture::new("//- agent/system.md\nHi.\n");
    std::fs::create_dir_all(fx.join("agent/system")).unwrap();
    let fifo = fx.join("agent/system/pipe.md");
    #[expect(clippy::disallowed_methods, reason = "the fixture FIFO is made with mkfifo(1)")]
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("skipping: mkfifo is not available");
        return;
    }
    // Reading a FIFO would block forever; the loader must not open it.
    assert_snapshot!(render(&load(&fx)));
}

#[test]
fn unreadable_files_are_reported() {
    let fx = Fixture::new("//- agent/system.md\nHi.\n//- agent/skills/locked.md\nsecret\n");
    let path = fx.join("agent/skills/locked.md");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&path).is_ok() {
        // Root reads anything; nothing to test here.
        eprintln!("skipping: running with permission to read mode-000 files");
        return;
    }
    let loaded = load(&fx);
    assert!(crate::diagnostics(&loaded).contains("error[read-error] agent/skills/locked.md"));
}

#[test]
fn missing_and_empty_env_vars_never_become_empty_passwords() {
    let rendered = check(
        r#"
//- agent/agent.toml
[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "${NOT_SET}"

[[auth.strategies]]
kind = "jwt-hmac"
issuer = "i"
audiences = ["a"]
secret = "${EMPTY_VAR}"

[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "${bad-name}"
//- agent/system.md
Hi.
"#,
    );
    assert_snapshot!(rendered);
}

#[test]
fn deeply_nested_subagents_stop_at_the_limit() {
    let mut text = String::from("//- agent/system.md\nHi.\n");
    let mut path = String::from("agent");
    for depth in 0..12 {
        path.push_str(&format!("/subagents/s{depth}"));
        text.push_str(&format!("//- {path}/agent.toml\ndescription = \"Level {depth}.\"\n"));
    }
    let fx = Fixture::new(&text);
    let loaded = load(&fx);
    assert_snapshot!(crate::diagnostics(&loaded));
}

#[test]
fn unknown_keys_warn_with_file_and_key() {
    assert_snapshot!(check(
        r#"
//- agent/agent.toml
name = "x"
modle = "openai/gpt-4.1"
[limits]
max_step = 3
//- agent/system.md
Hi.
//- agent/tools/t.toml
description = "x"
command = ["true"]
timeout = 5
[input_schema]
type = "object"
//- agent/skills/s.md
---
description: ok
descripton: typo
---
Body.
"#
    ));
}

#[test]
fn not_a_directory_and_missing_directory_are_load_errors() {
    let fx = Fixture::new("//- file.txt\nx\n");
    let err = ash_spec::load(&fx.join("file.txt"), &crate::options()).unwrap_err();
    assert!(matches!(err, ash_spec::LoadError::NotADirectory { .. }), "{err}");
    let err = ash_spec::load(&fx.join("missing"), &crate::options()).unwrap_err();
    assert!(matches!(err, ash_spec::LoadError::NotFound { .. }), "{err}");
}

#[test]
fn an_empty_directory_is_not_an_agent() {
    let fx = Fixture::new("//- README.md\nhello\n");
    assert_snapshot!(render(&load(&fx)));
}

#[test]
fn slots_that_are_files_instead_of_directories() {
    assert_snapshot!(check(
        "//- agent/system.md\nHi.\n//- agent/tools\nnot a dir\n//- agent/skills\nnot a dir\n"
    ));
}

#[test]
fn deeply_nested_values_are_errors_not_stack_overflows() {
    let fx = Fixture::new("//- agent/system.md\nHi.\n");
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    fx.write("agent/tools/t.toml", &format!("description = \"x\"\ncommand = [\"true\"]\ninput_schema = {{ type = \"object\", x = {nested} }}\n"));
    fx.write("agent/skills/s.md", &format!("---\ndescription: {nested}\n---\nBody.\n"));
    let loaded = load(&fx);
    let codes: Vec<(&str, &str)> =
        loaded.diagnostics().iter().map(|d| (d.code, d.file.as_str())).collect();
    assert_eq!(
        codes,
        [("yaml-syntax", "agent/skills/s.md"), ("toml-syntax", "agent/tools/t.toml")]
    );
}
