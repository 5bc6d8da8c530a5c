//! `ash models`: show the provider table and how the agent's model resolves; `--prompt` sends
//! one message to that model and streams the answer.
//!
//! Text and `--json` render the same `ModelsOutput`. With `--prompt`, text goes to stdout as it
//! streams and everything else (reasoning, tool calls, usage) to stderr; `--json` prints each
//! `ModelEvent` as one NDJSON line instead.

use std::fmt::Write as _;

use anyhow::Context as _;
use ash_llm::{Client, ClientConfig, LlmError, Model, ModelRequest, ProviderTable};
use ash_protocol::{Message, ModelEvent, ModelsOutput, ProviderStatus};
use tokio_util::sync::CancellationToken;

use crate::cli::ModelsArgs;
use crate::cmd::Outcome;
use crate::{config, output};

pub(crate) fn run(args: &ModelsArgs) -> anyhow::Result<Outcome> {
    let options = config::load_options();
    let loaded = ash_spec::load(&args.dir, &options)
        .with_context(|| format!("loading the agent in {}", args.dir.display()))?;
    let (user, user_diags) = config::user_config()?;
    let package = (!loaded.has_errors()).then(|| loaded.spec().root());
    let table = config::provider_table(&options.env, &user, package);
    let client = Client::new(table, ClientConfig::default())?;

    let model_ref = package.and_then(|p| p.model.as_ref());
    let resolved = match (package, model_ref) {
        (Some(package), Some(model)) => Some(client.model(model, &args.dir.join(&package.dir))),
        _ => None,
    };
    let error = match (&resolved, package) {
        (Some(Err(err)), _) => Some(err.to_string()),
        (None, Some(_)) => Some("the agent has no `model` in agent.toml".to_owned()),
        (None, None) => Some("the agent directory has errors (see the diagnostics)".to_owned()),
        (Some(Ok(_)), _) => None,
    };
    let summary = ModelsOutput {
        model: model_ref.map(ToString::to_string),
        ok: error.is_none(),
        error,
        providers: statuses(client.providers()),
        diagnostics: loaded
            .diagnostics()
            .iter()
            .chain(&user_diags)
            .map(ash_spec::Diagnostic::to_info)
            .collect(),
    };

    let (Some(prompt), Some(Ok(model)), Some(package)) = (&args.prompt, resolved, package) else {
        if args.json {
            output::json(&summary)?;
        } else {
            output::diagnostics(loaded.diagnostics());
            output::diagnostics(&user_diags);
            output::stdout(&render(&summary));
        }
        return Ok(if summary.ok && args.prompt.is_none() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
    };
    let request = ModelRequest {
        system: package.system_prompt(),
        messages: vec![Message::user(prompt.as_str())],
        ..ModelRequest::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(try_model(&model, &request, args.json)) {
        Ok(()) => Ok(Outcome::Success),
        Err(err) => {
            output::note(&format!("error: {err}"));
            Ok(Outcome::Failure)
        }
    }
}

fn statuses(table: &ProviderTable) -> Vec<ProviderStatus> {
    table
        .iter()
        .map(|p| ProviderStatus {
            name: p.name.clone(),
            api: p.api.as_str().to_owned(),
            base_url: p.display_base_url(),
            api_key_env: p.api_key_env.clone(),
            key_set: p.api_key.is_some(),
            key_required: p.key_required,
        })
        .collect()
}

/// Streams one call: text to stdout as it arrives, the rest to stderr (or NDJSON events).
async fn try_model(model: &Model, request: &ModelRequest, json: bool) -> Result<(), LlmError> {
    let mut stream = model.stream(request, CancellationToken::new());
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut in_reasoning = false;
    let mut usage_line = None;
    while let Some(event) = stream.next().await {
        let event = event?;
        if json {
            if let Ok(line) = serde_json::to_string(&event) {
                output::stdout(&format!("{line}\n"));
            }
            continue;
        }
        match event {
            ModelEvent::TextDelta { text } => {
                if in_reasoning {
                    in_reasoning = false;
                    output::note("");
                }
                output::stdout(&text);
            }
            ModelEvent::ReasoningDelta { text } => {
                in_reasoning = true;
                output::note_partial(&text);
            }
            ModelEvent::ToolCallStarted { id, name } => calls.push((id, name, String::new())),
            ModelEvent::ToolCallDelta { id, delta } => {
                if let Some(call) = calls.iter_mut().find(|c| c.0 == id) {
                    call.2.push_str(&delta);
                }
            }
            ModelEvent::Retrying { attempt, error } => {
                output::note(&format!("\n(retrying, attempt {attempt}: {error})"));
            }
            ModelEvent::Usage { usage } => {
                usage_line = Some(format!(
                    "usage: {} input tokens ({} read from cache, {} written to cache), {} output tokens",
                    usage.input_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    usage.output_tokens
                ));
            }
            ModelEvent::Finished { reason } => {
                output::stdout("\n");
                for (id, name, arguments) in &calls {
                    output::note(&format!("tool call {name} ({id}): {arguments}"));
                }
                if let Some(line) = usage_line.take() {
                    output::note(&line);
                }
                output::note(&format!(
                    "finish: {}",
                    serde_json::to_string(&reason).unwrap_or_default().trim_matches('"')
                ));
            }
            ModelEvent::ResponseStarted { .. }
            | ModelEvent::ReasoningSignature { .. }
            | ModelEvent::RedactedReasoning { .. }
            | ModelEvent::ToolCallEnded { .. } => {}
        }
    }
    Ok(())
}

/// The text rendering of the summary.
pub(crate) fn render(summary: &ModelsOutput) -> String {
    let mut out = String::new();
    match (&summary.model, &summary.error) {
        (Some(model), None) => {
            let _ = writeln!(out, "model {model}: ready");
        }
        (Some(model), Some(error)) => {
            let _ = writeln!(out, "model {model}: {error}");
        }
        (None, Some(error)) => {
            let _ = writeln!(out, "model: {error}");
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "\nproviders:");
    let width = summary.providers.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &summary.providers {
        let key = match (&p.api_key_env, p.key_set, p.key_required) {
            (Some(env), true, _) => format!("key from {env} (set)"),
            (Some(env), false, true) => format!("key from {env} (NOT SET)"),
            (Some(env), false, false) => format!("optional key from {env} (not set)"),
            (None, _, _) => "no key".to_owned(),
        };
        let url = p.base_url.as_deref().unwrap_or("(no base_url)");
        let _ = writeln!(out, "  {:<width$}  {:<9}  {url}  {key}", p.name, p.api);
    }
    let _ = writeln!(
        out,
        "  {:<width$}  {:<9}  replays scripted/<file> relative to the agent directory",
        ash_spec::SCRIPTED_PROVIDER,
        "script"
    );
    out
}
