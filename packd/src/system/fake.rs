//! Recording fakes of the system boundary, for unit tests of the managers (no root, no
//! kernel): each keeps what "exists" in memory and a log of every call, in order, so a test
//! can assert both the outcome and what was asked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use confine::cgroup::{CgroupError, Limits};
use futures_util::future::BoxFuture;

use super::{Cgroups, Clock, Mounts};
use crate::error::IoError;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Mounts that only remember.
#[derive(Default)]
pub struct FakeMounts {
    pub mounted: Mutex<BTreeMap<PathBuf, PathBuf>>,
    pub calls: Mutex<Vec<String>>,
    /// Mounting a blob under this path fails (e.g. a damaged image).
    pub fail_under: Mutex<Option<PathBuf>>,
}

impl FakeMounts {
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    pub fn targets(&self) -> Vec<PathBuf> {
        lock(&self.mounted).keys().cloned().collect()
    }
}

impl Mounts for FakeMounts {
    fn mount_blob(&self, blob: &Path, target: &Path) -> Result<(), IoError> {
        lock(&self.calls).push(format!("mount {} {}", blob.display(), target.display()));
        if lock(&self.fail_under)
            .as_ref()
            .is_some_and(|p| blob.starts_with(p))
        {
            return Err(IoError::new(
                format!("cannot mount {}", blob.display()),
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        lock(&self.mounted).insert(target.to_path_buf(), blob.to_path_buf());
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), IoError> {
        if lock(&self.mounted).remove(target).is_some() {
            lock(&self.calls).push(format!("unmount {}", target.display()));
        }
        Ok(())
    }

    fn is_mountpoint(&self, target: &Path) -> Result<bool, IoError> {
        Ok(lock(&self.mounted).contains_key(target))
    }
}

/// cgroups that only remember, with processes a test puts in them.
#[derive(Default)]
pub struct FakeCgroups {
    pub made: Mutex<BTreeMap<PathBuf, Limits>>,
    pub procs: Mutex<BTreeMap<PathBuf, Vec<i32>>>,
    pub calls: Mutex<Vec<String>>,
    /// Creating any cgroup fails with this message (a missing controller, say).
    pub refuse: Mutex<Option<String>>,
}

impl FakeCgroups {
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    pub fn existing(&self) -> BTreeSet<PathBuf> {
        lock(&self.made).keys().cloned().collect()
    }

    /// Makes `rel` exist with processes `pids` (as a predecessor left it).
    pub fn put(&self, rel: &Path, pids: &[i32]) {
        lock(&self.made).insert(rel.to_path_buf(), Limits::default());
        lock(&self.procs).insert(rel.to_path_buf(), pids.to_vec());
    }
}

impl Cgroups for FakeCgroups {
    fn layout(&self) -> Result<&str, &str> {
        Ok("fake")
    }

    fn create(&self, rel: &Path, limits: &Limits) -> Result<Vec<PathBuf>, CgroupError> {
        lock(&self.calls).push(format!("create {}", rel.display()));
        if let Some(why) = lock(&self.refuse).clone() {
            return Err(CgroupError::Unavailable(why));
        }
        lock(&self.made).insert(rel.to_path_buf(), limits.clone());
        Ok(self.dirs(rel))
    }

    fn set_limits(&self, rel: &Path, limits: &Limits) -> Result<(), CgroupError> {
        lock(&self.calls).push(format!("limits {}", rel.display()));
        lock(&self.made).insert(rel.to_path_buf(), limits.clone());
        Ok(())
    }

    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        vec![Path::new("/fake-cgroup").join(rel)]
    }

    fn procs(&self, rel: &Path) -> Vec<i32> {
        lock(&self.procs).get(rel).cloned().unwrap_or_default()
    }

    fn kill(&self, rel: &Path) {
        lock(&self.calls).push(format!("kill {}", rel.display()));
        lock(&self.procs).remove(rel);
    }

    fn remove(&self, rel: &Path, _patience: Duration) -> Result<(), CgroupError> {
        if lock(&self.made).remove(rel).is_some() {
            lock(&self.calls).push(format!("remove {}", rel.display()));
        }
        Ok(())
    }

    fn children(&self, parent: &Path) -> Vec<String> {
        lock(&self.made)
            .keys()
            .filter(|p| p.parent() == Some(parent))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

/// The sleeps waiting on a fake clock: when each ends, and how to wake it.
type Sleepers = Vec<(Instant, tokio::sync::oneshot::Sender<()>)>;

/// A clock that moves only when told, and whose sleeps end when it has moved far enough.
#[derive(Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<(Instant, Sleepers)>>,
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock {
            inner: Arc::new(Mutex::new((Instant::now(), Vec::new()))),
        }
    }
}

impl FakeClock {
    /// Moves the clock on by `d`, waking the sleeps that end by then.
    pub fn advance(&self, d: Duration) {
        let mut inner = lock(&self.inner);
        inner.0 += d;
        let now = inner.0;
        let sleepers = std::mem::take(&mut inner.1);
        for (until, tx) in sleepers {
            if until <= now {
                let _ = tx.send(());
            } else {
                inner.1.push((until, tx));
            }
        }
    }

    /// How many sleeps are waiting.
    pub fn sleepers(&self) -> usize {
        lock(&self.inner).1.len()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        lock(&self.inner).0
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut inner = lock(&self.inner);
            let until = inner.0 + d;
            if d.is_zero() {
                let _ = tx.send(());
            } else {
                inner.1.push((until, tx));
            }
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
