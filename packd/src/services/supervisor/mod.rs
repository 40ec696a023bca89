//! Who keeps a service's monitor running: the boundary between the service manager and the
//! processes it supervises.
//!
//! Every service runs under a monitor (`confine::monitor`): the process that is the sandbox's
//! parent, writes its log and keeps its exit status, so the service outlives packd. What
//! differs is who starts the monitor and whose child it is:
//!
//! - [`native::NativeSupervisor`] (the default): packd's zygote forks it, out of packd's
//!   session and cgroup (`PARENT/monitors`); an orphan once packd goes, it carries on;
//! - [`systemd::SystemdSupervisor`]: systemd starts it as a transient unit
//!   (`packd-PACK.APP.service`) through `org.freedesktop.systemd1` on D-Bus.
//!
//! Either way packd talks to the monitor on its control socket ([`SocketLink`]), finds it
//! there again after a restart ([`Supervisor::attach`]), and reads the record it leaves when
//! the sandbox is gone. The service manager knows only this trait; its unit tests use a fake.

#[cfg(test)]
pub mod fake;
pub mod native;
pub mod systemd;

use std::path::{Path, PathBuf};

use confine::SandboxSpec;
use confine::proto::{MonitorCommand, MonitorEvent, MonitorSpec};
use futures_util::future::BoxFuture;

use crate::paths::Paths;

/// The files of one service under `run/packd/services`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFiles {
    /// `PACK.APP`.
    pub name: String,
    /// The monitor's control socket.
    pub socket: PathBuf,
    /// What the monitor leaves when the sandbox is gone.
    pub exit_record: PathBuf,
    /// packd's record of the run (revision, cgroup), written before the monitor starts.
    pub record: PathBuf,
    /// The monitor's spec, for a monitor started from a file (systemd).
    pub spec: PathBuf,
}

impl UnitFiles {
    pub fn new(paths: &Paths, pack: &str, app: &str) -> UnitFiles {
        let dir = paths.services_dir();
        let name = format!("{pack}.{app}");
        UnitFiles {
            socket: dir.join(format!("{name}.socket")),
            exit_record: dir.join(format!("{name}.exit")),
            record: dir.join(format!("{name}.json")),
            spec: dir.join(format!("{name}.spec.json")),
            name,
        }
    }

    /// Every file but the record (which the caller removes last).
    pub fn remove_runtime(&self) {
        for f in [&self.socket, &self.exit_record, &self.spec] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// What starting a monitor takes.
pub struct StartRequest {
    pub files: UnitFiles,
    pub sandbox: SandboxSpec,
    pub monitor: MonitorSpec,
}

/// A link to a running monitor: its events, and commands to it.
pub trait MonitorLink: Send {
    /// The next event; `None` once the monitor is gone (or the link broke). Cancel-safe.
    fn next(&mut self) -> BoxFuture<'_, Option<MonitorEvent>>;
    /// Sends a command; an error means the monitor is gone.
    fn send(&mut self, command: MonitorCommand) -> std::io::Result<()>;
}

/// Why a monitor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The zygote could not fork it (its own words).
    #[error("{0}")]
    Zygote(String),
    #[error("cannot reach its monitor at {}: {source}", socket.display())]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Spec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot reach systemd on {bus}: {source} (run packd with --supervisor packd where \
         systemd is not the init system)"
    )]
    Bus { bus: String, source: zbus::Error },
    #[error("systemd cannot start {unit}: {source}")]
    Start { unit: String, source: zbus::Error },
    #[error("systemd's start job for {unit} ended {result:?} (see journalctl -u {unit})")]
    Job { unit: String, result: String },
    #[error("lost systemd while it started {unit}")]
    Lost { unit: String },
    #[error("systemd did not start {unit} within {} s", timeout.as_secs())]
    JobTimeout {
        unit: String,
        timeout: std::time::Duration,
    },
    #[error(
        "the monitor of {unit} did not answer at {} within {} s: {source} (see journalctl -u \
         {unit})",
        socket.display(),
        timeout.as_secs()
    )]
    Silent {
        unit: String,
        socket: PathBuf,
        timeout: std::time::Duration,
        source: std::io::Error,
    },
}

pub trait Supervisor: Send + Sync {
    /// `packd` or `systemd`, for logs and `pack services`.
    fn name(&self) -> &'static str;
    /// Starts the monitor; the link to it, once its control socket answers.
    fn start(
        &self,
        req: StartRequest,
    ) -> BoxFuture<'_, Result<Box<dyn MonitorLink>, SupervisorError>>;
    /// The link to the monitor of `files` if it still runs (after packd restarted).
    fn attach<'a>(&'a self, files: &'a UnitFiles) -> BoxFuture<'a, Option<Box<dyn MonitorLink>>>;
    /// Tidies what the backend keeps of a service that ended (systemd: a failed unit).
    fn forget<'a>(&'a self, files: &'a UnitFiles) -> BoxFuture<'a, ()>;
}

/// A monitor's control socket, as a tokio-polled `SOCK_SEQPACKET` connection.
pub struct SocketLink {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    buf: Vec<u8>,
}

impl SocketLink {
    /// Connects to the socket at `path` (fails at once when nothing listens there).
    pub fn connect(path: &Path) -> std::io::Result<SocketLink> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        // Polled by the runtime from here on.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: we own the descriptor outright and never hand out copies of it.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(SocketLink {
            fd,
            buf: vec![0u8; 64 << 10],
        })
    }
}

impl MonitorLink for SocketLink {
    fn next(&mut self) -> BoxFuture<'_, Option<MonitorEvent>> {
        Box::pin(async move {
            loop {
                let mut guard = self.fd.readable().await.ok()?;
                let got = guard.try_io(|fd| {
                    use std::os::fd::AsFd;
                    confine::proto::recv::<MonitorEvent>(fd.get_ref().as_fd(), &mut self.buf)
                });
                match got {
                    Ok(Ok(Some((event, _)))) => return Some(event),
                    Ok(Ok(None)) => return None,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "a bad message from a service monitor");
                        return None;
                    }
                    Err(_would_block) => continue,
                }
            }
        })
    }

    fn send(&mut self, command: MonitorCommand) -> std::io::Result<()> {
        use std::os::fd::AsFd;
        // A few bytes on an idle socket: a full queue means the monitor stopped reading.
        confine::proto::send_nowait(self.fd.get_ref().as_fd(), &command)
    }
}
