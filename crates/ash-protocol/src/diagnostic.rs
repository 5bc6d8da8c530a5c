//! Diagnostics as they appear in `ash info --json` and `.ash/diagnostics.json`.

use serde::{Deserialize, Serialize};

use crate::AgentSurface;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverityInfo {
    /// The agent cannot be built or run until this is fixed.
    Error,
    /// The agent works, but something was ignored or looks wrong.
    Warning,
}

/// One problem found while reading an agent directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticInfo {
    /// `error` or `warning`.
    pub severity: SeverityInfo,
    /// Stable kebab-case code, e.g. `toml-syntax` or `name-collision`.
    pub code: String,
    /// Path relative to the directory given to the command, `/`-separated.
    pub file: String,
    /// 1-based line, when the parser knows it.
    pub line: Option<u32>,
    /// 1-based column, when the parser knows it.
    pub column: Option<u32>,
    /// What is wrong, in one lowercase sentence.
    pub message: String,
    /// What the slot expects.
    pub expected: String,
    /// A minimal valid example of the slot.
    pub example: String,
}

/// The document printed by `ash info --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfoOutput {
    /// Version of this document's shape; equals [`crate::MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// `"nested"` when the agent lives in `agent/`, `"flat"` when it is the directory itself.
    pub layout: String,
    /// The agent root relative to the directory given, `"agent"` or `"."`.
    pub agent_root: String,
    /// Whether any diagnostic is an error (the command then exits 1).
    pub ok: bool,
    /// Everything that resolved cleanly; items with errors are left out.
    pub agent: AgentSurface,
    /// Errors first, then warnings, each group in file order.
    pub diagnostics: Vec<DiagnosticInfo>,
}

/// The document printed by `ash build --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutput {
    /// Whether `.ash/` was written.
    pub ok: bool,
    /// Path of the manifest written, relative to the current directory; null when refused.
    pub manifest: Option<String>,
    /// The manifest's `contentHash`; null when refused.
    pub content_hash: Option<String>,
    /// Errors (when refused) or warnings (when written).
    pub diagnostics: Vec<DiagnosticInfo>,
}
