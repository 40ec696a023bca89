//! One launch through the zygote, from a request to a running confined process and back:
//! `pack run`'s apps, hooks and `stop-command`s. (A service's sandbox is run by its monitor
//! instead; see [`super::service`].) Everything a launch needs from the host is checked and
//! prepared first ([`Launcher::prepare`]), then [`Prepared::start`] builds the sandbox.
//! A prepared launch, then the running app, holds its user's `/tmp` of the pack (see
//! [`super::tmp`]).

use std::path::PathBuf;
use std::time::Duration;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use confine::proto::Template;
use confine::{Report, SandboxSpec};
use packd_api::exit;
use packfmt::meta::Confinement;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::templates::MountTemplates;
use super::zygote::{Slot, Started};
use super::{AppRef, Context, Invocation, LaunchError, Launcher, Resolved};
use crate::system::Cgroups;

type Result<T> = std::result::Result<T, LaunchError>;

impl Launcher {
    /// Resolves the app and refuses, with a message naming it, a strict app whose required
    /// layer this kernel lacks; mounts the pack's /tmp for the caller and makes the caller's
    /// data directories.
    pub fn prepare(&self, target: &AppRef, inv: Invocation) -> Result<Prepared> {
        self.strict(self.prepare_unchecked(target, inv)?)
    }

    /// Refuses a strict launch whose required layer this kernel lacks.
    fn strict(&self, prepared: Prepared) -> Result<Prepared> {
        let r = &prepared.resolved;
        if prepared.resolved.meta.confinement == Confinement::Strict
            && let Some(missing) = self.features.missing_for_strict()
        {
            return Err(LaunchError::Strict {
                target: r.label(),
                missing,
            });
        }
        Ok(prepared)
    }

    /// [`Self::prepare`] without the strict check, for `pack debug sandbox`, which must show
    /// a sandbox even when it would be refused.
    pub fn prepare_unchecked(&self, target: &AppRef, inv: Invocation) -> Result<Prepared> {
        self.prepare_from(inv, |s| super::resolve(s, target))
    }

    /// A launch of hook `hook` of `pack` (as root, for the hook tasks), refused like
    /// [`Self::prepare`] when a strict layer is missing.
    pub fn prepare_hook(&self, pack: &str, hook: &str, inv: Invocation) -> Result<Prepared> {
        self.strict(self.prepare_from(inv, |s| super::resolve_hook(s, pack, hook))?)
    }

    fn prepare_from(
        &self,
        inv: Invocation,
        find: impl FnOnce(&crate::state::State) -> Result<Resolved>,
    ) -> Result<Prepared> {
        let (resolved, grants) = self.store.read(|s| {
            let r = find(s)?;
            let mut by_app = crate::connections::policy::grants_by_app(
                s,
                &self.paths,
                &r.name,
                r.revision,
                &r.meta,
            )?;
            let grants = by_app.remove(&r.app).unwrap_or_default();
            Ok::<_, LaunchError>((r, grants))
        })?;
        let target = resolved.label();
        let base = self.paths.mount_dir(&resolved.base, resolved.base_revision);
        let granted = super::granted::resolve(self.paths.root(), &base, grants, inv.uid)?;
        let seccomp = self
            .paths
            .seccomp_profile(&resolved.name, resolved.revision, &resolved.app);
        if !seccomp.is_file() {
            return Err(LaunchError::MissingProfile {
                target,
                path: seccomp,
            });
        }
        let size = super::tmp::size_of(&resolved.meta);
        let (private_tmp, tmp) = self.tmps.acquire(&resolved.name, inv.uid, size)?;
        super::spec::prepare_user_dirs(&self.paths, &resolved, inv.uid, inv.gid)?;
        Ok(Prepared {
            tmp,
            ctx: Context {
                private_tmp,
                hostname: self.hostname.clone(),
                cgroup: None,
                seccomp: Some(seccomp),
                granted,
                service: None,
            },
            resolved,
            inv,
        })
    }

    /// The API socket's directory of `pack` for `access`, listening from now on.
    pub(super) fn ensure_socket(&self, pack: &str, access: interfaces::Socket) -> Result<()> {
        match self.api_sockets() {
            Some(sockets) => sockets.ensure(pack, access).map(|_| ()),
            None => Err(LaunchError::Helper(
                "packd's API is not ready to make a pack's socket yet".into(),
            )),
        }
    }
}

/// A launch checked and prepared on the host, not started yet.
pub struct Prepared {
    pub resolved: Resolved,
    pub inv: Invocation,
    pub(super) ctx: Context,
    /// Its use of the pack's `/tmp` for this user, passed on to the running app.
    tmp: super::tmp::TmpHold,
}

impl Prepared {
    /// Makes this launch a service's.
    pub fn as_service(mut self, service: super::ServiceLaunch) -> Prepared {
        self.ctx.service = Some(service);
        self
    }

    /// The spec this launch would run, with the cgroup it would get (for `pack debug sandbox`).
    pub fn spec(&self, l: &Launcher) -> Result<SandboxSpec> {
        let mut ctx = self.ctx.clone();
        if l.cgroups.layout().is_ok() {
            ctx.cgroup = Some(l.cgroups.dirs(&l.next_cgroup()));
        }
        super::build_spec(&l.paths, &self.resolved, &self.inv, &ctx)
    }

    /// Creates the cgroup, spawns the sandbox and waits until the app has exec'd. On failure,
    /// why (with the status `pack run` should exit with: 125 setup, 126 cannot execute, 127
    /// not found), with nothing left behind.
    pub async fn start(mut self, l: &Arc<Launcher>, stdio: Stdio3) -> Result<Running> {
        let r = &self.resolved;
        // A user's sandboxes count against their share (root's, and packd's own, do not).
        let held = match self.inv.uid {
            0 => None,
            uid => Some(
                l.per_user
                    .take(uid)
                    .ok_or_else(|| LaunchError::TooManySandboxes {
                        target: r.label(),
                        uid,
                        limit: super::quota::PER_USER,
                    })?,
            ),
        };
        // The pack's API socket, when its connections give one: before any cgroup exists, so
        // a failure here leaves nothing to take down.
        if let Some(access) = self.ctx.granted.grants.socket {
            l.ensure_socket(&r.name, access)?;
        }
        let limits = l.limits_for(r, &self.ctx)?;
        // Spares are prepared with private namespaces: an app sharing the host's takes none.
        let shares_host = self.ctx.granted.grants.host_network || self.ctx.granted.grants.host_pid;
        let have_cgroups = l.cgroups.layout().is_ok();
        // A spare sandbox (cgroup made and joined in the background) when there is one whose
        // device rules are this app's; otherwise the cgroup is made now and joined by the
        // sandbox.
        let spare = match (
            have_cgroups,
            (!shares_host).then(|| l.take_spare()).flatten(),
        ) {
            (true, Some(spare)) if spare.limits.devices == limits.devices => Some(spare),
            (_, Some(unfit)) => {
                tokio::task::spawn_blocking(move || unfit.discard());
                None
            }
            (_, None) => None,
        };
        let cgroup_error = |error| LaunchError::Cgroup {
            target: r.label(),
            error: Box::new(error),
        };
        // Spares are made with the default limits: only an app with its own rewrites them. A
        // spare that cannot take them (a controller they need is not there) is dropped, and
        // the cgroup made afresh below says so (or, in devmode, does without them).
        let spare = match spare {
            Some(spare) if spare.limits != limits => {
                match l.cgroups.set_limits(&spare.cgroup.rel, &limits) {
                    Ok(()) => Some(spare),
                    Err(confine::cgroup::CgroupError::Missing { .. }) => {
                        tokio::task::spawn_blocking(move || spare.discard());
                        None
                    }
                    Err(e) => {
                        tokio::task::spawn_blocking(move || spare.discard());
                        return Err(cgroup_error(e));
                    }
                }
            }
            other => other,
        };
        let (cgroup, slot) = match (have_cgroups, spare) {
            (_, Some(spare)) => (Some(spare.cgroup), Some(spare.slot)),
            (true, None) => {
                let rel = l.next_cgroup();
                l.create_cgroup(&rel, &limits, r)?;
                (Some(SandboxCgroup::new(l.cgroups.clone(), rel)), None)
            }
            (false, None) => (None, None),
        };
        self.ctx.cgroup = cgroup.as_ref().map(|cg| l.cgroups.dirs(&cg.rel));
        // Registered by the cgroup's whole path (`packd/…/sandbox.N`): only root makes
        // cgroups there, so nobody can name one of theirs like it.
        let registered = cgroup.as_ref().map(|cg| {
            let key = l.sandboxes.insert(&cg.rel, &r.name);
            (l.sandboxes.clone(), key)
        });
        let mut running = Running {
            pidfd: None,
            exited: None,
            exit_pipe: None,
            code: None,
            cgroup,
            registered,
            label: format!("{}.{}", r.name, r.app),
            report: Report::default(),
            _held: held,
            _tmp: self.tmp,
        };
        let spec = match super::build_spec(&l.paths, r, &self.inv, &self.ctx) {
            Ok(spec) => spec,
            Err(e) => {
                running.cleanup().await;
                return Err(e);
            }
        };
        let spawned = spawn(l, &r.name, spec, stdio, slot).await;
        // The next spare is made now that this app has started, not while it was starting.
        l.refill_spares();
        match spawned {
            Ok((started, exit_pipe, report)) => {
                running.pidfd = Some(started.pidfd);
                running.exited = Some(started.exited);
                running.exit_pipe = Some(exit_pipe);
                running.report = report;
                tracing::debug!(app = %running.label, pid = started.pid, ?running.report, "started");
                Ok(running)
            }
            Err((error, exited)) => {
                if let Some(exited) = exited {
                    let _ = exited.await;
                }
                running.cleanup().await;
                Err(error)
            }
        }
    }
}

/// A confined app that is running.
pub struct Running {
    pidfd: Option<OwnedFd>,
    /// The supervisor's status, from the zygote: the app's, once the namespaces are gone.
    exited: Option<oneshot::Receiver<i32>>,
    /// The app's status, from the sandbox's init, the moment the app exits.
    exit_pipe: Option<pipe::Receiver>,
    code: Option<i32>,
    cgroup: Option<SandboxCgroup>,
    /// Its entry in the daemon's sandbox registry, taken out when it is gone.
    registered: Option<(super::registry::Sandboxes, String)>,
    pub label: String,
    /// What the layers reported on the way.
    pub report: Report,
    /// Its place in its user's share, given back when it is dropped.
    _held: Option<super::quota::Held>,
    /// Its use of its user's `/tmp` of the pack (unmounted after the last).
    _tmp: super::tmp::TmpHold,
}

impl Running {
    /// Waits for the app; its exit code, or 128 + the signal that ended it.
    pub async fn wait(&mut self) -> i32 {
        if let Some(code) = self.code {
            return code;
        }
        if let Some(p) = self.exit_pipe.as_mut() {
            // Four bytes in one pipe write: a read gets all of them or none (EOF when the init
            // died without a word); a read is cancel-safe, so `wait` may be raced in select!.
            let mut buf = [0u8; 4];
            let n = p.read(&mut buf).await.unwrap_or(0);
            self.exit_pipe = None;
            if n == buf.len() {
                let code = i32::from_le_bytes(buf);
                self.code = Some(code);
                return code;
            }
        }
        let code = match self.exited.as_mut() {
            Some(rx) => rx.await.unwrap_or(exit::NOT_STARTED),
            None => exit::NOT_STARTED,
        };
        self.exited = None;
        self.code = Some(code);
        code
    }

    /// Waits until the whole sandbox is gone (its supervisor exits): for a `forking`
    /// service, the processes its command left; 0, or 128 + the signal that ended them.
    pub async fn wait_sandbox(&mut self) -> i32 {
        let code = match self.exited.take() {
            Some(rx) => rx.await.unwrap_or(exit::NOT_STARTED),
            None => self.code.unwrap_or(exit::NOT_STARTED),
        };
        self.code.get_or_insert(code);
        code
    }

    /// Sends `signal` to the sandbox's supervisor, which passes it on (to the app, or to every
    /// process of a `forking` service's sandbox). Harmless once it is gone: a pidfd never
    /// names another process.
    pub fn signal(&self, signal: i32) {
        if let Some(pidfd) = &self.pidfd {
            // SAFETY: pidfd_send_signal on a pidfd we own; it cannot reach a reused pid.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
    }

    /// Kills whatever is left of the sandbox and removes its cgroup.
    pub async fn cleanup(mut self) {
        if self.exited.is_some() {
            // Whatever is left of the sandbox (a forking service's processes) goes now.
            self.signal(libc::SIGKILL);
        }
        // The app's status may have come early, from the init; the supervisor goes once the
        // namespaces are torn down.
        if let Some(exited) = self.exited.take() {
            let _ = exited.await;
        }
        if let Some((registry, name)) = self.registered.take() {
            registry.remove(&name);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = tokio::task::spawn_blocking(move || cg.remove(Duration::from_secs(5))).await;
        }
    }
}

/// A sandbox's cgroup, by its path relative to the hierarchies' roots.
pub struct SandboxCgroup {
    cgroups: Arc<dyn Cgroups>,
    pub rel: PathBuf,
}

impl SandboxCgroup {
    pub fn new(cgroups: Arc<dyn Cgroups>, rel: PathBuf) -> Self {
        SandboxCgroup { cgroups, rel }
    }

    /// Kills what is left in it and removes it (blocking: up to `patience`).
    pub fn remove(&self, patience: Duration) {
        self.cgroups.kill(&self.rel);
        if let Err(e) = self.cgroups.remove(&self.rel, patience) {
            tracing::warn!(cgroup = %self.rel.display(), error = %e, "cannot remove a sandbox cgroup");
        }
    }
}

/// A launch dropped without [`Running::cleanup`] (a waiting future cancelled, e.g. by an abort)
/// must not leave its sandbox behind: it is killed, and its cgroup removed in the background.
impl Drop for Running {
    fn drop(&mut self) {
        if self.exited.is_some() {
            self.signal(libc::SIGKILL);
        }
        if let Some((registry, name)) = self.registered.take() {
            registry.remove(&name);
        }
        if let Some(cg) = self.cgroup.take() {
            let remove = move || cg.remove(Duration::from_secs(5));
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(remove);
                }
                Err(_) => remove(),
            }
        }
    }
}

type SpawnError = (LaunchError, Option<oneshot::Receiver<i32>>);

/// Starts the spec in the prepared `slot` when it can take it, else through the zygote, and
/// waits for the app's exec (EOF on the status pipe).
async fn spawn(
    l: &Launcher,
    pack: &str,
    spec: SandboxSpec,
    stdio: Stdio3,
    slot: Option<Slot>,
) -> std::result::Result<(Started, pipe::Receiver, Report), SpawnError> {
    let internal = |e: String| (LaunchError::Helper(e), None);
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (status_r, status_w) = nix::unistd::pipe2(cloexec).map_err(|e| internal(e.to_string()))?;
    let (exit_r, exit_w) = nix::unistd::pipe2(cloexec).map_err(|e| internal(e.to_string()))?;
    let fds = vec![stdio.stdin, stdio.stdout, stdio.stderr, status_w, exit_w];
    let caller_exit = stdio.caller_exit;
    let net = if spec.namespaces.net {
        let ns = l.networks.get(pack).map_err(|error| {
            (
                LaunchError::Network {
                    pack: pack.to_string(),
                    error,
                },
                None,
            )
        })?;
        Some(ns)
    } else {
        None
    };
    // A slot copies the template of this file system when there is one, or builds it and
    // sends it back for the next launches.
    let key = MountTemplates::key(&spec);
    let bound: Vec<PathBuf> = super::templates::sources(&spec).collect();
    let template_ns = key.as_deref().and_then(|k| l.templates.get(k));
    let template = match (&template_ns, &key) {
        (Some(_), _) => Template::Join,
        (None, Some(_)) => Template::Build,
        (None, None) => Template::Private,
    };
    let handed = match slot {
        Some(slot) => {
            let raw: Vec<RawFd> = fds
                .iter()
                .chain(&template_ns)
                .chain(&net)
                .chain(&caller_exit)
                .map(AsRawFd::as_raw_fd)
                .collect();
            slot.hand_over(spec, &raw, template, (net.is_some(), caller_exit.is_some()))
        }
        None => Err(spec),
    };
    let (started, slot_sock) = match handed {
        Ok((started, sock)) => {
            // The slot has its copies; ours must go, or the status pipe never reaches EOF.
            drop((fds, template_ns, net, caller_exit));
            (started, Some(sock))
        }
        Err(spec) => {
            let flags = (net.is_some(), caller_exit.is_some());
            let fds = fds.into_iter().chain(net).chain(caller_exit).collect();
            let started = l.zygote.launch(spec, fds, flags).await.map_err(internal)?;
            (started, None)
        }
    };
    let exit_pipe = pipe::Receiver::from_owned_fd(exit_r).map_err(|e| internal(e.to_string()))?;
    let mut status =
        pipe::Receiver::from_owned_fd(status_r).map_err(|e| internal(e.to_string()))?;
    let mut bytes = Vec::new();
    if let Err(e) = status.read_to_end(&mut bytes).await {
        return Err((
            LaunchError::Helper(format!("cannot read the launch's status: {e}")),
            Some(started.exited),
        ));
    }
    match confine::parse_status(&bytes) {
        Ok(report) => {
            l.launched(Ok(&report));
            if template == Template::Build
                && let (Some(key), Some(sock)) = (key, slot_sock)
                && let Some(ns) = super::zygote::take_template(&sock)
            {
                l.templates.insert(key, ns, bound);
            }
            Ok((started, exit_pipe, report))
        }
        Err(error) => {
            l.launched(Err(&error));
            let code = started.exited.await.unwrap_or(exit::NOT_STARTED);
            let code = if code == 0 { exit::NOT_STARTED } else { code };
            Err((LaunchError::Sandbox { error, code }, None))
        }
    }
}

/// The app's standard input, output and error, and the caller's own exit pipe when it sent
/// one (`pack run`: the app's status reaches it straight from the sandbox).
pub struct Stdio3 {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub caller_exit: Option<OwnedFd>,
}
