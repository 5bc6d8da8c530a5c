//! Requester-routed inference at the CLI's edge: on the acceptor, a gateway upstream that
//! carries the agent's calls back to the requester (`ash_node::RoutedModel`); on the
//! requester, the provider that answers them with this machine's own key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ash_llm::ProviderConfig;
use ash_llm::gateway::{
    AnswerBody, Api, DirectUpstream, ModelAnswer, ModelCall, Upstream, UsageMeter, screen,
};
use ash_node::{ModelProvider, RoutedAnswer, RoutedCall, RoutedModel};
use ash_spec::ProviderApi;
use tokio_util::sync::CancellationToken;

/// The family a provider speaks, as routed jobs name it.
pub(crate) fn family(api: ProviderApi) -> &'static str {
    match api {
        ProviderApi::Anthropic => "anthropic",
        ProviderApi::OpenAi => "openai",
    }
}

/// The acceptor's gateway upstream for a routed job: every call goes to the requester.
pub(crate) struct ToRequester(pub(crate) Arc<RoutedModel>);

impl Upstream for ToRequester {
    fn call(
        &self,
        call: ModelCall,
    ) -> Pin<Box<dyn Future<Output = Result<ModelAnswer, String>> + Send + '_>> {
        Box::pin(async move {
            let routed = RoutedCall {
                api: call.api.name().to_owned(),
                query: call.query,
                headers: call.headers,
                body: call.body.to_vec(),
            };
            let answer = self.0.call(routed).await?;
            Ok(ModelAnswer {
                status: answer.status,
                content_type: answer.content_type,
                body: AnswerBody::Whole(answer.body.into()),
            })
        })
    }
}

/// The requester's answers to its routed job's calls: its own provider and key.
pub(crate) struct OwnProvider {
    upstream: DirectUpstream,
    cancel: CancellationToken,
}

impl OwnProvider {
    pub(crate) fn new(provider: &ProviderConfig) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let upstream = DirectUpstream::new(provider, Duration::from_secs(10), cancel.clone())?;
        Ok(Self { upstream, cancel })
    }
}

impl Drop for OwnProvider {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl ModelProvider for OwnProvider {
    fn call(
        &self,
        call: RoutedCall,
    ) -> Pin<Box<dyn Future<Output = Result<RoutedAnswer, String>> + Send + '_>> {
        Box::pin(async move {
            let api = Api::from_name(&call.api).ok_or_else(|| format!("no API `{}`", call.api))?;
            let sent = call.body.len() as u64;
            // What the acceptor's gateway screened is screened again here: the call spends
            // this machine's key.
            let screened = match screen(api, &call.body.into()) {
                Ok(screened) => screened,
                Err(reason) => {
                    return Ok(RoutedAnswer {
                        status: 400,
                        content_type: "application/json".into(),
                        body: api.error_body("invalid_request_error", &reason).to_vec(),
                        tokens: 0,
                    });
                }
            };
            let answer = self
                .upstream
                .call(ModelCall {
                    api,
                    query: call.query,
                    headers: call.headers,
                    model: screened.model,
                    body: screened.body,
                })
                .await?;
            let limit = usize::try_from(ash_protocol::MAX_MODEL_BODY).unwrap_or(usize::MAX);
            let mut meter = UsageMeter::default();
            let body = match answer.body {
                AnswerBody::Whole(bytes) => {
                    meter.feed(&bytes);
                    bytes.to_vec()
                }
                AnswerBody::Streaming(mut rx) => {
                    let mut body = Vec::new();
                    while let Some(piece) = rx.recv().await {
                        let broke = match piece {
                            Ok(piece) => {
                                meter.feed(&piece);
                                body.extend_from_slice(&piece);
                                (body.len() > limit)
                                    .then(|| "the model's answer is over the limit".to_owned())
                            }
                            Err(reason) => Some(reason),
                        };
                        // What was generated until the answer broke was billed: it counts.
                        if let Some(reason) = broke {
                            let (input, output) = meter.charged(sent);
                            return Ok(RoutedAnswer {
                                status: 502,
                                content_type: "application/json".into(),
                                body: api.error_body("api_error", &reason).to_vec(),
                                tokens: input.saturating_add(output),
                            });
                        }
                    }
                    body
                }
            };
            let ok = (200..300).contains(&answer.status);
            let (input, output) = if ok { meter.charged(sent) } else { meter.tokens() };
            Ok(RoutedAnswer {
                status: answer.status,
                content_type: answer.content_type,
                body,
                tokens: input.saturating_add(output),
            })
        })
    }
}
