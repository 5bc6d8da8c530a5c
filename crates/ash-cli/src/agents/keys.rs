//! Model keys for serving other people's jobs: `ash login` stores API keys 0600 under
//! `$ASH_HOME/keys/`, checks them against the provider, and refuses subscription sign-in
//! tokens (the providers' terms allow those for their holder's own use only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ash_llm::ProviderConfig;
use ash_spec::ProviderApi;

use super::CliKind;
use crate::cli::LoginArgs;
use crate::cmd::Outcome;
use crate::{config, output};

/// The providers `ash login` keeps keys for, with the variable each key may come from.
pub(crate) const PROVIDERS: [(&str, &str); 2] =
    [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")];

/// Where the key of `provider` is kept.
pub(crate) fn key_file(home: &Path, provider: &str) -> PathBuf {
    home.join("keys").join(provider)
}

/// The key stored for `provider`, if any.
pub(crate) fn stored(home: &Path, provider: &str) -> Option<String> {
    let text = std::fs::read_to_string(key_file(home, provider)).ok()?;
    let key = text.trim().to_owned();
    (!key.is_empty()).then_some(key)
}

/// Why `key` must not serve other people's jobs, when it is a subscription sign-in token.
pub(crate) fn subscription(provider: &str, key: &str) -> Option<String> {
    let what = match provider {
        "anthropic" if key.starts_with("sk-ant-oat") => {
            "this is a Claude subscription sign-in token (Pro/Max, from `claude setup-token` or a login)"
        }
        "openai" if key.starts_with("eyJ") => {
            "this is a ChatGPT sign-in token (from `codex login`), not an API key"
        }
        _ => return None,
    };
    Some(refusal(provider, what))
}

fn refusal(provider: &str, what: &str) -> String {
    let console = match provider {
        "anthropic" => "https://console.anthropic.com/settings/keys",
        _ => "https://platform.openai.com/api-keys",
    };
    format!(
        "{what}: the provider's terms allow subscription sign-ins for your own use only, not for serving other people's jobs. Create a pay-as-you-go API key at {console} and run `ash login {provider}`"
    )
}

/// Why this machine's sign-in for `provider` cannot serve, when it has a subscription sign-in
/// and no API key: Claude Code's `CLAUDE_CODE_OAUTH_TOKEN`, or Codex's ChatGPT `auth.json`.
pub(crate) fn signed_in_only(provider: &str) -> Option<String> {
    match provider {
        "anthropic" => config::var("CLAUDE_CODE_OAUTH_TOKEN").filter(|v| !v.is_empty()).map(|_| {
            refusal(provider, "CLAUDE_CODE_OAUTH_TOKEN holds a Claude subscription sign-in")
        }),
        "openai" => {
            let path = config::codex_home()?.join("auth.json");
            let text = std::fs::read_to_string(&path).ok()?;
            let auth: serde_json::Value = serde_json::from_str(&text).ok()?;
            let chatgpt = auth["tokens"].is_object() && !auth["OPENAI_API_KEY"].is_string();
            chatgpt
                .then(|| refusal(provider, &format!("{} holds a ChatGPT sign-in", path.display())))
        }
        _ => None,
    }
}

/// Asks the provider whether `provider`'s key is good: `GET {base}/models`.
pub(crate) async fn check(provider: &ProviderConfig, key: &str) -> Result<(), String> {
    let base = provider.base_url.as_deref().unwrap_or_default().trim_end_matches('/');
    let shown = provider.display_base_url().unwrap_or_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let request = http.get(format!("{base}/models"));
    let request = match provider.api {
        ProviderApi::Anthropic => {
            request.header("x-api-key", key).header("anthropic-version", "2023-06-01")
        }
        ProviderApi::OpenAi => request.bearer_auth(key),
    };
    let response = request.send().await.map_err(|e| {
        format!(
            "could not reach {shown}: {}; to store the key unchecked, pass --no-check",
            e.without_url()
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let message: String = message.chars().filter(|c| !c.is_control()).take(200).collect();
    Err(match status.as_u16() {
        401 | 403 => format!("{} refused the key (HTTP {status}): {message}", provider.name),
        _ => format!("{shown} answered HTTP {status}: {message}"),
    })
}

/// Writes `key` to its file, 0600, in a 0700 directory, replacing any older one.
pub(crate) fn store(home: &Path, provider: &str, key: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = home.join("keys");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = key_file(home, provider);
    crate::cmd::write_private(&path, format!("{key}\n").as_bytes())?;
    Ok(path)
}

/// What `ash login` without a target lists: each provider and where its key comes from.
pub(crate) fn key_states(home: &Path) -> Vec<String> {
    PROVIDERS
        .iter()
        .map(|(provider, var)| {
            let state = if config::var(var).is_some_and(|v| !v.is_empty()) {
                format!("from ${var}")
            } else if stored(home, provider).is_some() {
                format!("stored in {}", key_file(home, provider).display())
            } else {
                format!("none (`ash login {provider}`)")
            };
            format!("{provider}: {state}")
        })
        .collect()
}

/// The provider whose key `target` (an agent or a provider) means, and the variable the key
/// may come from instead.
pub(crate) fn login_provider(target: &str) -> anyhow::Result<(&'static str, &'static str)> {
    let provider = match CliKind::from_name(target) {
        Some(kind) => kind.provider(),
        None => match PROVIDERS.iter().find(|(p, _)| *p == target) {
            Some((p, _)) => *p,
            None => bail!(
                "no agent or provider `{target}`; log in to claude, codex, anthropic or openai"
            ),
        },
    };
    let var = PROVIDERS.iter().find(|(p, _)| *p == provider).map_or("", |(_, v)| *v);
    Ok((provider, var))
}

/// A key as given, trimmed, once its form is one that may serve.
pub(crate) fn key_form(provider: &str, key: &str) -> anyhow::Result<String> {
    let key = key.trim().to_owned();
    if key.is_empty() {
        bail!("the key is empty");
    }
    if let Some(why) = subscription(provider, &key) {
        bail!("{why}");
    }
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("the key has spaces or control characters in it; paste the key alone");
    }
    Ok(key)
}

/// Checks `key` with `provider` as configured here.
pub(crate) async fn check_configured(provider: &str, key: &str) -> anyhow::Result<()> {
    let (user, _) = config::user_config()?;
    let table = config::provider_table(&config::load_options().env, &user, None);
    let provider_config = table.get(provider)?.clone();
    check(&provider_config, key).await.map_err(|e| anyhow::anyhow!(e))
}

/// `ash login [AGENT|PROVIDER]`.
pub(crate) fn login(args: &LoginArgs) -> anyhow::Result<Outcome> {
    let home = config::ash_home().context("no $ASH_HOME and no $HOME: set ASH_HOME")?;
    let Some(target) = &args.target else {
        output::stdout(&(key_states(&home).join("\n") + "\n"));
        return Ok(Outcome::Success);
    };
    let (provider, var) = login_provider(target)?;
    let key = match config::var(var).filter(|v| !v.trim().is_empty()) {
        Some(key) => {
            output::note(&format!("using ${var} from the environment"));
            key
        }
        None if args.stdin => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the key from stdin")?;
            line
        }
        None => {
            if let Some(why) = signed_in_only(provider) {
                bail!("{why}");
            }
            output::prompt_secret(&format!("{provider} API key: ")).with_context(|| {
                format!("no key given: set ${var}, pipe it with --stdin, or type it on a terminal")
            })?
        }
    };
    let key = key_form(provider, &key)?;
    if !args.no_check {
        crate::cmd::runtime()?.block_on(check_configured(provider, &key))?;
    }
    let path = store(&home, provider, &key)?;
    let checked = if args.no_check { "not checked" } else { "checked with the provider" };
    output::stdout(&format!("{provider} key stored in {} ({checked})\n", path.display()));
    Ok(Outcome::Success)
}
