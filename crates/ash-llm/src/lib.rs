//! Model clients for ash: every `provider/model` an agent names becomes a streaming call.
//!
//! Owns two wire formats — OpenAI-compatible Chat Completions (OpenAI, Ollama, vLLM, llama.cpp,
//! LM Studio, OpenRouter, gateways) and Anthropic Messages — plus the offline `scripted/<file>`
//! provider; the provider table with its defaults and overrides; timeouts, bounded retries with
//! jittered backoff honouring `retry-after`, cancellation, and response size limits. Events and
//! messages are the provider-neutral types of `ash_protocol`, which the run log stores.
//!
//! Never reads the process environment (the caller passes the variables), never logs or prints,
//! and never lets an API key reach an error, an event or a `Debug` output.

mod anthropic;
mod client;
mod collect;
mod config;
mod error;
pub mod gateway;
mod openai;
mod request;
mod retry;
mod scripted;
mod sse;
mod stream;
mod wire;

pub use client::{Client, Model};
pub use collect::Collector;
pub use config::{
    ApiKey, ClientConfig, ProviderConfig, ProviderTable, ResponseLimits, RetryPolicy,
};
pub use error::{KeyHint, LlmError, TimeoutPhase};
pub use request::{DEFAULT_ANTHROPIC_MAX_TOKENS, ModelRequest, ToolArgumentsError, tool_input};
pub use stream::ModelStream;
pub use wire::Decoder;
