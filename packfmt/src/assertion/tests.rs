use super::trust::{Keyring, TrustError};
use super::*;

fn root(store: &str) -> (SecretKey, Assertion) {
    let key = SecretKey::generate().unwrap();
    let pk = key.public();
    let a = Builder::new(Kind::RootKey, store)
        .header("public-key-id", pk.id())
        .header("public-key", pk.encode())
        .sign(&key)
        .unwrap();
    (key, a)
}

fn account_key(store: &str, key: &SecretKey, revision: u64) -> Builder {
    let pk = key.public();
    let b = Builder::new(Kind::AccountKey, store)
        .header("public-key-id", pk.id())
        .header("public-key", pk.encode())
        .header("since", "2026-12-07T00:00:00Z");
    if revision > 0 {
        b.header("revision", revision)
    } else {
        b
    }
}

fn pack_revision(store: &str) -> Builder {
    Builder::new(Kind::PackRevision, store)
        .header("pack-id", "abc")
        .header("pack-revision", 3)
        .header("pack-sha3-384", "00ff")
        .header("pack-size", 4096)
        .header("publisher-id", "pub1")
        .header("timestamp", "2026-12-07T00:00:00Z")
}

#[test]
fn an_assertion_round_trips_through_its_text_with_and_without_a_body() {
    let key = SecretKey::generate().unwrap();
    let a = pack_revision("acme").sign(&key).unwrap();
    let text = a.encode();
    let s = String::from_utf8(text.clone()).unwrap();
    assert!(
        s.starts_with("type: pack-revision\nauthority-id: acme\n"),
        "{s}"
    );
    assert!(!s.contains("body-length"));
    assert_eq!(Assertion::parse(&text).unwrap(), a);
    assert_eq!(a.get("pack-size"), "4096");
    assert_eq!(a.primary_key(), ["abc", "3"]);
    assert_eq!(a.sign_key(), key.public().id());

    let body = b"{\"plugs\": {}}\n\nwith a blank line".to_vec();
    let d = Builder::new(Kind::PackDeclaration, "acme")
        .header("pack-id", "abc")
        .header("pack-name", "hello")
        .header("publisher-id", "pub1")
        .header("timestamp", "2026-12-07T00:00:00Z")
        .body(body.clone())
        .sign(&key)
        .unwrap();
    assert_eq!(d.body(), body);
    let both = [a.encode(), b"\n".to_vec(), d.encode()].concat();
    assert_eq!(Assertion::parse_all(&both).unwrap(), vec![a, d]);
}

#[test]
fn malformed_texts_are_refused_with_what_is_wrong() {
    let key = SecretKey::generate().unwrap();
    let good = String::from_utf8(pack_revision("acme").sign(&key).unwrap().encode()).unwrap();
    let err = |t: &str| Assertion::parse(t.as_bytes()).unwrap_err().to_string();
    assert_eq!(
        err("type: pack-revision\n"),
        "no blank line after the headers; an assertion ends with a signature"
    );
    assert_eq!(
        err(&good.replacen("type: pack-revision", "type: snap-revision", 1)),
        "unknown assertion type \"snap-revision\"; packd knows root-key, account-key, pack-declaration, pack-revision, refresh"
    );
    assert_eq!(
        err(&good.replacen("pack-size: 4096\n", "", 1)),
        "a pack-revision assertion must have a \"pack-size\" header"
    );
    assert_eq!(
        err(&good.replacen("pack-id: abc", "pack-id: abc\npack-id: abd", 1)),
        "header \"pack-id\" appears twice"
    );
    assert_eq!(
        err(&good.replacen("pack-id: abc", "pack-id abc", 1)),
        "header line 3 is not \"name: value\": \"pack-id abc\""
    );
    let sig_start = good.trim_end().rfind('\n').unwrap() + 1;
    assert_eq!(
        err(&format!("{}!!!\n", &good[..sig_start])),
        "the signature is not base64"
    );
    assert_eq!(
        err(&format!(
            "{}{}\n",
            &good[..sig_start],
            STANDARD.encode([0u8; 10])
        )),
        "the signature is not an ed25519 signature (64 bytes)"
    );
    assert_eq!(
        err(&format!("{good}junk")),
        "unexpected text after the assertion's signature"
    );
    // A builder refuses what would not parse back.
    let e = pack_revision("acme")
        .header("pack-id", "two\nlines")
        .sign(&key)
        .unwrap_err();
    assert!(
        e.0.starts_with("header \"pack-id\" has an invalid value"),
        "{e}"
    );
    // Garbage never panics.
    for n in 0..good.len() {
        let _ = Assertion::parse(&good.as_bytes()[..n]);
        let _ = Assertion::parse_all(&good.as_bytes()[n..]);
    }
}

#[test]
fn the_chain_holds_from_the_root_to_a_revision_and_each_broken_link_is_named() {
    let (root_key, root_a) = root("acme");
    let mut ring = Keyring::new(&root_a).unwrap();
    let signing = SecretKey::generate().unwrap();
    let cert = account_key("acme", &signing, 0).sign(&root_key).unwrap();
    // Not known yet: refused, naming the key.
    let rev = pack_revision("acme").sign(&signing).unwrap();
    assert!(matches!(
        ring.verify(&rev),
        Err(TrustError::UnknownKey { .. })
    ));
    ring.add_key(&cert).unwrap();
    ring.verify(&rev).unwrap();

    // Altered after signing.
    let altered = String::from_utf8(rev.encode())
        .unwrap()
        .replace("pack-size: 4096", "pack-size: 4097");
    let altered = Assertion::parse(altered.as_bytes()).unwrap();
    assert_eq!(
        ring.verify(&altered).unwrap_err().to_string(),
        "the pack-revision assertion abc/3: the signature does not verify (forged or altered)"
    );
    // Signed by a key the root never certified.
    let stranger = SecretKey::generate().unwrap();
    let forged = pack_revision("acme").sign(&stranger).unwrap();
    assert!(
        ring.verify(&forged)
            .unwrap_err()
            .to_string()
            .contains("which store \"acme\" has not certified")
    );
    // An account-key the root did not sign is refused too.
    let self_made = account_key("acme", &stranger, 0).sign(&stranger).unwrap();
    assert!(matches!(
        ring.add_key(&self_made),
        Err(TrustError::UnknownKey { .. })
    ));
    // Another store's assertions never vouch here.
    let (other_root, _) = root("other");
    let theirs = pack_revision("other").sign(&other_root).unwrap();
    assert!(matches!(
        ring.verify(&theirs),
        Err(TrustError::WrongAuthority { .. })
    ));
    // A revoked key signs nothing any more, and its first revision cannot bring it back.
    let revoked = account_key("acme", &signing, 1)
        .header("revoked", "2026-12-08T00:00:00Z")
        .sign(&root_key)
        .unwrap();
    ring.add_key(&revoked).unwrap();
    ring.add_key(&cert).unwrap();
    assert_eq!(
        ring.verify(&rev).unwrap_err().to_string(),
        format!(
            "the pack-revision assertion abc/3 is signed only by key {}, which store \"acme\" has revoked",
            signing.public().id()
        )
    );
}

#[test]
fn a_root_must_sign_itself_with_the_key_it_carries() {
    let (_, good) = root("acme");
    Keyring::new(&good).unwrap();
    let other = SecretKey::generate().unwrap();
    let pk = SecretKey::generate().unwrap().public();
    let bad = Builder::new(Kind::RootKey, "acme")
        .header("public-key-id", pk.id())
        .header("public-key", pk.encode())
        .sign(&other)
        .unwrap();
    assert!(matches!(
        Keyring::new(&bad),
        Err(TrustError::NotSelfSigned { .. })
    ));
    let lying = Builder::new(Kind::RootKey, "acme")
        .header("public-key-id", other.public().id())
        .header("public-key", pk.encode())
        .sign(&other)
        .unwrap();
    assert!(matches!(
        Keyring::new(&lying),
        Err(TrustError::KeyIdMismatch { .. })
    ));
}

#[test]
fn secret_keys_survive_their_text_form() {
    let k = SecretKey::generate().unwrap();
    let again = SecretKey::from_text(&k.to_text()).unwrap();
    assert_eq!(again.public(), k.public());
    assert!(SecretKey::from_text("nope").is_err());
    let sig = k.sign(b"m");
    assert!(k.public().verifies(b"m", &sig));
    assert!(!k.public().verifies(b"n", &sig));
}
