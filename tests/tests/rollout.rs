//! Progressive releases with twenty real daemons (each its own root) on loopback: a healthy
//! rollout goes through every wave to an ordinary release; one whose check-health fails halts
//! by itself in its first wave, no device outside that wave is offered it, and the devices that
//! took it run the previous revision again.

use std::path::PathBuf;
use std::time::Duration;

use packd_tests::store::{StoreServer, hello_pack};
use packd_tests::{Env, require_root, within};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A `hello` of `version`; with `failing`, its check-health hook fails.
fn hello(dir: &std::path::Path, env: &Env, version: &str, failing: bool) -> PathBuf {
    let hook = failing.then_some(("check-health", "#!/bin/sh\necho unwell >&2\nexit 1\n"));
    hello_pack(dir, env, version, hook)
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

fn rollout(store: &StoreServer) -> serde_json::Value {
    json(&store.publish(&["rollout", "hello", "--json"]).ok())[0].clone()
}

const DEVICES: usize = 20;

#[test]
fn twenty_devices_roll_out_wave_by_wave_and_a_failing_release_halts_by_itself() {
    require_root!();
    let store = StoreServer::with_base();
    let work = tempfile::Builder::new()
        .prefix("packd-e2e-rollout-")
        .tempdir()
        .unwrap();
    let devices: Vec<Env> = (0..DEVICES).map(|_| Env::new()).collect();
    let up = |f: &PathBuf| store.publish(&["upload", f.to_str().unwrap()]).ok();
    let v1 = hello(work.path(), &devices[0], "1.0", false);
    store
        .publish(&["upload", v1.to_str().unwrap(), "--release", "stable"])
        .ok();
    let root = store.root_assert();
    std::thread::scope(|s| {
        for d in &devices {
            let root = root.clone();
            let url = store.url.clone();
            s.spawn(move || {
                d.pack([
                    "remote",
                    "add",
                    "acme",
                    &url,
                    "--trust",
                    root.to_str().unwrap(),
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
            });
        }
    });
    let id = |d: &Env| {
        d.pack(["get", "system", "device.id"])
            .ok()
            .trim()
            .to_string()
    };
    let revisions = || devices.iter().map(revision).collect::<Vec<_>>();
    let at = |rev: &str| revisions().iter().filter(|r| *r == rev).count();

    // Healthy: the canary alone first; half of them when the second wave opens; then all, and
    // an ordinary release.
    up(&hello(work.path(), &devices[0], "2.0", false));
    let out = store
        .publish(&[
            "release",
            "hello",
            "2",
            "stable",
            "--progressive",
            "--waves",
            "0.01%:15s,50%:8s,100%:2s",
            "--canary",
            &id(&devices[0]),
        ])
        .ok();
    assert!(out.contains("rolling out hello revision 2"), "{out}");
    // While the first wave is open, only the canary may have it (revisions are read before
    // the wave, so a wave that opened meanwhile cannot be mistaken for the first).
    let mut canary_in_time = false;
    let mut waves_seen = std::collections::BTreeSet::new();
    loop {
        let revs = revisions();
        let wave = rollout(&store)["wave"].as_u64().unwrap_or(0);
        waves_seen.insert(wave);
        if wave != 1 {
            break;
        }
        let took: Vec<usize> = (0..DEVICES).filter(|i| revs[*i] == "2").collect();
        assert!(
            took.is_empty() || took == [0],
            "offered outside the open wave: {revs:?}"
        );
        canary_in_time |= took == [0];
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        canary_in_time,
        "the canary did not refresh while its wave soaked"
    );
    within(60, "the rollout is done", || {
        let r = rollout(&store);
        waves_seen.insert(r["wave"].as_u64().unwrap_or(0));
        r["state"] == "done"
    });
    assert_eq!(waves_seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    within(30, "every device refreshes", || at("2") == DEVICES);
    // Each device reports once its change has finished (after the revision shows).
    within(30, "every device reported healthy", || {
        let r = rollout(&store);
        let healthy: u64 = (0..3)
            .map(|w| r["waves"][w]["healthy"].as_u64().unwrap())
            .sum();
        healthy == DEVICES as u64
    });
    let r = rollout(&store);
    assert_eq!(r["waves"][0]["healthy"], 1, "{r}");
    let status = json(&store.publish(&["status", "hello", "--json"]).ok());
    assert_eq!(status["channels"][0]["revision"], 2, "{status}");

    // Failing check-health: two canaries take it, fail and go back; the rollout halts; none
    // of the other eighteen is ever offered it.
    up(&hello(work.path(), &devices[0], "3.0", true));
    let canaries = format!("{},{}", id(&devices[0]), id(&devices[1]));
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
            &canaries,
            "--halt-min",
            "2",
        ])
        .ok();
    within(60, "the rollout halts", || {
        rollout(&store)["state"] == "halted"
    });
    let r = rollout(&store);
    assert!(r["why"].as_str().unwrap().contains("2 of 2 devices"), "{r}");
    assert_eq!(r["waves"][0]["offered"], 2, "{r}");
    assert_eq!(r["waves"][0]["reverted"], 2, "{r}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(at("2"), DEVICES, "{:?}", revisions());
    let tried = |d: &Env| {
        let changes = json(&d.pack(["changes", "--json"]).ok());
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["summary"].as_str().unwrap_or("").contains("(3)"))
    };
    assert!(
        tried(&devices[0]) && tried(&devices[1]),
        "the canaries' tries are not in their changes"
    );
    for (i, d) in devices.iter().enumerate().skip(2) {
        assert!(!tried(d), "device {i}, outside the wave, was offered 3");
    }
    let text = store.publish(&["rollout", "hello"]).ok();
    assert!(text.contains(": halted: 2 of 2"), "{text}");

    // Halted by hand, then rolled back: the device that took it goes back to 2.
    up(&hello(work.path(), &devices[0], "4.0", false));
    store
        .publish(&[
            "release",
            "hello",
            "4",
            "stable",
            "--progressive",
            "--waves",
            "0.01%:1h,100%",
            "--canary",
            &id(&devices[2]),
        ])
        .ok();
    within(30, "the canary takes 4", || revision(&devices[2]) == "4");
    let out = store
        .publish(&["rollout", "hello", "halt", "--channel", "stable"])
        .ok();
    assert!(out.contains("is halted"), "{out}");
    store.publish(&["release", "hello", "2", "stable"]).ok();
    assert_eq!(rollout(&store)["state"], "superseded");
    within(30, "the canary is rolled back to 2", || {
        revision(&devices[2]) == "2"
    });
    assert_eq!(at("2"), DEVICES, "{:?}", revisions());
}
