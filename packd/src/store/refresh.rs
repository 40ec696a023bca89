//! Refreshing what is installed from stores: by hand (`pack refresh`, `--channel` to switch
//! as well), by the timer ([`Mode::Auto`]: holds and skipped revisions respected), what a
//! refresh would bring (`--list`), and `pack switch`.

use packd_api::store::{PendingRefresh, StoreEvent};
use packfmt::Revision;
use packfmt::store::Installed;

use super::fetch::{Events, Mode, Started, check_channel, error_event, held_until, send};
use super::{Result, StoreError, StoreManager};
use crate::state::now;

impl StoreManager {
    /// The packs a refresh is about: the named ones (each from a store), or every pack from
    /// a store; as (remote, installed) pairs.
    pub fn refresh_targets(&self, names: &[String]) -> Result<Vec<(String, Installed)>> {
        self.state.read(|s| {
            let mut out = Vec::new();
            for p in s.packs.values().filter(|p| p.active) {
                if !names.is_empty() && !names.contains(&p.name) {
                    continue;
                }
                let Some(t) = &p.tracking else {
                    if !names.is_empty() {
                        return Err(StoreError::NotFromStore {
                            name: p.name.clone(),
                        });
                    }
                    continue;
                };
                let Revision::Store(rev) = p.current else {
                    continue;
                };
                out.push((
                    t.remote.clone(),
                    Installed {
                        pack_id: t.pack_id.clone(),
                        name: p.name.clone(),
                        revision: rev,
                        channel: t.channel.clone(),
                    },
                ));
            }
            if let Some(missing) = names
                .iter()
                .find(|n| !out.iter().any(|(_, i)| &i.name == *n))
            {
                return Err(crate::packs::PackError::NotInstalled(missing.clone()).into());
            }
            Ok(out)
        })
    }

    /// `pack refresh [NAME...] [--channel C]` and auto-refresh: the changes started. One
    /// pack's failure is reported as an event and the others go on.
    pub async fn refresh(
        &self,
        names: &[String],
        channel: Option<&str>,
        mode: Mode,
        events: &Events,
    ) -> Result<Vec<Started>> {
        let _busy = self.busy.lock().await;
        let mut targets = self.refresh_targets(names)?;
        if let Some(c) = channel {
            for (_, t) in &mut targets {
                t.channel = c.to_string();
            }
        }
        let now = now();
        let mut remotes: Vec<String> = targets.iter().map(|(r, _)| r.clone()).collect();
        remotes.sort();
        remotes.dedup();
        let mut started = Vec::new();
        let mut unchanged: Vec<String> = Vec::new();
        for rname in remotes {
            let in_remote = || targets.iter().filter(|(r, _)| *r == rname);
            let remote = match self.remote(&rname) {
                Ok(r) => r,
                Err(e) => {
                    for (_, i) in in_remote() {
                        send(events, error_event(&i.name, &e));
                    }
                    continue;
                }
            };
            let mut mine: Vec<Installed> = Vec::new();
            for (_, i) in in_remote() {
                let held = self.state.read(|s| held_until(s, &i.name, now)).is_some();
                // Named by hand: refreshed even when held.
                let by_hand = mode == Mode::Manual && !names.is_empty();
                if held && !by_hand {
                    continue;
                }
                // Another change on it (a refresh still in its health window, say): next time.
                if let Some(c) = self
                    .state
                    .read(|s| s.change_in_progress(&i.name).map(|c| c.id))
                {
                    if mode == Mode::Manual {
                        let busy = StoreError::BadRequest(format!(
                            "{} has change {c} in progress; wait for it with 'pack watch {c}'",
                            i.name
                        ));
                        send(events, error_event(&i.name, &busy));
                    }
                    continue;
                }
                mine.push(i.clone());
            }
            if mine.is_empty() {
                continue;
            }
            let verified = match self
                .ask(&remote, mine.clone(), Vec::new(), mode == Mode::Auto)
                .await
            {
                Ok(Some(v)) => v,
                Ok(None) => {
                    unchanged.extend(mine.iter().map(|i| i.name.clone()));
                    continue;
                }
                Err(e) => {
                    for i in &mine {
                        send(events, error_event(&i.name, &e));
                    }
                    continue;
                }
            };
            for e in &verified.answer.errors {
                let err = StoreError::StoreSays {
                    name: e.name.clone(),
                    code: e.code.clone(),
                    message: e.message.clone(),
                };
                send(events, error_event(&e.name, &err));
            }
            for i in &mine {
                // The same pack, not just the same name.
                let offer = verified
                    .answer
                    .results
                    .iter()
                    .find(|o| o.name == i.name && o.pack_id == i.pack_id);
                let Some(offer) = offer else {
                    if !verified.answer.errors.iter().any(|e| e.name == i.name) {
                        unchanged.push(i.name.clone());
                        if channel.is_some()
                            && let Err(e) = self.set_channel(&i.name, &i.channel)
                        {
                            send(events, error_event(&i.name, &e));
                        }
                    }
                    continue;
                };
                let skipped = self.state.read(|s| {
                    s.refresh
                        .skipped
                        .get(&i.name)
                        .is_some_and(|r| r.contains(&offer.revision))
                });
                if skipped && mode == Mode::Auto {
                    tracing::info!(pack = %i.name, revision = offer.revision, "skipping a revision that failed here before");
                    unchanged.push(i.name.clone());
                    continue;
                }
                match self.obtain(&remote, &verified, offer, events).await {
                    Ok(s) => {
                        // What the user asked to follow (an install links it too).
                        if channel.is_some()
                            && let Err(e) = self.set_channel(&i.name, &i.channel)
                        {
                            send(events, error_event(&i.name, &e));
                        }
                        started.push(s);
                    }
                    Err(e) => send(events, error_event(&i.name, &e)),
                }
            }
        }
        send(events, StoreEvent::Done { unchanged });
        Ok(started)
    }

    fn set_channel(&self, name: &str, channel: &str) -> Result<()> {
        self.state.update(|s| {
            if let Some(t) = s.packs.get_mut(name).and_then(|p| p.tracking.as_mut()) {
                t.channel = channel.to_string();
            }
            Ok(())
        })
    }

    /// `pack switch NAME --channel C`: what it follows from now on (no refresh, as snapd).
    pub fn switch(&self, name: &str, channel: &str) -> Result<()> {
        check_channel(channel)?;
        self.refresh_targets(&[name.to_string()])?;
        self.set_channel(name, channel)
    }

    /// `pack refresh --list`: what a refresh would bring, asked now. Anyone may ask, so it
    /// neither waits for a refresh under way nor replaces the ETag auto-refresh keeps.
    pub async fn pending(&self, names: &[String]) -> Result<Vec<PendingRefresh>> {
        let targets = self.refresh_targets(names)?;
        let now = now();
        let mut out = Vec::new();
        let mut remotes: Vec<String> = targets.iter().map(|(r, _)| r.clone()).collect();
        remotes.sort();
        remotes.dedup();
        for rname in remotes {
            let remote = self.remote(&rname)?;
            let mine: Vec<Installed> = targets
                .iter()
                .filter(|(r, _)| *r == rname)
                .map(|(_, i)| i.clone())
                .collect();
            let Some(verified) = self.ask(&remote, mine.clone(), Vec::new(), false).await? else {
                continue;
            };
            for o in &verified.answer.results {
                let Some(i) = mine
                    .iter()
                    .find(|i| i.name == o.name && i.pack_id == o.pack_id)
                else {
                    continue;
                };
                let (held, skipped) = self.state.read(|s| {
                    (
                        held_until(s, &o.name, now),
                        s.refresh
                            .skipped
                            .get(&o.name)
                            .is_some_and(|r| r.contains(&o.revision)),
                    )
                });
                out.push(PendingRefresh {
                    name: o.name.clone(),
                    remote: rname.clone(),
                    channel: i.channel.clone(),
                    current: Revision::Store(i.revision),
                    revision: o.revision,
                    version: o.version.clone(),
                    size: o.size,
                    held: held.map(super::auto::until_text),
                    skipped,
                });
            }
        }
        Ok(out)
    }
}
