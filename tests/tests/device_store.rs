//! A real packd installing from a real `pack-store` on loopback: remotes, install by name
//! with its base, channels and fall-through, refresh by hand and by timer, holds, switch,
//! revocation, key rotation, a failing revision skipped and reported; and, through a proxy
//! in the middle, every bad answer refused with the device left exactly as it was.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use packd_tests::proxy::{Mode, Proxy};
use packd_tests::store::{StoreServer, hello_pack, pack_store};
use packd_tests::{Env, require_root, within, write_pack_dir};

/// A `hello` of `version`; with `failing`, its post-refresh hook fails.
fn hello(env: &Env, version: &str, failing: bool) -> PathBuf {
    let hook = failing.then_some(("post-refresh", "#!/bin/sh\necho broken >&2\nexit 1\n"));
    hello_pack(env.dir.path(), env, version, hook)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn upload(store: &StoreServer, file: &Path, channels: &str) -> u64 {
    let out = store.publish(&[
        "upload",
        file.to_str().unwrap(),
        "--release",
        channels,
        "--json",
    ]);
    json(&out.ok())["revision"].as_u64().unwrap()
}

/// (revision, tracking channel) of an installed pack.
fn installed(env: &Env, name: &str) -> Option<(String, String)> {
    let list = json(&env.pack(["list", "--json"]).ok());
    list.as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| {
            (
                p["revision"].as_str().unwrap_or("").to_string(),
                p["tracking"].as_str().unwrap_or("").to_string(),
            )
        })
}

fn revision(env: &Env, name: &str) -> String {
    installed(env, name).map(|(r, _)| r).unwrap_or_default()
}

fn add_remote(env: &Env, name: &str, url: &str, store: &StoreServer) {
    let out = env
        .pack([
            "remote",
            "add",
            name,
            url,
            "--trust",
            store.root_assert().to_str().unwrap(),
        ])
        .ok();
    assert!(out.contains(&format!("remote {name} added")), "{out}");
}

#[test]
fn a_device_installs_by_name_and_keeps_itself_up_to_date() {
    require_root!();
    let env = Env::new();
    let store = StoreServer::with_base();
    let v1 = hello(&env, "1.0", false);
    let v2 = hello(&env, "2.0", false);
    assert_eq!(upload(&store, &v1, "stable"), 1);
    assert_eq!(upload(&store, &v2, "beta"), 2);
    env.pack(["set", "system", "refresh.health-window=0s"]).ok();
    let id = env.pack(["get", "system", "device.id"]).ok();
    assert_eq!(id.trim().len(), 32, "{id}");
    let err = env.pack(["set", "system", "device.id=mine"]).fails(1);
    assert!(err.contains("read-only"), "{err}");
    add_remote(&env, "acme", &store.url, &store);
    let remotes = json(&env.pack(["remote", "list", "--json"]).ok());
    assert_eq!(remotes[0]["name"], "acme");

    // Search and info come from the store.
    let found = json(&env.pack(["find", "hello", "--json"]).ok());
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["name"], "hello");
    let info = json(&env.pack(["info", "hello", "--json"]).ok());
    assert!(info["revision"].is_null(), "not installed: {info}");
    let channels = info["store"]["channels"].as_array().unwrap();
    assert!(
        channels
            .iter()
            .any(|c| c["channel"] == "latest/beta" && c["revision"] == 2)
    );

    // Install by name pulls in the base, from the same store.
    let out = env.pack(["install", "hello"]).ok();
    assert!(out.contains("hello 1.0 (1) installed"), "{out}");
    assert_eq!(installed(&env, "busybox").unwrap().0, "1");
    assert_eq!(
        installed(&env, "hello").unwrap(),
        ("1".into(), "latest/stable".into())
    );
    assert_eq!(env.pack(["run", "hello"]).ok(), "hello 1.0\n");
    let known = json(
        &env.pack(["known", "pack-revision", "pack-revision=1", "--json"])
            .ok(),
    );
    assert_eq!(
        known.as_array().unwrap().len(),
        2,
        "busybox's and hello's: {known}"
    );
    env.pack(["install", "hello"]).fails(1);

    // candidate is empty: it follows stable, so nothing changes.
    env.pack(["switch", "hello", "--channel", "candidate"]).ok();
    assert_eq!(installed(&env, "hello").unwrap().1, "candidate");
    let err = env.pack(["refresh", "hello"]);
    assert_eq!(err.code, 0, "{err:?}");
    assert_eq!(revision(&env, "hello"), "1");

    // By hand, to beta.
    let pending = json(&env.pack(["refresh", "--list", "--json"]).ok());
    assert!(pending.as_array().unwrap().is_empty(), "{pending}");
    let out = env.pack(["refresh", "hello", "--channel", "beta"]).ok();
    assert!(out.contains("hello 2.0 (2) refreshed"), "{out}");
    assert_eq!(
        installed(&env, "hello").unwrap(),
        ("2".into(), "latest/beta".into())
    );
    assert_eq!(env.pack(["run", "hello"]).ok(), "hello 2.0\n");

    // By the timer.
    let v3 = hello(&env, "3.0", false);
    assert_eq!(upload(&store, &v3, "beta"), 3);
    env.pack(["set", "system", "refresh.timer=every 2s"]).ok();
    within(30, "the timer refreshes hello to 3", || {
        revision(&env, "hello") == "3"
    });
    let time = json(&env.pack(["refresh", "--time", "--json"]).ok());
    assert_eq!(time["timer"], "every 2s");
    assert!(
        time["last"].is_string() && time["next"].is_string(),
        "{time}"
    );

    // Held: the timer leaves it alone until unheld.
    env.pack(["refresh", "--hold"]).ok();
    let v4 = hello(&env, "4.0", false);
    assert_eq!(upload(&store, &v4, "beta"), 4);
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(revision(&env, "hello"), "3");
    let time = json(&env.pack(["refresh", "--time", "--json"]).ok());
    assert_eq!(time["holds"]["*"], "forever");
    let pending = json(&env.pack(["refresh", "--list", "--json"]).ok());
    assert_eq!(pending[0]["revision"], 4);
    assert_eq!(pending[0]["held"], "forever");
    env.pack(["refresh", "--unhold"]).ok();
    within(30, "the timer refreshes hello to 4", || {
        revision(&env, "hello") == "4"
    });

    // Revoked: the device refreshes away from it, to the revision it still has.
    store.publish(&["revoke", "hello", "4"]).ok();
    within(30, "hello goes back to 3", || {
        revision(&env, "hello") == "3"
    });

    // A new signing key; then the old one revoked: the device still trusts the store.
    let old_key =
        json(&env.pack(["known", "account-key", "--json"]).ok())[0]["headers"]["public-key-id"]
            .as_str()
            .unwrap()
            .to_string();
    let dir = store.store.to_str().unwrap();
    pack_store(None, None, &["key", "rotate", dir]).ok();
    let v5 = hello(&env, "5.0", false);
    assert_eq!(upload(&store, &v5, "beta"), 5);
    within(30, "hello refreshes to 5", || {
        revision(&env, "hello") == "5"
    });
    pack_store(None, None, &["key", "revoke", dir, &old_key]).ok();
    let v6 = hello(&env, "6.0", false);
    assert_eq!(upload(&store, &v6, "beta"), 6);
    within(30, "hello refreshes to 6", || {
        revision(&env, "hello") == "6"
    });
    let keys = json(&env.pack(["known", "account-key", "--json"]).ok());
    let revoked = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["headers"]["public-key-id"] == old_key.as_str())
        .unwrap();
    assert!(revoked["headers"]["revoked"].is_string(), "{keys}");

    // A revision that fails is undone, skipped from then on, and reported.
    let v7 = hello(&env, "7.0", true);
    assert_eq!(upload(&store, &v7, "beta"), 7);
    let failed = || {
        let changes = json(&env.pack(["changes", "--json"]).ok());
        changes
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "Error")
            .count()
    };
    within(30, "the refresh to 7 fails", || failed() == 1);
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(failed(), 1, "auto-refresh tried the failing revision again");
    assert_eq!(revision(&env, "hello"), "6");
    let pending = json(&env.pack(["refresh", "--list", "--json"]).ok());
    assert_eq!(pending[0]["skipped"], true, "{pending}");
    let status = json(&store.publish(&["status", "hello", "--json"]).ok());
    assert!(
        status["reports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["revision"] == 6 && r["outcome"] == "healthy"),
        "{status}"
    );
    within(10, "the store has the report", || {
        let status = json(&store.publish(&["status", "hello", "--json"]).ok());
        status["reports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["revision"] == 7 && r["outcome"] == "reverted")
    });

    // The store's declaration grants auto-connection of a privileged interface; without it
    // the same plug stays unconnected.
    for name in ["tools", "spy"] {
        let parent = env.dir.path().join(format!("src-{name}"));
        fs::create_dir_all(&parent).unwrap();
        let yaml = format!(
            "name: {name}\nversion: '1'\nbase: busybox\nplugs:\n  mounts:\n    interface: mount-observe\napps:\n  {name}:\n    command: bin/run\n"
        );
        let dir = write_pack_dir(&parent, name, &yaml, &[("bin/run", "#!/bin/sh\ntrue\n")]);
        store.publish(&["register", name]).ok();
        upload(&store, &env.build(&dir), "stable");
    }
    let granted = pack_store(
        None,
        None,
        &[
            "declare",
            dir,
            "tools",
            "--allow-auto-connection",
            "mount-observe",
        ],
    );
    assert!(
        granted
            .ok()
            .contains("tools may auto-connect mount-observe")
    );
    // The serving store picks up what another process changed within a second.
    let id = json(&store.publish(&["status", "tools", "--json"]).ok())["pack-id"]
        .as_str()
        .unwrap()
        .to_string();
    within(10, "the store serves the new declaration", || {
        ureq::get(&format!(
            "{}/v1/assertions/pack-declaration/{id}",
            store.url
        ))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .is_some_and(|t| t.contains("allow-auto-connection: mount-observe"))
    });
    env.pack(["install", "tools"]).ok();
    env.pack(["install", "spy"]).ok();
    let slot = |name: &str| {
        let c = json(&env.pack(["connections", name, "--json"]).ok());
        c[0]["slot"].clone()
    };
    assert_eq!(slot("tools"), "system:mount-observe");
    assert!(slot("spy").is_null(), "{}", slot("spy"));
    // The grant can be taken away again (for the next install or refresh).
    let withdrawn = pack_store(None, None, &["declare", dir, "tools"]);
    assert!(
        withdrawn
            .ok()
            .contains("tools may auto-connect no interface")
    );

    // A content plug's default provider comes with it, and connects.
    for (name, ports) in [
        (
            "provider",
            "slots:\n  share:\n    interface: content\n    write: [$PACK_COMMON/out]\n",
        ),
        (
            "consumer",
            "plugs:\n  share:\n    interface: content\n    target: $PACK_DATA/in\n    default-provider: provider\n",
        ),
    ] {
        let parent = env.dir.path().join(format!("src-{name}"));
        fs::create_dir_all(&parent).unwrap();
        let yaml = format!(
            "name: {name}\nversion: '1'\nbase: busybox\n{ports}apps:\n  {name}:\n    command: bin/run\n"
        );
        let dir = write_pack_dir(&parent, name, &yaml, &[("bin/run", "#!/bin/sh\ntrue\n")]);
        store.publish(&["register", name]).ok();
        upload(&store, &env.build(&dir), "stable");
    }
    let out = env.pack(["install", "consumer"]).ok();
    assert!(out.contains("consumer 1 (1) installed"), "{out}");
    assert_eq!(revision(&env, "provider"), "1");
    assert_eq!(slot("consumer"), "provider:share");

    // A remote in use is not removed; the packs stay.
    let err = env.pack(["remote", "remove", "acme"]).fails(1);
    assert!(
        err.contains("busybox, consumer, hello, provider, spy, tools come from it"),
        "{err}"
    );
}

#[test]
fn what_a_store_sends_wrong_is_refused_and_leaves_the_device_as_it_was() {
    require_root!();
    let env = Env::new();
    let mut store = StoreServer::with_base();
    let v1 = hello(&env, "1.0", false);
    upload(&store, &v1, "stable");
    let proxy = Proxy::start(&store.url);

    // Bad remotes.
    let root = store.root_assert();
    let err = env
        .pack([
            "remote",
            "add",
            "acme",
            "ftp://x",
            "--trust",
            root.to_str().unwrap(),
        ])
        .fails(1);
    assert!(err.contains("invalid store URL"), "{err}");
    let not_root = env.dir.path().join("not-root.assert");
    fs::write(&not_root, "hello\n").unwrap();
    let err = env
        .pack([
            "remote",
            "add",
            "acme",
            &proxy.url,
            "--trust",
            not_root.to_str().unwrap(),
        ])
        .fails(1);
    assert!(err.contains("not an assertion"), "{err}");
    let err = env.pack(["install", "hello"]).fails(1);
    assert!(err.contains("no store is configured"), "{err}");
    add_remote(&env, "acme", &proxy.url, &store);
    env.pack(["install", "busybox"]).ok();
    let before = env.snapshot();

    // Each bad case: one clear error, and nothing under the root changed.
    let refused = |mode: Mode, expect: &str| {
        proxy.set(mode.clone());
        let err = env.pack(["install", "hello"]).fails(1);
        assert!(err.contains(expect), "{mode:?}: {err}");
        assert!(revision(&env, "hello").is_empty());
        let now = env.snapshot();
        let changed: Vec<_> = now
            .iter()
            .filter(|l| !before.contains(l))
            .filter(|l| {
                !l.starts_with("var/lib/packd/state.json")
                    && !l.starts_with("var/cache/packd/downloads/")
            })
            .collect();
        assert!(changed.is_empty(), "{mode:?} changed {changed:?}");
    };
    refused(Mode::Down, "cannot be reached");
    refused(Mode::TamperAnswers, "signature does not verify");
    refused(Mode::TamperDownloads, "not what the store signed");
    refused(Mode::CutDownloads(1000), "stopped at 1000 of");
    let cache = env.root.join("var/cache/packd/downloads");
    assert_eq!(
        fs::read_dir(&cache).unwrap().count(),
        1,
        "the partial download is kept"
    );

    // The next try resumes where the cut one stopped (and its reports cannot get through).
    proxy.set(Mode::DropReports);
    let out = env.pack(["install", "hello"]).ok();
    assert!(out.contains("hello 1.0 (1) installed"), "{out}");
    assert!(
        proxy
            .seen()
            .iter()
            .any(|r| r.contains("/v1/download/") && r.ends_with("bytes=1000-")),
        "{:?}",
        proxy.seen()
    );
    assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);

    // The reports waited on disk; the store's next answer lets them through, each counted once.
    let reports = |store: &StoreServer| {
        let status = json(&store.publish(&["status", "hello", "--json"]).ok());
        status["reports"].as_array().unwrap().clone()
    };
    // (The refused tries before were reported as started, through the modes that let
    // reports pass.)
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<_> = reports(&store);
    assert!(
        !before.iter().any(|r| r["outcome"] == "healthy"),
        "{before:?}"
    );
    proxy.set(Mode::Pass);
    env.pack(["refresh", "--list", "hello"]).ok();
    let outcomes: Vec<(String, u64)> = reports(&store)
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["devices"].as_u64().unwrap(),
            )
        })
        .collect();
    for o in ["started", "downloaded", "installed", "healthy"] {
        assert!(outcomes.contains(&(o.to_string(), 1)), "{o}: {outcomes:?}");
    }

    // A replayed older answer is refused: the device has seen a newer serial.
    // (The proxy keeps the first answer to each request; `--list hello` asks what `refresh
    // hello` asks.)
    env.pack(["refresh", "--list", "hello"]).ok();
    let v2 = hello(&env, "2.0", false);
    upload(&store, &v2, "stable");
    let pending = json(&env.pack(["refresh", "--list", "hello", "--json"]).ok());
    assert_eq!(pending[0]["revision"], 2);
    proxy.set(Mode::ReplayAnswers);
    let err = env.pack(["refresh", "--list", "hello"]).fails(1);
    assert!(
        err.contains("older than") && err.contains("replay"),
        "{err}"
    );
    let err = env.pack(["refresh", "hello"]).fails(1);
    assert!(err.contains("older than"), "{err}");
    assert_eq!(revision(&env, "hello"), "1");

    // Assertions by hand: what verifies is added, a stranger's is refused.
    let err = env.pack(["ack", not_root.to_str().unwrap()]).fails(1);
    assert!(err.contains("no valid assertions"), "{err}");
    let other = StoreServer::start();
    let err = env
        .pack(["ack", other.root_assert().to_str().unwrap()])
        .fails(1);
    assert!(
        err.contains("no remote trusts store") || err.contains("root key other"),
        "{err}"
    );

    // The store gone for good: installed packs keep running.
    store.stop();
    proxy.set(Mode::Pass);
    let err = env.pack(["refresh"]).fails(1);
    assert!(err.contains("cannot be reached"), "{err}");
    assert_eq!(env.pack(["run", "hello"]).ok(), "hello 1.0\n");
}

#[test]
fn a_provisioned_remote_is_trusted_and_a_metered_connection_holds_auto_refresh() {
    require_root!();
    let dir = tempfile::Builder::new()
        .prefix("packd-e2e-bus-")
        .tempdir()
        .unwrap();
    // NetworkManager says: metered (NMMetered 1, yes).
    let mut bus = packd_tests::systemd::FakeSystemd::start(dir.path());
    bus.network_manager(dir.path(), 1);
    let mut env = Env::stopped();
    env.set_daemon_env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
    // The image carries its remote under etc/.
    let store = StoreServer::with_base();
    let provisioned = env.root.join("etc/packd/remotes");
    fs::create_dir_all(&provisioned).unwrap();
    fs::write(provisioned.join("acme.url"), format!("{}\n", store.url)).unwrap();
    fs::copy(store.root_assert(), provisioned.join("acme.assert")).unwrap();
    env.start();
    let remotes = json(&env.pack(["remote", "list", "--json"]).ok());
    assert_eq!(remotes[0]["url"], store.url.as_str(), "{remotes}");
    upload(&store, &hello(&env, "1.0", false), "stable");
    env.pack(["install", "hello"]).ok();
    env.pack([
        "set",
        "system",
        "refresh.health-window=0s",
        "refresh.metered=hold",
        "refresh.timer=every 1s",
    ])
    .ok();
    upload(&store, &hello(&env, "2.0", false), "stable");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        revision(&env, "hello"),
        "1",
        "refreshed on a metered connection"
    );
    assert!(
        env.log().contains("the connection is metered"),
        "{}",
        env.log()
    );
    env.pack(["set", "system", "refresh.metered=ignore"]).ok();
    within(30, "hello refreshes once metering is ignored", || {
        revision(&env, "hello") == "2"
    });
}
