//! Planning pack changes: pure functions from the state to a change (its tasks added to the
//! state), in snapd's order, refusing with the reason what cannot be done. Nothing here
//! touches the disk; the tasks do, later.

use std::path::PathBuf;

use packfmt::{PackMeta, PackType, Revision};

use super::PackError;
use crate::error::check_idle;
use crate::state::{Plan, State, TaskKind};

type Result<T> = std::result::Result<T, PackError>;

/// A checked upload waiting to become an install.
#[derive(Debug, Clone)]
pub struct Upload {
    pub meta: PackMeta,
    /// Where it was staged (moved into place by `prepare-pack`).
    pub staged: PathBuf,
    pub size: u64,
    pub sha3_384: String,
    /// The user's name for it, in messages.
    pub label: String,
    /// A store revision (its number), with where it came from; `None`: a local file.
    pub from_store: Option<(u32, crate::state::Tracking)>,
}

/// An install (or, for an installed app pack, a refresh) of `upload`; the change's id.
pub fn install(s: &mut State, upload: Upload) -> Result<u64> {
    let Upload {
        meta,
        staged,
        size,
        sha3_384,
        label,
        from_store,
    } = upload;
    let name = meta.name.clone();
    check_idle(s, &[&name])?;
    if let Some(existing) = s.packs.get(&name)
        && existing.pack_type != meta.pack_type
    {
        return Err(PackError::TypeClash {
            label,
            name,
            installed: existing.pack_type.as_str(),
            new: meta.pack_type.as_str(),
        });
    }
    if let Some(base) = &meta.base {
        let installed = s
            .packs
            .get(base)
            .is_some_and(|b| b.active && b.pack_type == PackType::Base);
        if !installed {
            return Err(PackError::BaseMissing {
                label,
                base: base.clone(),
            });
        }
        if let Some(c) = s.change_in_progress(base) {
            return Err(PackError::BaseBusy {
                label,
                base: base.clone(),
                change: c.id,
                kind: c.kind.clone(),
            });
        }
    }
    let (revision, origin) = match from_store {
        Some((n, origin)) => (Revision::Store(n), Some(origin)),
        None => (s.next_local_revision(&name), None),
    };
    if s.packs
        .get(&name)
        .is_some_and(|p| p.revision(revision).is_some())
    {
        return Err(PackError::RevisionInstalled { name, revision });
    }
    let tasks = install_tasks(s, &name, &meta)
        .into_iter()
        .map(|k| (k, k.summary(&name, Some(revision))))
        .collect();
    let summary = format!("Install pack {name:?} ({revision}) from {label}");
    Ok(s.add_change(
        "install-pack",
        summary,
        Plan::Install {
            name,
            revision,
            meta: Box::new(meta),
            staged,
            size,
            sha3_384,
            origin,
        },
        tasks,
    ))
}

/// The tasks of installing `meta` as `name`, in snapd's order. A new revision of an installed
/// app pack is a refresh: the old revision's services stop and its pre-refresh hook runs
/// before its data is copied; the new one must then prove itself (health window) before old
/// revisions beyond `refresh.retain` go. Hook tasks are there for the hooks the pack has
/// (the old revision's, for pre-refresh).
pub fn install_tasks(s: &State, name: &str, meta: &PackMeta) -> Vec<TaskKind> {
    let app = meta.pack_type == PackType::App;
    let old_hooks = s
        .packs
        .get(name)
        .filter(|p| p.active && app)
        .and_then(|p| p.current_revision())
        .map(|r| &r.meta.hooks);
    let refresh = old_hooks.is_some();
    let has = |hook: &str| meta.hooks.contains_key(hook);
    let mut kinds = vec![TaskKind::PreparePack, TaskKind::MountPack];
    if app {
        kinds.push(TaskKind::StopServices);
        if old_hooks.is_some_and(|h| h.contains_key("pre-refresh")) {
            kinds.push(TaskKind::PreRefreshHook);
        }
        kinds.push(TaskKind::CopyData);
        kinds.push(TaskKind::SetupProfiles);
    }
    kinds.push(TaskKind::LinkPack);
    kinds.push(TaskKind::AutoConnect);
    if app {
        if !refresh && has("install") {
            kinds.push(TaskKind::InstallHook);
        }
        kinds.push(TaskKind::StartServices);
        if refresh && has("post-refresh") {
            kinds.push(TaskKind::PostRefreshHook);
        }
        if has("configure") {
            kinds.push(TaskKind::ConfigureHook);
        }
        if has("check-health") {
            kinds.push(TaskKind::CheckHealthHook);
        }
    }
    if refresh {
        kinds.push(TaskKind::CheckHealth);
        kinds.push(TaskKind::Cleanup);
    }
    kinds
}

fn type_word(t: PackType) -> &'static str {
    match t {
        PackType::Base => "base",
        PackType::App => "app",
        _ => "gadget",
    }
}

/// `pack revert NAME [--revision R]`: R (default: the revision installed before the current
/// one) becomes current again with its own data, as in snapd.
pub fn revert(s: &mut State, name: &str, revision: Option<Revision>) -> Result<u64> {
    let pack = s
        .packs
        .get(name)
        .filter(|p| p.active)
        .ok_or_else(|| PackError::NotInstalled(name.to_string()))?;
    check_idle(s, &[name])?;
    if pack.pack_type != PackType::App {
        return Err(PackError::NotAnApp {
            name: name.to_string(),
            kind: type_word(pack.pack_type),
        });
    }
    let from = pack.current;
    let listed: Vec<String> = pack
        .sequence
        .iter()
        .map(|r| r.revision.to_string())
        .collect();
    let target = match revision {
        Some(r) if r == from => {
            return Err(PackError::AlreadyAt {
                name: name.to_string(),
                revision: r,
                listed,
            });
        }
        Some(r) if pack.revision(r).is_some() => r,
        Some(r) => {
            return Err(PackError::NoSuchRevision {
                name: name.to_string(),
                revision: r,
                listed,
            });
        }
        None => {
            let at = pack.sequence.iter().position(|r| r.revision == from);
            match at.and_then(|i| i.checked_sub(1)) {
                Some(i) => pack.sequence[i].revision,
                None => {
                    return Err(PackError::NothingToRevertTo {
                        name: name.to_string(),
                        from,
                    });
                }
            }
        }
    };
    let tasks = [
        TaskKind::StopServices,
        TaskKind::SetupProfiles,
        TaskKind::LinkPack,
        TaskKind::StartServices,
    ]
    .into_iter()
    .map(|k| (k, k.summary(name, Some(target))))
    .collect();
    Ok(s.add_change(
        "revert-pack",
        format!("Revert pack {name:?} from {from} to {target}"),
        Plan::Revert {
            name: name.to_string(),
            revision: target,
            from,
        },
        tasks,
    ))
}

/// `pack remove NAME [--purge]`: its services stop, its remove hook runs, its connections
/// go, then the pack, then (past the point of no return) its data and blobs.
pub fn remove(s: &mut State, name: &str, purge: bool) -> Result<u64> {
    let pack = s
        .packs
        .get(name)
        .filter(|p| p.active)
        .ok_or_else(|| PackError::NotInstalled(name.to_string()))?;
    check_idle(s, &[name])?;
    if pack.pack_type == PackType::Base {
        let mut users: Vec<String> = s
            .users_of_base(name)
            .into_iter()
            .filter(|u| u != name)
            .collect();
        // Installs under way count as users too.
        users.extend(
            s.changes
                .values()
                .filter(|c| !c.is_ready())
                .filter_map(|c| match &c.plan {
                    Plan::Install { meta, name: n, .. } if meta.base.as_deref() == Some(name) => {
                        Some(n.clone())
                    }
                    _ => None,
                }),
        );
        if !users.is_empty() {
            return Err(PackError::BaseInUse {
                base: name.to_string(),
                users,
            });
        }
    }
    let revisions: Vec<Revision> = pack.sequence.iter().map(|r| r.revision).collect();
    let mut tasks = vec![TaskKind::StopServices];
    if pack
        .current_revision()
        .is_some_and(|r| r.meta.hooks.contains_key("remove"))
    {
        tasks.push(TaskKind::RemoveHook);
    }
    let tasks = tasks
        .into_iter()
        .chain([
            TaskKind::DisconnectAll,
            TaskKind::UnlinkPack,
            TaskKind::UnmountPack,
            TaskKind::DiscardData,
            TaskKind::DiscardPack,
        ])
        .map(|k| (k, k.summary(name, None)))
        .collect();
    Ok(s.add_change(
        "remove-pack",
        format!("Remove pack {name:?}"),
        Plan::Remove {
            name: name.to_string(),
            revisions,
            purge,
        },
        tasks,
    ))
}

#[cfg(test)]
mod tests;
