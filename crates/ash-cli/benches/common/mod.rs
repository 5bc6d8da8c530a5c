//! What the `turn` and `load` benchmarks share: the compared workload's agent, a running
//! `ash start`, and percentiles.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ash_test_support::{FakeModelServer, Fixture};

/// The compared workload's agent, named `name`: a `get_weather` command tool printing a small
/// JSON object, its model served by `model`.
pub(crate) fn weather_agent(model: &FakeModelServer, name: &str) -> Fixture {
    Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"{name}\"\nmodel = \"openai/bench\"\n[providers.openai]\nbase_url = \"{}\"\n\
         //- agent/system.md\nYou answer weather questions.\n\
         //- agent/tools/get-weather.toml\ndescription = \"Current weather for a city.\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; printf '{{\\\"city\\\":\\\"Paris\\\",\\\"temperatureF\\\":72}}'\"]\n\
         [input_schema]\ntype = \"object\"\nproperties.city = {{ type = \"string\" }}\nrequired = [\"city\"]\n",
        model.base_url()
    ))
}

/// A running `ash start` (native sandbox, durable store), killed when dropped.
pub(crate) struct AshStart {
    pub(crate) child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl AshStart {
    /// Starts `ash start` for the agent in `project` with its store at `store` and `args`
    /// added; returns once it listens. Its log (warnings and worse) is printed, indented.
    pub(crate) fn start(project: &Path, store: &Path, args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ash"))
            .args(["start", ".", "--port", "0", "--sandbox", "native"])
            .args(args)
            .arg("--store")
            .arg(store)
            .current_dir(project)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("OPENAI_API_KEY", "bench")
            .env("ASH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ash start");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr"))
            .lines()
            .map_while(Result::ok);
        let mut said = Vec::new();
        let base = loop {
            let Some(line) = lines.next() else {
                panic!("ash start ended without listening:\n{}", said.join("\n"));
            };
            if let Some(url) =
                line.find("http://").and_then(|at| line[at..].split_whitespace().next())
            {
                break url.to_owned();
            }
            said.push(line);
        };
        std::thread::spawn(move || {
            for line in lines {
                println!("  [server] {line}");
            }
        });
        Self { child, base }
    }
}

impl Drop for AshStart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p` quantile (0–1) of `sorted`, which must not be empty.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
