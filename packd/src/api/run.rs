//! `POST /v2/run`: the daemon starts the app for the caller, as the caller. No setuid binary is
//! involved:
//!
//! 1. the client posts a [`RunRequest`] asking to upgrade to [`RUN_PROTOCOL`], with its stdin,
//!    stdout and stderr attached to the request's first bytes (SCM_RIGHTS; see
//!    [`super::fdpass`]);
//! 2. the daemon resolves the app, checks its layers and prepares it, then starts the sandbox
//!    with those descriptors, as the caller's uid, gid and groups (from SO_PEERCRED), while it
//!    answers 101 (or an error);
//! 3. over the upgraded connection the daemon reports [`RunEvent`]s (started, exit) and the
//!    client relays signals as [`RunControl`] messages. A client that goes away takes the app
//!    with it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;

use super::Api;
use super::response::{ApiError, ApiResult};
use super::types::{RUN_DEVMODE_HEADER, RUN_PROTOCOL, RunControl, RunEvent, RunRequest};
use super::{PassedFds, Peer};
use crate::error::Error;
use crate::launch::instance::{Running, Stdio3};
use crate::launch::{AppRef, Invocation, LaunchError};

pub async fn run(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Extension(passed): Extension<PassedFds>,
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
    let mut rlimits = Vec::with_capacity(rr.rlimits.len());
    for r in &rr.rlimits {
        let Some(resource) = confine::steps::rlimits::Resource::from_name(&r.resource) else {
            return Err(ApiError::bad_request(format!(
                "unknown resource limit {:?}; known: {}",
                r.resource,
                confine::steps::rlimits::Resource::ALL
                    .map(|r| r.name())
                    .join(", ")
            )));
        };
        rlimits.push(confine::steps::rlimits::Rlimit {
            resource,
            soft: r.soft,
            hard: r.hard,
        });
    }
    let inv = Invocation {
        args: rr.args,
        env: rr.env,
        cwd: rr.cwd,
        uid: peer.uid,
        gid: peer.gid,
        groups: peer.groups.clone(),
        rlimits,
    };
    // The terminal comes with the request (and, optionally, the caller's exit pipe): the app
    // starts while the answer goes out.
    let mut fds = passed.take().into_iter();
    let (Some(stdin), Some(stdout), Some(stderr), caller_exit, None) =
        (fds.next(), fds.next(), fds.next(), fds.next(), fds.next())
    else {
        return Err(ApiError::bad_request(
            "/v2/run needs the caller's stdin, stdout and stderr (and optionally an exit pipe) \
             attached to the request (SCM_RIGHTS); use 'pack run'",
        ));
    };
    // Only a pipe: the sandbox's init writes four bytes to it, as root.
    if let Some(fd) = &caller_exit
        && !nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
    {
        return Err(ApiError::bad_request(
            "the fourth descriptor of /v2/run must be the write end of a pipe",
        ));
    }
    let stdio = Stdio3 {
        stdin,
        stdout,
        stderr,
        caller_exit,
    };
    // A few metadata reads and directory checks: quicker here than on a blocking thread.
    let prepared = d.launcher.prepare(&target, inv)?;
    let devmode = prepared.resolved.meta.confinement == packfmt::meta::Confinement::Devmode;
    let label = format!("{}.{}", prepared.resolved.name, prepared.resolved.app);
    let starting = {
        let l = d.launcher.clone();
        tokio::spawn(async move { prepared.start(&l, stdio).await })
    };
    tokio::spawn(async move {
        let upgraded = on_upgrade.await;
        let stream = match upgraded.map(|u| u.downcast::<TokioIo<UnixStream>>()) {
            Ok(Ok(parts)) if parts.read_buf.is_empty() => parts.io.into_inner(),
            other => {
                match other {
                    Err(e) => tracing::warn!(error = %e, "run: upgrade failed"),
                    Ok(_) => tracing::warn!("run: unexpected connection state after the upgrade"),
                }
                // Nobody to report to: whatever started goes.
                if let Ok(Ok(running)) = starting.await {
                    running.cleanup().await;
                }
                return;
            }
        };
        session(stream, starting, label, devmode).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, RUN_PROTOCOL)
        .header(header::CONNECTION, "upgrade")
        // Told now, so the caller can warn before the app's first output.
        .header(RUN_DEVMODE_HEADER, if devmode { "true" } else { "false" })
        .body(Body::empty())
        .map_err(|e| Error::bad(format!("cannot build the response: {e}")).into())
}

async fn send(w: &mut OwnedWriteHalf, event: &RunEvent) {
    if let Ok(mut line) = serde_json::to_vec(event) {
        line.push(b'\n');
        let _ = w.write_all(&line).await;
    }
}

/// One app run, from the client's descriptors to its exit status.
async fn session(
    stream: UnixStream,
    starting: tokio::task::JoinHandle<Result<Running, LaunchError>>,
    label: String,
    devmode: bool,
) {
    let started = starting
        .await
        .unwrap_or_else(|e| Err(LaunchError::Helper(format!("the launch crashed: {e}"))));
    let (read, mut write) = stream.into_split();
    let mut running = match started {
        Ok(running) => running,
        Err(e) => {
            let (message, code) = (e.to_string(), e.exit_code());
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
