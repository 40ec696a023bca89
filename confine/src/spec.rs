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
    /// Mount operations, applied in order inside the new root before `pivot_root`.
    pub mounts: Vec<MountOp>,
    pub namespaces: Namespaces,
    /// Host name inside the new UTS namespace.
    pub hostname: String,
    pub process: Process,
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
    /// A bind mount of a host path (always `nosuid,nodev`).
    Bind {
        source: PathBuf,
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
}

impl MountOp {
    /// The path inside the sandbox this operation works on.
    pub fn target(&self) -> &std::path::Path {
        match self {
            MountOp::Tmpfs { target, .. }
            | MountOp::Bind { target, .. }
            | MountOp::Device { target, .. }
            | MountOp::Proc { target }
            | MountOp::Sysfs { target }
            | MountOp::Devpts { target }
            | MountOp::Mkdir { target, .. }
            | MountOp::Symlink { target, .. }
            | MountOp::RemountReadonly { target } => target,
        }
    }

    /// A short description for step names in errors: `bind /pack/hello/x1`.
    pub fn describe(&self) -> String {
        let kind = match self {
            MountOp::Tmpfs { .. } => "tmpfs",
            MountOp::Bind { .. } => "bind",
            MountOp::Device { .. } => "device",
            MountOp::Proc { .. } => "proc",
            MountOp::Sysfs { .. } => "sysfs",
            MountOp::Devpts { .. } => "devpts",
            MountOp::Mkdir { .. } => "mkdir",
            MountOp::Symlink { .. } => "symlink",
            MountOp::RemountReadonly { .. } => "remount-ro",
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
