//! What makes an install of a new revision a refresh, and `pack revert`: the cleanup of old
//! revisions after a good refresh, and switching `current` to an earlier revision. (The
//! health window is the service manager's `check-health`.)

use std::path::PathBuf;

use packfmt::{PackMeta, Revision};

use super::tasks::{CopyRecord, LinkRecord};
use super::{PackError, PackManager, data, link};
use crate::engine::TaskCtx;
use crate::error::IoContext;
use crate::fsutil;
use crate::state::{Plan, TaskKind, config};

type Result<T> = std::result::Result<T, PackError>;

/// A revert's plan: pack, target revision, revision it reverts from.
fn revert_plan(plan: &Plan) -> Result<(&str, Revision, Revision)> {
    match plan {
        Plan::Revert {
            name,
            revision,
            from,
        } => Ok((name, *revision, *from)),
        other => Err(PackError::WrongPlan {
            task: "revert",
            pack: other.pack_name().to_string(),
            expected: "revert",
        }),
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
            .ok_or_else(|| PackError::RevisionGone {
                name: name.to_string(),
                revision: rev,
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
        let name = ctx.plan.pack_name().to_string();
        let copies: Vec<(PathBuf, PathBuf, bool)> = ctx
            .data_of::<CopyRecord>(TaskKind::CopyData)
            .and_then(|r| r.copies)
            .unwrap_or_default();
        for (_, to, _) in &copies {
            data::forget_aside(to)?;
        }
        let from: Option<Revision> = ctx
            .data_of::<LinkRecord>(TaskKind::LinkPack)
            .and_then(|r| r.old_current)
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
        self.mounts.unmount(&target)?;
        fsutil::remove_dir_if_empty(&target).ctx("remove", &target)?;
        let blob = self.paths.blob(name, rev);
        fsutil::remove_file_if_exists(&blob).ctx("remove", &blob)?;
        for dir in data::revision_dirs(&self.paths, name, rev) {
            fsutil::remove_tree_if_exists(&dir).ctx("remove", &dir)?;
        }
        self.profiles.remove(name, rev)?;
        ctx.store().update(|s| {
            if let Some(p) = s.packs.get_mut(name) {
                p.sequence.retain(|r| r.revision != rev);
            }
            Ok::<_, PackError>(())
        })
    }

    /// A revert's profiles: the target revision's, written for today's connections.
    pub(super) fn revert_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, rev, _) = revert_plan(&ctx.plan)?;
        let meta = self.meta_of(ctx, name, rev)?;
        Ok(ctx
            .store()
            .read(|s| self.profiles.write_for(s, name, rev, &meta))?)
    }

    /// Undo of [`Self::revert_profiles`]: the labels go back to the revision reverted from.
    pub(super) fn unrevert_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, _, from) = revert_plan(&ctx.plan)?;
        let meta = self.meta_of(ctx, name, from)?;
        Ok(self.profiles.load(name, from, &meta)?)
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
            Ok::<_, PackError>(())
        })?;
        link::set_current(&self.paths, name, to)?;
        Ok(link::write_launchers(
            &self.paths,
            &self.pack_binary,
            &meta,
            old_meta.as_ref(),
        )?)
    }
}
