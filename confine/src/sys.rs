//! The syscall seam: every file-system change the sandbox builder makes goes through [`Sys`], so
//! the mount plan can be tested with a recording fake and no root (as youki does).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// What is at a path, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

pub trait Sys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount_detach(&self, target: &Path) -> io::Result<()>;
    /// Bind-mounts `source` on `target` without following a symlink at `source` (a data
    /// directory swapped for a symlink must not redirect the mount: Flatpak CVE-2024-42472).
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Creates one directory; an existing directory is fine.
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty file (a mount point for a device); an existing file is fine.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    fn symlink(&self, points_to: &Path, at: &Path) -> io::Result<()>;
    /// `None` when nothing is there.
    fn lstat(&self, path: &Path) -> io::Result<Option<Kind>>;
    /// Makes `new_root` the root of the mount namespace and detaches the old one.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    /// Bind-mounts the directory `base/rel` on `target`, `rel` resolved beneath `base` with no
    /// symlink followed anywhere, and bound from the descriptor that resolution gave.
    fn bind_beneath(&self, base: &Path, rel: &Path, target: &Path) -> io::Result<()>;
    /// A detached copy of the mount at `source` (`open_tree(OPEN_TREE_CLONE)`, not following
    /// a symlink there), and what `source` is, to attach in another mount namespace later.
    fn clone_tree(&self, source: &Path) -> io::Result<(std::os::fd::OwnedFd, Kind)>;
    /// Attaches a tree from [`Sys::clone_tree`] at `target` (`move_mount`).
    fn attach_tree(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()>;
}

/// The real kernel.
pub struct LinuxSys;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Bind-mounts what the open descriptor `fd` names on `target` (through its /proc/self/fd
/// link, which names that very file, whatever its path has become since).
fn bind_fd(fd: &std::os::fd::OwnedFd, target: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let via = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    nix::mount::mount(
        Some(&via),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

impl Sys for LinuxSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn umount_detach(&self, target: &Path) -> io::Result<()> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(io::Error::from)
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let c = cpath(source)?;
        // SAFETY: valid path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // fstat of the descriptor itself: no window between the check and the mount.
        let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink; bind sources must not be",
                    source.display()
                ),
            ));
        }
        bind_fd(&fd, target)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let c = cpath(path)?;
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::mkdir(c.as_ptr(), mode) } == 0 {
            // mkdir honours the umask; set the exact mode (sticky bits included).
            // SAFETY: as above.
            if unsafe { libc::chmod(c.as_ptr(), mode) } != 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) && self.lstat(path)? == Some(Kind::Dir) {
            return Ok(());
        }
        Err(err)
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        let c = cpath(path)?;
        // SAFETY: `c` is a valid path; the returned fd is closed right away.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened by us.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlink(&self, points_to: &Path, at: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(points_to, at)
    }

    fn lstat(&self, path: &Path) -> io::Result<Option<Kind>> {
        match std::fs::symlink_metadata(path) {
            Ok(md) => {
                let ft = md.file_type();
                Ok(Some(if ft.is_dir() {
                    Kind::Dir
                } else if ft.is_file() {
                    Kind::File
                } else if ft.is_symlink() {
                    Kind::Symlink
                } else {
                    Kind::Other
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn bind_beneath(&self, base: &Path, rel: &Path, target: &Path) -> io::Result<()> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let dir = std::fs::File::open(base)?;
        let c = cpath(rel)?;
        // SAFETY: open_how is plain data; all-zero is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        // SAFETY: openat2 with a valid directory, path and open_how of the right size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        bind_fd(&fd, target)
    }

    fn clone_tree(&self, source: &Path) -> io::Result<(std::os::fd::OwnedFd, Kind)> {
        use std::os::fd::FromRawFd;
        let c = cpath(source)?;
        // SAFETY: open_tree with a valid path; the descriptor is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_SYMLINK_NOFOLLOW as u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink; bind sources must not be",
                        source.display()
                    ),
                ));
            }
            _ => Kind::Other,
        };
        Ok((fd, kind))
    }

    fn attach_tree(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let c = cpath(target)?;
        // SAFETY: move_mount of a detached tree we hold onto a valid path.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root on top of the new one at "/"; detaching it
        // then leaves only the new root, with no need for a put_old directory in a read-only
        // base.
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_refuses_a_symlinked_source() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "needs root under CI=true"
            );
            eprintln!("skipping bind_refuses_a_symlinked_source: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        let target = dir.path().join("target");
        std::fs::create_dir(&real).unwrap();
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = LinuxSys.bind(&link, &target).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        // A real directory binds (and is unmounted again).
        LinuxSys.bind(&real, &target).unwrap();
        LinuxSys.umount_detach(&target).unwrap();
    }
}

#[cfg(test)]
pub mod fake {
    //! A recording fake that keeps a tiny in-memory file tree.

    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    #[derive(Default)]
    pub struct RecordingSys {
        pub calls: RefCell<Vec<String>>,
        pub tree: RefCell<BTreeMap<PathBuf, Kind>>,
    }

    impl RecordingSys {
        pub fn with_dirs(dirs: &[&str]) -> Self {
            let sys = Self::default();
            for d in dirs {
                sys.tree.borrow_mut().insert(PathBuf::from(d), Kind::Dir);
            }
            sys
        }

        fn record(&self, s: String) {
            self.calls.borrow_mut().push(s);
        }
    }

    impl Sys for RecordingSys {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> io::Result<()> {
            let flags = format!("{flags:?}");
            let flags = flags
                .strip_prefix("MsFlags(")
                .and_then(|f| f.strip_suffix(')'))
                .unwrap_or(&flags);
            self.record(format!(
                "mount {} {} {} {flags} {}",
                source
                    .map(|s| s.display().to_string())
                    .unwrap_or("-".into()),
                target.display(),
                fstype.unwrap_or("-"),
                data.unwrap_or("-")
            ));
            Ok(())
        }
        fn umount_detach(&self, target: &Path) -> io::Result<()> {
            self.record(format!("umount {}", target.display()));
            Ok(())
        }
        fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
            self.record(format!("bind {} {}", source.display(), target.display()));
            Ok(())
        }
        fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
            self.record(format!("mkdir {} {:o}", path.display(), mode));
            self.tree.borrow_mut().insert(path.to_path_buf(), Kind::Dir);
            Ok(())
        }
        fn create_file(&self, path: &Path) -> io::Result<()> {
            self.record(format!("touch {}", path.display()));
            self.tree
                .borrow_mut()
                .insert(path.to_path_buf(), Kind::File);
            Ok(())
        }
        fn symlink(&self, points_to: &Path, at: &Path) -> io::Result<()> {
            self.record(format!(
                "symlink {} -> {}",
                at.display(),
                points_to.display()
            ));
            self.tree
                .borrow_mut()
                .insert(at.to_path_buf(), Kind::Symlink);
            Ok(())
        }
        fn lstat(&self, path: &Path) -> io::Result<Option<Kind>> {
            Ok(self.tree.borrow().get(path).copied())
        }
        fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
            self.record(format!("pivot_root {}", new_root.display()));
            Ok(())
        }
        fn bind_beneath(&self, base: &Path, rel: &Path, target: &Path) -> io::Result<()> {
            self.record(format!(
                "bind_beneath {} {} {}",
                base.display(),
                rel.display(),
                target.display()
            ));
            Ok(())
        }
        fn clone_tree(&self, source: &Path) -> io::Result<(std::os::fd::OwnedFd, Kind)> {
            self.record(format!("clone_tree {}", source.display()));
            let kind = self.lstat(source)?.unwrap_or(Kind::Other);
            Ok((std::fs::File::open("/dev/null")?.into(), kind))
        }
        fn attach_tree(&self, _: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
            self.record(format!("attach_tree {}", target.display()));
            Ok(())
        }
    }
}
