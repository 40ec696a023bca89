//! The typed messages between packd and the `pack-confine` processes, and the fixed descriptor
//! numbers of a launch. One module that the zygote, the sandbox's processes and the service
//! monitor all use, so none of them imports another.
//!
//! Every channel is a `SOCK_SEQPACKET` socket carrying one JSON message per packet, with
//! descriptors attached (`SCM_RIGHTS`) where a message says so:
//!
//! - daemon ⇄ zygote: [`Request`] / [`Reply`] (see [`crate::zygote`]);
//! - daemon → prepared slot: [`Handover`]; slot → daemon: [`SlotReady`], [`TemplateReady`];
//! - daemon ⇄ service monitor: [`MonitorCommand`] / [`MonitorEvent`] (see [`crate::monitor`]).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::spec::{CgroupJoin, Namespaces, SandboxSpec};
use crate::steps::landlock::Enforcement;

/// Largest message (a spec is a few KiB).
pub const MAX_MESSAGE: usize = 1 << 20;

// ---- descriptor numbers ------------------------------------------------------------------

/// The zygote's launch socket.
pub const SOCKET_FD: i32 = 3;
/// The descriptor a prepared slot receives its launch on.
pub const SLOT_FD: i32 = 3;
/// The descriptor step errors are written to (close-on-exec: EOF means the exec succeeded).
pub const STATUS_FD: i32 = 4;
/// The descriptor the init writes the app's exit status to (four bytes, little-endian) the
/// moment the app exits: nobody need wait for the namespaces to be torn down.
pub const EXIT_FD: i32 = 5;
/// The descriptor a launch's mount template is put on, when it comes with one.
pub const TEMPLATE_FD: i32 = 6;
/// The descriptor the pack's network namespace is put on, when it comes with the launch.
pub const NET_FD: i32 = 7;
/// The caller's own exit pipe, when it sent one (`pack run`): the init writes the app's status
/// there too, so the caller learns it without a detour through the daemon.
pub const CALLER_EXIT_FD: i32 = 8;
/// The descriptors of a launch, in the order they are sent: stdin, stdout, stderr, the status
/// pipe and the exit pipe.
pub const LAUNCH_FDS: [i32; 5] = [0, 1, 2, STATUS_FD, EXIT_FD];

// ---- exit codes --------------------------------------------------------------------------

/// Exit status when the sandbox could not be built (as `docker run` uses 125).
pub const EXIT_SETUP_FAILED: i32 = 125;
/// The command exists but cannot be executed (as a shell reports).
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command does not exist (as a shell reports).
pub const EXIT_NOT_FOUND: i32 = 127;

// ---- the wire ----------------------------------------------------------------------------

/// Sends `msg` with `fds` as one packet.
pub fn send<T: Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> std::io::Result<()> {
    send_flags(sock, msg, fds, MsgFlags::empty())
}

/// [`send`] without waiting: a peer whose queue is full gets `EAGAIN` rather than a blocked
/// sender (the monitor never waits for packd).
pub fn send_nowait<T: Serialize>(sock: BorrowedFd<'_>, msg: &T) -> std::io::Result<()> {
    send_flags(sock, msg, &[], MsgFlags::MSG_DONTWAIT)
}

fn send_flags<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[RawFd],
    flags: MsgFlags,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL | flags,
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

// ---- launches ----------------------------------------------------------------------------

/// What a sandbox is made of before its spec is known: the cgroup it joins and the namespaces
/// it gets. A prepared slot builds its frame ahead of time and accepts only a spec with the
/// same frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Frame {
    pub cgroup: Option<CgroupJoin>,
    pub namespaces: Namespaces,
}

impl Frame {
    pub fn of(spec: &SandboxSpec) -> Frame {
        Frame {
            cgroup: spec.cgroup.clone(),
            namespaces: spec.namespaces,
        }
    }
}

/// One line on a launch's status pipe: a failed step, or what a layer reports before exec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusLine {
    Failed(StepError),
    Landlock(Enforcement),
}

/// What the layers reported on the way to a successful exec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// What Landlock enforced (`None` when it was not applied).
    #[serde(default)]
    pub landlock: Option<Enforcement>,
}

/// daemon → zygote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Start `spec` now, with the five [`LAUNCH_FDS`]; with `net`, a sixth descriptor is the
    /// pack's network namespace.
    Launch {
        id: u64,
        spec: Box<SandboxSpec>,
        #[serde(default)]
        net: bool,
        /// The caller's exit pipe comes last (see [`CALLER_EXIT_FD`]).
        #[serde(default)]
        caller_exit: bool,
    },
    /// Fork a slot that builds `frame` and waits for a [`Handover`].
    Prepare { id: u64, frame: Frame },
    /// Start a service: a [`crate::monitor`] process, not the zygote's to keep (it outlives
    /// the zygote and the daemon), that runs `spec` and keeps its output, readiness and exit.
    /// No descriptors: everything it needs is named by path in `monitor`.
    Monitor {
        id: u64,
        spec: Box<SandboxSpec>,
        monitor: Box<MonitorSpec>,
    },
}

/// zygote → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// A launch's supervisor (or a service's monitor) runs; its pidfd comes attached.
    Started {
        id: u64,
        pid: i32,
    },
    /// A slot runs; its socket and pidfd come attached.
    Prepared {
        id: u64,
        pid: i32,
    },
    Failed {
        id: u64,
        error: String,
    },
    /// A supervisor, slot or monitor the zygote forked has exited.
    Exited {
        id: u64,
        code: i32,
    },
}

/// The launch a prepared slot waits for, sent by the daemon on the slot's socket with the
/// five [`LAUNCH_FDS`], then the template for [`Template::Join`], the network namespace for
/// `net` and the caller's exit pipe for `caller_exit`. The spec's frame must be the slot's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handover {
    pub spec: Box<SandboxSpec>,
    #[serde(default)]
    pub template: Template,
    #[serde(default)]
    pub net: bool,
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

// ---- service monitors --------------------------------------------------------------------

/// What a service's monitor keeps, all named by host path so that a monitor started by
/// systemd (from a file) and one forked by the zygote are the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MonitorSpec {
    /// `PACK.APP`, for messages.
    pub name: String,
    /// Its control socket (`SOCK_SEQPACKET`), where packd finds it again after a restart.
    pub socket: PathBuf,
    /// The service's log: every line of its stdout and stderr, timestamped.
    pub log: PathBuf,
    /// Rotate the log to `LOG.1` past this size.
    pub rotate_at: u64,
    /// Written (atomically) when the sandbox is gone: an [`ExitRecord`], for a packd that was
    /// away when it happened.
    pub exit_record: PathBuf,
    /// A `notify` service's `NOTIFY_SOCKET` (a datagram socket the monitor binds and reads).
    #[serde(default)]
    pub notify: Option<PathBuf>,
    /// The pack's network namespace, pinned at this path, for the sandbox to join.
    #[serde(default)]
    pub net: Option<PathBuf>,
    /// Where the monitor itself goes (native supervision): out of the daemon's cgroup, so
    /// that stopping the daemon's unit does not take the services with it.
    #[serde(default)]
    pub cgroup: Option<CgroupJoin>,
}

/// How far the sandbox got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum Exec {
    /// Still being built.
    #[default]
    Pending,
    /// The command was exec'd.
    Started { report: Report },
    /// A step failed; the command never ran.
    Failed { error: StepError },
}

/// A monitor's state, sent to every client that connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MonitorStatus {
    pub name: String,
    pub monitor_pid: i32,
    /// The sandbox's supervisor (host pid namespace); signals to it reach the service.
    pub sandbox_pid: i32,
    pub exec: Exec,
    /// A `notify` service said `READY=1`.
    pub ready: bool,
    /// The command's status once it exited (the sandbox of a `forking` service lasts longer).
    pub app_exit: Option<i32>,
    /// Output lines that could not be written to the log so far.
    pub lost_lines: u64,
}

/// How a sandbox ended, kept on disk by its monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExitRecord {
    pub name: String,
    /// The supervisor's status: the app's (the last process's for `forking`), or 128 + the
    /// signal that ended it.
    pub code: i32,
    pub app_exit: Option<i32>,
    pub exec: Exec,
    pub ready: bool,
    /// Seconds since the epoch.
    pub ended_at: u64,
}

/// monitor → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum MonitorEvent {
    /// First, to every client.
    Status(MonitorStatus),
    Exec(Exec),
    Ready,
    AppExited {
        code: i32,
    },
    /// The sandbox is gone; the monitor exits after this.
    Gone(ExitRecord),
}

/// daemon → monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum MonitorCommand {
    /// Send `signal` to the sandbox's supervisor, which passes it on.
    Signal { signal: i32 },
    /// Write `[packd] MESSAGE` into the log (the monitor is its only writer while it runs).
    Note { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_over_a_socket() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        use std::os::fd::AsFd;
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let event = MonitorEvent::AppExited { code: 3 };
        send(a.as_fd(), &event, &[]).unwrap();
        let mut buf = vec![0u8; 1024];
        let (got, fds) = recv::<MonitorEvent>(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(got, event);
        assert!(fds.is_empty());
        drop(a);
        assert!(recv::<MonitorEvent>(b.as_fd(), &mut buf).unwrap().is_none());
    }

    #[test]
    fn events_serialize_in_kebab_case() {
        let json = serde_json::to_value(MonitorEvent::AppExited { code: 1 }).unwrap();
        assert_eq!(json, serde_json::json!({"app-exited": {"code": 1}}));
        let exec = serde_json::to_value(Exec::Started {
            report: Report::default(),
        })
        .unwrap();
        assert_eq!(
            exec,
            serde_json::json!({"started": {"report": {"landlock": null}}})
        );
    }
}
