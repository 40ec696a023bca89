//! The zygote: one small, single-threaded `pack-confine` process started with the daemon,
//! which forks a sandbox supervisor for every launch request. Forking it costs a fraction of
//! forking the (multi-threaded, larger) daemon and exec'ing a helper every time.
//!
//! Protocol on a `SOCK_SEQPACKET` socket (fd 3), one JSON message per packet:
//!
//! - daemon → zygote: [`Request::Launch`] with four descriptors: the app's stdin, stdout,
//!   stderr and the write end of its status pipe (see [`crate::helper`]);
//! - daemon → zygote: [`Request::Prepare`]: fork a *slot* now, in the background, that joins
//!   the given cgroup and waits. A later launch naming the slot skips the join: moving a process
//!   into a v1 cgroup takes a global lock that waits for an RCU grace period (~10 ms here)
//!   whenever launches are spaced out, and the slot pays it before anyone waits;
//! - zygote → daemon: [`Reply::Started`] with a pidfd of the supervisor (signals go through it:
//!   no pid-reuse race), or [`Reply::Failed`]; later [`Reply::Exited`] with the supervisor's
//!   exit code (the zygote is its parent and reaps it).
//!
//! The zygote dies with the daemon (parent-death signal), the supervisors with the zygote.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::helper::{self, EXIT_SETUP_FAILED, STATUS_FD, StatusPipe};
use crate::spec::SandboxSpec;
use crate::steps::signals;

/// The descriptor the zygote's launch socket arrives on.
pub const SOCKET_FD: i32 = 3;

/// Largest message (a spec is a few KiB).
pub const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Start `spec`; in the prepared `slot` when it is still there (its cgroup joined).
    Launch {
        id: u64,
        spec: Box<SandboxSpec>,
        #[serde(default)]
        slot: Option<u64>,
    },
    /// Fork a slot that joins `dirs` and waits for a launch.
    Prepare {
        slot: u64,
        dirs: Vec<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Started { id: u64, pid: i32 },
    Failed { id: u64, error: String },
    Exited { id: u64, code: i32 },
}

/// Sends `msg` with `fds` as one packet.
pub fn send<T: Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Receives one packet: `None` at EOF, else the message and its descriptors (close-on-exec).
pub fn recv<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel installed these descriptors for us.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let len = msg.bytes;
    if len == 0 {
        return Ok(None);
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message or descriptors truncated",
        ));
    }
    let value = serde_json::from_slice(&buf[..len])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((value, fds)))
}

fn close_range(first: u32, last: u32) {
    // SAFETY: closing descriptors this process owns; nothing refers to them afterwards.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

/// The zygote's loop; returns when the daemon closes the socket.
pub fn serve(sock: OwnedFd, parent: i32) -> i32 {
    // Whatever the daemon inherited and did not mark close-on-exec stops here.
    close_range(SOCKET_FD as u32 + 1, u32::MAX);
    // SAFETY: prctl with integer arguments; then check the daemon did not die before it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid().as_raw() != parent {
        return 0;
    }
    // SIGCHLD arrives through a signalfd, polled with the socket.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGCHLD);
    if set.thread_block().is_err() {
        return EXIT_SETUP_FAILED;
    }
    let Ok(sfd) = nix::sys::signalfd::SignalFd::with_flags(
        &set,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    ) else {
        return EXIT_SETUP_FAILED;
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut running: HashMap<i32, u64> = HashMap::new();
    let mut slots: HashMap<u64, Slot> = HashMap::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on two descriptors we own.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            while sfd.read_signal().ok().flatten().is_some() {}
            reap(&sock, &mut running, &mut slots);
        }
        if fds[0].revents != 0 {
            match recv::<Request>(sock.as_fd(), &mut buf) {
                Ok(Some((Request::Launch { id, spec, slot }, fds))) => {
                    match slot.and_then(|s| slots.remove(&s)) {
                        Some(slot) => hand_over(&sock, id, *spec, fds, slot, &mut running),
                        None => launch(&sock, id, &spec, fds, &mut running),
                    }
                }
                Ok(Some((Request::Prepare { slot, dirs }, _))) => {
                    if let Some(s) = prepare(&sock, &dirs) {
                        slots.insert(slot, s);
                    }
                }
                // EOF or a broken socket: the daemon is gone; supervisors die with us.
                Ok(None) => return 0,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing_free_log(&format!("ignoring a bad request: {e}"));
                }
                Err(_) => return 0,
            }
        }
    }
}

/// No logging framework in the helper: one line on its stderr (the daemon's log).
fn tracing_free_log(msg: &str) {
    eprintln!("pack-confine zygote: {msg}");
}

fn launch(
    sock: &OwnedFd,
    id: u64,
    spec: &SandboxSpec,
    fds: Vec<OwnedFd>,
    running: &mut HashMap<i32, u64>,
) {
    let fail = |error: String| {
        let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
    };
    if fds.len() != 4 {
        return fail(format!("expected 4 descriptors, got {}", fds.len()));
    }
    // SAFETY: the zygote is single-threaded, so the child may do anything after fork.
    match unsafe { libc::fork() } {
        -1 => fail(format!("cannot fork: {}", std::io::Error::last_os_error())),
        0 => {
            let code = child(sock, spec, &fds);
            // SAFETY: leaving the forked child without running the zygote's destructors.
            unsafe { libc::_exit(code) }
        }
        pid => {
            drop(fds);
            running.insert(pid, id);
            // SAFETY: pidfd_open on our own child (not reaped: it is in `running`).
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if pidfd < 0 {
                // Without a pidfd the daemon cannot signal it safely: end it now.
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return fail(format!(
                    "cannot open a pidfd: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: a fresh descriptor we own.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            let _ = send(
                sock.as_fd(),
                &Reply::Started { id, pid },
                &[pidfd.as_raw_fd()],
            );
        }
    }
}

/// In the forked child: become a supervisor with the request's descriptors as 0–2 and 4.
fn child(sock: &OwnedFd, spec: &SandboxSpec, fds: &[OwnedFd]) -> i32 {
    // SAFETY: plain syscalls on descriptors we own; the zygote's socket must not leak into the
    // sandbox, and the signal mask must start empty (the zygote blocks SIGCHLD).
    unsafe {
        libc::close(sock.as_raw_fd());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        for (fd, to) in fds.iter().zip([0, 1, 2, STATUS_FD]) {
            if libc::dup2(fd.as_raw_fd(), to) < 0 {
                return EXIT_SETUP_FAILED;
            }
        }
        // Nothing else stays open in the sandbox's processes: not the received copies (the
        // status pipe must reach EOF at the app's exec), not the zygote's signalfd.
        close_range(3, 3);
        close_range(STATUS_FD as u32 + 1, u32::MAX);
    }
    signals::restore(&signals::empty());
    // SAFETY: STATUS_FD was just set up above.
    let mut status = unsafe { StatusPipe::from_raw(STATUS_FD) };
    helper::run(spec, &mut status)
}

/// Reaps exited supervisors (and slots that died unused) and reports the supervisors.
fn reap(sock: &OwnedFd, running: &mut HashMap<i32, u64>, slots: &mut HashMap<u64, Slot>) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if let Some(id) = running.remove(&pid) {
            let code = signals::exit_code(status);
            let _ = send(sock.as_fd(), &Reply::Exited { id, code }, &[]);
        }
        slots.retain(|_, s| s.pid != pid);
    }
}

/// A forked process waiting, inside its cgroup, for the spec and descriptors of a launch.
struct Slot {
    pid: i32,
    /// Our end of the slot's socket.
    sock: OwnedFd,
}

/// Forks a slot: it joins `dirs`, then waits for one [`Request::Launch`] on its own socket.
fn prepare(sock: &OwnedFd, dirs: &[std::path::PathBuf]) -> Option<Slot> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    // SAFETY: the zygote is single-threaded, so the child may do anything after fork.
    match unsafe { libc::fork() } {
        -1 => None,
        0 => {
            // SAFETY: leaving the forked child without running the zygote's destructors.
            unsafe { libc::_exit(slot_main(sock, ours, theirs, dirs)) }
        }
        pid => Some(Slot { pid, sock: ours }),
    }
}

fn slot_main(zygote: &OwnedFd, ours: OwnedFd, theirs: OwnedFd, dirs: &[std::path::PathBuf]) -> i32 {
    // SAFETY: closing descriptors of the zygote this child must not keep.
    unsafe {
        libc::close(zygote.as_raw_fd());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    drop(ours);
    if crate::cgroup::join(dirs).is_err() {
        return EXIT_SETUP_FAILED;
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    match recv::<Request>(theirs.as_fd(), &mut buf) {
        Ok(Some((Request::Launch { spec, .. }, fds))) => {
            // Already in the cgroup: joining again would take the slow lock for nothing.
            let mut spec = *spec;
            spec.cgroup = None;
            let code = child(&theirs, &spec, &fds);
            // `child` closed every descriptor but 0-2 and 4: leave without dropping ours.
            // SAFETY: ending the forked slot.
            unsafe { libc::_exit(code) }
        }
        _ => 0,
    }
}

/// Gives a launch to a prepared slot; falls back to a fresh fork if the slot is gone.
fn hand_over(
    sock: &OwnedFd,
    id: u64,
    spec: SandboxSpec,
    fds: Vec<OwnedFd>,
    slot: Slot,
    running: &mut HashMap<i32, u64>,
) {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let request = Request::Launch {
        id,
        spec: Box::new(spec.clone()),
        slot: None,
    };
    if send(slot.sock.as_fd(), &request, &raw).is_err() {
        return launch(sock, id, &spec, fds, running);
    }
    drop(fds);
    running.insert(slot.pid, id);
    report_started(sock, id, slot.pid);
}

/// Replies `Started` with a pidfd of `pid` (killing it if no pidfd can be had).
fn report_started(sock: &OwnedFd, id: u64, pid: i32) {
    // SAFETY: pidfd_open on our own child (not reaped: the caller tracks it).
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        // Without a pidfd the daemon cannot signal it safely: end it now.
        // SAFETY: killing our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let error = format!("cannot open a pidfd: {}", std::io::Error::last_os_error());
        let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
        return;
    }
    // SAFETY: a fresh descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    let _ = send(
        sock.as_fd(),
        &Reply::Started { id, pid },
        &[pidfd.as_raw_fd()],
    );
}
