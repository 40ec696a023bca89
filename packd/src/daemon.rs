//! The daemon: start-up (layout, state, remounts, resumed changes), the API server, shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use confine::cgroup::{Cgroup, Layout};

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::launch::networks::PackNetworks;
use crate::launch::spares::{Spare, Spares};
use crate::launch::templates::MountTemplates;
use crate::packs::PackManager;
use crate::paths::Paths;
use crate::state::{Plan, Store};

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
}

pub struct Daemon {
    pub config: Config,
    pub paths: Paths,
    pub store: Arc<Store>,
    pub engine: Engine,
    /// The host name apps see in their UTS namespace.
    pub hostname: String,
    /// The sandbox layers this kernel offers, probed at start.
    pub features: confine::Features,
    /// The cgroup hierarchies, when there are any.
    pub cgroups: Option<Layout>,
    /// Where this daemon's sandbox cgroups live in each hierarchy.
    pub cgroup_parent: PathBuf,
    /// Forks every sandbox.
    pub zygote: crate::launch::zygote::Zygote,
    /// Mount namespaces that launches copy instead of building their file system.
    pub templates: Arc<MountTemplates>,
    /// Each pack's network namespace.
    pub networks: Arc<PackNetworks>,
    /// The pack of every running sandbox, by cgroup name.
    pub sandboxes: crate::launch::registry::Sandboxes,
    /// The services packd supervises.
    pub services: Arc<crate::services::Services>,
    /// The API sockets bound into sandboxes.
    pub pack_sockets: crate::api::sockets::PackSockets,
    /// Sandboxes prepared for the next launches.
    spares: Spares,
    launches: AtomicU64,
}

impl Daemon {
    /// Prepares the layout, loads the state, remounts what should be mounted and resumes
    /// unfinished changes.
    pub fn start(config: Config) -> Result<Arc<Daemon>> {
        let paths = Paths::new(&config.root);
        for (dir, mode) in [
            (paths.lib_dir(), 0o755),
            (paths.blobs_dir(), 0o700),
            (paths.upload_dir(), 0o700),
            (paths.profiles_dir(), 0o700),
            (paths.run_dir(), 0o755),
            (paths.mount_base(), 0o755),
            (paths.bin_dir(), 0o755),
            (paths.root().join("var/pack"), 0o755),
        ] {
            fsutil::ensure_dir(&dir, mode).ctx("create", &dir)?;
        }
        for tool in [&config.pack_binary, &config.confine_helper] {
            if !tool.is_file() {
                return Err(Error::Internal(format!(
                    "{} not found; install it next to packd or pass its path",
                    tool.display()
                )));
            }
        }
        let store = Arc::new(Store::open(&paths.state_file())?);
        let features = crate::testing::hide_layers(confine::Features::probe());
        let cgroups = Layout::detect().ok();
        let cgroup_parent = crate::policy::confinement::cgroup_parent(&config.root);
        if let Some(layout) = &cgroups {
            cleanup_cgroups(layout, &cgroup_parent);
        }
        let parent_file = paths.cgroup_parent_file();
        fsutil::write_atomic(
            &parent_file,
            cgroup_parent.as_os_str().as_encoded_bytes(),
            0o644,
        )
        .ctx("write", &parent_file)?;
        let templates = Arc::new(MountTemplates::default());
        let networks = Arc::new(PackNetworks::default());
        let services = Arc::new(crate::services::Services::default());
        let manager = PackManager {
            services: services.clone(),
            runtime: tokio::runtime::Handle::current(),
            paths: paths.clone(),
            pack_binary: config.pack_binary.clone(),
            apparmor: features.apparmor,
            templates: templates.clone(),
            networks: networks.clone(),
        };
        clean_uploads(&paths, &store);
        if let Err(e) = crate::services::logs::secure(paths.root()) {
            tracing::warn!(error = %e, "cannot make the service logs root's alone");
        }
        // Sockets of a previous run: each is made again when an app that may use it starts.
        let _ = fsutil::remove_tree_if_exists(&paths.pack_sockets_dir());
        let (wanted, active) =
            store.read(|s| (crate::packs::boot_mounts(s), crate::packs::active_links(s)));
        for e in manager.restore(&wanted, &active) {
            tracing::error!(error = %e, "cannot restore an installed pack");
        }
        let revisions = store.read(|s| crate::packs::profiled_revisions(s, &paths));
        let with_grants: Vec<_> = store.read(|s| {
            revisions
                .iter()
                .map(|(name, rev, meta)| {
                    let grants = crate::connections::grants_by_app(s, &paths, name, *rev, meta)
                        .unwrap_or_else(|e| {
                            tracing::error!(pack = %name, error = %e, "cannot work out its connections");
                            Default::default()
                        });
                    (name.clone(), *rev, meta.clone(), grants)
                })
                .collect()
        });
        match crate::packs::profiles::refresh_if_stale(&paths, &with_grants, features.apparmor) {
            Ok(0) => {}
            Ok(n) => tracing::info!(revisions = n, "security profiles rewritten for this packd"),
            Err(e) => tracing::error!(error = %e, "cannot rewrite the security profiles"),
        }
        // The kernel forgets AppArmor profiles at reboot: the current revisions' go back in.
        let current: Vec<_> = revisions
            .into_iter()
            .filter(|(name, rev, _)| active.contains(&(name.clone(), *rev)))
            .collect();
        for e in manager.load_profiles(&current) {
            tracing::error!(error = %e, "cannot load an AppArmor profile");
        }
        let engine = Engine::start(store.clone(), Box::new(manager));
        // Started here, on the thread that lives as long as the daemon (the zygote dies with it).
        let zygote = crate::launch::zygote::Zygote::start(config.confine_helper.clone())
            .ctx("start the sandbox helper", &config.confine_helper)?;
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        Ok(Arc::new(Daemon {
            config,
            paths,
            store,
            engine,
            hostname,
            features,
            cgroups,
            cgroup_parent,
            zygote,
            templates,
            networks,
            pack_sockets: Default::default(),
            sandboxes: Default::default(),
            services,
            spares: Spares::default(),
            launches: AtomicU64::new(0),
        }))
    }

    /// Starts the enabled services of every installed pack (as at boot), in the background:
    /// packs one after another, each in its dependency order. A pack with a change under way
    /// is left to the change.
    pub(crate) fn start_services_at_boot(self: &Arc<Self>) {
        let packs: Vec<String> = self.store.read(|s| s.packs.keys().cloned().collect());
        let me = self.clone();
        tokio::spawn(async move {
            let mut updates = me.store.subscribe();
            let mut waiting = packs;
            // A pack whose change resumed is left to it; its services start once it is done
            // (with whatever revision it left current).
            while !waiting.is_empty() {
                let (ready, busy): (Vec<String>, Vec<String>) = me.store.read(|s| {
                    waiting
                        .iter()
                        .cloned()
                        .partition(|name| s.change_in_progress(name).is_none())
                });
                for pack in ready {
                    let pack_name = pack.clone();
                    let apps = me.store.read(|s| crate::packs::services::enabled(s, &pack));
                    if apps.is_empty() {
                        continue;
                    }
                    // A change that started meanwhile has the pack now.
                    let store = me.store.clone();
                    let idle = move || store.read(|s| s.change_in_progress(&pack_name).is_none());
                    if let Err(e) = me.services.start_if(&pack, Some(&apps), idle).await {
                        tracing::error!(pack, error = %e, "cannot start a service at boot");
                    }
                }
                waiting = busy;
                if !waiting.is_empty() && updates.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// A ready spare sandbox for this launch, if there is one.
    pub fn take_spare(&self) -> Option<Spare> {
        self.spares.take()
    }

    /// Makes spare sandboxes in the background until [`SPARES`](crate::launch::spares::SPARES)
    /// are ready or being made: for each, its cgroup (with the device rules every app gets) and
    /// a zygote slot that joins it, unshares the namespaces and reports ready.
    pub fn refill_spares(self: &Arc<Self>) {
        let Some(layout) = self.cgroups.clone() else {
            return;
        };
        for _ in 0..self.spares.wanted() {
            let me = self.clone();
            let layout = layout.clone();
            tokio::spawn(async move {
                let spare = me.make_spare(layout).await;
                if let Some(unwanted) = me.spares.made(spare) {
                    // The daemon started stopping meanwhile.
                    let _ = tokio::task::spawn_blocking(move || unwanted.discard()).await;
                }
            });
        }
    }

    async fn make_spare(&self, layout: Layout) -> Option<Spare> {
        let rel = self.next_cgroup();
        let limits = crate::policy::confinement::default_limits();
        let made = {
            let limits = limits.clone();
            tokio::task::spawn_blocking(move || Cgroup::create(&layout, &rel, &limits)).await
        };
        let cgroup = match made {
            Ok(Ok(cg)) => cg,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot prepare a spare cgroup");
                return None;
            }
            Err(_) => return None,
        };
        let frame = confine::proto::Frame {
            cgroup: Some(confine::CgroupJoin {
                dirs: cgroup.dirs(),
            }),
            namespaces: confine::Namespaces::default(),
        };
        let slot = match self.zygote.prepare(frame).await {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare a spare sandbox slot");
                let _ = cgroup.remove(Duration::ZERO);
                return None;
            }
        };
        // Ready once it has joined the cgroup and unshared: until then it is no faster than a
        // sandbox built from scratch.
        let ready = tokio::task::spawn_blocking(move || {
            let ready = slot.wait_ready();
            (slot, ready)
        })
        .await;
        match ready {
            Ok((slot, Ok(()))) => Some(Spare {
                slot,
                cgroup,
                limits,
            }),
            Ok((slot, Err(e))) => {
                tracing::warn!(error = %e, "a spare sandbox slot failed");
                let spare = Spare {
                    slot,
                    cgroup,
                    limits,
                };
                let _ = tokio::task::spawn_blocking(move || spare.discard()).await;
                None
            }
            Err(_) => None,
        }
    }

    /// A fresh cgroup path for one sandbox: `PARENT/sandbox.N`. The names are neutral because a
    /// spare is made before anyone knows which app will use it, and v2 cannot rename cgroups.
    pub fn next_cgroup(&self) -> PathBuf {
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        self.cgroup_parent.join(format!("sandbox.{n}"))
    }

    /// Serves the API until SIGTERM or SIGINT, then stops after the task under way.
    pub async fn serve(self: &Arc<Self>) -> Result<()> {
        self.services.bind(self);
        self.refill_spares();
        let socket = &self.config.socket;
        if let Some(dir) = socket.parent() {
            fsutil::ensure_dir(dir, 0o755).ctx("create", dir)?;
        }
        fsutil::remove_file_if_exists(socket).ctx("remove the stale socket", socket)?;
        let listener = UnixListener::bind(socket).ctx("listen on", socket)?;
        // Anyone may connect; what they may do is decided per request from SO_PEERCRED.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
            .ctx("set the mode of", socket)?;
        tracing::info!(socket = %socket.display(), root = %self.paths.root().display(), "packd ready");
        self.start_services_at_boot();
        let mut term = signal(SignalKind::terminate()).ctx("handle SIGTERM for", socket)?;
        let mut int = signal(SignalKind::interrupt()).ctx("handle SIGINT for", socket)?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        crate::api::serve(listener, crate::api::router(self.clone()), shutdown, None).await;
        tracing::info!("stopping");
        self.pack_sockets.stop(self);
        let spares = self.spares.stop();
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.engine.stop()).await;
        // Services stop gracefully (stop-command, SIGTERM, then kill), dependents first.
        self.services.stop_all().await;
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for spare in spares {
                spare.discard();
            }
            // Sandboxes die with the daemon; their cgroups go with it too.
            if let Some(layout) = &me.cgroups
                && let Err(e) = confine::cgroup::remove_tree(layout, &me.cgroup_parent)
            {
                tracing::warn!(error = %e, "cannot remove the sandbox cgroups");
            }
        })
        .await;
        let _ = std::fs::remove_file(socket);
        Ok(())
    }
}

/// Kills and removes the sandbox cgroups a previous run of this daemon left behind (after a
/// crash: sandboxes die with the daemon, their cgroups stay).
fn cleanup_cgroups(layout: &Layout, parent: &std::path::Path) {
    for child in confine::cgroup::children(layout, parent) {
        let cg = Cgroup::at(layout, &parent.join(&child));
        cg.kill();
        if let Err(e) = cg.remove(Duration::from_secs(2)) {
            tracing::warn!(cgroup = %child, error = %e, "cannot remove a leftover cgroup");
        } else {
            tracing::info!(cgroup = %child, "removed a leftover sandbox cgroup");
        }
    }
}

/// Removes staged uploads that no unfinished change refers to (interrupted uploads).
fn clean_uploads(paths: &Paths, store: &Store) {
    let keep: Vec<PathBuf> = store.read(|s| {
        s.changes
            .values()
            .filter_map(|c| match &c.plan {
                Plan::Install { staged, .. } if !c.is_ready() => Some(staged.clone()),
                _ => None,
            })
            .collect()
    });
    let Ok(entries) = std::fs::read_dir(paths.upload_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !keep.contains(&path) {
            tracing::info!(path = %path.display(), "removing an abandoned upload");
            let _ = fsutil::remove_tree_if_exists(&path);
        }
    }
}
