//! Corrupted images must give errors, never panics or crashes: flip bytes all over a small
//! image and read everything through `open`, `walk` and `read_file`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn small_tree(src: &Path) {
    for d in ["a/b/c", "d", "e"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    let mut rng = Rng(7);
    for i in 0..40 {
        let len = [0, 10, 3000, 5000, 20_000][i % 5];
        let data: Vec<u8> = (0..len).map(|_| (rng.next() % 16) as u8).collect();
        let dir = ["", "a", "a/b", "a/b/c", "d"][i % 5];
        fs::write(src.join(dir).join(format!("file{i}")), data).unwrap();
    }
    symlink("a/b", src.join("link")).unwrap();
    fs::hard_link(src.join("file0"), src.join("e/hard")).unwrap();
}

/// Reads everything in the image at `path`, whatever happens, bounded in entries and sizes.
/// Returns whether everything succeeded.
fn read_everything(path: &Path) -> bool {
    let Ok(img) = Image::open(path) else {
        return false;
    };
    let mut files = Vec::new();
    let mut entries = 0;
    let walked = img.walk(&mut |e| {
        entries += 1;
        if entries > 1000 {
            return Err(ImageError::InvalidOptions("too many entries".into()));
        }
        if e.kind == EntryKind::File {
            files.push(e.path.clone());
        }
        Ok(())
    });
    let mut ok = walked.is_ok();
    for f in files {
        if let Some(f) = f.to_str() {
            ok &= img.read_file(f, 1 << 20).is_ok();
        }
    }
    let _ = img.read_file("a/b/c/file3", 1 << 20);
    ok && img.check_package_contents().is_ok()
}

#[test]
fn corrupt_images_give_errors_not_crashes() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    small_tree(&src);
    let good = d.path().join("good.pack");
    for (name, c) in [("zstd", Compression::Zstd), ("lzo", Compression::Lzo)] {
        let opts = WriteOptions {
            compression: c,
            block_size: 4096,
            ..WriteOptions::default()
        };
        write_image(&src, &good, &opts).unwrap();
        assert!(
            read_everything(&good),
            "{name}: the intact image reads fine"
        );
        let bytes = fs::read(&good).unwrap();
        let sb = Superblock::read(&good).unwrap();
        let meta = sb.inode_table_start..sb.bytes_used;
        let bad = d.path().join("bad.pack");
        let mut rng = Rng(0x5EED ^ u64::from(c.id()));
        // FUZZ_CASES=40000 for a longer run (80,000 cases took 67 s in release mode, clean).
        let cases = std::env::var("FUZZ_CASES").map_or(1500, |v| v.parse().unwrap());
        let mut failed = 0;
        for case in 0..cases {
            let mut b = bytes.clone();
            let flips = 1 + rng.below(4);
            for _ in 0..flips {
                // Mostly metadata tables, sometimes data blocks or the superblock.
                let at = match case % 10 {
                    0 => rng.below(SUPERBLOCK_SIZE as u64),
                    1 | 2 => {
                        SUPERBLOCK_SIZE as u64 + rng.below(meta.start - SUPERBLOCK_SIZE as u64)
                    }
                    _ => meta.start + rng.below(meta.end - meta.start),
                };
                b[at as usize] ^= 1 << rng.below(8);
            }
            fs::write(&bad, &b).unwrap();
            if !read_everything(&bad) {
                failed += 1;
            }
        }
        // Most flips must be noticed (metadata blocks are compressed and checked).
        assert!(
            failed > cases / 2,
            "{name}: only {failed} of {cases} corruptions noticed"
        );
    }
}

#[test]
fn verify_data_finds_corrupt_blocks_that_metadata_checks_miss() {
    use std::fs;
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    // Compressible text, large enough that its blocks lie far from the metadata tables.
    // (Incompressible blocks are stored raw: squashfs has no checksums, so corruption there
    // is only caught by the store's digest of the whole file.)
    let data: String = (0..400_000)
        .map(|i| format!("line {i} of the data file\n"))
        .collect();
    fs::write(src.join("bin/data"), &data).unwrap();
    let out = d.path().join("ok.pack");
    super::write_image(&src, &out, &super::WriteOptions::default()).unwrap();
    let img = super::Image::open(&out).unwrap();
    img.check_package_contents().unwrap();
    img.verify_data().unwrap();

    let mut bytes = fs::read(&out).unwrap();
    // The data blocks lie between the superblock and the inode table.
    let inode_table = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
    assert!(inode_table > 100_000, "{inode_table}");
    // Damage a sector-sized run, as a bad disk or a broken copy would: it spans a whole
    // compressed block, header included. (A few flipped bytes inside a zstd block can decode,
    // wrongly but at the right length: squashfs has no checksums, so only a digest of the
    // whole file, which store-signed packages carry, catches those.)
    let middle = inode_table / 2;
    bytes[middle..middle + 4096].fill(0xaa);
    let bad = d.path().join("bad.pack");
    fs::write(&bad, &bytes).unwrap();
    let img = super::Image::open_named(&bad, std::path::Path::new("bad.pack")).unwrap();
    img.check_package_contents()
        .expect("the metadata is intact");
    let err = img.verify_data().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("bad.pack: cannot read file /bin/data"),
        "{err}"
    );
}
