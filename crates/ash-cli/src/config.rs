//! The one place that reads the process environment.
//!
//! Inner crates receive what they need as typed values; here the environment becomes the
//! `LoadOptions` used for `${VAR}` interpolation in agent files, `$ASH_HOME` is found, the
//! user's `config.toml` is read, and the model provider table is layered (built-ins, user
//! config, the agent's `[providers]`) with keys from the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use ash_llm::ProviderTable;
use ash_spec::{Diagnostic, LoadOptions, Package, UserConfig, parse_user_config};

/// Load options carrying the process environment (UTF-8 variables only).
pub(crate) fn load_options() -> LoadOptions {
    #[expect(
        clippy::disallowed_methods,
        reason = "ash-cli::config is the one reader of the environment"
    )]
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    LoadOptions { env }
}

/// `$ASH_HOME`, else `~/.ash`; `None` when neither can be found.
pub(crate) fn ash_home() -> Option<PathBuf> {
    #[expect(
        clippy::disallowed_methods,
        reason = "ash-cli::config is the one reader of the environment"
    )]
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("ASH_HOME").or_else(|| var("HOME").map(|home| home.join(".ash")))
}

/// The user's config file, `$ASH_HOME/config.toml`, parsed; an absent file is an empty config.
pub(crate) fn user_config() -> anyhow::Result<(UserConfig, Vec<Diagnostic>)> {
    let Some(path) = ash_home().map(|home| home.join("config.toml")) else {
        return Ok((UserConfig::default(), Vec::new()));
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_user_config(&path.display().to_string(), &text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok((UserConfig::default(), Vec::new()))
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// The provider table: built-ins, then the user's config, then the agent's `[providers]`,
/// with keys read from the environment.
pub(crate) fn provider_table(
    env: &BTreeMap<String, String>,
    user: &UserConfig,
    agent: Option<&Package>,
) -> ProviderTable {
    let mut table = ProviderTable::builtin(env);
    for (name, layer) in &user.providers {
        table.apply(name, layer, env);
    }
    for (name, layer) in agent.map(|p| &p.providers).into_iter().flatten() {
        table.apply(name, layer, env);
    }
    table
}

/// The environment tool processes start from: `PATH` and the locale of this process (with
/// defaults), nothing else. Secrets in the server's environment never reach tools.
pub(crate) fn process_env() -> BTreeMap<String, String> {
    let mut env = pass_env(&["PATH", "LANG", "LC_ALL", "TZ"]);
    env.entry("LANG".to_owned()).or_insert_with(|| "C.UTF-8".to_owned());
    env
}

/// The variables of `names` that are set here, and `PATH` (with a default when unset).
pub(crate) fn pass_env(names: &[&str]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> =
        names.iter().filter_map(|name| Some(((*name).to_owned(), var(name)?))).collect();
    env.entry("PATH".to_owned()).or_insert_with(|| ash_sandbox::DEFAULT_PATH.to_owned());
    env
}

/// The log level `ASH_LOG` names (`error`, `warn`, `info`, `debug`, `trace`), if set.
pub(crate) fn log_level() -> Option<String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "ash-cli::config is the one reader of the environment"
    )]
    std::env::var("ASH_LOG").ok().filter(|v| !v.is_empty())
}

/// The value of variable `name`, if set and UTF-8.
pub(crate) fn var(name: &str) -> Option<String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "ash-cli::config is the one reader of the environment"
    )]
    std::env::var(name).ok()
}

/// How to build the sandbox: this binary as the helper, `$ASH_HOME/run` for proxy sockets,
/// `PATH` to find bwrap/podman/docker.
pub(crate) fn sandbox_config(
    backend: ash_sandbox::BackendChoice,
    image: Option<String>,
) -> ash_sandbox::SandboxConfig {
    // Without a home, root's sockets go under /run (never a shared /tmp a local user could
    // prepare); another user's under a directory named for its uid.
    let runtime_dir = ash_home().map_or_else(
        || {
            let uid = nix::unistd::geteuid();
            if uid.is_root() {
                PathBuf::from("/run/ash")
            } else {
                PathBuf::from(format!("/tmp/ash-run-{uid}"))
            }
        },
        |h| h.join("run"),
    );
    let mut config = ash_sandbox::SandboxConfig::new(backend, runtime_dir);
    config.helper = std::env::current_exe().ok();
    if let Some(path) = var("PATH") {
        config.search_path = path;
    }
    config.image = image;
    config.host_id = subordinate_id().unwrap_or(ash_sandbox::DEFAULT_HOST_ID);
    config
}

/// The first id of root's subordinate range in `/etc/subuid` (when `/etc/subgid` gives root
/// the same start): the id sandboxed processes run as when ash runs as root.
fn subordinate_id() -> Option<u32> {
    let start = |file: &str| -> Option<u32> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find_map(|line| {
            let mut parts = line.trim().split(':');
            let (owner, start) = (parts.next()?, parts.next()?);
            (owner == "root" || owner == "0").then(|| start.parse().ok()).flatten()
        })
    };
    let uid = start("/etc/subuid")?;
    (start("/etc/subgid") == Some(uid)).then_some(uid)
}

/// Files and directories of the project that agent tools must not see: the names packages
/// never send (`.env*`, keys, credentials, `.git`), found by a bounded walk that does not
/// follow links or enter `.ash/` (hidden as a whole).
pub(crate) fn project_secrets(project: &std::path::Path) -> Vec<PathBuf> {
    const MAX_ENTRIES: usize = 50_000;
    const MAX_DEPTH: usize = 16;
    let mut out = Vec::new();
    let mut seen = 0;
    let mut stack = vec![(project.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return out;
            }
            let Ok(kind) = entry.file_type() else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if depth == 0 && name == ".ash" {
                continue;
            }
            if ash_pack::secret_name(name, kind.is_dir()).is_some() {
                out.push(entry.path());
            } else if kind.is_dir() && depth < MAX_DEPTH {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    out
}

/// The variables model providers' keys are read from: the environment, and for a provider
/// key the environment does not set, the key `ash login` stored under `$ASH_HOME/keys/`.
pub(crate) fn model_env() -> BTreeMap<String, String> {
    let mut env = load_options().env;
    if let Some(home) = ash_home() {
        for (provider, var) in [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")] {
            let set = env.get(var).is_some_and(|v| !v.trim().is_empty());
            if !set
                && let Ok(text) = std::fs::read_to_string(home.join("keys").join(provider))
                && !text.trim().is_empty()
            {
                env.insert(var.to_owned(), text.trim().to_owned());
            }
        }
    }
    env
}

/// Codex's home: `$CODEX_HOME`, else `~/.codex`.
pub(crate) fn codex_home() -> Option<PathBuf> {
    var("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| var("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".codex")))
}

/// Paths no sandboxed process may see: `$HOME` and `$ASH_HOME` (keys, config, sessions).
pub(crate) fn private_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> =
        var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).into_iter().collect();
    paths.extend(ash_home());
    paths.retain(|p| p.is_absolute() && p != std::path::Path::new("/"));
    paths
}

/// The secret of `ash dev --basic` (`ASH_PASSWORD`) or `--token` (`ASH_TOKEN`), when set.
pub(crate) fn client_secret(name: &str) -> Option<ash_spec::Secret> {
    var(name).filter(|v| !v.is_empty()).map(ash_spec::Secret::new)
}

/// The working directory.
pub(crate) fn current_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("reading the working directory")
}

/// `path` as people read it: under the home directory, `~/…`.
pub(crate) fn display_path(path: &std::path::Path) -> String {
    let home = var("HOME").filter(|h| h.len() > 1);
    match home.and_then(|h| path.strip_prefix(&h).ok().map(std::path::Path::to_path_buf)) {
        Some(rest) if rest.as_os_str().is_empty() => "~".to_owned(),
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

/// Whether screens may use colour: not under `NO_COLOR` (<https://no-color.org>) or a
/// `TERM=dumb` terminal.
pub(crate) fn color() -> bool {
    var("NO_COLOR").is_none_or(|v| v.is_empty()) && var("TERM").is_none_or(|t| t != "dumb")
}
