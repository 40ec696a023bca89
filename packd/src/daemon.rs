//! The composition root: builds the system boundary, the state, the managers and the engine,
//! wires them together, and runs the API until SIGTERM. Nothing below imports this module.
//!
//! Start-up, in order: the layout; the state; the pack manager's repairs (remounts, links,
//! profiles); the launcher (zygote); the services that outlived the last packd, taken over
//! (and the cgroups nobody owns any more removed); the engine (unfinished changes resume);
//! the API and the pack sockets; then the enabled services that do not run.
//!
//! Stopping (SIGTERM, SIGINT): the API closes, the engine stops after the task under way, and
//! spare sandboxes go. Services keep running: packd is restarted or upgraded far more often
//! than they should be, and the next packd takes them over.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::api::{Api, sockets::PackSockets};
use crate::connections::ConnectionManager;
use crate::engine::{Engine, Queue, Registry};
use crate::fsutil;
use crate::launch::networks::PackNetworks;
use crate::launch::{Launcher, LauncherParts};
use crate::packs::{PackManager, PackManagerParts};
use crate::paths::Paths;
use crate::profiles::Profiles;
use crate::services::supervisor::Supervisor;
use crate::services::{ServiceManager, ServiceManagerParts};
use crate::state::Store;
use crate::system::{Cgroups, RealCgroups, RealClock, RealMounts};

#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub socket: PathBuf,
    /// The `pack` binary launchers point to.
    pub pack_binary: PathBuf,
    /// The `pack-confine` helper that builds sandboxes.
    pub confine_helper: PathBuf,
    /// Runs reboots and power-offs (`COMMAND reboot|power-off`); `None`: `reboot`/`poweroff`.
    pub system_command: Option<PathBuf>,
    /// Who supervises services.
    pub supervisor: SupervisorChoice,
}

/// Who supervises services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorChoice {
    /// packd's own monitors, forked by its zygote.
    Native,
    /// systemd, through `org.freedesktop.systemd1` on the bus at this address (`None`: the
    /// system bus).
    Systemd { bus: Option<String> },
}

/// Everything the daemon is made of, wired.
pub struct Daemon {
    config: Config,
    paths: Paths,
    engine: Engine,
    api: Arc<Api>,
    sockets: Arc<PackSockets>,
    services: Arc<ServiceManager>,
    launcher: Arc<Launcher>,
}

impl Daemon {
    /// Builds and starts everything but the API (see the module's comment for the order).
    pub async fn start(config: Config) -> anyhow::Result<Daemon> {
        let paths = Paths::new(&config.root);
        make_layout(&paths)?;
        for tool in [&config.pack_binary, &config.confine_helper] {
            if !tool.is_file() {
                anyhow::bail!(
                    "{} not found; install it next to packd or pass its path",
                    tool.display()
                );
            }
        }
        let store = Arc::new(Store::open(&paths.state_file())?);
        let features = crate::testing::hide_layers(confine::Features::probe_with(
            crate::testing::cgroup_layout(),
        ));
        let cgroups: Arc<dyn Cgroups> = Arc::new(RealCgroups::new(
            crate::testing::cgroup_layout().map_err(|e| e.to_string()),
        ));
        let cgroup_parent = crate::policy::confinement::cgroup_parent(&config.root);
        let parent_file = paths.cgroup_parent_file();
        fsutil::write_atomic(
            &parent_file,
            cgroup_parent.as_os_str().as_encoded_bytes(),
            0o644,
        )
        .with_context(|| format!("cannot write {}", parent_file.display()))?;
        // All of this daemon's sandboxes and monitors together stay below a task limit (on
        // their parent cgroup), so that users within their shares cannot use up the host's
        // pids either.
        if cgroups.layout().is_ok() {
            let total = confine::cgroup::Limits {
                tasks: Some(crate::launch::quota::TOTAL_TASKS),
                ..Default::default()
            };
            if let Err(e) = cgroups.create(&cgroup_parent, &total) {
                tracing::warn!(error = %e, "cannot limit the tasks of all sandboxes together");
            }
        }
        if let Err(e) = crate::services::logs::secure(paths.root()) {
            tracing::warn!(error = %e, "cannot make the service logs root's alone");
        }
        let queue = Queue::default();
        let networks = Arc::new(PackNetworks::new(paths.netns_dir()));
        let profiles = Profiles {
            paths: paths.clone(),
            apparmor: features.apparmor,
        };
        let packs = PackManager::new(PackManagerParts {
            paths: paths.clone(),
            store: store.clone(),
            queue: queue.clone(),
            mounts: Arc::new(RealMounts),
            profiles: profiles.clone(),
            pack_binary: config.pack_binary.clone(),
            networks: networks.clone(),
        });
        packs.clean_uploads();
        packs.boot();
        let stores = crate::store::StoreManager::new(paths.clone(), store.clone(), packs.clone())?;
        let launcher = Launcher::start(LauncherParts {
            paths: paths.clone(),
            store: store.clone(),
            features,
            cgroups: cgroups.clone(),
            cgroup_parent: cgroup_parent.clone(),
            confine_helper: config.confine_helper.clone(),
            networks,
        })?;
        let supervisor = make_supervisor(&config, &launcher, &paths).await?;
        let runtime = tokio::runtime::Handle::current();
        let services = ServiceManager::new(ServiceManagerParts {
            store: store.clone(),
            paths: paths.clone(),
            sandboxes: launcher.clone(),
            launcher: Some(launcher.clone()),
            supervisor,
            clock: Arc::new(RealClock),
            runtime: runtime.clone(),
            queue: queue.clone(),
        });
        // The API sockets first: adopted services may use theirs from the moment they are
        // taken over.
        let connections = ConnectionManager::new(
            store.clone(),
            queue.clone(),
            profiles,
            services.clone(),
            runtime,
        );
        let api = Arc::new(Api {
            store: store.clone(),
            paths: paths.clone(),
            socket: config.socket.clone(),
            packs: packs.clone(),
            connections: connections.clone(),
            services: services.clone(),
            launcher: launcher.clone(),
            stores,
            system_command: config.system_command.clone(),
        });
        let sockets = Arc::new(PackSockets::new(api.clone()));
        launcher.set_api_sockets(sockets.clone());
        sockets.restore();
        let alive = services.adopt().await;
        remove_leftover_cgroups(&*cgroups, &cgroup_parent, &alive);
        let mut registry = Registry::default();
        packs.register(&mut registry);
        connections.register(&mut registry);
        services.register(&mut registry);
        {
            // A template must never show, or keep mounted, what a change replaces.
            let templates = launcher.templates.clone();
            registry.around(move || templates.clear());
        }
        let engine = Engine::start(store, registry, queue);
        Ok(Daemon {
            config,
            paths,
            engine,
            api,
            sockets,
            services,
            launcher,
        })
    }

    /// Serves the API until SIGTERM or SIGINT, then stops (leaving the services running).
    pub async fn serve(self) -> anyhow::Result<()> {
        self.launcher.refill_spares();
        let socket = &self.config.socket;
        if let Some(dir) = socket.parent() {
            fsutil::ensure_dir(dir, 0o755)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        fsutil::remove_file_if_exists(socket)
            .with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        // Anyone may connect; what they may do is decided per request from SO_PEERCRED.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
            .with_context(|| format!("cannot set the mode of {}", socket.display()))?;
        tracing::info!(
            socket = %socket.display(),
            root = %self.paths.root().display(),
            supervisor = self.services.supervisor(),
            "packd ready"
        );
        // After a reboot every enabled service starts; after a restart of packd alone, what ran
        // was taken over and what the user stopped stays stopped.
        if first_start_since_boot(&self.paths) {
            self.services.start_at_boot();
        } else {
            tracing::info!("packd restarted: services as they were");
        }
        let auto_refresh = tokio::spawn(self.api.stores.clone().run());
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        crate::api::serve(
            listener,
            crate::api::router(self.api.clone()),
            shutdown,
            None,
        )
        .await;
        tracing::info!("stopping; services keep running");
        auto_refresh.abort();
        self.sockets.stop();
        self.launcher.stop().await;
        let engine = self.engine;
        let _ = tokio::task::spawn_blocking(move || engine.stop()).await;
        let _ = std::fs::remove_file(socket);
        Ok(())
    }
}

/// Whether this is packd's first start since the machine booted: the kernel's boot id differs
/// from the one packd wrote in `run/packd/boot-id` (in `/run`, which a reboot empties anyway).
/// Records the current one.
fn first_start_since_boot(paths: &Paths) -> bool {
    let file = paths.run_dir().join("boot-id");
    let now = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let before = std::fs::read_to_string(&file).unwrap_or_default();
    if let Err(e) = fsutil::write_atomic(&file, now.as_bytes(), 0o644) {
        tracing::warn!(error = %e, "cannot record the boot id; services start as at boot");
        return true;
    }
    now.is_empty() || now != before
}

fn make_layout(paths: &Paths) -> anyhow::Result<()> {
    for (dir, mode) in [
        (paths.lib_dir(), 0o755),
        (paths.blobs_dir(), 0o700),
        (paths.upload_dir(), 0o700),
        (paths.assertions_dir(), 0o755),
        (paths.download_cache(), 0o700),
        (paths.profiles_dir(), 0o700),
        (paths.run_dir(), 0o755),
        (paths.services_dir(), 0o700),
        (paths.pack_sockets_dir(), 0o700),
        (paths.mount_base(), 0o755),
        (paths.bin_dir(), 0o755),
        (paths.root().join("var/pack"), 0o755),
    ] {
        fsutil::ensure_dir(&dir, mode)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

async fn make_supervisor(
    config: &Config,
    launcher: &Arc<Launcher>,
    paths: &Paths,
) -> anyhow::Result<Arc<dyn Supervisor>> {
    Ok(match &config.supervisor {
        SupervisorChoice::Native => Arc::new(
            crate::services::supervisor::native::NativeSupervisor::new(launcher.clone()),
        ),
        SupervisorChoice::Systemd { bus } => Arc::new(
            crate::services::supervisor::systemd::SystemdSupervisor::connect(
                bus.as_deref(),
                config.confine_helper.clone(),
                paths.root(),
            )
            .await?,
        ),
    })
}

/// Kills and removes the cgroups under `parent` that no service took over: sandboxes of a
/// packd that died (its interactive apps died with it; their cgroups stay), spares.
fn remove_leftover_cgroups(
    cgroups: &dyn Cgroups,
    parent: &std::path::Path,
    alive: &std::collections::BTreeSet<PathBuf>,
) {
    for child in cgroups.children(parent) {
        let rel = parent.join(&child);
        if child == crate::services::MONITORS_CGROUP || alive.contains(&rel) {
            continue;
        }
        cgroups.kill(&rel);
        match cgroups.remove(&rel, std::time::Duration::from_secs(2)) {
            Ok(()) => tracing::info!(cgroup = %child, "removed a leftover sandbox cgroup"),
            Err(e) => {
                tracing::warn!(cgroup = %child, error = %e, "cannot remove a leftover cgroup")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::fake::FakeCgroups;

    #[test]
    fn leftovers_go_and_living_services_and_monitors_stay() {
        let cg = FakeCgroups::default();
        let parent = std::path::Path::new("packd/root-1");
        for name in ["sandbox.1.0", "sandbox.1.1", "monitors", "sandbox.2.0"] {
            cg.put(&parent.join(name), &[42]);
        }
        let alive = [parent.join("sandbox.1.1")].into_iter().collect();
        remove_leftover_cgroups(&cg, parent, &alive);
        let left: Vec<_> = cg.existing().into_iter().collect();
        assert_eq!(left, [parent.join("monitors"), parent.join("sandbox.1.1")]);
        assert!(
            cg.calls()
                .contains(&"kill packd/root-1/sandbox.1.0".to_string())
        );
    }
}
