//! The model providers ash knows by name, and the `scripted` pseudo-provider.
//!
//! Owns the default table: wire format, base URL and API-key variable per built-in provider.
//! `agent.toml` `[providers.<name>]` and the user's config override these fields; the CLI reads
//! the key variables and `ash-llm` makes the calls. Never reads the environment.

use crate::spec::ProviderApi;

/// A provider ash knows without a `[providers.<name>]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinProvider {
    /// The `provider` part of `provider/model`.
    pub name: &'static str,
    /// Wire format.
    pub api: ProviderApi,
    /// Base URL the API paths (`/chat/completions`, `/messages`) are appended to.
    pub base_url: &'static str,
    /// Environment variable holding the API key, if the provider takes one.
    pub api_key_env: Option<&'static str>,
    /// Whether a call without a key is certain to fail (hosted APIs); local servers take none.
    pub key_required: bool,
}

const fn hosted(
    name: &'static str,
    api: ProviderApi,
    base_url: &'static str,
    key: &'static str,
) -> BuiltinProvider {
    BuiltinProvider { name, api, base_url, api_key_env: Some(key), key_required: true }
}

const fn local(
    name: &'static str,
    base_url: &'static str,
    key: Option<&'static str>,
) -> BuiltinProvider {
    BuiltinProvider {
        name,
        api: ProviderApi::OpenAi,
        base_url,
        api_key_env: key,
        key_required: false,
    }
}

/// Built-in providers, sorted by name.
pub const BUILTIN_PROVIDERS: &[BuiltinProvider] = &[
    hosted(
        "anthropic",
        ProviderApi::Anthropic,
        "https://api.anthropic.com/v1",
        "ANTHROPIC_API_KEY",
    ),
    hosted("deepseek", ProviderApi::OpenAi, "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    hosted("groq", ProviderApi::OpenAi, "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    local("llamacpp", "http://127.0.0.1:8080/v1", None),
    local("lmstudio", "http://127.0.0.1:1234/v1", None),
    hosted("mistral", ProviderApi::OpenAi, "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    local("ollama", "http://127.0.0.1:11434/v1", None),
    hosted("openai", ProviderApi::OpenAi, "https://api.openai.com/v1", "OPENAI_API_KEY"),
    hosted("openrouter", ProviderApi::OpenAi, "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    hosted("together", ProviderApi::OpenAi, "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    local("vllm", "http://127.0.0.1:8000/v1", Some("VLLM_API_KEY")),
    hosted("xai", ProviderApi::OpenAi, "https://api.x.ai/v1", "XAI_API_KEY"),
];

/// `scripted/<file>`: replays a JSONL script relative to the agent package; no network.
pub const SCRIPTED_PROVIDER: &str = "scripted";

/// The built-in provider called `name`.
pub fn builtin_provider(name: &str) -> Option<&'static BuiltinProvider> {
    BUILTIN_PROVIDERS.iter().find(|p| p.name == name)
}
