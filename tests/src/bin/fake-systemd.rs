//! A fake `org.freedesktop.systemd1` for the systemd supervisor's end-to-end tests: it owns the
//! name on a private `dbus-daemon` and does, for real, the part of systemd's Manager that packd
//! uses. `StartTransientUnit` checks the unit's name and properties the way systemd does
//! (`ExecStart` as `a(sasb)`, `KillMode`, `CollectMode`), starts `ExecStart` as its own child
//! (it is the monitor's parent, as systemd would be), answers with a job, then sends `JobRemoved`
//! with `done` (as for `Type=simple`, even when the exec then fails: the unit is failed then);
//! a unit whose process exits is collected (`CollectMode=inactive-or-failed`), a failed one
//! kept until `ResetFailedUnit`. `StopUnit` signals the main process (`KillMode=mixed`). On
//! SIGTERM it stops every unit as systemd does at shutdown (SIGTERM, then SIGKILL after 5 s)
//! and exits once they are gone. Every call is written to standard error, as a journal would.
//!
//! Usage: `fake-systemd BUS-ADDRESS`; prints `ready` on standard output once it owns the name.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use zbus::object_server::SignalEmitter;
use zbus::{OwnedObjectPath, OwnedVariant};

#[derive(Debug, Clone, PartialEq)]
enum State {
    Active(u32),
    Failed,
}

#[derive(Default)]
struct Units {
    units: HashMap<String, State>,
    next_job: u32,
}

struct Manager {
    units: Arc<Mutex<Units>>,
}

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnitExists(String),
    NoSuchUnit(String),
    InvalidArgs(String),
}

fn invalid(msg: String) -> Error {
    eprintln!("fake-systemd: refused: {msg}");
    Error::InvalidArgs(msg)
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn subscribe(&self) {}

    async fn start_transient_unit(
        &self,
        name: String,
        mode: String,
        properties: Vec<(String, OwnedVariant)>,
        _aux: Vec<(String, Vec<(String, OwnedVariant)>)>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        eprintln!("fake-systemd: StartTransientUnit {name} {mode}");
        if !name.ends_with(".service") || name.contains('/') {
            return Err(invalid(format!("unit name {name} is not valid")));
        }
        if !["fail", "replace"].contains(&mode.as_str()) {
            return Err(invalid(format!("job mode {mode} is not valid")));
        }
        let mut exec = None;
        for (key, value) in properties {
            match key.as_str() {
                "ExecStart" => {
                    let v: Vec<(String, Vec<String>, bool)> = value
                        .try_into()
                        .map_err(|e| invalid(format!("ExecStart is not a(sasb): {e}")))?;
                    exec = v.into_iter().next();
                }
                "KillMode" | "CollectMode" | "Description" | "Type" => {
                    let s: String = value
                        .try_into()
                        .map_err(|e| invalid(format!("{key} is not a string: {e}")))?;
                    let ok = match key.as_str() {
                        "KillMode" => {
                            ["control-group", "mixed", "process", "none"].contains(&s.as_str())
                        }
                        "CollectMode" => ["inactive", "inactive-or-failed"].contains(&s.as_str()),
                        _ => true,
                    };
                    if !ok {
                        return Err(invalid(format!("{key}={s} is not valid")));
                    }
                }
                other => return Err(invalid(format!("property {other} is not supported"))),
            }
        }
        let Some((path, argv, _ignore)) = exec else {
            return Err(invalid("a service unit needs ExecStart".into()));
        };
        let job = {
            let mut u = self.units.lock().unwrap();
            if let Some(State::Active(_)) = u.units.get(&name) {
                return Err(Error::UnitExists(format!("Unit {name} already exists.")));
            }
            u.next_job += 1;
            u.next_job
        };
        let mut cmd = std::process::Command::new(&path);
        if let Some((arg0, rest)) = argv.split_first() {
            cmd.arg0(arg0).args(rest);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn();
        let job_path = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{job}"))
            .map_err(Error::ZBus)?;
        match child {
            Ok(mut child) => {
                let pid = child.id();
                eprintln!("fake-systemd: {name} runs as {pid}");
                self.units
                    .lock()
                    .unwrap()
                    .units
                    .insert(name.clone(), State::Active(pid));
                let units = self.units.clone();
                let unit = name.clone();
                std::thread::spawn(move || {
                    let status = child.wait();
                    eprintln!("fake-systemd: {unit} ended: {status:?}");
                    let mut u = units.lock().unwrap();
                    // CollectMode=inactive-or-failed, which packd always sets.
                    u.units.remove(&unit);
                });
            }
            Err(e) => {
                eprintln!("fake-systemd: {name}: cannot run {path}: {e}");
                self.units
                    .lock()
                    .unwrap()
                    .units
                    .insert(name.clone(), State::Failed);
            }
        }
        // The reply goes out first, the job's end after it, as systemd sends them.
        let emitter = emitter.to_owned();
        let path = job_path.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            if let Err(e) = Manager::job_removed(&emitter, job, path, name, "done".into()).await {
                eprintln!("fake-systemd: cannot send JobRemoved: {e}");
            }
        });
        Ok(job_path)
    }

    fn reset_failed_unit(&self, name: String) -> Result<(), Error> {
        eprintln!("fake-systemd: ResetFailedUnit {name}");
        let mut u = self.units.lock().unwrap();
        match u.units.get(&name) {
            Some(State::Failed) => {
                u.units.remove(&name);
                Ok(())
            }
            Some(State::Active(_)) => Ok(()),
            None => Err(Error::NoSuchUnit(format!("Unit {name} not loaded."))),
        }
    }

    fn stop_unit(&self, name: String, _mode: String) -> Result<OwnedObjectPath, Error> {
        eprintln!("fake-systemd: StopUnit {name}");
        let mut u = self.units.lock().unwrap();
        match u.units.get(&name) {
            Some(State::Active(pid)) => {
                // KillMode=mixed: SIGTERM to the main process only.
                // SAFETY: kill with a pid of our own child.
                unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
            }
            _ => return Err(Error::NoSuchUnit(format!("Unit {name} not loaded."))),
        }
        u.next_job += 1;
        OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{}", u.next_job))
            .map_err(Error::ZBus)
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(address) = std::env::args().nth(1) else {
        eprintln!("usage: fake-systemd BUS-ADDRESS");
        std::process::exit(2);
    };
    let units = Arc::new(Mutex::new(Units::default()));
    let manager = Manager {
        units: units.clone(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let _conn = zbus::connection::Builder::address(address.as_str())
        .serve_at("/org/freedesktop/systemd1", manager)
        .name("org.freedesktop.systemd1")
        .build()
        .await
        .expect("connect to the bus and own org.freedesktop.systemd1");
    println!("ready");
    term.recv().await;
    shut_down(&units).await;
}

/// Stops every running unit, as systemd does at shutdown: SIGTERM to each main process, then
/// SIGKILL to those still there after 5 s; returns once all are gone (their waiting threads
/// collect them).
async fn shut_down(units: &Mutex<Units>) {
    let running = || -> Vec<u32> {
        units
            .lock()
            .unwrap()
            .units
            .values()
            .filter_map(|s| match s {
                State::Active(pid) => Some(*pid),
                State::Failed => None,
            })
            .collect()
    };
    for (signal, patience) in [(libc::SIGTERM, 5000), (libc::SIGKILL, 5000)] {
        for pid in running() {
            eprintln!("fake-systemd: shutting down: signal {signal} to {pid}");
            // SAFETY: kill with the pid of a child of ours that has not been reaped yet.
            unsafe { libc::kill(pid as i32, signal) };
        }
        for _ in 0..patience / 10 {
            if running().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
