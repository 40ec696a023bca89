//! Each pack's private network namespace: loopback only (until an interface grants the
//! network), shared by all of the pack's apps and services so they reach each other on
//! `localhost` — a pack's command-line tool talks to its own service as a user expects — and
//! never by two packs. Made at the pack's first launch and held here; a sandbox joins it
//! rather than making and tearing down a namespace every time. Forgotten when the pack is
//! removed (the namespace goes with its last process); the daemon's restart starts afresh.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

#[derive(Default)]
pub struct PackNetworks {
    map: Mutex<HashMap<String, OwnedFd>>,
}

impl PackNetworks {
    /// A descriptor of `pack`'s network namespace, made now if it has none yet.
    pub fn get(&self, pack: &str) -> std::io::Result<OwnedFd> {
        let mut map = self.lock();
        if let Some(fd) = map.get(pack) {
            return fd.try_clone();
        }
        let fd = confine::steps::net::new_namespace()?;
        let copy = fd.try_clone()?;
        map.insert(pack.to_string(), fd);
        Ok(copy)
    }

    pub fn forget(&self, pack: &str) {
        self.lock().remove(pack);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnedFd>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
