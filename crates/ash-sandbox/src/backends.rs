//! How each backend turns a [`HelperSpec`] into a process to launch: the command itself
//! (plain), the helper (native), `bwrap` running the helper (bubblewrap), or a container run.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::BackendKind;
use crate::exec::{Launch, supervise};
use crate::helper::{Entry, PROC_READ_ONLY, plan};
use crate::policy::{DEFAULT_READ_ONLY, Limits};
use crate::spec::{HELPER_ARG, HelperSpec, find_program, forward_socket};

/// Where the helper binary appears inside bubblewrap.
const BWRAP_HELPER: &str = "/run/ash-helper";

#[expect(clippy::disallowed_methods, reason = "ash-sandbox is the one place that spawns")]
pub(crate) fn command(program: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.env_clear();
    command
}

/// The command itself, with a cleared environment and the rlimits a plain process can take.
pub(crate) fn plain(spec: &HelperSpec, stdin: &[u8]) -> Launch {
    let name = program_name(spec);
    // Looked up in the command's own PATH, as the other backends do.
    let program = spec
        .env
        .get("PATH")
        .and_then(|search| find_program(search, &name))
        .unwrap_or_else(|| name.clone().into());
    let mut cmd = command(&program);
    cmd.args(spec.argv.iter().skip(1)).current_dir(&spec.cwd).envs(&spec.env);
    Launch { stdin: stdin.to_vec(), rlimits: Some(spec.rlimits), ..Launch::new(cmd, name) }
}

/// `argv[0]`, the name errors use.
fn program_name(spec: &HelperSpec) -> String {
    spec.argv.first().cloned().unwrap_or_default()
}

fn framed(spec: &HelperSpec, stdin: &[u8]) -> Vec<u8> {
    let mut bytes = spec.encode();
    bytes.extend_from_slice(stdin);
    bytes
}

/// The helper, which builds the namespaces and the view itself.
pub(crate) fn native(helper: &Path, spec: &HelperSpec, stdin: &[u8]) -> Launch {
    let mut cmd = command(helper);
    cmd.arg(HELPER_ARG).current_dir("/");
    Launch { stdin: framed(spec, stdin), reports: true, ..Launch::new(cmd, program_name(spec)) }
}

/// `bwrap` building the same view as the native backend, running the helper inside to
/// confine, forward and report.
pub(crate) fn bwrap(bwrap: &Path, helper: &Path, spec: &HelperSpec, stdin: &[u8]) -> Launch {
    let mut inner = spec.clone();
    inner.isolate = false;
    let args = bwrap_args(helper, spec);
    let mut cmd = command(bwrap);
    cmd.args(args).current_dir("/");
    Launch { stdin: framed(&inner, stdin), reports: true, ..Launch::new(cmd, program_name(spec)) }
}

pub(crate) fn bwrap_args(helper: &Path, spec: &HelperSpec) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    let mut args: Vec<String> = [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    .map(String::from)
    .to_vec();
    if !spec.share_net {
        args.push("--unshare-net".into());
    }
    let uid = spec.uid.to_string();
    args.extend(
        [
            "--uid",
            &uid,
            "--gid",
            &uid,
            "--hostname",
            "ash-sandbox",
            "--die-with-parent",
            "--new-session",
        ]
        .map(String::from),
    );
    let mounted: Vec<&Path> =
        spec.read_only.iter().chain(spec.writable.iter()).map(|p| p.as_path()).collect();
    let mut hidden_dirs = Vec::new();
    for (path, entry) in plan(spec) {
        let p = s(&path);
        match entry {
            Entry::Proc => {
                args.extend(["--proc".into(), p]);
                for sub in PROC_READ_ONLY {
                    let sub = format!("/proc/{sub}");
                    if std::path::Path::new(&sub).exists() {
                        args.extend(["--ro-bind".into(), sub.clone(), sub]);
                    }
                }
            }
            Entry::Dev => args.extend(["--dev".into(), p]),
            Entry::Tmp => {
                args.extend(["--size".into(), spec.tmp_bytes.to_string(), "--tmpfs".into(), p])
            }
            Entry::Run => {
                args.extend([
                    "--tmpfs".into(),
                    p,
                    "--ro-bind".into(),
                    s(helper),
                    BWRAP_HELPER.into(),
                ]);
                for (port, socket) in &spec.forwards {
                    args.extend(["--bind".into(), s(socket), s(&forward_socket(*port))]);
                }
                if !spec.secret_files.is_empty() {
                    args.extend(["--tmpfs".into(), "/run/secrets".into()]);
                }
            }
            Entry::ReadOnly => match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&path) {
                        args.extend(["--symlink".into(), s(&target), p]);
                    }
                }
                Ok(_) => args.extend(["--ro-bind".into(), p.clone(), p]),
                Err(_) => {}
            },
            Entry::Writable => args.extend(["--bind".into(), p.clone(), p]),
            Entry::Hidden => {
                let visible = mounted.iter().any(|root| path.starts_with(root) && path != *root);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if visible && m.is_dir() => {
                        args.extend(["--tmpfs".into(), p.clone()]);
                        hidden_dirs.push(p);
                    }
                    Ok(m) if visible && m.is_file() => {
                        args.extend(["--ro-bind".into(), "/dev/null".into(), p])
                    }
                    _ => {}
                }
            }
        }
    }
    for dir in hidden_dirs {
        args.extend(["--remount-ro".into(), dir]);
    }
    args.extend(["--remount-ro".into(), "/run".into()]);
    args.extend([
        "--chdir".into(),
        s(&spec.cwd),
        "--".into(),
        BWRAP_HELPER.into(),
        HELPER_ARG.into(),
    ]);
    args
}

/// `podman run` / `docker run` with the flags this kernel needs, limits as container
/// options, and a name so the container can be removed whatever happens.
pub(crate) fn container(
    kind: BackendKind,
    runtime: &Path,
    image: &str,
    name: &str,
    spec: &HelperSpec,
    limits: &Limits,
    stdin: &[u8],
) -> Launch {
    let mut cmd = command(runtime);
    cmd.args(container_args(kind, image, name, spec, limits));
    // `run -i` hands the command our stdin.
    Launch { stdin: stdin.to_vec(), ..Launch::new(cmd, program_name(spec)) }
}

pub(crate) fn container_args(
    kind: BackendKind,
    image: &str,
    name: &str,
    spec: &HelperSpec,
    limits: &Limits,
) -> Vec<String> {
    let net = if spec.share_net { "host" } else { "none" };
    let user = format!("{0}:{0}", spec.uid);
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "-i",
        "--name",
        name,
        "--network",
        net,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        &user,
        "--hostname",
        "ash-sandbox",
    ]
    .map(String::from)
    .to_vec();
    if kind == BackendKind::Podman {
        // crun fails on this kernel's hybrid cgroups, and no one here may raise rlimits.
        args.extend(
            ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
                .map(String::from),
        );
    }
    args.extend(["--tmpfs".into(), format!("/tmp:rw,nosuid,nodev,size={}", spec.tmp_bytes)]);
    if let Some(m) = limits.memory_bytes {
        args.extend(["--memory".into(), m.to_string(), "--memory-swap".into(), m.to_string()]);
    }
    if let Some(p) = limits.pids {
        args.extend(["--pids-limit".into(), p.to_string()]);
    }
    if let Some(c) = limits.cpu_percent {
        args.extend(["--cpus".into(), format!("{:.2}", f64::from(c) / 100.0)]);
    }
    if let Some(n) = limits.open_files {
        args.extend(["--ulimit".into(), format!("nofile={n}:{n}")]);
    }
    if let Some(c) = limits.cpu_time {
        args.extend(["--ulimit".into(), format!("cpu={0}:{0}", c.as_secs().max(1))]);
    }
    for path in &spec.writable {
        args.extend(["--volume".into(), format!("{0}:{0}:rw", path.display())]);
    }
    // System directories come from the image; other read-only paths are mounted.
    for path in spec
        .read_only
        .iter()
        .filter(|p| !DEFAULT_READ_ONLY.iter().any(|d| Path::new(d) == p.as_path()))
    {
        args.extend(["--volume".into(), format!("{0}:{0}:ro", path.display())]);
    }
    args.extend(["--workdir".into(), spec.cwd.display().to_string()]);
    for (key, value) in spec.env.iter().filter(|(k, _)| k.as_str() != "PATH") {
        args.extend(["--env".into(), format!("{key}={value}")]);
    }
    args.push(image.to_owned());
    args.extend(spec.argv.iter().cloned());
    args
}

/// `rm -f` the named container (it may outlive a killed `run` client).
pub(crate) async fn remove_container(runtime: &Path, name: &str) {
    let mut cmd = command(runtime);
    cmd.args(["rm", "-f", name]);
    let launch = Launch::new(cmd, "rm".into());
    let _ = supervise(launch, Duration::from_secs(30), 64 * 1024, &CancellationToken::new()).await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::spec::Rlimits;

    #[test]
    fn the_podman_command_line_carries_every_limit_and_the_flags_this_kernel_needs() {
        let spec = HelperSpec {
            argv: vec!["make".into(), "test".into()],
            cwd: "/work/repo".into(),
            env: BTreeMap::from([("PATH".into(), "/x".into()), ("LANG".into(), "C.UTF-8".into())]),
            isolate: true,
            share_net: false,
            read_only: vec!["/usr".into(), "/data".into()],
            writable: vec!["/work/repo".into()],
            hidden: vec![],
            tmp_bytes: 1024,
            forwards: vec![],
            secret_files: vec![],
            uid: 1000,
            host_id: None,
            landlock_abi: None,
            rlimits: Rlimits::default(),
            zygote: false,
        };
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            pids: Some(50),
            cpu_percent: Some(50),
            open_files: Some(256),
            cpu_time: Some(Duration::from_secs(60)),
            ..Limits::default()
        };
        let args = container_args(BackendKind::Podman, "img:1", "ash-1-0", &spec, &limits);
        assert_eq!(
            args.join(" "),
            "run --rm -i --name ash-1-0 --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
             --user 1000:1000 --hostname ash-sandbox --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
             --tmpfs /tmp:rw,nosuid,nodev,size=1024 --memory 67108864 --memory-swap 67108864 --pids-limit 50 --cpus 0.50 \
             --ulimit nofile=256:256 --ulimit cpu=60:60 --volume /work/repo:/work/repo:rw --volume /data:/data:ro \
             --workdir /work/repo --env LANG=C.UTF-8 img:1 make test"
        );
        let docker = container_args(BackendKind::Docker, "img:1", "n", &spec, &Limits::default());
        assert!(!docker.iter().any(|a| a == "--runtime"), "{docker:?}");
    }
}
