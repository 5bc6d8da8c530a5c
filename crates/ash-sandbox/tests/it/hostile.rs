//! The findings of the adversarial review, each as an attack with its exact outcome: the
//! sandbox user is never host root (F1), no set-user-ID files (F2), `auto` never runs
//! unisolated (F3), no inherited descriptors (F4), no vsock or other socket families (F5),
//! no abstract sockets of the host (F6), a bounded proxy record (F9), the disk limit while the
//! command runs (F10), one request per proxied connection (F11), root-only files unreadable
//! (F12), no `io_uring` (F14) — and simulated older kernels.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::time::Duration;

use ash_sandbox::{
    BackendChoice, BackendKind, HostRule, LimitHit, NetPolicy, Sandbox, SandboxConfig, SandboxError,
};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{isolating, request, run, strict, text};

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn the_sandbox_user_is_never_host_root_and_kernel_knobs_are_read_only() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let script = "for f in /proc/sys/kernel/core_pattern /proc/sys/vm/drop_caches /proc/sysrq-trigger; do \
              (echo x > $f) 2>/dev/null && echo \"wrote $f\"; done; \
            awk '$2 == \"/proc/sys\" || $2 == \"/proc/sysrq-trigger\" { split($4, o, \",\"); print $2, o[1] }' /proc/self/mounts; \
            touch made; id -u";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        let sysrq = if std::path::Path::new("/proc/sysrq-trigger").exists() {
            "/proc/sysrq-trigger ro\n"
        } else {
            ""
        };
        assert_eq!(
            text(&out.stdout),
            format!("/proc/sys ro\n{sysrq}1000\n"),
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
        let owner = std::fs::metadata(ws.path().join("made")).unwrap().uid();
        let expected =
            if as_root() { ash_sandbox::DEFAULT_HOST_ID } else { nix::unistd::getuid().as_raw() };
        assert_eq!(owner, expected, "{}: what the sandbox writes belongs to", sb.backend());
        assert_ne!(owner, 0);
        // The workspace is closed to other local users.
        let mode = std::fs::metadata(ws.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}

#[tokio::test]
async fn root_only_files_in_visible_directories_stay_unreadable() {
    if !as_root() {
        eprintln!("skipping: needs root to make a root-only file");
        return;
    }
    let visible = tempfile::tempdir().unwrap();
    std::fs::set_permissions(visible.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = visible.path().join("root-only.key");
    std::fs::write(&secret, "root secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.fs.read_only.push(visible.path().to_path_buf());
        let script = format!(
            "cat {} 2>/dev/null || echo denied; cat /proc/1/environ >/dev/null 2>&1 && echo leaked; echo done",
            secret.display()
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        assert_eq!(text(&out.stdout), "denied\ndone\n", "{}: {}", sb.backend(), text(&out.stderr));
    }
}

#[tokio::test]
async fn set_user_and_group_id_files_cannot_be_made() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let script = "cp /bin/true t; chmod u+s t 2>/dev/null && echo 'chmod u+s worked'; \
            chmod g+s t 2>/dev/null && echo 'chmod g+s worked'; \
            chmod 6755 t 2>/dev/null && echo 'chmod 6755 worked'; \
            install -m 4755 /bin/true t2 2>/dev/null && echo 'install worked'; \
            perl -e 'use Fcntl; sysopen(my $f, \"t3\", O_CREAT|O_WRONLY, 04755) ? print \"open worked\\n\" : print \"open: \", $!+0, \"\\n\"'; \
            mkdir -m 2775 d 2>/dev/null && echo 'mkdir worked'; \
            chmod 755 t && echo 'plain chmod ok'";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(
            text(&out.stdout),
            "open: 1\nplain chmod ok\n",
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
        for entry in std::fs::read_dir(ws.path()).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().mode();
            assert_eq!(mode & 0o6000, 0, "{}: a set-ID file was made", sb.backend());
        }
    }
}

#[tokio::test]
async fn auto_never_means_no_isolation() {
    let runtime = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(BackendChoice::Auto, runtime.path().to_path_buf());
    // A helper that cannot build a sandbox, and no bubblewrap on the search path: as on a
    // host where user namespaces are denied.
    config.helper = Some(PathBuf::from("/bin/false"));
    config.search_path = "/nonexistent".into();
    let err = Sandbox::new(config).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SandboxError::NoIsolation { .. }), "{message}");
    assert!(
        message.starts_with(
            "no sandbox backend isolates processes on this machine (the native backend"
        ),
        "{message}"
    );
    assert!(message.contains("choose the `plain` backend explicitly"), "{message}");
}

#[tokio::test]
async fn bubblewrap_is_refused_under_root() {
    if !as_root() {
        eprintln!("skipping: only a root-run ash refuses bubblewrap");
        return;
    }
    let runtime = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(
        BackendChoice::Exactly(BackendKind::Bwrap),
        runtime.path().to_path_buf(),
    );
    config.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_ash-sandbox-helper")));
    let err = Sandbox::new(config).await.unwrap_err().to_string();
    let expected = if ash_sandbox_bwrap_installed() {
        "the bwrap backend is not available: ash runs as root, and bubblewrap would map the sandbox to host root; use the native backend (or run ash as a normal user)"
    } else {
        "the bwrap backend is not available: `bwrap` is not installed (apt install bubblewrap)"
    };
    assert_eq!(err, expected);
}

fn ash_sandbox_bwrap_installed() -> bool {
    ["/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

#[tokio::test]
async fn no_descriptor_of_ash_reaches_the_command() {
    // Descriptors this process holds without close-on-exec, as a library might leave them.
    let leaked = tempfile::tempfile().unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    nix::fcntl::fcntl(&leaked, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        // Listed into a file (the redirection happens in the child), so the shell holds no
        // pipe of its own at that moment.
        let script = "ls /proc/$$/fd > /tmp/fds; sort -n /tmp/fds | tr '\\n' ' '";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(text(&out.stdout), "0 1 2 ", "{} (host fd {raw} leaked?)", sb.backend());
    }
    drop((pipe_r, pipe_w, leaked));
}

#[tokio::test]
async fn only_unix_ip_and_routing_netlink_sockets_exist_and_io_uring_does_not() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        // Families: vsock 40, bluetooth 31, can 29, alg 38, netlink 16 (route 0, audit 9).
        let script = "perl -e 'use Socket; \
            for my $t ([\"unix\", 1, 1, 0], [\"inet\", 2, 1, 0], [\"inet6\", 10, 1, 0], [\"vsock\", 40, 1, 0], \
                       [\"bluetooth\", 31, 3, 0], [\"can\", 29, 3, 1], [\"alg\", 38, 5, 0], \
                       [\"netlink-route\", 16, 3, 0], [\"netlink-audit\", 16, 3, 9]) { \
              my ($n, $f, $ty, $p) = @$t; \
              print socket(my $s, $f, $ty, $p) ? \"$n ok\\n\" : \"$n \" . ($!+0) . \"\\n\"; } \
            my $r = syscall(425, 8, 0); print \"io_uring_setup $r \", ($!+0), \"\\n\";'";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(
            text(&out.stdout),
            "unix ok\ninet ok\ninet6 ok\nvsock 97\nbluetooth 97\ncan 97\nalg 97\nnetlink-route ok\nnetlink-audit 97\nio_uring_setup -1 38\n",
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn the_hosts_abstract_sockets_are_out_of_reach() {
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("ash-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    for (sb, _rt) in isolating().await {
        for net in [NetPolicy::None, NetPolicy::Full] {
            let ws = tempfile::tempdir().unwrap();
            let mut policy = strict(ws.path());
            policy.net = net.clone();
            let script = format!(
                "perl -e 'use Socket; socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die; \
                 print connect($s, pack(\"S a*\", AF_UNIX, \"\\0{name}\")) ? \"connected\\n\" : \"refused\\n\"'"
            );
            let out = run(&sb, &request(ws.path(), policy, &script)).await;
            assert_eq!(
                text(&out.stdout),
                "refused\n",
                "{} {net:?}: {}",
                sb.backend(),
                text(&out.stderr)
            );
        }
    }
    assert!(listener.accept().is_err(), "nothing may have connected");
}

#[tokio::test]
async fn an_older_kernel_is_simulated_and_full_network_refused_where_it_would_leak() {
    let runtime = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(
        BackendChoice::Exactly(BackendKind::Native),
        runtime.path().to_path_buf(),
    );
    config.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_ash-sandbox-helper")));
    config.landlock_abi = Some(5);
    let Ok(sb) = Sandbox::new(config.clone()).await else {
        eprintln!("skipping: the native backend does not work here");
        return;
    };
    assert!(sb.landlock_abi().is_none_or(|abi| abi <= 5));
    let ws = tempfile::tempdir().unwrap();
    let mut policy = strict(ws.path());
    policy.net = NetPolicy::Full;
    sb.adopt(ws.path()).unwrap();
    let err =
        sb.exec(&request(ws.path(), policy, "true"), &CancellationToken::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the native backend cannot give `full` network here: on this kernel (Landlock ABI below 6) the host's abstract Unix sockets would be reachable; use `none` or an allow list"
    );
    // No Landlock at all: the mount view still holds.
    config.landlock_abi = Some(0);
    let sb = Sandbox::new(config).await.unwrap();
    assert_eq!(sb.landlock_abi(), None);
    let check = ash_sandbox::check(&{
        let mut c = SandboxConfig::new(BackendChoice::Auto, runtime.path().to_path_buf());
        c.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_ash-sandbox-helper")));
        c.landlock_abi = Some(0);
        c
    })
    .await;
    let native = check.backends.iter().find(|b| b.backend == BackendKind::Native).unwrap();
    assert!(native.detail.contains("NO Landlock"), "{}", native.detail);
    assert_eq!(check.landlock_abi, None);
    let out = run(
        &sb,
        &request(
            ws.path(),
            strict(ws.path()),
            "cat /etc/shadow 2>/dev/null || echo hidden; echo x > /etc/x 2>/dev/null || echo ro",
        ),
    )
    .await;
    assert_eq!(text(&out.stdout), "hidden\nro\n");
}

#[tokio::test]
async fn the_proxy_record_is_bounded() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.net = NetPolicy::Allow(vec!["127.0.0.1:1".parse::<HostRule>().unwrap()]);
        let script = "for i in $(seq 1200); do exec 3<>/dev/tcp/127.0.0.1/3128 && \
            printf 'CONNECT 10.0.0.1:22 HTTP/1.1\\r\\n\\r\\n' >&3 && cat <&3 >/dev/null; exec 3>&-; done; echo done";
        let out = run(&sb, &request(ws.path(), policy, script)).await;
        assert_eq!(text(&out.stdout), "done\n", "{}: {}", sb.backend(), text(&out.stderr));
        assert_eq!(
            (out.connections.len(), out.connections_omitted),
            (1000, 200),
            "{}",
            sb.backend()
        );
    }
}

/// A loopback HTTP server that answers each request it reads (keeping the connection) and
/// counts them.
async fn counting_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = std::sync::Arc::clone(&seen);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        data.drain(..end + 4);
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn a_proxied_connection_carries_one_request_and_one_host() {
    let (port, count) = counting_server().await;
    for (sb, _rt) in isolating().await {
        count.store(0, std::sync::atomic::Ordering::SeqCst);
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.net =
            NetPolicy::Allow(vec![format!("127.0.0.1:{port}").parse::<HostRule>().unwrap()]);
        let a = format!("127.0.0.1:{port}");
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/3128; \
             printf 'GET http://{a}/one HTTP/1.1\\r\\nHost: {a}\\r\\n\\r\\nGET http://10.0.0.1/two HTTP/1.1\\r\\nHost: 10.0.0.1\\r\\n\\r\\n' >&3; \
             cat <&3; echo; exec 3>&-; \
             exec 3<>/dev/tcp/127.0.0.1/3128; \
             printf 'GET http://{a}/ HTTP/1.1\\r\\nHost: {a}\\r\\nHost: 10.0.0.1\\r\\n\\r\\n' >&3; head -1 <&3"
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("HTTP/1.1 200 OK"), "{}: {stdout}", sb.backend());
        assert!(stdout.ends_with("HTTP/1.1 400 Bad Request\r\n"), "{}: {stdout}", sb.backend());
        assert_eq!(
            count.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{}: the pipelined request went through",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn the_disk_limit_holds_while_the_command_runs_even_past_many_files() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.limits.disk_bytes = Some(10 << 20);
        policy.limits.wall_time = Duration::from_secs(60);
        // 60,000 empty files first (past the old measuring budget), then 1 MiB files slowly.
        let script = "mkdir many && cd many && seq 60000 | xargs touch && cd .. && \
            for i in $(seq 45); do head -c 1048576 /dev/zero > big$i; sleep 0.1; done; echo finished";
        let out = run(&sb, &request(ws.path(), policy, script)).await;
        assert_eq!(out.limit, Some(LimitHit::Disk), "{}: {}", sb.backend(), text(&out.stderr));
        assert!(!text(&out.stdout).contains("finished"), "{}", sb.backend());
        let big: u64 = std::fs::read_dir(ws.path())
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        assert!(big < 30 << 20, "{}: {big} bytes written under a 10 MiB limit", sb.backend());
    }
}

#[tokio::test]
async fn x32_system_calls_never_reach_the_kernel_unfiltered() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        // getpid (39) and unshare (272) with the x32 bit: ENOSYS (38), filtered or not.
        let script = "perl -e 'for my $nr (39, 272) { my $r = syscall(0x40000000 | $nr, 0x10000000); print \"$nr $r \", ($!+0), \"\\n\" }'";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(
            text(&out.stdout),
            "39 -1 38\n272 -1 38\n",
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn under_root_only_directories_others_cannot_change_are_handed_over() {
    if !as_root() {
        eprintln!("skipping: only a root-run ash hands directories over");
        return;
    }
    let Some((sb, _rt)) = super::sandbox(BackendKind::Native).await else { return };
    let owned_by_other = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(owned_by_other.path(), Some(65534), Some(65534)).unwrap();
    let staging = owned_by_other.path().join("ws");
    std::fs::create_dir(&staging).unwrap();
    let err = sb.adopt(&staging).unwrap_err().to_string();
    assert!(err.contains("another user can change it"), "{err}");
    // A root-owned parent in the sticky /tmp is fine.
    let fine = tempfile::tempdir().unwrap();
    let ws = fine.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    sb.adopt(&ws).unwrap();
}

#[tokio::test]
async fn a_shared_directory_is_never_taken_over_as_the_runtime_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    // Like /tmp: sticky and open to everyone, and (here) owned by whoever runs the test.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let config = SandboxConfig::new(
        BackendChoice::Exactly(ash_sandbox::BackendKind::Plain),
        shared.path().to_path_buf(),
    );
    let sandbox = Sandbox::new(config).await.unwrap();
    let err = sandbox.service_socket("svc").unwrap_err();
    assert!(err.to_string().contains("shared (sticky) directory"), "{err}");
    let mode = std::fs::metadata(shared.path()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    // The ready-made plain sandbox keeps its sockets in a directory of its own.
    let plain = Sandbox::plain().service_socket("svc").unwrap();
    assert!(
        !plain.starts_with("/tmp/") || plain.parent() != Some(std::path::Path::new("/tmp")),
        "{}",
        plain.display()
    );
    let tmp = std::fs::metadata("/tmp").unwrap().permissions().mode() & 0o7777;
    assert_eq!(tmp & 0o1777, 0o1777, "/tmp stays open to everyone");
}
