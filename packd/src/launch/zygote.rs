//! The daemon's end of the zygote (see `confine::zygote`): one task owns the launch socket,
//! sends launch and prepare requests, and routes the replies (started, prepared, failed,
//! exited) to whoever waits. A zygote that dies is started again at the next request.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use confine::SandboxSpec;
use confine::proto::{
    Frame, Handover, MAX_MESSAGE, MonitorSpec, Reply, Request, SlotReady, Template, TemplateReady,
    recv, send,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Mutex, mpsc, oneshot};

/// A supervisor the zygote started.
pub struct Started {
    pub pid: i32,
    /// Signals go through the pidfd: it cannot name a reused pid.
    pub pidfd: OwnedFd,
    /// The supervisor's exit code, once it exits.
    pub exited: oneshot::Receiver<i32>,
}

/// A prepared slot: a sandbox whose frame (cgroup, namespaces) is built, waiting for a spec.
/// Dropping it closes its socket, and the slot exits.
pub struct Slot {
    pub frame: Frame,
    sock: OwnedFd,
    started: Started,
}

impl Slot {
    /// Starts `spec` in this slot with `fds` (stdin, stdout, stderr, status pipe, exit pipe),
    /// its file system built as `template` says (for [`Template::Join`], the template follows),
    /// in the pack's network namespace when `net` (it comes last). Returns the supervisor and the slot's socket (a [`Template::Build`] answer
    /// comes on it); gives everything back when the slot cannot take it (it died, or its
    /// frame differs).
    #[allow(clippy::result_large_err)]
    pub fn hand_over(
        self,
        spec: SandboxSpec,
        fds: &[RawFd],
        template: Template,
        (net, caller_exit): (bool, bool),
    ) -> Result<(Started, OwnedFd), SandboxSpec> {
        if Frame::of(&spec) != self.frame {
            return Err(spec);
        }
        let msg = Handover {
            spec: Box::new(spec),
            template,
            net,
            caller_exit,
        };
        // The slot's socket is blocking and empty: one packet of a few KiB never waits.
        match send(self.sock.as_fd(), &msg, fds) {
            Ok(()) => Ok((self.started, self.sock)),
            Err(e) => {
                tracing::debug!(error = %e, "a prepared sandbox slot is gone");
                Err(*msg.spec)
            }
        }
    }
}

impl Slot {
    /// Waits (blocking) until the slot has built its frame and waits for a launch.
    pub fn wait_ready(&self) -> Result<(), String> {
        let mut buf = [0u8; 64];
        match recv::<SlotReady>(self.sock.as_fd(), &mut buf) {
            Ok(Some((SlotReady {}, _))) => Ok(()),
            Ok(None) => Err("it exited while preparing (see the log above)".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The template a slot sent on `sock` after [`Template::Build`], if it sent one. Call once the
/// app has started: the slot sends it before that, or never.
pub fn take_template(sock: &OwnedFd) -> Option<OwnedFd> {
    // SAFETY: fcntl on a descriptor we own; non-blocking, so a slot that sent nothing cannot
    // make us wait.
    unsafe {
        let flags = libc::fcntl(sock.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(sock.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut buf = [0u8; 64];
    match recv::<TemplateReady>(sock.as_fd(), &mut buf) {
        Ok(Some((TemplateReady {}, mut fds))) => fds.pop(),
        _ => None,
    }
}

enum Outgoing {
    Launch {
        spec: Box<SandboxSpec>,
        fds: Vec<OwnedFd>,
        /// The pack's network namespace, the caller's exit pipe (both last, in that order).
        extras: (bool, bool),
        reply: oneshot::Sender<Result<(Started, Vec<OwnedFd>), String>>,
    },
    Prepare {
        frame: Frame,
        reply: oneshot::Sender<Result<(Started, Vec<OwnedFd>), String>>,
    },
    Monitor {
        spec: Box<SandboxSpec>,
        monitor: Box<MonitorSpec>,
        reply: oneshot::Sender<Result<(Started, Vec<OwnedFd>), String>>,
    },
}

pub struct Zygote {
    helper: PathBuf,
    conn: Mutex<Option<mpsc::UnboundedSender<Outgoing>>>,
}

impl Zygote {
    /// Starts the zygote now. Call from a thread that lives as long as the daemon.
    pub fn start(helper: PathBuf) -> std::io::Result<Zygote> {
        let tx = connect(&helper)?;
        Ok(Zygote {
            helper,
            conn: Mutex::new(Some(tx)),
        })
    }

    /// Asks the zygote to start `spec` with `fds` (stdin, stdout, stderr, status pipe, exit
    /// pipe, then the pack's network namespace and the caller's exit pipe as `extras` say).
    pub async fn launch(
        &self,
        spec: SandboxSpec,
        fds: Vec<OwnedFd>,
        extras: (bool, bool),
    ) -> Result<Started, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Outgoing::Launch {
            spec: Box::new(spec),
            fds,
            extras,
            reply,
        })
        .await?;
        let (started, _) = rx
            .await
            .map_err(|_| "the sandbox helper stopped before starting the app".to_string())??;
        Ok(started)
    }

    /// Asks the zygote for a slot that builds `frame` now and takes a spec later.
    pub async fn prepare(&self, frame: Frame) -> Result<Slot, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Outgoing::Prepare {
            frame: frame.clone(),
            reply,
        })
        .await?;
        let (started, mut fds) = rx
            .await
            .map_err(|_| "the sandbox helper stopped before preparing a slot".to_string())??;
        let sock = fds
            .pop()
            .ok_or_else(|| "the sandbox helper sent no slot socket".to_string())?;
        Ok(Slot {
            frame,
            sock,
            started,
        })
    }

    /// Asks the zygote to start a service's monitor (see `confine::monitor`), which runs
    /// `spec` and outlives the zygote. Its control socket listens when this returns.
    pub async fn monitor(
        &self,
        spec: SandboxSpec,
        monitor: MonitorSpec,
    ) -> Result<Started, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Outgoing::Monitor {
            spec: Box::new(spec),
            monitor: Box::new(monitor),
            reply,
        })
        .await?;
        let (started, _) = rx
            .await
            .map_err(|_| "the sandbox helper stopped before starting the monitor".to_string())??;
        Ok(started)
    }

    async fn send(&self, mut out: Outgoing) -> Result<(), String> {
        for _ in 0..2 {
            let tx = {
                let mut conn = self.conn.lock().await;
                match conn.as_ref() {
                    Some(tx) if !tx.is_closed() => tx.clone(),
                    _ => {
                        tracing::warn!("the sandbox zygote is gone; starting a new one");
                        let tx = connect(&self.helper)
                            .map_err(|e| format!("cannot start the sandbox helper: {e}"))?;
                        *conn = Some(tx.clone());
                        tx
                    }
                }
            };
            match tx.send(out) {
                Ok(()) => return Ok(()),
                // It died between the check and the send: retry with a new one.
                Err(mpsc::error::SendError(back)) => out = back,
            }
        }
        Err("the sandbox helper keeps stopping".into())
    }
}

/// Starts a zygote and the task that talks to it.
fn connect(helper: &std::path::Path) -> std::io::Result<mpsc::UnboundedSender<Outgoing>> {
    let (child, sock) = confine::spawn_zygote(helper)?;
    // Our end is polled by the runtime: non-blocking (the zygote's end stays blocking).
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(sock.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(sock.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    // SAFETY: we own the descriptor outright and never hand out copies of it.
    let sock = unsafe { AsyncFd::register(sock) }.map_err(std::io::Error::from)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(sock, rx, child));
    Ok(tx)
}

async fn run(
    sock: AsyncFd<OwnedFd>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    mut child: std::process::Child,
) {
    let mut next_id = 0u64;
    type Waiting = oneshot::Sender<Result<(Started, Vec<OwnedFd>), String>>;
    let mut starting: HashMap<u64, Waiting> = HashMap::new();
    let mut exits: HashMap<u64, oneshot::Sender<i32>> = HashMap::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                next_id += 1;
                let id = next_id;
                let (request, fds, reply) = match out {
                    Outgoing::Launch { spec, fds, extras: (net, caller_exit), reply } => {
                        (Request::Launch { id, spec, net, caller_exit }, fds, reply)
                    }
                    Outgoing::Prepare { frame, reply } => (Request::Prepare { id, frame }, Vec::new(), reply),
                    Outgoing::Monitor { spec, monitor, reply } => {
                        (Request::Monitor { id, spec, monitor }, Vec::new(), reply)
                    }
                };
                let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
                let sent = sock
                    .async_io(Interest::WRITABLE, |fd| send(fd.as_fd(), &request, &raw))
                    .await;
                // Our copies go now: the zygote holds its own.
                drop(fds);
                match sent {
                    Ok(()) => {
                        starting.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot reach the sandbox helper: {e}")));
                        break;
                    }
                }
            }
            reply = sock.async_io(Interest::READABLE, |fd| recv::<Reply>(fd.as_fd(), &mut buf)) => {
                match reply {
                    Ok(Some((Reply::Started { id, pid } | Reply::Prepared { id, pid }, mut fds))) => {
                        // The pidfd comes last, after a slot's socket.
                        let result = match fds.pop() {
                            Some(pidfd) => {
                                let (exit_tx, exited) = oneshot::channel();
                                exits.insert(id, exit_tx);
                                Ok((Started { pid, pidfd, exited }, fds))
                            }
                            None => Err("the sandbox helper sent no pidfd".to_string()),
                        };
                        if let Some(tx) = starting.remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Ok(Some((Reply::Failed { id, error }, _))) => {
                        if let Some(tx) = starting.remove(&id) {
                            let _ = tx.send(Err(error));
                        }
                    }
                    Ok(Some((Reply::Exited { id, code }, _))) => {
                        if let Some(tx) = exits.remove(&id) {
                            let _ = tx.send(code);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "bad message from the sandbox helper");
                        break;
                    }
                }
            }
        }
    }
    // The zygote is gone (its sandboxes died with it): tell everyone waiting.
    for (_, tx) in starting {
        let _ = tx.send(Err("the sandbox helper stopped".into()));
    }
    for (_, tx) in exits {
        let _ = tx.send(packd_api::exit::NOT_STARTED);
    }
    drop(sock);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = child.kill();
        let _ = child.wait();
    })
    .await;
}
