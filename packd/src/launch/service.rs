//! A service's sandbox, for its monitor to run: prepared on the host exactly as an app's
//! launch (the same checks, the same spec), with a cgroup of its own (never a spare: spares
//! are children of the zygote, which dies with packd) and the pack's network namespace named
//! by its pinned path, so that nothing in it depends on the daemon staying up.

use std::path::PathBuf;
use std::time::Duration;

use confine::SandboxSpec;

use super::instance::SandboxCgroup;
use super::{AppRef, Invocation, LaunchError, Launcher, ServiceLaunch};

type Result<T> = std::result::Result<T, LaunchError>;

/// A service's sandbox, ready for its monitor.
pub struct ServiceSandbox {
    pub spec: SandboxSpec,
    /// Where its cgroup is, relative to the hierarchies' roots (`None` without cgroups).
    pub cgroup: Option<PathBuf>,
    /// The pack's network namespace, pinned (for a sandbox with a private network).
    pub net: Option<PathBuf>,
}

impl Launcher {
    /// Prepares `pack.app`'s sandbox as a service: as root, with `service`'s additions. Its
    /// cgroup exists and is registered as the pack's when this returns; [`Self::release`]
    /// takes both down.
    pub fn service_sandbox(
        &self,
        pack: &str,
        app: &str,
        service: ServiceLaunch,
        inv: Invocation,
    ) -> Result<ServiceSandbox> {
        let target = AppRef {
            pack: pack.to_string(),
            app: Some(app.to_string()),
        };
        let mut prepared = self.prepare(&target, inv)?;
        prepared.ctx.service = Some(service);
        let r = &prepared.resolved;
        if let Some(access) = prepared.ctx.granted.grants.socket {
            self.ensure_socket(&r.name, access)?;
        }
        let limits = self.limits_for(r, &prepared.ctx)?;
        let cgroup = match self.cgroups.layout() {
            Ok(_) => {
                let rel = self.next_cgroup();
                let dirs = self.create_cgroup(&rel, &limits, r)?;
                prepared.ctx.cgroup = Some(dirs);
                Some(rel)
            }
            Err(_) => None,
        };
        let spec = match super::build_spec(&self.paths, r, &prepared.inv, &prepared.ctx) {
            Ok(spec) => spec,
            Err(e) => {
                if let Some(rel) = &cgroup {
                    self.release(pack, rel);
                }
                return Err(e);
            }
        };
        let net = if spec.namespaces.net {
            match self.networks.pinned(pack) {
                Ok(path) => Some(path),
                Err(error) => {
                    if let Some(rel) = &cgroup {
                        self.release(pack, rel);
                    }
                    return Err(LaunchError::Network {
                        pack: pack.to_string(),
                        error,
                    });
                }
            }
        } else {
            None
        };
        if let Some(rel) = &cgroup {
            self.sandboxes.insert(rel, pack);
        }
        Ok(ServiceSandbox { spec, cgroup, net })
    }

    /// Records a running service's sandbox (found again after a restart) as `pack`'s.
    pub fn adopt(&self, pack: &str, cgroup: &std::path::Path) {
        self.sandboxes.insert(cgroup, pack);
    }

    /// Kills what is left in a service's cgroup, removes it and forgets it (blocking: a few
    /// seconds at most).
    pub fn release(&self, _pack: &str, cgroup: &std::path::Path) {
        let key = cgroup.to_string_lossy().trim_start_matches('/').to_string();
        self.sandboxes.remove(&key);
        SandboxCgroup::new(self.cgroups.clone(), cgroup.to_path_buf())
            .remove(Duration::from_secs(5));
    }
}

impl Launcher {
    /// The cgroup limits of `r`'s app, with the devices its connections grant.
    pub(super) fn limits_for(
        &self,
        r: &super::Resolved,
        ctx: &super::Context,
    ) -> Result<confine::cgroup::Limits> {
        let app = r.meta.apps.get(&r.app).ok_or_else(|| LaunchError::NoApp {
            pack: r.name.clone(),
            app: r.app.clone(),
            apps: r.meta.apps.keys().cloned().collect(),
        })?;
        let mut limits = crate::policy::confinement::limits(app);
        limits.devices.extend(ctx.granted.devices.iter().cloned());
        Ok(limits)
    }
}

impl Launcher {
    /// Makes a sandbox's cgroup with `limits`. One this system cannot enforce refuses a strict
    /// app, naming the controller and where delegation stopped; a devmode app runs without
    /// the limits that cannot be had, and the log says so.
    pub(super) fn create_cgroup(
        &self,
        rel: &std::path::Path,
        limits: &confine::cgroup::Limits,
        r: &super::Resolved,
    ) -> Result<Vec<PathBuf>> {
        use confine::cgroup::CgroupError;
        let refused = |error| LaunchError::Cgroup {
            target: r.label(),
            error: Box::new(error),
        };
        match self.cgroups.create(rel, limits) {
            Ok(dirs) => Ok(dirs),
            Err(CgroupError::Missing { controllers, .. })
                if r.meta.confinement == packfmt::meta::Confinement::Devmode =>
            {
                tracing::warn!(
                    app = %r.label(),
                    ?controllers,
                    "devmode: running without the cgroup limits this system cannot enforce"
                );
                let mut relaxed = limits.clone();
                for c in controllers {
                    match c {
                        "memory" => relaxed.memory = None,
                        "pids" => relaxed.tasks = None,
                        "cpu" => relaxed.cpu_weight = None,
                        _ => {}
                    }
                }
                self.cgroups.create(rel, &relaxed).map_err(refused)
            }
            Err(error) => Err(refused(error)),
        }
    }
}
