//! An HTTP connection (`kind = "http"`): requests below its base URL with its headers and
//! credentials added here, its timeout and retry policy, no redirects (they could carry the
//! credentials elsewhere), and bounded answers.

use std::collections::BTreeMap;
use std::time::Duration;

use ash_spec::{Connection, ConnectionKind};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::mcp::auth_headers;
use super::redact::Redactor;

/// Largest answer body read.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Largest request body sent.
pub(crate) const MAX_REQUEST_BYTES: usize = 4 << 20;
/// First wait before a retry; doubled each time.
const RETRY_WAIT: Duration = Duration::from_millis(200);

/// Headers a caller may not set: the connection's own, and what the transport decides.
pub(crate) const RESERVED: &[&str] = ash_spec::RESERVED_HEADERS;

/// One request through a connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub(crate) method: String,
    /// Below the base URL, starting with `/`.
    pub(crate) path: String,
    /// Query parameters, in order.
    pub(crate) query: Vec<(String, String)>,
    /// Extra headers (not the reserved ones).
    pub(crate) headers: BTreeMap<String, String>,
    /// A JSON body.
    pub(crate) body: Option<Value>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    /// Content type and a few useful headers.
    pub(crate) headers: BTreeMap<String, String>,
    /// The body as JSON when it is JSON, else as text.
    pub(crate) body: Value,
}

impl HttpResponse {
    /// The response as the model and the broker's callers read it.
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({"status": self.status, "headers": self.headers, "body": self.body})
    }
}

/// An HTTP connection of an engine.
pub(crate) struct HttpConnection {
    pub(crate) connection: Connection,
    pub(crate) redactor: Redactor,
    base: reqwest::Url,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl HttpConnection {
    /// The runtime side of `connection` (an `http` one), or why it cannot be used.
    pub(crate) fn new(connection: &Connection) -> Result<Self, String> {
        let ConnectionKind::Http { base_url, headers: extra, .. } = &connection.kind else {
            return Err("not an HTTP connection".into());
        };
        let mut base = reqwest::Url::parse(base_url.expose())
            .map_err(|e| format!("its base_url does not parse: {e}"))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut headers = auth_headers(&connection.auth)?;
        for (name, value) in extra {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("header `{name}` holds characters a header cannot carry"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(connection.timeout_ms.min(30_000)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            redactor: Redactor::of(connection),
            connection: connection.clone(),
            base,
            headers,
            client,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.connection.name
    }

    /// The URL of `path` (and `query`) below the base URL, or why it is not below it.
    fn url(&self, path: &str, query: &[(String, String)]) -> Result<reqwest::Url, String> {
        let shown: String = path.chars().filter(|c| !c.is_control()).take(200).collect();
        if !path.starts_with('/') || path.starts_with("//") || path.contains('\\') {
            return Err(format!("path `{shown}` must start with a single `/`"));
        }
        if path.chars().any(char::is_control) || path.contains("://") {
            return Err(format!(
                "path `{shown}` must be a plain path (no control characters, scheme or user)"
            ));
        }
        let decoded = path.replace("%2e", ".").replace("%2E", ".");
        if decoded.split('/').any(|segment| segment == "..") {
            return Err(format!("path `{shown}` may not climb out of the base URL with `..`"));
        }
        // Servers that decode these before routing would read other paths than the one checked.
        let lower = path.to_ascii_lowercase();
        if lower.contains("%2f")
            || lower.contains("%5c")
            || lower.contains("%2e")
            || path.contains(';')
        {
            return Err(format!("path `{shown}` may not hold `;` or an encoded `/`, `\\` or `.`"));
        }
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| format!("path `{path}`: {e}"))?;
        if url.origin() != self.base.origin()
            || !url.path().starts_with(self.base.path())
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!("path `{shown}` leaves the connection's base URL"));
        }
        // `join` drops the base's query: a key written there (`?key=${KEY}`) is kept, first.
        url.set_query(None);
        let base_pairs: Vec<(String, String)> = self.base.query_pairs().into_owned().collect();
        if !base_pairs.is_empty() || !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(base_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        Ok(url)
    }

    /// Sends `request`, retrying as the connection's policy allows: a request that never
    /// reached the server always, one answered 429 or 5xx only when its method is idempotent.
    pub(crate) async fn send(
        &self,
        request: &HttpRequest,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<HttpResponse, String> {
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            "HEAD" => reqwest::Method::HEAD,
            other => {
                return Err(format!(
                    "method `{other}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
                ));
            }
        };
        let url = self.url(&request.path, &request.query)?;
        let mut headers = self.headers.clone();
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED.contains(&lower.as_str()) || self.headers.contains_key(lower.as_str()) {
                return Err(format!("header `{name}` is set by the connection, not by the caller"));
            }
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header `{name}` holds characters a header cannot carry"))?;
            headers.insert(name, value);
        }
        let body = match &request.body {
            None => None,
            Some(value) => {
                let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
                if bytes.len() > MAX_REQUEST_BYTES {
                    return Err(format!(
                        "the body is {} bytes; the limit is {MAX_REQUEST_BYTES}",
                        bytes.len()
                    ));
                }
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Some(bytes)
            }
        };
        let idempotent = !matches!(method, reqwest::Method::POST | reqwest::Method::PATCH);
        let mut attempt = 0;
        loop {
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(timeout);
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let sent = tokio::select! {
                sent = builder.send() => sent,
                () = cancel.cancelled() => return Err("cancelled".into()),
            };
            let retry = match &sent {
                Err(e) if e.is_connect() => true,
                Ok(response) => {
                    idempotent
                        && (response.status().as_u16() == 429
                            || response.status().is_server_error())
                }
                Err(_) => false,
            };
            if retry && attempt < self.connection.retry_attempts {
                attempt += 1;
                tokio::select! {
                    () = tokio::time::sleep(RETRY_WAIT * 2u32.saturating_pow(attempt - 1)) => continue,
                    () = cancel.cancelled() => return Err("cancelled".into()),
                }
            }
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    return Err(format!(
                        "`{}` did not answer within {} ms",
                        self.name(),
                        timeout.as_millis()
                    ));
                }
                Err(e) => {
                    return Err(self.redactor.text(&format!(
                        "requesting `{}` failed: {}",
                        self.name(),
                        e.without_url()
                    )));
                }
            };
            return self.read(response, cancel).await;
        }
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
        cancel: &CancellationToken,
    ) -> Result<HttpResponse, String> {
        let status = response.status().as_u16();
        let mut headers = BTreeMap::new();
        for name in ["content-type", "location", "retry-after", "etag", "last-modified"] {
            if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
                headers.insert(name.to_owned(), self.redactor.text(value));
            }
        }
        let mut bytes = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk,
                () = cancel.cancelled() => return Err("cancelled".into()),
            };
            match chunk {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(format!(
                            "`{}` answered more than {MAX_RESPONSE_BYTES} bytes",
                            self.name()
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(self.redactor.text(&format!(
                        "reading the answer of `{}` failed: {}",
                        self.name(),
                        e.without_url()
                    )));
                }
            }
        }
        let mut body = match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => value,
            Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        self.redactor.json(&mut body);
        Ok(HttpResponse { status, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ash_spec::{Connection, ConnectionAuth, ConnectionKind, Interpolated, Source};

    use super::HttpConnection;

    fn connection(base: &str) -> HttpConnection {
        let connection = Connection {
            name: "api".into(),
            kind: ConnectionKind::Http {
                base_url: Interpolated::literal(base),
                headers: BTreeMap::new(),
                openapi: None,
            },
            auth: ConnectionAuth::None,
            timeout_ms: 1000,
            retry_attempts: 0,
            instructions: false,
            source: Source::Code,
        };
        HttpConnection::new(&connection).unwrap()
    }

    #[test]
    fn paths_stay_below_the_base_url_and_keep_its_query() {
        let api = connection("https://api.example/v1?key=k1");
        let q = vec![("a".to_owned(), "b c".to_owned())];
        let cases: Vec<(&str, Result<String, &str>)> = vec![
            ("/orders/7", Ok("https://api.example/v1/orders/7?key=k1&a=b+c".into())),
            ("/a%20b", Ok("https://api.example/v1/a%20b?key=k1&a=b+c".into())),
            ("/../etc", Err("may not climb out")),
            ("/%2e%2e/etc", Err("may not climb out")),
            ("/a%2Fb", Err("encoded")),
            ("/a%5cb", Err("encoded")),
            ("/a;b", Err("encoded")),
            ("//evil.example/x", Err("single `/`")),
            ("/\\evil", Err("single `/`")),
            ("/https://u:p@api.example/v1/x", Err("plain path")),
            ("/users/@me", Ok("https://api.example/v1/users/@me?key=k1&a=b+c".into())),
            ("/a\tb", Err("plain path")),
            ("orders", Err("single `/`")),
        ];
        for (path, want) in cases {
            let got = api.url(path, &q).map(|u| u.to_string());
            match (got, want) {
                (Ok(url), Ok(want)) => assert_eq!(url, want, "{path}"),
                (Err(why), Err(want)) => assert!(why.contains(want), "{path}: {why}"),
                (got, want) => panic!("{path}: got {got:?}, wanted {want:?}"),
            }
        }
    }
}
