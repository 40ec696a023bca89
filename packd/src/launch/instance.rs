//! One launch, from a request to a running confined process and back: the single path every
//! `pack run` (and later every service and hook) goes through.

use std::time::Duration;

use confine::cgroup::Cgroup;
use confine::{Report, SandboxSpec, Stdio3};
use packfmt::meta::Confinement;

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
    let resolved = d.store.read(|s| super::resolve(s, target))?;
    if resolved.meta.confinement == Confinement::Strict
        && let Some(missing) = d.features.missing_for_strict()
    {
        return Err(Error::Forbidden(format!(
            "cannot run {target}: its confinement is strict and this kernel lacks {missing}; \
             packd never runs a strict app with a layer missing (see 'pack debug sandbox {target}')"
        )));
    }
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
        },
        resolved,
        inv,
    })
}

impl Prepared {
    /// The spec this launch would run, with the cgroup it would get (for `pack debug sandbox`).
    pub fn spec(&self, d: &Daemon) -> Result<SandboxSpec> {
        let mut ctx = self.ctx.clone();
        if let Some(layout) = &d.cgroups {
            let rel = d.next_cgroup(&self.resolved.name, &self.resolved.app);
            ctx.cgroup = Some(Cgroup::at(layout, &rel).dirs());
        }
        super::build_spec(&d.paths, &self.resolved, &self.inv, &ctx)
    }

    /// Creates the cgroup, spawns the sandbox and waits until the app has exec'd. On failure,
    /// the message and the exit code `pack run` should use (125 setup, 126 cannot execute, 127
    /// not found), with nothing left behind.
    pub async fn start(mut self, d: &Daemon, stdio: Stdio3) -> Result<Running, (String, i32)> {
        let fail = |e: Error| (e.to_string(), EXIT_NOT_STARTED);
        let r = &self.resolved;
        let cgroup = match &d.cgroups {
            Some(layout) => {
                let rel = d.next_cgroup(&r.name, &r.app);
                let limits = crate::policy::confinement::limits(&r.meta.apps[&r.app]);
                let cg = Cgroup::create(layout, &rel, &limits).map_err(|e| {
                    fail(Error::Internal(format!(
                        "cannot create the cgroup of {}: {e}",
                        r.name
                    )))
                })?;
                self.ctx.cgroup = Some(cg.dirs());
                Some(cg)
            }
            None => None,
        };
        let mut running = Running {
            child: None,
            cgroup,
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
        match spawn(&d.config.confine_helper, &spec, stdio).await {
            Ok((child, report)) => {
                running.child = Some(child);
                running.report = report;
                tracing::debug!(app = %running.label, ?running.report, "started");
                Ok(running)
            }
            Err((message, code, child)) => {
                if let Some(mut child) = child {
                    let _ = child.wait().await;
                }
                running.cleanup().await;
                Err((message, code))
            }
        }
    }
}

/// A confined app that is running.
pub struct Running {
    child: Option<tokio::process::Child>,
    cgroup: Option<Cgroup>,
    pub label: String,
    /// What the layers reported on the way.
    pub report: Report,
}

impl Running {
    /// The supervisor's pid, for signals.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// Waits for the app; its exit code, or 128 + the signal that ended it.
    pub async fn wait(&mut self) -> i32 {
        match self.child.as_mut() {
            Some(child) => child
                .wait()
                .await
                .map(exit_code)
                .unwrap_or(EXIT_NOT_STARTED),
            None => EXIT_NOT_STARTED,
        }
    }

    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling the supervisor we spawned and still own (not yet reaped).
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Kills whatever is left of the sandbox and removes its cgroup.
    pub async fn cleanup(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        if let Some(cg) = self.cgroup.take() {
            let label = self.label.clone();
            let _ = tokio::task::spawn_blocking(move || {
                cg.kill();
                if let Err(e) = cg.remove(Duration::from_secs(5)) {
                    tracing::warn!(app = %label, error = %e, "cannot remove the sandbox cgroup");
                }
            })
            .await;
        }
    }
}

type SpawnError = (String, i32, Option<tokio::process::Child>);

/// Spawns the helper with the spec and waits for the app's exec.
async fn spawn(
    helper: &std::path::Path,
    spec: &SandboxSpec,
    stdio: Stdio3,
) -> std::result::Result<(tokio::process::Child, Report), SpawnError> {
    let internal = |e: std::io::Error| {
        (
            format!("cannot start the sandbox helper: {e}"),
            EXIT_NOT_STARTED,
            None,
        )
    };
    let (cmd, handoff) = confine::launch::prepare(helper, spec, stdio).map_err(internal)?;
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(internal)?;
    let exec = match handoff.send_spec() {
        Ok(exec) => exec,
        Err(e) => return Err((e.to_string(), EXIT_NOT_STARTED, Some(child))),
    };
    let outcome = tokio::task::spawn_blocking(move || exec.wait()).await;
    match outcome {
        Ok(Ok(report)) => Ok((child, report)),
        Ok(Err(step)) => {
            let code = child
                .wait()
                .await
                .map(exit_code)
                .unwrap_or(EXIT_NOT_STARTED);
            let code = if code == 0 { EXIT_NOT_STARTED } else { code };
            Err((step.to_string(), code, None))
        }
        Err(e) => Err((
            format!("sandbox start crashed: {e}"),
            EXIT_NOT_STARTED,
            Some(child),
        )),
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_NOT_STARTED)
}
