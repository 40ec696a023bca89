//! packd's own supervision: the zygote forks each service's monitor. The monitor leaves
//! packd's session and moves into `PARENT/monitors`, out of packd's own cgroup (so stopping
//! packd's unit, where there is one, does not stop the services); when packd goes it is
//! re-parented to init (or the nearest subreaper) and carries on.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{MonitorLink, SocketLink, StartRequest, Supervisor, SupervisorError, UnitFiles};
use crate::launch::Launcher;

pub struct NativeSupervisor {
    launcher: Arc<Launcher>,
    /// The cgroup monitors go to (made at start; `None` without cgroups).
    monitors: Option<Vec<PathBuf>>,
}

impl NativeSupervisor {
    /// Makes the monitors' cgroup (`PARENT/monitors`, no limits) when there are cgroups.
    pub fn new(launcher: Arc<Launcher>) -> NativeSupervisor {
        let rel = launcher
            .cgroup_parent()
            .join(crate::services::MONITORS_CGROUP);
        let monitors = match launcher.cgroups().layout() {
            Ok(_) => match launcher.cgroups().create(&rel, &Default::default()) {
                Ok(dirs) => Some(dirs),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make the monitors' cgroup; they stay in packd's");
                    None
                }
            },
            Err(_) => None,
        };
        NativeSupervisor { launcher, monitors }
    }
}

impl Supervisor for NativeSupervisor {
    fn name(&self) -> &'static str {
        "packd"
    }

    fn start(
        &self,
        mut req: StartRequest,
    ) -> BoxFuture<'_, Result<Box<dyn MonitorLink>, SupervisorError>> {
        Box::pin(async move {
            req.monitor.cgroup = self
                .monitors
                .clone()
                .map(|dirs| confine::CgroupJoin { dirs });
            let socket = req.monitor.socket.clone();
            self.launcher
                .zygote()
                .monitor(req.sandbox, req.monitor)
                .await
                .map_err(SupervisorError::Zygote)?;
            // The zygote bound the socket before it forked the monitor: it answers now.
            let link = SocketLink::connect(&socket)
                .map_err(|source| SupervisorError::Unreachable { socket, source })?;
            Ok(Box::new(link) as Box<dyn MonitorLink>)
        })
    }

    fn attach<'a>(&'a self, files: &'a UnitFiles) -> BoxFuture<'a, Option<Box<dyn MonitorLink>>> {
        Box::pin(async move {
            SocketLink::connect(&files.socket)
                .ok()
                .map(|l| Box::new(l) as Box<dyn MonitorLink>)
        })
    }

    fn forget<'a>(&'a self, _files: &'a UnitFiles) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
