//! A new network namespace starts with `lo` down; bring it up so the app can talk to itself.

use crate::error::{Step, StepError};

pub fn loopback_up() -> Result<(), StepError> {
    let fail = |what: &str| {
        StepError::msg(
            Step::Loopback,
            format!("{what}: {}", std::io::Error::last_os_error()),
        )
    };
    // SAFETY: plain socket call.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(fail("cannot open a socket to configure lo"));
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq pointer.
    let result = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            Err(fail("cannot read the flags of lo"))
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req) < 0 {
                Err(fail("cannot bring lo up"))
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(sock) };
    result
}

/// A new network namespace with loopback up, held by the returned descriptor (`/proc/.../ns/net`)
/// for sandboxes to join. Made on a short-lived thread of its own: a network namespace belongs
/// to a thread, and no thread of the caller's ever changes namespace.
pub fn new_namespace() -> std::io::Result<std::os::fd::OwnedFd> {
    std::thread::Builder::new()
        .name("packd-netns".into())
        .spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            loopback_up().map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
        })?
        .join()
        .map_err(|_| std::io::Error::other("the network namespace thread panicked"))?
}
