//! What `verify_answer` accepts and refuses, with keys made here.

use packfmt::assertion::{Builder, Kind, SecretKey};
use packfmt::store::{Answer, RefreshResponse};

use super::*;

const NOW: u64 = 1_800_000_000;

fn rfc(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

struct Store {
    root: SecretKey,
    signing: SecretKey,
}

impl Store {
    fn new() -> Store {
        Store {
            root: SecretKey::generate().unwrap(),
            signing: SecretKey::generate().unwrap(),
        }
    }

    fn root_assertion(&self) -> Assertion {
        Builder::new(Kind::RootKey, "acme")
            .header("public-key-id", self.root.public().id())
            .header("public-key", self.root.public().encode())
            .sign(&self.root)
            .unwrap()
    }

    fn account_key(&self, revoked: bool) -> Assertion {
        let mut b = Builder::new(Kind::AccountKey, "acme")
            .header("public-key-id", self.signing.public().id())
            .header("public-key", self.signing.public().encode())
            .header("since", rfc(NOW - 1000));
        if revoked {
            b = b.header("revision", 1).header("revoked", rfc(NOW - 10));
        }
        b.sign(&self.root).unwrap()
    }

    fn answer(&self, request: &[u8], serial: u64, expires: u64, key: &SecretKey) -> String {
        let body = serde_json::to_vec(&Answer {
            results: Vec::new(),
            errors: Vec::new(),
            poll_after: 300,
        })
        .unwrap();
        let a = Builder::new(Kind::Refresh, "acme")
            .header("serial", serial)
            .header("expires", rfc(expires))
            .header("request-sha3-384", sha3_hex(request))
            .header("timestamp", rfc(NOW - 5))
            .body(body)
            .sign(key)
            .unwrap();
        String::from_utf8(a.encode()).unwrap()
    }

    fn response(&self, answer: String, revoked: bool) -> RefreshResponse {
        RefreshResponse {
            answer,
            assertions: String::from_utf8(self.account_key(revoked).encode()).unwrap(),
        }
    }
}

fn remote(serial: u64) -> Remote {
    Remote {
        name: "acme".into(),
        url: "http://store".into(),
        authority: "acme".into(),
        root_key: String::new(),
        serial,
        answer_expires: 0,
        answer_signed: 0,
        etag: None,
    }
}

fn check(
    store: &Store,
    remote: &Remote,
    request: &[u8],
    resp: &RefreshResponse,
) -> Result<Verified> {
    let mut ring = Keyring::new(&store.root_assertion()).unwrap();
    verify_answer(remote, &mut ring, request, resp, NOW)
}

#[test]
fn a_fresh_answer_to_this_request_verifies_and_teaches_the_keys() {
    let s = Store::new();
    let req = b"{\"packs\":[]}";
    let resp = s.response(s.answer(req, 7, NOW + 3600, &s.signing), false);
    let mut ring = Keyring::new(&s.root_assertion()).unwrap();
    let v = verify_answer(&remote(7), &mut ring, req, &resp, NOW).unwrap();
    assert_eq!((v.serial, v.expires), (7, NOW + 3600));
    assert!(ring.is_valid_key(&s.signing.public().id()));
}

#[test]
fn replayed_expired_foreign_and_altered_answers_are_refused_by_name() {
    let s = Store::new();
    let req = b"{\"packs\":[]}";
    let good = |serial| s.response(s.answer(req, serial, NOW + 3600, &s.signing), false);
    let refused = |r: Result<Verified>, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.contains(what), "{e}");
    };
    refused(check(&s, &remote(8), req, &good(7)), "older than 8");
    refused(check(&s, &remote(0), b"{}", &good(7)), "another request");
    let expired = s.response(s.answer(req, 7, NOW - 1, &s.signing), false);
    refused(check(&s, &remote(0), req, &expired), "expired");
    let stranger = SecretKey::generate().unwrap();
    let foreign = s.response(s.answer(req, 7, NOW + 3600, &stranger), false);
    refused(check(&s, &remote(0), req, &foreign), "has not certified");
    let revoked = s.response(s.answer(req, 7, NOW + 3600, &s.signing), true);
    refused(check(&s, &remote(0), req, &revoked), "revoked");
    let mut altered = good(7);
    altered.answer = altered
        .answer
        .replacen("poll-after\":300", "poll-after\":301", 1);
    refused(check(&s, &remote(0), req, &altered), "does not verify");
    // Another store's root does not vouch for this one's keys.
    let other = Store::new();
    let mut ring = Keyring::new(&other.root_assertion()).unwrap();
    assert!(verify_answer(&remote(0), &mut ring, req, &good(7), NOW).is_err());
}
