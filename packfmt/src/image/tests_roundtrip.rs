//! Round trips: images written by `write_image` read back by our reader and by the
//! squashfs-tools, compared with the source tree.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::testutil::{
    NON_UTF8, expected_links, expected_listing, make_fixture, parse_unsquashfs, run, write_to,
};
use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    src: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    make_fixture(&src);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    Fixture {
        _dir: dir,
        src,
        out,
    }
}

fn opts(compression: Compression, mtime: u32) -> WriteOptions {
    WriteOptions {
        compression,
        mtime,
        ..WriteOptions::default()
    }
}

fn walk_all(img: &Image) -> Vec<Entry> {
    let mut all = Vec::new();
    img.walk(&mut |e| {
        all.push(e.clone());
        Ok(())
    })
    .unwrap();
    all
}

/// Everything the reader reports matches the source.
fn check_against_source(img: &Image, src: &Path, mtime: u32) {
    let entries = walk_all(img);
    let links = expected_links(src);
    assert_eq!(entries.len(), links.len(), "one entry per source file");
    assert_eq!(entries[0].path, Path::new(""), "the root comes first");
    let paths: Vec<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| {
        let (a, b) = (a.components(), b.components());
        a.map(|c| c.as_os_str().as_bytes().to_vec())
            .cmp(b.map(|c| c.as_os_str().as_bytes().to_vec()))
    });
    assert_eq!(paths, sorted, "depth-first, byte-wise name order");

    let mut inode_of: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    for e in &entries {
        let md = fs::symlink_metadata(src.join(&e.path)).unwrap();
        let ft = md.file_type();
        let what = e.path.display();
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, mtime), "{what}");
        assert_eq!(e.nlink, links[&e.path], "{what}: link count");
        inode_of.entry(e.inode).or_default().push(e.path.clone());
        match &e.kind {
            EntryKind::Dir => assert!(ft.is_dir(), "{what}"),
            EntryKind::File => {
                assert!(ft.is_file(), "{what}");
                assert_eq!(e.size, md.len(), "{what}");
                let rel = e.path.to_str().map(str::to_owned);
                if let Some(rel) = rel {
                    let data = img.read_file(&rel, u64::MAX).unwrap();
                    assert_eq!(data, fs::read(src.join(&e.path)).unwrap(), "{what}");
                }
            }
            EntryKind::Symlink { target } => {
                assert_eq!(*target, fs::read_link(src.join(&e.path)).unwrap(), "{what}");
                assert_eq!(e.size, target.as_os_str().len() as u64);
            }
            EntryKind::Fifo => assert!(std::os::unix::fs::FileTypeExt::is_fifo(&ft)),
            EntryKind::Socket => assert!(std::os::unix::fs::FileTypeExt::is_socket(&ft)),
            other => panic!("{what}: unexpected {other:?}"),
        }
        if !ft.is_symlink() {
            assert_eq!(u32::from(e.mode), md.mode() & 0o7777, "{what}: mode");
        }
    }
    // Hard links share an inode; everything else has its own.
    for names in inode_of.values() {
        if names.len() > 1 {
            assert_eq!(
                names,
                &[
                    PathBuf::from("bin/hello"),
                    PathBuf::from("share/hello-link")
                ]
            );
        }
    }
    assert_eq!(img.superblock().inode_count as usize, inode_of.len());
    let numbers: Vec<u32> = inode_of.keys().copied().collect();
    assert_eq!(numbers, (1..=inode_of.len() as u32).collect::<Vec<_>>());
}

#[test]
fn round_trip_through_reader() {
    let f = fixture();
    let o = opts(Compression::Zstd, 1_700_000_000);
    let out = write_to(&f.src, &f.out, "a.pack", &o);
    let img = Image::open(&out).unwrap();
    check_against_source(&img, &f.src, o.mtime);

    // Spot checks of what the fixture is about.
    let entries = walk_all(&img);
    let by_path = |p: &[u8]| {
        entries
            .iter()
            .find(|e| e.path.as_os_str().as_bytes() == p)
            .unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(p)))
    };
    assert_eq!(by_path(b"tmp").mode, 0o1777);
    assert_eq!(by_path(b"secret").mode, 0o600);
    assert_eq!(by_path(b"empty").kind, EntryKind::Dir);
    assert_eq!(by_path(b"empty").nlink, 2);
    assert_eq!(by_path(b"bin/hello").nlink, 2);
    assert_eq!(by_path(b"fifo").kind, EntryKind::Fifo);
    assert_eq!(by_path(NON_UTF8).size, 12);
    assert_eq!(by_path("n".repeat(255).as_bytes()).size, 9);
    assert_eq!(
        by_path(b"share/hello-sym").kind,
        EntryKind::Symlink {
            target: "../bin/hello".into()
        }
    );
    assert_eq!(
        img.read_file("meta/pack.yaml", 100).unwrap(),
        b"name: hello\nversion: 1.0\n"
    );
    assert_eq!(img.read_file("/sparse", 1 << 20).unwrap().len(), 1 << 20);
}

#[test]
fn listing_matches_unsquashfs() {
    let f = fixture();
    let out = write_to(
        &f.src,
        &f.out,
        "a.pack",
        &opts(Compression::Zstd, 1_700_000_000),
    );
    let stdout = run(
        "unsquashfs",
        &["-lln".as_ref(), "-UTC".as_ref(), out.as_os_str()],
    );
    let (listed, dates) = parse_unsquashfs(&stdout);
    assert_eq!(listed, expected_listing(&f.src));
    assert!(dates.iter().all(|d| d == "2023-11-14 22:13"), "{dates:?}");
    let fstime = run("unsquashfs", &["-mkfs-time".as_ref(), out.as_os_str()]);
    assert_eq!(String::from_utf8(fstime).unwrap().trim(), "1700000000");
}

#[test]
fn unsquashfs_extracts_the_source() {
    let f = fixture();
    let out = write_to(&f.src, &f.out, "a.pack", &WriteOptions::default());
    let dest = f.out.join("x");
    run(
        "unsquashfs",
        &[
            "-q".as_ref(),
            "-n".as_ref(),
            "-d".as_ref(),
            dest.as_os_str(),
            out.as_os_str(),
        ],
    );
    let links = expected_links(&f.src);
    for rel in links.keys() {
        let (a, b) = (f.src.join(rel), dest.join(rel));
        let (ma, mb) = (
            fs::symlink_metadata(&a).unwrap(),
            fs::symlink_metadata(&b).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        if ma.is_file() {
            assert_eq!(
                fs::read(&a).unwrap(),
                fs::read(&b).unwrap(),
                "{}",
                rel.display()
            );
            assert_eq!(
                ma.permissions().mode(),
                mb.permissions().mode(),
                "{}",
                rel.display()
            );
        } else if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&a).unwrap(), fs::read_link(&b).unwrap());
        }
    }
    // unsquashfs recreates hard links from the shared inode.
    let h1 = fs::metadata(dest.join("bin/hello")).unwrap();
    let h2 = fs::metadata(dest.join("share/hello-link")).unwrap();
    assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2));
}

#[test]
fn superblock_stats_and_padding() {
    let f = fixture();
    let o = opts(Compression::Zstd, 42);
    let out = f.out.join("a.pack");
    let stats = write_image(&f.src, &out, &o).unwrap();
    let len = fs::metadata(&out).unwrap().len();
    assert_eq!(len % 4096, 0, "padded for loop devices");
    assert_eq!(stats.bytes_out, len);
    let (mut dirs, mut symlinks, mut files, mut bytes) = (0, 0, BTreeMap::new(), 0);
    for rel in expected_links(&f.src).keys() {
        let md = fs::symlink_metadata(f.src.join(rel)).unwrap();
        dirs += u64::from(md.is_dir());
        symlinks += u64::from(md.file_type().is_symlink());
        if md.is_file() && files.insert(md.ino(), ()).is_none() {
            bytes += md.len();
        }
    }
    assert_eq!((stats.files, stats.dirs, stats.symlinks), (11, 10, 4));
    assert_eq!(
        (stats.files, stats.dirs, stats.symlinks),
        (files.len() as u64, dirs, symlinks)
    );
    assert_eq!(stats.bytes_in, bytes);
    let sb = Superblock::read(&out).unwrap();
    assert_eq!(sb.modification_time, 42);
    assert_eq!(sb.block_size, 131072);
    assert_eq!(sb.compression(), Some(Compression::Zstd));
    assert!(sb.bytes_used <= len && len - sb.bytes_used < 4096);
    assert_ne!(sb.export_table_start, u64::MAX, "exportable");
    assert_eq!(sb.xattr_table_start, u64::MAX, "no xattrs");
    assert_eq!(sb.id_count, 1);
    let stat = String::from_utf8(run("unsquashfs", &["-s".as_ref(), out.as_os_str()])).unwrap();
    assert!(stat.contains("Filesystem is exportable via NFS"), "{stat}");
    assert!(stat.contains("Xattrs are not stored"), "{stat}");
}

#[test]
fn xz_and_lzo_images() {
    let f = fixture();
    for (c, id, name) in [(Compression::Xz, 4, "xz"), (Compression::Lzo, 3, "lzo")] {
        let o = WriteOptions {
            block_size: 65536,
            ..opts(c, 7)
        };
        let out = write_to(&f.src, &f.out, name, &o);
        let sb = Superblock::read(&out).unwrap();
        assert_eq!(
            (sb.compressor_id, sb.block_size, sb.block_log),
            (id, 65536, 16)
        );
        let img = Image::open(&out).unwrap();
        assert_eq!((img.compression(), img.compressor_name()), (Some(c), name));
        check_against_source(&img, &f.src, 7);
        // The squashfs-tools read it too (for LZO this checks our compressor).
        let stdout = run("unsquashfs", &["-lln".as_ref(), out.as_os_str()]);
        assert_eq!(parse_unsquashfs(&stdout).0, expected_listing(&f.src));
        let stat = String::from_utf8(run("unsquashfs", &["-s".as_ref(), out.as_os_str()])).unwrap();
        assert!(stat.contains(&format!("Compression {name}")), "{stat}");
        let big = run(
            "unsquashfs",
            &[
                "-cat".as_ref(),
                out.as_os_str(),
                OsStr::new("share/big.bin"),
            ],
        );
        assert_eq!(big, fs::read(f.src.join("share/big.bin")).unwrap());
    }
}
