//! Shared helpers for the image tests: a fixture tree with every kind of file, running the
//! squashfs-tools, and root-only test gating.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{WriteOptions, write_image};

/// A non-UTF-8 file name.
pub const NON_UTF8: &[u8] = b"caf\xe9-\xff";

/// Builds a tree with every kind of entry an image can hold.
pub fn make_fixture(root: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let p = root.join(p);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in ["bin", "share/doc/deep/deeper", "empty", "tmp", "meta", "z"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("z"), fs::Permissions::from_mode(0o700)).unwrap();
    w("meta/pack.yaml", b"name: hello\nversion: 1.0\n", 0o644);
    w("bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
    w("secret", b"only root", 0o600);
    w("emptyfile", b"", 0o644);
    // Several blocks plus a tail, not very compressible.
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w("share/big.bin", &big, 0o644);
    // A duplicate of a file and of a tail: deduplicated in the image, still two files.
    w("share/big-copy.bin", &big, 0o444);
    w("share/doc/deep/deeper/README", b"deep\n", 0o644);
    w("Zupper", b"uppercase sorts first", 0o644);
    fs::hard_link(root.join("bin/hello"), root.join("share/hello-link")).unwrap();
    symlink("../bin/hello", root.join("share/hello-sym")).unwrap();
    symlink("/absolute/target", root.join("abs-link")).unwrap();
    symlink("dangling", root.join("dangling-link")).unwrap();
    symlink("share", root.join("share-link")).unwrap();
    nix_mkfifo(&root.join("fifo"));
    std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let non_utf8 = root.join(OsStr::from_bytes(NON_UTF8));
    fs::write(&non_utf8, b"latin-1 name").unwrap();
    w(&"n".repeat(255), b"long name", 0o644);
    // A sparse file: a hole, then data.
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"end", (1 << 20) - 3).unwrap();
}

fn nix_mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0, "mkfifo");
}

/// Writes `src` to `<dir>/<name>` and returns the image path.
pub fn write_to(src: &Path, dir: &Path, name: &str, opts: &WriteOptions) -> PathBuf {
    let out = dir.join(name);
    write_image(src, &out, opts).unwrap();
    out
}

/// Runs a squashfs tool and returns its stdout. Fails (does not skip) if it is missing.
pub fn run(tool: &str, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}): install squashfs-tools, these tests need it")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether root-only tests can run. Outside CI a non-root run skips them (printing why);
/// under `CI=true` they must run, so this panics.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} must run as root under CI=true");
    }
    eprintln!("skipping {test}: needs root (mknod/mount)");
    false
}

/// `ls -l` style mode string.
pub fn mode_string(mode: u32) -> String {
    let t = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        _ => '-',
    };
    let mut s = String::from(t);
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// What a listing says about one entry (directories' sizes are left out: they are squashfs
/// internals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub mode: String,
    pub owner: String,
    pub size: Option<u64>,
    pub target: Option<Vec<u8>>,
}

/// Parses `unsquashfs -lln -UTC` output into path (relative, bytes) -> entry; also returns
/// the dates seen.
pub fn parse_unsquashfs(out: &[u8]) -> (BTreeMap<Vec<u8>, Listed>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut dates = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            let start = rest.iter().position(|&b| b != b' ').unwrap();
            rest = &rest[start..];
            let end = rest.iter().position(|&b| b == b' ').unwrap();
            fields.push(String::from_utf8(rest[..end].to_vec()).unwrap());
            rest = &rest[end..];
        }
        let rest = &rest[rest.iter().position(|&b| b != b' ').unwrap()..];
        let (path, target) = match find(rest, b" -> ") {
            Some(i) if fields[0].starts_with('l') => (&rest[..i], Some(rest[i + 4..].to_vec())),
            _ => (rest, None),
        };
        let path = path.strip_prefix(b"squashfs-root").unwrap();
        let path = path.strip_prefix(b"/").unwrap_or(path).to_vec();
        dates.push(format!("{} {}", fields[3], fields[4]));
        let size = if fields[0].starts_with('d') {
            None
        } else {
            Some(fields[2].parse().unwrap())
        };
        map.insert(
            path,
            Listed {
                mode: fields[0].clone(),
                owner: fields[1].clone(),
                size,
                target,
            },
        );
    }
    (map, dates)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The listing `unsquashfs -lln` should print for an image of `src` (owners forced to 0/0).
pub fn expected_listing(src: &Path) -> BTreeMap<Vec<u8>, Listed> {
    let mut map = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let md = fs::symlink_metadata(src.join(&rel)).unwrap();
        let ft = md.file_type();
        let target = ft.is_symlink().then(|| {
            fs::read_link(src.join(&rel))
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let size = if ft.is_dir() {
            None
        } else if ft.is_file() {
            Some(md.len())
        } else {
            Some(target.as_ref().map_or(0, |t| t.len() as u64))
        };
        map.insert(
            rel.as_os_str().as_bytes().to_vec(),
            Listed {
                mode: mode_string(md.mode()),
                owner: "0/0".into(),
                size,
                target,
            },
        );
        if ft.is_dir() {
            for e in fs::read_dir(src.join(&rel)).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
    }
    map
}

/// Relative path -> (names pointing at the same inode) for regular files under `src`, and
/// the expected link count of every directory (2 + subdirectories).
pub fn expected_links(src: &Path) -> BTreeMap<PathBuf, u32> {
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let md = fs::symlink_metadata(src.join(&rel)).unwrap();
        if md.is_dir() {
            let mut subdirs = 0;
            for e in fs::read_dir(src.join(&rel)).unwrap() {
                let e = e.unwrap();
                subdirs += u32::from(e.file_type().unwrap().is_dir());
                stack.push(rel.join(e.file_name()));
            }
            links.insert(rel, 2 + subdirs);
        } else {
            by_ino.entry(md.ino()).or_default().push(rel);
        }
    }
    for names in by_ino.into_values() {
        let n = names.len() as u32;
        for name in names {
            links.insert(name, n);
        }
    }
    links
}
