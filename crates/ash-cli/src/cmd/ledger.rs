//! The network identity and the credit ledger: `ash join`, `ash status`, `ash history`,
//! `ash ledger verify|export|import`, `ash admin keygen|genesis|mint|checkpoint`.
//!
//! Every command that writes loads the verified ledger, offers its new entries to the
//! verifier, and stores what it accepted; `status` and `history` read the stored verdicts and
//! summaries without verifying anything again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ash_identity::{Identity, NodeId};
use ash_ledger::{
    Admission, Body, Bundle, Credits, Entry, Genesis, LogWriter, Mint, MintKind, Profile, Receive,
    Report, SignupCost, Verdict, Verifier, read_bundle, write_bundle,
};
use ash_node::InviteBook;
use ash_protocol::SignupProof;
use ash_spec::Severity;
use ash_store::LedgerDb;
use serde_json::json;

use super::Outcome;
use crate::cli::{
    AdminCheckpointArgs, AdminCommand, AdminGenesisArgs, AdminInviteArgs, AdminMintArgs,
    HistoryArgs, JoinArgs, JsonArgs, LedgerCommand, LedgerExportArgs, LedgerImportArgs,
    LedgerVerifyArgs, NetworkTermsArgs, SignupCostArg, StatusArgs,
};
use crate::{config, output};

/// The most records a bundle file may hold.
const MAX_BUNDLE_RECORDS: u64 = 2_000_000;

/// Writes `bytes` to `path`, readable by its owner only, whole or not at all: through a new
/// file beside it (any left by an earlier attempt is removed first), synced, then renamed.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.new"));
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))
}

/// `$ASH_HOME`: keys, genesis, ledger, config.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    dir: PathBuf,
}

/// The right to append to this home's own logs (its identity's, its authority's), held while
/// alive: one process at a time, or two would write different entries at one position of a
/// log, a fork that freezes the identity everywhere.
#[must_use = "the lock is released when this is dropped"]
pub(crate) struct Writer(#[expect(dead_code, reason = "held for its lock")] std::fs::File);

impl Home {
    pub(crate) fn find() -> anyhow::Result<Self> {
        let dir = config::ash_home().context("cannot find $ASH_HOME or $HOME; set ASH_HOME")?;
        // A config the network commands would misread is an error, not a warning.
        let (_, diagnostics) = config::user_config()?;
        output::diagnostics(&diagnostics);
        if diagnostics.iter().any(|d| d.severity == Severity::Error) {
            bail!("fix {} first", dir.join("config.toml").display());
        }
        Ok(Self { dir })
    }
    /// Takes the right to append to this home's own logs, or says which process holds it.
    pub(crate) fn writer(&self) -> anyhow::Result<Writer> {
        let dir = self.run_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("writer.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Writer(file)),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another ash process writes this home's ledger (an `ash node` or `ash admin serve` \
                 of {} runs): stop it first. Two writers would fork this identity's log, which \
                 freezes it",
                self.dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
    /// Where a running node leaves its state (and proxies their sockets).
    pub(crate) fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// Where `ash pack open` records the trees it unpacked.
    pub(crate) fn workspaces(&self) -> PathBuf {
        self.dir.join("workspaces")
    }
    fn identity_path(&self) -> PathBuf {
        self.dir.join("keys/identity.key")
    }
    fn authority_path(&self) -> PathBuf {
        self.dir.join("keys/authority.key")
    }
    fn genesis_path(&self) -> PathBuf {
        self.dir.join("genesis.toml")
    }
    /// What this identity shows mint authorities for its signup (mode 0600): `invite CODE` or
    /// `pow NONCE`.
    fn signup_path(&self) -> PathBuf {
        self.dir.join("keys/signup")
    }
    /// The invite codes this machine's authority issued.
    /// The home directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
    pub(crate) fn invites(&self) -> InviteBook {
        InviteBook::new(self.dir.join("admin/invites"))
    }
    /// The signup proof kept for `who` on `genesis`, if the network asks for one and it is
    /// kept (and, for a stamp, checks).
    pub(crate) fn signup_proof(&self, genesis: &Genesis, who: &NodeId) -> Option<SignupProof> {
        let text = std::fs::read_to_string(self.signup_path()).ok()?;
        let (kind, value) = text.trim().split_once(' ')?;
        match (genesis.signup_cost, kind) {
            (SignupCost::Invite, "invite") => Some(SignupProof::Invite { code: value.to_owned() }),
            (SignupCost::Work { .. }, "pow") => {
                let nonce = value.parse().ok()?;
                genesis.check_work(who, nonce).then_some(SignupProof::Work { nonce })
            }
            _ => None,
        }
    }
    fn save_signup(&self, proof: &SignupProof) -> anyhow::Result<()> {
        let text = match proof {
            SignupProof::None => return Ok(()),
            SignupProof::Invite { code } => format!("invite {code}\n"),
            SignupProof::Work { nonce } => format!("pow {nonce}\n"),
        };
        let path = self.signup_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(&path, text.as_bytes())
    }
    pub(crate) fn ledger(&self) -> anyhow::Result<LedgerDb> {
        Ok(LedgerDb::open(&self.ledger_path())?)
    }
    /// The ledger database's file.
    pub(crate) fn ledger_path(&self) -> PathBuf {
        self.dir.join("ledger.db")
    }
    /// The job records (`jobs.db`) and each job's files.
    pub(crate) fn jobs_dir(&self) -> PathBuf {
        self.dir.join("jobs")
    }
    pub(crate) fn identity(&self) -> anyhow::Result<Identity> {
        let path = self.identity_path();
        if !path.exists() {
            bail!("no identity on this machine yet; run `ash join --genesis FILE --username NAME`");
        }
        Ok(Identity::load(&path)?)
    }
    pub(crate) fn authority(&self) -> anyhow::Result<Identity> {
        let path = self.authority_path();
        if !path.exists() {
            bail!("no mint authority key here; create one with `ash admin keygen`");
        }
        Ok(Identity::load(&path)?)
    }
    /// The installed genesis.
    pub(crate) fn genesis(&self) -> anyhow::Result<Genesis> {
        let path = self.genesis_path();
        if !path.exists() {
            bail!(
                "no network here yet: join one with `ash join --genesis FILE` (the file comes from \
                 its mint authority), or create one with `ash admin genesis`"
            );
        }
        read_genesis(&path)
    }
    /// Installs `genesis` as this home's network; an installed different one is an error.
    fn install_genesis(&self, genesis: &Genesis) -> anyhow::Result<bool> {
        let path = self.genesis_path();
        if path.exists() {
            let installed = read_genesis(&path)?;
            if installed.id() != genesis.id() {
                bail!(
                    "{} is network `{}` ({}), not `{}` ({}); one $ASH_HOME holds one network",
                    path.display(),
                    installed.name,
                    installed.id(),
                    genesis.name,
                    genesis.id()
                );
            }
            return Ok(false);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, genesis.to_toml())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }
}

fn read_genesis(path: &Path) -> anyhow::Result<Genesis> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Genesis::from_toml(&text).with_context(|| format!("{}", path.display()))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn parse_id(text: &str) -> anyhow::Result<NodeId> {
    text.parse::<NodeId>()
        .map_err(|e| anyhow::anyhow!("{e}; a node id is 64 hex digits, as `ash status` prints"))
}

/// Appends `body` to `identity`'s log after its verified head, offers it to `verifier`, and
/// refuses (changing nothing) unless the rules find it valid.
fn append_own(verifier: &mut Verifier, identity: &Identity, body: Body) -> anyhow::Result<Entry> {
    let head = verifier.head(identity.node_id());
    let mut writer = match &head {
        Some(last) => LogWriter::resume(identity, last),
        None => LogWriter::new(identity, verifier.genesis().id()),
    };
    let time = head.map_or(0, |h| h.time).max(now_ms());
    let kind = body.kind();
    let entry = writer.append(time, body);
    match verifier.insert(entry.clone()) {
        Admission::Accepted(Verdict::Valid) => Ok(entry),
        Admission::Accepted(Verdict::Refused { rule, detail }) => {
            bail!("{kind} refused ({}): {detail}", rule.name())
        }
        other => bail!("{kind} not accepted: {other:?}"),
    }
}

/// Writes `identity`'s profile if its log has none yet.
fn ensure_profile(
    verifier: &mut Verifier,
    identity: &Identity,
    username: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let Some((name, _)) = verifier.profile(identity.node_id()) {
        return Ok(Some(name));
    }
    let Some(name) = username else { return Ok(None) };
    let name = name.to_ascii_lowercase();
    if !Profile::valid_username(&name) {
        bail!("username {name:?} must be 3–32 of a-z 0-9 _ -");
    }
    let profile = Profile {
        username: name.clone(),
        sealing_key: identity.sealing_public(),
        created_at: now_ms(),
    };
    append_own(verifier, identity, Body::Profile(profile))?;
    Ok(Some(name))
}

pub(crate) fn join(args: &JoinArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    if let Some(file) = &args.genesis {
        home.install_genesis(&read_genesis(file)?)?;
    }
    let genesis = home.genesis()?;
    let path = home.identity_path();
    let mut db = home.ledger()?;
    let mut verifier = db.load(genesis.clone(), now_ms())?;
    let (identity, created) =
        if path.exists() { (Identity::load(&path)?, false) } else { (Identity::generate()?, true) };
    let id = identity.node_id();
    if verifier.profile(id).is_none() && args.username.is_none() {
        bail!("choose a username for your profile: `ash join --username NAME`");
    }
    let proof = signup_proof(&home, &genesis, &identity, args)?;
    let username = ensure_profile(&mut verifier, &identity, args.username.as_deref())?;
    if created {
        identity.save(&path)?;
    }
    if let Some(proof) = &proof {
        home.save_signup(proof)?;
    }
    db.save(&mut verifier, now_ms())?;
    let mut balance = verifier.account(id).balance.spendable.get();
    drop((db, verifier));
    let sealing_key = identity.sealing_cert().to_string();
    // Online, the mint authority's node sends the signup bonus back.
    let mut received = None;
    let mut refused = None;
    if !args.offline && balance == 0 {
        if !args.json {
            output::note(
                "looking for the network to receive the signup bonus… (--offline skips this)",
            );
        }
        let outcome = super::network::await_signup(
            &home,
            identity,
            &args.bootstrap,
            !args.no_mdns,
            args.wait,
        )?;
        match outcome {
            super::network::Signup::Received { amount, balance: after } => {
                received = Some((amount, after));
                balance = after;
            }
            super::network::Signup::Refused(reason) => refused = Some(reason),
            super::network::Signup::Nothing => {}
        }
    }
    if args.json {
        output::json(&json!({
            "id": id,
            "username": username,
            "created": created,
            "network": {"name": genesis.name, "id": genesis.id()},
            "sealingKey": sealing_key,
            "keyFile": path,
            "signupReceived": received.map(|(amount, _)| amount),
            "signupCost": genesis.signup_cost.as_str(),
            "signupRefused": refused,
            "balance": balance,
        }))?;
    } else {
        let verb = if created { "created" } else { "already joined as" };
        let credits = match received {
            _ if refused.is_some() => format!(
                "the mint authority refused the signup: {}\n",
                refused.as_deref().unwrap_or_default()
            ),
            Some((amount, _)) => format!("received the signup bonus: {amount} credits; balance {balance}\n"),
            None if balance > 0 => format!("balance {balance}\n"),
            None if args.offline => "offline: the signup bonus arrives the next time `ash node` runs\n".to_owned(),
            None => "no signup bonus yet (no mint authority's node answered); it arrives the next time `ash node` runs online\n".to_owned(),
        };
        output::stdout(&format!(
            "{verb} {}  ({id})\nnetwork: {} ({})\nkey file: {}\n{credits}",
            username.as_deref().unwrap_or("?"),
            genesis.name,
            genesis.id(),
            path.display()
        ));
    }
    Ok(if refused.is_some() { Outcome::Failure } else { Outcome::Success })
}

pub(crate) fn status(args: &StatusArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let standing = Standing::read(&home)?;
    // The network: from the node running here, else (with --network) a look of our own.
    let network = if let Some(node) = super::network::running_node(&home) {
        json!({
            "node": "running",
            "pid": node.pid,
            "peers": node.peers.len(),
            "addresses": node.addresses,
            "lastSync": node.last_sync,
            "receivedEntries": node.received_entries,
        })
    } else if args.network {
        let (peers, first, new) =
            super::network::probe(&home, &args.bootstrap, !args.no_mdns, args.wait)?;
        json!({
            "node": "probe",
            "peers": peers,
            "discoveryMs": first.map(|d| d.as_millis()),
            "receivedEntries": new,
        })
    } else {
        json!({ "node": "not running" })
    };
    // What the look may have brought in.
    let standing = if network["node"] == "probe" { Standing::read(&home)? } else { standing };
    let Standing { id, genesis, balance, frozen, name } = &standing;
    let agents = crate::agents::readiness();
    if args.json {
        let agents: Vec<serde_json::Value> = agents
            .iter()
            .map(|(kind, serves, detail)| json!({"kind": kind, "serves": serves, "detail": detail}))
            .collect();
        output::json(&json!({
            "id": id,
            "username": name,
            "network": {"name": genesis.name, "id": genesis.id()},
            "balance": balance,
            "frozen": frozen,
            "node": network,
            "agents": agents,
        }))?;
    } else {
        let node = match network["node"].as_str() {
            Some("running") => format!(
                "node: running (pid {}), {} peer(s) connected{}",
                network["pid"],
                network["peers"],
                match network["lastSync"].as_u64() {
                    Some(at) => format!(", ledger last brought news {} s ago", now_ms().saturating_sub(at) / 1000),
                    None => String::new(),
                }
            ),
            Some("probe") => match network["discoveryMs"].as_u64() {
                Some(ms) => format!(
                    "network: {} peer(s) online (first found in {:.2} s); {} new ledger entries taken in",
                    network["peers"],
                    ms as f64 / 1000.0,
                    network["receivedEntries"]
                ),
                None => format!("network: no peers found in {} s", args.wait.as_secs()),
            },
            _ => "node: not running (`ash node` runs one; `ash status --network` looks for peers now)".to_owned(),
        };
        output::stdout(&status_text(&standing, &node));
    }
    Ok(Outcome::Success)
}

/// This home's identity, its network and its account as the ledger here has it.
struct Standing {
    id: NodeId,
    genesis: Genesis,
    balance: ash_ledger::Balance,
    frozen: bool,
    name: Option<String>,
}

impl Standing {
    fn read(home: &Home) -> anyhow::Result<Self> {
        let id = home.identity()?.node_id();
        let genesis = home.genesis()?;
        let account = home.ledger()?.account(id)?;
        Ok(Self {
            id,
            genesis,
            balance: account.as_ref().map(|a| a.balance).unwrap_or_default(),
            frozen: account.as_ref().is_some_and(|a| a.frozen),
            name: account.and_then(|a| a.username),
        })
    }
}

/// What `ash status` prints: the identity, its balance, the node and the agents.
fn status_text(standing: &Standing, node: &str) -> String {
    let Standing { id, genesis, balance, frozen, name } = standing;
    let agents: String = crate::agents::readiness()
        .iter()
        .map(|(kind, serves, detail)| {
            let state = match *serves {
                "all" => "ready",
                "routed" => "routed only",
                _ => "not ready",
            };
            format!("\n  agent {kind}: {state} — {detail}")
        })
        .collect();
    format!(
        "\n  {}  ·  {} credits spendable{}\n  id: {id}\n  network: {}\n  received {} · earned {} · paid {} · locked {}\n  {node}{agents}\n\n",
        name.as_deref().unwrap_or("?"),
        balance.spendable.get(),
        if *frozen { "  ·  FROZEN (equivocation proven)" } else { "" },
        genesis.name,
        balance.received.get(),
        balance.earned.get(),
        balance.paid.get(),
        balance.locked.get(),
    )
}

/// `ash status` of this home as text, with `node` for what the network looks like.
pub(crate) fn own_status_text(home: &Home, node: &str) -> anyhow::Result<String> {
    Ok(status_text(&Standing::read(home)?, node))
}

/// One line of history: an entry of the log and its effect on spendable credits.
#[derive(serde::Serialize)]
struct Row {
    time: u64,
    seq: u64,
    kind: &'static str,
    verdict: String,
    change: i64,
    balance: i64,
    detail: String,
    /// The job a reservation, receipt, decision, release or collection belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<String>,
}

fn history_rows(db: &LedgerDb, genesis: &Genesis, id: NodeId) -> anyhow::Result<Vec<Row>> {
    use std::collections::HashMap;
    let signed = |c: Credits| i64::try_from(c.get()).unwrap_or(i64::MAX);
    let named = |hash| -> anyhow::Result<Option<Entry>> { Ok(db.entry(hash)?.map(|s| s.entry)) };
    let mut reserved: HashMap<ash_ledger::Hash, Credits> = HashMap::new();
    let mut collected: HashMap<ash_ledger::Hash, Credits> = HashMap::new();
    let mut balance = 0i64;
    let mut rows = Vec::new();
    for stored in db.log(id)? {
        let entry = stored.entry;
        let verdict = stored.verdict.unwrap_or_else(|| "pending".into());
        let valid = verdict == "valid";
        // The job of an entry that settles one: its reservation names it.
        let job_of = |reserve: ash_ledger::Hash| -> anyhow::Result<Option<String>> {
            Ok(named(reserve)?.and_then(|e| match e.body {
                Body::Reserve(r) => Some(r.job.to_string()),
                _ => None,
            }))
        };
        let job = match &entry.body {
            Body::Reserve(r) => Some(r.job.to_string()),
            Body::Receipt(r) => job_of(r.reserve)?,
            Body::Decide(d) => job_of(d.reserve)?,
            Body::Release(r) => job_of(r.reserve)?,
            Body::Collect(c) => match named(c.source)?.map(|e| e.body) {
                Some(Body::Decide(d)) => job_of(d.reserve)?,
                Some(Body::Receipt(r)) => job_of(r.reserve)?,
                _ => None,
            },
            _ => None,
        };
        let (change, detail) = match &entry.body {
            Body::Profile(p) => (0, format!("profile {}", p.username)),
            Body::Mint(m) => (0, format!("minted {} for {}", m.amount, m.recipient.short())),
            Body::Receive(r) => match named(r.mint)?.map(|e| e.body) {
                Some(Body::Mint(m)) => {
                    (signed(m.amount), format!("received {:?} mint: {}", m.kind, m.reason))
                }
                _ => (0, format!("received mint {}", r.mint)),
            },
            Body::Reserve(r) => {
                if valid {
                    reserved.insert(entry.id(), r.amount);
                }
                (-signed(r.amount), format!("locked for job {} with {}", r.job, r.acceptor.short()))
            }
            Body::Receipt(r) => (
                0,
                format!("result {} delivered for job {}", r.result, job.as_deref().unwrap_or("?")),
            ),
            Body::Decide(d) => {
                let amount = reserved.get(&d.reserve).copied().unwrap_or_default();
                let price = d.outcome.price(amount);
                let job = job.as_deref().unwrap_or("?");
                (signed(amount) - signed(price), format!("{:?} job {job}: paid {price}", d.outcome))
            }
            Body::Release(r) => {
                let amount = reserved.get(&r.reserve).copied().unwrap_or_default();
                let reason = format!("{:?}", r.reason).to_lowercase();
                (signed(amount), format!("{reason} job {}", job.as_deref().unwrap_or("?")))
            }
            Body::Collect(c) => {
                let source = named(c.source)?;
                let (reserve, owed) = match source.as_ref().map(|e| &e.body) {
                    Some(Body::Decide(d)) => {
                        let amount = named(d.reserve)?.and_then(|e| match e.body {
                            Body::Reserve(r) => Some(r.amount),
                            _ => None,
                        });
                        (Some(d.reserve), amount.map(|a| d.outcome.price(a)))
                    }
                    Some(Body::Receipt(r)) => {
                        let amount = named(r.reserve)?.and_then(|e| match e.body {
                            Body::Reserve(r) => Some(r.amount.half()),
                            _ => None,
                        });
                        (Some(r.reserve), amount)
                    }
                    _ => (None, None),
                };
                let owed = owed.unwrap_or_default();
                let before = reserve.and_then(|r| collected.get(&r).copied()).unwrap_or_default();
                if valid && let Some(r) = reserve {
                    collected.insert(r, owed);
                }
                let from = source.map_or_else(|| "?".to_owned(), |s| s.author.short());
                (
                    signed(owed.checked_sub(before).unwrap_or_default()),
                    format!("collected from {from} for job {}", job.as_deref().unwrap_or("?")),
                )
            }
        };
        let change = if valid { change } else { 0 };
        balance = balance.saturating_add(change);
        rows.push(Row {
            time: entry.time,
            seq: entry.seq,
            kind: entry.body.kind(),
            verdict,
            change,
            balance,
            detail,
            job,
        });
    }
    let _ = genesis;
    Ok(rows)
}

/// `ash history` of `id` as text.
pub(crate) fn history_text(db: &LedgerDb, genesis: &Genesis, id: NodeId) -> anyhow::Result<String> {
    let rows = history_rows(db, genesis, id)?;
    let mut text = format!("history  {}\n", id.short());
    for row in &rows {
        let when = chrono::DateTime::from_timestamp_millis(i64::try_from(row.time).unwrap_or(0))
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        let verdict =
            if row.verdict == "valid" { String::new() } else { format!("  [{}]", row.verdict) };
        text.push_str(&format!(
            "{when}  #{:<4} {:<8} {:>+6} cr  bal {:>6}  {}{verdict}\n",
            row.seq, row.kind, row.change, row.balance, row.detail
        ));
    }
    let spendable = db.account(id)?.map_or(0, |a| a.balance.spendable.get());
    text.push_str(&format!("spendable: {spendable} cr\n"));
    Ok(text)
}

pub(crate) fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let id = match &args.id {
        Some(text) => parse_id(text)?,
        None => home.identity()?.node_id(),
    };
    let genesis = home.genesis()?;
    let db = home.ledger()?;
    if args.json {
        output::json(&history_rows(&db, &genesis, id)?)?;
        return Ok(Outcome::Success);
    }
    let text = history_text(&db, &genesis, id)?;
    output::stdout(&text);
    Ok(Outcome::Success)
}

pub(crate) fn run(command: LedgerCommand) -> anyhow::Result<Outcome> {
    match command {
        LedgerCommand::Verify(args) => verify(&args),
        LedgerCommand::Export(args) => export(&args),
        LedgerCommand::Import(args) => import(&args),
    }
}

/// Reads a bundle of `genesis`'s network.
fn read(path: &Path, genesis: &Genesis) -> anyhow::Result<Bundle> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let bundle = read_bundle(std::io::BufReader::new(file), MAX_BUNDLE_RECORDS)
        .with_context(|| format!("reading {}", path.display()))?;
    if bundle.network != genesis.id() {
        bail!(
            "{} is a bundle of network {}, not of `{}` ({})",
            path.display(),
            bundle.network,
            genesis.name,
            genesis.id()
        );
    }
    Ok(bundle)
}

fn report_json(report: &Report, disagreeing: &[String]) -> serde_json::Value {
    json!({
        "valid": report.is_clean() && disagreeing.is_empty(),
        "accounts": report.accounts.values().collect::<Vec<_>>(),
        "refused": report.refused,
        "pending": report.pending,
        "quarantined": report.quarantined,
        "equivocations": report.equivocations.iter().map(|e| json!({
            "author": e.kept.author, "seq": e.kept.seq, "kept": e.kept.id(), "other": e.other.id(),
        })).collect::<Vec<_>>(),
        "checkpointsDisagreeing": disagreeing,
    })
}

fn report_text(report: &Report, disagreeing: &[String]) -> String {
    let entries: u64 = report.accounts.values().map(|a| a.entries).sum();
    let mut text = format!(
        "{} identities, {entries} entries: {} refused, {} pending, {} quarantined, {} equivocations\n",
        report.accounts.len(),
        report.refused.len(),
        report.pending.len(),
        report.quarantined,
        report.equivocations.len()
    );
    for a in report.accounts.values() {
        let b = &a.balance;
        let role = if a.authority { "  (mint authority)" } else { "" };
        let frozen = if a.frozen { "  FROZEN" } else { "" };
        text.push_str(&format!(
            "  {}  {:<16} {:>8} cr  received {} earned {} paid {} locked {}  [{} valid, {} refused]{role}{frozen}\n",
            a.id.short(),
            a.username.as_deref().unwrap_or("?"),
            b.spendable.get(),
            b.received.get(),
            b.earned.get(),
            b.paid.get(),
            b.locked.get(),
            a.valid,
            a.refused,
        ));
    }
    for r in &report.refused {
        text.push_str(&format!(
            "refused  {} #{} {}: {}: {}\n",
            r.author.short(),
            r.seq,
            r.kind,
            r.rule.name(),
            r.detail
        ));
    }
    for p in &report.pending {
        text.push_str(&format!(
            "pending  {} #{}: waiting for {}\n",
            p.author.short(),
            p.seq,
            p.waiting_for
        ));
    }
    for e in &report.equivocations {
        text.push_str(&format!(
            "equivocation {} #{}: signed both {} and {}\n",
            e.kept.author.short(),
            e.kept.seq,
            e.kept.id(),
            e.other.id()
        ));
    }
    for subject in disagreeing {
        text.push_str(&format!("checkpoint of {subject} disagrees with the rules\n"));
    }
    text
}

fn verify(args: &LedgerVerifyArgs) -> anyhow::Result<Outcome> {
    let genesis = match &args.genesis {
        Some(path) => read_genesis(path)?,
        None => Home::find()?.genesis()?,
    };
    let bundle = read(&args.bundle, &genesis)?;
    let verifier = Verifier::verify_all(genesis.clone(), now_ms(), bundle.entries);
    let mut disagreeing = Vec::new();
    for checkpoint in &bundle.checkpoints {
        let counts = checkpoint.check(&genesis).is_ok();
        if !counts || verifier.agrees_with(checkpoint) == Some(false) {
            disagreeing.push(checkpoint.subject.to_string());
        }
    }
    let report = verifier.report();
    if args.json {
        output::json(&report_json(&report, &disagreeing))?;
    } else {
        output::stdout(&report_text(&report, &disagreeing));
    }
    Ok(if report.is_clean() && disagreeing.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

fn export(args: &LedgerExportArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let genesis = home.genesis()?;
    let db = home.ledger()?;
    let (mut entries, mut checkpoints) = db.export()?;
    if !args.ids.is_empty() {
        let mut wanted: BTreeSet<NodeId> =
            args.ids.iter().map(|id| parse_id(id)).collect::<anyhow::Result<_>>()?;
        wanted.extend(genesis.authorities.iter().copied());
        // The logs the wanted ones' entries name (a mint's authority, a collect's requester),
        // until nothing new is named.
        let by_id: std::collections::HashMap<ash_ledger::Hash, NodeId> =
            entries.iter().map(|e| (e.id(), e.author)).collect();
        loop {
            let named: BTreeSet<NodeId> = entries
                .iter()
                .filter(|e| wanted.contains(&e.author))
                .filter_map(|e| e.body.names())
                .filter_map(|n| by_id.get(&n).copied())
                .filter(|a| !wanted.contains(a))
                .collect();
            if named.is_empty() {
                break;
            }
            wanted.extend(named);
        }
        entries.retain(|e| wanted.contains(&e.author));
        checkpoints.retain(|c| wanted.contains(&c.subject));
    }
    let mut bytes = Vec::new();
    write_bundle(&mut bytes, genesis.id(), entries.iter(), &checkpoints)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            output::note(&format!(
                "wrote {} entries and {} checkpoints to {}",
                entries.len(),
                checkpoints.len(),
                path.display()
            ));
        }
        None => output::stdout_bytes(&bytes),
    }
    Ok(Outcome::Success)
}

fn import(args: &LedgerImportArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    let genesis = home.genesis()?;
    let bundle = read(&args.bundle, &genesis)?;
    let mut db = home.ledger()?;
    let mut verifier = db.load(genesis, now_ms())?;
    let mut checkpoints_refused = Vec::new();
    for checkpoint in bundle.checkpoints {
        let subject = checkpoint.subject;
        if let Err(e) = verifier.add_checkpoint(checkpoint) {
            checkpoints_refused.push(format!("{}: {e}", subject.short()));
        }
    }
    let (mut known, mut door, mut quarantined, mut dropped) = (0u64, Vec::new(), 0u64, 0u64);
    let places: Vec<(NodeId, u64)> = bundle.entries.iter().map(|e| (e.author, e.seq)).collect();
    let admissions = verifier.insert_many(bundle.entries);
    for ((author, seq), admission) in places.into_iter().zip(admissions) {
        let at = format_args!("{} #{seq}", author.short());
        match admission {
            Admission::Accepted(_) => {}
            Admission::Known => known += 1,
            Admission::Quarantined => quarantined += 1,
            Admission::Dropped => dropped += 1,
            Admission::Refused(rule, detail) => {
                door.push(format!("{at}: {}: {detail}", rule.name()))
            }
        }
    }
    // Mints made out to this identity go into its own log.
    let mut received = Vec::new();
    if let Ok(identity) = home.identity()
        && verifier.profile(identity.node_id()).is_some()
    {
        for mint in verifier.receivable_mints(identity.node_id()) {
            let Body::Mint(m) = &mint.body else { continue };
            let amount = m.amount;
            append_own(&mut verifier, &identity, Body::Receive(Receive { mint: mint.id() }))?;
            received.push(amount.get());
        }
    }
    let saved = db.save(&mut verifier, now_ms())?;
    let report = verifier.report();
    if args.json {
        output::json(&json!({
            "new": saved.new,
            "known": known,
            "refused": door,
            "quarantined": quarantined,
            "dropped": dropped,
            "checkpointsRefused": checkpoints_refused,
            "received": received,
            "report": report_json(&report, &[]),
        }))?;
    } else {
        let mut text = format!(
            "stored {} new entries ({known} already known, {quarantined} waiting for earlier entries, {} refused)\n",
            saved.new,
            door.len()
        );
        for line in &door {
            text.push_str(&format!("refused  {line}\n"));
        }
        for line in &checkpoints_refused {
            text.push_str(&format!("checkpoint refused  {line}\n"));
        }
        for amount in &received {
            text.push_str(&format!("received a mint of {amount} cr into your log\n"));
        }
        text.push_str(&report_text(&report, &[]));
        output::stdout(&text);
    }
    Ok(Outcome::Success)
}

pub(crate) fn admin(command: AdminCommand) -> anyhow::Result<Outcome> {
    match command {
        AdminCommand::Keygen(args) => keygen(&args),
        AdminCommand::Genesis(args) => genesis(&args),
        AdminCommand::Serve(args) => super::network::admin_serve(&args),
        AdminCommand::Mint(args) => mint(&args),
        AdminCommand::Invite(args) => invite(&args),
        AdminCommand::Checkpoint(args) => checkpoint(&args),
    }
}

/// `genesis` with the signup cost and prices `terms` choose.
fn with_terms(genesis: Genesis, terms: &NetworkTermsArgs) -> anyhow::Result<Genesis> {
    let cost = match (terms.signup_cost, terms.pow_bits) {
        (SignupCostArg::None, None) => SignupCost::None,
        (SignupCostArg::Invite, None) => SignupCost::Invite,
        (SignupCostArg::Pow, bits) => SignupCost::Work { bits: bits.unwrap_or(20) },
        (_, Some(_)) => bail!("--pow-bits is only for --signup-cost pow"),
    };
    let mut genesis = genesis.with_signup_cost(cost)?;
    if !terms.price.is_empty() {
        let mut prices = BTreeMap::new();
        for price in &terms.price {
            let parsed = price
                .split_once('=')
                .and_then(|(t, c)| Some((t.trim(), c.trim().parse::<u64>().ok()?)));
            let Some((tier, credits)) = parsed else {
                bail!("--price {price:?}: write TIER=CREDITS, e.g. --price sonnet=6");
            };
            if prices.insert(tier.to_owned(), credits).is_some() {
                bail!("--price names tier `{tier}` twice");
            }
        }
        genesis = genesis.with_prices(prices)?;
    }
    Ok(genesis)
}

/// What `ash join` shows the mint authority: nothing, the invite code given (or kept from an
/// earlier join), or a proof-of-work stamp, found now unless one was kept.
fn signup_proof(
    home: &Home,
    genesis: &Genesis,
    identity: &Identity,
    args: &JoinArgs,
) -> anyhow::Result<Option<SignupProof>> {
    let kept = home.signup_proof(genesis, &identity.node_id());
    match genesis.signup_cost {
        SignupCost::None => {
            if args.invite.is_some() {
                bail!("network `{}` asks for no invite code; join without --invite", genesis.name);
            }
            Ok(None)
        }
        SignupCost::Invite => match (&args.invite, kept) {
            (Some(code), _) => {
                let code = code.trim();
                if code.is_empty() || code.len() > ash_protocol::MAX_INVITE_BYTES {
                    bail!("--invite: not an invite code");
                }
                Ok(Some(SignupProof::Invite { code: code.to_owned() }))
            }
            (None, Some(kept)) => Ok(Some(kept)),
            (None, None) => bail!(
                "network `{}` admits by invitation: ask one of its mint authorities for a code \
                 (they issue them with `ash admin invite`) and run `ash join --invite CODE`",
                genesis.name
            ),
        },
        SignupCost::Work { bits } => {
            if args.invite.is_some() {
                bail!("network `{}` asks for a proof of work, not an invite code", genesis.name);
            }
            if kept.is_some() {
                return Ok(kept);
            }
            if !args.json {
                output::note(&format!(
                    "working out the proof-of-work stamp this network asks for signups ({bits} bits, about {} hashes)…",
                    1u64 << bits
                ));
            }
            let start = std::time::Instant::now();
            let nonce = genesis
                .solve_work(&identity.node_id(), 0, |_| false)
                .context("no proof of work was found")?;
            if !args.json {
                output::note(&format!("found in {:.1} s", start.elapsed().as_secs_f64()));
            }
            Ok(Some(SignupProof::Work { nonce }))
        }
    }
}

/// `ash admin invite`: new codes in this authority's book.
fn invite(args: &AdminInviteArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let authority = home.authority()?;
    let genesis = home.genesis()?;
    if !genesis.is_authority(&authority.node_id()) {
        bail!(
            "this authority ({}) is not in the genesis of `{}`: its codes would admit nobody",
            authority.node_id().short(),
            genesis.name
        );
    }
    if genesis.signup_cost != SignupCost::Invite {
        bail!(
            "network `{}` has signup cost `{}`: invite codes would not be asked for",
            genesis.name,
            genesis.signup_cost.as_str()
        );
    }
    let book = home.invites();
    let codes = book.issue(args.count, now_ms())?;
    let (issued, redeemed) = book.counts()?;
    if args.json {
        output::json(&json!({ "codes": codes, "issued": issued, "redeemed": redeemed }))?;
    } else {
        let mut text = codes.join("\n");
        text.push_str(&format!(
            "\n({issued} issued, {redeemed} redeemed) give each newcomer one: `ash join --network FILE --username NAME --invite CODE`\n"
        ));
        output::stdout(&text);
    }
    Ok(Outcome::Success)
}

fn keygen(args: &JsonArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let path = home.authority_path();
    let created = !path.exists();
    let authority = if created {
        let identity = Identity::generate()?;
        identity.save(&path)?;
        identity
    } else {
        Identity::load(&path)?
    };
    let id = authority.node_id();
    if args.json {
        output::json(&json!({"id": id, "created": created, "keyFile": path}))?;
    } else {
        output::stdout(&format!(
            "mint authority {id}{}\nkey file: {} (keep it offline and backed up)\nnext: `ash admin genesis --name NETWORK` writes the network's genesis with this authority\n",
            if created { " (created)" } else { "" },
            path.display()
        ));
    }
    Ok(Outcome::Success)
}

/// `ash network create`: the authority key if there is none, then the genesis, written where
/// people expect it.
pub(crate) fn network_create(args: &crate::cli::NetworkCreateArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let path = home.authority_path();
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("creating {}", path.display()))?;
        Identity::generate()?.save(&path)?;
    }
    let output =
        args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}.genesis.toml", args.name)));
    if output.exists() {
        bail!("{} exists already; choose another file with -o", output.display());
    }
    let made = AdminGenesisArgs {
        name: args.name.clone(),
        authority: Vec::new(),
        witness: Vec::new(),
        quorum: None,
        claim_window_hours: None,
        signup_bonus: Some(args.signup_bonus),
        terms: args.terms.clone(),
        bootstrap: args.bootstrap.clone(),
        output: Some(output),
        json: args.json,
    };
    genesis(&made)
}

fn genesis(args: &AdminGenesisArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    let ids = |list: &[String]| {
        list.iter().map(|t| parse_id(t)).collect::<anyhow::Result<BTreeSet<NodeId>>>()
    };
    let mut authorities = ids(&args.authority)?;
    let local = home.authority().ok();
    if authorities.is_empty() {
        let Some(authority) = &local else {
            bail!(
                "name the mint authorities with --authority ID, or create this machine's with `ash admin keygen`"
            );
        };
        authorities.insert(authority.node_id());
    }
    let witnesses = if args.witness.is_empty() { authorities.clone() } else { ids(&args.witness)? };
    let quorum =
        args.quorum.unwrap_or_else(|| u16::try_from(witnesses.len() / 2 + 1).unwrap_or(u16::MAX));
    let window = args
        .claim_window_hours
        .map_or(ash_ledger::DEFAULT_CLAIM_WINDOW_MS, |h| h.saturating_mul(3_600_000));
    let mut genesis = Genesis::with(&args.name, now_ms(), authorities, witnesses, quorum, window)?;
    if let Some(bonus) = args.signup_bonus {
        genesis = genesis.with_signup_bonus(bonus)?;
    }
    let genesis = with_terms(genesis, &args.terms)?.with_bootstrap(args.bootstrap.clone())?;
    home.install_genesis(&genesis)?;
    if let Some(path) = &args.output {
        std::fs::write(path, genesis.to_toml())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // This machine's authority writes its profile now that the network exists.
    if let Some(authority) = local.filter(|a| genesis.is_authority(&a.node_id())) {
        let mut db = home.ledger()?;
        let mut verifier = db.load(home.genesis()?, now_ms())?;
        ensure_profile(&mut verifier, &authority, Some("mint-authority"))?;
        db.save(&mut verifier, now_ms())?;
    }
    let genesis = home.genesis()?;
    let file = args.output.clone().unwrap_or_else(|| home.genesis_path());
    if args.json {
        output::json(&json!({
            "name": genesis.name,
            "id": genesis.id(),
            "file": file,
            "signupBonus": genesis.signup_bonus,
            "signupCost": genesis.signup_cost.as_str(),
            "prices": genesis.price_list(),
            "bootstrap": genesis.bootstrap,
        }))?;
    } else {
        let bonus = genesis.signup_bonus.map_or_else(
            || "the bonus `ash admin serve` is given".to_owned(),
            |b| format!("{b} credits"),
        );
        let signup = match genesis.signup_cost {
            SignupCost::None => format!("signup: {bonus} for every new identity"),
            SignupCost::Invite => {
                format!("signup: {bonus} for an invite code (issue them with `ash admin invite`)")
            }
            SignupCost::Work { bits } => {
                format!(
                    "signup: {bonus} for a proof of work ({bits} bits, worked out by `ash join`)"
                )
            }
        };
        let prices: Vec<String> =
            genesis.price_list().iter().map(|(tier, price)| format!("{tier} {price}")).collect();
        output::stdout(&format!(
            "network `{}` ({})\ngenesis: {}\n{signup}\nprices per job: {}\ngive this file to every participant: `ash join --network {} --username NAME`; run the mint authority's node with `ash admin serve`\n",
            genesis.name,
            genesis.id(),
            file.display(),
            prices.join(" · "),
            file.display()
        ));
    }
    Ok(Outcome::Success)
}

fn mint(args: &AdminMintArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    let authority = home.authority()?;
    let genesis = home.genesis()?;
    if !genesis.is_authority(&authority.node_id()) {
        bail!(
            "this authority ({}) is not in the genesis of `{}`: its mints would count for nothing",
            authority.node_id().short(),
            genesis.name
        );
    }
    let recipient = parse_id(&args.id)?;
    let mut db = home.ledger()?;
    let mut verifier = db.load(genesis, now_ms())?;
    ensure_profile(&mut verifier, &authority, Some("mint-authority"))?;
    if args.signup
        && let Some(earlier) = verifier.valid_entries(authority.node_id()).iter().find(|e| {
            matches!(&e.body, Body::Mint(m) if m.recipient == recipient && m.kind == MintKind::Signup)
        })
    {
        bail!(
            "this authority already minted a signup to {} (entry {}); an identity receives one",
            recipient.short(),
            earlier.seq
        );
    }
    let body = Body::Mint(Mint {
        recipient,
        amount: Credits::new(args.amount),
        kind: if args.signup { MintKind::Signup } else { MintKind::Grant },
        reason: args.reason.clone(),
    });
    let entry = append_own(&mut verifier, &authority, body)?;
    db.save(&mut verifier, now_ms())?;
    if args.json {
        output::json(
            &json!({"recipient": recipient, "amount": args.amount, "seq": entry.seq, "id": entry.id()}),
        )?;
    } else {
        output::stdout(&format!(
            "minted {} cr to {} (entry {} of the authority's log); share it with `ash ledger export`\n",
            args.amount,
            recipient.short(),
            entry.seq
        ));
    }
    Ok(Outcome::Success)
}

fn checkpoint(args: &AdminCheckpointArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let witness = home.authority()?;
    let genesis = home.genesis()?;
    if !genesis.witnesses.contains(&witness.node_id()) {
        bail!("this key ({}) is not a witness of `{}`", witness.node_id().short(), genesis.name);
    }
    if genesis.checkpoint_quorum > 1 {
        bail!(
            "`{}` needs {} witness signatures per checkpoint; gathering them from several machines \
             comes with the network service, and one witness alone cannot make a checkpoint count",
            genesis.name,
            genesis.checkpoint_quorum
        );
    }
    let mut db = home.ledger()?;
    let mut verifier = db.load(genesis, now_ms())?;
    let subjects: Vec<NodeId> = if args.ids.is_empty() {
        verifier.authors().collect()
    } else {
        args.ids.iter().map(|t| parse_id(t)).collect::<anyhow::Result<_>>()?
    };
    let mut made = Vec::new();
    for subject in subjects {
        let Some(mut checkpoint) = verifier.checkpoint(subject, now_ms()) else { continue };
        checkpoint.sign(&witness);
        let seq = checkpoint.seq;
        verifier.add_checkpoint(checkpoint)?;
        made.push(json!({"subject": subject, "seq": seq}));
    }
    db.save(&mut verifier, now_ms())?;
    if args.json {
        output::json(&made)?;
    } else {
        output::stdout(&format!(
            "signed {} checkpoints; share them with `ash ledger export`\n",
            made.len()
        ));
    }
    Ok(Outcome::Success)
}
