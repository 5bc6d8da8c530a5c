//! `LlmError`: every way a model call fails, naming the provider and what to do next.
//!
//! Messages name the provider, the HTTP status and the provider's own message where there is
//! one. They never contain an API key: keys travel only in headers, base URLs are shown without
//! their user-info, and provider messages are truncated and stripped of control characters.

use std::fmt;
use std::time::Duration;

/// A failed model call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// `provider/model` names a provider that is neither built in nor configured.
    #[error(
        "unknown model provider `{provider}`; use one of {known}, or declare [providers.{provider}] in agent.toml"
    )]
    UnknownProvider {
        /// The provider part of the model reference.
        provider: String,
        /// Comma-separated names that would work.
        known: String,
    },
    /// A provider that needs a key has none.
    #[error("{provider}: no API key; set {env} (or `api_key_env` in [providers.{provider}])")]
    MissingKey {
        /// Provider name.
        provider: String,
        /// The variable that should hold the key.
        env: String,
    },
    /// The configured base URL is unusable.
    #[error("{provider}: base URL `{url}` is not usable: {reason}")]
    InvalidBaseUrl {
        /// Provider name.
        provider: String,
        /// The URL without user-info.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request could not be encoded (e.g. a header value with a newline).
    #[error("{provider}: cannot build the request: {reason}")]
    Request {
        /// Provider name.
        provider: String,
        /// Why.
        reason: String,
    },
    /// The provider rejected the key.
    #[error("{provider}: HTTP {status}: {message}; {hint}")]
    Unauthorized {
        /// Provider name.
        provider: String,
        /// 401 or 403.
        status: u16,
        /// The provider's message.
        message: String,
        /// What to check.
        hint: KeyHint,
    },
    /// The provider answered with an error status.
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        /// Provider name.
        provider: String,
        /// HTTP status code.
        status: u16,
        /// The provider's message, or a description of the body.
        message: String,
        /// The provider's `retry-after`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No connection could be made.
    #[error("{provider}: cannot connect to {url}: {reason}")]
    Connect {
        /// Provider name.
        provider: String,
        /// Base URL without user-info.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// The connection failed while the response was streaming.
    #[error("{provider}: the connection broke mid-response: {reason}")]
    Interrupted {
        /// Provider name.
        provider: String,
        /// The transport's reason.
        reason: String,
    },
    /// Nothing arrived in time.
    #[error("{provider}: {phase} took longer than {}s", after.as_secs_f64())]
    Timeout {
        /// Provider name.
        provider: String,
        /// What was awaited.
        phase: TimeoutPhase,
        /// The limit.
        after: Duration,
    },
    /// The response was not a well-formed event stream of the expected format.
    #[error("{provider}: malformed response: {message}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The response exceeded a size limit.
    #[error("{provider}: response exceeds the {what} limit of {limit}")]
    TooLarge {
        /// Provider name.
        provider: String,
        /// Which limit.
        what: &'static str,
        /// The limit, with its unit.
        limit: String,
    },
    /// The provider reported an error inside the stream.
    #[error("{provider}: provider error ({kind}): {message}")]
    Provider {
        /// Provider name.
        provider: String,
        /// The provider's error type, e.g. `overloaded_error`.
        kind: String,
        /// The provider's message.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// The caller cancelled the call.
    #[error("model call cancelled")]
    Cancelled,
    /// A `scripted/` file is unusable.
    #[error("{path}:{line}: {message}")]
    Script {
        /// The script file.
        path: String,
        /// 1-based line, 0 for the whole file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A `scripted/` model was asked for more turns than its script holds.
    #[error(
        "{path}: the script has {turns} turn(s) but this is model call {requested}; add a line for it"
    )]
    ScriptExhausted {
        /// The script file.
        path: String,
        /// Lines in the script.
        turns: usize,
        /// 1-based number of the call that had no line.
        requested: usize,
    },
}

impl LlmError {
    /// Whether the same request may succeed if sent again: rate limits, overload, server errors,
    /// broken connections and timeouts. Client errors (4xx other than 408/409/429) are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429 | 500 | 502 | 503 | 504 | 529)
            }
            Self::Connect { .. } | Self::Interrupted { .. } | Self::Timeout { .. } => true,
            Self::Provider { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The provider's requested wait, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a timed-out call was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// The response status and headers.
    Response,
    /// The next chunk of a streaming body.
    Chunk,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Response => "waiting for the response",
            Self::Chunk => "waiting for the next chunk",
        })
    }
}

/// The advice attached to a 401/403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHint {
    /// The variable the key came from, when known.
    pub env: Option<String>,
}

impl fmt::Display for KeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.env {
            Some(env) => write!(f, "check that {env} holds a valid key with access to this model"),
            None => f.write_str("check the provider's API key and its access to this model"),
        }
    }
}
