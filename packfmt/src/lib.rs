//! The packd package format.
//!
//! A package is a squashfs image holding `meta/pack.yaml` (or `meta/snap.yaml`), optional
//! `meta/hooks/*`, and the payload. This crate owns:
//!
//! - [`meta`]: the metadata model and its validation (snap.yaml's rules, with exact messages);
//! - [`image`]: reading images and writing reproducible ones, both through libsquashfs's own
//!   API, bound with bindgen (squashfs-ng only checks the export table in a test);
//! - [`revision`]: revision numbers (`x1` for local installs, `1` for store ones);
//! - [`assertion`] (feature `assertions`): signed assertions and the store's chain of trust;
//! - [`store`]: what packd and a store say to each other.
//!
//! It does no privileged work and knows nothing about the daemon.

#[cfg(feature = "assertions")]
pub mod assertion;
#[cfg(feature = "image")]
pub mod image;
pub mod meta;
pub mod revision;
pub mod store;

#[cfg(feature = "image")]
pub use image::{Compression, ImageError, WriteOptions};
pub use meta::{MetaError, PackMeta, PackType};
pub use revision::Revision;
