//! An `sqfs_file_t` implemented in Rust over a `std::fs::File`, so that libsquashfs reads and
//! writes through a descriptor we own (the temporary output file, or an image opened with
//! `O_CLOEXEC`), and so the first OS error is kept for the error message instead of being
//! flattened into `SQFS_ERROR_IO`.

use std::fs::File;
use std::io;
use std::os::raw::{c_int, c_void};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use super::ffi;

#[repr(C)]
struct Inner {
    /// Must stay the first field: libsquashfs only ever sees a pointer to it.
    base: ffi::sqfs_file_t,
    file: File,
    size: u64,
    writable: bool,
    error: Option<io::Error>,
}

/// The owner of a Rust-implemented `sqfs_file_t`.
pub(crate) struct SqfsFile(NonNull<Inner>);

impl SqfsFile {
    /// Wraps `file`, whose current length is `size`; `writable` allows `write_at`/`truncate`.
    pub(crate) fn new(file: File, size: u64, writable: bool) -> Self {
        let inner = Box::new(Inner {
            base: ffi::sqfs_file_t {
                base: ffi::sqfs_object_t {
                    destroy: Some(destroy),
                    copy: None,
                },
                read_at: Some(read_at),
                write_at: Some(write_at),
                get_size: Some(get_size),
                truncate: Some(truncate),
            },
            file,
            size,
            writable,
            error: None,
        });
        SqfsFile(NonNull::from(Box::leak(inner)))
    }

    /// The pointer to hand to libsquashfs. Valid as long as `self` is.
    pub(crate) fn as_ptr(&self) -> *mut ffi::sqfs_file_t {
        self.0.as_ptr().cast()
    }

    /// The current length of the file as libsquashfs sees it.
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: valid while `self` lives; libsquashfs is not running (we have `&self` and
        // libsquashfs is only called from the thread owning `self`).
        unsafe { self.0.as_ref().size }
    }

    /// Takes the first OS error a callback hit, if any.
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        // SAFETY: as in `size`; the pointee is only reached through raw pointers (never a
        // long-lived reference) and `SqfsFile` is not `Sync`, so this is the only access.
        unsafe { (*self.0.as_ptr()).error.take() }
    }
}

// SAFETY: `SqfsFile` exclusively owns its allocation (a `File` plus plain data); moving it to
// another thread moves that ownership. It is not `Sync`: callbacks mutate it.
unsafe impl Send for SqfsFile {}

impl Drop for SqfsFile {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::leak` in `new`; libsquashfs never destroys it (only our
        // `destroy` callback could, and nothing calls it on this object).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// Recovers our struct from the pointer libsquashfs hands back.
///
/// # Safety
/// `f` must be the pointer returned by `SqfsFile::as_ptr` of a live `SqfsFile`.
unsafe fn inner<'a>(f: *const ffi::sqfs_file_t) -> &'a mut Inner {
    // SAFETY: `base` is the first field of the `#[repr(C)]` `Inner`; libsquashfs calls back
    // on the thread that called into it, while the Rust side holds no reference.
    unsafe { &mut *f.cast_mut().cast::<Inner>() }
}

fn fail(inner: &mut Inner, err: io::Error, code: i32) -> c_int {
    if inner.error.is_none() {
        inner.error = Some(err);
    }
    code
}

unsafe extern "C" fn destroy(_obj: *mut ffi::sqfs_object_t) {
    // Owned and freed by `SqfsFile`; libsquashfs never owns our file objects.
}

unsafe extern "C" fn read_at(
    f: *mut ffi::sqfs_file_t,
    offset: u64,
    buffer: *mut c_void,
    size: usize,
) -> c_int {
    // SAFETY: see `inner`.
    let inner = unsafe { inner(f) };
    if offset
        .checked_add(size as u64)
        .is_none_or(|end| end > inner.size)
    {
        return ffi::SQFS_ERROR_OUT_OF_BOUNDS;
    }
    if size == 0 {
        return 0;
    }
    // SAFETY: libsquashfs passes a buffer of at least `size` writable bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), size) };
    match inner.file.read_exact_at(buf, offset) {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => ffi::SQFS_ERROR_OUT_OF_BOUNDS,
        Err(e) => fail(inner, e, ffi::SQFS_ERROR_IO),
    }
}

unsafe extern "C" fn write_at(
    f: *mut ffi::sqfs_file_t,
    offset: u64,
    buffer: *const c_void,
    size: usize,
) -> c_int {
    // SAFETY: see `inner`.
    let inner = unsafe { inner(f) };
    if !inner.writable {
        return ffi::SQFS_ERROR_UNSUPPORTED;
    }
    let Some(end) = offset.checked_add(size as u64) else {
        return ffi::SQFS_ERROR_OUT_OF_BOUNDS;
    };
    if size == 0 {
        return 0;
    }
    // SAFETY: libsquashfs passes a buffer of at least `size` readable bytes.
    let buf = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), size) };
    match inner.file.write_all_at(buf, offset) {
        Ok(()) => {
            inner.size = inner.size.max(end);
            0
        }
        Err(e) => fail(inner, e, ffi::SQFS_ERROR_IO),
    }
}

unsafe extern "C" fn get_size(f: *const ffi::sqfs_file_t) -> u64 {
    // SAFETY: see `inner`.
    unsafe { inner(f) }.size
}

unsafe extern "C" fn truncate(f: *mut ffi::sqfs_file_t, size: u64) -> c_int {
    // SAFETY: see `inner`.
    let inner = unsafe { inner(f) };
    if !inner.writable {
        return ffi::SQFS_ERROR_UNSUPPORTED;
    }
    match inner.file.set_len(size) {
        Ok(()) => {
            inner.size = size;
            0
        }
        Err(e) => fail(inner, e, ffi::SQFS_ERROR_IO),
    }
}
