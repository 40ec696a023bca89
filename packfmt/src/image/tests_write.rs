//! Writer behaviour: reproducibility, special files, and failures that leave nothing behind.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::testutil::{make_fixture, root_or_skip, run};
use super::*;

fn tree_in(dir: &Path, name: &str) -> PathBuf {
    let src = dir.join(name);
    fs::create_dir(&src).unwrap();
    make_fixture(&src);
    src
}

fn image_bytes(src: &Path, out: &Path, opts: &WriteOptions) -> Vec<u8> {
    write_image(src, out, opts).unwrap();
    fs::read(out).unwrap()
}

fn set_times(path: &Path, secs: i64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    // SAFETY: valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

fn lchown(path: &Path, id: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::lchown(c.as_ptr(), id, id) }, 0);
}

#[test]
fn same_bytes_whatever_the_number_of_jobs() {
    let d = tempfile::tempdir().unwrap();
    let src = tree_in(d.path(), "src");
    for c in Compression::ALL {
        let opts = |jobs| WriteOptions {
            compression: c,
            jobs,
            ..WriteOptions::default()
        };
        let one = image_bytes(&src, &d.path().join("1"), &opts(1));
        let four = image_bytes(&src, &d.path().join("4"), &opts(4));
        assert!(one == four, "{c}: jobs=1 and jobs=4 differ");
    }
}

#[test]
fn same_bytes_whatever_the_timestamps_owners_and_creation_order() {
    let d = tempfile::tempdir().unwrap();
    let opts = WriteOptions::default();
    let src = tree_in(d.path(), "src");
    let first = image_bytes(&src, &d.path().join("a.pack"), &opts);

    // Touch everything (atime and mtime), and chown it if we can.
    let mut stack = vec![src.clone()];
    while let Some(p) = stack.pop() {
        set_times(&p, 1_234_567_890);
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } == 0 {
            lchown(&p, 4242);
        }
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(first == image_bytes(&src, &d.path().join("b.pack"), &opts));

    // The same tree created in a different order (and at a different time) under another
    // name gives the same image, even though readdir order and inode numbers differ.
    let other = d.path().join("other");
    fs::create_dir(&other).unwrap();
    for i in 0..50 {
        fs::write(other.join(format!("zz-noise-{i}")), "").unwrap();
    }
    make_fixture(&other);
    for i in 0..50 {
        fs::remove_file(other.join(format!("zz-noise-{i}"))).unwrap();
    }
    assert!(first == image_bytes(&other, &d.path().join("c.pack"), &opts));

    // A different mtime option does change it.
    let later = WriteOptions {
        mtime: 1,
        ..WriteOptions::default()
    };
    assert!(first != image_bytes(&src, &d.path().join("d.pack"), &later));
}

#[test]
fn setuid_and_setgid_are_rejected_naming_the_path() {
    let d = tempfile::tempdir().unwrap();
    let src = tree_in(d.path(), "src");
    let out = d.path().join("x.pack");
    for (rel, mode) in [("bin/hello", 0o4755), ("share", 0o2755)] {
        let p = src.join(rel);
        let old = fs::symlink_metadata(&p).unwrap().permissions();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        let err = write_image(&src, &out, &WriteOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: setuid/setgid files are not allowed in a package (remove the bit with \
                 chmod u-s,g-s)",
                p.display()
            )
        );
        assert!(!out.exists());
        // Strip clears the bit instead.
        let strip = WriteOptions {
            special_files: SpecialFiles::Strip,
            ..WriteOptions::default()
        };
        write_image(&src, &out, &strip).unwrap();
        let img = Image::open(&out).unwrap();
        img.check_package_contents().unwrap();
        fs::remove_file(&out).unwrap();
        fs::set_permissions(&p, old).unwrap();
    }
}

#[test]
fn device_nodes_are_rejected_or_skipped() {
    if !root_or_skip("device_nodes_are_rejected_or_skipped") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = tree_in(d.path(), "src");
    let dev = src.join("share/null");
    let c = CString::new(dev.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string; makedev(1, 3) is /dev/null.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(rc, 0, "mknod: {}", io::Error::last_os_error());
    let out = d.path().join("x.pack");
    let err = write_image(&src, &out, &WriteOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: device nodes are not allowed in a package",
            dev.display()
        )
    );
    assert!(!out.exists());

    let strip = WriteOptions {
        special_files: SpecialFiles::Strip,
        ..WriteOptions::default()
    };
    write_image(&src, &out, &strip).unwrap();
    fs::remove_file(&dev).unwrap();
    let without = d.path().join("y.pack");
    write_image(&src, &without, &strip).unwrap();
    assert!(
        fs::read(&out).unwrap() == fs::read(&without).unwrap(),
        "device left out"
    );
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn failed_write_leaves_no_output_and_no_temp_file() {
    let d = tempfile::tempdir().unwrap();
    let src = tree_in(d.path(), "src");
    let out_dir = d.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.pack");
    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() } == 0;
    let err = if root {
        // A full filesystem: the write fails half way through the data.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(src.join("noise"), noise).unwrap();
        let small = d.path().join("small");
        fs::create_dir(&small).unwrap();
        run(
            "mount",
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                "size=64k".as_ref(),
                "tmpfs".as_ref(),
                small.as_os_str(),
            ],
        );
        struct Umount(PathBuf);
        impl Drop for Umount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _guard = Umount(small.clone());
        let target = small.join("x.pack");
        let err = write_image(&src, &target, &WriteOptions::default()).unwrap_err();
        assert!(dir_names(&small).is_empty(), "{:?}", dir_names(&small));
        err
    } else {
        // An unreadable file: the write fails while reading it.
        let p = src.join("share/big.bin");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
        write_image(&src, &out, &WriteOptions::default()).unwrap_err()
    };
    assert!(matches!(err, ImageError::Io { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("No space left on device") || msg.contains("Permission denied"),
        "{msg}"
    );
    assert!(dir_names(&out_dir).is_empty(), "{:?}", dir_names(&out_dir));

    // An existing image is left alone by a failed rebuild.
    fs::write(&out, "old image").unwrap();
    fs::set_permissions(src.join("bin/hello"), fs::Permissions::from_mode(0o4755)).unwrap();
    write_image(&src, &out, &WriteOptions::default()).unwrap_err();
    assert_eq!(fs::read(&out).unwrap(), b"old image");
    assert_eq!(dir_names(&out_dir), ["x.pack"]);
}

#[test]
fn an_image_written_into_its_source_leaves_itself_out() {
    let d = tempfile::tempdir().unwrap();
    let src = tree_in(d.path(), "src");
    let inside = src.join("self.pack");
    let first = image_bytes(&src, &inside, &WriteOptions::default());
    let second = image_bytes(&src, &inside, &WriteOptions::default());
    assert!(first == second, "the second build included the first image");
    let names = dir_names(&src);
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn bad_options_and_outputs_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let src = tree_in(d.path(), "src");
    let opts = WriteOptions {
        block_size: 100_000,
        ..WriteOptions::default()
    };
    let err = write_image(&src, &d.path().join("x"), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid image options: block size 100000 is not a power of two between 4 KiB and 1 MiB"
    );
    let err = write_image(&src, &d.path().join("missing/x"), &WriteOptions::default());
    assert!(matches!(err, Err(ImageError::Io { .. })));
    // Writing over a directory fails at the rename, and cleans up.
    let busy = d.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("f"), "").unwrap();
    let err = write_image(&src, &busy, &WriteOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot rename the finished image to"),
        "{err}"
    );
    assert!(!dir_names(d.path()).iter().any(|n| n.ends_with(".tmp")));
}
