//! `ash schedules`: the agent's schedules with their next fire times, or one run now.

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::cli::SchedulesArgs;
use crate::cmd::harness::{self, StoreChoice};
use crate::cmd::start::runtime;
use crate::cmd::{Outcome, exec};
use crate::{config, output};

pub(crate) fn run(args: &SchedulesArgs) -> anyhow::Result<Outcome> {
    if let Some(name) = &args.run {
        return run_now(args, name);
    }
    let loaded = ash_spec::load(&args.dir, &config::load_options())
        .with_context(|| format!("loading the agent in {}", args.dir.display()))?;
    output::diagnostics(loaded.diagnostics());
    if loaded.has_errors() {
        bail!("the agent in {} has errors; `ash info` shows them", args.dir.display());
    }
    let now = Utc::now();
    let schedules = &loaded.spec().root().schedules;
    let listed: Vec<_> = schedules
        .iter()
        .map(|s| {
            let mut next = Vec::new();
            let mut after = now;
            while next.len() < args.count {
                let Some(at) = s.cron.next_after(after) else { break };
                next.push(at);
                after = at;
            }
            (s, next)
        })
        .collect();
    if args.json {
        let rows: Vec<_> = listed
            .iter()
            .map(|(s, next)| {
                json!({
                    "name": s.name,
                    "cron": s.cron.as_str(),
                    "source": s.source.display(),
                    "nextFires": next.iter().map(rfc3339).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::stdout(&format!("{}\n", json!({ "schedules": rows })));
        return Ok(Outcome::Success);
    }
    if listed.is_empty() {
        output::stdout("no schedules (add schedules/<name>.md with `cron:` frontmatter)\n");
        return Ok(Outcome::Success);
    }
    let mut text = String::new();
    for (s, next) in &listed {
        let fires: Vec<String> = next.iter().map(rfc3339).collect();
        text.push_str(&format!(
            "{}  `{}` (UTC)  {}\n  next: {}\n",
            s.name,
            s.cron.as_str(),
            s.source.display(),
            if fires.is_empty() { "never".to_owned() } else { fires.join(", ") }
        ));
    }
    text.push_str("`ash start` fires them; `ash schedules --run NAME` runs one now.\n");
    output::stdout(&text);
    Ok(Outcome::Success)
}

fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `--run NAME`: the schedule's run now, in this process, shown like `ash exec`.
fn run_now(args: &SchedulesArgs, name: &str) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let store = StoreChoice::from_arg(args.store.as_deref(), || StoreChoice::Memory)?;
        let harness = harness::start(&args.dir, store, &args.store_args, false).await?;
        let engine = &harness.engine;
        let accepted = engine.fire_schedule(name).await?;
        if !args.json {
            output::note(&format!("running schedule `{name}` now (run {})", accepted.run_id));
        }
        let outcome = exec::follow_task(engine, &accepted.run_id, args.json).await?;
        engine.shutdown().await;
        Ok(outcome)
    })
}
