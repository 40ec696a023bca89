//! Services: apps with `daemon:` in pack.yaml, run by packd itself (there is no systemd to
//! delegate to on these devices) through the same confined launch as every app, one
//! supervising task each.
//!
//! - **Started** means: `simple` once the command has exec'd; `notify` once it sent `READY=1`
//!   on `$NOTIFY_SOCKET` (a datagram socket per service, bound into its `/run`); `oneshot` once
//!   it exited 0 (then shown active, as snapd's `RemainAfterExit`); `forking` once the command
//!   exited 0 with its processes left running (the sandbox stays while any does).
//! - **Restarts** follow `restart-condition` (default on-failure) after `restart-delay`
//!   (default 100 ms); more than [`START_LIMIT`] starts within [`START_WINDOW`] marks the
//!   service failed instead (systemd's start limit), so a crash loop ends.
//! - **Stopping** runs `stop-command` (if any) in its own sandbox, sends SIGTERM, waits up to
//!   `stop-timeout` (default [`STOP_TIMEOUT`]) and then kills the whole cgroup.
//! - Output goes to the service's log ([`logs`]).

pub mod logs;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use packfmt::meta::{App, Daemon as Kind, RestartCondition};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::launch::instance::{self, Running, Stdio3};
use crate::launch::{AppRef, Invocation, ServiceLaunch};

/// Default `restart-delay`.
pub const RESTART_DELAY: Duration = Duration::from_millis(100);
/// Default `stop-timeout`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a service may take to count as started (systemd's default): `READY=1` from a
/// `notify` one, the command's exit for `oneshot` and `forking`.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// At most this many starts within [`START_WINDOW`]…
pub const START_LIMIT: usize = 5;
/// …or the service is marked failed.
pub const START_WINDOW: Duration = Duration::from_secs(10);

/// A service's state, in systemd's (and `snap services`') words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Active {
    Active,
    Activating,
    Deactivating,
    Inactive,
    Failed,
}

impl Active {
    pub fn word(self) -> &'static str {
        match self {
            Active::Active => "active",
            Active::Activating => "activating",
            Active::Deactivating => "deactivating",
            Active::Inactive => "inactive",
            Active::Failed => "failed",
        }
    }
}

type Key = (String, String);

/// One supervised service: its state, and how to ask its task to stop.
struct Unit {
    /// The revision it was started from: a start after a switch of `current` replaces it.
    revision: packfmt::Revision,
    state: watch::Receiver<Active>,
    /// How many times the service was launched (restarts count).
    runs: Arc<std::sync::atomic::AtomicU32>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Services {
    daemon: Mutex<Weak<Daemon>>,
    ready: tokio::sync::Notify,
    units: Mutex<HashMap<Key, Unit>>,
    /// One lock per pack: starts, stops and restarts of a pack's services never interleave
    /// (the engine's tasks, boot, connection changes).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set by [`Services::stop_all`]: nothing starts until [`Services::resume`].
    stopping: std::sync::atomic::AtomicBool,
}

impl Services {
    /// Called once the daemon exists: services can be launched from then on.
    pub fn bind(&self, d: &Arc<Daemon>) {
        *self.daemon.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(d);
        self.ready.notify_waiters();
    }

    async fn daemon(&self) -> Result<Arc<Daemon>> {
        for _ in 0..200 {
            let notified = self.ready.notified();
            if let Some(d) = self
                .daemon
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .upgrade()
            {
                return Ok(d);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        Err(Error::Internal(
            "packd is not ready to start services".into(),
        ))
    }

    fn units(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Unit>> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs hook `hook` of `pack` (see [`run_hook`]).
    pub async fn run_hook(&self, pack: &str, hook: &str) -> Result<()> {
        let d = self.daemon().await?;
        run_hook(&d, pack, hook, HOOK_TIMEOUT).await
    }

    /// Whether this daemon has supervised `pack.app` (it may have stopped since); false after
    /// a restart until it is started again.
    pub fn known(&self, pack: &str, app: &str) -> bool {
        self.units()
            .contains_key(&(pack.to_string(), app.to_string()))
    }

    /// How many times `pack.app` was launched since it was last started (0 when unknown).
    pub fn runs(&self, pack: &str, app: &str) -> u32 {
        self.units()
            .get(&(pack.to_string(), app.to_string()))
            .map_or(0, |u| u.runs.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The state of `pack.app` now.
    pub fn state(&self, pack: &str, app: &str) -> Active {
        self.units()
            .get(&(pack.to_string(), app.to_string()))
            .map_or(Active::Inactive, |u| *u.state.borrow())
    }

    fn lock_for(&self, pack: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pack.to_string())
            .or_default()
            .clone()
    }

    /// Starts `pack`'s services `apps` (all of them when `None`) in dependency order and waits
    /// until each has started. A service already running the current revision is left alone;
    /// one running another revision is replaced. One that cannot start does not keep the
    /// others from starting; the first failure is the error.
    pub async fn start(&self, pack: &str, apps: Option<&[String]>) -> Result<()> {
        self.start_with(pack, apps, false, || true).await
    }

    /// [`Self::start`], all or none: when one cannot start, those this call started are
    /// stopped again (for a change, whose undo then finds things as they were).
    pub async fn start_all_or_none(&self, pack: &str, apps: Option<&[String]>) -> Result<()> {
        self.start_with(pack, apps, true, || true).await
    }

    /// [`Self::start`] of those for which `still()` holds when their turn comes, under the
    /// pack's lock (for boot, which must leave a pack to a change that started meanwhile).
    pub async fn start_if(
        &self,
        pack: &str,
        apps: Option<&[String]>,
        still: impl Fn() -> bool,
    ) -> Result<()> {
        self.start_with(pack, apps, false, still).await
    }

    /// Each service is launched under the pack's lock and waited for without it: a stop (of
    /// the pack, or of everything) can still come in while a slow one starts, and ends that
    /// start.
    async fn start_with(
        &self,
        pack: &str,
        apps: Option<&[String]>,
        all_or_none: bool,
        still: impl Fn() -> bool,
    ) -> Result<()> {
        let d = self.daemon().await?;
        let lock = self.lock_for(pack);
        let mut started: Vec<String> = Vec::new();
        let mut failed = None;
        for app in ordered(&d, pack, apps)? {
            let waiting = {
                let _held = lock.lock().await;
                if self.stopping.load(std::sync::atomic::Ordering::SeqCst) || !still() {
                    break;
                }
                self.launch_unit(&d, pack, &app).await?
            };
            let Some(started_rx) = waiting else {
                continue;
            };
            match Self::wait_started(pack, &app, started_rx).await {
                Ok(()) => started.push(app),
                Err(e) if all_or_none => {
                    for a in started.iter().rev() {
                        let _ = self.stop(pack, Some(std::slice::from_ref(a))).await;
                    }
                    return Err(e);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Stops `pack`'s services `apps` (all when `None`), in reverse dependency order.
    pub async fn stop(&self, pack: &str, apps: Option<&[String]>) -> Result<()> {
        let lock = self.lock_for(pack);
        let _held = lock.lock().await;
        self.stop_locked(pack, apps).await
    }

    async fn stop_locked(&self, pack: &str, apps: Option<&[String]>) -> Result<()> {
        let d = self.daemon().await?;
        let mut order = ordered(&d, pack, apps).unwrap_or_else(|_| self.unit_apps(pack));
        order.reverse();
        for app in order {
            self.stop_one(pack, &app).await;
        }
        Ok(())
    }

    /// Restarts those of `pack`'s services that run now (after a connection change: their
    /// new permissions take effect).
    pub async fn restart_running(&self, pack: &str) -> Result<()> {
        let running = {
            let lock = self.lock_for(pack);
            let _held = lock.lock().await;
            let running = self.running_apps(pack);
            if running.is_empty() {
                return Ok(());
            }
            tracing::info!(pack, apps = ?running, "restarting services for their new permissions");
            self.stop_locked(pack, Some(&running)).await?;
            running
        };
        self.start(pack, Some(&running)).await
    }

    /// Stops then starts `pack`'s services `apps`.
    pub async fn restart(&self, pack: &str, apps: Option<&[String]>) -> Result<()> {
        self.stop(pack, apps).await?;
        self.start(pack, apps).await
    }

    /// Stops every service, dependents first, and keeps any from starting until
    /// [`Self::resume`] (the daemon is stopping, or the system going down). Returns what ran.
    pub async fn stop_all(&self) -> Vec<(String, Vec<String>)> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut ran: Vec<(String, Vec<String>)> = Vec::new();
        // Until none is left: a start under way when this began may add one.
        for _ in 0..10 {
            let units: Vec<Key> = self.units().keys().cloned().collect();
            if units.is_empty() {
                break;
            }
            let mut packs: Vec<String> = units.iter().map(|(p, _)| p.clone()).collect();
            packs.sort();
            packs.dedup();
            for pack in packs {
                let running = self.running_apps(&pack);
                if !running.is_empty() {
                    ran.push((pack.clone(), running));
                }
                // In reverse dependency order when the pack is still known; then whatever is
                // left (a failed service keeps its unit).
                let lock = self.lock_for(&pack);
                let _held = lock.lock().await;
                let _ = self.stop_locked(&pack, None).await;
                for (p, a) in units.iter().filter(|(p, _)| *p == pack) {
                    self.stop_one(p, a).await;
                }
            }
        }
        ran
    }

    /// Lets services start again after [`Self::stop_all`].
    pub fn resume(&self) {
        self.stopping
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn unit_apps(&self, pack: &str) -> Vec<String> {
        let mut apps: Vec<String> = self
            .units()
            .keys()
            .filter(|(p, _)| p == pack)
            .map(|(_, a)| a.clone())
            .collect();
        apps.sort();
        apps
    }

    /// `pack`'s services that run now (active or starting).
    pub fn running_apps(&self, pack: &str) -> Vec<String> {
        let mut apps: Vec<String> = self
            .units()
            .iter()
            .filter(|((p, _), u)| {
                p == pack && matches!(*u.state.borrow(), Active::Active | Active::Activating)
            })
            .map(|((_, a), _)| a.clone())
            .collect();
        apps.sort();
        apps
    }

    /// Starts one service unless it runs the current revision already; whether it started.
    /// Launches one service unless it runs the current revision already (`None` then); what
    /// to wait on for it to have started.
    async fn launch_unit(
        &self,
        d: &Arc<Daemon>,
        pack: &str,
        app: &str,
    ) -> Result<Option<oneshot::Receiver<std::result::Result<(), String>>>> {
        let key = (pack.to_string(), app.to_string());
        let revision = d
            .store
            .read(|s| s.packs.get(pack).map(|p| p.current))
            .ok_or_else(|| Error::pack_not_found(pack))?;
        {
            let units = self.units();
            if let Some(u) = units.get(&key)
                && !u.task.is_finished()
                && u.revision == revision
                && matches!(*u.state.borrow(), Active::Active | Active::Activating)
            {
                return Ok(None);
            }
        }
        self.stop_one(pack, app).await;
        let (state_tx, state_rx) = watch::channel(Active::Activating);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let task = tokio::spawn(supervise(
            d.clone(),
            key.clone(),
            Watchers {
                state: state_tx,
                runs: runs.clone(),
            },
            stop_rx,
            started_tx,
        ));
        self.units().insert(
            key,
            Unit {
                revision,
                state: state_rx,
                runs,
                stop: Some(stop_tx),
                task,
            },
        );
        Ok(Some(started_rx))
    }

    /// Until the service reports it started, or why not.
    async fn wait_started(
        pack: &str,
        app: &str,
        started: oneshot::Receiver<std::result::Result<(), String>>,
    ) -> Result<()> {
        match started.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Service(format!(
                "service {pack}.{app} did not start: {message} (see 'pack logs {pack}.{app}')"
            ))),
            Err(_) => Err(Error::Service(format!(
                "service {pack}.{app} was stopped while it started"
            ))),
        }
    }

    async fn stop_one(&self, pack: &str, app: &str) {
        let unit = self.units().remove(&(pack.to_string(), app.to_string()));
        if let Some(mut unit) = unit {
            if let Some(stop) = unit.stop.take() {
                let _ = stop.send(());
            }
            let _ = unit.task.await;
        }
    }
}

/// The services among `apps` (all when `None`) of `pack`'s current revision, ordered so that
/// each comes after what it is `after` and before what it is `before`.
fn ordered(d: &Daemon, pack: &str, apps: Option<&[String]>) -> Result<Vec<String>> {
    let meta = d
        .store
        .read(|s| s.current_meta(pack).cloned())
        .ok_or_else(|| Error::pack_not_found(pack))?;
    let services: BTreeMap<&String, &App> =
        meta.apps.iter().filter(|(_, a)| a.is_service()).collect();
    if let Some(apps) = apps {
        for a in apps {
            if !services.contains_key(a) {
                return Err(Error::bad(format!(
                    "{pack}.{a} is not a service of {pack}; 'pack services {pack}' lists them"
                )));
            }
        }
    }
    let wanted = |name: &String| apps.is_none_or(|list| list.contains(name));
    Ok(order(&services).into_iter().filter(|n| wanted(n)).collect())
}

/// A start order respecting `after` and `before` (names in alphabetical order otherwise;
/// packfmt refuses cycles and unknown names at install).
fn order(services: &BTreeMap<&String, &App>) -> Vec<String> {
    let mut deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, app) in services {
        let entry = deps.entry(name.as_str()).or_default();
        entry.extend(
            app.after
                .iter()
                .filter(|a| services.contains_key(a))
                .map(String::as_str),
        );
        for b in app.before.iter().filter(|b| services.contains_key(b)) {
            deps.entry(b.as_str()).or_default().push(name.as_str());
        }
    }
    let mut out: Vec<String> = Vec::new();
    while out.len() < deps.len() {
        let next = deps
            .iter()
            .find(|(n, d)| {
                !out.iter().any(|o| o == *n) && d.iter().all(|x| out.iter().any(|o| o == x))
            })
            .map(|(n, _)| n.to_string());
        match next {
            Some(n) => out.push(n),
            // A cycle (refused at install): the rest in name order rather than never.
            None => {
                for n in deps.keys() {
                    if !out.iter().any(|o| o == n) {
                        out.push(n.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Whether `restart-condition` restarts a service that ended with `code` (128 + signal when a
/// signal ended it).
fn restarts(condition: RestartCondition, code: i32) -> bool {
    let signal = (code > 128).then(|| code - 128);
    let clean = code == 0
        || matches!(
            signal,
            Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGPIPE)
        );
    match condition {
        RestartCondition::Never => false,
        RestartCondition::Always => true,
        RestartCondition::OnSuccess => clean,
        RestartCondition::OnFailure => !clean,
        RestartCondition::OnAbnormal => signal.is_some() && !clean,
        RestartCondition::OnAbort => signal.is_some() && !clean,
    }
}

/// How one run of a service ended.
enum Ended {
    /// packd asked it to stop.
    Stopped,
    /// It exited by itself with this code.
    Exited(i32),
}

/// A service's supervising task: start, watch, restart as its `restart-condition` says, stop
/// when asked. Reports the first start's outcome on `started`.
/// What a supervisor reports to the [`Services`] map.
struct Watchers {
    state: watch::Sender<Active>,
    runs: Arc<std::sync::atomic::AtomicU32>,
}

async fn supervise(
    d: Arc<Daemon>,
    key: Key,
    watchers: Watchers,
    mut stop: oneshot::Receiver<()>,
    started: oneshot::Sender<std::result::Result<(), String>>,
) {
    let (pack, app) = (&key.0, &key.1);
    let state = &watchers.state;
    let root = d.paths.root().to_path_buf();
    let mut started = Some(started);
    let mut starts: VecDeque<Instant> = VecDeque::new();
    loop {
        let now = Instant::now();
        starts.retain(|t| now.duration_since(*t) < START_WINDOW);
        if starts.len() >= START_LIMIT {
            let msg = format!(
                "started {START_LIMIT} times within {}s; not restarting (fix it, then 'pack start {pack}.{app}')",
                START_WINDOW.as_secs()
            );
            logs::note(&root, pack, app, &msg);
            tracing::warn!(pack, app, "{msg}");
            let _ = state.send(Active::Failed);
            if let Some(tx) = started.take() {
                let _ = tx.send(Err(msg));
            }
            return;
        }
        starts.push_back(now);
        watchers
            .runs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = state.send(Active::Activating);
        let meta_app = d
            .store
            .read(|s| s.current_meta(pack).and_then(|m| m.apps.get(app).cloned()));
        let Some(meta_app) = meta_app else {
            let _ = state.send(Active::Inactive);
            if let Some(tx) = started.take() {
                let _ = tx.send(Err("it is no longer installed".into()));
            }
            return;
        };
        let ended = run_once(&d, pack, app, &meta_app, state, &mut stop, &mut started).await;
        let code = match ended {
            Ok(Ended::Stopped) => {
                let _ = state.send(Active::Inactive);
                return;
            }
            Ok(Ended::Exited(code)) => code,
            Err(msg) => {
                logs::note(&root, pack, app, &format!("cannot start: {msg}"));
                if let Some(tx) = started.take() {
                    let _ = state.send(Active::Failed);
                    let _ = tx.send(Err(msg));
                    return;
                }
                1
            }
        };
        if !restarts(meta_app.restart_condition, code) {
            let _ = state.send(if code == 0 {
                Active::Inactive
            } else {
                Active::Failed
            });
            // Nothing more to supervise; stopping it is a no-op.
            let _ = stop.await;
            return;
        }
        let delay = meta_app.restart_delay.unwrap_or(RESTART_DELAY);
        logs::note(
            &root,
            pack,
            app,
            &format!("restarting in {} ms", delay.as_millis()),
        );
        let _ = state.send(Active::Activating);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => {
                let _ = state.send(Active::Inactive);
                return;
            }
        }
    }
}

/// One run: launch, wait until started (per its daemon type), then until it ends or is asked
/// to stop.
async fn run_once(
    d: &Arc<Daemon>,
    pack: &str,
    app: &str,
    meta: &App,
    state: &watch::Sender<Active>,
    stop: &mut oneshot::Receiver<()>,
    started: &mut Option<oneshot::Sender<std::result::Result<(), String>>>,
) -> std::result::Result<Ended, String> {
    let root = d.paths.root().to_path_buf();
    let kind = meta.daemon.unwrap_or(Kind::Simple);
    let notify = match kind {
        Kind::Notify => Some(NotifySocket::bind(d, pack, app).map_err(|e| e.to_string())?),
        _ => None,
    };
    let service = ServiceLaunch {
        notify_socket: notify.as_ref().map(|n| n.path.clone()),
        outlive_command: kind == Kind::Forking,
        command: None,
    };
    let mut running = launch(d, pack, app, service).await?;
    logs::note(&root, pack, app, "started");
    // Ready? (A stop asked for meanwhile ends the wait.)
    let ready = async {
        match (kind, &notify) {
            (Kind::Notify, None) => Err("it has no notify socket".to_string()),
            (Kind::Simple, _) => Ok(()),
            (Kind::Notify, Some(n)) => {
                tokio::select! {
                    r = n.ready() => r,
                    code = running.wait() => Err(format!("it exited with status {code} before it was ready")),
                    _ = tokio::time::sleep(START_TIMEOUT) => Err(format!("it sent no READY=1 within {}s", START_TIMEOUT.as_secs())),
                }
            }
            (Kind::Oneshot | Kind::Forking, _) => {
                match tokio::time::timeout(START_TIMEOUT, running.wait()).await {
                    Ok(0) => Ok(()),
                    Ok(code) => Err(format!("its command exited with status {code}")),
                    Err(_) => Err(format!(
                        "its command was still running after {}s",
                        START_TIMEOUT.as_secs()
                    )),
                }
            }
        }
    };
    let ready = tokio::select! {
        r = ready => r,
        _ = &mut *stop => {
            running.cleanup().await;
            logs::note(&root, pack, app, "stopped while starting");
            return Ok(Ended::Stopped);
        }
    };
    if let Err(msg) = ready {
        running.cleanup().await;
        return Err(msg);
    }
    // Nothing reads it after READY=1: closed, so later notifications fail at once rather
    // than fill its queue and block the service.
    drop(notify);
    let _ = state.send(Active::Active);
    if let Some(tx) = started.take() {
        let _ = tx.send(Ok(()));
    }
    let code = tokio::select! {
        code = wait_end(&mut running, kind) => code,
        _ = &mut *stop => {
            let _ = state.send(Active::Deactivating);
            stop_running(d, pack, app, meta, running, kind).await;
            logs::note(&root, pack, app, "stopped");
            return Ok(Ended::Stopped);
        }
    };
    running.cleanup().await;
    logs::note(&root, pack, app, &format!("exited with status {code}"));
    Ok(Ended::Exited(code))
}

/// When the service has ended: the command's exit (the whole sandbox's for `forking`; a
/// `oneshot` stays active until stopped).
async fn wait_end(running: &mut Running, kind: Kind) -> i32 {
    match kind {
        Kind::Forking => running.wait_sandbox().await,
        Kind::Oneshot => std::future::pending().await,
        Kind::Simple | Kind::Notify => running.wait().await,
    }
}

/// `stop-command` in its own sandbox, then SIGTERM, then after `stop-timeout` the whole
/// cgroup is killed.
async fn stop_running(
    d: &Arc<Daemon>,
    pack: &str,
    app: &str,
    meta: &App,
    mut running: Running,
    kind: Kind,
) {
    let timeout = meta.stop_timeout.unwrap_or(STOP_TIMEOUT);
    if let Some(cmd) = &meta.stop_command {
        let service = ServiceLaunch {
            command: Some(cmd.clone()),
            ..ServiceLaunch::default()
        };
        match launch(d, pack, app, service).await {
            Ok(mut stopper) => {
                if tokio::time::timeout(timeout, stopper.wait()).await.is_err() {
                    tracing::warn!(pack, app, "stop-command timed out");
                }
                stopper.cleanup().await;
            }
            Err(e) => tracing::warn!(pack, app, error = %e, "cannot run stop-command"),
        }
    }
    running.signal(libc::SIGTERM);
    let ended = tokio::time::timeout(timeout, async {
        match kind {
            Kind::Forking | Kind::Oneshot => running.wait_sandbox().await,
            _ => running.wait().await,
        }
    })
    .await;
    if ended.is_err() {
        logs::note(
            d.paths.root(),
            pack,
            app,
            &format!("still running {}s after SIGTERM; killed", timeout.as_secs()),
        );
    }
    running.cleanup().await;
}

/// Launches `pack.app` as a service: as root, stdin from /dev/null, stdout and stderr to its
/// log.
async fn launch(
    d: &Arc<Daemon>,
    pack: &str,
    app: &str,
    service: ServiceLaunch,
) -> std::result::Result<Running, String> {
    let target = AppRef {
        pack: pack.to_string(),
        app: Some(app.to_string()),
    };
    let prepared = instance::prepare(d, &target, service_invocation())
        .map_err(|e| e.to_string())?
        .as_service(service);
    let (stdio, _pump) =
        output_pipe(d, pack, app).map_err(|e| format!("cannot set up its log: {e}"))?;
    prepared.start(d, stdio).await.map_err(|(msg, _)| msg)
}

/// How long a hook may run before it is killed and counts as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs hook `hook` of `pack`'s current revision, confined with its plugs, as root, its output
/// in `var/log/packd/PACK.hook.NAME.log`. An error says how it ended and its last lines.
pub async fn run_hook(d: &Arc<Daemon>, pack: &str, hook: &str, timeout: Duration) -> Result<()> {
    let app = crate::launch::hooks::app_name(hook);
    let prepared = instance::prepare_hook(d, pack, hook, service_invocation())?;
    let (stdio, pump) = output_pipe(d, pack, &app)
        .map_err(|e| Error::Service(format!("cannot set up the {hook} hook's log: {e}")))?;
    logs::note(d.paths.root(), pack, &app, "started");
    let mut running = prepared.start(d, stdio).await.map_err(|(msg, _)| {
        Error::Service(format!("the {hook} hook of {pack} did not start: {msg}"))
    })?;
    let code = tokio::time::timeout(timeout, running.wait()).await;
    running.cleanup().await;
    // Its last lines (why it failed, usually) are in the log before it is read.
    let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    let ended = match code {
        Ok(0) => {
            logs::note(d.paths.root(), pack, &app, "exited with status 0");
            return Ok(());
        }
        Ok(code) => format!("exited with status {code}"),
        Err(_) => format!("ran longer than {}s and was killed", timeout.as_secs()),
    };
    logs::note(d.paths.root(), pack, &app, &ended);
    let lines = logs::read(d.paths.root(), &[(pack.to_string(), app.clone())]);
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
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!("; it said: {}", tail.join(" / "))
    };
    Err(Error::Service(format!(
        "the {hook} hook of {pack} {ended}{said}"
    )))
}

/// Services and hooks run as root, with a plain PATH and `/` as working directory.
fn service_invocation() -> Invocation {
    Invocation {
        args: Vec::new(),
        env: BTreeMap::from([(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        )]),
        cwd: PathBuf::from("/"),
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    }
}

/// stdin from /dev/null; stdout and stderr one pipe, pumped into the log (the task ends when
/// the last writer has gone and every line is written).
fn output_pipe(
    d: &Daemon,
    pack: &str,
    app: &str,
) -> std::io::Result<(Stdio3, tokio::task::JoinHandle<()>)> {
    let null = std::fs::File::open("/dev/null")?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
    let path = logs::log_file(d.paths.root(), pack, app);
    let pump = tokio::spawn(logs::pump(reader, path, format!("{pack}.{app}")));
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

/// A `notify` service's socket: `run/packd/notify/NAME.APP.socket` on the host.
struct NotifySocket {
    path: PathBuf,
    sock: tokio::net::UnixDatagram,
}

impl NotifySocket {
    fn bind(d: &Daemon, pack: &str, app: &str) -> std::io::Result<NotifySocket> {
        use std::os::unix::fs::PermissionsExt;
        let dir = d.paths.run_dir().join("notify");
        crate::fsutil::ensure_dir(&dir, 0o700)?;
        let path = dir.join(format!("{pack}.{app}.socket"));
        crate::fsutil::remove_file_if_exists(&path)?;
        let sock = tokio::net::UnixDatagram::bind(&path)?;
        // The service may run as any user of its sandbox; only its sandbox can reach it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(NotifySocket { path, sock })
    }

    /// Until a datagram says `READY=1`.
    async fn ready(&self) -> std::result::Result<(), String> {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = self
                .sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("cannot read its notify socket: {e}"))?;
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.lines().any(|l| l.trim() == "READY=1") {
                return Ok(());
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
