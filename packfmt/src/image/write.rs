//! Writing reproducible images: [`write_image`].

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::builder::Builder;
use super::error::ImageError;
use super::options::WriteOptions;
use super::tree::Tree;

/// What [`write_image`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Regular files (hard links to one file count once).
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file data read.
    pub bytes_in: u64,
    /// Size of the image file, padding included.
    pub bytes_out: u64,
}

/// Writes the tree at `source_dir` to a squashfs image at `output`.
///
/// The image is **reproducible**: it depends only on the tree's names, contents, file types,
/// permission bits, symlink targets and hard links, and on `opts` (not on `opts.jobs`).
/// Entries are sorted byte-wise, every inode is owned by 0:0 with mtime `opts.mtime`, and the
/// superblock's modification time is `opts.mtime` too.
///
/// What is stored: regular files, directories (empty ones too), symlinks (targets verbatim),
/// fifos and sockets, hard links (one inode, correct link count), permission bits including
/// the sticky bit. Symlinks below `source_dir` are never followed (`source_dir` itself may be
/// one). Setuid/setgid bits and device nodes are rejected or stripped per
/// `opts.special_files`. **Extended attributes are not stored**: a `security.capability`
/// xattr would grant file capabilities inside the sandbox, a privilege escalation, and
/// SELinux/ACL attributes are meaningless there. Sparse files are stored with their holes
/// (zero blocks take no space). The image is padded to a multiple of 4 KiB for loop devices
/// and has an export table (NFS export, `unsquashfs` inode lookup).
///
/// The image is written to a temporary file next to `output`, fsynced, given mode 0644 and
/// renamed over `output` only when complete: on error `output` is untouched and the temporary
/// file removed. If `output` already exists inside `source_dir`, that previous image is left
/// out of the new one.
pub fn write_image(
    source_dir: &Path,
    output: &Path,
    opts: &WriteOptions,
) -> Result<WriteStats, ImageError> {
    let jobs = opts.validate()?;
    // An image written into its own source must not include its previous version.
    let previous = fs::metadata(output).ok().filter(|m| m.is_file());
    let exclude = previous.map(|m| (m.dev(), m.ino()));
    let tree = Tree::scan(source_dir, opts.special_files, exclude)?;
    let files = tree.files_in_order();

    let name = output.file_name().ok_or_else(|| {
        let msg = "the output path does not name a file";
        ImageError::io(
            "write",
            output,
            io::Error::new(io::ErrorKind::InvalidInput, msg),
        )
    })?;
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = TempFile::create(dir, name)?;
    let write_err = |e| ImageError::io("write", output, e);
    let out = tmp.file.try_clone().map_err(write_err)?;

    let stats = Builder::new(out, output, opts, jobs, files.len())?.write(&tree, &files)?;

    tmp.file.sync_all().map_err(write_err)?;
    tmp.persist(output)?;
    // Make the rename itself durable; failing to is not worth failing the build for.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!("cannot fsync {}: {e}", dir.display());
    }

    tracing::debug!(
        source = %source_dir.display(),
        output = %output.display(),
        compression = %opts.compression,
        files = stats.files,
        dirs = stats.dirs,
        symlinks = stats.symlinks,
        bytes_in = stats.bytes_in,
        bytes_out = stats.bytes_out,
        skipped_devices = tree.skipped_devices,
        stripped_setid = tree.stripped_setid,
        "wrote squashfs image"
    );
    Ok(stats)
}

/// A temporary file next to the output, removed on drop unless renamed into place.
struct TempFile {
    file: File,
    path: Option<PathBuf>,
}

impl TempFile {
    fn create(dir: &Path, name: &OsStr) -> Result<TempFile, ImageError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut attempt = 0;
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".{}-{n}-{nanos:08x}.tmp", std::process::id()));
            let path = dir.join(tmp_name);
            match File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        path: Some(path),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(ImageError::io("create a temporary file in", dir, e)),
            }
        }
    }

    /// Renames the file to `output` (replacing it) and gives it mode 0644 whatever the umask.
    fn persist(mut self, output: &Path) -> Result<(), ImageError> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        let result = self
            .file
            .set_permissions(fs::Permissions::from_mode(0o644))
            .and_then(|()| fs::rename(&path, output));
        if let Err(e) = result {
            let _ = fs::remove_file(&path);
            return Err(ImageError::io("rename the finished image to", output, e));
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}
