//! `/v2/connections` and `/v2/interfaces`: what is connected, connecting and disconnecting, and
//! the catalog.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use interfaces::{CATALOG, Interface, PortRef};
use serde::Deserialize;

use super::Peer;
use super::response::{ApiError, ApiResult, accepted, sync};
use super::types::{AttrInfo, ConnectRequest, ConnectionInfo, InterfaceInfo};
use crate::connections;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::state::{Plan, State as PackdState, TaskKind};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pack: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `GET /v2/connections[?pack=NAME][&all=true]`: connections; with a pack, its plugs and slots
/// connected or not; with `all`, every unconnected plug too.
pub async fn list(State(d): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult {
    if let Some(p) = &q.pack {
        packfmt::meta::validate_pack_name(p).map_err(ApiError::bad_request)?;
        if p != interfaces::SYSTEM && d.store.read(|s| !s.packs.contains_key(p)) {
            return Err(Error::pack_not_found(p).into());
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

fn port_ref(s: &str) -> Result<PortRef> {
    s.parse()
        .map_err(|e: interfaces::AttrError| Error::bad(e.0))
}

/// `POST /v2/connections`: connect or disconnect, as a change (root only).
pub async fn change(
    State(d): State<Arc<Daemon>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<ConnectRequest>,
) -> ApiResult {
    let plug = port_ref(&req.plug)?;
    let slot = req.slot.as_deref().map(port_ref).transpose()?;
    let id = match req.action.as_str() {
        "connect" => {
            peer.require_root("connecting an interface")?;
            d.store.update(|s| plan_connect(s, plug, slot))?
        }
        "disconnect" => {
            peer.require_root("disconnecting an interface")?;
            d.store.update(|s| plan_disconnect(s, plug, slot))?
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {other:?}; use connect or disconnect"
            )));
        }
    };
    d.engine.enqueue(id);
    Ok(accepted(id))
}

pub(super) fn busy(s: &PackdState, packs: &[&str]) -> Result<()> {
    for p in packs {
        if let Some(c) = s.change_in_progress(p) {
            return Err(Error::Conflict(format!(
                "pack {p:?} has change {} ({}) in progress; wait for it with 'pack watch {}'",
                c.id, c.kind, c.id
            )));
        }
    }
    Ok(())
}

fn plan_connect(s: &mut PackdState, plug_ref: PortRef, slot_ref: Option<PortRef>) -> Result<u64> {
    let plug = connections::plug(s, &plug_ref)?;
    if interfaces::find(&plug.interface).is_none() {
        return Err(Error::bad(format!(
            "plug {plug_ref} has the unknown interface {:?}",
            plug.interface
        )));
    }
    let slot_ref = match slot_ref {
        Some(r) => r,
        None => connections::default_slot(s, &plug_ref, &plug)?,
    };
    let slot = connections::slot(s, &slot_ref)?;
    if slot.interface != plug.interface {
        return Err(Error::bad(format!(
            "cannot connect plug {plug_ref} (interface {:?}) to slot {slot_ref} (interface {:?}): the interfaces differ",
            plug.interface, slot.interface
        )));
    }
    if !interfaces::compatible(&plug, &slot) {
        return Err(Error::bad(format!(
            "cannot connect plug {plug_ref} to slot {slot_ref}: their content tags differ"
        )));
    }
    if plug_ref.pack == slot_ref.pack {
        return Err(Error::bad(format!(
            "cannot connect plug {plug_ref} to a slot of its own pack"
        )));
    }
    if s.connections
        .iter()
        .any(|c| c.plug == plug_ref && c.slot == slot_ref)
    {
        return Err(Error::bad(format!(
            "plug {plug_ref} is already connected to {slot_ref}"
        )));
    }
    busy(s, &[&plug_ref.pack, &slot_ref.pack])?;
    let summary = format!("Connect {plug_ref} to {slot_ref}");
    Ok(s.add_change(
        "connect",
        summary.clone(),
        Plan::Connect {
            plug: plug_ref,
            slot: slot_ref,
            interface: plug.interface,
        },
        vec![(TaskKind::Connect, summary)],
    ))
}

fn plan_disconnect(
    s: &mut PackdState,
    plug_ref: PortRef,
    slot_ref: Option<PortRef>,
) -> Result<u64> {
    connections::plug(s, &plug_ref)?;
    let existing: Vec<PortRef> = s
        .connections
        .iter()
        .filter(|c| c.plug == plug_ref && slot_ref.as_ref().is_none_or(|r| *r == c.slot))
        .map(|c| c.slot.clone())
        .collect();
    let slot_ref = match (existing.as_slice(), slot_ref) {
        ([], Some(r)) => {
            return Err(Error::bad(format!(
                "plug {plug_ref} is not connected to {r}"
            )));
        }
        ([], None) => return Err(Error::bad(format!("plug {plug_ref} is not connected"))),
        ([only], _) => only.clone(),
        (many, _) => {
            return Err(Error::bad(format!(
                "plug {plug_ref} is connected to {}; name the slot",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    busy(s, &[&plug_ref.pack, &slot_ref.pack])?;
    let summary = format!("Disconnect {plug_ref} from {slot_ref}");
    Ok(s.add_change(
        "disconnect",
        summary.clone(),
        Plan::Disconnect {
            plug: plug_ref,
            slot: slot_ref,
        },
        vec![(TaskKind::Disconnect, summary)],
    ))
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
    let slots = connections::offered(s)
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
pub async fn interfaces(State(d): State<Arc<Daemon>>) -> ApiResult {
    let out: Vec<InterfaceInfo> = d
        .store
        .read(|s| CATALOG.iter().map(|i| info(s, i)).collect());
    Ok(sync(out))
}

/// `GET /v2/interfaces/{name}`.
pub async fn interface(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult {
    let i = interfaces::find(&name).ok_or_else(|| Error::NotFound {
        kind: "interface-not-found",
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
