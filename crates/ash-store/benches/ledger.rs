//! The ledger against the targets of issue 18 (docs/ledger-format.md, "Cost").
//!
//! Run with `cargo bench -p ash-store --bench ledger [-- --sizes 10000,100000 --db 1000000]`
//! (`--only-full`: stop after the full verifications, to profile them).
//! Builds a network of 100 identities doing jobs (reserve, receipt, accept, collect: four
//! entries a job, each with the author's signature and the receipt with the acceptor's
//! commitment), then prints:
//! - full verification (every signature, counter-signature and rule) at each size;
//! - a hostile bundle of 80,000 records (duplicates, bad signatures, orphans of throwaway keys,
//!   another network's entries, forks) against an honest one of the same size, verified and
//!   stored as `ash ledger import` does;
//! - the cost of a wrong signature against a valid one (all-valid, all-wrong, one wrong in 64);
//! - one new entry verified incrementally (p50/p99);
//! - live heap while verifying against the bundle's size (a counting allocator);
//! - on a ledger database of `--db` entries: what `ash status` reads (open + one account) and
//!   what a write command loads;
//! - verifying one counterparty from the latest checkpoints, at 10,000 and at `--db` entries.
//!
//! Entries are a minute apart (see [`STEP_MS`]): what a checkpoint carries grows with an
//! identity's activity within the claim window, not with the network's history.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ash_identity::{Identity, NodeId};
use ash_ledger::{
    Body, Bundle, Checkpoint, Collect, Credits, Decide, Entry, Genesis, Hash, JobId, LogWriter,
    Mint, MintKind, Outcome, Profile, Receipt, Receive, Reserve, Verifier, read_bundle,
    result_commitment, write_bundle,
};
use ash_store::LedgerDb;

/// Counts live heap bytes and their peak, to compare the verifier's memory with the bundle's.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code, reason = "a counting allocator that defers to the system allocator")]
// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const USERS: usize = 100;
const T0: u64 = 1_700_000_000_000;
const HOSTILE: usize = 80_000;
/// Time between entries: a network of 100 identities writing 1,440 entries a day, so that the
/// claim window (7 days) holds about 10,000 entries and a checkpoint's state (open
/// reservations, collects within the window) is as large at 10,000 entries as at 1,000,000.
const STEP_MS: u64 = 60_000;

/// A network of one authority and [`USERS`] users, growing by whole jobs.
struct Net {
    genesis: Genesis,
    /// Index 0 is the authority.
    people: Rc<Vec<Identity>>,
    last: Vec<Option<Entry>>,
    entries: Vec<Entry>,
    now: u64,
    jobs: u64,
}

impl Net {
    fn new() -> Self {
        let mut people = vec![Identity::insecure_from_label("bench-authority")];
        people.extend((0..USERS).map(|i| Identity::insecure_from_label(&format!("bench-user{i}"))));
        let genesis = Genesis::new("ash-bench", T0, [people[0].node_id()].into()).unwrap();
        let mut net = Self {
            genesis,
            last: vec![None; people.len()],
            people: Rc::new(people),
            entries: Vec::new(),
            now: T0,
            jobs: 0,
        };
        for who in 0..net.people.len() {
            let body = Body::Profile(Profile {
                username: if who == 0 { "authority".into() } else { format!("user{who}") },
                sealing_key: net.people[who].sealing_public(),
                created_at: T0,
            });
            net.append(who, body);
        }
        for who in 1..net.people.len() {
            let mint = net.append(
                0,
                Body::Mint(Mint {
                    recipient: net.people[who].node_id(),
                    amount: Credits::new(100),
                    kind: MintKind::Signup,
                    reason: "signup".into(),
                }),
            );
            net.append(who, Body::Receive(Receive { mint: mint.id() }));
        }
        net
    }

    fn network(&self) -> Hash {
        self.genesis.id()
    }

    fn id(&self, who: usize) -> NodeId {
        self.people[who].node_id()
    }

    fn append(&mut self, who: usize, body: Body) -> Entry {
        self.now += STEP_MS;
        let identity = &self.people[who];
        let mut writer = match &self.last[who] {
            Some(last) => LogWriter::resume(identity, last),
            None => LogWriter::new(identity, self.genesis.id()),
        };
        let entry = writer.append(self.now, body);
        self.last[who] = Some(entry.clone());
        self.entries.push(entry.clone());
        entry
    }

    /// One job between two users, round robin so that every balance stays near 100.
    fn job(&mut self) {
        let j = self.jobs;
        self.jobs += 1;
        let users = USERS as u64;
        let requester = (j % users) as usize + 1;
        let acceptor = ((j % users + 1 + (j / users) % (users - 1)) % users) as usize + 1;
        let mut job = [0u8; 16];
        job[8..].copy_from_slice(&j.to_be_bytes());
        let reserve = self.append(
            requester,
            Body::Reserve(Reserve {
                job: JobId(job),
                acceptor: self.id(acceptor),
                amount: Credits::new(10),
                deadline: self.now + 3_600_000,
                terms: Hash([1; 32]),
            }),
        );
        let result = Hash([2; 32]);
        let commitment =
            result_commitment(&self.people[acceptor], self.network(), reserve.id(), result);
        self.append(
            requester,
            Body::Receipt(Receipt { reserve: reserve.id(), result, commitment }),
        );
        let decide = self.append(
            requester,
            Body::Decide(Decide { reserve: reserve.id(), outcome: Outcome::Accept }),
        );
        self.append(acceptor, Body::Collect(Collect { source: decide.id() }));
    }

    fn grow_to(&mut self, entries: usize) {
        while self.entries.len() < entries {
            self.job();
        }
    }

    /// A verifier of everything so far, one microsecond… one millisecond after the last entry.
    fn verify(&self, entries: &[Entry]) -> Verifier {
        Verifier::verify_all(self.genesis.clone(), self.now + 1, entries.iter().cloned())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// The median of `runs` timings of `f` on a fresh copy of `entries` (the copy is not timed).
fn time_verify(net: &Net, entries: &[Entry], runs: usize) -> (Duration, Verifier) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let copy = entries.to_vec();
        let started = Instant::now();
        let v = Verifier::verify_all(net.genesis.clone(), net.now + 1, copy);
        times.push(started.elapsed());
        last = Some(v);
    }
    (median(times), last.unwrap())
}

fn clean(v: &Verifier) {
    let report = v.report();
    assert!(
        report.is_clean(),
        "the honest network must verify clean: {:?}",
        report.refused.first()
    );
}

struct Args {
    sizes: Vec<usize>,
    db: usize,
    /// Only the full verification (for profiling).
    only_full: bool,
}

fn args() -> Args {
    let mut args = Args { sizes: vec![10_000, 100_000], db: 1_000_000, only_full: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                args.sizes = it.next().unwrap().split(',').map(|s| s.parse().unwrap()).collect();
            }
            "--db" => args.db = it.next().unwrap().parse().unwrap(),
            "--only-full" => args.only_full = true,
            "--bench" => {}
            other => panic!("unknown argument {other}; see the header of benches/ledger.rs"),
        }
    }
    args
}

fn main() {
    let args = args();
    let mut net = Net::new();
    println!("ledger benchmark: {USERS} identities doing jobs, 4 entries a job");

    println!("\nfull verification (every signature, counter-signature and rule)");
    for &size in &args.sizes {
        net.grow_to(size);
        let entries = net.entries[..size].to_vec();
        let runs = if size <= 20_000 { 9 } else { 3 };
        let (time, v) = time_verify(&net, &entries, runs);
        clean(&v);
        let mut rules = Vec::new();
        for _ in 0..runs {
            let copy = entries.clone();
            let started = Instant::now();
            let mut v = Verifier::new(net.genesis.clone(), net.now + 1);
            v.insert_many_checked(copy);
            rules.push(started.elapsed());
        }
        println!(
            "  {size:>9} entries: {} (median of {runs}); without author signatures {}",
            ms(time),
            ms(median(rules))
        );
    }

    if args.only_full {
        return;
    }
    net.grow_to(HOSTILE.max(10_000));
    hostile(&net);
    signatures(&net);
    incremental(&net);
    memory(&net);
    database_and_checkpoints(&mut net, args.db);
}

/// An 80,000-record bundle in which most records are an attacker's, against an honest one.
fn hostile(net: &Net) {
    println!("\nhostile bundle of {HOSTILE} records against an honest one, verified and stored");
    let honest: Vec<Entry> = net.entries[..HOSTILE].to_vec();
    let share = HOSTILE / 8;
    let mut records: Vec<Entry> = net.entries[..share * 3].to_vec();
    // Byte-identical duplicates.
    records.extend(net.entries[..share].iter().cloned());
    // Copies of honest entries with a wrong signature (framing by unsigned bytes).
    records.extend(net.entries[share..2 * share].iter().map(|e| with_signature(e, 0x55)));
    // Orphans: logs of throwaway keys, validly signed, whose entry 0 never comes.
    let throwaway: Vec<Identity> =
        (0..100).map(|i| Identity::insecure_from_label(&format!("bench-attacker{i}"))).collect();
    for identity in &throwaway {
        let mut writer = LogWriter::new(identity, net.network());
        for n in 0..=share / throwaway.len() {
            let entry = writer.append(T0 + n as u64, profile(identity, "orphan"));
            if n > 0 {
                records.push(entry);
            }
        }
    }
    // Another network's entries, validly signed.
    let other = Genesis::new("other", T0, [net.id(0)].into()).unwrap();
    for n in 0..share {
        let identity = &throwaway[n % throwaway.len()];
        let mut writer = LogWriter::new(identity, other.id());
        records.push(writer.append(T0 + n as u64, profile(identity, "elsewhere")));
    }
    // Forks: throwaway identities sign two entries at position 0.
    for n in 0..share / 2 {
        let identity = Identity::insecure_from_label(&format!("bench-forker{n}"));
        for name in ["left", "right"] {
            records.push(
                LogWriter::new(&identity, net.network()).append(T0, profile(&identity, name)),
            );
        }
    }
    records.truncate(HOSTILE);
    assert_eq!(records.len(), HOSTILE);
    let bytes = |entries: &[Entry]| {
        let mut out = Vec::new();
        write_bundle(&mut out, net.network(), entries.iter(), &[]).unwrap();
        out
    };
    let (honest_bundle, hostile_bundle) = (bytes(&honest), bytes(&records));
    let mut results = Vec::new();
    for (name, bundle) in [("honest", &honest_bundle), ("hostile", &hostile_bundle)] {
        let mut verify = Vec::new();
        let mut import = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let started = Instant::now();
            let Bundle { entries, .. } = read_bundle(bundle.as_slice(), 1 << 20).unwrap();
            let mut v = Verifier::new(net.genesis.clone(), net.now + 1);
            v.insert_many(entries);
            verify.push(started.elapsed());
            let mut db = LedgerDb::open(&dir.path().join("ledger.db")).unwrap();
            db.save(&mut v, net.now).unwrap();
            import.push(started.elapsed());
            if name == "hostile" {
                let report = v.report();
                assert_eq!(report.equivocations.len(), share / 2);
            }
        }
        let (verify, import) = (median(verify), median(import));
        println!(
            "  {name:>7}: read + verify {}, + store {} ({} KiB)",
            ms(verify),
            ms(import),
            bundle.len() / 1024
        );
        results.push(import);
    }
    println!(
        "  hostile / honest: {:.2}× (target ≤ 1.5×)",
        results[1].as_secs_f64() / results[0].as_secs_f64()
    );
}

fn profile(identity: &Identity, name: &str) -> Body {
    Body::Profile(Profile {
        username: name.into(),
        sealing_key: identity.sealing_public(),
        created_at: T0,
    })
}

/// `entry` with its signature's bytes replaced: same signed part, same id.
fn with_signature(entry: &Entry, fill: u8) -> Entry {
    let mut bytes = entry.bytes().to_vec();
    let at = bytes.len() - 64;
    bytes[at..].fill(fill);
    Entry::decode(&bytes).unwrap()
}

/// Signature checks alone: all valid, all wrong, one wrong in every 64.
fn signatures(net: &Net) {
    println!("\nsignature checks of 10,000 entries (verify_all, rules included)");
    let valid: Vec<Entry> = net.entries[..10_000].to_vec();
    // Wrong signatures made by the right key over other bytes: as costly as a forger can make them.
    let wrong: Vec<Entry> = valid.iter().map(|e| resigned_wrong(net, e)).collect();
    let sparse: Vec<Entry> = valid
        .iter()
        .enumerate()
        .map(|(i, e)| if i % 64 == 7 { resigned_wrong(net, e) } else { e.clone() })
        .collect();
    let (t_valid, _) = time_verify(net, &valid, 5);
    let (t_wrong, v) = time_verify(net, &wrong, 5);
    assert_eq!(v.report().refused.len(), 10_000);
    let (t_sparse, _) = time_verify(net, &sparse, 5);
    let per = |t: Duration| us(t / 10_000);
    println!("  all valid: {} ({} an entry)", ms(t_valid), per(t_valid));
    println!(
        "  all wrong: {} ({} an entry, {:.2}× a valid one)",
        ms(t_wrong),
        per(t_wrong),
        t_wrong.as_secs_f64() / t_valid.as_secs_f64()
    );
    println!(
        "  one wrong in 64: {} ({:.2}× all valid)",
        ms(t_sparse),
        t_sparse.as_secs_f64() / t_valid.as_secs_f64()
    );
}

/// `entry` with a signature by its author's key over different bytes.
fn resigned_wrong(net: &Net, entry: &Entry) -> Entry {
    let who = net.people.iter().position(|p| p.node_id() == entry.author).unwrap();
    let signature = net.people[who].sign(ash_identity::Domain::LedgerEntry, b"other bytes");
    let mut bytes = entry.bytes().to_vec();
    let at = bytes.len() - 64;
    bytes[at..].copy_from_slice(&signature.0);
    Entry::decode(&bytes).unwrap()
}

/// One new entry onto a verifier holding the network.
fn incremental(net: &Net) {
    let mut longer = net.clone_state();
    for _ in 0..250 {
        longer.job();
    }
    let mut v = net.verify(&net.entries);
    v.set_now(longer.now + 1);
    let mut times = Vec::new();
    for entry in longer.entries {
        let started = Instant::now();
        let admission = v.insert(entry);
        times.push(started.elapsed());
        assert_eq!(admission, ash_ledger::Admission::Accepted(ash_ledger::Verdict::Valid));
    }
    times.sort();
    println!(
        "\none new entry onto {} verified entries: p50 {}, p99 {} (target ≤ 100 µs)",
        net.entries.len(),
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100])
    );
}

impl Net {
    fn clone_state(&self) -> Self {
        Self {
            genesis: self.genesis.clone(),
            people: Rc::clone(&self.people),
            last: self.last.clone(),
            entries: Vec::new(),
            now: self.now,
            jobs: self.jobs,
        }
    }
}

/// Live heap while verifying the 80,000-entry bundle, against its size.
fn memory(net: &Net) {
    let mut bundle = Vec::new();
    write_bundle(&mut bundle, net.network(), net.entries[..HOSTILE].iter(), &[]).unwrap();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let Bundle { entries, .. } = read_bundle(bundle.as_slice(), 1 << 20).unwrap();
    let decoded = LIVE.load(Ordering::Relaxed) - base;
    let mut v = Verifier::new(net.genesis.clone(), net.now + 1);
    v.insert_many(entries);
    let held = LIVE.load(Ordering::Relaxed) - base;
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let size = bundle.len();
    println!(
        "\nmemory for {HOSTILE} entries: bundle {:.1} MiB; decoded {:.1} MiB; verifier holds {:.1} MiB ({:.2}× the bundle), peak {:.1} MiB ({:.2}×)",
        mib(size),
        mib(decoded),
        mib(held),
        held as f64 / size as f64,
        mib(peak),
        peak as f64 / size as f64
    );
    drop(v);
}

/// The ledger database at `size` entries, and verifying a counterparty from checkpoints.
fn database_and_checkpoints(net: &mut Net, size: usize) {
    let mut small = Net::new();
    small.grow_to(10_000);
    let small = light_verification(&small);
    println!("\nledger database of {size} entries (building it takes a while)");
    net.grow_to(size);
    let started = Instant::now();
    let mut v = net.verify(&net.entries);
    let verified = started.elapsed();
    clean(&v);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let started = Instant::now();
    LedgerDb::open(&path).unwrap().save(&mut v, net.now).unwrap();
    println!("  full verification {}, stored in {}", ms(verified), ms(started.elapsed()));
    drop(v);
    let user = net.id(1);
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let db = LedgerDb::open(&path).unwrap();
        let account = db.account(user).unwrap().unwrap();
        times.push(started.elapsed());
        assert!(account.valid > 0);
    }
    println!("  `ash status` (open + one account): {} median (target ≤ 50 ms)", ms(median(times)));
    let started = Instant::now();
    let db = LedgerDb::open(&path).unwrap();
    let log = db.log(user).unwrap();
    println!("  `ash history` of one identity ({} entries): {}", log.len(), ms(started.elapsed()));
    let started = Instant::now();
    let loaded = db.load(net.genesis.clone(), net.now + 1).unwrap();
    println!(
        "  what a write command loads (every entry, rules, no signatures): {}",
        ms(started.elapsed())
    );
    drop(loaded);
    let big = light_verification(net);
    println!(
        "\none counterparty verified from the latest checkpoints: {} at {} network entries, {} at {}",
        ms(small.0),
        small.1,
        ms(big.0),
        big.1
    );
}

/// Checkpoints of everyone at `at` entries, then 100 more jobs; returns the time a peer takes to
/// verify user 1 from the checkpoints, the checkpointed heads and what came after.
fn light_verification(net: &Net) -> (Duration, usize) {
    let at = net.entries.len();
    let full = net.verify(&net.entries);
    let checkpoints: Vec<Checkpoint> = (0..net.people.len())
        .map(|who| {
            let mut c = full.checkpoint(net.id(who), net.now).unwrap();
            c.sign(&net.people[0]);
            c
        })
        .collect();
    let heads: Vec<Entry> =
        checkpoints.iter().map(|c| (**full.entry(&c.head).unwrap()).clone()).collect();
    drop(full);
    let mut later = net.clone_state();
    for _ in 0..100 {
        later.job();
    }
    let user = net.id(1);
    let mut times = Vec::new();
    let mut balance = None;
    for _ in 0..9 {
        let (checkpoints, heads, after) =
            (checkpoints.clone(), heads.clone(), later.entries.clone());
        let started = Instant::now();
        let mut light = Verifier::new(net.genesis.clone(), later.now + 1);
        for c in checkpoints {
            light.add_checkpoint(c).unwrap();
        }
        light.insert_many(heads);
        light.insert_many(after);
        let account = light.account(user);
        times.push(started.elapsed());
        let report = light.report();
        assert!(report.is_clean(), "{:?}", report.refused.first().or(None));
        balance = Some(account.balance);
    }
    // The light verifier agrees with a full one.
    let mut everything = net.entries.clone();
    everything.extend(later.entries.iter().cloned());
    let full = Verifier::verify_all(net.genesis.clone(), later.now + 1, everything);
    assert_eq!(Some(full.account(user).balance), balance);
    (median(times), at)
}
