//! `ash build`: compile an agent directory into `.ash/`, or refuse when it has errors.

use anyhow::Context as _;
use ash_protocol::BuildOutput;

use crate::cli::AgentDirArgs;
use crate::cmd::Outcome;
use crate::{config, output};

pub(crate) fn run(args: &AgentDirArgs) -> anyhow::Result<Outcome> {
    let loaded = ash_spec::load(&args.dir, &config::load_options())
        .with_context(|| format!("loading the agent in {}", args.dir.display()))?;
    let name = loaded.spec().name().to_owned();
    match loaded.into_result() {
        Err(diagnostics) => {
            if args.json {
                output::json(&BuildOutput {
                    ok: false,
                    manifest: None,
                    content_hash: None,
                    diagnostics: diagnostics.iter().map(ash_spec::Diagnostic::to_info).collect(),
                })?;
            } else {
                output::diagnostics(&diagnostics);
            }
            let n_errors =
                diagnostics.iter().filter(|d| d.severity == ash_spec::Severity::Error).count();
            output::note(&format!(
                "error: refusing to build `{name}`: {n_errors} error(s); nothing was written (run `ash info {}` for the full picture)",
                args.dir.display()
            ));
            Ok(Outcome::Failure)
        }
        Ok((spec, warnings)) => {
            let written =
                ash_spec::write_build(&args.dir, &spec, &warnings).with_context(|| {
                    format!("writing {}", args.dir.join(ash_spec::BUILD_DIR).display())
                })?;
            if args.json {
                output::json(&BuildOutput {
                    ok: true,
                    manifest: Some(written.manifest_path.display().to_string()),
                    content_hash: Some(written.content_hash.clone()),
                    diagnostics: warnings.iter().map(ash_spec::Diagnostic::to_info).collect(),
                })?;
            } else {
                output::diagnostics(&warnings);
            }
            output::note(&format!(
                "built `{name}` -> {} ({}, {} warning(s))",
                written.manifest_path.display(),
                written.content_hash,
                warnings.len()
            ));
            Ok(Outcome::Success)
        }
    }
}
