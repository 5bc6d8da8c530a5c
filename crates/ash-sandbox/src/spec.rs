//! What ash tells the sandbox helper ([`HelperSpec`], sent length-prefixed on the helper's
//! stdin before the command's own input) and what the helper reports back ([`Report`], JSON
//! lines on fd 3).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The program search path when a request's environment has no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The argument that turns the `ash` binary (or `ash-sandbox-helper`) into the helper.
pub const HELPER_ARG: &str = "__ash-sandbox-helper";

/// The second argument that makes the helper a zygote.
pub(crate) const ZYGOTE_ARG: &str = "zygote";

/// The descriptor the helper reports on.
pub(crate) const REPORT_FD: i32 = 3;

/// The largest spec the helper accepts.
const MAX_SPEC_BYTES: u32 = 4 << 20;

/// Port the in-sandbox forwarder listens on (inside the sandbox's own network namespace).
pub(crate) const PROXY_PORT: u16 = 3128;

/// Where the socket behind loopback port `port` appears inside the sandbox.
pub(crate) fn forward_socket(port: u16) -> PathBuf {
    PathBuf::from(format!("/run/ash/{port}.sock"))
}

/// Everything the helper needs. Paths are host paths (canonical); the view keeps them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HelperSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Build namespaces and the filesystem view (native), or only confine (inside bubblewrap).
    pub isolate: bool,
    pub share_net: bool,
    pub read_only: Vec<PathBuf>,
    pub writable: Vec<PathBuf>,
    pub hidden: Vec<PathBuf>,
    pub tmp_bytes: u64,
    /// Ports of the sandbox's loopback whose connections are relayed to a host Unix socket
    /// (bound at [`forward_socket`]): the allow-list proxy at [`PROXY_PORT`], and the
    /// policy's services.
    #[serde(default)]
    pub forwards: Vec<(u16, PathBuf)>,
    /// Files written under `/run/secrets` (name, value).
    pub secret_files: Vec<(String, String)>,
    pub uid: u32,
    /// The unprivileged host id (uid and gid) the command runs as when ash runs as root; `None`
    /// when ash is unprivileged (the command is then ash's own user).
    #[serde(default)]
    pub host_id: Option<u32>,
    /// The highest Landlock ABI to use (`Some(0)`: none); `None` uses the kernel's. Lets tests
    /// and operators see what an older kernel enforces.
    #[serde(default)]
    pub landlock_abi: Option<i32>,
    pub rlimits: Rlimits,
    /// Build the view once and then run each command sent on [`ZYGOTE_FD`] (see
    /// `crate::zygote`) instead of one command.
    #[serde(default)]
    pub zygote: bool,
}

/// The descriptor a zygote receives its commands on (a `SOCK_SEQPACKET` socket).
pub(crate) const ZYGOTE_FD: i32 = 4;

/// One message to a zygote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum ZygoteRequest {
    /// Run a command; the message carries stdin, stdout, stderr, the report pipe and the
    /// run's `cgroup.procs` files, in that order.
    Run {
        id: u64,
        argv: Vec<String>,
        cwd: PathBuf,
        env: BTreeMap<String, String>,
        rlimits: Rlimits,
        cgroups: usize,
    },
    /// Kill the command of run `id` and its process group.
    Kill { id: u64 },
}

/// Per-process limits the helper sets before `exec`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Rlimits {
    pub cpu_secs: Option<u64>,
    pub address_space: Option<u64>,
    pub nproc: Option<u64>,
    pub nofile: Option<u64>,
    pub fsize: Option<u64>,
}

impl Rlimits {
    /// Sets each limit on this process, hard equal to soft except for CPU time (one second of
    /// grace between SIGXCPU and SIGKILL). Calls only setrlimit(2), so it is safe between
    /// `fork` and `exec`. On failure, names the resource.
    pub(crate) fn apply(&self) -> Result<(), (&'static str, nix::errno::Errno)> {
        use nix::sys::resource::{Resource, setrlimit};
        if let Some(cpu) = self.cpu_secs {
            setrlimit(Resource::RLIMIT_CPU, cpu, cpu + 1).map_err(|e| ("RLIMIT_CPU", e))?;
        }
        for (resource, name, value) in [
            (Resource::RLIMIT_AS, "RLIMIT_AS", self.address_space),
            (Resource::RLIMIT_NPROC, "RLIMIT_NPROC", self.nproc),
            (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", self.nofile),
            (Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", self.fsize),
        ] {
            if let Some(v) = value {
                setrlimit(resource, v, v).map_err(|e| (name, e))?;
            }
        }
        Ok(())
    }
}

/// Finds the executable `name` in `search` (a `PATH` value), as `execvp` would; a name
/// containing `/` is taken as it is.
pub(crate) fn find_program(search: &str, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    search.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// One line the helper writes on [`REPORT_FD`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Report {
    /// Setting up the sandbox failed at `stage`; the command did not run.
    Setup { stage: String, message: String },
    /// The command could not be executed (`exec` failed).
    Exec { message: String },
    /// The command exited.
    Exit {
        code: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<RunUsage>,
    },
    /// A signal ended the command.
    Signal {
        signal: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<RunUsage>,
    },
    /// A zygote built its view and waits for commands.
    Ready,
}

/// What the kernel counted for a command and the descendants it waited for (`wait4`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RunUsage {
    /// User plus system CPU time, in microseconds.
    pub cpu_us: u64,
    /// The largest resident set of any one of its processes, in kibibytes.
    pub max_rss_kib: u64,
}

impl RunUsage {
    /// The public shape.
    pub(crate) fn public(self) -> crate::exec::CommandUsage {
        crate::exec::CommandUsage {
            cpu_time: std::time::Duration::from_micros(self.cpu_us),
            peak_memory_bytes: self.max_rss_kib.saturating_mul(1024),
        }
    }
}

impl Report {
    /// Why the command never ran, when the reports say it could not be set up or executed.
    pub(crate) fn failure(reports: &[Self]) -> Option<crate::exec::SandboxError> {
        reports.iter().find_map(|report| match report {
            Self::Setup { stage, message } => Some(crate::exec::SandboxError::Setup {
                stage: stage.clone(),
                message: message.clone(),
            }),
            Self::Exec { message } => Some(crate::exec::SandboxError::Exec(message.clone())),
            Self::Exit { .. } | Self::Signal { .. } | Self::Ready => None,
        })
    }

    /// The usage an exit or signal report carries.
    pub(crate) fn usage(&self) -> Option<RunUsage> {
        match self {
            Self::Exit { usage, .. } | Self::Signal { usage, .. } => *usage,
            Self::Setup { .. } | Self::Exec { .. } | Self::Ready => None,
        }
    }
}

impl HelperSpec {
    /// Frames the spec: a 4-byte big-endian length, then JSON.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(json.len() + 4);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// Reads exactly one framed spec from `input`, leaving whatever follows unread (it is the
    /// command's stdin).
    pub(crate) fn decode(input: &mut impl Read) -> io::Result<Self> {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > MAX_SPEC_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "sandbox spec too large"));
        }
        let mut json = vec![0u8; len as usize];
        input.read_exact(&mut json)?;
        serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Report {
    /// Writes the report as one line (one `write`, so lines from two processes never mix).
    pub(crate) fn send(&self, out: &mut impl Write) {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        let _ = out.write_all(&line);
    }

    /// Parses the report lines, ignoring any that are not reports.
    pub(crate) fn parse_all(bytes: &[u8]) -> Vec<Self> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_leaves_the_rest_unread() {
        let spec = HelperSpec {
            argv: vec!["true".into()],
            cwd: "/w".into(),
            env: BTreeMap::new(),
            isolate: true,
            share_net: false,
            read_only: vec!["/usr".into()],
            writable: vec!["/w".into()],
            hidden: vec![],
            tmp_bytes: 1,
            forwards: vec![(3128, "/run/p.sock".into())],
            secret_files: vec![],
            uid: 1000,
            host_id: Some(2_000_000_000),
            landlock_abi: None,
            rlimits: Rlimits::default(),
            zygote: false,
        };
        let mut bytes = spec.encode();
        bytes.extend_from_slice(b"stdin");
        let mut cursor = io::Cursor::new(bytes);
        assert_eq!(HelperSpec::decode(&mut cursor).ok(), Some(spec));
        let mut rest = String::new();
        assert!(cursor.read_to_string(&mut rest).is_ok());
        assert_eq!(rest, "stdin");
    }

    #[test]
    fn hostile_specs_are_refused() {
        for bytes in [
            vec![],
            vec![0, 0],
            vec![0xff, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 10, b'{'],
            vec![0, 0, 0, 2, b'{', b'}'],
        ] {
            assert!(HelperSpec::decode(&mut io::Cursor::new(bytes)).is_err());
        }
    }
}
