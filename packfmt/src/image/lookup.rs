//! Reading one file from an image by path, without following symlinks.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr;

use super::entry::EntryKind;
use super::error::ImageError;
use super::ffi::{self, Malloced};
use super::read::{Image, InodePtr, failure, shown};

impl Image {
    /// Reads the regular file at `path` (relative to the image root, e.g. `meta/pack.yaml`)
    /// without following symlinks anywhere on the way, refusing files larger than `max_size`
    /// before reading them.
    pub fn read_file(&self, path: &str, max_size: u64) -> Result<Vec<u8>, ImageError> {
        self.lookup_and_read(path, max_size)
            .map_err(|e| self.in_image(e))
    }

    fn lookup_and_read(&self, path: &str, max_size: u64) -> Result<Vec<u8>, ImageError> {
        let rel = path.strip_prefix('/').unwrap_or(path);
        let components: Vec<&str> = rel.split('/').collect();
        if rel.is_empty() || components.iter().any(|c| matches!(*c, "" | "." | "..")) {
            return Err(ImageError::InvalidPath { path: path.into() });
        }
        let rd = self.dir_reader()?;
        let mut inode = self.root(&rd)?;
        let mut prefix = PathBuf::new();
        for comp in components {
            let kind = self.entry(&prefix, &inode)?.kind;
            if kind != EntryKind::Dir {
                return Err(ImageError::NotADirectory {
                    path: shown(&prefix),
                    kind: kind.name(),
                });
            }
            let what = || format!("directory {}", shown(&prefix).display());
            // SAFETY: live reader and directory inode.
            let rc = unsafe { ffi::sqfs_dir_reader_open_dir(rd.as_ptr(), inode.as_ptr(), 0) };
            if rc != 0 {
                return Err(self.corrupt(what(), rc));
            }
            let name =
                CString::new(comp).map_err(|_| ImageError::InvalidPath { path: path.into() })?;
            // SAFETY: live reader, valid C string.
            let rc = unsafe { ffi::sqfs_dir_reader_find(rd.as_ptr(), name.as_ptr()) };
            if rc == ffi::SQFS_ERROR_NO_ENTRY {
                return Err(ImageError::NotFound {
                    path: shown(Path::new(rel)),
                });
            } else if rc != 0 {
                return Err(self.corrupt(what(), rc));
            }
            prefix.push(comp);
            let mut p = ptr::null_mut();
            // SAFETY: live reader positioned on the entry found; valid out-pointer.
            let rc = unsafe { ffi::sqfs_dir_reader_get_inode(rd.as_ptr(), &mut p) };
            // SAFETY: on success, a malloc'ed inode we now own.
            inode = match unsafe { Malloced::from_raw(p) } {
                Some(inode) if rc == 0 => inode,
                _ => {
                    return Err(self.corrupt(
                        format!("the inode of {}", shown(&prefix).display()),
                        failure(rc),
                    ));
                }
            };
        }
        let entry = self.entry(&prefix, &inode)?;
        if entry.kind != EntryKind::File {
            return Err(ImageError::NotRegularFile {
                path: shown(&prefix),
                kind: entry.kind.name(),
            });
        }
        if entry.size > max_size {
            return Err(ImageError::TooLarge {
                path: shown(&prefix),
                size: entry.size,
                max: max_size,
            });
        }
        self.read_data(&inode, entry.size, &prefix)
    }

    fn read_data(&self, inode: &InodePtr, size: u64, path: &Path) -> Result<Vec<u8>, ImageError> {
        let what = || format!("file {}", shown(path).display());
        let len =
            usize::try_from(size).map_err(|_| self.corrupt(what(), ffi::SQFS_ERROR_OVERFLOW))?;
        let mut buf = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let chunk = (len - done).min(1 << 30);
            // SAFETY: live reader and file inode; `buf[done..]` has at least `chunk` bytes.
            let rc = unsafe {
                ffi::sqfs_data_reader_read(
                    self.data.as_ptr(),
                    inode.as_ptr(),
                    done as u64,
                    buf[done..].as_mut_ptr().cast(),
                    chunk as u32,
                )
            };
            if rc <= 0 {
                return Err(self.corrupt(
                    what(),
                    if rc == 0 {
                        ffi::SQFS_ERROR_CORRUPTED
                    } else {
                        rc
                    },
                ));
            }
            done += rc as usize;
        }
        Ok(buf)
    }
}
