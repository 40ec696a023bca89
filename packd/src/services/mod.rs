//! The service manager: apps with `daemon:` in pack.yaml, each run under a monitor that
//! outlives packd ([`supervisor`]), through the same confined launch as every app.
//!
//! - **Started** means: `simple` once the command has exec'd; `notify` once it sent `READY=1`
//!   on `$NOTIFY_SOCKET`; `oneshot` once it exited 0 (then shown active, as snapd's
//!   `RemainAfterExit`); `forking` once the command exited 0 with its processes left running
//!   (the sandbox stays while any does).
//! - **Restarts** follow `restart-condition` (default on-failure) after `restart-delay`;
//!   more than [`unit::START_LIMIT`] starts within [`unit::START_WINDOW`] fail the service
//!   (systemd's start limit), and it is tried again later, with a doubling backoff.
//! - **Stopping** runs `stop-command` (if any) in its own sandbox, sends SIGTERM, waits up to
//!   `stop-timeout` and then kills the whole cgroup.
//! - **packd going away** (SIGTERM, SIGKILL, an upgrade) leaves every service running; at
//!   start packd takes over the ones still running ([`ServiceManager::adopt`]) and applies
//!   the restart policy to those that ended meanwhile.
//! - Output goes to the service's log, written by its monitor ([`logs`]).
//!
//! Tasks: `start-services`, `stop-services`, `restart-services`, `check-health` and the hook
//! tasks ([`tasks`]).

mod adopt;
mod error;
pub mod hooks;
pub mod logs;
pub mod order;
pub mod records;
pub mod supervisor;
pub mod tasks;
pub mod unit;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use packfmt::Revision;
use packfmt::meta::App;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

pub use error::ServiceError;
pub use unit::UnitState;

use crate::launch::service::ServiceSandbox;
use crate::launch::{Invocation, LaunchError, Launcher, ServiceLaunch};
use crate::paths::Paths;
use crate::state::Store;
use crate::system::Clock;
use supervisor::Supervisor;
use unit::{Begin, Ctx, Order, Reporter, UnitTask};

/// The cgroup (under the daemon's parent) that native monitors live in.
pub const MONITORS_CGROUP: &str = "monitors";

type Result<T> = std::result::Result<T, ServiceError>;

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

/// One supervised service.
struct Unit {
    /// The revision it was started from: a start after a switch of `current` replaces it.
    revision: Revision,
    state: watch::Receiver<UnitState>,
    orders: mpsc::Sender<Order>,
    task: tokio::task::JoinHandle<()>,
}

pub struct ServiceManager {
    ctx: Arc<Ctx>,
    units: Mutex<HashMap<Key, Unit>>,
    /// One lock per pack: starts, stops and restarts of a pack's services never interleave
    /// (the engine's tasks, boot, connection changes).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set by [`ServiceManager::stop_all`]: nothing starts until [`ServiceManager::resume`].
    stopping: AtomicBool,
    /// Task handlers run on the engine's thread; services live on the runtime.
    runtime: tokio::runtime::Handle,
    /// Changes planned here (`pack start|stop|restart`) go to the engine.
    queue: crate::engine::Queue,
    /// Itself, for a unit task that failed to hand its service back ([`Self::recover`]).
    me: std::sync::Weak<ServiceManager>,
}

/// What the service manager needs of the launcher: a service's sandbox, ready for its
/// monitor, and its cgroup taken over or taken down (a trait, so the manager is unit-tested
/// with a fake).
pub trait ServiceSandboxes: Send + Sync {
    fn prepare(
        &self,
        pack: &str,
        app: &str,
        service: ServiceLaunch,
    ) -> std::result::Result<ServiceSandbox, LaunchError>;
    fn adopt(&self, pack: &str, cgroup: &Path);
    fn release(&self, pack: &str, cgroup: &Path);
    /// How far a service's sandbox got (what its monitor reported).
    fn launched(&self, _exec: &confine::proto::Exec) {}
}

impl ServiceSandboxes for Launcher {
    fn prepare(
        &self,
        pack: &str,
        app: &str,
        service: ServiceLaunch,
    ) -> std::result::Result<ServiceSandbox, LaunchError> {
        self.service_sandbox(pack, app, service, service_invocation())
    }

    fn adopt(&self, pack: &str, cgroup: &Path) {
        Launcher::adopt(self, pack, cgroup)
    }

    fn launched(&self, exec: &confine::proto::Exec) {
        match exec {
            confine::proto::Exec::Started { report } => Launcher::launched(self, Ok(report)),
            confine::proto::Exec::Failed { error } => Launcher::launched(self, Err(error)),
            confine::proto::Exec::Pending => {}
        }
    }

    fn release(&self, pack: &str, cgroup: &Path) {
        Launcher::release(self, pack, cgroup)
    }
}

/// Services and hooks run as root, with a plain PATH and `/` as working directory.
pub(crate) fn service_invocation() -> Invocation {
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
        rlimits: Vec::new(),
    }
}

/// What the service manager is built from.
pub struct ServiceManagerParts {
    pub store: Arc<Store>,
    pub paths: Paths,
    pub sandboxes: Arc<dyn ServiceSandboxes>,
    /// For hooks and `stop-command`s (`None` where nothing runs: unit tests).
    pub launcher: Option<Arc<Launcher>>,
    pub supervisor: Arc<dyn Supervisor>,
    pub clock: Arc<dyn Clock>,
    pub runtime: tokio::runtime::Handle,
    pub queue: crate::engine::Queue,
}

impl ServiceManager {
    pub fn new(parts: ServiceManagerParts) -> Arc<Self> {
        let (changed, _) = watch::channel(0);
        let ServiceManagerParts {
            store,
            paths,
            sandboxes,
            launcher,
            supervisor,
            clock,
            runtime,
            queue,
        } = parts;
        Arc::new_cyclic(|me| ServiceManager {
            me: me.clone(),
            ctx: Arc::new(Ctx {
                store,
                paths,
                sandboxes,
                launcher,
                supervisor,
                clock,
                changed,
            }),
            units: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            runtime,
            queue,
        })
    }

    fn units(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Unit>> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes at every change of any service's state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.ctx.changed.subscribe()
    }

    /// `packd` or `systemd`.
    pub fn supervisor(&self) -> &'static str {
        self.ctx.supervisor.name()
    }

    /// Runs hook `hook` of `pack` (see [`hooks::run_hook`]).
    pub async fn run_hook(&self, pack: &str, hook: &str) -> Result<()> {
        hooks::run_hook(&self.ctx, pack, hook, hooks::HOOK_TIMEOUT).await
    }

    fn unit_state(&self, pack: &str, app: &str) -> Option<UnitState> {
        self.units()
            .get(&(pack.to_string(), app.to_string()))
            .map(|u| *u.state.borrow())
    }

    /// Whether this daemon supervises `pack.app` (it may have stopped since).
    pub fn known(&self, pack: &str, app: &str) -> bool {
        self.unit_state(pack, app).is_some()
    }

    /// How many times `pack.app` was launched since it was last started (0 when unknown).
    pub fn runs(&self, pack: &str, app: &str) -> u32 {
        self.unit_state(pack, app).map_or(0, |s| s.runs)
    }

    /// The state of `pack.app` now.
    pub fn state(&self, pack: &str, app: &str) -> Active {
        self.unit_state(pack, app)
            .map_or(Active::Inactive, |s| s.active)
    }

    /// The pid of `pack.app`'s sandbox supervisor, while it runs.
    pub fn pid(&self, pack: &str, app: &str) -> Option<i32> {
        self.unit_state(pack, app).and_then(|s| s.pid)
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
        let lock = self.lock_for(pack);
        let mut started: Vec<String> = Vec::new();
        let mut failed = None;
        for app in self.ordered(pack, apps)? {
            let waiting = {
                let _held = lock.lock().await;
                if self.stopping.load(Ordering::SeqCst) || !still() {
                    break;
                }
                self.launch_unit(pack, &app).await?
            };
            let Some(started_rx) = waiting else {
                continue;
            };
            match wait_started(pack, &app, started_rx).await {
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
        self.stop_locked(pack, apps).await;
        Ok(())
    }

    async fn stop_locked(&self, pack: &str, apps: Option<&[String]>) {
        let mut order = self
            .ordered(pack, apps)
            .unwrap_or_else(|_| self.unit_apps(pack, |_| true));
        order.reverse();
        for app in order {
            self.stop_one(pack, &app).await;
        }
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
            self.stop_locked(pack, Some(&running)).await;
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
    /// [`Self::resume`] (the system is going down). Returns what ran.
    pub async fn stop_all(&self) -> Vec<(String, Vec<String>)> {
        self.stopping.store(true, Ordering::SeqCst);
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
                let lock = self.lock_for(&pack);
                let _held = lock.lock().await;
                self.stop_locked(&pack, None).await;
                // Then whatever is left (a failed service keeps its unit).
                for (p, a) in units.iter().filter(|(p, _)| *p == pack) {
                    self.stop_one(p, a).await;
                }
            }
        }
        ran
    }

    /// Lets services start again after [`Self::stop_all`].
    pub fn resume(&self) {
        self.stopping.store(false, Ordering::SeqCst);
    }

    /// `pack`'s services whose state passes `keep`, sorted.
    fn unit_apps(&self, pack: &str, keep: impl Fn(Active) -> bool) -> Vec<String> {
        let mut apps: Vec<String> = self
            .units()
            .iter()
            .filter(|((p, _), u)| p == pack && keep(u.state.borrow().active))
            .map(|((_, a), _)| a.clone())
            .collect();
        apps.sort();
        apps
    }

    /// `pack`'s services that run now (active or starting).
    pub fn running_apps(&self, pack: &str) -> Vec<String> {
        self.unit_apps(pack, |a| matches!(a, Active::Active | Active::Activating))
    }

    /// Launches one service unless it runs the current revision already (`None` then); what
    /// to wait on for it to have started.
    async fn launch_unit(
        &self,
        pack: &str,
        app: &str,
    ) -> Result<Option<oneshot::Receiver<std::result::Result<(), String>>>> {
        let key = (pack.to_string(), app.to_string());
        let revision = self
            .ctx
            .store
            .read(|s| s.packs.get(pack).map(|p| p.current))
            .ok_or_else(|| ServiceError::PackNotInstalled(pack.to_string()))?;
        {
            let units = self.units();
            if let Some(u) = units.get(&key)
                && !u.task.is_finished()
                && u.revision == revision
                && matches!(u.state.borrow().active, Active::Active | Active::Activating)
            {
                return Ok(None);
            }
        }
        self.stop_one(pack, app).await;
        let (started_tx, started_rx) = oneshot::channel();
        self.spawn_unit(pack, app, revision, Begin::Launch, Some(started_tx));
        Ok(Some(started_rx))
    }

    /// Starts the task of `pack.app` from `begin`.
    fn spawn_unit(
        &self,
        pack: &str,
        app: &str,
        revision: Revision,
        begin: Begin,
        started: Option<unit::StartedTx>,
    ) {
        let (state_tx, state_rx) = watch::channel(UnitState {
            active: Active::Activating,
            runs: 0,
            pid: None,
        });
        let (orders_tx, orders_rx) = mpsc::channel(4);
        let task = UnitTask {
            ctx: self.ctx.clone(),
            pack: pack.to_string(),
            app: app.to_string(),
            reporter: Reporter {
                state: state_tx,
                all: self.ctx.changed.clone(),
            },
            orders: orders_rx,
            started,
        };
        // A task that panics (a bug) must not leave a stale `active` behind: the service is
        // marked failed and taken over again, so that its restart condition applies.
        let (state, all, me) = (
            task.reporter.state.clone(),
            self.ctx.changed.clone(),
            self.me.clone(),
        );
        let key = (pack.to_string(), app.to_string());
        let handle = self.runtime.spawn(async move {
            use futures_util::FutureExt;
            if std::panic::AssertUnwindSafe(task.run(begin))
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(pack = %key.0, app = %key.1, "the task supervising this service failed; taking the service over again");
                state.send_modify(|s| s.active = Active::Failed);
                all.send_modify(|v| *v = v.wrapping_add(1));
                if let Some(me) = me.upgrade() {
                    me.recover(&key.0, &key.1).await;
                }
            }
        });
        self.units().insert(
            (pack.to_string(), app.to_string()),
            Unit {
                revision,
                state: state_rx,
                orders: orders_tx,
                task: handle,
            },
        );
        self.ctx.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn stop_one(&self, pack: &str, app: &str) {
        let unit = self.units().remove(&(pack.to_string(), app.to_string()));
        if let Some(unit) = unit {
            let (done_tx, done_rx) = oneshot::channel();
            if unit.orders.send(Order::Stop(done_tx)).await.is_ok() {
                let _ = done_rx.await;
            }
            let _ = unit.task.await;
            self.ctx.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The services among `apps` (all when `None`) of `pack`'s current revision, ordered so
    /// that each comes after what it is `after` and before what it is `before`.
    fn ordered(&self, pack: &str, apps: Option<&[String]>) -> Result<Vec<String>> {
        let meta = self
            .ctx
            .store
            .read(|s| s.current_meta(pack).cloned())
            .ok_or_else(|| ServiceError::PackNotInstalled(pack.to_string()))?;
        let services: BTreeMap<&String, &App> =
            meta.apps.iter().filter(|(_, a)| a.is_service()).collect();
        if let Some(apps) = apps {
            for a in apps {
                if !services.contains_key(a) {
                    return Err(ServiceError::NotAService {
                        pack: pack.to_string(),
                        app: a.clone(),
                    });
                }
            }
        }
        let wanted = |name: &String| apps.is_none_or(|list| list.contains(name));
        Ok(order::order(&services)
            .into_iter()
            .filter(|n| wanted(n))
            .collect())
    }

    /// Blocks on a service future from the engine's thread.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

/// Until the service reports it started, or why not.
async fn wait_started(
    pack: &str,
    app: &str,
    started: oneshot::Receiver<std::result::Result<(), String>>,
) -> Result<()> {
    match started.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(ServiceError::DidNotStart {
            pack: pack.to_string(),
            app: app.to_string(),
            why,
        }),
        Err(_) => Err(ServiceError::StoppedWhileStarting {
            pack: pack.to_string(),
            app: app.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
