//! `/v2/changes`: follow what the daemon is doing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::Api;
use super::response::{ApiError, ApiResult, sync};
use super::types::{ChangeInfo, TaskInfo};
use crate::error::Error;
use crate::state::{Change, Status};

/// How long `?wait=true` holds a request before answering with the change as it is.
const LONG_POLL: Duration = Duration::from_secs(10);

fn not_found(id: u64) -> Error {
    Error::NotFound {
        kind: packd_api::ErrorKind::ChangeNotFound,
        message: format!("change {id} not found; see 'pack changes'"),
    }
}

pub fn status_word(s: Status) -> String {
    format!("{s:?}")
}

/// What `c` looks like to a reader; only root sees the private detail of its failure (a
/// hook's output, which hook logs keep from other users).
pub fn change_info(c: &Change, root: bool) -> ChangeInfo {
    let time = |secs: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .to_string()
    };
    ChangeInfo {
        id: c.id.to_string(),
        kind: c.kind.clone(),
        summary: c.summary.clone(),
        status: status_word(c.status()),
        ready: c.is_ready() && c.ready_time.is_some(),
        spawn_time: time(c.spawn_time),
        ready_time: c.ready_time.map(time),
        err: match (&c.err, &c.err_detail) {
            (Some(err), Some(detail)) if root => Some(format!("{err}; {detail}")),
            (err, _) => err.clone(),
        },
        pack_names: vec![c.plan.pack_name().to_string()],
        tasks: c
            .tasks
            .iter()
            .map(|t| TaskInfo {
                id: t.id.to_string(),
                kind: serde_json::to_value(t.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                summary: t.summary.clone(),
                status: status_word(t.status),
                log: t.log.clone(),
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    select: Option<String>,
}

/// `GET /v2/changes?select=all|in-progress|ready` (default all).
pub async fn list(
    State(d): State<Arc<Api>>,
    axum::Extension(peer): axum::Extension<super::Peer>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let root = peer.is_root();
    let select = q.select.as_deref().unwrap_or("all");
    let keep: fn(&Change) -> bool = match select {
        "all" => |_| true,
        "in-progress" => |c| !c.is_ready(),
        "ready" => |c| c.is_ready(),
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid select {other:?}; use all, in-progress or ready"
            )));
        }
    };
    let infos: Vec<ChangeInfo> = d.store.read(|s| {
        s.changes
            .values()
            .filter(|c| keep(c))
            .map(|c| change_info(c, root))
            .collect()
    });
    Ok(sync(infos))
}

#[derive(Debug, Deserialize)]
pub struct GetQuery {
    /// Hold the answer until the change moves (or is ready), up to ten seconds.
    #[serde(default)]
    wait: bool,
}

/// `GET /v2/changes/{id}[?wait=true]`.
pub async fn get(
    State(d): State<Arc<Api>>,
    axum::Extension(peer): axum::Extension<super::Peer>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> ApiResult<Response> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("invalid change id {id:?}; see 'pack changes'"))
    })?;
    let mut updates = d.store.subscribe();
    let root = peer.is_root();
    let snapshot = || {
        d.store
            .read(|s| s.changes.get(&id).map(|c| change_info(c, root)))
    };
    let mut info = snapshot().ok_or_else(|| not_found(id))?;
    if q.wait && !info.ready {
        let before = info.clone();
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        while info == before {
            if tokio::time::timeout_at(deadline, updates.changed())
                .await
                .is_err()
            {
                break;
            }
            info = snapshot().unwrap_or(before.clone());
        }
    }
    Ok(sync(info))
}

#[derive(Debug, Deserialize)]
pub struct ChangeAction {
    action: String,
}

/// `POST /v2/changes/{id}` with `{"action": "abort"}` (root): stops the change and undoes what
/// it did.
pub async fn action(
    State(d): State<Arc<Api>>,
    axum::Extension(peer): axum::Extension<super::Peer>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<ChangeAction>,
) -> ApiResult {
    if req.action != "abort" {
        return Err(ApiError::bad_request(format!(
            "unknown action {:?}; this packd supports: abort",
            req.action
        )));
    }
    peer.require_root("aborting a change")?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("invalid change id {id:?}; see 'pack changes'"))
    })?;
    let info = d.store.update(|s| {
        let c = s.changes.get_mut(&id).ok_or_else(|| not_found(id))?;
        c.abort("aborted by root").map_err(Error::bad)?;
        Ok::<_, Error>(change_info(c, true))
    })?;
    tracing::warn!(change = id, "change aborted");
    Ok(sync(info))
}
