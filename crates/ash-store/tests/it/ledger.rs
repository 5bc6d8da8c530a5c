//! The ledger file: append-only, conflicts kept as proofs, truncation cannot undo an entry.

use std::collections::BTreeSet;

use ash_identity::Identity;
use ash_ledger::{Body, Credits, Entry, JobId, LogWriter, Profile, Reserve, Rules, Verifier};
use ash_store::{Inserted, LedgerDb};
use pretty_assertions::assert_eq;

fn log(identity: &Identity, reserves: u64) -> Vec<Entry> {
    let mut writer = LogWriter::new(identity);
    let profile =
        Profile { username: "alice".into(), sealing_key: identity.sealing_public(), created_at: 1 };
    let mut entries = vec![writer.append(1, Body::Profile(profile), None)];
    for i in 0..reserves {
        let other = Identity::insecure_from_label("bob").node_id();
        let body = Body::Reserve(Reserve {
            job: JobId([i as u8; 16]),
            acceptor: other,
            amount: Credits::new(1),
            deadline: 100 + i,
        });
        entries.push(writer.append(2 + i, body, None));
    }
    entries
}

#[test]
fn entries_are_kept_and_conflicts_become_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let alice = Identity::insecure_from_label("alice");
    let full = log(&alice, 3);
    let mut db = LedgerDb::open(&path).unwrap();
    assert_eq!(db.insert_all(&full, 10).unwrap(), vec![Inserted::New; 4]);
    // A truncated copy changes nothing; a fork is kept aside.
    assert_eq!(db.insert_all(&full[..2], 11).unwrap(), vec![Inserted::Known; 2]);
    let mut writer = LogWriter::resume(&alice, &full[1]);
    let fork = writer.append(
        50,
        Body::Reserve(Reserve {
            job: JobId([9; 16]),
            acceptor: alice.node_id(),
            amount: Credits::new(1),
            deadline: 99,
        }),
        None,
    );
    assert_eq!(db.insert_all([&fork], 12).unwrap(), vec![Inserted::Conflict]);
    drop(db);
    let db = LedgerDb::open(&path).unwrap();
    assert_eq!(db.log(alice.node_id()).unwrap(), full);
    assert_eq!(db.last(alice.node_id()).unwrap().as_ref(), full.last());
    let all = db.all().unwrap();
    assert_eq!(all.len(), 5);
    // The verifier turns the stored conflict into an equivocation proof.
    let (_, report) = Verifier::verify_all(Rules::new(BTreeSet::new(), 1_000), all);
    assert_eq!(report.equivocations.len(), 1);
    assert!(report.accounts[&alice.node_id()].frozen);
}

#[test]
fn the_file_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let alice = Identity::insecure_from_label("alice");
    let mut db = LedgerDb::open(&path).unwrap();
    db.insert_all(&log(&alice, 1), 1).unwrap();
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in
        ["DELETE FROM entries", "UPDATE entries SET seq = seq + 1", "DELETE FROM conflicts WHERE 1"]
    {
        let result = conn.execute(sql, []);
        if sql.contains("entries") {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
    }
    drop(conn);
    assert_eq!(LedgerDb::open(&path).unwrap().log(alice.node_id()).unwrap().len(), 2);
}

#[test]
fn damaged_and_foreign_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let alice = Identity::insecure_from_label("alice");
    LedgerDb::open(&path).unwrap().insert_all(&log(&alice, 1), 1).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER entries_no_update; UPDATE entries SET bytes = x'0102' WHERE seq = 1;",
    )
    .unwrap();
    drop(conn);
    let err = LedgerDb::open(&path).unwrap().log(alice.node_id()).unwrap_err().to_string();
    assert!(err.contains("stored entry 1 of") && err.contains("is damaged"), "{err}");

    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 7").unwrap();
    let err = LedgerDb::open(&newer).unwrap_err().to_string();
    assert!(err.ends_with("ledger schema version 7; this ash reads version 1"), "{err}");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not sqlite, just some text that is long enough to be a header")
        .unwrap();
    assert!(LedgerDb::open(&junk).is_err());
    assert_eq!(std::fs::read(&junk).unwrap().len(), 69, "the refused file is left untouched");
}
