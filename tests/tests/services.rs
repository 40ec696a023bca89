//! Services end to end: real daemons supervise apps with `daemon:`; started at install and at
//! boot, restarted as their restart-condition says, stopped gracefully or by force, their
//! output in `pack logs`, and restarted when a connection changes their permissions.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use packd_tests::{Env, eventually, require_root, write_pack_dir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Installs pack `name` (on busybox) with `apps` (YAML under `apps:`) and `files`.
fn install(env: &Env, name: &str, top: &str, apps: &str, files: &[(&str, &str)]) {
    let yaml = format!("name: {name}\nversion: '1'\nbase: busybox\n{top}apps:\n{apps}");
    let dir = write_pack_dir(env.dir.path(), name, &yaml, files);
    env.install(&env.build(&dir));
}

/// `pack services --json`, as (service, enabled, active).
fn services(env: &Env) -> Vec<(String, bool, String)> {
    json(&env.pack(["services", "--json"]).ok())
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!(
                    "{}.{}",
                    s["pack"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                ),
                s["enabled"].as_bool().unwrap(),
                s["active"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn state(env: &Env, service: &str) -> String {
    services(env)
        .into_iter()
        .find(|(s, _, _)| s == service)
        .map(|(_, _, a)| a)
        .unwrap_or_else(|| panic!("{service} is not listed"))
}

fn logs(env: &Env, name: &str) -> String {
    env.pack(["logs", name, "-n", "all"]).ok()
}

fn data(env: &Env, pack: &str) -> PathBuf {
    env.root.join(format!("var/pack/{pack}/x1"))
}

const TICK: &str = "#!/bin/sh\necho \"hello from $PACK_APP_NAME\"\nexec sleep 1000\n";

#[test]
fn a_service_runs_from_install_logs_and_follows_start_stop_and_boot() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    install(
        &env,
        "svc",
        "",
        "  tick:\n    command: bin/tick\n    daemon: simple\n  tool:\n    command: bin/tick\n",
        &[("bin/tick", TICK)],
    );
    // Only the daemon is a service; it runs as soon as the install is done, and its pid is
    // its sandbox's.
    let mut listed = json(&env.pack(["services", "--json"]).ok());
    let pid = listed[0]
        .as_object_mut()
        .and_then(|o| o.remove("pid"))
        .and_then(|p| p.as_i64())
        .expect("a running service has a pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        listed,
        serde_json::json!([{"pack": "svc", "name": "tick", "daemon": "simple", "enabled": true, "active": "active"}])
    );
    eventually("its output is in its log", || {
        logs(&env, "svc").contains("svc.tick: hello from tick")
    });
    let table = env.pack(["services"]).ok();
    assert!(
        table.contains("svc.tick") && table.contains("enabled") && table.contains("active"),
        "{table}"
    );

    env.pack(["stop", "svc"]).ok();
    assert_eq!(state(&env, "svc.tick"), "inactive");
    env.pack(["start", "svc.tick"]).ok();
    assert_eq!(state(&env, "svc.tick"), "active");
    eventually("the second run logged too", || {
        logs(&env, "svc.tick").matches("hello from tick").count() == 2
    });
    // -n counts lines from the end.
    assert_eq!(env.pack(["logs", "svc", "-n", "1"]).ok().lines().count(), 1);

    // Disabled: not started at boot.
    env.pack(["stop", "--disable", "svc"]).ok();
    assert_eq!(
        services(&env),
        [("svc.tick".into(), false, "inactive".into())]
    );
    env.stop();
    env.reboot();
    env.start();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&env, "svc.tick"), "inactive");
    // Enabled again: started now and at every boot.
    env.pack(["start", "--enable", "svc"]).ok();
    env.stop();
    env.reboot();
    env.start();
    eventually("it is started at boot", || {
        state(&env, "svc.tick") == "active"
    });
    // Stopped but enabled: a restart of packd alone leaves it as it was; a reboot starts it.
    env.pack(["stop", "svc"]).ok();
    env.stop();
    env.start();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&env, "svc.tick"), "inactive");
    env.stop();
    env.reboot();
    env.start();
    eventually("it is started at the next boot", || {
        state(&env, "svc.tick") == "active"
    });

    // Errors name the problem.
    let err = env.pack(["start", "svc.tool"]).fails(1);
    assert!(err.contains("svc.tool is not a service"), "{err}");
    let err = env.pack(["stop", "--enable", "svc"]).fails(1);
    assert!(err.contains("--enable"), "{err}");
    let err = env.pack(["logs", "nope"]).fails(1);
    assert!(err.contains("\"nope\" is not installed"), "{err}");

    env.pack(["remove", "svc"]).ok();
    assert!(services(&env).is_empty());
    // The log outlives a plain removal, not a purge.
    let log = env.root.join("var/log/packd/svc.tick.log");
    assert!(log.is_file());
    install(
        &env,
        "svc",
        "",
        "  tick:\n    command: bin/tick\n    daemon: simple\n",
        &[("bin/tick", TICK)],
    );
    env.pack(["remove", "--purge", "svc"]).ok();
    assert!(!log.exists());
}

#[test]
fn restart_conditions_are_followed_and_a_crash_loop_ends_failed() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let flaky = "#!/bin/sh\necho run >> $PACK_DATA/runs\n\
                 [ $(wc -l < $PACK_DATA/runs) -ge 2 ] || exit 1\nexec sleep 1000\n";
    install(
        &env,
        "rc",
        "",
        "  flaky:\n    command: bin/flaky\n    daemon: simple\n    restart-delay: 50ms\n\
         \x20 crash:\n    command: bin/crash\n    daemon: simple\n    restart-condition: always\n    restart-delay: 10ms\n\
         \x20 once:\n    command: bin/crash\n    daemon: simple\n    restart-condition: never\n",
        &[
            ("bin/flaky", flaky),
            ("bin/crash", "#!/bin/sh\necho crashing\nexit 3\n"),
        ],
    );
    // on-failure (the default): restarted after its first run failed, then it stays up.
    eventually("flaky is back up", || {
        fs::read_to_string(data(&env, "rc").join("runs")).is_ok_and(|r| r.lines().count() == 2)
            && state(&env, "rc.flaky") == "active"
    });
    // never: it failed and stays failed.
    eventually("once has failed", || state(&env, "rc.once") == "failed");
    assert_eq!(logs(&env, "rc.once").matches("crashing").count(), 1);
    // always, but crashing at once every time: the start limit ends the loop.
    eventually("crash has failed", || state(&env, "rc.crash") == "failed");
    let log = logs(&env, "rc.crash");
    assert_eq!(log.matches("crashing").count(), 5, "{log}");
    assert!(log.contains("not restarting"), "{log}");
    // A start by hand tries again.
    env.pack(["start", "rc.once"]).ok();
    eventually("once ran again", || {
        logs(&env, "rc.once").matches("crashing").count() == 2
    });
}

#[test]
fn notify_oneshot_forking_and_ordering_start_when_they_say() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let notify = "#!/bin/sh\nsleep 0.3\necho ready > $PACK_DATA/notify\n\
                  $PACK/bin/probe --notify READY=1\nexec sleep 1000\n";
    let oneshot = "#!/bin/sh\necho $PACK_APP_NAME >> $PACK_DATA/order\n";
    let forking = "#!/bin/sh\nsleep 1000 &\necho $PACK_APP_NAME >> $PACK_DATA/order\nexit 0\n";
    let dir = write_pack_dir(
        env.dir.path(),
        "kinds",
        "name: kinds\nversion: '1'\nbase: busybox\napps:\n\
         \x20 ready:\n    command: bin/ready\n    daemon: notify\n\
         \x20 setup:\n    command: bin/oneshot\n    daemon: oneshot\n    before: [forked]\n\
         \x20 forked:\n    command: bin/forking\n    daemon: forking\n",
        &[
            ("bin/ready", notify),
            ("bin/oneshot", oneshot),
            ("bin/forking", forking),
        ],
    );
    fs::copy(packd_tests::probe::probe_binary(), dir.join("bin/probe")).unwrap();
    env.install(&env.build(&dir));
    // The install waited for READY=1, which came after the file.
    assert_eq!(
        fs::read_to_string(data(&env, "kinds").join("notify")).unwrap(),
        "ready\n"
    );
    // setup (before forked) ran first and counts as active once done; forked is active after
    // its command left a process behind.
    assert_eq!(
        fs::read_to_string(data(&env, "kinds").join("order")).unwrap(),
        "setup\nforked\n"
    );
    assert_eq!(state(&env, "kinds.ready"), "active");
    assert_eq!(state(&env, "kinds.setup"), "active");
    assert_eq!(state(&env, "kinds.forked"), "active");
    // Stopping the forking service ends what its command left behind.
    let procs_before = count_procs("sleep 1000");
    env.pack(["stop", "kinds.forked"]).ok();
    assert_eq!(state(&env, "kinds.forked"), "inactive");
    eventually("the forked sleeper is gone", || {
        count_procs("sleep 1000") == procs_before - 1
    });
}

/// Processes on the host whose command line is `cmd` (the sandboxes' pids are the host's too).
fn count_procs(cmd: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == cmd)
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn stopping_runs_stop_command_then_terminates_then_kills() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let stubborn = "#!/bin/sh\ntrap '' TERM\necho up\nwhile true; do sleep 0.1; done\n";
    let stopper = "#!/bin/sh\necho stop-command ran > $PACK_DATA/stopped\n";
    install(
        &env,
        "stub",
        "",
        "  svc:\n    command: bin/stubborn\n    daemon: simple\n    stop-command: bin/stopper\n    stop-timeout: 1s\n",
        &[("bin/stubborn", stubborn), ("bin/stopper", stopper)],
    );
    eventually("it is up", || logs(&env, "stub").contains("up"));
    env.pack(["stop", "stub"]).ok();
    assert_eq!(state(&env, "stub.svc"), "inactive");
    assert_eq!(
        fs::read_to_string(data(&env, "stub").join("stopped")).unwrap(),
        "stop-command ran\n"
    );
    let log = logs(&env, "stub");
    assert!(log.contains("after SIGTERM; killed"), "{log}");
}

#[test]
fn a_connection_change_restarts_the_running_services_it_affects() {
    require_root!();
    let env = Env::new();
    env.install_base();
    install(
        &env,
        "watcher",
        "plugs:\n  mount-observe:\n",
        "  svc:\n    command: bin/tick\n    daemon: simple\n",
        &[("bin/tick", TICK)],
    );
    eventually("it started", || {
        logs(&env, "watcher").matches("hello from svc").count() == 1
    });
    env.pack(["connect", "watcher:mount-observe"]).ok();
    eventually("it restarted after connect", || {
        logs(&env, "watcher").matches("hello from svc").count() == 2
    });
    assert_eq!(state(&env, "watcher.svc"), "active");
    env.pack(["disconnect", "watcher:mount-observe"]).ok();
    eventually("it restarted after disconnect", || {
        logs(&env, "watcher").matches("hello from svc").count() == 3
    });
    // A stopped service stays stopped.
    env.pack(["stop", "watcher"]).ok();
    env.pack(["connect", "watcher:mount-observe"]).ok();
    assert_eq!(state(&env, "watcher.svc"), "inactive");
    assert_eq!(logs(&env, "watcher").matches("hello from svc").count(), 3);
}

#[test]
fn a_stuck_install_is_aborted_and_undone_and_changes_tell_the_story() {
    require_root!();
    let env = Env::new();
    env.install_base();
    // A notify service that never says it is ready: the install waits for it.
    let dir = write_pack_dir(
        env.dir.path(),
        "stuck",
        "name: stuck\nversion: '1'\nbase: busybox\napps:\n  svc:\n    command: bin/svc\n    daemon: notify\n",
        &[(
            "bin/svc",
            "#!/bin/sh\necho waiting forever\nexec sleep 1000\n",
        )],
    );
    let file = env.build(&dir);
    let id = env
        .pack([
            "install".as_ref(),
            file.as_os_str(),
            "--dangerous".as_ref(),
            "--no-wait".as_ref(),
        ])
        .ok()
        .trim()
        .to_string();
    eventually("the service is starting", || {
        logs_of(&env, "stuck").contains("waiting forever")
    });
    let tasks = env.pack(["tasks", &id]).ok();
    assert!(
        tasks.contains("Doing") && tasks.contains("Start services of pack \"stuck\""),
        "{tasks}"
    );
    env.pack(["abort", &id]).ok();
    // watch follows it to its end and reports the failure.
    let err = env.pack(["watch", &id]).fails(1);
    assert!(err.contains("aborted"), "{err}");
    let tasks = json(&env.pack(["tasks", &id, "--json"]).ok());
    let statuses: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == "Undone" || *s == "Hold" || *s == "Error"),
        "{statuses:?}"
    );
    // Nothing of the pack is left, and the change list shows what happened.
    assert!(env.pack(["list", "--json"]).ok().contains("busybox"));
    assert!(!env.pack(["list", "--json"]).ok().contains("stuck"));
    assert!(services(&env).is_empty());
    let changes = env.pack(["changes"]).ok();
    assert!(
        changes.contains(&format!("{id} ")) && changes.contains("Install pack \"stuck\""),
        "{changes}"
    );
    // Finished changes cannot be aborted.
    let err = env.pack(["abort", &id]).fails(1);
    assert!(err.contains("only unfinished changes"), "{err}");
}

/// The log file itself (the pack may be gone from the API).
fn logs_of(env: &Env, pack: &str) -> String {
    fs::read_dir(env.root.join("var/log/packd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{pack}."))
                })
                .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn logs_follow_prints_new_lines_as_they_come() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let ticking = "#!/bin/sh\ni=0\nwhile true; do i=$((i+1)); echo tick $i; sleep 0.2; done\n";
    install(
        &env,
        "follow",
        "",
        "  svc:\n    command: bin/tick\n    daemon: simple\n",
        &[("bin/tick", ticking)],
    );
    let mut child = env
        .cmd()
        .args(["logs", "follow", "-n", "1", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    // Read until a tick numbered 5 or more arrives: written after `logs -f` started.
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let n = out.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return String::from_utf8_lossy(&got).into_owned();
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if text.lines().any(|l| {
                l.rsplit_once("tick ")
                    .and_then(|(_, n)| n.trim().parse::<u32>().ok())
                    .is_some_and(|n| n >= 5)
            }) {
                return text.into_owned();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "logs -f printed no new lines");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = reader.join().unwrap();
    assert!(text.contains("follow.svc: tick"), "{text}");
}

#[test]
fn a_failed_start_stops_what_it_started_and_logs_are_roots() {
    require_root!();
    let env = Env::new();
    env.install_base();
    // `first` starts (and would run on), `second` exits before it is ready: the install fails
    // and nothing of it runs on.
    let dir = write_pack_dir(
        env.dir.path(),
        "half",
        "name: half\nversion: '1'\nbase: busybox\napps:\n\
         \x20 first:\n    command: bin/first\n    daemon: simple\n    before: [second]\n\
         \x20 second:\n    command: bin/second\n    daemon: notify\n",
        &[
            ("bin/first", "#!/bin/sh\nexec sleep 1001\n"),
            ("bin/second", "#!/bin/sh\necho not today\nexit 4\n"),
        ],
    );
    let err = env.try_install(&env.build(&dir)).fails(1);
    assert!(err.contains("half.second did not start"), "{err}");
    eventually("first is stopped again", || count_procs("sleep 1001") == 0);
    assert!(services(&env).is_empty());

    // Service output may hold secrets: reading it needs root.
    install(
        &env,
        "quiet",
        "",
        "  svc:\n    command: bin/tick\n    daemon: simple\n",
        &[("bin/tick", TICK)],
    );
    let mut c = env.cmd();
    c.args(["logs", "quiet"]).current_dir("/");
    let o = packd_tests::as_nobody(&mut c).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reading service logs needs root"));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| fs::metadata(env.root.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("var/log/packd"), 0o700);
    assert_eq!(mode("var/log/packd/quiet.svc.log"), 0o600);
}
