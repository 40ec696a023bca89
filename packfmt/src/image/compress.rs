//! Compressor choice and creation of libsquashfs compressor objects.

use std::fmt;
use std::str::FromStr;

use super::error::ImageError;
use super::ffi::{self, Obj};
use super::lzo;

/// The compressor used for an image's data and metadata.
///
/// Levels are mksquashfs's defaults so that sizes compare: zstd level 15, xz preset 6 with a
/// dictionary the size of a block, LZO1X-999 level 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    /// Zstandard (the default: fast to decompress, good ratio).
    #[default]
    Zstd,
    /// XZ (smallest images, slow to build and read).
    Xz,
    /// LZO (fastest to decompress, largest images).
    Lzo,
}

impl Compression {
    /// All choices, in the order they are listed in messages.
    pub const ALL: [Compression; 3] = [Compression::Zstd, Compression::Xz, Compression::Lzo];

    /// The name used on command lines and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Lzo => "lzo",
        }
    }

    /// The compressor id stored in the superblock.
    pub fn id(self) -> u16 {
        (match self {
            Compression::Zstd => ffi::SQFS_COMP_ZSTD,
            Compression::Xz => ffi::SQFS_COMP_XZ,
            Compression::Lzo => ffi::SQFS_COMP_LZO,
        }) as u16
    }

    /// The variant for a superblock compressor id, if it is one we write.
    pub fn from_id(id: u16) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.id() == id)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error from parsing an unknown compression name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: choose one of zstd, xz, lzo")]
pub struct ParseCompressionError(pub String);

impl FromStr for Compression {
    type Err = ParseCompressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ParseCompressionError(s.to_owned()))
    }
}

/// The name of any squashfs compressor id (for messages about images we read).
pub(crate) fn id_name(id: u16) -> Option<&'static str> {
    Some(match u32::from(id) {
        ffi::SQFS_COMP_GZIP => "gzip",
        ffi::SQFS_COMP_LZO => "lzo",
        ffi::SQFS_COMP_XZ => "xz",
        ffi::SQFS_COMP_LZ4 => "lz4",
        ffi::SQFS_COMP_ZSTD => "zstd",
        _ => return None,
    })
}

/// Creates a compressor (or, with `uncompress`, a decompressor) for compressor `id` and
/// `block_size`-byte blocks, with default settings.
pub(crate) fn create(
    id: u16,
    block_size: u32,
    uncompress: bool,
) -> Result<Obj<ffi::sqfs_compressor_t>, ImageError> {
    let what = if uncompress {
        "create the decompressor"
    } else {
        "create the compressor"
    };
    if u32::from(id) == ffi::SQFS_COMP_LZO {
        let ptr = lzo::create(block_size, uncompress).map_err(|c| ImageError::library(what, c))?;
        // SAFETY: a fresh object from `lzo::create`, owned by nobody else.
        return unsafe { Obj::new(ptr, what) };
    }
    let flags = if uncompress {
        ffi::SQFS_COMP_FLAG_UNCOMPRESS as u16
    } else {
        0
    };
    let mut cfg = ffi::sqfs_compressor_config_t::default();
    // SAFETY: `cfg` is a valid out-pointer.
    let rc = unsafe {
        ffi::sqfs_compressor_config_init(&mut cfg, u32::from(id), block_size as usize, flags)
    };
    ffi::check(rc, what)?;
    let mut ptr = std::ptr::null_mut();
    // SAFETY: `cfg` was initialised above; `ptr` is a valid out-pointer.
    let rc = unsafe { ffi::sqfs_compressor_create(&cfg, &mut ptr) };
    ffi::check(rc, what)?;
    // SAFETY: a fresh object from `sqfs_compressor_create`, owned by nobody else.
    unsafe { Obj::new(ptr, what) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Compression::ALL {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
            assert_eq!(Compression::from_id(c.id()), Some(c));
        }
        assert_eq!(Compression::default(), Compression::Zstd);
    }

    #[test]
    fn unknown_name_lists_choices() {
        let err = "gzip".parse::<Compression>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown compression \"gzip\": choose one of zstd, xz, lzo"
        );
        assert!("ZSTD".parse::<Compression>().is_err());
    }

    #[test]
    fn ids_match_the_squashfs_format() {
        assert_eq!(Compression::Zstd.id(), 6);
        assert_eq!(Compression::Xz.id(), 4);
        assert_eq!(Compression::Lzo.id(), 3);
        assert_eq!(id_name(1), Some("gzip"));
        assert_eq!(id_name(5), Some("lz4"));
        assert_eq!(id_name(2), None);
    }

    #[test]
    fn lzo_compresses_and_decompresses() {
        let cmp = create(Compression::Lzo.id(), 131072, false).unwrap();
        let dec = create(Compression::Lzo.id(), 131072, true).unwrap();
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8 / 3).collect();
        let mut packed = vec![0u8; 131072];
        let mut unpacked = vec![0u8; 131072];
        // SAFETY: valid compressor objects and buffers of the sizes passed.
        unsafe {
            let c = &*cmp.as_ptr();
            let n = c.do_block.unwrap()(
                cmp.as_ptr(),
                input.as_ptr(),
                input.len() as u32,
                packed.as_mut_ptr(),
                packed.len() as u32,
            );
            assert!(n > 0 && (n as usize) < input.len(), "{n}");
            let d = &*dec.as_ptr();
            let m = d.do_block.unwrap()(
                dec.as_ptr(),
                packed.as_ptr(),
                n as u32,
                unpacked.as_mut_ptr(),
                unpacked.len() as u32,
            );
            assert_eq!(m as usize, input.len());
            // A copy (what each worker thread gets) works too.
            let copy =
                (*cmp.as_ptr().cast::<ffi::sqfs_object_t>()).copy.unwrap()(cmp.as_ptr().cast());
            let copy = Obj::<ffi::sqfs_compressor_t>::from_raw(copy.cast()).unwrap();
            let n2 = (*copy.as_ptr()).do_block.unwrap()(
                copy.as_ptr(),
                input.as_ptr(),
                input.len() as u32,
                packed.as_mut_ptr(),
                packed.len() as u32,
            );
            assert_eq!(n, n2);
        }
        assert_eq!(unpacked[..input.len()], input[..]);
    }
}
