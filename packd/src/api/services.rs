//! `/v2/apps` (services: list, start, stop, restart) and `/v2/logs` (their output).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::Peer;
use super::response::{ApiError, ApiResult, accepted, sync};
use super::types::{LogLine, ServiceInfo, ServiceRequest};
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::services::logs;
use crate::state::{Plan, State as PackdState, TaskKind};

#[derive(Debug, Deserialize)]
pub struct Names {
    /// Comma-separated `PACK` or `PACK.APP`; all services when absent.
    #[serde(default)]
    names: Option<String>,
}

/// The services `names` select: `(pack, app)` pairs, checked to exist.
fn select(s: &PackdState, names: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let all = names.is_empty();
    // Packs being removed (inactive) are left out of "all".
    let every: Vec<String> = s
        .packs
        .values()
        .filter(|p| p.active)
        .map(|p| p.name.clone())
        .collect();
    let wanted: Vec<String> = if all { every } else { names.to_vec() };
    for name in wanted {
        let (pack, app) = match name.split_once('.') {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (name.clone(), None),
        };
        let meta = s
            .packs
            .get(&pack)
            .filter(|p| p.active)
            .and_then(|_| s.current_meta(&pack))
            .ok_or_else(|| Error::pack_not_found(&pack))?;
        let services: Vec<&String> = meta
            .apps
            .iter()
            .filter(|(_, a)| a.is_service())
            .map(|(n, _)| n)
            .collect();
        match app {
            Some(app) if services.contains(&&app) => out.push((pack, app)),
            Some(app) => {
                return Err(Error::NotFound {
                    kind: "app-not-found",
                    message: format!(
                        "{pack}.{app} is not a service; 'pack services {pack}' lists them"
                    ),
                });
            }
            None => out.extend(services.into_iter().map(|a| (pack.clone(), a.clone()))),
        }
    }
    Ok(out)
}

fn split(names: &Option<String>) -> Vec<String> {
    names
        .as_deref()
        .map(|n| {
            n.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /v2/apps?select=service[&names=…]`.
pub async fn list(State(d): State<Arc<Daemon>>, Query(q): Query<Names>) -> ApiResult {
    let names = split(&q.names);
    let infos = d.store.read(|s| {
        let selected = select(s, &names)?;
        Ok::<_, Error>(
            selected
                .into_iter()
                .map(|(pack, app)| {
                    let p = &s.packs[&pack];
                    let daemon = s
                        .current_meta(&pack)
                        .and_then(|m| m.apps.get(&app))
                        .and_then(|a| a.daemon)
                        .map(|k| format!("{k:?}").to_lowercase())
                        .unwrap_or_default();
                    ServiceInfo {
                        enabled: !p.disabled_services.contains(&app),
                        active: d.services.state(&pack, &app).word().into(),
                        pack,
                        name: app,
                        daemon,
                    }
                })
                .collect::<Vec<_>>(),
        )
    })?;
    Ok(sync(infos))
}

/// `POST /v2/apps`: start, stop or restart services of one pack, as a change (root only).
pub async fn change(
    State(d): State<Arc<Daemon>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<ServiceRequest>,
) -> ApiResult {
    let (kind, verb) = match req.action.as_str() {
        "start" => (TaskKind::StartServices, "Start"),
        "stop" => (TaskKind::StopServices, "Stop"),
        "restart" => (TaskKind::RestartServices, "Restart"),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {other:?}; use start, stop or restart"
            )));
        }
    };
    peer.require_root(&format!("{}ing services", req.action))?;
    let enable = match (req.enable, req.disable, kind) {
        (true, true, _) => {
            return Err(ApiError::bad_request(
                "--enable and --disable contradict each other; pass one",
            ));
        }
        (true, _, TaskKind::StopServices) => {
            return Err(ApiError::bad_request(
                "stop cannot --enable; use 'pack start --enable'",
            ));
        }
        (_, true, TaskKind::StartServices | TaskKind::RestartServices) => {
            return Err(ApiError::bad_request(format!(
                "{} cannot --disable; use 'pack stop --disable'",
                req.action
            )));
        }
        (true, _, _) => Some(true),
        (_, true, _) => Some(false),
        _ => None,
    };
    if req.names.is_empty() {
        return Err(ApiError::bad_request(
            "name the pack or its services (PACK or PACK.APP)",
        ));
    }
    let id = d.store.update(|s| {
        let selected = select(s, &req.names)?;
        let mut packs: Vec<&str> = selected.iter().map(|(p, _)| p.as_str()).collect();
        packs.dedup();
        let [pack] = packs.as_slice() else {
            return Err(Error::bad(if packs.is_empty() {
                "those packs have no services".to_string()
            } else {
                format!(
                    "services of one pack at a time, not {}; run the command once per pack",
                    packs.join(", ")
                )
            }));
        };
        let pack = pack.to_string();
        super::connections::busy(s, &[&pack])?;
        let apps: Vec<String> = selected.into_iter().map(|(_, a)| a).collect();
        let summary = format!(
            "{verb} services {}",
            apps.iter()
                .map(|a| format!("{pack}.{a}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(s.add_change(
            "service-control",
            summary.clone(),
            Plan::Services {
                name: pack,
                apps: Some(apps),
                enable,
            },
            vec![(kind, summary)],
        ))
    })?;
    d.engine.enqueue(id);
    Ok(accepted(id))
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    names: Option<String>,
    /// How many lines from the end; `all` for every line. 10 by default (as `snap logs`).
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    follow: bool,
}

/// `GET /v2/logs?names=…&n=N&follow=true` (root): one JSON [`LogLine`] per line, oldest
/// first; with `follow`, new lines as they come until the client goes.
pub async fn logs(
    State(d): State<Arc<Daemon>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    // Services print what they like, secrets included: root's to read, as the logs are.
    peer.require_root("reading service logs")?;
    let n = match q.n.as_deref() {
        None => Some(10),
        Some("all") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("n must be a number or 'all', not {v:?}"))
        })?),
    };
    let names = split(&q.names);
    let apps = d.store.read(|s| {
        let mut apps = select(s, &names)?;
        // A whole pack's log includes its hooks'.
        for name in names.iter().filter(|n| !n.contains('.')) {
            if let Some(meta) = s.current_meta(name) {
                apps.extend(
                    meta.hooks
                        .keys()
                        .map(|h| (name.clone(), crate::launch::hooks::app_name(h))),
                );
            }
        }
        Ok::<_, Error>(apps)
    })?;
    let root = d.paths.root().to_path_buf();
    let mut lines = logs::read(&root, &apps);
    if let Some(n) = n {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::spawn(async move {
        for l in lines {
            if tx.send(encode(&l)).await.is_err() {
                return;
            }
        }
        if q.follow {
            follow(&root, &apps, &tx).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| Error::Internal(e.to_string()))?)
}

fn encode(l: &LogLine) -> String {
    let mut s = serde_json::to_string(l).unwrap_or_default();
    s.push('\n');
    s
}

/// Sends the lines appended to the logs from now on, until the receiver goes.
async fn follow(
    root: &std::path::Path,
    apps: &[(String, String)],
    tx: &tokio::sync::mpsc::Sender<String>,
) {
    use std::io::{Read, Seek};
    use std::os::unix::fs::MetadataExt;
    // Per app, in `apps`' order: its log, and the inode and offset read up to.
    let mut at: Vec<(PathBuf, (u64, u64))> = apps
        .iter()
        .map(|(pack, app)| {
            let path = logs::log_file(root, pack, app);
            let pos = std::fs::metadata(&path).map_or((0, 0), |m| (m.ino(), m.len()));
            (path, pos)
        })
        .collect();
    loop {
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for ((pack, app), (path, (ino, offset))) in apps.iter().zip(at.iter_mut()) {
            let path = &*path;
            let Ok(md) = std::fs::metadata(path) else {
                continue;
            };
            // Rotated or truncated: the new file from its start.
            if md.ino() != *ino || md.len() < *offset {
                *ino = md.ino();
                *offset = 0;
            }
            if md.len() == *offset {
                continue;
            }
            let Ok(mut f) = std::fs::File::open(path) else {
                continue;
            };
            let mut buf = Vec::new();
            if f.seek(std::io::SeekFrom::Start(*offset)).is_err()
                || f.read_to_end(&mut buf).is_err()
            {
                continue;
            }
            // Only whole lines; a partial one waits for its end.
            let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            *offset += end as u64 + 1;
            for line in String::from_utf8_lossy(&buf[..end]).lines() {
                if let Some((timestamp, message)) = line.split_once(' ') {
                    let l = LogLine {
                        timestamp: timestamp.into(),
                        app: format!("{pack}.{app}"),
                        message: message.into(),
                    };
                    if tx.send(encode(&l)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
