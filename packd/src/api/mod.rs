//! The HTTP/1.1 + JSON API on a Unix socket, shaped like snapd's `/v2`. Handlers are thin: they
//! parse, check the caller, call a manager, and answer ([`Api`] is what they reach).
//!
//! The caller is known only by `SO_PEERCRED` (integers from the kernel, never a string the
//! client controls: snapd's CVE-2019-7304 lesson). Root may change the system; anyone may read.
//! Requests from inside sandboxes come on a pack's own socket ([`sockets`]) and are limited to
//! what its connections allow.

mod changes;
mod config;
mod connections;
pub mod conns;
pub mod debug;
pub use packd_api::{fdpass, types};
mod packs;
pub mod response;
mod run;
mod services;
pub mod sockets;
mod store;
mod system;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tower::ServiceExt;

use response::ApiError;

use crate::connections::ConnectionManager;
use crate::launch::Launcher;
use crate::packs::PackManager;
use crate::paths::Paths;
use crate::services::ServiceManager;
use crate::state::Store;

/// What the handlers reach: the state (to read) and the managers (to act).
pub struct Api {
    pub store: Arc<Store>,
    pub paths: Paths,
    /// The main socket, as `system-info` reports it.
    pub socket: std::path::PathBuf,
    pub packs: Arc<PackManager>,
    pub connections: Arc<ConnectionManager>,
    pub services: Arc<ServiceManager>,
    pub launcher: Arc<Launcher>,
    pub stores: Arc<crate::store::StoreManager>,
    /// Runs reboots and power-offs (`COMMAND reboot|power-off`); `None`: `reboot`/`poweroff`.
    pub system_command: Option<std::path::PathBuf>,
}

/// Who is calling, from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (SO_PEERGROUPS).
    pub groups: Vec<u32>,
    /// The pack whose socket the request came on; `None` on the main socket.
    pub origin: Option<Origin>,
}

/// A pack's socket: which pack, and what its connections gave it when the socket was made
/// (checked again against the current connections at every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub pack: String,
    pub access: interfaces::Socket,
}

impl Peer {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Refuses non-root callers with a message saying what needs root.
    pub fn require_root(&self, what: &str) -> Result<(), ApiError> {
        if self.is_root() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} needs root; run the command with sudo"
            )))
        }
    }
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v2/system-info", get(packs::system_info))
        .route("/v2/packs", get(packs::list).post(packs::install))
        .route("/v2/packs/{name}", get(packs::info).post(packs::action))
        .route("/v2/packs/{name}/conf", get(config::get).put(config::set))
        .route("/v2/changes", get(changes::list))
        .route("/v2/changes/{id}", get(changes::get).post(changes::action))
        .route("/v2/run", post(run::run))
        .route(
            "/v2/connections",
            get(connections::list).post(connections::change),
        )
        .route("/v2/interfaces", get(connections::interfaces))
        .route("/v2/interfaces/{name}", get(connections::interface))
        .route("/v2/debug/sandbox", get(debug::sandbox))
        .route("/v2/debug/apparmor", get(debug::apparmor))
        .route("/v2/system", post(system::action))
        .route("/v2/apps", get(services::list).post(services::change))
        .route("/v2/logs", get(services::logs))
        .route(
            "/v2/remotes",
            get(store::remotes).post(store::change_remote),
        )
        .route("/v2/find", get(store::find))
        .route("/v2/store/packs/{name}", get(store::info))
        .route("/v2/refresh", get(store::pending).post(store::refresh))
        .route("/v2/refresh/time", get(store::time))
        .route(
            "/v2/assertions",
            post(store::ack).layer(axum::extract::DefaultBodyLimit::max(store::MAX_ACK + 1)),
        )
        .route("/v2/assertions/{kind}", get(store::known))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                "no such API endpoint; is the pack client newer than packd?",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            sockets::authorize,
        ))
        .with_state(api)
}

/// Descriptors that came attached to a connection's first bytes (see [`fdpass`]), for the
/// request that wants them (`/v2/run`); taken at most once.
#[derive(Clone, Default)]
pub struct PassedFds(Arc<std::sync::Mutex<Vec<std::os::fd::OwnedFd>>>);

impl PassedFds {
    /// Waits for the connection's first bytes and takes copies of what is attached to them.
    async fn peek(stream: &tokio::net::UnixStream) -> PassedFds {
        use std::os::fd::AsFd;
        loop {
            if stream.readable().await.is_err() {
                return PassedFds::default();
            }
            match stream.try_io(tokio::io::Interest::READABLE, || {
                fdpass::peek_fds(stream.as_fd(), 4)
            }) {
                Ok(fds) => return PassedFds(Arc::new(std::sync::Mutex::new(fds))),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return PassedFds::default(),
            }
        }
    }

    pub fn take(&self) -> Vec<std::os::fd::OwnedFd> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Serves connections until `shutdown` resolves. Each connection's peer credentials, and the
/// pack whose socket it is (`origin`), are attached to its requests.
pub async fn serve(
    listener: UnixListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    origin: Option<Origin>,
) {
    tokio::pin!(shutdown);
    let mut backoff = conns::Backoff::default();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    stream
                }
                Err(e) => {
                    let wait = backoff.failed(&e, std::time::Instant::now());
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = &mut shutdown => return,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
                groups: peer_groups(&stream),
                origin: origin.clone(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; dropping connection");
                continue;
            }
        };
        let Some(admitted) = conns::admit(peer.uid, origin.as_ref().map(|o| o.pack.as_str()))
        else {
            conns::note_refused(peer.uid);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let Ok(passed) =
                tokio::time::timeout(conns::FIRST_BYTES, PassedFds::peek(&stream)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req.extensions_mut().insert(passed.clone());
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(
                        app.oneshot(req.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|e| match e {}),
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(conns::HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// The caller's supplementary groups, from the kernel (SO_PEERGROUPS, Linux 4.13+).
fn peer_groups(stream: &tokio::net::UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..3 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt into a buffer of `len` bytes that we own.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
            return groups;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            break;
        }
        // `len` now says how much is needed.
        groups.resize(len as usize / std::mem::size_of::<libc::gid_t>() + 1, 0);
    }
    Vec::new()
}
