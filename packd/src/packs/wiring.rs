//! The do and undo of the connection tasks: auto-connect (install), connect and disconnect
//! (root's commands), disconnect-all (remove). Each records what it changed before changing
//! it, so a repeated or undone task restores exactly the previous connections, then rewrites
//! the profiles of the packs whose plugs changed.

use interfaces::PortRef;
use packfmt::PackType;

use super::{PackManager, profiles};
use crate::connections;
use crate::engine::TaskCtx;
use crate::error::{Error, Result};
use crate::state::{Connection, Plan, Store};

impl PackManager {
    /// Rewrites the profiles of the current revisions of `packs` from their connections.
    pub(crate) fn regenerate(&self, store: &Store, packs: &[String]) -> Result<()> {
        for name in packs {
            let found = store.read(|s| {
                let pack = s.packs.get(name).filter(|p| p.pack_type == PackType::App)?;
                let rev = pack.current_revision()?;
                Some((
                    rev.revision,
                    rev.meta.clone(),
                    connections::grants_by_app(s, &self.paths, name, rev.revision, &rev.meta),
                ))
            });
            let Some((rev, meta, grants)) = found else {
                continue;
            };
            profiles::write(&self.paths, name, rev, &meta, self.apparmor, &grants?)?;
        }
        Ok(())
    }

    /// What the task recorded under `key`, or `compute`d now and recorded.
    pub(super) fn recorded<T>(
        ctx: &TaskCtx<'_>,
        key: &str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        if let Some(v) = ctx.get::<T>(key) {
            return Ok(v);
        }
        let v = compute()?;
        ctx.set(key, &v)?;
        Ok(v)
    }

    /// Applies `change` to the connections, then rewrites the affected profiles; when that
    /// fails, puts the connections (and whatever profiles were rewritten) back, so a failed
    /// task leaves nothing half done.
    fn rewire(
        &self,
        store: &Store,
        conns: &[Connection],
        change: impl Fn(&mut Vec<Connection>),
    ) -> Result<()> {
        let before = store.read(|s| s.connections.clone());
        store.update(|s| {
            change(&mut s.connections);
            Ok(())
        })?;
        let packs = connections::affected(conns);
        let result = self.regenerate(store, &packs);
        if result.is_err() {
            let restored = store.update(|s| {
                s.connections = before;
                Ok(())
            });
            if let Err(e) = restored.and_then(|()| self.regenerate(store, &packs)) {
                tracing::error!(error = %e, "cannot put the previous connections back");
            }
            return result;
        }
        // The running services of the affected packs restart with their new permissions.
        self.restart_running(&packs);
        result
    }

    fn add(&self, store: &Store, conns: &[Connection]) -> Result<()> {
        self.rewire(store, conns, |all| {
            for c in conns {
                if !all.contains(c) {
                    all.push(c.clone());
                }
            }
        })
    }

    fn drop_all(&self, store: &Store, conns: &[Connection]) -> Result<()> {
        self.rewire(store, conns, |all| all.retain(|c| !conns.contains(c)))
    }

    pub(super) fn auto_connect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        let added: Vec<Connection> = Self::recorded(ctx, "added", || {
            Ok(ctx
                .store()
                .read(|s| connections::auto_connections(s, &name)))
        })?;
        for c in &added {
            tracing::info!(plug = %c.plug, slot = %c.slot, "auto-connected");
        }
        self.add(ctx.store(), &added)
    }

    pub(super) fn undo_auto_connect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let added: Vec<Connection> = ctx.get("added").unwrap_or_default();
        self.drop_all(ctx.store(), &added)
    }

    /// The connection a connect change makes (manual: root asked for it).
    fn connect_plan(ctx: &TaskCtx<'_>) -> Result<Connection> {
        match &ctx.plan {
            Plan::Connect {
                plug,
                slot,
                interface,
            } => Ok(Connection {
                interface: interface.clone(),
                plug: plug.clone(),
                slot: slot.clone(),
                manual: true,
            }),
            _ => Err(Error::Internal("connect task in another change".into())),
        }
    }

    pub(super) fn connect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let conn = Self::connect_plan(ctx)?;
        let plug = &conn.plug;
        let was_undesired: bool = Self::recorded(ctx, "was-undesired", || {
            Ok(ctx.store().read(|s| s.undesired.contains(plug)))
        })?;
        self.add(ctx.store(), std::slice::from_ref(&conn))?;
        if was_undesired {
            ctx.store().update(|s| {
                s.undesired.remove(&conn.plug);
                Ok(())
            })?;
        }
        Ok(())
    }

    pub(super) fn undo_connect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let conn = Self::connect_plan(ctx)?;
        if ctx.get::<bool>("was-undesired") == Some(true) {
            ctx.store().update(|s| {
                s.undesired.insert(conn.plug.clone());
                Ok(())
            })?;
        }
        self.drop_all(ctx.store(), &[conn])
    }

    fn disconnect_plan(ctx: &TaskCtx<'_>) -> Result<(PortRef, PortRef)> {
        match &ctx.plan {
            Plan::Disconnect { plug, slot } => Ok((plug.clone(), slot.clone())),
            _ => Err(Error::Internal("disconnect task in another change".into())),
        }
    }

    pub(super) fn disconnect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (plug, slot) = Self::disconnect_plan(ctx)?;
        let removed: Vec<Connection> = Self::recorded(ctx, "removed", || {
            Ok(ctx.store().read(|s| {
                s.connections
                    .iter()
                    .filter(|c| c.plug == plug && c.slot == slot)
                    .cloned()
                    .collect()
            }))
        })?;
        // An auto-connection root undoes stays undone: a refresh must not bring it back.
        self.drop_all(ctx.store(), &removed)?;
        if removed.iter().any(|c| !c.manual) {
            ctx.store().update(|s| {
                s.undesired.insert(plug.clone());
                Ok(())
            })?;
        }
        Ok(())
    }

    pub(super) fn undo_disconnect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (plug, _) = Self::disconnect_plan(ctx)?;
        let removed: Vec<Connection> = ctx.get("removed").unwrap_or_default();
        if removed.iter().any(|c| !c.manual) {
            ctx.store().update(|s| {
                s.undesired.remove(&plug);
                Ok(())
            })?;
        }
        self.add(ctx.store(), &removed)
    }

    pub(super) fn disconnect_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        let removed: Vec<Connection> = Self::recorded(ctx, "removed", || {
            Ok(ctx.store().read(|s| {
                s.connections
                    .iter()
                    .filter(|c| c.plug.pack == name || c.slot.pack == name)
                    .cloned()
                    .collect()
            }))
        })?;
        let undesired: Vec<PortRef> = Self::recorded(ctx, "undesired", || {
            Ok(ctx.store().read(|s| {
                s.undesired
                    .iter()
                    .filter(|p| p.pack == name)
                    .cloned()
                    .collect()
            }))
        })?;
        for c in &removed {
            tracing::info!(plug = %c.plug, slot = %c.slot, "disconnected: pack removed");
        }
        // The other side's profiles lose the grants (the removed pack's own go with it later).
        self.drop_all(ctx.store(), &removed)?;
        ctx.store().update(|s| {
            s.undesired.retain(|p| !undesired.contains(p));
            Ok(())
        })
    }

    pub(super) fn undo_disconnect_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let removed: Vec<Connection> = ctx.get("removed").unwrap_or_default();
        let undesired: Vec<PortRef> = ctx.get("undesired").unwrap_or_default();
        ctx.store().update(|s| {
            s.undesired.extend(undesired);
            Ok(())
        })?;
        self.add(ctx.store(), &removed)
    }
}
