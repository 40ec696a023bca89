//! The real proof: the kernel mounts our images and shows the source tree (root only).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::testutil::{expected_links, make_fixture, root_or_skip, run};
use super::*;

/// Unmounts on drop, so a failed assertion does not leave the mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn new(image: &Path, at: &Path) -> Mounted {
        run(
            "mount",
            &[
                "-t".as_ref(),
                "squashfs".as_ref(),
                "-o".as_ref(),
                "loop,ro".as_ref(),
                image.as_os_str(),
                at.as_os_str(),
            ],
        );
        Mounted(at.into())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn compare_mounted(src: &Path, mnt: &Path, mtime: u32) {
    for (rel, nlink) in expected_links(src) {
        let what = rel.display();
        let (a, b) = (src.join(&rel), mnt.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&a).unwrap(),
            fs::symlink_metadata(&b).unwrap(),
        );
        assert_eq!(
            ma.mode() & libc::S_IFMT,
            mb.mode() & libc::S_IFMT,
            "{what}: type"
        );
        if !ma.file_type().is_symlink() {
            assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{what}: mode");
        }
        assert_eq!(mb.nlink(), u64::from(nlink), "{what}: link count");
        assert_eq!((mb.uid(), mb.gid()), (0, 0), "{what}: owner");
        assert_eq!(mb.mtime(), i64::from(mtime), "{what}: mtime");
        if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "{what}: size");
            assert!(
                fs::read(&a).unwrap() == fs::read(&b).unwrap(),
                "{what}: content"
            );
        } else if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&a).unwrap(),
                fs::read_link(&b).unwrap(),
                "{what}"
            );
            assert_eq!(ma.len(), mb.len(), "{what}: symlink size");
        } else if ma.is_dir() {
            let names = |p: &Path| {
                let mut v: Vec<_> = fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                v.sort();
                v
            };
            assert_eq!(names(&a), names(&b), "{what}: entries");
        }
    }
    // Hard links are one inode in the kernel's view too.
    let h1 = fs::symlink_metadata(mnt.join("bin/hello")).unwrap();
    let h2 = fs::symlink_metadata(mnt.join("share/hello-link")).unwrap();
    assert_eq!(h1.ino(), h2.ino());
}

#[test]
fn kernel_mounts_the_image() {
    if !root_or_skip("kernel_mounts_the_image") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    make_fixture(&src);
    // Big directories need several directory headers and an index.
    fs::create_dir(src.join("many")).unwrap();
    for i in 0..3000 {
        fs::write(
            src.join("many")
                .join(format!("entry-with-a-long-name-{i:05}")),
            i.to_string(),
        )
        .unwrap();
    }
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        let opts = WriteOptions {
            compression: c,
            mtime: 1_700_000_000 + i as u32,
            ..WriteOptions::default()
        };
        let image = d.path().join(format!("{c}.pack"));
        write_image(&src, &image, &opts).unwrap();
        let mnt = d.path().join(format!("mnt-{c}"));
        fs::create_dir(&mnt).unwrap();
        let _m = Mounted::new(&image, &mnt);
        compare_mounted(&src, &mnt, opts.mtime);
        // Lookups by name go through the kernel's directory index.
        assert_eq!(
            fs::read(mnt.join("many/entry-with-a-long-name-02999")).unwrap(),
            b"2999"
        );
        assert!(!mnt.join("many/entry-with-a-long-name-03000").exists());
    }
}
