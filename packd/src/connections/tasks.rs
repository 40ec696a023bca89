//! The do and undo of the connection tasks: auto-connect (install), connect and disconnect
//! (root's commands), disconnect-all (remove). Each records what it changed before changing
//! it, so a repeated or undone task restores exactly the previous connections, then rewrites
//! the profiles of the packs whose plugs changed.

use interfaces::PortRef;
use packfmt::PackType;
use serde::{Deserialize, Serialize};

use super::{ConnectionError, ConnectionManager, policy};
use crate::engine::TaskCtx;
use crate::state::{Connection, Plan, Store};

type Result<T> = std::result::Result<T, ConnectionError>;

/// What `auto-connect` made.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Added {
    added: Option<Vec<Connection>>,
}

/// What `connect` found.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Connected {
    /// The plug was one root had disconnected from an auto-connection.
    was_undesired: Option<bool>,
}

/// What `disconnect` and `disconnect-all` took away.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Removed {
    removed: Option<Vec<Connection>>,
    /// `disconnect-all`: the pack's plugs that were marked undesired.
    undesired: Option<Vec<PortRef>>,
}

impl ConnectionManager {
    /// Rewrites the profiles of the current revisions of `packs` from their connections.
    fn regenerate(&self, store: &Store, packs: &[String]) -> Result<()> {
        for name in packs {
            let found = store.read(|s| {
                let pack = s.packs.get(name).filter(|p| p.pack_type == PackType::App)?;
                let rev = pack.current_revision()?;
                Some((rev.revision, rev.meta.clone()))
            });
            let Some((rev, meta)) = found else {
                continue;
            };
            store.read(|s| self.profiles.write_for(s, name, rev, &meta))?;
        }
        Ok(())
    }

    /// After a connection change: the running services of `packs` restart, so their new
    /// permissions take effect. A service that does not come back is shown failed (and in
    /// the log); it does not fail the connection change, which may concern another pack.
    fn restart_running(&self, packs: &[String]) {
        for name in packs {
            if let Err(e) = self.runtime.block_on(self.services.restart_running(name)) {
                tracing::warn!(pack = %name, error = %e, "a service did not come back after a connection change");
            }
        }
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
            Ok::<_, ConnectionError>(())
        })?;
        let packs = policy::affected(conns);
        let result = self.regenerate(store, &packs);
        if result.is_err() {
            let restored = store.update(|s| {
                s.connections = before;
                Ok::<_, ConnectionError>(())
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
        let mut rec: Added = ctx.data();
        let added = ctx.once(
            &mut rec,
            |r| &mut r.added,
            || Ok::<_, ConnectionError>(ctx.store().read(|s| policy::auto_connections(s, &name))),
        )?;
        for c in &added {
            tracing::info!(plug = %c.plug, slot = %c.slot, "auto-connected");
        }
        self.add(ctx.store(), &added)
    }

    pub(super) fn undo_auto_connect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let added = ctx.data::<Added>().added.unwrap_or_default();
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
            _ => Err(ConnectionError::WrongPlan {
                task: "connect",
                expected: "connect",
            }),
        }
    }

    pub(super) fn connect_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let conn = Self::connect_plan(ctx)?;
        let plug = &conn.plug;
        let mut rec: Connected = ctx.data();
        let was_undesired = ctx.once(
            &mut rec,
            |r| &mut r.was_undesired,
            || Ok::<_, ConnectionError>(ctx.store().read(|s| s.undesired.contains(plug))),
        )?;
        self.add(ctx.store(), std::slice::from_ref(&conn))?;
        if was_undesired {
            ctx.store().update(|s| {
                s.undesired.remove(&conn.plug);
                Ok::<_, ConnectionError>(())
            })?;
        }
        Ok(())
    }

    pub(super) fn undo_connect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let conn = Self::connect_plan(ctx)?;
        if ctx.data::<Connected>().was_undesired == Some(true) {
            ctx.store().update(|s| {
                s.undesired.insert(conn.plug.clone());
                Ok::<_, ConnectionError>(())
            })?;
        }
        self.drop_all(ctx.store(), &[conn])
    }

    fn disconnect_plan(ctx: &TaskCtx<'_>) -> Result<(PortRef, PortRef)> {
        match &ctx.plan {
            Plan::Disconnect { plug, slot } => Ok((plug.clone(), slot.clone())),
            _ => Err(ConnectionError::WrongPlan {
                task: "disconnect",
                expected: "disconnect",
            }),
        }
    }

    pub(super) fn disconnect_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (plug, slot) = Self::disconnect_plan(ctx)?;
        let mut rec: Removed = ctx.data();
        let removed = ctx.once(
            &mut rec,
            |r| &mut r.removed,
            || {
                Ok::<_, ConnectionError>(ctx.store().read(|s| {
                    s.connections
                        .iter()
                        .filter(|c| c.plug == plug && c.slot == slot)
                        .cloned()
                        .collect()
                }))
            },
        )?;
        // An auto-connection root undoes stays undone: a refresh must not bring it back.
        self.drop_all(ctx.store(), &removed)?;
        if removed.iter().any(|c| !c.manual) {
            ctx.store().update(|s| {
                s.undesired.insert(plug.clone());
                Ok::<_, ConnectionError>(())
            })?;
        }
        Ok(())
    }

    pub(super) fn undo_disconnect(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (plug, _) = Self::disconnect_plan(ctx)?;
        let removed = ctx.data::<Removed>().removed.unwrap_or_default();
        if removed.iter().any(|c| !c.manual) {
            ctx.store().update(|s| {
                s.undesired.remove(&plug);
                Ok::<_, ConnectionError>(())
            })?;
        }
        self.add(ctx.store(), &removed)
    }

    pub(super) fn disconnect_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        let mut rec: Removed = ctx.data();
        let removed = ctx.once(
            &mut rec,
            |r| &mut r.removed,
            || {
                Ok::<_, ConnectionError>(ctx.store().read(|s| {
                    s.connections
                        .iter()
                        .filter(|c| c.plug.pack == name || c.slot.pack == name)
                        .cloned()
                        .collect()
                }))
            },
        )?;
        let undesired = ctx.once(
            &mut rec,
            |r| &mut r.undesired,
            || {
                Ok::<_, ConnectionError>(ctx.store().read(|s| {
                    s.undesired
                        .iter()
                        .filter(|p| p.pack == name)
                        .cloned()
                        .collect()
                }))
            },
        )?;
        for c in &removed {
            tracing::info!(plug = %c.plug, slot = %c.slot, "disconnected: pack removed");
        }
        // The other side's profiles lose the grants (the removed pack's own go with it later).
        self.drop_all(ctx.store(), &removed)?;
        ctx.store().update(|s| {
            s.undesired.retain(|p| !undesired.contains(p));
            Ok::<_, ConnectionError>(())
        })
    }

    pub(super) fn undo_disconnect_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let rec: Removed = ctx.data();
        let removed = rec.removed.unwrap_or_default();
        let undesired = rec.undesired.unwrap_or_default();
        ctx.store().update(|s| {
            s.undesired.extend(undesired);
            Ok::<_, ConnectionError>(())
        })?;
        self.add(ctx.store(), &removed)
    }
}
