//! The `pack` command line, shared by its two binaries:
//!
//! - `pack`, the API client: every command but the two below, and the target of the launchers
//!   in `pack/bin`. It links none of the daemon and no C library, so the release build is a
//!   small static musl binary that starts in a fraction of a millisecond: it is on every app's
//!   start-up path.
//! - `pack-build` (feature `build`), which `pack pack` and `pack base build` hand over to: it
//!   links libsquashfs to write images. `pack` parses the command line first, so errors and
//!   `--help` are the same either way, then execs `pack-build` with the same arguments.

pub mod cli;
pub mod output;

#[cfg(feature = "build")]
pub mod build;
