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

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;

use crate::error::{Step, StepError};
use crate::seccomp::Profile;
use crate::spec::SandboxSpec;
use crate::steps::landlock::Enforcement;
use crate::steps::{apparmor, caps, landlock, mounts, net, signals};
use crate::sys::LinuxSys;

/// The descriptor a prepared slot receives its launch on.
pub const SLOT_FD: i32 = 3;
/// The descriptor step errors are written to.
pub const STATUS_FD: i32 = 4;
/// The descriptor a launch's mount template is put on, when it comes with one.
pub const TEMPLATE_FD: i32 = 6;
/// The descriptor the pack's network namespace is put on, when it comes with the launch.
pub const NET_FD: i32 = 7;
/// The caller's own exit pipe, when it sent one (`pack run`): the init writes the app's status
/// there too, so the caller learns it without a detour through the daemon.
pub const CALLER_EXIT_FD: i32 = 8;
/// The descriptor the init writes the app's exit status to (four bytes, little-endian) the
/// moment the app exits: the daemon need not wait for the namespaces to be torn down.
pub const EXIT_FD: i32 = 5;

/// Exit status when the sandbox could not be built (as `docker run` uses 125).
pub const EXIT_SETUP_FAILED: i32 = 125;
/// The command exists but cannot be executed (as a shell reports).
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command does not exist (as a shell reports).
pub const EXIT_NOT_FOUND: i32 = 127;

/// One line on the status pipe: a failed step, or what a layer reports before exec.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusLine {
    Failed(StepError),
    Landlock(Enforcement),
}

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

    fn close(&mut self) {
        self.0 = None;
    }
}

/// Entry point of `pack-confine`: `pack-confine --zygote PARENT_PID`, with the launch socket on
/// fd 3 (see [`crate::zygote`]). Returns the process exit status.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let parent = match args.as_slice() {
        [_, flag, pid] if flag == "--zygote" => pid.parse::<i32>().ok(),
        _ => None,
    };
    let Some(parent) = parent else {
        eprintln!(
            "pack-confine is started by packd (pack-confine --zygote PARENT_PID); it is not run by hand"
        );
        return 2;
    };
    // SAFETY: fd 3 is the launch socket by the protocol; if it is not open, the first recv
    // fails and the zygote exits.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(crate::zygote::SOCKET_FD) };
    crate::zygote::serve(sock, parent)
}

/// What a sandbox is made of before its spec is known: the cgroup it joins and the namespaces
/// it gets. A prepared slot ([`crate::zygote`]) builds its frame ahead of time and accepts only
/// a spec with the same frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Frame {
    pub cgroup: Option<crate::spec::CgroupJoin>,
    pub namespaces: crate::spec::Namespaces,
}

impl Frame {
    pub fn of(spec: &SandboxSpec) -> Frame {
        Frame {
            cgroup: spec.cgroup.clone(),
            namespaces: spec.namespaces,
        }
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
    /// Later, as one [`crate::zygote::Handover`] on [`SLOT_FD`].
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
                Source::Slot => eprintln!("pack-confine: cannot prepare a sandbox: {e}"),
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
            let _ = crate::zygote::send(sock, &crate::zygote::SlotReady {}, &[]);
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
        .and_then(|()| build(spec, mounting, &mut status, saved_mask));
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
enum Mounting {
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
    use crate::zygote::{Handover, Template};
    // SAFETY: SLOT_FD is the slot's socket by the protocol; we own it from here on.
    let sock = unsafe { OwnedFd::from_raw_fd(SLOT_FD) };
    let mut buf = vec![0u8; crate::zygote::MAX_MESSAGE];
    let (handover, fds) = match crate::zygote::recv::<Handover>(sock.as_fd(), &mut buf) {
        Ok(Some(got)) => got,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("pack-confine: a bad launch for a prepared sandbox: {e}");
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
            eprintln!("pack-confine: {e}");
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

/// The descriptors of a launch, in the order they are sent: stdin, stdout, stderr, the status
/// pipe and the exit pipe.
pub const LAUNCH_FDS: [i32; 5] = [0, 1, 2, STATUS_FD, EXIT_FD];

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

/// Where the init writes the app's exit status.
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

/// What the app step needs that must be read from the host before the root changes.
struct Prepared {
    saved_mask: libc::sigset_t,
    seccomp: Option<Profile>,
}

/// Build the file system (or copy a template of it), fork the app, forward signals, reap; how
/// the app ended.
fn build(
    spec: &SandboxSpec,
    mounting: Mounting,
    status: &mut StatusPipe,
    saved_mask: &libc::sigset_t,
) -> Result<Built, StepError> {
    let seccomp = match &spec.seccomp {
        Some(s) => Some(
            Profile::read(&s.profile).map_err(|e| StepError::msg(Step::Seccomp, e.to_string()))?,
        ),
        None => None,
    };
    let prepared = Prepared {
        saved_mask: *saved_mask,
        seccomp,
    };
    let sys = LinuxSys;
    // Taken now, while the host is in reach.
    let launch_trees = mounts::detach_binds(&sys, &spec.launch_mounts)?;
    let new_mount_ns = || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| StepError::nix(Step::Namespaces, e))
    };
    match mounting {
        Mounting::Private => {
            // The host's mounts as they are now, private to the sandbox from here on.
            new_mount_ns()?;
            build_root(&sys, spec)?;
        }
        Mounting::Build(sock) => {
            new_mount_ns()?;
            let template =
                File::open("/proc/self/ns/mnt").map_err(|e| StepError::io(Step::Namespaces, e))?;
            build_root(&sys, spec)?;
            // This launch continues in a copy, so its own mounts stay out of the template.
            new_mount_ns()?;
            use std::os::fd::AsRawFd;
            let ready = crate::zygote::TemplateReady {};
            if let Err(e) = crate::zygote::send(sock.as_fd(), &ready, &[template.as_raw_fd()]) {
                eprintln!("pack-confine: cannot hand over a mount template: {e}");
            }
        }
        Mounting::Join(template) => {
            // The template's root becomes ours; then a copy of its mounts.
            nix::sched::setns(&template, CloneFlags::CLONE_NEWNS)
                .map_err(|e| StepError::nix(Step::Namespaces, e))?;
            drop(template);
            new_mount_ns()?;
        }
    }
    mounts::apply_launch(&sys, &spec.launch_mounts, launch_trees)?;
    if spec.namespaces.uts {
        nix::unistd::sethostname(&spec.hostname).map_err(|e| StepError::nix(Step::Hostname, e))?;
    }
    // Whether the app got as far as its exec: the child writes a byte here when it did not
    // (close-on-exec, so a successful exec just closes it).
    let (failed_r, failed_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StepError::nix(Step::Fork, e))?;
    // SAFETY: single-threaded, as above.
    match unsafe { nix::unistd::fork() }.map_err(|e| StepError::nix(Step::Fork, e))? {
        nix::unistd::ForkResult::Child => {
            drop(failed_r);
            let err = exec_app(spec, &prepared, status);
            let code = match err.errno {
                Some(libc::ENOENT) if matches!(err.step, Step::Exec(_)) => EXIT_NOT_FOUND,
                Some(_) if matches!(err.step, Step::Exec(_)) => EXIT_CANNOT_EXECUTE,
                _ => EXIT_SETUP_FAILED,
            };
            status.report(&err);
            let _ = nix::unistd::write(&failed_w, &[1]);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            status.close();
            drop(failed_w);
            let code = signals::relay_until_exit(child.as_raw());
            // The child is gone: a byte, or end of file if it had exec'd.
            let mut byte = [0u8; 1];
            let execed = matches!(nix::unistd::read(&failed_r, &mut byte), Ok(0));
            Ok(Built {
                code,
                execed,
                outlive: spec.process.outlive_command,
            })
        }
    }
}

/// How the app of a built sandbox ended.
struct Built {
    /// Its status.
    code: i32,
    /// Whether it got as far as its exec (its status is then the app's own, for the caller).
    execed: bool,
    /// The sandbox stays while what the command left runs (a `forking` service).
    outlive: bool,
}

/// The new root: private mounts, the base bound read-only, `mounts` on it, then pivot.
fn build_root(sys: &LinuxSys, spec: &SandboxSpec) -> Result<(), StepError> {
    mounts::make_private(sys)?;
    mounts::prepare_root(sys, &spec.root)?;
    mounts::apply(sys, &spec.root, &spec.mounts)?;
    mounts::pivot(sys, &spec.root)
}

/// The app: session, working directory, AppArmor, identity, capabilities, Landlock,
/// descriptors, seccomp (last), exec. Returns only on failure.
fn exec_app(spec: &SandboxSpec, prepared: &Prepared, status: &mut StatusPipe) -> StepError {
    match confine_app(spec, prepared, status) {
        Ok(()) => exec(spec),
        Err(e) => e,
    }
}

fn confine_app(
    spec: &SandboxSpec,
    prepared: &Prepared,
    status: &mut StatusPipe,
) -> Result<(), StepError> {
    let p = &spec.process;
    signals::reset_dispositions();
    signals::restore(&prepared.saved_mask);
    nix::unistd::setsid().map_err(|e| StepError::nix(Step::Session, e))?;
    enter_cwd(&p.cwd, &p.fallback_cwd)?;
    if let Some(label) = &spec.apparmor
        && apparmor::available()
    {
        apparmor::change_onexec(label)?;
    }
    let keep = caps::parse(&spec.capabilities)?;
    if !spec.devmode {
        caps::drop_bounding(&keep)?;
    }
    if p.uid != 0 && !keep.is_empty() {
        // Keep the permitted set across the uid change; the ambient set carries it over exec.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    }
    crate::steps::identity::switch(p.uid, p.gid, &p.groups)?;
    if spec.devmode {
        caps::set_no_new_privs()?;
    } else {
        caps::drop_rest(&keep)?;
        if let Some(rules) = &spec.landlock {
            status.send(&StatusLine::Landlock(landlock::apply(rules)?));
        }
    }
    // Nothing but 0-2 crosses exec (runc CVE-2024-21626): mark every other descriptor
    // close-on-exec; the status pipe already is.
    // SAFETY: close_range with constant arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(StepError::io(
            Step::CloseFds,
            std::io::Error::last_os_error(),
        ));
    }
    // Last: after this only the allowed syscalls remain (exec and the failure report among
    // them).
    if let Some(profile) = &prepared.seccomp {
        profile
            .load()
            .map_err(|e| StepError::msg(Step::Seccomp, e.to_string()))?;
    }
    Ok(())
}

fn exec(spec: &SandboxSpec) -> StepError {
    let p = &spec.process;
    let Some(exe) = p.argv.first() else {
        return StepError::msg(Step::Exec(String::new()), "empty command");
    };
    let to_c = |v: &[String]| -> Result<Vec<CString>, StepError> {
        v.iter()
            .map(|s| {
                CString::new(s.as_bytes()).map_err(|_| {
                    StepError::msg(Step::Exec(exe.clone()), "argument contains a NUL byte")
                })
            })
            .collect()
    };
    let (argv, env) = match (to_c(&p.argv), to_c(&p.env)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match nix::unistd::execve(&argv[0], &argv, &env) {
        Err(e) => StepError::nix(Step::Exec(exe.clone()), e),
        Ok(never) => match never {},
    }
}

/// Enters `cwd` inside the sandbox, or `fallback`; then checks the kernel agrees the directory is
/// inside the new root (a leaked descriptor as cwd would show as unreachable).
fn enter_cwd(cwd: &Path, fallback: &Path) -> Result<(), StepError> {
    if nix::unistd::chdir(cwd).is_err() {
        nix::unistd::chdir(fallback).map_err(|e| StepError::nix(Step::Cwd, e))?;
    }
    let here = nix::unistd::getcwd().map_err(|e| StepError::nix(Step::Cwd, e))?;
    if !here.is_absolute() {
        return Err(StepError::msg(
            Step::Cwd,
            format!(
                "working directory {} is outside the sandbox",
                here.display()
            ),
        ));
    }
    Ok(())
}

fn set_not_dumpable() {
    // Not dumpable: the app cannot ptrace or open /proc/PID/* of its supervisors.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}
