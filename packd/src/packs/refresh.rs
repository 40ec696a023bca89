//! What makes an install of a new revision a refresh, and `pack revert`: the health window,
//! the cleanup of old revisions, and switching `current` to an earlier revision.

use std::time::{Duration, Instant};

use packfmt::{PackMeta, Revision};

use super::{PackManager, data, link, mount, profiles};
use crate::engine::TaskCtx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::services::Active;
use crate::state::{Plan, config};

/// A revert's plan: pack, target revision, revision it reverts from.
fn revert_plan(plan: &Plan) -> Result<(&str, Revision, Revision)> {
    match plan {
        Plan::Revert {
            name,
            revision,
            from,
        } => Ok((name, *revision, *from)),
        other => Err(Error::Internal(format!(
            "revert task in a change for {}",
            other.pack_name()
        ))),
    }
}

impl PackManager {
    fn meta_of(&self, ctx: &TaskCtx<'_>, name: &str, rev: Revision) -> Result<PackMeta> {
        ctx.store()
            .read(|s| {
                s.packs
                    .get(name)
                    .and_then(|p| p.revision(rev))
                    .map(|r| r.meta.clone())
            })
            .ok_or_else(|| Error::Internal(format!("{name} has no revision {rev} any more")))
    }

    /// The health window: every enabled service of the new revision must stay up, without a
    /// restart, for `refresh.health-window`.
    pub(super) fn check_health(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let name = ctx.plan.pack_name().to_string();
        let (window, apps) = ctx.store().read(|s| {
            (
                config::health_window(&s.config),
                super::services::enabled(s, &name),
            )
        });
        if apps.is_empty() {
            return Ok(());
        }
        // Resumed after the daemon was restarted: the services it started died with it.
        let lost: Vec<String> = apps
            .iter()
            .filter(|a| !self.services.known(&name, a))
            .cloned()
            .collect();
        if !lost.is_empty() {
            self.runtime
                .block_on(self.services.start(&name, Some(&lost)))?;
        }
        if window.is_zero() {
            return Ok(());
        }
        let runs: Vec<u32> = apps.iter().map(|a| self.services.runs(&name, a)).collect();
        let deadline = Instant::now() + window;
        self.runtime.block_on(async {
            loop {
                for (app, first) in apps.iter().zip(&runs) {
                    let state = self.services.state(&name, app);
                    let again = self.services.runs(&name, app) != *first;
                    let what = match state {
                        _ if again => Some("restarted"),
                        Active::Failed => Some("failed"),
                        Active::Inactive | Active::Deactivating => Some("stopped"),
                        Active::Active | Active::Activating => None,
                    };
                    if let Some(what) = what {
                        return Err(Error::Service(format!(
                            "service {name}.{app} {what} within the health window ({}s); \
                             see 'pack logs {name}.{app}'",
                            window.as_secs_f32()
                        )));
                    }
                }
                if Instant::now() >= deadline {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = ctx.aborted() => return Err(Error::Service("aborted during the health window".into())),
                }
            }
        })
    }

    /// After a good refresh: leftovers set aside go, and so do the revisions beyond
    /// `refresh.retain`, oldest first, never the current one nor the one this refresh came
    /// from; each entirely: mount, blob, data, profiles, state. Best effort: the refresh is
    /// good already, so a failure here is logged (what is left is removed by a later cleanup)
    /// rather than undoing it.
    pub(super) fn cleanup(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        if let Err(e) = self.clean_up(ctx) {
            tracing::warn!(pack = %ctx.plan.pack_name(), error = %e, "cleanup after a refresh was incomplete");
        }
        Ok(())
    }

    fn clean_up(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        use crate::state::TaskKind;
        let name = ctx.plan.pack_name().to_string();
        let recorded = |kind: TaskKind, key: &str| -> Option<serde_json::Value> {
            ctx.store().read(|s| {
                s.changes.get(&ctx.change_id).and_then(|c| {
                    c.tasks
                        .iter()
                        .find(|t| t.kind == kind)
                        .and_then(|t| t.get(key))
                })
            })
        };
        let copies: Vec<(std::path::PathBuf, std::path::PathBuf, bool)> =
            recorded(TaskKind::CopyData, "copies")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
        for (_, to, _) in &copies {
            data::forget_aside(to)?;
        }
        let from: Option<Revision> = recorded(TaskKind::LinkPack, "old-current")
            .and_then(|v| serde_json::from_value(v).ok())
            .flatten();
        let (current, old): (Option<Revision>, Vec<Revision>) = ctx.store().read(|s| {
            let Some(p) = s.packs.get(&name) else {
                return (None, Vec::new());
            };
            let excess = p.sequence.len().saturating_sub(config::retain(&s.config));
            let droppable = p
                .sequence
                .iter()
                .map(|r| r.revision)
                .filter(|r| *r != p.current && Some(*r) != from);
            (Some(p.current), droppable.take(excess).collect())
        });
        let Some(current) = current else {
            return Ok(());
        };
        for rev in old {
            tracing::info!(pack = %name, revision = %rev, %current, "removing an old revision");
            self.discard_revision(ctx, &name, rev)?;
        }
        Ok(())
    }

    fn discard_revision(&self, ctx: &TaskCtx<'_>, name: &str, rev: Revision) -> Result<()> {
        let target = self.paths.mount_dir(name, rev);
        mount::unmount(&target)?;
        fsutil::remove_dir_if_empty(&target).ctx("remove", &target)?;
        let blob = self.paths.blob(name, rev);
        fsutil::remove_file_if_exists(&blob).ctx("remove", &blob)?;
        for dir in data::revision_dirs(&self.paths, name, rev) {
            fsutil::remove_tree_if_exists(&dir).ctx("remove", &dir)?;
        }
        profiles::remove(&self.paths, name, rev)?;
        ctx.store().update(|s| {
            if let Some(p) = s.packs.get_mut(name) {
                p.sequence.retain(|r| r.revision != rev);
            }
            Ok(())
        })
    }

    /// A revert's profiles: the target revision's, written for today's connections.
    pub(super) fn revert_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, rev, _) = revert_plan(&ctx.plan)?;
        let meta = self.meta_of(ctx, name, rev)?;
        let grants = ctx
            .store()
            .read(|s| crate::connections::grants_by_app(s, &self.paths, name, rev, &meta))?;
        profiles::write(&self.paths, name, rev, &meta, self.apparmor, &grants)
    }

    /// Undo of [`Self::revert_profiles`]: the labels go back to the revision reverted from.
    pub(super) fn unrevert_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, _, from) = revert_plan(&ctx.plan)?;
        if !self.apparmor {
            return Ok(());
        }
        let meta = self.meta_of(ctx, name, from)?;
        profiles::load_apparmor(&self.paths, name, from, &meta)
    }

    /// A revert's link: `current` (state, symlink, launchers) to the target revision.
    pub(super) fn switch(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, rev, from) = revert_plan(&ctx.plan)?;
        self.point_current(ctx, name, rev, from)
    }

    /// Undo of [`Self::switch`].
    pub(super) fn unswitch(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, rev, from) = revert_plan(&ctx.plan)?;
        self.point_current(ctx, name, from, rev)
    }

    fn point_current(
        &self,
        ctx: &TaskCtx<'_>,
        name: &str,
        to: Revision,
        away_from: Revision,
    ) -> Result<()> {
        let meta = self.meta_of(ctx, name, to)?;
        let old_meta = self.meta_of(ctx, name, away_from).ok();
        ctx.store().update(|s| {
            if let Some(p) = s.packs.get_mut(name) {
                p.current = to;
            }
            Ok(())
        })?;
        link::set_current(&self.paths, name, to)?;
        link::write_launchers(&self.paths, &self.pack_binary, &meta, old_meta.as_ref())
    }
}
