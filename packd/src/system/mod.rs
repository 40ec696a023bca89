//! The system boundary: what packd asks of the kernel, behind small traits, so that the
//! managers above are tested without root against recording fakes ([`fake`]) while the real
//! implementations here are exercised by the end-to-end suite (youki routes its syscalls
//! through a `Syscall` trait for the same reason).
//!
//! - [`Mounts`]: package images on loop devices, mounted read-only;
//! - [`Cgroups`]: the sandboxes' cgroups, by path relative to each hierarchy's root;
//! - [`Clock`]: time, for restart delays, start limits and health windows.
//!
//! Processes are behind the launcher (the zygote) and the services' `Supervisor`.

pub mod fake;
mod mounts;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use confine::cgroup::{Cgroup, CgroupError, Layout, Limits};
use futures_util::future::BoxFuture;

use crate::error::IoError;

pub use mounts::{RealMounts, parse_mountinfo};

/// Package images mounted read-only (`ro,nodev,nosuid`) from auto-clearing loop devices.
pub trait Mounts: Send + Sync {
    /// Attaches `blob` to a loop device and mounts it at `target`; already mounted is fine
    /// (tasks are re-run after a crash).
    fn mount_blob(&self, blob: &Path, target: &Path) -> Result<(), IoError>;
    /// Unmounts `target` if it is a mount point (lazily when busy).
    fn unmount(&self, target: &Path) -> Result<(), IoError>;
    fn is_mountpoint(&self, target: &Path) -> Result<bool, IoError>;
}

/// One directory per hierarchy for each cgroup, named by its path relative to the
/// hierarchies' roots (`packd/system/sandbox.7`).
pub trait Cgroups: Send + Sync {
    /// The layout's name (`hybrid`, `unified`, `legacy`), or why there is none.
    fn layout(&self) -> Result<&str, &str>;
    /// Creates the cgroup with `limits`; the directories to join.
    fn create(&self, rel: &Path, limits: &Limits) -> Result<Vec<PathBuf>, CgroupError>;
    /// Rewrites the memory, task and CPU limits (devices are fixed at creation).
    fn set_limits(&self, rel: &Path, limits: &Limits) -> Result<(), CgroupError>;
    /// The directories of a cgroup, made or not.
    fn dirs(&self, rel: &Path) -> Vec<PathBuf>;
    /// The processes in it.
    fn procs(&self, rel: &Path) -> Vec<i32>;
    /// Kills every process in it.
    fn kill(&self, rel: &Path);
    /// Removes it, waiting up to `patience` for exiting processes to leave.
    fn remove(&self, rel: &Path, patience: Duration) -> Result<(), CgroupError>;
    /// The names of the cgroups directly under `parent`.
    fn children(&self, parent: &Path) -> Vec<String>;
}

/// The kernel's cgroups, in the layout detected at start (or none).
pub struct RealCgroups {
    layout: Result<Layout, String>,
}

impl RealCgroups {
    pub fn new(layout: Result<Layout, String>) -> Self {
        RealCgroups { layout }
    }

    fn at(&self, rel: &Path) -> Option<Cgroup> {
        self.layout.as_ref().ok().map(|l| Cgroup::at(l, rel))
    }

    fn none() -> CgroupError {
        CgroupError::Unavailable("this system has no cgroup hierarchy".into())
    }
}

impl Cgroups for RealCgroups {
    fn layout(&self) -> Result<&str, &str> {
        match &self.layout {
            Ok(l) => Ok(l.name()),
            Err(e) => Err(e),
        }
    }

    fn create(&self, rel: &Path, limits: &Limits) -> Result<Vec<PathBuf>, CgroupError> {
        let layout = self.layout.as_ref().map_err(|_| Self::none())?;
        Cgroup::create(layout, rel, limits).map(|cg| cg.dirs())
    }

    fn set_limits(&self, rel: &Path, limits: &Limits) -> Result<(), CgroupError> {
        let layout = self.layout.as_ref().map_err(|_| Self::none())?;
        confine::cgroup::check_controllers(layout, rel, limits)?;
        Cgroup::at(layout, rel).set_limits(limits)
    }

    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        self.at(rel).map(|cg| cg.dirs()).unwrap_or_default()
    }

    fn procs(&self, rel: &Path) -> Vec<i32> {
        self.at(rel).map(|cg| cg.pids()).unwrap_or_default()
    }

    fn kill(&self, rel: &Path) {
        if let Some(cg) = self.at(rel) {
            cg.kill();
        }
    }

    fn remove(&self, rel: &Path, patience: Duration) -> Result<(), CgroupError> {
        match self.at(rel) {
            Some(cg) => cg.remove(patience),
            None => Ok(()),
        }
    }

    fn children(&self, parent: &Path) -> Vec<String> {
        match &self.layout {
            Ok(l) => confine::cgroup::children(l, parent),
            Err(_) => Vec::new(),
        }
    }
}

/// Time, as the services see it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// tokio's clock (paused in tests that want it so).
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}
