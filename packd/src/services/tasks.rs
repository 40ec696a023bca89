//! The service tasks and their planning: `start-services`, `stop-services` and
//! `restart-services` (of a change, or of `pack start|stop|restart`), a refresh's health
//! window (`check-health`), and the hook tasks. The handlers run on the engine's thread and
//! wait for the services on the runtime.
//!
//! Idempotent like every task: what `do` found running is recorded before it acts, so a re-run
//! after a crash, and `undo`, act on the same services.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Active, ServiceError, ServiceManager};
use crate::engine::{Registry, TaskCtx};
use crate::error::check_idle;
use crate::state::{Plan, State, TaskKind, config};

type Result<T> = std::result::Result<T, ServiceError>;

/// What a service task recorded before it acted.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Record {
    /// The services that were running.
    running_before: Option<Vec<String>>,
    /// The disabled services before `--enable`/`--disable` changed them.
    disabled_before: Option<BTreeSet<String>>,
}

/// The services a task works on: a services change's own list, else every service of the
/// pack's current revision.
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

/// The services `names` select (`PACK` or `PACK.APP`; every service when empty), checked to
/// exist.
pub fn select(s: &State, names: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    // Packs being removed (inactive) are left out of "all".
    let wanted: Vec<String> = if names.is_empty() {
        s.packs
            .values()
            .filter(|p| p.active)
            .map(|p| p.name.clone())
            .collect()
    } else {
        names.to_vec()
    };
    for name in wanted {
        let (pack, app) = match name.split_once('.') {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (name.clone(), None),
        };
        let meta = s
            .packs
            .get(&pack)
            .filter(|p| p.active)
            .and_then(|_| s.current_meta(&pack))
            .ok_or_else(|| ServiceError::PackNotInstalled(pack.clone()))?;
        let services: Vec<&String> = meta
            .apps
            .iter()
            .filter(|(_, a)| a.is_service())
            .map(|(n, _)| n)
            .collect();
        match app {
            Some(app) if services.contains(&&app) => out.push((pack, app)),
            Some(app) => return Err(ServiceError::NotAService { pack, app }),
            None => out.extend(services.into_iter().map(|a| (pack.clone(), a.clone()))),
        }
    }
    Ok(out)
}

/// `start`, `stop` or `restart` of services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

/// `pack start|stop|restart [--enable|--disable] NAMES`: one task on one pack's services.
pub fn plan_control(
    s: &mut State,
    action: Action,
    names: &[String],
    enable: Option<bool>,
) -> Result<u64> {
    if names.is_empty() {
        return Err(ServiceError::NothingNamed);
    }
    let bad = |m: &str| Err(ServiceError::BadRequest(m.to_string()));
    match (action, enable) {
        (Action::Stop, Some(true)) => {
            return bad("stop cannot --enable; use 'pack start --enable'");
        }
        (Action::Start, Some(false)) => {
            return bad("start cannot --disable; use 'pack stop --disable'");
        }
        (Action::Restart, Some(false)) => {
            return bad("restart cannot --disable; use 'pack stop --disable'");
        }
        _ => {}
    }
    let selected = select(s, names)?;
    let mut packs: Vec<&str> = selected.iter().map(|(p, _)| p.as_str()).collect();
    packs.dedup();
    let [pack] = packs.as_slice() else {
        return Err(if packs.is_empty() {
            ServiceError::NoServices
        } else {
            ServiceError::SeveralPacks(packs.iter().map(|p| p.to_string()).collect())
        });
    };
    let pack = pack.to_string();
    check_idle(s, &[&pack])?;
    let apps: Vec<String> = selected.into_iter().map(|(_, a)| a).collect();
    let (kind, verb) = match action {
        Action::Start => (TaskKind::StartServices, "Start"),
        Action::Stop => (TaskKind::StopServices, "Stop"),
        Action::Restart => (TaskKind::RestartServices, "Restart"),
    };
    let summary = format!(
        "{verb} services {}",
        apps.iter()
            .map(|a| format!("{pack}.{a}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(s.add_change(
        "service-control",
        summary.clone(),
        Plan::Services {
            name: pack,
            apps: Some(apps),
            enable,
        },
        vec![(kind, summary)],
    ))
}

fn nothing(_: &ServiceManager, _: &TaskCtx<'_>) -> Result<()> {
    Ok(())
}

impl ServiceManager {
    /// Plans and starts `pack start|stop|restart`; the change's id.
    pub fn control(&self, action: Action, names: &[String], enable: Option<bool>) -> Result<u64> {
        let id = self
            .ctx
            .store
            .update(|s| plan_control(s, action, names, enable))?;
        self.queue.enqueue(id);
        Ok(id)
    }

    /// Registers the handlers of the service and hook tasks.
    pub fn register(self: &Arc<Self>, r: &mut Registry) {
        use TaskKind::*;
        r.register(StartServices, self, Self::start_task, Self::undo_start);
        r.register(StopServices, self, Self::stop_task, Self::undo_stop);
        // A restart cannot be taken back; the services run either way.
        r.register(RestartServices, self, Self::restart_task, nothing);
        // Watching changed nothing.
        r.register(CheckHealth, self, Self::check_health, nothing);
        // What a hook did is the pack's business; nothing to take back.
        for kind in [
            InstallHook,
            PreRefreshHook,
            PostRefreshHook,
            ConfigureHook,
            CheckHealthHook,
            RemoveHook,
        ] {
            r.register(kind, self, Self::hook_task, nothing);
        }
    }

    fn running(&self, name: &str, apps: &[String]) -> Vec<String> {
        apps.iter()
            .filter(|a| matches!(self.state(name, a), Active::Active | Active::Activating))
            .cloned()
            .collect()
    }

    /// Marks `apps` of `name` enabled or disabled as the plan says, recording the previous
    /// set for undo.
    fn apply_enable(
        &self,
        ctx: &TaskCtx<'_>,
        rec: &mut Record,
        name: &str,
        apps: &[String],
    ) -> Result<()> {
        let Plan::Services {
            enable: Some(enable),
            ..
        } = &ctx.plan
        else {
            return Ok(());
        };
        let before = ctx.once(
            rec,
            |r| &mut r.disabled_before,
            || {
                Ok::<_, ServiceError>(ctx.store().read(|s| {
                    s.packs
                        .get(name)
                        .map(|p| p.disabled_services.clone())
                        .unwrap_or_default()
                }))
            },
        )?;
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
            Ok::<_, ServiceError>(())
        })
    }

    fn restore_enable(&self, ctx: &TaskCtx<'_>, name: &str) -> Result<()> {
        let Some(before) = ctx.data::<Record>().disabled_before else {
            return Ok(());
        };
        ctx.store().update(|s| {
            if let Some(p) = s.packs.get_mut(name) {
                p.disabled_services = before;
            }
            Ok::<_, ServiceError>(())
        })
    }

    fn start_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, mut apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        let mut rec: Record = ctx.data();
        self.apply_enable(ctx, &mut rec, &name, &apps)?;
        // An install or a revert starts what is enabled; a services change what it names.
        if matches!(ctx.plan, Plan::Install { .. } | Plan::Revert { .. }) {
            let on = ctx.store().read(|s| enabled(s, &name));
            apps.retain(|a| on.contains(a));
        }
        let already = ctx.once(
            &mut rec,
            |r| &mut r.running_before,
            || Ok::<_, ServiceError>(self.running(&name, &apps)),
        )?;
        let to_start: Vec<String> = apps.into_iter().filter(|a| !already.contains(a)).collect();
        if to_start.is_empty() {
            return Ok(());
        }
        self.block_on(async {
            tokio::select! {
                started = self.start_all_or_none(&name, Some(&to_start)) => started,
                () = ctx.aborted() => {
                    // Whatever got started before the abort goes again.
                    let _ = self.stop(&name, Some(&to_start)).await;
                    Err(ServiceError::Aborted("while starting services"))
                }
            }
        })
    }

    fn undo_start(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        let already = ctx.data::<Record>().running_before.unwrap_or_default();
        let started: Vec<String> = apps.into_iter().filter(|a| !already.contains(a)).collect();
        if !started.is_empty() {
            self.block_on(self.stop(&name, Some(&started)))?;
        }
        self.restore_enable(ctx, &name)
    }

    fn stop_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        let mut rec: Record = ctx.data();
        let running = ctx.once(
            &mut rec,
            |r| &mut r.running_before,
            || Ok::<_, ServiceError>(self.running(&name, &apps)),
        )?;
        self.apply_enable(ctx, &mut rec, &name, &apps)?;
        if running.is_empty() {
            return Ok(());
        }
        self.block_on(self.stop(&name, Some(&running)))
    }

    fn undo_stop(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        self.restore_enable(ctx, &name)?;
        let running = ctx.data::<Record>().running_before.unwrap_or_default();
        if running.is_empty() {
            return Ok(());
        }
        self.block_on(self.start(&name, Some(&running)))
    }

    fn restart_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, apps) = ctx.store().read(|s| selected(s, &ctx.plan));
        self.block_on(self.restart(&name, Some(&apps)))
    }

    /// A refresh's health window: every enabled service of the new revision must stay up,
    /// without a restart, for `refresh.health-window`. Woken by every change of a service's
    /// state, never polled.
    fn check_health(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        let (window, apps) = ctx
            .store()
            .read(|s| (config::health_window(&s.config), enabled(s, &name)));
        if apps.is_empty() {
            return Ok(());
        }
        // Resumed after a restart that found a service gone (and not restarted by policy).
        let lost: Vec<String> = apps
            .iter()
            .filter(|a| !self.known(&name, a))
            .cloned()
            .collect();
        if !lost.is_empty() {
            self.block_on(self.start(&name, Some(&lost)))?;
        }
        if window.is_zero() {
            return Ok(());
        }
        let runs: Vec<u32> = apps.iter().map(|a| self.runs(&name, a)).collect();
        let mut changes = self.subscribe();
        self.block_on(async {
            let deadline = tokio::time::sleep(window);
            tokio::pin!(deadline);
            loop {
                for (app, first) in apps.iter().zip(&runs) {
                    let again = self.runs(&name, app) != *first;
                    let what = match self.state(&name, app) {
                        _ if again => Some("restarted"),
                        Active::Failed => Some("failed"),
                        Active::Inactive | Active::Deactivating => Some("stopped"),
                        Active::Active | Active::Activating => None,
                    };
                    if let Some(what) = what {
                        return Err(ServiceError::Unhealthy {
                            pack: name.clone(),
                            app: app.clone(),
                            what,
                            window: window.as_secs_f32(),
                        });
                    }
                }
                tokio::select! {
                    () = &mut deadline => return Ok(()),
                    changed = changes.changed() => if changed.is_err() { return Ok(()) },
                    () = ctx.aborted() => return Err(ServiceError::Aborted("during the health window")),
                }
            }
        })
    }

    /// A hook task: runs the hook when the pack's current revision has it. A failing remove
    /// hook is only logged; any other fails the change.
    fn hook_task(&self, ctx: &TaskCtx<'_>) -> Result<()> {
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
        let ran = self.block_on(async {
            tokio::select! {
                ran = self.run_hook(&name, hook) => ran,
                () = ctx.aborted() => Err(ServiceError::Aborted("while a hook ran")),
            }
        });
        match ran {
            Err(e) if ctx.kind == TaskKind::RemoveHook => {
                tracing::warn!(pack = %name, error = %e, "the remove hook failed; removing anyway");
                Ok(())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing::{with_pack, with_running_change};

    fn state() -> State {
        let mut s = State::default();
        with_pack(&mut s, "name: core\nversion: '1'\ntype: base\n");
        with_pack(
            &mut s,
            "name: svc\nversion: '1'\nbase: core\napps:\n  a: {command: bin/a, daemon: simple}\n  b: {command: bin/b, daemon: notify}\n  tool: {command: bin/t}\n",
        );
        with_pack(
            &mut s,
            "name: web\nversion: '1'\nbase: core\napps:\n  w: {command: bin/w, daemon: simple}\n",
        );
        s
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_control_change_is_one_task_on_one_packs_services() {
        let mut s = state();
        let id = plan_control(&mut s, Action::Restart, &names(&["svc"]), None).unwrap();
        let c = &s.changes[&id];
        assert_eq!(c.summary, "Restart services svc.a, svc.b");
        assert_eq!(c.tasks.len(), 1);
        assert_eq!(c.tasks[0].kind, TaskKind::RestartServices);
        let id = plan_control(&mut s, Action::Stop, &names(&["web.w"]), Some(false)).unwrap();
        assert!(
            matches!(&s.changes[&id].plan, Plan::Services { apps: Some(a), enable: Some(false), .. } if a == &names(&["w"]))
        );
    }

    #[test]
    fn a_control_change_is_refused_with_the_reason() {
        let s0 = state();
        let cases: Vec<(Action, Vec<String>, Option<bool>, &str)> = vec![
            (
                Action::Start,
                names(&["svc.tool"]),
                None,
                "svc.tool is not a service",
            ),
            (
                Action::Start,
                names(&["nope"]),
                None,
                "\"nope\" is not installed",
            ),
            (
                Action::Start,
                names(&["svc", "web"]),
                None,
                "services of one pack at a time, not svc, web",
            ),
            (
                Action::Start,
                names(&["core"]),
                None,
                "those packs have no services",
            ),
            (
                Action::Stop,
                names(&["svc"]),
                Some(true),
                "stop cannot --enable",
            ),
            (
                Action::Start,
                names(&["svc"]),
                Some(false),
                "start cannot --disable",
            ),
            (Action::Start, vec![], None, "name the pack or its services"),
        ];
        for (action, n, enable, says) in cases {
            let mut s = s0.clone();
            let e = plan_control(&mut s, action, &n, enable)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{n:?}: {e}");
            assert_eq!(s, s0);
        }
        let mut s = s0.clone();
        with_running_change(&mut s, "svc");
        let e = plan_control(&mut s, Action::Start, &names(&["svc"]), None).unwrap_err();
        assert_eq!(e.kind(), packd_api::ErrorKind::ChangeConflict);
    }

    #[test]
    fn selection_lists_services_only_and_all_of_them_by_default() {
        let s = state();
        let all = select(&s, &[]).unwrap();
        assert_eq!(
            all,
            [
                ("svc".to_string(), "a".to_string()),
                ("svc".into(), "b".into()),
                ("web".into(), "w".into())
            ]
        );
        let mut s = state();
        s.packs
            .get_mut("svc")
            .unwrap()
            .disabled_services
            .insert("b".into());
        assert_eq!(enabled(&s, "svc"), ["a"]);
    }
}
