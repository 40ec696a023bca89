//! `/v2/debug/*`: what the daemon would do, for humans debugging confinement.

use std::sync::Arc;

use axum::extract::{Extension, Query, State};
use serde::Deserialize;

use super::Api;
use super::Peer;
use super::response::{ApiResult, sync};
use crate::error::{Error, IoContext};
use crate::launch::{AppRef, Invocation, LaunchError};

#[derive(Debug, Deserialize)]
pub struct AppQuery {
    app: String,
}

pub use packd_api::debug::{AppArmorReport, Layer};

/// The report with the daemon's own spec type.
pub type SandboxReport = packd_api::debug::SandboxReport<confine::SandboxSpec>;

/// `GET /v2/debug/sandbox?app=NAME.APP`: the spec and which layers are active.
pub async fn sandbox(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<AppQuery>,
) -> ApiResult {
    let target: AppRef = q.app.parse()?;
    let inv = Invocation {
        uid: peer.uid,
        gid: peer.gid,
        groups: peer.groups.clone(),
        cwd: "/".into(),
        ..Default::default()
    };
    let l = d.launcher.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<_, LaunchError> {
        let prepared = l.prepare_unchecked(&target, inv)?;
        let devmode = prepared.resolved.meta.confinement == packfmt::meta::Confinement::Devmode;
        let spec = prepared.spec(&l)?;
        Ok(SandboxReport {
            app: target.to_string(),
            confinement: prepared.resolved.meta.confinement.as_str().into(),
            layers: l
                .layers(devmode)
                .into_iter()
                .map(|(layer, state)| Layer {
                    layer: layer.into(),
                    state,
                })
                .collect(),
            spec,
        })
    })
    .await
    .map_err(|e| Error::bad(format!("cannot build the report: {e}")))??;
    Ok(sync(report))
}

/// `GET /v2/debug/apparmor?app=NAME.APP`: the app's generated AppArmor profile.
pub async fn apparmor(State(d): State<Arc<Api>>, Query(q): Query<AppQuery>) -> ApiResult {
    let target: AppRef = q.app.parse()?;
    let r = d.store.read(|s| crate::launch::resolve(s, &target))?;
    let path = d.paths.apparmor_profile(&r.name, r.revision, &r.app);
    let profile = std::fs::read_to_string(&path)
        .ctx("read", &path)
        .map_err(LaunchError::from)?;
    Ok(sync(AppArmorReport {
        app: target.to_string(),
        label: crate::policy::apparmor::label(&r.name, &r.app),
        profile,
        kernel: if d.launcher.features.apparmor {
            "loaded and enforced".into()
        } else {
            "unavailable: this kernel has no AppArmor, so the profile is generated and checked but not loaded".into()
        },
    }))
}
