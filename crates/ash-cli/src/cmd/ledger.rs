//! The network identity and the credit ledger: `ash join`, `ash status`, `ash history`,
//! `ash ledger verify|export|import`, `ash admin keygen|mint`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ash_identity::{Identity, NodeId};
use ash_ledger::{
    Body, Credits, Entry, LogWriter, Mint, MintKind, Profile, Report, Rules, Verifier, read_bundle,
    write_bundle,
};
use ash_store::{Inserted, LedgerDb};
use serde_json::json;

use super::Outcome;
use crate::cli::{
    AdminCommand, AdminMintArgs, HistoryArgs, JoinArgs, JsonArgs, LedgerCommand, LedgerExportArgs,
    LedgerImportArgs, LedgerVerifyArgs,
};
use crate::{config, output};

/// The most entries a bundle file may hold.
const MAX_BUNDLE_ENTRIES: u64 = 50_000_000;

/// `$ASH_HOME`: keys, ledger, config.
pub(crate) struct Home {
    dir: PathBuf,
}

impl Home {
    pub(crate) fn find() -> anyhow::Result<Self> {
        let dir = config::ash_home().context("cannot find $ASH_HOME or $HOME; set ASH_HOME")?;
        Ok(Self { dir })
    }
    fn identity_path(&self) -> PathBuf {
        self.dir.join("keys/identity.key")
    }
    fn authority_path(&self) -> PathBuf {
        self.dir.join("keys/authority.key")
    }
    pub(crate) fn ledger(&self) -> anyhow::Result<LedgerDb> {
        Ok(LedgerDb::open(&self.dir.join("ledger.db"))?)
    }
    pub(crate) fn identity(&self) -> anyhow::Result<Identity> {
        let path = self.identity_path();
        if !path.exists() {
            bail!("no identity on this machine yet; run `ash join --username NAME`");
        }
        Ok(Identity::load(&path)?)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Mint authorities from `$ASH_HOME/config.toml` plus `extra`.
fn authorities(extra: &[String]) -> anyhow::Result<BTreeSet<NodeId>> {
    let (user, diagnostics) = config::user_config()?;
    output::diagnostics(&diagnostics);
    user.mint_authorities
        .iter()
        .chain(extra)
        .map(|id| id.parse::<NodeId>().with_context(|| format!("mint authority {id}")))
        .collect()
}

pub(crate) fn parse_id(text: &str) -> anyhow::Result<NodeId> {
    text.parse::<NodeId>()
        .map_err(|e| anyhow::anyhow!("{e}; a node id is 64 hex digits, as `ash status` prints"))
}

fn verify_db(db: &LedgerDb, authorities: BTreeSet<NodeId>) -> anyhow::Result<(Verifier, Report)> {
    Ok(Verifier::verify_all(Rules::new(authorities, now_ms()), db.all()?))
}

pub(crate) fn join(args: &JoinArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let path = home.identity_path();
    let mut db = home.ledger()?;
    let (identity, created) = if path.exists() {
        (Identity::load(&path)?, false)
    } else {
        let identity = Identity::generate()?;
        identity.save(&path)?;
        (identity, true)
    };
    let id = identity.node_id();
    let mut username = None;
    if db.last(id)?.is_none() {
        let name = args
            .username
            .clone()
            .context("choose a username for your profile: `ash join --username NAME`")?
            .to_ascii_lowercase();
        if !Profile::valid_username(&name) {
            bail!("username {name:?} must be 3–32 of a-z 0-9 _ -");
        }
        let profile = Profile {
            username: name.clone(),
            sealing_key: identity.sealing_public(),
            created_at: now_ms(),
        };
        let entry = LogWriter::new(&identity).append(now_ms(), Body::Profile(profile), None);
        db.insert_all([&entry], now_ms())?;
        username = Some(name);
    } else if let Some(Entry { body: Body::Profile(p), .. }) = db.log(id)?.first() {
        username = Some(p.username.clone());
    }
    if args.json {
        output::json(&json!({
            "id": id,
            "username": username,
            "created": created,
            "sealingKey": identity.sealing_cert().to_string(),
            "keyFile": path,
        }))?;
    } else {
        let verb = if created { "created" } else { "already joined as" };
        output::stdout(&format!(
            "{verb} {}  ({id})\nkey file: {}\nask the mint authority for your signup credits: `ash admin mint {id} 100 --signup --reason signup`\n",
            username.as_deref().unwrap_or("?"),
            path.display()
        ));
    }
    Ok(Outcome::Success)
}

pub(crate) fn status(args: &JsonArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let identity = home.identity()?;
    let id = identity.node_id();
    let authorities = authorities(&[])?;
    let no_authority = authorities.is_empty();
    let (_, report) = verify_db(&home.ledger()?, authorities)?;
    let account = report.accounts.get(&id);
    let balance = account.map(|a| a.balance).unwrap_or_default();
    if args.json {
        output::json(&json!({
            "id": id,
            "username": account.and_then(|a| a.username.clone()),
            "balance": balance,
            "frozen": account.is_some_and(|a| a.frozen),
            "mintAuthorities": !no_authority,
        }))?;
    } else {
        let name = account.and_then(|a| a.username.clone()).unwrap_or_else(|| "?".into());
        output::stdout(&format!(
            "\n  {name}  ·  {} credits{}\n  id: {id}\n  minted {} · earned {} · paid {} · locked {}\n\n",
            balance.available,
            if account.is_some_and(|a| a.frozen) {
                "  ·  FROZEN (equivocation proven)"
            } else {
                ""
            },
            balance.minted.get(),
            balance.earned.get(),
            balance.paid.get(),
            balance.reserved.get(),
        ));
        if no_authority {
            output::note(
                "no mint authority configured: add `[network] mint_authorities = [\"ID\"]` to $ASH_HOME/config.toml; until then no credits count",
            );
        }
    }
    Ok(Outcome::Success)
}

/// One line of history: an entry's effect on one identity's available credits.
#[derive(serde::Serialize)]
struct Row {
    time: u64,
    author: NodeId,
    seq: u64,
    kind: &'static str,
    change: i64,
    balance: i64,
    detail: String,
}

fn history_rows(verifier: &Verifier, report: &Report, id: NodeId) -> Vec<Row> {
    let mut effects: Vec<(u64, NodeId, u64, &'static str, i64, String)> = Vec::new();
    let mut settled = HashSet::new();
    let own = verifier.verified_entries(id);
    let reserved =
        |seq: u64| match own.get(usize::try_from(seq).unwrap_or(usize::MAX)).map(|e| &e.body) {
            Some(Body::Reserve(r)) => r.amount.get(),
            _ => 0,
        };
    let signed = |c: Credits| i64::try_from(c.get()).unwrap_or(i64::MAX);
    // The identity's own log first, so its copy of a settlement is the one shown.
    let mut authors: Vec<NodeId> = vec![id];
    authors.extend(report.accounts.keys().copied().filter(|a| *a != id));
    for author in authors {
        for entry in verifier.verified_entries(author) {
            let at = (entry.time, entry.author, entry.seq, entry.body.kind());
            match &entry.body {
                Body::Mint(m) if m.recipient == id => {
                    effects.push((
                        at.0,
                        at.1,
                        at.2,
                        at.3,
                        signed(m.amount),
                        format!("from the mint authority: {}", m.reason),
                    ));
                }
                Body::Reserve(r) if author == id => {
                    effects.push((
                        at.0,
                        at.1,
                        at.2,
                        at.3,
                        -signed(r.amount),
                        format!("locked for job {} with {}", r.job, r.acceptor.short()),
                    ));
                }
                Body::Release(r) if author == id => {
                    let back = i64::try_from(reserved(r.reserve_seq)).unwrap_or(0);
                    effects.push((at.0, at.1, at.2, at.3, back, format!("job {} released", r.job)));
                }
                Body::Settle(s) => {
                    let s = &s.settlement;
                    if !settled.insert((s.requester, s.reserve_seq)) {
                        continue;
                    }
                    if s.acceptor == id {
                        effects.push((
                            at.0,
                            at.1,
                            at.2,
                            at.3,
                            signed(s.amount),
                            format!(
                                "earned from {} (job {}, {:?})",
                                s.requester.short(),
                                s.job,
                                s.outcome
                            ),
                        ));
                    } else if s.requester == id {
                        let refund =
                            i64::try_from(reserved(s.reserve_seq)).unwrap_or(0) - signed(s.amount);
                        effects.push((
                            at.0,
                            at.1,
                            at.2,
                            at.3,
                            refund,
                            format!(
                                "paid {} to {} (job {}, {:?})",
                                s.amount,
                                s.acceptor.short(),
                                s.job,
                                s.outcome
                            ),
                        ));
                    } else {
                        settled.remove(&(s.requester, s.reserve_seq));
                    }
                }
                _ => {}
            }
        }
    }
    effects.sort_by_key(|e| (e.0, e.1, e.2));
    let mut balance = 0i64;
    effects
        .into_iter()
        .map(|(time, author, seq, kind, change, detail)| {
            balance = balance.saturating_add(change);
            Row { time, author, seq, kind, change, balance, detail }
        })
        .collect()
}

pub(crate) fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let id = match &args.id {
        Some(text) => parse_id(text)?,
        None => home.identity()?.node_id(),
    };
    let (verifier, report) = verify_db(&home.ledger()?, authorities(&[])?)?;
    let rows = history_rows(&verifier, &report, id);
    if args.json {
        output::json(&rows)?;
        return Ok(Outcome::Success);
    }
    let mut text = format!("history  {}\n", id.short());
    for row in &rows {
        let when = chrono::DateTime::from_timestamp_millis(i64::try_from(row.time).unwrap_or(0))
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        text.push_str(&format!(
            "{when}  {:<8} {:>+6} cr  bal {:>6}  {}\n",
            row.kind, row.change, row.balance, row.detail
        ));
    }
    let available = report.accounts.get(&id).map_or(0, |a| a.balance.available);
    text.push_str(&format!("balance: {available} cr\n"));
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

fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_bundle(std::io::BufReader::new(file), MAX_BUNDLE_ENTRIES)
        .with_context(|| format!("reading {}", path.display()))
}

fn report_json(report: &Report) -> serde_json::Value {
    json!({
        "valid": report.is_clean(),
        "accounts": report.accounts.values().collect::<Vec<_>>(),
        "rejected": report.rejected,
        "pending": report.pending,
        "equivocations": report.equivocations.iter().map(|e| json!({
            "author": e.kept.author, "seq": e.kept.seq, "kept": e.kept.hash(), "other": e.other.hash(),
        })).collect::<Vec<_>>(),
    })
}

fn report_text(report: &Report) -> String {
    let entries: u64 = report.accounts.values().map(|a| a.length).sum();
    let mut text = format!(
        "{} identities, {entries} entries: {} rejected, {} pending, {} equivocations\n",
        report.accounts.len(),
        report.rejected.len(),
        report.pending.len(),
        report.equivocations.len()
    );
    for a in report.accounts.values() {
        let b = &a.balance;
        let role = if a.authority { "  (mint authority)" } else { "" };
        let frozen = if a.frozen { "  FROZEN" } else { "" };
        text.push_str(&format!(
            "  {}  {:<16} {:>8} cr  minted {} earned {} paid {} locked {}  [{}/{} verified]{role}{frozen}\n",
            a.id.short(),
            a.username.as_deref().unwrap_or("?"),
            b.available,
            b.minted.get(),
            b.earned.get(),
            b.paid.get(),
            b.reserved.get(),
            a.verified,
            a.length
        ));
    }
    for r in &report.rejected {
        let ignored = if r.ignored_after > 0 {
            format!(" ({} later entries ignored)", r.ignored_after)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "rejected {} #{} {}: {}: {}{ignored}\n",
            r.author.short(),
            r.seq,
            r.kind,
            r.rule.name(),
            r.detail
        ));
    }
    for p in &report.pending {
        text.push_str(&format!(
            "pending  {} #{} ({} entries): waiting for {}\n",
            p.author.short(),
            p.seq,
            p.count,
            p.waiting_for
        ));
    }
    for e in &report.equivocations {
        text.push_str(&format!(
            "equivocation {} #{}: signed both {} and {}\n",
            e.kept.author.short(),
            e.kept.seq,
            e.kept.hash(),
            e.other.hash()
        ));
    }
    text
}

fn verify(args: &LedgerVerifyArgs) -> anyhow::Result<Outcome> {
    let entries = read(&args.bundle)?;
    let authorities = authorities(&args.authority)?;
    if authorities.is_empty() {
        output::note(
            "no mint authority given (config `[network] mint_authorities` or --authority): no credits count",
        );
    }
    let (_, report) = Verifier::verify_all(Rules::new(authorities, now_ms()), entries);
    if args.json {
        output::json(&report_json(&report))?;
    } else {
        output::stdout(&report_text(&report));
    }
    Ok(if report.is_clean() { Outcome::Success } else { Outcome::Failure })
}

fn export(args: &LedgerExportArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let db = home.ledger()?;
    let mut entries = db.all()?;
    if !args.ids.is_empty() {
        let mut wanted: BTreeSet<NodeId> =
            args.ids.iter().map(|id| parse_id(id)).collect::<anyhow::Result<_>>()?;
        wanted.extend(authorities(&[])?);
        entries.retain(|e| wanted.contains(&e.author));
    }
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_bundle(std::io::BufWriter::new(file), entries.iter())?;
            output::note(&format!("wrote {} entries to {}", entries.len(), path.display()));
        }
        None => {
            let mut bytes = Vec::new();
            write_bundle(&mut bytes, entries.iter())?;
            output::stdout_bytes(&bytes);
        }
    }
    Ok(Outcome::Success)
}

fn import(args: &LedgerImportArgs) -> anyhow::Result<Outcome> {
    let entries = read(&args.bundle)?;
    let home = Home::find()?;
    let mut db = home.ledger()?;
    let outcomes = db.insert_all(&entries, now_ms())?;
    let count = |kind| outcomes.iter().filter(|o| **o == kind).count();
    let (new, known, conflicts) =
        (count(Inserted::New), count(Inserted::Known), count(Inserted::Conflict));
    let (_, report) = verify_db(&db, authorities(&[])?)?;
    if args.json {
        output::json(
            &json!({"new": new, "known": known, "conflicts": conflicts, "report": report_json(&report)}),
        )?;
    } else {
        output::stdout(&format!(
            "imported {new} new entries ({known} already known, {conflicts} conflicting kept as proof)\n{}",
            report_text(&report)
        ));
    }
    Ok(Outcome::Success)
}

pub(crate) fn admin(command: AdminCommand) -> anyhow::Result<Outcome> {
    match command {
        AdminCommand::Keygen(args) => keygen(&args),
        AdminCommand::Mint(args) => mint(&args),
    }
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
    let mut db = home.ledger()?;
    if db.last(authority.node_id())?.is_none() {
        let profile = Profile {
            username: "mint-authority".into(),
            sealing_key: authority.sealing_public(),
            created_at: now_ms(),
        };
        let entry = LogWriter::new(&authority).append(now_ms(), Body::Profile(profile), None);
        db.insert_all([&entry], now_ms())?;
    }
    let id = authority.node_id();
    if args.json {
        output::json(&json!({"id": id, "created": created, "keyFile": path}))?;
    } else {
        output::stdout(&format!(
            "mint authority {id}{}\nkey file: {} (keep it offline and backed up)\nevery participant adds to $ASH_HOME/config.toml:\n\n[network]\nmint_authorities = [\"{id}\"]\n",
            if created { " (created)" } else { "" },
            path.display()
        ));
    }
    Ok(Outcome::Success)
}

fn mint(args: &AdminMintArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let path = home.authority_path();
    if !path.exists() {
        bail!("no mint authority key here; create one with `ash admin keygen`");
    }
    let authority = Identity::load(&path)?;
    let recipient = parse_id(&args.id)?;
    let mut trusted = authorities(&[])?;
    if !trusted.contains(&authority.node_id()) {
        output::note(&format!(
            "this authority ({}) is not in `[network] mint_authorities` of $ASH_HOME/config.toml; nobody counts its mints until it is",
            authority.node_id().short()
        ));
        trusted.insert(authority.node_id());
    }
    let mut db = home.ledger()?;
    let last = db
        .last(authority.node_id())?
        .context("the authority has no profile entry; run `ash admin keygen` again")?;
    let body = Body::Mint(Mint {
        recipient,
        amount: Credits::new(args.amount),
        kind: if args.signup { MintKind::Signup } else { MintKind::Grant },
        reason: args.reason.clone(),
    });
    let entry = LogWriter::resume(&authority, &last).append(now_ms().max(last.time), body, None);
    let (mut verifier, _) = verify_db(&db, trusted)?;
    if let Err(rejection) = verifier.append(entry.clone()) {
        bail!("mint refused ({}): {}", rejection.rule.name(), rejection.detail);
    }
    db.insert_all([&entry], now_ms())?;
    if args.json {
        output::json(
            &json!({"recipient": recipient, "amount": args.amount, "seq": entry.seq, "hash": entry.hash()}),
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
