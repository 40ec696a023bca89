//! A refresh's data: the new revision starts from a copy of the current revision's data
//! (`var/pack/NAME/OLD` to `NEW`, and every user's `users/UID/OLD`), never of `common`, which
//! both share. Undo removes the copies. A leftover target is set aside first and put back on
//! undo, so no data anyone wrote is lost.
//!
//! Copies are made with `cp -a` (as snapd does): owners, modes, times, hard links, symlinks
//! and extended attributes preserved. Each goes to a temporary name first and is renamed into
//! place, so a copy cut short by a crash is never taken for a finished one.

use std::path::{Path, PathBuf};
use std::process::Command;

use packfmt::Revision;

use super::PackError;
use crate::error::{IoContext, IoError};

type Result<T> = std::result::Result<T, PackError>;
use crate::fsutil;
use crate::paths::Paths;

/// The pairs (from, to) of a refresh of `name` from `old` to `new`: the revision's own data,
/// then each user's.
pub fn pairs(paths: &Paths, name: &str, old: Revision, new: Revision) -> Vec<(PathBuf, PathBuf)> {
    let mut out = vec![(paths.data_dir(name, old), paths.data_dir(name, new))];
    for dir in user_dirs(paths, name) {
        let from = dir.join(old.to_string());
        if from.is_dir() {
            out.push((from, dir.join(new.to_string())));
        }
    }
    out
}

/// Every data directory of revision `rev` of `name`: its own, then each user's that exists.
pub fn revision_dirs(paths: &Paths, name: &str, rev: Revision) -> Vec<PathBuf> {
    let mut out = vec![paths.data_dir(name, rev)];
    out.extend(
        user_dirs(paths, name)
            .into_iter()
            .map(|dir| dir.join(rev.to_string()))
            .filter(|d| d.is_dir()),
    );
    out
}

/// `var/pack/NAME/users/*`, sorted.
fn user_dirs(paths: &Paths, name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(paths.data_root(name).join("users"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Where a leftover target is kept during the refresh.
pub fn aside(target: &Path) -> PathBuf {
    with_suffix(target, ".packd-aside")
}

/// Copies `from` to `to`. `leftover` says whether `to` existed before the refresh (recorded by
/// the caller before anything moved, so a re-run after a crash knows what it found): a
/// leftover is set aside first. Each step is skipped when a previous run finished it.
pub fn copy(from: &Path, to: &Path, leftover: bool) -> Result<()> {
    let keep = aside(to);
    if leftover && !keep.exists() {
        std::fs::rename(to, &keep).ctx("set aside", to)?;
    }
    if to.exists() {
        // Renamed into place by an earlier run: finished.
        return Ok(());
    }
    let tmp = with_suffix(to, ".packd-copy");
    fsutil::remove_tree_if_exists(&tmp).ctx("remove", &tmp)?;
    let out = Command::new("cp")
        .arg("-a")
        .arg("--no-target-directory")
        .arg(from)
        .arg(&tmp)
        .output()
        .map_err(|e| IoError::new(format!("cannot run cp to copy {}", from.display()), e))?;
    if !out.status.success() {
        let _ = fsutil::remove_tree_if_exists(&tmp);
        return Err(PackError::Copy {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    std::fs::rename(&tmp, to).ctx("move the copy to", to)?;
    if let Some(parent) = to.parent() {
        fsutil::sync_dir(parent).ctx("sync", parent)?;
    }
    Ok(())
}

/// Removes the copy at `to` (and a half-made one), and puts back the leftover set aside. A
/// leftover not set aside yet (a crash came first) is left where it is.
pub fn uncopy(to: &Path, leftover: bool) -> Result<()> {
    let tmp = with_suffix(to, ".packd-copy");
    fsutil::remove_tree_if_exists(&tmp).ctx("remove", &tmp)?;
    let keep = aside(to);
    if !leftover {
        fsutil::remove_tree_if_exists(to).ctx("remove", to)?;
    } else if keep.exists() {
        fsutil::remove_tree_if_exists(to).ctx("remove", to)?;
        std::fs::rename(&keep, to).ctx("put back", to)?;
    }
    Ok(())
}

/// After a successful refresh: what was set aside is no longer needed.
pub fn forget_aside(to: &Path) -> Result<()> {
    let keep = aside(to);
    Ok(fsutil::remove_tree_if_exists(&keep).ctx("remove", &keep)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_copy_keeps_modes_and_links_and_undo_puts_a_leftover_back() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("x1");
        let to = tmp.path().join("x2");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/file"), "data").unwrap();
        std::fs::set_permissions(
            from.join("sub/file"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/file", from.join("link")).unwrap();
        // A leftover target with someone's data in it.
        std::fs::create_dir(&to).unwrap();
        std::fs::write(to.join("precious"), "keep me").unwrap();

        copy(&from, &to, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(aside(&to).join("precious")).unwrap(),
            "keep me"
        );
        assert_eq!(
            std::fs::read_to_string(to.join("sub/file")).unwrap(),
            "data"
        );
        assert_eq!(
            std::fs::metadata(to.join("sub/file")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("sub/file")
        );
        // A re-run (after a crash) changes nothing.
        copy(&from, &to, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("sub/file")).unwrap(),
            "data"
        );
        // Undo: the copy goes, the leftover comes back.
        uncopy(&to, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("precious")).unwrap(),
            "keep me"
        );
        assert!(!aside(&to).exists());
        // The source is untouched throughout.
        assert_eq!(
            std::fs::read_to_string(from.join("sub/file")).unwrap(),
            "data"
        );
    }
}
