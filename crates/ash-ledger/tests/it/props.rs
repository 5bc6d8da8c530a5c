//! Properties over random multi-party histories with hostile participants: verdicts do not
//! depend on arrival order (batch or one by one, any order, duplicates and bad copies
//! included), the funding rule holds, no acceptor collects more than it is owed, and no credit
//! exists outside a mint.

use std::collections::{BTreeMap, HashMap};

use ash_ledger::{Body, Credits, Entry, Hash, MintKind, Outcome, Verdict, Verifier};
use proptest::prelude::*;

use crate::world::{User, World, verdicts};

#[derive(Clone, Debug)]
enum Op {
    Reserve { requester: usize, acceptor: usize, amount: u64 },
    Receipt(prop::sample::Index),
    Decide(prop::sample::Index, bool),
    Collect(prop::sample::Index),
    CollectTimeout(prop::sample::Index),
    Release(prop::sample::Index),
    Cancel(prop::sample::Index),
    Fork(usize),
    Mint { authority: usize, user: usize, amount: u64, signup: bool },
    Receive { user: usize, mint: usize },
    Wait(u64),
    Honest { requester: usize, acceptor: usize, amount: u64, accept: bool },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    let job = any::<prop::sample::Index>();
    prop_oneof![
        4 => (0..n, 1..n, 1..80u64).prop_map(move |(requester, step, amount)| Op::Reserve { requester, acceptor: (requester + step) % n, amount }),
        1 => (0..n, 1..80u64).prop_map(|(requester, amount)| Op::Reserve { requester, acceptor: requester, amount }),
        4 => job.clone().prop_map(Op::Receipt),
        4 => (job.clone(), any::<bool>()).prop_map(|(j, a)| Op::Decide(j, a)),
        4 => job.clone().prop_map(Op::Collect),
        2 => job.clone().prop_map(Op::CollectTimeout),
        1 => job.clone().prop_map(Op::Release),
        1 => job.prop_map(Op::Cancel),
        1 => (0..n, 0..3u8).prop_map(|(user, roll)| if roll == 0 { Op::Fork(user) } else { Op::Wait(1) }),
        1 => (0..2usize, 0..n, 1..50u64, any::<bool>()).prop_map(|(authority, user, amount, signup)| Op::Mint { authority, user, amount, signup }),
        2 => (0..n, 0..8usize).prop_map(|(user, mint)| Op::Receive { user, mint }),
        2 => (0..200_000u64).prop_map(Op::Wait),
        3 => (0..n, 1..n, 1..40u64, any::<bool>()).prop_map(move |(requester, step, amount, accept)| Op::Honest { requester, acceptor: (requester + step) % n, amount, accept }),
    ]
}

fn history() -> impl Strategy<Value = (usize, Vec<Op>, u64)> {
    (2..5usize).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..40), any::<u64>()))
}

/// Plays `ops`; every entry is written whatever the rules will say of it.
fn play(n: usize, ops: &[Op]) -> World {
    let mut w = World::with_authorities(2, n);
    let mut jobs: Vec<Entry> = Vec::new();
    let mut sources: HashMap<usize, Vec<Entry>> = HashMap::new();
    let mut mints: Vec<Entry> = Vec::new();
    for op in ops {
        match op {
            Op::Reserve { requester, acceptor, amount } => {
                let r = w.reserve(*requester, *acceptor, *amount);
                jobs.push(r);
            }
            Op::Receipt(j) => {
                if let Some(r) = pick(&jobs, j) {
                    let e = w.receipt(&r);
                    sources.entry(j.index(jobs.len())).or_default().push(e);
                }
            }
            Op::Decide(j, accept) => {
                if let Some(r) = pick(&jobs, j) {
                    let e = w.decide(&r, if *accept { Outcome::Accept } else { Outcome::Reject });
                    sources.entry(j.index(jobs.len())).or_default().push(e);
                }
            }
            Op::Collect(j) | Op::CollectTimeout(j) => {
                let timeout = matches!(op, Op::CollectTimeout(_));
                let Some(r) = pick(&jobs, j) else { continue };
                if timeout {
                    w.pass_deadline(&r);
                }
                let acceptor = w.acceptor_of(&r);
                let wanted = if timeout { "receipt" } else { "decide" };
                if let Some(source) = sources
                    .get(&j.index(jobs.len().max(1)))
                    .and_then(|s| s.iter().rev().find(|e| e.body.kind() == wanted))
                    .cloned()
                {
                    w.collect(acceptor, &source);
                }
            }
            Op::Release(j) => {
                if let Some(r) = pick(&jobs, j) {
                    w.pass_deadline(&r);
                    w.release_expired(&r);
                }
            }
            Op::Cancel(j) => {
                if let Some(r) = pick(&jobs, j) {
                    w.cancel(&r);
                }
            }
            Op::Fork(user) => {
                let last = w.last_of(User(*user));
                let before = w
                    .entries
                    .iter()
                    .find(|e| e.author == last.author && e.seq + 1 == last.seq)
                    .cloned();
                let body = Body::Profile(ash_ledger::Profile {
                    username: format!("fork{}", w.entries.len()),
                    sealing_key: w.users[*user].sealing_public(),
                    created_at: 0,
                });
                w.append_after(User(*user), before.as_ref(), body);
            }
            Op::Mint { authority, user, amount, signup } => {
                let kind = if *signup { MintKind::Signup } else { MintKind::Grant };
                let m = w.mint_by(*authority, w.id(*user), *amount, kind);
                mints.push(m);
            }
            Op::Receive { user, mint } => {
                if let Some(m) = mints.get(*mint).cloned() {
                    w.receive(*user, &m);
                }
            }
            Op::Wait(ms) => w.now += ms,
            Op::Honest { requester, acceptor, amount, accept } => {
                let r = w.reserve(*requester, *acceptor, *amount);
                let receipt = w.receipt(&r);
                let decide = w.decide(&r, if *accept { Outcome::Accept } else { Outcome::Reject });
                w.collect(*acceptor, &decide);
                jobs.push(r);
                sources.entry(jobs.len() - 1).or_default().extend([receipt, decide]);
            }
        }
    }
    w
}

fn pick(jobs: &[Entry], j: &prop::sample::Index) -> Option<Entry> {
    (!jobs.is_empty()).then(|| jobs[j.index(jobs.len())].clone())
}

fn shuffle(entries: &mut [Entry], mut seed: u64) {
    for i in (1..entries.len()).rev() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from((seed >> 33) % (i as u64 + 1)).unwrap();
        entries.swap(i, j);
    }
}

/// The accounts as numbers, for whole-value comparisons.
/// An account as numbers: received, earned, paid, locked, spendable, frozen, head.
type Numbers = (u64, u64, u64, u64, u64, bool, Option<Hash>);

fn accounts(v: &Verifier) -> BTreeMap<String, Numbers> {
    v.report()
        .accounts
        .values()
        .map(|a| {
            let b = a.balance;
            (
                a.id.short(),
                (
                    b.received.get(),
                    b.earned.get(),
                    b.paid.get(),
                    b.locked.get(),
                    b.spendable.get(),
                    a.frozen,
                    a.head,
                ),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_arrival_order_gives_the_same_verdicts((n, ops, seed) in history()) {
        let w = play(n, &ops);
        let batch = w.verifier();
        let mut entries = w.entries.clone();
        // Duplicates and copies with a broken signature come along.
        entries.extend(w.entries.iter().step_by(3).cloned());
        for e in w.entries.iter().step_by(4) {
            let mut bytes = e.bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
            entries.push(Entry::decode(&bytes).unwrap());
        }
        shuffle(&mut entries, seed);
        let mut one_by_one = Verifier::new(w.genesis.clone(), w.now + 1);
        for e in entries.clone() {
            one_by_one.insert(e);
        }
        prop_assert_eq!(verdicts(&batch, &w.entries), verdicts(&one_by_one, &w.entries));
        prop_assert_eq!(accounts(&batch), accounts(&one_by_one));
        let shuffled_batch = w.verifier_of(entries);
        prop_assert_eq!(verdicts(&batch, &w.entries), verdicts(&shuffled_batch, &w.entries));
        // Everything written was judged: nothing is left waiting.
        prop_assert_eq!(batch.report().pending, vec![]);
        prop_assert_eq!(batch.report().quarantined, 0);
    }

    #[test]
    fn credits_follow_the_funding_rule_and_are_conserved((n, ops, _) in history()) {
        let w = play(n, &ops);
        let v = w.verifier();
        let report = v.report();
        for account in report.accounts.values() {
            let b = account.balance;
            let has = u128::from(b.received.get()) + u128::from(b.earned.get());
            prop_assert!(has >= u128::from(b.paid.get()) + u128::from(b.locked.get()), "{account:?}");
        }
        if !report.equivocations.is_empty() {
            return Ok(());
        }
        // What each reservation owes its acceptor by now, and what was collected for it.
        let mut owed: HashMap<Hash, Credits> = HashMap::new();
        let mut reserved: HashMap<Hash, Credits> = HashMap::new();
        for i in 0..n {
            for e in v.valid_entries(w.id(i)) {
                match &e.body {
                    Body::Reserve(r) => { reserved.insert(e.id(), r.amount); owed.insert(e.id(), Credits::ZERO); }
                    Body::Receipt(r) => { owed.insert(r.reserve, reserved[&r.reserve].half()); }
                    Body::Decide(d) => { owed.insert(d.reserve, d.outcome.price(reserved[&d.reserve])); }
                    _ => {}
                }
            }
        }
        let mut collected: HashMap<Hash, Credits> = HashMap::new();
        let mut earned_total = 0u64;
        for i in 0..n {
            earned_total += report.accounts.get(&w.id(i)).map_or(0, |a| a.balance.earned.get());
            for e in v.valid_entries(w.id(i)) {
                if let Body::Collect(c) = &e.body {
                    let source = v.entry(&c.source).unwrap();
                    let (reserve, amount) = match &source.body {
                        Body::Decide(d) => (d.reserve, d.outcome.price(reserved[&d.reserve])),
                        Body::Receipt(r) => (r.reserve, reserved[&r.reserve].half()),
                        _ => unreachable!("a valid collect names a decision or a receipt"),
                    };
                    let slot = collected.entry(reserve).or_default();
                    *slot = (*slot).max(amount);
                }
            }
        }
        for (reserve, got) in &collected {
            prop_assert!(*got <= owed[reserve], "collected {got} of {}", owed[reserve]);
        }
        prop_assert_eq!(earned_total, collected.values().map(|c| c.get()).sum::<u64>());

        // Conservation: every received credit is a valid mint received once, and all the
        // credit anyone can spend is at most what was received: payments and timeout claims
        // only move credit.
        let mut received_mints: HashMap<Hash, u64> = HashMap::new();
        let (mut received, mut spendable) = (0u128, 0u128);
        for i in 0..n {
            let b = report.accounts.get(&w.id(i)).map(|a| a.balance).unwrap_or_default();
            received += u128::from(b.received.get());
            spendable += u128::from(b.spendable.get());
            for e in v.valid_entries(w.id(i)) {
                if let Body::Receive(r) = &e.body {
                    let Body::Mint(m) = &v.entry(&r.mint).unwrap().body else {
                        unreachable!("a valid receive names a mint")
                    };
                    prop_assert_eq!(v.verdict(&r.mint), Some(&Verdict::Valid));
                    prop_assert!(received_mints.insert(r.mint, m.amount.get()).is_none(), "a mint received twice");
                }
            }
        }
        prop_assert_eq!(received, received_mints.values().map(|a| u128::from(*a)).sum::<u128>());
        prop_assert!(spendable <= received, "{spendable} spendable of {received} received");
    }
}
