//! Small file-system primitives with crash-safety guarantees: atomic file replacement, atomic
//! symlink switches, directory fsync, and removal that tolerates "already gone".

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// the directory. A crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path)?;
    let tmp = sibling(path, ".tmp");
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Points the symlink at `link` to `target`, atomically (temp symlink + rename + dir fsync), so
/// a reader always sees the old or the new target.
pub fn switch_symlink(link: &Path, target: &Path) -> io::Result<()> {
    let dir = parent(link)?;
    let tmp = sibling(link, ".new");
    remove_file_if_exists(&tmp)?;
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a directory tree; a missing one is fine. Never follows symlinks (std's
/// `remove_dir_all` does not).
pub fn remove_tree_if_exists(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Removes an empty directory; a missing or non-empty one is left alone.
pub fn remove_dir_if_empty(path: &Path) -> io::Result<()> {
    match fs::remove_dir(path) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Creates `path` and its parents, then sets `path`'s exact mode (mkdir honours the umask).
/// An existing symlink at `path` is an error, not something to follow.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => {
            // Already right (the common case, and the only one a read-only mount allows).
            if md.permissions().mode() & 0o7777 == mode {
                return Ok(());
            }
        }
        Ok(md) if md.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is a symlink; packd never follows symlinks where it keeps data (remove it)",
                    path.display()
                ),
            ));
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(path)?,
        Err(e) => return Err(e),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )
    })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlink_switch_is_atomic_and_repeatable() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        switch_symlink(&link, Path::new("x1")).unwrap();
        switch_symlink(&link, Path::new("x2")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("x2"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn removals_tolerate_missing_and_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        remove_tree_if_exists(&link).unwrap();
        assert!(victim.join("keep").exists(), "the link's target survives");
        remove_tree_if_exists(&dir.path().join("absent")).unwrap();
        remove_dir_if_empty(&victim).unwrap();
        assert!(victim.exists(), "non-empty directory kept");
    }

    #[test]
    fn ensure_dir_sets_exact_mode_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        ensure_dir(&d, 0o1777).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o1777
        );
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(ensure_dir(&link, 0o755).is_err());
    }
}

/// Creates `base/rel` (and its missing parents below `base`) without following a symlink
/// anywhere below `base`: each step is opened with `O_NOFOLLOW` relative to the one before,
/// so a directory swapped for a symlink by whoever can write there (a pack's own app, in its
/// data) cannot send the creation elsewhere on the host. An existing path with a symlink on
/// it is an error too.
pub fn ensure_dir_beneath(base: &Path, rel: &Path, mode: u32) -> io::Result<()> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    use std::path::Component;
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_PATH;
    let mut dir = std::fs::File::open(base)?.into();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            ));
        };
        let next: std::os::fd::OwnedFd = match openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => {
                match mkdirat(&dir, name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                openat(&dir, name, flags, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        dir = next;
    }
    Ok(())
}

/// Opens the directory `name` in `dir`, making it (with `mode`) if it is missing, without
/// following a symlink: one there, put by whoever can write `dir`, is an error. Then gives it
/// `mode` and, with `owner`, that uid and gid, through the descriptor: a swap of the name at
/// any moment can make this fail, never make it act on something else.
pub fn owned_dir_at(
    dir: &impl std::os::fd::AsFd,
    name: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, fchmod, mkdirat};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open = || match openat(dir, name, flags, Mode::empty()) {
        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{name} is a symlink or not a directory; packd never follows symlinks where users write (remove it)"
            ),
        )),
        other => other.map_err(io::Error::from),
    };
    let fd = match open() {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            match mkdirat(dir, name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            open()?
        }
        other => other?,
    };
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))?;
    }
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(fd)
}

#[cfg(test)]
mod beneath_tests {
    use super::*;

    #[test]
    fn owned_dirs_are_made_and_given_through_their_descriptor_never_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::File::open(tmp.path()).unwrap();
        let d = owned_dir_at(&base, "d", 0o700, None).unwrap();
        drop(d);
        assert_eq!(
            fs::metadata(tmp.path().join("d"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o700
        );
        // A symlink in its place (to a file whose mode must not change) is refused.
        let victim = tmp.path().join("victim");
        fs::write(&victim, "").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("l")).unwrap();
        let err = owned_dir_at(&base, "l", 0o700, None).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o7777,
            0o644
        );
    }

    #[test]
    fn dirs_are_made_beneath_and_symlinks_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(base.join("p/x1")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        ensure_dir_beneath(&base, Path::new("p/x1/shared/deep"), 0o755).unwrap();
        assert!(base.join("p/x1/shared/deep").is_dir());
        // An existing directory is fine.
        ensure_dir_beneath(&base, Path::new("p/x1/shared"), 0o755).unwrap();
        // A symlink on the way is refused, and nothing appears where it points.
        std::os::unix::fs::symlink(&outside, base.join("p/x1/link")).unwrap();
        assert!(ensure_dir_beneath(&base, Path::new("p/x1/link/made"), 0o755).is_err());
        assert!(!outside.join("made").exists());
        assert!(ensure_dir_beneath(&base, Path::new("p/../escape"), 0o755).is_err());
    }
}
