//! Services at packd's start: take over every service whose monitor outlived the last packd
//! (same pid, logs never interrupted), apply the restart policy to those that ended while
//! packd was away, then start the enabled services that do not run (as at boot).

use std::collections::BTreeSet;
use std::path::PathBuf;

use confine::proto::{Exec, MonitorEvent};
use packfmt::meta::Daemon as Kind;

use super::records::{self, UnitRecord};
use super::supervisor::UnitFiles;
use super::unit::Begin;
use super::{ServiceManager, logs};

impl ServiceManager {
    /// Finds the services still running from a previous packd and takes them over, before
    /// any change resumes; cleans up after those whose monitor is gone, restarting them when
    /// their restart condition says so. Returns the cgroups of the sandboxes that live on
    /// (everything else under the daemon's parent is a leftover).
    pub async fn adopt(&self) -> BTreeSet<PathBuf> {
        let mut alive = BTreeSet::new();
        for record in records::all(&self.ctx.paths.services_dir()) {
            alive.extend(self.adopt_one(record, "while packd was away").await);
        }
        alive
    }

    /// Takes over the service of `record`: its monitor if it still answers, else what it
    /// left (its restart condition applies; `when` says when it ended, for its log). The
    /// cgroup of a sandbox that lives on.
    async fn adopt_one(&self, record: records::UnitRecord, when: &str) -> Option<PathBuf> {
        let mut alive = None;
        let files = UnitFiles::new(&self.ctx.paths, &record.pack, &record.app);
        let meta = self.ctx.store.read(|s| {
            let p = s.packs.get(&record.pack).filter(|p| p.active)?;
            let app = p.current_revision()?.meta.apps.get(&record.app)?.clone();
            app.is_service()
                .then(|| (app, p.disabled_services.contains(&record.app)))
        });
        let link = self.ctx.supervisor.attach(&files).await;
        match (link, meta) {
            (Some(mut link), Some(_)) => {
                let status = match link.next().await {
                    Some(MonitorEvent::Status(status)) => status,
                    _ => {
                        self.gone(&record, &files).await;
                        return None;
                    }
                };
                if let Some(cg) = &record.cgroup {
                    self.ctx.sandboxes.adopt(&record.pack, cg);
                    alive = Some(cg.clone());
                }
                let revision = record.revision;
                let (pack, app) = (record.pack.clone(), record.app.clone());
                self.spawn_unit(
                    &pack,
                    &app,
                    revision,
                    Begin::Adopt {
                        link,
                        status: Box::new(status),
                        record: Box::new(record),
                    },
                    None,
                );
            }
            (Some(mut link), None) => {
                // Its pack went while packd was away (or the app is no longer a
                // service): it has no business running.
                tracing::warn!(pack = %record.pack, app = %record.app, "stopping a service that is no longer installed");
                let _ = link.send(confine::proto::MonitorCommand::Signal {
                    signal: libc::SIGKILL,
                });
                self.gone(&record, &files).await;
            }
            (None, meta) => {
                let ended = records::exit_record(&files);
                self.gone(&record, &files).await;
                let (app, disabled) = meta?;
                let code = ended.as_ref().map_or(128 + libc::SIGKILL, |e| e.code);
                logs::note(
                    self.ctx.paths.root(),
                    &record.pack,
                    &record.app,
                    &format!("found ended (status {code}) {when}"),
                );
                if disabled {
                    return None;
                }
                let finished = app.daemon == Some(Kind::Oneshot)
                    && ended.as_ref().is_some_and(|e| {
                        e.app_exit == Some(0) && matches!(e.exec, Exec::Started { .. })
                    });
                let begin = if finished {
                    Begin::Finished
                } else {
                    Begin::Ended(code)
                };
                self.spawn_unit(&record.pack, &record.app, record.revision, begin, None);
            }
        }
        alive
    }

    /// A unit task failed (a bug): takes its service over again as a restarted packd would.
    pub(super) async fn recover(&self, pack: &str, app: &str) {
        let files = UnitFiles::new(&self.ctx.paths, pack, app);
        self.units().remove(&(pack.to_string(), app.to_string()));
        match records::UnitRecord::read(&files.record) {
            Some(record) => {
                self.adopt_one(record, "after its supervising task failed")
                    .await;
            }
            // Nothing was started: its restart condition decides, as for a crash.
            None => {
                let revision = self
                    .ctx
                    .store
                    .read(|s| s.packs.get(pack).map(|p| p.current));
                if let Some(revision) = revision {
                    self.spawn_unit(pack, app, revision, Begin::Ended(128 + libc::SIGABRT), None);
                }
            }
        }
    }

    /// Cleans up after a service whose monitor is gone: its cgroup, files and record.
    async fn gone(&self, record: &UnitRecord, files: &UnitFiles) {
        if let Some(rel) = record.cgroup.clone() {
            let (sandboxes, pack) = (self.ctx.sandboxes.clone(), record.pack.clone());
            let _ = tokio::task::spawn_blocking(move || sandboxes.release(&pack, &rel)).await;
        }
        records::remove(files);
        self.ctx.supervisor.forget(files).await;
    }

    /// Starts the enabled services of every installed pack that packd does not know of yet
    /// (all of them after a reboot; after a restart, those [`Self::adopt`] found no trace of),
    /// in the background: packs one after another, each in its dependency order. A pack with a
    /// change under way is left to the change; its services start once it is done (with
    /// whatever revision it left current).
    pub fn start_at_boot(self: &std::sync::Arc<Self>) {
        let me = self.clone();
        self.runtime.spawn(async move {
            let store = me.ctx.store.clone();
            let mut updates = store.subscribe();
            let mut waiting: Vec<String> = store.read(|s| s.packs.keys().cloned().collect());
            while !waiting.is_empty() {
                let (ready, busy): (Vec<String>, Vec<String>) = store.read(|s| {
                    waiting
                        .iter()
                        .cloned()
                        .partition(|name| s.change_in_progress(name).is_none())
                });
                for pack in ready {
                    // What was taken over (or found ended and judged by its restart
                    // condition) is not started again: only what nothing knows of, as after
                    // a reboot.
                    let mut apps = store.read(|s| super::tasks::enabled(s, &pack));
                    apps.retain(|a| !me.known(&pack, a));
                    if apps.is_empty() {
                        continue;
                    }
                    // A change that started meanwhile has the pack now.
                    let name = pack.clone();
                    let store = store.clone();
                    let idle = move || store.read(|s| s.change_in_progress(&name).is_none());
                    if let Err(e) = me.start_if(&pack, Some(&apps), idle).await {
                        tracing::error!(pack, error = %e, "cannot start a service at boot");
                    }
                }
                waiting = busy;
                if !waiting.is_empty() && updates.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}
