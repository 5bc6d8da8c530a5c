//! The last two locks on a sandboxed command, applied in the process that is about to `exec`:
//! Landlock (which paths it may read, write or execute; no signals or abstract sockets outside
//! its domain) and a seccomp filter (no ptrace, mounts, namespaces, kernel keyring, BPF, module
//! loading, raw or packet sockets, socket families beyond Unix/IP/routing netlink, `io_uring`,
//! set-user-ID or set-group-ID files, or terminal injection).

use std::collections::BTreeMap;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible as _, Ruleset, RulesetAttr as _,
    RulesetCreatedAttr as _, RulesetStatus, Scope, path_beneath_rules,
};
use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::spec::HelperSpec;

/// The Landlock ABI whose filesystem rights we ask for (best effort below it).
const FS_ABI: ABI = ABI::V5;

/// Device files a command may read and write.
const DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/random", "/dev/urandom"];

/// How much of Landlock the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LandlockLevel {
    Full,
    Partial,
    None,
}

/// Restricts this process (and what it executes) to the spec's view.
pub(crate) fn landlock(spec: &HelperSpec) -> Result<LandlockLevel, landlock::RulesetError> {
    match ruleset(spec)? {
        Some(ruleset) => restrict(ruleset),
        None => Ok(LandlockLevel::None),
    }
}

/// The Landlock ruleset of the spec's view, ready to restrict a process (`None`: Landlock is
/// not to be used). A zygote builds it once; each command's process restricts itself with it.
pub(crate) fn ruleset(
    spec: &HelperSpec,
) -> Result<Option<landlock::RulesetCreated>, landlock::RulesetError> {
    // A cap below the kernel's simulates an older kernel: only what that ABI knows is asked.
    let abi = match spec.landlock_abi {
        Some(cap) if cap <= 0 => return Ok(None),
        Some(cap) => abi_of(cap).min_abi(FS_ABI),
        None => FS_ABI,
    };
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut read_paths: Vec<PathBuf> = spec.read_only.clone();
    read_paths.extend(["/proc", "/dev", "/run"].map(PathBuf::from));
    let mut write_paths: Vec<PathBuf> = spec.writable.clone();
    write_paths.push(PathBuf::from("/tmp"));
    write_paths.push(PathBuf::from("/dev/shm"));
    write_paths.extend(DEVICES.iter().map(PathBuf::from));
    let scoped = spec.landlock_abi.is_none_or(|cap| cap >= 6);
    let ruleset =
        Ruleset::default().set_compatibility(CompatLevel::BestEffort).handle_access(all)?;
    let ruleset = if scoped { ruleset.scope(Scope::from_all(ABI::V6))? } else { ruleset };
    Ok(Some(
        ruleset
            .create()?
            .add_rules(path_beneath_rules(&read_paths, read))?
            .add_rules(path_beneath_rules(&write_paths, all))?
            // Names in the view may be listed: the view holds only what the policy shows.
            .add_rules(path_beneath_rules(["/"], AccessFs::ReadDir))?,
    ))
}

/// Restricts this process with a prepared ruleset.
pub(crate) fn restrict(
    ruleset: landlock::RulesetCreated,
) -> Result<LandlockLevel, landlock::RulesetError> {
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockLevel::Full,
        RulesetStatus::PartiallyEnforced => LandlockLevel::Partial,
        RulesetStatus::NotEnforced => LandlockLevel::None,
    })
}

/// What a zygote prepares once for all its commands: the Landlock ruleset and the compiled
/// seccomp filters.
pub(crate) struct Prepared {
    pub(crate) ruleset: Option<landlock::RulesetCreated>,
    pub(crate) filters: Vec<BpfProgram>,
}

impl Prepared {
    pub(crate) fn new(spec: &HelperSpec) -> Result<Self, String> {
        Ok(Self {
            ruleset: ruleset(spec).map_err(|e| e.to_string())?,
            filters: filters().map_err(|e| e.to_string())?,
        })
    }
}

/// Installs already compiled filters in this process (and what it executes).
pub(crate) fn seccomp_with(programs: &[BpfProgram]) -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    for program in programs {
        seccompiler::apply_filter(program).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The crate's ABI for a kernel ABI number.
fn abi_of(n: i32) -> ABI {
    match n {
        ..=1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        _ => ABI::V6,
    }
}

trait MinAbi {
    fn min_abi(self, other: ABI) -> ABI;
}

impl MinAbi for ABI {
    fn min_abi(self, other: ABI) -> ABI {
        if (self as i32) < (other as i32) { self } else { other }
    }
}

/// Whether this kernel enforces Landlock, and at which ABI.
pub(crate) fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    #[allow(unsafe_code, reason = "the landlock crate does not expose the ABI query")]
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size 0 and the VERSION
    // flag only returns the ABI number; it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (abi > 0).then(|| i32::try_from(abi).unwrap_or(i32::MAX))
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// Syscalls a sandboxed command never needs and that widen the kernel's attack surface or
/// let it reach outside: tracing, mounting, namespaces, keyrings, BPF, modules, and the like.
fn denied_syscalls() -> Vec<i64> {
    let mut list = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_perf_event_open,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    list
}

fn cond(
    arg: u8,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

/// `SOCK_PACKET` (10): the old packet-socket type libc marks deprecated.
const SOCK_PACKET: u64 = 10;

/// File mode bits that make an executable run as its owner or group.
const SET_ID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// Socket families a command may use: Unix, IPv4, IPv6, and netlink for routing information
/// (the C library asks it for interface addresses). Everything else (vsock to a hypervisor,
/// packet, bluetooth, …) fails with `EAFNOSUPPORT`.
fn socket_rules() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    use SeccompCmpOp::{Eq, Gt, Lt, Ne};
    let family = |op, value: i32| cond(0, op, value as u64);
    Ok(vec![
        SeccompRule::new(vec![family(Eq, libc::AF_UNSPEC)?])?,
        SeccompRule::new(vec![family(Gt, libc::AF_INET)?, family(Lt, libc::AF_INET6)?])?,
        SeccompRule::new(vec![family(Gt, libc::AF_INET6)?, family(Ne, libc::AF_NETLINK)?])?,
        SeccompRule::new(vec![
            family(Eq, libc::AF_NETLINK)?,
            cond(2, Ne, libc::NETLINK_ROUTE as u64)?,
        ])?,
    ])
}

/// Rules matching a mode argument (`arg`) with the set-user-ID or set-group-ID bit.
fn set_id_rules(arg: u8) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    SET_ID_BITS
        .iter()
        .map(|bit| SeccompRule::new(vec![cond(arg, SeccompCmpOp::MaskedEq(*bit), *bit)?]))
        .collect()
}

/// The filters: EPERM for the denied syscalls, packet and raw IP sockets, `clone` with
/// namespace flags, the `TIOCSTI` ioctl, and any mode with the set-user-ID or set-group-ID bit
/// (`chmod` and friends, and creating files or nodes so); `EAFNOSUPPORT` for socket families
/// other than Unix, IPv4, IPv6 and routing netlink; ENOSYS for `clone3` and `openat2` (whose
/// arguments sit in memory a filter cannot read) and for `io_uring` (which performs operations
/// the filter never sees), so the C library and runtimes fall back to what is filtered.
fn filters() -> Result<Vec<BpfProgram>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied_syscalls().into_iter().map(|nr| (nr, Vec::new())).collect();
    let sock_type_mask = 0xf;
    rules.insert(
        libc::SYS_socket,
        vec![
            SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, libc::AF_PACKET as u64)?])?,
            SeccompRule::new(vec![
                cond(0, SeccompCmpOp::Eq, libc::AF_INET as u64)?,
                cond(1, SeccompCmpOp::MaskedEq(sock_type_mask), libc::SOCK_RAW as u64)?,
            ])?,
            SeccompRule::new(vec![
                cond(0, SeccompCmpOp::Eq, libc::AF_INET6 as u64)?,
                cond(1, SeccompCmpOp::MaskedEq(sock_type_mask), libc::SOCK_RAW as u64)?,
            ])?,
            // SOCK_PACKET on an IP socket is a packet socket by another name.
            SeccompRule::new(vec![
                cond(0, SeccompCmpOp::Eq, libc::AF_INET as u64)?,
                cond(1, SeccompCmpOp::MaskedEq(sock_type_mask), SOCK_PACKET)?,
            ])?,
        ],
    );
    let namespace_flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    rules.insert(
        libc::SYS_clone,
        namespace_flags
            .iter()
            .map(|flag| {
                let flag = *flag as u64;
                SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?])
            })
            .collect::<Result<_, _>>()?,
    );
    rules.insert(
        libc::SYS_ioctl,
        vec![SeccompRule::new(vec![cond(1, SeccompCmpOp::Eq, libc::TIOCSTI)?])?],
    );
    // The mode argument's position in each call that sets or creates with a mode.
    let mut mode_args = vec![
        (libc::SYS_fchmod, 1),
        (libc::SYS_fchmodat, 2),
        (libc::SYS_fchmodat2, 2),
        (libc::SYS_openat, 3),
        (libc::SYS_mkdirat, 2),
        (libc::SYS_mknodat, 2),
    ];
    #[cfg(target_arch = "x86_64")]
    mode_args.extend([
        (libc::SYS_chmod, 1),
        (libc::SYS_open, 2),
        (libc::SYS_creat, 1),
        (libc::SYS_mkdir, 1),
        (libc::SYS_mknod, 1),
    ]);
    for (nr, arg) in mode_args {
        rules.insert(nr, set_id_rules(arg)?);
    }
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )?;
    let families = SeccompFilter::new(
        BTreeMap::from([
            (libc::SYS_socket, socket_rules()?),
            (libc::SYS_socketpair, socket_rules()?),
        ]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        ARCH,
    )?;
    let unfiltered = SeccompFilter::new(
        [
            libc::SYS_clone3,
            libc::SYS_openat2,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ]
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )?;
    Ok(vec![foreign_abi_guard(), deny.try_into()?, families.try_into()?, unfiltered.try_into()?])
}

/// A filter that refuses every call a rule above could miss by its number alone: on x86_64,
/// the x32 ABI reuses the architecture value and sets bit 30 of the call number, so
/// `0x40000000 | SYS_unshare` would not match a rule for `SYS_unshare`. Such calls get
/// ENOSYS; a call made under another architecture is killed.
fn foreign_abi_guard() -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_JMP_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
    const OFFSET_NR: u32 = 0;
    const OFFSET_ARCH: u32 = 4;
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    const X32_BIT: u32 = 0x4000_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        op(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        op(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        op(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        op(BPF_JMP_JGE_K, 0, 1, X32_BIT),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
}

/// Installs the filter in this process (and what it executes).
pub(crate) fn seccomp() -> Result<(), String> {
    seccomp_with(&filters().map_err(|e| e.to_string())?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_architecture() {
        let programs = super::filters().map(|p| p.len());
        assert_eq!(programs.ok(), Some(4));
    }
}
