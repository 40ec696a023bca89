//! packd: the daemon that installs, mounts and runs confined packages.
//!
//! - [`daemon`]: start-up, serving, shutdown;
//! - [`api`]: the HTTP API on a Unix socket (and the wire types `pack` shares);
//! - [`engine`] and [`state`]: changes made of tasks with do/undo, persisted around every step;
//! - [`packs`]: the pack manager (install/remove/connect tasks, mounts, links, profiles);
//! - [`connections`]: plugs, slots and connections against the state (policy in `interfaces`);
//! - [`launch`]: what goes into an app's sandbox (the `confine` crate executes it).

pub mod api;
pub mod connections;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod launch;
pub mod packs;
pub mod paths;
pub mod policy;
pub mod services;
pub mod state;
mod testing;

pub use error::{Error, Result};
