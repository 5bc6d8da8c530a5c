//! [`SandboxPolicy`]: what a sandboxed process may see, reach and consume, and how a policy is
//! read from TOML (`ash sandbox exec --policy FILE`).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// System directories a sandbox sees read-only when a policy names none.
pub const DEFAULT_READ_ONLY: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

/// Paths hidden even when a visible directory contains them: password hashes, host keys,
/// sudo rules, private TLS keys, and the homes of every user.
pub const DEFAULT_HIDDEN: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/letsencrypt",
    "/etc/wireguard",
    "/etc/openvpn",
    "/etc/ipsec.secrets",
    "/etc/krb5.keytab",
    "/etc/NetworkManager/system-connections",
    "/etc/mysql/debian.cnf",
    "/etc/postgresql",
    "/etc/kubernetes",
    "/etc/docker",
    "/etc/containers/auth.json",
    "/etc/pki/tls/private",
    "/var/lib/postgresql",
    "/var/lib/mysql",
    "/root",
    "/home",
];

/// Everything a sandboxed process is allowed, as one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxPolicy {
    /// The filesystem view.
    pub fs: FsPolicy,
    /// Outbound network.
    pub net: NetPolicy,
    /// Resource limits.
    pub limits: Limits,
    /// Who the process is inside the sandbox.
    pub user: User,
    /// Values injected for this process only and redacted from its captured output.
    pub secrets: Vec<Secret>,
    /// Services of ash's reachable on the sandbox's own loopback (set by ash, never by a
    /// policy file).
    pub services: Vec<Service>,
}

/// A service ash runs for a sandboxed process: connections to `127.0.0.1:port` inside the
/// sandbox reach the Unix socket `socket` of the host, and nothing else does. What the server
/// behind the socket answers, and to whom it forwards, is the caller's concern (a job's model
/// gateway: the agent's only way to its provider, which holds the key the agent never sees).
/// Native and bubblewrap backends only; the network mode stays what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The port on the sandbox's loopback (not 3128 with `allow`, which the proxy uses).
    pub port: u16,
    /// The host socket, absolute; its server must be listening when the command starts.
    pub socket: PathBuf,
}

/// Most services one sandboxed process is given.
pub const MAX_SERVICES: usize = 8;

/// The filesystem a sandboxed process sees. Paths are absolute; anything not listed does not
/// exist inside the sandbox (native and bubblewrap backends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsPolicy {
    /// Visible read-only (and executable).
    pub read_only: Vec<PathBuf>,
    /// Visible and writable: the workspace and anything else the command must change.
    pub writable: Vec<PathBuf>,
    /// Never visible, even below a read-only or writable path: `$HOME`, `$ASH_HOME`, key files,
    /// other workspaces.
    pub hidden: Vec<PathBuf>,
}

impl Default for FsPolicy {
    fn default() -> Self {
        Self {
            read_only: DEFAULT_READ_ONLY.iter().map(PathBuf::from).collect(),
            writable: Vec::new(),
            hidden: DEFAULT_HIDDEN.iter().map(PathBuf::from).collect(),
        }
    }
}

/// Outbound network of a sandboxed process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetPolicy {
    /// No network at all: a private loopback and nothing else.
    #[default]
    None,
    /// Only these destinations, through ash's filtering proxy (`HTTP(S)_PROXY` is set).
    Allow(Vec<HostRule>),
    /// The host's network, unfiltered (including the host's loopback).
    Full,
}

/// One allowed destination: `api.openai.com:443`, `*.example.com`, `127.0.0.1:8080`,
/// `[::1]:9000`. Without a port, 80 and 443 are allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostRule {
    /// The host as written, lowercased, without the `*.` of a wildcard.
    pub host: HostPattern,
    /// The port, or `None` for 80 and 443.
    pub port: Option<u16>,
}

/// The host part of a [`HostRule`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this domain name.
    Domain(String),
    /// This domain's subdomains (not the domain itself): `*.example.com`.
    Subdomains(String),
    /// Exactly this address; the only way to allow a loopback or private address.
    Ip(IpAddr),
}

impl HostRule {
    /// Whether a request for `host:port` (host lowercased, as the client sent it) matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => port == 80 || port == 443,
        };
        port_ok
            && match &self.host {
                HostPattern::Domain(d) => d == host,
                HostPattern::Subdomains(d) => host
                    .strip_suffix(d.as_str())
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                HostPattern::Ip(ip) => parse_ip_host(host) == Some(*ip),
            }
    }
}

/// Parses `1.2.3.4`, `::1` or `[::1]` as an address.
pub(crate) fn parse_ip_host(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Domain(d) => f.write_str(d)?,
            HostPattern::Subdomains(d) => write!(f, "*.{d}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for HostRule {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let bad = |why: &str| PolicyError::Host { entry: text.to_owned(), why: why.to_owned() };
        let text_trim = text.trim();
        if text_trim.is_empty() {
            return Err(bad("it is empty"));
        }
        if text_trim.contains("://") || text_trim.contains('/') {
            return Err(bad("write a host and port, not a URL (`api.example.com:443`)"));
        }
        // `[v6]:port`, `[v6]`, bare v6, `host:port`, `host`.
        let (host, port) = if let Some(rest) = text_trim.strip_prefix('[') {
            let Some((ip, after)) = rest.split_once(']') else {
                return Err(bad("`[` without a closing `]`"));
            };
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected `:PORT` after `]`"))?),
            };
            (format!("[{ip}]"), port)
        } else if text_trim.matches(':').count() > 1 {
            (text_trim.to_owned(), None)
        } else {
            match text_trim.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (text_trim.to_owned(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
                Ok(p) => Some(p),
            },
        };
        let host = host.to_ascii_lowercase();
        if let Some(ip) = parse_ip_host(&host) {
            if is_metadata(ip) {
                return Err(bad("cloud metadata addresses are always blocked"));
            }
            return Ok(Self { host: HostPattern::Ip(ip), port });
        }
        let (pattern, name) = match host.strip_prefix("*.") {
            Some(name) => (HostPattern::Subdomains(format!(".{name}")), name),
            None => (HostPattern::Domain(host.clone()), host.as_str()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(bad("not a domain name, `*.domain`, or IP address"));
        }
        // Store subdomain patterns without the leading dot; matching adds it back.
        let pattern = match pattern {
            HostPattern::Subdomains(_) => HostPattern::Subdomains(name.to_owned()),
            other => other,
        };
        Ok(Self { host: pattern, port })
    }
}

/// Addresses of cloud instance-metadata services, blocked whatever the policy says.
pub fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            // 169.254.169.254 (AWS, GCP, Azure, …), 169.254.170.2 (ECS), 100.100.100.200 (Alibaba)
            o[0] == 169 && o[1] == 254 || o == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // fd00:ec2::254 (AWS), and the v4-mapped form of the above
            (s[0] == 0xfd00 && s[1] == 0x0ec2)
                || v6.to_ipv4_mapped().is_some_and(|v4| is_metadata(IpAddr::V4(v4)))
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// What a sandboxed command may consume. `None` means "no limit beyond the machine's".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before everything in the sandbox is killed.
    pub wall_time: Duration,
    /// CPU time (user + system) of each process (`RLIMIT_CPU`).
    pub cpu_time: Option<Duration>,
    /// Share of one CPU the whole sandbox may use, in percent (cgroup; 50 = half a core).
    pub cpu_percent: Option<u32>,
    /// Memory of the whole sandbox (cgroup; `RLIMIT_AS` per process where no cgroup is usable).
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive at once in the sandbox.
    pub pids: Option<u64>,
    /// Open files per process.
    pub open_files: Option<u64>,
    /// Bytes kept of stdout, and separately of stderr; the rest is read and discarded.
    pub output_bytes: usize,
    /// Bytes the command may add to its writable roots (largest single file, and total growth
    /// checked when it ends).
    pub disk_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_time: Duration::from_secs(30),
            cpu_time: None,
            cpu_percent: None,
            memory_bytes: None,
            pids: None,
            open_files: None,
            output_bytes: 1024 * 1024,
            disk_bytes: None,
        }
    }
}

impl Limits {
    /// Limits for untrusted code: 10 minutes, one core, 2 GiB, 512 processes, 4096 files,
    /// 1 GiB written.
    pub fn strict() -> Self {
        Self {
            wall_time: Duration::from_secs(600),
            cpu_time: Some(Duration::from_secs(600)),
            cpu_percent: Some(100),
            memory_bytes: Some(2 << 30),
            pids: Some(512),
            open_files: Some(4096),
            output_bytes: 1024 * 1024,
            disk_bytes: Some(1 << 30),
        }
    }
}

/// Who the process is inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum User {
    /// An unprivileged user (uid and gid 1000) without capabilities.
    #[default]
    Sandbox,
    /// uid 0 inside the sandbox's own user namespace, still without host privileges (for tools
    /// that insist on root, such as package managers).
    Root,
}

impl User {
    /// The uid (and gid) inside the sandbox.
    pub fn id(self) -> u32 {
        match self {
            Self::Sandbox => 1000,
            Self::Root => 0,
        }
    }
}

/// A secret value injected into one sandboxed process.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Environment variable name (and file name under `/run/secrets`).
    pub name: String,
    /// The value. Never printed by `Debug`.
    pub value: String,
    /// How the process receives it.
    pub delivery: SecretDelivery,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("delivery", &self.delivery)
            .finish()
    }
}

/// How a [`Secret`] reaches the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretDelivery {
    /// As the environment variable `name`.
    Env,
    /// As the file `/run/secrets/<name>` (native and bubblewrap backends), readable only by the
    /// sandbox user.
    File,
}

/// Why a policy is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The TOML did not parse or had an unknown key or a wrong type.
    #[error("policy: {0}")]
    Toml(String),
    /// A path is not absolute.
    #[error("policy: `{path}` in `{field}` must be an absolute path")]
    RelativePath {
        /// The field.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A path contains `..`.
    #[error("policy: `{path}` in `{field}` must not contain `..`")]
    DotDot {
        /// The field.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// An allow-list entry is malformed.
    #[error("policy: network allow entry `{entry}`: {why}")]
    Host {
        /// The entry as written.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// A size or duration is malformed or zero.
    #[error("policy: `{field}` = `{value}`: {why}")]
    Value {
        /// The field.
        field: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `network.allow` given with a mode other than `allow`, or `allow` without entries.
    #[error("policy: {0}")]
    Network(&'static str),
    /// A service is malformed: a port zero, repeated or taken, too many, full network.
    #[error("policy: service: {0}")]
    Service(String),
    /// A secret name is not a valid variable/file name.
    #[error("policy: secret name `{0}` must be letters, digits and `_`, not starting with a digit")]
    SecretName(String),
}

impl SandboxPolicy {
    /// A strict policy for `workspace`: system read-only, only the workspace writable, no
    /// network, [`Limits::strict`], the unprivileged user.
    pub fn strict(workspace: &Path) -> Self {
        let mut policy = Self { limits: Limits::strict(), ..Self::default() };
        policy.fs.writable.push(workspace.to_path_buf());
        policy
    }

    /// Reads a policy file's text. Unknown keys are errors; omitted sections keep the defaults
    /// of [`SandboxPolicy::default`].
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        file.into_policy()
    }

    /// Checks paths, names and the network list. Every backend calls this before running.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (field, paths) in [
            ("filesystem.read_only", &self.fs.read_only),
            ("filesystem.writable", &self.fs.writable),
            ("filesystem.hidden", &self.fs.hidden),
        ] {
            for path in paths {
                check_path(field, path)?;
            }
        }
        if matches!(&self.net, NetPolicy::Allow(rules) if rules.is_empty()) {
            return Err(PolicyError::Network(
                "network mode `allow` needs at least one entry in `network.allow`; use `none` for no network",
            ));
        }
        for secret in &self.secrets {
            if !is_var_name(&secret.name) {
                return Err(PolicyError::SecretName(secret.name.clone()));
            }
        }
        if self.services.len() > MAX_SERVICES {
            return Err(PolicyError::Service(format!("at most {MAX_SERVICES} services")));
        }
        let mut ports = std::collections::BTreeSet::new();
        for service in &self.services {
            check_path("services", &service.socket)?;
            if service.port == 0 || !ports.insert(service.port) {
                return Err(PolicyError::Service(format!(
                    "port {} is zero or given twice",
                    service.port
                )));
            }
            if matches!(self.net, NetPolicy::Allow(_)) && service.port == crate::spec::PROXY_PORT {
                return Err(PolicyError::Service(format!(
                    "port {} is the allow-list proxy's",
                    service.port
                )));
            }
            if matches!(self.net, NetPolicy::Full) {
                return Err(PolicyError::Service(
                    "services need the sandbox's own loopback; `full` network shares the host's"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

fn check_path(field: &'static str, path: &Path) -> Result<(), PolicyError> {
    if !path.is_absolute() {
        return Err(PolicyError::RelativePath { field, path: path.to_path_buf() });
    }
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(PolicyError::DotDot { field, path: path.to_path_buf() });
    }
    Ok(())
}

pub(crate) fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 128
}

/// The file form of a policy.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PolicyFile {
    filesystem: FsFile,
    network: NetFile,
    limits: LimitsFile,
    user: User,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FsFile {
    read_only: Option<Vec<PathBuf>>,
    writable: Vec<PathBuf>,
    hidden: Vec<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NetFile {
    mode: Option<String>,
    allow: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    wall_time: Option<Quantity>,
    cpu_time: Option<Quantity>,
    cpu_percent: Option<u64>,
    memory: Option<Quantity>,
    pids: Option<u64>,
    open_files: Option<u64>,
    output: Option<Quantity>,
    disk: Option<Quantity>,
}

/// A number, or a string with a unit (`"30s"`, `"512MiB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Number(u64),
    Text(String),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

impl PolicyFile {
    fn into_policy(self) -> Result<SandboxPolicy, PolicyError> {
        let mut policy = SandboxPolicy::default();
        if let Some(read_only) = self.filesystem.read_only {
            policy.fs.read_only = read_only;
        }
        policy.fs.writable = self.filesystem.writable;
        policy.fs.hidden.extend(self.filesystem.hidden);
        policy.net = match (self.network.mode.as_deref(), self.network.allow.is_empty()) {
            (None | Some("none"), true) => NetPolicy::None,
            (Some("full"), true) => NetPolicy::Full,
            (None | Some("allow"), false) | (Some("allow"), true) => NetPolicy::Allow(
                self.network.allow.iter().map(|e| e.parse()).collect::<Result<_, _>>()?,
            ),
            (Some("none" | "full"), false) => {
                return Err(PolicyError::Network(
                    "`network.allow` is only meaningful with `mode = \"allow\"`",
                ));
            }
            (Some(other), _) => {
                return Err(PolicyError::Value {
                    field: "network.mode",
                    value: other.to_owned(),
                    why: "expected `none`, `allow` or `full`",
                });
            }
        };
        let l = self.limits;
        let lim = &mut policy.limits;
        if let Some(q) = l.wall_time {
            lim.wall_time = duration("limits.wall_time", &q)?;
        }
        lim.cpu_time = l.cpu_time.map(|q| duration("limits.cpu_time", &q)).transpose()?;
        lim.cpu_percent = l
            .cpu_percent
            .map(|n| {
                positive("limits.cpu_percent", n).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            })
            .transpose()?;
        lim.memory_bytes = l.memory.map(|q| bytes("limits.memory", &q)).transpose()?;
        lim.pids = l.pids.map(|n| positive("limits.pids", n)).transpose()?;
        lim.open_files = l.open_files.map(|n| positive("limits.open_files", n)).transpose()?;
        if let Some(q) = l.output {
            lim.output_bytes = usize::try_from(bytes("limits.output", &q)?).unwrap_or(usize::MAX);
        }
        lim.disk_bytes = l.disk.map(|q| bytes("limits.disk", &q)).transpose()?;
        policy.user = self.user;
        policy.validate()?;
        Ok(policy)
    }
}

fn positive(field: &'static str, n: u64) -> Result<u64, PolicyError> {
    if n == 0 {
        return Err(PolicyError::Value { field, value: "0".into(), why: "must be at least 1" });
    }
    Ok(n)
}

/// Parses a duration: a number of seconds, or a number with `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 =
        digits.parse().map_err(|_| "expected a number with an optional unit (ms, s, m, h)")?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err("unknown unit; use ms, s, m or h"),
    };
    if d.is_zero() {
        return Err("must be more than zero");
    }
    Ok(d)
}

/// Parses a size: a number of bytes, or a number with `K`, `M`, `G` (powers of 1024; `KiB`,
/// `MB` and friends are accepted as the same).
pub fn parse_bytes(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| "expected a number with an optional unit (K, M, G)")?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err("unknown unit; use K, M or G"),
    };
    let value = n.checked_mul(1u64 << shift).ok_or("too large")?;
    if value == 0 {
        return Err("must be more than zero");
    }
    Ok(value)
}

fn duration(field: &'static str, q: &Quantity) -> Result<Duration, PolicyError> {
    parse_duration(&q.text()).map_err(|why| PolicyError::Value { field, value: q.text(), why })
}

fn bytes(field: &'static str, q: &Quantity) -> Result<u64, PolicyError> {
    parse_bytes(&q.text()).map_err(|why| PolicyError::Value { field, value: q.text(), why })
}
