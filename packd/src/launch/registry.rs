//! Which pack each running sandbox belongs to, by its cgroup's whole path relative to the
//! hierarchies' root (`packd/…/sandbox.N`, a place only root can make cgroups in): the
//! API uses it to check that a request on a pack's own socket comes from one of that pack's
//! sandboxes, not from a host user who reached the socket some other way (for example through
//! `/proc/PID/root` of an app they started).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone, Default)]
pub struct Sandboxes(Arc<Mutex<HashMap<String, String>>>);

impl Sandboxes {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the sandbox in cgroup `rel` (relative to the hierarchies' roots) as
    /// `pack`'s; the key to remove it with.
    pub fn insert(&self, rel: &std::path::Path, pack: &str) -> String {
        let key = rel.to_string_lossy().trim_start_matches('/').to_string();
        self.map().insert(key.clone(), pack.to_string());
        key
    }

    pub fn remove(&self, cgroup: &str) {
        self.map().remove(cgroup);
    }

    /// The pack whose sandbox process `pid` is in, from `/proc/PID/cgroup` (read from the
    /// root cgroup namespace: whole paths), matched exactly.
    pub fn pack_of(&self, pid: i32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let map = self.map();
        text.lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .find_map(|path| map.get(path.trim_start_matches('/')).cloned())
    }
}
