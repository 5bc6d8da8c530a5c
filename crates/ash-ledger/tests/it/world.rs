//! A small network for tests: mint authorities, users who joined (profile, signup mint,
//! receive), and helpers for each step of a job. Entries are written whatever the rules say,
//! so tests can play hostile participants.

use std::collections::{BTreeMap, HashMap};

use ash_identity::{Identity, NodeId};
use ash_ledger::{
    Body, Collect, Credits, Decide, Entry, Genesis, Hash, JobId, LogWriter, Mint, MintKind,
    Outcome, Profile, Receipt, Receive, Release, Report, Reserve, Verdict, Verifier,
    cancel_signature, result_commitment,
};

pub(crate) const T0: u64 = 1_700_000_000_000;
pub(crate) const SIGNUP: u64 = 100;
/// A job's deadline, after its reservation.
pub(crate) const DEADLINE: u64 = 60_000;

/// Who writes: an authority (by index) or a user (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    Authority(usize),
    User(usize),
}
pub(crate) use Who::{Authority, User};

pub(crate) struct World {
    pub(crate) genesis: Genesis,
    pub(crate) authorities: Vec<Identity>,
    pub(crate) users: Vec<Identity>,
    pub(crate) entries: Vec<Entry>,
    last: HashMap<NodeId, Entry>,
    pub(crate) now: u64,
    jobs: u64,
}

/// The genesis of the tests: `n` authorities `authority`, `authority1`, ….
pub(crate) fn test_genesis(name: &str, authorities: &[Identity]) -> Genesis {
    Genesis::new(name, T0, authorities.iter().map(Identity::node_id).collect()).unwrap()
}

pub(crate) fn authority_identity(i: usize) -> Identity {
    Identity::insecure_from_label(&if i == 0 {
        "authority".to_owned()
    } else {
        format!("authority{i}")
    })
}

impl World {
    /// One authority and `n` users, each with a profile and a received signup mint.
    pub(crate) fn new(n: usize) -> Self {
        Self::with_authorities(1, n)
    }

    pub(crate) fn with_authorities(a: usize, n: usize) -> Self {
        let authorities: Vec<Identity> = (0..a).map(authority_identity).collect();
        let users = (0..n).map(|i| Identity::insecure_from_label(&format!("user{i}"))).collect();
        let genesis = test_genesis("ash-test", &authorities);
        let mut world = Self {
            genesis,
            authorities,
            users,
            entries: Vec::new(),
            last: HashMap::new(),
            now: T0,
            jobs: 0,
        };
        for i in 0..a {
            world.profile(
                Authority(i),
                if i == 0 { "authority".into() } else { format!("authority{i}") },
            );
        }
        for i in 0..n {
            world.profile(User(i), format!("user{i}"));
            world.signup(i);
        }
        world
    }

    pub(crate) fn identity(&self, who: Who) -> &Identity {
        match who {
            Authority(i) => &self.authorities[i],
            User(i) => &self.users[i],
        }
    }

    pub(crate) fn id(&self, i: usize) -> NodeId {
        self.users[i].node_id()
    }

    pub(crate) fn network(&self) -> Hash {
        self.genesis.id()
    }

    pub(crate) fn tick(&mut self) -> u64 {
        self.now += 1000;
        self.now
    }

    /// Appends `body` to `who`'s log at the next tick.
    pub(crate) fn append(&mut self, who: Who, body: Body) -> Entry {
        let time = self.tick();
        self.append_at(who, time, body)
    }

    pub(crate) fn append_at(&mut self, who: Who, time: u64, body: Body) -> Entry {
        let network = self.network();
        let identity = self.identity(who);
        let mut writer = match self.last.get(&identity.node_id()) {
            Some(last) => LogWriter::resume(identity, last),
            None => LogWriter::new(identity, network),
        };
        let entry = writer.append(time, body);
        self.record(entry)
    }

    /// Appends `body` to `who`'s log right after `after` (None: as entry 0), whatever the log
    /// holds already: a fork when that position is taken.
    pub(crate) fn append_after(&mut self, who: Who, after: Option<&Entry>, body: Body) -> Entry {
        let time = self.tick();
        let network = self.network();
        let identity = self.identity(who);
        let mut writer = match after {
            Some(last) => LogWriter::resume(identity, last),
            None => LogWriter::new(identity, network),
        };
        let entry = writer.append(time, body);
        self.record(entry)
    }

    fn record(&mut self, entry: Entry) -> Entry {
        self.last.insert(entry.author, entry.clone());
        self.entries.push(entry.clone());
        entry
    }

    /// The newest entry written to `who`'s log.
    pub(crate) fn last_of(&self, who: Who) -> Entry {
        self.last[&self.identity(who).node_id()].clone()
    }

    pub(crate) fn profile(&mut self, who: Who, name: String) -> Entry {
        let identity = self.identity(who);
        let body = Body::Profile(Profile {
            username: name,
            sealing_key: identity.sealing_public(),
            created_at: T0,
        });
        self.append(who, body)
    }

    pub(crate) fn mint_by(
        &mut self,
        authority: usize,
        recipient: NodeId,
        amount: u64,
        kind: MintKind,
    ) -> Entry {
        let body = Body::Mint(Mint {
            recipient,
            amount: Credits::new(amount),
            kind,
            reason: "test".into(),
        });
        self.append(Authority(authority), body)
    }

    pub(crate) fn receive(&mut self, user: usize, mint: &Entry) -> Entry {
        self.append(User(user), Body::Receive(Receive { mint: mint.id() }))
    }

    /// The first authority mints `user`'s signup, and `user` receives it.
    pub(crate) fn signup(&mut self, user: usize) {
        let mint = self.mint_by(0, self.id(user), SIGNUP, MintKind::Signup);
        self.receive(user, &mint);
    }

    pub(crate) fn job(&mut self) -> JobId {
        self.jobs += 1;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.jobs.to_be_bytes());
        JobId(id)
    }

    pub(crate) fn reserve_body(&mut self, acceptor: usize, amount: u64) -> Body {
        let job = self.job();
        Body::Reserve(Reserve {
            job,
            acceptor: self.id(acceptor),
            amount: Credits::new(amount),
            deadline: self.now + 1000 + DEADLINE,
            terms: Hash([3; 32]),
        })
    }

    /// `requester` reserves `amount` for `acceptor`, deadline a minute later.
    pub(crate) fn reserve(&mut self, requester: usize, acceptor: usize, amount: u64) -> Entry {
        let body = self.reserve_body(acceptor, amount);
        self.append(User(requester), body)
    }

    /// The body of a receipt of `reserve`'s result, committed by its acceptor.
    pub(crate) fn receipt_body(&self, reserve: &Entry) -> Body {
        let acceptor = self.acceptor_of(reserve);
        let result = Hash([7; 32]);
        let commitment =
            result_commitment(&self.users[acceptor], self.network(), reserve.id(), result);
        Body::Receipt(Receipt { reserve: reserve.id(), result, commitment })
    }

    /// The requester of `reserve` records the delivery.
    pub(crate) fn receipt(&mut self, reserve: &Entry) -> Entry {
        let body = self.receipt_body(reserve);
        let requester = self.user_index(reserve.author);
        self.append(User(requester), body)
    }

    pub(crate) fn decide(&mut self, reserve: &Entry, outcome: Outcome) -> Entry {
        let requester = self.user_index(reserve.author);
        self.append(User(requester), Body::Decide(Decide { reserve: reserve.id(), outcome }))
    }

    pub(crate) fn release_expired(&mut self, reserve: &Entry) -> Entry {
        let requester = self.user_index(reserve.author);
        self.append(User(requester), Body::Release(Release::expired(reserve.id())))
    }

    pub(crate) fn cancel_body(&self, reserve: &Entry) -> Body {
        let acceptor = self.acceptor_of(reserve);
        let signature = cancel_signature(&self.users[acceptor], self.network(), reserve.id());
        Body::Release(Release::cancelled(reserve.id(), signature))
    }

    pub(crate) fn cancel(&mut self, reserve: &Entry) -> Entry {
        let body = self.cancel_body(reserve);
        let requester = self.user_index(reserve.author);
        self.append(User(requester), body)
    }

    /// `acceptor` collects what `source` (a decide or a receipt) owes it.
    pub(crate) fn collect(&mut self, acceptor: usize, source: &Entry) -> Entry {
        self.append(User(acceptor), Body::Collect(Collect { source: source.id() }))
    }

    /// Moves the clock past `reserve`'s deadline.
    pub(crate) fn pass_deadline(&mut self, reserve: &Entry) {
        let Body::Reserve(r) = &reserve.body else { panic!("not a reserve") };
        self.now = self.now.max(r.deadline);
    }

    pub(crate) fn acceptor_of(&self, reserve: &Entry) -> usize {
        let Body::Reserve(r) = &reserve.body else { panic!("not a reserve") };
        self.user_index(r.acceptor)
    }

    pub(crate) fn user_index(&self, id: NodeId) -> usize {
        self.users.iter().position(|u| u.node_id() == id).unwrap()
    }

    /// A whole job: reserve, receipt, decision, collect.
    pub(crate) fn job_done(
        &mut self,
        requester: usize,
        acceptor: usize,
        amount: u64,
        outcome: Outcome,
    ) {
        let reserve = self.reserve(requester, acceptor, amount);
        self.receipt(&reserve);
        let decide = self.decide(&reserve, outcome);
        self.collect(acceptor, &decide);
    }

    pub(crate) fn verifier(&self) -> Verifier {
        self.verifier_of(self.entries.clone())
    }

    pub(crate) fn verifier_of(&self, entries: Vec<Entry>) -> Verifier {
        Verifier::verify_all(self.genesis.clone(), self.now + 1, entries)
    }

    pub(crate) fn verify(&self) -> Report {
        self.verifier().report()
    }
}

/// Every user's spendable balance, in order.
pub(crate) fn spendable(world: &World, report: &Report) -> Vec<u64> {
    (0..world.users.len())
        .map(|i| report.accounts.get(&world.id(i)).map_or(0, |a| a.balance.spendable.get()))
        .collect()
}

/// (author's username, seq, kind, rule) of every refusal, for whole-value assertions.
pub(crate) fn refusals(
    world: &World,
    report: &Report,
) -> Vec<(String, u64, &'static str, &'static str)> {
    let mut out: Vec<_> = report
        .refused
        .iter()
        .map(|r| (name_of(world, r.author), r.seq, r.kind, r.rule.name()))
        .collect();
    out.sort();
    out
}

/// One expected refusal, as [`refusals`] lists them.
pub(crate) fn refused(
    author: &str,
    seq: u64,
    kind: &'static str,
    rule: &'static str,
) -> (String, u64, &'static str, &'static str) {
    (author.to_owned(), seq, kind, rule)
}

pub(crate) fn name_of(world: &World, id: NodeId) -> String {
    if let Some(i) = world.users.iter().position(|u| u.node_id() == id) {
        return format!("user{i}");
    }
    if let Some(i) = world.authorities.iter().position(|u| u.node_id() == id) {
        return format!("authority{i}");
    }
    id.short()
}

/// Every entry's verdict by id: the whole outcome of a verification, for comparisons.
pub(crate) fn verdicts(verifier: &Verifier, entries: &[Entry]) -> BTreeMap<Hash, Option<Verdict>> {
    entries.iter().map(|e| (e.id(), verifier.verdict(&e.id()).cloned())).collect()
}
