//! The daemon's whole state, one JSON document (`var/lib/packd/state.json`), and the store that
//! persists it: every update is applied to a copy, written atomically, and only then becomes the
//! state in memory, so memory never runs ahead of the disk.

pub mod change;
pub mod config;
#[cfg(test)]
pub mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use packfmt::{PackMeta, PackType, Revision};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use change::{Change, Plan, Status, Task, TaskKind};

use crate::error::IoError;
use crate::fsutil;

/// What can go wrong with the state itself.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "{path} is damaged ({reason}); restore it from a backup or move it away to start empty"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "{path} was written by a newer packd (format {format}); this one reads format {STATE_FORMAT}"
    )]
    Newer { path: PathBuf, format: u32 },
    #[error("cannot encode the state: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot encode task data: {0}")]
    TaskData(#[source] serde_json::Error),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Format version of state.json, for future migrations.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct State {
    pub format: u32,
    #[serde(default)]
    pub packs: BTreeMap<String, PackState>,
    #[serde(default)]
    pub changes: BTreeMap<u64, Change>,
    #[serde(default)]
    pub last_change_id: u64,
    #[serde(default)]
    pub last_task_id: u64,
    /// Connected plugs and slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<Connection>,
    /// Plugs whose auto-connection root undid with `pack disconnect`: never auto-connected
    /// again (until the pack is removed).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub undesired: std::collections::BTreeSet<interfaces::PortRef>,
    /// `pack set system KEY=VALUE` (see [`config`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The stores this device installs from (`pack remote add`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remotes: BTreeMap<String, Remote>,
    /// Auto-refresh: when it last ran, holds, revisions not to try again.
    #[serde(default)]
    pub refresh: RefreshState,
    /// This device's id, made at first start; sent with refresh requests and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Reports to stores not sent yet (the store was unreachable), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<QueuedReport>,
}

/// A report to a store, kept until the store has taken it. Its id lets the store count it
/// once however often it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QueuedReport {
    pub remote: String,
    pub body: serde_json::Value,
}

/// A store the device trusts, through the root it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Remote {
    pub name: String,
    pub url: String,
    /// The store's id (`authority-id` of its root).
    pub authority: String,
    /// The root key's id.
    pub root_key: String,
    /// The highest serial of a refresh answer accepted from it: an older one is a replay.
    #[serde(default)]
    pub serial: u64,
    /// When the newest accepted answer expires (seconds since the epoch).
    #[serde(default)]
    pub answer_expires: u64,
    /// When it was signed.
    #[serde(default)]
    pub answer_signed: u64,
    /// The ETag of the newest answer, with the request it answered (its SHA3-384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<(String, String)>,
}

impl Remote {
    /// A remote newly trusted through `root` (a root-key assertion), nothing seen from it yet.
    pub fn new(name: &str, url: &str, root: &packfmt::assertion::Assertion) -> Remote {
        Remote {
            name: name.to_string(),
            url: url.to_string(),
            authority: root.authority().to_string(),
            root_key: root.get("public-key-id").to_string(),
            serial: 0,
            answer_expires: 0,
            answer_signed: 0,
            etag: None,
        }
    }
}

/// Where an installed pack comes from and what it follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Tracking {
    pub remote: String,
    pub pack_id: String,
    pub channel: String,
    /// Privileged interfaces its store's declaration lets its plugs auto-connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
}

/// Auto-refresh's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct RefreshState {
    /// When a refresh of everything last ran (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// Holds, by pack name (`*` for all): until when (seconds), `u64::MAX` for forever.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub holds: BTreeMap<String, u64>,
    /// Revisions that failed and were reverted, by pack: not tried again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, std::collections::BTreeSet<u32>>,
}

/// One connection of a plug to a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Connection {
    pub interface: String,
    pub plug: interfaces::PortRef,
    pub slot: interfaces::PortRef,
    /// Made by `pack connect`, not by auto-connection.
    pub manual: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            format: STATE_FORMAT,
            packs: BTreeMap::new(),
            changes: BTreeMap::new(),
            last_change_id: 0,
            last_task_id: 0,
            connections: Vec::new(),
            undesired: Default::default(),
            config: BTreeMap::new(),
            remotes: BTreeMap::new(),
            refresh: RefreshState::default(),
            device_id: None,
            reports: Vec::new(),
        }
    }
}

/// One installed pack: its revisions in install order and which one is current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackState {
    pub name: String,
    #[serde(rename = "type")]
    pub pack_type: PackType,
    pub sequence: Vec<RevisionState>,
    pub current: Revision,
    /// Linked: `current` and launchers exist. False while a removal is under way.
    pub active: bool,
    /// Services root disabled (`pack stop --disable`): not started at boot or install.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub disabled_services: std::collections::BTreeSet<String>,
    /// The store and channel it follows; `None` for a pack installed from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

impl PackState {
    pub fn current_revision(&self) -> Option<&RevisionState> {
        self.revision(self.current)
    }

    pub fn revision(&self, rev: Revision) -> Option<&RevisionState> {
        self.sequence.iter().find(|r| r.revision == rev)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevisionState {
    pub revision: Revision,
    pub meta: PackMeta,
    pub size: u64,
    pub sha3_384: String,
    /// Seconds since the epoch.
    pub installed_at: u64,
}

impl State {
    /// The current metadata of an installed, active pack.
    pub fn current_meta(&self, name: &str) -> Option<&PackMeta> {
        self.packs
            .get(name)
            .and_then(|p| p.current_revision())
            .map(|r| &r.meta)
    }

    /// The change still working on `name`, if any: one change per pack at a time.
    pub fn change_in_progress(&self, name: &str) -> Option<&Change> {
        self.changes
            .values()
            .find(|c| !c.is_ready() && c.plan.pack_name() == name)
    }

    /// The next local revision of `name`: one above the highest it has.
    pub fn next_local_revision(&self, name: &str) -> Revision {
        let max = self
            .packs
            .get(name)
            .map(|p| {
                p.sequence
                    .iter()
                    .filter(|r| r.revision.is_local())
                    .map(|r| r.revision.number())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        Revision::Local(max + 1)
    }

    /// Packs whose `base:` is `base`.
    pub fn users_of_base(&self, base: &str) -> Vec<String> {
        self.packs
            .values()
            .filter(|p| {
                p.sequence
                    .iter()
                    .any(|r| r.meta.base.as_deref() == Some(base))
            })
            .map(|p| p.name.clone())
            .collect()
    }

    /// Forgets finished changes older than `max_age` seconds, and beyond the newest `keep`
    /// finished ones (snapd prunes after a day too). Unfinished changes always stay.
    pub fn prune_changes(&mut self, now: u64, max_age: u64, keep: usize) -> usize {
        let mut ready: Vec<(u64, u64)> = self
            .changes
            .values()
            .filter(|c| c.is_ready())
            .filter_map(|c| c.ready_time.map(|t| (t, c.id)))
            .collect();
        ready.sort_unstable();
        let excess = ready.len().saturating_sub(keep);
        let gone: Vec<u64> = ready
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| *i < excess || now.saturating_sub(*t) > max_age)
            .map(|(_, (_, id))| *id)
            .collect();
        for id in &gone {
            self.changes.remove(id);
        }
        gone.len()
    }

    /// Adds a change with fresh ids; returns its id.
    pub fn add_change(
        &mut self,
        kind: &str,
        summary: String,
        plan: Plan,
        tasks: Vec<(TaskKind, String)>,
    ) -> u64 {
        self.last_change_id += 1;
        let id = self.last_change_id;
        let tasks = tasks
            .into_iter()
            .map(|(kind, summary)| {
                self.last_task_id += 1;
                Task {
                    id: self.last_task_id,
                    kind,
                    summary,
                    status: Status::Do,
                    log: Vec::new(),
                    data: Default::default(),
                }
            })
            .collect();
        self.changes.insert(
            id,
            Change {
                id,
                kind: kind.to_string(),
                summary,
                spawn_time: now(),
                ready_time: None,
                plan,
                tasks,
                err: None,
                err_detail: None,
            },
        );
        id
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The persisted state plus a version counter that waiters can watch.
pub struct Store {
    path: PathBuf,
    state: Mutex<State>,
    version: watch::Sender<u64>,
}

impl Store {
    /// Loads `path`, or starts empty when it does not exist yet.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice::<State>(&bytes).map_err(|e| StateError::Damaged {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(IoError::new(format!("cannot read {}", path.display()), e).into()),
        };
        if state.format > STATE_FORMAT {
            return Err(StateError::Newer {
                path: path.to_path_buf(),
                format: state.format,
            });
        }
        let (version, _) = watch::channel(0);
        Ok(Store {
            path: path.to_path_buf(),
            state: Mutex::new(state),
            version,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied update (updates are applied
        // to a copy), so the data is still good.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Applies `f` to a copy, persists the copy, then makes it the state. If `f` fails or the
    /// write fails, nothing changes.
    pub fn update<R, E: From<StateError>>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = f(&mut next)?;
        if next != *guard {
            let bytes = serde_json::to_vec_pretty(&next).map_err(StateError::Encode)?;
            fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(|e| {
                StateError::from(IoError::new(
                    format!("cannot write {}", self.path.display()),
                    e,
                ))
            })?;
            *guard = next;
            drop(guard);
            self.version.send_modify(|v| *v += 1);
        }
        Ok(out)
    }

    /// A receiver that wakes on every persisted update.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = Store::open(&path).unwrap();
        let id = store
            .update(|s| {
                Ok::<_, StateError>(s.add_change(
                    "remove-pack",
                    "Remove x".into(),
                    Plan::Remove {
                        name: "x".into(),
                        revisions: vec![],
                        purge: false,
                    },
                    vec![(TaskKind::UnlinkPack, "unlink".into())],
                ))
            })
            .unwrap();
        let again = Store::open(&path).unwrap();
        assert_eq!(again.read(|s| s.changes[&id].tasks.len()), 1);
        assert_eq!(again.read(|s| s.last_task_id), 1);
    }

    #[test]
    fn finished_changes_are_pruned_by_age_and_count_unfinished_ones_never() {
        let mut s = State::default();
        let plan = || Plan::Remove {
            name: "x".into(),
            revisions: vec![],
            purge: false,
        };
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(s.add_change(
                "remove-pack",
                "r".into(),
                plan(),
                vec![(TaskKind::UnlinkPack, "u".into())],
            ));
        }
        // Three finished at times 100, 200, 300; the fourth still running.
        for (i, id) in ids.iter().take(3).enumerate() {
            let c = s.changes.get_mut(id).unwrap();
            c.tasks[0].status = Status::Done;
            c.ready_time = Some(100 * (i as u64 + 1));
        }
        // Older than 150 s at time 360: the first two.
        assert_eq!(s.prune_changes(360, 150, 10), 2);
        assert_eq!(s.changes.keys().copied().collect::<Vec<_>>(), ids[2..]);
        // None finished kept: the unfinished one stays regardless.
        assert_eq!(s.prune_changes(360, 1000, 0), 1);
        assert_eq!(s.changes.len(), 1);
        assert!(s.changes.contains_key(&ids[3]));
    }

    #[test]
    fn failed_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = Store::open(&path).unwrap();
        let r: Result<(), crate::Error> = store.update(|s| {
            s.last_change_id = 99;
            Err(crate::Error::bad("no"))
        });
        assert!(r.is_err());
        assert_eq!(store.read(|s| s.last_change_id), 0);
        assert!(!path.exists(), "nothing written");
    }

    #[test]
    fn damaged_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }

    #[test]
    fn local_revisions_count_up_per_pack() {
        let mut s = State::default();
        assert_eq!(s.next_local_revision("hello"), Revision::Local(1));
        let meta = PackMeta::from_yaml(b"name: hello\nversion: '1'\n", Default::default()).unwrap();
        let rev = |n| RevisionState {
            revision: Revision::Local(n),
            meta: meta.clone(),
            size: 0,
            sha3_384: String::new(),
            installed_at: 0,
        };
        s.packs.insert(
            "hello".into(),
            PackState {
                name: "hello".into(),
                pack_type: PackType::App,
                sequence: vec![rev(1), rev(3)],
                current: Revision::Local(3),
                active: true,
                disabled_services: Default::default(),
                tracking: None,
            },
        );
        assert_eq!(s.next_local_revision("hello"), Revision::Local(4));
        assert_eq!(s.next_local_revision("other"), Revision::Local(1));
    }
}
