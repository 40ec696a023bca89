//! What [`Image::walk`](super::Image::walk) reports about each entry.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::ffi;

/// What kind of file an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link, with its target (bytes as stored, never resolved).
    Symlink {
        /// The link's target.
        target: PathBuf,
    },
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

impl EntryKind {
    /// A human name: "directory", "regular file", "symlink", ...
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Dir => "directory",
            EntryKind::File => "regular file",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::CharDev => "character device",
            EntryKind::BlockDev => "block device",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }
}

/// One entry of an image, as seen by [`Image::walk`](super::Image::walk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the image root; the root itself is the empty path.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes for regular files, target length for symlinks, 0 otherwise.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Modification time.
    pub mtime: u32,
    /// Inode number (entries sharing one are hard links).
    pub inode: u32,
}

/// What [`Image::check_package_contents`](super::Image::check_package_contents) found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentSummary {
    /// All entries, the root included.
    pub entries: u64,
    /// Regular file entries (hard links counted once per name).
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Fifos and sockets.
    pub other: u64,
    /// Sum of the sizes of regular file entries.
    pub total_size: u64,
}

impl Entry {
    /// Describes inode `i`, found at `path`, owned by `uid`:`gid`. Fails (with a description)
    /// on an unknown inode type.
    pub(crate) fn from_inode(
        path: &Path,
        i: &ffi::sqfs_inode_generic_t,
        uid: u32,
        gid: u32,
    ) -> Result<Entry, String> {
        let t = u32::from(i.base.type_);
        // SAFETY: the union member read matches the inode type libsquashfs decoded, and a
        // symlink inode has `target_size` bytes of `extra` (bounded by `payload_bytes_used`).
        let (kind, nlink, size) = unsafe {
            match t {
                ffi::SQFS_INODE_DIR => (EntryKind::Dir, i.data.dir.nlink, 0),
                ffi::SQFS_INODE_EXT_DIR => (EntryKind::Dir, i.data.dir_ext.nlink, 0),
                ffi::SQFS_INODE_FILE => (EntryKind::File, 1, u64::from(i.data.file.file_size)),
                ffi::SQFS_INODE_EXT_FILE => (
                    EntryKind::File,
                    i.data.file_ext.nlink,
                    i.data.file_ext.file_size,
                ),
                ffi::SQFS_INODE_SLINK | ffi::SQFS_INODE_EXT_SLINK => {
                    let len = i.data.slink.target_size.min(i.payload_bytes_used) as usize;
                    let target = std::slice::from_raw_parts(i.extra.as_ptr().cast::<u8>(), len);
                    let target = PathBuf::from(OsStr::from_bytes(target));
                    (
                        EntryKind::Symlink { target },
                        i.data.slink.nlink,
                        len as u64,
                    )
                }
                ffi::SQFS_INODE_BDEV => (EntryKind::BlockDev, i.data.dev.nlink, 0),
                ffi::SQFS_INODE_EXT_BDEV => (EntryKind::BlockDev, i.data.dev_ext.nlink, 0),
                ffi::SQFS_INODE_CDEV => (EntryKind::CharDev, i.data.dev.nlink, 0),
                ffi::SQFS_INODE_EXT_CDEV => (EntryKind::CharDev, i.data.dev_ext.nlink, 0),
                ffi::SQFS_INODE_FIFO => (EntryKind::Fifo, i.data.ipc.nlink, 0),
                ffi::SQFS_INODE_EXT_FIFO => (EntryKind::Fifo, i.data.ipc_ext.nlink, 0),
                ffi::SQFS_INODE_SOCKET => (EntryKind::Socket, i.data.ipc.nlink, 0),
                ffi::SQFS_INODE_EXT_SOCKET => (EntryKind::Socket, i.data.ipc_ext.nlink, 0),
                _ => return Err(format!("unknown inode type {t}")),
            }
        };
        Ok(Entry {
            path: path.into(),
            kind,
            mode: i.base.mode & 0o7777,
            uid,
            gid,
            size,
            nlink,
            mtime: i.base.mod_time,
            inode: i.base.inode_number,
        })
    }
}
