//! packd: the daemon that installs, mounts and runs confined packages.
//!
//! - [`daemon`]: the composition root (builds and wires everything; nothing imports it);
//! - [`api`]: the HTTP API on a Unix socket: thin handlers over the managers;
//! - [`engine`] and [`state`]: changes made of tasks with do/undo, persisted around every
//!   step, run through a registry of handlers each manager fills;
//! - the managers: [`packs`] (install, refresh, revert, remove), [`connections`] (plugs and
//!   slots), [`services`] (supervision, hooks, health), [`launch`] (sandboxes);
//! - [`profiles`] and [`policy`]: security profiles, and the policy they are made from;
//! - [`system`]: the kernel behind small traits (mounts, cgroups, clock), with fakes.

pub mod api;
pub mod connections;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod launch;
pub mod logging;
pub mod packs;
pub mod paths;
pub mod policy;
pub mod profiles;
pub mod services;
pub mod state;
pub mod store;
pub mod system;
mod testing;

pub use error::{Error, Result};
