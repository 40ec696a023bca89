//! `/v2/connections` and `/v2/interfaces`: what is connected, connecting and disconnecting, and
//! the catalog.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use interfaces::{CATALOG, Interface, PortRef};
use serde::Deserialize;

use super::Api;
use super::Peer;
use super::response::{ApiError, ApiResult, accepted, sync};
use super::types::{AttrInfo, ConnectRequest, ConnectionInfo, InterfaceInfo};
use crate::connections::policy;
use crate::error::Error;
use crate::state::State as PackdState;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pack: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `GET /v2/connections[?pack=NAME][&all=true]`: connections; with a pack, its plugs and slots
/// connected or not; with `all`, every unconnected plug too.
pub async fn list(State(d): State<Arc<Api>>, Query(q): Query<ListQuery>) -> ApiResult {
    if let Some(p) = &q.pack {
        packfmt::meta::validate_pack_name(p).map_err(ApiError::bad_request)?;
        if p != interfaces::SYSTEM && d.store.read(|s| !s.packs.contains_key(p)) {
            return Err(crate::packs::PackError::NotInstalled(p.clone()).into());
        }
    }
    let out = d.store.read(|s| {
        let mine = |r: &PortRef| q.pack.as_deref().is_none_or(|p| r.pack == p);
        let mut out: Vec<ConnectionInfo> = s
            .connections
            .iter()
            .filter(|c| mine(&c.plug) || mine(&c.slot))
            .map(|c| ConnectionInfo {
                interface: c.interface.clone(),
                plug: c.plug.to_string(),
                slot: Some(c.slot.to_string()),
                manual: c.manual,
            })
            .collect();
        if q.all || q.pack.is_some() {
            for pack in s.packs.values().filter(|p| p.active) {
                let Some(rev) = pack.current_revision() else {
                    continue;
                };
                for plug in rev.meta.plugs.values() {
                    let r = PortRef::new(&pack.name, &plug.name);
                    if mine(&r) && !s.connections.iter().any(|c| c.plug == r) {
                        out.push(ConnectionInfo {
                            interface: plug.interface.clone(),
                            plug: r.to_string(),
                            slot: None,
                            manual: false,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.plug, &a.slot).cmp(&(&b.plug, &b.slot)));
        out
    });
    Ok(sync(out))
}

fn port_ref(s: &str) -> Result<PortRef, Error> {
    s.parse()
        .map_err(|e: interfaces::AttrError| Error::bad(e.0))
}

/// `POST /v2/connections`: connect or disconnect, as a change (root only).
pub async fn change(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<ConnectRequest>,
) -> ApiResult {
    let plug = port_ref(&req.plug)?;
    let slot = req.slot.as_deref().map(port_ref).transpose()?;
    let id = match req.action.as_str() {
        "connect" => {
            peer.require_root("connecting an interface")?;
            d.connections.connect(plug, slot)?
        }
        "disconnect" => {
            peer.require_root("disconnecting an interface")?;
            d.connections.disconnect(plug, slot)?
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {other:?}; use connect or disconnect"
            )));
        }
    };
    Ok(accepted(id))
}

fn info(s: &PackdState, i: &Interface) -> InterfaceInfo {
    let attrs = |rules: &[interfaces::attrs::Rule]| {
        rules
            .iter()
            .map(|r| AttrInfo {
                name: r.name.into(),
                required: r.required,
                doc: r.doc.into(),
            })
            .collect()
    };
    let word = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut plugs = Vec::new();
    for pack in s.packs.values().filter(|p| p.active) {
        if let Some(rev) = pack.current_revision() {
            plugs.extend(
                rev.meta
                    .plugs
                    .values()
                    .filter(|p| p.interface == i.name)
                    .map(|p| format!("{}:{}", pack.name, p.name)),
            );
        }
    }
    let slots = policy::offered(s)
        .into_iter()
        .filter(|(_, slot)| slot.interface == i.name)
        .map(|(pack, slot)| format!("{pack}:{}", slot.name))
        .collect();
    InterfaceInfo {
        name: i.name.into(),
        summary: i.summary.into(),
        grants: i.grants.into(),
        provider: word(serde_json::to_value(i.provider).unwrap_or_default()),
        auto_connect: word(serde_json::to_value(i.auto_connect).unwrap_or_default()),
        plug_attrs: attrs(i.plug_attrs),
        slot_attrs: attrs(i.slot_attrs),
        plugs,
        slots,
    }
}

/// `GET /v2/interfaces`: the catalog.
pub async fn interfaces(State(d): State<Arc<Api>>) -> ApiResult {
    let out: Vec<InterfaceInfo> = d
        .store
        .read(|s| CATALOG.iter().map(|i| info(s, i)).collect());
    Ok(sync(out))
}

/// `GET /v2/interfaces/{name}`.
pub async fn interface(State(d): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    let i = interfaces::find(&name).ok_or_else(|| Error::NotFound {
        kind: packd_api::ErrorKind::InterfaceNotFound,
        message: format!(
            "unknown interface {name:?}; 'pack interfaces' lists them: {}",
            CATALOG
                .iter()
                .map(|i| i.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    Ok(sync(d.store.read(|s| info(s, i))))
}
