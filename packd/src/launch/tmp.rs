//! Each pack's `/tmp`: a size-limited tmpfs per pack **and user**, mounted on the host at
//! `run/packd/tmp/NAME/UID` (the parent root-owned 0700, so no user can plant or swap it:
//! snap-confine's CVE-2021-44731 lesson) and bound into every sandbox of that pack run by that
//! user. The pack's apps meet in it (as in snapd), but two users never share one, nor do a user
//! and root's services: no symlink or FIFO planted by one in a world-writable `/tmp` can catch
//! another, whatever the host's `fs.protected_symlinks` says.
//!
//! Its pages are charged to the memory cgroup of the sandbox that writes them, so `/tmp` counts
//! against the writer's `limits.memory`. Its size is the largest `limits.tmp` of the pack's apps
//! ([`DEFAULT_SIZE`] otherwise), with one inode per 4 KiB of it; a later revision asking for
//! another size gets it at its next launch (a remount, keeping what is there).
//!
//! A user's `/tmp` is unmounted when their last sandbox of the pack is gone (their `pack run`
//! apps die with the daemon, so a starting daemon unmounts every user's it finds). Root's (the
//! services', the hooks', root's `pack run`) stays, as services outlive the daemon, until the
//! pack is removed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::mount::{MntFlags, MsFlags};
use packfmt::meta::PackMeta;

use super::LaunchError;
use super::templates::MountTemplates;
use crate::error::{IoContext, IoError};
use crate::fsutil;

/// The size of a pack's `/tmp` when none of its apps sets `limits.tmp`.
pub const DEFAULT_SIZE: u64 = 128 << 20;

/// tmpfs's magic number (`statfs`).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The size of `meta`'s `/tmp`, whole pages.
pub fn size_of(meta: &PackMeta) -> u64 {
    let size = meta
        .apps
        .values()
        .filter_map(|a| a.limits.tmp)
        .max()
        .unwrap_or(DEFAULT_SIZE);
    size.div_ceil(4096) * 4096
}

/// The `/tmp`s in use, by pack and user.
#[derive(Clone)]
pub struct PrivateTmps {
    /// `run/packd/tmp`.
    dir: PathBuf,
    users: Arc<Mutex<HashMap<(String, u32), usize>>>,
    templates: Arc<MountTemplates>,
}

/// One sandbox's use of a user's `/tmp`; the last one dropped unmounts it (never root's).
pub struct TmpHold {
    tmps: PrivateTmps,
    key: Option<(String, u32)>,
}

impl PrivateTmps {
    pub fn new(dir: PathBuf, templates: Arc<MountTemplates>) -> Self {
        PrivateTmps {
            dir,
            users: Arc::default(),
            templates,
        }
    }

    /// Where the `/tmp` of `pack` for `uid` is mounted.
    pub fn path(&self, pack: &str, uid: u32) -> PathBuf {
        self.dir.join(pack).join(uid.to_string())
    }

    /// Mounts (or resizes) the `/tmp` of `pack` for `uid`, `size` bytes, and counts one more
    /// sandbox using it.
    pub fn acquire(
        &self,
        pack: &str,
        uid: u32,
        size: u64,
    ) -> Result<(PathBuf, TmpHold), LaunchError> {
        let mut users = self.lock();
        let path = self.path(pack, uid);
        let parent = self.dir.join(pack);
        fsutil::ensure_dir(&self.dir, 0o700).ctx("create", &self.dir)?;
        fsutil::ensure_dir(&parent, 0o700).ctx("create", &parent)?;
        // The mount point only: a mounted tmpfs keeps its own mode (1777).
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(IoError::new(format!("cannot create {}", path.display()), e).into());
            }
        }
        mount(&path, size)?;
        let key = (uid != 0).then(|| (pack.to_string(), uid));
        if let Some(key) = &key {
            *users.entry(key.clone()).or_insert(0) += 1;
        }
        drop(users);
        let hold = TmpHold {
            tmps: self.clone(),
            key,
        };
        Ok((path, hold))
    }

    /// Unmounts every user's `/tmp` left by an earlier daemon (their apps died with it); root's
    /// stay, as the services that use them may still run.
    pub fn sweep(&self) {
        let Ok(packs) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for pack in packs.flatten() {
            let Ok(users) = std::fs::read_dir(pack.path()) else {
                continue;
            };
            for user in users.flatten() {
                let name = user.file_name();
                if name
                    .to_str()
                    .is_some_and(|n| n != "0" && n.parse::<u32>().is_ok())
                {
                    self.release(&user.path());
                }
            }
        }
    }

    fn release(&self, path: &Path) {
        if let Err(e) = unmount(path) {
            tracing::warn!(%e, "cannot unmount a user's /tmp");
            return;
        }
        // A mount template holding the old tmpfs would keep it (and what is in it) alive.
        self.templates.forget_using(path);
        let _ = std::fs::remove_dir(path);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), usize>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TmpHold {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut users = self.tmps.lock();
        let Some(count) = users.get_mut(&key) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            users.remove(&key);
            // Under the lock: a launch starting now waits, then mounts a fresh one.
            self.tmps.release(&self.tmps.path(&key.0, key.1));
        }
    }
}

/// Unmounts every `/tmp` of `pack` (its removal) and removes their directories.
pub fn remove_all(dir: &Path, pack: &str) -> Result<(), IoError> {
    let parent = dir.join(pack);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        unmount(&entry.path())?;
    }
    fsutil::remove_tree_if_exists(&parent).ctx("remove", &parent)
}

/// Whether `path` is a tmpfs mounted there (not merely a directory on one).
fn mounted(path: &Path) -> Result<Option<u64>, IoError> {
    let meta = std::fs::symlink_metadata(path).ctx("examine", path)?;
    let parent = path.parent().unwrap_or(path);
    let above = std::fs::symlink_metadata(parent).ctx("examine", parent)?;
    let fs = nix::sys::statfs::statfs(path)
        .map_err(|e| IoError::new(format!("cannot examine {}", path.display()), e.into()))?;
    if meta.dev() == above.dev() || fs.filesystem_type().0 as i64 != TMPFS_MAGIC {
        return Ok(None);
    }
    Ok(Some(fs.blocks() * fs.block_size() as u64))
}

fn mount(path: &Path, size: u64) -> Result<(), LaunchError> {
    let options = format!(
        "size={size},nr_inodes={},mode=1777",
        (size / 4096).max(1024)
    );
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let (flags, what) = match mounted(path)? {
        Some(now) if now == size => return Ok(()),
        Some(_) => (flags | MsFlags::MS_REMOUNT, "resize"),
        None => (flags, "mount"),
    };
    match nix::mount::mount(
        Some("packd-tmp"),
        path,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    ) {
        Ok(()) => Ok(()),
        // Smaller than what is in it now: it keeps its size until it is emptied.
        Err(nix::errno::Errno::EINVAL) if what == "resize" => {
            tracing::warn!(path = %path.display(), size, "cannot shrink a /tmp below what it holds");
            Ok(())
        }
        Err(e) => Err(IoError::new(
            format!("cannot {what} the tmpfs {} ({options})", path.display()),
            e.into(),
        )
        .into()),
    }
}

fn unmount(path: &Path) -> Result<(), IoError> {
    loop {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(IoError::new(
                    format!("cannot unmount {}", path.display()),
                    e.into(),
                ));
            }
        }
    }
}
