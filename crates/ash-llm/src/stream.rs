//! `ModelStream`: one model call as a sequence of `ModelEvent`s, with retries and cancellation.
//!
//! Owns the HTTP attempt loop: send with a response timeout, map error statuses to typed errors
//! (reading a bounded part of the body for the provider's message), decode the body with an idle
//! timeout between chunks, and retry retryable failures with jittered backoff or the provider's
//! `retry-after` — before any content was handed out, or after it only when the policy allows
//! (then a `Retrying` event tells the caller to discard). Cancellation ends the call at once.

use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use ash_protocol::{ModelEvent, ModelResponse};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use tokio_util::sync::CancellationToken;

use crate::client::HttpModel;
use crate::collect::Collector;
use crate::error::{LlmError, TimeoutPhase};
use crate::request::ModelRequest;
use crate::retry::retry_after;
use crate::scripted::{Script, ScriptedStream};
use crate::wire::{Decoder, error_body_message};

/// The events of one model call. Read with [`ModelStream::next`]; drop it to abort.
pub struct ModelStream {
    inner: Inner,
    cancel: CancellationToken,
}

enum Inner {
    Http(Box<HttpCall>),
    Scripted(ScriptedStream),
    Failed(Option<LlmError>),
}

impl ModelStream {
    pub(crate) fn http(call: HttpCall, cancel: CancellationToken) -> Self {
        Self { inner: Inner::Http(Box::new(call)), cancel }
    }

    pub(crate) fn scripted(
        script: &Arc<Script>,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Self {
        Self { inner: Inner::Scripted(ScriptedStream::new(script, request)), cancel }
    }

    pub(crate) fn failed(error: LlmError) -> Self {
        Self { inner: Inner::Failed(Some(error)), cancel: CancellationToken::new() }
    }

    /// The next event; `None` after `Finished` or after an error.
    pub async fn next(&mut self) -> Option<Result<ModelEvent, LlmError>> {
        match &mut self.inner {
            Inner::Http(call) => call.next(&self.cancel).await,
            Inner::Scripted(stream) => stream.next(&self.cancel).await,
            Inner::Failed(error) => error.take().map(Err),
        }
    }

    /// Reads the stream to its end and collects the response.
    pub async fn collect(mut self) -> Result<ModelResponse, LlmError> {
        let mut collector = Collector::new();
        while let Some(event) = self.next().await {
            collector.push(&event?);
        }
        collector.finish().ok_or_else(|| LlmError::Protocol {
            provider: self.provider_name(),
            message: "the stream ended without a finish reason".to_owned(),
        })
    }

    fn provider_name(&self) -> String {
        match &self.inner {
            Inner::Http(call) => call.model.provider.clone(),
            Inner::Scripted(_) => ash_spec::SCRIPTED_PROVIDER.to_owned(),
            Inner::Failed(_) => "ash".to_owned(),
        }
    }
}

/// One attempt's response and the decoder reading it.
struct Attempt {
    response: reqwest::Response,
    decoder: Decoder,
}

/// One HTTP model call across its attempts.
pub(crate) struct HttpCall {
    model: Arc<HttpModel>,
    body: Bytes,
    attempt: u32,
    /// The response being read, with its decoder; `None` between attempts.
    active: Option<Attempt>,
    backoff: Option<Duration>,
    pending: VecDeque<ModelEvent>,
    scratch: Vec<ModelEvent>,
    failure: Option<LlmError>,
    /// Content (not just `ResponseStarted`/`Usage`) was handed out in this attempt.
    emitted: bool,
    done: bool,
}

impl HttpCall {
    pub(crate) fn new(model: Arc<HttpModel>, body: Bytes) -> Self {
        Self {
            model,
            body,
            attempt: 0,
            active: None,
            backoff: None,
            pending: VecDeque::new(),
            scratch: Vec::new(),
            failure: None,
            emitted: false,
            done: false,
        }
    }

    async fn next(&mut self, cancel: &CancellationToken) -> Option<Result<ModelEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.emitted |= is_content(&event);
                return Some(Ok(event));
            }
            if let Some(error) = self.failure.take() {
                self.active = None;
                match self.retry_delay(&error) {
                    Some(delay) => {
                        self.backoff = Some(delay);
                        if self.emitted {
                            self.emitted = false;
                            self.pending.push_back(ModelEvent::Retrying {
                                attempt: self.attempt + 1,
                                error: error.to_string(),
                            });
                        }
                        continue;
                    }
                    None => {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
            }
            if self.done {
                return None;
            }
            if cancel.is_cancelled() {
                return self.cancelled();
            }
            let Some(attempt) = &mut self.active else {
                if let Some(delay) = self.backoff.take() {
                    tokio::select! {
                        () = cancel.cancelled() => return self.cancelled(),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                match self.connect(cancel).await {
                    Ok(response) => {
                        let model = &self.model;
                        let decoder =
                            Decoder::new(model.api, &model.provider, &model.config.limits);
                        self.active = Some(Attempt { response, decoder });
                    }
                    Err(LlmError::Cancelled) => return self.cancelled(),
                    Err(error) => self.failure = Some(error),
                }
                continue;
            };
            let idle = self.model.config.idle_timeout;
            let chunk = tokio::select! {
                () = cancel.cancelled() => return self.cancelled(),
                chunk = tokio::time::timeout(idle, attempt.response.chunk()) => chunk,
            };
            let result = match chunk {
                Err(_) => Err(LlmError::Timeout {
                    provider: self.model.provider.clone(),
                    phase: TimeoutPhase::Chunk,
                    after: idle,
                }),
                Ok(Err(err)) => Err(LlmError::Interrupted {
                    provider: self.model.provider.clone(),
                    reason: reason(&err),
                }),
                Ok(Ok(Some(bytes))) => attempt.decoder.feed(&bytes, &mut self.scratch),
                Ok(Ok(None)) => {
                    let finished = attempt.decoder.finish(&mut self.scratch);
                    self.active = None;
                    finished
                }
            };
            if self.scratch.iter().any(|e| matches!(e, ModelEvent::Finished { .. })) {
                // Whatever follows the end of the response is not read.
                self.done = true;
                self.active = None;
            }
            self.pending.extend(self.scratch.drain(..));
            if let Err(error) = result {
                self.failure = Some(error);
            }
        }
    }

    fn cancelled(&mut self) -> Option<Result<ModelEvent, LlmError>> {
        self.done = true;
        self.active = None;
        self.pending.clear();
        Some(Err(LlmError::Cancelled))
    }

    fn retry_delay(&self, error: &LlmError) -> Option<Duration> {
        let policy = &self.model.config.retry;
        if !error.is_retryable() || self.attempt >= policy.max_attempts {
            return None;
        }
        if self.emitted && !policy.after_partial_output {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > policy.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.model.jitter.backoff(policy, self.attempt + 1)),
        }
    }

    async fn connect(&mut self, cancel: &CancellationToken) -> Result<reqwest::Response, LlmError> {
        self.attempt += 1;
        let model = &self.model;
        let request = model
            .http
            .post(model.url.clone())
            .headers(model.headers.clone())
            .body(self.body.clone())
            .send();
        let waited = model.config.response_timeout;
        let sent = tokio::select! {
            () = cancel.cancelled() => return Err(LlmError::Cancelled),
            sent = tokio::time::timeout(waited, request) => sent,
        };
        let response = match sent {
            Err(_) => {
                return Err(LlmError::Timeout {
                    provider: model.provider.clone(),
                    phase: TimeoutPhase::Response,
                    after: waited,
                });
            }
            Ok(Err(err)) if err.is_connect() => {
                return Err(LlmError::Connect {
                    provider: model.provider.clone(),
                    url: model.display_url(),
                    reason: reason(&err),
                });
            }
            Ok(Err(err)) => {
                return Err(LlmError::Interrupted {
                    provider: model.provider.clone(),
                    reason: reason(&err),
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if status.is_success()
            && (content_type.is_empty() || content_type.starts_with("text/event-stream"))
        {
            return Ok(response);
        }
        let wait = retry_after(response.headers());
        let body = self.read_error_body(response, cancel).await?;
        let message = error_body_message(&body, &content_type);
        let model = &self.model;
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LlmError::Unauthorized {
                provider: model.provider.clone(),
                status: status.as_u16(),
                message,
                hint: model.key_hint(),
            },
            status if status.is_success() => LlmError::Protocol {
                provider: model.provider.clone(),
                message: format!(
                    "expected an event stream (text/event-stream) but got `{content_type}`: {message}"
                ),
            },
            status => LlmError::Status {
                provider: model.provider.clone(),
                status: status.as_u16(),
                message,
                retry_after: wait,
            },
        })
    }

    /// Up to `max_error_body_bytes` of a body, for its message; a stalled body yields what came.
    async fn read_error_body(
        &self,
        mut response: reqwest::Response,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, LlmError> {
        let limit = self.model.config.limits.max_error_body_bytes;
        let idle = self.model.config.idle_timeout.min(Duration::from_secs(10));
        let mut body = Vec::new();
        while body.len() < limit {
            let chunk = tokio::select! {
                () = cancel.cancelled() => return Err(LlmError::Cancelled),
                chunk = tokio::time::timeout(idle, response.chunk()) => chunk,
            };
            match chunk {
                Ok(Ok(Some(bytes))) => {
                    body.extend_from_slice(&bytes[..bytes.len().min(limit - body.len())])
                }
                _ => break,
            }
        }
        Ok(body)
    }
}

fn is_content(event: &ModelEvent) -> bool {
    !matches!(
        event,
        ModelEvent::ResponseStarted { .. } | ModelEvent::Usage { .. } | ModelEvent::Retrying { .. }
    )
}

/// A transport error's reason with its causes, without the URL.
fn reason(err: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut current: Option<&dyn std::error::Error> = err.source();
    if err.is_timeout() {
        text.push_str("timed out");
    } else if err.is_connect() {
        text.push_str("connection failed");
    } else if err.is_body() || err.is_decode() {
        text.push_str("error reading the body");
    } else {
        text.push_str("request failed");
    }
    let mut depth = 0;
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
        depth += 1;
        if depth == 6 {
            break;
        }
    }
    text
}
