//! The daemon's end of the zygote (see `confine::zygote`): one task owns the launch socket,
//! sends launch requests, and routes the replies (started, failed, exited) to whoever waits.
//! A zygote that dies is started again at the next launch.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use confine::SandboxSpec;
use confine::zygote::{MAX_MESSAGE, Reply, Request, recv, send};
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

enum Outgoing {
    Launch {
        spec: Box<SandboxSpec>,
        fds: Vec<OwnedFd>,
        slot: Option<u64>,
        started: oneshot::Sender<Result<Started, String>>,
    },
    Prepare {
        slot: u64,
        dirs: Vec<PathBuf>,
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

    /// Asks the zygote to start `spec` with `fds` (stdin, stdout, stderr, status pipe), in the
    /// prepared `slot` if it is still there.
    pub async fn launch(
        &self,
        spec: SandboxSpec,
        fds: Vec<OwnedFd>,
        slot: Option<u64>,
    ) -> Result<Started, String> {
        let (started, rx) = oneshot::channel();
        self.send(Outgoing::Launch {
            spec: Box::new(spec),
            fds,
            slot,
            started,
        })
        .await?;
        rx.await
            .map_err(|_| "the sandbox helper stopped before starting the app".to_string())?
    }

    /// Asks the zygote to fork a slot that joins `dirs` (the cgroup of a future launch).
    pub async fn prepare(&self, slot: u64, dirs: Vec<PathBuf>) -> Result<(), String> {
        self.send(Outgoing::Prepare { slot, dirs }).await
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
    let mut starting: HashMap<u64, oneshot::Sender<Result<Started, String>>> = HashMap::new();
    let mut exits: HashMap<u64, oneshot::Sender<i32>> = HashMap::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                let (request, fds, started) = match out {
                    Outgoing::Launch { spec, fds, slot, started } => {
                        next_id += 1;
                        let request = Request::Launch { id: next_id, spec, slot };
                        (request, fds, Some(started))
                    }
                    Outgoing::Prepare { slot, dirs } => (Request::Prepare { slot, dirs }, Vec::new(), None),
                };
                let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
                let sent = sock
                    .async_io(Interest::WRITABLE, |fd| send(fd.as_fd(), &request, &raw))
                    .await;
                // Our copies go now: the zygote holds its own.
                drop(fds);
                match (sent, started) {
                    (Ok(()), Some(started)) => {
                        starting.insert(next_id, started);
                    }
                    (Ok(()), None) => {}
                    (Err(e), started) => {
                        if let Some(started) = started {
                            let _ = started.send(Err(format!("cannot reach the sandbox helper: {e}")));
                        }
                        break;
                    }
                }
            }
            reply = sock.async_io(Interest::READABLE, |fd| recv::<Reply>(fd.as_fd(), &mut buf)) => {
                match reply {
                    Ok(Some((Reply::Started { id, pid }, mut fds))) => {
                        let (exit_tx, exit_rx) = oneshot::channel();
                        let result = match fds.pop() {
                            Some(pidfd) => {
                                exits.insert(id, exit_tx);
                                Ok(Started { pid, pidfd, exited: exit_rx })
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
        let _ = tx.send(super::instance::EXIT_NOT_STARTED);
    }
    drop(sock);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = child.kill();
        let _ = child.wait();
    })
    .await;
}
