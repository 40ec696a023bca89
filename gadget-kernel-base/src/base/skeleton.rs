//! What every base root filesystem must contain: the mount points a sandbox uses and minimal
//! account files.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Directories a sandbox mounts onto, with their modes. They must be real directories (never
/// symlinks): the sandbox refuses to mount through a symlink.
pub const MOUNT_POINTS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("mnt", 0o755),
    ("media", 0o755),
    ("pack", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/pack", 0o755),
    ("var/tmp", 0o1777),
];

/// The mount points packd needs of an installed base; `dirs` holds the directories the base
/// has (paths relative to its root). Returns the first one missing.
pub fn check_mount_points(dirs: &dyn Fn(&str) -> bool) -> Result<(), String> {
    for (dir, _) in MOUNT_POINTS {
        if !dirs(dir) {
            return Err(format!(
                "the base lacks the directory /{dir} that sandboxes mount onto; rebuild it with 'pack base build'"
            ));
        }
    }
    Ok(())
}

/// Creates the mount points and, unless present, minimal `/etc/passwd`, `/etc/group`,
/// `/etc/hosts` and `/etc/hostname`.
pub fn create(root: &Path) -> io::Result<()> {
    for (dir, mode) in MOUNT_POINTS {
        let path = root.join(dir);
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                // debootstrap makes /var/run a symlink, but none of ours: replace anything
                // that is not a directory.
                fs::remove_file(&path)?;
                fs::create_dir_all(&path)?;
            }
            Err(_) => fs::create_dir_all(&path)?,
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        (
            "etc/hosts",
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        ),
        ("etc/hostname", "localhost\n"),
    ];
    for (file, content) in files {
        let path = root.join(file);
        if fs::symlink_metadata(&path).is_err() {
            fs::write(&path, content)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_has_every_mount_point_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/run", dir.path().join("tmp")).unwrap();
        create(dir.path()).unwrap();
        for (d, mode) in MOUNT_POINTS {
            let md = fs::symlink_metadata(dir.path().join(d)).unwrap();
            assert!(md.is_dir(), "{d}");
            assert_eq!(md.permissions().mode() & 0o7777, *mode, "{d}");
        }
        let passwd = fs::read_to_string(dir.path().join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:"));
        check_mount_points(&|d| dir.path().join(d).is_dir()).unwrap();
    }

    #[test]
    fn missing_mount_point_is_named() {
        assert_eq!(
            check_mount_points(&|d| d != "var/pack").unwrap_err(),
            "the base lacks the directory /var/pack that sandboxes mount onto; rebuild it with 'pack base build'"
        );
    }
}
