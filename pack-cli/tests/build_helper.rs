//! `pack pack` and `pack base build` run `pack-build`, found beside `pack`.

use std::process::Command;

#[test]
fn pack_pack_runs_pack_build_and_says_so_when_it_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("hello");
    std::fs::create_dir_all(tree.join("meta")).unwrap();
    std::fs::write(tree.join("meta/pack.yaml"), "name: hello\nversion: '1'\n").unwrap();
    let out = tmp.path().join("hello.pack");

    // Beside pack-build (as built): the package is written.
    let st = Command::new(env!("CARGO_BIN_EXE_pack"))
        .args([
            "pack".as_ref(),
            tree.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(out.is_file());

    // A pack alone: one clear error naming what is missing, and nothing written.
    let alone = tmp.path().join("bin");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_pack"), alone.join("pack")).unwrap();
    std::fs::remove_file(&out).unwrap();
    let st = Command::new(alone.join("pack"))
        .args([
            "pack".as_ref(),
            tree.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pack-build") && err.contains("reinstall"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn pack_build_refuses_what_belongs_to_pack() {
    let st = Command::new(env!("CARGO_BIN_EXE_pack-build"))
        .args(["list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(1), "{err}");
    assert!(err.contains("use pack"), "{err}");
}
