//! The sandbox as plain, serializable data. The daemon builds a [`SandboxSpec`] (policy); the
//! helper executes it (mechanism). A spec can be printed, diffed and unit-tested without root.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the helper needs to build one confined process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SandboxSpec {
    /// A label for messages and logs, e.g. `pack.hello.hello`.
    pub label: String,
    /// Host path of the directory that becomes `/`: the base's mounted root filesystem.
    pub root: PathBuf,
    /// Mount operations, applied in order inside the new root before `pivot_root`. Launches
    /// with the same root and `mounts` may share one prepared result (a mount template): these
    /// must not depend on the launch.
    pub mounts: Vec<MountOp>,
    /// Mount operations made fresh for every launch, after `pivot_root` (targets are paths in
    /// the new root as for `mounts`): what belongs to the launch's own pid and network
    /// namespaces, such as `/proc` and `/sys`, or must not outlive it.
    #[serde(default)]
    pub launch_mounts: Vec<MountOp>,
    pub namespaces: Namespaces,
    /// Host name inside the new UTS namespace.
    pub hostname: String,
    pub process: Process,
    /// The cgroup (one directory per hierarchy) the sandbox joins before anything else runs.
    #[serde(default)]
    pub cgroup: Option<CgroupJoin>,
    /// Capabilities the app keeps (names such as `CAP_NET_BIND_SERVICE`); all others are
    /// dropped from every set, the bounding set included.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub landlock: Option<LandlockSpec>,
    #[serde(default)]
    pub seccomp: Option<SeccompSpec>,
    /// The AppArmor profile to change to on exec, when the kernel has AppArmor.
    #[serde(default)]
    pub apparmor: Option<String>,
    /// The layers log instead of denying: seccomp logs, Landlock is not applied, capabilities
    /// are kept. Marked as such wherever the pack shows.
    #[serde(default)]
    pub devmode: bool,
}

/// The cgroup directories (absolute host paths, one per hierarchy) to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CgroupJoin {
    pub dirs: Vec<PathBuf>,
}

/// Landlock rules, as paths inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct LandlockSpec {
    /// Read and execute (files and directories beneath).
    pub read: Vec<PathBuf>,
    /// Every file access (read, write, create, remove, rename, truncate, device ioctls).
    pub write: Vec<PathBuf>,
    /// TCP ports the app may bind; every other bind is denied.
    #[serde(default)]
    pub bind_tcp: Vec<u16>,
    /// TCP ports the app may connect to; every other connect is denied.
    #[serde(default)]
    pub connect_tcp: Vec<u16>,
    /// Connect to any TCP port (the network interface); `connect_tcp` then does not matter.
    #[serde(default)]
    pub connect_any: bool,
    /// Bind any TCP port (network-bind without `ports`).
    #[serde(default)]
    pub bind_any: bool,
}

/// A compiled seccomp profile, loaded last, on all threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SeccompSpec {
    /// The compiled profile ([`crate::seccomp::Profile`]); it must be owned by root and not
    /// writable by anyone else.
    pub profile: PathBuf,
}

/// Which namespaces the sandbox gets. The mount namespace is always new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Namespaces {
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    /// A new, empty network namespace (loopback only) unless the app is granted network.
    pub net: bool,
    pub cgroup: bool,
}

impl Default for Namespaces {
    fn default() -> Self {
        Self {
            pid: true,
            ipc: true,
            uts: true,
            net: true,
            cgroup: true,
        }
    }
}

/// The process to execute once the sandbox is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Process {
    /// `argv[0]` is the path of the executable inside the sandbox.
    pub argv: Vec<String>,
    /// The complete environment, `KEY=VALUE`; nothing else is inherited.
    pub env: Vec<String>,
    /// Tried first; when it does not exist inside the sandbox, `fallback_cwd` is used.
    pub cwd: PathBuf,
    pub fallback_cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Keep the sandbox up after the command exits, as long as any process it started runs
    /// (a `forking` service): the command's status is reported when it exits, the sandbox's
    /// when the last process is gone.
    #[serde(default)]
    pub outlive_command: bool,
    /// Limits to lower the app's to (its caller's `ulimit`s); never raised.
    #[serde(default)]
    pub rlimits: Vec<crate::steps::rlimits::Rlimit>,
}

/// One step of building the sandbox's file system. Targets are absolute paths inside the
/// sandbox; they are resolved under the new root without following symlinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    tag = "op"
)]
pub enum MountOp {
    /// A fresh tmpfs (always `nosuid,nodev`).
    Tmpfs {
        target: PathBuf,
        mode: u32,
        /// Size limit in bytes.
        size: Option<u64>,
        #[serde(default)]
        noexec: bool,
    },
    /// A bind mount of a host directory, or of a host file or socket onto a file (created on a
    /// writable scaffold when missing); always `nosuid,nodev`.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A bind mount of the host directory `base/rel` onto a directory, `rel` resolved under
    /// `base` without following any symlink (`openat2` with `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`), and bound from that descriptor: for sources that someone else
    /// can write to (another pack's data), which could otherwise swap a directory for a
    /// symlink between a check and the bind.
    BindBeneath {
        base: PathBuf,
        rel: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A bind mount of one host device node onto an empty file.
    Device { source: PathBuf, target: PathBuf },
    /// A new proc instance (it reflects the sandbox's pid namespace).
    Proc { target: PathBuf },
    /// A read-only sysfs.
    Sysfs { target: PathBuf },
    /// A new devpts instance (`newinstance,ptmxmode=0666`) so ptys are private.
    Devpts { target: PathBuf },
    /// A directory (and its missing parents) on a writable scaffold such as a tmpfs.
    Mkdir { target: PathBuf, mode: u32 },
    /// A symlink at `target` whose content is `points_to`.
    Symlink { target: PathBuf, points_to: PathBuf },
    /// Remount an existing mount point read-only once everything under it is in place.
    RemountReadonly { target: PathBuf },
    /// Make a path that is not a mount point (e.g. `/proc/sys`) read-only by binding it onto
    /// itself. A missing path is skipped.
    ReadonlySelf { target: PathBuf },
    /// Hide a file (e.g. `/proc/kcore`) under `/dev/null`; a missing one is skipped.
    MaskFile { target: PathBuf },
    /// Hide a directory (e.g. `/proc/acpi`) under an empty read-only tmpfs; a missing one is
    /// skipped.
    MaskDir { target: PathBuf },
}

impl MountOp {
    /// The path inside the sandbox this operation works on.
    pub fn target(&self) -> &std::path::Path {
        match self {
            MountOp::Tmpfs { target, .. }
            | MountOp::Bind { target, .. }
            | MountOp::BindBeneath { target, .. }
            | MountOp::Device { target, .. }
            | MountOp::Proc { target }
            | MountOp::Sysfs { target }
            | MountOp::Devpts { target }
            | MountOp::Mkdir { target, .. }
            | MountOp::Symlink { target, .. }
            | MountOp::RemountReadonly { target }
            | MountOp::ReadonlySelf { target }
            | MountOp::MaskFile { target }
            | MountOp::MaskDir { target } => target,
        }
    }

    /// A short description for step names in errors: `bind /pack/hello/x1`.
    pub fn describe(&self) -> String {
        let kind = match self {
            MountOp::Tmpfs { .. } => "tmpfs",
            MountOp::Bind { .. } | MountOp::BindBeneath { .. } => "bind",
            MountOp::Device { .. } => "device",
            MountOp::Proc { .. } => "proc",
            MountOp::Sysfs { .. } => "sysfs",
            MountOp::Devpts { .. } => "devpts",
            MountOp::Mkdir { .. } => "mkdir",
            MountOp::Symlink { .. } => "symlink",
            MountOp::RemountReadonly { .. } => "remount-ro",
            MountOp::ReadonlySelf { .. } => "readonly",
            MountOp::MaskFile { .. } | MountOp::MaskDir { .. } => "mask",
        };
        format!("{kind} {}", self.target().display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_ops_serialize_tagged() {
        let op = MountOp::Bind {
            source: "/srv/x".into(),
            target: "/pack/x".into(),
            readonly: true,
        };
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"op": "bind", "source": "/srv/x", "target": "/pack/x", "readonly": true})
        );
        assert_eq!(op.describe(), "bind /pack/x");
        let back: MountOp = serde_json::from_value(json).unwrap();
        assert_eq!(back, op);
    }
}
