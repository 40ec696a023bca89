//! The store's endpoints: `/v2/remotes`, `/v2/find`, `/v2/store/packs/{name}`, `/v2/refresh`
//! (and `/time`), `/v2/assertions`; and the streamed `install` of `POST /v2/packs/{name}`.
//!
//! Installs and refreshes answer with a stream (`application/x-ndjson`) of
//! [`StoreEvent`]s once the request is accepted; a refusal before that is an error envelope.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::Response;
use packd_api::store::{RefreshAction, RemoteRequest, StoreEvent};
use serde::Deserialize;

use super::response::{ApiError, ApiResult, sync};
use super::{Api, Peer};
use crate::store::{Events, Mode, error_event};

/// Streams the events `work` sends, one JSON line each, ending when it is done.
fn stream<F>(work: impl FnOnce(Events) -> F) -> Response
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<StoreEvent>();
    tokio::spawn(work(tx));
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_default()
}

/// `POST /v2/packs/{name}` `install` from a store (root).
pub fn install(
    d: &Arc<Api>,
    peer: &Peer,
    name: &str,
    channel: Option<String>,
    remote: Option<String>,
) -> ApiResult {
    peer.require_root("installing a pack")?;
    let channel = channel.unwrap_or_else(|| "stable".into());
    crate::store::check_channel(&channel)?;
    d.stores.check_install(name, remote.as_deref())?;
    let stores = d.stores.clone();
    let name = name.to_string();
    Ok(stream(move |tx| async move {
        match stores
            .install(&name, &channel, remote.as_deref(), &tx)
            .await
        {
            Ok(started) => {
                stores.watch(vec![started]);
                let _ = tx.send(StoreEvent::Done {
                    unchanged: Vec::new(),
                });
            }
            Err(e) => {
                tracing::warn!(pack = %name, error = %e, "install from a store failed");
                let _ = tx.send(error_event(&name, &e));
                let _ = tx.send(StoreEvent::Done {
                    unchanged: Vec::new(),
                });
            }
        }
    }))
}

/// `POST /v2/packs/{name}` `switch` (root).
pub fn switch(d: &Arc<Api>, peer: &Peer, name: &str, channel: Option<String>) -> ApiResult {
    peer.require_root("switching a pack's channel")?;
    let channel = channel.ok_or_else(|| ApiError::bad_request("switch needs a channel"))?;
    d.stores.switch(name, &channel)?;
    Ok(sync(serde_json::json!({ "channel": channel })))
}

pub async fn remotes(State(d): State<Arc<Api>>) -> Response {
    sync(d.stores.remotes())
}

/// `POST /v2/remotes`: `add` or `remove` (root).
pub async fn change_remote(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<RemoteRequest>,
) -> ApiResult {
    peer.require_root("changing remotes")?;
    match req.action.as_str() {
        "add" => {
            let url = req
                .url
                .ok_or_else(|| ApiError::bad_request("add needs a url"))?;
            let trust = req
                .trust
                .ok_or_else(|| ApiError::bad_request("add needs the store's root (--trust)"))?;
            Ok(sync(d.stores.add_remote(&req.name, &url, &trust).await?))
        }
        "remove" => {
            d.stores.remove_remote(&req.name).await?;
            Ok(sync(serde_json::Value::Null))
        }
        other => Err(ApiError::bad_request(format!(
            "unknown action {other:?}; remotes take: add, remove"
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct FindQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    remote: Option<String>,
}

pub async fn find(State(d): State<Arc<Api>>, Query(q): Query<FindQuery>) -> ApiResult {
    Ok(sync(d.stores.find(&q.q, q.remote.as_deref()).await?))
}

#[derive(Debug, Deserialize)]
pub struct RemoteQuery {
    #[serde(default)]
    remote: Option<String>,
}

pub async fn info(
    State(d): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(q): Query<RemoteQuery>,
) -> ApiResult {
    Ok(sync(d.stores.info(&name, q.remote.as_deref()).await?))
}

#[derive(Debug, Deserialize)]
pub struct NamesQuery {
    #[serde(default)]
    names: Option<String>,
}

fn split_names(names: Option<&str>) -> Vec<String> {
    names
        .unwrap_or("")
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `GET /v2/refresh?names=A,B`: what a refresh would bring.
pub async fn pending(State(d): State<Arc<Api>>, Query(q): Query<NamesQuery>) -> ApiResult {
    let names = split_names(q.names.as_deref());
    Ok(sync(d.stores.pending(&names).await?))
}

pub async fn time(State(d): State<Arc<Api>>) -> Response {
    sync(d.stores.time())
}

/// `POST /v2/refresh`: `refresh` (streamed), `hold`, `unhold` (root).
pub async fn refresh(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<RefreshAction>,
) -> ApiResult {
    for n in &req.names {
        packfmt::meta::validate_pack_name(n).map_err(ApiError::bad_request)?;
    }
    match req.action.as_str() {
        "refresh" => {
            peer.require_root("refreshing packs")?;
            if let Some(c) = &req.channel {
                if req.names.is_empty() {
                    return Err(ApiError::bad_request(
                        "--channel needs the packs to switch; name them",
                    ));
                }
                crate::store::check_channel(c)?;
            }
            d.stores.refresh_targets(&req.names)?;
            let stores = d.stores.clone();
            Ok(stream(move |tx| async move {
                match stores
                    .refresh(&req.names, req.channel.as_deref(), Mode::Manual, &tx)
                    .await
                {
                    Ok(started) => stores.watch(started),
                    Err(e) => {
                        let _ = tx.send(error_event("", &e));
                        let _ = tx.send(StoreEvent::Done {
                            unchanged: Vec::new(),
                        });
                    }
                }
            }))
        }
        "hold" => {
            peer.require_root("holding refreshes")?;
            let holds = d.stores.hold(&req.names, req.duration.as_deref())?;
            Ok(sync(serde_json::json!({ "holds": holds })))
        }
        "unhold" => {
            peer.require_root("unholding refreshes")?;
            d.stores.unhold(&req.names)?;
            Ok(sync(serde_json::Value::Null))
        }
        other => Err(ApiError::bad_request(format!(
            "unknown action {other:?}; refresh takes: refresh, hold, unhold"
        ))),
    }
}

/// `GET /v2/assertions/{kind}?HEADER=VALUE&remote=R`.
pub async fn known(
    State(d): State<Arc<Api>>,
    Path(kind): Path<String>,
    Query(mut filters): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let remote = filters.remove("remote");
    Ok(sync(d.stores.known(&kind, &filters, remote.as_deref())?))
}

/// The largest file `pack ack` takes.
pub const MAX_ACK: usize = 4 << 20;

/// `POST /v2/assertions` with an assertion stream as the body (root).
pub async fn ack(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> ApiResult {
    peer.require_root("adding assertions")?;
    if body.len() > 4 << 20 {
        return Err(ApiError::bad_request(
            "the assertions are larger than 4 MiB",
        ));
    }
    let added = d.stores.ack(&body)?;
    Ok(sync(serde_json::json!({ "added": added })))
}
