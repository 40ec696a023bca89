//! `/v2/packs`: list, info, install (upload) and remove.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::response::Response;
use futures_util::StreamExt;
use packfmt::meta::{host_arch, validate_pack_name};
use packfmt::{PackType, Revision};
use serde::Deserialize;
use sha3::{Digest, Sha3_384};
use tokio::io::AsyncWriteExt;

use super::Peer;
use super::response::{ApiError, ApiResult, accepted, sync};
use super::types::{AppInfo, PackAction, PackInfo, RevisionInfo, SystemInfo};
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::packs::inspect::{Inspected, inspect};
use crate::packs::link::launcher_names;
use crate::paths::Paths;
use crate::state::{PackState, Plan, State as PackdState, TaskKind};

pub async fn system_info(State(d): State<Arc<Daemon>>) -> Response {
    sync(SystemInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        root: d.paths.root().to_path_buf(),
        socket: d.config.socket.clone(),
        architecture: host_arch().into(),
    })
}

pub async fn list(State(d): State<Arc<Daemon>>) -> Response {
    let infos: Vec<PackInfo> = d.store.read(|s| {
        s.packs
            .values()
            .filter(|p| p.active)
            .filter_map(|p| pack_info(&d.paths, p))
            .collect()
    });
    sync(infos)
}

pub async fn info(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult {
    validate_pack_name(&name).map_err(ApiError::bad_request)?;
    let info = d.store.read(|s| {
        s.packs
            .get(&name)
            .filter(|p| p.active)
            .and_then(|p| pack_info(&d.paths, p))
    });
    Ok(sync(info.ok_or_else(|| Error::pack_not_found(&name))?))
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
    State(d): State<Arc<Daemon>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<InstallQuery>,
    body: Body,
) -> ApiResult {
    peer.require_root("installing a pack")?;
    let label = label(q.filename.as_deref());
    if !q.dangerous {
        return Err(ApiError::bad_request(format!(
            "cannot install {label}: local packages carry no store signature; pass --dangerous to install it anyway"
        )));
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
            Error::io(
                format!("cannot stage the upload in {}", upload_dir.display()),
                e,
            )
        })?
        .into_temp_path();
    let (size, sha3) = receive(body, &staged).await?;
    let path = staged.to_path_buf();
    let label2 = label.clone();
    let inspected = tokio::task::spawn_blocking(move || inspect(&path, &label2))
        .await
        .map_err(|e| Error::Internal(format!("inspection crashed: {e}")))??;
    let name = inspected.meta.name.clone();
    let id = d
        .store
        .update(|s| plan_install(s, inspected, staged.to_path_buf(), size, sha3, &label))?;
    // The change owns the upload now.
    staged
        .keep()
        .map_err(|e| Error::Internal(format!("cannot keep the upload: {e}")))?;
    tracing::info!(change = id, pack = %name, "install queued");
    d.engine.enqueue(id);
    Ok(accepted(id))
}

/// Streams the request body to `path`, hashing it; returns (size, SHA3-384 hex).
async fn receive(body: Body, path: &std::path::Path) -> Result<(u64, String)> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha3_384::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::bad(format!("the upload was interrupted: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    file.into_inner()
        .sync_all()
        .await
        .map_err(|e| Error::io(format!("cannot sync {}", path.display()), e))?;
    if size == 0 {
        return Err(Error::bad("the upload is empty; pass a .pack file"));
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

/// Checks the install against the state and adds its change; returns the change id.
fn plan_install(
    s: &mut PackdState,
    inspected: Inspected,
    staged: std::path::PathBuf,
    size: u64,
    sha3_384: String,
    label: &str,
) -> Result<u64> {
    let meta = inspected.meta;
    let name = meta.name.clone();
    if let Some(c) = s.change_in_progress(&name) {
        return Err(Error::Conflict(format!(
            "pack {name:?} has change {} ({}) in progress; wait for it with 'pack watch {}'",
            c.id, c.kind, c.id
        )));
    }
    if let Some(existing) = s.packs.get(&name)
        && existing.pack_type != meta.pack_type
    {
        return Err(Error::bad(format!(
            "cannot install {label}: a pack of type {} named {name:?} is installed, and this one is of type {}",
            existing.pack_type.as_str(),
            meta.pack_type.as_str()
        )));
    }
    if let Some(base) = &meta.base {
        let installed = s
            .packs
            .get(base)
            .is_some_and(|b| b.active && b.pack_type == PackType::Base);
        if !installed {
            return Err(Error::bad(format!(
                "cannot install {label}: its base {base:?} is not installed; install the base first (build one with 'pack base build')"
            )));
        }
        if let Some(c) = s.change_in_progress(base) {
            return Err(Error::Conflict(format!(
                "cannot install {label}: its base {base:?} has change {} ({}) in progress",
                c.id, c.kind
            )));
        }
    }
    let revision: Revision = s.next_local_revision(&name);
    let kinds = install_tasks(s, &name, &meta);
    let tasks = kinds
        .into_iter()
        .map(|k| (k, k.summary(&name, Some(revision))))
        .collect();
    let summary = format!("Install pack {name:?} ({revision}) from {label}");
    Ok(s.add_change(
        "install-pack",
        summary,
        Plan::Install {
            name,
            revision,
            meta: Box::new(meta),
            staged,
            size,
            sha3_384,
        },
        tasks,
    ))
}

/// `POST /v2/packs/{name}` with `{"action": "remove"}`.
pub async fn action(
    State(d): State<Arc<Daemon>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    Json(req): Json<PackAction>,
) -> ApiResult {
    validate_pack_name(&name).map_err(ApiError::bad_request)?;
    match req.action.as_str() {
        "remove" => {
            peer.require_root("removing a pack")?;
            let id = d.store.update(|s| plan_remove(s, &name, req.purge))?;
            d.engine.enqueue(id);
            Ok(accepted(id))
        }
        "revert" => {
            peer.require_root("reverting a pack")?;
            let revision = match req.revision.as_deref() {
                Some(r) => Some(r.parse::<Revision>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid revision {r:?}; 'pack info {name}' lists the revisions"
                    ))
                })?),
                None => None,
            };
            let id = d.store.update(|s| plan_revert(s, &name, revision))?;
            d.engine.enqueue(id);
            Ok(accepted(id))
        }
        other => Err(ApiError::bad_request(format!(
            "unknown action {other:?}; this packd supports: remove, revert"
        ))),
    }
}

/// The tasks of installing `meta` as `name`, in snapd's order. A new revision of an installed
/// app pack is a refresh: the old revision's services stop and its pre-refresh hook runs
/// before its data is copied; the new one must then prove itself (health window) before old
/// revisions beyond `refresh.retain` go. Hook tasks are there for the hooks the pack has
/// (the old revision's, for pre-refresh).
fn install_tasks(s: &PackdState, name: &str, meta: &packfmt::PackMeta) -> Vec<TaskKind> {
    let app = meta.pack_type == PackType::App;
    let old_hooks = s
        .packs
        .get(name)
        .filter(|p| p.active && app)
        .and_then(|p| p.current_revision())
        .map(|r| &r.meta.hooks);
    let refresh = old_hooks.is_some();
    let has = |hook: &str| meta.hooks.contains_key(hook);
    let mut kinds = vec![TaskKind::PreparePack, TaskKind::MountPack];
    if app {
        kinds.push(TaskKind::StopServices);
        if old_hooks.is_some_and(|h| h.contains_key("pre-refresh")) {
            kinds.push(TaskKind::PreRefreshHook);
        }
        kinds.push(TaskKind::CopyData);
        kinds.push(TaskKind::SetupProfiles);
    }
    kinds.push(TaskKind::LinkPack);
    kinds.push(TaskKind::AutoConnect);
    if app {
        if !refresh && has("install") {
            kinds.push(TaskKind::InstallHook);
        }
        kinds.push(TaskKind::StartServices);
        if refresh && has("post-refresh") {
            kinds.push(TaskKind::PostRefreshHook);
        }
        if has("configure") {
            kinds.push(TaskKind::ConfigureHook);
        }
        if has("check-health") {
            kinds.push(TaskKind::CheckHealthHook);
        }
    }
    if refresh {
        kinds.push(TaskKind::CheckHealth);
        kinds.push(TaskKind::Cleanup);
    }
    kinds
}

/// `pack revert NAME [--revision R]`: R (default: the revision installed before the current
/// one) becomes current again with its own data, as in snapd.
fn plan_revert(s: &mut PackdState, name: &str, revision: Option<Revision>) -> Result<u64> {
    let pack = s
        .packs
        .get(name)
        .filter(|p| p.active)
        .ok_or_else(|| Error::pack_not_found(name))?;
    super::connections::busy(s, &[name])?;
    if pack.pack_type != PackType::App {
        return Err(Error::bad(format!(
            "{name} is a {} pack; only app packs can be reverted",
            if pack.pack_type == PackType::Base {
                "base"
            } else {
                "gadget"
            }
        )));
    }
    let from = pack.current;
    let listed: Vec<String> = pack
        .sequence
        .iter()
        .map(|r| r.revision.to_string())
        .collect();
    let target = match revision {
        Some(r) if r == from => {
            return Err(Error::bad(format!(
                "{name} is already at revision {r}; pick another with --revision ({})",
                listed.join(", ")
            )));
        }
        Some(r) if pack.revision(r).is_some() => r,
        Some(r) => {
            return Err(Error::bad(format!(
                "{name} has no revision {r}; it has {}",
                listed.join(", ")
            )));
        }
        None => {
            let at = pack.sequence.iter().position(|r| r.revision == from);
            match at.and_then(|i| i.checked_sub(1)) {
                Some(i) => pack.sequence[i].revision,
                None => {
                    return Err(Error::bad(format!(
                        "{name} has no revision before {from} to revert to"
                    )));
                }
            }
        }
    };
    let tasks = [
        TaskKind::StopServices,
        TaskKind::SetupProfiles,
        TaskKind::LinkPack,
        TaskKind::StartServices,
    ]
    .into_iter()
    .map(|k| (k, k.summary(name, Some(target))))
    .collect();
    Ok(s.add_change(
        "revert-pack",
        format!("Revert pack {name:?} from {from} to {target}"),
        Plan::Revert {
            name: name.to_string(),
            revision: target,
            from,
        },
        tasks,
    ))
}

fn plan_remove(s: &mut PackdState, name: &str, purge: bool) -> Result<u64> {
    let pack = s
        .packs
        .get(name)
        .filter(|p| p.active)
        .ok_or_else(|| Error::pack_not_found(name))?;
    if let Some(c) = s.change_in_progress(name) {
        return Err(Error::Conflict(format!(
            "pack {name:?} has change {} ({}) in progress; wait for it with 'pack watch {}'",
            c.id, c.kind, c.id
        )));
    }
    if pack.pack_type == PackType::Base {
        let mut users: Vec<String> = s
            .users_of_base(name)
            .into_iter()
            .filter(|u| u != name)
            .collect();
        // Installs under way count as users too.
        users.extend(
            s.changes
                .values()
                .filter(|c| !c.is_ready())
                .filter_map(|c| match &c.plan {
                    Plan::Install { meta, name: n, .. } if meta.base.as_deref() == Some(name) => {
                        Some(n.clone())
                    }
                    _ => None,
                }),
        );
        if !users.is_empty() {
            return Err(Error::bad(format!(
                "cannot remove base {name:?}: {} use{} it; remove {} first",
                users.join(", "),
                if users.len() == 1 { "s" } else { "" },
                if users.len() == 1 { "it" } else { "them" }
            )));
        }
    }
    let revisions: Vec<Revision> = pack.sequence.iter().map(|r| r.revision).collect();
    let mut tasks = vec![TaskKind::StopServices];
    if pack
        .current_revision()
        .is_some_and(|r| r.meta.hooks.contains_key("remove"))
    {
        tasks.push(TaskKind::RemoveHook);
    }
    let tasks = tasks
        .into_iter()
        .chain([
            TaskKind::DisconnectAll,
            TaskKind::UnlinkPack,
            TaskKind::UnmountPack,
            TaskKind::DiscardData,
            TaskKind::DiscardPack,
        ])
        .map(|k| (k, k.summary(name, None)))
        .collect();
    Ok(s.add_change(
        "remove-pack",
        format!("Remove pack {name:?}"),
        Plan::Remove {
            name: name.to_string(),
            revisions,
            purge,
        },
        tasks,
    ))
}
