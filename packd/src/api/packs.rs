//! `/v2/packs`: list, info, install (upload) and remove.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::response::Response;
use futures_util::StreamExt;
use packfmt::Revision;
use packfmt::meta::{host_arch, validate_pack_name};
use serde::Deserialize;
use sha3::{Digest, Sha3_384};
use tokio::io::AsyncWriteExt;

use super::response::{ApiError, ApiResult, accepted, sync};
use super::types::{AppInfo, PackAction, PackInfo, RevisionInfo, SystemInfo};
use super::{Api, Peer};
use crate::error::{Error, IoError};
use crate::packs::PackError;
use crate::packs::link::launcher_names;
use crate::paths::Paths;
use crate::state::PackState;

pub async fn system_info(State(d): State<Arc<Api>>) -> Response {
    sync(SystemInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        root: d.paths.root().to_path_buf(),
        socket: d.socket.clone(),
        architecture: host_arch().into(),
    })
}

pub async fn list(State(d): State<Arc<Api>>) -> Response {
    let infos: Vec<PackInfo> = d.store.read(|s| {
        s.packs
            .values()
            .filter(|p| p.active)
            .filter_map(|p| pack_info(&d.paths, p))
            .collect()
    });
    sync(infos)
}

pub async fn info(State(d): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    validate_pack_name(&name).map_err(ApiError::bad_request)?;
    let info = d.store.read(|s| {
        s.packs
            .get(&name)
            .filter(|p| p.active)
            .and_then(|p| pack_info(&d.paths, p))
    });
    Ok(sync(info.ok_or(PackError::NotInstalled(name))?))
}

fn date(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn pack_info(paths: &Paths, p: &PackState) -> Option<PackInfo> {
    let cur = p.current_revision()?;
    let m = &cur.meta;
    let launchers = launcher_names(m);
    let mut notes = Vec::new();
    if m.confinement == packfmt::meta::Confinement::Devmode {
        notes.push("devmode".into());
    }
    if m.source == packfmt::meta::MetaSource::SnapYaml {
        notes.push("snap.yaml".into());
    }
    Some(PackInfo {
        name: p.name.clone(),
        version: m.version.clone(),
        revision: cur.revision,
        pack_type: m.pack_type.as_str().into(),
        base: m.base.clone(),
        summary: m.summary.clone(),
        description: m.description.clone(),
        confinement: m.confinement.as_str().into(),
        grade: format!("{:?}", m.grade).to_lowercase(),
        notes,
        installed_size: cur.size,
        install_date: date(cur.installed_at),
        sha3_384: cur.sha3_384.clone(),
        mount: paths.mount_dir(&p.name, cur.revision),
        apps: m
            .apps
            .values()
            .zip(launchers)
            .map(|(a, launcher)| AppInfo {
                name: a.name.clone(),
                command: a.command.clone(),
                daemon: a.daemon.map(|d| d.as_str().into()),
                launcher,
            })
            .collect(),
        revisions: p
            .sequence
            .iter()
            .map(|r| RevisionInfo {
                revision: r.revision,
                version: r.meta.version.clone(),
                current: r.revision == p.current,
                size: r.size,
                install_date: date(r.installed_at),
            })
            .collect(),
        remote: p.tracking.as_ref().map(|t| t.remote.clone()),
        tracking: p.tracking.as_ref().map(|t| t.channel.clone()),
    })
}

#[derive(Debug, Deserialize)]
pub struct InstallQuery {
    #[serde(default)]
    dangerous: bool,
    /// The user's file name, for messages only.
    #[serde(default)]
    filename: Option<String>,
    /// Only check that an upload with these parameters would be accepted (no body). Clients
    /// ask first so that a refusal does not arrive while they are still sending.
    #[serde(default)]
    preflight: bool,
}

/// A file name from the client, made safe to print: no control characters, bounded length.
fn label(filename: Option<&str>) -> String {
    match filename {
        Some(f) if !f.is_empty() => {
            let clean: String = f.chars().filter(|c| !c.is_control()).take(200).collect();
            format!("{clean:?}")
        }
        _ => "the package".into(),
    }
}

/// `POST /v2/packs?dangerous=true&filename=F` with the package as the body.
pub async fn install(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<InstallQuery>,
    body: Body,
) -> ApiResult {
    peer.require_root("installing a pack")?;
    let label = label(q.filename.as_deref());
    if !q.dangerous {
        return Err(PackError::Unsigned { label }.into());
    }
    if q.preflight {
        return Ok(sync(serde_json::Value::Null));
    }
    // Stage the upload next to the blobs; dropped (deleted) on any error below.
    let upload_dir = d.paths.upload_dir();
    let staged = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".pack")
        .tempfile_in(&upload_dir)
        .map_err(|e| {
            IoError::new(
                format!("cannot stage the upload in {}", upload_dir.display()),
                e,
            )
        })
        .map_err(PackError::from)?
        .into_temp_path();
    let (size, sha3) = receive(body, &staged).await?;
    let path = staged.to_path_buf();
    let packs = d.packs.clone();
    let id = tokio::task::spawn_blocking(move || packs.install(path, size, sha3, label, None))
        .await
        .map_err(|e| Error::bad(format!("the inspection of the upload crashed: {e}")))??;
    // The change owns the upload now.
    staged
        .keep()
        .map_err(|e| PackError::from(IoError::new("cannot keep the upload", e.error)))?;
    tracing::info!(change = id, "install queued");
    d.packs.start(id);
    Ok(accepted(id))
}

/// Streams the request body to `path`, hashing it; returns (size, SHA3-384 hex).
async fn receive(body: Body, path: &std::path::Path) -> Result<(u64, String), PackError> {
    let io = |what: &str, e| IoError::new(format!("cannot {what} {}", path.display()), e);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(|e| io("open", e))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha3_384::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PackError::Interrupted(e.to_string()))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(|e| io("write", e))?;
    }
    file.flush().await.map_err(|e| io("write", e))?;
    file.into_inner()
        .sync_all()
        .await
        .map_err(|e| io("sync", e))?;
    if size == 0 {
        return Err(PackError::EmptyUpload);
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

/// `POST /v2/packs/{name}` with `{"action": "remove"|"revert"|"install"|"switch"}`.
pub async fn action(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    Json(req): Json<PackAction>,
) -> ApiResult {
    validate_pack_name(&name).map_err(ApiError::bad_request)?;
    match req.action.as_str() {
        "remove" => {
            peer.require_root("removing a pack")?;
            Ok(accepted(d.packs.remove(&name, req.purge)?))
        }
        "revert" => {
            peer.require_root("reverting a pack")?;
            let revision = match req.revision.as_deref() {
                Some(r) => Some(r.parse::<Revision>().map_err(|_| PackError::BadRevision {
                    name: name.clone(),
                    given: r.to_string(),
                })?),
                None => None,
            };
            Ok(accepted(d.packs.revert(&name, revision)?))
        }
        "install" => super::store::install(&d, &peer, &name, req.channel, req.remote),
        "switch" => super::store::switch(&d, &peer, &name, req.channel),
        other => Err(ApiError::bad_request(format!(
            "unknown action {other:?}; this packd supports: install, remove, revert, switch"
        ))),
    }
}
