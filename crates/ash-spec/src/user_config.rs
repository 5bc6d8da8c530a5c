//! The user's `config.toml` (`$ASH_HOME/config.toml`): settings that apply to every agent.
//!
//! Owns its shape — `[providers.<name>]` tables with the same keys as in `agent.toml`, which
//! layer between the built-in providers and the agent's own, and a `[network]` table that holds
//! nothing yet (a network is its genesis file) — and its
//! diagnostics. The CLI
//! finds and reads the file; this module only parses text.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, Diagnostics, FileDiag};
use crate::load::parse_providers;
use crate::slots;
use crate::spec::Provider;
use crate::toml_doc::{self, Fields};

/// What a user's config file sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// `[providers.<name>]` overrides.
    pub providers: BTreeMap<String, Provider>,
}

/// Parses a config file's text; `file` names it in diagnostics. Problems are reported and the
/// entries that passed their checks are kept.
pub fn parse_user_config(file: &str, text: &str) -> (UserConfig, Vec<Diagnostic>) {
    let mut diags = Diagnostics::default();
    let mut config = UserConfig::default();
    {
        let mut d = FileDiag::new(file, text, &slots::USER_CONFIG, &mut diags);
        if let Some(doc) = toml_doc::parse(text, &mut d) {
            let mut root = Fields::root(&doc);
            if let Some(mut providers) =
                root.table(&mut d, "providers", "a table of `[providers.<name>]`")
            {
                d.doc = &slots::PROVIDERS;
                config.providers = parse_providers(&mut d, &mut providers);
                d.doc = &slots::USER_CONFIG;
            }
            if let Some(network) = root.table(&mut d, "network", "a `[network]` table") {
                d.doc = &slots::NETWORK_CONFIG;
                network.finish_strict(
                    &mut d,
                    "a network's mint authorities and parameters are in its genesis file, \
                     $ASH_HOME/genesis.toml",
                );
                d.doc = &slots::USER_CONFIG;
            }
            root.finish(&mut d);
        }
    }
    (config, diags.into_sorted())
}
