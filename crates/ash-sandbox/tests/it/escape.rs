//! The escape suite: from inside an isolating backend (native, and bubblewrap where installed)
//! each way out must fail, and each allowed thing must keep working.

use std::path::Path;
use std::time::Duration;

use ash_sandbox::{Connection, ExitStatus, HostRule, LimitHit, NetPolicy, SandboxPolicy};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::{isolating, request, run, strict, text};

/// A loopback HTTP server answering every request with `body`; returns its port.
async fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// A bash line that sends a plain-HTTP proxy request for `url` (`host:port/path`) through the
/// sandbox's proxy and prints the response.
fn via_proxy(authority: &str, path: &str) -> String {
    format!(
        "exec 3<>/dev/tcp/127.0.0.1/3128 && printf 'GET http://{authority}{path} HTTP/1.1\\r\\nHost: {authority}\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3"
    )
}

fn outside_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "host secret").unwrap();
    dir
}

#[tokio::test]
async fn writes_outside_the_writable_roots_fail() {
    let outside = outside_dir();
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let target = outside.path().join("planted");
        let script = format!(
            "for f in /etc/ash-escape /usr/ash-escape /ash-escape /run/ash-escape /proc/ash-escape {}; do \
               (echo x > $f) 2>/dev/null && echo \"wrote $f\"; done; echo done",
            target.display()
        );
        let out = run(&sb, &request(ws.path(), strict(ws.path()), &script)).await;
        assert_eq!(text(&out.stdout), "done\n", "{}", sb.backend());
        assert!(
            !target.exists()
                && !Path::new("/etc/ash-escape").exists()
                && !Path::new("/usr/ash-escape").exists()
        );
    }
}

#[tokio::test]
async fn home_ash_home_and_key_files_cannot_be_read() {
    let home = outside_dir();
    let ash_home = outside_dir();
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws.path().join(".keys")).unwrap();
        std::fs::write(ws.path().join(".keys/id"), "workspace key").unwrap();
        let mut policy = strict(ws.path());
        // As the CLI does: the user's home and ash's home are hidden, and so is a key
        // directory inside the workspace.
        policy.fs.read_only.push(home.path().to_path_buf());
        policy.fs.hidden.extend([
            home.path().to_path_buf(),
            ash_home.path().to_path_buf(),
            ws.path().join(".keys"),
        ]);
        let script = format!(
            "for f in {h}/secret.txt {a}/secret.txt /etc/shadow /etc/gshadow /root/.bashrc .keys/id; do \
               cat $f 2>/dev/null && echo \" <- read $f\"; done; ls /etc/ssh 2>/dev/null | head -3; echo done",
            h = home.path().display(),
            a = ash_home.path().display()
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        assert_eq!(text(&out.stdout), "done\n", "{}: {}", sb.backend(), text(&out.stderr));
    }
}

#[tokio::test]
async fn symlinks_do_not_lead_out_of_the_workspace() {
    let outside = outside_dir();
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), ws.path().join("planted"))
            .unwrap();
        std::os::unix::fs::symlink("/etc/shadow", ws.path().join("shadow")).unwrap();
        let script = format!(
            "cat planted shadow 2>/dev/null; ln -s {}/secret.txt made && cat made 2>/dev/null; \
             echo pwned > planted 2>/dev/null; echo done",
            outside.path().display()
        );
        let out = run(&sb, &request(ws.path(), strict(ws.path()), &script)).await;
        assert_eq!(text(&out.stdout), "done\n", "{}", sb.backend());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
            "host secret"
        );
    }
}

#[tokio::test]
async fn host_processes_are_invisible_and_cannot_be_signalled() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let script = format!(
            "kill -0 {me} 2>/dev/null && echo \"signalled {me}\"; \
             [ -e /proc/{me} ] && echo \"sees {me}\"; \
             echo \"processes $(ls -d /proc/[0-9]* | wc -l)\"; echo \"host $(hostname)\""
        );
        let out = run(&sb, &request(ws.path(), strict(ws.path()), &script)).await;
        let stdout = text(&out.stdout);
        let count: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("processes "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(usize::MAX);
        assert!(count <= 6, "{}: saw {count} processes: {stdout}", sb.backend());
        assert!(
            !stdout.contains("signalled") && !stdout.contains("sees"),
            "{}: {stdout}",
            sb.backend()
        );
        assert!(stdout.contains("host ash-sandbox"), "{}: {stdout}", sb.backend());
    }
}

#[tokio::test]
async fn without_network_neither_host_loopback_nor_metadata_is_reachable() {
    let port = http_server("host service").await;
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let script = format!(
            "for t in 127.0.0.1/{port} 169.254.169.254/80 10.0.0.1/80; do \
               (exec 3<>/dev/tcp/$t) 2>/dev/null && echo \"reached $t\"; done; \
             ip=$(cat /proc/net/dev | grep -c ':'); echo \"interfaces $ip\""
        );
        let out = run(&sb, &request(ws.path(), strict(ws.path()), &script)).await;
        assert_eq!(text(&out.stdout), "interfaces 1\n", "{}: {}", sb.backend(), text(&out.stderr));
    }
}

#[tokio::test]
async fn raw_and_packet_sockets_cannot_be_opened() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let script = "perl -e 'use Socket; \
            print socket(my $a, PF_INET, SOCK_RAW, 1) ? \"raw4 open\\n\" : \"raw4 denied\\n\"; \
            print socket(my $b, PF_INET6, SOCK_RAW, 58) ? \"raw6 open\\n\" : \"raw6 denied\\n\"; \
            print socket(my $c, 17, SOCK_RAW, 0) ? \"packet open\\n\" : \"packet denied\\n\"; \
            print socket(my $d, PF_INET, SOCK_STREAM, 0) ? \"tcp ok\\n\" : \"tcp denied\\n\";'";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(
            text(&out.stdout),
            "raw4 denied\nraw6 denied\npacket denied\ntcp ok\n",
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.limits.pids = Some(32);
        let script = "perl -e 'my $n = 0; for (1..200) { my $p = fork(); last unless defined $p; \
            if ($p == 0) { sleep 3; exit 0 } $n++ } print \"forked $n\\n\"; exit($n < 200 ? 3 : 0)'";
        let out = run(&sb, &request(ws.path(), policy, script)).await;
        let forked: usize = text(&out.stdout)
            .trim()
            .strip_prefix("forked ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        assert!(forked < 32, "{}: {}", sb.backend(), text(&out.stdout));
        assert_eq!(out.status, ExitStatus::Exited(3), "{}", sb.backend());
        if !sb.cgroups().is_empty() {
            assert_eq!(out.limit, Some(LimitHit::Pids), "{}", sb.backend());
        }
    }
}

#[tokio::test]
async fn allocating_past_the_memory_limit_fails() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.limits.memory_bytes = Some(64 << 20);
        let script = "perl -e '$x = \"a\" x (256*1024*1024); print \"survived\\n\"'";
        let out = run(&sb, &request(ws.path(), policy, script)).await;
        assert!(
            !out.status.success() && !text(&out.stdout).contains("survived"),
            "{}: {out:?}",
            sb.backend()
        );
        if sb.cgroups().iter().any(|c| c.starts_with("memory")) {
            assert_eq!(out.limit, Some(LimitHit::Memory), "{}", sb.backend());
        }
    }
}

#[tokio::test]
async fn nothing_outlives_the_sandbox_even_in_its_own_session() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let script = "(sleep 1; touch bg) & setsid bash -c 'sleep 1; touch daemon' & \
            nohup bash -c '(sleep 1; touch orphan) &' >/dev/null 2>&1; exit 0";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(out.status, ExitStatus::Exited(0));
        tokio::time::sleep(Duration::from_millis(1800)).await;
        let left: Vec<_> =
            ["bg", "daemon", "orphan"].into_iter().filter(|f| ws.path().join(f).exists()).collect();
        assert_eq!(left, Vec::<&str>::new(), "{}: processes outlived the sandbox", sb.backend());
    }
}

#[tokio::test]
async fn setuid_binaries_do_not_escalate() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        // A setuid copy of `id` in the workspace (owned by whoever runs the tests).
        std::fs::copy("/usr/bin/id", ws.path().join("id")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(ws.path().join("id"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        let script = "./id -u; ./id -ru; grep -E '^(NoNewPrivs|CapEff|CapPrm)' /proc/self/status | tr -s '\\t ' ' '; \
            su -c true root </dev/null >/dev/null 2>&1 && echo 'su worked'; echo done";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(
            text(&out.stdout),
            "1000\n1000\nCapPrm: 0000000000000000\nCapEff: 0000000000000000\nNoNewPrivs: 1\ndone\n",
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn the_workspace_is_writable_and_results_arrive() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("in.txt"), "input").unwrap();
        let script = "cat in.txt > out.txt; mkdir -p sub/dir && echo deep > sub/dir/f; echo tmp > /tmp/t && cat /tmp/t; exit 7";
        let out = run(&sb, &request(ws.path(), strict(ws.path()), script)).await;
        assert_eq!(
            (out.status, text(&out.stdout)),
            (ExitStatus::Exited(7), "tmp\n".to_owned()),
            "{}",
            sb.backend()
        );
        assert_eq!(std::fs::read_to_string(ws.path().join("out.txt")).unwrap(), "input");
        assert_eq!(std::fs::read_to_string(ws.path().join("sub/dir/f")).unwrap(), "deep\n");
    }
}

#[tokio::test]
async fn only_allowed_hosts_are_reachable_through_the_proxy() {
    let allowed = http_server("allowed body").await;
    let denied = http_server("denied body").await;
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.net =
            NetPolicy::Allow(vec![format!("127.0.0.1:{allowed}").parse::<HostRule>().unwrap()]);
        let script = format!(
            "{a}; echo; echo ---; {d}; echo; echo ---; {m}; echo; echo ---; \
             (exec 3<>/dev/tcp/127.0.0.1/{allowed}) 2>/dev/null && echo 'direct connection worked'; echo \"proxy=$HTTPS_PROXY\"",
            a = via_proxy(&format!("127.0.0.1:{allowed}"), "/x"),
            d = via_proxy(&format!("127.0.0.1:{denied}"), "/x"),
            m = via_proxy("169.254.169.254", "/latest/meta-data/"),
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        let stdout = text(&out.stdout);
        let parts: Vec<&str> = stdout.split("---\n").collect();
        assert_eq!(parts.len(), 4, "{}: {stdout} {}", sb.backend(), text(&out.stderr));
        assert!(
            parts[0].starts_with("HTTP/1.1 200 OK") && parts[0].contains("allowed body"),
            "{}",
            parts[0]
        );
        assert!(
            parts[1].starts_with("HTTP/1.1 403 Forbidden") && !parts[1].contains("denied body"),
            "{}",
            parts[1]
        );
        assert!(parts[2].starts_with("HTTP/1.1 403 Forbidden"), "{}", parts[2]);
        assert_eq!(parts[3], "proxy=http://127.0.0.1:3128\n");
        assert_eq!(
            out.connections,
            vec![
                Connection {
                    host: "127.0.0.1".into(),
                    port: allowed,
                    allowed: true,
                    reason: format!("allowed by 127.0.0.1:{allowed}")
                },
                Connection {
                    host: "127.0.0.1".into(),
                    port: denied,
                    allowed: false,
                    reason: "not on the network allow list".into()
                },
                Connection {
                    host: "169.254.169.254".into(),
                    port: 80,
                    allowed: false,
                    reason: "not on the network allow list".into()
                },
            ],
            "{}",
            sb.backend()
        );
    }
}

#[tokio::test]
async fn connect_tunnels_work_for_allowed_hosts_and_metadata_is_refused_even_if_listed_by_name() {
    let allowed = http_server("tunnelled").await;
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.net = NetPolicy::Allow(vec![
            format!("127.0.0.1:{allowed}").parse().unwrap(),
            "localhost".parse().unwrap(),
        ]);
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/3128; printf 'CONNECT 127.0.0.1:{allowed} HTTP/1.1\\r\\n\\r\\n' >&3; \
             read -r status <&3; echo \"$status\"; read -r blank <&3; \
             printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; cat <&3; echo; echo ---; \
             exec 4<>/dev/tcp/127.0.0.1/3128; printf 'CONNECT localhost:443 HTTP/1.1\\r\\n\\r\\n' >&4; head -1 <&4"
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        let stdout = text(&out.stdout);
        let parts: Vec<&str> = stdout.split("---\n").collect();
        assert!(
            parts[0].starts_with("HTTP/1.1 200 Connection established"),
            "{}: {stdout}",
            sb.backend()
        );
        assert!(parts[0].contains("tunnelled"), "{stdout}");
        // `localhost` is listed by name, but a domain rule never leads to a loopback address.
        assert!(parts.get(1).is_some_and(|p| p.starts_with("HTTP/1.1 403")), "{stdout}");
    }
}

#[tokio::test]
async fn a_service_socket_is_reachable_on_its_port_and_nothing_else_is() {
    // A host-side service on a Unix socket (as a job's model gateway is), answering one line.
    for (sb, _rt) in isolating().await {
        let socket = sb.service_socket("echo").unwrap();
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let mut served = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 64];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let answer = format!("served {}", String::from_utf8_lossy(&buf[..n]).trim());
                let _ = stream.write_all(answer.as_bytes()).await;
                served += 1;
            }
            served
        });
        let host_port = http_server("host").await;
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.services.push(ash_sandbox::Service { port: 4100, socket: socket.clone() });
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/4100; echo hello >&3; cat <&3; echo; \
             (exec 4<>/dev/tcp/127.0.0.1/{host_port}) 2>/dev/null && echo host-reached || echo host-unreachable; \
             (exec 5<>/dev/tcp/127.0.0.1/3128) 2>/dev/null && echo proxy-reached || echo no-proxy"
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        assert_eq!(
            text(&out.stdout),
            "served hello\nhost-unreachable\nno-proxy\n",
            "{}: {out:?}",
            sb.backend()
        );
        server.abort();
    }
}

#[tokio::test]
async fn services_are_refused_where_they_cannot_be_kept_apart() {
    let ws = tempfile::tempdir().unwrap();
    let socket = ws.path().join("s.sock");
    type Change<'a> = Box<dyn Fn(&mut SandboxPolicy) + 'a>;
    let cases: [(&str, Change<'_>, &str); 4] = [
        (
            "zero port",
            Box::new(|p| p.services.push(ash_sandbox::Service { port: 0, socket: socket.clone() })),
            "policy: service: port 0 is zero or given twice",
        ),
        (
            "twice",
            Box::new(|p| {
                for _ in 0..2 {
                    p.services.push(ash_sandbox::Service { port: 9, socket: socket.clone() });
                }
            }),
            "policy: service: port 9 is zero or given twice",
        ),
        (
            "the proxy's port",
            Box::new(|p| {
                p.net = NetPolicy::Allow(vec!["example.com".parse().unwrap()]);
                p.services.push(ash_sandbox::Service { port: 3128, socket: socket.clone() });
            }),
            "policy: service: port 3128 is the allow-list proxy's",
        ),
        (
            "full network",
            Box::new(|p| {
                p.net = NetPolicy::Full;
                p.services.push(ash_sandbox::Service { port: 9, socket: socket.clone() });
            }),
            "policy: service: services need the sandbox's own loopback; `full` network shares the host's",
        ),
    ];
    for (case, change, expected) in cases {
        let mut policy = strict(ws.path());
        change(&mut policy);
        assert_eq!(policy.validate().unwrap_err().to_string(), expected, "{case}");
    }
    let mut relative = strict(ws.path());
    relative.services.push(ash_sandbox::Service { port: 9, socket: "s.sock".into() });
    assert!(relative.validate().is_err());
}

#[tokio::test]
async fn full_network_reaches_the_host_loopback() {
    let port = http_server("shared").await;
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy: SandboxPolicy = strict(ws.path());
        policy.net = NetPolicy::Full;
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = run(&sb, &request(ws.path(), policy, &script)).await;
        assert!(text(&out.stdout).ends_with("shared"), "{}: {out:?}", sb.backend());
    }
}

#[tokio::test]
async fn secret_files_are_readable_inside_and_redacted_outside() {
    for (sb, _rt) in isolating().await {
        let ws = tempfile::tempdir().unwrap();
        let mut policy = strict(ws.path());
        policy.secrets.push(ash_sandbox::Secret {
            name: "TOKEN".into(),
            value: "tok-abcdef123456".into(),
            delivery: ash_sandbox::SecretDelivery::File,
        });
        let script = "wc -c < /run/secrets/TOKEN; cat /run/secrets/TOKEN; echo; echo \"env=${TOKEN:-none}\"; \
            (echo x > /run/secrets/TOKEN) 2>/dev/null && echo overwritten; cp /run/secrets/TOKEN leaked";
        let out = run(&sb, &request(ws.path(), policy, script)).await;
        assert_eq!(
            text(&out.stdout),
            "16\n[redacted:TOKEN]\nenv=none\n",
            "{}: {}",
            sb.backend(),
            text(&out.stderr)
        );
        // What this cannot prevent: the process may copy the secret into the workspace.
        assert_eq!(std::fs::read_to_string(ws.path().join("leaked")).unwrap(), "tok-abcdef123456");
    }
}
