//! Supervision by systemd: each service's monitor runs as a transient unit,
//! `packd-PACK.APP.service` (`packd-HASH-PACK.APP.service` for a daemon on another root than
//! `/`, so that several never share a name), started through `org.freedesktop.systemd1` on
//! D-Bus. systemd is the monitor's parent, so it outlives packd as it does under native
//! supervision; packd talks to it on the same control socket either way.
//!
//! The unit runs `pack-confine --monitor SPEC` (the spec file holds the monitor's and the
//! sandbox's specs), `KillMode=mixed` (a `systemctl stop` sends SIGTERM to the monitor alone,
//! which stops the sandbox; the sandbox's cgroup is packd's, outside the unit's),
//! `CollectMode=inactive-or-failed` (an ended unit leaves nothing behind;
//! [`Supervisor::forget`] resets one that failed anyway). packd stops a service through the
//! monitor, never through systemd, so both backends stop the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use sha3::{Digest, Sha3_256};
use zbus::{OwnedObjectPath, Variant};

use super::{MonitorLink, SocketLink, StartRequest, Supervisor, SupervisorError, UnitFiles};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// Asks for signals (systemd sends `JobRemoved` only to subscribers).
    fn subscribe(&self) -> zbus::Result<()>;

    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Variant<'_>)],
        aux: &[(&str, &[(&str, Variant<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// How long systemd may take to run a start job, and the monitor to answer after it.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one D-Bus call may take.
const METHOD_TIMEOUT: Duration = Duration::from_secs(25);

pub struct SystemdSupervisor {
    manager: ManagerProxy<'static>,
    /// `pack-confine`, which the unit runs as `--monitor SPEC`.
    helper: PathBuf,
    /// `packd-` or `packd-HASH-`: what every unit name of this daemon starts with.
    prefix: String,
}

impl SystemdSupervisor {
    /// Connects to systemd on the bus at `address` (the system bus when `None`).
    pub async fn connect(
        address: Option<&str>,
        helper: PathBuf,
        root: &Path,
    ) -> Result<SystemdSupervisor, SupervisorError> {
        let fail = |source| SupervisorError::Bus {
            bus: address.unwrap_or("the system bus").to_string(),
            source,
        };
        let builder = match address {
            Some(a) => zbus::connection::Builder::address(a),
            None => zbus::connection::Builder::system(),
        };
        // A systemd that stops answering must not hang a service's start (or packd's).
        let conn = builder
            .method_timeout(METHOD_TIMEOUT)
            .build()
            .await
            .map_err(fail)?;
        let manager = ManagerProxy::new(&conn).await.map_err(fail)?;
        manager.subscribe().await.map_err(fail)?;
        Ok(SystemdSupervisor {
            manager,
            helper,
            prefix: unit_prefix(root),
        })
    }

    /// The unit of the service `files` names.
    pub fn unit_name(&self, files: &UnitFiles) -> String {
        format!("{}{}.service", self.prefix, files.name)
    }

    async fn start_unit(&self, unit: &str, spec: &Path) -> Result<(), SupervisorError> {
        let fail = |source| SupervisorError::Start {
            unit: unit.to_string(),
            source,
        };
        let helper = self.helper.to_string_lossy().into_owned();
        let exec: Vec<(String, Vec<String>, bool)> = vec![(
            helper.clone(),
            vec![
                helper,
                "--monitor".into(),
                spec.to_string_lossy().into_owned(),
            ],
            false,
        )];
        let description = format!("packd service {}", unit_service(unit, &self.prefix));
        let properties: Vec<(&str, Variant<'_>)> = vec![
            ("Description", Variant::new(description.as_str())),
            ("ExecStart", Variant::new(exec)),
            ("KillMode", Variant::new("mixed")),
            ("CollectMode", Variant::new("inactive-or-failed")),
        ];
        // Subscribed before asking, so that the job's end cannot be missed; to this unit's
        // jobs only (the bus filters), so that other units' signals never fill the queue
        // while nobody reads it.
        let mut removed = self
            .manager
            .receive_job_removed_with_args(&[(2, unit)])
            .await
            .map_err(fail)?;
        let mut tries = 0;
        let job = loop {
            match self
                .manager
                .start_transient_unit(unit, "fail", &properties, &[])
                .await
            {
                Ok(job) => break job,
                // The last run's unit is still being collected: reset it, try again.
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str() == "org.freedesktop.systemd1.UnitExists" && tries < 20 =>
                {
                    tries += 1;
                    let _ = self.manager.reset_failed_unit(unit).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(fail(e)),
            }
        };
        let result = tokio::time::timeout(JOB_TIMEOUT, async {
            while let Some(signal) = removed.next().await {
                if let Ok(args) = signal.args()
                    && args.job == job
                {
                    return Some(args.result.clone());
                }
            }
            None
        })
        .await;
        match result {
            Ok(Some(r)) if r == "done" => Ok(()),
            Ok(Some(result)) => Err(SupervisorError::Job {
                unit: unit.to_string(),
                result,
            }),
            Ok(None) => Err(SupervisorError::Lost {
                unit: unit.to_string(),
            }),
            Err(_) => Err(SupervisorError::JobTimeout {
                unit: unit.to_string(),
                timeout: JOB_TIMEOUT,
            }),
        }
    }
}

/// `packd-` for the root `/`, `packd-HASH-` (12 hex digits of the root's SHA3-256) otherwise.
fn unit_prefix(root: &Path) -> String {
    if root == Path::new("/") {
        return "packd-".into();
    }
    let digest = Sha3_256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("packd-{hex}-")
}

/// `PACK.APP` back from a unit name.
fn unit_service<'a>(unit: &'a str, prefix: &str) -> &'a str {
    unit.strip_prefix(prefix)
        .and_then(|u| u.strip_suffix(".service"))
        .unwrap_or(unit)
}

impl Supervisor for SystemdSupervisor {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn start(
        &self,
        req: StartRequest,
    ) -> BoxFuture<'_, Result<Box<dyn MonitorLink>, SupervisorError>> {
        Box::pin(async move {
            #[derive(serde::Serialize)]
            struct Both<'a> {
                monitor: &'a confine::proto::MonitorSpec,
                sandbox: &'a confine::SandboxSpec,
            }
            let spec = &req.files.spec;
            let bytes = serde_json::to_vec(&Both {
                monitor: &req.monitor,
                sandbox: &req.sandbox,
            })
            .map_err(|e| SupervisorError::Spec {
                path: spec.clone(),
                source: e.into(),
            })?;
            write_private(spec, &bytes).map_err(|source| SupervisorError::Spec {
                path: spec.clone(),
                source,
            })?;
            // The record of an earlier run would mislead (that run was dealt with before this
            // start). Its socket stays: the new monitor replaces it as it binds, and if the
            // unit is still running, its monitor must stay reachable.
            let _ = std::fs::remove_file(&req.files.exit_record);
            let unit = self.unit_name(&req.files);
            self.start_unit(&unit, spec).await?;
            // The monitor binds its socket once it runs: wait for it to answer, or for the
            // record it leaves when the sandbox is gone (an app that ended at once may take
            // its monitor with it before packd got there).
            let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
            loop {
                match SocketLink::connect(&req.monitor.socket) {
                    Ok(link) => return Ok(Box::new(link) as Box<dyn MonitorLink>),
                    Err(_) if req.files.exit_record.exists() => {
                        return Ok(Box::new(Ended) as Box<dyn MonitorLink>);
                    }
                    Err(source) if tokio::time::Instant::now() >= deadline => {
                        return Err(SupervisorError::Silent {
                            unit,
                            socket: req.monitor.socket.clone(),
                            timeout: ANSWER_TIMEOUT,
                            source,
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
    }

    fn attach<'a>(&'a self, files: &'a UnitFiles) -> BoxFuture<'a, Option<Box<dyn MonitorLink>>> {
        Box::pin(async move {
            SocketLink::connect(&files.socket)
                .ok()
                .map(|l| Box::new(l) as Box<dyn MonitorLink>)
        })
    }

    fn forget<'a>(&'a self, files: &'a UnitFiles) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let unit = self.unit_name(files);
            // Nothing to reset is the usual answer (the unit was collected).
            if let Err(e) = self.manager.reset_failed_unit(&unit).await {
                tracing::debug!(unit, error = %e, "reset-failed");
            }
        })
    }
}

/// The link to a monitor that was gone before packd reached it: no events (the service
/// manager then reads the monitor's exit record).
struct Ended;

impl MonitorLink for Ended {
    fn next(&mut self) -> BoxFuture<'_, Option<confine::proto::MonitorEvent>> {
        Box::pin(async { None })
    }

    fn send(&mut self, _command: confine::proto::MonitorCommand) -> std::io::Result<()> {
        Err(std::io::ErrorKind::NotConnected.into())
    }
}

/// Writes `bytes` to `path` (mode 0600, replaced atomically: the spec names what the sandbox
/// may see).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_unique_per_root_and_stable() {
        assert_eq!(unit_prefix(Path::new("/")), "packd-");
        let a = unit_prefix(Path::new("/tmp/a"));
        assert_ne!(a, unit_prefix(Path::new("/tmp/b")));
        assert_eq!(a, unit_prefix(Path::new("/tmp/a")));
        assert_eq!(a.len(), "packd-".len() + 13);
        assert_eq!(
            unit_service(&format!("{a}web.server.service"), &a),
            "web.server"
        );
    }
}
