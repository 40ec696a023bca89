//! The second half of writing an image: every inode and directory listing, once the block
//! processor has placed all file data.

use std::ptr;

use super::builder::Builder;
use super::error::ImageError;
use super::ffi::{self, Malloced, NO_XATTR};
use super::tree::{Kind, Tree};
use super::write::WriteStats;

impl Builder<'_> {
    /// Writes every inode, in inode-number order, and the directory listings.
    pub(super) fn write_inodes(
        &mut self,
        tree: &Tree,
        slot_of: &[usize],
        stats: &mut WriteStats,
    ) -> Result<(), ImageError> {
        let (numbers, order) = tree.number();
        let count = order.len() as u32;
        let mut refs = vec![0u64; tree.inodes.len()];
        let mut id_idx = 0u16;
        // SAFETY: live table; `id_idx` is a valid out-pointer. Everything is owned by root.
        let rc = unsafe { ffi::sqfs_id_table_id_to_index(self.idtbl.as_ptr(), 0, &mut id_idx) };
        self.check(rc, "add uid 0 to the id table")?;
        self.sb.inode_table_start = self.file.size();

        for (i, &id) in order.iter().enumerate() {
            let node = &tree.inodes[id];
            let inode = match &node.kind {
                Kind::File => {
                    stats.files += 1;
                    let inode = self.file_inodes.take(slot_of[id]).ok_or_else(|| {
                        ImageError::library("build a file inode", ffi::SQFS_ERROR_INTERNAL)
                    })?;
                    set_file_nlink(&inode, node.nlink)?;
                    inode
                }
                Kind::Dir { entries, parent } => {
                    stats.dirs += 1;
                    // SAFETY: live directory writer.
                    let rc = unsafe { ffi::sqfs_dir_writer_begin(self.dirwr.as_ptr(), 0) };
                    self.check(rc, "start a directory")?;
                    for e in entries {
                        let child = &tree.inodes[e.inode];
                        // SAFETY: live writer; `name` is a valid C string.
                        let rc = unsafe {
                            ffi::sqfs_dir_writer_add_entry(
                                self.dirwr.as_ptr(),
                                e.name.as_ptr(),
                                numbers[e.inode],
                                refs[e.inode],
                                child.mode(),
                            )
                        };
                        self.check(rc, "add a directory entry")?;
                    }
                    // SAFETY: live writer.
                    let rc = unsafe { ffi::sqfs_dir_writer_end(self.dirwr.as_ptr()) };
                    self.check(rc, "write a directory")?;
                    // mksquashfs gives the root the parent number inode_count + 1.
                    let parent = if id == 0 { count + 1 } else { numbers[*parent] };
                    // SAFETY: live writer; the result is malloc'ed and ours.
                    let inode = unsafe {
                        Malloced::from_raw(ffi::sqfs_dir_writer_create_inode(
                            self.dirwr.as_ptr(),
                            0,
                            NO_XATTR,
                            parent,
                        ))
                    }
                    .ok_or_else(|| {
                        ImageError::library("build a directory inode", ffi::SQFS_ERROR_ALLOC)
                    })?;
                    set_dir_nlink(&inode, node.nlink);
                    inode
                }
                Kind::Symlink { target } => {
                    stats.symlinks += 1;
                    let inode = alloc_inode(target.len())?;
                    // SAFETY: freshly calloc'ed with `target.len()` extra bytes.
                    unsafe {
                        let p = inode.as_ptr();
                        (*p).base.type_ = ffi::SQFS_INODE_SLINK as u16;
                        (*p).data.slink.nlink = node.nlink;
                        (*p).data.slink.target_size = target.len() as u32;
                        (*p).payload_bytes_available = target.len() as u32;
                        (*p).payload_bytes_used = target.len() as u32;
                        let extra = (*p).extra.as_mut_ptr().cast::<u8>();
                        ptr::copy_nonoverlapping(target.as_ptr(), extra, target.len());
                    }
                    inode
                }
                Kind::Fifo | Kind::Socket => {
                    let inode = alloc_inode(0)?;
                    let t = if matches!(node.kind, Kind::Fifo) {
                        ffi::SQFS_INODE_FIFO
                    } else {
                        ffi::SQFS_INODE_SOCKET
                    };
                    // SAFETY: freshly calloc'ed inode.
                    unsafe {
                        (*inode.as_ptr()).base.type_ = t as u16;
                        (*inode.as_ptr()).data.ipc.nlink = node.nlink;
                    }
                    inode
                }
            };
            // SAFETY: `inode` is valid and exclusively ours.
            unsafe {
                let base = &mut (*inode.as_ptr()).base;
                base.mode = node.mode();
                base.uid_idx = id_idx;
                base.gid_idx = id_idx;
                base.mod_time = self.mtime;
                base.inode_number = i as u32 + 1;
            }
            let (mut block, mut offset) = (0u64, 0u32);
            // SAFETY: live meta writer, valid out-pointers.
            unsafe {
                ffi::sqfs_meta_writer_get_position(self.im.as_ptr(), &mut block, &mut offset)
            };
            refs[id] = (block << 16) | u64::from(offset);
            // SAFETY: live writer and valid inode.
            let rc = unsafe { ffi::sqfs_meta_writer_write_inode(self.im.as_ptr(), inode.get()) };
            self.check(rc, "write an inode")?;
        }

        // SAFETY: live meta writers.
        let rc = unsafe { ffi::sqfs_meta_writer_flush(self.im.as_ptr()) };
        self.check(rc, "write the inode table")?;
        // SAFETY: as above.
        let rc = unsafe { ffi::sqfs_meta_writer_flush(self.dm.as_ptr()) };
        self.check(rc, "write the directory table")?;
        self.sb.inode_count = count;
        self.sb.root_inode_ref = refs[0];
        self.sb.directory_table_start = self.file.size();
        // SAFETY: as above.
        let rc = unsafe { ffi::sqfs_meta_write_write_to_file(self.dm.as_ptr()) };
        self.check(rc, "write the directory table")?;
        Ok(())
    }
}

fn alloc_inode(extra: usize) -> Result<Malloced<ffi::sqfs_inode_generic_t>, ImageError> {
    let size = std::mem::size_of::<ffi::sqfs_inode_generic_t>() + extra;
    // SAFETY: plain allocation; zeroed memory is a valid (empty) inode.
    let p = unsafe { libc::calloc(1, size) }.cast::<ffi::sqfs_inode_generic_t>();
    // SAFETY: fresh and ours; released with `sqfs_free` (libc `free`).
    unsafe { Malloced::from_raw(p) }
        .ok_or_else(|| ImageError::library("allocate an inode", ffi::SQFS_ERROR_ALLOC))
}

fn set_file_nlink(
    inode: &Malloced<ffi::sqfs_inode_generic_t>,
    nlink: u32,
) -> Result<(), ImageError> {
    let p = inode.as_ptr();
    // SAFETY: a valid file inode, exclusively ours. Basic file inodes have an implicit link
    // count of 1, so hard-linked files need the extended form.
    unsafe {
        if nlink > 1 && u32::from((*p).base.type_) == ffi::SQFS_INODE_FILE {
            ffi::check(ffi::sqfs_inode_make_extended(p), "extend a file inode")?;
        }
        if u32::from((*p).base.type_) == ffi::SQFS_INODE_EXT_FILE {
            (*p).data.file_ext.nlink = nlink;
        }
    }
    Ok(())
}

fn set_dir_nlink(inode: &Malloced<ffi::sqfs_inode_generic_t>, nlink: u32) {
    let p = inode.as_ptr();
    // SAFETY: a valid directory inode, exclusively ours.
    unsafe {
        if u32::from((*p).base.type_) == ffi::SQFS_INODE_DIR {
            (*p).data.dir.nlink = nlink;
        } else {
            (*p).data.dir_ext.nlink = nlink;
        }
    }
}
