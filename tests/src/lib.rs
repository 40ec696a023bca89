//! The end-to-end harness: a real `packd` on a temporary root per test, driven through the real
//! `pack` binary as a user would.
//!
//! Every [`Env`] cleans up on drop, even when the test failed: it stops its daemon (by pid),
//! unmounts everything under its root (loop devices clear themselves), and deletes the root.
//! Tests need root. Outside CI they skip with a message; under `CI=true` they fail instead.

// `Env::new()` starts a daemon: too much for a `Default`.
#![allow(clippy::new_without_default)]

mod mounts;
pub mod probe;
pub mod proxy;
mod run;
pub mod store;
pub mod systemd;
mod util;

pub use mounts::mounts_under;
use mounts::unmount_under;
pub use run::Run;
pub use util::{cpu_ticks, eventually, within};

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Returns false (after saying why) when the test cannot run here; panics under CI.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root, and CI=true forbids skipping: run the suite as root (make test)"
    );
    eprintln!("SKIPPED {test}: needs root (it runs for real in CI)");
    false
}

/// Skips the calling test unless it can run (see [`have_root`]).
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::have_root(module_path!()) {
            return;
        }
    };
}

/// The directory holding the workspace's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-xxxx → target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    for bin in ["pack", "pack-build", "packd", "pack-confine", "pack-store"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (cargo build --workspace --bins; make test does)",
            dir.join(bin).display()
        );
    }
    dir
}

pub fn pack_bin() -> PathBuf {
    bin_dir().join("pack")
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Where built fixtures are cached for the whole test run.
fn cache_dir() -> PathBuf {
    let dir = bin_dir().join("e2e-cache");
    fs::create_dir_all(&dir).expect("cache dir");
    dir
}

/// The busybox base, built once per test run with `pack base build busybox` (which fetches
/// busybox-static with apt).
pub fn busybox_base() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let out = cache_dir().join("busybox.pack");
        if !out.exists() {
            let tmp = cache_dir().join(format!("busybox.pack.{}", std::process::id()));
            let o = Command::new(pack_bin())
                .args(["base", "build", "busybox"])
                .arg(&tmp)
                .output()
                .expect("run pack base build");
            assert!(
                o.status.success(),
                "pack base build busybox failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            fs::rename(&tmp, &out).expect("cache the base");
        }
        out
    })
    .clone()
}

/// One isolated packd: its own root, socket and daemon process.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Child>,
    extra_env: BTreeMap<String, String>,
    /// The sandbox helper the daemon is given (`pack-confine` unless a test changes it).
    confine_helper: PathBuf,
    /// The fake systemd services run under, with [`Supervisor::Systemd`].
    systemd: Option<systemd::FakeSystemd>,
    /// Where the daemon's standard error goes (its log file unless a test says otherwise).
    stderr: DaemonStderr,
    /// The daemon's open-files limit (soft, hard), when a test sets one.
    nofile: Option<(u64, u64)>,
}

/// Where a daemon's standard error (its log) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonStderr {
    /// `packd.log` in the test's directory (what [`Env::log`] reads).
    Log,
    /// This file, opened for appending (`/dev/full`, a file on a full disk).
    File(PathBuf),
    /// A pipe whose reader is already gone.
    DeadPipe,
}

/// Who supervises the daemon's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// packd's own monitors.
    Native,
    /// Transient units of a fake systemd on a private D-Bus (`--supervisor systemd`).
    Systemd,
}

impl Env {
    /// A new root with a running daemon.
    pub fn new() -> Env {
        let mut env = Env::stopped();
        env.start();
        env
    }

    /// A new root whose services run under `supervisor`, daemon not started.
    pub fn stopped_under(supervisor: Supervisor) -> Env {
        let mut env = Env::stopped();
        if supervisor == Supervisor::Systemd {
            env.systemd = Some(systemd::FakeSystemd::start(env.dir.path()));
        }
        env
    }

    /// A new root, daemon not started.
    pub fn stopped() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("packd-e2e-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("root dir");
        let socket = root.join("run/packd.socket");
        Env {
            dir,
            root,
            socket,
            daemon: None,
            extra_env: BTreeMap::new(),
            confine_helper: bin_dir().join("pack-confine"),
            systemd: None,
            stderr: DaemonStderr::Log,
            nofile: None,
        }
    }

    /// An environment variable for the daemon's next start (e.g. a crash point).
    pub fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.extra_env.insert(key.into(), value.into());
    }

    /// The sandbox helper for the daemon's next start (e.g. a wrapper around `pack-confine`).
    pub fn set_confine_helper(&mut self, helper: &Path) {
        self.confine_helper = helper.to_path_buf();
    }

    /// The daemon's open-files limit from its next start.
    pub fn set_daemon_nofile(&mut self, soft: u64, hard: u64) {
        self.nofile = Some((soft, hard));
    }

    /// Where the daemon's standard error goes from its next start.
    pub fn set_daemon_stderr(&mut self, to: DaemonStderr) {
        self.stderr = to;
    }

    pub fn clear_daemon_env(&mut self) {
        self.extra_env.clear();
    }

    pub fn start(&mut self) {
        self.start_binary(&bin_dir().join("packd"));
    }

    /// Starts the daemon from `packd` (e.g. a copy standing for an upgraded binary).
    pub fn start_binary(&mut self, packd: &Path) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("packd.log"))
            .expect("log file");
        let stderr: Stdio = match &self.stderr {
            DaemonStderr::Log => log.try_clone().expect("log").into(),
            DaemonStderr::File(path) => fs::OpenOptions::new()
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .into(),
            DaemonStderr::DeadPipe => {
                let (r, w) = nix::unistd::pipe().expect("pipe");
                drop(r);
                std::fs::File::from(w).into()
            }
        };
        let mut cmd = Command::new(packd);
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(systemd) = &self.systemd {
            cmd.args(["--supervisor", "systemd", "--systemd-bus", &systemd.address]);
        }
        let child = cmd
            .arg("--confine-helper")
            .arg(&self.confine_helper)
            .arg("--pack-binary")
            .arg(bin_dir().join("pack"))
            .arg("--root")
            .arg(&self.root)
            .envs(&self.extra_env)
            .env("PACKD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("start packd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("packd exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "packd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the fake systemd wrote (its journal), with [`Supervisor::Systemd`].
    pub fn systemd_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("systemd.log")).unwrap_or_default()
    }

    /// The daemon's pid, while it runs.
    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    /// The processes of this root's sandboxes (and monitors) whose command line contains
    /// `needle`: found by their cgroup, so other tests' processes never count.
    pub fn processes(&self, needle: &str) -> Vec<i32> {
        let Ok(parent) = fs::read_to_string(self.root.join("run/packd/cgroup-parent")) else {
            return Vec::new();
        };
        let parent = format!("/{}/", parent.trim());
        let mut out: Vec<i32> = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(needle)
                    && cgroup.contains(&parent)
            })
            .collect();
        out.sort();
        out
    }

    /// Stops the daemon with SIGTERM and waits for it.
    /// Stops the daemon with SIGTERM; how it exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(mut child) = self.daemon.take() {
            signal(&child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().ok().flatten() {
                    return Some(status);
                }
                if Instant::now() > deadline {
                    signal(&child, libc::SIGKILL);
                    let _ = child.wait();
                    panic!("packd did not stop on SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        None
    }

    /// Whether the daemon is still running (it has not exited, or crashed).
    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kills the daemon with SIGKILL, as a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Waits until the daemon exits on its own (e.g. at a crash point); returns whether it did.
    pub fn wait_daemon_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.daemon.as_mut() {
            if child.try_wait().ok().flatten().is_some() {
                self.daemon = None;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Unmounts everything under the root, as a reboot would.
    pub fn unmount_all(&self) {
        unmount_under(&self.root);
    }

    /// As a reboot: the daemon must be stopped; every process of this root goes (services
    /// included), every mount, and `run/` (a tmpfs on a real system) is emptied.
    pub fn reboot(&self) {
        assert!(self.daemon.is_none(), "stop the daemon before a reboot");
        self.remove_cgroups();
        unmount_under(&self.root);
        let run = self.root.join("run");
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).expect("run dir");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("packd.log")).unwrap_or_default()
    }

    /// A `pack` command talking to this daemon (via PACKD_SOCKET).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(pack_bin());
        c.env("PACKD_SOCKET", &self.socket)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub fn pack<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::from(self.cmd().args(args).output().expect("run pack"))
    }

    /// Installs the busybox base.
    pub fn install_base(&self) {
        self.pack([
            OsStr::new("install"),
            busybox_base().as_os_str(),
            OsStr::new("--dangerous"),
        ])
        .ok();
    }

    /// Packs `dir` into the test's directory and returns the file.
    pub fn build(&self, dir: &Path) -> PathBuf {
        let out = self.dir.path().join(format!(
            "{}.pack",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("pkg")
        ));
        self.pack([
            OsStr::new("pack"),
            dir.as_os_str(),
            OsStr::new("--output"),
            out.as_os_str(),
        ])
        .ok();
        out
    }

    /// Installs `file` with --dangerous, asserting success.
    pub fn install(&self, file: &Path) -> String {
        self.try_install(file).ok()
    }

    /// Installs `file` with --dangerous, whatever happens.
    pub fn try_install(&self, file: &Path) -> Run {
        self.pack([
            OsStr::new("install"),
            file.as_os_str(),
            OsStr::new("--dangerous"),
        ])
    }

    /// The mount points under this root.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.root)
    }

    /// The files under this root that loop devices are attached to (one per mounted
    /// revision, when nothing leaks).
    pub fn loop_backing_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir("/sys/block") else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path().join("loop/backing_file")).ok())
            .map(|f| PathBuf::from(f.trim()))
            .filter(|f| f.starts_with(&self.root))
            .collect();
        out.sort();
        out
    }

    /// A listing of everything under the root (path, type, mode, size, link target), to show
    /// that a refused request changed nothing.
    pub fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        snapshot_into(&self.root, &self.root, &mut out);
        out.sort();
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Gracefully if possible (the daemon removes its cgroups), by force otherwise.
        if let Some(mut child) = self.daemon.take() {
            signal(&child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        self.remove_cgroups();
        // The monitors have seen their sandboxes go: systemd (the fake) may go too.
        drop(self.systemd.take());
        unmount_under(&self.root);
        // A crash anywhere in packd or its helpers fails the test that saw it (unless the
        // test is failing already).
        let log = self.log();
        if !std::thread::panicking()
            && (log.contains("panicked at") || log.contains("fatal runtime error"))
        {
            panic!("packd or its sandbox helper crashed:\n{log}");
        }
    }
}

impl Env {
    /// Removes the cgroups this root's daemons created (after a kill they are left over).
    pub fn remove_cgroups(&self) {
        let Ok(parent) = fs::read_to_string(self.root.join("run/packd/cgroup-parent")) else {
            return;
        };
        if let Ok(layout) = confine::cgroup::Layout::detect() {
            let _ = confine::cgroup::remove_tree(&layout, Path::new(parent.trim()));
        }
    }

    /// The cgroup directories of this root's daemon that exist right now.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let Ok(parent) = fs::read_to_string(self.root.join("run/packd/cgroup-parent")) else {
            return Vec::new();
        };
        let Ok(layout) = confine::cgroup::Layout::detect() else {
            return Vec::new();
        };
        layout
            .roots()
            .iter()
            .map(|r| r.join(parent.trim()))
            .filter(|d| d.exists())
            .collect()
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn snapshot_into(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        if md.file_type().is_symlink() {
            let target = fs::read_link(&p).unwrap_or_default();
            out.push(format!("{rel} -> {}", target.display()));
        } else if md.is_dir() {
            out.push(format!("{rel}/ {:o}", md.permissions().mode()));
            snapshot_into(root, &p, out);
        } else {
            out.push(format!(
                "{rel} {:o} {} {}",
                md.permissions().mode(),
                md.len(),
                md.mtime()
            ));
        }
    }
}

/// Writes a package source directory: `meta/pack.yaml` plus executable files.
pub fn write_pack_dir(parent: &Path, name: &str, yaml: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir_all(dir.join("meta")).expect("meta dir");
    fs::write(dir.join("meta/pack.yaml"), yaml).expect("pack.yaml");
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
        fs::write(&p, content).expect("file");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// Makes `cmd` run as nobody (uid and gid 65534, no supplementary groups).
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setgroups/setgid/setuid in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
