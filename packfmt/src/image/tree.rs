//! The source tree, scanned into memory before anything is written: names sorted byte-wise,
//! hard links resolved, link counts computed, inode numbers assigned.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::ImageError;
use super::options::SpecialFiles;

/// Index of an inode in [`Tree::inodes`]; the root is 0.
pub(crate) type InodeId = usize;

/// The longest file name squashfs can store (the on-disk field is `len - 1` in a u16, but the
/// kernel and mksquashfs cap names at 256 bytes).
pub(crate) const MAX_NAME_LEN: usize = 256;

const SETID: u32 = 0o6000;

/// One directory entry: a name and the inode it points to (several entries may share an inode:
/// hard links).
pub(crate) struct Entry {
    pub name: CString,
    pub inode: InodeId,
}

/// What an inode is.
pub(crate) enum Kind {
    Dir {
        entries: Vec<Entry>,
        parent: InodeId,
    },
    File,
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    Socket,
}

pub(crate) struct Inode {
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`, setuid/setgid already stripped if asked).
    pub perm: u16,
    /// Link count in the image: entries pointing here for files, 2 + subdirectories for
    /// directories.
    pub nlink: u32,
    /// Where it was found (the first of its names, for hard links).
    pub path: PathBuf,
}

impl Inode {
    /// The full mode, file type included.
    pub fn mode(&self) -> u16 {
        let kind = match self.kind {
            Kind::Dir { .. } => libc::S_IFDIR,
            Kind::File => libc::S_IFREG,
            Kind::Symlink { .. } => libc::S_IFLNK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
        };
        kind as u16 | self.perm
    }
}

/// A scanned source tree.
pub(crate) struct Tree {
    pub inodes: Vec<Inode>,
    /// Device nodes left out ([`SpecialFiles::Strip`]).
    pub skipped_devices: u64,
    /// Files whose setuid/setgid bits were cleared ([`SpecialFiles::Strip`]).
    pub stripped_setid: u64,
}

impl Tree {
    /// Scans `root` without following symlinks below it (`root` itself may be a symlink to a
    /// directory). The regular file with (device, inode) `exclude` is left out: the image
    /// being rebuilt, when it is written inside its own source.
    pub fn scan(
        root: &Path,
        special: SpecialFiles,
        exclude: Option<(u64, u64)>,
    ) -> Result<Tree, ImageError> {
        let md = fs::metadata(root).map_err(|e| ImageError::io("read", root, e))?;
        if !md.is_dir() {
            return Err(ImageError::SourceNotDirectory { path: root.into() });
        }
        let mut tree = Tree {
            inodes: Vec::new(),
            skipped_devices: 0,
            stripped_setid: 0,
        };
        let perm = tree.perm(root, md.mode(), special)?;
        tree.inodes.push(Inode {
            kind: Kind::Dir {
                entries: Vec::new(),
                parent: 0,
            },
            perm,
            nlink: 2,
            path: root.into(),
        });
        let mut hard_links: HashMap<(u64, u64), InodeId> = HashMap::new();
        let mut pending = vec![0];
        while let Some(dir) = pending.pop() {
            let before = pending.len();
            let entries = tree.scan_dir(dir, special, exclude, &mut hard_links, &mut pending)?;
            // Depth-first in name order, so "first name of a hard link" means what it says.
            pending[before..].reverse();
            let subdirs = entries
                .iter()
                .filter(|e| matches!(tree.inodes[e.inode].kind, Kind::Dir { .. }))
                .count();
            let inode = &mut tree.inodes[dir];
            inode.nlink = 2 + subdirs as u32;
            if let Kind::Dir { entries: e, .. } = &mut inode.kind {
                *e = entries;
            }
        }
        if tree.inodes.len() >= u32::MAX as usize {
            return Err(ImageError::TooManyFiles { path: root.into() });
        }
        Ok(tree)
    }

    fn scan_dir(
        &mut self,
        dir: InodeId,
        special: SpecialFiles,
        exclude: Option<(u64, u64)>,
        hard_links: &mut HashMap<(u64, u64), InodeId>,
        pending: &mut Vec<InodeId>,
    ) -> Result<Vec<Entry>, ImageError> {
        let dir_path = self.inodes[dir].path.clone();
        let read_err = |e| ImageError::io("read", &dir_path, e);
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir_path).map_err(read_err)? {
            names.push(entry.map_err(read_err)?.file_name().into_vec());
        }
        names.sort_unstable();

        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let path = dir_path.join(OsString::from_vec(name.clone()));
            if name.len() > MAX_NAME_LEN {
                return Err(ImageError::NameTooLong {
                    path,
                    len: name.len(),
                });
            }
            let md = fs::symlink_metadata(&path).map_err(|e| ImageError::io("read", &path, e))?;
            let ft = md.file_type();
            if ft.is_char_device() || ft.is_block_device() {
                match special {
                    SpecialFiles::Reject => return Err(ImageError::DeviceNode { path }),
                    SpecialFiles::Strip => {
                        self.skipped_devices += 1;
                        continue;
                    }
                }
            }
            // readdir never returns names with '/' or NUL.
            let name = CString::new(name)
                .map_err(|_| ImageError::UnsupportedFileType { path: path.clone() })?;
            let key = (md.dev(), md.ino());
            if ft.is_file() && Some(key) == exclude {
                tracing::debug!("leaving the output {} out of the image", path.display());
                continue;
            }
            if let Some(&id) = hard_links.get(&key).filter(|_| !ft.is_dir()) {
                self.inodes[id].nlink += 1;
                entries.push(Entry { name, inode: id });
                continue;
            }
            let kind = if ft.is_dir() {
                Kind::Dir {
                    entries: Vec::new(),
                    parent: dir,
                }
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| ImageError::io("read", &path, e))?;
                Kind::Symlink {
                    target: target.into_os_string().into_vec(),
                }
            } else if ft.is_fifo() {
                Kind::Fifo
            } else if ft.is_socket() {
                Kind::Socket
            } else {
                return Err(ImageError::UnsupportedFileType { path });
            };
            // Symlink permissions are meaningless (and always 0777 on Linux).
            let perm = if ft.is_symlink() {
                0o777
            } else {
                self.perm(&path, md.mode(), special)?
            };
            let id = self.inodes.len();
            let is_dir = ft.is_dir();
            self.inodes.push(Inode {
                kind,
                perm,
                nlink: 1,
                path,
            });
            if is_dir {
                pending.push(id);
            } else if md.nlink() > 1 {
                hard_links.insert(key, id);
            }
            entries.push(Entry { name, inode: id });
        }
        Ok(entries)
    }

    fn perm(&mut self, path: &Path, mode: u32, special: SpecialFiles) -> Result<u16, ImageError> {
        let mut perm = mode & 0o7777;
        if perm & SETID != 0 {
            match special {
                SpecialFiles::Reject => {
                    return Err(ImageError::SetuidSetgid { path: path.into() });
                }
                SpecialFiles::Strip => {
                    self.stripped_setid += 1;
                    perm &= !SETID;
                }
            }
        }
        Ok(perm as u16)
    }

    pub fn entries(&self, dir: InodeId) -> &[Entry] {
        match &self.inodes[dir].kind {
            Kind::Dir { entries, .. } => entries,
            _ => &[],
        }
    }

    fn is_dir(&self, id: InodeId) -> bool {
        matches!(self.inodes[id].kind, Kind::Dir { .. })
    }

    /// Assigns inode numbers like gensquashfs: a directory's entries get consecutive numbers,
    /// after everything below its subdirectories, so children are numbered before their
    /// parents and the root comes last. Hard links share their first number.
    ///
    /// Returns `(numbers, order)`: `numbers[id]` is inode `id`'s number, `order[n - 1]` the
    /// inode numbered `n`. Writing inodes in that order writes every inode before any directory
    /// that lists it.
    pub fn number(&self) -> (Vec<u32>, Vec<InodeId>) {
        let mut numbers = vec![0u32; self.inodes.len()];
        let mut order = Vec::with_capacity(self.inodes.len());
        let assign = |id: InodeId, numbers: &mut Vec<u32>, order: &mut Vec<InodeId>| {
            if numbers[id] == 0 {
                order.push(id);
                numbers[id] = order.len() as u32;
            }
        };
        // (directory, its subdirectories are done)
        let mut stack = vec![(0, false)];
        while let Some((dir, expanded)) = stack.pop() {
            let entries = self.entries(dir);
            if expanded {
                for e in entries {
                    assign(e.inode, &mut numbers, &mut order);
                }
            } else {
                stack.push((dir, true));
                for e in entries.iter().rev() {
                    if self.is_dir(e.inode) {
                        stack.push((e.inode, false));
                    }
                }
            }
        }
        assign(0, &mut numbers, &mut order);
        (numbers, order)
    }

    /// Regular files in depth-first, name order (hard links once): the order their data is
    /// written in, like mksquashfs.
    pub fn files_in_order(&self) -> Vec<InodeId> {
        let mut seen = vec![false; self.inodes.len()];
        let mut files = Vec::new();
        let mut stack = vec![(0, 0)];
        while let Some((dir, next)) = stack.pop() {
            let entries = self.entries(dir);
            let Some(e) = entries.get(next) else { continue };
            stack.push((dir, next + 1));
            match self.inodes[e.inode].kind {
                Kind::Dir { .. } => stack.push((e.inode, 0)),
                Kind::File if !seen[e.inode] => {
                    seen[e.inode] = true;
                    files.push(e.inode);
                }
                _ => {}
            }
        }
        files
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn names(tree: &Tree, dir: InodeId) -> Vec<String> {
        tree.entries(dir)
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn scan_sorts_links_and_counts() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("b/sub")).unwrap();
        fs::create_dir(r.join("a")).unwrap();
        fs::write(r.join("B"), "x").unwrap();
        fs::write(r.join("a/f"), "y").unwrap();
        fs::hard_link(r.join("a/f"), r.join("b/g")).unwrap();
        symlink("a/f", r.join("c")).unwrap();
        let tree = Tree::scan(r, SpecialFiles::Reject, None).unwrap();
        assert_eq!(names(&tree, 0), ["B", "a", "b", "c"]);
        assert_eq!(tree.inodes[0].nlink, 4);
        let f = tree.entries(0)[1].inode;
        let f = tree.entries(f)[0].inode;
        assert_eq!(tree.inodes[f].nlink, 2);
        let b = tree.entries(0)[2].inode;
        assert_eq!(tree.inodes[b].nlink, 3);
        assert_eq!(tree.entries(b)[0].inode, f);
        let c = tree.entries(0)[3].inode;
        assert!(matches!(&tree.inodes[c].kind, Kind::Symlink { target } if target == b"a/f"));

        let (numbers, order) = tree.number();
        assert_eq!(order.len(), tree.inodes.len());
        assert_eq!(numbers[0] as usize, tree.inodes.len());
        for (i, &id) in order.iter().enumerate() {
            assert_eq!(numbers[id] as usize, i + 1);
            for e in tree.entries(id) {
                assert!(numbers[e.inode] < numbers[id], "child after parent");
            }
        }
        let files: Vec<_> = tree
            .files_in_order()
            .iter()
            .map(|&id| tree.inodes[id].path.strip_prefix(r).unwrap().to_owned())
            .collect();
        assert_eq!(files, [Path::new("B"), Path::new("a/f")]);
    }

    #[test]
    fn setid_is_rejected_or_stripped() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("su");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
        let err = Tree::scan(d.path(), SpecialFiles::Reject, None)
            .err()
            .unwrap();
        assert!(matches!(&err, ImageError::SetuidSetgid { path } if *path == f));
        let tree = Tree::scan(d.path(), SpecialFiles::Strip, None).unwrap();
        assert_eq!(tree.inodes[1].perm, 0o755);
        assert_eq!(tree.stripped_setid, 1);
    }

    #[test]
    fn source_must_be_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, "").unwrap();
        let err = Tree::scan(&f, SpecialFiles::Reject, None).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: the source of an image must be a directory",
                f.display()
            )
        );
        assert!(matches!(
            Tree::scan(&d.path().join("missing"), SpecialFiles::Reject, None),
            Err(ImageError::Io { .. })
        ));
    }
}
