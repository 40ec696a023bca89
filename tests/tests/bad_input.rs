//! Hostile and broken packages, built with squashfs-tools so that our own packer's checks are
//! not what stands between them and the daemon. Each gets one clear error and nothing under the
//! root changes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use packd_tests::{Env, require_root};

const OK_YAML: &str =
    "name: evil\nversion: '1'\nbase: busybox\napps:\n  evil:\n    command: bin/evil\n";

/// A package source tree with `meta/pack.yaml` = `yaml` (unless None) and an executable.
fn tree(env: &Env, name: &str, yaml: Option<&str>) -> PathBuf {
    let dir = env.dir.path().join(name);
    fs::create_dir_all(dir.join("meta")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    if let Some(yaml) = yaml {
        fs::write(dir.join("meta/pack.yaml"), yaml).unwrap();
    }
    fs::write(dir.join("bin/evil"), "#!/bin/sh\necho evil\n").unwrap();
    fs::set_permissions(dir.join("bin/evil"), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Packs with mksquashfs (not our packer), passing extra arguments such as pseudo files.
fn mksquashfs(src: &Path, out: &Path, extra: &[&str]) {
    let status = Command::new("mksquashfs")
        .arg(src)
        .arg(out)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-all-root",
            "-comp",
            "zstd",
        ])
        .args(extra)
        .status()
        .expect("mksquashfs is installed by make test");
    assert!(status.success());
}

/// Installs `file`, expects failure with a message containing `want`, and no change on disk.
#[track_caller]
fn refused(env: &Env, file: &Path, want: &str) {
    let before = env.snapshot();
    let err = env.try_install(file).fails(1);
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear error, got: {err}");
    assert!(err.contains(want), "want {want:?} in {err:?}");
    assert!(
        !err.contains("var/lib/packd/tmp"),
        "leaks the staging path: {err}"
    );
    assert_eq!(env.snapshot(), before, "the root changed");
    assert!(
        fs::read_dir(env.root.join("var/lib/packd/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "the upload was not cleaned up"
    );
}

fn env() -> Env {
    let env = Env::new();
    env.install_base();
    env
}

#[test]
fn setuid_and_setgid_files_are_refused() {
    require_root!();
    let env = env();
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2755)] {
        let src = tree(&env, name, Some(OK_YAML));
        fs::set_permissions(src.join("bin/evil"), fs::Permissions::from_mode(mode)).unwrap();
        let file = env.dir.path().join(format!("{name}.pack"));
        mksquashfs(&src, &file, &[]);
        refused(
            &env,
            &file,
            "bin/evil: setuid/setgid files are not allowed in a package",
        );
    }
}

#[test]
fn device_nodes_are_refused() {
    require_root!();
    let env = env();
    let src = tree(&env, "dev", Some(OK_YAML));
    let file = env.dir.path().join("dev.pack");
    mksquashfs(&src, &file, &["-p", "disk b 600 0 0 8 0"]);
    refused(
        &env,
        &file,
        "disk: device nodes are not allowed in a package",
    );
}

#[test]
fn symlinked_metadata_is_not_followed() {
    require_root!();
    let env = env();
    let src = tree(&env, "link", None);
    fs::write(src.join("real.yaml"), OK_YAML).unwrap();
    std::os::unix::fs::symlink("../real.yaml", src.join("meta/pack.yaml")).unwrap();
    let file = env.dir.path().join("link.pack");
    mksquashfs(&src, &file, &[]);
    refused(&env, &file, "meta/pack.yaml");
    refused(&env, &file, "symlink");

    // A symlinked meta directory too.
    let src = tree(&env, "linkdir", None);
    fs::remove_dir(src.join("meta")).unwrap();
    fs::create_dir(src.join("elsewhere")).unwrap();
    fs::write(src.join("elsewhere/pack.yaml"), OK_YAML).unwrap();
    std::os::unix::fs::symlink("elsewhere", src.join("meta")).unwrap();
    let file = env.dir.path().join("linkdir.pack");
    mksquashfs(&src, &file, &[]);
    refused(&env, &file, "meta");
}

#[test]
fn oversized_metadata_is_refused_before_it_is_read() {
    require_root!();
    let env = env();
    let mut yaml = String::from(OK_YAML);
    yaml.push_str(&"# padding\n".repeat(30_000));
    let src = tree(&env, "big", Some(&yaml));
    let file = env.dir.path().join("big.pack");
    mksquashfs(&src, &file, &[]);
    refused(&env, &file, "larger than the 262144 bytes allowed");
}

#[test]
fn names_with_slashes_dots_or_nul_are_refused() {
    require_root!();
    let env = env();
    for (i, (name, want)) in [
        ("a/b", "invalid pack name \\\"a/b\\\""),
        ("..", "invalid pack name \\\"..\\\""),
        ("../../etc", "invalid pack name"),
    ]
    .iter()
    .enumerate()
    {
        let yaml = format!("name: '{name}'\nversion: '1'\n");
        let src = tree(&env, &format!("name{i}"), Some(&yaml));
        let file = env.dir.path().join(format!("name{i}.pack"));
        mksquashfs(&src, &file, &[]);
        let want = want.replace("\\\"", "\"");
        refused(&env, &file, &want);
    }
    let src = tree(&env, "nul", Some("name: ev\0il\nversion: '1'\n"));
    let file = env.dir.path().join("nul.pack");
    mksquashfs(&src, &file, &[]);
    refused(&env, &file, "meta/pack.yaml: contains a NUL byte");
}

/// A package large enough that truncating or corrupting it hits real data.
fn big_package(env: &Env) -> PathBuf {
    let src = tree(env, "bigdata", Some(OK_YAML));
    // Incompressible data so the image is large.
    let mut data = vec![0u8; 600_000];
    let mut x: u32 = 12345;
    for b in data.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    fs::write(src.join("bin/data"), &data).unwrap();
    let file = env.dir.path().join("bigdata.pack");
    mksquashfs(&src, &file, &[]);
    file
}

#[test]
fn truncated_images_are_refused() {
    require_root!();
    let env = env();
    let file = big_package(&env);
    let bytes = fs::read(&file).unwrap();
    let cut = env.dir.path().join("cut.pack");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(&env, &cut, "truncated");
    let tiny = env.dir.path().join("tiny.pack");
    fs::write(&tiny, &bytes[..50]).unwrap();
    refused(&env, &tiny, "\"tiny.pack\"");
}

#[test]
fn garbage_and_corrupt_images_are_refused() {
    require_root!();
    let env = env();
    let junk = env.dir.path().join("junk.pack");
    fs::write(&junk, vec![0x5au8; 8192]).unwrap();
    refused(&env, &junk, "not a squashfs image");

    // Damage a sector of compressed data blocks (between the superblock and the inode
    // table): caught at install by decompressing every block, not when the app reads it.
    let src = tree(&env, "text", Some(OK_YAML));
    let text: String = (0..300_000).map(|i| format!("line {i}\n")).collect();
    fs::write(src.join("bin/text"), text).unwrap();
    let file = env.dir.path().join("text.pack");
    mksquashfs(&src, &file, &[]);
    let mut bytes = fs::read(&file).unwrap();
    let inodes = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
    assert!(inodes > 20_000, "the data region is large enough: {inodes}");
    bytes[inodes / 2..inodes / 2 + 4096].fill(0xaa);
    let bad = env.dir.path().join("baddata.pack");
    fs::write(&bad, &bytes).unwrap();
    refused(&env, &bad, "\"baddata.pack\": cannot read file /bin/text");
    let file = big_package(&env);

    // Corrupt the inode table (its offset is in the superblock at byte 64).
    let mut bytes = fs::read(&file).unwrap();
    let inodes = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
    for b in &mut bytes[inodes + 2..inodes + 40] {
        *b ^= 0x55;
    }
    let bad = env.dir.path().join("badmeta.pack");
    fs::write(&bad, &bytes).unwrap();
    refused(&env, &bad, "\"badmeta.pack\"");
}

#[test]
fn an_empty_upload_is_refused() {
    require_root!();
    let env = env();
    let empty = env.dir.path().join("empty.pack");
    fs::write(&empty, b"").unwrap();
    refused(&env, &empty, "the upload is empty");
}

/// `/v2/run` with a fourth descriptor that is not a pipe: refused before anything starts.
#[test]
fn a_run_request_with_a_bad_exit_descriptor_is_refused() {
    require_root!();
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::fd::AsRawFd;
    let env = Env::new();
    let not_a_pipe = std::fs::File::open("/etc/hostname").unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    let body = r#"{"target": "nothing", "args": [], "env": {}, "cwd": "/"}"#;
    let request = format!(
        "POST /v2/run HTTP/1.1\r\nHost: packd\r\nConnection: upgrade\r\nUpgrade: packd-run/1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let fds = [0, 1, 2, not_a_pipe.as_raw_fd()];
    let sent = packd_api::fdpass::send_with_fds(s.as_fd(), request.as_bytes(), &fds).unwrap();
    s.write_all(&request.as_bytes()[sent..]).unwrap();
    // Read the answer (the connection stays open for the upgrade that does not come).
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let mut buf = [0u8; 4096];
    while !answer.contains("pipe") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = s.flush();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("must be the write end of a pipe"),
        "{answer}"
    );
}

/// An app whose command is not in its base: `pack run` exits 127 with one clear error (the
/// status comes from packd then, not straight from the sandbox, so the message is not lost).
#[test]
fn an_app_whose_command_is_missing_says_so() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let dir = packd_tests::write_pack_dir(
        env.dir.path(),
        "ghost",
        "name: ghost\nversion: '1'\nbase: busybox\napps:\n  ghost:\n    command: /bin/no-such-tool\n",
        &[],
    );
    env.install(&env.build(&dir));
    for _ in 0..5 {
        let err = env.pack(["run", "ghost"]).fails(127);
        assert!(
            err.starts_with("error: cannot run ghost") && err.contains("/bin/no-such-tool"),
            "{err}"
        );
    }
}
