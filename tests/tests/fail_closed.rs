//! Confinement fails closed: a layer the kernel offers in name but not in deed refuses a strict
//! app with an error that names it, and lets a devmode app run, saying so. Two kernels are
//! staged: a cgroup2 hierarchy without the controllers the limits need (a cgroup2 mount of
//! this hybrid machine, whose controllers are bound to v1), and a sandbox helper whose
//! Landlock rulesets come back not enforced (the `landlock-refused` wrapper).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Installs a strict pack with a service, which must fail (its service cannot start) and leave
/// nothing installed; returns the error.
fn install_service_fails(env: &Env) -> String {
    let yaml = "name: svc\nversion: '0.1'\nbase: busybox\napps:\n  daemon:\n    command: bin/up\n    daemon: simple\n    limits: {memory: 48M}\n";
    let dir = write_pack_dir(
        env.dir.path(),
        "svc",
        yaml,
        &[("bin/up", "#!/bin/sh\necho up\nexec sleep 600\n")],
    );
    let file = env.build(&dir);
    let run = env.try_install(&file);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("service svc.daemon did not start"),
        "{}",
        run.stderr
    );
    assert!(
        env.processes("sleep 600").is_empty(),
        "a refused service runs"
    );
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

/// A cgroup2 mount of its own, unmounted (with what packd made in it) when dropped.
struct Cgroup2 {
    dir: PathBuf,
}

impl Cgroup2 {
    fn mount(at: &Path) -> Cgroup2 {
        fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "cgroup2", "cgroup2"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount cgroup2 at {}", at.display());
        Cgroup2 { dir: at.into() }
    }
}

impl Drop for Cgroup2 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn limits_no_cgroup_controller_enforces_refuse_strict_apps_not_devmode_ones() {
    require_root!();
    let mut env = Env::stopped();
    let cg = Cgroup2::mount(&env.dir.path().join("cgroup2"));
    let offered = fs::read_to_string(cg.dir.join("cgroup.controllers")).unwrap();
    assert!(
        !offered.split_whitespace().any(|c| c == "pids"),
        "this test needs a cgroup2 hierarchy without the pids controller (a hybrid-mode \
         machine, as CI's is); this one offers: {offered}"
    );
    env.set_daemon_env(
        "PACKD_TEST_CGROUP_LAYOUT",
        &format!("unified:{}", cg.dir.display()),
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
        &format!("the cgroup2 hierarchy at {}", cg.dir.display()),
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
    let parent = fs::read_to_string(env.root.join("run/packd/cgroup-parent")).unwrap();
    drop(env);
    // What this daemon made in the hierarchy went with its root (the Env's cleanup).
    let mine = cg.dir.join(parent.trim());
    assert!(!mine.exists(), "{} is left over", mine.display());
}

#[test]
fn a_landlock_ruleset_the_kernel_does_not_enforce_refuses_strict_apps() {
    require_root!();
    let mut env = Env::stopped();
    env.set_confine_helper(Path::new(env!("CARGO_BIN_EXE_landlock-refused")));
    env.start();
    install_tools(&env);
    // The daemon's probe sees Landlock...
    assert!(
        layer(&env, "tools.sh", "landlock").starts_with("active: kernel ABI"),
        "{}",
        layer(&env, "tools.sh", "landlock")
    );
    // ...but the sandbox's ruleset is not enforced: the launch is refused, with one error.
    let run = env.pack(["run", "tools.sh", "-c", "echo ran"]);
    assert_eq!(run.code, 125, "{run:?}");
    assert!(!run.stdout.contains("ran"), "{run:?}");
    assert!(
        run.stderr
            .contains("the kernel offers Landlock but enforced this ruleset not at all"),
        "{}",
        run.stderr
    );
    // A strict service likewise.
    let err = install_service_fails(&env);
    assert!(err.contains("enforced this ruleset not at all"), "{err}");
    // `pack debug sandbox` now says so.
    let state = layer(&env, "tools.sh", "landlock");
    assert!(
        state.starts_with("refused: strict launches fail"),
        "{state}"
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
