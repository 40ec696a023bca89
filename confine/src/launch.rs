//! The daemon side of a launch: hand a [`SandboxSpec`] and three standard descriptors to the
//! `pack-confine` helper, then learn whether the app's exec succeeded.
//!
//! Protocol: the helper gets the app's stdio as 0–2, the spec on fd 3 (read to EOF) and a
//! close-on-exec status pipe on fd 4. EOF on the status pipe without a message means the app is
//! running; a JSON [`StepError`] line means a named step failed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Step, StepError};
use crate::helper::{SPEC_FD, STATUS_FD, StatusLine};
use crate::spec::SandboxSpec;
use crate::steps::landlock::Enforcement;

/// The app's standard input, output and error.
pub struct Stdio3 {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What stays with the daemon between spawning the helper and the app's exec.
pub struct Handoff {
    spec: Vec<u8>,
    spec_writer: File,
    status_reader: File,
    /// The helper's ends, closed in the daemon once the helper is spawned.
    child_ends: (OwnedFd, OwnedFd),
}

/// Builds the command that runs the helper; spawn it (std or tokio), then call
/// [`Handoff::send_spec`].
pub fn prepare(helper: &Path, spec: &SandboxSpec, stdio: Stdio3) -> io::Result<(Command, Handoff)> {
    let spec_bytes = serde_json::to_vec(spec).map_err(io::Error::other)?;
    let (spec_r, spec_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    // Move the helper's ends above the numbers they will get, so that dup2 in the child never
    // overwrites one with the other.
    let spec_r = dup_above(spec_r, 10)?;
    let status_w = dup_above(status_w, 10)?;
    let (spec_fd, status_fd) = (spec_r.as_raw_fd(), status_w.as_raw_fd());

    let mut cmd = Command::new(helper);
    cmd.env_clear()
        .stdin(Stdio::from(stdio.stdin))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr));
    // SAFETY: the closure only calls dup2 and prctl, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(spec_fd, SPEC_FD) < 0 || libc::dup2(status_fd, STATUS_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Sandboxes die with the daemon (the init dies with the supervisor in turn); a
            // restarted daemon starts what should run. The signal follows the spawning
            // *thread*: spawn from a long-lived one (an async runtime's worker is).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((
        cmd,
        Handoff {
            spec: spec_bytes,
            spec_writer: File::from(spec_w),
            status_reader: File::from(status_r),
            child_ends: (spec_r, status_w),
        },
    ))
}

impl Handoff {
    /// Sends the spec to the spawned helper. Returns the exec status to wait on.
    pub fn send_spec(self) -> io::Result<ExecStatus> {
        let Handoff {
            spec,
            mut spec_writer,
            status_reader,
            child_ends,
        } = self;
        drop(child_ends);
        spec_writer.write_all(&spec)?;
        drop(spec_writer);
        Ok(ExecStatus(status_reader))
    }
}

/// Whether the app's exec succeeded.
pub struct ExecStatus(File);

/// What the layers reported on the way to a successful exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What Landlock enforced (`None` when it was not applied).
    pub landlock: Option<Enforcement>,
}

impl ExecStatus {
    /// Blocks until the app has exec'd (`Ok`) or a step failed (`Err`, naming the step).
    pub fn wait(mut self) -> Result<Report, StepError> {
        let mut buf = Vec::new();
        if let Err(e) = self.0.read_to_end(&mut buf) {
            return Err(StepError::io(Step::ReadSpec, e));
        }
        let mut report = Report::default();
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<StatusLine>(line) {
                Ok(StatusLine::Landlock(e)) => report.landlock = Some(e),
                Ok(StatusLine::Failed(e)) => return Err(e),
                Err(_) => {
                    return Err(StepError::msg(
                        Step::ReadSpec,
                        format!(
                            "the sandbox helper reported something unreadable: {}",
                            String::from_utf8_lossy(line)
                        ),
                    ));
                }
            }
        }
        Ok(report)
    }

    /// The raw descriptor, for callers that wait asynchronously.
    pub fn into_file(self) -> File {
        self.0
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn dup_above(fd: OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
