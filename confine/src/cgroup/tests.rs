use std::fs;
use std::process::Command;

use super::*;

const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 35 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 35 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 35 0:34 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 35 0:35 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 35 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
42 35 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn layouts_are_recognised() {
    let hybrid = parse_layout(HYBRID).unwrap();
    assert_eq!(hybrid.v2(), Some(Path::new("/sys/fs/cgroup/unified")));
    assert_eq!(
        hybrid.v1("memory"),
        Some(Path::new("/sys/fs/cgroup/memory"))
    );
    assert_eq!(hybrid.v1("systemd"), None);
    assert_eq!(hybrid.roots().len(), 6);
    assert_eq!(hybrid.name(), "hybrid (v1 controllers + v2)");

    let unified =
        parse_layout("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n").unwrap();
    assert_eq!(
        unified,
        Layout::Unified {
            root: "/sys/fs/cgroup".into()
        }
    );
    let combined = "36 35 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
    let legacy = parse_layout(combined).unwrap();
    assert_eq!(
        legacy.v1("cpu"),
        Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
    );
    assert_eq!(legacy.v2(), None);
    // A bind of a sub-cgroup (container view) is not a hierarchy root.
    let sub = "30 23 0:26 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert!(parse_layout(sub).is_err());
    assert!(parse_layout("").is_err());
}

#[test]
fn v1_limits_are_written_to_the_controllers() {
    let dir = tempfile::tempdir().unwrap();
    let mut v1 = std::collections::BTreeMap::new();
    for c in ["memory", "pids", "cpu", "devices", "freezer"] {
        v1.insert(c.to_string(), dir.path().join(c));
    }
    let layout = Layout::Legacy { v1 };
    let limits = Limits {
        memory: Some(64 << 20),
        tasks: Some(100),
        cpu_weight: Some(50),
        devices: vec![DeviceRule::char(1, Some(3))],
    };
    let cg = Cgroup::create(&layout, Path::new("packd/t/app.1"), &limits).unwrap();
    let read = |c: &str, f: &str| {
        fs::read_to_string(dir.path().join(c).join("packd/t/app.1").join(f)).unwrap()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", "pids.max"), "100");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    // A plain file system keeps the last write: the allow rule after the deny.
    assert_eq!(read("devices", "devices.allow"), "c 1:3 rwm");
    assert_eq!(read("devices", "devices.deny"), "a");
    assert_eq!(cg.dirs().len(), 5);
}

#[test]
fn device_rules_render_like_the_kernel_expects() {
    assert_eq!(DeviceRule::char(136, None).v1_line(), "c 136:* rwm");
    let any_block = DeviceRule {
        kind: 'b',
        major: None,
        minor: None,
        access: "r".into(),
    };
    assert_eq!(any_block.v1_line(), "b *:* r");
}

/// Real cgroups on this machine; needs root (and fails rather than skips under CI=true).
fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root under CI=true"
    );
    eprintln!("skipping {test}: needs root");
    false
}

/// A cgroup under a parent unique to this test, removed (with the parent) on drop.
struct Scratch {
    cg: Cgroup,
    parent: Cgroup,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.cg.kill();
        let _ = self.cg.remove(Duration::from_secs(2));
        let _ = self.parent.remove(Duration::from_secs(1));
        let top = Cgroup::at(&Layout::detect().unwrap(), Path::new("packd-unit-tests"));
        let _ = top.remove(Duration::ZERO);
    }
}

fn scratch(name: &str, limits: &Limits) -> Scratch {
    let layout = Layout::detect().unwrap();
    let parent = format!("packd-unit-tests/{name}-{}", std::process::id());
    let cg = Cgroup::create(&layout, &Path::new(&parent).join("app"), limits).unwrap();
    Scratch {
        cg,
        parent: Cgroup::at(&layout, Path::new(&parent)),
    }
}

/// Runs `sh -c script` inside the cgroup (joined before exec) and returns its exit status.
fn run_in(cg: &Cgroup, script: &str) -> std::process::ExitStatus {
    use std::os::unix::process::CommandExt;
    let dirs = cg.dirs();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    // SAFETY: only writes to cgroup files between fork and exec (the test is the only user).
    unsafe {
        cmd.pre_exec(move || join(&dirs));
    }
    cmd.status().unwrap()
}

#[test]
fn real_cgroup_limits_tasks_and_devices_then_goes_away() {
    if !have_root("real_cgroup_limits_tasks_and_devices_then_goes_away") {
        return;
    }
    let limits = Limits {
        memory: Some(32 << 20),
        tasks: Some(8),
        cpu_weight: Some(100),
        devices: vec![DeviceRule::char(1, Some(3))],
    };
    let s = scratch("limits", &limits);
    // /dev/null is allowed, /dev/zero is not (v1 devices controller and the v2 program).
    assert!(run_in(&s.cg, "echo x > /dev/null").success());
    assert!(!run_in(&s.cg, "head -c1 /dev/zero >/dev/null 2>&1").success());
    // Eight tasks at most: forking many more fails inside (the shell may give up on it).
    run_in(
        &s.cg,
        "i=0; while [ $i -lt 20 ]; do sleep 1 & i=$((i+1)); done 2>/dev/null; wait",
    );
    let pids_events =
        s.cg.v1
            .iter()
            .find(|(c, _)| c == "pids")
            .map(|(_, d)| fs::read_to_string(d.join("pids.events")).unwrap())
            .or_else(|| {
                s.cg.v2
                    .as_ref()
                    .and_then(|d| fs::read_to_string(d.join("pids.events")).ok())
            })
            .unwrap();
    assert!(
        !pids_events.contains("max 0"),
        "the limit was never hit: {pids_events}"
    );
    let dirs = s.cg.dirs();
    drop(s);
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn kill_empties_a_busy_cgroup() {
    if !have_root("kill_empties_a_busy_cgroup") {
        return;
    }
    let s = scratch("kill", &Limits::default());
    use std::os::unix::process::CommandExt;
    let dirs = s.cg.dirs();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "sleep 60 & sleep 60 & wait"]);
    // SAFETY: as above.
    unsafe {
        cmd.pre_exec(move || join(&dirs));
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.cg.pids().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.cg.pids().len(), 3);
    s.cg.kill();
    let status = child.wait().unwrap();
    assert!(!status.success());
    s.cg.remove(Duration::from_secs(2)).unwrap();
}

/// A v2 tree on a plain file system: each directory's `cgroup.controllers` says what it offers
/// (as the kernel would after its parent's `cgroup.subtree_control`).
fn v2_tree(offers: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, offered) in offers {
        let d = dir.path().join(rel);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cgroup.controllers"), offered).unwrap();
    }
    dir
}

#[test]
fn v2_limits_need_their_controllers_and_say_where_delegation_stops() {
    // The root offers everything, but packd/t was given only memory.
    let tree = v2_tree(&[
        ("", "cpu memory pids"),
        ("packd", "cpu memory pids"),
        ("packd/t", "memory"),
        ("packd/t/app.1", "memory"),
    ]);
    let layout = Layout::Unified {
        root: tree.path().to_path_buf(),
    };
    let limits = Limits {
        memory: Some(64 << 20),
        tasks: Some(100),
        ..Limits::default()
    };
    let err = Cgroup::create(&layout, Path::new("packd/t/app.1"), &limits).unwrap_err();
    match &err {
        CgroupError::Missing {
            controllers,
            stops_at,
            offered,
            at_root,
            enable_error,
        } => {
            assert!(!at_root);
            assert_eq!(enable_error, &None);
            assert_eq!(controllers, &["pids"]);
            assert_eq!(
                stops_at.as_deref(),
                Some(tree.path().join("packd/t").as_path())
            );
            assert_eq!(offered, &["memory"]);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("need the cgroup pids controller"), "{msg}");
    assert!(
        msg.contains(&format!(
            "echo +pids > {}/cgroup.subtree_control",
            tree.path().join("packd").display()
        )),
        "{msg}"
    );
    // packd enabled what it could in its own directories, never in the root.
    assert!(tree.path().join("packd/cgroup.subtree_control").exists());
    assert!(!tree.path().join("cgroup.subtree_control").exists());
    // Nothing was left half made: the limits were never written.
    assert!(!tree.path().join("packd/t/app.1/memory.max").exists());
}

#[test]
fn the_kernels_refusal_to_enable_a_controller_is_reported() {
    let tree = v2_tree(&[
        ("", "cpu memory pids"),
        ("packd", "cpu memory pids"),
        ("packd/t", "cpu memory"),
    ]);
    // A subtree_control that cannot be written (here: a directory in its place).
    fs::create_dir_all(tree.path().join("packd/cgroup.subtree_control")).unwrap();
    let layout = Layout::Unified {
        root: tree.path().to_path_buf(),
    };
    let limits = Limits {
        tasks: Some(10),
        ..Limits::default()
    };
    let err = Cgroup::create(&layout, Path::new("packd/t"), &limits).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "packd could not enable it in {}/cgroup.subtree_control: +pids:",
            tree.path().join("packd").display()
        )),
        "{msg}"
    );
}

#[test]
fn a_spare_made_for_other_limits_is_checked_before_it_takes_new_ones() {
    // pids reaches packd/t (a spare made with a tasks limit), memory does not.
    let tree = v2_tree(&[("", "memory pids"), ("packd", "pids"), ("packd/t", "pids")]);
    let layout = Layout::Unified {
        root: tree.path().to_path_buf(),
    };
    let tasks = Limits {
        tasks: Some(10),
        ..Limits::default()
    };
    Cgroup::create(&layout, Path::new("packd/t"), &tasks).unwrap();
    check_controllers(&layout, Path::new("packd/t"), &tasks).unwrap();
    let with_memory = Limits {
        memory: Some(1 << 20),
        ..tasks
    };
    let err = check_controllers(&layout, Path::new("packd/t"), &with_memory).unwrap_err();
    assert!(
        matches!(&err, CgroupError::Missing { controllers, .. } if controllers == &["memory"]),
        "{err:?}"
    );
}

#[test]
fn a_v2_root_without_the_controllers_is_named_as_such() {
    // Hybrid mode's cgroup2 mount: the controllers are bound to v1.
    let tree = v2_tree(&[("", "hugetlb")]);
    let layout = Layout::Unified {
        root: tree.path().to_path_buf(),
    };
    let limits = Limits {
        memory: Some(64 << 20),
        tasks: Some(100),
        ..Limits::default()
    };
    let err = Cgroup::create(&layout, Path::new("packd/t/app.1"), &limits).unwrap_err();
    assert!(
        matches!(err, CgroupError::Missing { at_root: true, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("need the cgroup memory, pids controllers")
            && msg.contains("offers: none of memory, pids, cpu")
            && msg.contains("bound to a cgroup v1 hierarchy"),
        "{msg}"
    );
}

#[test]
fn v2_limits_are_written_when_their_controllers_are_there() {
    let tree = v2_tree(&[
        ("", "cpu memory pids"),
        ("packd", "cpu memory pids"),
        ("packd/t", "cpu memory pids"),
        ("packd/t/app.1", "cpu memory pids"),
    ]);
    let layout = Layout::Unified {
        root: tree.path().to_path_buf(),
    };
    let limits = Limits {
        memory: Some(1 << 20),
        tasks: Some(7),
        cpu_weight: Some(50),
        devices: Vec::new(),
    };
    Cgroup::create(&layout, Path::new("packd/t/app.1"), &limits).unwrap();
    let read = |f: &str| fs::read_to_string(tree.path().join("packd/t/app.1").join(f)).unwrap();
    assert_eq!(read("memory.max"), "1048576");
    assert_eq!(read("pids.max"), "7");
    assert_eq!(read("cpu.weight"), "50");
}

#[test]
fn a_limit_no_hierarchy_carries_is_refused() {
    // v1 only, without a pids hierarchy.
    let dir = tempfile::tempdir().unwrap();
    let mut v1 = std::collections::BTreeMap::new();
    v1.insert("memory".to_string(), dir.path().join("memory"));
    let layout = Layout::Legacy { v1 };
    let limits = Limits {
        tasks: Some(10),
        ..Limits::default()
    };
    let err = Cgroup::create(&layout, Path::new("packd/t/a"), &limits).unwrap_err();
    assert!(
        err.to_string()
            .contains("mounts no cgroup hierarchy with it"),
        "{err}"
    );
    // Nothing asked for, nothing needed.
    Cgroup::create(&layout, Path::new("packd/t/b"), &Limits::default()).unwrap();
}
