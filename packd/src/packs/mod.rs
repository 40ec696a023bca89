//! The pack manager: the `do` and `undo` of every install and remove task. Each handler is
//! idempotent (the runner repeats a task interrupted by a crash) and records before it acts
//! whatever its undo will need.

pub mod data;
pub mod inspect;
pub mod link;
pub mod mount;
pub mod profiles;
mod refresh;
pub mod services;
mod wiring;

use std::path::PathBuf;

use packfmt::{PackMeta, PackType, Revision};

use crate::engine::{Handlers, Mode, TaskCtx};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::paths::Paths;
use crate::state::{Change, PackState, Plan, RevisionState, State, Status, TaskKind, now};

pub struct PackManager {
    pub paths: Paths,
    /// Launchers point here.
    pub pack_binary: PathBuf,
    /// Whether the kernel has AppArmor (profiles are then loaded, not only written).
    pub apparmor: bool,
    /// Emptied around every task: a template must not show, or keep mounted, what a change
    /// replaces.
    pub templates: std::sync::Arc<crate::launch::templates::MountTemplates>,
    /// A removed pack's network namespace is forgotten.
    pub networks: std::sync::Arc<crate::launch::networks::PackNetworks>,
    /// Started and stopped by the service tasks, restarted by connection changes.
    pub services: std::sync::Arc<crate::services::Services>,
    /// Task handlers run on the engine's thread; services live on the runtime.
    pub runtime: tokio::runtime::Handle,
}

impl Handlers for PackManager {
    fn run(&self, mode: Mode, ctx: &TaskCtx<'_>) -> Result<()> {
        self.templates.clear();
        let result = self.run_task(mode, ctx);
        // A launch racing with the task may have made a template of what it just changed.
        self.templates.clear();
        result
    }
}

impl PackManager {
    fn run_task(&self, mode: Mode, ctx: &TaskCtx<'_>) -> Result<()> {
        use Mode::*;
        use TaskKind::*;
        let revert = matches!(ctx.plan, Plan::Revert { .. });
        match (ctx.kind, mode) {
            (SetupProfiles, Do) if revert => self.revert_profiles(ctx),
            (SetupProfiles, Undo) if revert => self.unrevert_profiles(ctx),
            (LinkPack, Do) if revert => self.switch(ctx),
            (LinkPack, Undo) if revert => self.unswitch(ctx),
            (PreparePack, Do) => self.prepare(ctx),
            (PreparePack, Undo) => self.unprepare(ctx),
            (MountPack, Do) => self.mount(ctx),
            (MountPack, Undo) => self.unmount_new(ctx),
            (CopyData, Do) => self.create_data(ctx),
            (CopyData, Undo) => self.remove_new_data(ctx),
            (SetupProfiles, Do) => self.setup_profiles(ctx),
            (SetupProfiles, Undo) => self.remove_new_profiles(ctx),
            (LinkPack, Do) => self.link(ctx),
            (LinkPack, Undo) => self.unlink_new(ctx),
            (UnlinkPack, Do) => self.set_active(ctx, false),
            (UnlinkPack, Undo) => self.set_active(ctx, true),
            (UnmountPack, Do) => self.unmount_all(ctx),
            (UnmountPack, Undo) => self.remount_all(ctx),
            (DiscardData, Do) => self.discard_data(ctx),
            (DiscardPack, Do) => self.discard_pack(ctx),
            // Past the point of no return: nothing to undo.
            (DiscardData | DiscardPack, Undo) => Ok(()),
            (AutoConnect, Do) => self.auto_connect(ctx),
            (AutoConnect, Undo) => self.undo_auto_connect(ctx),
            (Connect, Do) => self.connect(ctx),
            (Connect, Undo) => self.undo_connect(ctx),
            (Disconnect, Do) => self.disconnect(ctx),
            (Disconnect, Undo) => self.undo_disconnect(ctx),
            (DisconnectAll, Do) => self.disconnect_all(ctx),
            (DisconnectAll, Undo) => self.undo_disconnect_all(ctx),
            (StartServices, Do) => self.start_services(ctx),
            (StartServices, Undo) => self.undo_start_services(ctx),
            (StopServices, Do) => self.stop_services(ctx),
            (StopServices, Undo) => self.undo_stop_services(ctx),
            (RestartServices, Do) => self.restart_services(ctx),
            // A restart cannot be taken back; the services run either way.
            (RestartServices, Undo) => Ok(()),
            (
                InstallHook | PreRefreshHook | PostRefreshHook | ConfigureHook | CheckHealthHook
                | RemoveHook,
                Do,
            ) => self.hook_task(ctx),
            // What a hook did is the pack's business; nothing to take back.
            (
                InstallHook | PreRefreshHook | PostRefreshHook | ConfigureHook | CheckHealthHook
                | RemoveHook,
                Undo,
            ) => Ok(()),
            (CheckHealth, Do) => self.check_health(ctx),
            // Watching changed nothing.
            (CheckHealth, Undo) => Ok(()),
            (Cleanup, Do) => self.cleanup(ctx),
            (Cleanup, Undo) => Ok(()),
        }
    }
}

/// The install plan's fields, or an internal error for a task attached to the wrong change.
struct Install<'a> {
    name: &'a str,
    revision: Revision,
    meta: &'a PackMeta,
    staged: &'a PathBuf,
    size: u64,
    sha3_384: &'a str,
}

fn install_plan(plan: &Plan) -> Result<Install<'_>> {
    match plan {
        Plan::Install {
            name,
            revision,
            meta,
            staged,
            size,
            sha3_384,
        } => Ok(Install {
            name,
            revision: *revision,
            meta,
            staged,
            size: *size,
            sha3_384,
        }),
        other => Err(Error::Internal(format!(
            "install task in a {} change",
            other.pack_name()
        ))),
    }
}

fn remove_plan(plan: &Plan) -> Result<(&str, &[Revision])> {
    match plan {
        Plan::Remove {
            name, revisions, ..
        } => Ok((name, revisions)),
        other => Err(Error::Internal(format!(
            "remove task in a change for {}",
            other.pack_name()
        ))),
    }
}

impl PackManager {
    // ---- install -------------------------------------------------------------------------

    fn prepare(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let blob = self.paths.blob(p.name, p.revision);
        let dir = self.paths.blobs_dir();
        fsutil::ensure_dir(&dir, 0o700).ctx("create", &dir)?;
        if p.staged.exists() {
            std::fs::rename(p.staged, &blob).ctx("move the upload to", &blob)?;
            fsutil::sync_dir(&dir).ctx("sync", &dir)?;
        } else if !blob.exists() {
            return Err(Error::Internal(format!(
                "the upload {} is gone and {} does not exist",
                p.staged.display(),
                blob.display()
            )));
        }
        Ok(())
    }

    fn unprepare(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let blob = self.paths.blob(p.name, p.revision);
        fsutil::remove_file_if_exists(&blob).ctx("remove", &blob)?;
        fsutil::remove_file_if_exists(p.staged).ctx("remove", p.staged)
    }

    fn mount(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let target = self.paths.mount_dir(p.name, p.revision);
        fsutil::ensure_dir(&target, 0o755).ctx("create", &target)?;
        let mounted = mount::mount_blob(&self.paths.blob(p.name, p.revision), &target);
        if mounted.is_err() {
            // A failed task is not undone: leave nothing behind ourselves.
            let _ = fsutil::remove_dir_if_empty(&target);
            let _ = fsutil::remove_dir_if_empty(&self.paths.pack_dir(p.name));
        }
        mounted
    }

    fn unmount_new(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let target = self.paths.mount_dir(p.name, p.revision);
        mount::unmount(&target)?;
        fsutil::remove_dir_if_empty(&target).ctx("remove", &target)?;
        fsutil::remove_dir_if_empty(&self.paths.pack_dir(p.name))
            .ctx("remove", &self.paths.pack_dir(p.name))
    }

    fn create_data(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        if p.meta.pack_type != PackType::App {
            return Ok(());
        }
        let common = self.paths.common_dir(p.name);
        // Remember whether `common` predates us: undo removes only what this change made.
        if ctx.get::<bool>("created-common").is_none() {
            ctx.set("created-common", &!common.exists())?;
        }
        let rev_dir = self.paths.data_dir(p.name, p.revision);
        fsutil::ensure_dir(&self.paths.data_root(p.name), 0o755)
            .ctx("create", &self.paths.data_root(p.name))?;
        fsutil::ensure_dir(&common, 0o755).ctx("create", &common)?;
        // A refresh starts from a copy of the current revision's data (its own and each
        // user's); what the copies are, and which targets were there already, is recorded
        // before anything moves.
        let copies: Vec<(PathBuf, PathBuf, bool)> = Self::recorded(ctx, "copies", || {
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
                        return Err(Error::Internal(format!(
                            "{} is in the way of the refresh; move it elsewhere and try again",
                            aside.display()
                        )));
                    }
                    let leftover = to.exists();
                    Ok((from, to, leftover))
                })
                .collect()
        })?;
        for (from, to, leftover) in &copies {
            data::copy(from, to, *leftover)?;
        }
        fsutil::ensure_dir(&rev_dir, 0o755).ctx("create", &rev_dir)
    }

    fn remove_new_data(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        if p.meta.pack_type != PackType::App {
            return Ok(());
        }
        let copies: Vec<(PathBuf, PathBuf, bool)> = ctx.get("copies").unwrap_or_default();
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
        if ctx.get::<bool>("created-common") == Some(true) {
            let common = self.paths.common_dir(p.name);
            fsutil::remove_tree_if_exists(&common).ctx("remove", &common)?;
        }
        let root = self.paths.data_root(p.name);
        fsutil::remove_dir_if_empty(&root).ctx("remove", &root)
    }

    fn setup_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        // A refresh keeps the pack's connections: the new revision gets them from the start.
        let grants = ctx.store().read(|s| {
            crate::connections::grants_by_app(s, &self.paths, p.name, p.revision, p.meta)
        })?;
        profiles::write(
            &self.paths,
            p.name,
            p.revision,
            p.meta,
            self.apparmor,
            &grants,
        )
    }

    fn remove_new_profiles(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        profiles::remove(&self.paths, p.name, p.revision)?;
        // The labels are per app: give them back to the revision that stays current, if any.
        let current = ctx.store().read(|s| {
            s.packs
                .get(p.name)
                .filter(|pk| pk.current != p.revision)
                .and_then(|pk| pk.current_revision().map(|r| (r.revision, r.meta.clone())))
        });
        match current {
            Some((rev, meta)) if self.apparmor => {
                profiles::load_apparmor(&self.paths, p.name, rev, &meta)
            }
            None if self.apparmor => {
                profiles::unload_apparmor(p.name, p.meta);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn link(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        // What was current before this change (recorded once, before anything moves).
        let old: Option<Revision> = match ctx.get::<Option<Revision>>("old-current") {
            Some(old) => old,
            None => {
                let old = ctx.store().read(|s| {
                    s.packs
                        .get(p.name)
                        .filter(|pk| pk.active && pk.current != p.revision)
                        .map(|pk| pk.current)
                });
                ctx.set("old-current", &old)?;
                old
            }
        };
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
            Ok(())
        })?;
        link::set_current(&self.paths, p.name, p.revision)?;
        link::write_launchers(&self.paths, &self.pack_binary, p.meta, old_meta.as_ref())
    }

    fn unlink_new(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let p = install_plan(&ctx.plan)?;
        let old: Option<Revision> = ctx.get::<Option<Revision>>("old-current").flatten();
        let old_meta = ctx.store().update(|s| {
            let Some(pack) = s.packs.get_mut(p.name) else {
                return Ok(None);
            };
            pack.sequence.retain(|r| r.revision != p.revision);
            match old {
                Some(rev) if pack.revision(rev).is_some() => {
                    pack.current = rev;
                    pack.active = true;
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
                link::write_launchers(&self.paths, &self.pack_binary, &meta, Some(p.meta))
            }
            _ => {
                link::remove_current(&self.paths, p.name)?;
                link::remove_launchers(&self.paths, p.meta)
            }
        }
    }

    // ---- remove --------------------------------------------------------------------------

    /// Unlink (`active` false) or relink (`active` true) the current revision.
    fn set_active(&self, ctx: &TaskCtx<'_>, active: bool) -> Result<()> {
        let (name, _) = remove_plan(&ctx.plan)?;
        let current = ctx.store().update(|s| {
            let pack = s
                .packs
                .get_mut(name)
                .ok_or_else(|| Error::pack_not_found(name))?;
            pack.active = active;
            Ok(pack
                .current_revision()
                .map(|r| (r.revision, r.meta.clone())))
        })?;
        let Some((rev, meta)) = current else {
            return Ok(());
        };
        if active {
            link::set_current(&self.paths, name, rev)?;
            link::write_launchers(&self.paths, &self.pack_binary, &meta, None)
        } else {
            link::remove_launchers(&self.paths, &meta)?;
            link::remove_current(&self.paths, name)
        }
    }

    fn unmount_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, revisions) = remove_plan(&ctx.plan)?;
        for rev in revisions {
            let target = self.paths.mount_dir(name, *rev);
            mount::unmount(&target)?;
            fsutil::remove_dir_if_empty(&target).ctx("remove", &target)?;
        }
        Ok(())
    }

    fn remount_all(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, revisions) = remove_plan(&ctx.plan)?;
        for rev in revisions {
            let target = self.paths.mount_dir(name, *rev);
            fsutil::ensure_dir(&target, 0o755).ctx("create", &target)?;
            mount::mount_blob(&self.paths.blob(name, *rev), &target)?;
        }
        Ok(())
    }

    fn discard_data(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, _) = remove_plan(&ctx.plan)?;
        let data = self.paths.data_root(name);
        fsutil::remove_tree_if_exists(&data).ctx("remove", &data)?;
        let tmp = self.paths.private_tmp(name);
        fsutil::remove_tree_if_exists(&tmp).ctx("remove", &tmp)?;
        if matches!(ctx.plan, Plan::Remove { purge: true, .. }) {
            crate::services::logs::remove_all(self.paths.root(), name).ctx(
                "remove the logs of",
                &self.paths.root().join("var/log/packd"),
            )?;
        }
        Ok(())
    }

    fn discard_pack(&self, ctx: &TaskCtx<'_>) -> Result<()> {
        let (name, revisions) = remove_plan(&ctx.plan)?;
        for rev in revisions {
            // Normally unmounted already; a restart in between must not leave a mount behind.
            mount::unmount(&self.paths.mount_dir(name, *rev))?;
            let blob = self.paths.blob(name, *rev);
            fsutil::remove_file_if_exists(&blob).ctx("remove", &blob)?;
        }
        link::remove_current(&self.paths, name)?;
        self.networks.forget(name);
        let dir = self.paths.pack_dir(name);
        fsutil::remove_dir_if_empty(&dir).ctx("remove", &dir)?;
        let profiles = self.paths.profiles_dir().join(name);
        fsutil::remove_tree_if_exists(&profiles).ctx("remove", &profiles)?;
        let meta = ctx.store().update(|s| {
            Ok(s.packs
                .remove(name)
                .and_then(|p| p.current_revision().map(|r| r.meta.clone())))
        })?;
        if let Some(meta) = meta
            && self.apparmor
        {
            profiles::unload_apparmor(name, &meta);
        }
        Ok(())
    }

    // ---- boot ----------------------------------------------------------------------------

    /// Mounts what should be mounted (after a reboot or a crash) and repairs `current` links;
    /// run at daemon start, before changes resume. Returns the failures, to be logged.
    pub fn restore(
        &self,
        mounts: &[(String, Revision)],
        links: &[(String, Revision)],
    ) -> Vec<Error> {
        let mut errors = Vec::new();
        for (name, rev) in mounts {
            let target = self.paths.mount_dir(name, *rev);
            // Still mounted (packd restarted, the system did not): nothing to do.
            if mount::is_mountpoint(&target).unwrap_or(false) {
                continue;
            }
            let result = fsutil::ensure_dir(&target, 0o755)
                .ctx("create", &target)
                .and_then(|_| mount::mount_blob(&self.paths.blob(name, *rev), &target));
            if let Err(e) = result {
                errors.push(e);
            }
        }
        for (name, rev) in links {
            if let Err(e) = link::set_current(&self.paths, name, *rev) {
                errors.push(e);
            }
        }
        errors
    }

    /// Loads the AppArmor profiles of every active pack's current revision (the kernel
    /// forgets them at reboot).
    pub fn load_profiles(&self, packs: &[(String, Revision, PackMeta)]) -> Vec<Error> {
        if !self.apparmor {
            return Vec::new();
        }
        packs
            .iter()
            .filter_map(|(name, rev, meta)| {
                profiles::load_apparmor(&self.paths, name, *rev, meta).err()
            })
            .collect()
    }
}

/// Every revision that has security profiles: the installed ones, and those an unfinished
/// install has written profiles for.
pub fn profiled_revisions(state: &State, paths: &Paths) -> Vec<(String, Revision, PackMeta)> {
    let mut out: Vec<_> = state
        .packs
        .values()
        .flat_map(|p| {
            p.sequence
                .iter()
                .map(|r| (p.name.clone(), r.revision, r.meta.clone()))
        })
        .collect();
    for c in state.changes.values().filter(|c| !c.is_ready()) {
        if let Plan::Install {
            name,
            revision,
            meta,
            ..
        } = &c.plan
            && paths.profile_dir(name, *revision).is_dir()
            && !out.iter().any(|(n, r, _)| n == name && r == revision)
        {
            out.push((name.clone(), *revision, (**meta).clone()));
        }
    }
    out
}

/// The revisions that should be mounted: every installed one, except those a removal has
/// already unmounted, plus those an unfinished install had mounted.
pub fn boot_mounts(state: &State) -> Vec<(String, Revision)> {
    let task_reached = |c: &Change, kind: TaskKind| {
        c.tasks
            .iter()
            .any(|t| t.kind == kind && matches!(t.status, Status::Done | Status::Undo))
    };
    let mut wanted = Vec::new();
    for pack in state.packs.values() {
        let unmounted = state.changes.values().any(|c| {
            !c.is_ready()
                && matches!(&c.plan, Plan::Remove { name, .. } if *name == pack.name)
                && task_reached(c, TaskKind::UnmountPack)
        });
        if !unmounted {
            wanted.extend(
                pack.sequence
                    .iter()
                    .map(|r| (pack.name.clone(), r.revision)),
            );
        }
    }
    for c in state.changes.values().filter(|c| !c.is_ready()) {
        if let Plan::Install { name, revision, .. } = &c.plan
            && task_reached(c, TaskKind::MountPack)
            && !wanted.contains(&(name.clone(), *revision))
        {
            wanted.push((name.clone(), *revision));
        }
    }
    wanted
}

/// The `current` links that should exist: one per active pack.
pub fn active_links(state: &State) -> Vec<(String, Revision)> {
    state
        .packs
        .values()
        .filter(|p| p.active)
        .map(|p| (p.name.clone(), p.current))
        .collect()
}

#[cfg(test)]
mod tests;
