//! The one place that reads the process environment.
//!
//! Inner crates receive what they need as typed values; here the environment becomes the
//! `LoadOptions` used for `${VAR}` interpolation in agent files.

use ash_spec::LoadOptions;

/// Load options carrying the process environment (UTF-8 variables only).
pub(crate) fn load_options() -> LoadOptions {
    #[expect(
        clippy::disallowed_methods,
        reason = "ash-cli::config is the one reader of the environment"
    )]
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    LoadOptions { env }
}
