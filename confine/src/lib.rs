//! confine: mechanism only. Turns a [`SandboxSpec`] (plain data) into a confined process.
//!
//! It knows nothing about packages or interfaces: the daemon decides what goes into the spec;
//! this crate executes it in named steps (see [`error::Step`]), each reporting which one failed.
//!
//! - [`spec`]: the data;
//! - [`launch`]: the daemon side (spawn the helper, hand over the spec and stdio);
//! - [`helper`]: the `pack-confine` side (supervisor, init, app);
//! - [`steps`]: the individual steps; [`sys`]: the syscall seam they use.

pub mod error;
pub mod helper;
pub mod launch;
pub mod spec;
pub mod steps;
pub mod sys;

pub use error::{Step, StepError};
pub use launch::{ExecStatus, Handoff, Stdio3};
pub use spec::{MountOp, Namespaces, Process, SandboxSpec};
