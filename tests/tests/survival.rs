//! Services outlive packd: `kill -9`, `kill -TERM` and an upgrade of the packd binary never
//! stop, restart or duplicate a running service; its log has no gap while packd is away; the
//! next packd takes it over (same pid, `pack stop` works), restarts what died meanwhile as its
//! restart condition says, and a crash loop ends `failed` with packd idle.
//!
//! Every test runs twice: with packd's own monitors (`native::`) and with each monitor a
//! transient unit of a fake systemd on a private D-Bus (`systemd::`); both must behave the
//! same.

use std::fs;
use std::time::{Duration, Instant};

use packd_tests::{Env, Supervisor, cpu_ticks, eventually, write_pack_dir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `(active, pid)` of `service` from `pack services --json`.
fn service(env: &Env, service: &str) -> (String, Option<i64>) {
    let list = json(&env.pack(["services", "--json"]).ok());
    let s = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            format!(
                "{}.{}",
                s["pack"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            ) == service
        })
        .unwrap_or_else(|| panic!("{service} is not listed: {list}"))
        .clone();
    (s["active"].as_str().unwrap().to_string(), s["pid"].as_i64())
}

fn install(env: &Env, name: &str, apps: &str, files: &[(&str, &str)]) {
    let yaml = format!("name: {name}\nversion: '1'\nbase: busybox\napps:\n{apps}");
    let dir = write_pack_dir(env.dir.path(), name, &yaml, files);
    env.install(&env.build(&dir));
}

fn log(env: &Env, file: &str) -> String {
    fs::read_to_string(env.root.join("var/log/packd").join(file)).unwrap_or_default()
}

/// The numbers of the `tick N` lines of a log, in order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            l.split_once(" tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect()
}

const TICKER: &str =
    "#!/bin/sh\necho hello\ni=0\nwhile true; do echo tick $i; i=$((i+1)); sleep 0.05; done\n";

fn a_service_keeps_its_pid_and_its_log_across_kill_term_and_an_upgrade_of_packd(sup: Supervisor) {
    let mut env = Env::stopped_under(sup);
    env.start();
    env.install_base();
    install(
        &env,
        "surv",
        "  tick:\n    command: bin/tick\n    daemon: simple\n",
        &[("bin/tick", TICKER)],
    );
    let (active, pid) = service(&env, "surv.tick");
    assert_eq!(active, "active");
    let pid = pid.expect("a pid");
    let procs = env.processes("bin/tick");
    assert_eq!(procs.len(), 1, "{procs:?}");
    if sup == Supervisor::Systemd {
        // Its monitor is a transient unit, named for the service.
        let journal = env.systemd_log();
        assert!(
            journal.contains("StartTransientUnit packd-")
                && journal.contains("-surv.tick.service fail"),
            "{journal}"
        );
    }

    // kill -9: the service goes on, and so does its log, with nobody but its monitor.
    env.kill();
    let before = ticks(&log(&env, "surv.tick.log")).len();
    eventually("it keeps ticking into its log while packd is dead", || {
        ticks(&log(&env, "surv.tick.log")).len() > before + 5
    });
    env.start();
    eventually("it is taken over", || {
        service(&env, "surv.tick").0 == "active"
    });
    assert_eq!(service(&env, "surv.tick").1, Some(pid), "same pid");
    assert_eq!(
        env.processes("bin/tick"),
        procs,
        "never restarted nor duplicated"
    );

    // kill -TERM: the same.
    env.stop();
    std::thread::sleep(Duration::from_millis(300));
    env.start();
    eventually("it is taken over", || {
        service(&env, "surv.tick").0 == "active"
    });
    assert_eq!(service(&env, "surv.tick").1, Some(pid));

    // An upgrade: another packd binary takes over.
    env.stop();
    let upgraded = env.dir.path().join("packd-upgraded");
    fs::copy(packd_tests::bin_dir().join("packd"), &upgraded).unwrap();
    env.start_binary(&upgraded);
    eventually("it is taken over", || {
        service(&env, "surv.tick").0 == "active"
    });
    assert_eq!(service(&env, "surv.tick").1, Some(pid));
    assert_eq!(env.processes("bin/tick"), procs);

    // Its log goes on under the new packd…
    let so_far = ticks(&log(&env, "surv.tick.log")).len();
    eventually("it keeps ticking under the upgraded packd", || {
        ticks(&log(&env, "surv.tick.log")).len() > so_far + 5
    });
    // …no line was lost, and the service started once.
    let text = log(&env, "surv.tick.log");
    let seen = ticks(&text);
    let expected: Vec<u64> = (0..seen.len() as u64).collect();
    assert_eq!(seen, expected, "a gap in the log:\n{text}");
    assert_eq!(text.matches(" hello\n").count(), 1, "{text}");

    // The packd that took it over stops it as its own.
    env.pack(["stop", "surv"]).ok();
    assert_eq!(service(&env, "surv.tick").0, "inactive");
    eventually("its processes are gone", || {
        env.processes("bin/tick").is_empty()
    });
    assert!(log(&env, "surv.tick.log").contains("[packd] stopped"));
}

fn services_that_died_while_packd_was_down_follow_their_restart_condition(sup: Supervisor) {
    let mut env = Env::stopped_under(sup);
    env.start();
    env.install_base();
    install(
        &env,
        "gone",
        "  again:\n    command: bin/tick\n    daemon: simple\n    restart-condition: on-failure\n\
         \x20 once:\n    command: bin/tick\n    daemon: simple\n    restart-condition: never\n",
        &[("bin/tick", TICKER)],
    );
    let (_, again) = service(&env, "gone.again");
    let (_, once) = service(&env, "gone.once");
    env.kill();
    // Both die (SIGKILL to their sandboxes) while nobody supervises them.
    for pid in [again, once] {
        let pid = pid.expect("a pid") as i32;
        // SAFETY: signalling a pid this test's daemon reported as its service's.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    eventually("both are gone", || env.processes("bin/tick").is_empty());
    env.start();
    // on-failure: started again, with a new pid.
    eventually("again is back", || {
        service(&env, "gone.again").0 == "active"
    });
    let (_, pid) = service(&env, "gone.again");
    assert!(pid.is_some() && pid != again, "{pid:?} {again:?}");
    eventually("again runs", || env.processes("bin/tick").len() == 1);
    assert_eq!(log(&env, "gone.again.log").matches(" hello\n").count(), 2);
    // never: it stays down, failed (SIGKILL is no clean end).
    eventually("once is failed", || {
        service(&env, "gone.once").0 == "failed"
    });
    let text = log(&env, "gone.once.log");
    assert_eq!(text.matches(" hello\n").count(), 1, "{text}");
    assert!(
        text.contains("found ended (status 137) while packd was away"),
        "{text}"
    );
}

fn a_crash_loop_ends_failed_and_leaves_packd_idle(sup: Supervisor) {
    let mut env = Env::stopped_under(sup);
    env.start();
    env.install_base();
    install(
        &env,
        "loop",
        "  crash:\n    command: bin/crash\n    daemon: simple\n    restart-condition: always\n    restart-delay: 10ms\n",
        &[("bin/crash", "#!/bin/sh\necho crashing\nexit 3\n")],
    );
    eventually("it has failed", || {
        service(&env, "loop.crash").0 == "failed"
    });
    let text = log(&env, "loop.crash.log");
    assert_eq!(text.matches(" crashing\n").count(), 5, "{text}");
    assert!(text.contains("not restarting for 30s"), "{text}");
    // While it waits out its backoff, packd does nothing: ~0 CPU over two seconds (a busy
    // loop would use ~200 ticks; this allows 10, for the API calls around it).
    let pid = env.daemon_pid().unwrap();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(
        used <= 10,
        "packd used {used} ticks of CPU while a service was failed"
    );
    assert_eq!(service(&env, "loop.crash").0, "failed");
    assert_eq!(
        log(&env, "loop.crash.log").matches(" crashing\n").count(),
        5
    );
}

macro_rules! under_both_supervisors {
    ($($test:ident),* $(,)?) => {
        mod native {
            $(#[test]
            fn $test() {
                packd_tests::require_root!();
                super::$test(packd_tests::Supervisor::Native);
            })*
        }
        mod systemd {
            $(#[test]
            fn $test() {
                packd_tests::require_root!();
                super::$test(packd_tests::Supervisor::Systemd);
            })*
        }
    };
}

under_both_supervisors!(
    a_service_keeps_its_pid_and_its_log_across_kill_term_and_an_upgrade_of_packd,
    services_that_died_while_packd_was_down_follow_their_restart_condition,
    a_crash_loop_ends_failed_and_leaves_packd_idle,
);

#[test]
fn packd_under_systemd_without_a_bus_says_so_and_does_not_start() {
    packd_tests::require_root!();
    let env = Env::stopped();
    let bus = format!("unix:path={}", env.dir.path().join("no-bus").display());
    let err = env.dir.path().join("stderr");
    let mut packd = std::process::Command::new(packd_tests::bin_dir().join("packd"))
        .args(["--supervisor", "systemd", "--systemd-bus", &bus, "--root"])
        .arg(&env.root)
        .arg("--confine-helper")
        .arg(packd_tests::bin_dir().join("pack-confine"))
        .arg("--pack-binary")
        .arg(packd_tests::pack_bin())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // It must give up at once; one that serves anyway is stopped (by pid) and fails the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = packd.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline || env.socket.exists() {
            let _ = packd.kill();
            let _ = packd.wait();
            panic!(
                "packd started without a bus:\n{}",
                fs::read_to_string(&err).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success());
    let err = fs::read_to_string(&err).unwrap();
    assert!(
        err.contains(&format!("cannot reach systemd on {bus}"))
            && err.contains("--supervisor packd"),
        "{err}"
    );
}
