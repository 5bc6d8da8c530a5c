//! The SQLite store against the shared conformance suite, plus what only a file can do:
//! survive reopening, refuse damaged files, keep data when refusing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;

use ash_core::{Commit, Expect, MemoryStore, NewRun, Store};
use ash_protocol::{EventBody, RunMode, RunStatus, TurnStarted};
use ash_store::{Durability, OpenError, SqliteStore};
use pretty_assertions::assert_eq;

mod ledger;

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    ash_test_support::store_conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("store-{n}.db"));
        Arc::new(SqliteStore::open(&path, Durability::Full).unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_store_passes_the_same_suite() {
    ash_test_support::store_conformance::run_all(|| Arc::new(MemoryStore::new()) as Arc<dyn Store>)
        .await;
}

fn started() -> Commit {
    let mut commit = Commit::new(Expect::Status(RunStatus::Queued));
    commit.events =
        vec![EventBody::TurnStarted(TurnStarted { turn_id: "turn_0".into(), sequence: 0 })];
    commit.status = Some(RunStatus::Queued);
    commit
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/ash.db");
    let events = {
        let store = SqliteStore::open(&path, Durability::Normal).unwrap();
        let run =
            NewRun { run_id: "r1".into(), continuation_token: "ash:t".into(), mode: RunMode::Task };
        store.create_run(run, started()).await.unwrap()
    };
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    assert_eq!(store.events("r1", 0, 10, usize::MAX).await.unwrap(), events);
    // A budget of one byte: one event per page.
    assert_eq!(store.events("r1", 0, 10, 1).await.unwrap(), events[..1]);
    assert_eq!(store.run("r1").await.unwrap().unwrap().mode, RunMode::Task);
}

#[test]
fn damaged_and_foreign_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 2] = [
        ("garbage.db", b"this is not a database at all, just text that is long enough to look like a header...."),
        ("truncated.db", b"SQLite format 3\0\x10\0\x02\x02\0@  \0\0\0\x05"),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = SqliteStore::open(&path, Durability::Full).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt { .. }), "{name}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains("is damaged or not an ash store") && text.contains("left untouched"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name} was modified");
    }
    // A valid SQLite file that belongs to someone else.
    let foreign = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY); INSERT INTO customers VALUES (1);",
        )
        .unwrap();
    }
    let err = SqliteStore::open(&foreign, Durability::Full).unwrap_err();
    assert!(err.to_string().contains("it holds tables but no ash schema"), "{err}");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn a_store_from_a_newer_ash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ash.db");
    drop(SqliteStore::open(&path, Durability::Full).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE ash_meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
    }
    let err = SqliteStore::open(&path, Durability::Full).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the store {} has schema version 99; this ash reads up to 1; upgrade ash",
            path.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_row_is_reported_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ash.db");
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let run = NewRun {
        run_id: "r1".into(),
        continuation_token: "ash:t".into(),
        mode: RunMode::Conversation,
    };
    store.create_run(run, started()).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE events SET event = '{broken' WHERE idx = 0", []).unwrap();
        conn.execute("UPDATE runs SET status = 'exploded'", []).unwrap();
    }
    let err = store.events("r1", 0, 10, usize::MAX).await.unwrap_err();
    assert!(
        err.to_string().starts_with("stored data is corrupt: event 0 of run `r1` cannot be read"),
        "{err}"
    );
    let err = store.run("r1").await.unwrap_err();
    assert_eq!(err.to_string(), "stored data is corrupt: unknown run status `exploded`");
}
