//! [`RealMounts`]: package blobs on read-only loop devices (auto-clearing, so unmounting frees
//! them), mounted as squashfs with `ro,nodev,nosuid`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loopdev::LoopControl;
use nix::mount::{MntFlags, MsFlags};

use crate::error::IoError;

type Result<T> = std::result::Result<T, IoError>;

/// The kernel's mounts and loop devices.
pub struct RealMounts;

impl super::Mounts for RealMounts {
    fn mount_blob(&self, blob: &Path, target: &Path) -> Result<()> {
        mount_blob(blob, target)
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        unmount(target)
    }

    fn is_mountpoint(&self, target: &Path) -> Result<bool> {
        is_mountpoint(target)
    }
}

/// Attaches `blob` to a free loop device and mounts it at `target`. Already mounted is fine
/// (tasks are re-run after a crash).
fn mount_blob(blob: &Path, target: &Path) -> Result<()> {
    if is_mountpoint(target)? {
        return Ok(());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(blob)
        .map_err(|e| IoError::new(format!("cannot open {}", blob.display()), e))?;
    // Keep the device open until the mount holds it: an auto-clearing loop device detaches
    // itself when its last opener closes it.
    let (device, loop_dev) = attach_loop(&file, blob)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    if let Err(e) = nix::mount::mount(
        Some(device.as_path()),
        target,
        Some("squashfs"),
        flags,
        None::<&str>,
    ) {
        // Nobody else uses the device: closing our handle detaches it (auto-clear).
        drop(loop_dev);
        return Err(IoError::new(
            format!(
                "cannot mount {} at {} (is the kernel's squashfs support loaded?)",
                blob.display(),
                target.display()
            ),
            io::Error::from(e),
        ));
    }
    drop(loop_dev);
    Ok(())
}

/// Finds a free loop device and attaches `file` read-only with auto-clear. Another process may
/// grab the same free device between the query and the attach; that is retried.
fn attach_loop(file: &File, blob: &Path) -> Result<(PathBuf, loopdev::LoopDevice)> {
    let control = LoopControl::open().map_err(|e| {
        IoError::new(
            "cannot open /dev/loop-control (are loop devices available?)",
            e,
        )
    })?;
    let mut last = None;
    for attempt in 0..20 {
        let device = control
            .next_free()
            .map_err(|e| IoError::new("cannot find a free loop device", e))?;
        match device
            .with()
            .read_only(true)
            .autoclear(true)
            .attach_fd(file.as_raw_fd())
        {
            Ok(()) => {
                let path = device.path().ok_or_else(|| {
                    IoError::new(
                        "the loop device has no path",
                        io::Error::from_raw_os_error(libc::ENODEV),
                    )
                })?;
                return Ok((path, device));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(5 * (attempt + 1)));
            }
            Err(e) => {
                return Err(IoError::new(
                    format!("cannot attach {} to a loop device", blob.display()),
                    e,
                ));
            }
        }
    }
    Err(IoError::new(
        format!(
            "cannot attach {} to a loop device: every free device was taken by others",
            blob.display()
        ),
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)),
    ))
}

/// Unmounts `target` if it is a mount point. A busy mount is detached lazily; its loop device
/// clears itself when the last user (e.g. a running sandbox) lets go.
fn unmount(target: &Path) -> Result<()> {
    if !is_mountpoint(target)? {
        return Ok(());
    }
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            tracing::warn!(target = %target.display(), "mount busy; detaching lazily");
            nix::mount::umount2(target, MntFlags::MNT_DETACH)
                .map_err(|e| IoError::new(format!("cannot unmount {}", target.display()), e.into()))
        }
        Err(e) => Err(IoError::new(
            format!("cannot unmount {}", target.display()),
            e.into(),
        )),
    }
}

/// Whether `path` is a mount point in this mount namespace, from `/proc/self/mountinfo`.
fn is_mountpoint(path: &Path) -> Result<bool> {
    Ok(mount_points()?.iter().any(|m| m == path))
}

/// Every mount point in this namespace.
fn mount_points() -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| IoError::new("cannot read /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text))
}

/// The mount point field (5th) of each line, with the kernel's octal escapes undone.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 7:1 / /r/pack/hello/x1 ro,nosuid,nodev - squashfs /dev/loop1 ro\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/r/pack/hello/x1")
            ]
        );
    }

    #[test]
    fn root_is_a_mount_point_and_tmp_dirs_are_not() {
        assert!(is_mountpoint(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(dir.path()).unwrap());
    }
}

#[cfg(test)]
mod root_tests {
    //! Real loop mounts; they need root. Outside CI they return early saying so; under
    //! `CI=true` not being root is a failure.

    use super::*;

    pub fn have_root(test: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs root and CI=true: run the test suite as root"
        );
        eprintln!("skipping {test}: needs root (runs for real in CI)");
        false
    }

    #[test]
    fn mounts_and_unmounts_an_image_read_only() {
        if !have_root("mounts_and_unmounts_an_image_read_only") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("meta")).unwrap();
        std::fs::write(src.join("meta/pack.yaml"), "name: xx\nversion: '1'\n").unwrap();
        let blob = dir.path().join("xx.pack");
        packfmt::image::write_image(&src, &blob, &packfmt::WriteOptions::default()).unwrap();
        let target = dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        mount_blob(&blob, &target).unwrap();
        let mounted = is_mountpoint(&target).unwrap();
        let content = std::fs::read_to_string(target.join("meta/pack.yaml"));
        let write = std::fs::write(target.join("x"), b"x");
        unmount(&target).unwrap();
        assert!(mounted);
        assert_eq!(content.unwrap(), "name: xx\nversion: '1'\n");
        assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));
        assert!(!is_mountpoint(&target).unwrap());
    }
}
