//! Inbound access control: the IP allow list, then the agent's auth strategies.
//!
//! Owns the [`Gate`], built once from the root package's `[network]` and `[[auth.strategies]]`,
//! and the tower middleware that runs it before every route, the fallback included. The verdict
//! table is `docs/auth.md`: outside the allow list `403 ip_not_allowed`; no or bad credentials
//! `401 unauthorized` with a `WWW-Authenticate` challenge per configured scheme; a valid token
//! whose subject is not allowed `403 forbidden`; an OIDC issuer whose keys cannot be fetched
//! `503 auth_unavailable`; an oversized `Authorization` header `431`. The authenticated caller
//! reaches the routes as a [`SessionAuthContext`] request extension.
//!
//! Token strategies are chosen by the token's `iss` and all of them are tried, so the order in
//! `agent.toml` never changes a verdict. Never echoes a credential.

mod basic;
mod client_ip;
mod jwt;
mod keys;
mod oidc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ash_protocol::{Authenticator, PrincipalType, SessionAuthContext};
use ash_spec::{AuthStrategy, ForwardedHeader, IpNet, Package};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use oidc::OidcConfig;

use self::basic::BasicUser;
use self::jwt::{ClaimRules, TokenError};
use self::keys::{Alg, VerifyKey};
use self::oidc::{Issuer, LookupError};
use crate::error::HttpError;

/// Longest `Authorization` header read: a maximal token plus its scheme.
const MAX_AUTHORIZATION_BYTES: usize = jwt::MAX_TOKEN_BYTES + 64;

/// Why a gate could not be built from the agent's configuration.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A strategy's key does not parse.
    #[error("auth strategy {index} (`{kind}`) in agent.toml: {reason}")]
    Key {
        /// Position in `[[auth.strategies]]`, from 1.
        index: usize,
        /// Its kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client for OIDC issuers could not start.
    #[error("cannot start the HTTP client for OpenID providers: {0}")]
    Http(#[source] reqwest::Error),
}

/// Decides who may call the agent. Built once per server.
pub struct Gate {
    allow: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    forwarded_header: ForwardedHeader,
    basic: Vec<BasicUser>,
    tokens: Vec<TokenStrategy>,
    challenges: Vec<HeaderValue>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("allow", &self.allow)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("basic_users", &self.basic.len())
            .field("token_strategies", &self.tokens.len())
            .finish()
    }
}

struct TokenStrategy {
    authenticator: Authenticator,
    rules: ClaimRules,
    keys: KeySource,
}

enum KeySource {
    Static(VerifyKey),
    Oidc(Issuer),
}

/// Why a request may not pass. The routes answer each with the status `docs/auth.md` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The client's address is outside `[network] ip_allow_list` (403).
    IpNotAllowed,
    /// A trusted proxy's forwarding header does not name the client (400).
    BadForwarding,
    /// The `Authorization` header is too long (431).
    TooLarge,
    /// No credentials, or credentials that do not authenticate, and why (401).
    Unauthorized(String),
    /// Authenticated, but not allowed by the strategy's `subjects` (403).
    Forbidden(String),
    /// The token's OpenID provider cannot be reached and no keys are cached (503).
    Unavailable,
}

impl Gate {
    /// The gate of `package` (the root agent). An agent without `[network]` and `[auth]`
    /// gets a gate that lets every request through with no principal.
    pub fn new(package: &Package, oidc: &OidcConfig) -> Result<Self, GateError> {
        let mut basic = Vec::new();
        let mut tokens = Vec::new();
        let mut http = None;
        for (index, strategy) in package.auth.iter().enumerate() {
            let key_error = |kind: &'static str, reason: String| GateError::Key {
                index: index + 1,
                kind,
                reason,
            };
            match strategy {
                AuthStrategy::HttpBasic { username, password } => {
                    basic.push(BasicUser::new(username, password.expose()));
                }
                AuthStrategy::JwtHmac { claims, algorithm, secret } => {
                    let key = VerifyKey::hmac(Alg::from(*algorithm), secret.expose().as_bytes())
                        .map_err(|e| key_error("jwt-hmac", e.to_string()))?;
                    tokens.push(TokenStrategy {
                        authenticator: Authenticator::JwtHmac,
                        rules: ClaimRules::from(claims),
                        keys: KeySource::Static(key),
                    });
                }
                AuthStrategy::JwtEcdsa { claims, algorithm, public_key } => {
                    let key = VerifyKey::ecdsa_pem(Alg::from(*algorithm), public_key.expose())
                        .map_err(|e| key_error("jwt-ecdsa", e.to_string()))?;
                    tokens.push(TokenStrategy {
                        authenticator: Authenticator::JwtEcdsa,
                        rules: ClaimRules::from(claims),
                        keys: KeySource::Static(key),
                    });
                }
                AuthStrategy::Oidc { claims, discovery_url } => {
                    let client = match &http {
                        Some(client) => Clone::clone(client),
                        None => {
                            let client = reqwest::Client::builder()
                                .redirect(reqwest::redirect::Policy::none())
                                .timeout(oidc.timeout)
                                .build()
                                .map_err(GateError::Http)?;
                            http = Some(client.clone());
                            client
                        }
                    };
                    tokens.push(TokenStrategy {
                        authenticator: Authenticator::Oidc,
                        rules: ClaimRules::from(claims),
                        keys: KeySource::Oidc(Issuer::new(
                            claims.issuer.clone(),
                            discovery_url.expose().to_owned(),
                            client,
                            *oidc,
                        )),
                    });
                }
            }
        }
        let mut challenges = Vec::new();
        if !basic.is_empty() {
            challenges.push(HeaderValue::from_static("Basic realm=\"ash\", charset=\"UTF-8\""));
        }
        if !tokens.is_empty() {
            challenges.push(HeaderValue::from_static("Bearer realm=\"ash\""));
        }
        Ok(Self {
            allow: package.ip_allow_list.clone(),
            trusted_proxies: package.trusted_proxies.clone(),
            forwarded_header: package.forwarded_header,
            basic,
            tokens,
            challenges,
        })
    }

    /// Whether requests need credentials.
    pub fn requires_auth(&self) -> bool {
        !self.basic.is_empty() || !self.tokens.is_empty()
    }

    /// Fetches every OIDC issuer's keys, so the first request does not wait for them.
    /// Failures are logged; requests then retry (rate-limited).
    pub async fn prefetch(&self) {
        let fetches = self.tokens.iter().filter_map(|t| match &t.keys {
            KeySource::Oidc(issuer) => Some(issuer.prefetch()),
            KeySource::Static(_) => None,
        });
        futures_util::future::join_all(fetches).await;
    }

    /// The verdict on a request from `peer` with `headers`, at `now` (seconds since the
    /// epoch): the caller (`None` when no auth is configured) or why it may not pass.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        now: i64,
    ) -> Result<Option<SessionAuthContext>, Denial> {
        if !self.allow.is_empty() {
            // Without a peer address (a router served without connect info) nobody passes.
            let peer = peer.ok_or(Denial::IpNotAllowed)?;
            let ip =
                client_ip::client_ip(headers, peer, &self.trusted_proxies, self.forwarded_header)
                    .map_err(|_| Denial::BadForwarding)?;
            if !self.allow.iter().any(|net| net.contains(ip)) {
                return Err(Denial::IpNotAllowed);
            }
        }
        if !self.requires_auth() {
            return Ok(None);
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            let why = if headers.contains_key(header::AUTHORIZATION) {
                "send one `Authorization` header, not several"
            } else {
                "this agent requires credentials; send an `Authorization` header"
            };
            return Err(Denial::Unauthorized(why.to_owned()));
        };
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(Denial::TooLarge);
        }
        let Ok(text) = value.to_str() else {
            return Err(unauthorized("the `Authorization` header is not visible ASCII"));
        };
        let (scheme, credentials) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        let credentials = credentials.trim_start();
        if scheme.eq_ignore_ascii_case("basic") {
            if self.basic.is_empty() {
                return Err(unauthorized(
                    "this agent does not accept Basic credentials; send a Bearer token",
                ));
            }
            let user =
                basic::check(credentials, &self.basic).map_err(|e| unauthorized(&e.to_string()))?;
            return Ok(Some(SessionAuthContext {
                authenticator: Authenticator::HttpBasic,
                issuer: None,
                subject: None,
                principal_id: user.to_owned(),
                principal_type: PrincipalType::User,
                attributes: std::collections::BTreeMap::new(),
            }));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            if self.tokens.is_empty() {
                return Err(unauthorized(
                    "this agent does not accept Bearer tokens; send Basic credentials",
                ));
            }
            return self.bearer(credentials, now).await.map(Some);
        }
        Err(unauthorized("unsupported authorization scheme; use `Basic` or `Bearer`"))
    }

    /// Checks a bearer token against every strategy of its issuer.
    async fn bearer(&self, token: &str, now: i64) -> Result<SessionAuthContext, Denial> {
        let parsed = jwt::parse(token).map_err(|e| match e {
            TokenError::TooLong => Denial::TooLarge,
            other => unauthorized(&other.to_string()),
        })?;
        let iss = jwt::issuer(&parsed).map_err(|e| unauthorized(&e.to_string()))?;
        // The verdict is the best any strategy reaches, so the order of strategies in
        // agent.toml cannot change it: accepted, then forbidden, then unavailable, then the
        // most advanced reason a token was refused.
        let mut best: Option<(u8, Denial)> = None;
        let mut note = |rank: u8, denial: Denial| {
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((rank, denial));
            }
        };
        for strategy in self.tokens.iter().filter(|t| t.rules.issuer == iss) {
            let verified = match &strategy.keys {
                KeySource::Static(key) => {
                    key.verify(parsed.alg, parsed.signing_input, &parsed.signature)
                }
                // A JWKS never holds HMAC keys: an HS* token is not for this strategy.
                KeySource::Oidc(_) if parsed.alg.is_hmac() => {
                    note(2, unauthorized(&TokenError::BadSignature.to_string()));
                    continue;
                }
                KeySource::Oidc(issuer) => {
                    match issuer.keys_for(parsed.kid.as_deref(), parsed.alg).await {
                        Ok(keys) => keys
                            .iter()
                            .any(|k| k.verify(parsed.alg, parsed.signing_input, &parsed.signature)),
                        Err(LookupError::UnknownKey) => {
                            note(1, unauthorized(&TokenError::BadSignature.to_string()));
                            continue;
                        }
                        Err(LookupError::Unavailable) => {
                            tracing::warn!(
                                issuer = issuer.issuer(),
                                "refusing a token: the provider's keys are unavailable"
                            );
                            note(4, Denial::Unavailable);
                            continue;
                        }
                    }
                }
            };
            if !verified {
                note(2, unauthorized(&TokenError::BadSignature.to_string()));
                continue;
            }
            let subject = match jwt::check_claims(&parsed.claims, &strategy.rules, now) {
                Ok(subject) => subject,
                Err(e) => {
                    note(3, unauthorized(&e.to_string()));
                    continue;
                }
            };
            if !strategy.rules.allows(subject) {
                note(
                    5,
                    Denial::Forbidden(
                        "the token is valid but its subject is not allowed to call this agent"
                            .to_owned(),
                    ),
                );
                continue;
            }
            return Ok(SessionAuthContext {
                authenticator: strategy.authenticator,
                issuer: Some(iss.to_owned()),
                subject: Some(subject.to_owned()),
                principal_id: format!("{iss}:{subject}"),
                principal_type: PrincipalType::Service,
                attributes: jwt::attributes(&parsed.claims),
            });
        }
        // An issuer no strategy names gets the same answer as a bad signature, so probing
        // does not reveal which issuers are configured.
        Err(best.map_or_else(|| unauthorized(&TokenError::BadSignature.to_string()), |(_, d)| d))
    }

    /// The error response for `denial`.
    fn respond(&self, denial: Denial) -> Response {
        let (status, code, message) = match denial {
            Denial::IpNotAllowed => (
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                "requests from this address are not allowed (`[network] ip_allow_list`)".to_owned(),
            ),
            Denial::BadForwarding => (
                StatusCode::BAD_REQUEST,
                "invalid_forwarding",
                "a trusted proxy sent a forwarding header that does not name the client".to_owned(),
            ),
            Denial::TooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                format!(
                    "the `Authorization` header is longer than {MAX_AUTHORIZATION_BYTES} bytes"
                ),
            ),
            Denial::Unauthorized(why) => (StatusCode::UNAUTHORIZED, "unauthorized", why),
            Denial::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", why),
            Denial::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "the token's OpenID provider cannot be reached to check it; try again later"
                    .to_owned(),
            ),
        };
        let mut response = HttpError::new(status, code, message).into_response();
        if status == StatusCode::UNAUTHORIZED {
            for challenge in &self.challenges {
                response.headers_mut().append(header::WWW_AUTHENTICATE, challenge.clone());
            }
        }
        response
    }
}

fn unauthorized(why: &str) -> Denial {
    Denial::Unauthorized(why.to_owned())
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The middleware: runs the gate before anything else sees the request.
pub(crate) async fn guard(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    match gate.check(request.headers(), peer, now_seconds()).await {
        Ok(principal) => {
            if let Some(principal) = principal {
                request.extensions_mut().insert(principal);
            }
            next.run(request).await
        }
        Err(denial) => gate.respond(denial),
    }
}

#[cfg(test)]
mod tests;
