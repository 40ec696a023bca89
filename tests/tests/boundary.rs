//! The boundary between local users and the daemon: what an unprivileged user can do to
//! packd's API socket must not lock anyone else out.

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use packd_tests::{Env, cpu_ticks, require_root};

/// A process of uid 65534 holding `n` idle connections to `socket`; killed (by pid) and
/// reaped when dropped.
struct Hog(libc::pid_t);

impl Hog {
    fn start(socket: &std::path::Path, n: usize) -> Hog {
        // Everything the child needs is made before the fork: it only makes system calls.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let path = socket.as_os_str().as_encoded_bytes();
        assert!(path.len() < addr.sun_path.len());
        for (d, s) in addr.sun_path.iter_mut().zip(path) {
            *d = *s as libc::c_char;
        }
        let limit = libc::rlimit {
            rlim_cur: (n + 64) as libc::rlim_t,
            rlim_max: (n + 64) as libc::rlim_t,
        };
        // SAFETY: the child makes only async-signal-safe system calls, then pauses or exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: plain system calls on values prepared above.
            unsafe {
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                libc::setgroups(0, std::ptr::null());
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    libc::_exit(1);
                }
                for _ in 0..n {
                    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    if fd < 0 {
                        break;
                    }
                    libc::connect(
                        fd,
                        (&raw const addr).cast(),
                        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                    );
                }
                loop {
                    libc::pause();
                }
            }
        }
        Hog(pid)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        // SAFETY: our own child, not reaped yet.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// `pack list` as root, given at most `limit`; whether it succeeded in time.
fn list_in_time(env: &Env, limit: Duration) -> bool {
    let mut child = env.cmd().arg("list").spawn().unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_user_holding_idle_connections_cannot_lock_root_out() {
    require_root!();
    let env = Env::new();
    let pid = env.daemon_pid().unwrap();
    // Far more than packd's descriptors (its soft limit is 1024 unless raised).
    let _hog = Hog::start(&env.socket, 3000);
    std::thread::sleep(Duration::from_millis(1500));
    let before = cpu_ticks(pid);
    let log_before = env.log().lines().count();
    for _ in 0..5 {
        assert!(
            list_in_time(&env, Duration::from_secs(5)),
            "root was locked out:\n{}",
            env.log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    // No spinning, no flood of log lines.
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 50,
        "packd used {used} ticks while a user held connections"
    );
    let logged = env.log().lines().count() - log_before;
    assert!(logged < 200, "{logged} log lines:\n{}", env.log());
    assert!(
        env.log()
            .contains("a peer holds 64 API connections already"),
        "{}",
        env.log()
    );
}

#[test]
fn a_connection_that_says_nothing_is_closed() {
    require_root!();
    let env = Env::new();
    let mut silent = UnixStream::connect(&env.socket).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("packd said {n} bytes to a silent connection"),
        Err(e) => panic!("packd kept a silent connection open for 30 s ({e})"),
    }
}

/// A process of uid 65534 that, until killed, swaps `dir` with a symlink to `victim` and back
/// (`renameat2(RENAME_EXCHANGE)`), making the real directory's mode 0755 again each time so
/// that packd has something to fix.
fn swapper(dir: &std::path::Path, victim: &std::path::Path) -> Hog {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let link = dir.with_extension("link");
    let c = |p: &std::path::Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (dir_c, link_c, victim_c) = (c(dir), c(&link), c(victim));
    // SAFETY: the child makes only system calls on strings made before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(1);
            }
            libc::symlink(victim_c.as_ptr(), link_c.as_ptr());
            loop {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    dir_c.as_ptr(),
                    libc::AT_FDCWD,
                    link_c.as_ptr(),
                    libc::RENAME_EXCHANGE,
                );
                // One of them is the directory (the other follows the link to the victim,
                // which this user may not change).
                libc::chmod(dir_c.as_ptr(), 0o755);
                libc::chmod(link_c.as_ptr(), 0o755);
            }
        }
    }
    Hog(pid)
}

#[test]
fn a_user_swapping_their_data_directory_for_a_symlink_cannot_make_packd_chmod_elsewhere() {
    require_root!();
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.install_base();
    let dir = packd_tests::write_pack_dir(
        env.dir.path(),
        "tools",
        "name: tools\nversion: '1'\nbase: busybox\napps:\n  sh:\n    command: /bin/sh\n",
        &[],
    );
    env.install(&env.build(&dir));
    let run = || {
        let mut c = env.cmd();
        c.args(["run", "tools.sh", "-c", "true"]).current_dir("/");
        packd_tests::as_nobody(&mut c);
        c.output().unwrap()
    };
    assert!(run().status.success(), "nobody runs the app");
    let data = env.root.join("var/pack/tools/users/65534/x1");
    assert!(data.is_dir());
    // A root-owned file nobody may change.
    let victim = env.dir.path().join("victim");
    fs::write(&victim, "root's").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let swapping = swapper(&data, &victim);
    for _ in 0..150 {
        // Each launch may fail (the user broke their own data directory): what matters is
        // what packd did to the victim.
        let _ = run();
    }
    drop(swapping);
    let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o644,
        "packd changed the mode of a file it was tricked into"
    );
}

/// `pack run tools.sh -c SCRIPT` from `cwd`, as `uid` (0 or 65534), with `limits` set on the
/// client first; its standard output.
fn run_with(
    env: &Env,
    uid: u32,
    cwd: &str,
    limits: &[(libc::__rlimit_resource_t, u64, u64)],
    script: &str,
) -> String {
    use std::os::unix::process::CommandExt;
    let mut c = env.cmd();
    c.args(["run", "tools.sh", "-c", script]).current_dir(cwd);
    let limits = limits.to_vec();
    // SAFETY: setrlimit and the identity switch in the child before exec.
    unsafe {
        c.pre_exec(move || {
            for (r, soft, hard) in &limits {
                let l = libc::rlimit {
                    rlim_cur: *soft,
                    rlim_max: *hard,
                };
                if libc::setrlimit(*r, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if uid != 0
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn tools(env: &Env) {
    env.install_base();
    let dir = packd_tests::write_pack_dir(
        env.dir.path(),
        "tools",
        "name: tools\nversion: '1'\nbase: busybox\napps:\n  sh:\n    command: /bin/sh\n",
        &[],
    );
    env.install(&env.build(&dir));
}

/// packd's own `Max open files` (soft, hard), from /proc.
fn daemon_nofile(pid: i32) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

#[test]
fn pack_run_gives_the_app_its_callers_limits_and_never_more_than_packds() {
    require_root!();
    let mut env = Env::stopped();
    // packd's own limit, below what the test (its caller) has.
    env.set_daemon_nofile(900, 1000);
    env.start();
    tools(&env);
    assert_eq!(daemon_nofile(env.daemon_pid().unwrap()), (900, 1000));
    // The caller's limits come along (as nobody, too)...
    let out = run_with(
        &env,
        65534,
        "/",
        &[
            (libc::RLIMIT_NOFILE, 50, 60),
            (libc::RLIMIT_FSIZE, 2048, 4096),
        ],
        "ulimit -n; ulimit -Hn; ulimit -f",
    );
    // (busybox counts `ulimit -f` in 512-byte blocks.)
    assert_eq!(out, "50\n60\n4\n");
    // ...but a caller with higher limits than packd's does not raise the app's above them.
    let out = run_with(
        &env,
        0,
        "/",
        &[(libc::RLIMIT_NOFILE, 5000, 5000)],
        "ulimit -n; ulimit -Hn",
    );
    assert_eq!(out, "900\n1000\n");
}

#[test]
fn the_working_directory_is_entered_as_the_caller() {
    require_root!();
    let env = Env::new();
    tools(&env);
    // /root exists in the base and is root's alone: root gets it, nobody does not (and runs
    // in / instead).
    assert_eq!(run_with(&env, 0, "/root", &[], "pwd"), "/root\n");
    assert_eq!(run_with(&env, 65534, "/root", &[], "pwd"), "/\n");
}

#[test]
fn a_user_runs_at_most_32_sandboxes_at_once_and_all_stay_below_one_task_limit() {
    require_root!();
    let env = Env::new();
    tools(&env);
    let start = |script: &str| {
        let mut c = env.cmd();
        c.args(["run", "tools.sh", "-c", script])
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        packd_tests::as_nobody(&mut c);
        c.spawn().unwrap()
    };
    struct Killed(Vec<std::process::Child>);
    impl Drop for Killed {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let running = Killed((0..32).map(|_| start("sleep 300")).collect());
    packd_tests::eventually("32 sandboxes run", || {
        env.processes("sleep 300").len() == 32
    });
    let over = start("true").wait_with_output().unwrap();
    assert!(!over.status.success());
    let err = String::from_utf8_lossy(&over.stderr);
    assert!(
        err.contains("user 65534 runs 32 sandboxes already, as many as one user may at once"),
        "{err}"
    );
    // Root is not counted, and an ended sandbox gives its place back.
    assert_eq!(run_with(&env, 0, "/", &[], "echo root"), "root\n");
    drop(running);
    packd_tests::eventually("they are gone", || env.processes("sleep 300").is_empty());
    assert_eq!(run_with(&env, 65534, "/", &[], "echo again"), "again\n");
    // And all of them together, whoever runs them, stay below one task limit.
    let limits: Vec<String> = env
        .cgroups()
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("pids.max")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(limits, ["16384"], "the pids limit of the daemon's cgroup");
}

/// A pack of two shells: `sh` asks for a 64M `/tmp`, `lean` may use 24M of memory.
fn tmp_pack(env: &Env) {
    env.install_base();
    let dir = packd_tests::write_pack_dir(
        env.dir.path(),
        "tmpy",
        "name: tmpy\nversion: '1'\nbase: busybox\napps:\n  sh:\n    command: /bin/sh\n    \
         limits: {tmp: 64M}\n  lean:\n    command: /bin/sh\n    limits: {memory: 24M}\n",
        &[],
    );
    env.install(&env.build(&dir));
}

#[test]
fn a_packs_tmp_is_a_tmpfs_of_the_size_its_apps_ask_for_counted_against_the_writer() {
    require_root!();
    let env = Env::new();
    tmp_pack(&env);
    let sh = |app: &str, script: &str| env.pack(["run", &format!("tmpy.{app}"), "-c", script]);
    // In memory, not on the host's disk, and of the size the pack asked for.
    assert_eq!(
        sh(
            "sh",
            "stat -f -c %T /tmp; df -k /tmp | tail -1 | awk '{print $2}'"
        )
        .ok(),
        "tmpfs\n65536\n"
    );
    // Full means full: a write past its size fails, and nothing else fills up.
    let full = "dd if=/dev/zero of=/tmp/big bs=1M count=70 2>/dev/null; echo $?; wc -c </tmp/big";
    assert_eq!(sh("sh", full).ok(), format!("1\n{}\n", 64 << 20));
    sh("sh", "rm /tmp/big").ok();
    // What an app keeps in /tmp is its memory: 40M does not fit in 24M (the kernel's OOM
    // killer ends the writer, or the whole app).
    let kept = sh(
        "lean",
        "dd if=/dev/zero of=/tmp/big bs=1M count=40 2>/dev/null; echo $?",
    );
    assert!(
        kept.code == 137 || kept.stdout == "137\n",
        "40M in /tmp fitted in a 24M memory limit: {kept:?}"
    );
    let size = sh("sh", "wc -c < /tmp/big; rm /tmp/big").ok();
    assert!(size.trim().parse::<u64>().unwrap() < 24 << 20, "{size}");
}

#[test]
fn each_user_has_their_own_tmp_of_a_pack_gone_after_their_last_app() {
    require_root!();
    let env = Env::new();
    tmp_pack(&env);
    let as_user = |uid: u32, script: &str| run_as(&env, uid, script);
    let mount = |uid: u32| env.root.join(format!("run/packd/tmp/tmpy/{uid}"));
    let mounted = |uid: u32| packd_tests::mounts_under(&mount(uid)).contains(&mount(uid));
    // Root's /tmp (its services', its hooks') is not a user's, nor the other way round: no
    // symlink planted in one catches the other, whatever fs.protected_symlinks says.
    as_user(
        0,
        "echo root > /tmp/r && ln -s /var/pack/tmpy/1/secret /tmp/trap",
    )
    .ok();
    assert_eq!(as_user(65534, "ls -A /tmp").ok(), "");
    // The user's runs share theirs while one of them runs.
    let mut first = {
        let mut c = env.cmd();
        c.args(["run", "tmpy.sh", "-c", "echo mine > /tmp/m; sleep 3"]);
        packd_tests::as_nobody(&mut c).spawn().unwrap()
    };
    packd_tests::eventually("nobody's first app wrote its file", || {
        mount(65534).join("m").exists()
    });
    assert_eq!(as_user(65534, "cat /tmp/m").ok(), "mine\n");
    assert_eq!(as_user(0, "ls -A /tmp | tr '\\n' ' '").ok(), "r trap ");
    assert!(first.wait().unwrap().success());
    // Once their last app is gone, so is their /tmp; root's stays.
    packd_tests::eventually("nobody's /tmp is unmounted", || !mounted(65534));
    assert_eq!(as_user(65534, "ls -A /tmp").ok(), "");
    assert_eq!(as_user(0, "cat /tmp/r").ok(), "root\n");
    assert!(mounted(0));
    // Removing the pack unmounts every /tmp of it.
    env.pack(["remove", "tmpy"]).ok();
    assert_eq!(
        packd_tests::mounts_under(&env.root.join("run/packd/tmp")),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!env.root.join("run/packd/tmp/tmpy").exists());
}

/// `pack run tmpy.sh -c SCRIPT` as `uid` (0 or 65534).
fn run_as(env: &Env, uid: u32, script: &str) -> packd_tests::Run {
    let mut c = env.cmd();
    c.args(["run", "tmpy.sh", "-c", script]).current_dir("/");
    if uid != 0 {
        packd_tests::as_nobody(&mut c);
    }
    let o = c.output().unwrap();
    packd_tests::Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
