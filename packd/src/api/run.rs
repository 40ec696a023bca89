//! `POST /v2/run`: the daemon starts the app for the caller, as the caller. No setuid binary is
//! involved:
//!
//! 1. the client posts a [`RunRequest`] asking to upgrade to [`RUN_PROTOCOL`];
//! 2. the daemon resolves the app, checks its layers and prepares it, then answers 101 (or an
//!    error);
//! 3. the client sends its stdin, stdout and stderr over the socket (SCM_RIGHTS);
//! 4. the daemon starts the sandbox with them, as the caller's uid, gid and groups (from
//!    SO_PEERCRED), and reports [`RunEvent`]s (started, exit); the client relays signals as
//!    [`RunControl`] messages. A client that goes away takes the app with it.

use std::os::fd::AsFd;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;

use super::Peer;
use super::fdpass::recv_fds;
use super::response::{ApiError, ApiResult};
use super::types::{RUN_PROTOCOL, RunControl, RunEvent, RunRequest};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::launch::instance::{self, Prepared, Stdio3};
use crate::launch::{AppRef, Invocation};

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
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request: {e}")))?;
    let rr: RunRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid run request: {e}")))?;
    let target: AppRef = rr.target.parse()?;
    // The identity is the kernel's, never the request's.
    let inv = Invocation {
        args: rr.args,
        env: rr.env,
        cwd: rr.cwd,
        uid: peer.uid,
        gid: peer.gid,
        groups: peer.groups.clone(),
    };
    let prepared = {
        let d = d.clone();
        tokio::task::spawn_blocking(move || instance::prepare(&d, &target, inv))
            .await
            .map_err(|e| Error::Internal(format!("launch preparation crashed: {e}")))??
    };
    let devmode = prepared.resolved.meta.confinement == packfmt::meta::Confinement::Devmode;
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
                session(d, parts.io.into_inner(), prepared, devmode).await;
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
async fn session(d: Arc<Daemon>, stream: UnixStream, prepared: Prepared, devmode: bool) {
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
    let label = format!("{}.{}", prepared.resolved.name, prepared.resolved.app);
    let mut running = match prepared
        .start(
            &d,
            Stdio3 {
                stdin,
                stdout,
                stderr,
            },
        )
        .await
    {
        Ok(running) => running,
        Err((message, code)) => {
            tracing::info!(app = %label, %message, "run: app did not start");
            send(&mut write, &RunEvent::Error { message, code }).await;
            return;
        }
    };
    send(&mut write, &RunEvent::Started { devmode }).await;
    let mut lines = BufReader::new(read).lines();
    loop {
        tokio::select! {
            code = running.wait() => {
                // The caller learns the status first; the cgroup is removed after.
                send(&mut write, &RunEvent::Exit { code }).await;
                drop(write);
                running.cleanup().await;
                return;
            }
            line = lines.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str::<RunControl>(&line) {
                    Ok(RunControl::Signal { signal }) if (1..=64).contains(&signal) => {
                        running.signal(signal);
                    }
                    _ => tracing::debug!(%line, "run: ignoring an unknown control message"),
                },
                // The client is gone: so is the app.
                Ok(None) | Err(_) => {
                    running.cleanup().await;
                    return;
                }
            },
        }
    }
}
