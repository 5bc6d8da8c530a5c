//! Descriptors a sandboxed process must not inherit: everything above the ones it is given.
//!
//! Owns closing (in the helper) and marking close-on-exec (between `fork` and `exec`) every
//! descriptor from a number up, with `close_range(2)` and a loop where the kernel lacks it.
//! Only raw syscalls, so both are safe in a forked child.

use nix::libc;

/// `CLOSE_RANGE_CLOEXEC` (Linux 5.11).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
/// The highest descriptor number the fallback loop visits: the open-file hard limit.
fn max_fd() -> libc::c_int {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    #[allow(unsafe_code, reason = "getrlimit has no async-signal-safe wrapper")]
    // SAFETY: getrlimit(2) writes only into `limit`, which lives on this stack frame.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok { libc::c_int::try_from(limit.rlim_max).unwrap_or(libc::c_int::MAX) } else { 1 << 20 }
}

/// Closes every descriptor `>= first` now.
pub(crate) fn close_from(first: libc::c_int) {
    if close_range(first, 0) {
        return;
    }
    for fd in first..max_fd() {
        #[allow(unsafe_code, reason = "closing descriptors this process owns")]
        // SAFETY: close(2) on a number; an unused one fails with EBADF.
        unsafe {
            libc::close(fd);
        }
    }
}

/// Marks every descriptor `>= first` close-on-exec. Async-signal-safe.
pub(crate) fn cloexec_from(first: libc::c_int) {
    if close_range(first, CLOSE_RANGE_CLOEXEC) {
        return;
    }
    for fd in first..max_fd() {
        #[allow(unsafe_code, reason = "flagging descriptors this process owns")]
        // SAFETY: fcntl(2) on a number; an unused one fails with EBADF.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

fn close_range(first: libc::c_int, flags: libc::c_uint) -> bool {
    let Ok(first) = libc::c_uint::try_from(first) else { return true };
    #[allow(unsafe_code, reason = "close_range has no wrapper in nix")]
    // SAFETY: close_range(2) takes two descriptor numbers and flags and touches no memory.
    let done = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, flags) };
    done == 0
}
