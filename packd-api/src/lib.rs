//! What packd and its clients share: the JSON of the API ([`types`]), the kinds of its errors
//! and the exit codes of `pack` ([`errors`]), passing descriptors on its socket ([`fdpass`])
//! and the reports of `/v2/debug/*` ([`debug`]).
//!
//! A crate of its own so that `pack`, which is on every app's start-up path, links none of the
//! daemon: no libsquashfs, no sandbox code. It builds for any libc (the release `pack` is a
//! static musl binary; see the Makefile's `release`).

pub mod debug;
pub mod errors;
pub mod fdpass;
pub mod store;
pub mod types;

pub use errors::{ErrorKind, exit};
