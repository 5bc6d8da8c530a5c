//! `ash sandbox exec` and `ash sandbox check`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ash_sandbox::{
    BackendKind, Check, ExecOutput, ExecRequest, ExitStatus, Limits, Sandbox, SandboxPolicy,
    Secret, SecretDelivery,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{SandboxCheckArgs, SandboxCommand, SandboxExecArgs};
use crate::cmd::Outcome;
use crate::cmd::start::runtime;
use crate::{config, output};

/// Largest stdin passed to a sandboxed command.
const MAX_STDIN: u64 = 64 << 20;
/// Variables a sandboxed command gets without asking.
const DEFAULT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "TERM"];

pub(crate) fn run(command: SandboxCommand) -> anyhow::Result<Outcome> {
    match command {
        SandboxCommand::Exec(args) => exec(&args),
        SandboxCommand::Check(args) => check(&args),
    }
}

/// The policy the flags describe, on top of `--policy FILE` (or the default policy).
fn policy(args: &SandboxExecArgs, cwd: &std::path::Path) -> anyhow::Result<SandboxPolicy> {
    let mut policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the policy file {}", path.display()))?;
            SandboxPolicy::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => SandboxPolicy { limits: Limits::strict(), ..SandboxPolicy::default() },
    };
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
    };
    for dir in &args.writable {
        policy.fs.writable.push(absolute(dir)?);
    }
    for dir in &args.read_only {
        policy.fs.read_only.push(absolute(dir)?);
    }
    let visible =
        policy.fs.writable.iter().chain(&policy.fs.read_only).any(|root| cwd.starts_with(root));
    if !visible {
        policy.fs.read_only.push(cwd.to_path_buf());
    }
    policy.fs.hidden.extend(config::private_paths());
    if let Some(net) = &args.net {
        policy.net = net.clone();
    }
    if let Some(timeout) = args.timeout {
        policy.limits.wall_time = timeout;
    }
    if let Some(memory) = args.memory {
        policy.limits.memory_bytes = Some(memory);
    }
    if let Some(pids) = args.pids {
        policy.limits.pids = Some(pids);
    }
    for name in &args.secrets {
        let Some(value) = config::var(name) else {
            bail!("--secret {name}: the variable is not set in this environment");
        };
        policy.secrets.push(Secret { name: name.clone(), value, delivery: SecretDelivery::Env });
    }
    policy.validate()?;
    Ok(policy)
}

fn environment(args: &SandboxExecArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = config::pass_env(DEFAULT_ENV);
    for item in &args.env {
        match item.split_once('=') {
            Some((name, value)) => {
                env.insert(name.to_owned(), value.to_owned());
            }
            None => match config::var(item) {
                Some(value) => {
                    env.insert(item.clone(), value);
                }
                None => bail!(
                    "--env {item}: the variable is not set in this environment (use NAME=VALUE to set one)"
                ),
            },
        }
    }
    Ok(env)
}

fn exec(args: &SandboxExecArgs) -> anyhow::Result<Outcome> {
    let cwd = match &args.cwd {
        Some(dir) => std::path::absolute(dir)?,
        None => std::env::current_dir().context("finding the current directory")?,
    };
    let policy = policy(args, &cwd)?;
    let mut request = ExecRequest::new(args.command.clone(), cwd, policy);
    request.env = environment(args)?;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        stdin.lock().take(MAX_STDIN).read_to_end(&mut request.stdin).context("reading stdin")?;
    }
    runtime()?.block_on(async {
        let sandbox = Sandbox::new(config::sandbox_config(args.backend, args.image.clone())).await?;
        if sandbox.backend() == BackendKind::Plain && !args.json {
            output::note("ash: warning: no isolation available here (backend `plain`); see `ash sandbox check`");
        }
        let cancel = CancellationToken::new();
        let interrupt = cancel.clone();
        let watcher = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.cancel();
            }
        });
        let result = sandbox.exec(&request, &cancel).await;
        watcher.abort();
        let out = result?;
        if args.json {
            output::json(&exec_json(&out))?;
        } else {
            output::stdout_bytes(&out.stdout);
            output::stderr_bytes(&out.stderr);
            for c in out.connections.iter().filter(|c| !c.allowed) {
                output::note(&format!("ash: denied {}:{}: {}", c.host, c.port, c.reason));
            }
            if let Some(limit) = out.limit {
                output::note(&format!("ash: stopped: the {} limit was reached ({} backend)", limit.as_str(), out.backend));
            }
        }
        Ok(Outcome::Code(u8::try_from(out.status.code().clamp(0, 255)).unwrap_or(1)))
    })
}

fn exec_json(out: &ExecOutput) -> serde_json::Value {
    let (exited, signal) = match out.status {
        ExitStatus::Exited(code) => (Some(code), None),
        ExitStatus::Signaled(signal) => (None, Some(signal)),
    };
    json!({
        "backend": out.backend.as_str(),
        "exitCode": exited,
        "signal": signal,
        "limit": out.limit.map(|l| l.as_str()),
        "elapsedMs": out.elapsed.as_millis(),
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
        "stdoutTruncated": out.stdout_truncated,
        "stderrTruncated": out.stderr_truncated,
        "connections": out.connections.iter().map(|c| json!({
            "host": c.host, "port": c.port, "allowed": c.allowed, "reason": c.reason,
        })).collect::<Vec<_>>(),
        "connectionsOmitted": out.connections_omitted,
    })
}

fn check(args: &SandboxCheckArgs) -> anyhow::Result<Outcome> {
    let config = config::sandbox_config(ash_sandbox::BackendChoice::Auto, args.image.clone());
    let report = runtime()?.block_on(ash_sandbox::check(&config));
    if args.json {
        output::json(&check_json(&report))?;
    } else {
        output::stdout(&check_text(&report));
    }
    Ok(Outcome::Success)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn check_text(report: &Check) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let user = match report.host_id {
        Some(id) => format!(
            "sandboxed processes run as: uid {id} (ash runs as root; writable directories must belong to it)\n"
        ),
        None => "sandboxed processes run as: this user, unprivileged\n".to_owned(),
    };
    let mut text = format!(
        "{user}Landlock: {}\nseccomp: {}\nuser namespaces: {}\ncgroups: {}\n\n",
        report.landlock_abi.map_or_else(|| "not available".to_owned(), |abi| format!("ABI {abi}")),
        yes(report.seccomp),
        yes(report.user_namespaces),
        if report.cgroups.is_empty() {
            "none usable (limits fall back to rlimits)".to_owned()
        } else {
            report.cgroups.join(", ")
        },
    );
    text.push_str(&format!("{:<8} {:<6} {:>9}  {}\n", "BACKEND", "WORKS", "START", "DETAIL"));
    for b in &report.backends {
        text.push_str(&format!(
            "{:<8} {:<6} {:>9}  {}\n",
            b.backend.as_str(),
            yes(b.works),
            b.start.map(ms).unwrap_or_default(),
            b.detail
        ));
    }
    match report.auto {
        Some(kind) => text.push_str(&format!("\nauto picks: {kind}\n")),
        None => text.push_str(
            "\nauto picks: nothing; no backend isolates here, so `auto` refuses to run commands (choose `plain` explicitly to run without isolation)\n",
        ),
    }
    text
}

fn check_json(report: &Check) -> serde_json::Value {
    json!({
        "landlockAbi": report.landlock_abi,
        "seccomp": report.seccomp,
        "userNamespaces": report.user_namespaces,
        "cgroups": report.cgroups,
        "auto": report.auto.map(ash_sandbox::BackendKind::as_str),
        "hostId": report.host_id,
        "backends": report.backends.iter().map(|b| json!({
            "backend": b.backend.as_str(),
            "works": b.works,
            "detail": b.detail,
            "startMs": b.start.map(|d| d.as_secs_f64() * 1000.0),
        })).collect::<Vec<_>>(),
    })
}
