//! The network identity and ledger commands, end to end over real `$ASH_HOME` directories.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::{ash_env, stderr, stdout};

pub(crate) fn run(home: &Path, args: &[&str]) -> Output {
    ash_env(home, args, &[("ASH_HOME", home.to_str().unwrap())])
}

fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap()
}

/// A new network: an authority key in `admin`, its genesis written there and to `file`.
/// Returns the authority's id and the network id.
pub(crate) fn new_network(admin: &Path, name: &str, file: &Path) -> (String, String) {
    fs::create_dir_all(admin).unwrap();
    let authority =
        json(&run(admin, &["admin", "keygen", "--json"]))["id"].as_str().unwrap().to_owned();
    let made = json(&run(
        admin,
        &["admin", "genesis", "--name", name, "-o", file.to_str().unwrap(), "--json"],
    ));
    (authority, made["id"].as_str().unwrap().to_owned())
}

/// Joins `home` to the network of `genesis` as `name`; returns the node id.
pub(crate) fn join(home: &Path, genesis: &Path, name: &str) -> String {
    fs::create_dir_all(home).unwrap();
    let joined = json(&run(
        home,
        &["join", "--genesis", genesis.to_str().unwrap(), "-u", name, "--offline", "--json"],
    ));
    joined["id"].as_str().unwrap().to_owned()
}

/// `from` exports its ledger and `to` imports it; returns the import's JSON.
pub(crate) fn share(from: &Path, to: &Path, scratch: &Path) -> Value {
    let bundle = scratch.join("share.bundle");
    let out = run(from, &["ledger", "export", "-o", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json(&run(to, &["ledger", "import", bundle.to_str().unwrap(), "--json"]))
}

struct Net {
    root: tempfile::TempDir,
    admin: PathBuf,
    genesis: PathBuf,
    authority: String,
    network: String,
}

fn net() -> Net {
    let root = tempfile::tempdir().unwrap();
    let admin = root.path().join("admin");
    let genesis = root.path().join("genesis.toml");
    let (authority, network) = new_network(&admin, "test-net", &genesis);
    Net { admin, genesis, authority, network, root }
}

#[test]
fn a_network_from_its_genesis_to_received_credits_and_checkpoints() {
    let n = net();
    let (alice, bob) = (n.root.path().join("alice"), n.root.path().join("bob"));
    fs::create_dir_all(&alice).unwrap();
    let mode =
        fs::metadata(n.admin.join("keys/authority.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let joined = json(&run(
        &alice,
        &["join", "--genesis", n.genesis.to_str().unwrap(), "-u", "Alice", "--offline", "--json"],
    ));
    assert_eq!(
        (&joined["username"], &joined["created"], &joined["network"]),
        (&json!("alice"), &json!(true), &json!({"name": "test-net", "id": n.network}))
    );
    let alice_id = joined["id"].as_str().unwrap().to_owned();
    let again = json(&run(&alice, &["join", "--offline", "--json"]));
    assert_eq!((&again["id"], &again["created"]), (&json!(alice_id), &json!(false)));
    join(&bob, &n.genesis, "bob");

    let minted = json(&run(
        &n.admin,
        &["admin", "mint", &alice_id, "100", "--signup", "--reason", "signup", "--json"],
    ));
    // Entry 0 of the authority's log is its profile, written with the genesis.
    assert_eq!((minted["amount"].as_u64(), minted["seq"].as_u64()), (Some(100), Some(1)));
    let twice =
        run(&n.admin, &["admin", "mint", &alice_id, "100", "--signup", "--reason", "again"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("already minted a signup to"), "{}", stderr(&twice));
    let zero = run(&n.admin, &["admin", "mint", &alice_id, "0", "--reason", "nothing"]);
    assert!(stderr(&zero).contains("mint refused (amount)"), "{}", stderr(&zero));

    // Alice imports the authority's log (two entries) and receives her mint into her own log
    // (a third).
    let imported = share(&n.admin, &alice, n.root.path());
    assert_eq!(
        (&imported["new"], &imported["received"], &imported["report"]["valid"]),
        (&json!(3), &json!([100]), &json!(true))
    );
    let status = json(&run(&alice, &["status", "--json"]));
    assert_eq!(
        (&status["balance"], &status["frozen"]),
        (
            &json!({"received": 100, "earned": 0, "paid": 0, "locked": 0, "spendable": 100}),
            &json!(false)
        )
    );
    let history = json(&run(&alice, &["history", "--json"]));
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
    assert_eq!(rows, vec![("profile".into(), 0, 0), ("receive".into(), 100, 100)]);
    // Importing again changes nothing and receives nothing twice.
    let again = share(&n.admin, &alice, n.root.path());
    assert_eq!((&again["new"], &again["received"]), (&json!(0), &json!([])));

    // Bob sees Alice's balance after importing her log (it carries the authority's).
    share(&alice, &bob, n.root.path());
    let bundle = n.root.path().join("share.bundle");
    let verified = json(&run(&bob, &["ledger", "verify", bundle.to_str().unwrap(), "--json"]));
    assert_eq!(verified["valid"], json!(true));
    let seen = json(&run(&bob, &["history", &alice_id, "--json"]));
    assert_eq!(seen.as_array().unwrap().len(), 2);

    // The witness signs checkpoints; they travel in bundles and count on import.
    share(&alice, &n.admin, n.root.path());
    let signed = json(&run(&n.admin, &["admin", "checkpoint", "--json"]));
    assert_eq!(signed.as_array().unwrap().len(), 2, "{signed}");
    let imported = share(&n.admin, &bob, n.root.path());
    assert_eq!(imported["checkpointsRefused"], json!([]));
    let verified = json(&run(&bob, &["ledger", "verify", bundle.to_str().unwrap(), "--json"]));
    assert_eq!(verified["checkpointsDisagreeing"], json!([]));

    // A tampered bundle (the first entry's signature changed): the entry is refused with its
    // rule, what came after it in its log waits for it, and verify exits 1.
    let mut bytes = fs::read(&bundle).unwrap();
    let len = u32::from_be_bytes(bytes[51..55].try_into().unwrap()) as usize;
    bytes[55 + len - 1] ^= 1;
    let tampered = n.root.path().join("tampered.bundle");
    fs::write(&tampered, &bytes).unwrap();
    let out = run(&bob, &["ledger", "verify", tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("profile: signature: the author's signature does not verify"), "{text}");
    let _ = n.authority;
}

#[test]
fn hostile_input_is_refused_with_what_to_do() {
    let n = net();
    let h = n.root.path().join("carol");
    fs::create_dir_all(&h).unwrap();
    fs::write(h.join("junk"), b"PK\x03\x04 not a bundle").unwrap();
    let genesis = n.genesis.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["status"],
            "no identity on this machine yet; run `ash join --genesis FILE --username NAME`".into(),
        ),
        (
            vec!["join", "-u", "carol"],
            "no network here yet: join one with `ash join --genesis FILE`".into(),
        ),
        (vec!["join", "--genesis", "junk", "-u", "carol"], "genesis: TOML parse error".into()),
        (
            vec!["ledger", "verify", "junk", "--genesis", genesis],
            "not an ash ledger bundle: it does not start with `ASHLEDGR`".into(),
        ),
        (vec!["ledger", "verify", "missing", "--genesis", genesis], "opening missing".into()),
        (vec!["history", "xyz"], "expected 64 hex digits; a node id is 64 hex digits".into()),
        (
            vec!["admin", "mint", "00", "5", "--reason", "x"],
            "no mint authority key here; create one with `ash admin keygen`".into(),
        ),
        (
            vec!["join", "--genesis", genesis],
            "choose a username for your profile: `ash join --username NAME`".into(),
        ),
        (vec!["join", "--genesis", genesis, "-u", "a"], "must be 3–32 of a-z 0-9 _ -".into()),
    ];
    for (args, expected) in cases {
        let out = run(&h, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&expected), "{args:?}: {}", stderr(&out));
    }
    join(&h, &n.genesis, "carol");
    // Another network's genesis and bundles are refused by name.
    let other_genesis = n.root.path().join("other.toml");
    new_network(&n.root.path().join("other-admin"), "other-net", &other_genesis);
    let out = run(&h, &["join", "--genesis", other_genesis.to_str().unwrap(), "-u", "carol"]);
    assert!(stderr(&out).contains("one $ASH_HOME holds one network"), "{}", stderr(&out));
    let other_bundle = n.root.path().join("other.bundle");
    let out = run(
        &n.root.path().join("other-admin"),
        &["ledger", "export", "-o", other_bundle.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&h, &["ledger", "import", other_bundle.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("is a bundle of network")
            && stderr(&out).contains("not of `test-net`"),
        "{}",
        stderr(&out)
    );
    // The old config key is refused, not ignored.
    fs::write(
        h.join("config.toml"),
        format!("[network]\nmint_authorities = [\"{}\"]\n", n.authority),
    )
    .unwrap();
    let out = run(&h, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown key `network.mint_authorities`; a network's mint authorities and parameters are in its genesis file"), "{}", stderr(&out));
    fs::remove_file(h.join("config.toml")).unwrap();
    // A key file others can read is refused.
    fs::set_permissions(h.join("keys/identity.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&h, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("run `chmod 600"), "{}", stderr(&out));
}

/// `entry` as if `victim` had written it: the author's field rewritten, the attacker's
/// signature kept (so it does not verify).
fn framed(entry: &ash_ledger::Entry, victim: ash_identity::NodeId) -> ash_ledger::Entry {
    let mut bytes = entry.bytes();
    // version (1) and network (32) come before the author.
    bytes[33..65].copy_from_slice(victim.as_bytes());
    ash_ledger::Entry::decode(&bytes).unwrap()
}

fn write_bundle(path: &Path, network: ash_ledger::Hash, entries: &[ash_ledger::Entry]) {
    let mut out = Vec::new();
    ash_ledger::write_bundle(&mut out, network, entries.iter(), &[]).unwrap();
    fs::write(path, out).unwrap();
}

fn read_bundle(path: &Path) -> ash_ledger::Bundle {
    ash_ledger::read_bundle(fs::read(path).unwrap().as_slice(), 1 << 20).unwrap()
}

#[test]
fn forged_and_garbage_imports_change_nothing_a_user_relies_on() {
    use ash_identity::{Identity, NodeId};
    use ash_ledger::{Body, LogWriter, Profile};

    let n = net();
    let root = n.root.path();
    let (alice, victim) = (root.join("alice"), root.join("victor"));
    let alice_id = join(&alice, &n.genesis, "alice");
    let victim_id = join(&victim, &n.genesis, "victor");
    json(&run(
        &n.admin,
        &["admin", "mint", &alice_id, "100", "--signup", "--reason", "signup", "--json"],
    ));
    share(&n.admin, &alice, root);
    share(&victim, &alice, root);
    let victim_node: NodeId = victim_id.parse().unwrap();
    let alice_node: NodeId = alice_id.parse().unwrap();
    let status_before = json(&run(&alice, &["status", "--json"]));
    let history_before = json(&run(&alice, &["history", "--json"]));

    // Mallory writes profiles carrying her sealing key at the victim's next position and as a
    // second entry 0, and garbage: entries at Alice's next positions, and long logs of
    // throwaway keys whose first entries never come.
    let exported = root.join("victim.bundle");
    run(&victim, &["ledger", "export", "-o", exported.to_str().unwrap()]);
    let genuine = read_bundle(&exported);
    let last = |id: NodeId| {
        genuine.entries.iter().filter(|e| e.author == id).max_by_key(|e| e.seq).unwrap().clone()
    };
    let mallory = Identity::insecure_from_label("mallory");
    let profile = |name: &str| {
        Body::Profile(Profile {
            username: name.into(),
            sealing_key: mallory.sealing_public(),
            created_at: 1,
        })
    };
    let now = last(victim_node).time + 1;
    let mut hostile = vec![
        framed(
            &LogWriter::resume(&mallory, &last(victim_node)).append(now, profile("victor")),
            victim_node,
        ),
        framed(
            &LogWriter::new(&mallory, genuine.network).append(now, profile("victor")),
            victim_node,
        ),
    ];
    let alice_head = {
        let own = root.join("alice.bundle");
        run(&alice, &["ledger", "export", "-o", own.to_str().unwrap()]);
        read_bundle(&own)
            .entries
            .into_iter()
            .filter(|e| e.author == alice_node)
            .max_by_key(|e| e.seq)
            .unwrap()
    };
    let mut writer = LogWriter::resume(&mallory, &alice_head);
    for _ in 0..50 {
        hostile.push(framed(&writer.append(now, profile("alice")), alice_node));
    }
    for k in 0..10 {
        let throwaway = Identity::insecure_from_label(&format!("throwaway{k}"));
        let mut writer = LogWriter::new(&throwaway, genuine.network);
        for i in 0..200 {
            let entry = writer.append(now, profile("junk"));
            if i > 0 {
                hostile.push(entry);
            }
        }
    }
    let bundle = root.join("hostile.bundle");
    write_bundle(&bundle, genuine.network, &hostile);
    let imported = json(&run(&alice, &["ledger", "import", bundle.to_str().unwrap(), "--json"]));
    let refused = imported["refused"].as_array().unwrap();
    assert_eq!(
        (
            &imported["new"],
            refused.len(),
            &imported["quarantined"],
            &imported["report"]["equivocations"]
        ),
        (&json!(0), 52, &json!(1990), &json!([])),
        "{imported}"
    );
    assert!(
        refused.iter().all(|r| r
            .as_str()
            .unwrap()
            .contains("signature: the author's signature does not verify")),
        "{imported}"
    );

    // Alice's balance, history and log head are what they were.
    assert_eq!(json(&run(&alice, &["status", "--json"])), status_before);
    assert_eq!(json(&run(&alice, &["history", "--json"])), history_before);

    // Sealing to the victim uses the victim's own key: the victim opens the package.
    let project = root.join("project");
    fs::create_dir_all(&project).unwrap();
    fs::write(project.join("main.rs"), "fn main() {}\n").unwrap();
    let sealed = root.join("p.ashpkg");
    let out = ash_env(
        &project,
        &["pack", "create", "--to", &victim_id, "-o", sealed.to_str().unwrap()],
        &[("ASH_HOME", alice.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let into = root.join("opened");
    let out =
        run(&victim, &["pack", "open", sealed.to_str().unwrap(), "--into", into.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(into.join("main.rs")).unwrap(), "fn main() {}\n");

    // Alice's own log goes on at its real next position.
    json(&run(&n.admin, &["admin", "mint", &alice_id, "25", "--reason", "bonus", "--json"]));
    let received = share(&n.admin, &alice, root);
    assert_eq!(received["received"], json!([25]));
    let status = json(&run(&alice, &["status", "--json"]));
    assert_eq!(status["balance"]["spendable"], json!(125));
}
