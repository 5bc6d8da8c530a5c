//! Ledger verification benchmark: `cargo bench -p ash-ledger --bench verify [-- SIZES]`.
//!
//! Builds a network of 100 identities doing jobs (reserve, then settle recorded by both parties),
//! then times a full verification of 10,000 and 1,000,000 entries (batch signature checks on all
//! cores) and the incremental verification of one new entry on top of the verified state.

#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "a benchmark prints its figures")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ash_identity::Identity;
use ash_ledger::{
    Body, Credits, Entry, JobId, LogWriter, Mint, MintKind, Outcome, Profile, Reserve, Rules,
    Settle, Settlement, Verifier,
};

const USERS: usize = 100;
const T0: u64 = 1_700_000_000_000;

struct Net {
    authority: Identity,
    users: Vec<Identity>,
    last: Vec<Option<Entry>>,
    authority_last: Option<Entry>,
    entries: Vec<Entry>,
    time: u64,
    jobs: u64,
}

impl Net {
    fn new() -> Self {
        let authority = Identity::insecure_from_label("bench-authority");
        let users: Vec<Identity> =
            (0..USERS).map(|i| Identity::insecure_from_label(&format!("bench{i}"))).collect();
        let mut net = Self {
            authority,
            users,
            last: vec![None; USERS],
            authority_last: None,
            entries: Vec::new(),
            time: T0,
            jobs: 0,
        };
        net.authority_append(Body::Profile(Profile {
            username: "authority".into(),
            sealing_key: net.authority.sealing_public(),
            created_at: T0,
        }));
        for i in 0..USERS {
            let key = net.users[i].sealing_public();
            net.append(
                i,
                Body::Profile(Profile {
                    username: format!("user{i}"),
                    sealing_key: key,
                    created_at: T0,
                }),
                None,
            );
            let recipient = net.users[i].node_id();
            net.authority_append(Body::Mint(Mint {
                recipient,
                amount: Credits::new(1_000_000),
                kind: MintKind::Signup,
                reason: "signup".into(),
            }));
        }
        net
    }

    fn authority_append(&mut self, body: Body) {
        self.time += 1;
        let mut writer = match &self.authority_last {
            Some(last) => LogWriter::resume(&self.authority, last),
            None => LogWriter::new(&self.authority),
        };
        let entry = writer.append(self.time, body, None);
        self.authority_last = Some(entry.clone());
        self.entries.push(entry);
    }

    fn append(&mut self, who: usize, body: Body, cosig: Option<ash_identity::Signature>) -> Entry {
        self.time += 1;
        let mut writer = match &self.last[who] {
            Some(last) => LogWriter::resume(&self.users[who], last),
            None => LogWriter::new(&self.users[who]),
        };
        let entry = writer.append(self.time, body, cosig);
        self.last[who] = Some(entry.clone());
        entry
    }

    fn reserve(&mut self, requester: usize, acceptor: usize) -> Entry {
        self.jobs += 1;
        let mut job = [0u8; 16];
        job[8..].copy_from_slice(&self.jobs.to_be_bytes());
        let acceptor = self.users[acceptor].node_id();
        let body = Body::Reserve(Reserve {
            job: JobId(job),
            acceptor,
            amount: Credits::new(6),
            deadline: self.time + 3_600_000,
        });
        self.append(requester, body, None)
    }

    /// One job: three entries.
    fn job(&mut self, requester: usize, acceptor: usize) {
        let reserve = self.reserve(requester, acceptor);
        let Body::Reserve(r) = &reserve.body else { unreachable!() };
        let settlement = Settlement {
            job: r.job,
            requester: reserve.author,
            acceptor: r.acceptor,
            reserve_seq: reserve.seq,
            reserve_hash: reserve.hash(),
            result_hash: ash_ledger::Hash([9; 32]),
            outcome: Outcome::Accept,
            amount: Credits::new(6),
        };
        let commitment = None;
        let by_requester = settlement.cosign(&self.users[requester]);
        let by_acceptor = settlement.cosign(&self.users[acceptor]);
        let settle = Settle { settlement, commitment, reserve: reserve.clone() };
        let a = self.append(acceptor, Body::Settle(Box::new(settle.clone())), Some(by_requester));
        let b = self.append(requester, Body::Settle(Box::new(settle)), Some(by_acceptor));
        self.entries.extend([reserve, a, b]);
    }

    fn grow_to(&mut self, size: usize) {
        let mut k = self.jobs as usize;
        while self.entries.len() + 3 <= size {
            let requester = k % USERS;
            let acceptor = (k * 7 + 1) % USERS;
            let acceptor = if acceptor == requester { (acceptor + 1) % USERS } else { acceptor };
            self.job(requester, acceptor);
            k += 1;
        }
    }

    fn rules(&self) -> Rules {
        Rules::new(BTreeSet::from([self.authority.node_id()]), self.time + 1)
    }
}

fn main() {
    let sizes: Vec<usize> =
        std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect::<Vec<_>>();
    let sizes = if sizes.is_empty() { vec![10_000, 100_000, 1_000_000] } else { sizes };
    let mut net = Net::new();
    // Profiles are appended lazily in `append`; put them in the entry list once.
    let profiles: Vec<Entry> = net.last.iter().flatten().cloned().collect();
    net.entries.extend(profiles);
    println!(
        "ledger verification ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for size in sizes {
        let built = Instant::now();
        net.grow_to(size);
        let build_time = built.elapsed();
        let entries = net.entries.clone();
        let mut best = Duration::MAX;
        let runs = if size > 200_000 { 1 } else { 5 };
        let mut verifier = None;
        for _ in 0..runs {
            let input = entries.clone();
            let start = Instant::now();
            let (v, report) = Verifier::verify_all(net.rules(), input);
            best = best.min(start.elapsed());
            assert!(
                report.is_clean() && report.pending.is_empty(),
                "{:?}",
                &report.rejected[..report.rejected.len().min(3)]
            );
            verifier = Some(v);
        }
        println!(
            "  {:>9} entries: full verify {:>8.1} ms ({:.2} µs/entry; built in {:.1} s)",
            entries.len(),
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e6 / entries.len() as f64,
            build_time.as_secs_f64()
        );
        // Incremental: new reserve entries appended one at a time to the verified state.
        let mut verifier = verifier.unwrap();
        let news: Vec<Entry> = (0..1000).map(|k| net.reserve(k % USERS, (k + 1) % USERS)).collect();
        let start = Instant::now();
        for entry in &news {
            assert!(verifier.append(entry.clone()).unwrap());
        }
        let per = start.elapsed() / news.len() as u32;
        println!(
            "  {:>9} entries: one new entry verified in {:.1} µs",
            entries.len(),
            per.as_secs_f64() * 1e6
        );
        net.entries.extend(news);
    }
}
