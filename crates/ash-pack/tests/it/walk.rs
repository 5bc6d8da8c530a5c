//! The walk equals `git ls-files --cached --others --exclude-standard`, minus what never leaves.

use std::collections::BTreeSet;
use std::path::Path;

use ash_pack::{EntryKind, Reason, WalkOptions, walk};
use pretty_assertions::assert_eq;

use crate::{git, write_tree};

/// Files and symlinks the walk includes.
fn walked(root: &Path, options: &WalkOptions) -> BTreeSet<String> {
    let walk = walk(root, options).unwrap();
    walk.entries.into_iter().filter(|e| e.kind != EntryKind::Dir).map(|e| e.path).collect()
}

fn ls_files(root: &Path) -> BTreeSet<String> {
    let out = git(root, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
    out.split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect()
}

const TREE: &[(&str, &str)] = &[
    (".gitignore", "*.log\n!keep.log\nbuild/\n/root-only.txt\ndocs/**/*.tmp\n\\#hash\nspace\\ \n"),
    ("keep.log", "kept by negation"),
    ("debug.log", "ignored"),
    ("root-only.txt", "ignored at root"),
    ("sub/root-only.txt", "not ignored below"),
    ("build/out.bin", "ignored dir"),
    ("sub/build", "a file named build is not a directory"),
    ("docs/a/b/c.tmp", "ignored by **"),
    ("docs/a/b/c.md", "kept"),
    ("#hash", "ignored by escaped #"),
    ("space ", "ignored by escaped trailing space"),
    ("sub/.gitignore", "*.txt\n!important.txt\n/local/\n"),
    ("sub/notes.txt", "ignored by nested"),
    ("sub/important.txt", "re-included by nested"),
    ("sub/local/x.rs", "ignored by anchored nested dir"),
    ("sub/deeper/local/y.rs", "anchored: not ignored deeper"),
    ("sub/deeper/.gitignore", "!notes.txt\n"),
    ("sub/deeper/notes.txt", "re-included by a deeper negation"),
    ("excluded-by-info.dat", "info/exclude"),
    ("global.cache", "global excludes"),
    ("src/main.rs", "fn main() {}\n"),
    (
        "a/very/long/path/that/goes/on/and/on/beyond/one/hundred/bytes/of/tar/name/field/limits/file.rs",
        "long",
    ),
];

#[test]
fn walk_equals_git_ls_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    write_tree(root, TREE);
    std::fs::write(root.join(".git/info/exclude"), "*.dat\n").unwrap();
    let global = root.join(".git/global-ignore");
    std::fs::write(&global, "*.cache\n").unwrap();
    git(root, &["config", "core.excludesFile", global.to_str().unwrap()]);
    // Tracked files stay even when a pattern ignores them.
    std::fs::write(root.join("tracked.log"), "tracked").unwrap();
    std::fs::write(root.join("build/tracked.txt"), "tracked in an ignored dir").unwrap();
    git(root, &["add", "-f", "tracked.log", "build/tracked.txt", "src/main.rs"]);
    std::os::unix::fs::symlink("src/main.rs", root.join("link-in")).unwrap();

    let options = WalkOptions { global_excludes: Some(global) };
    let expected = ls_files(root);
    assert!(expected.contains("keep.log") && expected.contains("build/tracked.txt"));
    assert_eq!(walked(root, &options), expected);

    // The same from a subdirectory: ancestors' .gitignore files still apply.
    let sub = root.join("sub");
    let from_sub = ls_files(&sub);
    assert_eq!(walked(&sub, &options), from_sub);

    // And after a commit with the index in version 4 (prefix-compressed paths).
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "x"]);
    git(root, &["update-index", "--index-version", "4"]);
    assert_eq!(walked(root, &options), ls_files(root));
}

#[test]
fn project_repository_matches_git() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !root.join(".git").exists() {
        return; // a source tarball, not a clone
    }
    let expected: BTreeSet<String> =
        ls_files(&root).into_iter().filter(|p| root.join(p).symlink_metadata().is_ok()).collect();
    assert_eq!(walked(&root, &WalkOptions::default()), expected);
}

#[test]
fn secrets_and_unsafe_entries_are_excluded_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    write_tree(
        root,
        &[
            (".env", "A=1"),
            ("sub/.env.local", "B=2"),
            ("keys/id_ed25519", "secret"),
            ("keys/id_ed25519.pub", "public"),
            ("tls/server.pem", "secret"),
            (".ssh/config", "x"),
            ("ok.txt", "fine"),
            (".ashignore", "private/\n*.bak\n"),
            ("private/plan.md", "mine"),
            ("old.bak", "mine"),
            ("empty/", ""),
        ],
    );
    // Tracked secrets are excluded too.
    git(root, &["add", "-f", ".env"]);
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("ok.txt", root.join("fine-link")).unwrap();

    let walk = walk(root, &WalkOptions::default()).unwrap();
    let entries: Vec<(&str, EntryKind)> =
        walk.entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        entries,
        vec![
            (".ashignore", EntryKind::File),
            ("empty", EntryKind::Dir),
            ("fine-link", EntryKind::Symlink),
            ("keys", EntryKind::Dir),
            ("keys/id_ed25519.pub", EntryKind::File),
            ("ok.txt", EntryKind::File),
            ("sub", EntryKind::Dir),
            ("tls", EntryKind::Dir),
        ]
    );
    let secret = |what| Reason::Secret { what };
    let excluded: Vec<(&str, &Reason)> =
        walk.excluded.iter().map(|e| (e.path.as_str(), &e.reason)).collect();
    assert_eq!(
        excluded,
        vec![
            (".env", &secret("environment file")),
            (".git", &secret("git metadata")),
            (".ssh", &secret("key directory")),
            ("keys/id_ed25519", &secret("private key")),
            ("old.bak", &Reason::Ashignore { pattern: "*.bak".to_owned() }),
            ("passwd", &Reason::LinkOutside { target: "/etc/passwd".to_owned() }),
            ("private", &Reason::Ashignore { pattern: "private/".to_owned() }),
            ("sub/.env.local", &secret("environment file")),
            ("sub/up", &Reason::LinkOutside { target: "../../outside".to_owned() }),
            ("tls/server.pem", &secret("private key")),
        ]
    );
}

#[test]
fn outside_git_the_same_ignore_rules_apply() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(root, &[(".gitignore", "*.o\n!main.o\n"), ("a.o", ""), ("main.o", ""), ("a.c", "")]);
    let walk = walk(root, &WalkOptions::default()).unwrap();
    assert_eq!(walk.repo, None);
    let paths: Vec<&str> = walk.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec![".gitignore", "a.c", "main.o"]);
    assert_eq!(
        walk.excluded.iter().map(|e| (e.path.as_str(), &e.reason)).collect::<Vec<_>>(),
        vec![(
            "a.o",
            &Reason::Ignored { source: ".gitignore".to_owned(), pattern: "*.o".to_owned() }
        )]
    );
}

#[test]
fn missing_root_is_a_clear_error() {
    let err = walk(Path::new("/nonexistent/tree"), &WalkOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "/nonexistent/tree: No such file or directory (os error 2)");
}
