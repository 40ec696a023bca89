//! Installing from a store, and the steps installs and refreshes (`refresh.rs`) share: ask
//! (one verified refresh request per remote), then for each offer check its signed
//! declaration and revision, download it into the cache hashed as it streams, and hand it to
//! the pack manager as a store revision. What fails leaves the device as it was: no change is
//! planned before everything verified; what stays is a partial download (for the next try to
//! resume), the remote's newest serial, and the reports queued for the store.

use std::path::PathBuf;

use packd_api::store::StoreEvent;
use packfmt::Revision;
use packfmt::assertion::{Assertion, Kind};
use packfmt::store::{Installed, Offer, RefreshRequest, Wanted};
use tokio::sync::mpsc::UnboundedSender;

use super::client::{Outcome, Verified};
use super::{Result, StoreError, StoreManager};
use crate::error::IoError;
use crate::state::{Remote, Status, Tracking, now};

/// Where events of an install or a refresh go (the API streams them; auto-refresh logs them).
pub type Events = UnboundedSender<StoreEvent>;

/// Partial downloads are kept up to this many bytes together (the oldest go first).
const CACHE_LIMIT: u64 = 2 << 30;

/// Who asked for a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `pack refresh`: named packs are refreshed even when held or skipped.
    Manual,
    /// The timer: held packs and skipped revisions are left alone, and an unchanged answer
    /// may come back as `304`.
    Auto,
}

/// A change a refresh started, to watch.
#[derive(Debug, Clone)]
pub struct Started {
    pub name: String,
    pub remote: String,
    pub pack_id: String,
    pub revision: u32,
    /// The channel it came from (a rollout's, say).
    pub channel: String,
    pub change: u64,
}

pub(super) fn send(events: &Events, e: StoreEvent) {
    let _ = events.send(e);
}

/// Whether `name` is held at `now` (by its own hold or one on every pack).
pub fn held_until(s: &crate::state::State, name: &str, now: u64) -> Option<u64> {
    [name, "*"]
        .iter()
        .filter_map(|n| s.refresh.holds.get(*n).copied())
        .filter(|until| *until > now)
        .max()
}

impl StoreManager {
    /// The remote to install `name` from: the one named, the only one, or the one of several
    /// that has it.
    async fn pick_remote(&self, name: &str, remote: Option<&str>) -> Result<Remote> {
        let all = self.chosen(remote)?;
        if all.len() == 1 {
            return all.into_iter().next().ok_or(StoreError::NoRemotes);
        }
        let mut having = Vec::new();
        let mut failed = None;
        for r in all {
            match self.client.info(&r, name).await {
                Ok(_) => having.push(r),
                Err(StoreError::StoreSays { .. }) => {}
                Err(e) => failed = Some(e),
            }
        }
        match having.len() {
            // Nobody has it: unless somebody could not say, that is the answer.
            0 => Err(failed.unwrap_or_else(|| StoreError::StoreSays {
                name: name.to_string(),
                code: "not-found".into(),
                message: "no remote has a pack of that name; see 'pack find'".into(),
            })),
            1 => Ok(having.remove(0)),
            _ => Err(StoreError::WhichRemote(
                having
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Refuses an install before anything streams.
    pub fn check_install(&self, name: &str, remote: Option<&str>) -> Result<()> {
        packfmt::meta::validate_pack_name(name).map_err(StoreError::BadRequest)?;
        if let Some(r) = remote {
            self.remote(r)?;
        } else if self.state.read(|s| s.remotes.is_empty()) {
            return Err(StoreError::NoRemotes);
        }
        let installed = self.state.read(|s| {
            s.packs
                .get(name)
                .filter(|p| p.active)
                .map(|p| p.tracking.is_some())
        });
        match installed {
            Some(true) => Err(StoreError::Installed(name.to_string())),
            Some(false) => Err(StoreError::NotFromStore {
                name: name.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// `pack install NAME`: its base first when it is missing, then its content plugs'
    /// default providers (from the same store; one that fails is reported, not fatal).
    pub async fn install(
        &self,
        name: &str,
        channel: &str,
        remote: Option<&str>,
        events: &Events,
    ) -> Result<Started> {
        let _busy = self.busy.lock().await;
        let remote = self.pick_remote(name, remote).await?;
        self.install_locked(&remote, name, channel, events, 0).await
    }

    async fn install_locked(
        &self,
        remote: &Remote,
        name: &str,
        channel: &str,
        events: &Events,
        depth: u8,
    ) -> Result<Started> {
        let wanted = vec![Wanted {
            name: name.to_string(),
            channel: channel.to_string(),
        }];
        let verified = self
            .ask(remote, Vec::new(), wanted, false)
            .await?
            .ok_or_else(|| StoreError::untrusted(&remote.name, "answered 304 to a new question"))?;
        if let Some(e) = verified.answer.errors.iter().find(|e| e.name == name) {
            return Err(StoreError::StoreSays {
                name: name.to_string(),
                code: e.code.clone(),
                message: e.message.clone(),
            });
        }
        let offer = verified
            .answer
            .results
            .iter()
            .find(|o| o.name == name)
            .cloned()
            .ok_or_else(|| StoreError::untrusted(&remote.name, format!("it offered no {name}")))?;
        if let Some(base) = offer.base.clone() {
            let have = self
                .state
                .read(|s| s.packs.get(&base).is_some_and(|p| p.active));
            if !have && depth < 2 {
                let started =
                    Box::pin(self.install_locked(remote, &base, "stable", events, depth + 1))
                        .await?;
                if !self.wait(started.change).await {
                    return Err(StoreError::BadRequest(format!(
                        "cannot install {name}: installing its base {base} failed (see 'pack tasks {}')",
                        started.change
                    )));
                }
            }
        }
        // Content providers: wanted, not needed (the plug just stays unconnected without).
        for provider in &offer.default_providers {
            let have = self
                .state
                .read(|s| s.packs.get(provider).is_some_and(|p| p.active));
            if have || depth >= 2 {
                continue;
            }
            let got =
                Box::pin(self.install_locked(remote, provider, "stable", events, depth + 1)).await;
            match got {
                Ok(started) if self.wait(started.change).await => {}
                Ok(started) => send(
                    events,
                    error_event(
                        provider,
                        &StoreError::BadRequest(format!(
                            "installing {name}'s default provider {provider} failed (see 'pack tasks {}')",
                            started.change
                        )),
                    ),
                ),
                Err(e) => send(events, error_event(provider, &e)),
            }
        }
        self.obtain(remote, &verified, &offer, events).await
    }

    /// One refresh request to `remote` about `packs` and `install`, verified; its serial and
    /// expiry kept, and (`use_etag`, auto-refresh's) its ETag. Its assertions are kept by
    /// [`Self::keep_assertions`], once one of its offers was downloaded and matched, or a
    /// kept revision is gone back to. `None`: `304`.
    pub(super) async fn ask(
        &self,
        remote: &Remote,
        packs: Vec<Installed>,
        install: Vec<Wanted>,
        use_etag: bool,
    ) -> Result<Option<Verified>> {
        let db = self.db(&remote.name);
        let mut ring = db.keyring(&remote.root_key)?;
        let req = RefreshRequest {
            device_id: self.state.read(|s| s.device_id.clone()),
            packs,
            install,
        };
        let digest = super::client::sha3_hex(&serde_json::to_vec(&req).unwrap_or_default());
        let now = now();
        let half_life_left = remote.answer_expires > now
            && (remote.answer_expires - now) * 2
                > remote.answer_expires.saturating_sub(remote.answer_signed);
        let tag = remote
            .etag
            .as_ref()
            .filter(|(_, d)| use_etag && half_life_left && *d == digest)
            .map(|(t, _)| t.as_str());
        let outcome = self
            .client
            .refresh(remote, &mut ring, &req, tag, now)
            .await?;
        let (verified, etag) = match outcome {
            Outcome::NotModified => return Ok(None),
            Outcome::Answer { verified, etag } => (*verified, etag),
        };
        let quiet = verified.answer.results.is_empty();
        self.state.update(|s| {
            if let Some(r) = s.remotes.get_mut(&remote.name) {
                r.serial = r.serial.max(verified.serial);
                r.answer_expires = verified.expires;
                r.answer_signed = verified.signed_at;
                if use_etag {
                    r.etag = etag.filter(|_| quiet).map(|t| (t, digest.clone()));
                }
            }
            Ok::<_, StoreError>(())
        })?;
        // The store answers: what waited for it can go now.
        if self
            .state
            .read(|s| s.reports.iter().any(|r| r.remote == remote.name))
        {
            self.flush_reports().await;
        }
        Ok(Some(verified))
    }

    /// The signed facts about `offer`: its declaration names it, its revision assertion has
    /// its digest and size and is not revoked. Returns the interfaces the declaration lets
    /// it auto-connect.
    fn check_offer(
        &self,
        remote: &Remote,
        verified: &Verified,
        offer: &Offer,
    ) -> Result<Vec<String>> {
        // The newest of what came with the answer and what the device kept: an older copy
        // slipped into the (unsigned) stream never wins.
        let find = |kind: Kind, key: &[&str]| -> Result<Option<Assertion>> {
            let sent = verified
                .assertions
                .iter()
                .filter(|a| a.kind() == kind && a.primary_key() == key)
                .max_by_key(|a| a.revision())
                .cloned();
            let kept = self.db(&remote.name).get(kind, key)?;
            Ok(match (sent, kept) {
                (Some(s), Some(k)) => Some(if k.revision() > s.revision() { k } else { s }),
                (s, k) => s.or(k),
            })
        };
        let bad = |m: String| StoreError::untrusted(&remote.name, m);
        // Names that become file names and requests: plain ones only.
        if !super::assertdb::safe_name(&offer.pack_id) {
            return Err(bad(format!(
                "pack-id {:?} is not a plain name",
                offer.pack_id
            )));
        }
        let names = std::iter::once(&offer.name)
            .chain(offer.base.iter())
            .chain(offer.default_providers.iter());
        for n in names {
            packfmt::meta::validate_pack_name(n).map_err(bad)?;
        }
        let decl = find(Kind::PackDeclaration, &[&offer.pack_id])?
            .ok_or_else(|| bad(format!("no pack-declaration for {}", offer.name)))?;
        if decl.revision() != offer.declaration_revision {
            return Err(bad(format!(
                "the answer stands on revision {} of {}'s declaration, but revision {} came with it",
                offer.declaration_revision,
                offer.name,
                decl.revision()
            )));
        }
        if decl.get("pack-name") != offer.name {
            return Err(bad(format!(
                "pack-id {} is declared as {:?}, not {:?}",
                offer.pack_id,
                decl.get("pack-name"),
                offer.name
            )));
        }
        let rev = offer.revision.to_string();
        let ra = find(Kind::PackRevision, &[&offer.pack_id, &rev])?
            .ok_or_else(|| bad(format!("no pack-revision for {} {rev}", offer.name)))?;
        if ra.is_revoked() {
            return Err(bad(format!("{} revision {rev} is revoked", offer.name)));
        }
        if ra.get("pack-sha3-384") != offer.sha3_384
            || ra.get("pack-size") != offer.size.to_string()
        {
            return Err(bad(format!(
                "the offer of {} {rev} does not match its signed pack-revision",
                offer.name
            )));
        }
        Ok(decl
            .header("allow-auto-connection")
            .unwrap_or("")
            .split(',')
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Downloads and checks `offer`, and plans its install; the change, started.
    pub(super) async fn obtain(
        &self,
        remote: &Remote,
        verified: &Verified,
        offer: &Offer,
        events: &Events,
    ) -> Result<Started> {
        let grants = self.check_offer(remote, verified, offer)?;
        self.queue_report(&remote.name, offer, "started", None);
        let tracking = Tracking {
            remote: remote.name.clone(),
            pack_id: offer.pack_id.clone(),
            channel: offer.channel.clone(),
            grants,
        };
        let started = |change| Started {
            name: offer.name.clone(),
            remote: remote.name.clone(),
            pack_id: offer.pack_id.clone(),
            revision: offer.revision,
            channel: offer.released_to.clone(),
            change,
        };
        // A revision kept from before (the current one revoked, say): go back to it.
        let rev = Revision::Store(offer.revision);
        let kept = self.state.read(|s| {
            s.packs.get(&offer.name).is_some_and(|p| {
                p.current != rev
                    && p.revision(rev)
                        .is_some_and(|r| r.sha3_384 == offer.sha3_384)
            })
        });
        if kept {
            self.keep_assertions(remote, verified)?;
            // Tracking stays as it is: the kept revision was installed from this same pack.
            let id = self.packs.revert(&offer.name, Some(rev))?;
            send(
                events,
                StoreEvent::Change {
                    name: offer.name.clone(),
                    id: id.to_string(),
                },
            );
            return Ok(started(id));
        }
        let cache = self.paths.download_cache();
        make_room(&cache, offer.size);
        let partial = cache.join(format!("{}_{}.partial", offer.pack_id, offer.revision));
        let mut sent = 0u64;
        let name = offer.name.clone();
        let digest = self
            .client
            .download(remote, offer, &partial, |done, total| {
                if done == total || done >= sent + (256 << 10) || done == 0 {
                    sent = done;
                    send(
                        events,
                        StoreEvent::Download {
                            name: name.clone(),
                            revision: offer.revision,
                            done,
                            total,
                        },
                    );
                }
            })
            .await?;
        if digest != offer.sha3_384 {
            let _ = std::fs::remove_file(&partial);
            return Err(StoreError::untrusted(
                &remote.name,
                format!(
                    "the download of {} {} is not what the store signed (SHA3-384 {digest}, signed {}); it was discarded",
                    offer.name, offer.revision, offer.sha3_384
                ),
            ));
        }
        self.queue_report(&remote.name, offer, "downloaded", None);
        self.keep_assertions(remote, verified)?;
        let staged = self.stage(&partial, offer)?;
        let packs = self.packs.clone();
        let (path, size, sha3, label) = (staged.clone(), offer.size, digest, offer.name.clone());
        let from = Some((offer.revision, tracking));
        let planned =
            tokio::task::spawn_blocking(move || packs.install(path, size, sha3, label, from))
                .await
                .map_err(|e| StoreError::BadRequest(format!("the inspection crashed: {e}")));
        let id = match planned {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&staged);
                return Err(e.into());
            }
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                return Err(e);
            }
        };
        self.packs.start(id);
        send(
            events,
            StoreEvent::Change {
                name: offer.name.clone(),
                id: id.to_string(),
            },
        );
        Ok(started(id))
    }

    /// Adds the assertions of a verified answer to the device's database.
    fn keep_assertions(&self, remote: &Remote, verified: &Verified) -> Result<()> {
        let db = self.db(&remote.name);
        let mut ring = db.keyring(&remote.root_key)?;
        let stream: Vec<u8> = verified
            .assertions
            .iter()
            .flat_map(|a| [a.encode(), b"\n".to_vec()])
            .flatten()
            .collect();
        db.add_stream(&mut ring, &stream)?;
        Ok(())
    }

    /// Moves a verified download to where uploads are staged.
    fn stage(&self, partial: &std::path::Path, offer: &Offer) -> Result<PathBuf> {
        let mut raw = [0u8; 6];
        getrandom::fill(&mut raw)
            .map_err(|e| StoreError::BadRequest(format!("no randomness: {e}")))?;
        let tag: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let staged = self.paths.upload_dir().join(format!(
            "store-{}-{}-{tag}.pack",
            offer.name, offer.revision
        ));
        if std::fs::rename(partial, &staged).is_err() {
            std::fs::copy(partial, &staged)
                .map_err(|e| IoError::new(format!("cannot stage {}", staged.display()), e))?;
            let _ = std::fs::remove_file(partial);
        }
        Ok(staged)
    }

    /// Waits until change `id` is ready; whether it succeeded.
    pub async fn wait(&self, id: u64) -> bool {
        let mut rx = self.state.subscribe();
        loop {
            let status = self
                .state
                .read(|s| s.changes.get(&id).map(|c| (c.is_ready(), c.status())));
            match status {
                None => return false,
                Some((true, st)) => return st == Status::Done,
                Some((false, _)) => {}
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// A channel's shape (the store checks the rest): `[track/]risk[/branch]`.
pub fn check_channel(channel: &str) -> Result<()> {
    let parts: Vec<&str> = channel.split('/').collect();
    let ok = (1..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        });
    if !ok {
        return Err(StoreError::BadRequest(format!(
            "invalid channel {channel:?}: write [TRACK/]RISK[/BRANCH], e.g. stable, 2.x/beta or edge/fix-1"
        )));
    }
    Ok(())
}

pub fn error_event(name: &str, e: &StoreError) -> StoreEvent {
    StoreEvent::Error {
        name: name.to_string(),
        kind: e.kind().as_str().to_string(),
        message: e.to_string(),
    }
}

/// Drops the oldest partial downloads until `incoming` more bytes fit under the limit.
fn make_room(cache: &std::path::Path, incoming: u64) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            Some((md.modified().ok()?, md.len(), e.path()))
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (_, len, path) in files {
        if total + incoming <= CACHE_LIMIT {
            break;
        }
        tracing::info!(path = %path.display(), "dropping a partial download to make room");
        let _ = std::fs::remove_file(&path);
        total -= len;
    }
}
