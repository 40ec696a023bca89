//! `POST /v2/run`: the daemon starts the app for the caller. No setuid binary is involved:
//!
//! 1. the client posts a [`RunRequest`] asking to upgrade to [`RUN_PROTOCOL`];
//! 2. the daemon resolves the app and builds its sandbox spec, then answers 101 (or an error);
//! 3. the client sends its stdin, stdout and stderr over the socket (SCM_RIGHTS);
//! 4. the daemon spawns `pack-confine` with them and reports [`RunEvent`]s (started, exit);
//!    the client relays signals as [`RunControl`] messages. A client that goes away takes the
//!    app with it.

use std::os::fd::AsFd;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use confine::{SandboxSpec, Stdio3};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::Child;

use super::Peer;
use super::fdpass::recv_fds;
use super::response::{ApiError, ApiResult};
use super::types::{RUN_PROTOCOL, RunControl, RunEvent, RunRequest};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::launch::{self, AppRef, Invocation};

pub async fn run(
    State(d): State<Arc<Daemon>>,
    Extension(peer): Extension<Peer>,
    mut req: Request,
) -> ApiResult {
    let upgrade_ok = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes() == RUN_PROTOCOL.as_bytes());
    if !upgrade_ok {
        return Err(ApiError::bad_request(format!(
            "/v2/run needs 'Upgrade: {RUN_PROTOCOL}'; use 'pack run'"
        )));
    }
    // Running as another user arrives with the confinement work (issue: users).
    peer.require_root("running an app (for now)")?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request: {e}")))?;
    let rr: RunRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid run request: {e}")))?;
    let target: AppRef = rr.target.parse()?;
    let resolved = d.store.read(|s| launch::resolve(s, &target))?;
    let tmp = launch::prepare_private_tmp(&d.paths, &resolved.name)?;
    let inv = Invocation {
        args: rr.args,
        env: rr.env,
        cwd: rr.cwd,
        uid: peer.uid,
        gid: peer.gid,
        groups: Vec::new(),
    };
    let spec = launch::build_spec(&d.paths, &resolved, &inv, &tmp, &d.hostname)?;
    let helper = d.config.confine_helper.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let parts = match upgraded.downcast::<TokioIo<UnixStream>>() {
                    Ok(parts) if parts.read_buf.is_empty() => parts,
                    _ => {
                        tracing::warn!("run: unexpected connection state after the upgrade");
                        return;
                    }
                };
                session(parts.io.into_inner(), spec, helper).await;
            }
            Err(e) => tracing::warn!(error = %e, "run: upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, RUN_PROTOCOL)
        .header(header::CONNECTION, "upgrade")
        .body(Body::empty())
        .map_err(|e| Error::Internal(format!("cannot build the response: {e}")).into())
}

async fn send(w: &mut OwnedWriteHalf, event: &RunEvent) {
    if let Ok(mut line) = serde_json::to_vec(event) {
        line.push(b'\n');
        let _ = w.write_all(&line).await;
    }
}

/// One app run, from the client's descriptors to its exit status.
async fn session(stream: UnixStream, spec: SandboxSpec, helper: std::path::PathBuf) {
    let label = spec.label.clone();
    let fds = loop {
        if let Err(e) = stream.readable().await {
            tracing::warn!(error = %e, "run: socket failed");
            return;
        }
        match stream.try_io(tokio::io::Interest::READABLE, || {
            recv_fds(stream.as_fd(), 3)
        }) {
            Ok(fds) => break fds,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!(error = %e, "run: no descriptors from the client");
                return;
            }
        }
    };
    let (read, mut write) = stream.into_split();
    let mut fds = fds.into_iter();
    let (Some(stdin), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next()) else {
        return;
    };
    let started = start(
        &helper,
        &spec,
        Stdio3 {
            stdin,
            stdout,
            stderr,
        },
    )
    .await;
    let mut child = match started {
        Ok(child) => child,
        Err((message, code)) => {
            tracing::info!(app = %label, %message, "run: app did not start");
            send(&mut write, &RunEvent::Error { message, code }).await;
            return;
        }
    };
    send(&mut write, &RunEvent::Started).await;
    let pid = child.id();
    let mut lines = BufReader::new(read).lines();
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = status.map(exit_code).unwrap_or(125);
                send(&mut write, &RunEvent::Exit { code }).await;
                return;
            }
            line = lines.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str::<RunControl>(&line) {
                    Ok(RunControl::Signal { signal }) if (1..=64).contains(&signal) => {
                        if let Some(pid) = pid {
                            // SAFETY: signalling the helper we spawned and still own.
                            unsafe { libc::kill(pid as i32, signal) };
                        }
                    }
                    _ => tracing::debug!(%line, "run: ignoring an unknown control message"),
                },
                // The client is gone: so is the app (the init dies with the supervisor).
                Ok(None) | Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return;
                }
            },
        }
    }
}

/// Spawns the helper and waits until the app has exec'd. On failure, the message and the exit
/// code `pack run` should use (125 setup, 126 cannot execute, 127 not found).
async fn start(
    helper: &std::path::Path,
    spec: &SandboxSpec,
    stdio: Stdio3,
) -> Result<Child, (String, i32)> {
    let internal = |e: std::io::Error| (format!("cannot start the sandbox helper: {e}"), 125);
    let (cmd, handoff) = confine::launch::prepare(helper, spec, stdio).map_err(internal)?;
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(internal)?;
    let exec = handoff.send_spec().map_err(internal)?;
    let outcome = tokio::task::spawn_blocking(move || exec.wait())
        .await
        .map_err(|e| (format!("sandbox start crashed: {e}"), 125))?;
    match outcome {
        Ok(()) => Ok(child),
        Err(step) => {
            let code = child.wait().await.map(exit_code).unwrap_or(125);
            Err((step.to_string(), if code == 0 { 125 } else { code }))
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125)
}
