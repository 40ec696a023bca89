//! The security profiles of a revision's apps, made at install (`setup-profiles`): a compiled
//! seccomp profile and an AppArmor profile per app, under `var/lib/packd/profiles/NAME/REV/`.
//! Launches only load them.

use packfmt::meta::Confinement;
use packfmt::{PackMeta, Revision};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::paths::Paths;
use crate::policy::{apparmor, seccomp};

/// Writes (replacing) every profile of `meta`'s apps; loads the AppArmor ones if `load`.
pub fn write(paths: &Paths, name: &str, rev: Revision, meta: &PackMeta, load: bool) -> Result<()> {
    let dir = paths.profile_dir(name, rev);
    fsutil::ensure_dir(&dir, 0o755).ctx("create", &dir)?;
    let devmode = meta.confinement == Confinement::Devmode;
    let arch = seccomp::host_arch()?;
    // Interfaces add rules here once connections exist.
    let profile = seccomp::compile(arch, &[], devmode)?;
    for app in meta.apps.keys() {
        let path = paths.seccomp_profile(name, rev, app);
        confine::seccomp::store(&profile, &path).ctx("write", &path)?;
        let text = apparmor::profile(name, &rev.to_string(), app, devmode, &[]);
        let path = paths.apparmor_profile(name, rev, app);
        fsutil::write_atomic(&path, text.as_bytes(), 0o644).ctx("write", &path)?;
    }
    fsutil::sync_dir(&dir).ctx("sync", &dir)?;
    if load {
        load_apparmor(paths, name, rev, meta)?;
    }
    Ok(())
}

pub fn remove(paths: &Paths, name: &str, rev: Revision) -> Result<()> {
    let dir = paths.profile_dir(name, rev);
    fsutil::remove_tree_if_exists(&dir).ctx("remove", &dir)?;
    let parent = paths.profiles_dir().join(name);
    fsutil::remove_dir_if_empty(&parent).ctx("remove", &parent)
}

pub fn load_apparmor(paths: &Paths, name: &str, rev: Revision, meta: &PackMeta) -> Result<()> {
    for app in meta.apps.keys() {
        apparmor::load(&paths.apparmor_profile(name, rev, app))?;
    }
    Ok(())
}

pub fn unload_apparmor(name: &str, meta: &PackMeta) {
    for app in meta.apps.keys() {
        apparmor::unload(&apparmor::label(name, app));
    }
}
