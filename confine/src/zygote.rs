//! The zygote: one small, single-threaded `pack-confine` process started with the daemon,
//! which forks a sandbox supervisor for every launch. Forking it costs a fraction of forking
//! the (multi-threaded, larger) daemon and exec'ing a helper every time.
//!
//! Protocol on a `SOCK_SEQPACKET` socket (fd 3), one JSON message per packet:
//!
//! - daemon → zygote: [`Request::Launch`] with five descriptors: the app's stdin, stdout and
//!   stderr, the write end of its status pipe and of its exit pipe (see [`crate::helper`]),
//!   and the pack's network namespace when it has one;
//!   answered by [`Reply::Started`] with a pidfd of the supervisor (signals go through it: no
//!   pid-reuse race), or [`Reply::Failed`];
//! - daemon → zygote: [`Request::Prepare`]: fork a *slot* now that builds a sandbox's
//!   [`Frame`] (joins the cgroup, unshares the namespaces, forks the init) and waits. Answered by [`Reply::Prepared`] with the daemon's end of the slot's own socket
//!   and a pidfd. The daemon later sends the launch ([`Handover`] and the five descriptors)
//!   straight to the slot. Moving a process into a v1 cgroup takes a global lock that waits for
//!   an RCU grace period (~10 ms here) when launches are spaced out: the slot pays it before
//!   anyone waits;
//! - zygote → daemon: [`Reply::Exited`] with the exit code of a supervisor or slot (the zygote
//!   is their parent and reaps them).
//!
//! The zygote dies with the daemon (parent-death signal), the supervisors with the zygote.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::helper::{self, EXIT_SETUP_FAILED, Frame, SLOT_FD, Source, close_range};
use crate::spec::SandboxSpec;
use crate::steps::signals;

/// The descriptor the zygote's launch socket arrives on.
pub const SOCKET_FD: i32 = 3;

/// Largest message (a spec is a few KiB).
pub const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Start `spec` now; with `net`, a sixth descriptor is the pack's network namespace.
    Launch {
        id: u64,
        spec: Box<SandboxSpec>,
        #[serde(default)]
        net: bool,
        /// The caller's exit pipe comes last (see [`helper::CALLER_EXIT_FD`]).
        #[serde(default)]
        caller_exit: bool,
    },
    /// Fork a slot that builds `frame` and waits for a [`Handover`].
    Prepare { id: u64, frame: Frame },
}

/// The launch a prepared slot waits for, sent by the daemon on the slot's socket with the
/// five descriptors of [`Request::Launch`], then the template for [`Template::Join`] and the
/// network namespace for `net`. The spec's frame must be the slot's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handover {
    pub spec: Box<SandboxSpec>,
    #[serde(default)]
    pub template: Template,
    /// The pack's network namespace comes next, to join rather than make one.
    #[serde(default)]
    pub net: bool,
    /// The caller's exit pipe comes last (see [`helper::CALLER_EXIT_FD`]).
    #[serde(default)]
    pub caller_exit: bool,
}

/// Mount templates: a sandbox's file system without its per-launch mounts, kept as a mount
/// namespace (as snapd keeps one per snap in `/run/snapd/ns`). Launches with the same root and
/// mounts copy it instead of making ~50 mounts and a `pivot_root` each time; the copy is
/// private, so nothing one launch mounts reaches the template or another launch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// Build the file system for this launch only.
    #[default]
    Private,
    /// Build it, and send its mount namespace back on the slot's socket ([`TemplateReady`]
    /// with the namespace's descriptor) before the app starts.
    Build,
    /// Copy the mount namespace that comes as the sixth descriptor.
    Join,
}

/// What a slot sends on its socket once its frame is built and it waits for a launch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotReady {}

/// A slot's answer to [`Template::Build`], with the template's descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateReady {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Started { id: u64, pid: i32 },
    Prepared { id: u64, pid: i32 },
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
            reap(&sock, &mut running);
        }
        if fds[0].revents != 0 {
            match recv::<Request>(sock.as_fd(), &mut buf) {
                Ok(Some((
                    Request::Launch {
                        id,
                        spec,
                        net,
                        caller_exit,
                    },
                    fds,
                ))) => {
                    launch(&sock, id, &spec, (net, caller_exit), fds, &mut running);
                }
                Ok(Some((Request::Prepare { id, frame }, _))) => {
                    prepare(&sock, id, &frame, &mut running);
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
    (net, caller_exit): (bool, bool),
    fds: Vec<OwnedFd>,
    running: &mut HashMap<i32, u64>,
) {
    let expected = helper::LAUNCH_FDS.len() + usize::from(net) + usize::from(caller_exit);
    if fds.len() != expected {
        let error = format!("expected {expected} descriptors, got {}", fds.len());
        let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
        return;
    }
    let forked = fork_child(sock, move || {
        // The request's descriptors go in place; nothing else stays open in the sandbox's
        // processes: not the received copies (the status pipe must reach EOF at the app's
        // exec), not the zygote's signalfd.
        match helper::take_launch_fds(fds, false, net, caller_exit, None) {
            Ok(extras) => helper::supervise(
                &Frame::of(spec),
                Source::Given {
                    spec,
                    net: extras.net,
                },
            ),
            Err(e) => {
                tracing_free_log(&e);
                EXIT_SETUP_FAILED
            }
        }
    });
    match forked {
        Ok(pid) => {
            running.insert(pid, id);
            report(sock, id, pid, Vec::new(), |pid| Reply::Started { id, pid });
        }
        Err(error) => {
            let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
        }
    }
}

/// Forks a slot that builds `frame` and waits for its launch on its own socket.
fn prepare(sock: &OwnedFd, id: u64, frame: &Frame, running: &mut HashMap<i32, u64>) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let pair = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    );
    let (ours, theirs) = match pair {
        Ok(pair) => pair,
        Err(e) => {
            let error = format!("cannot make a socket for a sandbox slot: {e}");
            let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
            return;
        }
    };
    let forked = fork_child(sock, || {
        // SAFETY: dup2 onto the slot's descriptor number; the zygote's socket, which had it,
        // is already closed.
        if unsafe { libc::dup2(theirs.as_raw_fd(), SLOT_FD) } < 0 {
            return EXIT_SETUP_FAILED;
        }
        close_range(SLOT_FD as u32 + 1, u32::MAX);
        helper::supervise(frame, Source::Slot)
    });
    drop(theirs);
    match forked {
        Ok(pid) => {
            running.insert(pid, id);
            report(sock, id, pid, vec![ours], |pid| Reply::Prepared { id, pid });
        }
        Err(error) => {
            let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
        }
    }
}

/// Forks a child that drops the zygote's socket and signal mask, dies with the zygote and
/// runs `body`; the child's pid.
fn fork_child(sock: &OwnedFd, body: impl FnOnce() -> i32) -> Result<i32, String> {
    // SAFETY: the zygote is single-threaded, so the child may do anything after fork.
    match unsafe { libc::fork() } {
        -1 => Err(format!("cannot fork: {}", std::io::Error::last_os_error())),
        0 => {
            // SAFETY: plain syscalls; the zygote's socket must not leak into the sandbox.
            unsafe {
                libc::close(sock.as_raw_fd());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            }
            // The zygote blocks SIGCHLD; a sandbox starts with an empty mask.
            signals::restore(&signals::empty());
            let code = body();
            // SAFETY: leaving the forked child without running the zygote's destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// Replies with a pidfd of `pid` after `extra` (killing it if no pidfd can be had).
fn report(
    sock: &OwnedFd,
    id: u64,
    pid: i32,
    extra: Vec<OwnedFd>,
    reply: impl FnOnce(i32) -> Reply,
) {
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
    let mut raw: Vec<RawFd> = extra.iter().map(AsRawFd::as_raw_fd).collect();
    raw.push(pidfd.as_raw_fd());
    let _ = send(sock.as_fd(), &reply(pid), &raw);
}

/// Reaps exited supervisors and slots and reports them.
fn reap(sock: &OwnedFd, running: &mut HashMap<i32, u64>) {
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
    }
}
