//! Progressive releases with real daemons: a healthy rollout goes through its waves to an
//! ordinary release; a failing one halts by itself in its first wave, no device outside that
//! wave is offered it, and the device that took it runs the previous revision again.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use packd_tests::store::StoreServer;
use packd_tests::{Env, busybox_base, require_root, write_pack_dir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn hello(dir: &std::path::Path, env: &Env, version: &str, failing: bool) -> PathBuf {
    let parent = dir.join(format!("src-{version}"));
    fs::create_dir_all(&parent).unwrap();
    let mut files = vec![("bin/hello", format!("#!/bin/sh\necho hello {version}\n"))];
    if failing {
        files.push(("meta/hooks/post-refresh", "#!/bin/sh\nexit 1\n".into()));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let src = write_pack_dir(
        &parent,
        "hello",
        &format!(
            "name: hello\nversion: '{version}'\nbase: busybox\napps:\n  hello:\n    command: bin/hello\n"
        ),
        &files,
    );
    let built = env.build(&src);
    let kept = dir.join(format!("hello_{version}.pack"));
    fs::rename(built, &kept).unwrap();
    kept
}

fn revision(env: &Env) -> String {
    let list = json(&env.pack(["list", "--json"]).ok());
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hello")
        .and_then(|p| p["revision"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn within(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rollout(store: &StoreServer) -> serde_json::Value {
    json(&store.publish(&["rollout", "hello", "--json"]).ok())[0].clone()
}

#[test]
fn a_rollout_goes_wave_by_wave_and_a_failing_one_halts_by_itself() {
    require_root!();
    let store = StoreServer::start();
    let work = tempfile::Builder::new()
        .prefix("packd-e2e-rollout-")
        .tempdir()
        .unwrap();
    let devices: Vec<Env> = (0..3).map(|_| Env::new()).collect();
    store.publish(&["register", "busybox"]).ok();
    store.publish(&["register", "hello"]).ok();
    store
        .publish(&[
            "upload",
            busybox_base().to_str().unwrap(),
            "--release",
            "stable",
        ])
        .ok();
    let up = |f: &PathBuf| store.publish(&["upload", f.to_str().unwrap()]).ok();
    let v1 = hello(work.path(), &devices[0], "1.0", false);
    store
        .publish(&["upload", v1.to_str().unwrap(), "--release", "stable"])
        .ok();
    for d in &devices {
        d.pack([
            "remote",
            "add",
            "acme",
            &store.url,
            "--trust",
            store.root_assert().to_str().unwrap(),
        ])
        .ok();
        d.pack(["install", "hello"]).ok();
        d.pack([
            "set",
            "system",
            "refresh.health-window=0s",
            "refresh.timer=every 1s",
        ])
        .ok();
    }
    let canary = devices[0]
        .pack(["get", "system", "device.id"])
        .ok()
        .trim()
        .to_string();
    let revisions = || devices.iter().map(revision).collect::<Vec<_>>();

    // Healthy: the canary first; the rest when the second wave opens; then an ordinary release.
    up(&hello(work.path(), &devices[0], "2.0", false));
    let out = store
        .publish(&[
            "release",
            "hello",
            "2",
            "stable",
            "--progressive",
            "--waves",
            "0.01%:4s,100%:1s",
            "--canary",
            &canary,
        ])
        .ok();
    assert!(out.contains("rolling out hello revision 2"), "{out}");
    within(20, "the canary refreshes", || revision(&devices[0]) == "2");
    assert_eq!(
        revisions()[1..],
        ["1", "1"],
        "offered outside the open wave"
    );
    within(30, "every device refreshes", || {
        revisions() == ["2", "2", "2"]
    });
    within(10, "the rollout is done", || {
        rollout(&store)["state"] == "done"
    });
    let r = rollout(&store);
    assert_eq!(r["waves"][0]["healthy"], 1, "{r}");
    assert_eq!(r["waves"][1]["healthy"], 2, "{r}");
    let status = json(&store.publish(&["status", "hello", "--json"]).ok());
    assert_eq!(status["channels"][0]["revision"], 2, "{status}");

    // Failing: the canary takes it, fails, goes back; the rollout halts; nobody else sees it.
    up(&hello(work.path(), &devices[0], "3.0", true));
    store
        .publish(&[
            "release",
            "hello",
            "3",
            "stable",
            "--progressive",
            "--waves",
            "0.01%:1h,100%",
            "--canary",
            &canary,
            "--halt-min",
            "1",
        ])
        .ok();
    within(30, "the rollout halts", || {
        rollout(&store)["state"] == "halted"
    });
    let r = rollout(&store);
    assert!(r["why"].as_str().unwrap().contains("1 of 1 devices"), "{r}");
    assert_eq!(r["waves"][0]["offered"], 1, "{r}");
    assert_eq!(r["waves"][0]["reverted"], 1, "{r}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(revisions(), ["2", "2", "2"]);
    let tried = |d: &Env| {
        let changes = json(&d.pack(["changes", "--json"]).ok());
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["summary"].as_str().unwrap_or("").contains("(3)"))
    };
    assert!(
        tried(&devices[0]),
        "the canary's try at 3 is not in its changes"
    );
    for d in &devices[1..] {
        assert!(!tried(d), "a device outside the wave was offered 3");
    }
    let text = store.publish(&["rollout", "hello"]).ok();
    assert!(text.contains(": halted: 1 of 1"), "{text}");
}
