//! The attacks of the ledger review, each with its exact outcome under format 2, and the
//! honest flows they must not disturb.

use ash_identity::{Identity, Signature};
use ash_ledger::{
    Admission, Body, Collect, Credits, Entry, Genesis, Hash, LogWriter, Mint, MintKind, Outcome,
    Profile, Receive, Rule, SignupCost, Verdict, Verifier,
};
use pretty_assertions::assert_eq;
use std::collections::BTreeSet;

use crate::world::{
    Authority, DEADLINE, SIGNUP, T0, User, World, refusals, refused, spendable, test_genesis,
    verdicts,
};

#[test]
fn an_honest_history_verifies_clean_with_exact_balances() {
    let mut w = World::new(3);
    w.job_done(0, 1, 30, Outcome::Accept);
    w.job_done(1, 2, 10, Outcome::Reject);
    let report = w.verify();
    assert!(report.is_clean(), "{:?}", report.refused);
    // user0 paid 30; user1 earned 30, paid 5; user2 earned 5.
    assert_eq!(spendable(&w, &report), vec![70, 125, 105]);
    let b1 = report.accounts[&w.id(1)].balance;
    assert_eq!(
        (b1.received.get(), b1.earned.get(), b1.paid.get(), b1.locked.get()),
        (SIGNUP, 30, 5, 0)
    );
}

#[test]
fn framing_needs_the_victims_key() {
    let w = World::new(2);
    let victim = w.last_of(User(0));
    let profile = w.entries.iter().find(|e| e.author == w.id(0) && e.seq == 0).unwrap().clone();
    let mut v = w.verifier();
    // 1. The profile with its signature altered: the same id (the signed part is the same),
    //    a bad signature: refused at the door, nothing frozen.
    let mut bytes = profile.bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = Entry::decode(&bytes).unwrap();
    assert_eq!(forged.id(), profile.id());
    assert_eq!(v.insert(forged), Admission::Known);
    // 2. Bytes appended after the signature: not an entry at all.
    let mut longer = profile.bytes().to_vec();
    longer.extend_from_slice(&[0; 64]);
    assert!(Entry::decode(&longer).is_err());
    // 3. An entry at the victim's position 0 and 2, made by someone else: the signature is not
    //    the victim's, so it is refused and proves nothing.
    let attacker = Identity::insecure_from_label("attacker");
    for after in [None, Some(&victim)] {
        let signed_by_attacker = LogWriter::new(&attacker, w.network()).append(
            T0,
            Body::Profile(Profile {
                username: "evil".into(),
                sealing_key: attacker.sealing_public(),
                created_at: T0,
            }),
        );
        let mut bytes = signed_by_attacker.bytes().to_vec();
        // Put the victim's id in the author field and, for the second, its head as prev.
        bytes[33..65].copy_from_slice(w.id(0).as_bytes());
        if let Some(after) = after {
            bytes[65..73].copy_from_slice(&(after.seq + 1).to_be_bytes());
            bytes[73..105].copy_from_slice(&after.id().0);
        }
        let framed = Entry::decode(&bytes).unwrap();
        assert_eq!(
            v.insert(framed),
            Admission::Refused(Rule::Signature, "the author's signature does not verify".into())
        );
    }
    let report = v.report();
    let account = &report.accounts[&w.id(0)];
    assert_eq!(
        (account.frozen, report.equivocations.len(), account.balance.spendable.get()),
        (false, 0, SIGNUP)
    );
    assert_eq!(v.profile(w.id(0)).map(|p| p.1), Some(w.users[0].sealing_public()));
}

#[test]
fn a_forged_profile_never_supplies_a_sealing_key() {
    let mut w = World::new(1);
    let attacker = Identity::insecure_from_label("attacker");
    let mut v = w.verifier();
    // A later profile "by" the victim carrying the attacker's sealing key, signed by the
    // attacker: refused at the door.
    let head = w.last_of(User(0));
    let mut writer = LogWriter::resume(&attacker, &head);
    let forged = writer.append(
        w.tick(),
        Body::Profile(Profile {
            username: "user0".into(),
            sealing_key: attacker.sealing_public(),
            created_at: T0,
        }),
    );
    let mut bytes = forged.bytes().to_vec();
    bytes[33..65].copy_from_slice(w.id(0).as_bytes());
    assert!(matches!(
        v.insert(Entry::decode(&bytes).unwrap()),
        Admission::Refused(Rule::Signature, _)
    ));
    assert_eq!(v.profile(w.id(0)).map(|p| p.1), Some(w.users[0].sealing_public()));
    // An identity nobody has a verified profile of has no sealing key at all.
    assert_eq!(v.profile(attacker.node_id()), None);
}

#[test]
fn unsigned_entries_at_an_authoritys_next_position_do_not_block_its_mints() {
    let mut w = World::new(1);
    let mut v = w.verifier();
    let head = w.last_of(Authority(0));
    let garbage = {
        let attacker = Identity::insecure_from_label("attacker");
        let e = LogWriter::resume(&attacker, &head).append(
            w.tick(),
            Body::Mint(Mint {
                recipient: attacker.node_id(),
                amount: Credits::new(1_000_000),
                kind: MintKind::Grant,
                reason: "free money".into(),
            }),
        );
        let mut bytes = e.bytes().to_vec();
        bytes[33..65].copy_from_slice(w.authorities[0].node_id().as_bytes());
        Entry::decode(&bytes).unwrap()
    };
    assert!(matches!(v.insert(garbage), Admission::Refused(Rule::Signature, _)));
    let mint = w.mint_by(0, w.id(0), 50, MintKind::Grant);
    let receive = w.receive(0, &mint);
    assert_eq!(v.insert(mint), Admission::Accepted(Verdict::Valid));
    assert_eq!(v.insert(receive), Admission::Accepted(Verdict::Valid));
    assert_eq!(v.report().accounts[&w.id(0)].balance.spendable.get(), SIGNUP + 50);
}

#[test]
fn a_refused_entry_takes_nothing_with_it() {
    let mut w = World::new(2);
    // user0 reserves more than it has (refused), then works normally.
    w.reserve(0, 1, 500);
    w.job_done(0, 1, 30, Outcome::Accept);
    let report = w.verify();
    assert_eq!(refusals(&w, &report), vec![refused("user0", 2, "reserve", "insufficient-balance")]);
    assert_eq!(spendable(&w, &report), vec![70, 130]);
}

#[test]
fn a_late_timeout_claim_is_refused_alone_and_voids_nothing() {
    let mut w = World::new(3);
    // user0 reserves for user1, nothing is delivered, user0 releases after the deadline and
    // goes on with a job for user2.
    let lapsed = w.reserve(0, 1, 40);
    w.pass_deadline(&lapsed);
    w.release_expired(&lapsed);
    w.job_done(0, 2, 20, Outcome::Accept);
    // A day later user1 claims the timeout of the lapsed job: there is no receipt to name, so
    // it names the reservation itself, then user2's decision.
    w.now += 24 * 3600 * 1000;
    w.collect(1, &lapsed);
    let decide =
        w.entries.iter().rev().find(|e| matches!(e.body, Body::Decide(_))).unwrap().clone();
    w.collect(1, &decide);
    let report = w.verify();
    assert_eq!(
        refusals(&w, &report),
        vec![
            refused("user1", 2, "collect", "not-collectable"),
            refused("user1", 3, "collect", "not-a-party")
        ]
    );
    assert_eq!(spendable(&w, &report), vec![80, 100, 120]);
}

#[test]
fn a_timeout_pays_half_after_the_deadline_within_the_window_and_a_late_decision_tops_up() {
    let mut w = World::new(2);
    let r = w.reserve(0, 1, 40);
    let receipt = w.receipt(&r);
    // Too early.
    w.collect(1, &receipt);
    w.pass_deadline(&r);
    w.collect(1, &receipt);
    // Twice is nothing more.
    w.collect(1, &receipt);
    let decide = w.decide(&r, Outcome::Accept);
    w.collect(1, &decide);
    let report = w.verify();
    assert_eq!(
        refusals(&w, &report),
        vec![
            refused("user1", 2, "collect", "timeout-before-deadline"),
            refused("user1", 4, "collect", "nothing-to-collect"),
        ]
    );
    assert_eq!(spendable(&w, &report), vec![60, 140]);
    // After the window no claim counts.
    let mut w = World::new(2);
    let r = w.reserve(0, 1, 40);
    let receipt = w.receipt(&r);
    w.pass_deadline(&r);
    w.now += w.genesis.claim_window_ms + 1;
    w.collect(1, &receipt);
    let report = w.verify();
    assert_eq!(refusals(&w, &report), vec![refused("user1", 2, "collect", "claim-window")]);
    // user0's 40 stay locked until it decides; user1 got nothing.
    assert_eq!(spendable(&w, &report), vec![60, 100]);
}

#[test]
fn a_cancellation_binds_both_sides() {
    let mut w = World::new(2);
    let r = w.reserve(0, 1, 40);
    w.cancel(&r);
    // After the cancel no receipt, decision or timeout can follow.
    let receipt = w.receipt(&r);
    w.decide(&r, Outcome::Accept);
    w.pass_deadline(&r);
    w.collect(1, &receipt);
    let report = w.verify();
    assert_eq!(
        refusals(&w, &report),
        vec![
            refused("user0", 4, "receipt", "unknown-reservation"),
            refused("user0", 5, "decide", "unknown-reservation"),
            refused("user1", 2, "collect", "refused-source"),
        ]
    );
    assert_eq!(spendable(&w, &report), vec![100, 100]);
    // A cancel after a delivery is refused: the delivery stands, and so does its timeout.
    let mut w = World::new(2);
    let r = w.reserve(0, 1, 40);
    let receipt = w.receipt(&r);
    w.cancel(&r);
    w.pass_deadline(&r);
    w.collect(1, &receipt);
    let report = w.verify();
    assert_eq!(refusals(&w, &report), vec![refused("user0", 4, "release", "already-delivered")]);
    assert_eq!(spendable(&w, &report), vec![60, 120]);
    // A cancel signed by someone other than the acceptor does not count.
    let mut w = World::new(3);
    let r = w.reserve(0, 1, 40);
    let Body::Release(mut release) = w.cancel_body(&r) else { unreachable!() };
    release.cancel = Some(ash_ledger::cancel_signature(&w.users[2], w.network(), r.id()));
    w.append(User(0), Body::Release(release));
    let report = w.verify();
    assert_eq!(refusals(&w, &report), vec![refused("user0", 3, "release", "cosignature")]);
    assert_eq!(spendable(&w, &report), vec![60, 100, 100]);
}

#[test]
fn a_requester_fork_pays_both_acceptors_in_either_order() {
    let mut w = World::new(3);
    let before = w.last_of(User(0));
    // Branch A: user0 reserves 80 for user1; branch B: the same position, 80 for user2.
    let body_a = w.reserve_body(1, 80);
    let a = w.append_after(User(0), Some(&before), body_a);
    let receipt_a = w.receipt(&a);
    let decide_a = w.decide(&a, Outcome::Accept);
    let body_b = w.reserve_body(2, 80);
    let b = w.append_after(User(0), Some(&before), body_b);
    let receipt_b = w.append(User(0), w.receipt_body(&b));
    let decide_b = w.append(
        User(0),
        Body::Decide(ash_ledger::Decide { reserve: b.id(), outcome: Outcome::Accept }),
    );
    w.collect(1, &decide_a);
    w.collect(2, &decide_b);
    let _ = (receipt_a, receipt_b);
    let forward = w.verifier();
    let mut reversed_entries = w.entries.clone();
    reversed_entries.reverse();
    let mut backward = Verifier::new(w.genesis.clone(), w.now + 1);
    for e in reversed_entries {
        backward.insert(e);
    }
    assert_eq!(verdicts(&forward, &w.entries), verdicts(&backward, &w.entries));
    for v in [&forward, &backward] {
        let report = v.report();
        assert_eq!(refusals(&w, &report), vec![]);
        // Each of the three positions the branches share is proven twice over.
        assert_eq!(report.equivocations.len(), 3);
        assert!(report.accounts[&w.id(0)].frozen);
        // Both honest acceptors are paid; the forker can spend nothing.
        assert_eq!(spendable(&w, &report), vec![0, 180, 180]);
    }
}

#[test]
fn a_second_signup_mint_is_refused_alone_and_the_authoritys_log_goes_on() {
    let mut w = World::with_authorities(2, 2);
    let second = w.mint_by(1, w.id(0), SIGNUP, MintKind::Signup);
    let grant = w.mint_by(1, w.id(1), 500, MintKind::Grant);
    w.receive(0, &second);
    w.receive(1, &grant);
    // Receiving the same grant twice.
    w.receive(1, &grant);
    let report = w.verify();
    assert_eq!(
        refusals(&w, &report),
        vec![
            refused("user0", 2, "receive", "duplicate-signup"),
            refused("user1", 3, "receive", "already-received"),
        ]
    );
    assert_eq!(spendable(&w, &report), vec![100, 600]);
    let authority = &report.accounts[&w.authorities[1].node_id()];
    assert_eq!((authority.valid, authority.refused), (3, 0));
}

#[test]
fn entries_do_not_replay_across_networks() {
    let w = World::new(1);
    let other = test_genesis("other-net", &w.authorities);
    assert_ne!(other.id(), w.genesis.id());
    let mut v = Verifier::new(other, w.now);
    let outcomes: Vec<Admission> = w.entries.iter().take(1).map(|e| v.insert(e.clone())).collect();
    assert!(matches!(&outcomes[..], [Admission::Refused(Rule::Network, _)]), "{outcomes:?}");
    assert_eq!(v.report().accounts.len(), 0);
}

#[test]
fn mints_and_receives_follow_the_authority_rules() {
    let mut w = World::with_authorities(1, 2);
    // A mint in a user's log, a receive of it, a mint to the authority, a receive of someone
    // else's mint, and a receive of something that is not a mint.
    let fake = w.append(
        User(0),
        Body::Mint(Mint {
            recipient: w.id(0),
            amount: Credits::new(10),
            kind: MintKind::Grant,
            reason: "self".into(),
        }),
    );
    w.receive(0, &fake);
    let to_authority = w.mint_by(0, w.authorities[0].node_id(), 10, MintKind::Grant);
    let for_one = w.mint_by(0, w.id(1), 10, MintKind::Grant);
    w.receive(0, &for_one);
    let profile = w.last_of(User(1));
    w.append(User(0), Body::Receive(Receive { mint: profile.id() }));
    let reserve = w.reserve(0, 1, 10);
    w.append(Authority(0), Body::Collect(Collect { source: reserve.id() }));
    let _ = to_authority;
    let report = w.verify();
    assert_eq!(
        refusals(&w, &report),
        vec![
            refused("authority0", 3, "mint", "mint-to-authority"),
            refused("authority0", 5, "collect", "authority-log"),
            refused("user0", 2, "mint", "mint-not-authority"),
            refused("user0", 3, "receive", "refused-source"),
            refused("user0", 4, "receive", "not-recipient"),
            refused("user0", 5, "receive", "not-a-mint"),
        ]
    );
    let _ = report;
}

#[test]
fn reservations_follow_the_funding_rule_and_deadlines() {
    let mut w = World::new(2);
    let r = w.reserve(0, 0, 10);
    let _ = r;
    let body = Body::Reserve(ash_ledger::Reserve {
        job: w.job(),
        acceptor: w.id(1),
        amount: Credits::new(10),
        deadline: w.now,
        terms: Hash::default(),
    });
    w.append(User(0), body);
    w.reserve(0, 1, 0);
    w.reserve(0, 1, 60);
    w.reserve(0, 1, 41);
    w.reserve(0, 1, 40);
    // Expiry only after the deadline; a decision only after a receipt.
    let last = w.last_of(User(0));
    w.release_expired(&last);
    w.decide(&last, Outcome::Reject);
    let report = w.verify();
    assert_eq!(
        refusals(&w, &report),
        vec![
            refused("user0", 2, "reserve", "self-dealing"),
            refused("user0", 3, "reserve", "deadline"),
            refused("user0", 4, "reserve", "amount"),
            refused("user0", 6, "reserve", "insufficient-balance"),
            refused("user0", 8, "release", "release-before-deadline"),
            refused("user0", 9, "decide", "no-receipt"),
        ]
    );
    let account = &report.accounts[&w.id(0)];
    assert_eq!((account.balance.locked.get(), account.balance.spendable.get()), (100, 0));
    let _ = DEADLINE;
}

#[test]
fn a_wrong_commitment_is_refused() {
    let mut w = World::new(3);
    let r = w.reserve(0, 1, 40);
    let Body::Receipt(mut receipt) = w.receipt_body(&r) else { unreachable!() };
    receipt.commitment = Signature([9; 64]);
    w.append(User(0), Body::Receipt(receipt));
    let report = w.verify();
    assert_eq!(refusals(&w, &report), vec![refused("user0", 3, "receipt", "commitment")]);
}

#[test]
fn entries_dated_in_the_future_wait_for_the_clock() {
    let mut w = World::new(2);
    let later = w.now + 3_600_000;
    let body = Body::Reserve(ash_ledger::Reserve {
        job: w.job(),
        acceptor: w.id(1),
        amount: Credits::new(10),
        deadline: later + DEADLINE,
        terms: Hash::default(),
    });
    w.append_at(User(0), later, body);
    let mut v = w.verifier_of(w.entries.clone());
    let pending = v.report().pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].waiting_for, format!("the clock to reach {later}"));
    v.set_now(later);
    let report = v.report();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.accounts[&w.id(0)].balance.locked.get(), 10);
}

#[test]
fn a_genesis_is_checked_and_round_trips() {
    let w = World::new(0);
    let text = w.genesis.to_toml();
    assert_eq!(Genesis::from_toml(&text).unwrap(), w.genesis);
    let id = w.authorities[0].node_id();
    for (toml, error) in [
        (
            "name = \"x\"\ncreated_at = 1\nauthorities = []\n".to_owned(),
            "genesis: `authorities` must name 1–64 identities",
        ),
        (
            format!("name = \"Bad Name\"\ncreated_at = 1\nauthorities = [\"{id}\"]\n"),
            "genesis: name \"Bad Name\" must be 1–64 bytes of a-z 0-9 . _ -",
        ),
        (
            format!("name = \"x\"\ncreated_at = 1\nauthorities = [\"{id}\", \"{id}\"]\n"),
            &format!("genesis: `authorities` names {id} twice"),
        ),
        (
            format!(
                "name = \"x\"\ncreated_at = 1\nauthorities = [\"{id}\"]\ncheckpoint_quorum = 2\n"
            ),
            "genesis: `checkpoint_quorum` 2 must be between 1 and the 1 witnesses",
        ),
    ] {
        assert_eq!(Genesis::from_toml(&toml).unwrap_err().to_string(), error);
    }
    // The file carries its id, checked against its contents; a signup bonus makes another
    // network, bootstrap addresses do not.
    assert!(text.contains(&format!("id = \"{}\"", w.genesis.id())), "{text}");
    let tampered = text.replace("claim_window_ms = ", "claim_window_ms = 1");
    let error = Genesis::from_toml(&tampered).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "genesis: `id` {} does not match the file's contents",
            w.genesis.id()
        )),
        "{error}"
    );
    let bonus = w.genesis.clone().with_signup_bonus(100).unwrap();
    assert_ne!(bonus.id(), w.genesis.id());
    let address =
        "/ip4/192.0.2.1/tcp/4517/p2p/12D3KooWHEEp8UJgm88zVNxasUWKXwwEEHemBxe2sdQKPX4Uepi6";
    let hinted = bonus.clone().with_bootstrap(vec![address.to_owned()]).unwrap();
    assert_eq!(hinted.id(), bonus.id());
    assert_eq!(Genesis::from_toml(&hinted.to_toml()).unwrap(), hinted);
    assert_eq!(
        bonus.with_bootstrap(vec!["192.0.2.1:4517".to_owned()]).unwrap_err().to_string(),
        "genesis: `bootstrap`: \"192.0.2.1:4517\" is not a multiaddr ending in /p2p/<peer id>"
    );
    assert_eq!(
        w.genesis.with_signup_bonus(0).unwrap_err().to_string(),
        "genesis: `signup_bonus` 0 must be between 1 and 1000000000000"
    );
    let unknown =
        format!("name = \"x\"\ncreated_at = 1\nauthorities = [\"{id}\"]\nmint_authorities = []\n");
    assert!(
        Genesis::from_toml(&unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown field `mint_authorities`")
    );
}

#[test]
fn a_signup_cost_and_prices_are_part_of_the_network() {
    let w = World::new(2);
    let id = w.authorities[0].node_id();
    let head = format!("name = \"x\"\ncreated_at = 1\nauthorities = [\"{id}\"]\n");
    let read = |extra: &str| Genesis::from_toml(&format!("{head}{extra}"));
    let free = read("").unwrap();
    assert_eq!(
        (free.signup_cost, free.price("sonnet"), free.price("gpt")),
        (SignupCost::None, Some(6), None)
    );
    // Saying "none" is the same network as saying nothing.
    assert_eq!(read("signup_cost = \"none\"\n").unwrap().id(), free.id());
    let invite = read("signup_cost = \"invite\"\n").unwrap();
    let work = read("signup_cost = \"pow\"\nsignup_pow_bits = 8\n").unwrap();
    let priced = read("[prices]\nsonnet = 5\nlocal = 1\n").unwrap();
    let ids: BTreeSet<_> = [&free, &invite, &work, &priced].iter().map(|g| g.id()).collect();
    assert_eq!(ids.len(), 4, "each choice is another network");
    assert_eq!(
        (priced.price("sonnet"), priced.price("local"), priced.price("opus")),
        (Some(5), Some(1), None)
    );
    for genesis in [&invite, &work, &priced] {
        assert_eq!(&Genesis::from_toml(&genesis.to_toml()).unwrap(), genesis);
    }
    for (extra, error) in [
        ("signup_cost = \"pow\"\n", "genesis: `signup_cost` \"pow\" needs `signup_pow_bits`"),
        (
            "signup_cost = \"pow\"\nsignup_pow_bits = 40\n",
            "genesis: `signup_pow_bits` 40 must be between 8 and 32",
        ),
        ("signup_pow_bits = 9\n", "genesis: `signup_pow_bits` is only for `signup_cost = \"pow\"`"),
        (
            "signup_cost = \"captcha\"\n",
            "genesis: `signup_cost` \"captcha\" must be \"none\", \"invite\" or \"pow\"",
        ),
        (
            "[prices]\nsonnet = 0\n",
            "genesis: `prices`: sonnet = 0 must be between 1 and 1000000000000",
        ),
        (
            "[prices]\n\"Big Tier\" = 1\n",
            "genesis: `prices`: tier \"Big Tier\" must be 1–32 bytes of a-z 0-9 . _ -",
        ),
        ("[prices]\n", "genesis: `prices` must name 1–32 tiers"),
    ] {
        assert_eq!(read(extra).unwrap_err().to_string(), error, "{extra}");
    }

    // A stamp is found, checks, and is bound to its identity and its network.
    let (alice, bob) = (w.id(0), w.id(1));
    let nonce = work.solve_work(&alice, 0, |_| false).unwrap();
    assert!(work.check_work(&alice, nonce));
    let forged = (0..64u64).filter(|n| work.check_work(&alice, *n)).count();
    assert!(forged < 64, "at 8 bits, most nonces are not stamps");
    let elsewhere =
        read("signup_cost = \"pow\"\nsignup_pow_bits = 8\nclaim_window_ms = 5\n").unwrap();
    assert!(!work.check_work(&bob, nonce), "Alice's stamp is not Bob's");
    assert!(!elsewhere.check_work(&alice, nonce), "nor hers on another network");
    // Networks that ask for none accept none.
    assert!(!free.check_work(&alice, nonce) && !invite.check_work(&alice, nonce));
    assert_eq!(free.solve_work(&alice, 0, |_| false), None);
    // Giving up is honoured.
    let hard = read("signup_cost = \"pow\"\nsignup_pow_bits = 32\n").unwrap();
    assert_eq!(hard.solve_work(&alice, 0, |tried| tried >= 1 << 16), None);
}

#[test]
fn a_counterparty_verifies_from_its_checkpoint() {
    let mut w = World::new(3);
    for _ in 0..5 {
        w.job_done(0, 1, 10, Outcome::Accept);
        w.job_done(1, 0, 6, Outcome::Reject);
    }
    let before = w.verifier();
    let checkpoint = |who: usize| {
        let mut c = before.checkpoint(w.id(who), w.now).unwrap();
        c.sign(&w.authorities[0]);
        c
    };
    let (c0, c1) = (checkpoint(0), checkpoint(1));
    let heads: Vec<Entry> = [&c0, &c1]
        .iter()
        .map(|c| w.entries.iter().find(|e| e.id() == c.head).unwrap().clone())
        .collect();
    let tail = w.entries.len();
    // After the checkpoints user0 hires user2, and user1 collects a late top-up of nothing.
    w.job_done(0, 2, 20, Outcome::Accept);
    let full = w.verify();
    // The light verifier holds the checkpoints, the heads, what came after, and the short logs of
    // the authority and user2: not user0's or user1's histories.
    let mut light = Verifier::new(w.genesis.clone(), w.now + 1);
    light.add_checkpoint(c0).unwrap();
    light.add_checkpoint(c1).unwrap();
    let short_logs = w.entries[..tail]
        .iter()
        .filter(|e| e.author == w.authorities[0].node_id() || e.author == w.id(2))
        .cloned();
    for e in w.entries[tail..].iter().cloned().chain(heads).chain(short_logs) {
        light.insert(e);
    }
    let report = light.report();
    for i in [0, 2] {
        assert_eq!(report.accounts[&w.id(i)].balance, full.accounts[&w.id(i)].balance, "user{i}");
    }
    assert_eq!(
        (report.refused.len(), report.pending.len(), report.quarantined),
        (0, 0, 0),
        "{report:?}"
    );
    // A checkpoint signed by a non-witness does not count.
    let mut forged = before.checkpoint(w.id(0), w.now).unwrap();
    forged.sign(&w.users[2]);
    let mut v = Verifier::new(w.genesis.clone(), w.now);
    assert_eq!(
        v.add_checkpoint(forged).unwrap_err().to_string(),
        "0 valid witness signatures; the network needs 1"
    );
}

#[test]
fn a_long_log_held_in_quarantine_is_released_in_a_loop() {
    // A log offered newest first waits whole in quarantine; its entry 0 releases it all. The
    // release is a loop: as recursion, 5,000 entries overflowed a test thread's stack.
    let mut w = World::new(1);
    for _ in 0..5_000 {
        w.profile(User(0), "user0".into());
    }
    let user = w.id(0);
    let mut v = Verifier::new(w.genesis.clone(), w.now + 1);
    let (mine, others): (Vec<Entry>, Vec<Entry>) =
        w.entries.iter().cloned().partition(|e| e.author == user);
    for e in others {
        v.insert(e);
    }
    let first = mine[0].clone();
    for e in mine.into_iter().skip(1).rev() {
        assert_eq!(v.insert(e), Admission::Quarantined);
    }
    assert_eq!(v.insert(first), Admission::Accepted(Verdict::Valid));
    let report = v.report();
    assert_eq!((report.quarantined, report.refused.len(), report.pending.len()), (0, 0, 0));
    assert_eq!(report.accounts[&user].valid, 5_002);
}

#[test]
fn a_lying_checkpoint_cannot_mint_for_a_non_authority_and_malformed_ones_do_not_count() {
    let mut w = World::new(2);
    // user0 writes a "mint" to user1: refused by the rules.
    let fake = w.append(
        User(0),
        Body::Mint(Mint {
            recipient: w.id(1),
            amount: Credits::new(1_000),
            kind: MintKind::Grant,
            reason: "free money".into(),
        }),
    );
    let full = w.verifier();
    assert_eq!(
        refusals(&w, &full.report()),
        vec![refused("user0", fake.seq, "mint", "mint-not-authority")]
    );
    // A witness lies: a checkpoint of user0 that lists nothing refused.
    let mut lie = full.checkpoint(w.id(0), w.now).unwrap();
    lie.refused.clear();
    lie.sign(&w.authorities[0]);
    let receive = w.receive(1, &fake);
    let mut v = Verifier::new(w.genesis.clone(), w.now + 1);
    v.add_checkpoint(lie.clone()).unwrap();
    let others: Vec<Entry> = w.entries.iter().filter(|e| e.author != w.id(0)).cloned().collect();
    v.insert_many(others);
    v.insert(fake.clone());
    assert_eq!(v.verdict(&fake.id()), Some(&Verdict::Valid), "the lie is believed about user0");
    assert_eq!(
        v.verdict(&receive.id()).cloned(),
        Some(Verdict::Refused {
            rule: Rule::NotAMint,
            detail: format!("{} is not a mint authority", w.id(0).short()),
        })
    );
    assert_eq!(v.account(w.id(1)).balance.received, Credits::new(SIGNUP));

    // Malformed checkpoints do not count, whoever signed them.
    let mut repeated = lie.clone();
    repeated.signatures.push(repeated.signatures[0]);
    let mut unordered = lie.clone();
    unordered.refused = vec![2, 1];
    unordered.sign(&w.authorities[0]);
    let mut huge = lie;
    huge.refused = (0..70_000).collect();
    huge.seq = 70_000;
    huge.sign(&w.authorities[0]);
    let errors: Vec<String> = [repeated, unordered, huge]
        .into_iter()
        .map(|c| c.check(&w.genesis).unwrap_err().to_string())
        .collect();
    assert_eq!(
        errors,
        vec![
            "a witness signs the checkpoint twice",
            "the checkpoint's refused seqs must ascend and not pass its position",
            "the checkpoint holds more entries than its encoding can count",
        ]
    );
}

#[test]
fn a_checkpointed_log_takes_late_ancestors_and_reveals_forks_below_it_in_any_order() {
    let mut w = World::new(2);
    for _ in 0..3 {
        w.job_done(0, 1, 5, Outcome::Accept);
    }
    let full = w.verifier();
    let mut checkpoint = full.checkpoint(w.id(0), w.now).unwrap();
    checkpoint.sign(&w.authorities[0]);
    let chain: Vec<Entry> = full.chain(w.id(0)).iter().map(|e| (**e).clone()).collect();
    let head = chain.last().unwrap().clone();
    // user0 signs a second entry at position 3, forking below its checkpoint.
    let fork = w.append_after(
        User(0),
        Some(&chain[2]),
        Body::Profile(Profile {
            username: "forked".into(),
            sealing_key: w.users[0].sealing_public(),
            created_at: T0,
        }),
    );
    let others: Vec<Entry> = w.entries.iter().filter(|e| e.author != w.id(0)).cloned().collect();
    let orders: [(&str, Vec<Entry>); 3] = [
        ("head, then ancestors newest first, then the fork", {
            let mut v = vec![head];
            v.extend(chain.iter().rev().skip(1).cloned());
            v.push(fork.clone());
            v
        }),
        ("the fork first", {
            let mut v = vec![fork.clone()];
            v.extend(chain.iter().cloned());
            v
        }),
        ("ancestors oldest first, head last", {
            let mut v = chain.clone();
            v.push(fork);
            v
        }),
    ];
    for (name, order) in orders {
        let mut v = Verifier::new(w.genesis.clone(), w.now + 1);
        v.add_checkpoint(checkpoint.clone()).unwrap();
        v.insert_many(others.clone());
        for e in order {
            v.insert(e);
        }
        let report = v.report();
        let chain_verdicts: Vec<Option<Verdict>> =
            chain.iter().map(|e| v.verdict(&e.id()).cloned()).collect();
        assert_eq!(chain_verdicts, vec![Some(Verdict::Valid); chain.len()], "{name}");
        assert_eq!(
            (report.equivocations.len(), report.accounts[&w.id(0)].frozen),
            (1, true),
            "{name}"
        );
    }
}

#[test]
fn mints_are_received_in_any_order_and_each_once() {
    // A peer that relays an authority's later mint first (or checkpoints and what came after
    // them) cannot make an earlier mint unreceivable.
    let mut w = World::new(1);
    let first = w.mint_by(0, w.id(0), 10, MintKind::Grant);
    let second = w.mint_by(0, w.id(0), 20, MintKind::Grant);
    w.receive(0, &second);
    w.receive(0, &first);
    w.receive(0, &first);
    let report = w.verify();
    assert_eq!(refusals(&w, &report), vec![refused("user0", 4, "receive", "already-received")]);
    assert_eq!(spendable(&w, &report), vec![SIGNUP + 30]);
}
