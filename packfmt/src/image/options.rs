//! Options for writing images.

use std::ffi::OsStr;
use std::num::NonZeroUsize;

use super::compress::Compression;
use super::error::ImageError;

/// mksquashfs's default block size.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;

/// What to do with setuid/setgid bits and device nodes in the source tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpecialFiles {
    /// Fail with an error naming the file (app packages: a setuid binary or a device node in a
    /// package would be a privilege escalation).
    #[default]
    Reject,
    /// Clear setuid/setgid bits and leave character and block devices out (base root
    /// filesystems built with debootstrap, which has both; the runtime provides `/dev`).
    Strip,
}

/// How to write an image. `WriteOptions::default()` matches mksquashfs's defaults (zstd,
/// 128 KiB blocks) with every timestamp set to 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// The compressor.
    pub compression: Compression,
    /// Data block size: a power of two between 4 KiB and 1 MiB.
    pub block_size: u32,
    /// Every inode's mtime and the superblock's modification time.
    pub mtime: u32,
    /// Compressor threads (the output does not depend on it). 0 is treated as 1.
    pub jobs: usize,
    /// What to do with setuid/setgid bits and device nodes.
    pub special_files: SpecialFiles,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::default(),
            block_size: DEFAULT_BLOCK_SIZE,
            mtime: 0,
            jobs: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            special_files: SpecialFiles::default(),
        }
    }
}

impl WriteOptions {
    /// The defaults, with `mtime` taken from `$SOURCE_DATE_EPOCH` if it is set (see
    /// <https://reproducible-builds.org/specs/source-date-epoch/>).
    ///
    /// Fails if the variable is set but is not an integer in `0..=u32::MAX` (squashfs stores
    /// 32-bit timestamps); an empty value counts as unset.
    pub fn from_env() -> Result<Self, ImageError> {
        Self::from_source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
    }

    /// [`WriteOptions::from_env`] with the value of `SOURCE_DATE_EPOCH` passed in.
    pub fn from_source_date_epoch(value: Option<&OsStr>) -> Result<Self, ImageError> {
        let mtime = match value {
            None => 0,
            Some(v) if v.is_empty() => 0,
            Some(v) => v
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| ImageError::SourceDateEpoch {
                    value: v.to_string_lossy().into_owned(),
                })?,
        };
        Ok(WriteOptions {
            mtime,
            ..WriteOptions::default()
        })
    }

    /// Checks the options, returning the number of compressor threads to use.
    pub(crate) fn validate(&self) -> Result<usize, ImageError> {
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
            return Err(ImageError::InvalidOptions(format!(
                "block size {bs} is not a power of two between 4 KiB and 1 MiB"
            )));
        }
        // libsquashfs keeps `jobs` compressor copies and 10 blocks per job in memory.
        Ok(self.jobs.clamp(1, 256))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sde(v: &str) -> Result<WriteOptions, ImageError> {
        WriteOptions::from_source_date_epoch(Some(OsStr::new(v)))
    }

    #[test]
    fn defaults() {
        let o = WriteOptions::default();
        assert_eq!(o.compression, Compression::Zstd);
        assert_eq!(o.block_size, 131072);
        assert_eq!(o.mtime, 0);
        assert!(o.jobs >= 1);
        assert_eq!(o.special_files, SpecialFiles::Reject);
        assert_eq!(WriteOptions::from_source_date_epoch(None).unwrap(), o);
    }

    #[test]
    fn source_date_epoch_sets_mtime() {
        assert_eq!(sde("1700000000").unwrap().mtime, 1_700_000_000);
        assert_eq!(sde("0").unwrap().mtime, 0);
        assert_eq!(sde("4294967295").unwrap().mtime, u32::MAX);
        assert_eq!(sde("").unwrap().mtime, 0);
    }

    #[test]
    fn invalid_source_date_epoch_is_an_error() {
        for bad in ["yesterday", "-1", "4294967296", "1.5", " 12", "0x10"] {
            let err = sde(bad).unwrap_err();
            assert!(matches!(err, ImageError::SourceDateEpoch { .. }), "{bad}");
            assert_eq!(
                err.to_string(),
                format!(
                    "SOURCE_DATE_EPOCH must be an integer number of seconds between 0 and \
                     4294967295, got {bad:?}"
                )
            );
        }
    }

    #[test]
    fn validate_checks_block_size_and_clamps_jobs() {
        let mut o = WriteOptions {
            jobs: 0,
            ..WriteOptions::default()
        };
        assert_eq!(o.validate().unwrap(), 1);
        for bad in [0, 1000, 2048, 3 << 12, 2 << 20] {
            o.block_size = bad;
            assert!(
                matches!(o.validate(), Err(ImageError::InvalidOptions(_))),
                "{bad}"
            );
        }
        for good in [4096, 65536, 1 << 20] {
            o.block_size = good;
            assert!(o.validate().is_ok());
        }
    }
}
