//! The session context authored code reads: `getSession()` in the seed, `ASH_SESSION` for
//! command tools. Its `auth` part says who called (`SessionAuthContext`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who made a request, as an authenticated principal: the seed's `SessionAuthContext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAuthContext {
    /// The strategy that authenticated the caller.
    pub authenticator: Authenticator,
    /// The token's `iss`, for token strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token's `sub`, for token strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A stable id: the user name for `http-basic`, `<iss>:<sub>` for tokens.
    pub principal_id: String,
    /// What kind of caller this is.
    pub principal_type: PrincipalType,
    /// Claims worth keeping: every non-registered claim whose value is a string or a list of
    /// strings.
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// The strategy that authenticated a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authenticator {
    /// `Authorization: Basic`.
    HttpBasic,
    /// An HMAC-signed JWT.
    JwtHmac,
    /// An ECDSA-signed JWT.
    JwtEcdsa,
    /// A token verified through OpenID Connect discovery.
    Oidc,
    /// The runtime itself, for scheduled runs.
    Schedule,
}

impl Authenticator {
    /// The name used in `agent.toml` and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpBasic => "http-basic",
            Self::JwtHmac => "jwt-hmac",
            Self::JwtEcdsa => "jwt-ecdsa",
            Self::Oidc => "oidc",
            Self::Schedule => "schedule",
        }
    }
}

/// What kind of caller a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalType {
    /// Another program (token strategies).
    Service,
    /// A person (`http-basic`).
    User,
    /// The runtime itself (schedules).
    Runtime,
    /// Not known.
    Unknown,
}

/// A string claim or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// One string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

/// `auth` of the session context: the caller of the active turn and of the session's first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAuth {
    /// The caller of the active turn; may change between turns.
    pub current: Option<SessionAuthContext>,
    /// The caller that started the session; stable.
    pub initiator: Option<SessionAuthContext>,
}

/// `turn` of the session context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTurn {
    /// `turn_<sequence>`.
    pub id: String,
    /// The turn's ordinal, from 0.
    pub sequence: u32,
}

/// The session context of one action: `ASH_SESSION` of a command tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    /// The durable session.
    pub session_id: String,
    /// The durable execution.
    pub run_id: String,
    /// `conversation` or `task`.
    pub mode: crate::RunMode,
    /// The active turn.
    pub turn: SessionTurn,
    /// The delegating parent, inside a subagent's run; null otherwise.
    pub parent: Option<serde_json::Value>,
    /// Who called.
    pub auth: SessionAuth,
}
