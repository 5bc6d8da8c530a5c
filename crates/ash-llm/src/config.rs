//! Client configuration: the provider table, API keys, timeouts, retries and response limits.
//!
//! Owns how a provider name becomes a base URL, a wire format and a key: built-in defaults
//! (`ash_spec::BUILTIN_PROVIDERS`), then each layer of `[providers.<name>]` overrides, with key
//! variables looked up in an environment map the caller passes. Never reads the process
//! environment itself.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ash_spec::{BUILTIN_PROVIDERS, Provider, ProviderApi, REDACTED};
use zeroize::Zeroizing;

use crate::error::LlmError;

/// An API key: redacted in `Debug`, no `Display`, zeroed when dropped.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(Zeroizing::new(key.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// One provider, resolved.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The `provider` part of `provider/model`.
    pub name: String,
    /// Wire format.
    pub api: ProviderApi,
    /// Base URL, e.g. `https://api.openai.com/v1`; `/chat/completions` or `/messages` is
    /// appended.
    pub base_url: Option<String>,
    /// The variable the key is read from, for messages.
    pub api_key_env: Option<String>,
    /// The key, when the variable was set.
    pub api_key: Option<ApiKey>,
    /// Whether a call without a key should be refused before it is sent.
    pub key_required: bool,
}

impl ProviderConfig {
    /// The base URL without user-info, safe to show.
    pub fn display_base_url(&self) -> Option<String> {
        self.base_url.as_deref().map(redact_userinfo)
    }
}

/// `scheme://user:pass@host/...` without `user:pass@`. Only the authority is searched, so an
/// `@` in the path stays.
pub(crate) fn redact_userinfo(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else { return text.to_owned() };
    let rest = &text[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}{}", &text[..scheme_end], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

/// Every provider a client can call, by name.
#[derive(Debug, Clone)]
pub struct ProviderTable {
    providers: BTreeMap<String, ProviderConfig>,
}

impl ProviderTable {
    /// The built-in providers, keys looked up in `env`. Empty values count as unset.
    pub fn builtin(env: &BTreeMap<String, String>) -> Self {
        let providers = BUILTIN_PROVIDERS
            .iter()
            .map(|p| {
                let config = ProviderConfig {
                    name: p.name.to_owned(),
                    api: p.api,
                    base_url: Some(p.base_url.to_owned()),
                    api_key_env: p.api_key_env.map(str::to_owned),
                    api_key: p.api_key_env.and_then(|var| key_from(env, var)),
                    key_required: p.key_required,
                };
                (p.name.to_owned(), config)
            })
            .collect();
        Self { providers }
    }

    /// Applies one `[providers.<name>]` layer: fields it sets replace the current ones. A new
    /// name becomes a provider that needs a `base_url`; its key is optional unless it names a
    /// variable.
    pub fn apply(&mut self, name: &str, layer: &Provider, env: &BTreeMap<String, String>) {
        let entry = self.providers.entry(name.to_owned()).or_insert_with(|| ProviderConfig {
            name: name.to_owned(),
            api: layer.api,
            base_url: None,
            api_key_env: None,
            api_key: None,
            key_required: false,
        });
        entry.api = layer.api;
        if let Some(url) = &layer.base_url {
            entry.base_url = Some(url.clone());
        }
        if let Some(var) = &layer.api_key_env {
            entry.api_key = key_from(env, var);
            entry.api_key_env = Some(var.clone());
            entry.key_required = true;
        }
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Result<&ProviderConfig, LlmError> {
        self.providers.get(name).ok_or_else(|| LlmError::UnknownProvider {
            provider: name.to_owned(),
            known: self.names().join(", "),
        })
    }

    /// Every provider, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.values()
    }

    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.push(ash_spec::SCRIPTED_PROVIDER);
        names
    }
}

fn key_from(env: &BTreeMap<String, String>, var: &str) -> Option<ApiKey> {
    env.get(var).filter(|v| !v.trim().is_empty()).map(|v| ApiKey::new(v.trim()))
}

/// Timeouts, retries and limits shared by every call a client makes.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Time to establish a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Time from sending the request to receiving the response headers.
    pub response_timeout: Duration,
    /// Longest silence allowed between two chunks of a streaming body. Reasoning models can
    /// think for minutes before their first token, so this is generous by default.
    pub idle_timeout: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// Size limits on what a provider may send.
    pub limits: ResponseLimits,
    /// Seed for backoff jitter; `None` seeds from the clock. Tests pass a fixed seed.
    pub jitter_seed: Option<u64>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            limits: ResponseLimits::default(),
            jitter_seed: None,
        }
    }
}

/// When and how often a failed call is sent again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with jitter.
    pub initial_backoff: Duration,
    /// Cap on one backoff.
    pub max_backoff: Duration,
    /// Longest `retry-after` honoured; a provider asking for more fails the call at once.
    pub max_retry_after: Duration,
    /// Retry even after part of a response was handed out. The stream then emits
    /// `ModelEvent::Retrying` and the caller must discard what it received since
    /// `ResponseStarted`.
    pub after_partial_output: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            after_partial_output: false,
        }
    }
}

/// Bounds on a provider's response.
#[derive(Debug, Clone)]
pub struct ResponseLimits {
    /// Largest single server-sent event (a whole tool call's arguments can arrive in one).
    pub max_event_bytes: usize,
    /// Largest response body.
    pub max_response_bytes: u64,
    /// Most tool calls in one response.
    pub max_tool_calls: usize,
    /// Bytes of an error body read to find the provider's message.
    pub max_error_body_bytes: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: 16 << 20,
            max_response_bytes: 256 << 20,
            max_tool_calls: 256,
            max_error_body_bytes: 64 << 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_userinfo;

    #[test]
    fn userinfo_is_removed_from_the_authority_only() {
        let cases = [
            ("https://user:pass@gw.test/v1", "https://gw.test/v1"),
            ("https://token@gw.test", "https://gw.test"),
            ("https://gw.test/v1/@team", "https://gw.test/v1/@team"),
            ("https://a:b@gw.test/v1?x=@y", "https://gw.test/v1?x=@y"),
            ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
            ("not a url @ all", "not a url @ all"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_userinfo(input), want, "{input}");
        }
    }
}
