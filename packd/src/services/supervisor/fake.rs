//! A fake supervisor for the service manager's unit tests: no processes, monitors that say
//! what a test tells them to. Each start gets a [`FakeMonitor`] that answers like a real one:
//! its status first, then `exec` (started), and `SIGTERM` ends it; tests make it crash, exit
//! or fail to start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use confine::proto::{Exec, ExitRecord, MonitorCommand, MonitorEvent, MonitorStatus, Report};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::{MonitorLink, StartRequest, Supervisor, SupervisorError, UnitFiles};

/// How a fake monitor's sandbox behaves when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// It execs and keeps running until told to stop.
    #[default]
    Runs,
    /// It execs and exits at once with this status.
    Exits(i32),
    /// Its sandbox fails to build.
    FailsToStart,
}

/// The test's end of one fake monitor.
#[derive(Clone)]
pub struct FakeMonitor {
    pub name: String,
    pub pid: i32,
    events: mpsc::UnboundedSender<MonitorEvent>,
    pub commands: Arc<Mutex<Vec<MonitorCommand>>>,
    /// Set to make the link panic at its next event (a bug in the supervising task).
    bug: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeMonitor {
    /// The task following this monitor panics, as a bug in it would.
    pub fn break_its_task(&self) {
        self.bug.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.events.send(MonitorEvent::Ready);
    }

    /// The service exits with `code` (and its sandbox goes).
    pub fn exit(&self, code: i32) {
        let _ = self.events.send(MonitorEvent::AppExited { code });
        let _ = self
            .events
            .send(MonitorEvent::Gone(record(&self.name, code)));
    }

    pub fn commands(&self) -> Vec<MonitorCommand> {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn record(name: &str, code: i32) -> ExitRecord {
    ExitRecord {
        name: name.to_string(),
        code,
        app_exit: Some(code),
        exec: Exec::Started {
            report: Report::default(),
        },
        ready: false,
        ended_at: 0,
    }
}

fn status(name: &str, pid: i32, exec: Exec) -> MonitorStatus {
    MonitorStatus {
        name: name.to_string(),
        monitor_pid: pid + 1,
        sandbox_pid: pid,
        exec,
        ready: false,
        app_exit: None,
        lost_lines: 0,
    }
}

struct Link {
    name: String,
    events: mpsc::UnboundedReceiver<MonitorEvent>,
    tx: mpsc::UnboundedSender<MonitorEvent>,
    commands: Arc<Mutex<Vec<MonitorCommand>>>,
    bug: Arc<std::sync::atomic::AtomicBool>,
}

impl MonitorLink for Link {
    fn next(&mut self) -> BoxFuture<'_, Option<MonitorEvent>> {
        Box::pin(async move {
            let event = self.events.recv().await;
            assert!(
                !self.bug.swap(false, std::sync::atomic::Ordering::SeqCst),
                "a bug in the task supervising {} (test)",
                self.name
            );
            event
        })
    }

    fn send(&mut self, command: MonitorCommand) -> std::io::Result<()> {
        if let MonitorCommand::Signal { signal } = command {
            // As a real sandbox: a signal ends it.
            let code = 128 + signal;
            let _ = self.tx.send(MonitorEvent::AppExited { code });
            let _ = self.tx.send(MonitorEvent::Gone(record(&self.name, code)));
        }
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(command);
        Ok(())
    }
}

#[derive(Default)]
pub struct FakeSupervisor {
    /// How the next starts behave (then [`Behaviour::Runs`]).
    pub next: Mutex<Vec<Behaviour>>,
    /// Every monitor started, in order.
    pub started: Mutex<Vec<FakeMonitor>>,
    /// Monitors that outlived an earlier packd, for `attach` to find.
    pending: Mutex<HashMap<String, Link>>,
    next_pid: Mutex<i32>,
}

impl FakeSupervisor {
    fn pid(&self) -> i32 {
        let mut n = self.next_pid.lock().unwrap_or_else(PoisonError::into_inner);
        *n += 10;
        1000 + *n
    }

    fn link(&self, name: &str, exec: Exec) -> (FakeMonitor, Link) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pid = self.pid();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let bug = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _ = tx.send(MonitorEvent::Status(status(name, pid, exec)));
        let monitor = FakeMonitor {
            name: name.to_string(),
            pid,
            events: tx.clone(),
            commands: commands.clone(),
            bug: bug.clone(),
        };
        let link = Link {
            name: name.to_string(),
            events: rx,
            tx,
            commands,
            bug,
        };
        (monitor, link)
    }

    /// Makes a monitor of `name` that has been running since an earlier packd; `attach`
    /// finds it.
    pub fn outlived(&self, name: &str) -> FakeMonitor {
        let exec = Exec::Started {
            report: Report::default(),
        };
        let (monitor, link) = self.link(name, exec);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), link);
        monitor
    }

    pub fn starts(&self) -> usize {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn last(&self) -> FakeMonitor {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .cloned()
            .expect("a monitor was started")
    }
}

impl Supervisor for FakeSupervisor {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start(
        &self,
        req: StartRequest,
    ) -> BoxFuture<'_, Result<Box<dyn MonitorLink>, SupervisorError>> {
        Box::pin(async move {
            let behaviour = {
                let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
                if next.is_empty() {
                    Behaviour::Runs
                } else {
                    next.remove(0)
                }
            };
            let (monitor, link) = self.link(&req.files.name, Exec::Pending);
            match behaviour {
                Behaviour::Runs => {
                    let _ = monitor.events.send(MonitorEvent::Exec(Exec::Started {
                        report: Report::default(),
                    }));
                }
                Behaviour::Exits(code) => {
                    let _ = monitor.events.send(MonitorEvent::Exec(Exec::Started {
                        report: Report::default(),
                    }));
                    monitor.exit(code);
                }
                Behaviour::FailsToStart => {
                    let error = confine::StepError::msg(confine::Step::PivotRoot, "EINVAL");
                    let _ = monitor.events.send(MonitorEvent::Exec(Exec::Failed {
                        error: error.clone(),
                    }));
                    let mut r = record(&req.files.name, 125);
                    r.exec = Exec::Failed { error };
                    r.app_exit = Some(125);
                    let _ = monitor.events.send(MonitorEvent::Gone(r));
                }
            }
            self.started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(monitor);
            Ok(Box::new(link) as Box<dyn MonitorLink>)
        })
    }

    fn attach<'a>(&'a self, files: &'a UnitFiles) -> BoxFuture<'a, Option<Box<dyn MonitorLink>>> {
        Box::pin(async move {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&files.name)
                .map(|l| Box::new(l) as Box<dyn MonitorLink>)
        })
    }

    fn forget<'a>(&'a self, _files: &'a UnitFiles) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
