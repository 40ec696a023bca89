//! The named steps of building a sandbox, each small and separately testable.

pub mod identity;
pub mod mounts;
pub mod net;
pub mod signals;
