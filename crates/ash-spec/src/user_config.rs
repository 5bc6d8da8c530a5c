//! The user's `config.toml` (`$ASH_HOME/config.toml`): settings that apply to every agent.
//!
//! Owns its shape — `[providers.<name>]` tables with the same keys as in `agent.toml`, which
//! layer between the built-in providers and the agent's own, a `[network]` table that holds
//! nothing yet (a network is its genesis file), and a `[tui]` table for the full-screen
//! interface — and its
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
    /// `[tui] decide_seconds`: how long the TUI's apply prompt waits before it answers no
    /// (half the price); `None`: the default.
    pub decide_seconds: Option<u64>,
}

/// The shortest and longest wait of the TUI's apply prompt, in seconds.
pub const DECIDE_SECONDS: std::ops::RangeInclusive<u64> = 10..=3600;

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
            if let Some(mut tui) = root.table(&mut d, "tui", "a `[tui]` table") {
                d.doc = &slots::TUI_CONFIG;
                config.decide_seconds = tui
                    .integer(
                        &mut d,
                        "decide_seconds",
                        *DECIDE_SECONDS.start(),
                        *DECIDE_SECONDS.end(),
                    )
                    .map(|n| n.value);
                tui.finish_strict(&mut d, "`[tui]` takes `decide_seconds` only");
                d.doc = &slots::USER_CONFIG;
            }
            root.finish(&mut d);
        }
    }
    (config, diags.into_sorted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tui_table_sets_the_apply_prompts_wait_and_refuses_the_rest() {
        let (config, diags) = parse_user_config("c.toml", "[tui]\ndecide_seconds = 120\n");
        assert_eq!((config.decide_seconds, diags.len()), (Some(120), 0));
        for (text, code) in [
            ("[tui]\ndecide_seconds = 5\n", "out-of-range"),
            ("[tui]\ndecide_seconds = \"1m\"\n", "wrong-type"),
            ("[tui]\ncolour = false\n", "unknown-key"),
        ] {
            let (config, diags) = parse_user_config("c.toml", text);
            let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
            assert_eq!((config.decide_seconds, codes), (None, vec![code]), "{text}");
        }
    }
}
