//! What the device tells its stores about each install or refresh, for rollouts: `started`
//! (a verified offer is being fetched), `downloaded` (its digest matched), `installed` (the
//! revision was linked), then `healthy` (the change finished: hooks, check-health and the
//! services' health window passed) or `failed` (with the failing task and its last log line)
//! and `reverted` (the change undid itself).
//!
//! Reports are queued in state.json and sent in order; one the store has not taken stays for
//! the next try (after the next change, at the auto-refresh loop's next look, after the next
//! answer from that store). Each carries a random `report-id`, and the store keeps one row per
//! device and id, so a report sent twice (packd died between the store's answer and its own
//! write) still counts once.

use super::fetch::Started;
use super::{StoreError, StoreManager};
use crate::state::{QueuedReport, Status, TaskKind};

/// At most this many reports wait; the oldest go first.
const MAX_QUEUED: usize = 1000;

fn kebab(kind: TaskKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl StoreManager {
    /// Queues `outcome` of `offer` for `remote`.
    pub(super) fn queue_report(
        &self,
        remote: &str,
        offer: &packfmt::store::Offer,
        outcome: &str,
        failure: Option<(String, String)>,
    ) {
        self.queue(
            remote,
            &offer.pack_id,
            offer.revision,
            &offer.released_to,
            outcome,
            failure,
        )
    }

    fn queue(
        &self,
        remote: &str,
        pack_id: &str,
        revision: u32,
        channel: &str,
        outcome: &str,
        failure: Option<(String, String)>,
    ) {
        let mut raw = [0u8; 12];
        if getrandom::fill(&mut raw).is_err() {
            return;
        }
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let queued = self.state.update(|s| {
            let body = serde_json::json!({
                "report-id": id,
                "device-id": s.device_id,
                "pack-id": pack_id,
                "revision": revision,
                "channel": channel,
                "outcome": outcome,
                "task": failure.as_ref().map(|f| f.0.clone()),
                "message": failure.as_ref().map(|f| f.1.clone()),
            });
            s.reports.push(QueuedReport {
                remote: remote.to_string(),
                body,
            });
            let extra = s.reports.len().saturating_sub(MAX_QUEUED);
            s.reports.drain(..extra);
            Ok::<_, StoreError>(())
        });
        if let Err(e) = queued {
            tracing::warn!(error = %e, "cannot queue a report to the store");
        }
    }

    /// Queues what a finished change tells: installed, then healthy or failed and reverted.
    pub(super) fn report_change(&self, s: &Started, ok: bool) {
        let (linked, failure) = self.state.read(|st| {
            let Some(c) = st.changes.get(&s.change) else {
                return (false, None);
            };
            let linked = c.tasks.iter().any(|t| {
                t.kind == TaskKind::LinkPack
                    && matches!(t.status, Status::Done | Status::Undone | Status::Undo)
            });
            let failure = c
                .tasks
                .iter()
                .find(|t| t.status == Status::Error)
                .map(|t| (kebab(t.kind), t.log.last().cloned().unwrap_or_default()));
            (linked, failure)
        });
        let report = |outcome: &str, f: Option<(String, String)>| {
            self.queue(&s.remote, &s.pack_id, s.revision, &s.channel, outcome, f)
        };
        if linked {
            report("installed", None);
        }
        if ok {
            report("healthy", None);
        } else {
            report("failed", failure);
            report("reverted", None);
        }
    }

    /// Sends the queued reports of every reachable store, in order; stops at a store's first
    /// failure (the rest of its reports wait behind it).
    pub(super) async fn flush_reports(&self) {
        let Ok(_flushing) = self.flushing.try_lock() else {
            return;
        };
        let queued: Vec<QueuedReport> = self.state.read(|s| s.reports.clone());
        let mut down: Vec<String> = Vec::new();
        for q in queued {
            if down.contains(&q.remote) {
                continue;
            }
            let Ok(remote) = self.remote(&q.remote) else {
                // The remote is gone: so is what it would have been told.
                self.forget_report(&q);
                continue;
            };
            match self.client.report(&remote, &q.body).await {
                Ok(()) => self.forget_report(&q),
                Err(
                    StoreError::Refused { message, .. } | StoreError::StoreSays { message, .. },
                ) => {
                    // The store will never take it (an old store, a bad report): drop it.
                    tracing::warn!(remote = %q.remote, %message, "the store refused a report");
                    self.forget_report(&q);
                }
                Err(e) => {
                    tracing::info!(remote = %q.remote, error = %e, "reports wait: the store is unreachable");
                    down.push(q.remote.clone());
                }
            }
        }
    }

    fn forget_report(&self, q: &QueuedReport) {
        let _ = self.state.update(|s| {
            s.reports.retain(|r| r != q);
            Ok::<_, StoreError>(())
        });
    }
}
