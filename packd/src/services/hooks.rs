//! Hooks and `stop-command`s: short confined runs through the zygote (not monitors: they are
//! part of a change or of a stop, which a restarted packd runs again), as root, their output
//! pumped into the pack's logs.

use std::time::Duration;

use super::unit::Ctx;
use super::{ServiceError, logs};
use crate::launch::instance::{Running, Stdio3};
use crate::launch::{AppRef, LaunchError, ServiceLaunch};

/// How long a hook may run before it is killed and counts as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// stdin from /dev/null; stdout and stderr one pipe, pumped into the log of `pack.app` (the
/// pump ends when the last writer has gone and every line is written).
fn output_pipe(
    ctx: &Ctx,
    pack: &str,
    app: &str,
) -> std::io::Result<(Stdio3, tokio::task::JoinHandle<()>)> {
    let null = std::fs::File::open("/dev/null")?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
    let path = ctx.paths.log_file(pack, app);
    let pump = tokio::spawn(logs::pump(reader, path));
    let stderr = w.try_clone()?;
    Ok((
        Stdio3 {
            stdin: null.into(),
            stdout: w,
            stderr,
            caller_exit: None,
        },
        pump,
    ))
}

/// Runs hook `hook` of `pack`'s current revision, confined with its plugs, as root, its
/// output in `var/log/packd/PACK.hook.NAME.log`. An error says how it ended and its last
/// lines.
pub(super) async fn run_hook(
    ctx: &Ctx,
    pack: &str,
    hook: &str,
    timeout: Duration,
) -> Result<(), ServiceError> {
    let app = crate::policy::hooks::app_name(hook);
    let root = ctx.paths.root();
    let did_not_start = |error: LaunchError| ServiceError::HookDidNotStart {
        hook: hook.to_string(),
        pack: pack.to_string(),
        error: Box::new(error),
    };
    let launcher = launcher(ctx).map_err(did_not_start)?;
    let prepared = launcher
        .prepare_hook(pack, hook, super::service_invocation())
        .map_err(did_not_start)?;
    let (stdio, pump) = output_pipe(ctx, pack, &app)
        .map_err(|e| did_not_start(LaunchError::Helper(format!("cannot set up its log: {e}"))))?;
    logs::note(root, pack, &app, "started");
    let mut running = prepared
        .start(launcher, stdio)
        .await
        .map_err(did_not_start)?;
    let code = tokio::time::timeout(timeout, running.wait()).await;
    running.cleanup().await;
    // Its last lines (why it failed, usually) are in the log before it is read.
    let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    let ended = match code {
        Ok(0) => {
            logs::note(root, pack, &app, "exited with status 0");
            return Ok(());
        }
        Ok(code) => format!("exited with status {code}"),
        Err(_) => format!("ran longer than {}s and was killed", timeout.as_secs()),
    };
    logs::note(root, pack, &app, &ended);
    let lines = logs::read(root, &[(pack.to_string(), app.clone())]);
    let tail: Vec<String> = lines
        .iter()
        .rev()
        .filter(|l| !l.message.starts_with("[packd]"))
        .take(5)
        .map(|l| l.message.clone())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ServiceError::HookFailed {
        hook: hook.to_string(),
        pack: pack.to_string(),
        ended,
        said: tail.join(" / "),
    })
}

/// A service's `stop-command`, in a sandbox of its own, given up to `timeout`.
pub(super) async fn stop_command(ctx: &Ctx, pack: &str, app: &str, cmd: &str, timeout: Duration) {
    let service = ServiceLaunch {
        command: Some(cmd.to_string()),
        ..ServiceLaunch::default()
    };
    let started = start(ctx, pack, app, service).await;
    match started {
        Ok(mut stopper) => {
            if tokio::time::timeout(timeout, stopper.wait()).await.is_err() {
                tracing::warn!(pack, app, "stop-command timed out");
            }
            stopper.cleanup().await;
        }
        Err(e) => tracing::warn!(pack, app, error = %e, "cannot run stop-command"),
    }
}

/// Launches `pack.app` as root through the zygote, stdin from /dev/null, output to its log.
async fn start(
    ctx: &Ctx,
    pack: &str,
    app: &str,
    service: ServiceLaunch,
) -> Result<Running, LaunchError> {
    let target = AppRef {
        pack: pack.to_string(),
        app: Some(app.to_string()),
    };
    let launcher = launcher(ctx)?;
    let prepared = launcher
        .prepare(&target, super::service_invocation())?
        .as_service(service);
    let (stdio, _pump) = output_pipe(ctx, pack, app)
        .map_err(|e| LaunchError::Helper(format!("cannot set up its log: {e}")))?;
    prepared.start(launcher, stdio).await
}

fn launcher(ctx: &Ctx) -> Result<&std::sync::Arc<crate::launch::Launcher>, LaunchError> {
    ctx.launcher
        .as_ref()
        .ok_or_else(|| LaunchError::Helper("this packd runs no sandboxes (a test)".into()))
}
