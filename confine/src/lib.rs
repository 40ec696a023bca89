//! confine: mechanism only. Turns a [`SandboxSpec`] (plain data) into a confined process.
//!
//! It knows nothing about packages or interfaces: the daemon decides what goes into the spec;
//! this crate executes it in named steps (see [`error::Step`]), each reporting which one failed.
//!
//! - [`spec`]: the data; [`proto`]: the messages between packd and the helper's processes;
//! - [`launch`]: the daemon side (start the zygote, read a launch's status);
//! - [`zygote`]: the `pack-confine` process forking one supervisor per launch;
//! - [`helper`]: a sandbox's supervisor and init; [`app`]: its file system and its app;
//! - [`monitor`]: a service's keeper, which outlives the daemon; [`logfile`]: the logs it
//!   writes;
//! - [`steps`]: the individual steps; [`sys`]: the syscall seam they use;
//! - [`cgroup`], [`seccomp`]: the daemon-side halves of those layers (create and limit cgroups,
//!   compile profiles); [`features`]: which layers the kernel offers.

pub mod app;
pub mod cgroup;
pub mod error;
pub mod features;
pub mod helper;
pub mod launch;
pub mod logfile;
pub mod monitor;
pub mod proto;
pub mod seccomp;
pub mod spec;
pub mod steps;
pub mod sys;
pub mod zygote;

pub use error::{Step, StepError};
pub use features::Features;
pub use launch::{parse_status, spawn_zygote};
pub use proto::Report;
pub use spec::{CgroupJoin, LandlockSpec, MountOp, Namespaces, Process, SandboxSpec, SeccompSpec};
