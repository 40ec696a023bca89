//! What the running kernel offers, layer by layer, so that the daemon can say which layers are
//! active (`pack debug sandbox`) and refuse a strict launch when one is missing.

use serde::{Deserialize, Serialize};

use crate::cgroup::Layout;
use crate::steps::{apparmor, landlock};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Features {
    /// The cgroup layout, or why there is none.
    pub cgroups: Result<String, String>,
    /// The controllers limits go through.
    pub cgroup_controllers: Vec<String>,
    /// The Landlock ABI (0: absent or disabled).
    pub landlock_abi: i32,
    pub seccomp: bool,
    pub apparmor: bool,
}

impl Features {
    pub fn probe() -> Features {
        Self::probe_with(Layout::detect())
    }

    /// The features of this kernel, with `layout` as its cgroups.
    pub fn probe_with(layout: Result<Layout, crate::cgroup::CgroupError>) -> Features {
        Features {
            cgroup_controllers: layout.as_ref().map(Layout::controllers).unwrap_or_default(),
            cgroups: layout
                .as_ref()
                .map(|l| l.name().to_string())
                .map_err(|e| e.to_string()),
            landlock_abi: landlock::kernel_abi(),
            seccomp: seccomp_available(),
            apparmor: apparmor::available(),
        }
    }

    /// One line per layer: `active ...` or `unavailable: why`.
    pub fn layers(&self, devmode: bool) -> Vec<(&'static str, String)> {
        let dev = |s: &str| {
            if devmode {
                format!("{s} (devmode: logs instead of denying)")
            } else {
                s.to_string()
            }
        };
        vec![
            (
                "namespaces",
                "active: mount, pid, ipc, uts, cgroup, network".to_string(),
            ),
            (
                "cgroups",
                match &self.cgroups {
                    Ok(layout) => {
                        format!("active: {layout}; {}", self.cgroup_controllers.join(", "))
                    }
                    Err(e) => format!("unavailable: {e}"),
                },
            ),
            (
                "capabilities",
                if devmode {
                    "kept (devmode)".into()
                } else {
                    "active: all dropped but what interfaces grant; no_new_privs".into()
                },
            ),
            (
                "landlock",
                match (self.landlock_abi, devmode) {
                    (0, _) => "unavailable: this kernel has no Landlock (or it is disabled)".into(),
                    (_, true) => "not applied (devmode)".into(),
                    (abi, false) if abi < landlock::PINNED_ABI as i32 => format!(
                        "unavailable: kernel ABI {abi}, older than the ABI {} strict apps need (their launch is refused)",
                        landlock::PINNED_ABI as i32
                    ),
                    (abi, false) => format!(
                        "active: kernel ABI {abi}, rules pinned to ABI {}, fully enforced or the launch is refused",
                        landlock::PINNED_ABI as i32
                    ),
                },
            ),
            (
                "seccomp",
                if self.seccomp {
                    dev("active: default-deny allowlist, EPERM")
                } else {
                    "unavailable: this kernel has no seccomp filters".into()
                },
            ),
            (
                "apparmor",
                if self.apparmor {
                    dev("active")
                } else {
                    "unavailable: this kernel has no AppArmor".into()
                },
            ),
        ]
    }

    /// The first layer a strict app requires that this kernel lacks. AppArmor is not required:
    /// many kernels (this project's CI among them) have none, and the other layers stand alone.
    /// The cgroup controllers an app's limits need are checked when its cgroup is made (they
    /// depend on the app, and on what the parent cgroup delegated): a missing one refuses the
    /// launch there, naming it.
    pub fn missing_for_strict(&self) -> Option<String> {
        if let Err(e) = &self.cgroups {
            return Some(format!("cgroups ({e})"));
        }
        if self.landlock_abi == 0 {
            return Some("Landlock".into());
        }
        if self.landlock_abi < landlock::PINNED_ABI as i32 {
            return Some(format!(
                "Landlock ABI {} (it has ABI {}, which cannot enforce all of a strict app's rules)",
                landlock::PINNED_ABI as i32,
                self.landlock_abi
            ));
        }
        if !self.seccomp {
            return Some("seccomp".into());
        }
        None
    }
}

fn seccomp_available() -> bool {
    // PR_GET_SECCOMP answers 0 (not filtered yet) or 2 (filtered) when filters are supported.
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    rc >= 0 && std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Features {
        Features {
            cgroups: Ok("hybrid".into()),
            cgroup_controllers: vec![
                "memory".into(),
                "pids".into(),
                "cpu".into(),
                "devices".into(),
            ],
            landlock_abi: 7,
            seccomp: true,
            apparmor: false,
        }
    }

    #[test]
    fn strict_needs_everything_but_apparmor() {
        assert_eq!(full().missing_for_strict(), None);
        let mut f = full();
        f.landlock_abi = 0;
        assert_eq!(f.missing_for_strict().as_deref(), Some("Landlock"));
        let mut f = full();
        f.landlock_abi = 3;
        assert!(
            f.missing_for_strict()
                .is_some_and(|m| m.starts_with("Landlock ABI 6 (it has ABI 3")),
            "{f:?}"
        );
        let mut f = full();
        f.cgroups = Err("none mounted".into());
        assert_eq!(
            f.missing_for_strict().as_deref(),
            Some("cgroups (none mounted)")
        );
    }

    #[test]
    fn layers_say_what_is_active_and_why_not() {
        let layers = full().layers(false);
        let get = |name| layers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get("apparmor"), "unavailable: this kernel has no AppArmor");
        assert!(get("landlock").starts_with("active: kernel ABI 7"));
        let dev = full().layers(true);
        assert!(
            dev.iter()
                .any(|(n, s)| *n == "seccomp" && s.contains("devmode"))
        );
    }

    #[test]
    fn this_kernel_is_probed() {
        let f = Features::probe();
        // CI's kernel has every layer but AppArmor; elsewhere the probe must at least not fail.
        if std::env::var("CI").as_deref() == Ok("true") {
            assert_eq!(f.missing_for_strict(), None, "{f:?}");
        }
    }
}
