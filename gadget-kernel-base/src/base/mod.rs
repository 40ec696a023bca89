//! Base root filesystems: the `/` of every sandbox.

mod build;
mod skeleton;

pub use build::{BaseKind, BuildError, BuildOptions, build_base};
pub use skeleton::{MOUNT_POINTS, check_mount_points};
