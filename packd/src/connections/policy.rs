//! Connections between plugs and slots, against the state (pure functions): which slots are
//! offered, what auto-connects, and what an app's connections grant it (through the
//! `interfaces` crate).

use std::collections::BTreeMap;
use std::path::PathBuf;

use interfaces::{Candidate, Grants, PortRef, SYSTEM, Side};
use packfmt::meta::Port;
use packfmt::{PackMeta, Revision};

use super::ConnectionError;
use crate::paths::Paths;
use crate::state::{Connection, State};

/// Every slot that can be connected to: the system's, and those of the active packs' current
/// revisions.
pub fn offered(state: &State) -> Vec<(String, Port)> {
    let mut out: Vec<(String, Port)> = interfaces::system_slots()
        .into_iter()
        .map(|p| (SYSTEM.to_string(), p))
        .collect();
    for pack in state.packs.values().filter(|p| p.active) {
        if let Some(rev) = pack.current_revision() {
            out.extend(
                rev.meta
                    .slots
                    .values()
                    .map(|s| (pack.name.clone(), s.clone())),
            );
        }
    }
    out
}

fn current_meta<'a>(state: &'a State, pack: &str) -> Option<(&'a PackMeta, Revision)> {
    state
        .packs
        .get(pack)
        .filter(|p| p.active)
        .and_then(|p| p.current_revision())
        .map(|r| (&r.meta, r.revision))
}

type Result<T> = std::result::Result<T, ConnectionError>;

fn installed<'a>(state: &'a State, pack: &str) -> Result<(&'a PackMeta, Revision)> {
    current_meta(state, pack).ok_or_else(|| ConnectionError::PackNotInstalled(pack.to_string()))
}

/// The plug `r` names, or an error saying what is missing.
pub fn plug(state: &State, r: &PortRef) -> Result<Port> {
    let (meta, _) = installed(state, &r.pack)?;
    meta.plugs
        .get(&r.name)
        .cloned()
        .ok_or_else(|| ConnectionError::NoPlug {
            pack: r.pack.clone(),
            plug: r.name.clone(),
            known: meta.plugs.keys().cloned().collect(),
        })
}

/// The slot `r` names (`system:IFACE` for the system's), or an error saying what is missing.
pub fn slot(state: &State, r: &PortRef) -> Result<Port> {
    if r.pack == SYSTEM {
        return interfaces::system_slot(&r.name).ok_or_else(|| ConnectionError::NoSystemSlot {
            slot: r.name.clone(),
            known: interfaces::system_slots()
                .into_iter()
                .map(|s| s.name)
                .collect(),
        });
    }
    let (meta, _) = installed(state, &r.pack)?;
    meta.slots
        .get(&r.name)
        .cloned()
        .ok_or_else(|| ConnectionError::NoSlot {
            pack: r.pack.clone(),
            slot: r.name.clone(),
            known: meta.slots.keys().cloned().collect(),
        })
}

/// The slot a `pack connect PLUG` without a slot means: the only compatible one.
pub fn default_slot(state: &State, plug_ref: &PortRef, plug: &Port) -> Result<PortRef> {
    let offered = offered(state);
    let list: Vec<Candidate> = offered
        .iter()
        .map(|(pack, slot)| Candidate { pack, slot })
        .collect();
    let found = interfaces::candidates(&plug_ref.pack, plug, &list);
    match found.as_slice() {
        [only] => Ok(PortRef::new(only.pack, &only.slot.name)),
        [] => Err(ConnectionError::NoCandidate {
            plug: plug_ref.clone(),
            interface: plug.interface.clone(),
        }),
        many => Err(ConnectionError::Ambiguous {
            plug: plug_ref.clone(),
            candidates: many
                .iter()
                .map(|c| format!("{}:{}", c.pack, c.slot.name))
                .collect(),
        }),
    }
}

/// The connections pack `name` makes by itself: its plugs to the only fitting slot, and other
/// packs' plugs to its slots. Existing connections and plugs root disconnected are left alone.
pub fn auto_connections(state: &State, name: &str) -> Vec<Connection> {
    let offered = offered(state);
    let list: Vec<Candidate> = offered
        .iter()
        .map(|(pack, slot)| Candidate { pack, slot })
        .collect();
    let mut out: Vec<Connection> = Vec::new();
    for pack in state.packs.values().filter(|p| p.active) {
        let Some(rev) = pack.current_revision() else {
            continue;
        };
        for plug in rev.meta.plugs.values() {
            let plug_ref = PortRef::new(&pack.name, &plug.name);
            if state.undesired.contains(&plug_ref)
                || state.connections.iter().any(|c| c.plug == plug_ref)
            {
                continue;
            }
            // A privileged interface connects by itself only when the pack's store declared
            // it may (snapd's store declarations), and then only to the one fitting slot.
            let granted = pack
                .tracking
                .as_ref()
                .is_some_and(|t| t.grants.contains(&plug.interface));
            let found = interfaces::auto_connect(&pack.name, plug, &list).or_else(|| {
                let found = interfaces::candidates(&pack.name, plug, &list);
                match found.as_slice() {
                    [only] if granted => Some(only.clone()),
                    _ => None,
                }
            });
            let Some(found) = found else {
                continue;
            };
            // Only what this pack's arrival makes possible.
            if pack.name != name && found.pack != name {
                continue;
            }
            out.push(Connection {
                interface: plug.interface.clone(),
                plug: plug_ref,
                slot: PortRef::new(found.pack, &found.slot.name),
                manual: false,
            });
        }
    }
    out
}

/// The plugs app `app` uses: those it lists, plus the top-level plugs no app lists (they
/// belong to every app, as in snapd).
pub fn app_plugs<'a>(meta: &'a PackMeta, app: &str) -> Vec<&'a str> {
    let listed: Vec<&str> = meta
        .apps
        .values()
        .flat_map(|a| a.plugs.iter().map(String::as_str))
        .collect();
    let mut out: Vec<&str> = meta
        .plugs
        .keys()
        .map(String::as_str)
        .filter(|p| !listed.contains(p))
        .collect();
    if let Some(a) = meta.apps.get(app) {
        out.extend(a.plugs.iter().map(String::as_str));
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn side<'a>(paths: &Paths, pack: &'a str, rev: Option<Revision>, port: &'a Port) -> Side<'a> {
    let (host_pack, host_data, host_common) = match rev {
        Some(rev) => (
            paths.mount_dir(pack, rev),
            paths.data_dir(pack, rev),
            paths.common_dir(pack),
        ),
        None => (PathBuf::new(), PathBuf::new(), PathBuf::new()),
    };
    Side {
        pack,
        revision: rev.map(|r| r.to_string()).unwrap_or_default(),
        port,
        host_pack,
        host_data,
        host_common,
    }
}

/// What the connections of pack `name` (revision `rev`, metadata `meta`) grant each of its
/// apps (hooks use the name `hook.NAME` in later work).
pub fn grants_by_app(
    state: &State,
    paths: &Paths,
    name: &str,
    rev: Revision,
    meta: &PackMeta,
) -> Result<BTreeMap<String, Grants>> {
    // Hooks get grants like apps (their own plugs, and the pack-wide ones).
    let meta = &*crate::policy::hooks::with_hooks(meta);
    let mut per_plug: BTreeMap<&str, Grants> = BTreeMap::new();
    for c in state.connections.iter().filter(|c| c.plug.pack == name) {
        let Some(plug) = meta.plugs.get(&c.plug.name) else {
            // This revision no longer declares the plug: it grants nothing.
            continue;
        };
        let (slot, slot_rev) = if c.slot.pack == SYSTEM {
            match interfaces::system_slot(&c.slot.name) {
                Some(s) => (s, None),
                None => continue,
            }
        } else {
            match current_meta(state, &c.slot.pack)
                .and_then(|(m, r)| m.slots.get(&c.slot.name).map(|s| (s.clone(), Some(r))))
            {
                Some(found) => found,
                None => continue,
            }
        };
        let conn = interfaces::Connection {
            plug: side(paths, name, Some(rev), plug),
            slot: side(paths, &c.slot.pack, slot_rev, &slot),
            host_root: paths.root(),
        };
        let g = conn.grants().map_err(|e| ConnectionError::Grant {
            plug: c.plug.clone(),
            slot: c.slot.clone(),
            reason: e.to_string(),
        })?;
        per_plug.entry(plug.name.as_str()).or_default().merge(g);
    }
    let mut out = BTreeMap::new();
    for app in meta.apps.keys() {
        let mut g = Grants::default();
        for p in app_plugs(meta, app) {
            if let Some(pg) = per_plug.get(p) {
                g.merge(pg.clone());
            }
        }
        out.insert(app.clone(), g);
    }
    Ok(out)
}

/// The packs whose profiles a change of `conns` affects (the plugs' packs).
pub fn affected(conns: &[Connection]) -> Vec<String> {
    let mut packs: Vec<String> = conns.iter().map(|c| c.plug.pack.clone()).collect();
    packs.sort();
    packs.dedup();
    packs
}
