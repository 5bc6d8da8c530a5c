//! The built-in agent: ash's own coding agent (`examples/coder`, installed under
//! `$ASH_HOME/agents/coder`), run by the harness engine in the job's workspace with its tools
//! in the sandbox, on the acceptor's model provider (or a scripted replay).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use ash_core::{Engine, EngineConfig, Inbound, MemoryStore};
use ash_llm::gateway::{Gateway, GatewayConfig};
use ash_llm::{Client, ClientConfig, Model, ProviderTable};
use ash_node::{AgentEnd, AgentWork, JobAgent};
use ash_protocol::{Action, ActionOutput, ActionStatus, EventBody, JobManifest, JobStep, RunMode};
use ash_sandbox::Sandbox;
use ash_spec::{AgentSpec, ModelRef, Provider, ProviderApi};

use crate::config;

/// ash's own coding agent (`examples/coder`), run by the harness engine in the job's
/// workspace, its tools in the sandbox.
pub(crate) struct BuiltinAgent {
    dir: PathBuf,
    spec: AgentSpec,
    model: Model,
    pub(crate) model_ref: ModelRef,
    pub(crate) scripted: bool,
    sandbox: Arc<Sandbox>,
}

impl BuiltinAgent {
    pub(crate) fn new(dir: &Path, model: &str, sandbox: Arc<Sandbox>) -> anyhow::Result<Self> {
        let options = config::load_options();
        let loaded = ash_spec::load(dir, &options)
            .with_context(|| format!("loading the built-in agent from {}", dir.display()))?;
        let (spec, _) = loaded
            .into_result()
            .map_err(|_| anyhow::anyhow!("the built-in agent does not load; this is a bug"))?;
        let model_ref = if model == "scripted" {
            spec.root().model.clone().context("the built-in agent names no demo script")?
        } else if let Some(file) = model.strip_prefix("scripted:") {
            // A conversation of one's own, replayed: copied beside the agent.
            let to = dir.join(&spec.root().dir).join("scripts").join("serve.jsonl");
            std::fs::copy(file, &to).with_context(|| format!("--model scripted:{file}"))?;
            ModelRef::parse("scripted/scripts/serve.jsonl").map_err(|e| anyhow::anyhow!(e))?
        } else {
            ModelRef::parse(model).map_err(|e| anyhow::anyhow!("--model {model}: {e}"))?
        };
        let (user, _) = config::user_config()?;
        let table = config::provider_table(&config::model_env(), &user, Some(spec.root()));
        let client = Client::new(table, ClientConfig::default())?;
        let model = client.model(&model_ref, &dir.join(&spec.root().dir)).with_context(|| {
            format!("the model `{model_ref}` cannot be used (`ash models` shows every provider)")
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            scripted: model_ref.provider() == ash_spec::SCRIPTED_PROVIDER,
            spec,
            model,
            model_ref,
            sandbox,
        })
    }
}

impl JobAgent for BuiltinAgent {
    fn kind(&self) -> &str {
        "builtin"
    }

    fn model(&self, _tier: &str) -> Option<String> {
        Some(self.model.name().to_owned())
    }

    fn routable(&self, _api: &str) -> bool {
        true
    }

    fn sandbox(&self) -> &str {
        self.sandbox.backend().as_str()
    }

    fn run(
        &self,
        work: AgentWork,
    ) -> Pin<Box<dyn Future<Output = Result<AgentEnd, String>> + Send>> {
        let (spec, model, dir, sandbox) =
            (self.spec.clone(), self.model.clone(), self.dir.clone(), Arc::clone(&self.sandbox));
        let model_name = model.name().to_owned();
        Box::pin(async move {
            // A routed job's calls go through a gateway on loopback to the requester, with a
            // placeholder key; the engine calls the model the terms name.
            let mut gateway = None;
            let (model, model_name) = match &work.routed {
                Some(routed) => {
                    let (gw, model) = routed_model(routed, &work.model).await?;
                    gateway = Some(gw);
                    (model, work.model.clone())
                }
                None => (model, model_name),
            };
            let runs = work.scratch.join("runs");
            let mut engine_config = EngineConfig::new(&dir, runs);
            engine_config.workspace = Some(work.workspace.clone());
            engine_config.process_env = config::process_env();
            engine_config.sandbox = sandbox;
            engine_config.tool_policy.fs.hidden.extend(config::private_paths());
            let engine = Engine::start(spec, model, Arc::new(MemoryStore::new()), engine_config)
                .map_err(|e| format!("the agent could not start: {e}"))?;
            let result = drive(&engine, work.prompt, &work.progress).await;
            engine.shutdown().await;
            let called = match gateway {
                Some(gateway) => gateway.stop().await.models.into_iter().collect(),
                None => vec![model_name],
            };
            let (summary, usage) = result?;
            let manifest = JobManifest {
                agent: "builtin".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                models: called,
                calls: usage.0,
                input_tokens: usage.1,
                output_tokens: usage.2,
            };
            Ok(AgentEnd { summary, manifest })
        })
    }
}

/// A gateway on loopback whose calls go to a routed job's requester, and the model `name`
/// behind it as the engine calls it.
async fn routed_model(
    routed: &Arc<ash_node::RoutedModel>,
    name: &str,
) -> Result<(Gateway, Model), String> {
    let token = super::external::placeholder().map_err(|e| e.to_string())?;
    let upstream = Arc::new(super::routing::ToRequester(Arc::clone(routed)));
    let config = GatewayConfig {
        token: token.clone(),
        model: Some(name.to_owned()),
        max_calls: None,
        max_tokens: None,
    };
    let gateway = Gateway::start(upstream, config, None, true)
        .await
        .map_err(|e| format!("starting the model gateway: {e}"))?;
    let api =
        if routed.api() == "anthropic" { ProviderApi::Anthropic } else { ProviderApi::OpenAi };
    let env = BTreeMap::from([("ASH_ROUTED_KEY".to_owned(), token)]);
    let mut table = ProviderTable::builtin(&env);
    let layer = Provider {
        api,
        base_url: gateway.base_url(),
        api_key_env: Some("ASH_ROUTED_KEY".to_owned()),
    };
    table.apply("routed", &layer, &env);
    let client = Client::new(table, ClientConfig::default()).map_err(|e| e.to_string())?;
    let model_ref = ModelRef::parse(&format!("routed/{name}"))?;
    let model = client.model(&model_ref, Path::new(".")).map_err(|e| e.to_string())?;
    Ok((gateway, model))
}

/// Model calls, input tokens and output tokens of a run.
type Usage = (u64, u64, u64);

/// Runs one task-mode turn and reports its steps; the final answer and what the model calls
/// used, or why it failed.
async fn drive(
    engine: &Engine,
    prompt: String,
    progress: &tokio::sync::mpsc::Sender<JobStep>,
) -> Result<(String, Usage), String> {
    let mut usage: Usage = (0, 0, 0);
    let accepted = engine
        .send(Inbound { mode: RunMode::Task, ..Inbound::new(prompt) })
        .await
        .map_err(|e| e.to_string())?;
    let mut follower = engine
        .follow(&accepted.run_id, 0)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the run disappeared")?;
    while let Some(event) = follower.next().await.map_err(|e| e.to_string())? {
        // The requester sees which tools the agent used and the tokens it spent, not what the
        // model wrote: that comes with the result, which is paid for.
        let mut steps = Vec::new();
        match &event.body {
            EventBody::ActionsRequested(requested) => {
                for action in &requested.actions {
                    steps.push(match action {
                        Action::ToolCall { tool_name, .. } => ("tool", format!("→ {tool_name}")),
                        Action::LoadSkill { .. } => ("tool", "→ skill".to_owned()),
                        Action::SubagentCall { name, .. } => ("tool", format!("→ {name}")),
                    });
                }
            }
            EventBody::ActionResult(result) => {
                let name = match &result.result {
                    ActionOutput::ToolResult { tool_name, .. } => tool_name.clone(),
                    ActionOutput::LoadSkillResult { name } => name.clone(),
                    ActionOutput::SubagentResult { subagent_name, .. } => subagent_name.clone(),
                };
                let failed = matches!(result.status, ActionStatus::Failed);
                steps.push(("tool", format!("← {name}{}", if failed { " failed" } else { "" })));
            }
            EventBody::TurnCompleted(turn) => {
                usage = (u64::from(turn.steps), turn.usage.input_tokens, turn.usage.output_tokens);
                steps.push((
                    "usage",
                    format!(
                        "({} steps, {} tokens in, {} out)",
                        turn.steps, turn.usage.input_tokens, turn.usage.output_tokens
                    ),
                ));
            }
            _ => {}
        }
        for (kind, text) in steps {
            let _ = progress.try_send(JobStep { kind: kind.to_owned(), text });
        }
        match event.body {
            EventBody::RunCompleted(done) => return Ok((done.output.unwrap_or_default(), usage)),
            EventBody::RunFailed(failed) => return Err(failed.message),
            _ => {}
        }
    }
    Err("the run ended without an answer".into())
}
