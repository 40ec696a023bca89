//! Security policy as data and pure functions: the default seccomp allowlist, AppArmor
//! profiles, the confinement every app gets (cgroup limits, devices, Landlock rules), and
//! hooks seen as the pseudo-apps they run as.

pub mod apparmor;
pub mod confinement;
pub mod hooks;
pub mod seccomp;

/// The built-in policy itself is broken, or `apparmor_parser` refused a profile.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the built-in seccomp policy is damaged: {0}")]
    Template(#[source] serde_json::Error),
    #[error("cannot compile a seccomp profile: {0}")]
    Compile(String),
    #[error("apparmor_parser refused {path}: {message}")]
    AppArmor {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(transparent)]
    Io(#[from] crate::error::IoError),
}
