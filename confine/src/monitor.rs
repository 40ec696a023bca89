//! A service's monitor: one small, single-threaded process per running service that outlives
//! the daemon (podman's `conmon` plays the same part). packd is restarted, upgraded or killed
//! far more often than its services should be; the monitor is what the service's lifeline
//! hangs on instead:
//!
//! - it is the parent of the sandbox's supervisor (which dies with it), so it alone reaps it
//!   and knows its status, whether packd is there or not;
//! - it holds the read end of the service's stdout and stderr and writes every line to the
//!   service's log itself ([`crate::logfile`]): the service never writes into a pipe whose
//!   reader has died (no SIGPIPE, no blocked writer), and no line is lost while packd is away;
//! - it holds the launch's status and exit pipes and a `notify` service's `NOTIFY_SOCKET`, so
//!   whether the service started, became ready or exited is known to a packd that comes back;
//! - it answers on a control socket ([`MonitorSpec::socket`]): every client first gets a
//!   [`MonitorEvent::Status`], then the events as they happen; clients send
//!   [`MonitorCommand`]s (signals, log notes);
//! - when the sandbox is gone it writes an [`ExitRecord`] next to the socket, tells whoever
//!   is connected, and exits.
//!
//! Started by the zygote ([`Request::Monitor`](crate::proto::Request::Monitor)), which binds the
//! control socket before forking it so that packd can connect at once, or by systemd as
//! `pack-confine --monitor FILE` (a transient unit per service), binding the socket itself.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};

use crate::helper::{Source, close_range, take_launch_fds};
use crate::logfile::LogFile;
use crate::proto::{
    self, EXIT_SETUP_FAILED, Exec, ExitRecord, Frame, MonitorCommand, MonitorEvent, MonitorSpec,
    MonitorStatus,
};
use crate::spec::SandboxSpec;
use crate::steps::signals;

/// The longest line kept whole; a longer one is cut into pieces of this size.
const MAX_LINE: usize = 16 << 10;
/// How long the output may still come in after the sandbox is gone (only a sandbox sharing the
/// host's pid namespace can leave writers behind).
const DRAIN: i32 = 1000;

/// Binds the control socket at `path` (replacing a stale one), root's alone.
pub fn listen(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    nix::sys::socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    nix::sys::socket::listen(&fd, Backlog::new(8)?)?;
    Ok(fd)
}

/// Points standard input, output and error at `/dev/null` (a monitor forked by the zygote
/// would otherwise keep the daemon's, which may be a pipe whose reader goes with the daemon).
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of a descriptor we own onto the standard ones.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// `pack-confine --monitor FILE`: the monitor as systemd starts it, its spec and the sandbox's
/// in `FILE` (`{"monitor": …, "sandbox": …}`).
pub fn main_from_file(file: &Path) -> i32 {
    #[derive(serde::Deserialize)]
    struct Both {
        monitor: MonitorSpec,
        sandbox: SandboxSpec,
    }
    let both: Both = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(both) => both,
        Err(e) => {
            crate::error::diag(&format!(
                "cannot read the monitor spec {}: {e}",
                file.display()
            ));
            return 2;
        }
    };
    // Nothing inherited reaches the sandbox.
    close_range(3, u32::MAX);
    match listen(&both.monitor.socket) {
        Ok(listener) => run(&both.monitor, &both.sandbox, listener),
        Err(e) => {
            crate::error::diag(&format!(
                "cannot listen on {}: {e}",
                both.monitor.socket.display()
            ));
            EXIT_SETUP_FAILED
        }
    }
}

/// The monitor: start the sandbox, then keep it until it is gone. Returns the exit status of
/// the monitor itself (0 once the sandbox's end is recorded).
pub fn run(spec: &MonitorSpec, sandbox: &SandboxSpec, listener: OwnedFd) -> i32 {
    // Out of the daemon's session (a terminal's signals are not ours) and, when asked, out of
    // its cgroup.
    let _ = nix::unistd::setsid();
    if let Some(cg) = &spec.cgroup
        && let Err(e) = crate::cgroup::join(&cg.dirs)
    {
        crate::error::diag(&format!("monitor {}: {e}", spec.name));
        return EXIT_SETUP_FAILED;
    }
    let mut log = LogFile::new(spec.log.clone(), spec.rotate_at);
    match Monitor::start(spec, sandbox, listener) {
        Ok(mut m) => m.serve(&mut log),
        Err(e) => {
            log.note(&format!("cannot start: {e}"));
            let record = ExitRecord {
                name: spec.name.clone(),
                code: EXIT_SETUP_FAILED,
                app_exit: None,
                exec: Exec::Failed {
                    error: crate::StepError::msg(crate::Step::Fork, e),
                },
                ready: false,
                ended_at: now(),
            };
            write_record(&spec.exit_record, &record);
            let _ = std::fs::remove_file(&spec.socket);
            0
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes the record atomically (a temporary file, then a rename).
fn write_record(path: &Path, record: &ExitRecord) {
    let tmp = path.with_extension("exit.tmp");
    let written = serde_json::to_vec(record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        crate::error::diag(&format!("cannot write {}: {e}", path.display()));
    }
}

struct Monitor<'a> {
    spec: &'a MonitorSpec,
    listener: OwnedFd,
    signals: SignalFd,
    sandbox_pid: libc::pid_t,
    clients: Vec<OwnedFd>,
    /// Closed (None) once read to the end.
    output: Option<OwnedFd>,
    status: Option<OwnedFd>,
    exit: Option<OwnedFd>,
    notify: Option<UnixDatagram>,
    /// What the status pipe said so far.
    status_bytes: Vec<u8>,
    /// A line of output without its end yet.
    partial: Vec<u8>,
    exec: Exec,
    ready: bool,
    app_exit: Option<i32>,
    /// The supervisor's status once reaped.
    code: Option<i32>,
}

impl<'a> Monitor<'a> {
    /// Binds the notify socket, makes the pipes and forks the sandbox's supervisor.
    fn start(
        spec: &'a MonitorSpec,
        sandbox: &SandboxSpec,
        listener: OwnedFd,
    ) -> Result<Monitor<'a>, String> {
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGPIPE,
        ] {
            mask.add(s);
        }
        mask.thread_block()
            .map_err(|e| format!("cannot block signals: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("cannot make a signalfd: {e}"))?;
        let notify =
            match &spec.notify {
                Some(path) => Some(bind_notify(path).map_err(|e| {
                    format!("cannot bind the notify socket {}: {e}", path.display())
                })?),
                None => None,
            };
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let pipe = || nix::unistd::pipe2(cloexec).map_err(|e| format!("cannot make a pipe: {e}"));
        let (out_r, out_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let (exit_r, exit_w) = pipe()?;
        let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let net = match &spec.net {
            Some(path) => Some(OwnedFd::from(std::fs::File::open(path).map_err(|e| {
                format!("cannot open the network namespace {}: {e}", path.display())
            })?)),
            None => None,
        };
        let err_w = out_w
            .try_clone()
            .map_err(|e| format!("cannot copy a descriptor: {e}"))?;
        let mut fds = vec![null.into(), out_w, err_w, status_w, exit_w];
        let has_net = net.is_some();
        fds.extend(net);
        // SAFETY: single-threaded; the child only sets up descriptors and runs the supervisor.
        let pid = match unsafe { libc::fork() } {
            -1 => return Err(format!("cannot fork: {}", std::io::Error::last_os_error())),
            0 => {
                // SAFETY: prctl with integer arguments: the sandbox dies with its monitor.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                signals::restore(&signals::empty());
                let code = match take_launch_fds(fds, false, has_net, false, None) {
                    Ok(extras) => crate::helper::supervise(
                        &Frame::of(sandbox),
                        Source::Given {
                            spec: sandbox,
                            net: extras.net,
                        },
                    ),
                    Err(e) => {
                        crate::error::diag(&e.to_string());
                        EXIT_SETUP_FAILED
                    }
                };
                // SAFETY: leaving the forked child without running the monitor's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => pid,
        };
        drop(fds);
        Ok(Monitor {
            spec,
            listener,
            signals,
            sandbox_pid: pid,
            clients: Vec::new(),
            output: Some(out_r),
            status: Some(status_r),
            exit: Some(exit_r),
            notify,
            status_bytes: Vec::new(),
            partial: Vec::new(),
            exec: Exec::Pending,
            ready: false,
            app_exit: None,
            code: None,
        })
    }

    fn status(&self, log: &LogFile) -> MonitorStatus {
        MonitorStatus {
            name: self.spec.name.clone(),
            monitor_pid: std::process::id() as i32,
            sandbox_pid: self.sandbox_pid,
            exec: self.exec.clone(),
            ready: self.ready,
            app_exit: self.app_exit,
            lost_lines: log.lost(),
        }
    }

    fn broadcast(&mut self, event: &MonitorEvent) {
        // A client that cannot take it (gone, or not reading) is dropped: it finds the state
        // again when it reconnects.
        self.clients
            .retain(|c| proto::send_nowait(c.as_fd(), event).is_ok());
    }

    /// Until the sandbox is gone and its output read.
    fn serve(&mut self, log: &mut LogFile) -> i32 {
        let mut drain_deadline: Option<std::time::Instant> = None;
        loop {
            if self.code.is_some() && self.output.is_none() {
                break;
            }
            let timeout = match drain_deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    left.as_millis() as i32 + 1
                }
                None => -1,
            };
            let mut polled = Polled::default();
            let mut pollfds = Vec::new();
            let mut add = |fd: BorrowedFd<'_>, slot: &mut Option<usize>| {
                *slot = Some(pollfds.len());
                pollfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            };
            add(self.signals.as_fd(), &mut polled.signals);
            add(self.listener.as_fd(), &mut polled.listener);
            if let Some(fd) = &self.output {
                add(fd.as_fd(), &mut polled.output);
            }
            if let Some(fd) = &self.status {
                add(fd.as_fd(), &mut polled.status);
            }
            if let Some(fd) = &self.exit {
                add(fd.as_fd(), &mut polled.exit);
            }
            if let Some(s) = &self.notify {
                add(s.as_fd(), &mut polled.notify);
            }
            let first_client = pollfds.len();
            for c in &self.clients {
                pollfds.push(libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: poll on descriptors we own, for the length of the vector.
            let n =
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue; // EINTR
            }
            let ready = |slot: Option<usize>| slot.is_some_and(|i| pollfds[i].revents != 0);
            if ready(polled.signals) {
                self.on_signals(log);
                if self.code.is_some() && drain_deadline.is_none() {
                    drain_deadline = Some(
                        std::time::Instant::now() + std::time::Duration::from_millis(DRAIN as u64),
                    );
                }
            }
            if ready(polled.status) {
                self.on_status(log);
            }
            if ready(polled.exit) {
                self.on_exit();
            }
            if ready(polled.output) {
                self.on_output(log);
            }
            if ready(polled.notify) {
                self.on_notify();
            }
            let readable: Vec<usize> = (first_client..pollfds.len())
                .filter(|i| pollfds[*i].revents != 0)
                .map(|i| i - first_client)
                .collect();
            self.on_clients(&readable, log);
            if ready(polled.listener) {
                self.accept(log);
            }
        }
        self.finish(log)
    }

    fn on_signals(&mut self, log: &mut LogFile) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match info.ssi_signo as i32 {
                libc::SIGCHLD => self.reap(),
                // The system is going down (or someone asked the monitor): the service is
                // asked to stop, as systemd would; its end is recorded as usual.
                libc::SIGTERM | libc::SIGINT => {
                    log.note("the monitor was asked to stop; stopping the service");
                    // SAFETY: our own unreaped child.
                    unsafe { libc::kill(self.sandbox_pid, libc::SIGTERM) };
                }
                _ => {}
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if pid == self.sandbox_pid {
                self.code = Some(signals::exit_code(status));
            }
        }
    }

    fn on_status(&mut self, log: &mut LogFile) {
        let Some(fd) = &self.status else { return };
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => {
                self.status = None;
                self.exec = match crate::launch::parse_status(&self.status_bytes) {
                    Ok(report) => {
                        log.note("started");
                        Exec::Started { report }
                    }
                    Err(error) => {
                        log.note(&format!("cannot start: {error}"));
                        Exec::Failed { error }
                    }
                };
                let event = MonitorEvent::Exec(self.exec.clone());
                self.broadcast(&event);
            }
            Ok(n) => self.status_bytes.extend_from_slice(&buf[..n]),
        }
    }

    fn on_exit(&mut self) {
        let Some(fd) = &self.exit else { return };
        let mut buf = [0u8; 4];
        // Four bytes in one pipe write: all or nothing (EOF when the init died without a word).
        let n = nix::unistd::read(fd, &mut buf).unwrap_or(0);
        self.exit = None;
        if n == buf.len() {
            let code = i32::from_le_bytes(buf);
            self.app_exit = Some(code);
            self.broadcast(&MonitorEvent::AppExited { code });
        }
    }

    fn on_output(&mut self, log: &mut LogFile) {
        let Some(fd) = &self.output else { return };
        let mut buf = vec![0u8; 64 << 10];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => {
                self.output = None;
                if !self.partial.is_empty() {
                    log.line(&std::mem::take(&mut self.partial));
                }
            }
            Ok(n) => {
                for b in &buf[..n] {
                    if *b == b'\n' {
                        log.line(&std::mem::take(&mut self.partial));
                    } else {
                        self.partial.push(*b);
                        if self.partial.len() >= MAX_LINE {
                            log.line(&std::mem::take(&mut self.partial));
                        }
                    }
                }
            }
        }
    }

    fn on_notify(&mut self) {
        let Some(sock) = &self.notify else { return };
        let mut buf = [0u8; 4096];
        let Ok(n) = sock.recv(&mut buf) else { return };
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.lines().any(|l| l.trim() == "READY=1") {
            self.ready = true;
            // Nothing reads it after READY=1: closed, so later notifications fail at once
            // rather than fill its queue and block the service.
            self.notify = None;
            if let Some(path) = &self.spec.notify {
                let _ = std::fs::remove_file(path);
            }
            self.broadcast(&MonitorEvent::Ready);
        }
    }

    fn accept(&mut self, log: &LogFile) {
        // SAFETY: accept4 on our listening socket; the new descriptor is ours.
        let fd = unsafe {
            libc::accept4(
                self.listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return;
        }
        // SAFETY: a fresh descriptor from accept4.
        let client = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let status = MonitorEvent::Status(self.status(log));
        if proto::send_nowait(client.as_fd(), &status).is_ok() {
            self.clients.push(client);
        }
    }

    fn on_clients(&mut self, readable: &[usize], log: &mut LogFile) {
        let mut gone = Vec::new();
        let mut buf = vec![0u8; 8192];
        for &i in readable {
            match proto::recv::<MonitorCommand>(self.clients[i].as_fd(), &mut buf) {
                Ok(Some((MonitorCommand::Signal { signal }, _))) if (1..=64).contains(&signal) => {
                    // Only while it is not reaped: until then the pid is our child's (a zombie
                    // at worst), never someone else's.
                    if self.code.is_none() {
                        // SAFETY: kill with our own unreaped child's pid.
                        unsafe { libc::kill(self.sandbox_pid, signal) };
                    }
                }
                Ok(Some((MonitorCommand::Note { message }, _))) => log.note(&message),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
    }

    /// Records the end, tells the clients, and goes.
    fn finish(&mut self, log: &mut LogFile) -> i32 {
        let code = self.code.unwrap_or(EXIT_SETUP_FAILED);
        // Everything that wrote to the status pipe is gone: it reaches its end.
        while self.status.is_some() {
            self.on_status(log);
        }
        log.note(&format!("exited with status {code}"));
        let record = ExitRecord {
            name: self.spec.name.clone(),
            code,
            app_exit: self.app_exit,
            exec: self.exec.clone(),
            ready: self.ready,
            ended_at: now(),
        };
        write_record(&self.spec.exit_record, &record);
        // The socket goes before the clients hear of the end: whoever connects afterwards
        // finds the record instead.
        let _ = std::fs::remove_file(&self.spec.socket);
        if let Some(path) = &self.spec.notify
            && self.notify.is_some()
        {
            let _ = std::fs::remove_file(path);
        }
        self.broadcast(&MonitorEvent::Gone(record));
        0
    }
}

#[derive(Default)]
struct Polled {
    signals: Option<usize>,
    listener: Option<usize>,
    output: Option<usize>,
    status: Option<usize>,
    exit: Option<usize>,
    notify: Option<usize>,
}

fn bind_notify(path: &Path) -> std::io::Result<UnixDatagram> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let sock = UnixDatagram::bind(path)?;
    sock.set_nonblocking(true)?;
    // The service may run as any user of its sandbox; only its sandbox can reach it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(sock)
}
