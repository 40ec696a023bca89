//! Drives libsquashfs's writer API over a scanned [`Tree`]: file data through the block
//! processor (compressed on `jobs` worker threads), then inodes and directories, then the
//! fragment, export and id tables and the superblock.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr;

use super::compress;
use super::error::ImageError;
use super::ffi::{self, Malloced, Obj};
use super::io::SqfsFile;
use super::options::WriteOptions;
use super::tree::{InodeId, Tree};
use super::write::WriteStats;

/// How many bytes of a source file are handed to the block processor at a time.
const READ_CHUNK: usize = 1 << 20;
/// Images are padded to a multiple of this, for loop devices (like mksquashfs).
const DEVBLK_SIZE: u64 = 4096;

/// Blocks in flight in the block processor: at least 10 per worker, and 64 MiB worth. Every
/// small file's tail takes a slot until it is packed into a fragment block, so a deep queue
/// keeps the workers busy on trees of many small files (/usr/share on 2 cores: 20 s with 20
/// slots, 17.4 s with 512).
fn backlog(jobs: usize, block_size: u32) -> u32 {
    let by_memory = (64 << 20) / block_size.max(1);
    by_memory.max(jobs as u32 * 10)
}

/// Inodes of regular files, created and updated by the block processor. The slots must not
/// move while the processor may still write to them, hence a boxed slice.
pub(super) struct FileInodes(Box<[*mut ffi::sqfs_inode_generic_t]>);

impl FileInodes {
    pub(super) fn take(&mut self, slot: usize) -> Option<Malloced<ffi::sqfs_inode_generic_t>> {
        let p = std::mem::replace(&mut self.0[slot], ptr::null_mut());
        // SAFETY: a block-processor inode (malloc'ed), now owned by us alone.
        unsafe { Malloced::from_raw(p) }
    }
}

impl Drop for FileInodes {
    fn drop(&mut self) {
        for &p in self.0.iter().filter(|p| !p.is_null()) {
            // SAFETY: allocated by libsquashfs, not freed yet (taken ones are nulled).
            unsafe { ffi::sqfs_free(p.cast()) };
        }
    }
}

/// The libsquashfs objects of one image being written. Fields drop in declaration order: the
/// block processor first (it joins its worker threads and refers to most of the others), the
/// file last.
pub(crate) struct Builder<'a> {
    pub(super) proc: Obj<ffi::sqfs_block_processor_t>,
    pub(super) file_inodes: FileInodes,
    pub(super) dirwr: Obj<ffi::sqfs_dir_writer_t>,
    pub(super) im: Obj<ffi::sqfs_meta_writer_t>,
    pub(super) dm: Obj<ffi::sqfs_meta_writer_t>,
    pub(super) idtbl: Obj<ffi::sqfs_id_table_t>,
    pub(super) fragtbl: Obj<ffi::sqfs_frag_table_t>,
    pub(super) _blkwr: Obj<ffi::sqfs_block_writer_t>,
    pub(super) _uncmp: Obj<ffi::sqfs_compressor_t>,
    pub(super) cmp: Obj<ffi::sqfs_compressor_t>,
    pub(super) file: SqfsFile,
    pub(super) sb: ffi::sqfs_super_t,
    pub(super) mtime: u32,
    /// The final output path, for messages.
    pub(super) output: &'a Path,
}

impl<'a> Builder<'a> {
    /// Sets up an image in `out` (an empty file) for `files` regular files.
    pub fn new(
        out: File,
        output: &'a Path,
        opts: &WriteOptions,
        jobs: usize,
        files: usize,
    ) -> Result<Self, ImageError> {
        let file = SqfsFile::new(out, 0, true);
        let fp = file.as_ptr();
        let id = opts.compression.id();
        let bs = opts.block_size;
        let cmp = compress::create(id, bs, false)?;
        let uncmp = compress::create(id, bs, true)?;
        let io_err = |file: &SqfsFile, code, what| match file.take_error() {
            Some(e) => ImageError::io("write", output, e),
            None => ImageError::library(what, code),
        };

        let mut sb = ffi::sqfs_super_t::default();
        // SAFETY: `sb` is a valid out-pointer.
        let rc = unsafe { ffi::sqfs_super_init(&mut sb, bs as usize, opts.mtime, u32::from(id)) };
        ffi::check(rc, "initialise the superblock")?;
        // SAFETY: valid superblock and file.
        let rc = unsafe { ffi::sqfs_super_write(&sb, fp) };
        if rc != 0 {
            return Err(io_err(&file, rc, "write the superblock"));
        }
        // SAFETY: `cmp` is a live compressor; every compressor sets `write_options`.
        let rc = unsafe {
            match (*cmp.as_ptr()).write_options {
                Some(write_options) => write_options(cmp.as_ptr(), fp),
                None => 0,
            }
        };
        if rc < 0 {
            return Err(io_err(&file, rc, "write the compressor options"));
        } else if rc > 0 {
            sb.flags |= ffi::SQFS_FLAG_COMPRESSOR_OPTIONS as u16;
        }

        // SAFETY (all the constructors below): arguments are live objects that outlive the
        // created ones (see the field order of `Builder`); results are checked for null.
        let blkwr = unsafe {
            Obj::new(
                ffi::sqfs_block_writer_create(fp, DEVBLK_SIZE as usize, 0),
                "create the block writer",
            )?
        };
        // SAFETY: see above.
        let fragtbl =
            unsafe { Obj::new(ffi::sqfs_frag_table_create(0), "create the fragment table")? };
        let desc = ffi::sqfs_block_processor_desc_t {
            size: std::mem::size_of::<ffi::sqfs_block_processor_desc_t>() as u32,
            max_block_size: bs,
            num_workers: jobs as u32,
            max_backlog: backlog(jobs, bs),
            cmp: cmp.as_ptr(),
            wr: blkwr.as_ptr(),
            tbl: fragtbl.as_ptr(),
            // Read fragment blocks back to compare candidate duplicates byte by byte.
            file: fp,
            uncmp: uncmp.as_ptr(),
        };
        let mut proc = ptr::null_mut();
        // SAFETY: see above; `proc` is a valid out-pointer.
        let rc = unsafe { ffi::sqfs_block_processor_create_ex(&desc, &mut proc) };
        ffi::check(rc, "create the block processor")?;
        // SAFETY: see above.
        let proc = unsafe { Obj::new(proc, "create the block processor")? };
        // SAFETY: see above.
        let idtbl = unsafe { Obj::new(ffi::sqfs_id_table_create(0), "create the id table")? };
        // SAFETY: see above.
        let im = unsafe {
            Obj::new(
                ffi::sqfs_meta_writer_create(fp, cmp.as_ptr(), 0),
                "create the inode table writer",
            )?
        };
        // SAFETY: see above.
        let dm = unsafe {
            Obj::new(
                ffi::sqfs_meta_writer_create(
                    fp,
                    cmp.as_ptr(),
                    ffi::SQFS_META_WRITER_KEEP_IN_MEMORY,
                ),
                "create the directory table writer",
            )?
        };
        // SAFETY: see above.
        let dirwr = unsafe {
            Obj::new(
                ffi::sqfs_dir_writer_create(dm.as_ptr(), ffi::SQFS_DIR_WRITER_CREATE_EXPORT_TABLE),
                "create the directory writer",
            )?
        };
        Ok(Builder {
            proc,
            file_inodes: FileInodes(vec![ptr::null_mut(); files].into_boxed_slice()),
            dirwr,
            im,
            dm,
            idtbl,
            fragtbl,
            _blkwr: blkwr,
            _uncmp: uncmp,
            cmp,
            file,
            sb,
            mtime: opts.mtime,
            output,
        })
    }

    /// Converts a libsquashfs error code, preferring the OS error behind it if there is one.
    fn fail(&mut self, code: i32, what: &str) -> ImageError {
        match self.file.take_error() {
            Some(e) => ImageError::io("write", self.output, e),
            None => ImageError::library(what, code),
        }
    }

    pub(super) fn check(&mut self, code: i32, what: &str) -> Result<(), ImageError> {
        if code < 0 {
            Err(self.fail(code, what))
        } else {
            Ok(())
        }
    }

    /// Writes the whole image and returns its statistics. `files` must be
    /// `tree.files_in_order()` (its length was given to `new`).
    pub fn write(mut self, tree: &Tree, files: &[InodeId]) -> Result<WriteStats, ImageError> {
        let mut stats = WriteStats::default();
        let mut slot_of = vec![usize::MAX; tree.inodes.len()];
        let mut buf = vec![0u8; READ_CHUNK];
        for (slot, &id) in files.iter().enumerate() {
            slot_of[id] = slot;
            stats.bytes_in += self.add_file(&tree.inodes[id].path, slot, &mut buf)?;
        }
        // SAFETY: live processor.
        let rc = unsafe { ffi::sqfs_block_processor_finish(self.proc.as_ptr()) };
        self.check(rc, "finish compressing file data")?;

        self.write_inodes(tree, &slot_of, &mut stats)?;
        self.finish()?;
        stats.bytes_out = self.file.size();
        Ok(stats)
    }

    /// Feeds one source file to the block processor; returns its size.
    fn add_file(&mut self, path: &Path, slot: usize, buf: &mut [u8]) -> Result<u64, ImageError> {
        let read_err = |e| ImageError::io("read", path, e);
        let mut src = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(read_err)?;
        if !src.metadata().map_err(read_err)?.is_file() {
            return Err(ImageError::io(
                "read",
                path,
                std::io::Error::other("it stopped being a regular file during the build"),
            ));
        }
        {
            use std::os::fd::AsRawFd;
            // SAFETY: plain syscall on an fd we own; failure only loses a readahead hint.
            unsafe { libc::posix_fadvise(src.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        }
        let slot_ptr: *mut *mut ffi::sqfs_inode_generic_t = &mut self.file_inodes.0[slot];
        // SAFETY: the slot lives in a boxed slice that outlives the processor's use of it.
        let rc = unsafe {
            ffi::sqfs_block_processor_begin_file(self.proc.as_ptr(), slot_ptr, ptr::null_mut(), 0)
        };
        self.check(rc, "start a file")?;
        let mut total = 0u64;
        loop {
            let n = match src.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            // SAFETY: `buf[..n]` is initialised; the processor copies it.
            let rc = unsafe {
                ffi::sqfs_block_processor_append(self.proc.as_ptr(), buf.as_ptr().cast(), n)
            };
            self.check(rc, "compress file data")?;
            total += n as u64;
        }
        // SAFETY: live processor, inside begin/end.
        let rc = unsafe { ffi::sqfs_block_processor_end_file(self.proc.as_ptr()) };
        self.check(rc, "finish a file")?;
        Ok(total)
    }

    /// Writes the remaining tables, the final superblock and the padding.
    fn finish(&mut self) -> Result<(), ImageError> {
        let (fp, cmp) = (self.file.as_ptr(), self.cmp.as_ptr());
        // SAFETY: live objects; `sb` is ours.
        let rc =
            unsafe { ffi::sqfs_frag_table_write(self.fragtbl.as_ptr(), fp, &mut self.sb, cmp) };
        self.check(rc, "write the fragment table")?;
        // unsquashfs expects the tables in mksquashfs's order: fragments, export, ids.
        // SAFETY: as above.
        let rc = unsafe {
            ffi::sqfs_dir_writer_write_export_table(
                self.dirwr.as_ptr(),
                fp,
                cmp,
                self.sb.inode_count,
                self.sb.root_inode_ref,
                &mut self.sb,
            )
        };
        self.check(rc, "write the export table")?;
        // SAFETY: as above.
        let rc = unsafe { ffi::sqfs_id_table_write(self.idtbl.as_ptr(), fp, &mut self.sb, cmp) };
        self.check(rc, "write the id table")?;
        self.sb.bytes_used = self.file.size();
        // SAFETY: as above.
        let rc = unsafe { ffi::sqfs_super_write(&self.sb, fp) };
        self.check(rc, "write the superblock")?;

        let size = self.file.size();
        let pad = (DEVBLK_SIZE - size % DEVBLK_SIZE) % DEVBLK_SIZE;
        if pad > 0 {
            let zeros = [0u8; DEVBLK_SIZE as usize];
            // SAFETY: live file; `zeros` has at least `pad` bytes.
            let rc = unsafe {
                match (*fp).write_at {
                    Some(write_at) => write_at(fp, size, zeros.as_ptr().cast(), pad as usize),
                    None => ffi::SQFS_ERROR_INTERNAL,
                }
            };
            self.check(rc, "pad the image")?;
        }
        Ok(())
    }
}
