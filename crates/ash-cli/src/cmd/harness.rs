//! What `ash start`, `ash dev` and `ash exec` share: load the agent, resolve its model (never
//! falling back to another one), open the store, and start the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ash_core::{Engine, EngineConfig, MemoryStore, Store};
use ash_llm::{Client, ClientConfig};
use ash_sandbox::{BackendChoice, BackendKind, NetPolicy, Sandbox};
use ash_spec::SCRIPTED_PROVIDER;
use ash_store::{Durability, PgOptions, PostgresStore, SqliteStore};

use crate::cli::StoreArgs;
use crate::{config, output};

/// Where `ash start`/`ash dev` keep state by default, relative to the project.
pub(crate) const DEFAULT_STATE_DIR: &str = ".ash/state";

/// A started engine and where its state lives.
pub(crate) struct Harness {
    pub(crate) engine: Engine,
    /// Human description of the store, e.g. `sqlite .ash/state/ash.db`.
    pub(crate) store: String,
    /// The model, e.g. `openai/gpt-4.1-mini`.
    pub(crate) model: String,
    /// Whether the model replays a script (said out loud in every front end).
    pub(crate) scripted: bool,
    /// State of a memory-only run, removed on drop.
    _temp: Option<tempfile::TempDir>,
}

/// Where the store lives.
pub(crate) enum StoreChoice {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (its URL) that several nodes may share.
    Postgres(String),
    /// Memory only (nothing survives the process).
    Memory,
}

impl StoreChoice {
    /// What `--store` names: a `postgres://` URL, else a SQLite file; `None`: `default`.
    /// Another URL is refused rather than taken for a file name (which would show it, password
    /// and all, and make directories of it).
    pub(crate) fn from_arg(
        arg: Option<&str>,
        default: impl FnOnce() -> Self,
    ) -> anyhow::Result<Self> {
        Ok(match arg {
            Some(url) if ash_store::is_postgres_url(url) => Self::Postgres(url.to_owned()),
            Some(other) if other.contains("://") => bail!(
                "the store must be a SQLite file path or a postgres:// (postgresql://) URL; this one is neither (a quoted or misspelt URL?)"
            ),
            Some(path) => Self::Sqlite(PathBuf::from(path)),
            None => default(),
        })
    }
}

/// Subagents' own models, from the same provider table as the root's.
#[derive(Debug)]
struct ClientModels(Client);

impl ash_core::ResolveModel for ClientModels {
    fn resolve(
        &self,
        reference: &ash_spec::ModelRef,
        package_dir: &Path,
    ) -> Result<ash_llm::Model, String> {
        self.0.model(reference, package_dir).map_err(|e| e.to_string())
    }
}

/// Loads the agent in `dir` and starts an engine over `store`. Must run inside a tokio
/// runtime. Fails with the diagnostics printed when the agent has errors.
pub(crate) async fn start(
    dir: &Path,
    store: StoreChoice,
    args: &StoreArgs,
    schedules: bool,
) -> anyhow::Result<Harness> {
    let options = config::load_options();
    let loaded = ash_spec::load(dir, &options)
        .with_context(|| format!("loading the agent in {}", dir.display()))?;
    output::diagnostics(loaded.diagnostics());
    let (spec, _) = loaded.into_result().map_err(|_| {
        anyhow::anyhow!(
            "the agent in {} has errors; fix them and try again (`ash info` shows them)",
            dir.display()
        )
    })?;
    let (user, user_diags) = config::user_config()?;
    output::diagnostics(&user_diags);
    let root = spec.root();
    let Some(model_ref) = root.model.clone() else {
        bail!(
            "the agent has no `model`; set one in agent.toml, e.g. `model = \"openai/gpt-4.1-mini\"`, or `model = \"scripted/scripts/demo.jsonl\"` to replay a script offline"
        );
    };
    let table = config::provider_table(&options.env, &user, Some(root));
    let client = Client::new(table, ClientConfig::default())?;
    let model = client.model(&model_ref, &dir.join(&root.dir)).with_context(|| {
        format!(
            "the agent's model `{model_ref}` cannot be used (`ash models` shows every provider)"
        )
    })?;
    let mut temp = None;
    let mut store_paths = Vec::new();
    let shared = matches!(store, StoreChoice::Postgres(_));
    let (store, store_text, state_dir): (Arc<dyn Store>, String, PathBuf) = match store {
        StoreChoice::Sqlite(path) => {
            refuse_missing_store(&path, args.new_store)?;
            let file = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            store_paths.extend(
                ["", "-wal", "-shm", "-journal"]
                    .map(|suffix| PathBuf::from(format!("{}{suffix}", file.display()))),
            );
            let durability = if args.fast_sync { Durability::Normal } else { Durability::Full };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            let store = SqliteStore::open(&path, durability)?;
            {
                use std::os::unix::fs::PermissionsExt as _;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            let state = args.state_dir.clone().unwrap_or_else(|| {
                path.parent().map_or_else(|| dir.join(DEFAULT_STATE_DIR), Path::to_path_buf)
            });
            (Arc::new(store), format!("sqlite {}", path.display()), state)
        }
        StoreChoice::Postgres(url) => {
            let options = PgOptions { pool_size: args.pool_size.max(1), ..PgOptions::default() };
            let store = PostgresStore::connect(&url, options).await?;
            store.bind_agent(&url, spec.name()).await?;
            let state = args.state_dir.clone().unwrap_or_else(|| dir.join(DEFAULT_STATE_DIR));
            create_private_dir(&state)?;
            (Arc::new(store), format!("postgres {}", ash_store::describe_url(&url)), state)
        }
        StoreChoice::Memory => {
            let dir = tempfile::Builder::new()
                .prefix("ash-exec-")
                .tempdir()
                .context("creating a temporary state directory")?;
            let state = dir.path().to_path_buf();
            temp = Some(dir);
            (Arc::new(MemoryStore::new()), "memory (nothing is kept)".to_owned(), state)
        }
    };
    let mut engine_config =
        tool_config(dir, &state_dir, args.sandbox, args.tool_network.clone()).await?;
    engine_config.lease_ttl = Duration::from_secs(args.lease_ttl.max(1));
    // A run whose worker died waits for its lease to expire, then for the next sweep: at most
    // a second more (a quarter of a shorter lease).
    engine_config.sweep_interval =
        (engine_config.lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let project = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    // The store's own directory (which holds the workspaces, closed to others) is hidden as a
    // whole when it is not the project itself, so a workspace below it stays reachable.
    for path in store_paths {
        match path.parent() {
            Some(dir) if dir != project && dir.starts_with(&project) => {
                engine_config.tool_policy.fs.hidden.push(dir.to_path_buf());
            }
            _ => engine_config.tool_policy.fs.hidden.push(path),
        }
    }
    // The state directory holds every session's workspace and sandboxes: hidden as a whole
    // (each call then sees its own workspace), unless it is the project itself.
    let state = std::path::absolute(&state_dir).unwrap_or_else(|_| state_dir.clone());
    if state != project && !engine_config.tool_policy.fs.hidden.contains(&state) {
        engine_config.tool_policy.fs.hidden.push(state);
    }
    engine_config.allow_unsupported = args.allow_unsupported;
    engine_config.schedules = schedules;
    // One-off commands on a shared store work on their own runs only.
    engine_config.sweep = schedules || !shared;
    engine_config.models = Some(Arc::new(ClientModels(client)));
    let engine = Engine::start(spec, model, store, engine_config)?;
    for item in engine.unsupported() {
        output::note(&format!(
            "warning: ignoring {} `{}` (--allow-unsupported): {}",
            item.source, item.item, item.reason
        ));
    }
    Ok(Harness {
        engine,
        store: store_text,
        scripted: model_ref.provider() == SCRIPTED_PROVIDER,
        model: model_ref.to_string(),
        _temp: temp,
    })
}

/// The engine configuration of tool processes and connection servers for the agent in `dir`
/// with state under `state_dir`: the sandbox (`backend`, warning when it does not isolate),
/// the base environment, tools' network, and the project's secret files and ash's private
/// paths hidden.
pub(crate) async fn tool_config(
    dir: &Path,
    state_dir: &Path,
    backend: BackendChoice,
    network: NetPolicy,
) -> anyhow::Result<EngineConfig> {
    let mut engine_config = EngineConfig::new(dir, state_dir.join("workspaces"));
    engine_config.process_env = config::process_env();
    let sandbox_config = config::sandbox_config(backend, None);
    let sandbox = Sandbox::new(sandbox_config.clone())
        .await
        .context("preparing the sandbox for tools (`ash sandbox check` shows what works here)")?;
    engine_config.sandbox_config = Some(sandbox_config);
    if sandbox.backend() == BackendKind::Plain {
        output::note(
            "warning: tools run without isolation (sandbox backend `plain`); `ash sandbox check` shows why",
        );
    }
    engine_config.sandbox = Arc::new(sandbox);
    engine_config.tool_policy.net = network;
    engine_config.tool_policy.fs.hidden.extend(config::private_paths());
    // Tools see the project read-only, but never its secret files or the run store.
    let project = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    engine_config.tool_policy.fs.hidden.extend(config::project_secrets(&project));
    Ok(engine_config)
}

/// Builds the agent's access gate once before serving, so a key that does not parse stops the
/// command before it says it is serving.
pub(crate) fn check_access(
    harness: &Harness,
    config: &ash_server::ServerConfig,
) -> anyhow::Result<()> {
    ash_server::Gate::new(harness.engine.spec().root(), &config.oidc)
        .map(drop)
        .context("the agent's access configuration cannot be enforced")
}

/// Creates `dir` closed to other local users: transcripts and tokens live there.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// A store that should exist but does not is an error, never a silent fresh start: session
/// workspaces beside its path show that runs were kept there.
fn refuse_missing_store(path: &Path, new_store: bool) -> anyhow::Result<()> {
    if new_store || path.exists() {
        return Ok(());
    }
    let workspaces = path.parent().map(|dir| dir.join("workspaces"));
    let sessions =
        workspaces.as_ref().and_then(|dir| std::fs::read_dir(dir).ok()).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        });
    if sessions > 0 {
        bail!(
            "the store {} is missing, but {sessions} session workspace(s) beside it show it held runs; it was deleted or moved — restore it (with its -wal file) from a backup, or start an empty store with --new-store",
            path.display()
        );
    }
    Ok(())
}

/// The default SQLite file of a project.
pub(crate) fn default_store(dir: &Path) -> PathBuf {
    dir.join(DEFAULT_STATE_DIR).join("ash.db")
}

/// The line that labels a scripted model, so a replay is never mistaken for a real model.
pub(crate) fn scripted_label(model: &str) -> String {
    format!(
        "note: `{model}` replays a scripted conversation offline; no model is called. Set `model = \"openai/gpt-4.1-mini\"` (and OPENAI_API_KEY) in agent.toml to use a real one."
    )
}
