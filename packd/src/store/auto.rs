//! Auto-refresh, under the user's control: `refresh.timer` says when (jittered per device
//! over each window), `pack refresh --hold` says what not to touch and until when,
//! `refresh.metered=hold` waits while NetworkManager calls the connection metered.
//!
//! Every auto-refresh is the same transactional refresh as `pack refresh`, so a failing
//! revision reverts by itself; the device then records that revision as skipped (never
//! tried again by the timer) and reports the outcome to the store (`reports`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDateTime};
use packd_api::store::{RefreshTime, StoreEvent};
use sha3::{Digest, Sha3_256};

use super::fetch::{Mode, Started};
use super::timer::Schedule;
use super::{Result, StoreError, StoreManager};
use crate::state::{config, now};

/// Holds ending after this (year 9000) are forever.
const MAX_HOLD_END: u64 = 221_845_392_000;

/// `forever`, or the time in RFC 3339.
pub fn until_text(until: u64) -> String {
    match std::time::UNIX_EPOCH.checked_add(Duration::from_secs(until)) {
        Some(t) if until < MAX_HOLD_END => humantime::format_rfc3339_seconds(t).to_string(),
        _ => "forever".into(),
    }
}

fn local(secs: u64) -> NaiveDateTime {
    DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map(|t| t.with_timezone(&Local).naive_local())
        .unwrap_or_default()
}

fn epoch(t: NaiveDateTime) -> u64 {
    t.and_local_timezone(Local)
        .earliest()
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}

impl StoreManager {
    fn schedule(&self) -> Schedule {
        let spec = self
            .state
            .read(|s| config::get(&s.config, "refresh.timer").to_string());
        spec.parse().unwrap_or_default()
    }

    /// This device's spread over each window: from its id, so it is stable across restarts.
    fn jitter(&self) -> u64 {
        let id = self.state.read(|s| s.device_id.clone()).unwrap_or_default();
        let digest = Sha3_256::digest(id.as_bytes());
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(raw)
    }

    /// When the next auto-refresh may start and its window's end. `every` counts from the
    /// last run (or from `anchor`, packd's start, before the first); calendar windows from
    /// `after` (the end of the window the last run was in), or now.
    fn next_window(
        &self,
        anchor: NaiveDateTime,
        after: Option<NaiveDateTime>,
    ) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let schedule = self.schedule();
        let nowl = local(now());
        let from = if schedule.is_every() {
            self.state
                .read(|s| s.refresh.last)
                .map(local)
                .unwrap_or(anchor)
        } else {
            after.map_or(nowl, |a| a.max(nowl))
        };
        schedule.next(from, self.jitter())
    }

    /// `pack refresh --hold[=DURATION] [NAME...]`: the holds set, by name (`*` for all).
    pub fn hold(
        &self,
        names: &[String],
        duration: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        let until = match duration.unwrap_or("forever") {
            "forever" => u64::MAX,
            d => {
                let d = humantime::parse_duration(d).map_err(|e| {
                    StoreError::BadRequest(format!(
                        "invalid hold {d:?}: {e}; write e.g. 24h, \"3 days\" or forever"
                    ))
                })?;
                let end = now().saturating_add(d.as_secs());
                if end >= MAX_HOLD_END { u64::MAX } else { end }
            }
        };
        let keys: Vec<String> = if names.is_empty() {
            vec!["*".into()]
        } else {
            self.refresh_targets(names)?;
            names.to_vec()
        };
        self.state.update(|s| {
            for k in &keys {
                s.refresh.holds.insert(k.clone(), until);
            }
            Ok::<_, StoreError>(())
        })?;
        self.wake.notify_one();
        Ok(keys.into_iter().map(|k| (k, until_text(until))).collect())
    }

    /// `pack refresh --unhold [NAME...]` (no names: every hold).
    pub fn unhold(&self, names: &[String]) -> Result<()> {
        self.state.update(|s| {
            if names.is_empty() {
                s.refresh.holds.clear();
            } else {
                for n in names {
                    s.refresh.holds.remove(n);
                }
            }
            Ok::<_, StoreError>(())
        })?;
        self.wake.notify_one();
        Ok(())
    }

    /// `pack refresh --time`.
    pub fn time(&self) -> RefreshTime {
        let (timer, metered, last, holds) = self.state.read(|s| {
            (
                config::get(&s.config, "refresh.timer").to_string(),
                config::get(&s.config, "refresh.metered").to_string(),
                s.refresh.last,
                s.refresh
                    .holds
                    .iter()
                    .filter(|(_, until)| **until > now())
                    .map(|(k, u)| (k.clone(), until_text(*u)))
                    .collect(),
            )
        });
        let next = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        RefreshTime {
            timer,
            last: last.map(until_text),
            next: next.map(until_text),
            holds,
            metered,
        }
    }

    /// Settings or holds changed: the loop looks again.
    pub fn settings_changed(&self) {
        self.wake.notify_one();
    }

    /// The auto-refresh loop; runs until packd stops.
    pub async fn run(self: Arc<Self>) {
        let anchor = local(now());
        let mut after: Option<NaiveDateTime> = None;
        loop {
            let window = self.next_window(anchor, after);
            *self.next.lock().unwrap_or_else(|e| e.into_inner()) = window.map(|w| epoch(w.0));
            let Some((start, end)) = window else {
                tracing::warn!("refresh.timer matches no time; auto-refresh is off");
                self.wake.notified().await;
                continue;
            };
            if self.state.read(|s| !s.reports.is_empty()) {
                self.flush_reports().await;
            }
            let wait = epoch(start).saturating_sub(now());
            if wait > 0 {
                // Look again at least every minute (the clock may jump) and when told.
                let nap = Duration::from_secs(wait.min(60));
                tokio::select! {
                    _ = tokio::time::sleep(nap) => {}
                    _ = self.wake.notified() => {}
                }
                continue;
            }
            after = Some(end);
            self.auto_once().await;
        }
    }

    /// One auto-refresh of everything not held.
    async fn auto_once(self: &Arc<Self>) {
        self.state
            .update(|s| {
                s.refresh.last = Some(now());
                Ok::<_, StoreError>(())
            })
            .ok();
        if self.held_by_metering().await {
            tracing::info!("auto-refresh held: the connection is metered (refresh.metered=hold)");
            return;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = match self.refresh(&[], None, Mode::Auto, &tx).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "auto-refresh failed");
                return;
            }
        };
        drop(tx);
        while let Some(e) = rx.recv().await {
            if let StoreEvent::Error { name, message, .. } = e {
                tracing::warn!(pack = %name, "auto-refresh: {message}");
            }
        }
        // The next run waits for these to settle, so it never retries what just failed.
        for s in &started {
            tracing::info!(pack = %s.name, revision = s.revision, change = s.change, "auto-refresh started");
            self.settle(s).await;
        }
    }

    /// Watches the changes a refresh started, in the background (see [`Self::settle`]).
    pub fn watch(self: &Arc<Self>, started: Vec<Started>) {
        for s in started {
            let me = self.clone();
            tokio::spawn(async move { me.settle(&s).await });
        }
    }

    /// Waits for the change `s` started: a failure (undone by the change itself) makes its
    /// revision skipped; the outcome is reported to its store.
    async fn settle(&self, s: &Started) {
        let ok = self.wait(s.change).await;
        if !ok {
            tracing::warn!(pack = %s.name, revision = s.revision, "refresh failed and was undone; auto-refresh will skip this revision");
            let _ = self.state.update(|st| {
                st.refresh
                    .skipped
                    .entry(s.name.clone())
                    .or_default()
                    .insert(s.revision);
                Ok::<_, StoreError>(())
            });
        }
        self.report_change(s, ok);
        self.flush_reports().await;
    }

    /// Whether `refresh.metered=hold` and NetworkManager says the connection is metered.
    async fn held_by_metering(&self) -> bool {
        let hold = self
            .state
            .read(|s| config::get(&s.config, "refresh.metered") == "hold");
        hold && metered().await.unwrap_or(false)
    }
}

/// NetworkManager's `Metered` (yes or guess-yes), on the system bus; `None` without one.
async fn metered() -> Option<bool> {
    let conn = zbus::Connection::system().await.ok()?;
    let proxy = zbus::Proxy::new(
        &conn,
        "org.freedesktop.NetworkManager",
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.NetworkManager",
    )
    .await
    .ok()?;
    let value: u32 = proxy.get_property("Metered").await.ok()?;
    Some(matches!(value, 1 | 3))
}
