//! Reader behaviour: path lookups that never follow symlinks, size limits, package checks,
//! and clear errors for files that are not (whole) images.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::testutil::{make_fixture, run};
use super::*;

fn image_of(build: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    build(&src);
    let out = d.path().join("img.pack");
    write_image(&src, &out, &WriteOptions::default()).unwrap();
    (d, out)
}

#[test]
fn read_file_never_follows_symlinks() {
    let (_d, out) = image_of(|src| {
        fs::create_dir_all(src.join("real-meta")).unwrap();
        fs::write(src.join("real-meta/pack.yaml"), "name: x\n").unwrap();
        symlink("real-meta", src.join("meta")).unwrap();
        fs::create_dir(src.join("meta2")).unwrap();
        symlink("../real-meta/pack.yaml", src.join("meta2/pack.yaml")).unwrap();
    });
    let img = Image::open_named(&out, Path::new("img.pack")).unwrap();
    assert_eq!(
        img.read_file("real-meta/pack.yaml", 100).unwrap(),
        b"name: x\n"
    );

    let err = img.read_file("meta/pack.yaml", 100).unwrap_err();
    assert!(
        matches!(err.inner(), ImageError::NotADirectory { path, kind: "symlink" } if path == Path::new("/meta")),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "img.pack: /meta: is a symlink, not a directory"
    );

    let err = img.read_file("meta2/pack.yaml", 100).unwrap_err();
    assert!(
        matches!(
            err.inner(),
            ImageError::NotRegularFile {
                kind: "symlink",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "img.pack: /meta2/pack.yaml: is a symlink, not a regular file"
    );
}

#[test]
fn read_file_errors() {
    let (_d, out) = image_of(make_fixture);
    let img = Image::open_named(&out, Path::new("img.pack")).unwrap();
    let err = img.read_file("meta/missing.yaml", 100).unwrap_err();
    assert!(matches!(err.inner(), ImageError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "img.pack: /meta/missing.yaml: no such file in the image"
    );
    let err = img.read_file("nothere/pack.yaml", 100).unwrap_err();
    assert!(matches!(err.inner(), ImageError::NotFound { .. }), "{err}");

    let err = img.read_file("meta", 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "img.pack: /meta: is a directory, not a regular file"
    );
    let err = img.read_file("fifo", 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "img.pack: /fifo: is a fifo, not a regular file"
    );
    let err = img.read_file("bin/hello/x", 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "img.pack: /bin/hello: is a regular file, not a directory"
    );

    let err = img.read_file("share/big.bin", 299_999).unwrap_err();
    assert!(matches!(
        err.inner(),
        ImageError::TooLarge {
            size: 300_000,
            max: 299_999,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "img.pack: /share/big.bin: file is 300000 bytes, larger than the 299999 bytes allowed"
    );
    assert_eq!(
        img.read_file("/share/big.bin", 300_000).unwrap().len(),
        300_000
    );
    assert_eq!(img.read_file("emptyfile", 0).unwrap(), b"");

    for bad in [
        "",
        "/",
        "a//b",
        "../etc/passwd",
        "./meta/pack.yaml",
        "meta/",
        "meta/./pack.yaml",
    ] {
        let err = img.read_file(bad, 100).unwrap_err();
        assert!(
            matches!(err.inner(), ImageError::InvalidPath { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn walk_stops_at_the_callbacks_error() {
    let (_d, out) = image_of(make_fixture);
    let img = Image::open_named(&out, Path::new("img.pack")).unwrap();
    let mut seen = 0;
    let err = img
        .walk(&mut |e| {
            seen += 1;
            if e.path == Path::new("bin") {
                return Err(ImageError::NotFound {
                    path: e.path.clone(),
                });
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err.inner(), ImageError::NotFound { path } if path == Path::new("bin")));
    // The root, "Zupper", "abs-link", then "bin".
    assert_eq!(seen, 4);
}

#[test]
fn check_package_contents_counts_entries() {
    let (_d, out) = image_of(make_fixture);
    let sum = Image::open(&out).unwrap().check_package_contents().unwrap();
    assert_eq!(
        sum,
        ContentSummary {
            entries: 28,
            files: 12,
            dirs: 10,
            symlinks: 4,
            other: 2,
            total_size: 1_648_678 + 21,
        }
    );
}

/// An image made by mksquashfs (which keeps setuid bits and can add device nodes).
fn mksquashfs_image(d: &Path, src: &Path, extra: &[&str]) -> PathBuf {
    let out = d.join("mk.pack");
    let mut args: Vec<&OsStr> = vec![src.as_os_str(), out.as_os_str()];
    args.extend(
        [
            "-noappend",
            "-all-root",
            "-no-xattrs",
            "-quiet",
            "-no-progress",
        ]
        .map(OsStr::new),
    );
    args.extend(extra.iter().map(OsStr::new));
    run("mksquashfs", &args);
    out
}

#[test]
fn check_package_contents_rejects_setuid_and_devices() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("dev")).unwrap();
    fs::write(src.join("bin/ok"), "").unwrap();
    fs::write(src.join("bin/su"), "").unwrap();
    fs::set_permissions(src.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();

    let out = mksquashfs_image(d.path(), &src, &[]);
    let err = Image::open_named(&out, Path::new("img.pack"))
        .unwrap()
        .check_package_contents()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "img.pack: /bin/su: setuid/setgid files are not allowed in a package (remove the bit with chmod \
         u-s,g-s)"
    );

    fs::set_permissions(src.join("bin/su"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = mksquashfs_image(
        d.path(),
        &src,
        &["-p", "dev/null c 666 0 0 1 3", "-comp", "gzip"],
    );
    let img = Image::open_named(&out, Path::new("img.pack")).unwrap();
    assert_eq!(img.compressor_name(), "gzip");
    assert_eq!(img.compression(), None);
    let err = img.check_package_contents().unwrap_err();
    assert_eq!(
        err.to_string(),
        "img.pack: /dev/null: device nodes are not allowed in a package"
    );
}

#[test]
fn truncated_images_and_other_files_are_rejected_at_open() {
    let (d, out) = image_of(make_fixture);
    let bytes = fs::read(&out).unwrap();
    let used = Superblock::read(&out).unwrap().bytes_used;
    let cut = d.path().join("cut.pack");

    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = Image::open(&cut).err().unwrap();
    assert!(matches!(err.inner(), ImageError::Truncated { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the image is truncated: expected {used} bytes, found {}",
            cut.display(),
            bytes.len() / 2
        )
    );
    // Cutting only padding is harmless.
    fs::write(&cut, &bytes[..used as usize]).unwrap();
    Image::open(&cut).unwrap().check_package_contents().unwrap();

    fs::write(&cut, b"PK\x03\x04 this is a zip file, really").unwrap();
    let err = Image::open(&cut).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("{}: not a squashfs image (bad magic)", cut.display())
    );
    fs::write(&cut, b"").unwrap();
    assert!(matches!(
        Image::open(&cut),
        Err(ImageError::BadMagic { .. })
    ));
    fs::write(&cut, b"hsqs").unwrap();
    assert!(matches!(
        Image::open(&cut),
        Err(ImageError::Truncated { expected: 96, .. })
    ));
    let err = Image::open(&d.path().join("missing.pack")).err().unwrap();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
}
