//! Squashfs images: reproducible writing and careful reading, both through libsquashfs
//! (squashfs-tools-ng's library) bound with bindgen in `build.rs`.
//!
//! - [`write_image`] turns a directory into an image: byte-identical output for the same tree
//!   whatever the source timestamps, owners, readdir order or thread count; compression on all
//!   cores; temp file + rename so a failed build never leaves a partial image.
//! - [`Image`] opens an image after checking its superblock, walks it ([`Image::walk`],
//!   [`Image::check_package_contents`]) and reads single files without following symlinks
//!   ([`Image::read_file`]).
//!
//! Extended attributes are never written (see [`write_image`]).

mod builder;
mod compress;
mod entry;
mod error;
mod ffi;
mod inodes;
mod io;
mod lookup;
mod lzo;
mod options;
mod read;
mod superblock;
mod tree;
mod write;

pub use compress::{Compression, ParseCompressionError};
pub use entry::{ContentSummary, Entry, EntryKind};
pub use error::ImageError;
pub use options::{DEFAULT_BLOCK_SIZE, SpecialFiles, WriteOptions};
pub use read::Image;
pub use superblock::{SUPERBLOCK_SIZE, Superblock};
pub use write::{WriteStats, write_image};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_corrupt;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_mount;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_read;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_roundtrip;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_write;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod testutil;
