//! The pack manager at start: what a reboot or a crash left to repair before anything runs.

use packfmt::{PackMeta, Revision};

use super::{PackError, PackManager, link};
use crate::error::IoContext;
use crate::fsutil;
use crate::paths::Paths;
use crate::state::{Change, Plan, State, Status, TaskKind};

impl PackManager {
    /// Mounts what should be mounted (after a reboot or a crash) and repairs `current` links;
    /// run at daemon start, before changes resume. Returns the failures, to be logged.
    pub fn restore(
        &self,
        mounts: &[(String, Revision)],
        links: &[(String, Revision)],
    ) -> Vec<PackError> {
        let mut errors = Vec::new();
        for (name, rev) in mounts {
            let target = self.paths.mount_dir(name, *rev);
            // Still mounted (packd restarted, the system did not): nothing to do.
            if self.mounts.is_mountpoint(&target).unwrap_or(false) {
                continue;
            }
            let result = fsutil::ensure_dir(&target, 0o755)
                .ctx("create", &target)
                .and_then(|_| {
                    self.mounts
                        .mount_blob(&self.paths.blob(name, *rev), &target)
                });
            if let Err(e) = result {
                errors.push(e.into());
            }
        }
        for (name, rev) in links {
            if let Err(e) = link::set_current(&self.paths, name, *rev) {
                errors.push(e.into());
            }
        }
        errors
    }

    /// Loads the AppArmor profiles of every active pack's current revision (the kernel
    /// forgets them at reboot).
    pub fn load_profiles(&self, packs: &[(String, Revision, PackMeta)]) -> Vec<PackError> {
        packs
            .iter()
            .filter_map(|(name, rev, meta)| self.profiles.load(name, *rev, meta).err())
            .map(PackError::from)
            .collect()
    }

    /// What the pack manager does at start, before any change resumes or any app launches:
    /// remount what a reboot or crash unmounted, repair `current` links, rewrite the security
    /// profiles when another packd wrote them, and load the current revisions' AppArmor
    /// profiles (the kernel forgets them at reboot). Failures are logged; the rest goes on.
    pub fn boot(&self) {
        let (wanted, active) = self.store.read(|s| (boot_mounts(s), active_links(s)));
        for e in self.restore(&wanted, &active) {
            tracing::error!(error = %e, "cannot restore an installed pack");
        }
        let revisions = self.store.read(|s| profiled_revisions(s, &self.paths));
        let with_grants: Vec<_> = self.store.read(|s| {
            revisions
                .iter()
                .map(|(name, rev, meta)| {
                    let grants = crate::connections::policy::grants_by_app(
                        s,
                        &self.paths,
                        name,
                        *rev,
                        meta,
                    )
                    .unwrap_or_else(|e| {
                        tracing::error!(pack = %name, error = %e, "cannot work out its connections");
                        Default::default()
                    });
                    (name.clone(), *rev, meta.clone(), grants)
                })
                .collect()
        });
        match crate::profiles::refresh_if_stale(&self.paths, &with_grants, self.profiles.apparmor) {
            Ok(0) => {}
            Ok(n) => tracing::info!(revisions = n, "security profiles rewritten for this packd"),
            Err(e) => tracing::error!(error = %e, "cannot rewrite the security profiles"),
        }
        let current: Vec<_> = revisions
            .into_iter()
            .filter(|(name, rev, _)| active.contains(&(name.clone(), *rev)))
            .collect();
        for e in self.load_profiles(&current) {
            tracing::error!(error = %e, "cannot load an AppArmor profile");
        }
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
#[path = "boot_tests.rs"]
mod tests;
