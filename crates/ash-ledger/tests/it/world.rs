//! A small network for tests: one mint authority, users with signup mints, helpers for jobs.

use std::collections::{BTreeSet, HashMap};

use ash_identity::{Identity, NodeId, Signature};
use ash_ledger::{
    Body, Credits, Entry, Hash, JobId, LogWriter, Mint, MintKind, Outcome, Profile, Report,
    Reserve, Rules, Settle, Settlement, Verifier, result_commitment,
};

pub(crate) const T0: u64 = 1_700_000_000_000;
pub(crate) const SIGNUP: u64 = 100;

pub(crate) struct World {
    pub(crate) authority: Identity,
    pub(crate) users: Vec<Identity>,
    pub(crate) entries: Vec<Entry>,
    last: HashMap<NodeId, Entry>,
    pub(crate) now: u64,
    jobs: u64,
}

impl World {
    /// An authority and `n` users, each with a profile and a signup mint.
    pub(crate) fn new(n: usize) -> Self {
        let authority = Identity::insecure_from_label("authority");
        let users = (0..n).map(|i| Identity::insecure_from_label(&format!("user{i}"))).collect();
        let mut world =
            Self { authority, users, entries: Vec::new(), last: HashMap::new(), now: T0, jobs: 0 };
        world.profile(None, "authority");
        for i in 0..n {
            world.profile(Some(i), &format!("user{i}"));
            let recipient = world.id(i);
            world.mint(recipient, SIGNUP, MintKind::Signup);
        }
        world
    }

    pub(crate) fn id(&self, i: usize) -> NodeId {
        self.users[i].node_id()
    }

    pub(crate) fn rules(&self) -> Rules {
        Rules::new(BTreeSet::from([self.authority.node_id()]), self.now + 1)
    }

    pub(crate) fn tick(&mut self) -> u64 {
        self.now += 1000;
        self.now
    }

    /// Appends to `who`'s log (None = the authority) at the current time.
    pub(crate) fn append(
        &mut self,
        who: Option<usize>,
        body: Body,
        cosignature: Option<Signature>,
    ) -> Entry {
        let time = self.tick();
        self.append_at(who, time, body, cosignature)
    }

    pub(crate) fn append_at(
        &mut self,
        who: Option<usize>,
        time: u64,
        body: Body,
        cosignature: Option<Signature>,
    ) -> Entry {
        let identity = who.map_or(&self.authority, |i| &self.users[i]);
        let mut writer = match self.last.get(&identity.node_id()) {
            Some(last) => LogWriter::resume(identity, last),
            None => LogWriter::new(identity),
        };
        let entry = writer.append(time, body, cosignature);
        self.last.insert(entry.author, entry.clone());
        self.entries.push(entry.clone());
        entry
    }

    fn profile(&mut self, who: Option<usize>, name: &str) {
        let identity = who.map_or(&self.authority, |i| &self.users[i]);
        let body = Body::Profile(Profile {
            username: name.into(),
            sealing_key: identity.sealing_public(),
            created_at: self.now,
        });
        self.append(who, body, None);
    }

    pub(crate) fn mint(&mut self, recipient: NodeId, amount: u64, kind: MintKind) -> Entry {
        let body = Body::Mint(Mint {
            recipient,
            amount: Credits::new(amount),
            kind,
            reason: "test".into(),
        });
        self.append(None, body, None)
    }

    pub(crate) fn job(&mut self) -> JobId {
        self.jobs += 1;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.jobs.to_be_bytes());
        JobId(id)
    }

    /// `requester` reserves `amount` for `acceptor`, deadline one minute later.
    pub(crate) fn reserve(&mut self, requester: usize, acceptor: usize, amount: u64) -> Entry {
        let job = self.job();
        let body = Body::Reserve(Reserve {
            job,
            acceptor: self.id(acceptor),
            amount: Credits::new(amount),
            deadline: self.now + 60_000,
        });
        self.append(Some(requester), body, None)
    }

    /// The settlement of `reserve` with this outcome and amount.
    pub(crate) fn settlement(&self, reserve: &Entry, outcome: Outcome, amount: u64) -> Settlement {
        let Body::Reserve(r) = &reserve.body else { panic!("not a reserve") };
        Settlement {
            job: r.job,
            requester: reserve.author,
            acceptor: r.acceptor,
            reserve_seq: reserve.seq,
            reserve_hash: reserve.hash(),
            result_hash: Hash([7; 32]),
            outcome,
            amount: Credits::new(amount),
        }
    }

    pub(crate) fn user_index(&self, id: NodeId) -> usize {
        self.users.iter().position(|u| u.node_id() == id).unwrap()
    }

    /// Appends a settle of `settlement` to `author`'s log, counter-signed by the other party
    /// unless it is a timeout.
    pub(crate) fn settle(
        &mut self,
        author: usize,
        reserve: &Entry,
        settlement: Settlement,
    ) -> Entry {
        let acceptor = self.user_index(settlement.acceptor);
        let requester = self.user_index(settlement.requester);
        let commitment = (settlement.outcome == Outcome::Timeout)
            .then(|| result_commitment(&self.users[acceptor], &settlement));
        let other = if author == acceptor { requester } else { acceptor };
        let cosig =
            (settlement.outcome != Outcome::Timeout).then(|| settlement.cosign(&self.users[other]));
        let body =
            Body::Settle(Box::new(Settle { settlement, commitment, reserve: reserve.clone() }));
        self.append(Some(author), body, cosig)
    }

    /// A complete job: reserve, then both parties record the settlement.
    pub(crate) fn job_done(
        &mut self,
        requester: usize,
        acceptor: usize,
        reserved: u64,
        outcome: Outcome,
        paid: u64,
    ) {
        let reserve = self.reserve(requester, acceptor, reserved);
        let settlement = self.settlement(&reserve, outcome, paid);
        self.settle(acceptor, &reserve, settlement.clone());
        self.settle(requester, &reserve, settlement);
    }

    pub(crate) fn verify(&self) -> Report {
        Verifier::verify_all(self.rules(), self.entries.clone()).1
    }

    pub(crate) fn verify_entries(&self, entries: Vec<Entry>) -> Report {
        Verifier::verify_all(self.rules(), entries).1
    }
}

/// Every user's available balance, in order.
pub(crate) fn balances(world: &World, report: &Report) -> Vec<i64> {
    (0..world.users.len()).map(|i| report.accounts[&world.id(i)].balance.available).collect()
}

/// (seq, kind, rule) of every rejection, for whole-value assertions.
pub(crate) fn rejections(report: &Report) -> Vec<(u64, &'static str, String)> {
    report.rejected.iter().map(|r| (r.seq, r.kind, r.rule.name().to_owned())).collect()
}
