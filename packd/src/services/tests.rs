use super::*;

fn app(after: &[&str], before: &[&str]) -> App {
    let yaml = "name: pk\nversion: '1'\nbase: busybox\napps:\n  x:\n    command: bin/x\n    daemon: simple\n";
    let meta = packfmt::PackMeta::from_yaml(yaml.as_bytes(), Default::default()).unwrap();
    let mut a = meta.apps["x"].clone();
    a.after = after.iter().map(|s| s.to_string()).collect();
    a.before = before.iter().map(|s| s.to_string()).collect();
    a
}

#[test]
fn services_start_after_what_they_are_after_and_before_what_they_are_before() {
    let (db, web, cache, lone) = (
        "db".to_string(),
        "web".to_string(),
        "cache".to_string(),
        "lone".to_string(),
    );
    let (a_db, a_web, a_cache, a_lone) = (
        app(&[], &[]),
        app(&["db"], &[]),
        app(&[], &["db"]),
        app(&[], &[]),
    );
    let services: BTreeMap<&String, &App> = BTreeMap::from([
        (&web, &a_web),
        (&db, &a_db),
        (&cache, &a_cache),
        (&lone, &a_lone),
    ]);
    let got = order(&services);
    let pos = |n: &str| got.iter().position(|x| x == n).unwrap();
    assert!(
        pos("cache") < pos("db") && pos("db") < pos("web"),
        "{got:?}"
    );
    assert_eq!(got.len(), 4);
}

#[test]
fn restart_conditions_follow_systemd() {
    use RestartCondition::*;
    let segv = 128 + libc::SIGSEGV;
    let term = 128 + libc::SIGTERM;
    // (condition, clean exit 0, exit 1, killed by SIGSEGV, stopped by SIGTERM)
    let table = [
        (Never, false, false, false, false),
        (Always, true, true, true, true),
        (OnSuccess, true, false, false, true),
        (OnFailure, false, true, true, false),
        (OnAbnormal, false, false, true, false),
        (OnAbort, false, false, true, false),
    ];
    for (c, ok, fail, crash, stopped) in table {
        assert_eq!(restarts(c, 0), ok, "{c:?} on 0");
        assert_eq!(restarts(c, 1), fail, "{c:?} on 1");
        assert_eq!(restarts(c, segv), crash, "{c:?} on SIGSEGV");
        assert_eq!(restarts(c, term), stopped, "{c:?} on SIGTERM");
    }
}
