//! The schema of each backend as numbered SQL files (`migrations/<backend>/NNNN_name.sql`),
//! applied in order by a runner that records the version reached in `ash_meta`.
//!
//! A store's version is the number of the last file applied. A database at a version above the
//! last file this build has was written by a newer ash and is refused, never downgraded.

/// One schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number: one above the one before, from 1.
    pub version: i64,
    /// Its file name, without the extension (`0001_runs`).
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

macro_rules! migrations {
    ($backend:literal: $($version:literal $name:literal),+ $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $backend, "/", $name, ".sql")),
        }),+]
    };
}

/// The SQLite store's migrations.
pub const SQLITE: &[Migration] =
    migrations!("sqlite": 1 "0001_runs", 2 "0002_fencing_and_formats", 3 "0003_carried_state");

/// The PostgreSQL store's migrations.
pub const POSTGRES: &[Migration] = migrations!("postgres": 1 "0001_runs", 2 "0002_carried_state");

/// The version a backend's migrations reach.
pub const fn latest(migrations: &[Migration]) -> i64 {
    match migrations.last() {
        Some(last) => last.version,
        None => 0,
    }
}

/// The migrations a store at `current` still needs, in order.
pub fn pending(migrations: &'static [Migration], current: i64) -> &'static [Migration] {
    let applied = migrations.iter().take_while(|m| m.version <= current).count();
    &migrations[applied..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file on disk is listed, in order, numbered from 1 without gaps.
    #[test]
    fn the_lists_match_the_files() {
        for (backend, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            files.sort();
            let listed: Vec<String> = list.iter().map(|m| format!("{}.sql", m.name)).collect();
            assert_eq!(files, listed, "{backend}");
            let versions: Vec<i64> = list.iter().map(|m| m.version).collect();
            let numbered: Vec<String> = list.iter().map(|m| format!("{:04}_", m.version)).collect();
            assert!(
                list.iter().zip(&numbered).all(|(m, n)| m.name.starts_with(n.as_str())),
                "{backend}: each file is numbered as its version"
            );
            let expected: Vec<i64> = (1..=i64::try_from(list.len()).unwrap_or(0)).collect();
            assert_eq!(versions, expected, "{backend}");
        }
    }

    #[test]
    fn pending_is_what_comes_after_the_current_version() {
        assert_eq!(pending(SQLITE, 0).len(), SQLITE.len());
        assert_eq!(pending(SQLITE, 1).first().map(|m| m.version), Some(2));
        assert!(pending(SQLITE, latest(SQLITE)).is_empty());
        assert!(pending(SQLITE, latest(SQLITE) + 5).is_empty());
    }
}
