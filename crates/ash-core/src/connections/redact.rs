//! The secrets of a connection (its credentials, its server's environment, its headers) taken
//! out of everything that leaves the runtime: error messages, reasons, tool results.

use ash_spec::{Connection, ConnectionAuth, ConnectionKind, McpTransport, Secret};
use serde_json::Value;

/// Shorter values are not searched for: they would redact ordinary words.
const MIN_SECRET_CHARS: usize = 6;

/// What replaces a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// The secret values of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// The values of `connection` that must never be shown.
    pub(crate) fn of(connection: &Connection) -> Self {
        let mut secrets = Vec::new();
        match &connection.auth {
            ConnectionAuth::None => {}
            ConnectionAuth::ApiKey { value, .. } => secrets.push(value.expose()),
            ConnectionAuth::Basic { username: _, password } => secrets.push(password.expose()),
            ConnectionAuth::Bearer { token } => secrets.push(token.expose()),
        }
        match &connection.kind {
            ConnectionKind::Mcp { transport: McpTransport::Stdio { env, .. }, .. } => {
                secrets.extend(env.values().map(|v| v.expose()));
            }
            ConnectionKind::Mcp { transport: McpTransport::StreamableHttp { url }, .. } => {
                // A URL from the environment may carry a key in its query or user-info.
                if url.uses_env() {
                    secrets.push(url.expose());
                }
            }
            ConnectionKind::Http { headers, .. } => {
                secrets.extend(headers.values().filter(|v| v.uses_env()).map(|v| v.expose()));
            }
        }
        let mut secrets: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .map(Secret::new)
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Self { secrets }
    }

    /// `text` with every secret replaced.
    pub(crate) fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), REDACTED);
            }
        }
        out
    }

    /// `value` with every secret replaced in every string.
    pub(crate) fn json(&self, value: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if self.secrets.iter().any(|secret| s.contains(secret.expose())) {
                    *s = self.text(s);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.json(item)),
            Value::Object(map) => map.values_mut().for_each(|item| self.json(item)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}
