//! The service manager against a fake supervisor, fake sandboxes and a fake clock: start,
//! restart policy, start limit and backoff, stop, and taking over after a restart — no root,
//! no processes.

use std::sync::Mutex;
use std::time::Duration;

use confine::proto::{Exec, ExitRecord, MonitorCommand, Report};

use super::supervisor::UnitFiles;
use super::supervisor::fake::{Behaviour, FakeSupervisor};
use super::*;
use crate::state::testing::with_pack;
use crate::system::fake::FakeClock;

#[derive(Default)]
struct FakeSandboxes {
    calls: Mutex<Vec<String>>,
}

impl FakeSandboxes {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl ServiceSandboxes for FakeSandboxes {
    fn prepare(
        &self,
        pack: &str,
        app: &str,
        _service: ServiceLaunch,
    ) -> std::result::Result<ServiceSandbox, LaunchError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(format!("prepare {pack}.{app}"));
        let spec = serde_json::from_value(serde_json::json!({
            "label": format!("pack.{pack}.{app}"), "root": "/base", "mounts": [],
            "namespaces": {"pid": true, "ipc": true, "uts": true, "net": true, "cgroup": true},
            "hostname": "h",
            "process": {"argv": ["/bin/x"], "env": [], "cwd": "/", "fallback-cwd": "/", "uid": 0, "gid": 0}
        }))
        .unwrap();
        Ok(ServiceSandbox {
            spec,
            cgroup: Some(PathBuf::from(format!("packd/test/sandbox.{}", calls.len()))),
            net: None,
        })
    }

    fn adopt(&self, pack: &str, cgroup: &Path) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("adopt {pack} {}", cgroup.display()));
    }

    fn release(&self, pack: &str, cgroup: &Path) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("release {pack} {}", cgroup.display()));
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    paths: Paths,
    services: Arc<ServiceManager>,
    supervisor: Arc<FakeSupervisor>,
    sandboxes: Arc<FakeSandboxes>,
    clock: FakeClock,
}

const PACK: &str = "name: svc\nversion: '1'\nbase: core\napps:\n  a: {command: bin/a, daemon: simple, restart-delay: 100ms}\n";

fn setup(yaml: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    std::fs::create_dir_all(paths.lib_dir()).unwrap();
    let store = Arc::new(Store::open(&paths.state_file()).unwrap());
    store
        .update(|s| {
            with_pack(s, "name: core\nversion: '1'\ntype: base\n");
            with_pack(s, yaml);
            Ok::<_, crate::state::StateError>(())
        })
        .unwrap();
    let supervisor = Arc::new(FakeSupervisor::default());
    let sandboxes = Arc::new(FakeSandboxes::default());
    let clock = FakeClock::default();
    let services = ServiceManager::new(ServiceManagerParts {
        store,
        paths: paths.clone(),
        sandboxes: sandboxes.clone(),
        launcher: None,
        supervisor: supervisor.clone(),
        clock: Arc::new(clock.clone()),
        runtime: tokio::runtime::Handle::current(),
        queue: Default::default(),
    });
    Setup {
        _dir: dir,
        paths,
        services,
        supervisor,
        sandboxes,
        clock,
    }
}

/// Waits (up to 5 s of real time) until `what` holds, letting the tasks run.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..5000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

fn a() -> Vec<String> {
    vec!["a".to_string()]
}

#[tokio::test]
async fn a_started_service_is_active_under_its_monitor_and_is_not_started_twice() {
    let s = setup(PACK);
    s.services.start("svc", None).await.unwrap();
    assert_eq!(s.services.state("svc", "a"), Active::Active);
    assert_eq!(s.services.pid("svc", "a"), Some(s.supervisor.last().pid));
    assert_eq!(s.sandboxes.calls(), ["prepare svc.a"]);
    s.services.start("svc", None).await.unwrap();
    assert_eq!(s.supervisor.starts(), 1, "already running: left alone");
    // packd's record of the run is on disk for a packd that comes after.
    let rec = records::UnitRecord::read(&UnitFiles::new(&s.paths, "svc", "a").record).unwrap();
    assert_eq!(rec.cgroup.unwrap(), Path::new("packd/test/sandbox.1"));
}

#[tokio::test]
async fn stopping_sends_sigterm_through_the_monitor_and_takes_the_cgroup_down() {
    let s = setup(PACK);
    s.services.start("svc", None).await.unwrap();
    let monitor = s.supervisor.last();
    s.services.stop("svc", None).await.unwrap();
    assert_eq!(s.services.state("svc", "a"), Active::Inactive);
    assert_eq!(
        monitor.commands(),
        [MonitorCommand::Signal {
            signal: libc::SIGTERM
        }]
    );
    assert!(
        s.sandboxes
            .calls()
            .contains(&"release svc packd/test/sandbox.1".to_string())
    );
    assert!(!UnitFiles::new(&s.paths, "svc", "a").record.exists());
}

#[tokio::test]
async fn a_crash_loop_is_restarted_then_failed_at_the_start_limit_then_retried_after_a_backoff() {
    let s = setup(PACK);
    *s.supervisor.next.lock().unwrap() = vec![Behaviour::Exits(1); 20];
    s.services.start("svc", Some(&a())).await.unwrap();
    // Each restart waits its restart-delay (100 ms) on the clock.
    for n in 2..=unit::START_LIMIT {
        eventually("a restart is due", || s.clock.sleepers() == 1).await;
        s.clock.advance(Duration::from_millis(100));
        eventually("it restarted", || s.supervisor.starts() == n).await;
    }
    // The sixth start would be one too many.
    eventually("a restart is due", || s.clock.sleepers() == 1).await;
    s.clock.advance(Duration::from_millis(100));
    eventually("it failed at the start limit", || {
        s.services.state("svc", "a") == Active::Failed
    })
    .await;
    let log = std::fs::read_to_string(s.paths.log_file("svc", "a")).unwrap();
    assert!(log.contains("not restarting for 30s"), "{log}");
    // Nothing runs, and nothing is tried, until the backoff is over…
    eventually("the backoff waits", || s.clock.sleepers() == 1).await;
    s.clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(s.supervisor.starts(), unit::START_LIMIT);
    // …then it is tried again.
    s.clock.advance(Duration::from_secs(1));
    eventually("it was tried again", || {
        s.supervisor.starts() == unit::START_LIMIT + 1
    })
    .await;
}

#[tokio::test]
async fn a_service_that_cannot_start_fails_its_start_with_the_step() {
    let s = setup(PACK);
    *s.supervisor.next.lock().unwrap() = vec![Behaviour::FailsToStart];
    let e = s.services.start_all_or_none("svc", None).await.unwrap_err();
    assert!(e.to_string().contains("pivot-root"), "{e}");
    assert_eq!(s.services.state("svc", "a"), Active::Failed);
}

fn record(s: &Setup) -> records::UnitRecord {
    let rec = records::UnitRecord {
        pack: "svc".into(),
        app: "a".into(),
        revision: packfmt::Revision::Local(1),
        cgroup: Some("packd/test/sandbox.old".into()),
        supervisor: "fake".into(),
        started_at: 0,
    };
    rec.write(&UnitFiles::new(&s.paths, "svc", "a")).unwrap();
    rec
}

#[tokio::test]
async fn a_service_that_outlived_packd_is_taken_over_not_started_again() {
    let s = setup(PACK);
    record(&s);
    let monitor = s.supervisor.outlived("svc.a");
    let alive = s.services.adopt().await;
    assert_eq!(
        alive.into_iter().collect::<Vec<_>>(),
        [PathBuf::from("packd/test/sandbox.old")]
    );
    eventually("it is active", || {
        s.services.state("svc", "a") == Active::Active
    })
    .await;
    assert_eq!(s.services.pid("svc", "a"), Some(monitor.pid));
    assert_eq!(s.sandboxes.calls(), ["adopt svc packd/test/sandbox.old"]);
    s.services.start("svc", None).await.unwrap();
    assert_eq!(s.supervisor.starts(), 0, "never duplicated");
    // Its end is seen like any other: restarted (on-failure) after its delay.
    monitor.exit(3);
    eventually("a restart is due", || s.clock.sleepers() == 1).await;
    s.clock.advance(Duration::from_millis(100));
    eventually("it was restarted", || s.supervisor.starts() == 1).await;
}

fn ended(s: &Setup, code: i32) {
    let files = UnitFiles::new(&s.paths, "svc", "a");
    let rec = ExitRecord {
        name: files.name.clone(),
        code,
        app_exit: Some(code),
        exec: Exec::Started {
            report: Report::default(),
        },
        ready: false,
        ended_at: 0,
    };
    std::fs::write(&files.exit_record, serde_json::to_vec(&rec).unwrap()).unwrap();
}

#[tokio::test]
async fn a_service_that_died_while_packd_was_away_follows_its_restart_condition() {
    let s = setup(PACK);
    record(&s);
    ended(&s, 1);
    let alive = s.services.adopt().await;
    assert!(alive.is_empty());
    assert!(
        s.sandboxes
            .calls()
            .contains(&"release svc packd/test/sandbox.old".to_string())
    );
    eventually("a restart is due", || s.clock.sleepers() == 1).await;
    s.clock.advance(Duration::from_millis(100));
    eventually("it was restarted", || {
        s.services.state("svc", "a") == Active::Active
    })
    .await;
    assert_eq!(s.supervisor.starts(), 1);

    // A clean exit is not a failure: on-failure leaves it stopped.
    let s = setup(PACK);
    record(&s);
    ended(&s, 0);
    s.services.adopt().await;
    eventually("it is inactive", || {
        s.services.state("svc", "a") == Active::Inactive
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(s.supervisor.starts(), 0);
}

#[tokio::test]
async fn a_supervising_task_that_fails_leaves_no_stale_state_and_its_service_is_taken_over() {
    let s = setup(PACK);
    s.services.start("svc", Some(&a())).await.unwrap();
    let first = s.supervisor.last();
    // The service runs on (its monitor outlives the task): attach will find it.
    let again = s.supervisor.outlived("svc.a");
    first.break_its_task();
    eventually("it is taken over again", || {
        s.services.pid("svc", "a") == Some(again.pid)
    })
    .await;
    assert_eq!(s.services.state("svc", "a"), Active::Active);
    assert_eq!(s.supervisor.starts(), 1, "taken over, not started again");
    // Without a monitor to find, the restart condition applies (on-failure: a restart).
    again.break_its_task();
    eventually("a restart is due", || s.clock.sleepers() == 1).await;
    assert_ne!(
        s.services.state("svc", "a"),
        Active::Active,
        "never a stale active"
    );
    s.clock.advance(Duration::from_millis(100));
    eventually("it was started again", || s.supervisor.starts() == 2).await;
    eventually("it is active", || {
        s.services.state("svc", "a") == Active::Active
    })
    .await;
    let log = std::fs::read_to_string(s.paths.log_file("svc", "a")).unwrap();
    assert!(log.contains("after its supervising task failed"), "{log}");
}
