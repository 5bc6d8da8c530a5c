//! Multi-file fixtures: one string where `//- path` lines start files, written into a fresh
//! temporary directory, plus the sanctioned read of `ASH_TEST_*` switches.
//! Panics on misuse, because a broken fixture is a broken test.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A directory populated from a fixture string, removed on drop.
#[derive(Debug)]
pub struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// Writes every file of `text` below a new temporary directory.
    ///
    /// ```
    /// let fx = ash_test_support::Fixture::new(
    ///     "//- agent/agent.toml\nname = \"x\"\n//- agent/system.md\nHello.\n",
    /// );
    /// assert!(fx.path().join("agent/system.md").is_file());
    /// ```
    pub fn new(text: &str) -> Self {
        let dir =
            tempfile::Builder::new().prefix("ash-fixture-").tempdir().expect("create a temp dir");
        let fixture = Self { dir };
        for (path, content) in parse(text) {
            fixture.write(&path, &content);
        }
        fixture
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()` joined with `rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes (or replaces) one file, creating parent directories.
    pub fn write(&self, rel: &str, content: &str) {
        self.write_bytes(rel, content.as_bytes());
    }

    /// Writes raw bytes.
    pub fn write_bytes(&self, rel: &str, content: &[u8]) {
        assert!(
            !rel.starts_with('/') && !rel.split('/').any(|p| p == ".."),
            "fixture path {rel} escapes"
        );
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create fixture directories");
        }
        fs::write(&path, content).expect("write fixture file");
    }

    /// Creates an empty directory.
    pub fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.dir.path().join(rel)).expect("create fixture directory");
    }

    /// Creates a symlink at `rel` pointing at `target` (taken verbatim).
    #[cfg(unix)]
    pub fn symlink(&self, target: &str, rel: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create fixture directories");
        }
        std::os::unix::fs::symlink(target, path).expect("create symlink");
    }
}

/// Splits a fixture into `(path, content)` pairs. Text before the first marker is ignored, so
/// fixtures can start with a newline; a file's content ends where the next marker starts.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(path) = line.strip_prefix("//- ") {
            files.push((path.trim().to_owned(), String::new()));
        } else if let Some((_, content)) = files.last_mut() {
            content.push_str(line);
        }
    }
    files
}

/// Reads the `ASH_TEST_*` switches tests may consult; the one sanctioned environment read in
/// tests, so tests never mutate or scatter environment access.
pub fn test_switch(name: &str) -> Option<String> {
    assert!(name.starts_with("ASH_TEST_"), "only ASH_TEST_* switches are read");
    #[expect(clippy::disallowed_methods, reason = "the one sanctioned environment read for tests")]
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn fixtures_split_on_markers() {
        let files = parse("\n//- a.toml\nx = 1\n//- dir/b.md\n---\nhi\n");
        assert_eq!(
            files,
            vec![
                ("a.toml".to_owned(), "x = 1\n".to_owned()),
                ("dir/b.md".to_owned(), "---\nhi\n".to_owned())
            ]
        );
    }
}
