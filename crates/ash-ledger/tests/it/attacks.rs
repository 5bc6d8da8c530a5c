//! The attacks that worked on the system we follow, one test each; every one must fail with a
//! named rule and leave balances where honest history puts them.

use ash_identity::Identity;
use ash_ledger::{
    Body, Credits, MintKind, Outcome, Release, ReleaseReason, Reserve, Rule, Settle, Verifier,
};
use pretty_assertions::assert_eq;

use crate::world::{SIGNUP, World, balances, rejections};

fn rule(name: &str) -> String {
    name.to_owned()
}

#[test]
fn honest_history_verifies_and_conserves() {
    let mut w = World::new(3);
    w.job_done(0, 1, 6, Outcome::Accept, 6);
    w.job_done(1, 2, 30, Outcome::Reject, 15);
    let open = w.reserve(2, 0, 2);
    let report = w.verify();
    assert_eq!(rejections(&report), vec![]);
    assert!(report.is_clean() && report.pending.is_empty());
    assert_eq!(balances(&w, &report), vec![94, 106 - 15, 115 - 2]);
    let total: i64 = balances(&w, &report).iter().sum::<i64>() + 2;
    assert_eq!(total, 3 * SIGNUP as i64);
    let acc = &report.accounts[&w.id(2)];
    assert_eq!(
        (acc.balance.reserved, acc.balance.earned, acc.verified),
        (Credits::new(2), Credits::new(15), acc.length)
    );
    // The open reservation can expire and be released.
    w.now += 120_000;
    let Body::Reserve(r) = &open.body else { unreachable!() };
    let release = Release {
        job: r.job,
        reserve_seq: open.seq,
        reserve_hash: open.hash(),
        reason: ReleaseReason::Expired,
    };
    w.append(Some(2), Body::Release(release), None);
    assert_eq!(balances(&w, &w.verify()), vec![94, 91, 115]);
}

#[test]
fn self_minting_is_rejected() {
    let mut w = World::new(1);
    let me = w.id(0);
    let body = Body::Mint(ash_ledger::Mint {
        recipient: me,
        amount: Credits::new(1_000_000),
        kind: MintKind::Grant,
        reason: "free".into(),
    });
    w.append(Some(0), body, None);
    let report = w.verify();
    assert_eq!(rejections(&report), vec![(1, "mint", rule("mint-not-authority"))]);
    assert_eq!(balances(&w, &report), vec![SIGNUP as i64]);
}

#[test]
fn a_mint_by_a_non_authority_log_is_rejected() {
    let mut w = World::new(2);
    // user1 plays "authority" in its own log: not listed in the network config.
    let target = w.id(0);
    let body = Body::Mint(ash_ledger::Mint {
        recipient: target,
        amount: Credits::new(500),
        kind: MintKind::Grant,
        reason: "x".into(),
    });
    w.append(Some(1), body, None);
    // And a real authority's mint with its recipient changed afterwards.
    let user1 = w.id(1);
    let mut forged = w.mint(user1, 5, MintKind::Grant).bytes().to_vec();
    w.entries.pop();
    let recipient_at = 1 + 32 + 8 + 32 + 8 + 1 + 4;
    forged[recipient_at..recipient_at + 32].copy_from_slice(w.id(0).as_bytes());
    w.entries.push(ash_ledger::Entry::decode(&forged).unwrap());
    let report = w.verify();
    assert_eq!(
        rejections(&report),
        vec![(3, "mint", rule("signature")), (1, "mint", rule("mint-not-authority"))]
    );
    assert_eq!(balances(&w, &report), vec![100, 100]);
}

#[test]
fn a_second_signup_mint_is_rejected() {
    let mut w = World::new(1);
    let user0 = w.id(0);
    w.mint(user0, 100, MintKind::Signup);
    assert_eq!(rejections(&w.verify()), vec![(2, "mint", rule("duplicate-signup-mint"))]);
}

#[test]
fn an_earn_cosigned_by_a_throwaway_key_counts_for_nothing() {
    let mut w = World::new(1);
    let throwaway = Identity::insecure_from_label("throwaway");
    let mut fake = World::new(0);
    fake.users.push(throwaway);
    // The throwaway's own log: a profile and a huge reservation for user0 (no credits).
    let t = ash_identity::Identity::insecure_from_label("throwaway");
    let profile = Body::Profile(ash_ledger::Profile {
        username: "throwaway".into(),
        sealing_key: t.sealing_public(),
        created_at: 0,
    });
    let mut writer = ash_ledger::LogWriter::new(&t);
    let p = writer.append(w.now, profile, None);
    let job = w.job();
    let reserve = writer.append(
        w.now + 1,
        Body::Reserve(Reserve {
            job,
            acceptor: w.id(0),
            amount: Credits::new(1_000_000),
            deadline: w.now + 10,
        }),
        None,
    );
    let mut settlement = w.settlement(&reserve, Outcome::Accept, 1_000_000);
    settlement.result_hash = ash_ledger::Hash([1; 32]);
    let commitment = None;
    let cosig = settlement.cosign(&t);
    w.append(
        Some(0),
        Body::Settle(Box::new(Settle { settlement, commitment, reserve: reserve.clone() })),
        Some(cosig),
    );
    // Without the throwaway's log: pending, not counted.
    let report = w.verify();
    assert_eq!((rejections(&report), balances(&w, &report)), (vec![], vec![100]));
    assert_eq!(report.pending.len(), 1);
    assert!(report.pending[0].waiting_for.contains("requester"), "{:?}", report.pending);
    // With it: the reservation is unfunded, so the earn is rejected.
    let mut entries = w.entries.clone();
    entries.extend([p, reserve]);
    let report = w.verify_entries(entries);
    assert_eq!(
        rejections(&report),
        vec![
            (1, "reserve", rule("insufficient-balance")),
            (1, "settle", rule("unknown-reservation"))
        ]
    );
    assert_eq!(balances(&w, &report), vec![100]);
}

#[test]
fn colluding_identities_only_move_credits_never_make_them() {
    let mut w = World::new(2);
    // Legitimate back-and-forth.
    w.job_done(0, 1, 100, Outcome::Accept, 100);
    w.job_done(1, 0, 150, Outcome::Accept, 150);
    // user1 and user0 co-sign a settlement far above the reservation.
    let reserve = w.reserve(0, 1, 10);
    let settlement = w.settlement(&reserve, Outcome::Accept, 999_999_999);
    w.settle(1, &reserve, settlement);
    let report = w.verify();
    assert_eq!(rejections(&report), vec![(4, "settle", rule("above-reserved"))]);
    let b = balances(&w, &report);
    assert_eq!(b, vec![150 - 10, 50]);
    assert_eq!(b.iter().sum::<i64>() + 10, 200);
}

#[test]
fn spending_a_reservation_twice_is_rejected() {
    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 6);
    let settlement = w.settlement(&reserve, Outcome::Accept, 6);
    w.settle(1, &reserve, settlement.clone());
    w.settle(1, &reserve, settlement);
    let report = w.verify();
    assert_eq!(rejections(&report), vec![(2, "settle", rule("reservation-resolved"))]);
    assert_eq!(balances(&w, &report), vec![94, 106]);
    // The requester releasing a settled reservation is rejected too.
    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 6);
    let s = w.settlement(&reserve, Outcome::Accept, 6);
    w.settle(1, &reserve, s);
    w.now += 120_000;
    let Body::Reserve(r) = &reserve.body else { unreachable!() };
    let release = Release {
        job: r.job,
        reserve_seq: reserve.seq,
        reserve_hash: reserve.hash(),
        reason: ReleaseReason::Expired,
    };
    w.append(Some(0), Body::Release(release), None);
    let report = w.verify();
    assert_eq!(rejections(&report), vec![(2, "release", rule("reservation-resolved"))]);
    assert_eq!(balances(&w, &report), vec![94, 106]);
}

#[test]
fn timeouts_only_after_the_deadline_and_at_most_half() {
    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 30);
    let early = w.settlement(&reserve, Outcome::Timeout, 15);
    w.settle(1, &reserve, early);
    let report = w.verify();
    assert_eq!(rejections(&report), vec![(1, "settle", rule("timeout-before-deadline"))]);
    assert_eq!(balances(&w, &report), vec![70, 100]);

    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 30);
    w.now += 60_000;
    let greedy = w.settlement(&reserve, Outcome::Timeout, 16);
    w.settle(1, &reserve, greedy);
    assert_eq!(rejections(&w.verify()), vec![(1, "settle", rule("timeout-above-half"))]);

    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 30);
    w.now += 60_000;
    let fair = w.settlement(&reserve, Outcome::Timeout, 15);
    w.settle(1, &reserve, fair);
    let report = w.verify();
    assert_eq!((rejections(&report), balances(&w, &report)), (vec![], vec![85, 115]));
}

#[test]
fn replaying_an_old_settlement_is_rejected() {
    let mut w = World::new(2);
    let old = w.reserve(0, 1, 6);
    let settlement = w.settlement(&old, Outcome::Accept, 6);
    w.settle(1, &old, settlement.clone());
    let new = w.reserve(0, 1, 6);
    // The same co-signed settlement, re-appended for the new job.
    let Body::Settle(old_settle) = &w.entries[w.entries.len() - 2].body.clone() else {
        unreachable!()
    };
    let cosig = settlement.cosign(&w.users[0]);
    w.append(Some(1), Body::Settle(old_settle.clone()), Some(cosig));
    let report = w.verify();
    assert_eq!(rejections(&report), vec![(2, "settle", rule("reservation-resolved"))]);
    // Pointing the old settlement at the new reservation breaks the requester's
    // counter-signature (the reservation hash is in the signed settlement)...
    let mut w2 = World::new(2);
    let old = w2.reserve(0, 1, 6);
    let s_old = w2.settlement(&old, Outcome::Accept, 6);
    w2.settle(1, &old, s_old.clone());
    let new2 = w2.reserve(0, 1, 6);
    let mut moved = s_old;
    moved.reserve_seq = new2.seq;
    moved.reserve_hash = new2.hash();
    let commitment = None;
    let stale_cosig = w2.settlement(&old, Outcome::Accept, 6).cosign(&w2.users[0]);
    w2.append(
        Some(1),
        Body::Settle(Box::new(Settle { settlement: moved, commitment, reserve: new2 })),
        Some(stale_cosig),
    );
    let report = w2.verify();
    assert_eq!(rejections(&report), vec![(2, "settle", rule("cosignature"))]);
    // ...and if the requester does sign it, the old job id no longer matches.
    let mut w3 = World::new(2);
    let old = w3.reserve(0, 1, 6);
    let s_old = w3.settlement(&old, Outcome::Accept, 6);
    w3.settle(1, &old, s_old.clone());
    let new3 = w3.reserve(0, 1, 6);
    let mut moved = s_old;
    moved.reserve_seq = new3.seq;
    moved.reserve_hash = new3.hash();
    w3.settle(1, &new3, moved);
    assert_eq!(rejections(&w3.verify()), vec![(2, "settle", rule("reservation-mismatch"))]);
    let _ = new;
}

#[test]
fn rolling_back_by_fork_is_proven_and_frozen() {
    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 50);
    let settlement = w.settlement(&reserve, Outcome::Accept, 50);
    w.settle(1, &reserve, settlement);
    // user0 rewrites entry 1 (the reservation) as a reservation of 1 for someone else.
    let profile = w.entries.iter().find(|e| e.author == w.id(0) && e.seq == 0).unwrap().clone();
    let job = w.job();
    let mut writer = ash_ledger::LogWriter::resume(&w.users[0], &profile);
    let forked = writer.append(
        w.now,
        Body::Reserve(Reserve {
            job,
            acceptor: w.id(1),
            amount: Credits::new(1),
            deadline: w.now + 5,
        }),
        None,
    );
    // The fork is shown instead of the original log: the acceptor's settle carries the original
    // reservation, so the fork is proven.
    let mut entries: Vec<_> =
        w.entries.iter().filter(|e| e.hash() != reserve.hash()).cloned().collect();
    entries.push(forked.clone());
    let report = w.verify_entries(entries);
    assert_eq!(report.equivocations.len(), 1);
    assert!(report.accounts[&w.id(0)].frozen);
    assert!(!report.accounts[&w.id(1)].frozen);
    // Truncating the log (dropping the reservation) makes the settle wait, it does not undo it
    // for anyone holding the full log.
    let truncated: Vec<_> =
        w.entries.iter().filter(|e| e.hash() != reserve.hash()).cloned().collect();
    let report = w.verify_entries(truncated);
    assert_eq!(report.pending.len(), 1);
    // Incremental: a verifier that has seen the log refuses the fork with a proof.
    let (mut verifier, report) = Verifier::verify_all(w.rules(), w.entries.clone());
    assert!(report.is_clean());
    let err = verifier.append(forked).unwrap_err();
    assert_eq!(err.rule, Rule::Signature);
    assert!(err.detail.starts_with("equivocation"), "{}", err.detail);
    assert!(verifier.report().accounts[&w.id(0)].frozen);
}

#[test]
fn a_rejected_settle_does_not_claim_its_reservation_incrementally() {
    let mut w = World::new(2);
    let reserve = w.reserve(0, 1, 6);
    let early = w.settlement(&reserve, Outcome::Accept, 6);
    let early = w.settle(1, &reserve, early);
    let mut later = w.settlement(&reserve, Outcome::Reject, 3);
    later.result_hash = ash_ledger::Hash([8; 32]);
    // Built on the same log position, so it replaces `early` in user1's log.
    w.entries.pop();
    let (mut verifier, _) = Verifier::verify_all(
        w.rules(),
        w.entries.iter().filter(|e| e.hash() != reserve.hash()).cloned().collect::<Vec<_>>(),
    );
    // Without the reservation the first settle is refused...
    let err = verifier.append(early).unwrap_err();
    assert_eq!(err.rule, Rule::UnknownReservation);
    // ...and does not stop another valid settlement once the reservation arrives.
    assert!(verifier.append(reserve.clone()).unwrap());
    let cosig = later.cosign(&w.users[0]);
    let profile = w.entries.iter().find(|e| e.author == w.id(1) && e.seq == 0).unwrap().clone();
    let entry = ash_ledger::LogWriter::resume(&w.users[1], &profile).append(
        w.now + 1,
        Body::Settle(Box::new(Settle { settlement: later, commitment: None, reserve })),
        Some(cosig),
    );
    assert_eq!(verifier.append(entry).map_err(|e| e.rule), Ok(true));
    assert_eq!(balances(&w, &verifier.report()), vec![97, 103]);
}
