//! `.ash/`: reproducible manifests, refusal on errors, and writes confined to `.ash/`.

use std::fs;

use ash_test_support::Fixture;
use pretty_assertions::assert_eq;

use crate::load;

const AGENT: &str = r#"
//- agent/agent.toml
name = "builder"
model = "openai/gpt-4.1-mini"
//- agent/system.md
Hi.
//- agent/system/b.md
B.
//- agent/system/a.md
A.
//- agent/skills/s/SKILL.md
---
description: S.
---
Body.
//- agent/skills/s/scripts/run.sh
echo run
//- agent/tools/t.toml
description = "T."
command = ["sh", "../lib/t.sh"]
//- agent/lib/t.sh
echo '{}'
//- agent/schedules/nightly.md
---
cron: "0 3 * * *"
---
Tidy up.
"#;

fn build(fx: &Fixture) -> ash_spec::BuildOutput {
    let (spec, warnings) = load(fx).into_result().unwrap();
    ash_spec::write_build(fx.path(), &spec, &warnings).unwrap()
}

fn tree_bytes(fx: &Fixture) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in [ash_spec::MANIFEST_FILE, ash_spec::DIAGNOSTICS_FILE] {
        out.push((name.to_owned(), fs::read(fx.join(".ash").join(name)).unwrap()));
    }
    out
}

#[test]
fn two_builds_of_the_same_tree_are_identical() {
    let fx = Fixture::new(AGENT);
    let first = build(&fx);
    let bytes_first = tree_bytes(&fx);
    let second = build(&fx);
    assert_eq!(first.content_hash, second.content_hash);
    assert_eq!(bytes_first, tree_bytes(&fx));

    // A copy of the tree elsewhere, written in a different order, builds to the same bytes.
    let mut reversed: Vec<(String, String)> = ash_test_support::parse(AGENT);
    reversed.reverse();
    let other = Fixture::new("");
    for (path, content) in &reversed {
        other.write(path, content);
    }
    build(&other);
    assert_eq!(bytes_first, tree_bytes(&other));

    let manifest: ash_protocol::AgentManifest = serde_json::from_slice(&bytes_first[0].1).unwrap();
    let files: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        files,
        [
            "agent/agent.toml",
            "agent/lib/t.sh",
            "agent/schedules/nightly.md",
            "agent/skills/s/SKILL.md",
            "agent/skills/s/scripts/run.sh",
            "agent/system.md",
            "agent/system/a.md",
            "agent/system/b.md",
            "agent/tools/t.toml",
        ]
    );
    assert_eq!(manifest.format_version, ash_protocol::MANIFEST_FORMAT_VERSION);
    assert_eq!(manifest.agent.schedules[0].next_fire_at, None, "manifests hold no clock reading");
}

#[test]
fn changing_any_input_changes_the_content_hash() {
    let fx = Fixture::new(AGENT);
    let before = build(&fx).content_hash;
    fx.write("agent/lib/t.sh", "echo '{\"changed\":true}'\n");
    let after = build(&fx).content_hash;
    assert_ne!(before, after);
}

#[test]
fn a_symlinked_build_dir_is_refused() {
    let fx = Fixture::new(AGENT);
    let elsewhere = Fixture::new("//- keep.txt\nuntouched\n");
    fx.symlink(elsewhere.path().to_str().unwrap(), ".ash");
    let (spec, warnings) = load(&fx).into_result().unwrap();
    let err = ash_spec::write_build(fx.path(), &spec, &warnings).unwrap_err();
    assert!(matches!(err, ash_spec::BuildError::NotADirectory { .. }), "{err}");
    let names: Vec<String> = fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["keep.txt"]);
}

#[test]
fn a_symlink_planted_at_the_manifest_is_replaced_not_followed() {
    let fx = Fixture::new(AGENT);
    let victim = Fixture::new("//- victim.txt\noriginal\n");
    fx.mkdir(".ash");
    fx.symlink(victim.join("victim.txt").to_str().unwrap(), ".ash/manifest.json");
    build(&fx);
    assert_eq!(fs::read_to_string(victim.join("victim.txt")).unwrap(), "original\n");
    assert!(!fs::symlink_metadata(fx.join(".ash/manifest.json")).unwrap().file_type().is_symlink());
}

#[test]
fn the_manifest_never_contains_secret_values() {
    let fx = Fixture::new(
        r#"
//- agent/agent.toml
[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "${ASH_BASIC_PASSWORD}"
[[auth.strategies]]
kind = "http-basic"
username = "ops2"
password = "literal-password"
//- agent/system.md
Hi.
"#,
    );
    build(&fx);
    let manifest = fs::read_to_string(fx.join(".ash/manifest.json")).unwrap();
    assert!(manifest.contains("${ASH_BASIC_PASSWORD}"));
    assert!(manifest.contains(ash_spec::REDACTED));
    assert!(!manifest.contains("top-secret-password"));
    assert!(!manifest.contains("literal-password"));
}
