//! The helper side of a launch (`pack-confine`): build the sandbox, run the app.
//!
//! Three processes, each single-threaded:
//!
//! - the **supervisor** (forked by the zygote, [`crate::zygote`], in the host's pid namespace)
//!   joins the cgroup, unshares the namespaces, forks the init, relays the daemon's signals to
//!   it and exits with its status;
//! - the **init** (pid 1 of the new pid namespace) brings up loopback, takes the spec (at
//!   once, or later when it is a prepared *slot*), unshares the mount namespace (a copy of the
//!   host's mounts as they are at the launch), builds the file system, pivots into it, forks the app, forwards signals to it and reaps orphans; when the
//!   app exits the init reports its status on the exit descriptor (fd 5) and exits with it, and
//!   the kernel kills whatever is left in the namespace;
//! - the **app** sets up its session and identity, closes stray descriptors and execs.
//!
//! The spec-independent part — the [`Frame`]: cgroup and namespaces but the mount one — is what a slot builds
//! before anyone asks for a launch, so a launch pays only for what depends on its spec.
//!
//! Any failure is written as one JSON [`StepError`] line to the status descriptor (fd 4). That
//! descriptor is close-on-exec, so the daemon reading it sees EOF exactly when the app's exec
//! succeeds.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sched::CloneFlags;

use crate::error::{Step, StepError};
use crate::proto::{
    self, CALLER_EXIT_FD, EXIT_FD, EXIT_SETUP_FAILED, Frame, Handover, LAUNCH_FDS, NET_FD, SLOT_FD,
    STATUS_FD, SlotReady, StatusLine, TEMPLATE_FD, Template,
};
use crate::spec::SandboxSpec;
use crate::steps::{net, signals};

/// Where step errors go.
pub struct StatusPipe(Option<File>);

impl StatusPipe {
    /// Takes over `fd`; a closed or invalid descriptor makes reports no-ops.
    ///
    /// # Safety
    /// `fd` must be an open descriptor this process owns, or not open at all.
    pub unsafe fn from_raw(fd: i32) -> Self {
        // SAFETY: fcntl on any integer is harmless; it tells whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Self(None);
        }
        // Close-on-exec, so the pipe reaches EOF when the app's exec succeeds.
        // SAFETY: `fd` is open (checked above).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: the caller guarantees we own `fd`.
        Self(Some(unsafe { File::from_raw_fd(fd) }))
    }

    pub fn report(&mut self, err: &StepError) {
        self.send(&StatusLine::Failed(err.clone()));
    }

    pub fn send(&mut self, line: &StatusLine) {
        if let Some(f) = self.0.as_mut()
            && let Ok(mut bytes) = serde_json::to_vec(line)
        {
            bytes.push(b'\n');
            let _ = f.write_all(&bytes);
        }
    }

    pub(crate) fn close(&mut self) {
        self.0 = None;
    }
}

/// Where the init gets its spec and descriptors.
pub enum Source<'a> {
    /// Already here: the spec in memory, the descriptors in place (see [`take_launch_fds`]),
    /// and the pack's network namespace if one came.
    Given {
        spec: &'a SandboxSpec,
        net: Option<OwnedFd>,
    },
    /// Later, as one [`Handover`] on [`SLOT_FD`].
    Slot,
}

/// The supervisor: join the cgroup, unshare the namespaces, fork the init, relay signals to it
/// and return its status (the app's, or 125 when the sandbox could not be built).
pub fn supervise(frame: &Frame, source: Source<'_>) -> i32 {
    let saved_mask = signals::block_all();
    set_not_dumpable();
    let early = enter_frame(frame);
    // SAFETY: both variants only fork; the child runs the init and never returns.
    let forked = early
        .and_then(|()| unsafe { nix::unistd::fork() }.map_err(|e| StepError::nix(Step::Fork, e)));
    match forked {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = init(frame, source, &saved_mask);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The init holds everything the sandbox needs; the supervisor keeps nothing open
            // (a slot's socket must reach EOF when the init goes).
            close_range(0, u32::MAX);
            signals::relay_until_exit(child.as_raw())
        }
        Err(e) => {
            match source {
                // SAFETY: STATUS_FD is the launch's status pipe (or closed).
                Source::Given { .. } => unsafe { StatusPipe::from_raw(STATUS_FD) }.report(&e),
                Source::Slot => crate::error::diag(&format!("cannot prepare a sandbox: {e}")),
            }
            EXIT_SETUP_FAILED
        }
    }
}

/// Joins the cgroup first (everything forked afterwards is inside, and the cgroup namespace
/// is rooted there), then unshares the namespaces.
fn enter_frame(frame: &Frame) -> Result<(), StepError> {
    if let Some(cg) = &frame.cgroup {
        crate::cgroup::join(&cg.dirs).map_err(|e| StepError::io(Step::Cgroup, e))?;
    }
    nix::sched::unshare(clone_flags(&frame.namespaces))
        .map_err(|e| StepError::nix(Step::Namespaces, e))
}

/// The init (pid 1 of the new pid namespace): get the spec, enter the network, build the file
/// system, fork the app, forward signals, reap; report the app's status on [`EXIT_FD`] as soon
/// as it is known, before the namespaces are torn down.
fn init(frame: &Frame, source: Source<'_>, saved_mask: &libc::sigset_t) -> i32 {
    // Die with the supervisor; the kernel then kills everything in the pid namespace.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let received;
    let (spec, mounting, net) = match source {
        Source::Given { spec, net } => (spec, Mounting::Private, net),
        Source::Slot => {
            // SAFETY: SLOT_FD is the slot's socket by the protocol; borrowed for one send.
            let sock = unsafe { BorrowedFd::borrow_raw(SLOT_FD) };
            // A daemon that is gone shows at the receive.
            let _ = proto::send(sock, &SlotReady {}, &[]);
            match receive() {
                Some((spec, mounting, net)) => {
                    received = spec;
                    (&received, mounting, net)
                }
                // The daemon let the slot go unused.
                None => return 0,
            }
        }
    };
    // SAFETY: STATUS_FD is the launch's status pipe by the protocol (or closed).
    let mut status = unsafe { StatusPipe::from_raw(STATUS_FD) };
    let exit = ExitPipe::take();
    let result = check_frame(frame, spec)
        .and_then(|()| enter_network(frame, net))
        .and_then(|()| crate::app::build(spec, mounting, &mut status, saved_mask));
    match result {
        Ok(built) => {
            exit.send(built.code, built.execed);
            if built.outlive {
                // The command forked and left: the sandbox lasts as long as its processes.
                signals::relay_until_empty(None)
            } else {
                built.code
            }
        }
        Err(e) => {
            status.report(&e);
            EXIT_SETUP_FAILED
        }
    }
}

/// The pack's network namespace when the daemon sent one (the pack's apps share its
/// loopback); else, when the frame wants a private network, a new one with loopback up.
fn enter_network(frame: &Frame, net: Option<OwnedFd>) -> Result<(), StepError> {
    match net {
        Some(ns) => nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| StepError::nix(Step::Namespaces, e)),
        None if frame.namespaces.net => {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| StepError::nix(Step::Namespaces, e))?;
            net::loopback_up()
        }
        None => Ok(()),
    }
}

/// How the init gets the file system `mounts` describe.
pub(crate) enum Mounting {
    /// Build it for this launch only.
    Private,
    /// Build it and send its mount namespace to the daemon on this socket, as a template.
    Build(OwnedFd),
    /// Copy this template mount namespace instead of building.
    Join(OwnedFd),
}

/// A slot's launch: the spec, its descriptors in place (see [`take_launch_fds`]), how to get
/// the file system and the pack's network namespace. `None` when the daemon closed the slot
/// instead.
fn receive() -> Option<(SandboxSpec, Mounting, Option<OwnedFd>)> {
    // SAFETY: SLOT_FD is the slot's socket by the protocol; we own it from here on.
    let sock = unsafe { OwnedFd::from_raw_fd(SLOT_FD) };
    let mut buf = vec![0u8; proto::MAX_MESSAGE];
    let (handover, fds) = match proto::recv::<Handover>(sock.as_fd(), &mut buf) {
        Ok(Some(got)) => got,
        Ok(None) => return None,
        Err(e) => {
            crate::error::diag(&format!("a bad launch for a prepared sandbox: {e}"));
            return None;
        }
    };
    // The socket stays open through the descriptor shuffle; it is dropped (closed) below
    // unless a template is to go back on it.
    let extras = match take_launch_fds(
        fds,
        handover.template == Template::Join,
        handover.net,
        handover.caller_exit,
        Some(SLOT_FD),
    ) {
        Ok(extras) => extras,
        Err(e) => {
            crate::error::diag(&e.to_string());
            return None;
        }
    };
    let mounting = match (handover.template, extras.template) {
        (Template::Join, Some(ns)) => Mounting::Join(ns),
        (Template::Build, _) => Mounting::Build(sock),
        _ => Mounting::Private,
    };
    Some((*handover.spec, mounting, extras.net))
}

/// The descriptors a launch brings beyond [`LAUNCH_FDS`].
pub struct Extras {
    /// A mount template to copy, on [`TEMPLATE_FD`].
    pub template: Option<OwnedFd>,
    /// The pack's network namespace, on [`NET_FD`].
    pub net: Option<OwnedFd>,
}

/// Puts a launch's descriptors in place: the five of [`LAUNCH_FDS`], then (in this order, when
/// present) a mount template on [`TEMPLATE_FD`], a network namespace on [`NET_FD`] and the
/// caller's exit pipe on [`CALLER_EXIT_FD`]. Every other descriptor from 3 up is closed,
/// except `keep`.
pub fn take_launch_fds(
    fds: Vec<OwnedFd>,
    template: bool,
    net: bool,
    caller_exit: bool,
    keep: Option<i32>,
) -> Result<Extras, String> {
    let mut targets = LAUNCH_FDS.to_vec();
    if template {
        targets.push(TEMPLATE_FD);
    }
    if net {
        targets.push(NET_FD);
    }
    if caller_exit {
        targets.push(CALLER_EXIT_FD);
    }
    if fds.len() != targets.len() {
        return Err(format!(
            "a launch came with {} descriptors instead of {}",
            fds.len(),
            targets.len()
        ));
    }
    if !install_fds(fds, &targets) {
        return Err(format!(
            "cannot move a launch's descriptors in place: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut open: Vec<i32> = targets.clone();
    open.extend(keep);
    close_all_but(&open);
    // SAFETY: the descriptors were just put on these numbers, and are ours.
    let own = |fd: i32| unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Extras {
        template: template.then(|| own(TEMPLATE_FD)),
        net: net.then(|| own(NET_FD)),
    })
}

/// Closes every descriptor from 3 up except those in `keep`.
fn close_all_but(keep: &[i32]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd >= 3)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep {
        if fd > from {
            close_range(from, fd - 1);
        }
        from = from.max(fd + 1);
    }
    close_range(from, u32::MAX);
}

/// Moves `fds` onto `targets`, in order (whatever numbers they had; the originals are
/// closed); false when one cannot be.
fn install_fds(fds: Vec<OwnedFd>, targets: &[i32]) -> bool {
    use std::os::fd::AsRawFd;
    // Out of the way first, so no move overwrites a descriptor that is still to be moved.
    let high: Vec<i32> = fds
        .iter()
        // SAFETY: fcntl on descriptors we own.
        .map(|fd| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 16) })
        .collect();
    drop(fds);
    let mut ok = high.iter().all(|fd| *fd >= 0);
    for (fd, to) in high.iter().zip(targets) {
        // SAFETY: dup2 onto a descriptor number this process reserves for the launch (the
        // copy loses close-on-exec; each is set close-on-exec again when taken, and the app
        // marks every descriptor but 0-2 close-on-exec before its exec).
        ok = ok && unsafe { libc::dup2(*fd, *to) } >= 0;
    }
    for fd in high.into_iter().filter(|fd| *fd >= 0) {
        // SAFETY: closing the temporary copies made above.
        unsafe { libc::close(fd) };
    }
    ok
}

/// A slot may only run a spec of the frame it prepared.
fn check_frame(frame: &Frame, spec: &SandboxSpec) -> Result<(), StepError> {
    if Frame::of(spec) == *frame {
        Ok(())
    } else {
        Err(StepError::msg(
            Step::ReadSpec,
            "the prepared sandbox has other namespaces or another cgroup than the launch",
        ))
    }
}

/// Closes every descriptor from `first` to `last`.
pub fn close_range(first: u32, last: u32) {
    // SAFETY: closing descriptors this process owns; nothing refers to them afterwards.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

/// Where the app's status goes the moment it exits: the daemon's exit pipe, and the caller's
/// when it sent one.
struct ExitPipe {
    daemon: Option<File>,
    caller: Option<File>,
}

impl ExitPipe {
    fn take() -> ExitPipe {
        let take = |fd: i32| {
            // SAFETY: fcntl on any integer is harmless; it tells whether the descriptor is
            // open (and keeps it from the app's exec).
            (unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } >= 0)
                // SAFETY: open (checked above) and ours by the protocol.
                .then(|| unsafe { File::from_raw_fd(fd) })
        };
        ExitPipe {
            daemon: take(EXIT_FD),
            caller: take(CALLER_EXIT_FD),
        }
    }

    /// Four bytes, little-endian, in one atomic pipe write. The caller gets them only for an
    /// app that ran: when it never got to its exec, the daemon tells the caller why instead.
    fn send(self, code: i32, execed: bool) {
        let caller = self.caller.filter(|_| execed);
        for mut f in self.daemon.into_iter().chain(caller) {
            let _ = f.write_all(&code.to_le_bytes());
        }
    }
}

/// The namespaces the supervisor unshares; the mount and network namespaces come later, in the
/// init (a copy of the host's mounts as they are at the launch; the pack's network).
fn clone_flags(ns: &crate::spec::Namespaces) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    for (on, flag) in [
        (ns.pid, CloneFlags::CLONE_NEWPID),
        (ns.ipc, CloneFlags::CLONE_NEWIPC),
        (ns.uts, CloneFlags::CLONE_NEWUTS),
        (ns.cgroup, CloneFlags::CLONE_NEWCGROUP),
    ] {
        if on {
            flags |= flag;
        }
    }
    flags
}

fn set_not_dumpable() {
    // Not dumpable: the app cannot ptrace or open /proc/PID/* of its supervisors.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}
