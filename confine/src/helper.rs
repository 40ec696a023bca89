//! The helper side of a launch (`pack-confine`): read the spec, build the sandbox, run the app.
//!
//! Three processes, each single-threaded:
//!
//! - the **supervisor** (the helper as spawned by the daemon, in the host's pid namespace)
//!   unshares the namespaces, forks the init, relays the daemon's signals to it and exits with
//!   its status;
//! - the **init** (pid 1 of the new pid namespace) builds the file system, pivots into it, forks
//!   the app, forwards signals to it and reaps orphans; when the app exits the init exits with
//!   its status, and the kernel kills whatever is left in the namespace;
//! - the **app** sets up its session and identity, closes stray descriptors and execs.
//!
//! Any failure is written as one JSON [`StepError`] line to the status descriptor (fd 4). That
//! descriptor is close-on-exec, so the daemon reading it sees EOF exactly when the app's exec
//! succeeds. The supervisor is forked by the zygote ([`crate::zygote`]).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::error::{Step, StepError};
use crate::seccomp::Profile;
use crate::spec::SandboxSpec;
use crate::steps::landlock::Enforcement;
use crate::steps::{apparmor, caps, landlock, mounts, net, signals};
use crate::sys::LinuxSys;

/// The descriptor step errors are written to.
pub const STATUS_FD: i32 = 4;

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

/// Runs one sandbox from a zygote's child: reports a failed step on `status` and returns the
/// exit status (the app's, or 125 when the sandbox could not be built).
pub fn run(spec: &SandboxSpec, status: &mut StatusPipe) -> i32 {
    match supervise(spec, status) {
        Ok(code) => code,
        Err(e) => {
            status.report(&e);
            EXIT_SETUP_FAILED
        }
    }
}

fn clone_flags(spec: &SandboxSpec) -> CloneFlags {
    let ns = &spec.namespaces;
    let mut flags = CloneFlags::CLONE_NEWNS;
    for (on, flag) in [
        (ns.pid, CloneFlags::CLONE_NEWPID),
        (ns.ipc, CloneFlags::CLONE_NEWIPC),
        (ns.uts, CloneFlags::CLONE_NEWUTS),
        (ns.net, CloneFlags::CLONE_NEWNET),
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

/// The supervisor: join the cgroup, read the seccomp profile, unshare, fork the init, relay
/// signals, exit with the init's status.
fn supervise(spec: &SandboxSpec, status: &mut StatusPipe) -> Result<i32, StepError> {
    let saved_mask = signals::block_all();
    set_not_dumpable();
    // Join first: everything forked from here on is inside, and the cgroup namespace created
    // below is rooted at this cgroup.
    if let Some(cg) = &spec.cgroup {
        crate::cgroup::join(&cg.dirs).map_err(|e| StepError::io(Step::Cgroup, e))?;
    }
    let seccomp = match &spec.seccomp {
        Some(s) => Some(
            Profile::read(&s.profile).map_err(|e| StepError::msg(Step::Seccomp, e.to_string()))?,
        ),
        None => None,
    };
    let prepared = Prepared {
        saved_mask,
        seccomp,
    };
    nix::sched::unshare(clone_flags(spec)).map_err(|e| StepError::nix(Step::Namespaces, e))?;
    // SAFETY: this process is single-threaded (the helper never starts threads), so the child
    // may do anything after fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| StepError::nix(Step::Fork, e))? {
        nix::unistd::ForkResult::Child => {
            let code = match init(spec, status, &prepared) {
                Ok(code) => code,
                Err(e) => {
                    status.report(&e);
                    EXIT_SETUP_FAILED
                }
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            status.close();
            Ok(signals::relay_until_exit(child.as_raw()))
        }
    }
}

/// The init: build the file system, fork the app, forward signals, reap.
fn init(
    spec: &SandboxSpec,
    status: &mut StatusPipe,
    prepared: &Prepared,
) -> Result<i32, StepError> {
    // Die with the supervisor; the kernel then kills everything in the pid namespace.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let sys = LinuxSys;
    mounts::prepare_root(&sys, &spec.root)?;
    mounts::apply(&sys, &spec.root, &spec.mounts)?;
    mounts::pivot(&sys, &spec.root)?;
    if spec.namespaces.uts {
        nix::unistd::sethostname(&spec.hostname).map_err(|e| StepError::nix(Step::Hostname, e))?;
    }
    if spec.namespaces.net {
        net::loopback_up()?;
    }
    // SAFETY: single-threaded, as above.
    match unsafe { nix::unistd::fork() }.map_err(|e| StepError::nix(Step::Fork, e))? {
        nix::unistd::ForkResult::Child => {
            let err = exec_app(spec, prepared, status);
            let code = match err.errno {
                Some(libc::ENOENT) if matches!(err.step, Step::Exec(_)) => EXIT_NOT_FOUND,
                Some(_) if matches!(err.step, Step::Exec(_)) => EXIT_CANNOT_EXECUTE,
                _ => EXIT_SETUP_FAILED,
            };
            status.report(&err);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            status.close();
            Ok(signals::relay_until_exit(child.as_raw()))
        }
    }
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
