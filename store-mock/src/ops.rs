//! What changes a store: publishers registering names, uploading and releasing revisions,
//! closing channels and revoking revisions; the operator adding publishers and rotating or
//! revoking signing keys. Each change is one transaction that also bumps the serial; the
//! catalog is taken again after it.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use packfmt::assertion::{Assertion, Builder, Kind, SecretKey};

use crate::catalog::Catalog;
use crate::channel::Channel;
use crate::db::{Db, PackRow, Publisher, RevisionRow};
use crate::keys::{self, Layout, now, rfc3339};
use crate::{StoreError, check_id, random_id, sha3_hex};

type Result<T> = std::result::Result<T, StoreError>;

/// An open store.
pub struct Store {
    pub layout: Layout,
    db: Mutex<Db>,
    catalog: RwLock<Arc<Catalog>>,
    /// The signing key in use, by id.
    signing: Mutex<Option<(String, Arc<SecretKey>)>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let layout = Layout::new(dir);
        let db = layout.open_db()?;
        let catalog = Catalog::load(&db)?;
        Ok(Store {
            layout,
            db: Mutex::new(db),
            catalog: RwLock::new(Arc::new(catalog)),
            signing: Mutex::new(None),
        })
    }

    /// Records a device's report; counted in its rollout, whose halt bumps the serial.
    pub fn report(&self, r: &crate::db::Report) -> Result<()> {
        if !crate::db::OUTCOMES.contains(&r.outcome.as_str()) {
            return Err(StoreError::Invalid(format!(
                "unknown outcome {:?}; reports take: {}",
                r.outcome,
                crate::db::OUTCOMES.join(", ")
            )));
        }
        if r.device_id.is_empty()
            || r.device_id.len() > 128
            || r.pack_id.is_empty()
            || r.pack_id.len() > 128
            || r.report_id.as_ref().is_some_and(|i| i.len() > 64)
        {
            return Err(StoreError::Invalid(
                "a report needs a device-id and a pack-id".into(),
            ));
        }
        let mut r = r.clone();
        r.message = r.message.map(|m| m.chars().take(1000).collect());
        r.task = r.task.map(|t| t.chars().take(100).collect());
        let new = self.lock().add_report(&r, now())?;
        if new {
            self.count_report(&r)?;
        }
        Ok(())
    }

    /// Devices' reports on `pack_id`: (revision, outcome, devices).
    pub fn reports(&self, pack_id: &str) -> Result<Vec<(u32, String, u64)>> {
        self.lock().report_counts(pack_id)
    }

    /// What the store offers now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the catalog again if the database changed (another process, such as
    /// `pack-store key rotate`, may have changed it).
    pub fn reload_if_changed(&self) -> Result<bool> {
        let db = self.lock();
        if db.serial()? == self.catalog().serial {
            return Ok(false);
        }
        self.reload(&db)?;
        Ok(true)
    }

    pub(crate) fn reload(&self, db: &Db) -> Result<()> {
        let fresh = Arc::new(Catalog::load(db)?);
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a change in one transaction, bumps the serial, and takes the catalog again.
    pub(crate) fn change<T>(
        &self,
        f: impl FnOnce(&Db, &SecretKey, &str) -> Result<T>,
    ) -> Result<T> {
        let key = self.signing_key()?;
        let mut db = self.lock();
        let authority = self.catalog().authority.clone();
        let out = db.transaction(|db| {
            let v = f(db, &key, &authority)?;
            db.bump()?;
            Ok(v)
        })?;
        self.reload(&db)?;
        Ok(out)
    }

    /// The signing key in use (read again when another was made current).
    pub fn signing_key(&self) -> Result<Arc<SecretKey>> {
        let id = self
            .lock()
            .setting("signing-key")?
            .ok_or_else(|| StoreError::Io("the store has no signing key".into()))?;
        let mut cached = self.signing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, key)) = cached.as_ref()
            && *known == id
        {
            return Ok(key.clone());
        }
        let db = self.lock();
        let key = Arc::new(self.layout.read_signing_key(&db)?);
        *cached = Some((id, key.clone()));
        Ok(key)
    }

    /// The publisher a token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Publisher> {
        self.lock()
            .publisher_by_token(&sha3_hex(token.as_bytes()))?
            .ok_or_else(|| {
                StoreError::Unauthorized(
                    "the token is not one of this store's publishers'; ask the store's operator for one (pack-store publisher add)".into(),
                )
            })
    }

    /// Adds a publisher; its token (shown once: only its digest is kept).
    pub fn add_publisher(&self, name: &str) -> Result<String> {
        check_id("publisher name", name)?;
        let token = random_id(32)?;
        let id = random_id(16)?;
        self.change(|db, _, _| db.add_publisher(&id, name, &sha3_hex(token.as_bytes()), now()))?;
        Ok(token)
    }

    /// Registers `name` for `publisher`; its pack-id.
    pub fn register(&self, publisher: &Publisher, name: &str) -> Result<String> {
        check_id("pack name", name)?;
        if let Some(p) = self.lock().pack(name)? {
            return Err(StoreError::Conflict(if p.publisher_id == publisher.id {
                format!("you have registered {name:?} already")
            } else {
                format!("{name:?} is registered by another publisher; pick another name")
            }));
        }
        let pack_id = random_id(24)?;
        self.change(|db, key, authority| {
            db.add_pack(&pack_id, name, &publisher.id, now())?;
            let decl = Builder::new(Kind::PackDeclaration, authority)
                .header("pack-id", &pack_id)
                .header("pack-name", name)
                .header("publisher-id", &publisher.id)
                .header("publisher", &publisher.name)
                .header("timestamp", rfc3339(now()))
                .sign(key)?;
            db.put_assertion(&decl)
        })?;
        Ok(pack_id)
    }

    /// The pack `name`, if `publisher` owns it.
    pub(crate) fn owned(&self, publisher: &Publisher, name: &str) -> Result<PackRow> {
        match self.lock().pack(name)? {
            Some(p) if p.publisher_id == publisher.id => Ok(p),
            Some(_) => Err(StoreError::Forbidden(format!(
                "{name:?} belongs to another publisher"
            ))),
            None => Err(StoreError::NotFound(format!(
                "{name:?} is not registered; register it first: pack-store register {name}"
            ))),
        }
    }

    /// Accepts the package staged at `staged` (checked like `pack install` checks a file),
    /// keeps it by its digest, and releases it to `channels`; its revision.
    pub fn upload(
        &self,
        publisher: &Publisher,
        staged: &Path,
        size: u64,
        sha3: &str,
        channels: &[Channel],
    ) -> Result<u32> {
        let inspected = gadget_kernel_base::inspect::inspect(staged, "the upload")
            .map_err(|e| StoreError::Invalid(format!("the package is refused: {e}")))?;
        let meta = inspected.meta;
        let pack = self.owned(publisher, &meta.name)?;
        let cat = self.catalog();
        if let Some(e) = cat.packs.get(&pack.name)
            && let Some(r) = e.revisions.values().find(|r| r.sha3 == sha3)
        {
            return Err(StoreError::Conflict(format!(
                "this exact file is revision {} of {} already; release that one",
                r.revision, pack.name
            )));
        }
        let blob = self.layout.blob(sha3);
        std::fs::rename(staged, &blob)
            .map_err(|e| StoreError::Io(format!("cannot keep the upload: {e}")))?;
        let result = self.change(|db, key, authority| {
            let revision = db.next_revision(&pack.pack_id)?;
            db.add_revision(
                &RevisionRow {
                    pack_id: pack.pack_id.clone(),
                    revision,
                    version: meta.version.clone(),
                    summary: meta.summary.clone().unwrap_or_default(),
                    description: meta.description.clone().unwrap_or_default(),
                    pack_type: meta.pack_type.as_str().to_string(),
                    base: meta.base.clone(),
                    sha3: sha3.to_string(),
                    size,
                    revoked: None,
                    providers: default_providers(&meta),
                },
                now(),
            )?;
            let a =
                revision_assertion(authority, &pack, revision, sha3, size, None, 0)?.sign(key)?;
            db.put_assertion(&a)?;
            for c in channels {
                crate::rollouts::supersede(db, &pack.pack_id, c)?;
                db.add_release(&pack.pack_id, c, Some(revision), now())?;
            }
            Ok(revision)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&blob);
        }
        result
    }

    /// Refuses a revision that does not exist or is revoked.
    pub(crate) fn releasable(&self, name: &str, revision: u32) -> Result<()> {
        let cat = self.catalog();
        match cat.packs.get(name).and_then(|e| e.revisions.get(&revision)) {
            None => Err(StoreError::NotFound(format!(
                "{name} has no revision {revision}; see pack-store status {name}"
            ))),
            Some(r) if r.revoked.is_some() => Err(StoreError::Invalid(format!(
                "revision {revision} of {name} is revoked; it cannot be released again"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Releases revision `revision` of `name` to `channels`.
    pub fn release(
        &self,
        publisher: &Publisher,
        name: &str,
        revision: u32,
        channels: &[Channel],
    ) -> Result<()> {
        let pack = self.owned(publisher, name)?;
        self.releasable(name, revision)?;
        self.change(|db, _, _| {
            for c in channels {
                crate::rollouts::supersede(db, &pack.pack_id, c)?;
                db.add_release(&pack.pack_id, c, Some(revision), now())?;
            }
            Ok(())
        })
    }

    /// Closes `channels` of `name`: they follow the next more stable risk from now on.
    pub fn close(&self, publisher: &Publisher, name: &str, channels: &[Channel]) -> Result<()> {
        let pack = self.owned(publisher, name)?;
        self.change(|db, _, _| {
            for c in channels {
                crate::rollouts::supersede(db, &pack.pack_id, c)?;
                db.add_release(&pack.pack_id, c, None, now())?;
            }
            Ok(())
        })
    }

    /// Revokes revision `revision` of `name` (its publisher's, or the operator's with
    /// `publisher` `None`): no device installs it again, those that run it move away.
    pub fn revoke(&self, publisher: Option<&Publisher>, name: &str, revision: u32) -> Result<()> {
        let pack = match publisher {
            Some(p) => self.owned(p, name)?,
            None => self
                .lock()
                .pack(name)?
                .ok_or_else(|| StoreError::NotFound(format!("no pack named {name:?}")))?,
        };
        let cat = self.catalog();
        let Some(rev) = cat
            .packs
            .get(name)
            .and_then(|e| e.revisions.get(&revision))
            .cloned()
        else {
            return Err(StoreError::NotFound(format!(
                "{name} has no revision {revision}"
            )));
        };
        if rev.revoked.is_some() {
            return Err(StoreError::Conflict(format!(
                "revision {revision} of {name} is revoked already"
            )));
        }
        let old = cat
            .assertion("pack-revision", &format!("{}/{revision}", pack.pack_id))
            .and_then(|t| Assertion::parse(t).ok())
            .map_or(0, |a| a.revision());
        self.change(|db, key, authority| {
            let at = now();
            db.revoke_revision(&pack.pack_id, revision, at)?;
            crate::rollouts::halt_revoked(db, &pack.pack_id, revision)?;
            let a = revision_assertion(
                authority,
                &pack,
                revision,
                &rev.sha3,
                rev.size,
                Some(at),
                old + 1,
            )?
            .sign(key)?;
            db.put_assertion(&a)
        })
    }

    /// Signs the answer to a refresh request whose body was `request`.
    pub fn sign_answer(
        &self,
        body: &[u8],
        request: &[u8],
        serial: u64,
        lifetime_secs: i64,
    ) -> Result<Assertion> {
        let key = self.signing_key()?;
        let cat = self.catalog();
        Builder::new(Kind::Refresh, &cat.authority)
            .header("serial", serial)
            .header("expires", rfc3339(now() + lifetime_secs))
            .header("request-sha3-384", sha3_hex(request))
            .header("timestamp", rfc3339(now()))
            .body(body.to_vec())
            .sign(&key)
            .map_err(StoreError::from)
    }
}

/// The packs `meta`'s content plugs name as their `default-provider` (`NAME` or
/// `NAME:SLOT`), which a device installs with it.
fn default_providers(meta: &packfmt::PackMeta) -> Vec<String> {
    let mut out: Vec<String> = meta
        .plugs
        .values()
        .filter(|p| p.interface == "content")
        .filter_map(|p| p.attrs.get("default-provider")?.as_str())
        .map(|d| d.split(':').next().unwrap_or(d).to_string())
        .filter(|d| *d != meta.name)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn revision_assertion(
    authority: &str,
    pack: &PackRow,
    revision: u32,
    sha3: &str,
    size: u64,
    revoked: Option<i64>,
    assertion_revision: u64,
) -> Result<Builder> {
    let mut b = Builder::new(Kind::PackRevision, authority)
        .header("pack-id", &pack.pack_id)
        .header("pack-revision", revision)
        .header("pack-sha3-384", sha3)
        .header("pack-size", size)
        .header("publisher-id", &pack.publisher_id)
        .header("timestamp", rfc3339(now()));
    if assertion_revision > 0 {
        b = b.header("revision", assertion_revision);
    }
    if let Some(at) = revoked {
        b = b.header("revoked", rfc3339(at));
    }
    Ok(b)
}

/// `pack-store key rotate DIR`: a new signing key, certified by the root, used from now on
/// (the old one stays valid until it is revoked). Its id.
pub fn rotate_key(dir: &Path) -> Result<String> {
    let layout = Layout::new(dir);
    let mut db = layout.open_db()?;
    let root = layout.read_root_key()?;
    let authority = db.setting("authority-id")?.unwrap_or_default();
    let key = SecretKey::generate()?;
    let id = key.public().id();
    let cert = keys::certify(&authority, &root, &key, 0, None)?;
    keys::write_key(&layout.signing_key(&id), &key)?;
    db.transaction(|db| {
        db.put_assertion(&cert)?;
        db.set_setting("signing-key", &id)?;
        db.bump()?;
        Ok(())
    })?;
    Ok(id)
}

/// `pack-store declare DIR NAME --allow-auto-connection IFACE,...`: signs `NAME`'s
/// declaration again (a new revision) with the interfaces its plugs may auto-connect.
pub fn declare(dir: &Path, name: &str, allow: &[String]) -> Result<()> {
    for iface in allow {
        if interfaces::find(iface).is_none() {
            return Err(StoreError::Invalid(format!(
                "unknown interface {iface:?}; see 'pack interfaces' on a device"
            )));
        }
    }
    let layout = Layout::new(dir);
    let mut db = layout.open_db()?;
    let pack = db
        .pack(name)?
        .ok_or_else(|| StoreError::NotFound(format!("this store has no pack named {name:?}")))?;
    let signing = layout.read_signing_key(&db)?;
    let decl = db
        .assertions()?
        .iter()
        .filter_map(|t| Assertion::parse(t).ok())
        .find(|a| a.kind() == Kind::PackDeclaration && a.get("pack-id") == pack.pack_id)
        .ok_or_else(|| StoreError::Io(format!("{name} has no declaration")))?;
    let mut b = decl
        .to_builder()
        .header("revision", decl.revision() + 1)
        .header("timestamp", rfc3339(now()));
    b = if allow.is_empty() {
        b.without("allow-auto-connection")
    } else {
        b.header("allow-auto-connection", allow.join(","))
    };
    let signed = b.sign(&signing)?;
    db.transaction(|db| {
        db.put_assertion(&signed)?;
        db.bump()?;
        Ok(())
    })
}

/// `pack-store key revoke DIR KEY`: ends signing key `KEY`; what it signed is signed again
/// with the current key, so devices keep trusting it through that one alone.
pub fn revoke_key(dir: &Path, id: &str) -> Result<usize> {
    let layout = Layout::new(dir);
    let mut db = layout.open_db()?;
    let current = db.setting("signing-key")?.unwrap_or_default();
    if id == current {
        return Err(StoreError::Invalid(format!(
            "{id} is the signing key in use; rotate first (pack-store key rotate {}), then revoke it",
            dir.display()
        )));
    }
    let root = layout.read_root_key()?;
    let signing = layout.read_signing_key(&db)?;
    let texts = db.assertions()?;
    let all: Vec<Assertion> = texts
        .iter()
        .filter_map(|t| Assertion::parse(t).ok())
        .collect();
    let Some(cert) = all
        .iter()
        .find(|a| a.kind() == Kind::AccountKey && a.get("public-key-id") == id)
    else {
        return Err(StoreError::NotFound(format!(
            "this store has no signing key {id}"
        )));
    };
    if cert.is_revoked() {
        return Err(StoreError::Conflict(format!("key {id} is revoked already")));
    }
    let revoked = cert
        .to_builder()
        .header("revision", cert.revision() + 1)
        .header("revoked", rfc3339(now()))
        .sign(&root)?;
    let resign: Vec<Assertion> = all.iter().filter(|a| a.sign_key() == id).cloned().collect();
    db.transaction(|db| {
        db.put_assertion(&revoked)?;
        for a in &resign {
            let again = a
                .to_builder()
                .header("revision", a.revision() + 1)
                .sign(&signing)?;
            db.put_assertion(&again)?;
        }
        db.bump()?;
        Ok(())
    })?;
    Ok(resign.len())
}
