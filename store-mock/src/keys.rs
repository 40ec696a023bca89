//! A store's directory and its keys:
//!
//! ```text
//! DIR/store.db                 the database
//! DIR/blobs/SHA3-384           uploaded packs, by content
//! DIR/tmp/                     uploads being checked
//! DIR/keys/root.key            the root key (0600): only `init` and `key` commands read it, never
//!                              `serve`; an operator may keep it offline and bring it back for those
//! DIR/keys/signing/ID.key      online signing keys (0600), certified by the root
//! DIR/root.assert              the root's public assertion, for devices (`pack remote add --trust`)
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use packfmt::assertion::{Assertion, Builder, Kind, SecretKey};

use crate::StoreError;
use crate::db::Db;

type Result<T> = std::result::Result<T, StoreError>;

/// The paths of one store directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("cannot {what} {}: {e}", path.display()))
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.dir.join("store.db")
    }
    pub fn blobs(&self) -> PathBuf {
        self.dir.join("blobs")
    }
    pub fn blob(&self, sha3: &str) -> PathBuf {
        self.blobs().join(sha3)
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("keys/root.key")
    }
    pub fn signing_key(&self, id: &str) -> PathBuf {
        self.dir.join("keys/signing").join(format!("{id}.key"))
    }
    pub fn root_assert(&self) -> PathBuf {
        self.dir.join("root.assert")
    }

    /// Opens the database of an existing store.
    pub fn open_db(&self) -> Result<Db> {
        if !self.db().is_file() {
            return Err(StoreError::NotAStore(self.dir.clone()));
        }
        Db::open(&self.db())
    }

    pub fn read_root_key(&self) -> Result<SecretKey> {
        read_key(&self.root_key())
    }

    /// The signing key in use.
    pub fn read_signing_key(&self, db: &Db) -> Result<SecretKey> {
        let id = db.setting("signing-key")?.ok_or_else(|| {
            StoreError::Io("the store has no signing key; run pack-store key rotate".into())
        })?;
        read_key(&self.signing_key(&id))
    }
}

fn read_key(path: &Path) -> Result<SecretKey> {
    let text = fs::read_to_string(path).map_err(|e| io("read the key", path, e))?;
    SecretKey::from_text(&text).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))
}

/// Writes `key` to a new file `path`, readable by its owner only.
pub fn write_key(path: &Path, key: &SecretKey) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("create", path, e))?;
    f.write_all(key.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", path, e))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The `account-key` certifying `key`, signed by `root`; `revoked` ends it.
pub fn certify(
    authority: &str,
    root: &SecretKey,
    key: &SecretKey,
    revision: u64,
    revoked: Option<i64>,
) -> Result<Assertion> {
    let pk = key.public();
    let mut b = Builder::new(Kind::AccountKey, authority)
        .header("public-key-id", pk.id())
        .header("public-key", pk.encode())
        .header("since", rfc3339(now()));
    if revision > 0 {
        b = b.header("revision", revision);
    }
    if let Some(at) = revoked {
        b = b.header("revoked", rfc3339(at));
    }
    b.sign(root).map_err(StoreError::from)
}

/// Creates a store in `dir` (empty or missing): its database, directories, root key, a first
/// signing key certified by the root, and `root.assert`.
pub fn init(dir: &Path, authority: &str) -> Result<Layout> {
    crate::check_id("store id", authority)?;
    let l = Layout::new(dir);
    if l.db().exists() || l.root_key().exists() {
        return Err(StoreError::Conflict(format!(
            "{} holds a store already; pick another directory",
            dir.display()
        )));
    }
    if fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(StoreError::Conflict(format!(
            "{} is not empty; pick a new or empty directory",
            dir.display()
        )));
    }
    // Made beside DIR and renamed into place: a failure half-way leaves nothing.
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StoreError::Invalid(format!("{} is not a directory name", dir.display())))?;
    let staging = dir.with_file_name(format!(".{name}.init-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let made = make(&staging, authority)
        .and_then(|()| fs::rename(&staging, dir).map_err(|e| io("create", dir, e)));
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(l)
}

/// A new store's files in `dir`.
fn make(dir: &Path, authority: &str) -> Result<()> {
    let l = Layout::new(dir);
    for d in [
        l.dir.clone(),
        l.blobs(),
        l.tmp(),
        l.dir.join("keys/signing"),
    ] {
        fs::create_dir_all(&d).map_err(|e| io("create", &d, e))?;
    }
    let root = SecretKey::generate()?;
    let pk = root.public();
    let root_assert = Builder::new(Kind::RootKey, authority)
        .header("public-key-id", pk.id())
        .header("public-key", pk.encode())
        .header("timestamp", rfc3339(now()))
        .sign(&root)?;
    let signing = SecretKey::generate()?;
    let cert = certify(authority, &root, &signing, 0, None)?;
    let mut db = Db::open(&l.db())?;
    write_key(&l.root_key(), &root)?;
    write_key(&l.signing_key(&signing.public().id()), &signing)?;
    db.transaction(|db| {
        db.set_setting("authority-id", authority)?;
        db.set_setting("signing-key", &signing.public().id())?;
        db.put_assertion(&root_assert)?;
        db.put_assertion(&cert)?;
        db.bump()?;
        Ok(())
    })?;
    drop(db);
    let path = l.root_assert();
    fs::write(&path, root_assert.encode()).map_err(|e| io("write", &path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_whole_store_or_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        init(&dir, "acme").unwrap();
        assert!(Layout::new(&dir).root_assert().is_file());
        assert!(init(&dir, "acme").is_err(), "a second init over a store");

        let busy = tmp.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("notes"), "mine").unwrap();
        let e = init(&busy, "acme").unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        assert_eq!(fs::read_to_string(busy.join("notes")).unwrap(), "mine");

        // A bad id fails before anything is made; so does a parent that is a file.
        assert!(init(&tmp.path().join("x"), "bad id!").is_err());
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(init(&file.join("store"), "acme").is_err());
        let mut left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["busy", "file", "store"]);
    }
}
