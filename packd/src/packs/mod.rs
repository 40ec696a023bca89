//! The pack manager: installs, refreshes, reverts and removes packs.
//!
//! - [`plan`]: each operation planned as a change (pure: state in, tasks out);
//! - an upload is checked whole (`gadget_kernel_base::inspect`) before any change exists;
//! - `tasks`, `refresh`: the do and undo of its task kinds (`prepare-pack`, `mount-pack`,
//!   `copy-data`, `setup-profiles`, `link-pack`, `unlink-pack`, `unmount-pack`,
//!   `discard-data`, `discard-pack`, `cleanup`), registered with the engine;
//! - `boot`: what a reboot or crash left to repair at start;
//! - [`data`], [`link`]: a refresh's data copies; `current` and the launchers.
//!
//! Images are mounted through the system boundary ([`crate::system::Mounts`]).

mod boot;
pub mod data;
mod error;
pub mod link;
pub mod plan;
mod refresh;
mod tasks;

use std::path::PathBuf;
use std::sync::Arc;

use packfmt::Revision;

pub use boot::{active_links, boot_mounts, profiled_revisions};
pub use error::PackError;
pub use plan::Upload;

use crate::engine::{Queue, Registry, TaskCtx};
use crate::launch::networks::PackNetworks;
use crate::paths::Paths;
use crate::profiles::Profiles;
use crate::state::{Plan, Store, TaskKind};
use crate::system::Mounts;

pub struct PackManager {
    paths: Paths,
    store: Arc<Store>,
    queue: Queue,
    mounts: Arc<dyn Mounts>,
    profiles: Profiles,
    /// Launchers point here.
    pack_binary: PathBuf,
    /// A removed pack's network namespace goes with it.
    networks: Arc<PackNetworks>,
}

/// What the pack manager is built from.
pub struct PackManagerParts {
    pub paths: Paths,
    pub store: Arc<Store>,
    pub queue: Queue,
    pub mounts: Arc<dyn Mounts>,
    pub profiles: Profiles,
    pub pack_binary: PathBuf,
    pub networks: Arc<PackNetworks>,
}

fn nothing<M>(_: &M, _: &TaskCtx<'_>) -> Result<(), PackError> {
    Ok(())
}

impl PackManager {
    pub fn new(p: PackManagerParts) -> Arc<Self> {
        Arc::new(PackManager {
            paths: p.paths,
            store: p.store,
            queue: p.queue,
            mounts: p.mounts,
            profiles: p.profiles,
            pack_binary: p.pack_binary,
            networks: p.networks,
        })
    }

    /// Registers the handlers of the pack tasks.
    pub fn register(self: &Arc<Self>, r: &mut Registry) {
        use TaskKind::*;
        r.register(PreparePack, self, Self::prepare, Self::unprepare);
        r.register(MountPack, self, Self::mount, Self::unmount_new);
        r.register(CopyData, self, Self::create_data, Self::remove_new_data);
        r.register(SetupProfiles, self, Self::profiles_do, Self::profiles_undo);
        r.register(LinkPack, self, Self::link_do, Self::link_undo);
        r.register(UnlinkPack, self, Self::unlink, Self::relink);
        r.register(UnmountPack, self, Self::unmount_all, Self::remount_all);
        // Past the point of no return: nothing to undo.
        r.register(DiscardData, self, Self::discard_data, nothing);
        r.register(DiscardPack, self, Self::discard_pack, nothing);
        r.register(Cleanup, self, Self::cleanup, nothing);
    }

    /// `setup-profiles`: a revert's are the target revision's, written for today's
    /// connections; an install's the new revision's.
    fn profiles_do(&self, ctx: &TaskCtx<'_>) -> Result<(), PackError> {
        match ctx.plan {
            Plan::Revert { .. } => self.revert_profiles(ctx),
            _ => self.setup_profiles(ctx),
        }
    }

    fn profiles_undo(&self, ctx: &TaskCtx<'_>) -> Result<(), PackError> {
        match ctx.plan {
            Plan::Revert { .. } => self.unrevert_profiles(ctx),
            _ => self.remove_new_profiles(ctx),
        }
    }

    /// `link-pack`: a revert switches `current` back; an install links the new revision.
    fn link_do(&self, ctx: &TaskCtx<'_>) -> Result<(), PackError> {
        match ctx.plan {
            Plan::Revert { .. } => self.switch(ctx),
            _ => self.link(ctx),
        }
    }

    fn link_undo(&self, ctx: &TaskCtx<'_>) -> Result<(), PackError> {
        match ctx.plan {
            Plan::Revert { .. } => self.unswitch(ctx),
            _ => self.unlink_new(ctx),
        }
    }

    /// Checks an upload staged at `staged` (blocking: it reads the whole image), plans its
    /// install (of store revision N with where it came from, for a verified download, whose
    /// label is then the name it was offered as) and
    /// returns the change's id, for [`Self::start`]. A refused package leaves the upload to the
    /// caller, who removes it.
    pub fn install(
        &self,
        staged: PathBuf,
        size: u64,
        sha3_384: String,
        label: String,
        from_store: Option<(u32, crate::state::Tracking)>,
    ) -> Result<u64, PackError> {
        let inspected = gadget_kernel_base::inspect::inspect(&staged, &label)?;
        // A store's revision must be the pack it was offered as (the label is that name).
        if from_store.is_some() && inspected.meta.name != label {
            return Err(PackError::Invalid(format!(
                "the store offered {label:?} but the downloaded pack is named {:?}",
                inspected.meta.name
            )));
        }
        let upload = Upload {
            meta: inspected.meta,
            staged,
            size,
            sha3_384,
            label,
            from_store,
        };
        let id = self.store.update(|s| plan::install(s, upload))?;
        Ok(id)
    }

    /// Starts a planned change (once the caller has handed over what it owns, e.g. the
    /// upload).
    pub fn start(&self, change: u64) {
        self.queue.enqueue(change);
    }

    /// Plans and starts `pack remove`; the change's id.
    pub fn remove(&self, name: &str, purge: bool) -> Result<u64, PackError> {
        let id = self.store.update(|s| plan::remove(s, name, purge))?;
        self.queue.enqueue(id);
        Ok(id)
    }

    /// Plans and starts `pack revert`; the change's id.
    pub fn revert(&self, name: &str, revision: Option<Revision>) -> Result<u64, PackError> {
        let id = self.store.update(|s| plan::revert(s, name, revision))?;
        self.queue.enqueue(id);
        Ok(id)
    }

    /// Removes staged uploads that no unfinished change refers to (interrupted uploads).
    pub fn clean_uploads(&self) {
        let keep: Vec<PathBuf> = self.store.read(|s| {
            s.changes
                .values()
                .filter_map(|c| match &c.plan {
                    Plan::Install { staged, .. } if !c.is_ready() => Some(staged.clone()),
                    _ => None,
                })
                .collect()
        });
        let Ok(entries) = std::fs::read_dir(self.paths.upload_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !keep.contains(&path) {
                tracing::info!(path = %path.display(), "removing an abandoned upload");
                let _ = crate::fsutil::remove_tree_if_exists(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests;
