//! One launch, from a request to a running confined process and back: the single path every
//! `pack run` (and later every service and hook) goes through.

use std::time::Duration;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use confine::cgroup::Cgroup;
use confine::{Report, SandboxSpec};
use packfmt::meta::Confinement;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::templates::MountTemplates;
use super::zygote::{Slot, Started};
use confine::proto::Template;

use super::{AppRef, Context, Invocation, Resolved};
use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// A launch checked and prepared on the host, not started yet.
pub struct Prepared {
    pub resolved: Resolved,
    pub inv: Invocation,
    ctx: Context,
}

/// `pack run`'s status when the sandbox could not be built (as `docker run` uses 125).
pub const EXIT_NOT_STARTED: i32 = 125;

/// Resolves the app and refuses, with a message naming it, a strict app whose required layer
/// this kernel lacks; prepares the private /tmp and the caller's data directories.
pub fn prepare(d: &Daemon, target: &AppRef, inv: Invocation) -> Result<Prepared> {
    strict(d, prepare_unchecked(d, target, inv)?)
}

/// Refuses a strict launch whose required layer this kernel lacks.
fn strict(d: &Daemon, prepared: Prepared) -> Result<Prepared> {
    let r = &prepared.resolved;
    let target = if r.app == r.name {
        r.name.clone()
    } else {
        format!("{}.{}", r.name, r.app)
    };
    if prepared.resolved.meta.confinement == Confinement::Strict
        && let Some(missing) = d.features.missing_for_strict()
    {
        return Err(Error::Forbidden(format!(
            "cannot run {target}: its confinement is strict and this kernel lacks {missing}; \
             packd never runs a strict app with a layer missing (see 'pack debug sandbox {target}')"
        )));
    }
    Ok(prepared)
}

/// [`prepare`] without the strict check, for `pack debug sandbox`, which must show a sandbox
/// even when it would be refused.
pub fn prepare_unchecked(d: &Daemon, target: &AppRef, inv: Invocation) -> Result<Prepared> {
    prepare_from(d, inv, |s| super::resolve(s, target))
}

/// A launch of hook `hook` of `pack` (as root, for the hook tasks), refused like [`prepare`]
/// when a strict layer is missing.
pub fn prepare_hook(d: &Daemon, pack: &str, hook: &str, inv: Invocation) -> Result<Prepared> {
    strict(
        d,
        prepare_from(d, inv, |s| super::resolve_hook(s, pack, hook))?,
    )
}

fn prepare_from(
    d: &Daemon,
    inv: Invocation,
    find: impl FnOnce(&crate::state::State) -> Result<super::Resolved>,
) -> Result<Prepared> {
    let (resolved, grants) = d.store.read(|s| {
        let r = find(s)?;
        let mut by_app =
            crate::connections::grants_by_app(s, &d.paths, &r.name, r.revision, &r.meta)?;
        let grants = by_app.remove(&r.app).unwrap_or_default();
        Ok::<_, Error>((r, grants))
    })?;
    let target = format!("{}.{}", resolved.name, resolved.app);
    let base = d.paths.mount_dir(&resolved.base, resolved.base_revision);
    let granted = super::granted::resolve(d.paths.root(), &base, grants, inv.uid)?;
    let seccomp = d
        .paths
        .seccomp_profile(&resolved.name, resolved.revision, &resolved.app);
    if !seccomp.is_file() {
        return Err(Error::Internal(format!(
            "the seccomp profile of {target} is missing ({}); reinstall the pack",
            seccomp.display()
        )));
    }
    let private_tmp = super::prepare_private_tmp(&d.paths, &resolved.name)?;
    super::prepare_user_dirs(&d.paths, &resolved, inv.uid, inv.gid)?;
    Ok(Prepared {
        ctx: Context {
            private_tmp,
            hostname: d.hostname.clone(),
            cgroup: None,
            seccomp: Some(seccomp),
            granted,
            service: None,
        },
        resolved,
        inv,
    })
}

impl Prepared {
    /// Makes this launch a service's.
    pub fn as_service(mut self, service: super::ServiceLaunch) -> Prepared {
        self.ctx.service = Some(service);
        self
    }

    /// The spec this launch would run, with the cgroup it would get (for `pack debug sandbox`).
    pub fn spec(&self, d: &Daemon) -> Result<SandboxSpec> {
        let mut ctx = self.ctx.clone();
        if let Some(layout) = &d.cgroups {
            ctx.cgroup = Some(Cgroup::at(layout, &d.next_cgroup()).dirs());
        }
        super::build_spec(&d.paths, &self.resolved, &self.inv, &ctx)
    }

    /// Creates the cgroup, spawns the sandbox and waits until the app has exec'd. On failure,
    /// the message and the exit code `pack run` should use (125 setup, 126 cannot execute, 127
    /// not found), with nothing left behind.
    pub async fn start(mut self, d: &Arc<Daemon>, stdio: Stdio3) -> Result<Running, (String, i32)> {
        let fail = |e: Error| (e.to_string(), EXIT_NOT_STARTED);
        let r = &self.resolved;
        // The pack's API socket, when its connections give one: before any cgroup exists, so
        // a failure here leaves nothing to take down.
        if let Some(access) = self.ctx.granted.grants.socket {
            d.pack_sockets.ensure(d, &r.name, access).map_err(fail)?;
        }
        let mut limits = crate::policy::confinement::limits(&r.meta.apps[&r.app]);
        limits
            .devices
            .extend(self.ctx.granted.devices.iter().cloned());
        // Spares are prepared with private namespaces: an app sharing the host's takes none.
        let shares_host = self.ctx.granted.grants.host_network || self.ctx.granted.grants.host_pid;
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            fail(Error::Internal(format!(
                "cannot {what} the cgroup of {}: {e}",
                r.name
            )))
        };
        // A spare sandbox (cgroup made and joined in the background) when there is one whose
        // device rules are this app's; otherwise the cgroup is made now and joined by the
        // sandbox.
        let spare = match (&d.cgroups, (!shares_host).then(|| d.take_spare()).flatten()) {
            (Some(_), Some(spare)) if spare.limits.devices == limits.devices => Some(spare),
            (_, Some(unfit)) => {
                tokio::task::spawn_blocking(move || unfit.discard());
                None
            }
            (_, None) => None,
        };
        let (cgroup, slot) = match (&d.cgroups, spare) {
            (_, Some(spare)) => {
                // Spares are made with the default limits: only an app with its own rewrites
                // them.
                if spare.limits != limits
                    && let Err(e) = spare.cgroup.set_limits(&limits)
                {
                    tokio::task::spawn_blocking(move || spare.discard());
                    return Err(internal("set up", &e));
                }
                (Some(spare.cgroup), Some(spare.slot))
            }
            (Some(layout), None) => {
                let cg = Cgroup::create(layout, &d.next_cgroup(), &limits)
                    .map_err(|e| internal("create", &e))?;
                (Some(cg), None)
            }
            (None, None) => (None, None),
        };
        self.ctx.cgroup = cgroup.as_ref().map(Cgroup::dirs);
        // Registered by the cgroup's whole path (`packd/…/sandbox.N`): only root makes
        // cgroups there, so nobody can name one of theirs like it.
        let registered = cgroup.as_ref().and_then(|cg| {
            let name = cg.dirs().first()?.file_name()?.to_owned();
            let path = d.cgroup_parent.join(name).to_string_lossy().into_owned();
            let path = path.trim_start_matches('/').to_string();
            d.sandboxes.insert(&path, &r.name);
            Some((d.sandboxes.clone(), path))
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
        };
        let spec = match super::build_spec(&d.paths, r, &self.inv, &self.ctx) {
            Ok(spec) => spec,
            Err(e) => {
                running.cleanup().await;
                return Err(fail(e));
            }
        };
        let spawned = spawn(d, &r.name, spec, stdio, slot).await;
        // The next spare is made now that this app has started, not while it was starting.
        d.refill_spares();
        match spawned {
            Ok((started, exit_pipe, report)) => {
                running.pidfd = Some(started.pidfd);
                running.exited = Some(started.exited);
                running.exit_pipe = Some(exit_pipe);
                running.report = report;
                tracing::debug!(app = %running.label, pid = started.pid, ?running.report, "started");
                Ok(running)
            }
            Err((message, code, exited)) => {
                if let Some(exited) = exited {
                    let _ = exited.await;
                }
                running.cleanup().await;
                Err((message, code))
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
    cgroup: Option<Cgroup>,
    /// Its entry in the daemon's sandbox registry, taken out when it is gone.
    registered: Option<(super::registry::Sandboxes, String)>,
    pub label: String,
    /// What the layers reported on the way.
    pub report: Report,
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
            Some(rx) => rx.await.unwrap_or(EXIT_NOT_STARTED),
            None => EXIT_NOT_STARTED,
        };
        self.exited = None;
        self.code = Some(code);
        code
    }

    /// Waits until the whole sandbox is gone (its supervisor exits): for a `forking`
    /// service, the processes its command left; 0, or 128 + the signal that ended them.
    pub async fn wait_sandbox(&mut self) -> i32 {
        let code = match self.exited.take() {
            Some(rx) => rx.await.unwrap_or(EXIT_NOT_STARTED),
            None => self.code.unwrap_or(EXIT_NOT_STARTED),
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
            let label = self.label.clone();
            let _ = tokio::task::spawn_blocking(move || remove_cgroup(cg, &label)).await;
        }
    }
}

/// Kills what is left in a sandbox's cgroup and removes it (blocking: up to a few seconds).
fn remove_cgroup(cg: Cgroup, label: &str) {
    cg.kill();
    if let Err(e) = cg.remove(Duration::from_secs(5)) {
        tracing::warn!(app = %label, error = %e, "cannot remove the sandbox cgroup");
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
            let label = self.label.clone();
            let remove = move || remove_cgroup(cg, &label);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(remove);
                }
                Err(_) => remove(),
            }
        }
    }
}

type SpawnError = (String, i32, Option<oneshot::Receiver<i32>>);

/// Starts the spec in the prepared `slot` when it can take it, else through the zygote, and
/// waits for the app's exec (EOF on the status pipe).
async fn spawn(
    d: &Daemon,
    pack: &str,
    spec: SandboxSpec,
    stdio: Stdio3,
    slot: Option<Slot>,
) -> std::result::Result<(Started, pipe::Receiver, Report), SpawnError> {
    let internal = |e: String| (e, EXIT_NOT_STARTED, None);
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (status_r, status_w) = nix::unistd::pipe2(cloexec).map_err(|e| internal(e.to_string()))?;
    let (exit_r, exit_w) = nix::unistd::pipe2(cloexec).map_err(|e| internal(e.to_string()))?;
    let fds = vec![stdio.stdin, stdio.stdout, stdio.stderr, status_w, exit_w];
    let caller_exit = stdio.caller_exit;
    let net = if spec.namespaces.net {
        let ns = d
            .networks
            .get(pack)
            .map_err(|e| internal(format!("cannot make the network namespace of {pack}: {e}")))?;
        Some(ns)
    } else {
        None
    };
    // A slot copies the template of this file system when there is one, or builds it and
    // sends it back for the next launches.
    let key = MountTemplates::key(&spec);
    let template_ns = key.as_deref().and_then(|k| d.templates.get(k));
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
            let started = d.zygote.launch(spec, fds, flags).await.map_err(internal)?;
            (started, None)
        }
    };
    let exit_pipe = pipe::Receiver::from_owned_fd(exit_r).map_err(|e| internal(e.to_string()))?;
    let mut status =
        pipe::Receiver::from_owned_fd(status_r).map_err(|e| internal(e.to_string()))?;
    let mut bytes = Vec::new();
    if let Err(e) = status.read_to_end(&mut bytes).await {
        return Err((e.to_string(), EXIT_NOT_STARTED, Some(started.exited)));
    }
    match confine::parse_status(&bytes) {
        Ok(report) => {
            if template == Template::Build
                && let (Some(key), Some(sock)) = (key, slot_sock)
                && let Some(ns) = super::zygote::take_template(&sock)
            {
                d.templates.insert(key, ns);
            }
            Ok((started, exit_pipe, report))
        }
        Err(step) => {
            let code = started.exited.await.unwrap_or(EXIT_NOT_STARTED);
            let code = if code == 0 { EXIT_NOT_STARTED } else { code };
            Err((step.to_string(), code, None))
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
