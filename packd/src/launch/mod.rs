//! What goes into an app's sandbox (policy): its mounts, environment and command, as a
//! [`SandboxSpec`] for the `confine` crate to execute. Pure functions of the state; the only
//! I/O is [`prepare_private_tmp`].

mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use confine::{MountOp, Namespaces, Process, SandboxSpec};
use packfmt::meta::{validate_app_name, validate_pack_name};
use packfmt::{PackMeta, Revision};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::paths::Paths;
use crate::state::State;

pub use env::{expand, split_command};

/// `NAME` or `NAME.APP`, as `pack run` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRef {
    pub pack: String,
    pub app: Option<String>,
}

impl FromStr for AppRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (pack, app) = match s.split_once('.') {
            Some((p, a)) => (p, Some(a)),
            None => (s, None),
        };
        validate_pack_name(pack).map_err(Error::bad)?;
        if let Some(app) = app {
            validate_app_name(app).map_err(Error::bad)?;
        }
        Ok(AppRef {
            pack: pack.to_string(),
            app: app.map(str::to_string),
        })
    }
}

impl fmt::Display for AppRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.app {
            Some(app) => write!(f, "{}.{app}", self.pack),
            None => f.write_str(&self.pack),
        }
    }
}

/// Who runs the app, and with what.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub args: Vec<String>,
    /// The caller's environment; unsafe and host-specific variables are dropped.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The resolved app: which revision of which pack, on which base.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub app: String,
    pub revision: Revision,
    pub meta: PackMeta,
    pub base: String,
    pub base_revision: Revision,
}

/// Finds the app, its current revision and its base's, or says clearly what is missing.
pub fn resolve(state: &State, target: &AppRef) -> Result<Resolved> {
    let pack = state
        .packs
        .get(&target.pack)
        .filter(|p| p.active)
        .ok_or_else(|| Error::pack_not_found(&target.pack))?;
    let rev = pack
        .current_revision()
        .ok_or_else(|| Error::Internal(format!("pack {:?} has no current revision", pack.name)))?;
    let meta = &rev.meta;
    let app_name = target.app.clone().unwrap_or_else(|| target.pack.clone());
    if !meta.apps.contains_key(&app_name) {
        let apps: Vec<&str> = meta.apps.keys().map(String::as_str).collect();
        let hint = if apps.is_empty() {
            "it has no apps".to_string()
        } else {
            format!(
                "its apps are: {}",
                apps.iter()
                    .map(|a| AppRef {
                        pack: target.pack.clone(),
                        app: Some(a.to_string())
                    }
                    .to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(Error::NotFound {
            kind: "app-not-found",
            message: format!(
                "pack {:?} has no app named {app_name:?}; {hint}",
                target.pack
            ),
        });
    }
    let base = meta
        .base
        .clone()
        .ok_or_else(|| Error::Internal(format!("pack {:?} has apps but no base", target.pack)))?;
    let base_revision = state
        .packs
        .get(&base)
        .filter(|b| b.active)
        .map(|b| b.current)
        .ok_or_else(|| Error::NotFound {
            kind: "base-not-found",
            message: format!(
                "the base {base:?} of pack {:?} is not installed; install it first",
                target.pack
            ),
        })?;
    Ok(Resolved {
        name: target.pack.clone(),
        app: app_name,
        revision: rev.revision,
        meta: meta.clone(),
        base,
        base_revision,
    })
}

/// Creates `run/packd/tmp/NAME/tmp`, the pack's private `/tmp`: the parent is root-only so no
/// one can plant or swap it (snap-confine's CVE-2021-44731 lesson), the child is 1777.
pub fn prepare_private_tmp(paths: &Paths, name: &str) -> Result<PathBuf> {
    let parent = paths.private_tmp(name);
    fsutil::ensure_dir(&parent, 0o700).ctx("create", &parent)?;
    let tmp = parent.join("tmp");
    fsutil::ensure_dir(&tmp, 0o1777).ctx("create", &tmp)?;
    Ok(tmp)
}

/// The sandbox of one app run.
pub fn build_spec(
    paths: &Paths,
    r: &Resolved,
    inv: &Invocation,
    private_tmp: &Path,
    hostname: &str,
) -> Result<SandboxSpec> {
    let app = &r.meta.apps[&r.app];
    let env = env::environment(r, app, inv);
    let mut argv = env::command_argv(r, &app.command, &env)?;
    argv.extend(inv.args.iter().cloned());
    Ok(SandboxSpec {
        label: format!("pack.{}.{}", r.name, r.app),
        root: paths.mount_dir(&r.base, r.base_revision),
        mounts: mounts(paths, r, private_tmp),
        namespaces: Namespaces::default(),
        hostname: hostname.to_string(),
        process: Process {
            argv,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: inv.cwd.clone(),
            fallback_cwd: PathBuf::from("/"),
            uid: inv.uid,
            gid: inv.gid,
            groups: inv.groups.clone(),
        },
    })
}

/// The file system of the sandbox, on top of the base mounted read-only as `/`.
fn mounts(paths: &Paths, r: &Resolved, private_tmp: &Path) -> Vec<MountOp> {
    let name = &r.name;
    let rev = r.revision.to_string();
    let pack_dir = PathBuf::from(format!("/pack/{name}"));
    let data_dir = PathBuf::from(format!("/var/pack/{name}"));
    let mut ops = dev_mounts();
    ops.extend([
        MountOp::Proc {
            target: "/proc".into(),
        },
        MountOp::Sysfs {
            target: "/sys".into(),
        },
        MountOp::Bind {
            source: private_tmp.to_path_buf(),
            target: "/tmp".into(),
            readonly: false,
        },
        MountOp::Tmpfs {
            target: "/run".into(),
            mode: 0o755,
            size: Some(16 << 20),
            noexec: false,
        },
        // /pack holds only this pack, read-only.
        MountOp::Tmpfs {
            target: "/pack".into(),
            mode: 0o755,
            size: Some(64 << 10),
            noexec: false,
        },
        MountOp::Mkdir {
            target: pack_dir.join(&rev),
            mode: 0o755,
        },
        MountOp::Bind {
            source: paths.mount_dir(name, r.revision),
            target: pack_dir.join(&rev),
            readonly: true,
        },
        MountOp::Symlink {
            target: pack_dir.join("current"),
            points_to: rev.clone().into(),
        },
        MountOp::RemountReadonly {
            target: "/pack".into(),
        },
        // /var/pack holds only this pack's data, writable.
        MountOp::Tmpfs {
            target: "/var/pack".into(),
            mode: 0o755,
            size: Some(64 << 10),
            noexec: false,
        },
    ]);
    for (dir, source) in [
        (rev.clone(), paths.data_dir(name, r.revision)),
        ("common".to_string(), paths.common_dir(name)),
    ] {
        ops.push(MountOp::Mkdir {
            target: data_dir.join(&dir),
            mode: 0o755,
        });
        ops.push(MountOp::Bind {
            source,
            target: data_dir.join(&dir),
            readonly: false,
        });
    }
    ops.push(MountOp::Symlink {
        target: data_dir.join("current"),
        points_to: rev.into(),
    });
    ops.push(MountOp::RemountReadonly {
        target: "/var/pack".into(),
    });
    ops
}

/// A minimal `/dev`: the harmless character devices, a private devpts, shared memory, and the
/// usual symlinks; then read-only.
fn dev_mounts() -> Vec<MountOp> {
    let mut ops = vec![MountOp::Tmpfs {
        target: "/dev".into(),
        mode: 0o755,
        size: Some(64 << 10),
        noexec: true,
    }];
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        ops.push(MountOp::Device {
            source: PathBuf::from("/dev").join(dev),
            target: PathBuf::from("/dev").join(dev),
        });
    }
    ops.extend([
        MountOp::Mkdir {
            target: "/dev/pts".into(),
            mode: 0o755,
        },
        MountOp::Devpts {
            target: "/dev/pts".into(),
        },
        MountOp::Symlink {
            target: "/dev/ptmx".into(),
            points_to: "pts/ptmx".into(),
        },
        MountOp::Mkdir {
            target: "/dev/shm".into(),
            mode: 0o1777,
        },
        MountOp::Tmpfs {
            target: "/dev/shm".into(),
            mode: 0o1777,
            size: None,
            noexec: true,
        },
    ]);
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: PathBuf::from("/dev").join(link),
            points_to: to.into(),
        });
    }
    ops.push(MountOp::RemountReadonly {
        target: "/dev".into(),
    });
    ops
}

#[cfg(test)]
mod tests;
