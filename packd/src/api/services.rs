//! `/v2/apps` (services: list, start, stop, restart) and `/v2/logs` (their output).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::response::{ApiError, ApiResult, accepted, sync};
use super::types::{LogLine, ServiceInfo, ServiceRequest};
use super::{Api, Peer};
use crate::error::Error;
use crate::services::tasks::{Action, select};
use crate::services::{ServiceError, logs};

#[derive(Debug, Deserialize)]
pub struct Names {
    /// Comma-separated `PACK` or `PACK.APP`; all services when absent.
    #[serde(default)]
    names: Option<String>,
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
pub async fn list(State(d): State<Arc<Api>>, Query(q): Query<Names>) -> ApiResult {
    let names = split(&q.names);
    let infos = d.store.read(|s| {
        let selected = select(s, &names)?;
        Ok::<_, ServiceError>(
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
                        pid: d.services.pid(&pack, &app),
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
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<ServiceRequest>,
) -> ApiResult {
    let action = match req.action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "restart" => Action::Restart,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {other:?}; use start, stop or restart"
            )));
        }
    };
    peer.require_root(&format!("{}ing services", req.action))?;
    let enable = match (req.enable, req.disable) {
        (true, true) => {
            return Err(ApiError::bad_request(
                "--enable and --disable contradict each other; pass one",
            ));
        }
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(accepted(d.services.control(action, &req.names, enable)?))
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
    State(d): State<Arc<Api>>,
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
                        .map(|h| (name.clone(), crate::policy::hooks::app_name(h))),
                );
            }
        }
        Ok::<_, ServiceError>(apps)
    })?;
    let root = d.paths.root().to_path_buf();
    let mut lines = logs::read(&root, &apps);
    if let Some(n) = n {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<LogLine>(64);
    tokio::spawn(async move {
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if q.follow {
            logs::follow(&root, &apps, &tx).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|l| (Ok::<_, std::io::Error>(encode(&l)), rx))
    });
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| Error::bad(e.to_string()))?)
}

fn encode(l: &LogLine) -> String {
    let mut s = serde_json::to_string(l).unwrap_or_default();
    s.push('\n');
    s
}
