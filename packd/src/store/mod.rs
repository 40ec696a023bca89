//! The store manager: the remotes this device trusts, its assertion database, search and
//! info, installs and refreshes from a store, holds, and auto-refresh.
//!
//! - [`client`]: the store's HTTP API, with the checks on every answer;
//! - [`assertdb`]: verified assertions, one directory per remote;
//! - `fetch`: installing, and what refreshing shares with it: one refresh request per
//!   remote, then each offer's download, hashed as it streams and checked against its signed
//!   `pack-revision`, handed to the pack manager as a store revision. A download happens before any change exists (as an
//!   upload does), so a change never waits on the network and a crash never resumes half a
//!   download; the cache keeps partial downloads (bounded) so the next try resumes them;
//! - `refresh`: `pack refresh` (and `--list`, `switch`), and the timer's refreshes;
//! - `auto`: the `refresh.timer` loop, holds and skipped revisions;
//! - `reports`: what each install or refresh did, queued and sent to its store;
//! - [`timer`]: the `refresh.timer` syntax.

pub mod assertdb;
mod auto;
pub mod client;
mod error;
mod fetch;
mod refresh;
mod reports;
pub mod timer;

use std::collections::BTreeMap;
use std::sync::Arc;

use packd_api::store::{FoundInfo, KnownAssertion, RemoteInfo, StorePackInfo};
use packfmt::assertion::{Assertion, Kind};

pub use error::StoreError;
pub use fetch::{Events, Mode, Started, check_channel, error_event};

use crate::packs::PackManager;
use crate::paths::Paths;
use crate::state::{Remote, Store};
use assertdb::AssertionDb;
use client::StoreClient;

type Result<T> = std::result::Result<T, StoreError>;

pub struct StoreManager {
    paths: Paths,
    state: Arc<Store>,
    packs: Arc<PackManager>,
    client: StoreClient,
    /// One install or refresh at a time: each reads and advances a remote's serial.
    busy: tokio::sync::Mutex<()>,
    /// Wakes the auto-refresh loop (a setting or a hold changed).
    wake: tokio::sync::Notify,
    /// When the loop will next run (seconds since the epoch), for `pack refresh --time`.
    next: std::sync::Mutex<Option<u64>>,
    /// Held while queued reports are being sent.
    flushing: tokio::sync::Mutex<()>,
}

/// A remote's name: as a pack's (lowercase letters, digits, dashes).
fn check_remote_name(name: &str) -> Result<()> {
    packfmt::meta::validate_pack_name(name)
        .map_err(|e| StoreError::BadRequest(e.replace("pack name", "remote name")))
}

fn check_url(url: &str) -> Result<String> {
    let url = url.trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() < 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(StoreError::BadRequest(format!(
            "invalid store URL {url:?}: write it as http://HOST[:PORT] or https://HOST[:PORT]"
        )));
    }
    Ok(url.to_string())
}

impl StoreManager {
    pub fn new(paths: Paths, state: Arc<Store>, packs: Arc<PackManager>) -> Result<Arc<Self>> {
        state.update(|s| {
            if s.device_id.is_none() {
                let mut raw = [0u8; 16];
                getrandom::fill(&mut raw)
                    .map_err(|e| StoreError::BadRequest(format!("no randomness: {e}")))?;
                s.device_id = Some(raw.iter().map(|b| format!("{b:02x}")).collect());
            }
            Ok::<_, StoreError>(())
        })?;
        let manager = Arc::new(StoreManager {
            paths,
            state,
            packs,
            client: StoreClient::new()?,
            busy: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            next: std::sync::Mutex::new(None),
            flushing: tokio::sync::Mutex::new(()),
        });
        manager.provision();
        Ok(manager)
    }

    fn db(&self, remote: &str) -> AssertionDb {
        AssertionDb::new(&self.paths.assertions_dir(), remote)
    }

    fn remote(&self, name: &str) -> Result<Remote> {
        self.state
            .read(|s| s.remotes.get(name).cloned())
            .ok_or_else(|| StoreError::NoRemote(name.to_string()))
    }

    /// Adds the remotes an image carries under `etc/packd/remotes` that are not known yet.
    fn provision(&self) {
        let dir = self.paths.provisioned_remotes();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "url") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            if self.state.read(|s| s.remotes.contains_key(name)) {
                continue;
            }
            let url = std::fs::read_to_string(&path).unwrap_or_default();
            let trust = std::fs::read_to_string(path.with_extension("assert")).unwrap_or_default();
            // At start: nothing else runs yet.
            match self.add_remote_now(name, url.trim(), &trust) {
                Ok(_) => tracing::info!(remote = name, "added a provisioned remote"),
                Err(e) => {
                    tracing::warn!(remote = name, error = %e, "cannot add a provisioned remote")
                }
            }
        }
    }

    pub fn remotes(&self) -> Vec<RemoteInfo> {
        self.state.read(|s| {
            s.remotes
                .values()
                .map(|r| RemoteInfo {
                    name: r.name.clone(),
                    url: r.url.clone(),
                    authority: r.authority.clone(),
                    root_key: r.root_key.clone(),
                    packs: s
                        .packs
                        .values()
                        .filter(|p| p.tracking.as_ref().is_some_and(|t| t.remote == r.name))
                        .map(|p| p.name.clone())
                        .collect(),
                })
                .collect()
        })
    }

    /// `pack remote add NAME URL --trust ROOT.assert` (`trust` is the file's text).
    /// (Remotes change between installs and refreshes, never under one.)
    pub async fn add_remote(&self, name: &str, url: &str, trust: &str) -> Result<RemoteInfo> {
        let _busy = self.busy.lock().await;
        self.add_remote_now(name, url, trust)
    }

    fn add_remote_now(&self, name: &str, url: &str, trust: &str) -> Result<RemoteInfo> {
        check_remote_name(name)?;
        let url = check_url(url)?;
        let root = Assertion::parse(trust.trim().as_bytes()).map_err(|e| {
            StoreError::BadRequest(format!(
                "the trusted root is not an assertion ({e}); pass the store's root.assert"
            ))
        })?;
        if root.kind() != Kind::RootKey {
            return Err(StoreError::BadRequest(format!(
                "the trusted root is a {} assertion, not a root-key; pass the store's root.assert",
                root.kind()
            )));
        }
        if self.state.read(|s| s.remotes.contains_key(name)) {
            return Err(StoreError::RemoteExists(name.to_string()));
        }
        let db = self.db(name);
        // Left over from a remote of that name that was half added: start clean.
        db.remove()?;
        db.create(&root).map_err(|e| match e {
            StoreError::Untrusted { message, .. } => {
                StoreError::BadRequest(format!("the trusted root does not verify: {message}"))
            }
            e => e,
        })?;
        let remote = Remote::new(name, &url, &root);
        let added = self.state.update(|s| {
            if s.remotes.contains_key(name) {
                return Err(StoreError::RemoteExists(name.to_string()));
            }
            s.remotes.insert(name.to_string(), remote.clone());
            Ok(())
        });
        if let Err(e) = added {
            let _ = db.remove();
            return Err(e);
        }
        tracing::info!(remote = name, url = %remote.url, "remote added");
        Ok(RemoteInfo {
            name: remote.name,
            url: remote.url,
            authority: remote.authority,
            root_key: remote.root_key,
            packs: Vec::new(),
        })
    }

    /// `pack remote remove NAME`: refused while packs come from it.
    pub async fn remove_remote(&self, name: &str) -> Result<()> {
        let _busy = self.busy.lock().await;
        self.state.update(|s| {
            if !s.remotes.contains_key(name) {
                return Err(StoreError::NoRemote(name.to_string()));
            }
            let users: Vec<&str> = s
                .packs
                .values()
                .filter(|p| p.tracking.as_ref().is_some_and(|t| t.remote == name))
                .map(|p| p.name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(StoreError::RemoteInUse {
                    name: name.to_string(),
                    packs: users.join(", "),
                });
            }
            s.remotes.remove(name);
            Ok(())
        })?;
        self.db(name).remove()?;
        tracing::info!(remote = name, "remote removed");
        Ok(())
    }

    /// The remotes a read asks: the one named, or all of them.
    fn chosen(&self, remote: Option<&str>) -> Result<Vec<Remote>> {
        match remote {
            Some(r) => Ok(vec![self.remote(r)?]),
            None => {
                let all: Vec<Remote> = self.state.read(|s| s.remotes.values().cloned().collect());
                if all.is_empty() {
                    return Err(StoreError::NoRemotes);
                }
                Ok(all)
            }
        }
    }

    /// `pack find [QUERY]`: the hits of every remote asked. A remote that cannot be reached
    /// fails the search only when no other answered.
    pub async fn find(&self, query: &str, remote: Option<&str>) -> Result<Vec<FoundInfo>> {
        let mut hits = Vec::new();
        let mut failure = None;
        let remotes = self.chosen(remote)?;
        let asked = remotes.len();
        for r in remotes {
            match self.client.find(&r, query).await {
                Ok(found) => hits.extend(found.into_iter().map(|f| FoundInfo {
                    name: f.name,
                    remote: r.name.clone(),
                    publisher: f.publisher,
                    summary: f.summary,
                    version: f.version,
                })),
                Err(e) => {
                    tracing::warn!(remote = %r.name, error = %e, "search failed");
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) if asked == 1 || hits.is_empty() => Err(e),
            _ => Ok(hits),
        }
    }

    /// `pack info NAME` from the store: the remote it is installed from, or the one named, or
    /// the first that has it.
    pub async fn info(&self, name: &str, remote: Option<&str>) -> Result<StorePackInfo> {
        packfmt::meta::validate_pack_name(name).map_err(StoreError::BadRequest)?;
        let installed = self.state.read(|s| {
            s.packs
                .get(name)
                .filter(|p| p.active)
                .map(|p| (p.current, p.tracking.clone()))
        });
        let tracked = installed.as_ref().and_then(|(_, t)| t.clone());
        let remotes = match (remote, &tracked) {
            (None, Some(t)) => vec![self.remote(&t.remote)?],
            _ => self.chosen(remote)?,
        };
        let mut last = None;
        for r in remotes {
            match self.client.info(&r, name).await {
                Ok(info) => {
                    let ours = tracked.as_ref().filter(|t| t.remote == r.name);
                    return Ok(StorePackInfo {
                        name: info.name,
                        remote: r.name.clone(),
                        pack_id: info.pack_id,
                        publisher: info.publisher,
                        summary: info.summary,
                        description: info.description,
                        channels: info.channels,
                        tracking: ours.map(|t| t.channel.clone()),
                        installed: ours.and(installed.as_ref().map(|(rev, _)| *rev)),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(StoreError::NoRemotes))
    }

    /// `pack known TYPE [HEADER=VALUE...]`: the device's assertions of a kind, filtered.
    pub fn known(
        &self,
        kind: &str,
        filters: &BTreeMap<String, String>,
        remote: Option<&str>,
    ) -> Result<Vec<KnownAssertion>> {
        let kind = Kind::from_name(kind).ok_or_else(|| {
            StoreError::BadRequest(format!(
                "unknown assertion type {kind:?}; known: {}",
                Kind::ALL
                    .iter()
                    .filter(|k| **k != Kind::Refresh)
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut out = Vec::new();
        for r in self.chosen(remote).or_else(|e| match e {
            StoreError::NoRemotes => Ok(Vec::new()),
            e => Err(e),
        })? {
            for a in self.db(&r.name).list(kind)? {
                if filters.iter().all(|(h, v)| a.header(h) == Some(v.as_str())) {
                    out.push(KnownAssertion {
                        remote: r.name.clone(),
                        kind: kind.name().to_string(),
                        headers: a.headers().iter().cloned().collect(),
                        text: String::from_utf8_lossy(&a.encode()).into_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// `pack ack FILE`: adds assertions that verify against one remote's chain (all of
    /// them against the same one); how many were new.
    pub fn ack(&self, text: &[u8]) -> Result<usize> {
        let parsed = Assertion::parse_all(text).map_err(|e| {
            StoreError::BadRequest(format!("the file holds no valid assertions: {e}"))
        })?;
        let Some(first) = parsed.first() else {
            return Err(StoreError::BadRequest(
                "the file holds no assertions".into(),
            ));
        };
        let authority = first.authority().to_string();
        let remotes: Vec<Remote> = self.state.read(|s| {
            s.remotes
                .values()
                .filter(|r| r.authority == authority)
                .cloned()
                .collect()
        });
        if remotes.is_empty() {
            return Err(StoreError::untrusted(
                &authority,
                format!(
                    "no remote trusts store {authority:?}; add it first with 'pack remote add NAME URL --trust ROOT.assert'"
                ),
            ));
        }
        let mut last = None;
        for r in remotes {
            let db = self.db(&r.name);
            let mut ring = db.keyring(&r.root_key)?;
            match db.add_stream(&mut ring, text) {
                Ok(added) => return Ok(added.len()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(StoreError::NoRemotes))
    }
}
