//! Install, list, info, run and remove through a real daemon, and a daemon restart.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use packd_tests::{Env, require_root, workspace, write_pack_dir};

fn hello(env: &Env) -> std::path::PathBuf {
    env.build(&workspace().join("examples/hello"))
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn install_list_info_run_remove() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let file = hello(&env);
    assert_eq!(env.install(&file), "hello 1.0 (x1) installed\n");

    // On disk: blob, read-only mount, current link, data dirs, launcher.
    let r = &env.root;
    assert!(r.join("var/lib/packd/packs/hello_x1.pack").is_file());
    assert_eq!(
        fs::read_link(r.join("pack/hello/current")).unwrap(),
        Path::new("x1")
    );
    assert!(r.join("var/pack/hello/x1").is_dir());
    assert!(r.join("var/pack/hello/common").is_dir());
    assert!(
        fs::symlink_metadata(r.join("pack/bin/hello"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.contains(&format!("{} ", r.join("pack/hello/x1").display())))
        .expect("hello is mounted");
    for opt in ["ro", "nosuid", "nodev"] {
        assert!(
            line.split(' ').nth(5).unwrap().split(',').any(|o| o == opt),
            "{opt}: {line}"
        );
    }
    assert!(line.contains(" - squashfs /dev/loop"), "{line}");

    // list and info, as text and JSON.
    let list = env.pack(["list"]).ok();
    assert!(list.starts_with("Name "), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("hello ") && l.contains(" x1 ") && l.contains(" app "))
    );
    let listed = json(&env.pack(["list", "--json"]).ok());
    let hello_entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hello")
        .unwrap();
    assert_eq!(hello_entry["version"], "1.0");
    assert_eq!(hello_entry["revision"], "x1");
    assert_eq!(hello_entry["type"], "app");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "busybox" && p["type"] == "base")
    );
    let info = json(&env.pack(["info", "hello", "--json"]).ok());
    assert_eq!(info["summary"], "Says hello from inside its sandbox");
    assert_eq!(info["base"], "busybox");
    assert_eq!(info["apps"][0]["launcher"], "hello");
    assert_eq!(info["sha3-384"].as_str().unwrap().len(), 96);
    let text = env.pack(["info", "hello"]).ok();
    assert!(text.contains("revision:    x1"), "{text}");

    // Run, twice: the data directory keeps the count.
    let out = env.pack(["run", "hello", "--", "a", "b"]).ok();
    assert!(out.contains("Hello from hello 1.0 (revision x1)!"), "{out}");
    assert!(out.contains("run number 1; arguments: a b"), "{out}");
    let out = env.pack(["run", "hello"]).ok();
    assert!(out.contains("run number 2"), "{out}");
    assert_eq!(
        fs::read_to_string(r.join("var/pack/hello/x1/runs")).unwrap(),
        "2\n"
    );

    // The launcher runs the app too.
    let launched = std::process::Command::new(r.join("pack/bin/hello"))
        .arg("via-launcher")
        .env("PACKD_SOCKET", &env.socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&launched.stdout).contains("arguments: via-launcher"));

    // Remove: unmounted, loop device gone, blobs and data deleted, launcher gone.
    assert_eq!(env.pack(["remove", "hello"]).ok(), "hello removed\n");
    assert!(!env.mounts().iter().any(|m| m.ends_with("pack/hello/x1")));
    assert!(!r.join("var/lib/packd/packs/hello_x1.pack").exists());
    assert!(!r.join("var/pack/hello").exists());
    assert!(!r.join("pack/hello").exists());
    assert!(fs::symlink_metadata(r.join("pack/bin/hello")).is_err());
    let losetup = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&losetup.stdout)
            .contains(&r.join("var/lib/packd/packs/hello").display().to_string()),
        "a loop device still holds the blob"
    );
    let err = env.pack(["run", "hello"]).fails(125);
    assert_eq!(
        err,
        "error: cannot run hello: pack \"hello\" is not installed; see 'pack list'\n"
    );
}

#[test]
fn installing_again_makes_a_new_revision() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let file = hello(&env);
    env.install(&file);
    assert_eq!(env.install(&file), "hello 1.0 (x2) installed\n");
    assert_eq!(
        fs::read_link(env.root.join("pack/hello/current")).unwrap(),
        Path::new("x2")
    );
    let info = json(&env.pack(["info", "hello", "--json"]).ok());
    assert_eq!(info["revision"], "x2");
    assert_eq!(info["revisions"].as_array().unwrap().len(), 2);
    let out = env.pack(["run", "hello"]).ok();
    assert!(out.contains("(revision x2)"), "{out}");
}

#[test]
fn daemon_restart_and_reboot_keep_everything_working() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    env.install(&hello(&env));
    env.stop();
    // A reboot: nothing is mounted any more.
    env.reboot();
    assert!(env.mounts().is_empty());
    env.start();
    let mounts = env.mounts();
    assert!(
        mounts.iter().any(|m| m.ends_with("pack/hello/x1")),
        "{mounts:?}"
    );
    assert!(
        mounts.iter().any(|m| m.ends_with("pack/busybox/x1")),
        "{mounts:?}"
    );
    let out = env.pack(["run", "hello"]).ok();
    assert!(out.contains("Hello from hello"), "{out}");
    // A plain restart (mounts still there) does not mount twice. (Beside the packs' mounts
    // there is now the pin of hello's network namespace, made by its first run.)
    env.stop();
    env.start();
    let packs = |m: &Vec<std::path::PathBuf>| {
        m.iter()
            .filter(|m| m.starts_with(env.root.join("pack")))
            .count()
    };
    let again = env.mounts();
    assert_eq!(packs(&again), packs(&mounts), "{again:?}");
    assert!(
        again.iter().any(|m| m.ends_with("run/packd/netns/hello")),
        "{again:?}"
    );
    let log = env.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn dangerous_is_required_and_nothing_changes_without_it() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let file = hello(&env);
    let before = env.snapshot();
    let err = env.pack([OsStr::new("install"), file.as_os_str()]).fails(1);
    assert_eq!(
        err,
        "error: cannot install \"hello.pack\": local packages carry no store signature; pass --dangerous to install it anyway\n"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn an_app_without_its_base_is_refused() {
    require_root!();
    let env = Env::new();
    let file = hello(&env);
    let before = env.snapshot();
    let err = env
        .pack([
            OsStr::new("install"),
            file.as_os_str(),
            OsStr::new("--dangerous"),
        ])
        .fails(1);
    assert_eq!(
        err,
        "error: cannot install \"hello.pack\": its base \"busybox\" is not installed; install the base first (build one with 'pack base build')\n"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn removing_a_base_in_use_is_refused() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.install(&hello(&env));
    let err = env.pack(["remove", "busybox"]).fails(1);
    assert_eq!(
        err,
        "error: cannot remove base \"busybox\": hello uses it; remove it first\n"
    );
    env.pack(["run", "hello"]).ok();
}

/// A pack with a shell app for probing the sandbox.
fn tools(env: &Env) -> std::path::PathBuf {
    let dir = write_pack_dir(
        env.dir.path(),
        "tools",
        "name: tools\nversion: '0.1'\nbase: busybox\napps:\n  sh:\n    command: /bin/sh\n",
        &[],
    );
    env.build(&dir)
}

#[test]
fn run_passes_stdio_exit_status_and_signals() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.install(&tools(&env));

    assert_eq!(env.pack(["run", "tools.sh", "-c", "exit 42"]).code, 42);
    let killed = env.pack(["run", "tools.sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.code, 137);
    let missing = env.pack(["run", "tools.sh", "-c", "/nonexistent"]);
    assert_eq!(missing.code, 127);

    // stdin in, stdout and stderr out.
    let mut child = env
        .cmd()
        .args([
            "run",
            "tools.sh",
            "-c",
            "read line; echo \"out:$line\"; echo \"err:$line\" >&2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out:ping\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err:ping\n");
    assert!(out.status.success());

    // A signal to `pack run` reaches the app, which handles it.
    let mut child = env
        .cmd()
        .args([
            "run",
            "tools.sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(3));

    // SIGINT without a handler ends the app the usual way.
    let mut child = env
        .cmd()
        .args(["run", "tools.sh", "-c", "sleep 30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

/// Launches at once: the first may take the prepared spare sandbox, the others are built from
/// scratch; each gets its own sandbox, output and status.
#[test]
fn concurrent_runs_each_get_their_own_sandbox() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.install(&tools(&env));
    let script = |n: i32| {
        format!(
            "echo run-{n} pid-$$ top-$(ls -d /proc/[0-9]* | cut -d/ -f3 | sort -n | tail -n 1); exit {n}"
        )
    };
    let children: Vec<_> = (1..=8)
        .map(|n| {
            env.cmd()
                .args(["run", "tools.sh", "-c", &script(n)])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (n, child) in (1..=8).zip(children) {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(n),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // pid 1 is the sandbox's init, the shell pid 2, and the only other processes are the
        // shell's own few: no other sandbox's processes are visible.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let top: u32 = stdout
            .trim()
            .strip_prefix(&format!("run-{n} pid-2 top-"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
        assert!(top < 10, "{stdout}");
    }
}

/// Later launches copy the first one's file system (a mount template), but what belongs to a
/// launch is fresh each time: `/run`, `/dev/shm` and `/proc`. The pack's `/tmp` and data are
/// shared by design.
#[test]
fn each_launch_starts_with_fresh_run_and_shm() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.install(&tools(&env));
    let sh = |script: &str| env.pack(["run", "tools.sh", "-c", script]).ok();
    let leave = "echo x >/run/left; echo x >/dev/shm/left; echo x >/tmp/left; \
                 echo x >$PACK_DATA/left; mkdir /run/d && echo made";
    assert_eq!(sh(leave), "made\n");
    for _ in 0..2 {
        assert_eq!(
            sh(
                "ls -A /run | wc -l; ls -A /dev/shm | wc -l; cat /tmp/left $PACK_DATA/left; echo $$"
            ),
            "0\n0\nx\nx\n2\n"
        );
    }
}

#[test]
fn the_sandbox_sees_the_base_its_pack_and_nothing_else() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.install(&tools(&env));
    env.install(&hello(&env));
    let sh = |script: &str| env.pack(["run", "tools.sh", "-c", script]);

    // / is the base, read-only; the package is at /pack/tools/x1, read-only.
    assert!(sh("test -x /bin/busybox && test -f /pack/tools/x1/meta/pack.yaml").code == 0);
    assert_ne!(sh("touch /etc/x").code, 0);
    assert_ne!(sh("touch /pack/tools/x1/x").code, 0);
    // Only this pack under /pack and /var/pack.
    assert_eq!(sh("ls /pack").ok().trim(), "tools");
    assert_eq!(
        sh("ls /var/pack/tools | sort | tr '\\n' ' '").ok().trim(),
        "common current users x1"
    );
    assert_eq!(
        sh("ls /var/pack/tools/users").ok().trim(),
        "0",
        "only the caller's own data"
    );
    // Data writable, and on the host where packd keeps it.
    sh("echo kept > $PACK_DATA/f && echo shared > $PACK_COMMON/g").ok();
    assert_eq!(
        fs::read_to_string(env.root.join("var/pack/tools/x1/f")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        fs::read_to_string(env.root.join("var/pack/tools/common/g")).unwrap(),
        "shared\n"
    );
    // A private /tmp: not the host's, shared by runs of the same pack, not by other packs.
    let marker = format!("packd-e2e-{}", std::process::id());
    sh(&format!("echo x > /tmp/{marker}")).ok();
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert_eq!(sh(&format!("cat /tmp/{marker}")).ok(), "x\n");
    // Its own pid namespace: the app is pid 2 under a private init.
    assert_eq!(sh("echo $$").ok(), "2\n");
    let procs = sh("ls /proc | grep -c '^[0-9]'").ok();
    assert!(
        procs.trim().parse::<u32>().unwrap() < 10,
        "sees host processes: {procs}"
    );
    // A minimal /dev.
    let dev = sh("ls /dev | tr '\\n' ' '").ok();
    assert_eq!(
        dev.trim(),
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(
        sh("echo hi > /dev/null && head -c 4 /dev/zero | wc -c")
            .ok()
            .trim(),
        "4"
    );
    // The environment.
    let vars = sh("env | grep ^PACK | sort").ok();
    for want in [
        "PACK=/pack/tools/x1",
        "PACK_NAME=tools",
        "PACK_REVISION=x1",
        "PACK_VERSION=0.1",
        "PACK_DATA=/var/pack/tools/x1",
        "PACK_COMMON=/var/pack/tools/common",
    ] {
        assert!(
            vars.lines().any(|l| l == want),
            "{want} missing in:\n{vars}"
        );
    }
    assert!(vars.lines().any(|l| l.starts_with("PACK_ARCH=")));
    assert!(!sh("env").ok().contains("SNAP"));
}

#[test]
fn snap_yaml_packages_get_snap_variables() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let dir = env.dir.path().join("snappy");
    fs::create_dir_all(dir.join("meta")).unwrap();
    fs::write(
        dir.join("meta/snap.yaml"),
        "name: snappy\nversion: '2'\nbase: busybox\napps:\n  snappy:\n    command: /bin/sh\n",
    )
    .unwrap();
    let file = env.build(&dir);
    env.install(&file);
    let vars = env.pack(["run", "snappy", "-c", "env | sort"]).ok();
    for want in [
        "SNAP=/pack/snappy/x1",
        "SNAP_NAME=snappy",
        "SNAP_DATA=/var/pack/snappy/x1",
        "PACK_NAME=snappy",
    ] {
        assert!(vars.lines().any(|l| l == want), "{want} missing");
    }
    let list = env.pack(["list"]).ok();
    assert!(
        list.lines()
            .any(|l| l.starts_with("snappy") && l.contains("snap.yaml")),
        "{list}"
    );
}

#[test]
fn socket_is_found_from_flag_env_or_default() {
    require_root!();
    let env = Env::new();
    let flag = std::process::Command::new(packd_tests::pack_bin())
        .arg("--socket")
        .arg(&env.socket)
        .arg("list")
        .env_remove("PACKD_SOCKET")
        .output()
        .unwrap();
    assert!(flag.status.success());
    let wrong = std::process::Command::new(packd_tests::pack_bin())
        .args(["--socket", "/nonexistent/packd.socket", "list"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).starts_with(
        "error: cannot reach packd at /nonexistent/packd.socket: No such file or directory (os error 2); is packd running?"
    ));
}

#[test]
fn only_root_changes_things_but_anyone_reads() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let file = hello(&env);
    // The file must be readable by nobody for the upload itself to be attempted.
    fs::set_permissions(
        env.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let as_nobody = |args: &[&OsStr]| {
        let mut c = env.cmd();
        c.args(args);
        // SAFETY: setgid/setuid in the child before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run_output(c.output().unwrap())
    };
    let err = as_nobody(&[
        OsStr::new("install"),
        file.as_os_str(),
        OsStr::new("--dangerous"),
    ])
    .fails(1);
    assert_eq!(
        err,
        "error: installing a pack needs root; run the command with sudo\n"
    );
    let list = as_nobody(&[OsStr::new("list")]).ok();
    assert!(list.contains("busybox"), "{list}");
    let err = as_nobody(&[OsStr::new("remove"), OsStr::new("busybox")]).fails(1);
    assert_eq!(
        err,
        "error: removing a pack needs root; run the command with sudo\n"
    );
}

fn run_output(o: std::process::Output) -> packd_tests::Run {
    packd_tests::Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
