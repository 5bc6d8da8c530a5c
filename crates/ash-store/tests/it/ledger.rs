//! The ledger file: only verified entries are stored, verdicts are written once, a reopened file
//! gives the same verdicts and summaries, and damaged, old, newer or foreign files are refused.

use ash_identity::Identity;
use ash_ledger::{
    Admission, Body, Credits, Entry, Genesis, Hash, JobId, LogWriter, Mint, MintKind, Profile,
    Receive, Reserve, Verifier,
};
use ash_store::{LedgerDb, LedgerDbError};
use pretty_assertions::assert_eq;

const T0: u64 = 1_700_000_000_000;

struct Net {
    genesis: Genesis,
    authority: Identity,
    alice: Identity,
    bob: Identity,
}

fn net(name: &str) -> Net {
    let authority = Identity::insecure_from_label("authority");
    let genesis = Genesis::new(name, T0, [authority.node_id()].into()).unwrap();
    Net {
        genesis,
        authority,
        alice: Identity::insecure_from_label("alice"),
        bob: Identity::insecure_from_label("bob"),
    }
}

fn profile(who: &Identity, name: &str) -> Body {
    Body::Profile(Profile {
        username: name.into(),
        sealing_key: who.sealing_public(),
        created_at: T0,
    })
}

/// The authority's profile and a signup mint for alice; alice's profile, its receipt of the
/// mint and `reserves` reservations of 10 for bob.
fn history(n: &Net, reserves: u64) -> Vec<Entry> {
    let network = n.genesis.id();
    let mut auth = LogWriter::new(&n.authority, network);
    let mut alice = LogWriter::new(&n.alice, network);
    let mut bob = LogWriter::new(&n.bob, network);
    let mint = |recipient| {
        Body::Mint(Mint {
            recipient,
            amount: Credits::new(100),
            kind: MintKind::Signup,
            reason: "signup".into(),
        })
    };
    let mut out = vec![auth.append(T0 + 1, profile(&n.authority, "authority"))];
    let signup = auth.append(T0 + 2, mint(n.alice.node_id()));
    out.push(signup.clone());
    out.push(alice.append(T0 + 3, profile(&n.alice, "alice")));
    out.push(alice.append(T0 + 4, Body::Receive(Receive { mint: signup.id() })));
    out.push(bob.append(T0 + 5, profile(&n.bob, "bob")));
    for i in 0..reserves {
        out.push(alice.append(T0 + 10 + i, reserve(n, i)));
    }
    out
}

fn reserve(n: &Net, i: u64) -> Body {
    Body::Reserve(Reserve {
        job: JobId([u8::try_from(i).unwrap(); 16]),
        acceptor: n.bob.node_id(),
        amount: Credits::new(10),
        deadline: T0 + 1_000_000,
        terms: Hash::default(),
    })
}

/// `entry` with its author replaced: a signature that is not the author's.
fn forged_as(entry: &Entry, author: &Identity) -> Entry {
    let mut bytes = entry.bytes().to_vec();
    bytes[33..65].copy_from_slice(author.node_id().as_bytes());
    Entry::decode(&bytes).unwrap()
}

#[test]
fn only_verified_entries_are_stored_and_a_reopened_file_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let n = net("store-test");
    let entries = history(&n, 3);
    let mut db = LedgerDb::open(&path).unwrap();
    let mut v = db.load(n.genesis.clone(), T0 + 100).unwrap();
    for e in &entries {
        v.insert(e.clone());
    }
    // An entry at alice's next position signed by someone else: refused, never stored.
    let mallory = Identity::insecure_from_label("mallory");
    let fake = LogWriter::resume(&mallory, entries.last().unwrap()).append(T0 + 50, reserve(&n, 9));
    let fake = forged_as(&fake, &n.alice);
    assert!(matches!(v.insert(fake.clone()), Admission::Refused(..)));
    // An entry whose predecessor nobody has seen: quarantined.
    let mut bob = LogWriter::new(&n.bob, n.genesis.id());
    let bob0 = bob.append(T0 + 5, profile(&n.bob, "bob"));
    let _bob1 = bob.append(T0 + 70, profile(&n.bob, "bobby"));
    let bob2 = bob.append(T0 + 71, profile(&n.bob, "bobbie"));
    assert_eq!(v.insert(bob2), Admission::Quarantined);
    let saved = db.save(&mut v, T0 + 100).unwrap();
    assert_eq!((saved.new, saved.quarantined), (entries.len() as u64, 1));
    let before = v.report();
    let alice_before = v.account(n.alice.node_id());
    drop(db);
    let db = LedgerDb::open(&path).unwrap();
    assert!(db.entry(fake.id()).unwrap().is_none());
    let v = db.load(n.genesis.clone(), T0 + 100).unwrap();
    let after = v.report();
    assert_eq!((after.accounts, after.quarantined), (before.accounts, before.quarantined));
    assert_eq!(db.account(n.alice.node_id()).unwrap(), Some(alice_before.clone()));
    assert_eq!(
        (
            alice_before.balance.spendable.get(),
            alice_before.balance.locked.get(),
            alice_before.valid
        ),
        (70, 30, 5)
    );
    assert_eq!(bob0.id(), entries[4].id());
}

#[test]
fn verdicts_are_written_once_and_entries_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let n = net("store-test");
    let mut db = LedgerDb::open(&path).unwrap();
    let mut v = Verifier::verify_all(n.genesis.clone(), T0 + 100, history(&n, 1));
    db.save(&mut v, 1).unwrap();
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (sql, expected) in [
        ("DELETE FROM entries", "append-only"),
        ("UPDATE entries SET seq = seq + 1", "append-only"),
        (
            "UPDATE entries SET verdict = 'valid' WHERE verdict = 'valid'",
            "a verdict is written once",
        ),
        ("UPDATE meta SET value = x'00'", "the ledger's network never changes"),
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains(expected), "{sql}: {err}");
    }
}

#[test]
fn a_format_2_ledger_is_carried_over_whole_and_stays_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let n = net("store-test");
    let mut db = LedgerDb::open(&path).unwrap();
    let mut v = Verifier::verify_all(n.genesis.clone(), T0 + 100, history(&n, 1));
    db.save(&mut v, 1).unwrap();
    let before = v.report();
    drop(db);
    // The file as format 2 wrote it: entries clustered by id.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER entries_no_delete; DROP TRIGGER entries_verdict_once; \
             DROP INDEX entries_by_log; ALTER TABLE entries RENAME TO e3; \
             CREATE TABLE entries (id BLOB PRIMARY KEY, author BLOB NOT NULL, seq INTEGER NOT NULL, \
             bytes BLOB NOT NULL, verdict TEXT, detail TEXT, received_at INTEGER NOT NULL) WITHOUT ROWID; \
             INSERT INTO entries SELECT id, author, seq, bytes, verdict, detail, received_at FROM e3; \
             DROP TABLE e3; CREATE INDEX entries_by_log ON entries (author, seq); \
             CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries \
             BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END; \
             PRAGMA user_version = 2;",
        )
        .unwrap();
    let db = LedgerDb::open(&path).unwrap();
    let after = db.load(n.genesis, T0 + 100).unwrap().report();
    assert_eq!((after.accounts, after.refused), (before.accounts, before.refused));
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    let clustered: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'entries_format_2' OR sql LIKE '%WITHOUT ROWID%' AND name = 'entries'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((version, clustered), (3, 0));
    let err = conn.execute("DELETE FROM entries", []).unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");
}

#[test]
fn old_newer_foreign_and_damaged_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let n = net("store-test");
    // A format 1 ledger (user_version 1, with tables).
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch("CREATE TABLE entries (x); PRAGMA user_version = 1;")
        .unwrap();
    let err = LedgerDb::open(&old).unwrap_err().to_string();
    assert!(
        err.contains(
            "ledger format 1; this ash reads format 3 (format 1 ledgers are not carried over"
        ),
        "{err}"
    );
    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 7").unwrap();
    let err = LedgerDb::open(&newer).unwrap_err().to_string();
    assert!(
        err.ends_with("ledger format 7; this ash reads format 3 (written by a newer ash)"),
        "{err}"
    );
    // Another network's genesis.
    let path = dir.path().join("ledger.db");
    let mut db = LedgerDb::open(&path).unwrap();
    let mut v = Verifier::verify_all(n.genesis.clone(), T0 + 100, history(&n, 0));
    db.save(&mut v, 1).unwrap();
    let other = net("other-net").genesis;
    let err = db.load(other.clone(), T0).err().unwrap();
    assert!(
        matches!(err, LedgerDbError::Network { stored, wanted, .. } if stored == n.genesis.id() && wanted == other.id())
    );
    drop(db);
    // A damaged row.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER entries_verdict_once; UPDATE entries SET bytes = x'0102' WHERE seq = 1;",
    )
    .unwrap();
    drop(conn);
    let err = LedgerDb::open(&path).unwrap().load(n.genesis, T0).err().unwrap().to_string();
    assert!(err.contains("a stored entry is damaged"), "{err}");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not sqlite, just some text that is long enough to be a header")
        .unwrap();
    assert!(LedgerDb::open(&junk).is_err());
    assert_eq!(std::fs::read(&junk).unwrap().len(), 69, "the refused file is left untouched");
}

#[test]
fn verdicts_reached_while_loading_are_saved() {
    // Bob's second profile is dated an hour ahead: stored pending, it is judged once the clock
    // gets there, and the next save writes that verdict and bob's summary.
    let n = net("clock-net");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut entries = history(&n, 0);
    let bob_first = entries[4].clone();
    let later =
        LogWriter::resume(&n.bob, &bob_first).append(T0 + 3_600_000, profile(&n.bob, "bobby"));
    entries.push(later.clone());
    let mut db = LedgerDb::open(&path).unwrap();
    let mut v = Verifier::new(n.genesis.clone(), T0 + 10);
    v.insert_many(entries);
    db.save(&mut v, T0 + 10).unwrap();
    assert_eq!(db.entry(later.id()).unwrap().unwrap().verdict, None);

    let mut v = db.load(n.genesis.clone(), T0 + 3_600_001).unwrap();
    let saved = db.save(&mut v, T0 + 3_600_001).unwrap();
    assert_eq!((saved.new, saved.judged), (0, 1));
    assert_eq!(db.entry(later.id()).unwrap().unwrap().verdict.as_deref(), Some("valid"));
    let bob = db.account(n.bob.node_id()).unwrap().unwrap();
    assert_eq!((bob.username.as_deref(), bob.valid, bob.head_seq), (Some("bobby"), 2, Some(1)));
}
