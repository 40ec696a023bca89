//! The named steps of building a sandbox, each small and separately testable.

pub mod apparmor;
pub mod caps;
pub mod identity;
pub mod landlock;
pub mod mounts;
pub mod net;
pub mod rlimits;
pub mod signals;
