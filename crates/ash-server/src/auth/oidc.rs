//! OpenID Connect issuers: the discovery document and the JWKS, fetched over HTTP and cached.
//!
//! Owns the key cache of one issuer. Readers take the current key set without waiting; a token
//! naming a key the set lacks (or a set older than its maximum age) triggers one refresh, which
//! every concurrent request shares, and refreshes are at least `min_refresh` apart, so tokens
//! with made-up key ids cannot make ash hammer the issuer. A failed refresh keeps the old keys.
//! Keys older than `max_age` are refreshed by one request while the others keep using them.
//! The discovery document must name exactly the configured issuer; its `jwks_uri` must be
//! https (plain http only on loopback); redirects are not followed; sizes and times are bounded.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::keys::{Alg, VerifyKey};

/// How OIDC issuers are contacted and cached.
#[derive(Debug, Clone, Copy)]
pub struct OidcConfig {
    /// Longest wait for the discovery document or the JWKS.
    pub timeout: Duration,
    /// Shortest time between two refreshes of one issuer's keys.
    pub min_refresh: Duration,
    /// Keys older than this are refreshed before use (and still used if the refresh fails).
    pub max_age: Duration,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            min_refresh: Duration::from_secs(10),
            max_age: Duration::from_secs(3600),
        }
    }
}

/// Largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
const MAX_KEYS: usize = 64;

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The issuer's keys are known and none fits the token.
    UnknownKey,
    /// The issuer's keys cannot be fetched (and none are cached).
    Unavailable,
}

struct KeySet {
    keys: Vec<(Option<String>, Arc<VerifyKey>)>,
    fetched: Instant,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

/// One issuer's keys.
pub(crate) struct Issuer {
    issuer: String,
    discovery_url: String,
    http: reqwest::Client,
    config: OidcConfig,
    keys: RwLock<Option<Arc<KeySet>>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Issuer {
    pub(crate) fn new(
        issuer: String,
        discovery_url: String,
        http: reqwest::Client,
        config: OidcConfig,
    ) -> Self {
        Self {
            issuer,
            discovery_url,
            http,
            config,
            keys: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The keys that may have signed a token with `kid` and `alg`: the key with that id, or
    /// without an id every key of that algorithm.
    pub(crate) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Vec<Arc<VerifyKey>>, LookupError> {
        let pick = |set: &KeySet| -> Vec<Arc<VerifyKey>> {
            set.keys
                .iter()
                .filter(|(id, key)| match kid {
                    Some(kid) => id.as_deref() == Some(kid),
                    None => key.alg() == alg,
                })
                .map(|(_, key)| Arc::clone(key))
                .collect()
        };
        let fresh = |set: &KeySet| set.fetched.elapsed() < self.config.max_age;
        let cached = self.current();
        if let Some(set) = &cached {
            let found = pick(set);
            if !found.is_empty() {
                if fresh(set) {
                    return Ok(found);
                }
                // Old keys: one request refreshes them, everyone else goes on with them.
                let Ok(mut state) = self.refresh.try_lock() else { return Ok(found) };
                if self.recently_attempted(&state) {
                    return Ok(found);
                }
                let refreshed = self.refresh_now(&mut state).await;
                return Ok(refreshed
                    .map(|set| pick(&set))
                    .filter(|f| !f.is_empty())
                    .unwrap_or(found));
            }
        }
        // A key the cache lacks: wait for (or do) one refresh, for a bounded time.
        let wait = self.config.timeout.saturating_mul(3);
        let Ok(mut state) = tokio::time::timeout(wait, self.refresh.lock()).await else {
            return Err(if cached.is_some() {
                LookupError::UnknownKey
            } else {
                LookupError::Unavailable
            });
        };
        let cached = self.current();
        if let Some(set) = &cached {
            let found = pick(set);
            if !found.is_empty() {
                return Ok(found);
            }
        }
        if self.recently_attempted(&state) {
            return Err(if cached.is_some() {
                LookupError::UnknownKey
            } else {
                LookupError::Unavailable
            });
        }
        match self.refresh_now(&mut state).await {
            Some(set) => {
                let found = pick(&set);
                if found.is_empty() { Err(LookupError::UnknownKey) } else { Ok(found) }
            }
            None if cached.is_some() => Err(LookupError::UnknownKey),
            None => Err(LookupError::Unavailable),
        }
    }

    /// Whether the last refresh ended less than `min_refresh` ago.
    fn recently_attempted(&self, state: &RefreshState) -> bool {
        state.last_attempt.is_some_and(|t| t.elapsed() < self.config.min_refresh)
    }

    /// Fetches the keys and installs them; `None` (logged) when that fails, the old keys
    /// staying in place. The refresh interval counts from when the fetch ended, so a slow
    /// provider does not get asked again by the requests that queued behind it.
    async fn refresh_now(&self, state: &mut RefreshState) -> Option<Arc<KeySet>> {
        let fetched = self.fetch(state).await;
        state.last_attempt = Some(Instant::now());
        match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Arc::clone(&set));
                Some(set)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, %error, "cannot refresh the OpenID provider's keys");
                None
            }
        }
    }

    /// Fetches the keys now (at start-up), so the first caller does not wait. A failure is
    /// logged; requests then retry, rate-limited.
    pub(crate) async fn prefetch(&self) {
        let mut state = self.refresh.lock().await;
        if self.current().is_none() {
            self.refresh_now(&mut state).await;
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<KeySet, String> {
        let jwks_uri = match state.jwks_uri.clone() {
            Some(uri) => uri,
            None => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let jwks = match self.get_json(&jwks_uri).await {
            Ok(jwks) => jwks,
            Err(error) => {
                // The document may have moved the keys: discover again next time.
                state.jwks_uri = None;
                return Err(format!("the JWKS: {error}"));
            }
        };
        let Some(entries) = jwks.get("keys").and_then(Value::as_array) else {
            return Err("the JWKS has no `keys` array".to_owned());
        };
        let mut keys = Vec::new();
        for entry in entries.iter().take(MAX_KEYS) {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
            match VerifyKey::from_jwk(entry) {
                Ok(Some(key)) => keys.push((kid, Arc::new(key))),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(issuer = %self.issuer, kid = ?kid, %error, "skipping a key of the JWKS");
                }
            }
        }
        if keys.is_empty() {
            return Err("the JWKS has no usable signature key".to_owned());
        }
        Ok(KeySet { keys, fetched: Instant::now() })
    }

    /// Reads the discovery document and returns its `jwks_uri`.
    async fn discover(&self) -> Result<String, String> {
        let doc = self
            .get_json(&self.discovery_url)
            .await
            .map_err(|e| format!("the discovery document: {e}"))?;
        match doc.get("issuer").and_then(Value::as_str) {
            Some(issuer) if issuer == self.issuer => {}
            _ => {
                return Err(
                    "the discovery document names another issuer than `issuer` in agent.toml"
                        .to_owned(),
                );
            }
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no `jwks_uri`")?;
        if !ash_spec::tls_or_loopback(uri) {
            return Err(
                "the discovery document's `jwks_uri` is not https (or http on loopback)".to_owned()
            );
        }
        Ok(uri.to_owned())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let request = self.http.get(url).header("accept", "application/json").send();
        let mut response = tokio::time::timeout(self.config.timeout, request)
            .await
            .map_err(|_| format!("no answer within {} ms", self.config.timeout.as_millis()))?
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status().as_u16()));
        }
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| format!("reading failed: {}", e.without_url()))?
            {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(format!("larger than {MAX_DOCUMENT_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<(), String>(())
        };
        tokio::time::timeout(self.config.timeout, read)
            .await
            .map_err(|_| format!("not read within {} ms", self.config.timeout.as_millis()))??;
        serde_json::from_slice(&body).map_err(|_| "not JSON".to_owned())
    }
}
