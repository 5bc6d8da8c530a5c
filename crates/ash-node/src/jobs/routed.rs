//! Requester-routed inference: a routed job's agent calls its model through the acceptor's
//! gateway, which carries each call back over the job's channel; the requester answers it
//! with its own provider and key, within the job's budget of calls and tokens, and only for the
//! model the terms name. The acceptor sells machine time; it never holds the requester's key.
//!
//! Per call: the acceptor sends [`JobModelCall`] (the body inline when small, else the
//! requester fetches it in chunks), the requester answers with [`JobModelAnswer`] once its
//! provider has (the body inline when small, else the acceptor fetches it). No message waits
//! on a model: each side answers at once and the other follows up.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ash_identity::NodeId;
use ash_protocol::{
    JobFile, JobModelAnswer, JobModelCall, JobRouted, MAX_INLINE_BODY, MAX_MODEL_BODY,
    MAX_MODEL_HEADERS, PeerRequest, PeerResponse,
};
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};

use super::{JobError, Jobs, sha256_hex};
use crate::node::lock;

/// Model calls of one routed job answered at once by its requester.
const CALLS_IN_FLIGHT: usize = 4;
/// Bytes of answers a requester holds for its acceptor to fetch, per job; the oldest go first.
const MAX_HELD_ANSWERS: usize = 64 << 20;
/// Longest a model call waits for its answer.
const CALL_TIME: Duration = Duration::from_secs(600);

/// A model call as the agent made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedCall {
    /// `messages`, `responses` or `chat_completions`.
    pub api: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers to pass on.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedAnswer {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// The body, whole.
    pub body: Vec<u8>,
    /// Tokens the answer reports (input and output), for the budget.
    pub tokens: u64,
}

/// What answers a requester's routed calls: its own provider, with its own key.
pub trait ModelProvider: Send + Sync {
    /// Sends `call` to the provider; its whole answer, or why there is none (told to the
    /// agent: no key, no path of this machine).
    fn call(
        &self,
        call: RoutedCall,
    ) -> Pin<Box<dyn Future<Output = Result<RoutedAnswer, String>> + Send + '_>>;
}

/// A requester's terms for routing a job's model calls.
#[derive(Clone)]
pub struct Routing {
    /// The provider's name (`anthropic`, …), kept with the job so that `ash run --resume`
    /// answers with the same one.
    pub provider_name: String,
    /// `anthropic` or `openai`: the API the provider speaks.
    pub api: String,
    /// The one model calls may name.
    pub model: String,
    /// Most calls answered.
    pub max_calls: u64,
    /// Most tokens (input and output, as the answers report them) spent on the key; once
    /// reached, further calls are refused.
    pub max_tokens: u64,
    /// The provider.
    pub provider: Arc<dyn ModelProvider>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("api", &self.api)
            .field("model", &self.model)
            .field("max_calls", &self.max_calls)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Routing {
    /// As announced.
    pub fn announced(&self) -> JobRouted {
        JobRouted { api: self.api.clone(), model: self.model.clone() }
    }

    /// As the job's record keeps it.
    pub fn record(&self) -> RoutedRecord {
        RoutedRecord {
            provider: self.provider_name.clone(),
            api: self.api.clone(),
            model: self.model.clone(),
            max_calls: self.max_calls,
            max_tokens: self.max_tokens,
        }
    }
}

/// A routed job's routing as its requester's record keeps it (everything but the provider
/// itself, which `ash run --resume` makes again from `provider`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoutedRecord {
    /// The provider's name.
    pub provider: String,
    /// `anthropic` or `openai`.
    pub api: String,
    /// The model.
    pub model: String,
    /// Most calls.
    pub max_calls: u64,
    /// Most tokens.
    pub max_tokens: u64,
}

impl RoutedRecord {
    /// The routing again, answered by `provider`.
    pub fn with(&self, provider: Arc<dyn ModelProvider>) -> Routing {
        Routing {
            provider_name: self.provider.clone(),
            api: self.api.clone(),
            model: self.model.clone(),
            max_calls: self.max_calls,
            max_tokens: self.max_tokens,
            provider,
        }
    }
}

/// Whether a call of `api` (`messages`, …) goes to a provider speaking `family`.
pub(crate) fn speaks(family: &str, api: &str) -> bool {
    matches!(
        (family, api),
        ("anthropic", "messages") | ("openai", "responses" | "chat_completions")
    )
}

/// What a routed job has used of its budget.
#[derive(Debug, Default)]
struct Used {
    calls: u64,
    tokens: u64,
    seen: BTreeSet<u64>,
}

/// The requester's routing of one job it follows.
pub(crate) struct Route {
    acceptor: NodeId,
    routing: Routing,
    used: std::sync::Mutex<Used>,
    /// Answers too large to send inline, until the acceptor has fetched them.
    answers: std::sync::Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    in_flight: Arc<Semaphore>,
}

impl Route {
    /// Holds an answer for the acceptor to fetch; the oldest held go first beyond
    /// [`MAX_HELD_ANSWERS`] bytes.
    fn hold(&self, n: u64, body: Arc<Vec<u8>>) {
        let mut answers = lock(&self.answers);
        answers.insert(n, body);
        while answers.values().map(|b| b.len()).sum::<usize>() > MAX_HELD_ANSWERS {
            let Some(oldest) = answers.keys().min().copied() else { break };
            answers.remove(&oldest);
        }
    }
}

/// Removes a job's route when its `request` ends.
pub(crate) struct RouteGuard<'a> {
    jobs: &'a Jobs,
    job: String,
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        lock(&self.jobs.routes).remove(&self.job);
    }
}

/// A model call the acceptor's agent made and waits on.
pub(crate) struct Pending {
    requester: NodeId,
    body: Option<Arc<Vec<u8>>>,
    answer: Option<oneshot::Sender<JobModelAnswer>>,
}

/// How an acceptor's agent reaches a routed job's requester: each call goes back over the
/// job's channel.
pub struct RoutedModel {
    jobs: Arc<Jobs>,
    job: String,
    requester: NodeId,
    api: String,
    next: AtomicU64,
}

impl std::fmt::Debug for RoutedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedModel").field("job", &self.job).field("api", &self.api).finish()
    }
}

/// An error body in the shape of the API `api` (`messages` is Anthropic's, the rest OpenAI's).
pub(crate) fn error_body(api: &str, kind: &str, message: &str) -> Vec<u8> {
    let body = if api == "messages" {
        json!({"type": "error", "error": {"type": kind, "message": message}})
    } else {
        json!({"error": {"type": kind, "message": message, "code": kind}})
    };
    body.to_string().into_bytes()
}

impl RoutedModel {
    /// The API family (`anthropic` or `openai`) the requester answers in.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// Sends `call` to the requester and waits for its answer.
    pub async fn call(&self, call: RoutedCall) -> Result<RoutedAnswer, String> {
        if !speaks(&self.api, &call.api) {
            return Ok(RoutedAnswer {
                status: 404,
                content_type: "application/json".into(),
                body: error_body(
                    &call.api,
                    "not_found_error",
                    "the requester does not answer this API",
                ),
                tokens: 0,
            });
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let size = call.body.len() as u64;
        if size > MAX_MODEL_BODY {
            return Err(format!("a model call of {size} bytes is over the limit"));
        }
        let sha256 = sha256_hex(&call.body);
        let inline = call.body.len() <= MAX_INLINE_BODY;
        let body = Arc::new(call.body);
        let (tx, rx) = oneshot::channel();
        lock(&self.jobs.calls).insert(
            (self.job.clone(), n),
            Pending {
                requester: self.requester,
                body: (!inline).then(|| Arc::clone(&body)),
                answer: Some(tx),
            },
        );
        let _forget = CallGuard { jobs: &self.jobs, key: (self.job.clone(), n) };
        let message = PeerRequest::JobModelCall(JobModelCall {
            job: self.job.clone(),
            call: n,
            api: call.api,
            query: call.query,
            headers: call.headers.into_iter().take(MAX_MODEL_HEADERS).collect(),
            size,
            sha256,
            body: inline.then(|| serde_bytes::ByteBuf::from(body.to_vec())),
        });
        match Jobs::ask(&self.jobs.net, self.requester, message).await {
            Ok(PeerResponse::Noted) => {}
            Ok(PeerResponse::Error(e)) => {
                return Err(format!("the requester refused the model call: {}", e.message));
            }
            Ok(other) => return Err(format!("the requester answered {other:?}")),
            Err(e) => return Err(format!("the requester cannot be reached: {e}")),
        }
        let answer = tokio::time::timeout(CALL_TIME, rx)
            .await
            .map_err(|_| "the requester did not answer the model call in time".to_owned())?
            .map_err(|_| "the model call was given up".to_owned())?;
        let body = match answer.body {
            Some(body) => body.into_vec(),
            None => self
                .jobs
                .fetch_bytes(self.requester, &self.job, JobFile::Answer(n), answer.size)
                .await
                .map_err(|e| format!("fetching the model's answer: {e}"))?,
        };
        if body.len() as u64 != answer.size || sha256_hex(&body) != answer.sha256 {
            return Err("the model's answer arrived damaged".into());
        }
        Ok(RoutedAnswer {
            status: answer.status,
            content_type: answer.content_type,
            body,
            tokens: 0,
        })
    }
}

/// Forgets a pending call when its caller is done with it.
struct CallGuard<'a> {
    jobs: &'a Jobs,
    key: (String, u64),
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        lock(&self.jobs.calls).remove(&self.key);
    }
}

impl Jobs {
    /// The requester follows routed `job`, done by `acceptor`: its calls are answered until
    /// the guard drops.
    pub(crate) fn follow_routed(
        &self,
        job: &str,
        acceptor: NodeId,
        routing: Routing,
    ) -> RouteGuard<'_> {
        let route = Route {
            acceptor,
            routing,
            used: std::sync::Mutex::new(Used::default()),
            answers: std::sync::Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(CALLS_IN_FLIGHT)),
        };
        lock(&self.routes).insert(job.to_owned(), Arc::new(route));
        RouteGuard { jobs: self, job: job.to_owned() }
    }

    /// The acceptor's way to a routed job's requester, for its agent.
    pub(crate) fn routed_model(
        self: &Arc<Self>,
        job: &str,
        requester: NodeId,
        routed: &JobRouted,
    ) -> RoutedModel {
        RoutedModel {
            jobs: Arc::clone(self),
            job: job.to_owned(),
            requester,
            api: routed.api.clone(),
            // Numbers never repeat, even when the acceptor restarts the run: each run starts
            // above every number an earlier one could have used.
            next: AtomicU64::new(crate::ledger::now_ms().saturating_mul(1000)),
        }
    }

    /// Requester: a model call of a routed job this process follows.
    pub(crate) fn model_call(self: &Arc<Self>, from: NodeId, call: JobModelCall) -> PeerResponse {
        let Some(route) = lock(&self.routes).get(&call.job).cloned() else {
            return PeerResponse::error("refused", "no routed job of that id is followed here");
        };
        if from != route.acceptor {
            return PeerResponse::error("refused", "only the job's acceptor makes its model calls");
        }
        if !speaks(&route.routing.api, &call.api) {
            return PeerResponse::error(
                "invalid",
                format!("this job's provider does not speak {}", call.api),
            );
        }
        let inline_ok = call.body.as_ref().is_none_or(|b| b.len() as u64 == call.size);
        if call.size > MAX_MODEL_BODY
            || call.headers.len() > MAX_MODEL_HEADERS
            || !inline_ok
            || call.body.is_none() && call.size <= MAX_INLINE_BODY as u64
        {
            return PeerResponse::error(
                "invalid",
                "the model call's size, body or headers are wrong",
            );
        }
        {
            let mut used = lock(&route.used);
            // Every call number is seen once; a job makes at most its budget of them (and a
            // few refused ones), so the record of them stays small.
            let room = route.routing.max_calls.saturating_add(64);
            if used.seen.len() as u64 >= room {
                return PeerResponse::error("refused", "this job made all the calls it may");
            }
            if !used.seen.insert(call.call) {
                return PeerResponse::error("invalid", "that model call was made before");
            }
        }
        let Ok(permit) = Arc::clone(&route.in_flight).try_acquire_owned() else {
            lock(&route.used).seen.remove(&call.call);
            return PeerResponse::error("busy", "too many model calls at once");
        };
        let jobs = Arc::clone(self);
        self.spawn(async move {
            let answer = jobs.serve_call(&route, &call).await;
            let (job, n, api) = (call.job.clone(), call.call, call.api.clone());
            let (status, content_type, body) = match answer {
                Ok(answer) => (answer.status, answer.content_type, answer.body),
                Err(reason) => {
                    (502, "application/json".into(), error_body(&api, "api_error", &reason))
                }
            };
            let size = body.len() as u64;
            let sha256 = sha256_hex(&body);
            let inline = body.len() <= MAX_INLINE_BODY;
            if !inline {
                route.hold(n, Arc::new(body.clone()));
            }
            let message = PeerRequest::JobModelAnswer(JobModelAnswer {
                job: job.clone(),
                call: n,
                status,
                content_type,
                size,
                sha256,
                body: inline.then(|| serde_bytes::ByteBuf::from(body)),
            });
            if let Err(e) = Jobs::ask(&jobs.net, route.acceptor, message).await {
                tracing::debug!(%job, call = n, error = %e, "a model answer was not delivered");
            }
            drop(permit);
        });
        PeerResponse::Noted
    }

    /// Requester: fetches a call's body, checks it against the job's terms and budget, and has
    /// the provider answer it.
    async fn serve_call(&self, route: &Route, call: &JobModelCall) -> Result<RoutedAnswer, String> {
        let refuse = |status: u16, kind: &str, message: String| RoutedAnswer {
            status,
            content_type: "application/json".into(),
            body: error_body(&call.api, kind, &message),
            tokens: 0,
        };
        let routing = &route.routing;
        // The budget is checked before anything is fetched, and counted before the call.
        {
            let mut used = lock(&route.used);
            if used.calls >= routing.max_calls {
                return Ok(refuse(
                    429,
                    "budget_exceeded",
                    format!(
                        "the requester's budget of {} model calls for this job is spent",
                        routing.max_calls
                    ),
                ));
            }
            if used.tokens >= routing.max_tokens {
                return Ok(refuse(
                    429,
                    "budget_exceeded",
                    format!(
                        "the requester's budget of {} tokens for this job is spent",
                        routing.max_tokens
                    ),
                ));
            }
            used.calls += 1;
        }
        let body = match &call.body {
            Some(body) => body.to_vec(),
            None => self
                .fetch_bytes(route.acceptor, &call.job, JobFile::Call(call.call), call.size)
                .await
                .map_err(|e| format!("the call's body could not be fetched: {e}"))?,
        };
        if sha256_hex(&body) != call.sha256 {
            return Err("the call's body arrived damaged".into());
        }
        // Only the model is read here (nothing of the body is built as a tree).
        #[derive(serde::Deserialize)]
        struct Head {
            model: Option<String>,
        }
        let model = serde_json::from_slice::<Head>(&body).ok().and_then(|h| h.model);
        if model.as_deref() != Some(routing.model.as_str()) {
            // A refused call costs nothing: its count is given back.
            lock(&route.used).calls -= 1;
            return Ok(refuse(
                400,
                "invalid_request_error",
                format!(
                    "this job's requester answers only for the model `{}`, not `{}`",
                    routing.model,
                    model.unwrap_or_default()
                ),
            ));
        }
        let sent = body.len() as u64;
        let answer = routing
            .provider
            .call(RoutedCall {
                api: call.api.clone(),
                query: call.query.clone(),
                headers: call.headers.clone(),
                body,
            })
            .await;
        let mut used = lock(&route.used);
        let answer = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                // What was sent may have been billed: it counts.
                used.tokens = used.tokens.saturating_add(sent / 4);
                return Err(reason);
            }
        };
        used.tokens = used.tokens.saturating_add(answer.tokens);
        tracing::debug!(job = %call.job, call = call.call, calls = used.calls, tokens = used.tokens, "model call answered");
        if answer.body.len() as u64 > MAX_MODEL_BODY {
            return Err("the model's answer is over the limit".into());
        }
        Ok(answer)
    }

    /// Acceptor: the requester's answer to a call its agent waits on.
    pub(crate) fn model_answer(&self, from: NodeId, answer: JobModelAnswer) -> PeerResponse {
        let mut calls = lock(&self.calls);
        let Some(pending) = calls.get_mut(&(answer.job.clone(), answer.call)) else {
            return PeerResponse::error("refused", "no model call of that number waits here");
        };
        if pending.requester != from {
            return PeerResponse::error("refused", "only the job's requester answers its calls");
        }
        let inline_ok = answer.body.as_ref().is_none_or(|b| b.len() as u64 == answer.size);
        if answer.size > MAX_MODEL_BODY || !inline_ok {
            return PeerResponse::error("invalid", "the answer's size or body is wrong");
        }
        match pending.answer.take() {
            Some(tx) => {
                let _ = tx.send(answer);
                PeerResponse::Noted
            }
            None => PeerResponse::error("invalid", "that call was answered before"),
        }
    }

    /// A chunk of a call's body (acceptor, to the requester) or of an answer (requester, to
    /// the acceptor).
    pub(crate) fn model_chunk(
        &self,
        job: &str,
        from: NodeId,
        file: JobFile,
        index: u64,
    ) -> PeerResponse {
        let bytes = match file {
            JobFile::Call(n) => lock(&self.calls)
                .get(&(job.to_owned(), n))
                .filter(|p| p.requester == from)
                .and_then(|p| p.body.clone()),
            JobFile::Answer(n) => {
                let route = lock(&self.routes).get(job).cloned();
                route.filter(|r| r.acceptor == from).and_then(|r| lock(&r.answers).get(&n).cloned())
            }
            JobFile::Package | JobFile::Result => None,
        };
        let Some(bytes) = bytes else {
            return PeerResponse::error("refused", "no such call or answer here");
        };
        let chunk = ash_protocol::JOB_CHUNK_BYTES as usize;
        let Some(start) = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(chunk))
            .filter(|s| *s < bytes.len())
        else {
            return PeerResponse::error("invalid", "no such chunk");
        };
        let end = start.saturating_add(chunk).min(bytes.len());
        let slice = bytes.get(start..end).unwrap_or_default();
        PeerResponse::JobChunk { bytes: serde_bytes::ByteBuf::from(slice.to_vec()) }
    }

    /// Fetches the `size` bytes `peer` holds as `file` of `job` into memory, a chunk at a time.
    pub(crate) async fn fetch_bytes(
        &self,
        peer: NodeId,
        job: &str,
        file: JobFile,
        size: u64,
    ) -> Result<Vec<u8>, JobError> {
        if size > MAX_MODEL_BODY {
            return Err(JobError::Lost(format!("{size} bytes is over the limit")));
        }
        let chunk = u64::from(ash_protocol::JOB_CHUNK_BYTES);
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for index in 0..size.div_ceil(chunk) {
            let request = PeerRequest::JobChunk { job: job.to_owned(), file, index };
            let bytes = match Self::ask(&self.net, peer, request).await {
                Ok(PeerResponse::JobChunk { bytes }) => bytes.into_vec(),
                Ok(PeerResponse::Error(e)) => return Err(JobError::Lost(e.message)),
                Ok(other) => return Err(JobError::Lost(format!("answered {other:?}"))),
                Err(e) => return Err(JobError::Lost(e.to_string())),
            };
            if bytes.len() as u64 != chunk.min(size - index * chunk) {
                return Err(JobError::Lost(format!("chunk {index} has the wrong size")));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}
