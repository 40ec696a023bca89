//! The service tasks: start, stop and restart a pack's services, and remember which are
//! enabled. The services themselves live on the runtime ([`crate::services`]); these handlers
//! run on the engine's thread and wait for them.
//!
//! Idempotent like every task: what `do` found running is recorded before it acts, so a re-run
//! after a crash, and `undo`, act on the same services.

use std::collections::BTreeSet;

use super::PackManager;
use crate::engine::TaskCtx;
use crate::error::{Error, Result};
use crate::services::Active;
use crate::state::{Plan, State};

/// The services a task works on: a services change's own list, else every service of the
/// pack's current revision (for an install, the enabled ones only).
fn selected(s: &State, plan: &Plan) -> (String, Vec<String>) {
    let name = plan.pack_name().to_string();
    let all: Vec<String> = s
        .current_meta(&name)
        .map(|m| {
            m.apps
                .values()
                .filter(|a| a.is_service())
                .map(|a| a.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let apps = match plan {
        Plan::Services {
            apps: Some(apps), ..
        } => apps.clone(),
        _ => all,
    };
    (name, apps)
}

/// The services of `name` enabled at boot.
pub fn enabled(s: &State, name: &str) -> Vec<String> {
    let Some(p) = s.packs.get(name).filter(|p| p.active) else {
        return Vec::new();
    };
    s.current_meta(name)
        .map(|m| {
            m.apps
                .values()
                .filter(|a| a.is_service() && !p.disabled_services.contains(&a.name))
                .map(|a| a.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl PackManager {
    fn running(&self, name: &str, apps: &[String]) -> Vec<String> {
        apps.iter()
            .filter(|a| {
                matches!(
                    self.services.state(name, a),
                    Active::Active | Active::Activating
                )
            })
            .cloned()
            .collect()
    }

    /// Marks `apps` of `name` enabled or disabled as the plan says, recording the previous
    /// set for undo.
    fn apply_enable(&self, ctx: &TaskCtx<'_>, name: &str, apps: &[String]) -> Result<()> {
        let Plan::Services {
            enable: Some(enable),
            ..
        } = &ctx.plan
        else {
            return Ok(());
        };
        let before: BTreeSet<String> = Self::recorded(ctx, "disabled-before", || {
            Ok(ctx.store().read(|s| {
                s.packs
                    .get(name)
                    .map(|p| p.disabled_services.clone())
                    .unwrap_or_default()
            }))
        })?;
        ctx.store().update(|s| {
            if let Some(p) = s.packs.get_mut(name) {
                let mut set = before.clone();
                for a in apps {
                    if *enable {
                        set.remove(a);
                    } else {
                        set.insert(a.clone());
                    }
                }
                p.disabled_services = set;
            }
            Ok(())
        })
    }

    fn restore_enable(&self, ctx: &TaskCtx<'_>, name: &str) -> Result<()> {
        let Some(before) = ctx.get::<BTreeSet<String>>("disabled-before") else {
            return Ok(());
        };
        ctx.store().update(|s| {
            if let Some(p) = s.packs.get_mut(name) {
                p.disabled_services = before;
            }
            Ok(())
        })
    }

    pub(super) fn start_services(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, mut apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        self.apply_enable(ctx, &name, &apps)?;
        // An install or a revert starts what is enabled; a services change what it names.
        if matches!(ctx.plan, Plan::Install { .. } | Plan::Revert { .. }) {
            let on = ctx.store().read(|s| enabled(s, &name));
            apps.retain(|a| on.contains(a));
        }
        let already: Vec<String> =
            Self::recorded(ctx, "running-before", || Ok(self.running(&name, &apps)))?;
        let to_start: Vec<String> = apps.into_iter().filter(|a| !already.contains(a)).collect();
        if to_start.is_empty() {
            return Ok(());
        }
        self.runtime.block_on(async {
            tokio::select! {
                started = self.services.start_all_or_none(&name, Some(&to_start)) => started,
                () = ctx.aborted() => {
                    // Whatever got started before the abort goes again.
                    let _ = self.services.stop(&name, Some(&to_start)).await;
                    Err(Error::Service("aborted while starting services".into()))
                }
            }
        })
    }

    pub(super) fn undo_start_services(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        let already: Vec<String> = ctx.get("running-before").unwrap_or_default();
        let started: Vec<String> = apps.into_iter().filter(|a| !already.contains(a)).collect();
        if !started.is_empty() {
            self.runtime
                .block_on(self.services.stop(&name, Some(&started)))?;
        }
        self.restore_enable(ctx, &name)
    }

    pub(super) fn stop_services(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        let running: Vec<String> =
            Self::recorded(ctx, "running-before", || Ok(self.running(&name, &apps)))?;
        self.apply_enable(ctx, &name, &apps)?;
        if running.is_empty() {
            return Ok(());
        }
        self.runtime
            .block_on(self.services.stop(&name, Some(&running)))
    }

    pub(super) fn undo_stop_services(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        self.restore_enable(ctx, &name)?;
        let running: Vec<String> = ctx.get("running-before").unwrap_or_default();
        if running.is_empty() {
            return Ok(());
        }
        self.runtime
            .block_on(self.services.start(&name, Some(&running)))
    }

    pub(super) fn restart_services(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        self.runtime
            .block_on(self.services.restart(&name, Some(&apps)))
    }

    /// After a connection change: the running services of `packs` restart, so their new
    /// permissions take effect. A service that does not come back is shown failed (and in the
    /// log); it does not fail the connection change, which may concern another pack entirely.
    pub(super) fn restart_running(&self, packs: &[String]) {
        for name in packs {
            if let Err(e) = self.runtime.block_on(self.services.restart_running(name)) {
                tracing::warn!(pack = %name, error = %e, "a service did not come back after a connection change");
            }
        }
    }
}

impl PackManager {
    /// A hook task: runs the hook when the pack's current revision has it. A failing remove
    /// hook is only logged; any other fails the change.
    pub(super) fn hook_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let Some(hook) = ctx.kind.hook() else {
            return Ok(());
        };
        let name = ctx.plan.pack_name().to_string();
        let has = ctx.store().read(|s| {
            s.current_meta(&name)
                .is_some_and(|m| m.hooks.contains_key(hook))
        });
        if !has {
            return Ok(());
        }
        let ran = self.runtime.block_on(async {
            tokio::select! {
                ran = self.services.run_hook(&name, hook) => ran,
                () = ctx.aborted() => Err(Error::Service(format!("aborted while the {hook} hook ran"))),
            }
        });
        match ran {
            Err(e) if ctx.kind == crate::state::TaskKind::RemoveHook => {
                tracing::warn!(pack = %name, error = %e, "the remove hook failed; removing anyway");
                Ok(())
            }
            other => other,
        }
    }
}
