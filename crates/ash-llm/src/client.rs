//! `Client` and `Model`: from `provider/model` to something that can be called.
//!
//! Owns provider resolution (the table, the key check, the base URL check), the one shared HTTP
//! connection pool, and the request for each wire format. Streaming, retries and cancellation
//! live in `stream.rs`; the offline `scripted/` provider in `scripted.rs`.

use std::path::Path;
use std::sync::Arc;

use ash_protocol::ModelResponse;
use ash_spec::{ModelRef, ProviderApi, SCRIPTED_PROVIDER};
use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use tokio_util::sync::CancellationToken;

use crate::config::{ClientConfig, ProviderConfig, ProviderTable, redact_userinfo};
use crate::error::{KeyHint, LlmError};
use crate::request::ModelRequest;
use crate::retry::Jitter;
use crate::scripted::Script;
use crate::stream::{HttpCall, ModelStream};
use crate::{anthropic, openai};

/// Calls models. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    providers: Arc<ProviderTable>,
    config: Arc<ClientConfig>,
    jitter: Jitter,
}

impl Client {
    /// A client over `providers` with `config`.
    pub fn new(providers: ProviderTable, config: ClientConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|err| LlmError::Request {
                provider: "ash".to_owned(),
                reason: format!("cannot start the HTTP client: {err}"),
            })?;
        let jitter = Jitter::new(config.jitter_seed);
        Ok(Self { http, providers: Arc::new(providers), config: Arc::new(config), jitter })
    }

    /// The providers this client knows.
    pub fn providers(&self) -> &ProviderTable {
        &self.providers
    }

    /// Resolves `model`. `package_dir` is the agent package the reference was written in;
    /// `scripted/<file>` paths are relative to it. Fails early, before any request, when the
    /// provider is unknown, its key is missing, its URL is unusable or the script is invalid.
    pub fn model(&self, model: &ModelRef, package_dir: &Path) -> Result<Model, LlmError> {
        if model.provider() == SCRIPTED_PROVIDER {
            let script = Script::load(package_dir, model.model())?;
            return Ok(Model {
                name: model.to_string(),
                backend: Backend::Scripted(Arc::new(script)),
            });
        }
        let provider = self.providers.get(model.provider())?;
        let url = endpoint(provider)?;
        let headers = headers(provider)?;
        Ok(Model {
            name: model.to_string(),
            backend: Backend::Http(Arc::new(HttpModel {
                http: self.http.clone(),
                provider: provider.name.clone(),
                api: provider.api,
                model: model.model().to_owned(),
                key_env: provider.api_key_env.clone(),
                url,
                headers,
                config: Arc::clone(&self.config),
                jitter: self.jitter.clone(),
            })),
        })
    }
}

/// A callable model.
#[derive(Debug, Clone)]
pub struct Model {
    name: String,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Http(Arc<HttpModel>),
    Scripted(Arc<Script>),
}

#[derive(Debug)]
pub(crate) struct HttpModel {
    pub(crate) http: reqwest::Client,
    pub(crate) provider: String,
    pub(crate) api: ProviderApi,
    pub(crate) model: String,
    pub(crate) key_env: Option<String>,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) jitter: Jitter,
}

impl HttpModel {
    pub(crate) fn key_hint(&self) -> KeyHint {
        KeyHint { env: self.key_env.clone() }
    }

    /// The endpoint without user-info, for messages.
    pub(crate) fn display_url(&self) -> String {
        display_url(&self.url)
    }
}

impl Model {
    /// `provider/model`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a call. Nothing is sent until the stream is polled; dropping the stream or
    /// cancelling `cancel` aborts the request.
    pub fn stream(&self, request: &ModelRequest, cancel: CancellationToken) -> ModelStream {
        match &self.backend {
            Backend::Scripted(script) => ModelStream::scripted(script, request, cancel),
            Backend::Http(model) => {
                let body = match model.api {
                    ProviderApi::OpenAi => {
                        openai::request_body(&model.provider, &model.model, request)
                    }
                    ProviderApi::Anthropic => anthropic::request_body(&model.model, request),
                };
                match serde_json::to_vec(&body) {
                    Ok(body) => ModelStream::http(
                        HttpCall::new(Arc::clone(model), Bytes::from(body)),
                        cancel,
                    ),
                    Err(err) => ModelStream::failed(LlmError::Request {
                        provider: model.provider.clone(),
                        reason: format!("cannot encode the request body: {err}"),
                    }),
                }
            }
        }
    }

    /// Calls the model and collects the whole response.
    pub async fn complete(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<ModelResponse, LlmError> {
        self.stream(request, cancel).collect().await
    }
}

fn endpoint(provider: &ProviderConfig) -> Result<Url, LlmError> {
    let invalid = |url: &str, reason: &str| LlmError::InvalidBaseUrl {
        provider: provider.name.clone(),
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(base) = provider.base_url.as_deref() else {
        return Err(invalid("", "none is configured; set `base_url` in [providers.<name>]"));
    };
    let path = match provider.api {
        ProviderApi::OpenAi => "chat/completions",
        ProviderApi::Anthropic => "messages",
    };
    let url = Url::parse(&format!("{}/{path}", base.trim_end_matches('/')))
        .map_err(|err| invalid(&redact_userinfo(base), &err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(&display_url(&url), "it must be an http or https URL with a host"));
    }
    Ok(url)
}

fn headers(provider: &ProviderConfig) -> Result<HeaderMap, LlmError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers
        .insert(USER_AGENT, HeaderValue::from_static(concat!("ash/", env!("CARGO_PKG_VERSION"))));
    let key = match (&provider.api_key, provider.key_required) {
        (Some(key), _) => Some(key),
        (None, false) => None,
        (None, true) => {
            return Err(LlmError::MissingKey {
                provider: provider.name.clone(),
                env: provider
                    .api_key_env
                    .clone()
                    .unwrap_or_else(|| "the provider's key variable".to_owned()),
            });
        }
    };
    let bad_key = || LlmError::Request {
        provider: provider.name.clone(),
        reason: "the API key contains characters that cannot be sent in a header".to_owned(),
    };
    match provider.api {
        ProviderApi::OpenAi => {
            if let Some(key) = key {
                let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose()))
                    .map_err(|_| bad_key())?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        ProviderApi::Anthropic => {
            headers.insert("anthropic-version", HeaderValue::from_static(anthropic::API_VERSION));
            if let Some(key) = key {
                let mut value = HeaderValue::try_from(key.expose()).map_err(|_| bad_key())?;
                value.set_sensitive(true);
                headers.insert("x-api-key", value);
            }
        }
    }
    Ok(headers)
}

/// `url` without user-info (a gateway URL may carry credentials).
fn display_url(url: &Url) -> String {
    redact_userinfo(url.as_str())
}
