//! Building the sandbox's file system: the base as `/`, then each [`MountOp`] in order, then
//! `pivot_root`. Runs inside the new mount namespace, so nothing here is visible on the host.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::{Step, StepError};
use crate::spec::MountOp;
use crate::sys::{Kind, Sys};

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// Makes every mount of the new namespace private, so nothing done in it propagates back to
/// the host. Needs no spec: a prepared sandbox does it before its launch arrives.
pub fn make_private(sys: &dyn Sys) -> Result<(), StepError> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(|e| StepError::io(Step::PrepareRoot, e))
}

/// Binds the new root onto itself read-only (pivot_root needs a mount point). Call after
/// [`make_private`].
pub fn prepare_root(sys: &dyn Sys, root: &Path) -> Result<(), StepError> {
    let step = |e: io::Error| StepError::io(Step::PrepareRoot, e);
    sys.mount(Some(root), root, None, MsFlags::MS_BIND, None)
        .map_err(step)?;
    sys.mount(
        None,
        root,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | NOSUID_NODEV,
        None,
    )
    .map_err(step)
}

/// Applies the mount operations, each reported as its own step on failure.
pub fn apply(sys: &dyn Sys, root: &Path, ops: &[MountOp]) -> Result<(), StepError> {
    for op in ops {
        apply_one(sys, root, op).map_err(|e| StepError::io(Step::Mount(op.describe()), e))?;
    }
    Ok(())
}

/// The host side of a launch's own binds: their sources are out of reach once the sandbox's
/// file system is entered (a template is joined, or the root pivoted), so each is cloned as a
/// detached tree before, in op order (`None` for the other ops).
pub fn detach_binds(
    sys: &dyn Sys,
    ops: &[MountOp],
) -> Result<Vec<Option<(OwnedFd, Kind)>>, StepError> {
    ops.iter()
        .map(|op| match op {
            MountOp::Bind { source, .. } => sys
                .clone_tree(source)
                .map(Some)
                .map_err(|e| StepError::io(Step::Mount(op.describe()), e)),
            _ => Ok(None),
        })
        .collect()
}

/// Applies a launch's own mounts inside the sandbox (root `/`), attaching the binds
/// [`detach_binds`] cloned.
pub fn apply_launch(
    sys: &dyn Sys,
    ops: &[MountOp],
    trees: Vec<Option<(OwnedFd, Kind)>>,
) -> Result<(), StepError> {
    let root = Path::new("/");
    for (op, tree) in ops.iter().zip(trees) {
        let done = match (op, tree) {
            (
                MountOp::Bind {
                    target, readonly, ..
                },
                Some((tree, kind)),
            ) => attach(sys, root, target, tree.as_fd(), kind, *readonly),
            (op, _) => apply_one(sys, root, op),
        };
        done.map_err(|e| StepError::io(Step::Mount(op.describe()), e))?;
    }
    Ok(())
}

/// A cloned tree attached at `target` (a file, or a socket, onto a file made when missing;
/// a directory onto a directory), then `nosuid,nodev` (and `ro`) as every bind.
fn attach(
    sys: &dyn Sys,
    root: &Path,
    target: &Path,
    tree: BorrowedFd<'_>,
    kind: Kind,
    readonly: bool,
) -> io::Result<()> {
    let at = if matches!(kind, Kind::File | Kind::Other) {
        let at = resolve_new(sys, root, target)?;
        if sys.lstat(&at)?.is_none() {
            sys.create_file(&at)?;
        }
        at
    } else {
        resolve_dir(sys, root, target)?
    };
    sys.attach_tree(tree, &at)?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | NOSUID_NODEV;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    sys.mount(None, &at, None, flags, None)
}

pub fn pivot(sys: &dyn Sys, root: &Path) -> Result<(), StepError> {
    sys.pivot_root(root)
        .map_err(|e| StepError::io(Step::PivotRoot, e))
}

fn apply_one(sys: &dyn Sys, root: &Path, op: &MountOp) -> io::Result<()> {
    match op {
        MountOp::Tmpfs {
            target,
            mode,
            size,
            noexec,
        } => {
            let at = resolve_dir(sys, root, target)?;
            let mut flags = NOSUID_NODEV;
            if *noexec {
                flags |= MsFlags::MS_NOEXEC;
            }
            let mut data = format!("mode={mode:o}");
            if let Some(size) = size {
                data.push_str(&format!(",size={size}"));
            }
            sys.mount(
                Some(Path::new("tmpfs")),
                &at,
                Some("tmpfs"),
                flags,
                Some(&data),
            )
        }
        MountOp::Bind {
            source,
            target,
            readonly,
        } => {
            // A file or a socket is bound onto a file (made on a writable scaffold when
            // missing); anything else onto a directory.
            let at = if matches!(sys.lstat(source)?, Some(Kind::File | Kind::Other)) {
                let at = resolve_new(sys, root, target)?;
                if sys.lstat(&at)?.is_none() {
                    sys.create_file(&at)?;
                }
                at
            } else {
                resolve_dir(sys, root, target)?
            };
            bind(sys, source, &at, *readonly)
        }
        MountOp::BindBeneath {
            base,
            rel,
            target,
            readonly,
        } => {
            let at = resolve_dir(sys, root, target)?;
            sys.bind_beneath(base, rel, &at)?;
            let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | NOSUID_NODEV;
            if *readonly {
                flags |= MsFlags::MS_RDONLY;
            }
            sys.mount(None, &at, None, flags, None)
        }
        MountOp::Device { source, target } => {
            let at = resolve_new(sys, root, target)?;
            if sys.lstat(&at)?.is_none() {
                sys.create_file(&at)?;
            }
            sys.bind(source, &at)?;
            // Device nodes need dev; they never need suid or exec.
            sys.mount(
                None,
                &at,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                None,
            )
        }
        MountOp::Proc { target } => {
            let at = resolve_dir(sys, root, target)?;
            sys.mount(
                Some(Path::new("proc")),
                &at,
                Some("proc"),
                NOSUID_NODEV | MsFlags::MS_NOEXEC,
                None,
            )
        }
        MountOp::Sysfs { target } => {
            let at = resolve_dir(sys, root, target)?;
            sys.mount(
                Some(Path::new("sysfs")),
                &at,
                Some("sysfs"),
                NOSUID_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                None,
            )
        }
        MountOp::Devpts { target } => {
            let at = resolve_dir(sys, root, target)?;
            sys.mount(
                Some(Path::new("devpts")),
                &at,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            )
        }
        MountOp::Mkdir { target, mode } => {
            let mut at = root.to_path_buf();
            for part in components(target)? {
                at.push(part);
                match sys.lstat(&at)? {
                    Some(Kind::Dir) => {}
                    None => sys.mkdir(&at, *mode)?,
                    Some(_) => return Err(not_a_dir(&at)),
                }
            }
            Ok(())
        }
        MountOp::Symlink { target, points_to } => {
            let at = resolve_new(sys, root, target)?;
            sys.symlink(points_to, &at)
        }
        MountOp::RemountReadonly { target } => {
            let at = resolve_dir(sys, root, target)?;
            remount_readonly(sys, &at)
        }
        MountOp::ReadonlySelf { target } => {
            let Some(at) = existing(sys, root, target)? else {
                return Ok(());
            };
            sys.mount(
                Some(&at),
                &at,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            remount_readonly(sys, &at)
        }
        MountOp::MaskFile { target } => {
            let Some(at) = existing(sys, root, target)? else {
                return Ok(());
            };
            sys.bind(Path::new("/dev/null"), &at)?;
            remount_readonly(sys, &at)
        }
        MountOp::MaskDir { target } => {
            let Some(at) = existing(sys, root, target)? else {
                return Ok(());
            };
            sys.mount(
                Some(Path::new("tmpfs")),
                &at,
                Some("tmpfs"),
                NOSUID_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                Some("mode=555,size=0"),
            )
        }
    }
}

fn remount_readonly(sys: &dyn Sys, at: &Path) -> io::Result<()> {
    sys.mount(
        None,
        at,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | NOSUID_NODEV,
        None,
    )
}

/// The path of `target` under `root` when something (not a symlink) is there.
fn existing(sys: &dyn Sys, root: &Path, target: &Path) -> io::Result<Option<PathBuf>> {
    let at = match resolve_parent(sys, root, target) {
        Ok(at) => at,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match sys.lstat(&at)? {
        None => Ok(None),
        Some(Kind::Symlink) => Err(symlink_refused(&at)),
        Some(_) => Ok(Some(at)),
    }
}

fn bind(sys: &dyn Sys, source: &Path, at: &Path, readonly: bool) -> io::Result<()> {
    sys.bind(source, at)?;
    // Bind mounts ignore flags until remounted; nosuid/nodev always, ro when asked.
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | NOSUID_NODEV;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    sys.mount(None, at, None, flags, None)
}

/// The normal components of an absolute sandbox path; `..`, `.` and relative paths are refused
/// so no target can climb out of the new root.
fn components(target: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    let mut parts = Vec::new();
    for (i, c) in target.components().enumerate() {
        match c {
            Component::RootDir if i == 0 => {}
            Component::Normal(p) => parts.push(p),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is not a clean absolute path inside the sandbox",
                        target.display()
                    ),
                ));
            }
        }
    }
    if !target.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", target.display()),
        ));
    }
    Ok(parts)
}

/// Joins `target` under `root`, refusing a symlink anywhere on the way: a base or a data
/// directory must not be able to redirect a mount (Flatpak CVE-2024-42472's lesson).
fn resolve_parent(sys: &dyn Sys, root: &Path, target: &Path) -> io::Result<PathBuf> {
    let parts = components(target)?;
    let mut at = root.to_path_buf();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match sys.lstat(&at)? {
            Some(Kind::Dir) => {}
            Some(Kind::Symlink) => return Err(symlink_refused(&at)),
            Some(_) => return Err(not_a_dir(&at)),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} does not exist", at.display()),
                ));
            }
        }
    }
    if let Some(last) = parts.last() {
        at.push(last);
    }
    Ok(at)
}

/// An existing directory (a mount point), not a symlink.
fn resolve_dir(sys: &dyn Sys, root: &Path, target: &Path) -> io::Result<PathBuf> {
    let at = resolve_parent(sys, root, target)?;
    match sys.lstat(&at)? {
        Some(Kind::Dir) => Ok(at),
        Some(Kind::Symlink) => Err(symlink_refused(&at)),
        Some(_) => Err(not_a_dir(&at)),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "mount point {} does not exist in the base",
                target.display()
            ),
        )),
    }
}

/// A path whose parent exists; the last component may be absent or a plain file.
fn resolve_new(sys: &dyn Sys, root: &Path, target: &Path) -> io::Result<PathBuf> {
    let at = resolve_parent(sys, root, target)?;
    match sys.lstat(&at)? {
        Some(Kind::Symlink) | Some(Kind::Dir) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", at.display()),
        )),
        _ => Ok(at),
    }
}

fn symlink_refused(at: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symlink; mount targets must be real directories",
            at.display()
        ),
    )
}

fn not_a_dir(at: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a directory", at.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::RecordingSys;

    #[test]
    fn plan_is_applied_in_order_with_hardened_flags() {
        let sys = RecordingSys::with_dirs(&["/r", "/r/pack", "/r/dev", "/r/proc"]);
        let ops = vec![
            MountOp::Tmpfs {
                target: "/pack".into(),
                mode: 0o755,
                size: Some(1 << 20),
                noexec: false,
            },
            MountOp::Mkdir {
                target: "/pack/hello/x1".into(),
                mode: 0o755,
            },
            MountOp::Bind {
                source: "/host/pack/hello/x1".into(),
                target: "/pack/hello/x1".into(),
                readonly: true,
            },
            MountOp::Symlink {
                target: "/pack/hello/current".into(),
                points_to: "x1".into(),
            },
            MountOp::RemountReadonly {
                target: "/pack".into(),
            },
            MountOp::Device {
                source: "/dev/null".into(),
                target: "/dev/null".into(),
            },
            MountOp::Proc {
                target: "/proc".into(),
            },
        ];
        make_private(&sys).unwrap();
        prepare_root(&sys, Path::new("/r")).unwrap();
        apply(&sys, Path::new("/r"), &ops).unwrap();
        pivot(&sys, Path::new("/r")).unwrap();
        let calls = sys.calls.borrow();
        let expected = [
            "mount - / - MS_REC | MS_PRIVATE -",
            "mount /r /r - MS_BIND -",
            "mount - /r - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND -",
            "mount tmpfs /r/pack tmpfs MS_NOSUID | MS_NODEV mode=755,size=1048576",
            "mkdir /r/pack/hello 755",
            "mkdir /r/pack/hello/x1 755",
            "bind /host/pack/hello/x1 /r/pack/hello/x1",
            "mount - /r/pack/hello/x1 - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND -",
            "symlink /r/pack/hello/current -> x1",
            "mount - /r/pack - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND -",
            "touch /r/dev/null",
            "bind /dev/null /r/dev/null",
            "mount - /r/dev/null - MS_NOSUID | MS_NOEXEC | MS_REMOUNT | MS_BIND -",
            "mount proc /r/proc proc MS_NOSUID | MS_NODEV | MS_NOEXEC -",
            "pivot_root /r",
        ];
        assert_eq!(calls.as_slice(), expected);
    }

    #[test]
    fn launch_binds_are_cloned_on_the_host_and_attached_inside() {
        let sys = RecordingSys::with_dirs(&["/", "/run"]);
        sys.tree
            .borrow_mut()
            .insert("/host/api.socket".into(), Kind::Other);
        let ops = vec![
            MountOp::Tmpfs {
                target: "/run".into(),
                mode: 0o755,
                size: None,
                noexec: false,
            },
            MountOp::Bind {
                source: "/host/api.socket".into(),
                target: "/run/packd.socket".into(),
                readonly: false,
            },
        ];
        let trees = detach_binds(&sys, &ops).unwrap();
        assert!(trees[0].is_none() && trees[1].is_some());
        apply_launch(&sys, &ops, trees).unwrap();
        let calls = sys.calls.borrow();
        let at = |c: &str| calls.iter().position(|x| x.starts_with(c)).unwrap();
        // Cloned before anything is mounted; a socket goes onto a file made for it.
        assert_eq!(at("clone_tree /host/api.socket"), 0);
        assert!(at("mount tmpfs /run") < at("touch /run/packd.socket"));
        assert!(at("touch /run/packd.socket") < at("attach_tree /run/packd.socket"));
        assert!(
            calls.last().unwrap().contains("MS_NOSUID | MS_NODEV"),
            "{calls:?}"
        );
    }

    #[test]
    fn binds_beneath_resolve_their_source_without_symlinks_and_are_hardened() {
        let sys = RecordingSys::with_dirs(&["/r", "/r/in"]);
        let op = MountOp::BindBeneath {
            base: "/host/var/pack".into(),
            rel: "prov/common/out".into(),
            target: "/in".into(),
            readonly: true,
        };
        apply(&sys, Path::new("/r"), &[op]).unwrap();
        let calls = sys.calls.borrow();
        assert_eq!(
            calls[0],
            "bind_beneath /host/var/pack prov/common/out /r/in"
        );
        assert!(
            calls[1].contains("MS_RDONLY") && calls[1].contains("MS_NOSUID"),
            "{calls:?}"
        );
    }

    #[test]
    fn symlinked_mount_points_are_refused() {
        let sys = RecordingSys::with_dirs(&["/r"]);
        sys.tree.borrow_mut().insert("/r/tmp".into(), Kind::Symlink);
        let op = MountOp::Tmpfs {
            target: "/tmp".into(),
            mode: 0o1777,
            size: None,
            noexec: false,
        };
        let err = apply(&sys, Path::new("/r"), &[op]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sandbox setup failed at step \"mount: tmpfs /tmp\": /r/tmp is a symlink; mount targets must be real directories"
        );
        // A symlink in the middle of a path is refused too.
        sys.tree.borrow_mut().insert("/r/var".into(), Kind::Symlink);
        let op = MountOp::Mkdir {
            target: "/var/pack".into(),
            mode: 0o755,
        };
        assert!(apply(&sys, Path::new("/r"), &[op]).is_err());
        assert!(sys.calls.borrow().is_empty(), "nothing was mounted");
    }

    #[test]
    fn targets_cannot_climb_out() {
        let sys = RecordingSys::with_dirs(&["/r", "/r/a"]);
        for bad in ["/a/../../etc", "relative", "/.."] {
            let op = MountOp::Proc { target: bad.into() };
            let err = apply(&sys, Path::new("/r"), &[op]).unwrap_err();
            assert!(
                err.to_string().contains("is not a clean absolute path")
                    || err.to_string().contains("is not an absolute path"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn missing_mount_point_names_it() {
        let sys = RecordingSys::with_dirs(&["/r"]);
        let err = apply(
            &sys,
            Path::new("/r"),
            &[MountOp::Sysfs {
                target: "/sys".into(),
            }],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sandbox setup failed at step \"mount: sysfs /sys\": mount point /sys does not exist in the base"
        );
    }
}
