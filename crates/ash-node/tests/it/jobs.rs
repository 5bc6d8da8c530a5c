//! Jobs between an honest node and a hostile peer speaking the wire protocol by hand: a hostile
//! acceptor's results are refused and never receipted; a hostile requester's assignments are
//! refused before any work. Real nodes, real ledgers, real git, a real (scripted) agent.

use std::collections::BTreeSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ash_identity::{Identity, NodeId};
use ash_ledger::{
    Body, Credits, Entry, Genesis, Hash, LogWriter, Mint, MintKind, Profile, Release, Reserve,
};
use ash_net::{Net, NetEvent, NetHandle};
use ash_node::{
    AgentEnd, AgentWork, JobAgent, JobError, JobSpec, Ledger, ModelProvider, Node, NodeConfig,
    NodeEvent, Requested, RoutedAnswer, RoutedCall, Routing, ServeConfig,
};
use ash_pack::{JobId, Recipient};
use ash_protocol::{
    Gossip, JobAnnounce, JobAssign, JobEnd, JobManifest, JobSummary, JobTerms, PeerInfo,
    PeerRequest, PeerResponse,
};
use sha2::{Digest as _, Sha256};

use super::host_git::HostGit;
use super::{T, WAIT, net_config};

/// An identity whose copy a node can be given (identities are not Clone).
struct Who {
    seed: u8,
}

impl Who {
    fn key(&self) -> Identity {
        Identity::from_secrets(&[self.seed; 32], &[self.seed.wrapping_add(100); 32]).unwrap()
    }
    fn id(&self) -> NodeId {
        self.key().node_id()
    }
}

const AUTHORITY: Who = Who { seed: 1 };
const REQUESTER: Who = Who { seed: 2 };
const ACCEPTOR: Who = Who { seed: 3 };
/// A third peer with credits: it floods, and tries to take another's job id.
const OTHER: Who = Who { seed: 4 };

fn genesis() -> Genesis {
    Genesis::new("jobnet", T, BTreeSet::from([AUTHORITY.id()])).unwrap()
}

/// Every party's profile, and mints of `credits` for the requester and the acceptor: the
/// entries each ledger starts with. Returns the requester's writer (after its profile).
fn seed(genesis: &Genesis, credits: u64) -> Vec<Entry> {
    let mut entries = Vec::new();
    let (authority, requester, acceptor, other) =
        (AUTHORITY.key(), REQUESTER.key(), ACCEPTOR.key(), OTHER.key());
    let mut writers: Vec<LogWriter<'_>> = Vec::new();
    for (who, name) in [
        (&authority, "authority"),
        (&requester, "requester"),
        (&acceptor, "acceptor"),
        (&other, "other"),
    ] {
        let mut writer = LogWriter::new(who, genesis.id());
        entries.push(writer.append(
            T,
            Body::Profile(Profile {
                username: name.into(),
                sealing_key: who.sealing_public(),
                created_at: T,
            }),
        ));
        writers.push(writer);
    }
    for (n, recipient) in [(1, REQUESTER.id()), (2, ACCEPTOR.id()), (3, OTHER.id())] {
        let mint = writers[0].append(
            T + 1,
            Body::Mint(Mint {
                recipient,
                amount: Credits::new(credits),
                kind: MintKind::Grant,
                reason: "test".into(),
            }),
        );
        let receive =
            writers[n].append(T + 2, Body::Receive(ash_ledger::Receive { mint: mint.id() }));
        entries.extend([mint, receive]);
    }
    entries
}

fn ledger_with(path: &Path, genesis: &Genesis, entries: Vec<Entry>) {
    let mut ledger = Ledger::open(path, genesis.clone()).unwrap();
    ledger.insert(entries).unwrap();
}

/// An agent that appends a line to `notes.md`, and counts its runs.
struct Scribe {
    runs: Arc<AtomicUsize>,
}

impl JobAgent for Scribe {
    fn kind(&self) -> &str {
        "builtin"
    }
    fn model(&self, _tier: &str) -> Option<String> {
        Some("test/scribe".into())
    }
    fn routable(&self, _api: &str) -> bool {
        true
    }
    fn sandbox(&self) -> &str {
        "none"
    }
    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            std::fs::write(work.workspace.join("notes.md"), format!("{}\n", work.prompt))
                .map_err(|e| e.to_string())?;
            let manifest = JobManifest { models: vec![work.model], ..JobManifest::default() };
            Ok(AgentEnd { summary: "wrote notes.md".into(), manifest })
        })
    }
}

fn start_node(who: &Who, genesis: &Genesis, dir: &Path, serve: Option<ServeConfig>) -> Node {
    let config = NodeConfig {
        net: net_config(genesis, Vec::new()),
        ledger: dir.join("ledger.db"),
        genesis: genesis.clone(),
        info: PeerInfo::default(),
        authority: None,
        signup: None,
        writer: true,
        jobs_dir: dir.join("jobs"),
        serve,
    };
    Node::start(Arc::new(who.key()), config).unwrap()
}

async fn address(node: &mut Node) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(NodeEvent::Listening { address }) = node.next_event().await {
                return address;
            }
        }
    })
    .await
    .unwrap()
}

/// A raw network peer with `who`'s identity, dialled to `address`; its handle and events.
async fn hostile(
    who: &Who,
    genesis: &Genesis,
    address: &str,
) -> (NetHandle, tokio::sync::mpsc::Receiver<NetEvent>, ash_net::NetTask) {
    let (net, mut events, task) =
        Net::start(&who.key(), net_config(genesis, vec![address.into()])).unwrap().split();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if matches!(event, NetEvent::PeerConnected { .. }) {
                return;
            }
        }
    })
    .await
    .unwrap();
    (net, events, task)
}

fn repository(dir: &Path) -> ash_pack::Walk {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("README.md"), "# repo\nTODO\n").unwrap();
    ash_pack::walk(dir, &ash_pack::WalkOptions::default()).unwrap()
}

fn spec(walk: ash_pack::Walk, prompt: &str) -> JobSpec {
    JobSpec {
        prompt: prompt.into(),
        title: None,
        tier: "sonnet".into(),
        agents: vec!["builtin".into()],
        max_price: None,
        walk,
        pack: ash_pack::PackOptions::default(),
        offer_time: Duration::from_secs(10),
        choose_after: Duration::ZERO,
        run_time: Duration::from_secs(60),
        repo: None,
        routed: None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    ash_identity::encode_hex(&Sha256::digest(bytes))
}

/// What the hostile acceptor does once assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trick {
    /// Commits to another result than the one it serves.
    Tampered,
    /// Signs the commitment over another reservation.
    OtherReservation,
    /// Seals a diff that writes into `.git/`.
    Unscreened,
    /// Seals the result for another job.
    OtherJob,
    /// An honest result whose manifest names another model than the one offered.
    OtherModel,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_acceptors_results_are_refused_and_never_receipted() {
    let genesis = genesis();
    let root = tempfile::tempdir().unwrap();
    let r_dir = root.path().join("requester");
    std::fs::create_dir_all(&r_dir).unwrap();
    ledger_with(&r_dir.join("ledger.db"), &genesis, seed(&genesis, 100));
    let mut requester = start_node(&REQUESTER, &genesis, &r_dir, None);
    let r_address = address(&mut requester).await;
    let (mallory, mut events, _task) = hostile(&ACCEPTOR, &genesis, &r_address).await;
    let trick = Arc::new(Mutex::new(Trick::Tampered));
    // The hostile acceptor: offers on every announcement, takes every assignment, then ends
    // the job with a result built to deceive.
    let served: Arc<Mutex<Vec<u8>>> = Arc::default();
    {
        let (trick, served, mallory, network) =
            (Arc::clone(&trick), Arc::clone(&served), mallory.clone(), genesis.id());
        tokio::spawn(async move {
            let me = ACCEPTOR.key();
            while let Some(event) = events.recv().await {
                match event {
                    NetEvent::Gossip { from, message: Gossip::JobAnnounce(a), .. } => {
                        let offer = ash_protocol::JobOffer {
                            job: a.job,
                            agent: "builtin".into(),
                            model: "test/none".into(),
                            sandbox: "none".into(),
                        };
                        let net = mallory.clone();
                        tokio::spawn(async move {
                            let _ = net.request(from, PeerRequest::JobOffer(offer)).await;
                        });
                    }
                    NetEvent::Request {
                        from,
                        request: PeerRequest::JobAssign(assign),
                        responder,
                    } => {
                        let _ = responder.respond(PeerResponse::JobAccepted).await;
                        let reserve = Entry::decode(&assign.reserve).unwrap().id();
                        let job: JobId = assign.job.parse().unwrap();
                        let trick = *trick.lock().unwrap();
                        let patch: &[u8] = if trick == Trick::Unscreened {
                            b"diff --git a/.git/config b/.git/config\nnew file mode 100644\n--- /dev/null\n+++ b/.git/config\n@@ -0,0 +1 @@\n+[core]\n"
                        } else {
                            b"diff --git a/notes.md b/notes.md\nnew file mode 100644\n--- /dev/null\n+++ b/notes.md\n@@ -0,0 +1 @@\n+hello\n"
                        };
                        let sealed_for =
                            if trick == Trick::OtherJob { JobId([9; 16]) } else { job };
                        let to = Recipient { node: from, key: REQUESTER.key().sealing_public() };
                        let model =
                            if trick == Trick::OtherModel { "gpt-other" } else { "test/none" };
                        let manifest = JobManifest {
                            agent: "builtin".into(),
                            models: vec![model.into()],
                            ..JobManifest::default()
                        };
                        let manifest = serde_json::to_vec(&manifest).unwrap();
                        let sealed =
                            ash_pack::seal_result(&manifest, patch, &me, &to, sealed_for).unwrap();
                        let hash = sha256_hex(&sealed);
                        let committed = match trick {
                            Trick::Tampered => Hash([7; 32]),
                            _ => Hash(ash_identity::decode_hex::<32>(&hash).unwrap()),
                        };
                        let over =
                            if trick == Trick::OtherReservation { Hash([8; 32]) } else { reserve };
                        let commitment =
                            ash_ledger::result_commitment(&me, network, over, committed);
                        *served.lock().unwrap() = sealed.clone();
                        let end = JobEnd::Delivered {
                            result: if trick == Trick::Tampered {
                                ash_identity::encode_hex(&committed.0)
                            } else {
                                hash
                            },
                            size: sealed.len() as u64,
                            commitment: serde_bytes::ByteBuf::from(commitment.0.to_vec()),
                            summary: JobSummary { files: 1, ..JobSummary::default() },
                        };
                        let net = mallory.clone();
                        tokio::spawn(async move {
                            let done = PeerRequest::JobDone { job: assign.job, end };
                            let _ = net.request(from, done).await;
                        });
                    }
                    NetEvent::Request {
                        request: PeerRequest::JobChunk { index, .. },
                        responder,
                        ..
                    } => {
                        let bytes = served.lock().unwrap().clone();
                        let answer = if index == 0 {
                            PeerResponse::JobChunk { bytes: serde_bytes::ByteBuf::from(bytes) }
                        } else {
                            PeerResponse::error("invalid", "no such chunk")
                        };
                        let _ = responder.respond(answer).await;
                    }
                    NetEvent::Request { responder, .. } => {
                        let _ = responder.respond(PeerResponse::error("unsupported", "no")).await;
                    }
                    _ => {}
                }
            }
        });
    }
    let jobs = requester.jobs();
    let walk_dir = root.path().join("repo");
    let cases = [
        (Trick::Tampered, "the result is not the one committed to"),
        (Trick::OtherReservation, "the result commitment does not verify"),
        (Trick::Unscreened, "patch refused: .git/config"),
        (Trick::OtherJob, "sealed for job"),
    ];
    for (case, expected) in cases {
        *trick.lock().unwrap() = case;
        let (events, mut sink) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move { while sink.recv().await.is_some() {} });
        let asked =
            tokio::time::timeout(WAIT, jobs.request(spec(repository(&walk_dir), "go"), events))
                .await
                .unwrap();
        match asked {
            Err(JobError::BadResult(reason)) => {
                assert!(reason.contains(expected), "{case:?}: {reason}");
            }
            other => panic!("{case:?}: {other:?}"),
        }
    }
    // Nothing was receipted: each reservation stays locked until its deadline, then is
    // released; nothing is paid.
    let records = jobs.requested().await.unwrap();
    let states: Vec<&str> = records.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["refused"; 4]);
    let refused_job = records[0].job.clone();
    let ledger = requester.ledger();
    let account = ledger.lock().unwrap().verifier().account(REQUESTER.id());
    assert_eq!(
        (account.balance.paid.get(), account.balance.locked.get(), account.balance.spendable.get()),
        (0, 24, 76)
    );
    let receipts = ledger
        .lock()
        .unwrap()
        .verifier()
        .valid_entries(REQUESTER.id())
        .iter()
        .filter(|e| matches!(e.body, Body::Receipt(_)))
        .count();
    assert_eq!(receipts, 0);
    // A result that says it ran another model than the one offered is delivered and
    // receipted (it is what was committed to), and marked as grounds to reject.
    *trick.lock().unwrap() = Trick::OtherModel;
    let (events_tx, mut sink) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while sink.recv().await.is_some() {} });
    let asked =
        tokio::time::timeout(WAIT, jobs.request(spec(repository(&walk_dir), "go"), events_tx))
            .await
            .unwrap();
    match asked {
        Ok(Requested::Delivered(delivered)) => {
            assert_eq!(
                delivered.mismatch.as_deref(),
                Some("the agent called gpt-other, and the terms name test/none only")
            );
            assert_eq!(delivered.manifest.models, ["gpt-other"]);
        }
        other => panic!("{other:?}"),
    }
    // A peer that is not the job's acceptor cannot end it.
    let job = refused_job;
    let outsider = hostile(&AUTHORITY, &genesis, &r_address).await.0;
    let forged = PeerRequest::JobDone {
        job,
        end: JobEnd::Cancelled {
            reason: "x".into(),
            signature: serde_bytes::ByteBuf::from(vec![0; 64]),
        },
    };
    match outsider.request(REQUESTER.id(), forged).await.unwrap() {
        PeerResponse::Error(e) => assert_eq!(e.code, "refused"),
        other => panic!("{other:?}"),
    }
    requester.stop().await;
}

/// A hostile requester's assignment, built from what the acceptor offered.
struct Assignment {
    job: String,
    reserve: Entry,
    terms: JobTerms,
    prompt: Vec<u8>,
    size: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_requesters_assignments_are_refused_before_any_work() {
    let genesis = genesis();
    let root = tempfile::tempdir().unwrap();
    let a_dir = root.path().join("acceptor");
    std::fs::create_dir_all(&a_dir).unwrap();
    // Mallory's log as the acceptor holds it: her profile and a grant of 14.
    let seeded = seed(&genesis, 14);
    ledger_with(&a_dir.join("ledger.db"), &genesis, seeded.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let limits = ash_pack::Limits { max_total_bytes: 1 << 20, ..ash_pack::Limits::default() };
    let serve = ServeConfig {
        agents: vec![Arc::new(Scribe { runs: Arc::clone(&runs) })],
        routed: true,
        tiers: Vec::new(),
        max_concurrent: 2,
        max_jobs: None,
        max_package_bytes: 8 << 20,
        limits,
        run_time: Duration::from_secs(30),
        git: Arc::new(HostGit),
    };
    let serve_again = serve.clone();
    let mut acceptor = start_node(&ACCEPTOR, &genesis, &a_dir, Some(serve));
    let a_address = address(&mut acceptor).await;
    let (mallory, mut events, _task) = hostile(&REQUESTER, &genesis, &a_address).await;
    let me = REQUESTER.key();
    // Mallory's own log, continued after the seeded profile (and the receipt of her grant).
    let log: Vec<Entry> = seeded.iter().filter(|e| e.author == me.node_id()).cloned().collect();
    let mut writer = LogWriter::resume(&me, log.last().unwrap());
    let offers = Arc::new(Mutex::new(Vec::<String>::new()));
    let served = Arc::new(Mutex::new(log.clone()));
    let package: Arc<Mutex<Vec<u8>>> = Arc::default();
    let ends: Arc<Mutex<Vec<JobEnd>>> = Arc::default();
    {
        let (offers, served_log) = (Arc::clone(&offers), Arc::clone(&served));
        let (package, ends) = (Arc::clone(&package), Arc::clone(&ends));
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let NetEvent::Request { request, responder, .. } = event else { continue };
                let answer = match request {
                    PeerRequest::JobOffer(offer) => {
                        offers.lock().unwrap().push(offer.job);
                        PeerResponse::Noted
                    }
                    PeerRequest::JobChunk { index: 0, .. } => PeerResponse::JobChunk {
                        bytes: serde_bytes::ByteBuf::from(package.lock().unwrap().clone()),
                    },
                    PeerRequest::JobDone { end, .. } => {
                        ends.lock().unwrap().push(end);
                        PeerResponse::Noted
                    }
                    PeerRequest::LedgerEntries { .. } => PeerResponse::LedgerEntries {
                        entries: served_log
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|e| serde_bytes::ByteBuf::from(e.bytes()))
                            .collect(),
                    },
                    _ => PeerResponse::error("unsupported", "no"),
                };
                let _ = responder.respond(answer).await;
            }
        });
    }
    let announce_for = |job: &str, ms: u64| {
        Gossip::JobAnnounce(JobAnnounce {
            job: job.into(),
            tier: "sonnet".into(),
            agents: vec!["builtin".into()],
            size: 100,
            price: 6,
            expires: ash_node_now() + ms,
            routed: None,
        })
    };
    let announce = |job: &str| announce_for(job, 60_000);
    let offered = |job: String| {
        let (mallory, offers) = (mallory.clone(), Arc::clone(&offers));
        let message = announce(&job);
        async move {
            tokio::time::timeout(WAIT, async {
                loop {
                    let _ = mallory.publish(ash_net::Topic::Announcements, &message).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if offers.lock().unwrap().contains(&job) {
                        return;
                    }
                }
            })
            .await
            .expect("the acceptor offered");
        }
    };
    let honest = |writer: &mut LogWriter<'_>, job: &str, amount: u64, acceptor: NodeId| {
        let id: JobId = job.parse().unwrap();
        let prompt = "do it";
        let terms = JobTerms {
            tier: "sonnet".into(),
            price: 6,
            package: sha256_hex(b"package"),
            prompt: sha256_hex(prompt.as_bytes()),
            agent: "builtin".into(),
            model: "test/scribe".into(),
            routed: false,
        };
        let digest = terms_digest(&terms);
        let reserve = writer.append(
            ash_node_now(),
            Body::Reserve(Reserve {
                job: ash_ledger::JobId(id.0),
                acceptor,
                amount: Credits::new(amount),
                deadline: ash_node_now() + 600_000,
                terms: digest,
            }),
        );
        let to = Recipient { node: ACCEPTOR.id(), key: ACCEPTOR.key().sealing_public() };
        let sealed = ash_pack::seal_prompt(prompt, &me, &to, id).unwrap();
        Assignment { job: job.into(), reserve, terms, prompt: sealed, size: 7 }
    };
    let send = |a: Assignment| {
        let mallory = mallory.clone();
        async move {
            let request = PeerRequest::JobAssign(JobAssign {
                job: a.job,
                reserve: serde_bytes::ByteBuf::from(a.reserve.bytes()),
                terms: a.terms,
                prompt: serde_bytes::ByteBuf::from(a.prompt),
                size: a.size,
            });
            mallory.request(ACCEPTOR.id(), request).await.unwrap()
        }
    };
    let refused = |answer: PeerResponse| match answer {
        PeerResponse::Error(e) if e.code == "refused" => e.message,
        other => panic!("not refused: {other:?}"),
    };
    let job = |n: u8| JobId([n; 16]).to_string();

    // No offer was made for this job.
    let a = honest(&mut writer, &job(1), 6, ACCEPTOR.id());
    assert!(refused(send(a).await).contains("made you no offer"));
    // Every case below is a job the acceptor offered for; the reservations are built on a
    // scratch writer so the log mallory serves stays consistent where it must.
    type Spoil = Box<dyn Fn(&mut Assignment)>;
    let cases: Vec<(u8, Spoil, &str)> = vec![
        (2, Box::new(|a: &mut Assignment| a.terms.tier = "opus".into()), "not the ones offered"),
        (
            3,
            Box::new(|a: &mut Assignment| a.terms.prompt = sha256_hex(b"other")),
            "not for this job, this node and these terms",
        ),
        (4, Box::new(|a: &mut Assignment| a.prompt = vec![0; 60 << 10]), "over the limit"),
        (5, Box::new(|a: &mut Assignment| a.prompt.truncate(100)), "the prompt"),
        (
            6,
            Box::new(|a: &mut Assignment| a.job = JobId([66; 16]).to_string()),
            "made you no offer",
        ),
    ];
    for (n, spoil, expected) in cases {
        offered(job(n)).await;
        let mut scratch = LogWriter::resume(&me, log.last().unwrap());
        let mut a = honest(&mut scratch, &job(n), 6, ACCEPTOR.id());
        spoil(&mut a);
        let reason = refused(send(a).await);
        assert!(reason.contains(expected), "case {n}: {reason}");
    }
    // A reservation naming another acceptor.
    offered(job(7)).await;
    let mut scratch = LogWriter::resume(&me, log.last().unwrap());
    let a = honest(&mut scratch, &job(7), 6, AUTHORITY.id());
    assert!(refused(send(a).await).contains("not for this job, this node and these terms"));
    // A valid reservation for a package that unpacks past the acceptor's limits (2 MiB of
    // content, 1 MiB allowed): the acceptor fetches it, refuses to unpack it, runs nothing, and
    // cancels with its signature, so the requester pays nothing.
    offered(job(10)).await;
    let big = root.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("blob.bin"), vec![b'x'; 2 << 20]).unwrap();
    let walk = ash_pack::walk(&big, &ash_pack::WalkOptions::default()).unwrap();
    let to = Recipient { node: ACCEPTOR.id(), key: ACCEPTOR.key().sealing_public() };
    let options = ash_pack::PackOptions::default();
    let (_, _, sealed) =
        ash_pack::pack(&walk, &me, &to, JobId([10; 16]), &options, Vec::new()).unwrap();
    let mut scratch = LogWriter::resume(&me, log.last().unwrap());
    let mut a = honest(&mut scratch, &job(10), 6, ACCEPTOR.id());
    a.terms.package = sha256_hex(&sealed);
    let digest = terms_digest(&a.terms);
    let mut scratch = LogWriter::resume(&me, log.last().unwrap());
    let Body::Reserve(mut reserve) = a.reserve.body.clone() else { unreachable!() };
    reserve.terms = digest;
    a.reserve = scratch.append(a.reserve.time, Body::Reserve(reserve));
    a.size = sealed.len() as u64;
    let reserve_id = a.reserve.id();
    let tail = a.reserve.clone();
    served.lock().unwrap().push(tail.clone());
    *package.lock().unwrap() = sealed;
    assert_eq!(send(a).await, PeerResponse::JobAccepted);
    let end = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(end) = ends.lock().unwrap().pop() {
                return end;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let JobEnd::Cancelled { reason, signature } = end else { panic!("{end:?}") };
    assert!(reason.contains("cannot be unpacked"), "{reason}");
    let signature = ash_identity::Signature(signature.as_ref().try_into().unwrap());
    let signed = ash_ledger::cancel_bytes(genesis.id(), reserve_id);
    let key = ACCEPTOR.id().public_key().unwrap();
    assert!(
        ash_identity::verify(&key, ash_identity::Domain::LedgerCancel, &signed, &signature).is_ok()
    );
    // An acceptor that stops serving after it offered: a valid assignment for the offer is
    // cancelled at once with its signature (the requester's credits come back), and no work is
    // done; serving again, it offers again.
    offered(job(11)).await;
    acceptor.jobs().stop_serving();
    assert!(!acceptor.jobs().offering());
    let mut scratch = LogWriter::resume(&me, &tail);
    let a = honest(&mut scratch, &job(11), 6, ACCEPTOR.id());
    let reserve_id = a.reserve.id();
    served.lock().unwrap().push(a.reserve.clone());
    let answer = send(a).await;
    let PeerResponse::JobStatus { end: Some(JobEnd::Cancelled { reason, signature }), .. } = answer
    else {
        panic!("{answer:?}")
    };
    assert!(reason.contains("no longer takes jobs"), "{reason}");
    let signature = ash_identity::Signature(signature.as_ref().try_into().unwrap());
    let signed = ash_ledger::cancel_bytes(genesis.id(), reserve_id);
    assert!(
        ash_identity::verify(&key, ash_identity::Domain::LedgerCancel, &signed, &signature).is_ok()
    );
    // Mallory releases the reservation with it, and serves her log on.
    let release =
        scratch.append(ash_node_now(), Body::Release(Release::cancelled(reserve_id, signature)));
    let tail = release.clone();
    served.lock().unwrap().push(release.clone());
    // (As replication would bring it: the acceptor's ledger takes it, and her credits are back.)
    let inserted = acceptor.ledger().lock().unwrap().insert(vec![release]).unwrap();
    assert_eq!(inserted.new, 1);
    acceptor.jobs().serve(serve_again);
    assert!(acceptor.jobs().offering());
    // A reservation the balance does not cover: 14 credits, 6 locked for the job above and 6
    // reserved for someone else since, then 6 for this job; the acceptor fetches the log that
    // leads to it and the ledger refuses it.
    offered(job(8)).await;
    let mut scratch = LogWriter::resume(&me, &tail);
    let first = honest(&mut scratch, &job(9), 6, AUTHORITY.id()).reserve;
    let a = honest(&mut scratch, &job(8), 6, ACCEPTOR.id());
    served.lock().unwrap().extend([first, a.reserve.clone()]);
    let reason = refused(send(a).await);
    assert!(reason.contains("refused by the ledger"), "{reason}");
    // Another peer, hearing job 10's id, announces it as its own and assigns it with a valid
    // reservation of its own: the id is taken here, whoever asks.
    let (other, mut other_events, _other_task) = hostile(&OTHER, &genesis, &a_address).await;
    let other_offers = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let other_offers = Arc::clone(&other_offers);
        tokio::spawn(async move {
            while let Some(event) = other_events.recv().await {
                let NetEvent::Request { request, responder, .. } = event else { continue };
                let answer = match request {
                    PeerRequest::JobOffer(offer) => {
                        other_offers.lock().unwrap().push(offer.job);
                        PeerResponse::Noted
                    }
                    _ => PeerResponse::error("unsupported", "no"),
                };
                let _ = responder.respond(answer).await;
            }
        });
    }
    let ten = job(10);
    tokio::time::timeout(WAIT, async {
        while !other_offers.lock().unwrap().contains(&ten) {
            let _ = other.publish(ash_net::Topic::Announcements, &announce(&ten)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the acceptor offered to the other peer");
    let other_key = OTHER.key();
    let other_log: Vec<Entry> =
        seeded.iter().filter(|e| e.author == other_key.node_id()).cloned().collect();
    let mut other_writer = LogWriter::resume(&other_key, other_log.last().unwrap());
    let id = JobId([10; 16]);
    let terms = JobTerms {
        tier: "sonnet".into(),
        price: 6,
        package: sha256_hex(b"package"),
        prompt: sha256_hex(b"do it"),
        agent: "builtin".into(),
        model: "test/scribe".into(),
        routed: false,
    };
    let digest = terms_digest(&terms);
    let reserve = other_writer.append(
        ash_node_now(),
        Body::Reserve(Reserve {
            job: ash_ledger::JobId(id.0),
            acceptor: ACCEPTOR.id(),
            amount: Credits::new(6),
            deadline: ash_node_now() + 600_000,
            terms: digest,
        }),
    );
    let to = Recipient { node: ACCEPTOR.id(), key: ACCEPTOR.key().sealing_public() };
    let prompt = ash_pack::seal_prompt("do it", &other_key, &to, id).unwrap();
    let hijack = PeerRequest::JobAssign(JobAssign {
        job: ten.clone(),
        reserve: serde_bytes::ByteBuf::from(reserve.bytes()),
        terms,
        prompt: serde_bytes::ByteBuf::from(prompt),
        size: 7,
    });
    let reason = refused(other.request(ACCEPTOR.id(), hijack).await.unwrap());
    assert!(reason.contains("already took a job with this id"), "{reason}");
    // A flood of announcements: offers stop at four open ones per requester.
    let before = other_offers.lock().unwrap().len();
    for n in 20..40u8 {
        let _ = other.publish(ash_net::Topic::Announcements, &announce(&job(n))).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flood = other_offers.lock().unwrap().len() - before;
    assert_eq!(flood, 4, "offers for one requester's flood of 20 announcements");
    // No work was done, and the acceptor's balance is what it was.
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let ledger = acceptor.ledger();
    let account = ledger.lock().unwrap().verifier().account(ACCEPTOR.id());
    assert_eq!(account.balance.earned.get(), 0);
    acceptor.stop().await;
}

/// The hash a reservation carries for `terms`.
fn terms_digest(terms: &JobTerms) -> Hash {
    ash_ledger::Terms {
        tier: terms.tier.clone(),
        price: Credits::new(terms.price),
        package: Hash(ash_identity::decode_hex::<32>(&terms.package).unwrap()),
        prompt: Hash(ash_identity::decode_hex::<32>(&terms.prompt).unwrap()),
        agent: terms.agent.clone(),
        model: terms.model.clone(),
        routed: terms.routed,
    }
    .digest()
    .unwrap()
}

fn ash_node_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

/// An agent that makes the model calls of its plan (model, body padding) through the routed
/// model, and writes what came back into `calls.md`.
struct Caller {
    plan: Vec<(&'static str, usize)>,
}

impl JobAgent for Caller {
    fn kind(&self) -> &str {
        "builtin"
    }
    fn model(&self, _tier: &str) -> Option<String> {
        None
    }
    fn routable(&self, api: &str) -> bool {
        api == "anthropic"
    }
    fn sandbox(&self) -> &str {
        "none"
    }
    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>> {
        let plan = self.plan.clone();
        Box::pin(async move {
            let routed = work.routed.ok_or("not a routed job")?;
            let mut lines = String::new();
            for (model, pad) in plan {
                let body = serde_json::json!({"model": model, "pad": "x".repeat(pad)});
                let call = RoutedCall {
                    api: "messages".into(),
                    query: "beta=true".into(),
                    headers: vec![("anthropic-version".into(), "2023-06-01".into())],
                    body: body.to_string().into_bytes(),
                };
                let answer = routed.call(call).await?;
                // What came back: its size when answered, else the whole error.
                let line = if answer.status == 200 && answer.body.iter().all(|b| *b == b'y') {
                    format!("200 {}", answer.body.len())
                } else {
                    format!("{} {}", answer.status, String::from_utf8_lossy(&answer.body))
                };
                lines.push_str(&line);
                lines.push('\n');
            }
            std::fs::write(work.workspace.join("calls.md"), &lines).map_err(|e| e.to_string())?;
            let manifest = JobManifest { models: vec![work.model], ..JobManifest::default() };
            Ok(AgentEnd { summary: "called".into(), manifest })
        })
    }
}

/// The requester's provider: answers every call with `size` bytes, 10 tokens each, and
/// records the bodies it was sent.
struct Echo {
    size: usize,
    seen: Arc<Mutex<Vec<(String, usize)>>>,
}

impl ModelProvider for Echo {
    fn call(
        &self,
        call: RoutedCall,
    ) -> Pin<Box<dyn Future<Output = Result<RoutedAnswer, String>> + Send + '_>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push((call.query.clone(), call.body.len()));
            Ok(RoutedAnswer {
                status: 200,
                content_type: "text/event-stream".into(),
                body: vec![b'y'; self.size],
                tokens: 10,
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_jobs_model_calls_are_answered_by_the_requester_within_its_terms() {
    let genesis = genesis();
    let root = tempfile::tempdir().unwrap();
    let (r_dir, a_dir) = (root.path().join("requester"), root.path().join("acceptor"));
    for dir in [&r_dir, &a_dir] {
        std::fs::create_dir_all(dir).unwrap();
        ledger_with(&dir.join("ledger.db"), &genesis, seed(&genesis, 100));
    }
    // Small and large bodies both ways (a large one travels in chunks), a call for another
    // model, and one past the budget of three calls.
    let plan = vec![
        ("claude-x", 10),
        ("claude-x", 200_000),
        ("claude-other", 10),
        ("claude-x", 10),
        ("claude-x", 10),
    ];
    let serve = ServeConfig {
        agents: vec![Arc::new(Caller { plan })],
        tiers: Vec::new(),
        routed: true,
        max_concurrent: 1,
        max_jobs: None,
        max_package_bytes: 8 << 20,
        limits: ash_pack::Limits::default(),
        run_time: Duration::from_secs(60),
        git: Arc::new(HostGit),
    };
    let mut acceptor = start_node(&ACCEPTOR, &genesis, &a_dir, Some(serve));
    let a_address = address(&mut acceptor).await;
    let requester = {
        let config = NodeConfig {
            net: net_config(&genesis, vec![a_address.clone()]),
            ledger: r_dir.join("ledger.db"),
            genesis: genesis.clone(),
            info: PeerInfo::default(),
            authority: None,
            signup: None,
            writer: true,
            jobs_dir: r_dir.join("jobs"),
            serve: None,
        };
        Node::start(Arc::new(REQUESTER.key()), config).unwrap()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let routing = Routing {
        provider_name: "test".into(),
        api: "anthropic".into(),
        model: "claude-x".into(),
        max_calls: 3,
        max_tokens: 1000,
        provider: Arc::new(Echo { size: 100_000, seen: Arc::clone(&seen) }),
    };
    let jobs = requester.jobs();
    // A routed job is priced as machine time, and only it is.
    let mut wrong = spec(repository(&root.path().join("repo")), "call");
    wrong.routed = Some(routing.clone());
    let (events, _sink) = tokio::sync::mpsc::channel(64);
    match jobs.request(wrong, events).await {
        Err(JobError::Refused(reason)) => assert!(reason.contains("`machine` time"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut asked = spec(repository(&root.path().join("repo")), "call");
    asked.tier = "machine".into();
    asked.run_time = Duration::from_secs(120);
    asked.routed = Some(routing);
    let (events, mut sink) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while sink.recv().await.is_some() {} });
    let delivered = match tokio::time::timeout(WAIT, jobs.request(asked, events)).await.unwrap() {
        Ok(Requested::Delivered(delivered)) => delivered,
        other => panic!("{other:?}"),
    };
    assert_eq!((delivered.price, delivered.mismatch.clone()), (1, None));
    let patch = String::from_utf8_lossy(&delivered.patch).into_owned();
    let calls: Vec<&str> = patch.lines().filter_map(|l| l.strip_prefix('+')).skip(1).collect();
    assert_eq!(
        calls,
        [
            "200 100000",
            "200 100000",
            r#"400 {"type":"error","error":{"type":"invalid_request_error","message":"this job's requester answers only for the model `claude-x`, not `claude-other`"}}"#,
            "200 100000",
            r#"429 {"type":"error","error":{"type":"budget_exceeded","message":"the requester's budget of 3 model calls for this job is spent"}}"#,
        ],
        "{patch}"
    );
    // The provider saw the three calls the terms allow, whole, with their query.
    let seen: Vec<(String, usize)> = seen.lock().unwrap().clone();
    let sizes: Vec<usize> = seen.iter().map(|(_, n)| *n).collect();
    let body_len = |pad: usize| {
        serde_json::json!({"model": "claude-x", "pad": "x".repeat(pad)}).to_string().len()
    };
    assert_eq!(sizes, [body_len(10), body_len(200_000), body_len(10)]);
    assert!(seen.iter().all(|(q, _)| q == "beta=true"));
    // Nobody else can call on the requester's key, or answer the acceptor's agent.
    let (outsider, _events, _task) = hostile(&OTHER, &genesis, &a_address).await;
    let forged_call = PeerRequest::JobModelCall(ash_protocol::JobModelCall {
        job: delivered.job.clone(),
        call: 99,
        api: "messages".into(),
        query: String::new(),
        headers: Vec::new(),
        size: 2,
        sha256: sha256_hex(b"{}"),
        body: Some(serde_bytes::ByteBuf::from(b"{}".to_vec())),
    });
    let answer = outsider.request(ACCEPTOR.id(), forged_call.clone()).await.unwrap();
    assert!(matches!(&answer, PeerResponse::Error(e) if e.code == "refused"), "{answer:?}");
    let forged_answer = PeerRequest::JobModelAnswer(ash_protocol::JobModelAnswer {
        job: delivered.job.clone(),
        call: 0,
        status: 200,
        content_type: "text/plain".into(),
        size: 2,
        sha256: sha256_hex(b"hi"),
        body: Some(serde_bytes::ByteBuf::from(b"hi".to_vec())),
    });
    let answer = outsider.request(ACCEPTOR.id(), forged_answer).await.unwrap();
    assert!(matches!(&answer, PeerResponse::Error(e) if e.code == "refused"), "{answer:?}");
    jobs.decide(&delivered.job, ash_ledger::Outcome::Accept).await.unwrap();
    let ledger = requester.ledger();
    let account = ledger.lock().unwrap().verifier().account(REQUESTER.id());
    assert_eq!(account.balance.paid.get(), 1);
    requester.stop().await;
    acceptor.stop().await;
}
