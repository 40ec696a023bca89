//! The launcher: every confined process packd starts goes through here — `pack run`'s apps,
//! hooks, services' sandboxes, `stop-command`s.
//!
//! - [`resolve`]: which app of which revision, on which base;
//! - [`spec`]: what goes into its sandbox, as a `confine::SandboxSpec` (a pure function);
//! - [`granted`]: what its connections grant, checked on the host;
//! - [`instance`]: a launch through the zygote, and the [`instance::Running`] app;
//! - [`service`]: a service's sandbox, for its monitor to run (see `crate::services`);
//! - the machinery that makes launches fast: the zygote ([`zygote`]), spare sandboxes
//!   ([`spares`]), mount templates ([`templates`]), and each pack's network namespace
//!   ([`networks`]), plus the registry of running sandboxes ([`registry`]);
//! - each pack's `/tmp`, a tmpfs per pack and user ([`tmp`]).
//!
//! Cgroups go through the system boundary ([`crate::system::Cgroups`]). The API sockets
//! bound into sandboxes are made by the API, through [`ApiSockets`], which the daemon wires in.

mod env;
mod error;
pub mod granted;
pub mod instance;
mod mounts;
pub mod networks;
pub mod quota;
pub mod registry;
pub mod resolve;
pub mod service;
pub mod spares;
pub mod spec;
pub mod templates;
pub mod tmp;
pub mod zygote;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use interfaces::Socket;

pub use env::{expand, split_command};
pub use error::LaunchError;
pub use resolve::{AppRef, Resolved, resolve, resolve_hook};
pub use spec::{Context, Invocation, ServiceLaunch, build_spec};

use crate::paths::Paths;
use crate::state::Store;
use crate::system::Cgroups;

/// Makes the API socket of a pack (one per access level) listen, and says where it is on the
/// host. Implemented by the API; the launcher calls it before binding the socket's directory
/// into a sandbox.
pub trait ApiSockets: Send + Sync {
    fn ensure(&self, pack: &str, access: Socket) -> Result<PathBuf, LaunchError>;
}

pub struct Launcher {
    pub paths: Paths,
    store: Arc<Store>,
    /// The sandbox layers this kernel offers, probed at start.
    pub features: confine::Features,
    cgroups: Arc<dyn Cgroups>,
    /// Where this daemon's sandbox cgroups live in each hierarchy.
    cgroup_parent: PathBuf,
    /// The host name apps see in their UTS namespace.
    hostname: String,
    zygote: zygote::Zygote,
    spares: spares::Spares,
    pub templates: Arc<templates::MountTemplates>,
    pub networks: Arc<networks::PackNetworks>,
    /// The pack of every running sandbox, by cgroup path.
    pub sandboxes: registry::Sandboxes,
    sockets: OnceLock<Arc<dyn ApiSockets>>,
    launches: AtomicU64,
    /// Why the kernel refused the last strict app's Landlock ruleset, until one is taken
    /// whole again (the kernel may report Landlock and still not enforce a ruleset).
    landlock_refused: std::sync::Mutex<Option<String>>,
    /// The sandboxes each user runs (`pack run`), against [`quota::PER_USER`].
    per_user: quota::UserSandboxes,
    /// Each pack's `/tmp`, per user.
    pub tmps: tmp::PrivateTmps,
}

/// What the launcher is built from.
pub struct LauncherParts {
    pub paths: Paths,
    pub store: Arc<Store>,
    pub features: confine::Features,
    pub cgroups: Arc<dyn Cgroups>,
    pub cgroup_parent: PathBuf,
    pub confine_helper: PathBuf,
    pub networks: Arc<networks::PackNetworks>,
}

impl Launcher {
    /// Starts the zygote. Call from a thread that lives as long as the daemon (the zygote
    /// dies with the thread that started it).
    pub fn start(p: LauncherParts) -> Result<Arc<Launcher>, LaunchError> {
        let zygote = zygote::Zygote::start(p.confine_helper.clone()).map_err(|e| {
            LaunchError::Helper(format!(
                "cannot start the sandbox helper {}: {e}",
                p.confine_helper.display()
            ))
        })?;
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let templates = Arc::new(templates::MountTemplates::default());
        let tmps = tmp::PrivateTmps::new(p.paths.private_tmps(), templates.clone());
        tmps.sweep();
        Ok(Arc::new(Launcher {
            paths: p.paths,
            store: p.store,
            features: p.features,
            cgroups: p.cgroups,
            cgroup_parent: p.cgroup_parent,
            hostname,
            zygote,
            spares: spares::Spares::default(),
            templates,
            networks: p.networks,
            sandboxes: registry::Sandboxes::default(),
            sockets: OnceLock::new(),
            launches: AtomicU64::new(0),
            landlock_refused: std::sync::Mutex::new(None),
            per_user: quota::UserSandboxes::default(),
            tmps,
        }))
    }

    /// Which sandbox layers a strict (or, with `devmode`, a devmode) app gets: what the kernel
    /// offers, corrected by what launches saw (a Landlock ruleset the kernel did not take).
    pub fn layers(&self, devmode: bool) -> Vec<(&'static str, String)> {
        let mut layers = self.features.layers(devmode);
        let refused = self
            .landlock_refused
            .lock()
            .map(|r| r.clone())
            .unwrap_or(None);
        if let (Some(why), false) = (refused, devmode) {
            for (layer, state) in &mut layers {
                if *layer == "landlock" {
                    *state = format!(
                        "refused: strict launches fail until the kernel takes the ruleset ({why})"
                    );
                }
            }
        }
        layers
    }

    /// Learns from a launch's outcome (an app's, a hook's or a service's) whether the kernel
    /// takes Landlock rulesets: one refused marks the layer refused, one taken whole clears it.
    pub fn launched(&self, outcome: Result<&confine::Report, &confine::StepError>) {
        use confine::steps::landlock::Enforcement;
        let seen = match outcome {
            Ok(report) if report.landlock == Some(Enforcement::Full) => None,
            Err(e) if e.step == confine::Step::LandlockNotEnforced => Some(e.message.clone()),
            _ => return,
        };
        if let Ok(mut r) = self.landlock_refused.lock() {
            *r = seen;
        }
    }

    /// Wires in the API's pack sockets (once, at start).
    pub fn set_api_sockets(&self, sockets: Arc<dyn ApiSockets>) {
        let _ = self.sockets.set(sockets);
    }

    fn api_sockets(&self) -> Option<&Arc<dyn ApiSockets>> {
        self.sockets.get()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cgroups(&self) -> &Arc<dyn Cgroups> {
        &self.cgroups
    }

    pub fn cgroup_parent(&self) -> &Path {
        &self.cgroup_parent
    }

    pub fn zygote(&self) -> &zygote::Zygote {
        &self.zygote
    }

    /// A fresh cgroup path for one sandbox: `PARENT/sandbox.N`. The names are neutral because
    /// a spare is made before anyone knows which app will use it, and v2 cannot rename
    /// cgroups. N counts from the daemon's start time, so a restarted daemon never reuses the
    /// name of a sandbox (a service's) that outlived its predecessor.
    pub fn next_cgroup(&self) -> PathBuf {
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        self.cgroup_parent
            .join(format!("sandbox.{}.{n}", self.epoch()))
    }

    /// The daemon's start, in seconds since the epoch (fixed once).
    fn epoch(&self) -> u64 {
        static EPOCH: OnceLock<u64> = OnceLock::new();
        *EPOCH.get_or_init(crate::state::now)
    }

    /// Makes spare sandboxes in the background until [`spares::SPARES`] are ready or being
    /// made: for each, its cgroup (with the device rules every app gets) and a zygote slot
    /// that joins it, unshares the namespaces and reports ready.
    pub fn refill_spares(self: &Arc<Self>) {
        if self.cgroups.layout().is_err() {
            return;
        }
        for _ in 0..self.spares.wanted() {
            let me = self.clone();
            tokio::spawn(async move {
                let spare = me.make_spare().await;
                if let Some(unwanted) = me.spares.made(spare) {
                    // The daemon started stopping meanwhile.
                    let _ = tokio::task::spawn_blocking(move || unwanted.discard()).await;
                }
            });
        }
    }

    async fn make_spare(&self) -> Option<spares::Spare> {
        let rel = self.next_cgroup();
        let limits = crate::policy::confinement::default_limits();
        let made = {
            let (cgroups, rel, limits) = (self.cgroups.clone(), rel.clone(), limits.clone());
            tokio::task::spawn_blocking(move || cgroups.create(&rel, &limits)).await
        };
        let dirs = match made {
            Ok(Ok(dirs)) => dirs,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot prepare a spare cgroup");
                return None;
            }
            Err(_) => return None,
        };
        let cgroup = instance::SandboxCgroup::new(self.cgroups.clone(), rel);
        let frame = confine::proto::Frame {
            cgroup: Some(confine::CgroupJoin { dirs }),
            namespaces: confine::Namespaces::default(),
        };
        let slot = match self.zygote.prepare(frame).await {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare a spare sandbox slot");
                cgroup.remove(Duration::ZERO);
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
            Ok((slot, Ok(()))) => Some(spares::Spare {
                slot,
                cgroup,
                limits,
            }),
            Ok((slot, Err(e))) => {
                tracing::warn!(error = %e, "a spare sandbox slot failed");
                let spare = spares::Spare {
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

    /// A ready spare sandbox for this launch, if there is one.
    pub fn take_spare(&self) -> Option<spares::Spare> {
        self.spares.take()
    }

    /// At daemon stop: no more spares; the ready ones are discarded.
    pub async fn stop(&self) {
        let spares = self.spares.stop();
        let _ = tokio::task::spawn_blocking(move || {
            for spare in spares {
                spare.discard();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
