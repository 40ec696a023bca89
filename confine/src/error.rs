//! Errors of the sandbox builder: every failure names the step that failed.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// The named steps of a confined launch, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    ReadSpec,
    Cgroup,
    Namespaces,
    Fork,
    PrepareRoot,
    Mount(String),
    PivotRoot,
    Hostname,
    Loopback,
    Session,
    Cwd,
    Identity,
    Capabilities,
    Landlock,
    /// The kernel took the Landlock ruleset only in part, or not at all (a strict app is
    /// refused then; shown as `landlock` like the other Landlock failures).
    LandlockNotEnforced,
    AppArmor,
    Seccomp,
    Rlimits,
    CloseFds,
    Exec(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::ReadSpec => f.write_str("read-spec"),
            Step::Cgroup => f.write_str("cgroup"),
            Step::Namespaces => f.write_str("namespaces"),
            Step::Fork => f.write_str("fork"),
            Step::PrepareRoot => f.write_str("prepare-root"),
            Step::Mount(what) => write!(f, "mount: {what}"),
            Step::PivotRoot => f.write_str("pivot-root"),
            Step::Hostname => f.write_str("hostname"),
            Step::Loopback => f.write_str("loopback"),
            Step::Session => f.write_str("session"),
            Step::Cwd => f.write_str("cwd"),
            Step::Identity => f.write_str("identity"),
            Step::Capabilities => f.write_str("capabilities"),
            Step::Landlock | Step::LandlockNotEnforced => f.write_str("landlock"),
            Step::AppArmor => f.write_str("apparmor"),
            Step::Seccomp => f.write_str("seccomp"),
            Step::CloseFds => f.write_str("close-fds"),
            Step::Rlimits => f.write_str("rlimits"),
            Step::Exec(cmd) => write!(f, "exec {cmd}"),
        }
    }
}

/// A failed step, with the OS error number when there is one (the daemon maps ENOENT and
/// EACCES at exec to the shell's 127 and 126).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("sandbox setup failed at step \"{step}\": {message}")]
pub struct StepError {
    pub step: Step,
    pub message: String,
    #[serde(default)]
    pub errno: Option<i32>,
}

impl StepError {
    pub fn io(step: Step, err: io::Error) -> Self {
        let errno = err.raw_os_error();
        let message = match err.get_ref() {
            // Our own descriptive errors carry their message; OS errors get their text.
            Some(inner) => inner.to_string(),
            None => err.to_string(),
        };
        Self {
            step,
            message,
            errno,
        }
    }

    pub fn nix(step: Step, err: nix::Error) -> Self {
        Self::io(step, io::Error::from(err))
    }

    pub fn msg(step: Step, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
            errno: None,
        }
    }
}

/// One line on the helper's standard error, for what nobody else will hear about. Never fails
/// and never panics: standard error may be a pipe whose reader is gone (a dead daemon's log),
/// a full disk, or closed.
pub fn diag(message: &str) {
    let line = format!("pack-confine: {message}\n");
    // SAFETY: write(2) from a buffer we own; the result is deliberately ignored.
    let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}
