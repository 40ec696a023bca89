//! The sandbox's file system and its app: build the root (or copy a template of it), fork the
//! app, and in the app the last layers (session, working directory, AppArmor, identity,
//! capabilities, Landlock, descriptors, seccomp) before exec. Run by the init (see
//! [`crate::helper`]).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::error::{Step, StepError};
use crate::helper::{Mounting, StatusPipe};
use crate::proto::{self, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED, StatusLine};
use crate::seccomp::Profile;
use crate::spec::SandboxSpec;
use crate::steps::landlock::Enforcement;
use crate::steps::{apparmor, caps, landlock, mounts, signals};
use crate::sys::LinuxSys;

/// What the app step needs that must be read from the host before the root changes.
struct Prepared {
    saved_mask: libc::sigset_t,
    seccomp: Option<Profile>,
}

/// Build the file system (or copy a template of it), fork the app, forward signals, reap; how
/// the app ended.
pub(crate) fn build(
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
            let ready = proto::TemplateReady {};
            if let Err(e) = proto::send(sock.as_fd(), &ready, &[template.as_raw_fd()]) {
                crate::error::diag(&format!("cannot hand over a mount template: {e}"));
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
pub(crate) struct Built {
    /// Its status.
    pub code: i32,
    /// Whether it got as far as its exec (its status is then the app's own, for the caller).
    pub execed: bool,
    /// The sandbox stays while what the command left runs (a `forking` service).
    pub outlive: bool,
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
    // As the caller, not as root: a directory they may not enter is not entered for them.
    enter_cwd(&p.cwd, &p.fallback_cwd)?;
    crate::steps::rlimits::apply(&p.rlimits)?;
    if spec.devmode {
        caps::set_no_new_privs()?;
    } else {
        caps::drop_rest(&keep)?;
        if let Some(rules) = &spec.landlock {
            let enforced = landlock::apply(rules)?;
            status.send(&StatusLine::Landlock(enforced.clone()));
            // Fail closed: a strict app never runs with a ruleset the kernel did not take
            // whole (only devmode, above, runs without Landlock, and says so).
            if enforced != Enforcement::Full {
                return Err(StepError::msg(
                    Step::LandlockNotEnforced,
                    format!(
                        "the kernel offers Landlock but enforced this ruleset {}; packd does not \
                         run a strict app half-confined (a kernel with Landlock ABI {} or \
                         later enforces it; devmode runs without it)",
                        match enforced {
                            Enforcement::Partial => "only in part",
                            _ => "not at all",
                        },
                        landlock::PINNED_ABI as i32
                    ),
                ));
            }
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
