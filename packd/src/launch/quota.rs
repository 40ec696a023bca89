//! How many sandboxes one user may run at once: without a cap, a few dozen `pack run`s of a
//! local user could use up the host's pids and memory. Root, and the services and hooks packd
//! runs itself (as root), are not counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Sandboxes one user may run at once.
pub const PER_USER: usize = 32;

/// Tasks all of one daemon's sandboxes (and service monitors) may have together: a pids limit
/// on their parent cgroup (each app has its own, 1024 by default, below it).
pub const TOTAL_TASKS: u32 = 16384;

#[derive(Debug, Default, Clone)]
pub struct UserSandboxes(Arc<Mutex<HashMap<u32, usize>>>);

/// One sandbox counted against its user; counted no more once dropped.
#[derive(Debug)]
pub struct Held {
    of: UserSandboxes,
    uid: u32,
}

impl UserSandboxes {
    /// Counts one more sandbox of `uid`, unless it runs [`PER_USER`] already.
    pub fn take(&self, uid: u32) -> Option<Held> {
        let mut n = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = n.entry(uid).or_insert(0);
        if *count >= PER_USER {
            return None;
        }
        *count += 1;
        Some(Held {
            of: self.clone(),
            uid,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut n = self.of.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = n.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                n.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_runs_at_most_their_share_and_gets_it_back() {
        let q = UserSandboxes::default();
        let held: Vec<Held> = (0..PER_USER).map(|_| q.take(1000).unwrap()).collect();
        assert!(q.take(1000).is_none());
        assert!(q.take(1001).is_some(), "other users are counted apart");
        drop(held);
        assert!(q.take(1000).is_some());
    }
}
