//! `ash` alone, in a terminal: the full-screen TUI (`ash-tui`) over this home's node. This
//! module carries out what the screen asks on the node's handles — the same calls `ash run`,
//! `ash serve`, `ash status`, `ash history`, `ash peers`, `ash set` and `ash login` make — and
//! tells the screen what happened. Logs go to `$ASH_HOME/logs/tui.log` while the screen owns
//! the terminal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ash_ledger::Outcome as Decision;
use ash_node::{
    AcceptorState, Delivered, JobError, JobEvent, JobSpec, Jobs, Node, NodeEvent, Requested,
    RequesterState, ServeConfig,
};
use ash_tui::{Action, Delivery, DiffFile, JobUpdate, ServePanel, Session, Tone, Update};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Outcome;
use super::jobs::{AGENT_KINDS, chosen_tier};
use super::ledger::Home;
use super::network;
use super::start::runtime;
use crate::{agents, config, output};

/// How long the apply prompt waits before it answers no (half the price), as `ash run`,
/// unless `[tui] decide_seconds` says otherwise.
const DECIDE_WITHIN: Duration = Duration::from_secs(60);
/// How long a job waits for a first offer.
const OFFER_TIME: Duration = Duration::from_secs(60);
/// The longest agent run asked for.
const RUN_TIME: Duration = Duration::from_secs(30 * 60);
/// Where the prompt history is kept, in the home.
const HISTORY_FILE: &str = "tui-history";
/// Where the built-in agent's model for `/serve` is remembered.
const SERVE_MODEL_FILE: &str = "serve-model";
/// Updates queued for the screen at most.
const UPDATES: usize = 1024;

/// Opens the TUI on this home.
pub(crate) fn open() -> anyhow::Result<Outcome> {
    let home = Home::find()?;
    // What cannot work is said before the terminal is taken.
    let identity = Arc::new(home.identity()?);
    let _writer = home.writer()?;
    let genesis = home.genesis()?;
    let log = log_to_file(&home)?;
    let repo = config::current_dir()?;
    let tier = chosen_tier(&home);
    let username = home.ledger()?.account(identity.node_id())?.and_then(|a| a.username);
    let session = Session {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        identity: identity.node_id().short(),
        username,
        directory: config::display_path(&repo),
        price: genesis.price(&tier),
        tier,
        agents: "any agent".to_owned(),
        color: config::color(),
        decide_within: config::user_config()?
            .0
            .decide_seconds
            .map_or(DECIDE_WITHIN, Duration::from_secs),
        history: read_history(&home),
    };
    let mut node_config = network::config(&home, network::listen_addresses(&[], 0), &[], true)?;
    node_config.writer = true;
    // The network's mint authority may use the screen from its own home: it mints as it runs.
    node_config.authority = network::home_authority(&home, &genesis);
    let rt = runtime()?;
    let history = rt.block_on(async {
        let node =
            Node::start(Arc::clone(&identity), node_config).context("starting the network node")?;
        let (actions_tx, actions) = mpsc::channel(64);
        let (updates, updates_rx) = mpsc::channel(UPDATES);
        let app = ash_tui::App::new(session, Instant::now());
        let screen = tokio::spawn(ash_tui::run(app, actions_tx, updates_rx));
        let mut driver = Driver::new(home, repo, node.jobs(), node.net().clone(), updates);
        driver.run(node, actions).await;
        drop(driver);
        screen.await.context("the screen stopped")?.map_err(anyhow::Error::from)
    });
    drop(rt);
    match history {
        Ok(history) => {
            write_history(&config::ash_home().unwrap_or_default(), &history);
            output::note(&format!("logs of this session: {}", log.display()));
            Ok(Outcome::Success)
        }
        Err(e) => Err(e.context(format!("the TUI stopped (logs: {})", log.display()))),
    }
}

/// Sends tracing to `$ASH_HOME/logs/tui.log` (the screen owns stderr).
fn log_to_file(home: &Home) -> anyhow::Result<PathBuf> {
    let dir = home.dir().join("logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("tui.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    super::start::init_logging_to(tracing::Level::INFO, std::sync::Mutex::new(file));
    Ok(path)
}

/// The prompt history kept in the home: one JSON string per line, newest last.
fn read_history(home: &Home) -> Vec<String> {
    std::fs::read_to_string(home.dir().join(HISTORY_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<String>(l).ok())
        .collect()
}

fn write_history(dir: &Path, history: &[String]) {
    let text: String =
        history.iter().filter_map(|h| serde_json::to_string(h).ok()).map(|l| l + "\n").collect();
    let _ = std::fs::write(dir.join(HISTORY_FILE), text);
}

/// The job in focus, as this process follows it.
struct Asked {
    task: JoinHandle<Result<Requested, JobError>>,
    job: Option<String>,
    reserved: bool,
    repo: PathBuf,
}

/// What the node does for the screen.
struct Driver {
    home: Home,
    repo: PathBuf,
    jobs: Arc<Jobs>,
    net: ash_net::NetHandle,
    updates: mpsc::Sender<Update>,
    asked: Option<Asked>,
    events_tx: mpsc::Sender<JobEvent>,
    events: mpsc::Receiver<JobEvent>,
    /// Results waiting for the decision, and the repository each goes to.
    delivered: HashMap<String, (Box<Delivered>, PathBuf)>,
    /// Since when this screen serves (ms), for the panel's earnings.
    serving_since: Option<u64>,
    serving_agents: String,
    serving_max: Option<u64>,
    /// What `ash status` in another terminal reads of this node.
    state: network::NodeState,
    state_path: PathBuf,
}

impl Driver {
    fn new(
        home: Home,
        repo: PathBuf,
        jobs: Arc<Jobs>,
        net: ash_net::NetHandle,
        updates: mpsc::Sender<Update>,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(256);
        let state_path = network::state_file(&home);
        Self {
            home,
            repo,
            jobs,
            net,
            updates,
            asked: None,
            events_tx,
            events,
            delivered: HashMap::new(),
            serving_since: None,
            serving_agents: String::new(),
            serving_max: None,
            state: network::NodeState::now(),
            state_path,
        }
    }

    async fn say(&self, update: Update) {
        let _ = self.updates.send(update).await;
    }

    async fn lines(&self, tone: Tone, text: impl Into<String>) {
        let text = text.into();
        self.say(Update::Lines(vec![(tone, text.trim_end().to_owned())])).await;
    }

    async fn run(&mut self, mut node: Node, mut actions: mpsc::Receiver<Action>) {
        if let Some(dir) = self.state_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        network::write_state(&self.state_path, &self.state);
        self.take_up_unfinished().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let finished = async {
                match &mut self.asked {
                    Some(asked) => Some((&mut asked.task).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                action = actions.recv() => match action {
                    Some(Action::Quit) | None => break,
                    Some(action) => self.act(action).await,
                },
                Some(event) = node.next_event() => self.node_event(event).await,
                Some(event) = self.events.recv() => self.job_event(event).await,
                Some(done) = finished => {
                    let asked = self.asked.take();
                    self.finished(done, asked).await;
                }
                _ = tick.tick() => self.refresh().await,
                Some(()) = async { match &mut hangup { Some(h) => h.recv().await, None => std::future::pending().await } } => break,
            }
        }
        if let Some(asked) = self.asked.take() {
            asked.task.abort();
        }
        node.stop().await;
    }

    /// The newest job asked for here that a result may still come back for is followed again.
    async fn take_up_unfinished(&mut self) {
        let Ok(records) = self.jobs.requested().await else { return };
        let open: Vec<_> = records
            .into_iter()
            .filter(|r| {
                matches!(
                    r.state,
                    RequesterState::Reserved | RequesterState::Running | RequesterState::Received
                )
            })
            .collect();
        let Some(newest) = open.first() else { return };
        for other in &open[1..] {
            self.lines(
                Tone::Dim,
                format!("job {} is unfinished too: `ash run --resume {}`", other.job, other.job),
            )
            .await;
        }
        let (repo, provider) = match super::jobs::recorded(&self.home, &newest.job) {
            Ok(found) => found,
            Err(e) => {
                self.lines(Tone::Bad, format!("job {}: {e:#}", newest.job)).await;
                return;
            }
        };
        self.say(Update::Job(JobUpdate::Resumed {
            job: newest.job.clone(),
            title: newest.title.clone(),
        }))
        .await;
        let (jobs, job, events) =
            (Arc::clone(&self.jobs), newest.job.clone(), self.events_tx.clone());
        let task = tokio::spawn(async move { jobs.resume(&job, provider, events).await });
        self.asked = Some(Asked { task, job: Some(newest.job.clone()), reserved: true, repo });
    }

    async fn act(&mut self, action: Action) {
        let net = self.net.clone();
        match action {
            Action::Ask(prompt) => self.ask(prompt).await,
            Action::Cancel => self.cancel().await,
            Action::Decide { job, apply } => self.decide(&job, apply).await,
            Action::Serve { max_jobs, model } => self.serve(max_jobs, model).await,
            Action::StopServing => {
                self.jobs.stop_serving();
                self.lines(Tone::Dim, "─── serving stops after the jobs taken ───").await;
                self.refresh().await;
            }
            Action::Status => {
                let peers = net.peers().await.map(|p| p.len()).unwrap_or(0);
                let serving = if self.jobs.offering() { ", serving jobs" } else { "" };
                let node = format!("node: this screen, {peers} peer(s) connected{serving}");
                match super::ledger::own_status_text(&self.home, &node) {
                    Ok(text) => self.lines(Tone::Plain, text.trim_matches('\n')).await,
                    Err(e) => self.lines(Tone::Bad, format!("{e:#}")).await,
                }
            }
            Action::History(who) => {
                let text = (|| {
                    let id = match &who {
                        Some(text) => super::ledger::parse_id(text)?,
                        None => self.home.identity()?.node_id(),
                    };
                    super::ledger::history_text(&self.home.ledger()?, &self.home.genesis()?, id)
                })();
                match text {
                    Ok(text) => self.lines(Tone::Plain, text).await,
                    Err(e) => self.lines(Tone::Bad, format!("{e:#}")).await,
                }
            }
            Action::Peers => match net.peers().await {
                Ok(peers) if peers.is_empty() => {
                    self.lines(Tone::Dim, "no peers connected yet").await;
                }
                Ok(peers) => {
                    let mut text = format!("{} peer(s)", peers.len());
                    for p in peers {
                        let rtt =
                            p.rtt.map_or_else(String::new, |r| format!(" · {} ms", r.as_millis()));
                        let how = if p.relayed { " · relayed" } else { "" };
                        text.push_str(&format!("\n  {}{rtt}{how}", p.node));
                    }
                    self.lines(Tone::Plain, text).await;
                }
                Err(e) => self.lines(Tone::Bad, e.to_string()).await,
            },
            Action::Model(None) => match self.home.genesis() {
                Ok(genesis) => {
                    let mine = chosen_tier(&self.home);
                    let mut text = String::from("tiers (/model TIER switches):");
                    for (tier, price) in genesis.price_list() {
                        let here = if tier == mine { "  ← jobs pay for this" } else { "" };
                        text.push_str(&format!("\n  {tier:<10} {price}cr/job{here}"));
                    }
                    self.lines(Tone::Plain, text).await;
                }
                Err(e) => self.lines(Tone::Bad, format!("{e:#}")).await,
            },
            Action::Model(Some(tier)) => match super::jobs::set_tier(&self.home, &tier) {
                Ok((tier, price)) => {
                    self.lines(Tone::Good, format!("model: {tier} ({price}cr/job)")).await;
                    self.say(Update::Tier { tier, price: Some(price) }).await;
                }
                Err(e) => self.lines(Tone::Bad, format!("{e:#}")).await,
            },
            Action::Login(None) => {
                let mut text = agents::keys::key_states(self.home.dir()).join("\n");
                text.push_str("\n/login PROVIDER stores a key (anthropic, openai, claude, codex)");
                self.lines(Tone::Plain, text).await;
            }
            Action::Login(Some(target)) => match agents::keys::login_provider(&target) {
                Ok((provider, _)) => match agents::keys::signed_in_only(provider) {
                    Some(why) => self.lines(Tone::Bad, why).await,
                    None => {
                        self.say(Update::AskSecret {
                            target: provider.to_owned(),
                            hint: "paste the API key".to_owned(),
                        })
                        .await;
                    }
                },
                Err(e) => self.lines(Tone::Bad, format!("{e:#}")).await,
            },
            Action::LoginKey { target, key } => {
                let stored = async {
                    let key = agents::keys::key_form(&target, &key)?;
                    agents::keys::check_configured(&target, &key).await?;
                    agents::keys::store(self.home.dir(), &target, &key)
                };
                match stored.await {
                    Ok(path) => {
                        let text = format!(
                            "{target} key stored in {} (checked with the provider)",
                            path.display()
                        );
                        self.lines(Tone::Good, text).await;
                    }
                    Err(e) => {
                        self.lines(Tone::Bad, format!("{target}: {e:#}; nothing stored")).await
                    }
                }
            }
            Action::Quit => {}
        }
    }

    async fn ask(&mut self, prompt: String) {
        if self.asked.is_some() {
            self.lines(Tone::Warn, "a job is already in flight").await;
            return;
        }
        let repo = self.repo.clone();
        let walked = {
            let repo = repo.clone();
            tokio::task::spawn_blocking(move || super::jobs::packed_walk(&repo, false)).await
        };
        let walk = match walked {
            Ok(Ok(walk)) => walk,
            Ok(Err(e)) => return self.end(Tone::Bad, format!("{e:#}")).await,
            Err(e) => return self.end(Tone::Bad, e.to_string()).await,
        };
        let spec = JobSpec {
            prompt,
            tier: chosen_tier(&self.home),
            agents: AGENT_KINDS.iter().map(|k| (*k).to_owned()).collect(),
            max_price: None,
            walk,
            pack: ash_pack::PackOptions::default(),
            offer_time: OFFER_TIME,
            choose_after: Duration::from_millis(300),
            run_time: RUN_TIME,
            repo: Some(repo.clone()),
            routed: None,
        };
        let (jobs, events) = (Arc::clone(&self.jobs), self.events_tx.clone());
        let task = tokio::spawn(async move { jobs.request(spec, events).await });
        self.asked = Some(Asked { task, job: None, reserved: false, repo });
    }

    async fn end(&self, tone: Tone, message: String) {
        self.say(Update::Job(JobUpdate::Ended { tone, message })).await;
    }

    async fn cancel(&mut self) {
        let Some(asked) = self.asked.take() else { return };
        asked.task.abort();
        let message = match (&asked.job, asked.reserved) {
            (Some(job), true) => format!(
                "stopped following job {job}: its reservation is held until the acceptor gives it up or its deadline passes; when ash starts again it takes the job up (`ash run --resume {job}` too)"
            ),
            _ => "cancelled before an acceptor was chosen · nothing was charged".to_owned(),
        };
        self.end(Tone::Dim, message).await;
    }

    async fn job_event(&mut self, event: JobEvent) {
        let update = match event {
            JobEvent::Announced { job, price } => {
                if let Some(asked) = &mut self.asked {
                    asked.job = Some(job.clone());
                }
                JobUpdate::Announced { job, price }
            }
            JobEvent::Matched(offer) => JobUpdate::Matched {
                acceptor: offer.acceptor.short(),
                agent: offer.agent,
                model: offer.model,
            },
            JobEvent::Packing { entries, bytes } => JobUpdate::Packing { entries, bytes },
            JobEvent::Packed { bytes, .. } => JobUpdate::Packed { bytes },
            JobEvent::Reserved { amount } => {
                if let Some(asked) = &mut self.asked {
                    asked.reserved = true;
                }
                JobUpdate::Reserved { amount }
            }
            JobEvent::Assigned => return,
            JobEvent::Uploaded { sent, total } => JobUpdate::Uploading { sent, total },
            JobEvent::Step(step) => JobUpdate::Step(step.text),
            JobEvent::Received(summary) => JobUpdate::Received {
                files: summary.files,
                insertions: summary.insertions,
                deletions: summary.deletions,
            },
        };
        self.say(Update::Job(update)).await;
    }

    async fn finished(
        &mut self,
        done: Result<Result<Requested, JobError>, tokio::task::JoinError>,
        asked: Option<Asked>,
    ) {
        let repo = asked.map_or_else(|| self.repo.clone(), |a| a.repo);
        // Progress sent before the end is shown before it.
        while let Ok(event) = self.events.try_recv() {
            self.job_event(event).await;
        }
        match done {
            Err(e) if e.is_cancelled() => {}
            Err(e) => self.end(Tone::Bad, format!("the job's task failed: {e}")).await,
            Ok(Err(JobError::NoOffer(wait))) => {
                self.end(
                    Tone::Warn,
                    format!("no acceptor within {}s · nothing was charged", wait.as_secs()),
                )
                .await;
            }
            Ok(Err(e)) => self.end(Tone::Bad, e.to_string()).await,
            Ok(Ok(Requested::Cancelled { reason, .. })) => {
                self.end(
                    Tone::Warn,
                    format!("the acceptor gave the job up: {reason} · nothing was charged"),
                )
                .await;
            }
            Ok(Ok(Requested::Delivered(delivered))) => {
                if let Some(why) = &delivered.mismatch {
                    // What ran is not what was agreed: rejected, never applied.
                    self.lines(Tone::Bad, format!("the result is not what was agreed: {why}; it is rejected (half the price) and not applied")).await;
                    let job = delivered.job.clone();
                    self.delivered.insert(job.clone(), (delivered, repo));
                    self.decide(&job, false).await;
                    return;
                }
                let view = delivery(&delivered);
                self.delivered.insert(delivered.job.clone(), (delivered, repo));
                self.say(Update::Job(JobUpdate::Delivered(Box::new(view)))).await;
            }
        }
    }

    async fn decide(&mut self, job: &str, apply: bool) {
        let Some((delivered, repo)) = self.delivered.remove(job) else {
            self.lines(Tone::Bad, format!("no result of job {job} waits here")).await;
            return;
        };
        let mut detail = Vec::new();
        let decision = if apply {
            match super::jobs::apply_result(&self.home, &repo, &delivered.patch).await {
                Ok(Ok(files)) => {
                    detail.push(format!(
                        "{files} file(s) applied to {}",
                        config::display_path(&repo)
                    ));
                    Decision::Accept
                }
                Ok(Err(conflicts)) => {
                    for c in &conflicts {
                        detail.push(format!("{}: {}", c.path, c.messages.join("; ")));
                    }
                    detail.push(format!(
                        "the result does not apply ({} file(s) conflict); nothing was changed, and it is rejected (half the price)",
                        conflicts.len()
                    ));
                    Decision::Reject
                }
                Err(e) => {
                    // Nothing was decided: the result waits again.
                    self.lines(Tone::Bad, format!("{e:#}")).await;
                    self.delivered.insert(job.to_owned(), (delivered, repo));
                    return;
                }
            }
        } else {
            Decision::Reject
        };
        match self.jobs.decide(job, decision).await {
            Ok(settled) => {
                let applied = matches!(settled.outcome, Decision::Accept);
                self.say(Update::Job(JobUpdate::Settled { applied, paid: settled.paid, detail }))
                    .await;
            }
            Err(e) => self.end(Tone::Bad, format!("the decision was not written: {e}")).await,
        }
        self.refresh().await;
    }

    async fn serve(&mut self, max_jobs: Option<u64>, model: Option<String>) {
        let remembered = std::fs::read_to_string(self.home.dir().join(SERVE_MODEL_FILE))
            .ok()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty());
        let model = model.or(remembered);
        match self.start_serving(max_jobs, model.as_deref()).await {
            Ok(agents) => {
                if let Some(model) = &model {
                    let _ = std::fs::write(
                        self.home.dir().join(SERVE_MODEL_FILE),
                        format!("{model}\n"),
                    );
                }
                let count = max_jobs.map_or_else(|| "no end".to_owned(), |n| format!("{n} job(s)"));
                self.serving_agents = agents;
                self.serving_max = max_jobs;
                self.serving_since = Some(super::ledger::now_ms());
                self.lines(
                    Tone::Good,
                    format!("─── serving · {} · {count} · esc stops ───", self.serving_agents),
                )
                .await;
            }
            Err(e) => self.lines(Tone::Bad, format!("/serve: {e:#}")).await,
        }
    }

    async fn start_serving(
        &self,
        max_jobs: Option<u64>,
        model: Option<&str>,
    ) -> anyhow::Result<String> {
        let genesis = self.home.genesis()?;
        let priced: Vec<String> = genesis.price_list().keys().cloned().collect();
        // The built-in agent with the model given; Claude Code and Codex when ready here.
        let mut kinds: Vec<&str> = Vec::new();
        if model.is_some() {
            kinds.push("builtin");
        }
        for (kind, serves, _) in agents::readiness() {
            if kind != "builtin" && serves != "none" {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            anyhow::bail!(
                "no agent to serve with: `/serve --model openai/gpt-4.1-mini` runs the built-in agent (with `/login openai`), or install Claude Code or Codex"
            );
        }
        let sandbox = super::jobs::job_sandbox(ash_sandbox::BackendChoice::Auto).await?;
        let mut agents = Vec::new();
        let ready = super::jobs::serve_agents(
            &self.home,
            &kinds,
            model,
            &Default::default(),
            &priced,
            true,
            &sandbox,
        )
        .await?;
        for (agent, notes) in ready {
            for note in notes {
                self.lines(Tone::Dim, note).await;
            }
            agents.push(agent);
        }
        let names: Vec<String> = agents.iter().map(|a| a.kind().to_owned()).collect();
        self.jobs.serve(ServeConfig {
            agents,
            tiers: Vec::new(),
            routed: true,
            max_concurrent: 1,
            max_jobs,
            max_package_bytes: 64 << 20,
            limits: ash_pack::Limits::default(),
            run_time: RUN_TIME,
            git: super::jobs::isolated_git(ash_sandbox::BackendChoice::Auto),
        });
        Ok(names.join(", "))
    }

    async fn node_event(&mut self, event: NodeEvent) {
        self.state.track(&event);
        network::write_state(&self.state_path, &self.state);
        match event {
            NodeEvent::Received { amounts, balance } => {
                let total: u64 = amounts.iter().sum();
                self.lines(Tone::Good, format!("received {total}cr · balance {balance}cr")).await;
            }
            NodeEvent::Equivocated { author } => {
                self.lines(
                    Tone::Warn,
                    format!("{} signed two entries at one position: frozen", author.short()),
                )
                .await;
            }
            NodeEvent::Job { job, state, detail } if self.serving_since.is_some() => {
                // The jobs this node runs for others (its own are followed as they go).
                let own = self.asked.as_ref().and_then(|a| a.job.as_deref()) == Some(job.as_str());
                if !own && state != "offered" {
                    self.lines(
                        Tone::Dim,
                        format!("⚙ job {} {state}: {detail}", &job[..job.len().min(8)]),
                    )
                    .await;
                }
            }
            _ => {}
        }
    }

    /// The status bar and the serving panel, once a second.
    async fn refresh(&self) {
        let peers = self.net.peers().await.map(|p| p.len()).unwrap_or(0);
        self.say(Update::Status { balance: Some(self.jobs.balance()), peers }).await;
        let Some(since) = self.serving_since else { return };
        let (accepted, running) = self.jobs.serving_counts();
        let earned = self.jobs.accepted().await.map_or(0, |records| {
            records
                .iter()
                .filter(|r| r.created >= since && r.state == AcceptorState::Collected)
                .filter_map(|r| r.collected)
                .sum()
        });
        let offering = self.jobs.offering();
        let panel = (offering || running > 0).then(|| ServePanel {
            agents: self.serving_agents.clone(),
            accepted,
            running,
            earned,
            max_jobs: self.serving_max,
            offering,
        });
        self.say(Update::Serving(panel)).await;
    }
}

/// A delivered result as the screen shows it: each file with its part of the patch.
fn delivery(delivered: &Delivered) -> Delivery {
    let text = String::from_utf8_lossy(&delivered.patch);
    let parts = split_patch(&text);
    let files = delivered
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| DiffFile {
            path: f.new_path.clone().or_else(|| f.old_path.clone()).unwrap_or_default(),
            warning: f.sensitive.map(|w| w.to_string()),
            diff: parts.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    Delivery {
        job: delivered.job.clone(),
        price: delivered.price,
        summary: delivered.summary.message.clone(),
        files,
        insertions: delivered.summary.insertions,
        deletions: delivered.summary.deletions,
    }
}

/// A git patch cut at each `diff --git` line, in order.
fn split_patch(text: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("diff --git ") || parts.is_empty() {
            parts.push(String::new());
        }
        if let Some(last) = parts.last_mut() {
            last.push_str(line);
        }
    }
    parts.retain(|p| p.starts_with("diff --git "));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_splits_per_file_in_order() {
        let patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/y b/y\nnew file mode 100644\n";
        assert_eq!(
            split_patch(patch),
            [
                "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
                "diff --git a/y b/y\nnew file mode 100644\n"
            ]
        );
        assert!(split_patch("").is_empty());
    }
}
