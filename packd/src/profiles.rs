//! The security profiles of a revision's apps, made at install (`setup-profiles`) and on every
//! connection change: a compiled seccomp profile and an AppArmor profile per app (and per
//! hook), under `var/lib/packd/profiles/NAME/REV/`. Launches only load them. Used by the
//! pack and connection managers and, at start, by the daemon (the system key).

use std::collections::BTreeMap;

use interfaces::Grants;
use packfmt::meta::Confinement;
use packfmt::{PackMeta, Revision};

use crate::error::IoContext;
use crate::fsutil;
use crate::paths::Paths;
use crate::policy::{PolicyError, apparmor, seccomp};
use crate::state::State;

type Result<T> = std::result::Result<T, PolicyError>;

/// Where profiles go, and whether the kernel has AppArmor to load them into.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub paths: Paths,
    pub apparmor: bool,
}

impl Profiles {
    /// Writes the profiles of revision `rev` of `name` for the connections in `state` (and
    /// loads the AppArmor ones where the kernel has AppArmor).
    pub fn write_for(
        &self,
        state: &State,
        name: &str,
        rev: Revision,
        meta: &PackMeta,
    ) -> std::result::Result<(), crate::error::ConnectionError> {
        let grants =
            crate::connections::policy::grants_by_app(state, &self.paths, name, rev, meta)?;
        write(&self.paths, name, rev, meta, self.apparmor, &grants)?;
        Ok(())
    }

    pub fn remove(&self, name: &str, rev: Revision) -> Result<()> {
        remove(&self.paths, name, rev)
    }

    /// Loads the AppArmor profiles of a revision; nothing without AppArmor.
    pub fn load(&self, name: &str, rev: Revision, meta: &PackMeta) -> Result<()> {
        if self.apparmor {
            load_apparmor(&self.paths, name, rev, meta)?;
        }
        Ok(())
    }

    /// Unloads a pack's AppArmor labels; nothing without AppArmor.
    pub fn unload(&self, name: &str, meta: &PackMeta) {
        if self.apparmor {
            unload_apparmor(name, meta);
        }
    }
}

/// Writes (replacing) every profile of `meta`'s apps, with what each app's connections
/// grant (`grants`, by app); loads the AppArmor ones if `load`.
pub fn write(
    paths: &Paths,
    name: &str,
    rev: Revision,
    meta: &PackMeta,
    load: bool,
    grants: &BTreeMap<String, Grants>,
) -> Result<()> {
    let dir = paths.profile_dir(name, rev);
    fsutil::ensure_dir(&dir, 0o755).ctx("create", &dir)?;
    let devmode = meta.confinement == Confinement::Devmode;
    let arch = seccomp::host_arch()?;
    let none = Grants::default();
    // Hooks have profiles of their own, as apps do.
    let meta = &*crate::policy::hooks::with_hooks(meta);
    for app in meta.apps.keys() {
        let g = grants.get(app).unwrap_or(&none);
        let profile = seccomp::compile(arch, &g.seccomp, devmode)?;
        let path = paths.seccomp_profile(name, rev, app);
        confine::seccomp::store(&profile, &path).ctx("write", &path)?;
        let text = apparmor::profile(name, &rev.to_string(), app, devmode, &g.apparmor);
        let path = paths.apparmor_profile(name, rev, app);
        fsutil::write_atomic(&path, text.as_bytes(), 0o644).ctx("write", &path)?;
    }
    fsutil::sync_dir(&dir).ctx("sync", &dir)?;
    if load {
        load_apparmor(paths, name, rev, meta)?;
    }
    Ok(())
}

/// What stored profiles were made by: the packd version and a fingerprint of the policy's
/// output (so a rebuilt packd whose templates or compiler changed is noticed even at the same
/// version), and whether AppArmor profiles were loaded. snapd calls this the system key.
pub fn system_key(apparmor: bool) -> Result<String> {
    use sha3::{Digest, Sha3_256};
    let arch = seccomp::host_arch()?;
    let mut h = Sha3_256::new();
    for devmode in [false, true] {
        h.update(seccomp::compile(arch, &[], devmode)?.encode());
        h.update(apparmor::profile("key", "x1", "app", devmode, &[]));
    }
    let fingerprint: String = h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The layout of the profile directory (v2: hooks have profiles too).
    Ok(format!(
        "packd {} {arch:?} policy {fingerprint} layout 2 apparmor {}",
        env!("CARGO_PKG_VERSION"),
        if apparmor { "loaded" } else { "absent" }
    ))
}

/// Rewrites every installed revision's profiles when they were made by another packd (or for
/// another kernel), before any launch loads them. Returns how many revisions were rewritten.
/// AppArmor profiles are not loaded here: the caller loads the current revisions' (a label is
/// per app, so the last one loaded wins).
pub fn refresh_if_stale(
    paths: &Paths,
    revisions: &[(String, Revision, PackMeta, BTreeMap<String, Grants>)],
    apparmor: bool,
) -> Result<usize> {
    let key = system_key(apparmor)?;
    let key_file = paths.profiles_dir().join("system-key");
    if std::fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        return Ok(0);
    }
    let mut rewritten = 0;
    for (name, rev, meta, grants) in revisions {
        write(paths, name, *rev, meta, false, grants)?;
        rewritten += 1;
    }
    // Written last: a crash in between rewrites everything again at the next start.
    fsutil::write_atomic(&key_file, key.as_bytes(), 0o644).ctx("write", &key_file)?;
    Ok(rewritten)
}

pub fn remove(paths: &Paths, name: &str, rev: Revision) -> Result<()> {
    let dir = paths.profile_dir(name, rev);
    fsutil::remove_tree_if_exists(&dir).ctx("remove", &dir)?;
    let parent = paths.profiles_dir().join(name);
    Ok(fsutil::remove_dir_if_empty(&parent).ctx("remove", &parent)?)
}

pub fn load_apparmor(paths: &Paths, name: &str, rev: Revision, meta: &PackMeta) -> Result<()> {
    for app in crate::policy::hooks::with_hooks(meta).apps.keys() {
        apparmor::load(&paths.apparmor_profile(name, rev, app))?;
    }
    Ok(())
}

pub fn unload_apparmor(name: &str, meta: &PackMeta) {
    for app in crate::policy::hooks::with_hooks(meta).apps.keys() {
        apparmor::unload(&apparmor::label(name, app));
    }
}
