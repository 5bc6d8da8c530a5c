//! Packages and diffs for people: `ash pack list|create|open|key` and `ash apply`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ash_identity::{Identity, NodeId, SealingKeyCert};
use ash_ledger::Body;
use ash_pack::{
    ApplyOptions, DiffError, EntryKind, Expect, Git, GitOutput, JobId, Limits, MAX_DIFF_BYTES,
    PackError, PackOptions, Reason, Recipient, SEAL_MAGIC, Walk, WalkOptions, apply as apply_patch,
    baseline, extract, global_excludes_file, open, open_diff, pack, recover, scan, screen,
    seal_diff, walk,
};
use ash_sandbox::{
    BackendKind, ExecRequest, FsPolicy, Limits as SandboxLimits, Sandbox, SandboxPolicy,
};
use serde_json::json;

use super::Outcome;
use super::ledger::{Home, parse_id};
use crate::cli::{
    ApplyArgs, PackCommand, PackCreateArgs, PackListArgs, PackOpenArgs, PackResultArgs,
};
use crate::{config, output};

pub(crate) fn run(command: PackCommand) -> anyhow::Result<Outcome> {
    match command {
        PackCommand::List(args) => list(&args),
        PackCommand::Create(args) => create(&args),
        PackCommand::Open(args) => open_package(&args),
        PackCommand::Result(args) => result(&args),
        PackCommand::Key(args) => {
            let identity = Home::find()?.identity()?;
            let cert = identity.sealing_cert().to_string();
            if args.json {
                output::json(
                    &json!({ "node": identity.node_id().to_string(), "sealingKey": cert }),
                )?;
            } else {
                output::stdout(&format!("{cert}\n"));
            }
            Ok(Outcome::Success)
        }
    }
}

/// The walk options from the user's git configuration.
fn walk_options() -> WalkOptions {
    let home = config::var("HOME").map(PathBuf::from);
    let xdg = config::var("XDG_CONFIG_HOME").map(PathBuf::from);
    let global_excludes = home.and_then(|home| global_excludes_file(&home, xdg.as_deref()));
    WalkOptions { global_excludes }
}

pub(crate) fn walk_dir(dir: &Path) -> anyhow::Result<Walk> {
    walk(dir, &walk_options()).with_context(|| format!("cannot list {}", dir.display()))
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn reason_text(reason: &Reason) -> String {
    match reason {
        Reason::Ignored { source, pattern } => format!("ignored by {source}: {pattern}"),
        Reason::Ashignore { pattern } => format!("excluded by .ashignore: {pattern}"),
        Reason::Secret { what } => format!("never sent: {what}"),
        Reason::LinkOutside { target } => format!("symlink leaves the tree: {target}"),
        Reason::Unsupported { what } => format!("cannot be sent: {what}"),
        Reason::Missing => "tracked by git but missing from the work tree".to_owned(),
    }
}

fn list(args: &PackListArgs) -> anyhow::Result<Outcome> {
    let walk = walk_dir(&args.dir)?;
    let findings = scan(&walk)?;
    let files = walk.entries.iter().filter(|e| e.kind != EntryKind::Dir).count();
    if args.json {
        output::json(&json!({
            "root": walk.root,
            "repository": walk.repo,
            "files": files,
            "totalBytes": walk.total_size(),
            "entries": walk.entries,
            "excluded": walk.excluded,
            "secrets": findings,
        }))?;
        return Ok(Outcome::Success);
    }
    let mut text = String::new();
    for entry in &walk.entries {
        let size = match entry.kind {
            EntryKind::File => human(entry.size),
            EntryKind::Dir => "dir".to_owned(),
            EntryKind::Symlink => format!("-> {}", entry.target.as_deref().unwrap_or("")),
        };
        let exec =
            if entry.kind == EntryKind::File && entry.mode == 0o755 { " (executable)" } else { "" };
        text.push_str(&format!("  {}  {size}{exec}\n", entry.path));
    }
    if !walk.excluded.is_empty() {
        text.push_str("\nleft out:\n");
        for excluded in &walk.excluded {
            let slash = if excluded.is_dir { "/" } else { "" };
            text.push_str(&format!(
                "  {}{slash}  {}\n",
                excluded.path,
                reason_text(&excluded.reason)
            ));
        }
    }
    if !findings.is_empty() {
        text.push_str("\nlikely secrets in included files (`ash pack create` refuses until they are excluded\nin .ashignore or you pass --allow-secrets):\n");
        for f in &findings {
            text.push_str(&format!("  {}:{}  {}  {}\n", f.path, f.line, f.rule, f.preview));
        }
    }
    let repo = walk
        .repo
        .as_ref()
        .map_or_else(String::new, |r| format!(" (git repository {})", r.display()));
    text.push_str(&format!(
        "\n{files} files, {} in {}{repo}; {} left out\n",
        human(walk.total_size()),
        walk.root.display(),
        walk.excluded.len()
    ));
    output::stdout(&text);
    Ok(Outcome::Success)
}

/// The recipient from `--to` (its profile in the local ledger) or `--to-key` (a certificate).
fn recipient(home: &Home, to: Option<&str>, to_key: Option<&Path>) -> anyhow::Result<Recipient> {
    if let Some(file) = to_key {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let cert: SealingKeyCert = text.trim().parse().with_context(|| {
            format!("{}: not a sealing key from `ash pack key`", file.display())
        })?;
        return Ok(Recipient::from_cert(&cert));
    }
    let id = parse_id(to.unwrap_or_default())?;
    // Only a profile the verifier found valid names a sealing key; a forged or unsigned one
    // never reached the ledger.
    let db = home.ledger()?;
    if db.account(id)?.is_some_and(|a| a.frozen) {
        bail!(
            "{id} is frozen (it signed two different entries at one position); seal nothing to it"
        );
    }
    let profile = db.log(id)?.into_iter().rev().find_map(|stored| match stored.entry.body {
        Body::Profile(p) if stored.verdict.as_deref() == Some("valid") => Some(p),
        _ => None,
    });
    match profile {
        Some(profile) => Ok(Recipient { node: id, key: profile.sealing_key }),
        None => bail!(
            "no verified profile of {id} in the local ledger; import their ledger (`ash ledger import BUNDLE`) \
             or use --to-key FILE with their `ash pack key` output"
        ),
    }
}

fn create(args: &PackCreateArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let identity = home.identity()?;
    let to = recipient(&home, args.to.as_deref(), args.to_key.as_deref())?;
    let job = match &args.job {
        Some(hex) => hex.parse::<JobId>().context("--job")?,
        None => JobId::random()?,
    };
    let walk = walk_dir(&args.dir)?;
    let files = walk.entries.iter().filter(|e| e.kind == EntryKind::File).count();
    if !args.json {
        output::note(&format!("packing {files} files ({})…", human(walk.total_size())));
    }
    let parent =
        args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write into {}", parent.display()))?;
    let writer = BufWriter::with_capacity(256 << 10, temp.as_file().try_clone()?);
    let options = PackOptions { allow_secrets: args.allow_secrets, ..PackOptions::default() };
    let (info, findings, writer) = match pack(&walk, &identity, &to, job, &options, writer) {
        Ok(done) => done,
        Err(PackError::Secrets(findings)) => {
            for f in &findings {
                output::note(&format!("  {}:{}  {}  {}", f.path, f.line, f.rule, f.preview));
            }
            bail!(
                "refusing to pack: {} likely secret(s), listed above; exclude those files in \
                 .ashignore, or pass --allow-secrets to send them anyway",
                findings.len()
            );
        }
        Err(e) => return Err(e.into()),
    };
    writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    temp.persist(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let sealed = std::fs::metadata(&args.output)?.len();
    let digest = ash_identity::encode_hex(&info.digest);
    if args.json {
        output::json(&json!({
            "output": args.output,
            "job": job.to_string(),
            "sender": identity.node_id().to_string(),
            "recipient": to.node.to_string(),
            "entries": info.entries,
            "totalBytes": info.total_bytes,
            "sealedBytes": sealed,
            "digest": digest,
            "secretsAllowed": findings,
        }))?;
    } else {
        output::stdout(&format!(
            "sealed {} entries ({}) for {} into {} ({})\njob {job}\ndigest {digest}\n",
            info.entries,
            human(info.total_bytes),
            to.node,
            args.output.display(),
            human(sealed),
        ));
    }
    Ok(Outcome::Success)
}

fn open_package(args: &PackOpenArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let identity = home.identity()?;
    let expect = Expect { sender: args.from.as_deref().map(parse_id).transpose()?, job: None };
    let limits = Limits {
        max_entries: args.max_entries,
        max_total_bytes: args.max_bytes,
        max_file_bytes: args.max_bytes,
        max_ratio: args.max_ratio,
    };
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let opened =
        open(BufReader::with_capacity(256 << 10, file), &identity, expect, &limits, &args.into)
            .with_context(|| format!("{} was not unpacked", args.file.display()))?;
    let digest = ash_identity::encode_hex(&opened.info.digest);
    let record = OpenedTree {
        workspace: std::fs::canonicalize(&args.into)
            .with_context(|| format!("finding {}", args.into.display()))?,
        job: opened.header.job.to_string(),
        sender: opened.header.sender.to_string(),
        digest: digest.clone(),
        baseline: String::new(),
    };
    // The tree as unpacked, for `ash pack result`; without an isolating sandbox the tree is
    // still unpacked, only the way back is closed.
    let baseline = record_baseline(&home, &record, args.sandbox);
    if let Err(e) = &baseline
        && !args.json
    {
        output::note(&format!(
            "ash: not recorded for `ash pack result`: {e:#}; the tree is unpacked all the same"
        ));
    }
    if args.json {
        output::json(&json!({
            "into": args.into,
            "job": record.job,
            "sender": record.sender,
            "entries": opened.info.entries,
            "totalBytes": opened.info.total_bytes,
            "digest": digest,
            "baseline": baseline.as_ref().ok(),
            "baselineError": baseline.as_ref().err().map(|e| format!("{e:#}")),
        }))?;
    } else {
        output::stdout(&format!(
            "unpacked {} entries ({}) from {} into {}\njob {}\ndigest {digest}\n",
            opened.info.entries,
            human(opened.info.total_bytes),
            opened.header.sender,
            args.into.display(),
            opened.header.job,
        ));
    }
    Ok(Outcome::Success)
}

/// What `ash pack open` remembers of a tree it unpacked, in
/// `$ASH_HOME/workspaces/<job>/tree.json` beside `baseline.git`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct OpenedTree {
    /// The tree, canonical.
    workspace: PathBuf,
    /// The package's job.
    job: String,
    /// The package's sender.
    sender: String,
    /// The package's digest.
    digest: String,
    /// The commit of the tree as unpacked, in `baseline.git`.
    #[serde(default)]
    baseline: String,
}

/// Where the record of the tree `workspace` (canonical) lives, and its lock: keyed by the
/// tree's path, so a tree has one record whatever was unpacked into it before.
fn record_paths(home: &Home, workspace: &Path) -> (PathBuf, PathBuf) {
    use sha2::Digest as _;
    use std::os::unix::ffi::OsStrExt as _;
    let key = sha2::Sha256::digest(workspace.as_os_str().as_bytes());
    let name = ash_identity::encode_hex(&key[..16]);
    let root = home.workspaces();
    (root.join(&name), root.join(format!("{name}.lock")))
}

/// Locks the record of a tree: one `ash pack open` or `ash pack result` at a time.
fn lock_record(lock: &Path) -> anyhow::Result<File> {
    if let Some(parent) = lock.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .with_context(|| format!("opening {}", lock.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("another `ash pack open` or `ash pack result` is working on this tree")
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", lock.display()))
        }
    }
}

/// Records the unpacked tree in a git directory of ash's own (git isolated: the tree came
/// from a peer); returns the baseline commit.
fn record_baseline(
    home: &Home,
    record: &OpenedTree,
    backend: ash_sandbox::BackendChoice,
) -> anyhow::Result<String> {
    let (dir, lock) = record_paths(home, &record.workspace);
    let _lock = lock_record(&lock)?;
    // Whatever was recorded for this path before is gone first.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    let git_dir = dir.join("baseline.git");
    std::fs::create_dir_all(&git_dir).with_context(|| format!("creating {}", git_dir.display()))?;
    let git = SandboxGit::isolated(backend, record.workspace.clone(), git_dir.clone())?;
    // Freshly unpacked, nobody else in it yet: the sandbox's user may read the tree and write
    // the git directory.
    git.adopt(&record.workspace)?;
    git.adopt(&git_dir)?;
    let base = baseline(&git, &record.workspace, &git_dir)?;
    let file = dir.join("tree.json");
    let recorded = OpenedTree { baseline: base.commit.clone(), ..record.clone() };
    std::fs::write(&file, serde_json::to_vec_pretty(&recorded)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(base.commit)
}

/// The record of the tree `dir`, which `ash pack open` unpacked on this machine, locked.
fn find_opened(home: &Home, dir: &Path) -> anyhow::Result<(OpenedTree, PathBuf, File)> {
    let workspace =
        std::fs::canonicalize(dir).with_context(|| format!("finding {}", dir.display()))?;
    let (record_dir, lock) = record_paths(home, &workspace);
    let not_opened = || {
        anyhow::anyhow!(
            "{} was not unpacked by `ash pack open` on this machine (or its baseline could not \
             be recorded then); there is nothing to diff it against",
            dir.display()
        )
    };
    if !record_dir.exists() {
        return Err(not_opened());
    }
    let locked = lock_record(&lock)?;
    let bytes = std::fs::read(record_dir.join("tree.json")).map_err(|_| not_opened())?;
    let record: OpenedTree = serde_json::from_slice(&bytes)
        .with_context(|| format!("reading {}", record_dir.join("tree.json").display()))?;
    if record.workspace != workspace || record.baseline.is_empty() {
        return Err(not_opened());
    }
    Ok((record, record_dir.join("baseline.git"), locked))
}

fn result(args: &PackResultArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let identity = home.identity()?;
    let (record, git_dir, _lock) = find_opened(&home, &args.dir)?;
    let to = if args.to.is_some() || args.to_key.is_some() {
        recipient(&home, args.to.as_deref(), args.to_key.as_deref())?
    } else {
        recipient(&home, Some(&record.sender), None).context(
            "sealing for the package's sender; pass --to-key FILE with their `ash pack key` output",
        )?
    };
    let job: JobId = record.job.parse().context("the recorded job id")?;
    // The tree stays as the agent left it: git only reads it.
    let git = SandboxGit::isolated(args.sandbox, record.workspace.clone(), git_dir.clone())?;
    let base = ash_pack::Baseline { git_dir, commit: record.baseline.clone() };
    let diff = extract(&git, &record.workspace, &base, args.max_bytes)?;
    let sealed = seal_diff(&diff.patch, &identity, &to, job)?;
    let parent =
        args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write into {}", parent.display()))?;
    std::fs::write(temp.path(), &sealed)?;
    temp.as_file().sync_all()?;
    temp.persist(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let summary = &diff.summary;
    if args.json {
        output::json(&json!({
            "output": args.output,
            "job": record.job,
            "recipient": to.node.to_string(),
            "files": summary.files,
            "insertions": summary.insertions,
            "deletions": summary.deletions,
            "sealedBytes": sealed.len(),
        }))?;
    } else {
        output::stdout(&format!(
            "{} file(s) changed, +{} -{}; sealed for {} into {} ({})\njob {}\n",
            summary.files.len(),
            summary.insertions,
            summary.deletions,
            to.node,
            args.output.display(),
            human(sealed.len() as u64),
            record.job,
        ));
    }
    Ok(Outcome::Success)
}

/// Git through ash-sandbox, with no system or global configuration and English messages: over
/// the user's own tree on the plain backend (`ash apply`), or over a tree a peer sent, isolated
/// (`ash pack open`, `ash pack result`): the host read-only, only that tree and ash's git
/// directory writable, no network.
pub(crate) struct SandboxGit {
    sandbox: Sandbox,
    /// Taken only when dropped (see the `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    /// What git may read and what it may write, when isolated.
    fs: FsPolicy,
}

impl Drop for SandboxGit {
    fn drop(&mut self) {
        // A git may be dropped on an async task (a job given up before its diff); a runtime
        // dropped there would panic, so it is let go without waiting.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

impl SandboxGit {
    /// Git over the user's own tree.
    pub(crate) fn own_tree() -> anyhow::Result<Self> {
        Ok(Self {
            sandbox: Sandbox::plain(),
            runtime: Some(current_thread_runtime()?),
            fs: FsPolicy::default(),
        })
    }

    /// Git over a tree a peer sent, isolated by `backend` (never plain): it reads `tree` and
    /// writes only `git_dir`.
    pub(crate) fn isolated(
        backend: ash_sandbox::BackendChoice,
        tree: PathBuf,
        git_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        if backend == ash_sandbox::BackendChoice::Exactly(BackendKind::Plain) {
            bail!(
                "git over a tree a peer sent runs isolated: choose the sandbox auto, native or \
                 bwrap, not plain"
            );
        }
        let runtime = current_thread_runtime()?;
        let sandbox = runtime
            .block_on(Sandbox::new(config::sandbox_config(backend, None)))
            .context("git over a tree a peer sent needs an isolating sandbox")?;
        let mut fs = FsPolicy::default();
        fs.read_only.push(tree);
        fs.writable.push(git_dir);
        Ok(Self { sandbox, runtime: Some(runtime), fs })
    }
}

impl SandboxGit {
    /// Gives `path` to the user sandboxed processes run as.
    pub(crate) fn adopt(&self, path: &Path) -> Result<(), ash_sandbox::SandboxError> {
        self.sandbox.adopt(path)
    }
}

impl Git for SandboxGit {
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String> {
        let mut argv = vec!["git".to_owned()];
        argv.extend(args.iter().cloned());
        let isolated = self.isolated();
        let policy = SandboxPolicy {
            fs: self.fs.clone(),
            limits: SandboxLimits {
                wall_time: std::time::Duration::from_secs(600),
                output_bytes: 64 << 20,
                memory_bytes: isolated.then_some(4 << 30),
                // What `add -A` may write into the git directory.
                disk_bytes: isolated.then_some(8 << 30),
                ..SandboxLimits::default()
            },
            ..SandboxPolicy::default()
        };
        let mut request = ExecRequest::new(argv, cwd.to_path_buf(), policy);
        let mut vars: BTreeMap<String, String> = config::pass_env(&["PATH"]);
        vars.insert("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned());
        vars.insert("GIT_CONFIG_GLOBAL".to_owned(), "/dev/null".to_owned());
        vars.insert("LC_ALL".to_owned(), "C".to_owned());
        vars.extend(env.iter().cloned());
        request.env = vars;
        request.stdin = stdin.to_vec();
        let cancel = tokio_util::sync::CancellationToken::new();
        let runtime = self.runtime.as_ref().ok_or("git was stopped")?;
        let out =
            runtime.block_on(self.sandbox.exec(&request, &cancel)).map_err(|e| e.to_string())?;
        Ok(GitOutput { success: out.status.success(), stdout: out.stdout, stderr: out.stderr })
    }

    fn isolated(&self) -> bool {
        self.sandbox.backend() != ash_sandbox::BackendKind::Plain
    }
}

/// Asks before a patch writes files that run code or change how git treats files; `false` when
/// the person says no. Without a terminal to ask on (or with `--json`) such a patch is refused
/// until `--yes`. A patch the screen refuses is left for `apply` to report.
fn confirm_sensitive(patch: &[u8], json: bool) -> anyhow::Result<bool> {
    let marked: Vec<String> = screen(patch)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| Some(format!("  {}: {}", f.new_path?, f.sensitive?)))
        .collect();
    if marked.is_empty() {
        return Ok(true);
    }
    let list = marked.join("\n");
    let question = format!(
        "the patch writes files that run code or change how git treats files:\n{list}\nwrite them?"
    );
    match if json { None } else { output::confirm(&question)? } {
        Some(answer) => Ok(answer),
        None => bail!(
            "the patch writes files that run code or change how git treats files:\n{list}\n\
             nothing was changed; review them, then pass --yes"
        ),
    }
}

pub(crate) fn apply(args: &ApplyArgs) -> anyhow::Result<Outcome> {
    let mut bytes = Vec::new();
    File::open(&args.patch)
        .and_then(|f| f.take(MAX_DIFF_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", args.patch.display()))?;
    let (patch, sender): (Vec<u8>, Option<NodeId>) = if bytes.starts_with(&SEAL_MAGIC) {
        let identity: Identity = Home::find()?.identity()?;
        let expect = Expect { sender: args.from.as_deref().map(parse_id).transpose()?, job: None };
        let (header, patch) = open_diff(&bytes[..], &identity, expect, MAX_DIFF_BYTES)?;
        (patch, Some(header.sender))
    } else {
        if bytes.len() as u64 > MAX_DIFF_BYTES {
            bail!("{} is larger than 1 GiB", args.patch.display());
        }
        (bytes, None)
    };
    if !args.check && !args.yes && !confirm_sensitive(&patch, args.json)? {
        output::stdout("nothing was changed\n");
        return Ok(Outcome::Failure);
    }
    let options = ApplyOptions { check_only: args.check, three_way: args.three_way };
    // Pre-images of what an apply overwrites are kept here until it is done.
    let journal = config::ash_home()
        .context("cannot find $ASH_HOME or $HOME for the apply journal; set ASH_HOME")?
        .join("apply");
    // A check changes nothing; `apply` refuses it while an interrupted apply is pending.
    let recovered = if args.check { None } else { Some(recover(&journal, &args.into)?) };
    if let Some(done) =
        recovered.as_ref().filter(|d| !d.restored.is_empty() || !d.displaced.is_empty())
    {
        let mut note = format!(
            "an earlier apply into {} was interrupted; {} file(s) were put back as they were",
            args.into.display(),
            done.restored.len()
        );
        if let Some(dir) = &done.kept_in {
            note.push_str(&format!(
                ", and {} file(s) that differed were moved to {}",
                done.displaced.len(),
                dir.display()
            ));
        }
        output::note(&note);
    }
    let git = SandboxGit::own_tree()?;
    match apply_patch(&git, &args.into, &patch, options, &journal) {
        Ok(applied) => {
            if args.json {
                output::json(&json!({
                    "applied": applied.changed,
                    "checked": true,
                    "sender": sender.map(|s| s.to_string()),
                    "files": applied.files,
                    "conflicted": applied.conflicted,
                    "recovered": recovered.as_ref().map(|d| json!({
                        "restored": d.restored,
                        "displaced": d.displaced,
                        "keptIn": d.kept_in,
                    })),
                }))?;
            } else {
                let mut text = String::new();
                for file in &applied.files {
                    let (mark, path) = match (&file.old_path, &file.new_path) {
                        (None, Some(new)) => ("A", new.clone()),
                        (Some(old), None) => ("D", old.clone()),
                        (Some(old), Some(new)) if old != new => ("R", format!("{old} -> {new}")),
                        (_, new) => ("M", new.clone().unwrap_or_default()),
                    };
                    let mode = file
                        .new_mode
                        .as_deref()
                        .map_or_else(String::new, |m| format!(" (mode {m})"));
                    let why = file.sensitive.map_or_else(String::new, |w| format!("  ! {w}"));
                    text.push_str(&format!("  {mark} {path}{mode}{why}\n"));
                }
                let verb = if applied.changed { "applied to" } else { "applies cleanly to" };
                text.push_str(&format!(
                    "{} file(s) {verb} {}\n",
                    applied.files.len(),
                    args.into.display()
                ));
                if !applied.conflicted.is_empty() {
                    text.push_str(&format!(
                        "merged with conflicts (resolve the markers, then `git add`): {}\n",
                        applied.conflicted.join(", ")
                    ));
                }
                output::stdout(&text);
            }
            Ok(if applied.conflicted.is_empty() { Outcome::Success } else { Outcome::Failure })
        }
        Err(DiffError::Conflicts(conflicts)) => {
            if args.json {
                output::json(&json!({ "applied": false, "conflicts": conflicts }))?;
            } else {
                let mut text = String::new();
                for conflict in &conflicts {
                    text.push_str(&format!(
                        "  {}: {}\n",
                        conflict.path,
                        conflict.messages.join("; ")
                    ));
                }
                text.push_str(&format!(
                    "the patch does not apply to {}; nothing was changed ({} file(s) conflict)\n",
                    args.into.display(),
                    conflicts.len()
                ));
                output::stdout(&text);
            }
            Ok(Outcome::Failure)
        }
        Err(e) => Err(e.into()),
    }
}
