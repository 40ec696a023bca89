//! The chain of trust of one store: its root key (given to the device by hand), the
//! account-keys the root certified, and everything else signed by one of those that is not
//! revoked. [`Keyring`] checks each link; nothing is trusted for having been seen.

use std::collections::BTreeMap;

use super::{Assertion, Kind, PublicKey};

/// Why an assertion is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("{what} is not a {expected} assertion")]
    WrongKind { what: String, expected: Kind },
    #[error("{what}: the signature does not verify (forged or altered)")]
    BadSignature { what: String },
    #[error(
        "{what} comes from store {got:?}, not from {expected:?}; a store's assertions never vouch for another's"
    )]
    WrongAuthority {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{what} is signed by key {key}, which store {store:?} has not certified")]
    UnknownKey {
        what: String,
        key: String,
        store: String,
    },
    #[error("{what} is signed only by key {key}, which store {store:?} has revoked")]
    RevokedKey {
        what: String,
        key: String,
        store: String,
    },
    #[error("{what} is not signed by the root key it names")]
    NotSelfSigned { what: String },
    #[error("{what}: public-key-id does not match its public-key")]
    KeyIdMismatch { what: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

/// How an assertion is named in messages: its kind and primary key.
pub fn describe(a: &Assertion) -> String {
    let key = a.primary_key().join("/");
    let short: String = key.chars().take(40).collect();
    format!("the {} assertion {short}", a.kind())
}

/// One store's keys, as far as they are proven.
#[derive(Debug, Clone)]
pub struct Keyring {
    authority: String,
    root: PublicKey,
    /// Account-keys by id: the newest revision seen, and its key.
    keys: BTreeMap<String, (Assertion, PublicKey)>,
}

/// The key an assertion carries, checked against its id.
fn carried_key(a: &Assertion) -> Result<PublicKey, TrustError> {
    let what = describe(a);
    let key = PublicKey::decode(a.get("public-key")).map_err(|e| TrustError::Invalid {
        what: what.clone(),
        message: e.0,
    })?;
    if key.id() != a.get("public-key-id") {
        return Err(TrustError::KeyIdMismatch { what });
    }
    Ok(key)
}

impl Keyring {
    /// The keyring of the store whose root is `root` (a `root-key` assertion, self-signed).
    pub fn new(root: &Assertion) -> Result<Keyring, TrustError> {
        let what = describe(root);
        if root.kind() != Kind::RootKey {
            return Err(TrustError::WrongKind {
                what,
                expected: Kind::RootKey,
            });
        }
        let key = carried_key(root)?;
        if root.sign_key() != key.id() || !key.verifies(root.signed_bytes(), root.signature()) {
            return Err(TrustError::NotSelfSigned { what });
        }
        Ok(Keyring {
            authority: root.authority().to_string(),
            root: key,
            keys: BTreeMap::new(),
        })
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn root_id(&self) -> String {
        self.root.id()
    }

    /// Adds an account-key the root signed. An older revision than the one known changes
    /// nothing (a revocation cannot be undone by replaying the key's first revision).
    pub fn add_key(&mut self, a: &Assertion) -> Result<(), TrustError> {
        let what = describe(a);
        if a.kind() != Kind::AccountKey {
            return Err(TrustError::WrongKind {
                what,
                expected: Kind::AccountKey,
            });
        }
        self.check_authority(a)?;
        if a.sign_key() != self.root.id() {
            return Err(TrustError::UnknownKey {
                what,
                key: a.sign_key().to_string(),
                store: self.authority.clone(),
            });
        }
        if !self.root.verifies(a.signed_bytes(), a.signature()) {
            return Err(TrustError::BadSignature { what });
        }
        let key = carried_key(a)?;
        let id = key.id();
        match self.keys.get(&id) {
            Some((known, _)) if known.revision() >= a.revision() => {}
            _ => {
                self.keys.insert(id, (a.clone(), key));
            }
        }
        Ok(())
    }

    /// The account-keys known, newest revision of each.
    pub fn keys(&self) -> impl Iterator<Item = &Assertion> {
        self.keys.values().map(|(a, _)| a)
    }

    /// Whether key `id` is known and not revoked.
    pub fn is_valid_key(&self, id: &str) -> bool {
        self.keys.get(id).is_some_and(|(a, _)| !a.is_revoked())
    }

    /// Checks an assertion signed by one of the store's account-keys.
    pub fn verify(&self, a: &Assertion) -> Result<(), TrustError> {
        let what = describe(a);
        match a.kind() {
            Kind::RootKey | Kind::AccountKey => {
                return Err(TrustError::Invalid {
                    what,
                    message: "keys are checked with the root (add_key)".into(),
                });
            }
            Kind::PackDeclaration | Kind::PackRevision | Kind::Refresh => {}
        }
        self.check_authority(a)?;
        let Some((cert, key)) = self.keys.get(a.sign_key()) else {
            return Err(TrustError::UnknownKey {
                what,
                key: a.sign_key().to_string(),
                store: self.authority.clone(),
            });
        };
        if cert.is_revoked() {
            return Err(TrustError::RevokedKey {
                what,
                key: a.sign_key().to_string(),
                store: self.authority.clone(),
            });
        }
        if !key.verifies(a.signed_bytes(), a.signature()) {
            return Err(TrustError::BadSignature { what });
        }
        Ok(())
    }

    fn check_authority(&self, a: &Assertion) -> Result<(), TrustError> {
        if a.authority() != self.authority {
            return Err(TrustError::WrongAuthority {
                what: describe(a),
                expected: self.authority.clone(),
                got: a.authority().to_string(),
            });
        }
        Ok(())
    }
}
