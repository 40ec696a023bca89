//! The error type of the image module: every message names the file (on disk or inside the
//! image) and the problem, in one sentence.

use std::io;
use std::path::PathBuf;

use super::ffi;

/// Errors from reading or writing squashfs images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// An I/O operation on a file outside the image failed (`op` is e.g. "read", "write").
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation, as a verb: "read", "write", "open", "rename", ...
        op: &'static str,
        /// The file it was done on.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// A libsquashfs call failed.
    #[error("libsquashfs failed to {what}: {} (error {code})", ffi::describe(*.code))]
    Library {
        /// What we were doing, as a verb phrase ("write the inode table").
        what: String,
        /// libsquashfs's (negative) error code.
        code: i32,
    },

    /// `WriteOptions` are inconsistent (bad block size, zero jobs, ...).
    #[error("invalid image options: {0}")]
    InvalidOptions(String),

    /// `SOURCE_DATE_EPOCH` is set to something that is not a timestamp squashfs can store.
    #[error(
        "SOURCE_DATE_EPOCH must be an integer number of seconds between 0 and {max}, got {value:?}",
        max = u32::MAX
    )]
    SourceDateEpoch {
        /// The value found in the environment.
        value: String,
    },

    /// The source of an image is not a directory.
    #[error("{path}: the source of an image must be a directory")]
    SourceNotDirectory {
        /// The source path.
        path: PathBuf,
    },

    /// A source file (or, when checking an image, an entry) has the setuid or setgid bit.
    #[error(
        "{path}: setuid/setgid files are not allowed in a package (remove the bit with chmod u-s,g-s)"
    )]
    SetuidSetgid {
        /// The offending file: a source path when writing, an absolute path inside the image
        /// when checking one.
        path: PathBuf,
    },

    /// A source file (or image entry) is a character or block device.
    #[error("{path}: device nodes are not allowed in a package")]
    DeviceNode {
        /// The offending file: a source path when writing, an absolute path inside the image
        /// when checking one.
        path: PathBuf,
    },

    /// A file name is longer than squashfs can store.
    #[error("{path}: file name is {len} bytes long, squashfs allows at most 256")]
    NameTooLong {
        /// The offending file.
        path: PathBuf,
        /// Its name's length in bytes.
        len: usize,
    },

    /// A source file is of a type squashfs cannot hold.
    #[error("{path}: unsupported file type")]
    UnsupportedFileType {
        /// The offending file.
        path: PathBuf,
    },

    /// The tree has more inodes than squashfs can number.
    #[error("{path}: too many files for one squashfs image")]
    TooManyFiles {
        /// The source directory.
        path: PathBuf,
    },

    /// The file does not start with the squashfs magic.
    #[error("{path}: not a squashfs image (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },

    /// The file is shorter than its superblock says.
    #[error("{path}: the image is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the superblock says are used (or 96, the superblock's own size).
        expected: u64,
        /// The file's actual length.
        found: u64,
    },

    /// The superblock has a version other than 4.0.
    #[error("{path}: unsupported squashfs version {major}.{minor} (only 4.0 is supported)")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
    },

    /// The superblock is inconsistent.
    #[error("{path}: corrupt superblock: {reason}")]
    BadSuperblock {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The superblock names a compressor we do not know (or that this library cannot read).
    #[error("{path}: unsupported compressor id {id} (known: gzip, lzo, xz, lz4, zstd)")]
    UnknownCompressor {
        /// The file.
        path: PathBuf,
        /// The compressor id found.
        id: u16,
    },

    /// Reading the image's metadata or data failed: it is corrupt (or the disk failed).
    #[error("{image}: cannot read {what} (corrupt image?): {detail}")]
    Corrupt {
        /// The image file.
        image: PathBuf,
        /// What was being read ("the id table", "directory /usr/lib", ...).
        what: String,
        /// What went wrong.
        detail: String,
    },

    /// A path passed to [`Image::read_file`](super::Image::read_file) is not a plain relative
    /// path.
    #[error(
        "{path}: invalid path inside an image (use a relative path without '.', '..' or empty components)"
    )]
    InvalidPath {
        /// The path given.
        path: String,
    },

    /// The requested entry does not exist in the image.
    #[error("{path}: no such file in the image")]
    NotFound {
        /// The path inside the image, absolute (`/meta/pack.yaml`).
        path: PathBuf,
    },

    /// The requested entry exists but is not a regular file (symlinks are never followed).
    #[error("{path}: is a {kind}, not a regular file")]
    NotRegularFile {
        /// The path inside the image, absolute (`/meta/pack.yaml`).
        path: PathBuf,
        /// "symlink", "directory", "fifo", ...
        kind: &'static str,
    },

    /// A leading component of the requested path is not a directory (symlinks are never
    /// followed).
    #[error("{path}: is a {kind}, not a directory")]
    NotADirectory {
        /// The leading part of the path that is not a directory, absolute (`/meta`).
        path: PathBuf,
        /// "symlink", "regular file", ...
        kind: &'static str,
    },

    /// A problem with an entry inside the image `image` (named as the caller opened it).
    #[error("{image}: {source}")]
    InImage {
        /// The image, as named by [`Image::open_named`](super::Image::open_named).
        image: PathBuf,
        /// What is wrong inside it.
        #[source]
        source: Box<ImageError>,
    },

    /// The requested file is bigger than the caller allows.
    #[error("{path}: file is {size} bytes, larger than the {max} bytes allowed")]
    TooLarge {
        /// The path inside the image, absolute (`/meta/pack.yaml`).
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
}

impl ImageError {
    pub(crate) fn library(what: &str, code: i32) -> Self {
        ImageError::Library {
            what: what.to_owned(),
            code,
        }
    }

    /// The error itself, seen through [`ImageError::InImage`].
    pub fn inner(&self) -> &ImageError {
        match self {
            ImageError::InImage { source, .. } => source.inner(),
            other => other,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
