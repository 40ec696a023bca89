//! The daemon side of launching: start the zygote (see [`crate::zygote`]), and read what a
//! launch's status pipe says.
//!
//! A launch's status pipe carries JSON lines ([`StatusLine`]): what the layers report on the
//! way, or the step that failed. It is close-on-exec in the sandbox, so EOF without a failure
//! means the app's exec succeeded.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::{Step, StepError};
use crate::proto::{Report, SOCKET_FD, StatusLine};

/// Parses everything a status pipe carried (read to EOF).
pub fn parse_status(bytes: &[u8]) -> Result<Report, StepError> {
    let mut report = Report::default();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
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

/// Starts `helper` as a zygote and returns it with the daemon's end of its launch socket
/// (`SOCK_SEQPACKET`, close-on-exec). Call from a thread that lives as long as the daemon: the
/// zygote dies with the thread that started it (its parent-death signal).
pub fn spawn_zygote(helper: &Path) -> std::io::Result<(Child, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(helper);
    cmd.arg("--zygote")
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::null());
    // SAFETY: the closure only calls dup2 and prctl, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(theirs_fd, SOCKET_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    Ok((child, ours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::landlock::Enforcement;

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(parse_status(b""), Ok(Report::default()));
        let ok = b"{\"landlock\":\"full\"}\n";
        assert_eq!(parse_status(ok).unwrap().landlock, Some(Enforcement::Full));
        let failed = br#"{"failed":{"step":"pivot-root","message":"EINVAL","errno":22}}"#;
        let err = parse_status(failed).unwrap_err();
        assert_eq!(err.step, Step::PivotRoot);
        assert!(parse_status(b"garbage\n").is_err());
    }
}
