//! packd survives its own log failing: standard error on a full device, on a pipe whose
//! reader died, or on a disk that fills up. packd never panics or stops, its services keep
//! running with their logs, errors reach the client with their real cause, and the lines that
//! could not be written are counted and reported once writing works again.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use packd_tests::{DaemonStderr, Env, eventually, require_root, write_pack_dir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `(active, pid)` of `talk.talk`.
fn service(env: &Env) -> (String, Option<i64>) {
    let list = json(&env.pack(["services", "--json"]).ok());
    let s = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pack"] == "talk")
        .unwrap_or_else(|| panic!("talk is not listed: {list}"))
        .clone();
    (s["active"].as_str().unwrap().to_string(), s["pid"].as_i64())
}

/// A chatty service (a line every 10 ms) and an app.
fn install_talk(env: &Env) {
    env.install_base();
    let yaml = "name: talk\nversion: '1'\nbase: busybox\napps:\n  talk:\n    command: bin/talk\n    daemon: simple\n  sh:\n    command: /bin/sh\n";
    let dir = write_pack_dir(
        env.dir.path(),
        "talk",
        yaml,
        &[(
            "bin/talk",
            // ~200 bytes a line: a full disk refuses one within a page's worth.
            "#!/bin/sh\ni=0\npad=0123456789012345678901234567890123456789012345678901234567890123456789\nwhile true; do echo line $i $pad$pad$pad; i=$((i+1)); sleep 0.01; done\n",
        )],
    );
    env.install(&env.build(&dir));
}

fn service_log(env: &Env) -> String {
    fs::read_to_string(env.root.join("var/log/packd/talk.talk.log")).unwrap_or_default()
}

/// Drives the daemon for a while with a debug log that cannot be written: it must keep
/// answering, its service must keep running and logging, and it must stop cleanly.
fn keeps_working_with_stderr(to: DaemonStderr) {
    let mut env = Env::stopped();
    env.set_daemon_stderr(to);
    env.start();
    install_talk(&env);
    let (active, pid) = service(&env);
    assert_eq!(active, "active");
    // A few hundred log lines' worth of requests, each refused a write.
    for _ in 0..20 {
        assert_eq!(env.pack(["run", "talk.sh", "-c", "echo hi"]).ok(), "hi\n");
    }
    let before = service_log(&env).lines().count();
    eventually("the service goes on logging", || {
        service_log(&env).lines().count() > before + 20
    });
    assert!(env.daemon_running(), "packd died");
    assert_eq!(service(&env), ("active".to_string(), pid), "same service");
    let status = env.stop().expect("it ran");
    assert!(status.success(), "packd exited with {status}");
}

#[test]
fn packd_keeps_working_with_its_log_on_dev_full() {
    require_root!();
    keeps_working_with_stderr(DaemonStderr::File("/dev/full".into()));
}

#[test]
fn packd_keeps_working_when_its_log_reader_is_gone() {
    require_root!();
    keeps_working_with_stderr(DaemonStderr::DeadPipe);
}

/// Fills the file system at `dir` with one file; returns it.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    // The last partial megabyte, to the byte.
    while f.write_all(&[0u8; 512]).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    path
}

#[test]
fn a_full_disk_under_packd_and_its_log_is_an_error_not_a_crash() {
    require_root!();
    let mut env = Env::stopped();
    // The root on a small file system of its own, the daemon's log on it too.
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&env.root)
        .status()
        .unwrap();
    assert!(st.success());
    let log = env.root.join("packd.log");
    fs::write(&log, "").unwrap();
    env.set_daemon_stderr(DaemonStderr::File(log.clone()));
    env.set_daemon_env("PACKD_LOG", "debug");
    env.start();
    install_talk(&env);
    let (_, pid) = service(&env);

    let filler = fill(&env.root);
    // An install needs room: it fails, saying why, and leaves nothing behind.
    let dir = write_pack_dir(
        env.dir.path(),
        "other",
        "name: other\nversion: '1'\nbase: busybox\napps:\n  sh:\n    command: /bin/sh\n",
        &[],
    );
    let file = env.build(&dir);
    let run = env.try_install(&file);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("No space left on device"),
        "the real cause, not a lost connection: {}",
        run.stderr
    );
    assert!(!env.pack(["list"]).ok().contains("other"));
    // packd and its service carry on meanwhile (long enough for the service to lose lines:
    // its log's last page is full within a few dozen).
    std::thread::sleep(Duration::from_millis(1000));
    // Enough work for packd's own debug log to need a new page it cannot have.
    for _ in 0..30 {
        assert_eq!(env.pack(["run", "talk.sh", "-c", "echo hi"]).ok(), "hi\n");
    }
    assert!(env.daemon_running(), "packd died");
    assert_eq!(service(&env), ("active".to_string(), pid));

    // Room again: both logs say what they lost, once, and go on.
    fs::remove_file(&filler).unwrap();
    eventually("the service's log says what it lost", || {
        service_log(&env).contains("lines of output were lost: cannot write this log")
    });
    env.pack(["run", "talk.sh", "-c", "true"]).ok();
    let lost = "log lines could not be written (No space left on device";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(&log).unwrap_or_default().contains(lost) {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        assert!(
            Instant::now() < deadline,
            "packd's log never says {lost:?}: ...{tail:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = env.stop().expect("it ran");
    assert!(status.success(), "packd exited with {status}");
}

#[test]
fn a_full_disk_under_the_service_logs_is_not_a_flood_in_packds() {
    require_root!();
    let mut env = Env::stopped();
    // The services' logs on a file system of their own, which fills up; packd's log elsewhere.
    let logs = env.root.join("var/log/packd");
    fs::create_dir_all(&logs).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&logs)
        .status()
        .unwrap();
    assert!(st.success());
    env.start();
    install_talk(&env);
    let (_, pid) = service(&env);
    let filler = fill(&logs);
    let before = env.log().lines().count();
    // ~200 lines the service cannot log.
    std::thread::sleep(Duration::from_secs(2));
    let during = env.log().lines().count() - before;
    assert!(
        during < 20,
        "packd logged {during} lines while a service's log was full:\n{}",
        env.log()
    );
    assert_eq!(service(&env), ("active".to_string(), pid));
    fs::remove_file(&filler).unwrap();
    eventually("the service's log says what it lost", || {
        service_log(&env).contains("lines of output were lost: cannot write this log")
    });
}
