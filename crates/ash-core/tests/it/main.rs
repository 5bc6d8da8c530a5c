//! The engine end to end: real agent directories, the fake model server over HTTP, real tool
//! processes, the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod approvals;
mod http;
mod mcp;
mod sandboxes;
mod schedules;
mod subagents;
mod turns;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ash_core::{Accepted, Engine, EngineConfig, Inbound, MemoryStore, RunId, Store};
use ash_llm::{Client, ClientConfig, ProviderTable};
use ash_protocol::{Event, EventBody, RunMode};
use ash_spec::{LoadOptions, ModelRef, Provider, ProviderApi};
use ash_test_support::{FakeModelServer, Fixture};
use tempfile::TempDir;

/// An engine over a fixture agent, answering through a fake OpenAI-compatible server.
pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) server: FakeModelServer,
    pub(crate) fixture: Fixture,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) state: TempDir,
}

pub(crate) const AGENT_TOML: &str =
    "//- agent/agent.toml\nname = \"tester\"\nmodel = \"openai/gpt-test\"\n";

impl Harness {
    pub(crate) async fn new(files: &str) -> Self {
        Self::with(files, Arc::new(MemoryStore::new()), |_| {}).await
    }

    pub(crate) async fn with(
        files: &str,
        store: Arc<dyn Store>,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> Self {
        Self::with_env(files, &BTreeMap::new(), store, tweak).await
    }

    /// An engine whose agent files may name `${VAR}`s of `env`.
    pub(crate) async fn with_env(
        files: &str,
        env: &BTreeMap<String, String>,
        store: Arc<dyn Store>,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> Self {
        let server = FakeModelServer::start().await;
        let fixture = Fixture::new(&format!("{AGENT_TOML}{files}"));
        let state = tempfile::tempdir().unwrap();
        let options = LoadOptions { env: env.clone() };
        let engine =
            engine_for(&fixture, &options, &server, Arc::clone(&store), state.path(), tweak);
        Self { engine, server, fixture, store, state }
    }

    /// A second engine on the same agent, store and state directory (a restarted server).
    pub(crate) fn restart(&self, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
        let options = LoadOptions::default();
        engine_for(
            &self.fixture,
            &options,
            &self.server,
            Arc::clone(&self.store),
            self.state.path(),
            tweak,
        )
    }

    pub(crate) async fn send(&self, message: &str, token: Option<&str>) -> Accepted {
        send(&self.engine, message, token, None).await
    }

    pub(crate) fn workspace(&self, run_id: &str) -> std::path::PathBuf {
        self.state.path().join("workspaces").join(run_id)
    }
}

fn engine_for(
    fixture: &Fixture,
    options: &LoadOptions,
    server: &FakeModelServer,
    store: Arc<dyn Store>,
    state: &Path,
    tweak: impl FnOnce(&mut EngineConfig),
) -> Engine {
    let loaded = ash_spec::load(fixture.path(), options).unwrap();
    let (spec, _) = loaded.into_result().unwrap_or_else(|d| panic!("fixture invalid: {d:#?}"));
    let env = BTreeMap::from([("OPENAI_API_KEY".to_owned(), "sk-test".to_owned())]);
    let mut table = ProviderTable::builtin(&env);
    let layer =
        Provider { api: ProviderApi::OpenAi, base_url: Some(server.base_url()), api_key_env: None };
    table.apply("openai", &layer, &env);
    let mut client_config = ClientConfig::default();
    client_config.retry.max_attempts = 1;
    let client = Client::new(table, client_config).unwrap();
    let model = client.model(&ModelRef::parse("openai/gpt-test").unwrap(), fixture.path()).unwrap();
    let mut config = EngineConfig::new(fixture.path(), state.join("workspaces"));
    config.lease_ttl = Duration::from_millis(600);
    config.sweep_interval = Duration::from_millis(100);
    config.shutdown_grace = Duration::from_millis(200);
    tweak(&mut config);
    Engine::start(spec, model, store, config).unwrap()
}

pub(crate) async fn send(
    engine: &Engine,
    message: &str,
    token: Option<&str>,
    mode: Option<RunMode>,
) -> Accepted {
    engine
        .send(Inbound {
            continuation_token: token.map(str::to_owned),
            mode: mode.unwrap_or_default(),
            ..Inbound::new(message)
        })
        .await
        .unwrap()
}

/// Reads events from `start` until one of `until` types (inclusive), with a generous timeout.
pub(crate) async fn read_until(
    engine: &Engine,
    run_id: &RunId,
    start: u64,
    until: &[&str],
) -> Vec<Event> {
    let mut follower = engine.follow(run_id, start).await.unwrap().expect("run exists");
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), follower.next()).await;
        let event = next.expect("timed out waiting for events").unwrap().expect("stream ended");
        let done = until.contains(&event.body.type_name());
        out.push(event);
        if done {
            return out;
        }
    }
}

/// Event type names.
pub(crate) fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.body.type_name()).collect()
}

/// The bodies of events of one type.
pub(crate) fn bodies<'a>(events: &'a [Event], ty: &str) -> Vec<&'a EventBody> {
    events.iter().filter(|e| e.body.type_name() == ty).map(|e| &e.body).collect()
}
