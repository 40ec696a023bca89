//! Each pack's private network namespace: loopback only (until an interface grants the
//! network), shared by all of the pack's apps and services so they reach each other on
//! `localhost` — a pack's command-line tool talks to its own service as a user expects — and
//! never by two packs.
//!
//! Made at the pack's first launch and **pinned** by a bind mount at `run/packd/netns/NAME`
//! (as `ip netns` does), so that it outlives the daemon: a restarted packd opens it again, and
//! its new launches meet the services that kept running. A sandbox joins it rather than
//! making and tearing down a namespace every time; a service's monitor opens it by path.
//! Unpinned when the pack is removed (the namespace goes with its last process); a reboot
//! takes the pins with it.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{IoContext, IoError};
use crate::fsutil;

/// The magic number of nsfs, the file system namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

pub struct PackNetworks {
    dir: PathBuf,
    open: Mutex<HashMap<String, OwnedFd>>,
}

impl PackNetworks {
    /// Pins live in `dir` (`run/packd/netns`).
    pub fn new(dir: PathBuf) -> Self {
        PackNetworks {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Where `pack`'s namespace is pinned.
    pub fn pin(&self, pack: &str) -> PathBuf {
        self.dir.join(pack)
    }

    /// A descriptor of `pack`'s network namespace: the one pinned (by this packd or an
    /// earlier one), or a new one, pinned now.
    pub fn get(&self, pack: &str) -> std::io::Result<OwnedFd> {
        let mut open = self.lock();
        if let Some(fd) = open.get(pack) {
            return fd.try_clone();
        }
        let pin = self.pin(pack);
        let fd = match open_pinned(&pin)? {
            Some(fd) => fd,
            None => {
                fsutil::ensure_dir(&self.dir, 0o700)?;
                make_pinned(&pin)?
            }
        };
        let copy = fd.try_clone()?;
        open.insert(pack.to_string(), fd);
        Ok(copy)
    }

    /// The pinned path of `pack`'s namespace, made (and pinned) now if it has none.
    pub fn pinned(&self, pack: &str) -> std::io::Result<PathBuf> {
        self.get(pack)?;
        Ok(self.pin(pack))
    }

    /// Unpins `pack`'s namespace (its removal): nothing new joins it.
    pub fn forget(&self, pack: &str) -> Result<(), IoError> {
        self.lock().remove(pack);
        let pin = self.pin(pack);
        if std::fs::symlink_metadata(&pin).is_err() {
            return Ok(());
        }
        match nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(IoError::new(
                    format!("cannot unpin {}", pin.display()),
                    e.into(),
                ));
            }
        }
        fsutil::remove_file_if_exists(&pin).ctx("remove", &pin)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnedFd>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The namespace pinned at `pin`, if it is one (after a reboot, or a pin unmounted by hand,
/// the file is only a file).
fn open_pinned(pin: &Path) -> std::io::Result<Option<OwnedFd>> {
    let file = match std::fs::File::open(pin) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let fs = nix::sys::statfs::fstatfs(file.as_fd())?;
    if fs.filesystem_type().0 as i64 == NSFS_MAGIC {
        Ok(Some(file.into()))
    } else {
        Ok(None)
    }
}

/// A new namespace with loopback up, pinned at `pin`. Made on a short-lived thread: a network
/// namespace belongs to a thread, and no thread of the daemon's ever changes namespace.
fn make_pinned(pin: &Path) -> std::io::Result<OwnedFd> {
    let pin = pin.to_path_buf();
    std::thread::Builder::new()
        .name("packd-netns".into())
        .spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            confine::steps::net::loopback_up().map_err(|e| std::io::Error::other(e.to_string()))?;
            // The pin: an empty file with the namespace bound onto it.
            let _ = nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH);
            std::fs::File::create(&pin)?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &pin,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(std::fs::File::open(&pin)?.into())
        })?
        .join()
        .map_err(|_| std::io::Error::other("the network namespace thread panicked"))?
}
