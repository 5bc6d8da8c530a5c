//! Policy files: what parses to what, and what each malformed or hostile file is told.

use std::time::Duration;

use ash_sandbox::{HostPattern, HostRule, NetPolicy, SandboxPolicy, User};
use pretty_assertions::assert_eq;

#[test]
fn a_full_policy_file_parses_to_the_policy_it_says() {
    let policy = SandboxPolicy::from_toml(
        r#"
        user = "root"
        [filesystem]
        read_only = ["/usr", "/etc"]
        writable = ["/work"]
        hidden = ["/etc/secret"]
        [network]
        mode = "allow"
        allow = ["api.openai.com:443", "*.Example.com", "127.0.0.1:8080", "[::1]:9000", "pypi.org"]
        [limits]
        wall_time = "5m"
        cpu_time = 60
        cpu_percent = 150
        memory = "512MiB"
        pids = 64
        open_files = 256
        output = "64K"
        disk = "1G"
        "#,
    )
    .unwrap();
    let mut expected = SandboxPolicy { user: User::Root, ..SandboxPolicy::default() };
    expected.fs.read_only = vec!["/usr".into(), "/etc".into()];
    expected.fs.writable = vec!["/work".into()];
    expected.fs.hidden.push("/etc/secret".into());
    expected.net = NetPolicy::Allow(vec![
        HostRule { host: HostPattern::Domain("api.openai.com".into()), port: Some(443) },
        HostRule { host: HostPattern::Subdomains("example.com".into()), port: None },
        HostRule { host: HostPattern::Ip([127, 0, 0, 1].into()), port: Some(8080) },
        HostRule { host: HostPattern::Ip("::1".parse().unwrap()), port: Some(9000) },
        HostRule { host: HostPattern::Domain("pypi.org".into()), port: None },
    ]);
    let l = &mut expected.limits;
    l.wall_time = Duration::from_secs(300);
    l.cpu_time = Some(Duration::from_secs(60));
    l.cpu_percent = Some(150);
    l.memory_bytes = Some(512 << 20);
    l.pids = Some(64);
    l.open_files = Some(256);
    l.output_bytes = 64 << 10;
    l.disk_bytes = Some(1 << 30);
    assert_eq!(policy, expected);
}

#[test]
fn an_empty_file_is_the_default_policy() {
    assert_eq!(SandboxPolicy::from_toml("").unwrap(), SandboxPolicy::default());
}

#[test]
fn malformed_and_hostile_policy_files_get_errors_that_name_the_problem() {
    let cases = [
        (
            "[filesystem]\nwritable = [\"relative/dir\"]",
            "policy: `relative/dir` in `filesystem.writable` must be an absolute path",
        ),
        (
            "[filesystem]\nread_only = [\"/usr/../root\"]",
            "policy: `/usr/../root` in `filesystem.read_only` must not contain `..`",
        ),
        (
            "[network]\nmode = \"allow\"",
            "policy: network mode `allow` needs at least one entry in `network.allow`; use `none` for no network",
        ),
        (
            "[network]\nmode = \"none\"\nallow = [\"a.com\"]",
            "policy: `network.allow` is only meaningful with `mode = \"allow\"`",
        ),
        (
            "[network]\nmode = \"open\"",
            "policy: `network.mode` = `open`: expected `none`, `allow` or `full`",
        ),
        (
            "[network]\nallow = [\"https://a.com/x\"]",
            "policy: network allow entry `https://a.com/x`: write a host and port, not a URL (`api.example.com:443`)",
        ),
        (
            "[network]\nallow = [\"a.com:0\"]",
            "policy: network allow entry `a.com:0`: the port must be a number from 1 to 65535",
        ),
        (
            "[network]\nallow = [\"a.com:70000\"]",
            "policy: network allow entry `a.com:70000`: the port must be a number from 1 to 65535",
        ),
        (
            "[network]\nallow = [\"169.254.169.254\"]",
            "policy: network allow entry `169.254.169.254`: cloud metadata addresses are always blocked",
        ),
        (
            "[network]\nallow = [\"[fd00:ec2::254]:80\"]",
            "policy: network allow entry `[fd00:ec2::254]:80`: cloud metadata addresses are always blocked",
        ),
        (
            "[network]\nallow = [\"bad host!\"]",
            "policy: network allow entry `bad host!`: not a domain name, `*.domain`, or IP address",
        ),
        ("[network]\nallow = [\"\"]", "policy: network allow entry ``: it is empty"),
        (
            "[network]\nallow = [\"*.\"]",
            "policy: network allow entry `*.`: not a domain name, `*.domain`, or IP address",
        ),
        (
            "[limits]\nmemory = \"12 parsecs\"",
            "policy: `limits.memory` = `12 parsecs`: unknown unit; use K, M or G",
        ),
        ("[limits]\nmemory = 0", "policy: `limits.memory` = `0`: must be more than zero"),
        (
            "[limits]\nmemory = \"99999999999G\"",
            "policy: `limits.memory` = `99999999999G`: too large",
        ),
        (
            "[limits]\nwall_time = \"soon\"",
            "policy: `limits.wall_time` = `soon`: expected a number with an optional unit (ms, s, m, h)",
        ),
        ("[limits]\npids = 0", "policy: `limits.pids` = `0`: must be at least 1"),
    ];
    for (text, expected) in cases {
        assert_eq!(
            SandboxPolicy::from_toml(text).map_err(|e| e.to_string()),
            Err(expected.to_owned()),
            "{text}"
        );
    }
    // Parser errors carry the location.
    for text in [
        "[filesystem]\nwritable = \"/one\"",
        "unknown = 1",
        "[limits]\npids = -1",
        "[[[",
        "user = \"admin\"",
    ] {
        let err = SandboxPolicy::from_toml(text).unwrap_err().to_string();
        assert!(err.starts_with("policy: ") && err.contains("line"), "{text}: {err}");
    }
    let deep = "a = ".to_owned() + &"[".repeat(100_000);
    assert!(SandboxPolicy::from_toml(&deep).is_err());
}

#[test]
fn host_rules_match_exactly_what_they_say() {
    let cases = [
        ("api.openai.com:443", "api.openai.com", 443, true),
        ("api.openai.com:443", "api.openai.com", 80, false),
        ("api.openai.com:443", "evil.api.openai.com", 443, false),
        ("api.openai.com:443", "api.openai.com.evil.com", 443, false),
        ("pypi.org", "pypi.org", 443, true),
        ("pypi.org", "pypi.org", 80, true),
        ("pypi.org", "pypi.org", 22, false),
        ("*.example.com", "a.example.com", 443, true),
        ("*.example.com", "a.b.example.com", 443, true),
        ("*.example.com", "example.com", 443, false),
        ("*.example.com", "badexample.com", 443, false),
        ("127.0.0.1:8080", "127.0.0.1", 8080, true),
        ("127.0.0.1:8080", "localhost", 8080, false),
        ("[::1]:9000", "[::1]", 9000, true),
        ("[::1]:9000", "::1", 9000, true),
    ];
    for (rule, host, port, expected) in cases {
        let parsed: HostRule = rule.parse().unwrap();
        assert_eq!(parsed.matches(host, port), expected, "{rule} vs {host}:{port}");
    }
}
