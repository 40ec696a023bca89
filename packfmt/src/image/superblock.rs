//! The squashfs 4.0 superblock, parsed and checked from raw bytes before any library sees the
//! file, so that the common failures (not an image, truncated download, unknown compressor)
//! get precise messages.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::compress::{self, Compression};
use super::error::ImageError;

/// Size of the on-disk superblock.
pub const SUPERBLOCK_SIZE: usize = 96;
const MAGIC: &[u8; 4] = b"hsqs";
const NO_TABLE: u64 = u64::MAX;

/// The fields of a squashfs superblock (little endian on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Number of inodes.
    pub inode_count: u32,
    /// The image's modification time (seconds since the epoch).
    pub modification_time: u32,
    /// Data block size in bytes.
    pub block_size: u32,
    /// Number of fragment table entries.
    pub fragment_count: u32,
    /// Compressor id (1 gzip, 2 lzma, 3 lzo, 4 xz, 5 lz4, 6 zstd).
    pub compressor_id: u16,
    /// log2 of `block_size`.
    pub block_log: u16,
    /// `SQFS_FLAG_*` bits.
    pub flags: u16,
    /// Number of entries in the uid/gid table.
    pub id_count: u16,
    /// Reference of the root directory inode.
    pub root_inode_ref: u64,
    /// Bytes of the file the image uses (the rest is padding).
    pub bytes_used: u64,
    /// Start of the uid/gid lookup table.
    pub id_table_start: u64,
    /// Start of the xattr table (`u64::MAX` if none).
    pub xattr_table_start: u64,
    /// Start of the inode table.
    pub inode_table_start: u64,
    /// Start of the directory table.
    pub directory_table_start: u64,
    /// Start of the fragment table (`u64::MAX` if none).
    pub fragment_table_start: u64,
    /// Start of the export table (`u64::MAX` if none).
    pub export_table_start: u64,
}

impl Superblock {
    /// Reads and checks the superblock of the file at `path`.
    pub fn read(path: &Path) -> Result<Superblock, ImageError> {
        let mut file = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ImageError::io("stat", path, e))?
            .len();
        let mut buf = Vec::with_capacity(SUPERBLOCK_SIZE);
        file.by_ref()
            .take(SUPERBLOCK_SIZE as u64)
            .read_to_end(&mut buf)
            .map_err(|e| ImageError::io("read", path, e))?;
        Superblock::parse(&buf, len, path)
    }

    /// Parses and checks the superblock at the start of `bytes`, for a file of `file_len` bytes
    /// at `path` (used in messages).
    pub fn parse(bytes: &[u8], file_len: u64, path: &Path) -> Result<Superblock, ImageError> {
        if bytes.len() < MAGIC.len() || &bytes[..4] != MAGIC {
            return Err(ImageError::BadMagic { path: path.into() });
        }
        let Some(b) = bytes.get(..SUPERBLOCK_SIZE) else {
            return Err(ImageError::Truncated {
                path: path.into(),
                expected: SUPERBLOCK_SIZE as u64,
                found: file_len.min(bytes.len() as u64),
            });
        };
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        let sb = Superblock {
            inode_count: u32_at(4),
            modification_time: u32_at(8),
            block_size: u32_at(12),
            fragment_count: u32_at(16),
            compressor_id: u16_at(20),
            block_log: u16_at(22),
            flags: u16_at(24),
            id_count: u16_at(26),
            root_inode_ref: u64_at(32),
            bytes_used: u64_at(40),
            id_table_start: u64_at(48),
            xattr_table_start: u64_at(56),
            inode_table_start: u64_at(64),
            directory_table_start: u64_at(72),
            fragment_table_start: u64_at(80),
            export_table_start: u64_at(88),
        };
        let (major, minor) = (u16_at(28), u16_at(30));
        let bad = |reason: String| ImageError::BadSuperblock {
            path: path.into(),
            reason,
        };
        if (major, minor) != (4, 0) {
            return Err(ImageError::UnsupportedVersion {
                path: path.into(),
                major,
                minor,
            });
        }
        if sb.bytes_used > file_len {
            return Err(ImageError::Truncated {
                path: path.into(),
                expected: sb.bytes_used,
                found: file_len,
            });
        }
        if !sb.block_size.is_power_of_two() || !(4096..=1 << 20).contains(&sb.block_size) {
            return Err(bad(format!(
                "block size {} is not a power of two between 4 KiB and 1 MiB",
                sb.block_size
            )));
        }
        if u32::from(sb.block_log) != sb.block_size.trailing_zeros() {
            return Err(bad(format!(
                "block log {} does not match block size {}",
                sb.block_log, sb.block_size
            )));
        }
        if compress::id_name(sb.compressor_id).is_none() {
            return Err(ImageError::UnknownCompressor {
                path: path.into(),
                id: sb.compressor_id,
            });
        }
        if sb.bytes_used < SUPERBLOCK_SIZE as u64 {
            return Err(bad(format!("bytes used ({}) is too small", sb.bytes_used)));
        }
        if sb.inode_count == 0 || sb.id_count == 0 {
            return Err(bad("the inode or id count is zero".to_owned()));
        }
        let tables = [
            ("inode", sb.inode_table_start, false),
            ("directory", sb.directory_table_start, false),
            ("id", sb.id_table_start, false),
            ("fragment", sb.fragment_table_start, true),
            ("export", sb.export_table_start, true),
            ("xattr", sb.xattr_table_start, true),
        ];
        for (name, start, optional) in tables {
            if (start != NO_TABLE || !optional)
                && (start < SUPERBLOCK_SIZE as u64 || start >= sb.bytes_used)
            {
                return Err(bad(format!(
                    "the {name} table starts outside the image (at {start})"
                )));
            }
        }
        Ok(sb)
    }

    /// The compressor's name ("zstd", "gzip", ...).
    pub fn compressor_name(&self) -> &'static str {
        compress::id_name(self.compressor_id).unwrap_or("unknown")
    }

    /// The compressor, if it is one this crate writes.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id(self.compressor_id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn valid() -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&3u32.to_le_bytes()); // inodes
        b[12..16].copy_from_slice(&131072u32.to_le_bytes());
        b[20..22].copy_from_slice(&6u16.to_le_bytes()); // zstd
        b[22..24].copy_from_slice(&17u16.to_le_bytes());
        b[26..28].copy_from_slice(&1u16.to_le_bytes()); // ids
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[40..48].copy_from_slice(&1000u64.to_le_bytes()); // bytes used
        for (off, v) in [(48, 900u64), (56, NO_TABLE), (64, 100), (72, 300)] {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        for off in [80, 88] {
            b[off..off + 8].copy_from_slice(&NO_TABLE.to_le_bytes());
        }
        b
    }

    fn parse(b: &[u8], len: u64) -> Result<Superblock, ImageError> {
        Superblock::parse(b, len, Path::new("x.pack"))
    }

    #[test]
    fn accepts_a_valid_superblock() {
        let sb = parse(&valid(), 4096).unwrap();
        assert_eq!(sb.block_size, 131072);
        assert_eq!(sb.compression(), Some(Compression::Zstd));
        assert_eq!(sb.compressor_name(), "zstd");
        assert_eq!(sb.bytes_used, 1000);
    }

    #[test]
    fn rejects_bad_magic_and_short_files() {
        let err = parse(b"PK\x03\x04", 4).unwrap_err();
        assert_eq!(err.to_string(), "x.pack: not a squashfs image (bad magic)");
        assert!(matches!(parse(b"", 0), Err(ImageError::BadMagic { .. })));
        let err = parse(&valid()[..50], 50).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.pack: the image is truncated: expected 96 bytes, found 50"
        );
    }

    #[test]
    fn rejects_truncated_images() {
        let err = parse(&valid(), 999).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.pack: the image is truncated: expected 1000 bytes, found 999"
        );
    }

    #[test]
    fn rejects_bad_fields() {
        let mut b = valid();
        b[28] = 3;
        assert_eq!(
            parse(&b, 4096).unwrap_err().to_string(),
            "x.pack: unsupported squashfs version 3.0 (only 4.0 is supported)"
        );
        let mut b = valid();
        b[12..16].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(
            parse(&b, 4096)
                .unwrap_err()
                .to_string()
                .contains("block size 100000")
        );
        let mut b = valid();
        b[12..16].copy_from_slice(&(2u32 << 20).to_le_bytes());
        b[22] = 21;
        assert!(matches!(
            parse(&b, 4096),
            Err(ImageError::BadSuperblock { .. })
        ));
        let mut b = valid();
        b[22] = 16;
        assert!(
            parse(&b, 4096)
                .unwrap_err()
                .to_string()
                .contains("block log 16")
        );
        let mut b = valid();
        b[20] = 2; // lzma: not supported
        assert_eq!(
            parse(&b, 4096).unwrap_err().to_string(),
            "x.pack: unsupported compressor id 2 (known: gzip, lzo, xz, lz4, zstd)"
        );
        let mut b = valid();
        b[64..72].copy_from_slice(&5000u64.to_le_bytes());
        assert!(
            parse(&b, 8192)
                .unwrap_err()
                .to_string()
                .contains("inode table")
        );
    }
}
