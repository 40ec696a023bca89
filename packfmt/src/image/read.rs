//! Reading images: superblock checks, walking every entry, and reading single files without
//! ever following a symlink.
//!
//! This talks to libsquashfs directly (through the same bindings as the writer) rather than
//! through squashfs-ng's reader, which cannot list non-UTF-8 names, panics when it cannot
//! create a data reader (corrupt fragment table), and cannot read LZO images.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;

use super::compress::{self, Compression};
use super::entry::{ContentSummary, Entry, EntryKind};
use super::error::ImageError;
use super::ffi::{self, Malloced, Obj};
use super::io::SqfsFile;
use super::superblock::{SUPERBLOCK_SIZE, Superblock};

pub(super) type InodePtr = Malloced<ffi::sqfs_inode_generic_t>;

/// An open squashfs image.
///
/// `Image` is `Send` but not `Sync`: libsquashfs's reader objects are not thread-safe.
pub struct Image {
    // Drop order: readers before the compressor and file they use.
    pub(super) data: Obj<ffi::sqfs_data_reader_t>,
    ids: Obj<ffi::sqfs_id_table_t>,
    cmp: Obj<ffi::sqfs_compressor_t>,
    file: SqfsFile,
    raw: ffi::sqfs_super_t,
    sb: Superblock,
    path: PathBuf,
    /// How errors name the image (see [`Image::open_named`]).
    name: PathBuf,
}

// SAFETY: every libsquashfs object is exclusively owned by the `Image` and has no thread
// affinity; the raw pointers only make the type `!Sync`, which it must stay.
unsafe impl Send for Image {}

/// A libsquashfs directory reader; it points into the `Image` it borrows.
pub(super) struct DirReader<'a> {
    obj: Obj<ffi::sqfs_dir_reader_t>,
    _image: PhantomData<&'a Image>,
}

impl DirReader<'_> {
    pub(super) fn as_ptr(&self) -> *mut ffi::sqfs_dir_reader_t {
        self.obj.as_ptr()
    }
}

/// The error code for a call that returned `rc` but no object: `rc` itself if it is an
/// error, else "internal error".
pub(super) fn failure(rc: i32) -> i32 {
    if rc < 0 { rc } else { ffi::SQFS_ERROR_INTERNAL }
}

/// Absolute form of an in-image path, for messages.
pub(crate) fn shown(rel: &Path) -> PathBuf {
    Path::new("/").join(rel)
}

impl Image {
    /// Opens the image at `path`, checking its superblock first (clear errors for files that
    /// are not squashfs images, are truncated or use an unknown compressor), then loading the
    /// id and fragment tables and the root directory.
    pub fn open(path: &Path) -> Result<Image, ImageError> {
        Self::open_named(path, path)
    }

    /// Like [`Image::open`], but errors name the image `name` instead of its path: the daemon
    /// checks uploads staged under a temporary name and reports them by the user's file name.
    pub fn open_named(path: &Path, name: &Path) -> Result<Image, ImageError> {
        let mut file = File::open(path).map_err(|e| ImageError::io("open", name, e))?;
        let len = file
            .metadata()
            .map_err(|e| ImageError::io("read", name, e))?
            .len();
        let mut head = Vec::with_capacity(SUPERBLOCK_SIZE);
        file.by_ref()
            .take(SUPERBLOCK_SIZE as u64)
            .read_to_end(&mut head)
            .map_err(|e| ImageError::io("read", name, e))?;
        let sb = Superblock::parse(&head, len, name)?;

        let file = SqfsFile::new(file, len, false);
        let fp = file.as_ptr();
        let corrupt = |what: &str, code: i32| ImageError::Corrupt {
            image: name.into(),
            what: what.into(),
            detail: format!("{} (error {code})", ffi::describe(code)),
        };
        let mut raw = ffi::sqfs_super_t::default();
        // SAFETY: valid out-pointer and file.
        let rc = unsafe { ffi::sqfs_super_read(&mut raw, fp) };
        if rc != 0 {
            return Err(corrupt("the superblock", rc));
        }
        let cmp = compress::create(sb.compressor_id, sb.block_size, true)?;
        if raw.flags & ffi::SQFS_FLAG_COMPRESSOR_OPTIONS as u16 != 0 {
            // SAFETY: live compressor and file.
            let rc = unsafe {
                match (*cmp.as_ptr()).read_options {
                    Some(read_options) => read_options(cmp.as_ptr(), fp),
                    None => 0,
                }
            };
            if rc < 0 {
                return Err(corrupt("the compressor options", rc));
            }
        }
        // SAFETY: plain constructor, checked for null.
        let ids = unsafe { Obj::new(ffi::sqfs_id_table_create(0), "create an id table")? };
        // SAFETY: live objects.
        let rc = unsafe { ffi::sqfs_id_table_read(ids.as_ptr(), fp, &raw, cmp.as_ptr()) };
        if rc != 0 {
            return Err(corrupt("the id table", rc));
        }
        // SAFETY: live objects, result checked for null.
        let data = unsafe {
            Obj::new(
                ffi::sqfs_data_reader_create(fp, sb.block_size as usize, cmp.as_ptr(), 0),
                "create a data reader",
            )?
        };
        // SAFETY: live objects.
        let rc = unsafe { ffi::sqfs_data_reader_load_fragment_table(data.as_ptr(), &raw) };
        if rc != 0 {
            return Err(corrupt("the fragment table", rc));
        }
        let image = Image {
            data,
            ids,
            cmp,
            file,
            raw,
            sb,
            path: path.into(),
            name: name.into(),
        };
        {
            let rd = image.dir_reader()?;
            let root = image.root(&rd)?;
            if image.entry(Path::new(""), &root)?.kind != EntryKind::Dir {
                return Err(ImageError::Corrupt {
                    image: name.into(),
                    what: "the root directory".into(),
                    detail: "the root inode is not a directory".into(),
                });
            }
        }
        Ok(image)
    }

    /// The image file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The compressor, if it is one this crate writes (gzip and lz4 images are readable too).
    pub fn compression(&self) -> Option<Compression> {
        self.sb.compression()
    }

    /// The compressor's name ("zstd", "xz", "lzo", "gzip", "lz4").
    pub fn compressor_name(&self) -> &'static str {
        self.sb.compressor_name()
    }

    /// Bytes of the file the image uses (the superblock's `bytes_used`).
    pub fn bytes_used(&self) -> u64 {
        self.sb.bytes_used
    }

    pub(super) fn corrupt(&self, what: impl Into<String>, code: i32) -> ImageError {
        let mut detail = format!("{} (error {code})", ffi::describe(code));
        if let Some(e) = self.file.take_error() {
            detail = format!("{e} ({detail})");
        }
        ImageError::Corrupt {
            image: self.name.clone(),
            what: what.into(),
            detail,
        }
    }

    pub(super) fn dir_reader(&self) -> Result<DirReader<'_>, ImageError> {
        // SAFETY: live objects that outlive the reader: `DirReader` borrows `self`, which owns
        // the superblock, compressor and file the reader points to.
        let obj = unsafe {
            Obj::new(
                ffi::sqfs_dir_reader_create(&self.raw, self.cmp.as_ptr(), self.file.as_ptr(), 0),
                "create a directory reader",
            )?
        };
        Ok(DirReader {
            obj,
            _image: PhantomData,
        })
    }

    pub(super) fn root(&self, rd: &DirReader<'_>) -> Result<InodePtr, ImageError> {
        let mut p = ptr::null_mut();
        // SAFETY: live reader, valid out-pointer.
        let rc = unsafe { ffi::sqfs_dir_reader_get_root_inode(rd.as_ptr(), &mut p) };
        // SAFETY: on success `p` is a malloc'ed inode we now own.
        match unsafe { Malloced::from_raw(p) } {
            Some(inode) if rc == 0 => Ok(inode),
            _ => Err(self.corrupt("the root directory inode", failure(rc))),
        }
    }

    /// Reads the entries of directory `dir` (at `path`): names and inodes, checking that names
    /// are valid and strictly increasing.
    pub(super) fn list_dir(
        &self,
        rd: &DirReader<'_>,
        dir: &InodePtr,
        path: &Path,
    ) -> Result<Vec<(Vec<u8>, InodePtr)>, ImageError> {
        let what = || format!("directory {}", shown(path).display());
        // SAFETY: live reader and directory inode.
        let rc = unsafe { ffi::sqfs_dir_reader_open_dir(rd.as_ptr(), dir.as_ptr(), 0) };
        if rc != 0 {
            return Err(self.corrupt(what(), rc));
        }
        let mut out: Vec<(Vec<u8>, InodePtr)> = Vec::new();
        loop {
            let mut ent = ptr::null_mut();
            // SAFETY: live reader, valid out-pointer.
            let rc = unsafe { ffi::sqfs_dir_reader_read(rd.as_ptr(), &mut ent) };
            if rc > 0 {
                return Ok(out);
            }
            // SAFETY: on success, a malloc'ed entry we now own.
            let ent = match unsafe { Malloced::from_raw(ent) } {
                Some(ent) if rc == 0 => ent,
                _ => return Err(self.corrupt(what(), failure(rc))),
            };
            let e = ent.get();
            // SAFETY: libsquashfs allocates `size + 1` name bytes (plus a NUL).
            let name = unsafe { e.name.as_slice(usize::from(e.size) + 1) }.to_vec();
            let bad = name.contains(&b'/')
                || name.contains(&0)
                || name == b"."
                || name == b".."
                || out.last().is_some_and(|(prev, _)| *prev >= name);
            if bad {
                let name = String::from_utf8_lossy(&name);
                return Err(ImageError::Corrupt {
                    image: self.name.clone(),
                    what: what(),
                    detail: format!("invalid, duplicate or unsorted entry name {name:?}"),
                });
            }
            let mut inode = ptr::null_mut();
            // SAFETY: live reader positioned on `ent`; valid out-pointer.
            let rc = unsafe { ffi::sqfs_dir_reader_get_inode(rd.as_ptr(), &mut inode) };
            // SAFETY: on success, a malloc'ed inode we now own.
            match unsafe { Malloced::from_raw(inode) } {
                Some(inode) if rc == 0 => out.push((name, inode)),
                _ => {
                    let child = shown(&path.join(OsStr::from_bytes(&name)));
                    return Err(
                        self.corrupt(format!("the inode of {}", child.display()), failure(rc))
                    );
                }
            }
        }
    }

    /// Describes the inode at `path`.
    pub(super) fn entry(&self, path: &Path, inode: &InodePtr) -> Result<Entry, ImageError> {
        let i = inode.get();
        let uid = self.id(i.base.uid_idx, path)?;
        let gid = self.id(i.base.gid_idx, path)?;
        Entry::from_inode(path, i, uid, gid).map_err(|detail| ImageError::Corrupt {
            image: self.name.clone(),
            what: format!("the inode of {}", shown(path).display()),
            detail,
        })
    }

    pub(super) fn id(&self, index: u16, path: &Path) -> Result<u32, ImageError> {
        let mut id = 0;
        // SAFETY: live table, valid out-pointer.
        let rc = unsafe { ffi::sqfs_id_table_index_to_id(self.ids.as_ptr(), index, &mut id) };
        if rc != 0 {
            return Err(self.corrupt(format!("the owner of {}", shown(path).display()), rc));
        }
        Ok(id)
    }

    /// Visits every entry depth-first, in name order, the root (empty path) first; stops at
    /// the first error `f` returns. Corrupt metadata is an error naming the path being read.
    pub fn walk(
        &self,
        f: &mut dyn FnMut(&Entry) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        self.walk_inodes(&mut |entry, _| f(entry))
    }

    /// [`Image::walk`], also handing out each entry's inode.
    fn walk_inodes(
        &self,
        f: &mut dyn FnMut(&Entry, &InodePtr) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        let rd = self.dir_reader()?;
        let mut seen_dirs = HashSet::new();
        let mut stack = vec![(PathBuf::new(), self.root(&rd)?)];
        while let Some((path, inode)) = stack.pop() {
            let entry = self.entry(&path, &inode)?;
            f(&entry, &inode)?;
            if entry.kind != EntryKind::Dir {
                continue;
            }
            if !seen_dirs.insert(entry.inode) {
                return Err(ImageError::Corrupt {
                    image: self.name.clone(),
                    what: format!("directory {}", shown(&path).display()),
                    detail: "directory loop".into(),
                });
            }
            let children = self.list_dir(&rd, &inode, &path)?;
            for (name, child) in children.into_iter().rev() {
                stack.push((path.join(OsStr::from_bytes(&name)), child));
            }
        }
        Ok(())
    }

    /// Walks the image and fails on the first entry a package may not have: a setuid/setgid
    /// bit or a character/block device (named in the error). Returns what it counted.
    pub fn check_package_contents(&self) -> Result<ContentSummary, ImageError> {
        let mut sum = ContentSummary::default();
        self.walk(&mut |e| {
            if e.mode & 0o6000 != 0 {
                return Err(self.in_image(ImageError::SetuidSetgid {
                    path: shown(&e.path),
                }));
            }
            sum.entries += 1;
            match e.kind {
                EntryKind::CharDev | EntryKind::BlockDev => {
                    return Err(self.in_image(ImageError::DeviceNode {
                        path: shown(&e.path),
                    }));
                }
                EntryKind::Dir => sum.dirs += 1,
                EntryKind::File => {
                    sum.files += 1;
                    sum.total_size += e.size;
                }
                EntryKind::Symlink { .. } => sum.symlinks += 1,
                EntryKind::Fifo | EntryKind::Socket => sum.other += 1,
            }
            Ok(())
        })?;
        Ok(sum)
    }

    /// Decompresses every data block and tail fragment of every regular file (hard links
    /// once) and checks each comes out at exactly the size the inode says, so a corrupt block
    /// is found now rather than when an app reads it. squashfs carries no checksums: a block
    /// stored uncompressed (incompressible data) can only be checked against a digest of the
    /// whole file, which store-signed packages carry.
    pub fn verify_data(&self) -> Result<(), ImageError> {
        let block = u64::from(self.sb.block_size);
        let mut seen = HashSet::new();
        self.walk_inodes(&mut |e, inode| {
            if e.kind != EntryKind::File || (e.nlink > 1 && !seen.insert(e.inode)) {
                return Ok(());
            }
            let what = || format!("file {}", shown(&e.path).display());
            let (mut frag_index, mut frag_offset) = (0u32, 0u32);
            // SAFETY: a live file inode and valid out-pointers.
            let rc = unsafe {
                ffi::sqfs_inode_get_frag_location(inode.as_ptr(), &mut frag_index, &mut frag_offset)
            };
            if rc != 0 {
                return Err(self.corrupt(what(), rc));
            }
            let has_fragment = frag_index != 0xFFFF_FFFF && e.size % block != 0;
            let full_blocks = if has_fragment {
                e.size / block
            } else {
                e.size.div_ceil(block)
            };
            let check = |rc: i32, got: usize, want: u64, out: *mut u8| {
                // SAFETY: `out` was allocated by libsquashfs for us (or is null).
                drop(unsafe { Malloced::from_raw(out) });
                if rc != 0 {
                    return Err(self.corrupt(what(), rc));
                }
                if got as u64 != want {
                    return Err(self.corrupt(
                        format!(
                            "{} (a block decompressed to {got} bytes, not {want})",
                            what()
                        ),
                        ffi::SQFS_ERROR_CORRUPTED,
                    ));
                }
                Ok(())
            };
            for index in 0..full_blocks {
                let want = (e.size - index * block).min(block);
                let (mut size, mut out) = (0usize, ptr::null_mut());
                // SAFETY: live reader and file inode; valid out-pointers.
                let rc = unsafe {
                    ffi::sqfs_data_reader_get_block(
                        self.data.as_ptr(),
                        inode.as_ptr(),
                        index as usize,
                        &mut size,
                        &mut out,
                    )
                };
                check(rc, size, want, out)?;
            }
            if has_fragment {
                let (mut size, mut out) = (0usize, ptr::null_mut());
                // SAFETY: as above.
                let rc = unsafe {
                    ffi::sqfs_data_reader_get_fragment(
                        self.data.as_ptr(),
                        inode.as_ptr(),
                        &mut size,
                        &mut out,
                    )
                };
                check(rc, size, e.size % block, out)?;
            }
            Ok(())
        })
    }

    /// Wraps an error about an entry so that it names this image.
    pub(super) fn in_image(&self, err: ImageError) -> ImageError {
        match err {
            // These already name the image.
            e @ (ImageError::Corrupt { .. } | ImageError::InImage { .. }) => e,
            e => ImageError::InImage {
                image: self.name.clone(),
                source: Box::new(e),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::super::testutil::make_fixture;
    use super::super::{WriteOptions, write_image};
    use super::*;

    fn parent_of(dir: &InodePtr) -> Option<u32> {
        let i = dir.get();
        // SAFETY: the union member matches the type.
        unsafe {
            match u32::from(i.base.type_) {
                ffi::SQFS_INODE_DIR => Some(i.data.dir.parent_inode),
                ffi::SQFS_INODE_EXT_DIR => Some(i.data.dir_ext.parent_inode),
                _ => None,
            }
        }
    }

    #[test]
    fn image_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Image>();
    }

    #[test]
    fn directory_parents_and_export_table() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        make_fixture(&src);
        let out = d.path().join("img.pack");
        write_image(&src, &out, &WriteOptions::default()).unwrap();

        let img = Image::open(&out).unwrap();
        let count = img.superblock().inode_count;
        let rd = img.dir_reader().unwrap();
        let root = img.root(&rd).unwrap();
        // Like mksquashfs: the root is the last inode and its parent is one past the end.
        assert_eq!(root.get().base.inode_number, count);
        assert_eq!(parent_of(&root), Some(count + 1));
        let mut stack = vec![(PathBuf::new(), root)];
        let mut dirs = 0;
        while let Some((path, dir)) = stack.pop() {
            dirs += 1;
            let number = dir.get().base.inode_number;
            for (name, child) in img.list_dir(&rd, &dir, &path).unwrap() {
                if let Some(parent) = parent_of(&child) {
                    assert_eq!(parent, number, "parent of {}", path.display());
                    stack.push((path.join(OsStr::from_bytes(&name)), child));
                }
            }
        }
        assert_eq!(dirs, 10);

        // The export table maps every inode number to its inode: squashfs-ng's reader looks
        // inodes up through it.
        let archive = squashfs_ng::read::Archive::open(&out).unwrap();
        for id in 1..=count {
            assert_eq!(archive.get_id(u64::from(id)).unwrap().id(), id);
        }
        assert!(archive.get_id(u64::from(count) + 1).is_err());
    }
}
