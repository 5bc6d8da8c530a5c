//! The agents one engine runs: the root package and every subagent package under it, each with
//! its own tools, named sandboxes, model, price and limits. A run says which it is (its journal's
//! `RunOpened`; none: the root), and its worker uses that agent's parts.
//!
//! Owns the agent paths (`""` for the root, `reviewer`, `reviewer/helper` for nested
//! subagents) and the model each runs on: a subagent without `model` uses its parent's; one with
//! its own is resolved through [`crate::EngineConfig::models`].

use std::collections::BTreeMap;
use std::sync::Arc;

use ash_llm::Model;
use ash_spec::{ModelRef, Package, Price};

use crate::connections::Connections;
use crate::sandboxes::{Sandboxes, Shared};
use crate::tools::{Registry, SchemaError};

/// Resolves a subagent's own `model` into a callable model.
pub trait ResolveModel: Send + Sync + std::fmt::Debug {
    /// The model `reference` names, relative to `package_dir` (for `scripted/` files).
    fn resolve(&self, reference: &ModelRef, package_dir: &std::path::Path)
    -> Result<Model, String>;
}

/// One agent package as an engine runs it.
pub(crate) struct Agent {
    /// Its package.
    pub(crate) package: Package,
    /// The tools its model is offered.
    pub(crate) tools: Registry,
    /// Its named sandboxes.
    pub(crate) sandboxes: Sandboxes,
    /// The model it runs on.
    pub(crate) model: Model,
    /// That model's price, when known.
    pub(crate) price: Option<Price>,
}

/// Every agent of an engine, by path.
pub(crate) struct Agents {
    root: Arc<Agent>,
    by_path: BTreeMap<String, Arc<Agent>>,
}

/// Why the agents could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A tool schema did not compile.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A subagent's model cannot be used.
    #[error("subagent `{path}` runs on `{model}`, which cannot be used: {why}")]
    Model {
        /// The subagent's path.
        path: String,
        /// Its model.
        model: String,
        /// Why.
        why: String,
    },
}

/// What building the agents needs.
pub(crate) struct Build<'a> {
    pub(crate) seeded: bool,
    pub(crate) connections: &'a Connections,
    pub(crate) shared: &'a Shared,
    pub(crate) models: Option<&'a dyn ResolveModel>,
    pub(crate) project_dir: &'a std::path::Path,
}

impl Agents {
    /// The root (on `model`) and every subagent under it.
    pub(crate) fn new(root: &Package, model: Model, build: &Build<'_>) -> Result<Self, AgentError> {
        let make = |path: &str, package: &Package, model: Model, reference: Option<&ModelRef>| {
            let price = reference.and_then(|m| {
                package
                    .prices
                    .get(&m.to_string())
                    .or_else(|| root.prices.get(&m.to_string()))
                    .copied()
                    .or_else(|| ash_spec::builtin_price(m.provider(), m.model()))
            });
            Ok::<_, AgentError>(Arc::new(Agent {
                tools: Registry::new(package, path, build.seeded, Some(build.connections))?,
                sandboxes: Sandboxes::new(package, path, build.shared.clone()),
                package: package.clone(),
                model,
                price,
            }))
        };
        let root_agent = make("", root, model.clone(), root.model.as_ref())?;
        let mut by_path = BTreeMap::new();
        let mut stack = vec![(String::new(), root, model, root.model.clone())];
        while let Some((path, package, model, reference)) = stack.pop() {
            for sub in &package.subagents {
                let child = child_path(&path, &sub.id);
                let (child_model, child_ref) = match &sub.package.model {
                    None => (model.clone(), reference.clone()),
                    Some(own) if Some(own) == reference.as_ref() => {
                        (model.clone(), reference.clone())
                    }
                    Some(own) => {
                        let error = |why: String| AgentError::Model {
                            path: child.clone(),
                            model: own.to_string(),
                            why,
                        };
                        let resolver = build
                            .models
                            .ok_or_else(|| error("this engine runs one model only".to_owned()))?;
                        let dir = build.project_dir.join(&sub.package.dir);
                        (resolver.resolve(own, &dir).map_err(error)?, Some(own.clone()))
                    }
                };
                let agent = make(&child, &sub.package, child_model.clone(), child_ref.as_ref())?;
                by_path.insert(child.clone(), agent);
                stack.push((child, sub.package.as_ref(), child_model, child_ref));
            }
        }
        by_path.insert(String::new(), Arc::clone(&root_agent));
        Ok(Self { root: root_agent, by_path })
    }

    /// The root agent.
    pub(crate) fn root(&self) -> &Arc<Agent> {
        &self.root
    }

    /// The agent at `path`.
    pub(crate) fn get(&self, path: &str) -> Option<&Arc<Agent>> {
        self.by_path.get(path)
    }
}

/// The path of subagent `id` of the agent at `parent`.
pub(crate) fn child_path(parent: &str, id: &str) -> String {
    if parent.is_empty() { id.to_owned() } else { format!("{parent}/{id}") }
}
