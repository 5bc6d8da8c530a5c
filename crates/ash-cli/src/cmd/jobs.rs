//! `ash run` and `ash serve`: the job flow for people. `ash run` asks the network to work on
//! this repository and applies the diff that comes back; `ash serve` runs ash's own coding
//! agent on other people's jobs, in a sandbox.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ash_ledger::Outcome as Decision;
use ash_node::{
    Delivered, GitFactory, JobAgent, JobError, JobEvent, JobSpec, Node, Requested, ServeConfig,
};
use ash_pack::{ApplyOptions, DiffError, Git};
use ash_sandbox::{BackendKind, Sandbox};
use serde_json::json;

use super::Outcome;
use super::ledger::Home;
use super::network;
use super::start::runtime;
use crate::agents::{BuiltinAgent, CliKind};
use crate::cli::{RunArgs, ServeArgs};
use crate::{config, output};

/// The agent kinds a job may ask for.
pub(crate) const AGENT_KINDS: [&str; 3] = ["builtin", "claude", "codex"];

/// `ash serve`: this machine's node, serving jobs.
pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let _writer = home.writer()?;
    let identity = Arc::new(home.identity()?);
    let genesis = home.genesis()?;
    let mut kinds: Vec<&str> = Vec::new();
    for kind in &args.agents {
        if !AGENT_KINDS.contains(&kind.as_str()) {
            bail!("no agent `{kind}`; the agents are {}", AGENT_KINDS.join(", "));
        }
        if !kinds.contains(&kind.as_str()) {
            kinds.push(kind);
        }
    }
    let prices = genesis.price_list();
    for tier in &args.tiers {
        if !prices.contains_key(tier) {
            let known: Vec<&String> = prices.keys().collect();
            bail!(
                "this network has no tier `{tier}`; it prices {}",
                known.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let priced: Vec<String> =
        if args.tiers.is_empty() { prices.keys().cloned().collect() } else { args.tiers.clone() };
    let overrides = tier_models(&args.tier_model)?;
    if kinds.contains(&"builtin") && args.model.is_none() {
        bail!(
            "choose the model the built-in agent runs on: --model openai/gpt-4.1-mini (with OPENAI_API_KEY set or `ash login openai`), or --model scripted for the offline demo (a replayed conversation, labelled as such; scripted:FILE replays your own)"
        );
    }
    let rt = runtime()?;
    let sandbox = rt.block_on(job_sandbox(args.sandbox))?;
    let mut agents = Vec::new();
    for (agent, notes) in rt.block_on(serve_agents(
        &home,
        &kinds,
        args.model.as_deref(),
        &overrides,
        &priced,
        !args.no_routed,
        &sandbox,
    ))? {
        for note in notes {
            output::note(&note);
        }
        agents.push(agent);
    }
    let serve = ServeConfig {
        agents,
        tiers: args.tiers.clone(),
        routed: !args.no_routed,
        max_concurrent: args.max_concurrent.clamp(1, ash_node::MAX_CONCURRENT_JOBS),
        max_jobs: args.jobs,
        max_package_bytes: args.max_package_mb.saturating_mul(1 << 20),
        limits: ash_pack::Limits::default(),
        run_time: Duration::from_secs(args.max_run_minutes.max(1) * 60),
        git: isolated_git(args.sandbox),
    };
    let mut config = network::node_config(&home, &args.node)?;
    config.serve = Some(serve);
    config.info.serving = true;
    config.info.agents = kinds.iter().map(|k| (*k).to_owned()).collect();
    // The mint authority of the network may serve from the same home: its node mints too.
    config.authority = network::home_authority(&home, &genesis);
    drop(rt);
    network::run_node(identity, config, args.node.json, &network::state_file(&home))
}

/// The sandbox jobs run in: an isolating one, or an error that says why not.
pub(crate) async fn job_sandbox(
    backend: ash_sandbox::BackendChoice,
) -> anyhow::Result<Arc<Sandbox>> {
    let sandbox = Sandbox::new(config::sandbox_config(backend, None))
        .await
        .context("preparing the sandbox for jobs (`ash sandbox check` shows what works here)")?;
    if sandbox.backend() == BackendKind::Plain {
        bail!(
            "jobs run other people's code: serving needs an isolating sandbox, and this one is `plain` (`ash sandbox check` shows why)"
        );
    }
    Ok(Arc::new(sandbox))
}

/// The agents of `kinds`, ready to serve in `sandbox`, each with what to tell the person
/// about it. `model` is the built-in agent's; `overrides` the outside agents' models per tier.
pub(crate) async fn serve_agents(
    home: &Home,
    kinds: &[&str],
    model: Option<&str>,
    overrides: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    priced: &[String],
    routed: bool,
    sandbox: &Arc<Sandbox>,
) -> anyhow::Result<Vec<(Arc<dyn JobAgent>, Vec<String>)>> {
    let mut agents: Vec<(Arc<dyn JobAgent>, Vec<String>)> = Vec::new();
    for kind in kinds {
        let mut notes = Vec::new();
        match (*kind, CliKind::from_name(kind)) {
            ("builtin", _) => {
                let model = model.unwrap_or_default();
                let agent_dir = home.dir().join("agents").join("coder");
                super::init::install_coder(&agent_dir)?;
                let builtin = BuiltinAgent::new(&agent_dir, model, Arc::clone(sandbox))?;
                if builtin.scripted {
                    notes.push(format!(
                        "note: the built-in agent replays `{}` offline; no model is called, and requesters see the model named `{}` in the offer",
                        builtin.model_ref, builtin.model_ref
                    ));
                }
                notes.push(format!("agent builtin: {} for every tier", builtin.model_ref));
                agents.push((Arc::new(builtin), notes));
            }
            (_, Some(cli)) => {
                let path = config::process_env().get("PATH").cloned().unwrap_or_default();
                let mine = overrides.get(cli.name()).cloned().unwrap_or_default();
                let (agent, without) =
                    crate::agents::external(cli, &path, &mine, priced, routed, Arc::clone(sandbox))
                        .await?;
                let mut serves: Vec<String> =
                    agent.models().iter().map(|(t, m)| format!("{m} for {t}")).collect();
                if routed {
                    serves.push("routed jobs (the requester's model and key)".into());
                }
                notes.push(format!(
                    "agent {}: {} · {}",
                    cli.name(),
                    agent.version(),
                    serves.join(", ")
                ));
                if let Some(why) = without {
                    notes.push(format!("  only routed jobs: {why}"));
                }
                agents.push((Arc::new(agent), notes));
            }
            _ => {}
        }
    }
    Ok(agents)
}

/// `--tier-model AGENT:TIER=MODEL` values, by agent.
fn tier_models(
    values: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>
{
    let mut out: std::collections::BTreeMap<_, std::collections::BTreeMap<_, _>> =
        std::collections::BTreeMap::new();
    for value in values {
        let parsed = value.split_once(':').and_then(|(agent, rest)| {
            let (tier, model) = rest.split_once('=')?;
            Some((agent, tier, model))
        });
        let Some((agent, tier, model)) = parsed.filter(|(a, t, m)| {
            CliKind::from_name(a).is_some()
                && !t.is_empty()
                && !m.is_empty()
                && m.len() <= ash_protocol::MAX_JOB_NAME
        }) else {
            bail!(
                "--tier-model {value}: expected AGENT:TIER=MODEL with AGENT claude or codex (e.g. claude:opus=claude-opus-4-8)"
            );
        };
        out.entry(agent.to_owned()).or_default().insert(tier.to_owned(), model.to_owned());
    }
    Ok(out)
}

/// Git for the baselines and diffs of jobs served.
pub(crate) fn isolated_git(backend: ash_sandbox::BackendChoice) -> Arc<dyn GitFactory> {
    Arc::new(IsolatedGit { backend })
}

/// Git over a job's tree, isolated (`ash pack`'s git).
struct IsolatedGit {
    backend: ash_sandbox::BackendChoice,
}

impl GitFactory for IsolatedGit {
    fn for_tree(&self, tree: &Path, git_dir: &Path) -> Result<Box<dyn Git + Send>, String> {
        let git = super::pack::SandboxGit::isolated(
            self.backend,
            tree.to_path_buf(),
            git_dir.to_path_buf(),
        )
        .map_err(|e| format!("{e:#}"))?;
        // The tree and the git directory belong to the user sandboxed processes run as (the
        // agent's tools write the tree; git writes its directory).
        git.adopt(tree).map_err(|e| e.to_string())?;
        git.adopt(git_dir).map_err(|e| e.to_string())?;
        Ok(Box::new(git))
    }
}

/// `ash run`: asks the network to work on this repository.
pub(crate) fn run(args: &RunArgs) -> anyhow::Result<Outcome> {
    use std::io::IsTerminal as _;
    let interactive = std::io::stdin().is_terminal() && !args.json;
    if !args.yes && !args.no_apply && !interactive {
        bail!(
            "no terminal to ask whether to apply the result on: pass --yes (apply it and pay the full price) or --no-apply (keep the tree as it is and pay half)"
        );
    }
    for kind in &args.agents {
        if !AGENT_KINDS.contains(&kind.as_str()) {
            bail!("no agent `{kind}`; the agents are {}", AGENT_KINDS.join(", "));
        }
    }
    let home = Home::find()?;
    let _writer = home.writer()?;
    let identity = Arc::new(home.identity()?);
    if let Some(job) = &args.resume {
        return resume(args, &home, identity, job);
    }
    let prompt = args.prompt.clone().unwrap_or_default();
    let repo =
        args.dir.canonicalize().with_context(|| format!("resolving {}", args.dir.display()))?;
    let walk = packed_walk(&repo, args.allow_secrets)?;
    let routed = if args.route { Some(routing(args)?) } else { None };
    let tier = match (&args.tier, &routed) {
        (Some(tier), None) => tier.clone(),
        (Some(_), Some(_)) => bail!(
            "--route pays for machine time (the `{}` tier); leave --tier out",
            ash_protocol::MACHINE_TIER
        ),
        (None, Some(_)) => ash_protocol::MACHINE_TIER.to_owned(),
        (None, None) => chosen_tier(&home),
    };
    let node_config = requester_node(&home, args)?;
    let spec = JobSpec {
        prompt,
        title: None,
        tier,
        agents: args.agents.clone(),
        max_price: args.max_price,
        walk,
        pack: ash_pack::PackOptions { allow_secrets: args.allow_secrets, ..Default::default() },
        offer_time: args.wait,
        choose_after: Duration::from_millis(300),
        run_time: Duration::from_secs(args.max_run_minutes.max(1) * 60),
        repo: Some(repo.clone()),
        routed,
    };
    follow(args, &home, identity, node_config, &repo, |jobs, events| {
        Box::pin(async move { jobs.request(spec, events).await })
    })
}

/// The repository's files as a job packs them; refused when they look like they carry
/// secrets, unless `allow_secrets`.
pub(crate) fn packed_walk(repo: &Path, allow_secrets: bool) -> anyhow::Result<ash_pack::Walk> {
    let walk = super::pack::walk_dir(repo)?;
    let findings = ash_pack::scan(&walk)?;
    if !findings.is_empty() && !allow_secrets {
        let list: Vec<String> = findings
            .iter()
            .map(|f| format!("  {}:{}: {} ({})", f.path, f.line, f.rule, f.preview))
            .collect();
        bail!(
            "the package would carry what looks like secrets:\n{}\nnothing was sent; add them to .gitignore or .ashignore, or pass --allow-secrets",
            list.join("\n")
        );
    }
    Ok(walk)
}

/// `ash run --route`: this machine's provider answers the agent's model calls.
fn routing(args: &RunArgs) -> anyhow::Result<ash_node::Routing> {
    let [agent] = args.agents.as_slice() else {
        bail!("--route takes one --agent: its model calls must speak one provider's API");
    };
    let model = match (args.model.as_deref(), agent.as_str()) {
        (Some(model), _) => model.to_owned(),
        (None, "claude") => "anthropic/claude-sonnet-4-5".to_owned(),
        (None, "codex") => "openai/gpt-5.5".to_owned(),
        (None, _) => {
            bail!("--route with the {agent} agent: name the model with --model PROVIDER/MODEL")
        }
    };
    let model =
        ash_spec::ModelRef::parse(&model).map_err(|e| anyhow::anyhow!("--model {model}: {e}"))?;
    let provider = crate::agents::provider(model.provider())?;
    if let Err(why) = crate::agents::key_source(&provider) {
        bail!("--route answers with your own key: {why}");
    }
    let api = crate::agents::family(provider.api);
    let fits = match agent.as_str() {
        "claude" => api == "anthropic",
        "codex" => api == "openai",
        _ => true,
    };
    if !fits {
        bail!("the {agent} agent cannot call {} (an {api} provider)", model.provider());
    }
    Ok(ash_node::Routing {
        provider_name: model.provider().to_owned(),
        api: api.to_owned(),
        model: model.model().to_owned(),
        max_calls: args.max_calls,
        max_tokens: args.max_tokens,
        provider: Arc::new(crate::agents::OwnProvider::new(&provider)?),
    })
}

/// `ash run --resume JOB`: the job's node, and the same steps as a new job from where it was.
fn resume(
    args: &RunArgs,
    home: &Home,
    identity: Arc<ash_identity::Identity>,
    job: &str,
) -> anyhow::Result<Outcome> {
    let node_config = requester_node(home, args)?;
    let (repo, provider) = recorded(home, job)?;
    let job = job.to_owned();
    follow(args, home, identity, node_config, &repo, move |jobs, events| {
        Box::pin(async move { jobs.resume(&job, provider, events).await })
    })
}

/// The repository a job asked for from this home came from, and the provider that answers
/// its model calls if it is routed.
pub(crate) fn recorded(
    home: &Home,
    job: &str,
) -> anyhow::Result<(PathBuf, Option<Arc<dyn ash_node::ModelProvider>>)> {
    let db = ash_store::JobsDb::open(&home.jobs_dir().join("jobs.db"))?;
    let row = db.get(job, "requester")?;
    drop(db);
    let record = row.and_then(|r| serde_json::from_str::<serde_json::Value>(&r.record).ok());
    let repo = record.as_ref().and_then(|r| r["repo"].as_str().map(PathBuf::from));
    let Some(repo) = repo else {
        bail!("no job {job} was asked for from this home (`ash jobs` lists them)");
    };
    // A routed job's calls are answered again by the provider it named.
    let routed = record
        .as_ref()
        .and_then(|r| serde_json::from_value::<ash_node::RoutedRecord>(r["routed"].clone()).ok());
    let provider: Option<Arc<dyn ash_node::ModelProvider>> = match routed {
        Some(routed) => {
            let provider = crate::agents::provider(&routed.provider)?;
            if let Err(why) = crate::agents::key_source(&provider) {
                bail!("job {job} is routed and its calls are answered with your key: {why}");
            }
            Some(Arc::new(crate::agents::OwnProvider::new(&provider)?))
        }
        None => None,
    };
    Ok((repo, provider))
}

/// The node `ash run` starts: any free port, this home's writer (it reserves and decides).
fn requester_node(home: &Home, args: &RunArgs) -> anyhow::Result<ash_node::NodeConfig> {
    let listen = network::listen_addresses(&[], 0);
    let mut config = network::config(home, listen, &args.bootstrap, !args.no_mdns)?;
    config.writer = true;
    Ok(config)
}

type Ask = Pin<Box<dyn Future<Output = Result<Requested, JobError>> + Send>>;

/// Starts the node, asks for (or resumes) the job, shows its progress, then its result and
/// the decision.
fn follow(
    args: &RunArgs,
    home: &Home,
    identity: Arc<ash_identity::Identity>,
    node_config: ash_node::NodeConfig,
    repo: &Path,
    ask: impl FnOnce(Arc<ash_node::Jobs>, tokio::sync::mpsc::Sender<JobEvent>) -> Ask,
) -> anyhow::Result<Outcome> {
    let json = args.json;
    runtime()?.block_on(async {
        let node = Node::start(identity, node_config).context("starting the network node")?;
        let jobs = node.jobs();
        let (events, mut receiver) = tokio::sync::mpsc::channel(256);
        // The job's id, once announced: an interrupted `ash run` says how to take it up again.
        let current: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let seen = Arc::clone(&current);
        let printer = tokio::spawn(async move {
            use std::io::IsTerminal as _;
            let terminal = std::io::stderr().is_terminal();
            while let Some(event) = receiver.recv().await {
                if let JobEvent::Asked { job } | JobEvent::Announced { job, .. } = &event {
                    *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(job.clone());
                }
                if json {
                    continue;
                }
                match event {
                    // A bar on a terminal; elsewhere only the end.
                    JobEvent::Uploaded { sent, total } => {
                        if terminal {
                            output::note_partial(&format!("\r{}", bar("uploading", sent, total)));
                        }
                        if sent >= total {
                            if terminal {
                                output::note_partial("\r");
                            }
                            output::note(&format!(
                                "uploaded ({}); running…",
                                super::pack::human(total)
                            ));
                        }
                    }
                    other => progress_line(&other),
                }
            }
        });
        let requested = tokio::select! {
            requested = ask(Arc::clone(&jobs), events) => requested,
            () = super::start::shutdown_signal() => {
                let job = current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                // A reservation being written is written (and recorded) before the node stops.
                let state = match &job {
                    Some(job) => jobs.abandon(job).await.ok(),
                    None => None,
                };
                node.stop().await;
                match (job, state) {
                    (Some(_), Some(ash_node::Abandoned::NothingReserved)) | (None, _) => {
                        bail!("interrupted before an acceptor was chosen; nothing was reserved")
                    }
                    (Some(job), _) => bail!(
                        "interrupted; `ash run --resume {job}` takes the job up again (a reservation made is released after its deadline otherwise)"
                    ),
                }
            }
        };
        let _ = printer.await;
        let outcome = match requested {
            Err(e) => {
                node.stop().await;
                // The job ran and ended without a result (exit 1); the node or this machine
                // failing is an error (exit 2).
                let ended = !matches!(e, JobError::Node(_) | JobError::Local(_));
                if json {
                    output::json(&json!({ "state": "failed", "error": e.to_string() }))?;
                }
                if !ended {
                    return Err(e.into());
                }
                if !json {
                    output::note(&format!("error: {e}"));
                }
                return Ok(Outcome::Failure);
            }
            Ok(Requested::Cancelled { job, reason }) => {
                if json {
                    output::json(
                        &json!({ "job": job, "state": "cancelled", "reason": reason, "paid": 0 }),
                    )?;
                } else {
                    output::note(&format!(
                        "the acceptor gave the job up: {reason}; nothing was charged"
                    ));
                }
                Outcome::Failure
            }
            Ok(Requested::Delivered(delivered)) => {
                decide(&jobs, &delivered, repo, args, home).await?
            }
        };
        node.stop().await;
        Ok(outcome)
    })
}

/// Shows the result, applies it (or not) and writes the decision.
async fn decide(
    jobs: &ash_node::Jobs,
    delivered: &Delivered,
    repo: &Path,
    args: &RunArgs,
    home: &Home,
) -> anyhow::Result<Outcome> {
    let json = args.json;
    if !json {
        let mut text = String::new();
        for file in &delivered.files {
            let path = file.new_path.clone().or_else(|| file.old_path.clone()).unwrap_or_default();
            let why = file.sensitive.map_or_else(String::new, |w| format!("  ! {w}"));
            text.push_str(&format!("  {path}{why}\n"));
        }
        output::note(text.trim_end());
        if !delivered.summary.message.is_empty() {
            output::note(&format!("agent: {}", delivered.summary.message));
        }
        if let Some(why) = &delivered.mismatch {
            output::note(&format!(
                "the result is not what was agreed: {why}; it is rejected (half the price) and not applied"
            ));
        }
    }
    let price = delivered.price;
    let half = price / 2;
    // A result that ran another model than the terms name is grounds to reject: not applied.
    let apply = if delivered.mismatch.is_some() {
        false
    } else if args.yes {
        true
    } else if args.no_apply {
        false
    } else {
        let question = format!("Apply? (y={price}cr · n={half}cr · 60s = {half}cr)");
        output::ask_within(&question, Duration::from_secs(60)).unwrap_or(false)
    };
    let mut applied_files = 0usize;
    let mut conflicts = Vec::new();
    let decision = if apply {
        match apply_result(home, repo, &delivered.patch).await? {
            Ok(files) => {
                applied_files = files;
                Decision::Accept
            }
            Err(found) => {
                for conflict in &found {
                    if !json {
                        output::note(&format!(
                            "  {}: {}",
                            conflict.path,
                            conflict.messages.join("; ")
                        ));
                    }
                }
                if !json {
                    output::note(&format!(
                        "the result does not apply to {} ({} file(s) conflict); nothing was changed, and it is rejected (half the price)",
                        repo.display(),
                        found.len()
                    ));
                }
                conflicts = found;
                Decision::Reject
            }
        }
    } else {
        Decision::Reject
    };
    let settled = jobs.decide(&delivered.job, decision).await?;
    let balance = jobs.balance();
    let summary = &delivered.summary;
    if json {
        output::json(&json!({
            "job": delivered.job,
            "acceptor": delivered.acceptor.to_string(),
            "state": "decided",
            "outcome": match settled.outcome { Decision::Accept => "accept", Decision::Reject => "reject" },
            "applied": matches!(settled.outcome, Decision::Accept),
            "files": summary.files,
            "insertions": summary.insertions,
            "deletions": summary.deletions,
            "conflicts": conflicts.iter().map(|c| c.path.clone()).collect::<Vec<_>>(),
            "message": summary.message,
            "models": delivered.manifest.models,
            "mismatch": delivered.mismatch,
            "paid": settled.paid,
            "balance": balance,
        }))?;
    } else {
        let what = match settled.outcome {
            Decision::Accept => format!("applied {applied_files} file(s) to {}", repo.display()),
            Decision::Reject => "not applied".to_owned(),
        };
        output::note(&format!("{what}; paid {} credits; balance {balance}", settled.paid));
    }
    Ok(if conflicts.is_empty() && delivered.mismatch.is_none() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// Applies a delivered patch to `repo` (journaled: an interrupted apply is rolled back first):
/// the number of files applied, or the conflicts, with nothing changed.
pub(crate) async fn apply_result(
    home: &Home,
    repo: &Path,
    patch: &[u8],
) -> anyhow::Result<Result<usize, Vec<ash_pack::Conflict>>> {
    let journal = home.dir().join("apply");
    let patch = patch.to_vec();
    let target = repo.to_path_buf();
    let applied = tokio::task::spawn_blocking(move || {
        ash_pack::recover(&journal, &target)?;
        let git =
            super::pack::SandboxGit::own_tree().map_err(|e| DiffError::Spawn(e.to_string()))?;
        let options = ApplyOptions { check_only: false, three_way: false };
        ash_pack::apply(&git, &target, &patch, options, &journal)
    })
    .await
    .context("applying the result")?;
    match applied {
        Ok(applied) => Ok(Ok(applied.files.len())),
        Err(DiffError::Conflicts(found)) => Ok(Err(found)),
        Err(e) => Err(e).context("applying the result"),
    }
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
pub(crate) fn cut_text(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `what [#####     ] 12.3 MiB / 45.6 MiB`.
fn bar(what: &str, done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let filled = usize::try_from(filled).unwrap_or(0);
    format!(
        "{what} [{}{}] {} / {}",
        "#".repeat(filled),
        " ".repeat(30 - filled.min(30)),
        super::pack::human(done),
        super::pack::human(total)
    )
}

/// One progress line on stderr, as the system we follow printed them.
fn progress_line(event: &JobEvent) {
    let line = match event {
        JobEvent::Asked { .. } => return,
        JobEvent::Announced { job, price } => format!("announced job {job} ({price} credits)…"),
        JobEvent::Matched(offer) => format!(
            "matched {} ({} agent, {}, sandbox {})",
            offer.acceptor.short(),
            offer.agent,
            offer.model,
            offer.sandbox
        ),
        JobEvent::Packing { entries, bytes } => {
            format!(
                "packaging {} ({})…",
                plural(*entries, "entry", "entries"),
                super::pack::human(*bytes)
            )
        }
        JobEvent::Uploaded { sent, total } => bar("uploading", *sent, *total),
        JobEvent::Packed { bytes, entries } => {
            format!(
                "packaged ({}, {})",
                super::pack::human(*bytes),
                plural(*entries, "entry", "entries")
            )
        }
        JobEvent::Reserved { amount } => format!("reserved {amount} credits"),
        JobEvent::Assigned => "sending the package…".to_owned(),
        JobEvent::Step(step) => format!("  {}", step.text),
        JobEvent::Received(summary) => format!(
            "{} file{} changed +{} / -{}",
            summary.files,
            if summary.files == 1 { "" } else { "s" },
            summary.insertions,
            summary.deletions
        ),
    };
    output::note(&line);
}

/// `ash jobs`: the jobs of this home, both sides.
pub(crate) fn list(args: &crate::cli::JsonArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let db = ash_store::JobsDb::open(&home.jobs_dir().join("jobs.db"))?;
    let rows = db.list(None, 1000)?;
    let mut listed = Vec::new();
    for row in rows {
        let record: serde_json::Value = serde_json::from_str(&row.record).unwrap_or_default();
        let (other, money) = if row.side == "requester" {
            (record["acceptor"].clone(), record["paid"].clone())
        } else {
            (record["requester"].clone(), record["collected"].clone())
        };
        listed.push(json!({
            "job": row.id,
            "side": if row.side == "requester" { "asked" } else { "ran" },
            "state": row.state,
            "tier": record["tier"],
            "price": record["price"],
            "credits": money,
            "peer": other,
            "title": record["title"],
            "reason": record["reason"],
            "created": row.created,
        }));
    }
    if args.json {
        output::json(&json!({ "jobs": listed }))?;
        return Ok(Outcome::Success);
    }
    if listed.is_empty() {
        output::stdout("no jobs yet: `ash run PROMPT` asks for one, `ash serve` runs them\n");
        return Ok(Outcome::Success);
    }
    let mut text = String::new();
    for job in &listed {
        let credits = job["credits"].as_u64().map_or_else(String::new, |c| format!(" · {c}cr"));
        let peer = job["peer"]
            .as_str()
            .map_or_else(String::new, |p| format!(" · {}", &p[..p.len().min(12)]));
        let title = job["title"].as_str().map_or_else(String::new, |t| format!(" · {t}"));
        text.push_str(&format!(
            "{} {:5} {:10} {} {}cr{credits}{peer}{title}\n",
            job["job"].as_str().unwrap_or_default(),
            job["side"].as_str().unwrap_or_default(),
            job["state"].as_str().unwrap_or_default(),
            job["tier"].as_str().unwrap_or_default(),
            job["price"].as_u64().unwrap_or_default(),
        ));
    }
    output::stdout(&text);
    Ok(Outcome::Success)
}

/// Where `ash set` keeps the tier.
const TIER_FILE: &str = "tier";

/// The tier `ash set` chose, else `sonnet`.
pub(crate) fn chosen_tier(home: &Home) -> String {
    std::fs::read_to_string(home.dir().join(TIER_FILE))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "sonnet".to_owned())
}

/// Chooses the tier jobs pay for (`claude-opus` means `opus`), remembered in this home: the
/// tier and its price.
pub(crate) fn set_tier(home: &Home, asked: &str) -> anyhow::Result<(String, u64)> {
    let genesis = home.genesis()?;
    let lower = asked.to_ascii_lowercase();
    let tier = lower.strip_prefix("claude-").unwrap_or(&lower).to_owned();
    let prices = genesis.price_list();
    let Some(price) = prices.get(&tier).copied() else {
        let known: Vec<&str> = prices.keys().map(String::as_str).collect();
        bail!("unknown tier `{asked}`; this network prices {}", known.join(", "));
    };
    std::fs::write(home.dir().join(TIER_FILE), format!("{tier}\n"))
        .with_context(|| format!("writing {}", home.dir().join(TIER_FILE).display()))?;
    Ok((tier, price))
}

/// `ash set TIER`.
pub(crate) fn set(args: &crate::cli::SetArgs) -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    let (tier, price) = set_tier(&home, &args.tier)?;
    output::stdout(&format!("model: {tier} ({price}cr/task)\n"));
    Ok(Outcome::Success)
}
