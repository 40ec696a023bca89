//! What goes into an app's sandbox (policy): its mounts, environment, command and layers, as
//! a [`SandboxSpec`] for the `confine` crate to execute. [`build_spec`] is a pure function of
//! the state; [`instance`] prepares the host side and runs it.

mod env;
pub mod granted;
pub mod hooks;
pub mod instance;
mod mounts;
pub mod networks;
pub mod registry;
pub mod spares;
pub mod templates;
pub mod zygote;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use confine::{CgroupJoin, MountOp, Namespaces, Process, SandboxSpec, SeccompSpec};
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

/// Finds hook `hook` of `pack`'s current revision (run as the app [`hooks::app_name`]).
pub fn resolve_hook(state: &State, pack: &str, hook: &str) -> Result<Resolved> {
    let p = state
        .packs
        .get(pack)
        .filter(|p| p.active)
        .ok_or_else(|| Error::pack_not_found(pack))?;
    let rev = p
        .current_revision()
        .ok_or_else(|| Error::Internal(format!("pack {pack:?} has no current revision")))?;
    if !rev.meta.hooks.contains_key(hook) {
        return Err(Error::Internal(format!(
            "pack {pack:?} ({}) has no {hook} hook",
            rev.revision
        )));
    }
    let (base, base_revision) = base_of(state, pack, &rev.meta)?;
    Ok(Resolved {
        name: pack.to_string(),
        app: hooks::app_name(hook),
        revision: rev.revision,
        meta: hooks::with_hooks(&rev.meta).into_owned(),
        base,
        base_revision,
    })
}

/// The base `meta` runs on, and its current revision.
fn base_of(state: &State, pack: &str, meta: &packfmt::PackMeta) -> Result<(String, Revision)> {
    let base = meta
        .base
        .clone()
        .ok_or_else(|| Error::Internal(format!("pack {pack:?} has apps but no base")))?;
    let base_revision = state
        .packs
        .get(&base)
        .filter(|b| b.active)
        .map(|b| b.current)
        .ok_or_else(|| Error::NotFound {
            kind: "base-not-found",
            message: format!(
                "the base {base:?} of pack {pack:?} is not installed; install it first"
            ),
        })?;
    Ok((base, base_revision))
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
    let (base, base_revision) = base_of(state, &target.pack, meta)?;
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

/// The per-user data directories (`PACK_USER_DATA`, `PACK_USER_COMMON`) of `uid`: pairs of
/// (path inside the sandbox, path on the host). They live under the pack's data, not in the
/// user's home (no `~/snap` clutter: snapd's LP #1575053), one private directory per user.
pub fn user_dirs(paths: &Paths, r: &Resolved, uid: u32) -> [(PathBuf, PathBuf); 2] {
    let host = paths.data_root(&r.name).join("users").join(uid.to_string());
    let inside = PathBuf::from(format!("/var/pack/{}/users/{uid}", r.name));
    let rev = r.revision.to_string();
    [
        (inside.join(&rev), host.join(&rev)),
        (inside.join("common"), host.join("common")),
    ]
}

/// Creates the caller's data directories, owned by them and private (0700). The parents are
/// root's, so the caller cannot redirect them; the directories themselves are bound without
/// following symlinks.
pub fn prepare_user_dirs(paths: &Paths, r: &Resolved, uid: u32, gid: u32) -> Result<()> {
    let users = paths.data_root(&r.name).join("users");
    fsutil::ensure_dir(&users, 0o755).ctx("create", &users)?;
    let mine = users.join(uid.to_string());
    let [(_, data), (_, common)] = user_dirs(paths, r, uid);
    for dir in [&mine, &data, &common] {
        fsutil::ensure_dir(dir, 0o700).ctx("create", dir)?;
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).ctx("give", dir)?;
    }
    Ok(())
}

/// What a launch brings besides the resolved app and the invocation: prepared on the host
/// before the spec is built.
#[derive(Debug, Clone)]
pub struct Context {
    pub private_tmp: PathBuf,
    pub hostname: String,
    pub cgroup: Option<Vec<PathBuf>>,
    /// The compiled seccomp profile of this app.
    pub seccomp: Option<PathBuf>,
    /// What the app's connections grant.
    pub granted: granted::Granted,
    /// Set when the launch is a service's.
    pub service: Option<ServiceLaunch>,
}

/// What a service's launch adds to an app's.
#[derive(Debug, Clone, Default)]
pub struct ServiceLaunch {
    /// The host end of a `notify` service's `NOTIFY_SOCKET` (a datagram socket packd reads).
    pub notify_socket: Option<PathBuf>,
    /// A `forking` service: the sandbox stays while the processes the command left run.
    pub outlive_command: bool,
    /// Run this instead of the app's command (its `stop-command`).
    pub command: Option<String>,
}

/// Where a `notify` service finds its socket.
pub const NOTIFY_SOCKET_INSIDE: &str = "/run/packd-notify.socket";

/// The sandbox of one app run.
pub fn build_spec(
    paths: &Paths,
    r: &Resolved,
    inv: &Invocation,
    ctx: &Context,
) -> Result<SandboxSpec> {
    let app = &r.meta.apps[&r.app];
    let env = env::environment(r, app, inv);
    let command = ctx
        .service
        .as_ref()
        .and_then(|s| s.command.as_deref())
        .unwrap_or(&app.command);
    let mut argv = env::command_argv(r, command, &env)?;
    argv.extend(inv.args.iter().cloned());
    let user_inside: Vec<PathBuf> = user_dirs(paths, r, inv.uid)
        .into_iter()
        .map(|(inside, _)| inside)
        .collect();
    let devmode = r.meta.confinement == packfmt::meta::Confinement::Devmode;
    let mut plan = mounts::plan(paths, r, &ctx.private_tmp, Some(inv.uid));
    let g = &ctx.granted;
    // Device nodes go in while /dev is still writable, the rest after the sandbox's own.
    let dev_ro = plan
        .shared
        .iter()
        .position(
            |op| matches!(op, MountOp::RemountReadonly { target } if target == Path::new("/dev")),
        )
        .unwrap_or(plan.shared.len());
    plan.shared
        .splice(dev_ro..dev_ro, g.dev_mounts.iter().cloned());
    plan.shared.extend(g.mounts.iter().cloned());
    // packd's API, as far as the connections allow: the pack's own socket, in the launch's
    // fresh /run (see `api::sockets`).
    let mut env = env;
    if let Some(access) = g.grants.socket {
        plan.per_launch.push(MountOp::Bind {
            source: paths.pack_socket(&r.name, access),
            target: crate::api::sockets::INSIDE.into(),
            readonly: false,
        });
        env.insert("PACKD_SOCKET".into(), crate::api::sockets::INSIDE.into());
    }
    let service = ctx.service.clone().unwrap_or_default();
    if let Some(host) = &service.notify_socket {
        plan.per_launch.push(MountOp::Bind {
            source: host.clone(),
            target: NOTIFY_SOCKET_INSIDE.into(),
            readonly: false,
        });
        env.insert("NOTIFY_SOCKET".into(), NOTIFY_SOCKET_INSIDE.into());
    }
    for list in [&mut plan.shared, &mut plan.per_launch] {
        list.retain(|op| {
            !(matches!(op, MountOp::MaskDir { .. } | MountOp::MaskFile { .. })
                && g.grants.unmask.iter().any(|u| op.target() == u))
        });
    }
    let mut landlock =
        crate::policy::confinement::landlock(&r.name, &r.revision.to_string(), &user_inside);
    landlock
        .write
        .extend(g.grants.landlock_write.iter().cloned());
    landlock.write.extend(g.writable.iter().cloned());
    landlock.read.extend(g.grants.landlock_read.iter().cloned());
    landlock.bind_tcp.extend(&g.grants.bind_tcp);
    landlock.bind_any |= g.grants.bind_any;
    landlock.connect_any |= g.grants.connect_any;
    let namespaces = Namespaces {
        net: !g.grants.host_network,
        pid: !g.grants.host_pid,
        ..Namespaces::default()
    };
    if service.outlive_command && !namespaces.pid {
        return Err(Error::bad(format!(
            "{}.{} is a forking service, which needs a pid namespace of its own to be \
             supervised; its system-observe connection takes that away: disconnect it, or use \
             daemon: simple",
            r.name, r.app
        )));
    }
    Ok(SandboxSpec {
        label: crate::policy::apparmor::label(&r.name, &r.app),
        root: paths.mount_dir(&r.base, r.base_revision),
        mounts: plan.shared,
        launch_mounts: plan.per_launch,
        namespaces,
        hostname: ctx.hostname.clone(),
        process: Process {
            argv,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: inv.cwd.clone(),
            fallback_cwd: PathBuf::from("/"),
            uid: inv.uid,
            gid: inv.gid,
            groups: inv.groups.clone(),
            outlive_command: service.outlive_command,
        },
        cgroup: ctx.cgroup.clone().map(|dirs| CgroupJoin { dirs }),
        capabilities: g.grants.capabilities.clone(),
        landlock: Some(landlock),
        seccomp: ctx.seccomp.clone().map(|profile| SeccompSpec { profile }),
        apparmor: Some(crate::policy::apparmor::label(&r.name, &r.app)),
        devmode,
    })
}

#[cfg(test)]
mod tests;
