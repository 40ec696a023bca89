//! What connections grant: additions to an app's `SandboxSpec`, as data. packd turns host-side
//! parts (bind sources, devices, the home directory) into mounts and cgroup rules after checking
//! them on disk; this crate does no I/O.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::{AttrError, Connection};

/// A host directory or file bound into the sandbox at the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    /// Host path (under packd's root).
    pub source: PathBuf,
    /// Path inside the sandbox.
    pub target: PathBuf,
    pub readonly: bool,
    /// Skipped (with a note in the log) when the source or the target's parent is missing,
    /// rather than failing the launch: hosts differ in what they have.
    pub optional: bool,
    /// Create the target directory first (it lies on a writable directory of the plug's pack).
    pub create_target: bool,
    /// Create the source directory when it is missing (a content provider's directory in its
    /// own writable data, which its app may not have made yet).
    pub create_source: bool,
}

impl Bind {
    /// The host's `path` (under `host_root`) at `path` inside.
    pub fn host(host_root: &Path, path: &Path, readonly: bool, optional: bool) -> Bind {
        Bind {
            source: under(host_root, path),
            target: path.to_path_buf(),
            readonly,
            optional,
            create_target: false,
            create_source: false,
        }
    }
}

/// A device node bound into the sandbox and allowed by its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub host: PathBuf,
    pub inside: PathBuf,
}

/// Access to packd's API socket from inside a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Socket {
    /// Only the shutdown request.
    Shutdown,
    /// The whole API, with the rights of the app's user.
    Control,
}

/// Everything a set of connections adds to one app's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Grants {
    /// seccomp rules, in the policy's own format (`{"syscall": …, "comment": …}`).
    pub seccomp: Vec<Value>,
    pub binds: Vec<Bind>,
    pub devices: Vec<Device>,
    pub landlock_read: Vec<PathBuf>,
    pub landlock_write: Vec<PathBuf>,
    pub bind_tcp: Vec<u16>,
    pub bind_any: bool,
    pub connect_any: bool,
    pub capabilities: Vec<String>,
    pub apparmor: Vec<String>,
    /// Share the host's network namespace.
    pub host_network: bool,
    /// Share the host's pid namespace.
    pub host_pid: bool,
    /// The invoking user's non-hidden home entries.
    pub home: bool,
    /// Paths the default sandbox hides that become visible.
    pub unmask: Vec<PathBuf>,
    pub socket: Option<Socket>,
}

impl Grants {
    /// Adds `other` (duplicates removed where order does not matter).
    pub fn merge(&mut self, other: Grants) {
        self.seccomp.extend(other.seccomp);
        self.binds.extend(other.binds);
        self.devices.extend(other.devices);
        self.landlock_read.extend(other.landlock_read);
        self.landlock_write.extend(other.landlock_write);
        self.bind_tcp.extend(other.bind_tcp);
        self.bind_any |= other.bind_any;
        self.connect_any |= other.connect_any;
        self.capabilities.extend(other.capabilities);
        self.apparmor.extend(other.apparmor);
        self.host_network |= other.host_network;
        self.host_pid |= other.host_pid;
        self.home |= other.home;
        self.unmask.extend(other.unmask);
        self.socket = self.socket.max(other.socket);
        dedup(&mut self.bind_tcp);
        dedup(&mut self.capabilities);
        dedup(&mut self.unmask);
        dedup(&mut self.landlock_write);
        dedup(&mut self.landlock_read);
    }

    pub fn is_empty(&self) -> bool {
        *self == Grants::default()
    }
}

fn dedup<T: Ord + Clone>(v: &mut Vec<T>) {
    let set: BTreeSet<T> = v.drain(..).collect();
    v.extend(set);
}

/// `path` (absolute) under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// content: the provider's directories at the consumer's target.
pub(crate) fn content(c: &Connection<'_>, g: &mut Grants) -> Result<(), AttrError> {
    let target_attr = c.plug.string("target")?;
    let (var, rest) = crate::attrs::split_var(target_attr, &["PACK", "PACK_DATA", "PACK_COMMON"])
        .map_err(|e| AttrError(format!("{}: target: {e}", c.plug.what("plug"))))?;
    let target = c.plug.inside(var).join(rest);
    let mut dirs = Vec::new();
    for (attr, readonly) in [("read", true), ("write", false)] {
        for s in c.slot.strings(attr)? {
            let (var, rest) = crate::attrs::split_var(&s, &["PACK", "PACK_DATA", "PACK_COMMON"])
                .map_err(|e| AttrError(format!("{}: {attr}: {e}", c.slot.what("slot"))))?;
            if !readonly && var == "PACK" {
                return Err(AttrError(format!(
                    "{}: write: {s:?} is in the read-only package; share $PACK_DATA or $PACK_COMMON directories",
                    c.slot.what("slot")
                )));
            }
            dirs.push((
                c.slot.host(var).join(rest),
                rest.to_string(),
                readonly,
                var != "PACK",
            ));
        }
    }
    if dirs.is_empty() {
        return Err(AttrError(format!(
            "{}: a content slot must list directories in `read` or `write`",
            c.slot.what("slot")
        )));
    }
    let single = dirs.len() == 1;
    for (source, rest, readonly, in_data) in dirs {
        let target = if single {
            target.clone()
        } else {
            let name = Path::new(&rest)
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default();
            target.join(name)
        };
        if !readonly {
            g.landlock_write.push(target.clone());
        }
        g.apparmor.push(format!(
            "{}/ r,\n{}/** {},",
            target.display(),
            target.display(),
            if readonly { "mrix" } else { "rwlk" }
        ));
        g.binds.push(Bind {
            source,
            target,
            readonly,
            optional: false,
            create_target: var != "PACK",
            create_source: in_data,
        });
    }
    Ok(())
}
