//! Signal handling of the supervisor and the init: block everything, wait synchronously,
//! forward to the child, reap, and leave with the child's status.

use std::mem::MaybeUninit;

/// Blocks every signal and returns the previous mask (restored in the app before exec).
///
/// A pid namespace's init receives signals from outside only when it handles them; a blocked
/// signal is never ignored, so blocking + `sigwaitinfo` forwards SIGTERM and friends reliably.
pub fn block_all() -> libc::sigset_t {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises `all`; sigprocmask fills `old`.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
        old.assume_init()
    }
}

/// Every signal back to its default action: an ignored signal would stay ignored across exec
/// (the helper's runtime ignores SIGPIPE, which the app must not inherit).
pub fn reset_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: restoring the default disposition; no handler pointer involved.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

/// An empty signal set.
pub fn empty() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

pub fn restore(mask: &libc::sigset_t) {
    // SAFETY: `mask` is a valid, initialised signal set.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

/// The shell's encoding of a wait status: the exit code, or 128 + the signal number.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Forwards every signal to `child` and reaps children until `child` exits; returns its exit
/// code. Signals that cannot be forwarded (SIGKILL, SIGSTOP) are never delivered here anyway.
pub fn relay_until_exit(child: libc::pid_t) -> i32 {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: initialises the set.
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let all = unsafe { all.assume_init() };
    loop {
        // The child may have exited before we got here; its SIGCHLD is then pending and
        // sigwaitinfo returns at once.
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        // SAFETY: valid set and out-pointer.
        let sig = unsafe { libc::sigwaitinfo(&all, info.as_mut_ptr()) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(child) {
                return code;
            }
        } else {
            // SAFETY: kill with a pid we forked and a signal number the kernel gave us.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// The init after a `forking` command exited: forwards signals to every process of the pid
/// namespace and reaps them until none is left; then the status of the last one to end (the
/// daemon the command left, normally), as a shell reports it. `pending` is a signal to
/// forward first. Only as pid 1 of its namespace (the caller's duty): `kill(-1)` anywhere else
/// would reach every process the caller may signal.
pub fn relay_until_empty(pending: Option<i32>) -> i32 {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        return 125;
    }
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: initialises the set.
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let all = unsafe { all.assume_init() };
    let mut last = 0;
    if let Some(sig) = pending {
        // SAFETY: kill(-1) from the namespace's init reaches every other process in it.
        unsafe { libc::kill(-1, sig) };
    }
    loop {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid < 0 {
                // ECHILD: nobody left.
                return last;
            }
            if pid == 0 {
                break;
            }
            last = exit_code(status);
        }
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        // SAFETY: valid set and out-pointer.
        let sig = unsafe { libc::sigwaitinfo(&all, info.as_mut_ptr()) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: as above.
            unsafe { libc::kill(-1, sig) };
        }
    }
}

/// Reaps every exited child; returns `child`'s exit code once it is among them.
fn reap(child: libc::pid_t) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return result;
        }
        if pid == child {
            result = Some(exit_code(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        // Wait statuses as the kernel encodes them.
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(libc::SIGTERM), 128 + libc::SIGTERM);
        assert_eq!(exit_code(libc::SIGKILL), 137);
    }
}
