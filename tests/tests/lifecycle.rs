//! Refresh, revert, retention and crash safety, end to end: an update either works or leaves
//! the pack exactly as it was, also when the daemon is killed in the middle.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use packd_tests::{Env, eventually, require_root, write_pack_dir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Builds version `v` of pack `app`: one service, `svc`, that appends `v` to
/// `$PACK_DATA/history`, logs "vN started" and stays up; `behaviour` replaces staying up.
fn build(env: &Env, v: u32, behaviour: &str) -> PathBuf {
    let script =
        format!("#!/bin/sh\necho v{v} >> $PACK_DATA/history\necho v{v} started\n{behaviour}\n");
    let dir = write_pack_dir(
        &env.dir.path().join(format!("v{v}")),
        "app",
        &format!(
            "name: app\nversion: '{v}'\nbase: busybox\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    restart-delay: 50ms\n"
        ),
        &[("bin/svc", &script)],
    );
    let file = env.build(&dir);
    let named = env.dir.path().join(format!("app-v{v}.pack"));
    fs::rename(file, &named).unwrap();
    named
}

const STAY_UP: &str = "exec sleep 1000";

fn install_args(file: &std::path::Path) -> Vec<&OsStr> {
    vec![
        OsStr::new("install"),
        file.as_os_str(),
        OsStr::new("--dangerous"),
    ]
}

/// The current revision of `app` and the revisions it has.
fn revisions(env: &Env) -> (String, Vec<String>) {
    let info = json(&env.pack(["info", "app", "--json"]).ok());
    let all = info["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_str().unwrap().to_string())
        .collect();
    (info["revision"].as_str().unwrap().to_string(), all)
}

fn service_state(env: &Env) -> String {
    let s = json(&env.pack(["services", "--json", "app"]).ok());
    s[0]["active"].as_str().unwrap_or("missing").to_string()
}

fn history(env: &Env, rev: &str) -> String {
    fs::read_to_string(env.root.join(format!("var/pack/app/{rev}/history"))).unwrap_or_default()
}

/// One consistent revision: `current` with its service up running its own code, every
/// revision mounted and no other, no copy or set-aside leftovers.
#[track_caller]
fn assert_consistent(env: &Env) -> String {
    let (current, all) = revisions(env);
    eventually("the current revision's service runs", || {
        service_state(env) == "active"
    });
    let version = json(&env.pack(["info", "app", "--json"]).ok())["version"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the service runs the current code", || {
        env.pack(["logs", "app", "-n", "all"])
            .ok()
            .lines()
            .rev()
            .find(|l| l.contains(" started") && l.contains(": v"))
            .is_some_and(|l| l.ends_with(&format!("v{version} started")))
    });
    let mut mounted: Vec<String> = env
        .mounts()
        .into_iter()
        .filter_map(|m| {
            m.strip_prefix(env.root.join("pack/app"))
                .ok()
                .map(|r| r.display().to_string())
        })
        .collect();
    mounted.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(mounted, want, "mounts of app");
    // One loop device per mounted revision (of every pack), none left over.
    let pack_mounts = env
        .mounts()
        .into_iter()
        .filter(|m| m.starts_with(env.root.join("pack")))
        .count();
    assert_eq!(env.loop_backing_files().len(), pack_mounts, "loop devices");
    for e in fs::read_dir(env.root.join("var/pack/app"))
        .unwrap()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".packd-"), "leftover {n}");
    }
    assert!(
        history(env, &current).ends_with(&format!("v{version}\n")),
        "{}",
        history(env, &current)
    );
    current
}

#[test]
fn a_good_refresh_carries_data_over_and_retention_drops_the_oldest() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=500ms"])
        .ok();
    env.install(&build(&env, 1, STAY_UP));
    eventually("v1 ran", || history(&env, "x1") == "v1\n");
    fs::write(env.root.join("var/pack/app/x1/mine"), "user data").unwrap();

    env.install(&build(&env, 2, STAY_UP));
    assert_eq!(
        revisions(&env),
        ("x2".into(), vec!["x1".into(), "x2".into()])
    );
    assert_eq!(assert_consistent(&env), "x2");
    // The new revision started from a copy; the old one's data is as it was.
    assert_eq!(history(&env, "x2"), "v1\nv2\n");
    assert_eq!(
        fs::read_to_string(env.root.join("var/pack/app/x2/mine")).unwrap(),
        "user data"
    );
    assert_eq!(history(&env, "x1"), "v1\n");

    // refresh.retain = 2: the third revision pushes out the first, entirely.
    env.install(&build(&env, 3, STAY_UP));
    assert_eq!(
        revisions(&env),
        ("x3".into(), vec!["x2".into(), "x3".into()])
    );
    assert_consistent(&env);
    assert!(!env.root.join("var/pack/app/x1").exists());
    assert!(!env.root.join("pack/app/x1").exists());
    assert!(!env.root.join("var/lib/packd/packs/app_x1.pack").exists());
    // Keeping more is a setting; bad values are refused with what they must be.
    let err = env.pack(["set", "system", "refresh.retain=1"]).fails(1);
    assert!(err.contains("2 to 20"), "{err}");
    env.pack(["set", "system", "refresh.retain=3"]).ok();
    assert_eq!(
        env.pack(["get", "system", "refresh.retain"]).ok().trim(),
        "3"
    );
    env.install(&build(&env, 4, STAY_UP));
    assert_eq!(revisions(&env).1, ["x2", "x3", "x4"]);
}

#[test]
fn a_refresh_whose_service_crash_loops_is_undone_and_the_old_one_runs_again() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=2s"]).ok();
    env.install(&build(&env, 1, STAY_UP));
    assert_consistent(&env);
    let bad = build(&env, 2, "sleep 0.3\nexit 1");
    let err = env.try_install(&bad).fails(1);
    assert!(
        err.contains("svc restarted within the health window"),
        "{err}"
    );
    // Exactly as before: x1 current and running, x2 gone with its data.
    assert_eq!(revisions(&env), ("x1".into(), vec!["x1".into()]));
    assert_eq!(assert_consistent(&env), "x1");
    assert!(!env.root.join("var/pack/app/x2").exists());
    assert_eq!(history(&env, "x1"), "v1\nv1\n");
    // The change says what happened.
    let changes = json(&env.pack(["changes", "--json"]).ok());
    let last = changes.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["err"].as_str().unwrap().contains("health window"),
        "{last}"
    );
}

#[test]
fn a_refresh_whose_service_cannot_start_is_undone() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=300ms"])
        .ok();
    env.install(&build(&env, 1, STAY_UP));
    // The new service exits at once and is not restarted: it fails in the window.
    let dir = write_pack_dir(
        &env.dir.path().join("broken"),
        "app",
        "name: app\nversion: '2'\nbase: busybox\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    restart-condition: never\n",
        &[("bin/svc", "#!/bin/sh\necho v2 started\nexit 2\n")],
    );
    let err = env.try_install(&env.build(&dir)).fails(1);
    assert!(err.contains("svc failed within the health window"), "{err}");
    assert_eq!(assert_consistent(&env), "x1");
}

#[test]
fn revert_goes_back_with_the_old_revisions_own_data() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=0s"]).ok();
    env.install(&build(&env, 1, STAY_UP));
    env.install(&build(&env, 2, STAY_UP));
    assert_eq!(history(&env, "x2"), "v1\nv2\n");
    env.pack(["revert", "app"]).ok();
    assert_eq!(revisions(&env).0, "x1");
    assert_eq!(assert_consistent(&env), "x1");
    // x1's data as it was (plus this start), not x2's.
    assert_eq!(history(&env, "x1"), "v1\nv1\n");
    let err = env.pack(["revert", "app"]).fails(1);
    assert!(err.contains("no revision before x1"), "{err}");
    let err = env.pack(["revert", "app", "--revision", "x9"]).fails(1);
    assert!(err.contains("has no revision x9"), "{err}");
    env.pack(["revert", "app", "--revision", "x2"]).ok();
    assert_eq!(assert_consistent(&env), "x2");
    assert_eq!(history(&env, "x2"), "v1\nv2\nv2\n");
    // A disabled service stays down through a revert.
    env.pack(["stop", "--disable", "app"]).ok();
    env.pack(["revert", "app", "--revision", "x1"]).ok();
    assert_eq!(service_state(&env), "inactive");
    assert_eq!(history(&env, "x1"), "v1\nv1\n");
}

/// The tasks of the last change, as `kind` strings.
fn last_change_kinds(env: &Env) -> Vec<String> {
    let changes = json(&env.pack(["changes", "--json"]).ok());
    changes.as_array().unwrap().last().unwrap()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Kills the daemon at `point` while `act` runs, starts it again and waits for the change to
/// end; returns the change's status.
fn crash_and_recover(env: &mut Env, point: &str, act: &[&OsStr]) -> String {
    env.stop();
    env.set_daemon_env("PACKD_TEST_CRASH_AT", point);
    env.start();
    let mut args: Vec<&OsStr> = act.to_vec();
    args.push(OsStr::new("--no-wait"));
    let id = env.pack(args).ok().trim().to_string();
    assert!(
        env.wait_daemon_exit(Duration::from_secs(30)),
        "the daemon never reached {point}"
    );
    env.clear_daemon_env();
    env.start();
    let _ = env.pack(["watch", &id]);
    let change = json(&env.pack(["changes", "--json"]).ok());
    change
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn a_refresh_and_a_revert_killed_at_every_task_boundary_converge() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=200ms"])
        .ok();
    env.pack(["set", "system", "refresh.retain=20"]).ok();
    env.install(&build(&env, 1, STAY_UP));
    env.install(&build(&env, 2, STAY_UP));
    let refresh_kinds = last_change_kinds(&env);
    assert!(
        refresh_kinds.contains(&"copy-data".to_string())
            && refresh_kinds.contains(&"check-health".to_string())
    );
    let mut v = 2;
    for kind in &refresh_kinds {
        for when in ["before", "after"] {
            v += 1;
            let file = build(&env, v, STAY_UP);
            let status =
                crash_and_recover(&mut env, &format!("{kind}:do:{when}"), &install_args(&file));
            assert_eq!(status, "Done", "refresh crashed at {kind}:do:{when}");
            assert_eq!(
                assert_consistent(&env),
                format!("x{v}"),
                "after {kind}:do:{when}"
            );
        }
    }
    // Revert, killed at each of its boundaries, ends at the reverted-to revision.
    env.pack(["revert", "app"]).ok();
    let revert_kinds = last_change_kinds(&env);
    for kind in &revert_kinds {
        for when in ["before", "after"] {
            let before = revisions(&env).0;
            let status = crash_and_recover(
                &mut env,
                &format!("{kind}:do:{when}"),
                &[OsStr::new("revert"), OsStr::new("app")],
            );
            assert_eq!(status, "Done", "revert crashed at {kind}:do:{when}");
            let now = assert_consistent(&env);
            assert_ne!(now, before, "revert at {kind}:do:{when} did not move");
        }
    }
}

#[test]
fn an_install_and_a_remove_killed_at_every_task_boundary_converge() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    let file = build(&env, 1, STAY_UP);
    env.install(&file);
    let install_kinds = last_change_kinds(&env);
    env.pack(["remove", "app"]).ok();
    let remove_kinds = last_change_kinds(&env);
    for kind in &install_kinds {
        for when in ["before", "after"] {
            let status =
                crash_and_recover(&mut env, &format!("{kind}:do:{when}"), &install_args(&file));
            assert_eq!(status, "Done", "install crashed at {kind}:do:{when}");
            assert_consistent(&env);
            let status = crash_and_recover(
                &mut env,
                &format!("{}:do:{when}", remove_kinds[0]),
                &[OsStr::new("remove"), OsStr::new("app")],
            );
            assert_eq!(status, "Done");
            assert!(env.pack(["info", "app"]).code != 0);
        }
    }
    env.install(&file);
    for kind in &remove_kinds {
        for when in ["before", "after"] {
            let status = crash_and_recover(
                &mut env,
                &format!("{kind}:do:{when}"),
                &[OsStr::new("remove"), OsStr::new("app")],
            );
            assert_eq!(status, "Done", "remove crashed at {kind}:do:{when}");
            assert!(env.pack(["info", "app"]).code != 0);
            assert!(!env.root.join("var/pack/app").exists());
            assert!(
                env.mounts()
                    .iter()
                    .all(|m| !m.starts_with(env.root.join("pack/app")))
            );
            env.install(&file);
        }
    }
}

#[test]
fn a_refresh_killed_at_random_moments_always_converges() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=300ms"])
        .ok();
    env.pack(["set", "system", "refresh.retain=20"]).ok();
    env.install(&build(&env, 1, STAY_UP));
    // A cheap pseudo-random sequence of kill delays (0-1.2 s), the same on every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for v in 2..=9 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 1200);
        let file = build(&env, v, STAY_UP);
        let mut args = install_args(&file);
        args.push(OsStr::new("--no-wait"));
        let id = env.pack(args).ok().trim().to_string();
        std::thread::sleep(delay);
        env.kill();
        env.start();
        let _ = env.pack(["watch", &id]);
        let current = assert_consistent(&env);
        assert!(
            current == format!("x{v}") || current == format!("x{}", v - 1),
            "killed after {delay:?}: at {current}"
        );
    }
}

/// Pack `hk` version `v` with a service and the given hooks (`(name, script body)`).
fn build_hooks(env: &Env, v: u32, hooks: &[(&str, &str)]) -> PathBuf {
    let mut files: Vec<(String, String)> = vec![(
        "bin/svc".into(),
        format!("#!/bin/sh\necho v{v} started\nexec sleep 1000\n"),
    )];
    for (name, body) in hooks {
        files.push((format!("meta/hooks/{name}"), format!("#!/bin/sh\n{body}\n")));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = write_pack_dir(
        &env.dir.path().join(format!("hk{v}")),
        "hk",
        &format!(
            "name: hk\nversion: '{v}'\nbase: busybox\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n"
        ),
        &files,
    );
    let file = env.build(&dir);
    let named = env.dir.path().join(format!("hk-v{v}.pack"));
    fs::rename(file, &named).unwrap();
    named
}

#[test]
fn hooks_run_confined_at_their_points_and_a_failing_one_undoes_the_change() {
    require_root!();
    let env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=0s"]).ok();
    let note = |what: &str| format!("echo {what} $PACK_REVISION $(id -u) >> $PACK_COMMON/events");
    let v1 = build_hooks(
        &env,
        1,
        &[
            (
                "install",
                &(note("install") + "\nls /var/pack >> $PACK_COMMON/events"),
            ),
            ("configure", &note("configure")),
            ("check-health", &note("check-health")),
            ("pre-refresh", &note("pre-refresh")),
        ],
    );
    env.install(&v1);
    let events =
        || fs::read_to_string(env.root.join("var/pack/hk/common/events")).unwrap_or_default();
    // In order, as root, inside the pack's sandbox (it sees only its own data).
    assert_eq!(
        events(),
        "install x1 0\nhk\nconfigure x1 0\ncheck-health x1 0\n"
    );

    let v2 = build_hooks(&env, 2, &[("post-refresh", &note("post-refresh"))]);
    env.install(&v2);
    // The old revision's pre-refresh, the new one's post-refresh; no install hook on a refresh.
    assert!(
        events().ends_with("pre-refresh x1 0\npost-refresh x2 0\n"),
        "{}",
        events()
    );

    let v2_starts = || {
        env.pack(["logs", "hk.svc", "-n", "all"])
            .ok()
            .matches("v2 started")
            .count()
    };
    eventually("v2 ran", || v2_starts() == 1);
    // A failing post-refresh hook undoes the refresh; its words are in the error.
    let v3 = build_hooks(&env, 3, &[("post-refresh", "echo bad config >&2\nexit 3")]);
    let err = env
        .pack([
            OsStr::new("install"),
            v3.as_os_str(),
            OsStr::new("--dangerous"),
        ])
        .fails(1);
    assert!(
        err.contains("the post-refresh hook of hk exited with status 3; it said: bad config"),
        "{err}"
    );
    // Only root reads what the hook said (hook logs are root's): other users see the failure.
    let mut c = env.cmd();
    c.args(["changes", "--json"]).current_dir("/");
    packd_tests::as_nobody(&mut c);
    let theirs = String::from_utf8(c.output().unwrap().stdout).unwrap();
    assert!(
        theirs.contains("the post-refresh hook of hk exited with status 3")
            && !theirs.contains("bad config"),
        "{theirs}"
    );
    let info = json(&env.pack(["info", "hk", "--json"]).ok());
    assert_eq!(info["revision"], "x2");
    eventually("v2 runs again", || {
        env.pack(["services", "--json", "hk"])
            .ok()
            .contains("\"active\"")
            && v2_starts() == 2
    });
    // So does a failing check-health hook.
    let v4 = build_hooks(&env, 4, &[("check-health", "echo unhealthy\nexit 1")]);
    let err = env
        .pack([
            OsStr::new("install"),
            v4.as_os_str(),
            OsStr::new("--dangerous"),
        ])
        .fails(1);
    assert!(
        err.contains("check-health hook of hk exited with status 1"),
        "{err}"
    );
    assert_eq!(
        json(&env.pack(["info", "hk", "--json"]).ok())["revision"],
        "x2"
    );

    // A failing remove hook does not stop a removal.
    let v5 = build_hooks(&env, 5, &[("remove", "exit 9")]);
    env.install(&v5);
    env.pack(["remove", "hk"]).ok();
    assert!(env.pack(["info", "hk"]).code != 0);
}

#[test]
fn a_failing_refresh_killed_at_every_undo_boundary_still_ends_as_before() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    env.pack(["set", "system", "refresh.health-window=1s"]).ok();
    env.pack(["set", "system", "refresh.retain=20"]).ok();
    env.install(&build(&env, 1, STAY_UP));
    // A refresh whose new service crash-loops: it fails in the health window and is undone.
    let bad = build(&env, 2, "sleep 0.2\nexit 1");
    env.try_install(&bad).fails(1);
    let kinds = last_change_kinds(&env);
    // Undo runs for every task before the health window that did something.
    let undone: Vec<&String> = kinds.iter().take_while(|k| *k != "check-health").collect();
    assert!(undone.len() >= 8, "{kinds:?}");
    for kind in undone {
        for when in ["before", "after"] {
            let status = crash_and_recover(
                &mut env,
                &format!("{kind}:undo:{when}"),
                &install_args(&bad),
            );
            assert_eq!(status, "Error", "undo crashed at {kind}:undo:{when}");
            assert_eq!(assert_consistent(&env), "x1", "after {kind}:undo:{when}");
            assert_eq!(revisions(&env).1, ["x1"], "after {kind}:undo:{when}");
        }
    }
}

#[test]
fn a_first_install_that_fails_and_is_undone_leaves_no_directories() {
    require_root!();
    let env = Env::new();
    env.install_base();
    // Its install hook runs (making the hook's data directories and the pack's /tmp), then
    // fails: the whole install is undone.
    let v1 = build_hooks(
        &env,
        1,
        &[("install", "echo hi > $PACK_USER_DATA/x\nexit 1")],
    );
    let err = env
        .pack([
            OsStr::new("install"),
            v1.as_os_str(),
            OsStr::new("--dangerous"),
        ])
        .fails(1);
    assert!(
        err.contains("the install hook of hk exited with status 1"),
        "{err}"
    );
    for left in ["var/pack/hk", "run/packd/tmp/hk"] {
        assert!(
            !env.root.join(left).exists(),
            "{left} is left after the undone install"
        );
    }
}
