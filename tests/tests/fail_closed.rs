//! Confinement fails closed: a layer the kernel offers in name but not in deed refuses a strict
//! app with an error that names it, and lets a devmode app run, saying so. Two kernels are
//! staged: a cgroup2 hierarchy whose cgroup handed to packd offers none of the controllers the
//! limits need, and a sandbox helper whose Landlock rulesets come back not enforced (the
//! `landlock-refused` wrapper).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use packd_tests::{Env, require_root, write_pack_dir};

fn tools_yaml(name: &str, confinement: &str) -> String {
    format!(
        "name: {name}\nversion: '0.1'\nbase: busybox\nconfinement: {confinement}\napps:\n  sh:\n    command: /bin/sh\n    limits: {{memory: 48M, tasks: 64}}"
    )
}

fn install_tools(env: &Env) {
    env.install_base();
    for (name, confinement) in [("tools", "strict"), ("devtools", "devmode")] {
        let dir = write_pack_dir(env.dir.path(), name, &tools_yaml(name, confinement), &[]);
        env.install(&env.build(&dir));
    }
}

/// Pids of every process on the machine whose command line holds `needle`, in a cgroup or not.
fn processes_anywhere(needle: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Installs a strict pack with a service, which must fail (its service cannot start) and leave
/// nothing installed and nothing running; returns the error.
fn install_service_fails(env: &Env) -> String {
    // A name no other test's process has: a service that ran anyway would show it.
    let token: String = env
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let script = format!("bin/up-{token}");
    let yaml = format!(
        "name: svc\nversion: '0.1'\nbase: busybox\napps:\n  daemon:\n    command: {script}\n    daemon: simple\n    limits: {{memory: 48M}}\n"
    );
    let dir = write_pack_dir(
        env.dir.path(),
        "svc",
        &yaml,
        &[(
            &script,
            "#!/bin/sh\necho up\nwhile true; do sleep 1; done\n",
        )],
    );
    let file = env.build(&dir);
    let run = env.try_install(&file);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("service svc.daemon did not start"),
        "{}",
        run.stderr
    );
    let ran = processes_anywhere(&script);
    assert!(ran.is_empty(), "a refused service runs: {ran:?}");
    let list = env.pack(["list"]).ok();
    assert!(!list.contains("svc"), "the failed install left svc: {list}");
    run.stderr
}

fn layer(env: &Env, app: &str, name: &str) -> String {
    let report: serde_json::Value =
        serde_json::from_str(&env.pack(["debug", "sandbox", app]).ok()).unwrap();
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == name)
        .unwrap_or_else(|| panic!("no {name} layer: {report}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A cgroup2 hierarchy of the test's own (mounted in a directory of its own) and in it a
/// cgroup, `root`, whose `cgroup.subtree_control` is empty: whatever the machine has, nothing
/// below `root` is offered a controller. On drop: what is in it is killed, its cgroups are
/// removed (deepest first) and the hierarchy unmounted.
struct BareCgroup2 {
    mnt: tempfile::TempDir,
    root: PathBuf,
}

impl BareCgroup2 {
    fn new() -> BareCgroup2 {
        let mnt = tempfile::Builder::new()
            .prefix("packd-e2e-cgroup2-")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args(["-t", "cgroup2", "cgroup2"])
            .arg(mnt.path())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot mount cgroup2 at {}",
            mnt.path().display()
        );
        let name = mnt.path().file_name().unwrap().to_owned();
        let root = mnt.path().join(name);
        let cg = BareCgroup2 { mnt, root };
        fs::create_dir(&cg.root).unwrap();
        let enabled = fs::read_to_string(cg.root.join("cgroup.subtree_control")).unwrap();
        assert_eq!(enabled.trim(), "", "a new cgroup delegates nothing");
        cg
    }
}

impl Drop for BareCgroup2 {
    fn drop(&mut self) {
        if self.root.exists() {
            let _ = fs::write(self.root.join("cgroup.kill"), "1");
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut dirs = cgroup_dirs(&self.root);
            // Deepest first.
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                while fs::remove_dir(&d).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let st = Command::new("umount").arg(self.mnt.path()).status();
        if !std::thread::panicking() {
            assert!(
                st.is_ok_and(|s| s.success()),
                "cannot unmount the test's cgroup2"
            );
        }
    }
}

/// `dir` and every cgroup below it.
fn cgroup_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(cgroup_dirs(&e.path()));
        }
    }
    out
}

#[test]
fn limits_no_cgroup_controller_enforces_refuse_strict_apps_not_devmode_ones() {
    require_root!();
    let cg = BareCgroup2::new();
    let mut env = Env::stopped();
    env.set_daemon_env(
        "PACKD_TEST_CGROUP_LAYOUT",
        &format!("unified:{}", cg.root.display()),
    );
    env.start();
    install_tools(&env);

    // A strict app: refused before anything runs, naming the controllers and the hierarchy.
    let run = env.pack(["run", "tools.sh", "-c", "echo ran"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("ran"), "{run:?}");
    for part in [
        "cannot run tools.sh",
        "its limits need the cgroup memory, pids controllers",
        &cg.root.display().to_string(),
        "cgroup.subtree_control",
    ] {
        assert!(
            run.stderr.contains(part),
            "missing {part:?} in {}",
            run.stderr
        );
    }
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one error: {}",
        run.stderr
    );
    // A strict service the same: it does not start, and says why.
    let err = install_service_fails(&env);
    assert!(
        err.contains("need the cgroup memory, pids controllers"),
        "{err}"
    );

    // devmode runs without the limits that cannot be had, and says it is devmode.
    let dev = env.pack(["run", "devtools.sh", "-c", "echo ran"]);
    assert_eq!(dev.stdout, "ran\n", "{dev:?}");
    assert!(dev.stderr.contains("devmode"), "{}", dev.stderr);
    assert!(
        env.log()
            .contains("devmode: running without the cgroup limits this system cannot enforce"),
        "{}",
        env.log()
    );
    // Nothing of this daemon runs in the hierarchy once it stopped (what it leaves for
    // services that outlive it is empty here; the guard removes it).
    let parent = fs::read_to_string(env.root.join("run/packd/cgroup-parent")).unwrap();
    env.stop();
    let mine = cg.root.join(parent.trim());
    let left: Vec<String> = cgroup_dirs(&mine)
        .iter()
        .flat_map(|d| {
            fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        left.is_empty(),
        "processes left in {}: {left:?}",
        mine.display()
    );
}

#[test]
fn a_landlock_ruleset_the_kernel_does_not_enforce_refuses_strict_apps() {
    require_root!();
    let mut env = Env::stopped();
    env.set_confine_helper(Path::new(env!("CARGO_BIN_EXE_landlock-refused")));
    env.start();
    install_tools(&env);
    // The daemon's probe sees Landlock...
    let state = layer(&env, "tools.sh", "landlock");
    assert!(state.starts_with("active: kernel ABI"), "{state}");
    // ...but a sandbox's ruleset is not enforced: a strict service does not start...
    let err = install_service_fails(&env);
    assert!(err.contains("enforced this ruleset not at all"), "{err}");
    // ...`pack debug sandbox` now says so...
    let state = layer(&env, "tools.sh", "landlock");
    assert!(
        state.starts_with("refused: strict launches fail"),
        "{state}"
    );
    // ...and a strict app is refused, with one error.
    let run = env.pack(["run", "tools.sh", "-c", "echo ran"]);
    assert_eq!(run.code, 125, "{run:?}");
    assert!(!run.stdout.contains("ran"), "{run:?}");
    assert!(
        run.stderr
            .contains("the kernel offers Landlock but enforced this ruleset not at all"),
        "{}",
        run.stderr
    );
    // devmode runs (without Landlock), and says so.
    let dev = env.pack(["run", "devtools.sh", "-c", "echo ran"]);
    assert_eq!(dev.stdout, "ran\n", "{dev:?}");
    assert!(dev.stderr.contains("devmode"), "{}", dev.stderr);
    assert_eq!(
        layer(&env, "devtools.sh", "landlock"),
        "not applied (devmode)"
    );
}
