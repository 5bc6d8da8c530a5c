//! What can go wrong talking to a server, in words an operator or a model can act on.
//!
//! Messages may quote what a server or transport said (a URL included); callers that hold
//! secrets redact them before showing a message anywhere.

use std::time::Duration;

use rmcp::service::{ClientInitializeError, ServiceError};

use crate::client::cut;

/// A session-level failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The client could not be built.
    #[error("could not prepare the connection: {0}")]
    Setup(String),
    /// `initialize` was not answered in time.
    #[error("the server did not finish initializing within {} s", .0.as_secs_f64())]
    InitTimeout(Duration),
    /// A request was not answered in time.
    #[error("the server did not answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The server wants credentials it was not given (or refused those it got).
    #[error(
        "the server refused the request as unauthorized ({0}); give the connection credentials in its [auth] table"
    )]
    Unauthorized(String),
    /// The server answered with a JSON-RPC error.
    #[error("the server answered with error {code}: {message}")]
    Rejected {
        /// JSON-RPC error code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// The server broke the protocol (garbage, an unexpected answer, too much of something).
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// The session ended (the process exited, the stream closed).
    #[error("the connection to the server closed")]
    Closed,
    /// The transport failed (refused connection, HTTP status, TLS).
    #[error("{0}")]
    Transport(String),
}

impl McpError {
    pub(crate) fn from_init(error: &ClientInitializeError) -> Self {
        if error.is_authorization_required() {
            return Self::Unauthorized("the server asked for authorization".into());
        }
        match error {
            ClientInitializeError::JsonRpcError(data) => {
                Self::Rejected { code: data.code.0, message: cut(&data.message, 2000) }
            }
            ClientInitializeError::ConnectionClosed(_) | ClientInitializeError::Cancelled => {
                Self::Closed
            }
            ClientInitializeError::ExpectedInitResponse(_)
            | ClientInitializeError::ExpectedInitResult(_) => {
                Self::Protocol("it did not answer initialize with an initialize result".into())
            }
            other => classify(&other.to_string()),
        }
    }

    pub(crate) fn from_service(error: &ServiceError) -> Self {
        if error.is_authorization_required() {
            return Self::Unauthorized("the server asked for authorization".into());
        }
        match error {
            ServiceError::TransportClosed | ServiceError::Cancelled { .. } => Self::Closed,
            ServiceError::Timeout { timeout } => Self::Timeout(*timeout),
            ServiceError::McpError(data) => {
                Self::Rejected { code: data.code.0, message: cut(&data.message, 2000) }
            }
            ServiceError::UnexpectedResponse => {
                Self::Protocol("it answered with something other than what was asked".into())
            }
            other => classify(&other.to_string()),
        }
    }
}

/// `text` without the URLs transports quote (`... for url (https://host/?key=...)`): a URL
/// may carry a credential in its query.
pub(crate) fn without_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" for url (") {
        out.push_str(&rest[..at]);
        match rest[at..].find(')') {
            Some(close) => rest = &rest[at + close + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A transport's text, sorted into what an operator can act on.
fn classify(text: &str) -> McpError {
    let text = &without_urls(text);
    for (status, what) in [("HTTP 401", "401 Unauthorized"), ("HTTP 403", "403 Forbidden")] {
        if text.contains(status) {
            return McpError::Unauthorized(what.into());
        }
    }
    if text.contains("could not parse") || text.contains("Unexpected content type") {
        return McpError::Protocol(cut(text, 600));
    }
    McpError::Transport(cut(text, 600))
}

/// Why a tool call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request never left (the session was already down): safe to retry.
    #[error("{0}")]
    NotSent(McpError),
    /// No answer within the connection's timeout; the server was told to stop.
    #[error("the server did not answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// Cancelled by the caller; the server was told.
    #[error("cancelled")]
    Cancelled,
    /// The server refused the call (unknown tool, invalid arguments).
    #[error("the server refused the call with error {code}: {message}")]
    Rejected {
        /// JSON-RPC error code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// The session broke while the call was in flight.
    #[error("{0}")]
    Failed(McpError),
}

#[cfg(test)]
mod tests {
    use super::without_urls;

    #[test]
    fn quoted_urls_are_taken_out_of_transport_errors() {
        let cases = [
            (
                "error sending request for url (https://h/mcp?key=SECRET): refused",
                "error sending request: refused",
            ),
            ("a for url (x) b for url (y) c", "a b c"),
            ("unclosed for url (https://h/?k=S", "unclosed"),
            ("no url here", "no url here"),
        ];
        let got: Vec<String> = cases.iter().map(|(text, _)| without_urls(text)).collect();
        let want: Vec<String> = cases.iter().map(|(_, out)| (*out).to_owned()).collect();
        assert_eq!(got, want);
    }
}
