//! The confinement around every app, seen from the outside: which layers are active, how
//! strict and devmode behave, users, cgroups, profiles. (The probe in escapes.rs tries the
//! escapes from the inside.)

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use packd_tests::{Env, Run, require_root, write_pack_dir};

fn tools_yaml(confinement: &str) -> String {
    format!(
        "name: tools\nversion: '0.1'\nbase: busybox\nconfinement: {confinement}\napps:\n  sh:\n    command: /bin/sh\n    limits: {{memory: 48M, tasks: 64}}\n"
    )
}

fn env_with_tools(confinement: &str) -> Env {
    let env = Env::new();
    env.install_base();
    let dir = write_pack_dir(env.dir.path(), "tools", &tools_yaml(confinement), &[]);
    env.install(&env.build(&dir));
    env
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Runs `pack ARGS` as uid/gid 65534 with supplementary groups 65534 and 100.
fn as_nobody(env: &Env, args: &[&str]) -> Run {
    let mut c = env.cmd();
    c.args(args).current_dir("/");
    // SAFETY: setgroups/setgid/setuid in the child before exec.
    unsafe {
        c.pre_exec(|| {
            let groups = [65534 as libc::gid_t, 100];
            if libc::setgroups(2, groups.as_ptr()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn debug_sandbox_reports_every_layer() {
    require_root!();
    let env = env_with_tools("strict");
    let report = json(&env.pack(["debug", "sandbox", "tools.sh"]).ok());
    assert_eq!(report["app"], "tools.sh");
    assert_eq!(report["confinement"], "strict");
    let layers: Vec<(String, String)> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["layer"].as_str().unwrap().into(),
                l["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    let state = |name: &str| layers.iter().find(|(l, _)| l == name).unwrap().1.clone();
    for active in [
        "namespaces",
        "cgroups",
        "capabilities",
        "landlock",
        "seccomp",
    ] {
        assert!(
            state(active).starts_with("active"),
            "{active}: {}",
            state(active)
        );
    }
    // This kernel has no AppArmor: the report says so instead of pretending.
    let aa = state("apparmor");
    assert!(
        aa.starts_with("active") || aa == "unavailable: this kernel has no AppArmor",
        "{aa}"
    );
    let spec = &report["spec"];
    assert_eq!(spec["apparmor"], "pack.tools.sh");
    assert!(
        spec["landlock"]["read"]
            .as_array()
            .unwrap()
            .contains(&"/".into())
    );
    let profile = spec["seccomp"]["profile"].as_str().unwrap();
    assert!(Path::new(profile).is_file(), "{profile}");
    assert!(!spec["cgroup"]["dirs"].as_array().unwrap().is_empty());
    assert_eq!(spec["capabilities"], serde_json::json!([]));
    // A launch records what Landlock enforced: everything asked, on this kernel (ABI >= 6).
    env.pack(["run", "tools.sh", "-c", "true"]).ok();
    let log = env.log();
    assert!(log.contains("landlock: Some(Full)"), "{log}");
}

#[test]
fn every_generated_apparmor_profile_passes_the_parser() {
    require_root!();
    let env = env_with_tools("strict");
    let dir = write_pack_dir(
        env.dir.path(),
        "multi",
        "name: multi\nversion: '1'\nbase: busybox\nconfinement: devmode\napps:\n  a-1:\n    command: /bin/true\n  b:\n    command: /bin/true\n",
        &[],
    );
    env.install(&env.build(&dir));
    let mut profiles = Vec::new();
    for pack in fs::read_dir(env.root.join("var/lib/packd/profiles")).unwrap() {
        // Beside the packs' directories: the system key.
        let pack = pack.unwrap().path();
        if !pack.is_dir() {
            continue;
        }
        for rev in fs::read_dir(pack).unwrap() {
            for f in fs::read_dir(rev.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.extension() == Some(OsStr::new("apparmor")) {
                    profiles.push(p);
                }
            }
        }
    }
    assert_eq!(profiles.len(), 3, "{profiles:?}");
    for p in &profiles {
        let out = Command::new("apparmor_parser")
            .args(["-Q", "-K", "-T"])
            .arg(p)
            .output()
            .expect("apparmor_parser is installed by make test");
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // pack debug apparmor prints the same profile.
    let printed = env.pack(["debug", "apparmor", "multi.a-1"]).ok();
    assert!(
        printed.contains(
            "profile pack.multi.a-1 flags=(attach_disconnected,mediate_deleted,complain)"
        )
    );
}

#[test]
fn strict_apps_are_refused_when_a_layer_is_missing_devmode_ones_run_marked() {
    require_root!();
    let mut env = Env::stopped();
    env.set_daemon_env("PACKD_TEST_HIDE_LAYERS", "landlock");
    env.start();
    env.install_base();
    let strict = write_pack_dir(env.dir.path(), "tools", &tools_yaml("strict"), &[]);
    env.install(&env.build(&strict));
    let err = env.pack(["run", "tools.sh", "-c", "echo ran"]).fails(125);
    assert!(
        err.contains("its confinement is strict and this kernel lacks Landlock"),
        "{err}"
    );
    // The debugging view still shows the sandbox, and why it would not start.
    let report = json(&env.pack(["debug", "sandbox", "tools.sh"]).ok());
    let landlock = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "landlock")
        .unwrap()["state"]
        .clone();
    assert_eq!(
        landlock,
        "unavailable: this kernel has no Landlock (or it is disabled)"
    );
    // A devmode pack runs, and says so.
    let dev = write_pack_dir(
        env.dir.path(),
        "devtools",
        &tools_yaml("devmode").replace("name: tools", "name: devtools"),
        &[],
    );
    env.install(&env.build(&dev));
    let out = env.pack(["run", "devtools.sh", "-c", "echo ran"]);
    assert_eq!(out.stdout, "ran\n");
    assert!(
        out.stderr.contains("warning: devtools.sh is in devmode"),
        "{}",
        out.stderr
    );
    let list = env.pack(["list"]).ok();
    assert!(
        list.lines()
            .any(|l| l.starts_with("devtools") && l.contains("devmode")),
        "{list}"
    );
    let info = json(&env.pack(["info", "devtools", "--json"]).ok());
    assert_eq!(info["confinement"], "devmode");
}

#[test]
fn devmode_logs_what_strict_denies() {
    require_root!();
    let env = env_with_tools("strict");
    let dev = write_pack_dir(
        env.dir.path(),
        "devtools",
        &tools_yaml("devmode").replace("name: tools", "name: devtools"),
        &[],
    );
    env.install(&env.build(&dev));
    // sethostname is outside the allowlist and needs CAP_SYS_ADMIN: strict refuses it...
    let strict = env.pack(["run", "tools.sh", "-c", "hostname renamed && hostname"]);
    assert_ne!(strict.code, 0, "{strict:?}");
    // ...devmode lets it through (inside its own UTS namespace), only logging.
    let dev = env.pack(["run", "devtools.sh", "-c", "hostname renamed && hostname"]);
    assert_eq!(dev.stdout, "renamed\n", "{dev:?}");
    // And the host's name did not change.
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "renamed"
    );
}

#[test]
fn users_run_apps_as_themselves_with_private_data() {
    require_root!();
    let env = env_with_tools("strict");
    let out = as_nobody(
        &env,
        &["run", "tools.sh", "-c", "id -u; id -g; id -G; echo $HOME"],
    )
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(lines[1], "65534");
    let mut groups: Vec<&str> = lines[2].split(' ').collect();
    groups.sort();
    assert_eq!(groups, ["100", "65534"], "supplementary groups kept");
    assert_eq!(lines[3], "/var/pack/tools/users/65534/x1");
    // Their home is theirs; the pack's system data is root's.
    as_nobody(&env, &["run", "tools.sh", "-c", "echo mine > $HOME/f"]).ok();
    let f = env.root.join("var/pack/tools/users/65534/x1/f");
    assert_eq!(fs::read_to_string(&f).unwrap(), "mine\n");
    assert_eq!(fs::metadata(&f).unwrap().uid(), 65534);
    let users = env.root.join("var/pack/tools/users/65534");
    assert_eq!(
        fs::metadata(&users).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let denied = as_nobody(&env, &["run", "tools.sh", "-c", "echo x > $PACK_DATA/f"]);
    assert_ne!(denied.code, 0);
    // Root's run does not see nobody's directory.
    let seen = env
        .pack(["run", "tools.sh", "-c", "ls /var/pack/tools/users"])
        .ok();
    assert_eq!(seen.trim(), "0");
}

#[test]
fn a_symlinked_user_directory_is_not_followed() {
    require_root!();
    let env = env_with_tools("strict");
    as_nobody(&env, &["run", "tools.sh", "-c", "true"]).ok();
    // The user swaps their data directory for a symlink to somewhere else (Flatpak
    // CVE-2024-42472): the next launch refuses rather than bind-mount the target.
    let mine = env.root.join("var/pack/tools/users/65534/x1");
    fs::remove_dir_all(&mine).unwrap();
    std::os::unix::fs::symlink("/etc", &mine).unwrap();
    let out = as_nobody(&env, &["run", "tools.sh", "-c", "ls $HOME"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("symlink"), "{}", out.stderr);
}

/// The sandbox cgroups of this env's daemon (children of its parent cgroup), per hierarchy,
/// that hold an app: the daemon also keeps one spare, made in advance, whose only process is a
/// waiting slot of the sandbox helper.
fn instance_cgroups(env: &Env) -> Vec<PathBuf> {
    env.cgroups()
        .iter()
        .flat_map(|parent| fs::read_dir(parent).into_iter().flatten().flatten())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|d| {
            fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .any(|pid| {
                    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    comm.trim() != "pack-confine"
                })
        })
        .collect()
}

#[test]
fn each_run_gets_a_limited_cgroup_that_goes_away() {
    require_root!();
    let env = env_with_tools("strict");
    let mut child = env
        .cmd()
        .args(["run", "tools.sh", "-c", "sleep 30"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = Vec::new();
    while found.is_empty() && Instant::now() < deadline {
        found = instance_cgroups(&env);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!found.is_empty(), "no sandbox cgroup appeared");
    let names: Vec<String> = found
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("sandbox.")), "{names:?}");
    // The limits of pack.yaml, through whichever controller this machine uses.
    let read = |d: &PathBuf, f: &str| {
        fs::read_to_string(d.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let memory = found
        .iter()
        .find_map(|d| read(d, "memory.limit_in_bytes").or_else(|| read(d, "memory.max")));
    assert_eq!(memory.as_deref(), Some("50331648"));
    let tasks = found.iter().find_map(|d| read(d, "pids.max"));
    assert_eq!(tasks.as_deref(), Some("64"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !instance_cgroups(&env).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        instance_cgroups(&env).is_empty(),
        "{:?}",
        instance_cgroups(&env)
    );
}

#[test]
fn a_killed_daemon_leaves_no_sandbox_or_cgroup_after_restart() {
    require_root!();
    let mut env = env_with_tools("strict");
    // An unusual duration marks the app's processes (`sh -c 'sleep N'` and `sleep N`).
    let secs = 3000 + std::process::id() % 997;
    let mut client = env
        .cmd()
        .args(["run", "tools.sh", "-c", &format!("sleep {secs}; true")])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while instance_cgroups(&env).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!instance_cgroups(&env).is_empty());
    env.kill();
    let _ = client.wait();
    // The sandbox died with the daemon...
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = || {
        fs::read_dir("/proc").unwrap().flatten().any(|p| {
            fs::read(p.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&format!("sleep {secs}"))
                })
                .unwrap_or(false)
        })
    };
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "the app outlived its daemon");
    // ...and the restarted daemon removes the cgroup it left.
    env.start();
    assert!(
        instance_cgroups(&env).is_empty(),
        "{:?}",
        instance_cgroups(&env)
    );
    env.pack(["run", "tools.sh", "-c", "true"]).ok();
}

#[test]
fn a_tampered_seccomp_profile_is_refused() {
    require_root!();
    let env = env_with_tools("strict");
    let profile = env.root.join("var/lib/packd/profiles/tools/x1/sh.seccomp");
    let md = fs::metadata(&profile).unwrap();
    assert_eq!(md.uid(), 0);
    assert_eq!(md.permissions().mode() & 0o777, 0o644);
    fs::set_permissions(&profile, fs::Permissions::from_mode(0o666)).unwrap();
    let err = env.pack(["run", "tools.sh", "-c", "true"]).fails(125);
    assert!(
        err.contains("must be owned by root and writable only by root"),
        "{err}"
    );
}

/// A pack's apps share one private network (loopback only): its tools reach its services on
/// localhost. Another pack has its own, and neither is the host's.
#[test]
fn each_pack_has_one_private_network() {
    require_root!();
    let env = env_with_tools("strict");
    let other = write_pack_dir(
        env.dir.path(),
        "other",
        "name: other\nversion: '1'\nbase: busybox\napps:\n  sh:\n    command: /bin/sh\n",
        &[],
    );
    env.install(&env.build(&other));
    let netns = |target: &str| {
        env.pack(["run", target, "-c", "readlink /proc/self/ns/net"])
            .ok()
            .trim()
            .to_string()
    };
    let host = fs::read_link("/proc/self/ns/net").unwrap();
    let ns = netns("tools.sh");
    assert!(ns.starts_with("net:["), "{ns}");
    assert_ne!(Path::new(&ns), host, "the sandbox is on the host's network");
    // Again (and as another user): the same namespace.
    assert_eq!(netns("tools.sh"), ns);
    let theirs = as_nobody(
        &env,
        &["run", "tools.sh", "-c", "readlink /proc/self/ns/net"],
    );
    assert_eq!(theirs.code, 0, "{}", theirs.stderr);
    assert_eq!(theirs.stdout.trim(), ns);
    // Another pack: another namespace.
    assert_ne!(netns("other.sh"), ns);
    // Only loopback, and up: the pack's apps can talk to each other there.
    let lo = env
        .pack([
            "run",
            "tools.sh",
            "-c",
            "cat /sys/class/net/lo/operstate; ls /sys/class/net",
        ])
        .ok();
    assert_eq!(lo, "unknown\nlo\n");
}

#[test]
fn profiles_from_another_packd_are_rewritten_at_start() {
    require_root!();
    let mut env = env_with_tools("strict");
    let profiles = env.root.join("var/lib/packd/profiles");
    let key_file = profiles.join("system-key");
    let key = fs::read_to_string(&key_file).unwrap();
    assert!(key.starts_with("packd "), "{key}");
    let seccomp = profiles.join("tools/x1/sh.seccomp");
    let good = fs::read(&seccomp).unwrap();
    // As an older packd would have left them: another key, another (here: empty) filter.
    env.stop();
    fs::write(&key_file, "packd 0.0.0 old").unwrap();
    fs::write(&seccomp, b"").unwrap();
    env.start();
    assert_eq!(fs::read(&seccomp).unwrap(), good);
    assert_eq!(fs::read_to_string(&key_file).unwrap(), key);
    assert!(
        env.log().contains("security profiles rewritten"),
        "{}",
        env.log()
    );
    env.pack(["run", "tools.sh", "-c", "true"]).ok();
    // The same packd again: nothing is rewritten.
    let before = fs::metadata(&seccomp).unwrap().modified().unwrap();
    env.stop();
    env.start();
    assert_eq!(fs::metadata(&seccomp).unwrap().modified().unwrap(), before);
}
