//! Changes and tasks: every operation that changes the system is a change made of tasks, each
//! with a `do` and an `undo`, persisted around every step (the model of snapd's overlord).

use std::path::PathBuf;

use packfmt::{PackMeta, Revision};
use serde::{Deserialize, Serialize};

/// Task and change statuses, in snapd's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Waiting to run.
    Do,
    Doing,
    Done,
    /// Done, and waiting to be undone because a later task failed.
    Undo,
    Undoing,
    Undone,
    /// Never ran because an earlier task failed.
    Hold,
    Error,
}

impl Status {
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Undone | Status::Hold | Status::Error
        )
    }
}

/// What a task does. The order of a change's tasks follows snapd's pipeline (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Move the staged upload to `packs/NAME_REV.pack`.
    PreparePack,
    /// Attach a loop device and mount the blob read-only at `pack/NAME/REV`.
    MountPack,
    /// Create `var/pack/NAME/REV` and `var/pack/NAME/common`.
    CopyData,
    /// Compile the seccomp profiles and write (and load) the AppArmor profiles of the apps.
    SetupProfiles,
    /// Record the revision, switch `current`, write launchers.
    LinkPack,
    /// Remove launchers and `current`; the pack stops being runnable.
    UnlinkPack,
    /// Unmount every revision.
    UnmountPack,
    /// Delete the pack's data directories. No undo: runs after everything that can fail.
    DiscardData,
    /// Delete the blobs and forget the pack. No undo.
    DiscardPack,
    /// Connect what the new pack makes connectable by itself (its plugs, others' plugs to its
    /// slots), and regenerate the affected profiles.
    AutoConnect,
    /// Connect one plug to one slot (root's `pack connect`).
    Connect,
    /// Disconnect one plug from one slot (root's `pack disconnect`).
    Disconnect,
    /// Disconnect every plug and slot of a pack being removed.
    DisconnectAll,
    /// Start services (an install's enabled ones; a services change's), waiting until each
    /// has started; with `enable`, mark them enabled first.
    StartServices,
    /// Stop services (those running before an install or removal; a services change's); with
    /// `disable`, mark them disabled.
    StopServices,
    /// Restart a services change's services.
    RestartServices,
    /// A refresh's health window: the new revision's services must stay up, without a
    /// restart, for `refresh.health-window`; otherwise the refresh fails and is undone.
    CheckHealth,
    /// Run the `install` hook (failure fails the install).
    InstallHook,
    /// Run the old revision's `pre-refresh` hook (failure fails the refresh).
    PreRefreshHook,
    /// Run the new revision's `post-refresh` hook (failure fails the refresh).
    PostRefreshHook,
    /// Run the `configure` hook (failure fails the change).
    ConfigureHook,
    /// Run the `check-health` hook (failure fails the change).
    CheckHealthHook,
    /// Run the `remove` hook (failure is logged only).
    RemoveHook,
    /// After a good refresh: drop what was set aside, and the revisions beyond
    /// `refresh.retain` (their mounts, blobs, data and profiles). No undo: runs last.
    Cleanup,
}

impl TaskKind {
    /// Every kind, for the check that each has a handler.
    pub const ALL: [TaskKind; 24] = [
        TaskKind::PreparePack,
        TaskKind::MountPack,
        TaskKind::CopyData,
        TaskKind::SetupProfiles,
        TaskKind::LinkPack,
        TaskKind::UnlinkPack,
        TaskKind::UnmountPack,
        TaskKind::DiscardData,
        TaskKind::DiscardPack,
        TaskKind::AutoConnect,
        TaskKind::Connect,
        TaskKind::Disconnect,
        TaskKind::DisconnectAll,
        TaskKind::StartServices,
        TaskKind::StopServices,
        TaskKind::RestartServices,
        TaskKind::CheckHealth,
        TaskKind::InstallHook,
        TaskKind::PreRefreshHook,
        TaskKind::PostRefreshHook,
        TaskKind::ConfigureHook,
        TaskKind::CheckHealthHook,
        TaskKind::RemoveHook,
        TaskKind::Cleanup,
    ];

    /// The hook a hook task runs.
    pub fn hook(self) -> Option<&'static str> {
        Some(match self {
            TaskKind::InstallHook => "install",
            TaskKind::PreRefreshHook => "pre-refresh",
            TaskKind::PostRefreshHook => "post-refresh",
            TaskKind::ConfigureHook => "configure",
            TaskKind::CheckHealthHook => "check-health",
            TaskKind::RemoveHook => "remove",
            _ => return None,
        })
    }

    pub fn summary(self, name: &str, rev: Option<Revision>) -> String {
        let rev = rev.map(|r| format!(" ({r})")).unwrap_or_default();
        match self {
            TaskKind::PreparePack => format!("Prepare pack {name:?}{rev}"),
            TaskKind::MountPack => format!("Mount pack {name:?}{rev}"),
            TaskKind::CopyData => format!("Set up data of pack {name:?}{rev}"),
            TaskKind::SetupProfiles => {
                format!("Set up the security profiles of pack {name:?}{rev}")
            }
            TaskKind::LinkPack => format!("Make pack {name:?}{rev} available"),
            TaskKind::UnlinkPack => format!("Make pack {name:?} unavailable"),
            TaskKind::UnmountPack => format!("Unmount pack {name:?}"),
            TaskKind::DiscardData => format!("Remove data of pack {name:?}"),
            TaskKind::DiscardPack => format!("Remove pack {name:?}"),
            TaskKind::AutoConnect => format!("Auto-connect plugs and slots of pack {name:?}"),
            TaskKind::Connect => "Connect".to_string(),
            TaskKind::Disconnect => "Disconnect".to_string(),
            TaskKind::DisconnectAll => format!("Disconnect plugs and slots of pack {name:?}"),
            TaskKind::StartServices => format!("Start services of pack {name:?}"),
            TaskKind::StopServices => format!("Stop services of pack {name:?}"),
            TaskKind::RestartServices => format!("Restart services of pack {name:?}"),
            TaskKind::CheckHealth => format!("Watch the services of pack {name:?}{rev}"),
            TaskKind::Cleanup => format!("Clean up old revisions of pack {name:?}"),
            TaskKind::InstallHook => format!("Run install hook of pack {name:?}{rev}"),
            TaskKind::PreRefreshHook => format!("Run pre-refresh hook of pack {name:?}"),
            TaskKind::PostRefreshHook => format!("Run post-refresh hook of pack {name:?}{rev}"),
            TaskKind::ConfigureHook => format!("Run configure hook of pack {name:?}{rev}"),
            TaskKind::CheckHealthHook => format!("Run check-health hook of pack {name:?}{rev}"),
            TaskKind::RemoveHook => format!("Run remove hook of pack {name:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Task {
    pub id: u64,
    pub kind: TaskKind,
    pub summary: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// What `do` recorded for its `undo` (e.g. the previous `current` revision): the
    /// handler's own record type, as JSON (see `engine::TaskCtx::data`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// What a change operates on; its tasks read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    tag = "kind"
)]
pub enum Plan {
    Install {
        name: String,
        revision: Revision,
        meta: Box<PackMeta>,
        /// The validated upload, moved into place by `prepare-pack`.
        staged: PathBuf,
        size: u64,
        sha3_384: String,
        /// The store and channel it came from (a download), `None` for a file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<super::Tracking>,
    },
    Remove {
        name: String,
        revisions: Vec<Revision>,
        /// `pack remove --purge`: the pack's service and hook logs go too.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        purge: bool,
    },
    Connect {
        plug: interfaces::PortRef,
        slot: interfaces::PortRef,
        interface: String,
    },
    Disconnect {
        plug: interfaces::PortRef,
        slot: interfaces::PortRef,
    },
    /// `pack revert`: make an earlier revision current again, with its own data.
    Revert {
        name: String,
        revision: Revision,
        /// The revision current when the revert was asked for.
        from: Revision,
    },
    /// `pack start|stop|restart`: services of one pack.
    Services {
        name: String,
        /// `None`: all of the pack's services.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        apps: Option<Vec<String>>,
        /// `Some(true)`: enable them (started at boot); `Some(false)`: disable them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enable: Option<bool>,
    },
}

impl Plan {
    pub fn pack_name(&self) -> &str {
        match self {
            Plan::Install { name, .. } | Plan::Remove { name, .. } => name,
            Plan::Connect { plug, .. } | Plan::Disconnect { plug, .. } => &plug.pack,
            Plan::Services { name, .. } | Plan::Revert { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Change {
    pub id: u64,
    /// `install-pack`, `remove-pack`, …
    pub kind: String,
    pub summary: String,
    pub spawn_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_time: Option<u64>,
    pub plan: Plan,
    pub tasks: Vec<Task>,
    /// The failure that made the change undo itself, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// What only root may read of that failure (a hook's output; hook logs are root's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err_detail: Option<String>,
}

impl Change {
    /// The change's status, derived from its tasks as snapd does.
    pub fn status(&self) -> Status {
        let any = |s: Status| self.tasks.iter().any(|t| t.status == s);
        if any(Status::Undoing) {
            Status::Undoing
        } else if any(Status::Doing) {
            Status::Doing
        } else if any(Status::Undo) {
            Status::Undo
        } else if any(Status::Do) {
            Status::Do
        } else if any(Status::Error) {
            Status::Error
        } else if self.tasks.iter().all(|t| t.status == Status::Done) {
            Status::Done
        } else {
            Status::Undone
        }
    }

    pub fn is_ready(&self) -> bool {
        self.status().is_ready()
    }

    /// Aborts an unfinished change: tasks not started are held, finished ones undone (the one
    /// under way is undone once it finishes). Like a failure, with `why` as the error. Refused
    /// (with the reason) for a finished change, and past the point of no return: once a task
    /// that cannot be undone (discarding data or blobs, the cleanup of old revisions) runs.
    pub fn abort(&mut self, why: &str) -> Result<(), String> {
        if self.is_ready() {
            return Err(format!(
                "change {} is already {:?}; only unfinished changes can be aborted",
                self.id,
                self.status()
            ));
        }
        let final_step = self.tasks.iter().find(|t| {
            matches!(
                t.kind,
                TaskKind::DiscardData | TaskKind::DiscardPack | TaskKind::Cleanup
            ) && matches!(t.status, Status::Doing | Status::Done)
        });
        if let Some(t) = final_step {
            return Err(format!(
                "change {} is past the point of no return ({:?}); it will finish by itself",
                self.id, t.summary
            ));
        }
        self.err = Some(why.to_string());
        for t in &mut self.tasks {
            t.status = match t.status {
                Status::Done => Status::Undo,
                Status::Do => Status::Hold,
                other => other,
            };
        }
        Ok(())
    }

    pub fn task_mut(&mut self, id: u64) -> Option<&mut Task> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(statuses: &[Status]) -> Change {
        Change {
            id: 1,
            kind: "remove-pack".into(),
            summary: String::new(),
            spawn_time: 0,
            ready_time: None,
            plan: Plan::Remove {
                name: "x".into(),
                revisions: vec![],
                purge: false,
            },
            tasks: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| Task {
                    id: i as u64,
                    kind: TaskKind::UnlinkPack,
                    summary: String::new(),
                    status: *s,
                    log: vec![],
                    data: Default::default(),
                })
                .collect(),
            err: None,
            err_detail: None,
        }
    }

    #[test]
    fn status_is_derived_like_snapd() {
        use Status::*;
        assert_eq!(change(&[Do, Do]).status(), Do);
        assert_eq!(change(&[Done, Doing, Do]).status(), Doing);
        assert_eq!(change(&[Done, Done]).status(), Done);
        assert_eq!(change(&[Undo, Error, Hold]).status(), Undo);
        assert_eq!(change(&[Undoing, Error, Hold]).status(), Undoing);
        assert_eq!(change(&[Undone, Error, Hold]).status(), Error);
        assert!(change(&[Undone, Error, Hold]).is_ready());
        assert!(!change(&[Done, Do]).is_ready());
    }

    #[test]
    fn statuses_serialize_as_snapd_words() {
        assert_eq!(
            serde_json::to_string(&Status::Undoing).unwrap(),
            "\"Undoing\""
        );
        assert_eq!(
            serde_json::to_string(&TaskKind::PreparePack).unwrap(),
            "\"prepare-pack\""
        );
    }
}
