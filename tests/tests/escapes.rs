//! Confinement proven from inside: a static probe, packed and installed like any app, tries
//! every escape it knows from inside its sandbox (as root and as an unprivileged user) and
//! reports each attempt; every one must be blocked. The same probe run unconfined on the host
//! shows the checks can fail, so passing them means something.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use packd_tests::probe::{
    Canary, HostProcess, PROBE_TASKS, Report, other_pack_dir, probe_binary, probe_pack_dir,
};
use packd_tests::{Env, Run, require_root};

/// Every check the probe makes, in order. A check that disappears (or a new one that is not
/// listed here) fails the tests.
const CHECKS: &[&str] = &[
    "read-host-canary",
    "read-host-shadow",
    "proc-root-canary",
    "tmp-private",
    "write-own-pack",
    "write-base",
    "write-other-pack-data",
    "other-packs-visible",
    "chown-to-other-user",
    "dac-override",
    "landlock-fs-enforced",
    "proc-sys-writable",
    "sys-writable",
    "proc-masked",
    "open-host-devices",
    "mknod-devices",
    "dev-nodes",
    "mounts-nosuid",
    "mounts-expected",
    "leaked-fds",
    "fd-links-inside",
    "cwd-inside",
    "host-pid-visible",
    "process-count",
    "pid1-is-sandbox-init",
    "proc1-exe-write",
    "proc1-environ-mem",
    "signal-init",
    "ptrace-attach-init",
    "ptrace-traceme",
    "process-vm-readv-init",
    "pidfd-getfd-init",
    "capabilities",
    "no-new-privs",
    "seccomp-filter",
    "unshare-user",
    "unshare-mount",
    "clone-namespaces",
    "clone3",
    "setns-init-mnt",
    "cgroup-procs-writable",
    "cgroup-move-self",
    "mount-cgroup2",
    "mount-tmpfs",
    "chroot",
    "open-tree",
    "move-mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount-setattr",
    "tiocsti",
    "tiocsti-high-bits",
    "tioclinux",
    "keyctl",
    "add-key",
    "bpf",
    "perf-event-open",
    "userfaultfd",
    "io-uring-setup",
    "init-module",
    "kexec-load",
    "reboot",
    "settimeofday",
    "swapon",
    "acct",
    "open-by-handle-at",
    "syslog",
    "iopl",
    "sethostname",
    "packet-socket",
    "raw-ip-socket",
    "netlink-sockets",
    "connect-host-listener",
    "bind-tcp",
    "proc-net-dev",
    "landlock-tcp-connect",
    "packd-socket",
    "fork-limit",
    "memory-limit",
    "umount",
    "pivot-root",
];

/// The checks that would change the host if they succeeded there: `--outside` skips them.
const INSIDE_ONLY: &[&str] = &[
    "ptrace-attach-init",
    "cgroup-move-self",
    "mount-cgroup2",
    "mount-tmpfs",
    "move-mount",
    "mount-setattr",
    "sethostname",
    "umount",
    "pivot-root",
];

/// Checks that an unconfined root process on any ordinary host fails (the probe can see an
/// escape when there is one).
const FAIL_OUTSIDE: &[&str] = &[
    "read-host-canary",
    "proc-root-canary",
    "tmp-private",
    "write-other-pack-data",
    "chown-to-other-user",
    "dac-override",
    "landlock-fs-enforced",
    "mknod-devices",
    "host-pid-visible",
    "process-count",
    "pid1-is-sandbox-init",
    "capabilities",
    "no-new-privs",
    "connect-host-listener",
    "bind-tcp",
    "packd-socket",
    "landlock-tcp-connect",
    "fork-limit",
    "memory-limit",
];

/// What the escape attempts aim at on the host: a process, a TCP listener, canary files (in the
/// test's directory and in /tmp), the daemon's socket and another pack's data. Everything is
/// removed on drop, even when an assertion failed (the daemon, its mounts and cgroups by
/// [`Env`]'s own drop).
struct Targets {
    sleep: HostProcess,
    listener: TcpListener,
    canaries: Vec<Canary>,
    socket: PathBuf,
    other_data: PathBuf,
}

impl Targets {
    fn new(dir: &Path, socket: PathBuf, other_data: PathBuf) -> Targets {
        Targets {
            sleep: HostProcess::sleep(),
            listener: TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1"),
            canaries: vec![Canary::new_in(dir), Canary::new_in(Path::new("/tmp"))],
            socket,
            other_data,
        }
    }

    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        for c in &self.canaries {
            args.push("--host-canary".into());
            args.push(c.path().into());
        }
        let port = self.listener.local_addr().expect("listener address").port();
        for (flag, value) in [
            ("--host-pid", OsString::from(self.sleep.pid().to_string())),
            ("--port", port.to_string().into()),
            ("--socket", self.socket.clone().into()),
            ("--other-data", self.other_data.clone().into()),
            ("--tasks", PROBE_TASKS.to_string().into()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args
    }
}

/// A daemon with the base, the probe and a neighbour pack installed, and the targets.
struct Scene {
    targets: Targets,
    env: Env,
}

fn scene() -> Scene {
    let env = Env::new();
    env.install_base();
    env.install(&env.build(&other_pack_dir(env.dir.path())));
    env.install(&env.build(&probe_pack_dir(env.dir.path())));
    let other_data = env.root.join("var/pack/other/x1");
    assert!(other_data.is_dir(), "the neighbour has data");
    fs::write(other_data.join("secret"), "the neighbour's secret\n").unwrap();
    // Searchable by anyone, so an unprivileged `pack run` reaches the socket and the canary in
    // this directory is hidden only by the sandbox, not by permissions.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let targets = Targets::new(env.dir.path(), env.socket.clone(), other_data);
    Scene { targets, env }
}

impl Scene {
    fn run_probe(&self, uid: Option<u32>) -> Run {
        let mut c = self.env.cmd();
        c.args(["run", "probe", "--"]).args(self.targets.args());
        if let Some(uid) = uid {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let o = c.output().expect("run pack run probe");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

#[track_caller]
fn assert_all_blocked(report: &Report, uid: u32) {
    // Shown with --nocapture.
    eprintln!("probe report (uid {uid}):\n{}", report.text);
    assert_eq!(
        report.uid, uid,
        "the probe ran as the wrong user:\n{}",
        report.text
    );
    assert_eq!(
        report.names(),
        CHECKS,
        "the probe's list of checks is not the expected one:\n{}",
        report.text
    );
    assert!(
        report.skipped.is_empty(),
        "checks were skipped inside the sandbox: {:?}",
        report.skipped
    );
    let open = report.not_blocked();
    assert!(
        open.is_empty(),
        "ESCAPES: {} of {} checks were NOT blocked inside the sandbox (uid {uid}):\n  {}\n\nthe whole report:\n{}",
        open.len(),
        report.checks.len(),
        open.join("\n  "),
        report.text
    );
}

#[test]
fn the_probe_lists_the_expected_checks() {
    require_root!();
    let out = std::process::Command::new(probe_binary())
        .arg("--list")
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().collect::<Vec<_>>(), CHECKS);
}

#[test]
fn every_escape_is_blocked_for_root() {
    require_root!();
    let scene = scene();
    // The first launch builds the sandbox's file system (and keeps it as a template), the
    // second copies the template: both must hold.
    let first = Report::parse(&scene.run_probe(None).ok());
    assert_all_blocked(&first, 0);
    let stdout = scene.run_probe(None).ok();
    let report = Report::parse(&stdout);
    assert_all_blocked(&report, 0);
    // Details that pin down which layer did it.
    assert!(
        report.check("clone3").detail.contains("ENOSYS"),
        "{}",
        report.check("clone3").detail
    );
    assert!(report.check("fork-limit").detail.contains("EAGAIN"));
    assert!(
        report
            .check("landlock-tcp-connect")
            .detail
            .contains("EACCES")
    );
    // The host's side is untouched.
    assert!(
        !scene
            .env
            .root
            .join("var/pack/other/x1")
            .read_dir()
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".packd-probe")
            })
    );
}

#[test]
fn every_escape_is_blocked_for_nobody() {
    require_root!();
    let scene = scene();
    let run = scene.run_probe(Some(65534));
    assert_eq!(
        run.code, 0,
        "pack run as nobody failed\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let report = Report::parse(&run.stdout);
    assert_all_blocked(&report, 65534);
}

#[test]
fn the_probe_finds_escapes_on_an_unconfined_host() {
    require_root!();
    let dir = tempfile::Builder::new()
        .prefix("packd-probe-outside-")
        .tempdir()
        .unwrap();
    let other_data = dir.path().join("root/var/pack/other/x1");
    fs::create_dir_all(&other_data).unwrap();
    let socket = dir.path().join("packd.socket");
    let _api = UnixListener::bind(&socket).unwrap();
    let targets = Targets::new(dir.path(), socket, other_data);
    let out = std::process::Command::new(probe_binary())
        .arg("--outside")
        .args(targets.args())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = Report::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report.uid, 0);
    // Everything but the host-changing checks ran, and those were skipped.
    let outside: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|c| !INSIDE_ONLY.contains(c))
        .collect();
    assert_eq!(report.names(), outside, "{}", report.text);
    assert_eq!(report.skipped, INSIDE_ONLY, "{}", report.text);
    // The probe sees what an unconfined process can do.
    for name in FAIL_OUTSIDE {
        assert!(
            !report.check(name).blocked,
            "{name} should NOT be blocked on the host: {}",
            report.check(name).detail
        );
    }
    let open = report.not_blocked();
    assert!(
        open.len() * 2 >= report.checks.len(),
        "only {} of {} checks failed outside a sandbox:\n{}",
        open.len(),
        report.checks.len(),
        report.text
    );
    // The probe removed what it created.
    let left: Vec<OsString> = fs::read_dir(&targets.other_data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the probe left {left:?} behind");
}
