//! One service's supervising task: start it under a monitor (or take over one that outlived
//! the last packd), watch it through the monitor's events, restart it as its
//! `restart-condition` says, fail it at the start limit and try again later with backoff,
//! stop it when asked.
//!
//! The task owns nothing the service needs to keep running: dropping it (the daemon going
//! away) leaves the monitor and the service as they are.

use std::sync::Arc;
use std::time::Duration;

use confine::proto::{Exec, ExitRecord, MonitorCommand, MonitorEvent, MonitorSpec, MonitorStatus};
use packfmt::Revision;
use packfmt::meta::{App, Daemon as Kind};
use tokio::sync::{mpsc, oneshot, watch};

use super::order::{StartLimit, backoff, restarts};
use super::records::{self, UnitRecord};
use super::supervisor::{MonitorLink, StartRequest, Supervisor, UnitFiles};
use super::{Active, logs};
use crate::launch::{Launcher, ServiceLaunch};

use super::ServiceSandboxes;
use crate::paths::Paths;
use crate::state::Store;
use crate::system::Clock;

/// Default `restart-delay`.
pub const RESTART_DELAY: Duration = Duration::from_millis(100);
/// Default `stop-timeout`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a service may take to count as started (systemd's default): `READY=1` from a
/// `notify` one, the command's exit for `oneshot` and `forking`.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// At most this many starts within [`START_WINDOW`]…
pub const START_LIMIT: usize = 5;
/// …or the service is failed (and tried again after [`BACKOFF_FIRST`], then ever later).
pub const START_WINDOW: Duration = Duration::from_secs(10);
/// The first wait after the start limit; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(30);
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What every unit task shares.
pub(super) struct Ctx {
    pub store: Arc<Store>,
    pub paths: Paths,
    /// Service sandboxes (the launcher; a fake in unit tests).
    pub sandboxes: Arc<dyn ServiceSandboxes>,
    /// Hooks and `stop-command`s run through the launcher's zygote (absent in unit tests).
    pub launcher: Option<Arc<Launcher>>,
    pub supervisor: Arc<dyn Supervisor>,
    pub clock: Arc<dyn Clock>,
    /// Bumped at every change of any service's state.
    pub changed: watch::Sender<u64>,
}

/// A service's state as the rest of packd sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitState {
    pub active: Active,
    /// How many times it was launched (restarts count).
    pub runs: u32,
    /// Its sandbox's supervisor (signals to it reach the service).
    pub pid: Option<i32>,
}

/// Tells the unit's watchers, and everyone waiting on any service, what changed.
pub(super) struct Reporter {
    pub state: watch::Sender<UnitState>,
    pub all: watch::Sender<u64>,
}

impl Reporter {
    fn set(&self, f: impl FnOnce(&mut UnitState)) {
        self.state.send_modify(f);
        self.all.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn active(&self, a: Active) {
        self.set(|s| s.active = a);
    }
}

/// What the manager asks of a unit task. The channel closing (the daemon going away) is not
/// an order: the task then leaves the service alone.
pub(super) enum Order {
    Stop(oneshot::Sender<()>),
}

/// How a unit task begins.
pub(super) enum Begin {
    Launch,
    /// A monitor that outlived the last packd.
    Adopt {
        link: Box<dyn MonitorLink>,
        status: Box<MonitorStatus>,
        record: Box<UnitRecord>,
    },
    /// It ended while packd was away, with this status.
    Ended(i32),
    /// A `oneshot` service that finished while packd was away: active, nothing runs.
    Finished,
}

/// How one run ended.
enum Outcome {
    /// Stopped as asked.
    Stopped,
    /// The daemon is going away: the service is left running.
    Detached,
    /// It could not be started.
    Failed(String),
    /// It ended by itself with this status.
    Exited(i32),
    /// A `oneshot` service finished: active until stopped.
    Finished,
}

pub(super) type StartedTx = oneshot::Sender<Result<(), String>>;

/// One service's task.
pub(super) struct UnitTask {
    pub ctx: Arc<Ctx>,
    pub pack: String,
    pub app: String,
    pub reporter: Reporter,
    pub orders: mpsc::Receiver<Order>,
    /// Told how the first start went.
    pub started: Option<StartedTx>,
}

impl UnitTask {
    fn note(&self, message: &str) {
        logs::note(self.ctx.paths.root(), &self.pack, &self.app, message);
    }

    fn tell_started(&mut self, result: Result<(), String>) {
        if let Some(tx) = self.started.take() {
            let _ = tx.send(result);
        }
    }

    fn meta(&self) -> Option<App> {
        self.ctx.store.read(|s| {
            s.current_meta(&self.pack)
                .and_then(|m| m.apps.get(&self.app).cloned())
        })
    }

    /// Waits for an order; the next thing to do, or `None` when the daemon is going away.
    async fn until_stopped(&mut self) {
        if let Some(Order::Stop(done)) = self.orders.recv().await {
            self.reporter.active(Active::Inactive);
            let _ = done.send(());
        }
    }

    pub async fn run(mut self, begin: Begin) {
        let mut limit = StartLimit::new(START_LIMIT, START_WINDOW);
        let mut attempt = 0u32;
        let mut begin = begin;
        loop {
            let Some(meta) = self.meta() else {
                self.reporter.active(Active::Inactive);
                self.tell_started(Err("it is no longer installed".into()));
                return;
            };
            let outcome = match std::mem::replace(&mut begin, Begin::Launch) {
                Begin::Launch => {
                    if !limit.admit(self.ctx.clock.now()) {
                        let wait = backoff(attempt, BACKOFF_FIRST, BACKOFF_MAX);
                        attempt += 1;
                        let msg = format!(
                            "started {START_LIMIT} times within {}s; not restarting for {}s (fix it, then 'pack start {}.{}')",
                            START_WINDOW.as_secs(),
                            wait.as_secs(),
                            self.pack,
                            self.app
                        );
                        self.note(&msg);
                        tracing::warn!(pack = %self.pack, app = %self.app, "{msg}");
                        self.reporter.active(Active::Failed);
                        self.tell_started(Err(msg));
                        if !self.wait(wait).await {
                            return;
                        }
                        limit.reset();
                        continue;
                    }
                    self.reporter.set(|s| {
                        s.runs += 1;
                        s.active = Active::Activating;
                    });
                    self.launch(&meta).await
                }
                Begin::Adopt {
                    link,
                    status,
                    record,
                } => {
                    tracing::info!(pack = %self.pack, app = %self.app, pid = status.sandbox_pid, "took over a service that outlived the last packd");
                    self.reporter.set(|s| s.runs += 1);
                    let files = UnitFiles::new(&self.ctx.paths, &self.pack, &self.app);
                    self.follow(&meta, files, record.cgroup, link, Some(*status))
                        .await
                }
                Begin::Ended(code) => Outcome::Exited(code),
                Begin::Finished => Outcome::Finished,
            };
            let code = match outcome {
                Outcome::Stopped => {
                    self.reporter.active(Active::Inactive);
                    return;
                }
                Outcome::Detached => return,
                Outcome::Finished => {
                    self.reporter.set(|s| {
                        s.active = Active::Active;
                        s.pid = None;
                    });
                    self.tell_started(Ok(()));
                    self.until_stopped().await;
                    return;
                }
                Outcome::Failed(msg) if self.started.is_some() => {
                    self.reporter.active(Active::Failed);
                    self.tell_started(Err(msg));
                    self.until_stopped().await;
                    return;
                }
                Outcome::Failed(_) => 1,
                Outcome::Exited(code) => code,
            };
            self.reporter.set(|s| s.pid = None);
            if !restarts(meta.restart_condition, code) {
                self.reporter.active(if code == 0 {
                    Active::Inactive
                } else {
                    Active::Failed
                });
                self.tell_started(Err(format!("it exited with status {code}")));
                self.until_stopped().await;
                return;
            }
            let delay = meta.restart_delay.unwrap_or(RESTART_DELAY);
            self.note(&format!("restarting in {} ms", delay.as_millis()));
            self.reporter.active(Active::Activating);
            if !self.wait(delay).await {
                return;
            }
        }
    }

    /// Sleeps `d` unless stopped first; false when stopped (or the daemon goes away).
    async fn wait(&mut self, d: Duration) -> bool {
        let sleep = self.ctx.clock.sleep(d);
        tokio::select! {
            () = sleep => true,
            order = self.orders.recv() => {
                if let Some(Order::Stop(done)) = order {
                    self.reporter.active(Active::Inactive);
                    let _ = done.send(());
                }
                false
            }
        }
    }

    /// A fresh run: the sandbox prepared, recorded, handed to a new monitor.
    async fn launch(&mut self, meta: &App) -> Outcome {
        let kind = meta.daemon.unwrap_or(Kind::Simple);
        let paths = &self.ctx.paths;
        let notify = (kind == Kind::Notify).then(|| paths.notify_socket(&self.pack, &self.app));
        if let Some(dir) = notify.as_ref().and_then(|p| p.parent())
            && let Err(e) = crate::fsutil::ensure_dir(dir, 0o700)
        {
            return self.cannot_start(format!("cannot make {}: {e}", dir.display()));
        }
        let service = ServiceLaunch {
            notify_socket: notify.clone(),
            outlive_command: kind == Kind::Forking,
            command: None,
        };
        let sandboxes = self.ctx.sandboxes.clone();
        let (pack, app) = (self.pack.clone(), self.app.clone());
        let prepared =
            tokio::task::spawn_blocking(move || sandboxes.prepare(&pack, &app, service)).await;
        let sandbox = match prepared {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.cannot_start(e.to_string()),
            Err(e) => return self.cannot_start(format!("the launch crashed: {e}")),
        };
        let files = UnitFiles::new(paths, &self.pack, &self.app);
        files.remove_runtime();
        let revision: Option<Revision> = self
            .ctx
            .store
            .read(|s| s.packs.get(&self.pack).map(|p| p.current));
        let record = UnitRecord {
            pack: self.pack.clone(),
            app: self.app.clone(),
            revision: revision.unwrap_or(Revision::Local(0)),
            cgroup: sandbox.cgroup.clone(),
            supervisor: self.ctx.supervisor.name().to_string(),
            started_at: crate::state::now(),
        };
        if let Err(e) = record.write(&files) {
            self.release(&files, sandbox.cgroup.as_deref()).await;
            return self.cannot_start(e.to_string());
        }
        let monitor = MonitorSpec {
            name: files.name.clone(),
            socket: files.socket.clone(),
            log: paths.log_file(&self.pack, &self.app),
            rotate_at: logs::ROTATE_AT,
            exit_record: files.exit_record.clone(),
            notify,
            net: sandbox.net.clone(),
            cgroup: None,
        };
        let cgroup = sandbox.cgroup.clone();
        let req = StartRequest {
            files: files.clone(),
            sandbox: sandbox.spec,
            monitor,
        };
        match self.ctx.supervisor.start(req).await {
            Ok(link) => self.follow(meta, files, cgroup, link, None).await,
            Err(e) => {
                self.release(&files, cgroup.as_deref()).await;
                self.cannot_start(e.to_string())
            }
        }
    }

    fn cannot_start(&self, why: String) -> Outcome {
        self.note(&format!("cannot start: {why}"));
        Outcome::Failed(why)
    }

    /// The monitor's sandbox is gone (or must go): its cgroup, record and files too.
    async fn release(&self, files: &UnitFiles, cgroup: Option<&std::path::Path>) {
        if let Some(rel) = cgroup {
            let (sandboxes, pack, rel) = (
                self.ctx.sandboxes.clone(),
                self.pack.clone(),
                rel.to_path_buf(),
            );
            let _ = tokio::task::spawn_blocking(move || sandboxes.release(&pack, &rel)).await;
        }
        records::remove(files);
        self.ctx.supervisor.forget(files).await;
    }

    /// Watches one run through its monitor until it ends (or is stopped); `status` is what
    /// an adopted monitor said when packd connected.
    async fn follow(
        &mut self,
        meta: &App,
        files: UnitFiles,
        cgroup: Option<std::path::PathBuf>,
        mut link: Box<dyn MonitorLink>,
        status: Option<MonitorStatus>,
    ) -> Outcome {
        let kind = meta.daemon.unwrap_or(Kind::Simple);
        let mut run = Run::default();
        if let Some(st) = status {
            run.status(&st);
            self.reporter.set(|s| s.pid = Some(st.sandbox_pid));
        }
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        // Until it counts as started.
        while !run.started(kind) {
            if let Some(why) = run.failed(kind) {
                let outcome = self
                    .end(&files, cgroup.as_deref(), &mut link, &mut run)
                    .await;
                return match outcome {
                    Outcome::Exited(_) => Outcome::Failed(why),
                    other => other,
                };
            }
            tokio::select! {
                event = link.next() => match event {
                    Some(e) => self.on_event(&mut run, e),
                    None => run.lost(&files),
                },
                order = self.orders.recv() => {
                    let Some(Order::Stop(done)) = order else { return Outcome::Detached };
                    self.stop(meta, &files, cgroup.as_deref(), &mut link, &mut run).await;
                    self.note("stopped while starting");
                    let _ = done.send(());
                    return Outcome::Stopped;
                }
                () = tokio::time::sleep_until(deadline), if kind != Kind::Simple => {
                    run.timed_out = true;
                }
            }
        }
        if kind == Kind::Oneshot && run.gone.is_some() {
            self.release(&files, cgroup.as_deref()).await;
            return Outcome::Finished;
        }
        self.reporter.active(Active::Active);
        self.tell_started(Ok(()));
        // Until it ends.
        while !run.ended(kind) {
            tokio::select! {
                event = link.next() => match event {
                    Some(e) => self.on_event(&mut run, e),
                    None => run.lost(&files),
                },
                order = self.orders.recv() => {
                    let Some(Order::Stop(done)) = order else { return Outcome::Detached };
                    self.reporter.active(Active::Deactivating);
                    self.stop(meta, &files, cgroup.as_deref(), &mut link, &mut run).await;
                    self.note("stopped");
                    let _ = done.send(());
                    return Outcome::Stopped;
                }
            }
        }
        if kind == Kind::Oneshot {
            self.release(&files, cgroup.as_deref()).await;
            return Outcome::Finished;
        }
        self.end(&files, cgroup.as_deref(), &mut link, &mut run)
            .await
    }

    fn on_event(&self, run: &mut Run, event: MonitorEvent) {
        match &event {
            MonitorEvent::Status(st) => self.reporter.set(|s| s.pid = Some(st.sandbox_pid)),
            MonitorEvent::Exec(exec) => self.ctx.sandboxes.launched(exec),
            MonitorEvent::Gone(record) => self.ctx.sandboxes.launched(&record.exec),
            _ => {}
        }
        run.event(event);
    }

    /// After the run ended (or failed to start): waits for the sandbox to be gone, then
    /// takes down what is left; how it ended.
    async fn end(
        &self,
        files: &UnitFiles,
        cgroup: Option<&std::path::Path>,
        link: &mut Box<dyn MonitorLink>,
        run: &mut Run,
    ) -> Outcome {
        // The sandbox goes once the app has: a moment, except for what a killed init leaves.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while run.gone.is_none() {
                match link.next().await {
                    Some(e) => run.event(e),
                    None => {
                        run.lost(files);
                        break;
                    }
                }
            }
        })
        .await;
        let code = run.code();
        self.release(files, cgroup).await;
        Outcome::Exited(code)
    }

    /// `stop-command` in a sandbox of its own, then SIGTERM through the monitor, then after
    /// `stop-timeout` the whole cgroup is killed.
    async fn stop(
        &self,
        meta: &App,
        files: &UnitFiles,
        cgroup: Option<&std::path::Path>,
        link: &mut Box<dyn MonitorLink>,
        run: &mut Run,
    ) {
        let timeout = meta.stop_timeout.unwrap_or(STOP_TIMEOUT);
        if run.gone.is_none() {
            if let Some(cmd) = &meta.stop_command {
                super::hooks::stop_command(&self.ctx, &self.pack, &self.app, cmd, timeout).await;
            }
            let _ = link.send(MonitorCommand::Signal {
                signal: libc::SIGTERM,
            });
            let gone = tokio::time::timeout(timeout, async {
                while run.gone.is_none() {
                    match link.next().await {
                        Some(e) => run.event(e),
                        None => return,
                    }
                }
            })
            .await;
            if gone.is_err() {
                let _ = link.send(MonitorCommand::Note {
                    message: format!("still running {}s after SIGTERM; killed", timeout.as_secs()),
                });
            }
        }
        self.release(files, cgroup).await;
    }
}

/// What one run's monitor has said so far.
#[derive(Default)]
struct Run {
    exec: Exec,
    ready: bool,
    app_exit: Option<i32>,
    gone: Option<ExitRecord>,
    /// The monitor went away without saying how it ended (killed).
    lost: bool,
    timed_out: bool,
}

impl Run {
    fn status(&mut self, st: &MonitorStatus) {
        self.exec = st.exec.clone();
        self.ready |= st.ready;
        self.app_exit = self.app_exit.or(st.app_exit);
    }

    fn event(&mut self, event: MonitorEvent) {
        match event {
            MonitorEvent::Status(st) => self.status(&st),
            MonitorEvent::Exec(exec) => self.exec = exec,
            MonitorEvent::Ready => self.ready = true,
            MonitorEvent::AppExited { code } => self.app_exit = Some(code),
            MonitorEvent::Gone(record) => {
                self.exec = record.exec.clone();
                self.app_exit = self.app_exit.or(record.app_exit);
                self.gone = Some(record);
            }
        }
    }

    /// The link broke: what the monitor recorded, if it got to.
    fn lost(&mut self, files: &UnitFiles) {
        if self.gone.is_none() {
            match records::exit_record(files) {
                Some(record) => self.event(MonitorEvent::Gone(record)),
                None => self.lost = true,
            }
        }
    }

    fn code(&self) -> i32 {
        match (&self.gone, self.app_exit) {
            (Some(r), _) => r.code,
            (None, Some(code)) => code,
            // The monitor was killed: as systemd says of a unit killed by SIGKILL.
            (None, None) => 128 + libc::SIGKILL,
        }
    }

    fn started(&self, kind: Kind) -> bool {
        let execed = matches!(self.exec, Exec::Started { .. });
        match kind {
            Kind::Simple => execed,
            Kind::Notify => execed && self.ready,
            Kind::Oneshot | Kind::Forking => execed && self.app_exit == Some(0),
        }
    }

    /// Why the run cannot count as started any more, if it cannot.
    fn failed(&self, kind: Kind) -> Option<String> {
        if let Exec::Failed { error } = &self.exec {
            return Some(error.to_string());
        }
        if self.timed_out {
            return Some(match kind {
                Kind::Notify => format!("it sent no READY=1 within {}s", START_TIMEOUT.as_secs()),
                _ => format!(
                    "its command was still running after {}s",
                    START_TIMEOUT.as_secs()
                ),
            });
        }
        match (kind, self.app_exit) {
            (Kind::Notify | Kind::Simple, Some(code)) => {
                Some(format!("it exited with status {code} before it was ready"))
            }
            (Kind::Oneshot | Kind::Forking, Some(code)) if code != 0 => {
                Some(format!("its command exited with status {code}"))
            }
            _ if self.gone.is_some() || self.lost => {
                Some("its sandbox went away before it started".into())
            }
            _ => None,
        }
    }

    fn ended(&self, kind: Kind) -> bool {
        if self.gone.is_some() || self.lost {
            return true;
        }
        match kind {
            Kind::Simple | Kind::Notify => self.app_exit.is_some(),
            Kind::Forking | Kind::Oneshot => false,
        }
    }
}
