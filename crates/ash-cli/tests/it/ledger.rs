//! The network identity and ledger commands, end to end over real `$ASH_HOME` directories.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{ash_env, stderr, stdout};

fn run(home: &Path, args: &[&str]) -> Output {
    ash_env(home, args, &[("ASH_HOME", home.to_str().unwrap())])
}

fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap()
}

#[test]
fn join_mint_export_import_verify() {
    let root = tempfile::tempdir().unwrap();
    let (admin, bob) = (root.path().join("admin"), root.path().join("bob"));
    fs::create_dir_all(&admin).unwrap();
    fs::create_dir_all(&bob).unwrap();
    let authority =
        json(&run(&admin, &["admin", "keygen", "--json"]))["id"].as_str().unwrap().to_owned();
    let config = format!("[network]\nmint_authorities = [\"{authority}\"]\n");
    fs::write(admin.join("config.toml"), &config).unwrap();
    fs::write(bob.join("config.toml"), &config).unwrap();
    let mode = fs::metadata(admin.join("keys/authority.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The admin machine also has a user identity.
    let alice = json(&run(&admin, &["join", "--username", "Alice", "--json"]));
    assert_eq!(
        (alice["username"].as_str(), alice["created"].as_bool()),
        (Some("alice"), Some(true))
    );
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    let again = json(&run(&admin, &["join", "--json"]));
    assert_eq!(
        (again["id"].as_str(), again["created"].as_bool()),
        (Some(alice_id.as_str()), Some(false))
    );

    let minted = json(&run(
        &admin,
        &["admin", "mint", &alice_id, "100", "--signup", "--reason", "signup", "--json"],
    ));
    assert_eq!((minted["amount"].as_u64(), minted["seq"].as_u64()), (Some(100), Some(1)));
    let twice = run(&admin, &["admin", "mint", &alice_id, "100", "--signup", "--reason", "again"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("mint refused (duplicate-signup-mint)"), "{}", stderr(&twice));
    let zero = run(&admin, &["admin", "mint", &alice_id, "0", "--reason", "nothing"]);
    assert!(stderr(&zero).contains("mint refused (amount)"), "{}", stderr(&zero));

    let status = json(&run(&admin, &["status", "--json"]));
    assert_eq!(
        status["balance"],
        serde_json::json!({"minted": 100, "earned": 0, "paid": 0, "reserved": 0, "available": 100})
    );
    let history = json(&run(&admin, &["history", "--json"]));
    let rows: Vec<(String, i64, i64)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["change"].as_i64().unwrap(),
                r["balance"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, vec![("mint".to_owned(), 100, 100)]);

    // Export, import on another machine, verify.
    let bundle = root.path().join("ledger.bundle");
    let out = run(&admin, &["ledger", "export", "-o", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&bob, &["join", "-u", "bob"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let imported = json(&run(&bob, &["ledger", "import", bundle.to_str().unwrap(), "--json"]));
    assert_eq!(
        (imported["new"].as_u64(), imported["report"]["valid"].as_bool()),
        (Some(3), Some(true))
    );
    let seen = json(&run(&bob, &["history", &alice_id, "--json"]));
    assert_eq!(seen.as_array().unwrap().len(), 1);
    let verified = json(&run(&bob, &["ledger", "verify", bundle.to_str().unwrap(), "--json"]));
    assert_eq!(verified["valid"], Value::Bool(true));

    // A tampered bundle fails with the entry and the rule.
    let mut bytes = fs::read(&bundle).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    let tampered = root.path().join("tampered.bundle");
    fs::write(&tampered, &bytes).unwrap();
    let out = run(&bob, &["ledger", "verify", tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": signature: the signature does not verify"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn hostile_input_is_refused_with_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    fs::write(h.join("junk"), b"PK\x03\x04 not a bundle").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["status"], "no identity on this machine yet; run `ash join --username NAME`"),
        (vec!["join"], "choose a username for your profile: `ash join --username NAME`"),
        (vec!["join", "-u", "a"], "must be 3–32 of a-z 0-9 _ -"),
        (
            vec!["ledger", "verify", "junk"],
            "not an ash ledger bundle: shorter than the 18-byte header",
        ),
        (vec!["ledger", "verify", "missing"], "opening missing"),
        (vec!["history", "xyz"], "expected 64 hex digits; a node id is 64 hex digits"),
        (
            vec!["admin", "mint", "00", "5", "--reason", "x"],
            "no mint authority key here; create one with `ash admin keygen`",
        ),
    ];
    for (args, expected) in cases {
        let out = run(h, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
    fs::write(h.join("config.toml"), "[network]\nmint_authorities = [\"nope\"]\n").unwrap();
    let out = run(h, &["join", "-u", "carol"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(h, &["status"]);
    assert!(stderr(&out).contains("is not a node id"), "{}", stderr(&out));
    // A key file others can read is refused.
    fs::set_permissions(h.join("keys/identity.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(h, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("run `chmod 600"), "{}", stderr(&out));
}
