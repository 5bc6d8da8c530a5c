//! Property tests: random honest histories verify and conserve credits; any tampering with a
//! valid history is rejected, left pending or proven as equivocation.

use ash_ledger::{Body, Entry, Outcome, Release, ReleaseReason, Report};
use proptest::prelude::*;

use crate::world::{SIGNUP, World};

#[derive(Clone, Debug)]
enum Op {
    Job { requester: usize, acceptor: usize, amount: u64, outcome: u8 },
    Expire { requester: usize, acceptor: usize, amount: u64 },
}

fn ops() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..5).prop_flat_map(|n| {
        let op = prop_oneof![
            (0..n, 0..n, 1u64..80, 0u8..3).prop_map(|(requester, acceptor, amount, outcome)| {
                Op::Job { requester, acceptor, amount, outcome }
            }),
            (0..n, 0..n, 1u64..40).prop_map(|(requester, acceptor, amount)| Op::Expire {
                requester,
                acceptor,
                amount
            }),
        ];
        (Just(n), prop::collection::vec(op, 1..25))
    })
}

/// Plays `ops` honestly (amounts capped to what the requester's own log can fund) and returns
/// the world with the expected available balance of each user.
fn play(n: usize, ops: &[Op]) -> (World, Vec<i64>) {
    let mut w = World::new(n);
    // own-view funds (what each requester's log can prove) and true balances
    let mut own = vec![SIGNUP as i64; n];
    let mut real = vec![SIGNUP as i64; n];
    for op in ops {
        let (Op::Job { requester, acceptor, .. } | Op::Expire { requester, acceptor, .. }) = *op;
        if requester >= n || acceptor >= n {
            continue;
        }
        match *op {
            Op::Job { requester, acceptor, amount, outcome } if requester != acceptor => {
                let amount = amount.min(u64::try_from(own[requester]).unwrap_or(0));
                if amount == 0 {
                    continue;
                }
                let reserve = w.reserve(requester, acceptor, amount);
                let (outcome, paid) = match outcome {
                    0 => (Outcome::Accept, amount),
                    1 => (Outcome::Reject, amount / 2),
                    _ => (Outcome::Timeout, amount / 2),
                };
                if outcome == Outcome::Timeout {
                    w.now += 61_000;
                }
                let settlement = w.settlement(&reserve, outcome, paid);
                w.settle(acceptor, &reserve, settlement.clone());
                own[acceptor] += paid as i64;
                real[acceptor] += paid as i64;
                real[requester] -= paid as i64;
                if outcome == Outcome::Timeout {
                    // Only the acceptor records a timeout: the requester's own view keeps the
                    // whole reservation as spent.
                    own[requester] -= amount as i64;
                } else {
                    w.settle(requester, &reserve, settlement);
                    own[requester] -= paid as i64;
                }
            }
            Op::Expire { requester, acceptor, amount } if requester != acceptor => {
                let amount = amount.min(u64::try_from(own[requester]).unwrap_or(0));
                if amount == 0 {
                    continue;
                }
                let reserve = w.reserve(requester, acceptor, amount);
                w.now += 61_000;
                let Body::Reserve(r) = &reserve.body else { unreachable!() };
                let release = Release {
                    job: r.job,
                    reserve_seq: reserve.seq,
                    reserve_hash: reserve.hash(),
                    reason: ReleaseReason::Expired,
                };
                w.append(Some(requester), Body::Release(release), None);
            }
            _ => {}
        }
    }
    (w, real)
}

fn flagged(report: &Report) -> bool {
    !report.is_clean() || !report.pending.is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn honest_histories_verify_and_conserve((n, ops) in ops()) {
        let (w, expected) = play(n, &ops);
        let report = w.verify();
        prop_assert!(report.is_clean() && report.pending.is_empty(), "{:?} {:?}", report.rejected, report.pending);
        let got: Vec<i64> = (0..n).map(|i| report.accounts[&w.id(i)].balance.available).collect();
        prop_assert_eq!(&got, &expected);
        let reserved: u64 = report.accounts.values().map(|a| a.balance.reserved.get()).sum();
        prop_assert_eq!(got.iter().sum::<i64>() + reserved as i64, (n as u64 * SIGNUP) as i64);
    }

    #[test]
    fn any_bit_flip_is_caught((n, ops) in ops(), pick in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>()) {
        let (w, _) = play(n, &ops);
        let mut entries = w.entries.clone();
        let i = pick.index(entries.len());
        let mut bytes = entries[i].bytes().to_vec();
        let b = bit.index(bytes.len() * 8);
        bytes[b / 8] ^= 1 << (b % 8);
        match Entry::decode(&bytes) {
            Err(_) => {}
            Ok(tampered) => {
                entries[i] = tampered;
                prop_assert!(flagged(&w.verify_entries(entries)));
            }
        }
    }

    #[test]
    fn dropping_an_entry_is_caught_unless_it_is_an_unreferenced_tail((n, ops) in ops(), pick in any::<prop::sample::Index>()) {
        let (w, _) = play(n, &ops);
        let mut entries = w.entries.clone();
        let dropped = entries.remove(pick.index(entries.len()));
        let report = w.verify_entries(entries.clone());
        let is_tail = !entries.iter().any(|e| e.author == dropped.author && e.seq > dropped.seq);
        let referenced = entries.iter().any(|e| matches!(&e.body, Body::Settle(s) if s.reserve.hash() == dropped.hash()));
        if !is_tail || referenced {
            prop_assert!(flagged(&report));
        }
    }

    #[test]
    fn order_and_duplicates_in_a_bundle_do_not_matter((n, ops) in ops(), seed in any::<u64>()) {
        let (w, _) = play(n, &ops);
        let mut entries = w.entries.clone();
        // A deterministic shuffle plus duplicates of every third entry.
        let mut state = seed | 1;
        for i in (1..entries.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            entries.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let dups: Vec<Entry> = entries.iter().step_by(3).cloned().collect();
        entries.extend(dups);
        let a = w.verify();
        let b = w.verify_entries(entries);
        prop_assert!(b.is_clean());
        prop_assert_eq!(a.accounts, b.accounts);
    }

    #[test]
    fn splicing_two_histories_is_caught((n, ops) in ops(), (_, other_ops) in ops()) {
        // Two worlds with the same users diverge after the signups; a bundle mixing them holds
        // two different entries at one position of some log, or breaks a chain.
        let (a, _) = play(n, &ops);
        let (b, _) = play(n, &other_ops);
        let mut entries = a.entries.clone();
        let before = entries.len();
        entries.extend(b.entries.iter().cloned());
        let report = a.verify_entries(entries);
        let diverged = b.entries.iter().any(|e| !a.entries.iter().any(|x| x.hash() == e.hash()));
        let overlapping = b.entries.iter().any(|e| a.entries.iter().any(|x| x.author == e.author && x.seq == e.seq && x.hash() != e.hash()));
        if diverged && overlapping {
            prop_assert!(!report.equivocations.is_empty(), "{} entries", before);
        }
    }
}
