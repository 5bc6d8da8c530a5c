//! The only place ash spawns processes.
//!
//! Owns [`ExecRequest`] (argv, working directory, a complete environment, stdin, limits) and
//! [`exec`], which runs it in its own process group with a cleared environment, a wall-clock
//! limit, a cap on captured output, and cancellation. When the command ends, times out or is
//! cancelled, the whole process group is killed, so nothing it started in the background
//! outlives it.
//!
//! This is the plain backend: it confines what a process may run for and print, not what it may
//! read, write or reach. Filesystem, network and resource isolation come with the native and
//! container backends.
//!
//! Never reads the caller's environment: a child sees exactly the variables in the request.

mod exec;

pub use exec::{ExecOutput, ExecRequest, ExitStatus, LimitHit, Limits, SandboxError, exec};
