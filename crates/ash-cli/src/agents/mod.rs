//! The agents `ash serve` runs jobs with: ash's own (`builtin`), and Claude Code (`claude`) and
//! Codex (`codex`) when installed, each in the job's sandbox; and the model keys they use.
//!
//! Owns finding the outside CLIs and checking they run here, which model each runs for each
//! tier, and the keys (`ash login`). Never lets a key into a sandbox: outside agents reach
//! their provider through ash's model gateway.

mod builtin;
mod external;
pub(crate) mod keys;
mod routing;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::bail;
use ash_llm::ProviderConfig;
use ash_sandbox::Sandbox;

pub(crate) use builtin::BuiltinAgent;
pub(crate) use external::{CliAgent, CliKind, detect};
pub(crate) use keys::login;
pub(crate) use routing::{OwnProvider, family};

use crate::config;

/// The provider `name` as configured, with its key: the environment's, else the one
/// `ash login` stored.
pub(crate) fn provider(name: &str) -> anyhow::Result<ProviderConfig> {
    let (user, _) = config::user_config()?;
    let table = config::provider_table(&config::model_env(), &user, None);
    Ok(table.get(name)?.clone())
}

/// Where the key of `provider` comes from, or why there is none that may serve.
pub(crate) fn key_source(provider: &ProviderConfig) -> Result<String, String> {
    let var = provider.api_key_env.clone().unwrap_or_default();
    match config::var(&var).filter(|v| !v.trim().is_empty()) {
        Some(key) => match keys::subscription(&provider.name, key.trim()) {
            Some(why) => Err(format!("${var}: {why}")),
            None => Ok(format!("${var}")),
        },
        None => match config::ash_home().and_then(|h| keys::stored(&h, &provider.name)) {
            Some(key) => match keys::subscription(&provider.name, &key) {
                Some(why) => Err(why),
                None => Ok("`ash login`".to_owned()),
            },
            None => Err(keys::signed_in_only(&provider.name).unwrap_or_else(|| {
                format!(
                    "no {} API key: run `ash login {}` or set ${var}",
                    provider.name, provider.name
                )
            })),
        },
    }
}

/// What `ash status` says of each agent: whether it could serve here (without running it),
/// as `(kind, serves, detail)` where `serves` is `all` (its tiers and routed jobs), `routed`
/// (no key: only jobs whose requester answers the model calls) or `none`.
pub(crate) fn readiness() -> Vec<(&'static str, &'static str, String)> {
    let mut out = vec![(
        "builtin",
        "all",
        "ash's own coding agent (`ash serve --model PROVIDER/MODEL`)".to_owned(),
    )];
    let path = config::process_env().get("PATH").cloned().unwrap_or_default();
    for kind in CliKind::ALL {
        let Some(program) = kind.on_path(&path) else {
            out.push((
                kind.name(),
                "none",
                format!("not installed (`npm install -g {}`)", kind.package()),
            ));
            continue;
        };
        let key = provider(kind.provider()).map_err(|e| e.to_string()).and_then(|p| key_source(&p));
        out.push(match key {
            Ok(source) => (
                kind.name(),
                "all",
                format!("{} · {} key from {source}", program.display(), kind.provider()),
            ),
            Err(why) => {
                (kind.name(), "routed", format!("{} · routed jobs only: {why}", program.display()))
            }
        });
    }
    out
}

/// Claude Code or Codex, ready to serve: installed and running in `sandbox`. With an API key
/// it serves its tiers (its defaults with `overrides`, `TIER=MODEL`, on top, among `priced`);
/// without one, only jobs whose model calls go back to their requester (`routed`), and says
/// why not the rest.
pub(crate) async fn external(
    kind: CliKind,
    path: &str,
    overrides: &BTreeMap<String, String>,
    priced: &[String],
    routed: bool,
    sandbox: Arc<Sandbox>,
) -> anyhow::Result<(CliAgent, Option<String>)> {
    let installed = detect(kind, path, &sandbox).await.map_err(|e| anyhow::anyhow!(e))?;
    let provider = provider(kind.provider())?;
    let mut models = kind.default_models();
    models.extend(overrides.iter().map(|(t, m)| (t.clone(), m.clone())));
    models.retain(|tier, _| priced.contains(tier));
    let without = match key_source(&provider) {
        Ok(_) if models.is_empty() && !routed => bail!(
            "the {} agent serves no tier this network prices; name one with --tier-model {}:TIER=MODEL",
            kind.name(),
            kind.name()
        ),
        Ok(_) => None,
        Err(why) if routed => {
            models.clear();
            Some(why)
        }
        Err(why) => bail!("the {} agent cannot serve: {why}", kind.name()),
    };
    Ok((CliAgent::new(kind, installed, models, provider, sandbox), without))
}
