//! Spare sandboxes: a few made ahead of any launch, each a cgroup plus a zygote slot that has
//! joined it, unshared the namespaces and forked its init. Joining a v1 cgroup can wait ~10 ms
//! for the kernel (an RCU grace period), and namespaces cost too, so that happens here, in the
//! background, rather than while someone waits for their app.
//!
//! Two are kept: a launch takes a ready one and the next is made after the app has started, so
//! back-to-back launches always find one and the making never competes with a launch under
//! way. A burst beyond that builds sandboxes from scratch.

use std::sync::Mutex;
use std::time::Duration;

use confine::cgroup::Limits;

use super::instance::SandboxCgroup;

use super::zygote::Slot;

/// How many spares are kept ready.
pub const SPARES: usize = 2;

/// A sandbox prepared in advance: its cgroup, and a zygote slot that joined it.
pub struct Spare {
    pub slot: Slot,
    pub cgroup: SandboxCgroup,
    /// What the cgroup was made with.
    pub limits: Limits,
}

impl Spare {
    /// Ends the slot and removes the cgroup (blocking: up to a few seconds).
    pub fn discard(self) {
        drop(self.slot);
        self.cgroup.remove(Duration::from_secs(2));
    }
}

#[derive(Default)]
pub struct Spares {
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    ready: Vec<Spare>,
    /// Spares being made.
    making: usize,
    stopping: bool,
}

impl Spares {
    /// A ready spare, if there is one.
    pub fn take(&self) -> Option<Spare> {
        self.lock().ready.pop()
    }

    /// How many spares to start making now (counted as being made from here on).
    pub fn wanted(&self) -> usize {
        let mut pool = self.lock();
        if pool.stopping {
            return 0;
        }
        let n = SPARES.saturating_sub(pool.ready.len() + pool.making);
        pool.making += n;
        n
    }

    /// Records the end of one making: the spare joins the pool, or comes back to be
    /// discarded when the daemon is stopping.
    pub fn made(&self, spare: Option<Spare>) -> Option<Spare> {
        let mut pool = self.lock();
        pool.making = pool.making.saturating_sub(1);
        match spare {
            Some(spare) if !pool.stopping => {
                pool.ready.push(spare);
                None
            }
            other => other,
        }
    }

    /// No more spares; the ready ones, to be discarded.
    pub fn stop(&self) -> Vec<Spare> {
        let mut pool = self.lock();
        pool.stopping = true;
        std::mem::take(&mut pool.ready)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
