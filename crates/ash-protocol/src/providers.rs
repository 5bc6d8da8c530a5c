//! `ash models --json`: the provider table as the CLI resolved it, and the agent's model.

use serde::{Deserialize, Serialize};

use crate::diagnostic::DiagnosticInfo;

/// The document `ash models --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelsOutput {
    /// The agent's `model`, when it names one.
    pub model: Option<String>,
    /// Whether the model resolves: provider known, key present, URL usable, script valid.
    pub ok: bool,
    /// Why it does not, when it does not.
    pub error: Option<String>,
    /// Every provider, sorted by name, after all configuration layers.
    pub providers: Vec<ProviderStatus>,
    /// Problems in the agent directory or the config file.
    pub diagnostics: Vec<DiagnosticInfo>,
}

/// One resolved provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// Name, the `provider` of `provider/model`.
    pub name: String,
    /// `openai` or `anthropic`.
    pub api: String,
    /// Base URL, without user-info.
    pub base_url: Option<String>,
    /// The variable the key is read from.
    pub api_key_env: Option<String>,
    /// Whether that variable is set (never its value).
    pub key_set: bool,
    /// Whether calls are refused without a key.
    pub key_required: bool,
}
