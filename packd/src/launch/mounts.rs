//! The sandbox's file system, on top of the base mounted read-only as `/`.

use std::path::{Path, PathBuf};

use confine::MountOp;

use super::Resolved;
use crate::paths::Paths;

/// The sandbox's mounts, in two parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The same for every launch of this app revision by this user: built once into a mount
    /// namespace that later launches copy (see `confine`'s mount templates).
    pub shared: Vec<MountOp>,
    /// Made fresh for each launch, after the shared part: what belongs to the launch's own pid
    /// and network namespaces (`/proc`, `/sys`) or must not outlive it (`/run`, `/dev/shm`,
    /// the ptys).
    pub per_launch: Vec<MountOp>,
}

/// Everything but the base: `/dev`, `/proc` (hardened), `/sys`, `/tmp`, `/run`, and `/pack`
/// and `/var/pack` holding only this pack (read-only scaffolds once populated). `user` is the
/// caller's uid when it gets per-user data directories.
pub fn plan(paths: &Paths, r: &Resolved, private_tmp: &Path, user: Option<u32>) -> Plan {
    let name = &r.name;
    let rev = r.revision.to_string();
    let pack_dir = PathBuf::from(format!("/pack/{name}"));
    let data_dir = PathBuf::from(format!("/var/pack/{name}"));
    let mut ops = dev();
    ops.extend([
        MountOp::Bind {
            source: private_tmp.to_path_buf(),
            target: "/tmp".into(),
            readonly: false,
        },
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
        MountOp::Tmpfs {
            target: "/var/pack".into(),
            mode: 0o755,
            size: Some(64 << 10),
            noexec: false,
        },
    ]);
    let mut data = vec![
        (data_dir.join(&rev), paths.data_dir(name, r.revision)),
        (data_dir.join("common"), paths.common_dir(name)),
    ];
    if let Some(uid) = user {
        for (inside, host) in super::spec::user_dirs(paths, r, uid) {
            data.push((inside, host));
        }
    }
    for (inside, host) in data {
        ops.push(MountOp::Mkdir {
            target: inside.clone(),
            mode: 0o755,
        });
        ops.push(MountOp::Bind {
            source: host,
            target: inside,
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
    let mut per_launch = vec![
        MountOp::Devpts {
            target: "/dev/pts".into(),
        },
        MountOp::Tmpfs {
            target: "/dev/shm".into(),
            mode: 0o1777,
            size: None,
            noexec: true,
        },
        MountOp::Tmpfs {
            target: "/run".into(),
            mode: 0o755,
            size: Some(16 << 20),
            noexec: false,
        },
    ];
    per_launch.extend(proc());
    ops.extend(sys());
    Plan {
        shared: ops,
        per_launch,
    }
}

/// A minimal `/dev`: the harmless character devices, mount points for a private devpts and
/// shared memory (mounted per launch), and the usual symlinks; then read-only.
fn dev() -> Vec<MountOp> {
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
        MountOp::Symlink {
            target: "/dev/ptmx".into(),
            points_to: "pts/ptmx".into(),
        },
        MountOp::Mkdir {
            target: "/dev/shm".into(),
            mode: 0o1777,
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

/// A new `/proc` with the kernel's knobs read-only and its sensitive files hidden (as runc
/// does).
fn proc() -> Vec<MountOp> {
    let mut ops = vec![MountOp::Proc {
        target: "/proc".into(),
    }];
    for ro in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        ops.push(MountOp::ReadonlySelf { target: ro.into() });
    }
    for file in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/proc/kmsg",
    ] {
        ops.push(MountOp::MaskFile {
            target: file.into(),
        });
    }
    for dir in ["/proc/acpi", "/proc/scsi"] {
        ops.push(MountOp::MaskDir { target: dir.into() });
    }
    ops
}

/// A read-only sysfs with the firmware tables hidden. It reflects the network namespace of
/// whoever mounts it, which is the same for every launch of a template.
fn sys() -> Vec<MountOp> {
    vec![
        MountOp::Sysfs {
            target: "/sys".into(),
        },
        MountOp::MaskDir {
            target: "/sys/firmware".into(),
        },
    ]
}
