//! An LZO `sqfs_compressor_t` implemented in Rust over liblzo2.
//!
//! libsquashfs itself has no LZO support (liblzo2 is GPL, libsquashfs LGPL); gensquashfs adds
//! it the same way in its front end. We use LZO1X-999 at level 8, mksquashfs's default, which
//! needs no compressor options in the image.

use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use super::ffi;

/// mksquashfs's and gensquashfs's default LZO level for LZO1X-999.
const LEVEL: c_int = ffi::SQFS_LZO_DEFAULT_LEVEL as c_int;
/// `LZO1X_999_MEM_COMPRESS` from `<lzo/lzo1x.h>` (a macro bindgen cannot evaluate).
const WORK_MEM: usize = 14 * 16384 * std::mem::size_of::<i16>();

#[repr(C)]
struct Lzo {
    /// Must stay the first field.
    base: ffi::sqfs_compressor_t,
    block_size: u32,
    uncompress: bool,
    /// The largest input `compress` accepts (a data or meta data block).
    max_in: usize,
    /// LZO1X-999's working memory (compressor only).
    work: Vec<u8>,
    /// Output scratch at LZO's worst-case size, since liblzo2 does no bounds checking when
    /// compressing (compressor only).
    scratch: Vec<u8>,
}

/// Whether liblzo2 accepted our view of its ABI (`lzo_init()`).
fn lzo_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        use std::mem::size_of;
        // SAFETY: `__lzo_init_v2` only compares the numbers; this is the `lzo_init()` macro.
        let rc = unsafe {
            ffi::__lzo_init_v2(
                ffi::LZO_VERSION,
                size_of::<i16>() as c_int,
                size_of::<c_int>() as c_int,
                size_of::<std::os::raw::c_long>() as c_int,
                size_of::<u32>() as c_int,
                size_of::<ffi::lzo_uint>() as c_int,
                size_of::<*const u8>() as c_int,
                size_of::<*const u8>() as c_int,
                size_of::<*mut c_void>() as c_int,
                size_of::<ffi::lzo_callback_t>() as c_int,
            )
        };
        rc == ffi::LZO_E_OK as c_int
    })
}

/// Creates an LZO compressor (or decompressor, if `uncompress`) for `block_size`-byte blocks.
/// Returns a libsquashfs error code on failure.
pub(crate) fn create(
    block_size: u32,
    uncompress: bool,
) -> Result<*mut ffi::sqfs_compressor_t, i32> {
    if !lzo_ready() {
        return Err(ffi::SQFS_ERROR_COMPRESSOR);
    }
    let lzo = Box::new(new_state(block_size, uncompress));
    Ok(Box::into_raw(lzo).cast())
}

fn new_state(block_size: u32, uncompress: bool) -> Lzo {
    let max_in = (block_size as usize).max(ffi::SQFS_META_BLOCK_SIZE as usize);
    let (work, scratch) = if uncompress {
        (Vec::new(), Vec::new())
    } else {
        (vec![0; WORK_MEM], vec![0; max_in + max_in / 16 + 64 + 3])
    };
    Lzo {
        base: ffi::sqfs_compressor_t {
            base: ffi::sqfs_object_t {
                destroy: Some(destroy),
                copy: Some(copy),
            },
            get_configuration: Some(get_configuration),
            write_options: Some(write_options),
            read_options: Some(read_options),
            do_block: Some(if uncompress { decompress } else { compress }),
        },
        block_size,
        uncompress,
        max_in,
        work,
        scratch,
    }
}

/// # Safety
/// `p` must point to the `base` of a live `Lzo` created by `create` or `copy`.
unsafe fn state<'a>(p: *const ffi::sqfs_compressor_t) -> &'a mut Lzo {
    // SAFETY: `base` is the first field of the `#[repr(C)]` `Lzo`, and each compressor object
    // is used by one thread at a time (libsquashfs gives each worker its own copy).
    unsafe { &mut *p.cast_mut().cast::<Lzo>() }
}

unsafe extern "C" fn destroy(obj: *mut ffi::sqfs_object_t) {
    // SAFETY: only ever installed on boxes leaked by `create`/`copy`.
    drop(unsafe { Box::from_raw(obj.cast::<Lzo>()) });
}

unsafe extern "C" fn copy(obj: *const ffi::sqfs_object_t) -> *mut ffi::sqfs_object_t {
    // SAFETY: see `state`.
    let old = unsafe { state(obj.cast()) };
    Box::into_raw(Box::new(new_state(old.block_size, old.uncompress))).cast()
}

unsafe extern "C" fn get_configuration(
    cmp: *const ffi::sqfs_compressor_t,
    cfg: *mut ffi::sqfs_compressor_config_t,
) {
    // SAFETY: see `state`; `cfg` is a valid out-pointer.
    unsafe {
        let lzo = state(cmp);
        let mut out = ffi::sqfs_compressor_config_t {
            id: ffi::SQFS_COMP_LZO as u16,
            block_size: lzo.block_size,
            level: LEVEL as u32,
            ..Default::default()
        };
        out.opt.lzo.algorithm = ffi::SQFS_LZO1X_999 as u16;
        if lzo.uncompress {
            out.flags |= ffi::SQFS_COMP_FLAG_UNCOMPRESS as u16;
        }
        ptr::write(cfg, out);
    }
}

unsafe extern "C" fn write_options(
    _cmp: *mut ffi::sqfs_compressor_t,
    _file: *mut ffi::sqfs_file_t,
) -> c_int {
    // LZO1X-999 level 8 is the default: no options block.
    0
}

unsafe extern "C" fn read_options(
    _cmp: *mut ffi::sqfs_compressor_t,
    _file: *mut ffi::sqfs_file_t,
) -> c_int {
    // Every LZO1X variant decompresses with the same function: the options do not matter.
    0
}

unsafe extern "C" fn compress(
    cmp: *mut ffi::sqfs_compressor_t,
    input: *const u8,
    size: u32,
    out: *mut u8,
    outsize: u32,
) -> i32 {
    // SAFETY: see `state`.
    let lzo = unsafe { state(cmp) };
    if size as usize > lzo.max_in {
        return ffi::SQFS_ERROR_ARG_INVALID;
    }
    let mut len = lzo.scratch.len() as ffi::lzo_uint;
    // SAFETY: `input` has `size` bytes; `scratch` has room for LZO's worst case for `size`
    // bytes (checked above); `work` is LZO1X_999_MEM_COMPRESS bytes.
    let rc = unsafe {
        ffi::lzo1x_999_compress_level(
            input,
            ffi::lzo_uint::from(size),
            lzo.scratch.as_mut_ptr(),
            &mut len,
            lzo.work.as_mut_ptr().cast(),
            ptr::null(),
            0,
            ptr::null_mut(),
            LEVEL,
        )
    };
    if rc != ffi::LZO_E_OK as c_int {
        return ffi::SQFS_ERROR_COMPRESSOR;
    }
    if len < ffi::lzo_uint::from(size) && len <= ffi::lzo_uint::from(outsize) {
        // SAFETY: `out` has `outsize >= len` bytes; `scratch` has `len` valid bytes.
        unsafe { ptr::copy_nonoverlapping(lzo.scratch.as_ptr(), out, len as usize) };
        len as i32
    } else {
        // Incompressible: libsquashfs stores the block uncompressed.
        0
    }
}

unsafe extern "C" fn decompress(
    _cmp: *mut ffi::sqfs_compressor_t,
    input: *const u8,
    size: u32,
    out: *mut u8,
    outsize: u32,
) -> i32 {
    if outsize >= 0x7FFF_FFFF {
        return ffi::SQFS_ERROR_ARG_INVALID;
    }
    let mut len = ffi::lzo_uint::from(outsize);
    // SAFETY: `input` has `size` bytes and `out` `outsize` bytes; the `_safe` decompressor
    // checks both bounds and needs no working memory.
    let rc = unsafe {
        ffi::lzo1x_decompress_safe(
            input,
            ffi::lzo_uint::from(size),
            out,
            &mut len,
            ptr::null_mut(),
        )
    };
    if rc != ffi::LZO_E_OK as c_int {
        return ffi::SQFS_ERROR_COMPRESSOR;
    }
    len as i32
}
