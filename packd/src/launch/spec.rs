//! What goes into an app's sandbox (policy): its mounts, environment, command and layers, as
//! a [`SandboxSpec`] for the `confine` crate to execute. [`build_spec`] is a pure function of
//! what was resolved and prepared on the host.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use confine::{CgroupJoin, MountOp, Namespaces, Process, SandboxSpec, SeccompSpec};

use super::{LaunchError, Resolved, env, granted, mounts};
use crate::error::IoContext;
use crate::fsutil;
use crate::paths::Paths;

type Result<T> = std::result::Result<T, LaunchError>;

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
    /// The caller's resource limits, which the app's are lowered to.
    pub rlimits: Vec<confine::steps::rlimits::Rlimit>,
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

/// Creates the caller's data directories, owned by them and private (0700). `users/` is
/// root's; `users/UID/` and what is in it are the caller's, who may swap anything there at any
/// moment: each directory is opened without following symlinks, relative to its parent's
/// descriptor, and given its owner and mode through its own descriptor (never by path). The
/// directories are then bound without following symlinks either.
pub fn prepare_user_dirs(paths: &Paths, r: &Resolved, uid: u32, gid: u32) -> Result<()> {
    let users = paths.data_root(&r.name).join("users");
    fsutil::ensure_dir(&users, 0o755).ctx("create", &users)?;
    let users_fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&users)
        .ctx("open", &users)?;
    let mine = users.join(uid.to_string());
    let mine_fd = fsutil::owned_dir_at(&users_fd, &uid.to_string(), 0o700, Some((uid, gid)))
        .ctx("create", &mine)?;
    for name in [r.revision.to_string(), "common".to_string()] {
        fsutil::owned_dir_at(&mine_fd, &name, 0o700, Some((uid, gid)))
            .ctx("create", &mine.join(&name))?;
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

/// Where an app finds packd's API, when its connections give it one.
pub const API_SOCKET_INSIDE: &str = "/run/packd.socket";
/// The directory of its pack's API socket, bound into the launch's `/run`.
pub const API_DIR_INSIDE: &str = "/run/packd";

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
    // packd's API, as far as the connections allow: the directory of the pack's own socket,
    // in the launch's fresh /run, and `/run/packd.socket` pointing into it. The directory,
    // not the socket: a packd that restarts makes its socket again in the same directory,
    // and apps already running (services that outlived it) find it there.
    let mut env = env;
    if let Some(access) = g.grants.socket {
        plan.per_launch.push(MountOp::Mkdir {
            target: API_DIR_INSIDE.into(),
            mode: 0o755,
        });
        plan.per_launch.push(MountOp::Bind {
            source: paths.pack_socket_dir(&r.name, access),
            target: API_DIR_INSIDE.into(),
            readonly: true,
        });
        plan.per_launch.push(MountOp::Symlink {
            target: API_SOCKET_INSIDE.into(),
            points_to: Path::new(API_DIR_INSIDE)
                .strip_prefix("/run")
                .unwrap_or(Path::new("packd"))
                .join(crate::paths::PACK_SOCKET_NAME),
        });
        env.insert("PACKD_SOCKET".into(), API_SOCKET_INSIDE.into());
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
        return Err(LaunchError::ForkingNeedsPidNamespace {
            pack: r.name.clone(),
            app: r.app.clone(),
        });
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
            rlimits: inv.rlimits.clone(),
        },
        cgroup: ctx.cgroup.clone().map(|dirs| CgroupJoin { dirs }),
        capabilities: g.grants.capabilities.clone(),
        landlock: Some(landlock),
        seccomp: ctx.seccomp.clone().map(|profile| SeccompSpec { profile }),
        apparmor: Some(crate::policy::apparmor::label(&r.name, &r.app)),
        devmode,
    })
}
