//! A real `pack-store` on loopback: publishing (register, upload, release, close, revoke),
//! the channel map, and the read API devices use (find, info, refresh with ETags, resumable
//! downloads, signed answers that verify from the store's root).

use std::fs;
use std::path::PathBuf;

use packd_tests::store::{StoreServer, pack_store};
use packd_tests::{Env, write_pack_dir};
use packfmt::assertion::Assertion;
use packfmt::assertion::trust::Keyring;

/// A `hello` pack of version `version` built into `env`'s directory.
fn hello(env: &Env, version: &str) -> PathBuf {
    let parent = env.dir.path().join(format!("src-{version}"));
    fs::create_dir_all(&parent).unwrap();
    let dir = write_pack_dir(
        &parent,
        "hello",
        &format!(
            "name: hello\nversion: '{version}'\nsummary: Says hello\nbase: busybox\napps:\n  hello:\n    command: bin/hello\n"
        ),
        &[("bin/hello", &format!("#!/bin/sh\necho hello {version}\n"))],
    );
    let built = env.build(&dir);
    let kept = env.dir.path().join(format!("hello_{version}.pack"));
    fs::rename(built, &kept).unwrap();
    kept
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// (channel, revision, follows) of each row of `pack-store status --json`.
fn channel_map(store: &StoreServer, name: &str) -> Vec<(String, Option<u64>, Option<String>)> {
    let v = json(&store.publish(&["status", name, "--json"]).ok());
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_string(),
                c["revision"].as_u64(),
                c["follows"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn row(c: &str, rev: Option<u64>, follows: Option<&str>) -> (String, Option<u64>, Option<String>) {
    (c.into(), rev, follows.map(Into::into))
}

#[test]
fn a_publisher_registers_uploads_and_releases_and_empty_channels_follow() {
    let env = Env::stopped();
    let store = StoreServer::start();
    let v1 = hello(&env, "1.0");
    let v2 = hello(&env, "2.0");
    assert!(
        store
            .publish(&["register", "hello"])
            .ok()
            .starts_with("registered hello")
    );
    let up = |f: &PathBuf, extra: &[&str]| {
        let mut args = vec!["upload", f.to_str().unwrap()];
        args.extend_from_slice(extra);
        store.publish(&args).ok()
    };
    assert_eq!(up(&v1, &["--release", "stable"]), "1\n");
    assert_eq!(
        json(&up(&v2, &["--release", "beta", "--json"])),
        serde_json::json!({"revision": 2})
    );
    assert_eq!(
        channel_map(&store, "hello"),
        vec![
            row("latest/stable", Some(1), None),
            row("latest/candidate", Some(1), Some("latest/stable")),
            row("latest/beta", Some(2), None),
            row("latest/edge", Some(2), Some("latest/beta")),
        ]
    );
    // A closed risk follows the next more stable one; a branch and a track of their own.
    store.publish(&["close", "hello", "beta"]).ok();
    store
        .publish(&["release", "hello", "2", "edge/fix-1", "2.x/stable"])
        .ok();
    let map = channel_map(&store, "hello");
    assert!(
        map.contains(&row("latest/beta", Some(1), Some("latest/stable"))),
        "{map:?}"
    );
    assert!(
        map.contains(&row("latest/edge/fix-1", Some(2), None)),
        "{map:?}"
    );
    assert!(map.contains(&row("2.x/stable", Some(2), None)), "{map:?}");
    assert!(
        map.contains(&row("2.x/edge", Some(2), Some("2.x/stable"))),
        "{map:?}"
    );
    // The text form says the same.
    let text = store.publish(&["status", "hello"]).ok();
    assert!(
        text.contains("latest/candidate") && text.contains("↑ latest/stable"),
        "{text}"
    );
    assert!(text.contains("Revisions: 1 (1.0), 2 (2.0)"), "{text}");
}

#[test]
fn bad_uploads_tokens_names_and_channels_are_refused_with_the_reason_and_change_nothing() {
    let env = Env::stopped();
    let store = StoreServer::start();
    let v1 = hello(&env, "1.0");
    let f = v1.to_str().unwrap();
    let blobs = || fs::read_dir(store.path("blobs")).unwrap().count();
    // Not registered yet.
    let err = store.publish(&["upload", f]).fails(1);
    assert!(
        err.contains("\"hello\" is not registered; register it first: pack-store register hello"),
        "{err}"
    );
    store.publish(&["register", "hello"]).ok();
    // Someone else's name, a wrong token, no token.
    let other = pack_store(
        None,
        None,
        &["publisher", "add", store.store.to_str().unwrap(), "rival"],
    )
    .ok();
    let err = pack_store(Some(&store.url), Some(other.trim()), &["upload", f]).fails(1);
    assert!(
        err.contains("\"hello\" belongs to another publisher"),
        "{err}"
    );
    let err = pack_store(Some(&store.url), Some("nope"), &["register", "mine"]).fails(1);
    assert!(
        err.contains("the token is not one of this store's publishers'"),
        "{err}"
    );
    let err = pack_store(Some(&store.url), None, &["register", "mine"]).fails(1);
    assert!(err.contains("this needs a publisher token"), "{err}");
    let err = store.publish(&["register", "hello"]).fails(1);
    assert!(
        err.contains("you have registered \"hello\" already"),
        "{err}"
    );
    let err = store.publish(&["register", "Bad_Name"]).fails(1);
    assert!(err.contains("invalid pack name \"Bad_Name\""), "{err}");
    // A file that is not a pack: refused by the store itself, not only by the client.
    let junk = env.dir.path().join("junk.pack");
    fs::write(&junk, b"not a squashfs image at all").unwrap();
    let resp = ureq::post(&format!("{}/v1/packs/hello/revisions", store.url))
        .set("Authorization", &format!("Bearer {}", store.token))
        .send_bytes(b"not a squashfs image at all");
    let Err(ureq::Error::Status(400, r)) = resp else {
        panic!("junk accepted: {resp:?}");
    };
    let body: serde_json::Value = r.into_json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the package is refused:"),
        "{body}"
    );
    let err = store.publish(&["upload", junk.to_str().unwrap()]).fails(1);
    assert!(err.contains("is not a pack this store would take"), "{err}");
    // A bad channel, a missing revision.
    let err = store
        .publish(&["upload", f, "--release", "latest/rc"])
        .fails(1);
    assert!(
        err.contains("invalid channel \"latest/rc\": unknown risk \"rc\""),
        "{err}"
    );
    assert_eq!(blobs(), 0, "a refused upload leaves nothing");
    assert_eq!(fs::read_dir(store.path("tmp")).unwrap().count(), 0);
    let err = store.publish(&["release", "hello", "7", "stable"]).fails(1);
    assert!(err.contains("hello has no revision 7"), "{err}");
    // The same file twice.
    store.publish(&["upload", f]).ok();
    let err = store.publish(&["upload", f]).fails(1);
    assert!(
        err.contains("this exact file is revision 1 of hello already"),
        "{err}"
    );
    assert_eq!(blobs(), 1);
    // A store that is not there.
    let err = pack_store(
        Some("http://127.0.0.1:1"),
        Some(&store.token),
        &["status", "hello"],
    )
    .fails(1);
    assert!(
        err.contains("cannot reach the store at http://127.0.0.1:1"),
        "{err}"
    );
    let err = pack_store(None, None, &["init", store.store.to_str().unwrap()]).fails(1);
    assert!(err.contains("holds a store already"), "{err}");
}

fn refresh(store: &StoreServer, body: &serde_json::Value, etag: Option<&str>) -> ureq::Response {
    let mut r = ureq::post(&format!("{}/v1/refresh", store.url));
    if let Some(e) = etag {
        r = r.set("If-None-Match", e);
    }
    r.send_json(body.clone()).unwrap()
}

#[test]
fn devices_get_signed_answers_with_only_what_changed_304s_and_resumable_downloads() {
    let env = Env::stopped();
    let store = StoreServer::start();
    let v1 = hello(&env, "1.0");
    let v2 = hello(&env, "2.0");
    store.publish(&["register", "hello"]).ok();
    store
        .publish(&["upload", v1.to_str().unwrap(), "--release", "stable"])
        .ok();
    store
        .publish(&["upload", v2.to_str().unwrap(), "--release", "beta"])
        .ok();

    // Find and info, as a device sees them.
    let found: serde_json::Value = ureq::get(&format!("{}/v1/find?q=hello", store.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(found[0]["name"], "hello");
    assert_eq!(found[0]["version"], "1.0");
    assert_eq!(found[0]["publisher"], "acme");
    let info: serde_json::Value = ureq::get(&format!("{}/v1/packs/hello", store.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let pack_id = info["pack-id"].as_str().unwrap().to_string();
    assert_eq!(info["summary"], "Says hello");

    // A device on revision 1 of stable: nothing to do, said in a signed answer.
    let on_stable = serde_json::json!({"packs": [
        {"pack-id": pack_id, "name": "hello", "revision": 1, "channel": "stable"}]});
    let r = refresh(&store, &on_stable, None);
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(r.header("pack-poll-after"), Some("300"));
    let resp: packfmt::store::RefreshResponse = r.into_json().unwrap();
    let answer = Assertion::parse(resp.answer.as_bytes()).unwrap();
    let mut ring =
        Keyring::new(&Assertion::parse(&fs::read(store.root_assert()).unwrap()).unwrap()).unwrap();
    for a in Assertion::parse_all(resp.assertions.as_bytes()).unwrap() {
        ring.add_key(&a).unwrap();
    }
    ring.verify(&answer).unwrap();
    let body: packfmt::store::Answer = serde_json::from_slice(answer.body()).unwrap();
    assert!(
        body.results.is_empty() && body.errors.is_empty(),
        "{body:?}"
    );
    assert_eq!(
        answer.get("request-sha3-384"),
        store_sha3(&serde_json::to_vec(&on_stable).unwrap())
    );
    // Asked again with its ETag: 304, nothing sent.
    let again = refresh(&store, &on_stable, Some(&etag));
    assert_eq!(again.status(), 304);

    // Installing from beta: an offer, with the assertions that prove it.
    let install = serde_json::json!({"install": [{"name": "hello", "channel": "beta"}]});
    let resp: packfmt::store::RefreshResponse =
        refresh(&store, &install, None).into_json().unwrap();
    let answer = Assertion::parse(resp.answer.as_bytes()).unwrap();
    ring.verify(&answer).unwrap();
    let body: packfmt::store::Answer = serde_json::from_slice(answer.body()).unwrap();
    let offer = &body.results[0];
    assert_eq!((offer.revision, offer.version.as_str()), (2, "2.0"));
    let proofs = Assertion::parse_all(resp.assertions.as_bytes()).unwrap();
    let rev = proofs
        .iter()
        .find(|a| a.kind() == packfmt::assertion::Kind::PackRevision)
        .unwrap();
    ring.verify(rev).unwrap();
    let bytes = fs::read(&v2).unwrap();
    assert_eq!(rev.get("pack-sha3-384"), store_sha3(&bytes));
    assert_eq!(rev.get("pack-size"), bytes.len().to_string());

    // The download resumes where it stopped.
    let url = format!("{}{}", store.url, offer.download);
    let part = ureq::get(&url).set("Range", "bytes=100-").call().unwrap();
    assert_eq!(part.status(), 206);
    let mut tail = Vec::new();
    std::io::Read::read_to_end(&mut part.into_reader(), &mut tail).unwrap();
    assert_eq!(tail, bytes[100..]);

    // Unknown names and bad channels are answered per pack.
    let bad = serde_json::json!({"install": [{"name": "nope", "channel": "stable"},
        {"name": "hello", "channel": "2.x/edge"}, {"name": "hello", "channel": "x/y/z/w"}]});
    let resp: packfmt::store::RefreshResponse = refresh(&store, &bad, None).into_json().unwrap();
    let body: packfmt::store::Answer =
        serde_json::from_slice(Assertion::parse(resp.answer.as_bytes()).unwrap().body()).unwrap();
    let codes: Vec<&str> = body.errors.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["not-found", "no-release", "invalid-channel"]);

    // A revoked revision is neither offered nor served, and a device on it moves back.
    store.publish(&["revoke", "hello", "2"]).ok();
    let on_beta = serde_json::json!({"packs": [
        {"pack-id": pack_id, "name": "hello", "revision": 2, "channel": "beta"}]});
    let resp: packfmt::store::RefreshResponse =
        refresh(&store, &on_beta, None).into_json().unwrap();
    let body: packfmt::store::Answer =
        serde_json::from_slice(Assertion::parse(resp.answer.as_bytes()).unwrap().body()).unwrap();
    assert_eq!(body.results[0].revision, 1);
    let revoked = Assertion::parse_all(resp.assertions.as_bytes())
        .unwrap()
        .into_iter()
        .find(|a| {
            a.kind() == packfmt::assertion::Kind::PackRevision && a.get("pack-revision") == "2"
        })
        .expect("the revocation comes with the answer");
    assert!(revoked.is_revoked());
    ring.verify(&revoked).unwrap();
    let gone = ureq::get(&url).call();
    assert!(matches!(gone, Err(ureq::Error::Status(410, _))), "{gone:?}");
}

fn store_sha3(data: &[u8]) -> String {
    use sha3::Digest;
    sha3::Sha3_384::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
