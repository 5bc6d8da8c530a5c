//! `ash init`: scaffold an agent directory from a built-in template.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::cli::{InitArgs, Template};
use crate::cmd::Outcome;
use crate::output;

/// A template file: path relative to the new directory, content, executable bit.
type TemplateFile = (&'static str, &'static str, bool);

const WEATHER: &[TemplateFile] = &[
    (".gitignore", include_str!("../../../../examples/weather-agent/.gitignore"), false),
    (
        "agent/agent.toml",
        include_str!("../../../../examples/weather-agent/agent/agent.toml"),
        false,
    ),
    ("agent/system.md", include_str!("../../../../examples/weather-agent/agent/system.md"), false),
    (
        "agent/system/my-location.md",
        include_str!("../../../../examples/weather-agent/agent/system/my-location.md"),
        false,
    ),
    (
        "agent/skills/get-weather.md",
        include_str!("../../../../examples/weather-agent/agent/skills/get-weather.md"),
        false,
    ),
    (
        "agent/tools/get-weather.toml",
        include_str!("../../../../examples/weather-agent/agent/tools/get-weather.toml"),
        false,
    ),
    (
        "agent/lib/get-weather.sh",
        include_str!("../../../../examples/weather-agent/agent/lib/get-weather.sh"),
        true,
    ),
    (
        "agent/scripts/demo.jsonl",
        include_str!("../../../../examples/weather-agent/agent/scripts/demo.jsonl"),
        false,
    ),
    (
        "agent/sandboxes/notes.toml",
        include_str!("../../../../examples/weather-agent/agent/sandboxes/notes.toml"),
        false,
    ),
    (
        "agent/subagents/forecaster/agent.toml",
        include_str!("../../../../examples/weather-agent/agent/subagents/forecaster/agent.toml"),
        false,
    ),
    (
        "agent/subagents/forecaster/system.md",
        include_str!("../../../../examples/weather-agent/agent/subagents/forecaster/system.md"),
        false,
    ),
    (
        "agent/subagents/forecaster/scripts/forecast.jsonl",
        include_str!(
            "../../../../examples/weather-agent/agent/subagents/forecaster/scripts/forecast.jsonl"
        ),
        false,
    ),
];

/// ash's own coding agent, as network jobs run it (`examples/coder/`).
const CODER: &[TemplateFile] = &[
    (".gitignore", include_str!("../../../../examples/coder/.gitignore"), false),
    ("agent/agent.toml", include_str!("../../../../examples/coder/agent/agent.toml"), false),
    ("agent/system.md", include_str!("../../../../examples/coder/agent/system.md"), false),
    (
        "agent/skills/git-work.md",
        include_str!("../../../../examples/coder/agent/skills/git-work.md"),
        false,
    ),
    (
        "agent/skills/run-checks.md",
        include_str!("../../../../examples/coder/agent/skills/run-checks.md"),
        false,
    ),
    (
        "agent/scripts/demo.jsonl",
        include_str!("../../../../examples/coder/agent/scripts/demo.jsonl"),
        false,
    ),
];

const BLANK: &[TemplateFile] = &[
    (".gitignore", include_str!("../../templates/blank/gitignore"), false),
    ("agent/agent.toml", include_str!("../../templates/blank/agent/agent.toml"), false),
    ("agent/system.md", include_str!("../../templates/blank/agent/system.md"), false),
];

pub(crate) fn run(args: &InitArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; ash init only writes into an empty or new directory (try `ash init {}`)",
                    dir.display(),
                    dir.join("my-agent").display()
                );
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Err(err) if err.kind() == io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", dir.display());
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    }
    let absolute = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    // The same name `ash info` would give the directory; written into agent.toml explicitly.
    let name = ash_spec::default_agent_name(&absolute);
    let (files, template_name, placeholder) = match args.template {
        Template::Weather => (WEATHER, "weather", "name = \"weather-agent\""),
        Template::Blank => (BLANK, "blank", "name = \"blank-agent\""),
        Template::Coder => (CODER, "coder", "name = \"ash-coder\""),
    };
    for (rel, content, executable) in files {
        let content = if rel.ends_with("agent.toml") {
            content.replacen(placeholder, &format!("name = \"{name}\""), 1)
        } else {
            (*content).to_owned()
        };
        write_new(&dir.join(rel), &content, *executable)?;
    }
    output::note(&format!(
        "created the {template_name} agent `{name}` in {}\n\nnext:\n  ash info {}    # see what the agent resolves to\n  ash build {}   # compile it into {}/.ash/",
        dir.display(),
        dir.display(),
        dir.display(),
        dir.display()
    ));
    Ok(Outcome::Success)
}

/// Writes the built-in coding agent into `dir` afresh (what `ash serve` runs): the files as
/// this binary carries them, whatever was there before.
pub(crate) fn install_coder(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for (rel, content, executable) in CODER {
        if rel.starts_with("agent/") {
            write_new(&dir.join(rel), content, *executable)?;
        }
    }
    Ok(())
}

fn write_new(path: &Path, content: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
