//! The device's assertion database: per remote, under `var/lib/packd/assertions/REMOTE/`,
//! one file per assertion (`KIND/KEY`, the primary key's values joined by `,`), holding the
//! newest revision that verified. Nothing enters it unverified: account-keys against the
//! remote's root, everything else against those keys. One remote's keys never check another
//! remote's assertions (each has its own directory and its own [`Keyring`]).

use std::path::{Path, PathBuf};

use packfmt::assertion::trust::Keyring;
use packfmt::assertion::{Assertion, Kind};

use super::error::{StoreError, bad_assertion, not_trusted};
use crate::error::{IoContext, IoError};
use crate::fsutil;

/// One remote's assertions.
#[derive(Debug, Clone)]
pub struct AssertionDb {
    remote: String,
    dir: PathBuf,
}

type Result<T> = std::result::Result<T, StoreError>;

/// A value a store sent that may become part of a file name: letters, digits, `-`, `_`, `.`,
/// `=` (base64), not starting with `.`, at most 128 bytes.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))
}

impl AssertionDb {
    pub fn new(root: &Path, remote: &str) -> AssertionDb {
        AssertionDb {
            remote: remote.to_string(),
            dir: root.join(remote),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where an assertion is kept. Its key's values come from a store, so they must be
    /// plain names (no `/`, no leading `.`) before they become a path.
    fn file(&self, kind: Kind, key: &[&str]) -> Result<PathBuf> {
        if let Some(bad) = key.iter().find(|k| !safe_name(k)) {
            return Err(StoreError::untrusted(
                &self.remote,
                format!("an assertion key {bad:?} is not a plain name"),
            ));
        }
        Ok(self.dir.join(kind.name()).join(key.join(",")))
    }

    /// Creates the database of a new remote, holding its root.
    pub fn create(&self, root: &Assertion) -> Result<()> {
        Keyring::new(root).map_err(|e| not_trusted(&self.remote, e))?;
        self.write(root)
    }

    fn write(&self, a: &Assertion) -> Result<()> {
        let path = self.file(a.kind(), &a.primary_key())?;
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).ctx("create", parent)?;
        fsutil::write_atomic(&path, &a.encode(), 0o644).ctx("write", &path)?;
        Ok(())
    }

    /// The assertion of `kind` with primary key `key`, if it is known.
    pub fn get(&self, kind: Kind, key: &[&str]) -> Result<Option<Assertion>> {
        let path = self.file(kind, key)?;
        match std::fs::read(&path) {
            Ok(text) => Assertion::parse(&text)
                .map(Some)
                .map_err(|e| bad_assertion(&self.remote, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IoError::new(format!("cannot read {}", path.display()), e).into()),
        }
    }

    /// Every assertion of `kind`.
    pub fn list(&self, kind: Kind) -> Result<Vec<Assertion>> {
        let dir = self.dir.join(kind.name());
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IoError::new(format!("cannot read {}", dir.display()), e).into()),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let text = std::fs::read(entry.path()).ctx("read", &entry.path())?;
            out.push(Assertion::parse(&text).map_err(|e| bad_assertion(&self.remote, e))?);
        }
        out.sort_by(|a, b| a.primary_key().cmp(&b.primary_key()));
        Ok(out)
    }

    /// The remote's root, and every account-key it is known to have certified.
    pub fn keyring(&self, root_key: &str) -> Result<Keyring> {
        let root = self.get(Kind::RootKey, &[root_key])?.ok_or_else(|| {
            StoreError::untrusted(
                &self.remote,
                "its root key is missing from the device's assertions; remove the remote and add it again",
            )
        })?;
        let mut ring = Keyring::new(&root).map_err(|e| not_trusted(&self.remote, e))?;
        for key in self.list(Kind::AccountKey)? {
            ring.add_key(&key)
                .map_err(|e| not_trusted(&self.remote, e))?;
        }
        Ok(ring)
    }

    /// Verifies every assertion of `text` (account-keys first, so the rest can be checked
    /// with them) and keeps those newer than what is known. All or nothing: one that does
    /// not verify refuses the whole stream, before anything is written. Returns how many
    /// were new.
    pub fn add_stream(&self, ring: &mut Keyring, text: &[u8]) -> Result<Vec<Assertion>> {
        let all = Assertion::parse_all(text).map_err(|e| bad_assertion(&self.remote, e))?;
        let (keys, rest): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|a| a.kind() == Kind::AccountKey);
        let mut trial = ring.clone();
        for k in &keys {
            trial.add_key(k).map_err(|e| not_trusted(&self.remote, e))?;
        }
        for a in &rest {
            match a.kind() {
                Kind::RootKey => {
                    if a.primary_key() != [trial.root_id().as_str()] {
                        return Err(StoreError::untrusted(
                            &self.remote,
                            "a root key other than the one the remote was added with; a store's root changes only with 'pack remote add'",
                        ));
                    }
                }
                Kind::Refresh => {
                    return Err(StoreError::untrusted(
                        &self.remote,
                        "refresh answers are not kept as assertions",
                    ));
                }
                _ => trial.verify(a).map_err(|e| not_trusted(&self.remote, e))?,
            }
        }
        let mut added = Vec::new();
        for a in keys.iter().chain(rest.iter()) {
            if a.kind() == Kind::RootKey {
                continue;
            }
            let known = self.get(a.kind(), &a.primary_key())?;
            if known.is_some_and(|k| k.revision() >= a.revision()) {
                continue;
            }
            self.write(a)?;
            added.push(a.clone());
        }
        *ring = trial;
        Ok(added)
    }

    /// Forgets the remote (`pack remote remove`).
    pub fn remove(&self) -> Result<()> {
        fsutil::remove_tree_if_exists(&self.dir).ctx("remove", &self.dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use packfmt::assertion::{Builder, SecretKey};

    fn key_assertion(root: &SecretKey, key: &SecretKey, revision: u64, revoked: bool) -> Assertion {
        let mut b = Builder::new(Kind::AccountKey, "acme")
            .header("public-key-id", key.public().id())
            .header("public-key", key.public().encode())
            .header("since", "2026-01-01T00:00:00Z");
        if revision > 0 {
            b = b.header("revision", revision);
        }
        if revoked {
            b = b.header("revoked", "2026-02-01T00:00:00Z");
        }
        b.sign(root).unwrap()
    }

    fn root_assertion(root: &SecretKey) -> Assertion {
        Builder::new(Kind::RootKey, "acme")
            .header("public-key-id", root.public().id())
            .header("public-key", root.public().encode())
            .sign(root)
            .unwrap()
    }

    fn declaration(key: &SecretKey, name: &str) -> Assertion {
        Builder::new(Kind::PackDeclaration, "acme")
            .header("pack-id", format!("id-{name}"))
            .header("pack-name", name)
            .header("publisher-id", "pub")
            .header("timestamp", "2026-01-01T00:00:00Z")
            .sign(key)
            .unwrap()
    }

    #[test]
    fn keeps_what_verifies_refuses_the_rest_whole_and_never_goes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let root = SecretKey::generate().unwrap();
        let signing = SecretKey::generate().unwrap();
        let db = AssertionDb::new(tmp.path(), "acme");
        db.create(&root_assertion(&root)).unwrap();
        let mut ring = db.keyring(&root.public().id()).unwrap();

        // A declaration before its key: refused, and nothing is written.
        let decl = declaration(&signing, "hello");
        assert!(db.add_stream(&mut ring, &decl.encode()).is_err());
        assert!(db.list(Kind::PackDeclaration).unwrap().is_empty());

        let key = key_assertion(&root, &signing, 0, false);
        let stream = [key.encode(), b"\n".to_vec(), decl.encode()].concat();
        assert_eq!(db.add_stream(&mut ring, &stream).unwrap().len(), 2);
        assert_eq!(db.add_stream(&mut ring, &stream).unwrap().len(), 0);
        assert_eq!(db.keyring(&root.public().id()).unwrap().keys().count(), 1);

        // A key signed by a stranger: refused.
        let stranger = SecretKey::generate().unwrap();
        let forged = key_assertion(&stranger, &stranger, 0, false);
        assert!(db.add_stream(&mut ring, &forged.encode()).is_err());

        // The revocation sticks: its first revision, replayed, changes nothing.
        let revoked = key_assertion(&root, &signing, 1, true);
        db.add_stream(&mut ring, &revoked.encode()).unwrap();
        db.add_stream(&mut ring, &key.encode()).unwrap();
        let ring = db.keyring(&root.public().id()).unwrap();
        assert!(!ring.is_valid_key(&signing.public().id()));
        assert!(ring.verify(&declaration(&signing, "other")).is_err());
    }

    #[test]
    fn a_key_that_is_not_a_plain_name_never_becomes_a_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = SecretKey::generate().unwrap();
        let signing = SecretKey::generate().unwrap();
        let db = AssertionDb::new(&tmp.path().join("db"), "acme");
        db.create(&root_assertion(&root)).unwrap();
        let mut ring = db.keyring(&root.public().id()).unwrap();
        let key = key_assertion(&root, &signing, 0, false);
        db.add_stream(&mut ring, &key.encode()).unwrap();
        for id in ["../../escape", ".hidden", "a/b"] {
            let evil = Builder::new(Kind::PackDeclaration, "acme")
                .header("pack-id", id)
                .header("pack-name", "x")
                .header("publisher-id", "pub")
                .header("timestamp", "2026-01-01T00:00:00Z")
                .sign(&signing)
                .unwrap();
            let e = db
                .add_stream(&mut ring, &evil.encode())
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a plain name"), "{e}");
        }
        assert!(!tmp.path().join("escape").exists());
        assert!(safe_name("GvINJvu3COzRtktYrTVkGI6Kh6yFhrqZ") && safe_name("x_1-2"));
    }
}
