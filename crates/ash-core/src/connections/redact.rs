//! The secrets of a connection (its credentials, its server's environment, its headers) taken
//! out of everything that leaves the runtime: error messages, reasons, tool results.

use ash_spec::{Connection, ConnectionAuth, ConnectionKind, Interpolated, McpTransport, Secret};
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
    /// The values of `connection` that must never be shown: every secret field whole, the value
    /// of every `${VAR}` any of its fields references (a key inside a URL's query, a token
    /// inside `Authorization = "token ${GH_TOKEN}"`), and the forms they are sent in (the
    /// base64 of HTTP basic credentials).
    pub(crate) fn of(connection: &Connection) -> Self {
        let mut secrets: Vec<String> = Vec::new();
        let field = |secrets: &mut Vec<String>, value: &Interpolated, whole: bool| {
            if whole {
                secrets.push(value.expose().to_owned());
            }
            secrets.extend(value.env_values().map(str::to_owned));
        };
        match &connection.auth {
            ConnectionAuth::None => {}
            ConnectionAuth::ApiKey { value, .. } => field(&mut secrets, value, true),
            ConnectionAuth::Basic { username, password } => {
                field(&mut secrets, username, false);
                field(&mut secrets, password, true);
                use base64::Engine as _;
                let pair = format!("{}:{}", username.expose(), password.expose());
                secrets.push(base64::engine::general_purpose::STANDARD.encode(pair));
            }
            ConnectionAuth::Bearer { token } => field(&mut secrets, token, true),
        }
        match &connection.kind {
            ConnectionKind::Mcp { transport: McpTransport::Stdio { env, .. }, .. } => {
                env.values().for_each(|v| field(&mut secrets, v, true));
            }
            ConnectionKind::Mcp { transport: McpTransport::StreamableHttp { url }, .. } => {
                field(&mut secrets, url, false);
                secrets.extend(url_secrets(url.expose()));
            }
            ConnectionKind::Http { base_url, headers, .. } => {
                field(&mut secrets, base_url, false);
                secrets.extend(url_secrets(base_url.expose()));
                headers.values().for_each(|v| field(&mut secrets, v, true));
            }
        }
        let mut secrets: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .map(Secret::new)
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        secrets.dedup_by(|a, b| a.expose() == b.expose());
        Self { secrets }
    }

    /// `text` with every secret replaced, then cut to `max` bytes (never the other way round,
    /// or a secret straddling the cut would show its head).
    pub(crate) fn cut(&self, text: &str, max: usize) -> String {
        let redacted = self.text(text);
        if redacted.len() <= max {
            return redacted;
        }
        let mut end = max;
        while !redacted.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &redacted[..end])
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
            Value::Object(map) => {
                if map.keys().any(|k| self.secrets.iter().any(|s| k.contains(s.expose()))) {
                    let old = std::mem::take(map);
                    for (key, mut value) in old {
                        self.json(&mut value);
                        map.insert(self.text(&key), value);
                    }
                } else {
                    map.values_mut().for_each(|item| self.json(item));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// The parts of a URL that are credentials when written into it: the password and the values
/// of its query.
fn url_secrets(url: &str) -> Vec<String> {
    let Ok(url) = reqwest::Url::parse(url) else { return Vec::new() };
    let mut out: Vec<String> = url.password().map(str::to_owned).into_iter().collect();
    out.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ash_spec::{Connection, ConnectionAuth, ConnectionKind, Interpolated, Source};

    use super::Redactor;

    #[test]
    fn every_form_of_a_secret_is_redacted() {
        let connection = Connection {
            name: "api".into(),
            kind: ConnectionKind::Http {
                base_url: Interpolated::literal(
                    "https://api.example/v1?token=literal-query-secret",
                ),
                headers: BTreeMap::new(),
                openapi: None,
            },
            auth: ConnectionAuth::Basic {
                username: Interpolated::literal("sk_live_user_42"),
                password: Interpolated::literal("pw-123456"),
            },
            timeout_ms: 1000,
            retry_attempts: 0,
            instructions: false,
            source: Source::Code,
        };
        let redactor = Redactor::of(&connection);
        let text =
            "echo: literal-query-secret, Basic c2tfbGl2ZV91c2VyXzQyOnB3LTEyMzQ1Ng==, pw-123456";
        assert_eq!(redactor.text(text), "echo: <redacted>, Basic <redacted>, <redacted>");
        let mut json = serde_json::json!({"pw-123456": ["pw-123456"]});
        redactor.json(&mut json);
        assert_eq!(json, serde_json::json!({"<redacted>": ["<redacted>"]}));
        assert_eq!(redactor.cut("xx pw-123456 yy", 6), "xx <re…");
    }
}
