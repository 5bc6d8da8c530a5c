//! Control groups for one sandboxed run: memory, process and CPU limits that cover every
//! process of the run together, a count of what was hit, and a sweep that kills whatever is
//! left in the group before it is removed. cgroup v1 controllers where mounted (this machine),
//! cgroup v2 where the unified hierarchy delegates them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd as _, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::policy::Limits;

/// One controller we can create groups under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    Pids,
    Cpu,
}

/// Where this process's groups are, per controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cgroups {
    /// (controller, our own group directory, v2)
    bases: Vec<(Kind, PathBuf, bool)>,
}

/// The groups of one run.
#[derive(Debug)]
pub(crate) struct CgroupRun {
    dirs: Vec<(Kind, PathBuf, bool)>,
    procs: Vec<File>,
}

/// What the kernel counted during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub oom_kills: u64,
    pub pids_max_hits: u64,
}

impl Cgroups {
    /// Finds the memory, pids and cpu controllers this process can create groups under, from
    /// `/proc/self/mountinfo` and `/proc/self/cgroup`; `None` when none is writable.
    pub(crate) fn discover() -> Option<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        let bases = bases(&mountinfo, &membership);
        let usable: Vec<_> = bases.into_iter().filter(|(_, dir, _)| writable(dir)).collect();
        (!usable.is_empty()).then_some(Self { bases: usable })
    }

    /// Which controllers are usable: `memory`, `pids`, `cpu`, and the version.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.bases
            .iter()
            .map(|(kind, _, v2)| {
                let name = match kind {
                    Kind::Memory => "memory",
                    Kind::Pids => "pids",
                    Kind::Cpu => "cpu",
                };
                format!("{name} ({})", if *v2 { "v2" } else { "v1" })
            })
            .collect()
    }

    /// Whether memory is limited by a group (otherwise by `RLIMIT_AS`).
    pub(crate) fn has(&self, kind: Kind) -> bool {
        self.bases.iter().any(|(k, _, _)| *k == kind)
    }

    /// Creates `name` under each controller the limits need and writes the limits.
    pub(crate) fn create(&self, name: &str, limits: &Limits) -> io::Result<Option<CgroupRun>> {
        let mut run = CgroupRun { dirs: Vec::new(), procs: Vec::new() };
        for (kind, base, v2) in &self.bases {
            let settings: Vec<(&str, String)> = match (kind, v2) {
                (Kind::Memory, false) => limits.memory_bytes.map_or(vec![], |m| {
                    vec![
                        ("memory.limit_in_bytes", m.to_string()),
                        ("memory.memsw.limit_in_bytes", m.to_string()),
                    ]
                }),
                (Kind::Memory, true) => limits.memory_bytes.map_or(vec![], |m| {
                    vec![("memory.max", m.to_string()), ("memory.swap.max", "0".into())]
                }),
                (Kind::Pids, _) => {
                    limits.pids.map_or(vec![], |p| vec![("pids.max", p.to_string())])
                }
                (Kind::Cpu, false) => limits.cpu_percent.map_or(vec![], |p| {
                    vec![
                        ("cpu.cfs_period_us", "100000".into()),
                        ("cpu.cfs_quota_us", (u64::from(p) * 1000).to_string()),
                    ]
                }),
                (Kind::Cpu, true) => limits.cpu_percent.map_or(vec![], |p| {
                    vec![("cpu.max", format!("{} 100000", u64::from(p) * 1000))]
                }),
            };
            if settings.is_empty() {
                continue;
            }
            let dir = base.join(name);
            fs::create_dir(&dir)?;
            run.dirs.push((*kind, dir.clone(), *v2));
            for (file, value) in settings {
                match fs::write(dir.join(file), value) {
                    // memsw/swap files exist only with swap accounting.
                    Err(_) if file.contains("memsw") || file.contains("swap") => {}
                    other => other?,
                }
            }
            run.procs.push(OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?);
        }
        Ok((!run.dirs.is_empty()).then_some(run))
    }
}

impl CgroupRun {
    /// Descriptors the child writes "0" to, joining every group before it runs anything.
    pub(crate) fn procs_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// What the kernel counted so far.
    pub(crate) fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        for (kind, dir, v2) in &self.dirs {
            match kind {
                Kind::Memory => {
                    let file = if *v2 { "memory.events" } else { "memory.oom_control" };
                    counters.oom_kills += counter(&dir.join(file), "oom_kill");
                }
                Kind::Pids => counters.pids_max_hits += counter(&dir.join("pids.events"), "max"),
                Kind::Cpu => {}
            }
        }
        counters
    }

    /// Reads the counters, kills anything still in the groups, and removes them.
    pub(crate) async fn finish(self) -> Counters {
        let counters = self.counters();
        drop(self.procs);
        for (_, dir, _) in &self.dirs {
            // The run's last process is usually still being reaped when its result arrives:
            // look again soon, then less often, for about a second in all.
            let mut pause = Duration::from_millis(1);
            let mut waited = Duration::ZERO;
            while waited < Duration::from_secs(1) {
                let pids = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let mut any = false;
                for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    any = true;
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                if !any && fs::remove_dir(dir).is_ok() {
                    break;
                }
                tokio::time::sleep(pause).await;
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
        counters
    }
}

fn counter(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("ash-probe-{}", std::process::id()));
    fs::create_dir(&probe).is_ok() && fs::remove_dir(&probe).is_ok()
}

/// Our group directory per controller, from the two `/proc` files.
fn bases(mountinfo: &str, membership: &str) -> Vec<(Kind, PathBuf, bool)> {
    let mut out = Vec::new();
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype), Some(opts)) =
            (left.get(3), left.get(4), right.first(), right.get(2))
        else {
            continue;
        };
        match *fstype {
            "cgroup" => {
                for (kind, name) in
                    [(Kind::Memory, "memory"), (Kind::Pids, "pids"), (Kind::Cpu, "cpu")]
                {
                    if opts.split(',').any(|o| o == name)
                        && let Some(path) = v1_path(membership, name)
                    {
                        out.push((kind, join_under(point, root, &path), false));
                    }
                }
            }
            "cgroup2" => v2_mount = Some(((*point).to_owned(), (*root).to_owned())),
            _ => {}
        }
    }
    if let (Some((point, root)), Some(path)) = (v2_mount, v1_path(membership, "")) {
        let dir = join_under(&point, &root, &path);
        let delegated = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for (kind, name) in [(Kind::Memory, "memory"), (Kind::Pids, "pids"), (Kind::Cpu, "cpu")] {
            if !out.iter().any(|(k, _, _)| *k == kind)
                && delegated.split_whitespace().any(|c| c == name)
            {
                out.push((kind, dir.clone(), true));
            }
        }
    }
    out
}

/// The path of our group in the hierarchy carrying `controller` (`""` for v2).
fn v1_path(membership: &str, controller: &str) -> Option<String> {
    membership.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            names.is_empty()
        } else {
            names.split(',').any(|n| n == controller)
        };
        matches.then(|| path.to_owned())
    })
}

fn join_under(point: &str, root: &str, path: &str) -> PathBuf {
    let rel = path.strip_prefix(root).unwrap_or(path);
    Path::new(point).join(rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_controllers_in_a_hybrid_layout() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
garbage line without separator";
        let membership = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        assert_eq!(
            bases(mountinfo, membership),
            vec![
                (Kind::Cpu, PathBuf::from("/sys/fs/cgroup/cpu"), false),
                (Kind::Memory, PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"), false),
                (Kind::Pids, PathBuf::from("/sys/fs/cgroup/pids"), false),
            ]
        );
    }

    #[test]
    fn reads_counters_and_ignores_what_it_does_not_know() {
        let dir = std::env::temp_dir().join(format!("ash-cg-test-{}", std::process::id()));
        let _ = fs::create_dir(&dir);
        let file = dir.join("memory.oom_control");
        let _ = fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        assert_eq!(counter(&file, "oom_kill"), 3);
        assert_eq!(counter(&file, "missing"), 0);
        assert_eq!(counter(&dir.join("absent"), "oom_kill"), 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
