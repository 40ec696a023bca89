//! The do and undo of the install and remove tasks. Each handler is idempotent (the runner
//! repeats a task interrupted by a crash) and records before it acts whatever its undo will
//! need, in a record of its own type.

use std::path::PathBuf;

use packfmt::{PackMeta, PackType, Revision};
use serde::{Deserialize, Serialize};

use super::{PackError, PackManager, data, link};
use crate::engine::TaskCtx;
use crate::error::IoContext;
use crate::fsutil;
use crate::state::{PackState, Plan, RevisionState, now};

type Result<T> = std::result::Result<T, PackError>;

/// What `copy-data` found before it acted.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct CopyRecord {
    /// `common` did not exist before this change (undo removes only what it made).
    pub created_common: Option<bool>,
    /// The pack's data root (`var/pack/NAME`) and private `/tmp` did not exist before this
    /// change (a first install): undo removes them whole, with what launches made in them
    /// (the callers' data directories of its hooks).
    #[serde(default)]
    pub created_root: Option<bool>,
    /// The copies of a refresh: (from, to, whether `to` was there before).
    pub copies: Option<Vec<(PathBuf, PathBuf, bool)>>,
}

/// What `link-pack` found before it switched `current`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct LinkRecord {
    /// The revision current before (none on a first install).
    pub old_current: Option<Option<Revision>>,
    /// What the pack tracked before.
    #[serde(default)]
    pub old_tracking: Option<Option<crate::state::Tracking>>,
}

/// The install plan's fields, or an internal error for a task attached to the wrong change.
pub(super) struct Install<'a> {
    name: &'a str,
    revision: Revision,
    meta: &'a PackMeta,
    staged: &'a PathBuf,
    size: u64,
    sha3_384: &'a str,
    origin: Option<&'a crate::state::Tracking>,
}

pub(super) fn install_plan(plan: &Plan) -> Result<Install<'_>> {
    match plan {
        Plan::Install {
            name,
            revision,
            meta,
            staged,
            size,
            sha3_384,
            origin,
        } => Ok(Install {
            name,
            revision: *revision,
            meta,
            staged,
            size: *size,
            sha3_384,
            origin: origin.as_ref(),
        }),
        other => Err(PackError::WrongPlan {
            task: "pack",
            pack: other.pack_name().to_string(),
            expected: "install",
        }),
    }
}

fn remove_plan(plan: &Plan) -> Result<(&str, &[Revision])> {
    match plan {
        Plan::Remove {
            name, revisions, ..
        } => Ok((name, revisions)),
        other => Err(PackError::WrongPlan {
            task: "pack",
            pack: other.pack_name().to_string(),
            expected: "remove",
        }),
    }
}

impl PackManager {
    // ---- install -------------------------------------------------------------------------

    pub(super) fn prepare(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let blob = self.paths.blob(p.name, p.revision);
        let dir = self.paths.blobs_dir();
        fsutil::ensure_dir(&dir, 0o700).ctx("create", &dir)?;
        if p.staged.exists() {
            std::fs::rename(p.staged, &blob).ctx("move the upload to", &blob)?;
            fsutil::sync_dir(&dir).ctx("sync", &dir)?;
        } else if !blob.exists() {
            return Err(PackError::UploadGone {
                staged: p.staged.clone(),
                blob,
            });
        }
        Ok(())
    }

    pub(super) fn unprepare(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let blob = self.paths.blob(p.name, p.revision);
        fsutil::remove_file_if_exists(&blob).ctx("remove", &blob)?;
        Ok(fsutil::remove_file_if_exists(p.staged).ctx("remove", p.staged)?)
    }

    pub(super) fn mount(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let target = self.paths.mount_dir(p.name, p.revision);
        fsutil::ensure_dir(&target, 0o755).ctx("create", &target)?;
        let mounted = self
            .mounts
            .mount_blob(&self.paths.blob(p.name, p.revision), &target);
        if mounted.is_err() {
            // A failed task is not undone: leave nothing behind ourselves.
            let _ = fsutil::remove_dir_if_empty(&target);
            let _ = fsutil::remove_dir_if_empty(&self.paths.pack_dir(p.name));
        }
        Ok(mounted?)
    }

    pub(super) fn unmount_new(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let target = self.paths.mount_dir(p.name, p.revision);
        self.mounts.unmount(&target)?;
        fsutil::remove_dir_if_empty(&target).ctx("remove", &target)?;
        Ok(fsutil::remove_dir_if_empty(&self.paths.pack_dir(p.name))
            .ctx("remove", &self.paths.pack_dir(p.name))?)
    }

    pub(super) fn create_data(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        if p.meta.pack_type != PackType::App {
            return Ok(());
        }
        let common = self.paths.common_dir(p.name);
        let mut rec: CopyRecord = ctx.data();
        let root = self.paths.data_root(p.name);
        ctx.once(
            &mut rec,
            |r| &mut r.created_root,
            || Ok::<_, PackError>(!root.exists()),
        )?;
        // Remember whether `common` predates us: undo removes only what this change made.
        ctx.once(
            &mut rec,
            |r| &mut r.created_common,
            || Ok::<_, PackError>(!common.exists()),
        )?;
        let rev_dir = self.paths.data_dir(p.name, p.revision);
        fsutil::ensure_dir(&self.paths.data_root(p.name), 0o755)
            .ctx("create", &self.paths.data_root(p.name))?;
        fsutil::ensure_dir(&common, 0o755).ctx("create", &common)?;
        // A refresh starts from a copy of the current revision's data (its own and each
        // user's); what the copies are, and which targets were there already, is recorded
        // before anything moves.
        let copies = ctx.once(
            &mut rec,
            |r| &mut r.copies,
            || {
                let old = ctx.store().read(|s| {
                    s.packs
                        .get(p.name)
                        .filter(|pk| pk.active && pk.current != p.revision)
                        .map(|pk| pk.current)
                });
                old.map(|old| data::pairs(&self.paths, p.name, old, p.revision))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(from, to)| {
                        // An aside from something else is never taken for ours (nor replaced).
                        let aside = data::aside(&to);
                        if aside.exists() {
                            return Err(PackError::InTheWay(aside));
                        }
                        let leftover = to.exists();
                        Ok((from, to, leftover))
                    })
                    .collect()
            },
        )?;
        for (from, to, leftover) in &copies {
            data::copy(from, to, *leftover)?;
        }
        Ok(fsutil::ensure_dir(&rev_dir, 0o755).ctx("create", &rev_dir)?)
    }

    pub(super) fn remove_new_data(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        if p.meta.pack_type != PackType::App {
            return Ok(());
        }
        let rec: CopyRecord = ctx.data();
        let copies = rec.copies.unwrap_or_default();
        for (_, to, leftover) in copies.iter().rev() {
            data::uncopy(to, *leftover)?;
        }
        let rev_dir = self.paths.data_dir(p.name, p.revision);
        if !copies
            .iter()
            .any(|(_, to, leftover)| *to == rev_dir && *leftover)
        {
            fsutil::remove_tree_if_exists(&rev_dir).ctx("remove", &rev_dir)?;
        }
        if rec.created_common == Some(true) {
            let common = self.paths.common_dir(p.name);
            fsutil::remove_tree_if_exists(&common).ctx("remove", &common)?;
        }
        let root = self.paths.data_root(p.name);
        if rec.created_root == Some(true) {
            fsutil::remove_tree_if_exists(&root).ctx("remove", &root)?;
            return Ok(crate::launch::tmp::remove_all(
                &self.paths.private_tmps(),
                p.name,
            )?);
        }
        Ok(fsutil::remove_dir_if_empty(&root).ctx("remove", &root)?)
    }

    pub(super) fn setup_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        // A refresh keeps the pack's connections: the new revision gets them from the start.
        Ok(ctx
            .store()
            .read(|s| self.profiles.write_for(s, p.name, p.revision, p.meta))?)
    }

    pub(super) fn remove_new_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        self.profiles.remove(p.name, p.revision)?;
        // The labels are per app: give them back to the revision that stays current, if any.
        let current = ctx.store().read(|s| {
            s.packs
                .get(p.name)
                .filter(|pk| pk.current != p.revision)
                .and_then(|pk| pk.current_revision().map(|r| (r.revision, r.meta.clone())))
        });
        match current {
            Some((rev, meta)) => self.profiles.load(p.name, rev, &meta)?,
            None => self.profiles.unload(p.name, p.meta),
        }
        Ok(())
    }

    pub(super) fn link(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        // What was current before this change (recorded once, before anything moves).
        let mut rec: LinkRecord = ctx.data();
        let old = ctx.once(
            &mut rec,
            |r| &mut r.old_current,
            || {
                Ok::<_, PackError>(ctx.store().read(|s| {
                    s.packs
                        .get(p.name)
                        .filter(|pk| pk.active && pk.current != p.revision)
                        .map(|pk| pk.current)
                }))
            },
        )?;
        let _ = ctx.once(
            &mut rec,
            |r| &mut r.old_tracking,
            || {
                Ok::<_, PackError>(
                    ctx.store()
                        .read(|s| s.packs.get(p.name).and_then(|pk| pk.tracking.clone())),
                )
            },
        )?;
        let old_meta = old.and_then(|rev| {
            ctx.store().read(|s| {
                s.packs
                    .get(p.name)
                    .and_then(|pk| pk.revision(rev))
                    .map(|r| r.meta.clone())
            })
        });
        ctx.store().update(|s| {
            let pack = s
                .packs
                .entry(p.name.to_string())
                .or_insert_with(|| PackState {
                    name: p.name.to_string(),
                    pack_type: p.meta.pack_type,
                    sequence: Vec::new(),
                    current: p.revision,
                    active: true,
                    disabled_services: Default::default(),
                    tracking: None,
                });
            if pack.revision(p.revision).is_none() {
                pack.sequence.push(RevisionState {
                    revision: p.revision,
                    meta: p.meta.clone(),
                    size: p.size,
                    sha3_384: p.sha3_384.to_string(),
                    installed_at: now(),
                });
            }
            pack.current = p.revision;
            pack.active = true;
            pack.pack_type = p.meta.pack_type;
            pack.tracking = p.origin.cloned();
            Ok::<_, PackError>(())
        })?;
        link::set_current(&self.paths, p.name, p.revision)?;
        Ok(link::write_launchers(
            &self.paths,
            &self.pack_binary,
            p.meta,
            old_meta.as_ref(),
        )?)
    }

    pub(super) fn unlink_new(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let rec: LinkRecord = ctx.data();
        let old: Option<Revision> = rec.old_current.flatten();
        let old_tracking = rec.old_tracking.flatten();
        let old_meta = ctx.store().update(|s| {
            let Some(pack) = s.packs.get_mut(p.name) else {
                return Ok::<_, PackError>(None);
            };
            pack.sequence.retain(|r| r.revision != p.revision);
            match old {
                Some(rev) if pack.revision(rev).is_some() => {
                    pack.current = rev;
                    pack.active = true;
                    pack.tracking = old_tracking;
                    Ok(pack.revision(rev).map(|r| r.meta.clone()))
                }
                _ => {
                    s.packs.remove(p.name);
                    Ok(None)
                }
            }
        })?;
        match (old, old_meta) {
            (Some(rev), Some(meta)) => {
                link::set_current(&self.paths, p.name, rev)?;
                link::write_launchers(&self.paths, &self.pack_binary, &meta, Some(p.meta))?;
            }
            _ => {
                link::remove_current(&self.paths, p.name)?;
                link::remove_launchers(&self.paths, p.meta)?;
            }
        }
        Ok(())
    }

    // ---- remove --------------------------------------------------------------------------

    pub(super) fn unlink(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        self.set_active(ctx, false)
    }

    pub(super) fn relink(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        self.set_active(ctx, true)
    }

    /// Unlink (`active` false) or relink (`active` true) the current revision.
    fn set_active(&self, ctx: &TaskCtx<'_>, active: bool) -> Result<()> {
        let (name, _) = remove_plan(&ctx.plan)?;
        let current = ctx.store().update(|s| {
            let pack = s
                .packs
                .get_mut(name)
                .ok_or_else(|| PackError::NotInstalled(name.to_string()))?;
            pack.active = active;
            Ok::<_, PackError>(
                pack.current_revision()
                    .map(|r| (r.revision, r.meta.clone())),
            )
        })?;
        let Some((rev, meta)) = current else {
            return Ok(());
        };
        if active {
            link::set_current(&self.paths, name, rev)?;
            link::write_launchers(&self.paths, &self.pack_binary, &meta, None)?;
        } else {
            link::remove_launchers(&self.paths, &meta)?;
            link::remove_current(&self.paths, name)?;
        }
        Ok(())
    }

    pub(super) fn unmount_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, revisions) = remove_plan(&ctx.plan)?;
        for rev in revisions {
            let target = self.paths.mount_dir(name, *rev);
            self.mounts.unmount(&target)?;
            fsutil::remove_dir_if_empty(&target).ctx("remove", &target)?;
        }
        Ok(())
    }

    pub(super) fn remount_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, revisions) = remove_plan(&ctx.plan)?;
        for rev in revisions {
            let target = self.paths.mount_dir(name, *rev);
            fsutil::ensure_dir(&target, 0o755).ctx("create", &target)?;
            self.mounts
                .mount_blob(&self.paths.blob(name, *rev), &target)?;
        }
        Ok(())
    }

    pub(super) fn discard_data(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, _) = remove_plan(&ctx.plan)?;
        let data = self.paths.data_root(name);
        fsutil::remove_tree_if_exists(&data).ctx("remove", &data)?;
        crate::launch::tmp::remove_all(&self.paths.private_tmps(), name)?;
        if matches!(ctx.plan, Plan::Remove { purge: true, .. }) {
            crate::services::logs::remove_all(self.paths.root(), name).ctx(
                "remove the logs of",
                &self.paths.root().join("var/log/packd"),
            )?;
        }
        Ok(())
    }

    pub(super) fn discard_pack(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, revisions) = remove_plan(&ctx.plan)?;
        for rev in revisions {
            // Normally unmounted already; a restart in between must not leave a mount behind.
            self.mounts.unmount(&self.paths.mount_dir(name, *rev))?;
            let blob = self.paths.blob(name, *rev);
            fsutil::remove_file_if_exists(&blob).ctx("remove", &blob)?;
        }
        link::remove_current(&self.paths, name)?;
        self.networks.forget(name)?;
        let dir = self.paths.pack_dir(name);
        fsutil::remove_dir_if_empty(&dir).ctx("remove", &dir)?;
        let profiles = self.paths.profiles_dir().join(name);
        fsutil::remove_tree_if_exists(&profiles).ctx("remove", &profiles)?;
        let meta = ctx.store().update(|s| {
            Ok::<_, PackError>(
                s.packs
                    .remove(name)
                    .and_then(|p| p.current_revision().map(|r| r.meta.clone())),
            )
        })?;
        if let Some(meta) = meta {
            self.profiles.unload(name, &meta);
        }
        Ok(())
    }
}
