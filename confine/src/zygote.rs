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
//! - daemon → zygote: [`Request::Monitor`]: start a service's monitor ([`crate::monitor`]),
//!   answered by [`Reply::Started`] with its pidfd;
//! - zygote → daemon: [`Reply::Exited`] with the exit code of a supervisor, slot or monitor
//!   (the zygote is their parent and reaps them while it lives).
//!
//! The messages are in [`crate::proto`]. The zygote dies with the daemon (parent-death
//! signal), the supervisors and slots with the zygote; monitors outlive both.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::helper::{self, Source, close_range};
use crate::proto::{
    EXIT_SETUP_FAILED, Frame, LAUNCH_FDS, MAX_MESSAGE, MonitorSpec, Reply, Request, SLOT_FD,
    SOCKET_FD, recv, send,
};
use crate::spec::SandboxSpec;
use crate::steps::signals;

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
                Ok(Some((Request::Monitor { id, spec, monitor }, _))) => {
                    start_monitor(&sock, id, &spec, &monitor, &mut running);
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
    crate::error::diag(&format!("zygote: {msg}"));
}

fn launch(
    sock: &OwnedFd,
    id: u64,
    spec: &SandboxSpec,
    (net, caller_exit): (bool, bool),
    fds: Vec<OwnedFd>,
    running: &mut HashMap<i32, u64>,
) {
    let expected = LAUNCH_FDS.len() + usize::from(net) + usize::from(caller_exit);
    if fds.len() != expected {
        let error = format!("expected {expected} descriptors, got {}", fds.len());
        let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
        return;
    }
    let forked = fork_child(sock, true, move || {
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
    let forked = fork_child(sock, true, || {
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

/// Starts a service's monitor: the control socket is bound here, before the fork, so the daemon
/// can connect the moment it hears the monitor started. The monitor is forked like a
/// supervisor but does not die with the zygote (nor, then, with the daemon).
fn start_monitor(
    sock: &OwnedFd,
    id: u64,
    spec: &SandboxSpec,
    monitor: &MonitorSpec,
    running: &mut HashMap<i32, u64>,
) {
    let listener = match crate::monitor::listen(&monitor.socket) {
        Ok(l) => l,
        Err(e) => {
            let error = format!("cannot listen on {}: {e}", monitor.socket.display());
            let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
            return;
        }
    };
    let forked = fork_child(sock, false, || {
        // SAFETY: dup2 onto descriptor 3 (the zygote's socket, which had it, is closed), then
        // everything above it goes.
        if unsafe { libc::dup2(listener.as_raw_fd(), SOCKET_FD) } < 0 {
            return EXIT_SETUP_FAILED;
        }
        close_range(SOCKET_FD as u32 + 1, u32::MAX);
        // SAFETY: just put there, ours.
        let listener = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
        // The daemon's standard streams are not the monitor's: it outlives the daemon, and
        // says what it has to say in the service's log.
        crate::monitor::detach_stdio();
        crate::monitor::run(monitor, spec, listener)
    });
    drop(listener);
    match forked {
        Ok(pid) => {
            running.insert(pid, id);
            report(sock, id, pid, Vec::new(), |pid| Reply::Started { id, pid });
        }
        Err(error) => {
            let _ = std::fs::remove_file(&monitor.socket);
            let _ = send(sock.as_fd(), &Reply::Failed { id, error }, &[]);
        }
    }
}

/// Forks a child that drops the zygote's socket and signal mask, dies with the zygote when
/// `dies_with_zygote`, and runs `body`; the child's pid.
fn fork_child(
    sock: &OwnedFd,
    dies_with_zygote: bool,
    body: impl FnOnce() -> i32,
) -> Result<i32, String> {
    // SAFETY: the zygote is single-threaded, so the child may do anything after fork.
    match unsafe { libc::fork() } {
        -1 => Err(format!("cannot fork: {}", std::io::Error::last_os_error())),
        0 => {
            // SAFETY: plain syscalls; the zygote's socket must not leak into the sandbox.
            unsafe {
                libc::close(sock.as_raw_fd());
                if dies_with_zygote {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                }
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
