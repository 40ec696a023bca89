//! The device package types.
//!
//! - [`base`]: base root filesystems — what every base must contain, and builders for the
//!   busybox and Debian bases (`pack base build`);
//! - [`inspect`]: a package file checked whole, for packd's installs and the store's uploads.
//!
//! Gadget and kernel packages arrive with their issues.

pub mod base;
pub mod inspect;
