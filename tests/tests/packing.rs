//! `pack pack` and `pack base build`: real images, checked with the kernel and squashfs-tools.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use packd_tests::{pack_bin, require_root, workspace, write_pack_dir};

const HELLO: &str =
    "name: hello\nversion: '1.0'\nbase: busybox\napps:\n  hello:\n    command: bin/hello\n";

fn pack(dir: &Path, args: &[&str], cwd: &Path, epoch: Option<&str>) -> std::process::Output {
    let mut c = Command::new(pack_bin());
    c.arg("pack").arg(dir).args(args).current_dir(cwd);
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    c.output().expect("run pack")
}

fn superblock_field(file: &Path, offset: usize, len: usize) -> u64 {
    let bytes = fs::read(file).unwrap();
    let mut v = 0u64;
    for (i, b) in bytes[offset..offset + len].iter().enumerate() {
        v |= (*b as u64) << (8 * i);
    }
    v
}

#[test]
fn default_name_and_reproducible_bytes() {
    let work = tempfile::tempdir().unwrap();
    let src = write_pack_dir(
        work.path(),
        "hello",
        HELLO,
        &[("bin/hello", "#!/bin/sh\necho hi\n")],
    );
    fs::create_dir_all(src.join("share/empty")).unwrap();
    std::os::unix::fs::symlink("hello", src.join("bin/hi")).unwrap();

    let out = pack(&src, &[], work.path(), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let name = format!("hello_1.0_{arch}.pack");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);
    let first = fs::read(work.path().join(&name)).unwrap();

    // Touch every file, change modes back and forth: same tree, same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(src.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = pack(&src, &["--output", "again.pack"], work.path(), None);
    assert!(out.status.success());
    assert_eq!(
        fs::read(work.path().join("again.pack")).unwrap(),
        first,
        "not reproducible"
    );

    // SOURCE_DATE_EPOCH sets every timestamp, the superblock's included (offset 8).
    let out = pack(
        &src,
        &["--output", "epoch.pack"],
        work.path(),
        Some("1700000000"),
    );
    assert!(out.status.success());
    let epoch = work.path().join("epoch.pack");
    assert_eq!(superblock_field(&epoch, 8, 4), 1_700_000_000);
    assert_eq!(superblock_field(&work.path().join(&name), 8, 4), 0);
    assert_ne!(fs::read(&epoch).unwrap(), first);

    let bad = pack(
        &src,
        &["--output", "bad.pack"],
        work.path(),
        Some("yesterday"),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SOURCE_DATE_EPOCH"));
    assert!(!work.path().join("bad.pack").exists());
}

#[test]
fn compression_choices_reach_the_superblock() {
    let work = tempfile::tempdir().unwrap();
    let src = write_pack_dir(work.path(), "hello", HELLO, &[("bin/hello", "#!/bin/sh\n")]);
    // squashfs compressor ids: 3 lzo, 4 xz, 6 zstd (superblock offset 20).
    for (choice, id) in [("zstd", 6), ("xz", 4), ("lzo", 3)] {
        let file = format!("{choice}.pack");
        let out = pack(
            &src,
            &["--compression", choice, "--output", &file],
            work.path(),
            None,
        );
        assert!(
            out.status.success(),
            "{choice}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            superblock_field(&work.path().join(&file), 20, 2),
            id,
            "{choice}"
        );
        // squashfs-tools agrees it is a valid image.
        let list = Command::new("unsquashfs")
            .args(["-lls"])
            .arg(work.path().join(&file))
            .output()
            .expect("unsquashfs is installed by make test");
        assert!(
            list.status.success(),
            "{choice}: {}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(String::from_utf8_lossy(&list.stdout).contains("bin/hello"));
    }
    let out = pack(&src, &["--compression", "gzip"], work.path(), None);
    assert_eq!(out.status.code(), Some(2), "clap refuses unknown values");
}

#[test]
fn invalid_metadata_is_one_clear_error_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 5] = [
        (
            "name: Hello\nversion: '1'\n",
            "error: meta/pack.yaml: invalid pack name \"Hello\": \"H\" is not allowed; use only lowercase letters a-z, digits and dashes\n",
        ),
        (
            "name: hello\nversion: '1'\nfrobnicate: yes\n",
            "error: meta/pack.yaml: unknown top-level key \"frobnicate\"; check its spelling (docs/pack-yaml.md lists the supported keys)\n",
        ),
        (
            "name: hello\nversion: '1'\nbase: busybox\napps:\n  hello:\n    command: bin/hello; reboot\n",
            "error: meta/pack.yaml: app \"hello\": invalid command \"bin/hello; reboot\": \";\" is not allowed; use only letters, digits, spaces and the characters / . _ # : $ -\n",
        ),
        (
            "name: hello\nversion: '1'\nbase: busybox\napps:\n  hello:\n    command: bin/missing\n",
            "is not an executable file in",
        ),
        (
            "name: hello\nversion: '1'\nbase: busybox\napps:\n  hello:\n    command: bin/hello\n    daemon: sometimes\n",
            "error: meta/pack.yaml: app \"hello\": invalid daemon \"sometimes\": use one of simple, forking, oneshot, notify\n",
        ),
    ];
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        let src = write_pack_dir(
            work.path(),
            &format!("case{i}"),
            yaml,
            &[("bin/hello", "#!/bin/sh\n")],
        );
        let out = pack(&src, &["--output", "out.pack"], work.path(), None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i}: {stderr}");
        assert!(
            stderr == *expected || stderr.contains(expected),
            "case {i}: got {stderr:?}, want {expected:?}"
        );
        assert!(
            !work.path().join("out.pack").exists(),
            "case {i} wrote a file"
        );
    }
}

#[test]
fn setuid_files_are_refused_by_the_packer() {
    let work = tempfile::tempdir().unwrap();
    let src = write_pack_dir(work.path(), "hello", HELLO, &[("bin/hello", "#!/bin/sh\n")]);
    fs::set_permissions(src.join("bin/hello"), fs::Permissions::from_mode(0o4755)).unwrap();
    let out = pack(&src, &["--output", "x.pack"], work.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bin/hello: setuid/setgid files are not allowed"),
        "{stderr}"
    );
    assert!(!work.path().join("x.pack").exists());
}

#[test]
fn kernel_mounts_what_we_pack() {
    require_root!();
    let work = tempfile::tempdir().unwrap();
    let src = write_pack_dir(
        work.path(),
        "hello",
        HELLO,
        &[("bin/hello", "#!/bin/sh\necho hi\n")],
    );
    fs::create_dir_all(src.join("share/empty")).unwrap();
    fs::set_permissions(src.join("share"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("../bin/hello", src.join("share/link")).unwrap();
    let out = pack(&src, &["--output", "k.pack"], work.path(), None);
    assert!(out.status.success());
    let mnt = work.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(work.path().join("k.pack"))
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(m.success());
    let check = || -> Result<(), String> {
        let hello = fs::symlink_metadata(mnt.join("bin/hello")).map_err(|e| e.to_string())?;
        let share = fs::symlink_metadata(mnt.join("share")).map_err(|e| e.to_string())?;
        let link = fs::read_link(mnt.join("share/link")).map_err(|e| e.to_string())?;
        let empty = fs::read_dir(mnt.join("share/empty"))
            .map_err(|e| e.to_string())?
            .count();
        let content = fs::read_to_string(mnt.join("bin/hello")).map_err(|e| e.to_string())?;
        if hello.permissions().mode() & 0o7777 != 0o755
            || share.permissions().mode() & 0o7777 != 0o1777
            || link != Path::new("../bin/hello")
            || empty != 0
            || content != "#!/bin/sh\necho hi\n"
            || hello.uid() != 0
        {
            return Err(format!(
                "modes {:o} {:o}, link {link:?}, empty {empty}, content {content:?}",
                hello.permissions().mode(),
                share.permissions().mode()
            ));
        }
        Ok(())
    };
    let result = check();
    let _ = Command::new("umount").arg(&mnt).status();
    result.unwrap();
}

#[test]
fn busybox_base_has_the_sandbox_mount_points() {
    require_root!();
    let base = packd_tests::busybox_base();
    let list = Command::new("unsquashfs")
        .args(["-lls"])
        .arg(&base)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout);
    for dir in [
        "proc", "sys", "dev", "tmp", "run", "home", "root", "etc", "var/pack", "pack",
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with('d') && l.ends_with(&format!("squashfs-root/{dir}"))),
            "base lacks /{dir}"
        );
    }
    assert!(listing.contains("squashfs-root/etc/passwd"));
    assert!(listing.contains("squashfs-root/bin/busybox"));
    assert!(listing.contains("squashfs-root/bin/sh -> /bin/busybox"));
    assert!(workspace().join("examples/hello/meta/pack.yaml").exists());
}
