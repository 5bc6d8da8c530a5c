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
        std::future::ready(
            Arc::new(SqliteStore::open(&path, Durability::Full).unwrap()) as Arc<dyn Store>
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_store_passes_the_same_suite() {
    ash_test_support::store_conformance::run_all(|| {
        std::future::ready(Arc::new(MemoryStore::new()) as Arc<dyn Store>)
    })
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
            "the store {} has schema version 99; this ash reads up to 3; upgrade ash",
            path.display()
        )
    );
}

/// A file written by ash before lease epochs and payload formats (schema 1, built here from
/// its own migration file) is migrated on open: its runs, events and journal stay as they were.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_one_store_is_migrated_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ash.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(ash_store::migrations::SQLITE[0].sql).unwrap();
        conn.execute_batch(
            "INSERT INTO ash_meta VALUES ('schema_version', '1');
             INSERT INTO runs VALUES ('r1', 'ash:t', 'task', 'running', 1, 1, 1, 5, 6, 0, 0, 10, 20, 'old', 99, 0);
             INSERT INTO events VALUES ('r1', 0, '{\"type\":\"turn.started\",\"data\":{\"turnId\":\"turn_0\",\"sequence\":0},\"meta\":{\"id\":\"evt_01\",\"index\":0,\"at\":\"2026-01-01T00:00:00.000Z\"}}');
             INSERT INTO journal VALUES ('r1', 0, '{\"type\":\"turn-queued\",\"sequence\":0,\"message\":\"hi\"}');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!(
        (
            run.status,
            run.event_count,
            run.usage.input_tokens,
            run.lease.map(|l| (l.owner, l.epoch))
        ),
        (RunStatus::Running, 1, 5, Some(("old".to_owned(), 0)))
    );
    assert_eq!(store.events("r1", 0, 10, usize::MAX).await.unwrap().len(), 1);
    assert_eq!(store.journal("r1", 0).await.unwrap().len(), 1);
    // The old lease expired long ago: the next taking is epoch 1.
    let fence = store.acquire_lease("r1", "new", std::time::Duration::from_secs(5)).await.unwrap();
    assert_eq!(fence.map(|f| f.epoch), Some(1));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String = conn
        .query_row("SELECT value FROM ash_meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, ash_store::SCHEMA_VERSION.to_string());
}

/// A payload a newer ash wrote in a format this one does not know is refused by name.
#[tokio::test(flavor = "multi_thread")]
async fn a_payload_in_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ash.db");
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let run =
        NewRun { run_id: "r1".into(), continuation_token: "ash:t".into(), mode: RunMode::Task };
    store.create_run(run, started()).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE events SET format = 2 WHERE idx = 0", [])
        .unwrap();
    let err = store.events("r1", 0, 10, usize::MAX).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "stored data is corrupt: event 0 of run `r1` is stored in format 2; this ash reads formats 1 to 1: upgrade ash"
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

mod postgres;
