//! The only place ash spawns processes, and the isolation they run in.
//!
//! Owns [`SandboxPolicy`] (filesystem view, network, limits, user, secrets), [`ExecRequest`]
//! (argv, working directory, environment, stdin, policy) and [`Sandbox`], which runs a request
//! through one backend:
//!
//! - **native** (default on Linux, no extra packages): the `ash` binary re-executed as a helper
//!   ([`helper_main`]) that enters new user, mount, pid, network, ipc and uts namespaces,
//!   builds a private filesystem view, and applies Landlock, seccomp and rlimits before `exec`;
//!   cgroups bound memory, processes and CPU of the whole run;
//! - **bwrap**: bubblewrap builds the namespaces and view, the helper confines inside;
//! - **podman** / **docker**: a container with the flags this kernel needs;
//! - **plain**: no isolation, only limits and output caps.
//!
//! `network = allow` runs a filtering proxy on the host ([`Connection`] records each decision);
//! a policy's [`Service`]s put Unix sockets of the host on the sandbox's own loopback.
//! Injected secrets are redacted from captured output. Every process is killed when its run
//! ends, times out or is cancelled.
//!
//! Never reads the caller's environment: a child sees exactly the variables in the request,
//! and configuration comes in [`SandboxConfig`].

mod backends;
mod cgroup;
mod check;
mod confine;
mod exec;
mod fds;
mod helper;
mod policy;
mod proxy;
mod redact;
mod sandbox;
mod session;
mod spec;
mod zygote;

pub use check::{BackendCheck, Check, check};
pub use exec::{
    CommandUsage, ExecOutput, ExecRequest, ExitStatus, LimitHit, OutputChunk, OutputSink,
    OutputStream, SandboxError,
};
pub use helper::helper_main;
pub use policy::{
    DEFAULT_HIDDEN, DEFAULT_READ_ONLY, FsPolicy, HostPattern, HostRule, Limits, MAX_SERVICES,
    NetPolicy, PolicyError, SandboxPolicy, Secret, SecretDelivery, Service, User, is_metadata,
    parse_bytes, parse_duration,
};
pub use proxy::Connection;
pub use sandbox::{
    BackendChoice, BackendKind, DEFAULT_HOST_ID, Process, ProcessEnd, Sandbox, SandboxConfig,
};
pub use session::{SandboxSession, SessionCommand};
pub use spec::{DEFAULT_PATH, HELPER_ARG};
