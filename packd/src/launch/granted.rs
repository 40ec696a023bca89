//! What an app's connections grant, checked against the host and turned into sandbox parts:
//! mounts, device nodes and their cgroup rules, the invoking user's home entries.

use std::path::{Path, PathBuf};

use confine::MountOp;
use confine::cgroup::DeviceRule;
use interfaces::Grants;

use super::LaunchError;
use crate::error::IoContext;

type Result<T> = std::result::Result<T, LaunchError>;

/// Grants resolved for one launch.
#[derive(Debug, Clone, Default)]
pub struct Granted {
    pub grants: Grants,
    /// Device nodes, made while `/dev` is still writable.
    pub dev_mounts: Vec<MountOp>,
    /// After the sandbox's own mounts.
    pub mounts: Vec<MountOp>,
    pub devices: Vec<DeviceRule>,
    /// Paths inside that become writable (Landlock), beyond the grants' own.
    pub writable: Vec<PathBuf>,
}

/// Checks `grants` on the host (under `root`, with the base mounted at `base`) for user `uid`.
pub fn resolve(root: &Path, base: &Path, grants: Grants, uid: u32) -> Result<Granted> {
    let mut out = Granted::default();
    for d in &grants.devices {
        let md = std::fs::metadata(&d.host).map_err(|e| LaunchError::DeviceUnavailable {
            path: d.host.clone(),
            error: e.to_string(),
        })?;
        use std::os::unix::fs::FileTypeExt;
        use std::os::unix::fs::MetadataExt;
        if md.file_type().is_char_device() {
            let rdev = md.rdev();
            out.devices.push(DeviceRule {
                kind: 'c',
                major: Some(libc::major(rdev)),
                minor: Some(libc::minor(rdev)),
                access: "rw".into(),
            });
        } else if md.file_type().is_block_device() {
            return Err(LaunchError::BlockDevice(d.host.clone()));
        }
        out.dev_mounts.push(MountOp::Device {
            source: d.host.clone(),
            target: d.inside.clone(),
        });
    }
    for b in &grants.binds {
        // A content provider's directory under its data (`var/pack/PROVIDER/…`), which the
        // provider can write to: relative to `var/pack`, never through a symlink.
        let data = root.join("var/pack");
        let beneath = if b.create_source {
            let rel = b
                .source
                .strip_prefix(&data)
                .map_err(|_| LaunchError::ContentOutside(b.source.clone()))?;
            // Made empty when missing, like the data directories around it, so the consumer's
            // launch need not wait for the provider's app to make it; a symlink on the way is
            // refused, not followed (it could point the consumer's writable bind at the host).
            crate::fsutil::ensure_dir_beneath(&data, rel, 0o755).ctx("create", &b.source)?;
            Some(rel.to_path_buf())
        } else {
            None
        };
        let source_there = b.source.exists();
        let target_there = b.create_target
            || b.target.starts_with("/var/pack")
            || b.target.starts_with("/sys")
            || interfaces::grants::under(base, &b.target).exists();
        if !(source_there && target_there) {
            if b.optional {
                tracing::debug!(source = %b.source.display(), target = %b.target.display(), "granted path not on this system; skipped");
                continue;
            }
            let (what, path) = if source_there {
                ("the base has no", &b.target)
            } else {
                ("the host has no", &b.source)
            };
            return Err(LaunchError::GrantMissing {
                what,
                path: path.clone(),
            });
        }
        if b.create_target {
            out.mounts.push(MountOp::Mkdir {
                target: b.target.clone(),
                mode: 0o755,
            });
        }
        // The bind resolves the path again, in the sandbox's init: beneath `var/pack` with no
        // symlink followed there either, so a swap after the check above gains nothing.
        out.mounts.push(match beneath {
            Some(rel) => MountOp::BindBeneath {
                base: data,
                rel,
                target: b.target.clone(),
                readonly: b.readonly,
            },
            None => MountOp::Bind {
                source: b.source.clone(),
                target: b.target.clone(),
                readonly: b.readonly,
            },
        });
    }
    if grants.home {
        home(root, uid, &mut out)?;
    }
    out.grants = grants;
    Ok(out)
}

/// The home directory of `uid` from `ROOT/etc/passwd` (packd's root; `/etc/passwd` on a
/// device).
fn home_of(root: &Path, uid: u32) -> Option<PathBuf> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid)).then(|| PathBuf::from(f[5]))
    })
}

/// home: a scaffold at the user's home holding only its non-hidden entries, never `bin`
/// (CVE-2024-1724: an app must not plant what the user's shell runs).
fn home(root: &Path, uid: u32, out: &mut Granted) -> Result<()> {
    let Some(home) = home_of(root, uid) else {
        tracing::debug!(uid, "no home directory in passwd; home grants nothing");
        return Ok(());
    };
    // Only the usual places: a scaffold elsewhere could hide part of the base.
    let scaffold = if home == Path::new("/root") {
        home.clone()
    } else if home.parent() == Some(Path::new("/home")) {
        PathBuf::from("/home")
    } else {
        tracing::debug!(home = %home.display(), "home outside /home and /root; home grants nothing");
        return Ok(());
    };
    let host = interfaces::grants::under(root, &home);
    let entries = match std::fs::read_dir(&host) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("read", &host).map_err(Into::into),
    };
    out.mounts.push(MountOp::Tmpfs {
        target: scaffold.clone(),
        mode: 0o755,
        size: Some(64 << 10),
        noexec: true,
    });
    if scaffold != home {
        out.mounts.push(MountOp::Mkdir {
            target: home.clone(),
            mode: 0o755,
        });
    }
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && n != "bin")
        .collect();
    names.sort();
    for name in names {
        let inside = home.join(&name);
        if host.join(&name).is_dir() {
            out.mounts.push(MountOp::Mkdir {
                target: inside.clone(),
                mode: 0o755,
            });
        }
        out.mounts.push(MountOp::Bind {
            source: host.join(&name),
            target: inside.clone(),
            readonly: false,
        });
        out.writable.push(inside);
    }
    out.mounts
        .push(MountOp::RemountReadonly { target: scaffold });
    Ok(())
}
