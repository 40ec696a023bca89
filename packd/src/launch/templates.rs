//! The daemon's cache of mount templates (see `confine::proto::Template`): for each distinct
//! sandbox file system, the mount namespace holding it, which later launches copy.
//!
//! A template is looked up by everything that shapes it: the root and the mount operations,
//! and the identity (device, inode) of the root and of every bind source, so a pack mounted
//! again or a data directory made again never comes from an old template. Any change to the
//! installed packs empties the cache as well, so no template keeps an unmounted pack's image
//! (and its loop device) alive; unmounting a user's `/tmp` forgets the templates bound from it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use confine::{MountOp, SandboxSpec};

/// At most this many templates are kept (each is a mount namespace of ~40 mounts).
const MAX_TEMPLATES: usize = 64;

/// A template, and the host paths bound into it.
type Kept = (OwnedFd, Vec<PathBuf>);

#[derive(Default)]
pub struct MountTemplates {
    map: Mutex<HashMap<Vec<u8>, Kept>>,
}

impl MountTemplates {
    /// The cache key of `spec`'s file system; `None` when a source cannot be examined (the
    /// launch then builds its file system privately, and reports the real problem).
    pub fn key(spec: &SandboxSpec) -> Option<Vec<u8>> {
        let mut identities = Vec::new();
        for path in std::iter::once(spec.root.clone()).chain(sources(spec)) {
            identities.push(identity(&path)?);
        }
        serde_json::to_vec(&(&spec.root, &spec.mounts, &spec.namespaces, identities)).ok()
    }

    /// A descriptor of the template for `key`, if there is one.
    pub fn get(&self, key: &[u8]) -> Option<OwnedFd> {
        self.lock().get(key).and_then(|(fd, _)| fd.try_clone().ok())
    }

    /// Keeps `template` under `key`, with the `sources` bound into it ([`sources`]).
    pub fn insert(&self, key: Vec<u8>, template: OwnedFd, sources: Vec<PathBuf>) {
        let mut map = self.lock();
        if map.len() >= MAX_TEMPLATES && !map.contains_key(&key) {
            // Rare (64 distinct sandboxes in use): start over rather than track use.
            map.clear();
        }
        map.insert(key, (template, sources));
    }

    /// Forgets the templates that bind something from `source`.
    pub fn forget_using(&self, source: &Path) {
        self.lock()
            .retain(|_, (_, sources)| !sources.iter().any(|s| s.starts_with(source)));
    }

    /// Forgets every template (after any change to the installed packs).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Kept>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What `spec` binds into the sandbox from the host.
pub fn sources(spec: &SandboxSpec) -> impl Iterator<Item = PathBuf> + '_ {
    spec.mounts.iter().filter_map(|op| match op {
        MountOp::Bind { source, .. } | MountOp::Device { source, .. } => Some(source.clone()),
        MountOp::BindBeneath { base, rel, .. } => Some(base.join(rel)),
        _ => None,
    })
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}
