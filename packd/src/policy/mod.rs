//! Security policy as data and pure functions: the default seccomp allowlist, AppArmor
//! profiles, and the confinement every app gets (cgroup limits, devices, Landlock rules).

pub mod apparmor;
pub mod confinement;
pub mod seccomp;
