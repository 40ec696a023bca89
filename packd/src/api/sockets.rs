//! The API sockets bound into sandboxes: one per pack and access level, made the first time an
//! app with a `packd-control` or `shutdown` connection starts, each in a directory of its own
//! under `run/packd/api/` (root-only) on the host, bound at `/run/packd/` inside with
//! `/run/packd.socket` pointing into it. The directory stays when packd stops: a restarted
//! packd makes the sockets of the packs that still have a connection again ([`PackSockets::
//! restore`]), and apps that kept running find them where they were.
//!
//! Why a socket per pack rather than the main one: the listener a request arrives on says which
//! pack sent it, with nothing to parse or trust (a sandbox sees only its own socket, and host
//! users cannot reach the directory). What the pack may do is decided per request from the
//! *current* connections ([`authorize`]), so a disconnection takes effect at once, even for
//! apps still running with the socket.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use interfaces::Socket;
use tokio::task::JoinHandle;

use super::Api;
use super::response::ApiError;
use super::{Origin, Peer};
use crate::error::{IoContext, IoError};
use crate::fsutil;
use crate::launch::LaunchError;

/// The listeners made so far, by pack and access.
pub struct PackSockets {
    api: Arc<Api>,
    listening: Mutex<HashMap<(String, Socket), JoinHandle<()>>>,
}

impl crate::launch::ApiSockets for PackSockets {
    fn ensure(&self, pack: &str, access: Socket) -> Result<PathBuf, LaunchError> {
        self.listen(pack, access).map_err(LaunchError::from)
    }
}

impl PackSockets {
    pub fn new(api: Arc<Api>) -> Self {
        PackSockets {
            api,
            listening: Mutex::new(HashMap::new()),
        }
    }

    /// Listens again on the sockets of the packs whose apps may still be running with them
    /// (a restarted packd): every socket directory whose pack still has that access.
    pub fn restore(&self) {
        let Ok(entries) = std::fs::read_dir(self.api.paths.pack_sockets_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((pack, kind)) = name.rsplit_once('.') else {
                continue;
            };
            let access = match kind {
                "control" => Socket::Control,
                "shutdown" => Socket::Shutdown,
                _ => continue,
            };
            if access_now(&self.api, pack).is_some_and(|now| now >= access) {
                if let Err(e) = self.listen(pack, access) {
                    tracing::warn!(pack, error = %e, "cannot listen again on a pack's socket");
                }
            } else {
                let _ = fsutil::remove_tree_if_exists(&e.path());
            }
        }
    }

    /// The host path of `pack`'s socket for `access`, listening from now on.
    fn listen(&self, pack: &str, access: Socket) -> Result<PathBuf, IoError> {
        let path = self.api.paths.pack_socket(pack, access);
        let mut listening = self
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (pack.to_string(), access);
        if listening.get(&key).is_some_and(|t| !t.is_finished()) && path.exists() {
            return Ok(path);
        }
        let dir = self.api.paths.pack_sockets_dir();
        fsutil::ensure_dir(&dir, 0o700).ctx("create", &dir)?;
        // Its own directory, which sandboxes see: any of their users may reach the socket.
        let own = self.api.paths.pack_socket_dir(pack, access);
        fsutil::ensure_dir(&own, 0o755).ctx("create", &own)?;
        fsutil::remove_file_if_exists(&path).ctx("remove the stale socket", &path)?;
        let std_listener = std::os::unix::net::UnixListener::bind(&path).ctx("listen on", &path)?;
        // Any user of the sandbox may connect; only sandboxes can reach it (the directory is
        // root's alone).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .ctx("set the mode of", &path)?;
        std_listener
            .set_nonblocking(true)
            .ctx("set up the socket", &path)?;
        let listener = tokio::net::UnixListener::from_std(std_listener).ctx("listen on", &path)?;
        let origin = Origin {
            pack: pack.to_string(),
            access,
        };
        let router = super::router(self.api.clone());
        let task = tokio::spawn(super::serve(
            listener,
            router,
            std::future::pending(),
            Some(origin),
        ));
        if let Some(old) = listening.insert(key, task) {
            old.abort();
        }
        Ok(path)
    }

    /// Stops every listener (the directories stay, for the apps that keep running).
    pub fn stop(&self) {
        let mut listening = self
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, task) in listening.drain() {
            task.abort();
        }
    }
}

/// The most a pack's connections give it on its sockets now: the strongest socket grant over
/// its current revision's apps.
fn access_now(d: &Api, pack: &str) -> Option<Socket> {
    d.store.read(|s| {
        let p = s.packs.get(pack)?;
        let rev = p.current_revision()?;
        let by_app =
            crate::connections::policy::grants_by_app(s, &d.paths, pack, rev.revision, &rev.meta)
                .ok()?;
        by_app.values().filter_map(|g| g.socket).max()
    })
}

/// What a request from a pack's socket may do: with `packd-control`, anything its user may;
/// with `shutdown`, only `POST /v2/system`. Checked against the connections as they are now.
pub async fn authorize(State(d): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let origin = req
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.origin.clone());
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    // Only the pack's own sandboxes: the socket is visible to whoever can reach an app's
    // file system, e.g. the user who started it, through /proc/PID/root.
    let peer_pack = req
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.pid)
        .and_then(|pid| d.launcher.sandboxes.pack_of(pid));
    if peer_pack.as_deref() != Some(origin.pack.as_str()) {
        return ApiError::forbidden(format!(
            "this socket answers the apps of {} only, from inside their sandboxes",
            origin.pack
        ))
        .into_response();
    }
    let now = access_now(&d, &origin.pack);
    let allowed = match now.map(|now| now.min(origin.access)) {
        Some(Socket::Control) => true,
        Some(Socket::Shutdown) => req.method() == Method::POST && req.uri().path() == "/v2/system",
        None => false,
    };
    if allowed {
        return next.run(req).await;
    }
    let why = match now {
        None => format!(
            "{} has no packd-control or shutdown connection any more; connect one with \
             'pack connect {}:packd-control' (as root)",
            origin.pack, origin.pack
        ),
        Some(_) => format!(
            "{} may only ask for a reboot or power-off (POST /v2/system): its connection is \
             shutdown, not packd-control",
            origin.pack
        ),
    };
    ApiError::forbidden(why).into_response()
}
