//! The store's HTTP API (docs/store-api.md): devices read (find, info, assertions, download,
//! refresh) without credentials; publishers change things with `Authorization: Bearer TOKEN`.
//! Every error is `{"error": {"code", "message"}}` with a status that says what kind it is.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use packfmt::store::{ErrorBody, ErrorDetail, RefreshRequest, RefreshResponse};
use serde::Deserialize;
use sha3::Digest;
use tokio::io::AsyncWriteExt;
use tower_http::services::ServeFile;

use crate::channel::Channel;
use crate::db::Publisher;
use crate::keys::now;
use crate::ops::Store;
use crate::{StoreError, hex};

/// How long a signed refresh answer is good for.
pub const ANSWER_LIFETIME_SECS: i64 = 24 * 3600;
/// The largest upload accepted.
pub const MAX_UPLOAD: u64 = 2 << 30;
/// The largest refresh request accepted.
const MAX_REQUEST: usize = 1 << 20;

pub struct ApiError(StoreError);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
            StoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.0.code().into(),
                message: self.0.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/v1/find", get(find))
        .route("/v1/packs", post(register))
        .route("/v1/packs/{name}", get(info))
        .route("/v1/packs/{name}/status", get(status))
        .route("/v1/packs/{name}/revisions", post(upload))
        .route("/v1/packs/{name}/releases", post(release))
        .route("/v1/packs/{name}/close", post(close))
        .route(
            "/v1/packs/{name}/rollouts",
            get(rollouts).post(control_rollout),
        )
        .route("/v1/packs/{name}/revisions/{rev}/revoke", post(revoke))
        .route("/v1/assertions/{kind}/{*key}", get(assertion))
        .route("/v1/download/{pack_id}/{rev}", get(download))
        .route("/v1/refresh", post(refresh))
        .route("/v1/reports", post(report))
        .fallback(|| async {
            ApiError(StoreError::NotFound(
                "no such endpoint; see docs/store-api.md".into(),
            ))
        })
        .with_state(store)
}

/// Serves `store` on `listener` until the process ends; picks up changes other processes make
/// to the database (such as `pack-store key rotate`) within a second.
pub async fn serve(store: Arc<Store>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let watcher = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = watcher.clone();
            let ticked = tokio::task::spawn_blocking(move || s.tick_rollouts()).await;
            if let Ok(Err(e)) = ticked {
                tracing::warn!(%e, "cannot advance the rollouts");
            }
            let s = watcher.clone();
            match tokio::task::spawn_blocking(move || s.reload_if_changed()).await {
                Ok(Err(e)) => tracing::warn!(%e, "cannot read the store's changes"),
                Ok(Ok(true)) => tracing::info!("the store changed; serving the new catalog"),
                _ => {}
            }
        }
    });
    axum::serve(listener, router(store)).await
}

fn publisher(store: &Store, headers: &HeaderMap) -> Result<Publisher, StoreError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            StoreError::Unauthorized(
                "this needs a publisher token: pass --token or set PACK_STORE_TOKEN".into(),
            )
        })?;
    store.authenticate(token.trim())
}

fn channels(list: &[String]) -> Result<Vec<Channel>, StoreError> {
    if list.is_empty() {
        return Err(StoreError::Invalid("name at least one channel".into()));
    }
    list.iter()
        .map(|c| {
            c.parse()
                .map_err(|e: crate::channel::ChannelError| StoreError::Invalid(e.to_string()))
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StoreError::Io(format!("a store task failed: {e}"))))?
        .map_err(ApiError)
}

#[derive(Deserialize)]
struct FindQuery {
    #[serde(default)]
    q: String,
}

async fn find(State(s): State<Arc<Store>>, Query(q): Query<FindQuery>) -> impl IntoResponse {
    Json(s.catalog().find(&q.q, now()))
}

async fn info(State(s): State<Arc<Store>>, Path(name): Path<String>) -> ApiResult<Response> {
    let info = s.catalog().info(&name, now()).ok_or_else(|| {
        StoreError::NotFound(format!(
            "no pack named {name:?} in this store; try pack find"
        ))
    })?;
    Ok(Json(info).into_response())
}

async fn status(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let cat = s.catalog();
    let entry = cat
        .packs
        .get(&name)
        .filter(|e| e.pack.publisher_id == p.id)
        .ok_or_else(|| StoreError::NotFound(format!("you have no pack named {name:?}")))?;
    let revisions: Vec<_> = entry
        .revisions
        .values()
        .map(|r| {
            serde_json::json!({
                "revision": r.revision, "version": r.version, "size": r.size,
                "sha3-384": r.sha3, "revoked": r.revoked.map(crate::keys::rfc3339),
            })
        })
        .collect();
    let pack_id = entry.pack.pack_id.clone();
    let s2 = s.clone();
    let reports: Vec<_> = blocking(move || s2.reports(&pack_id))
        .await?
        .into_iter()
        .map(|(revision, outcome, devices)| {
            serde_json::json!({"revision": revision, "outcome": outcome, "devices": devices})
        })
        .collect();
    Ok(Json(serde_json::json!({
        "name": name,
        "pack-id": entry.pack.pack_id,
        "channels": entry.channel_map(now()),
        "revisions": revisions,
        "reports": reports,
    }))
    .into_response())
}

/// `POST /v1/reports`: a device tells how a refresh went.
async fn report(State(s): State<Arc<Store>>, body: axum::body::Bytes) -> ApiResult<Response> {
    if body.len() > 16 << 10 {
        return Err(StoreError::Invalid("the report is too large".into()).into());
    }
    let r: crate::db::Report = serde_json::from_slice(&body)
        .map_err(|e| StoreError::Invalid(format!("the report is not valid: {e}")))?;
    blocking(move || s.report(&r)).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({}))).into_response())
}

#[derive(Deserialize)]
struct RegisterBody {
    name: String,
}

async fn register(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Json(b): Json<RegisterBody>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let id = blocking(move || s.register(&p, &b.name)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"pack-id": id})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    release: String,
}

async fn upload(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    request: Request,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let wanted: Vec<String> = q
        .release
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let release = if wanted.is_empty() {
        Vec::new()
    } else {
        channels(&wanted)?
    };
    let staged = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(s.layout.tmp())
        .map_err(|e| StoreError::Io(format!("cannot stage the upload: {e}")))?
        .into_temp_path();
    let (size, sha3) = receive(request.into_body(), &staged).await?;
    if size == 0 {
        return Err(StoreError::Invalid("the upload is empty; send a .pack file".into()).into());
    }
    let path = staged.to_path_buf();
    let revision = blocking(move || {
        let rev = s.upload(&p, &path, size, &sha3, &release)?;
        tracing::info!(pack = %name, rev, "uploaded");
        Ok(rev)
    })
    .await?;
    drop(staged);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"revision": revision})),
    )
        .into_response())
}

/// Streams `body` to `path`, hashing it; (size, SHA3-384 hex).
async fn receive(body: Body, path: &std::path::Path) -> Result<(u64, String), StoreError> {
    let io = |e: std::io::Error| StoreError::Io(format!("cannot stage the upload: {e}"));
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(path).await.map_err(io)?);
    let mut hasher = sha3::Sha3_384::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| StoreError::Invalid(format!("the upload was interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD {
            return Err(StoreError::Invalid(format!(
                "the upload is larger than this store accepts ({MAX_UPLOAD} bytes)"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok((size, hex(&hasher.finalize())))
}

#[derive(Deserialize)]
struct ReleaseBody {
    revision: u32,
    channels: Vec<String>,
    /// A progressive release (one channel).
    #[serde(default)]
    progressive: Option<crate::rollouts::Progressive>,
}

async fn release(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<ReleaseBody>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let list = channels(&b.channels)?;
    if let Some(plan) = b.progressive {
        let [channel] = list.as_slice() else {
            return Err(StoreError::Invalid(
                "a progressive release goes to one channel at a time".into(),
            )
            .into());
        };
        let channel = channel.clone();
        let id =
            blocking(move || s.release_progressive(&p, &name, b.revision, &channel, &plan)).await?;
        return Ok(Json(serde_json::json!({ "rollout": id })).into_response());
    }
    blocking(move || s.release(&p, &name, b.revision, &list)).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

/// `GET /v1/packs/NAME/rollouts`: its rollouts, newest first, with counts per wave.
async fn rollouts(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let list = blocking(move || s.rollouts(&p, &name)).await?;
    Ok(Json(serde_json::json!(list)).into_response())
}

#[derive(Deserialize)]
struct RolloutAction {
    action: String,
    /// Which rollout, when the pack has them on several channels.
    #[serde(default)]
    channel: Option<String>,
}

/// `POST /v1/packs/NAME/rollouts` with `{"action": "pause"|"resume"|"halt"}`.
async fn control_rollout(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<RolloutAction>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let channel = match &b.channel {
        Some(c) => Some(
            c.parse::<crate::channel::Channel>()
                .map_err(|e| StoreError::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let state = blocking(move || s.control_rollout(&p, &name, &b.action, channel.as_ref())).await?;
    Ok(Json(serde_json::json!({ "state": state })).into_response())
}

#[derive(Deserialize)]
struct CloseBody {
    channels: Vec<String>,
}

async fn close(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<CloseBody>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    let list = channels(&b.channels)?;
    blocking(move || s.close(&p, &name, &list)).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

async fn revoke(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    Path((name, rev)): Path<(String, u32)>,
) -> ApiResult<Response> {
    let p = publisher(&s, &headers)?;
    blocking(move || s.revoke(Some(&p), &name, rev)).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

async fn assertion(
    State(s): State<Arc<Store>>,
    Path((kind, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let cat = s.catalog();
    let text = cat.assertion(&kind, &key).ok_or_else(|| {
        StoreError::NotFound(format!("this store has no {kind} assertion {key:?}"))
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/x.pack-assertion")],
        text.to_vec(),
    )
        .into_response())
}

async fn download(
    State(s): State<Arc<Store>>,
    Path((pack_id, rev)): Path<(String, u32)>,
    request: Request,
) -> ApiResult<Response> {
    let cat = s.catalog();
    let r = cat
        .by_id(&pack_id)
        .and_then(|e| e.revisions.get(&rev))
        .ok_or_else(|| StoreError::NotFound(format!("no revision {rev} of pack-id {pack_id}")))?;
    if r.revoked.is_some() {
        return Ok((
            StatusCode::GONE,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: "revoked".into(),
                    message: format!("revision {rev} is revoked"),
                },
            }),
        )
            .into_response());
    }
    let file = ServeFile::new(s.layout.blob(&r.sha3));
    match tower::ServiceExt::oneshot(file, request).await {
        Ok(resp) => Ok(resp.map(Body::new)),
        Err(e) => Err(StoreError::Io(format!("cannot send the blob: {e}")).into()),
    }
}

async fn refresh(
    State(s): State<Arc<Store>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    if body.len() > MAX_REQUEST {
        return Err(StoreError::Invalid("the refresh request is too large".into()).into());
    }
    let req: RefreshRequest = serde_json::from_slice(&body)
        .map_err(|e| StoreError::Invalid(format!("the refresh request is not valid: {e}")))?;
    let cat = s.catalog();
    let (answer, assertions) = cat.refresh(&req, now());
    let answer_json = serde_json::to_vec(&answer)
        .map_err(|e| StoreError::Io(format!("cannot encode the answer: {e}")))?;
    let etag = format!(
        "\"{}\"",
        &crate::sha3_hex(&[answer_json.as_slice(), &assertions.concat()].concat())[..32]
    );
    let poll = HeaderValue::from(answer.poll_after);
    let etag_value =
        HeaderValue::from_str(&etag).map_err(|e| StoreError::Io(format!("bad etag: {e}")))?;
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag_value);
        r.headers_mut().insert("pack-poll-after", poll);
        return Ok(r);
    }
    let serial = cat.serial;
    let s2 = s.clone();
    let signed =
        blocking(move || s2.sign_answer(&answer_json, &body, serial, ANSWER_LIFETIME_SECS)).await?;
    let resp = RefreshResponse {
        answer: String::from_utf8_lossy(&signed.encode()).into_owned(),
        assertions: assertions
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let mut r = Json(resp).into_response();
    r.headers_mut().insert(header::ETAG, etag_value);
    r.headers_mut().insert("pack-poll-after", poll);
    Ok(r)
}
