//! What the store offers, as one immutable snapshot of the database taken after every change:
//! devices' reads (find, info, refresh) never touch SQLite and never wait for a writer.

use std::collections::{BTreeMap, HashMap};

use packfmt::store::{Answer, ChannelEntry, Found, Offer, PackInfo, RefreshRequest, Refusal};

use crate::StoreError;
use crate::channel::{self, Channel, RISKS, Release};
use crate::db::{Db, PackRow, RevisionRow};
use crate::keys::rfc3339;

/// One pack: its registration, revisions and release history.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pack: PackRow,
    pub revisions: BTreeMap<u32, RevisionRow>,
    pub history: Vec<Release>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub serial: u64,
    pub authority: String,
    pub packs: BTreeMap<String, Entry>,
    by_id: HashMap<String, String>,
    /// Assertion texts by (kind, primary key joined with '/').
    assertions: HashMap<(String, String), Vec<u8>>,
    /// The account-keys' texts (every device gets them with an answer).
    account_keys: Vec<Vec<u8>>,
    /// Rollouts under way (running, paused or halted), by pack-id.
    rollouts: HashMap<String, Vec<crate::rollouts::RolloutRow>>,
}

/// How often devices are asked to poll (seconds).
pub const POLL_AFTER: u64 = 300;

impl Catalog {
    pub fn load(db: &Db) -> Result<Catalog, StoreError> {
        let mut packs = BTreeMap::new();
        let mut by_id = HashMap::new();
        for p in db.packs()? {
            by_id.insert(p.pack_id.clone(), p.name.clone());
            packs.insert(
                p.name.clone(),
                Entry {
                    pack: p,
                    revisions: BTreeMap::new(),
                    history: Vec::new(),
                },
            );
        }
        for r in db.revisions()? {
            if let Some(e) = by_id.get(&r.pack_id).and_then(|n| packs.get_mut(n)) {
                e.revisions.insert(r.revision, r);
            }
        }
        for (pack_id, rel) in db.releases()? {
            if let Some(e) = by_id.get(&pack_id).and_then(|n| packs.get_mut(n)) {
                e.history.push(rel);
            }
        }
        let mut assertions = HashMap::new();
        let mut account_keys = Vec::new();
        for text in db.assertions()? {
            let Ok(a) = packfmt::assertion::Assertion::parse(&text) else {
                continue;
            };
            if a.kind() == packfmt::assertion::Kind::AccountKey {
                account_keys.push(text.clone());
            }
            assertions.insert(
                (a.kind().name().to_string(), a.primary_key().join("/")),
                text,
            );
        }
        let mut rollouts: HashMap<String, Vec<crate::rollouts::RolloutRow>> = HashMap::new();
        for r in db.rollouts()?.into_iter().filter(|r| r.state.is_active()) {
            rollouts.entry(r.pack_id.clone()).or_default().push(r);
        }
        Ok(Catalog {
            rollouts,
            serial: db.serial()?,
            authority: db.setting("authority-id")?.unwrap_or_default(),
            packs,
            by_id,
            assertions,
            account_keys,
        })
    }

    pub fn by_id(&self, pack_id: &str) -> Option<&Entry> {
        self.by_id.get(pack_id).and_then(|n| self.packs.get(n))
    }

    pub fn assertion(&self, kind: &str, key: &str) -> Option<&[u8]> {
        self.assertions
            .get(&(kind.to_string(), key.to_string()))
            .map(Vec::as_slice)
    }

    /// Search by name or summary (case-insensitive); everything for an empty query.
    pub fn find(&self, query: &str, now: i64) -> Vec<Found> {
        let q = query.to_lowercase();
        self.packs
            .values()
            .filter_map(|e| {
                let stable = e.resolve(&Channel::default_channel(), now);
                let shown = stable
                    .or_else(|| e.revisions.values().next_back())
                    .filter(|_| !e.revisions.is_empty())?;
                let hit = e.pack.name.contains(&q) || shown.summary.to_lowercase().contains(&q);
                hit.then(|| Found {
                    name: e.pack.name.clone(),
                    publisher: e.pack.publisher.clone(),
                    summary: shown.summary.clone(),
                    version: stable.map(|r| r.version.clone()),
                })
            })
            .collect()
    }

    pub fn info(&self, name: &str, now: i64) -> Option<PackInfo> {
        let e = self.packs.get(name)?;
        let latest = e.revisions.values().next_back();
        Some(PackInfo {
            name: e.pack.name.clone(),
            pack_id: e.pack.pack_id.clone(),
            publisher: e.pack.publisher.clone(),
            summary: latest.map(|r| r.summary.clone()).unwrap_or_default(),
            description: latest.map(|r| r.description.clone()).unwrap_or_default(),
            channels: e.channel_map(now),
        })
    }

    /// The answer to a device's refresh request at `now`.
    pub fn refresh(&self, req: &RefreshRequest, now: i64) -> (Answer, Vec<Vec<u8>>) {
        let mut answer = Answer {
            poll_after: POLL_AFTER,
            ..Answer::default()
        };
        let mut needed: Vec<(String, String)> = Vec::new();
        let refuse = |name: &str, code: &str, message: String| Refusal {
            name: name.to_string(),
            code: code.into(),
            message,
        };
        let wanted = req
            .packs
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    self.by_id(&p.pack_id),
                    &p.channel,
                    Some(p.revision),
                )
            })
            .chain(
                req.install
                    .iter()
                    .map(|w| (w.name.clone(), self.packs.get(&w.name), &w.channel, None)),
            );
        for (name, entry, channel, current) in wanted {
            let Some(e) = entry else {
                answer.errors.push(refuse(
                    &name,
                    "not-found",
                    format!("no pack named {name:?} in this store; try pack find"),
                ));
                continue;
            };
            let channel: Channel = match channel.parse() {
                Ok(c) => c,
                Err(err) => {
                    answer
                        .errors
                        .push(refuse(&name, "invalid-channel", err.to_string()));
                    continue;
                }
            };
            // A rollout on the channel asked for, or on one it falls through to before the
            // one that offers, decides for the devices of its open waves.
            let resolved = e.resolve_with_channel(&channel, now);
            let rollout = self.rollouts.get(&e.pack.pack_id).and_then(|rs| {
                let chain = channel.fall_through();
                let stop = resolved
                    .as_ref()
                    .and_then(|(to, _)| chain.iter().position(|c| c == to))
                    .unwrap_or(chain.len().saturating_sub(1));
                chain[..=stop.min(chain.len().saturating_sub(1))]
                    .iter()
                    .find_map(|c| rs.iter().find(|r| r.channel == *c))
            });
            let mine = rollout.and_then(|r| {
                let revision = e
                    .revisions
                    .get(&r.revision)
                    .filter(|x| x.revoked.is_none())?;
                Some((r, revision))
            });
            let (released_to, rev) = match (mine, resolved) {
                // Those that have it keep it while it is under way.
                (Some((r, _)), _) if current == Some(r.revision) => continue,
                (Some((r, x)), _) if r.offers(req.device_id.as_deref()) => (r.channel.clone(), x),
                (_, Some(found)) => found,
                (_, None) => {
                    answer.errors.push(refuse(
                        &e.pack.name,
                        "no-release",
                        format!(
                            "{} has nothing released in {channel} or the channels it follows; see pack info {}",
                            e.pack.name, e.pack.name
                        ),
                    ));
                    continue;
                }
            };
            if current == Some(rev.revision) {
                continue;
            }
            needed.push(("pack-declaration".into(), e.pack.pack_id.clone()));
            needed.push((
                "pack-revision".into(),
                format!("{}/{}", e.pack.pack_id, rev.revision),
            ));
            // A device moved away from a revoked revision learns that it is.
            if let Some(cur) = current
                && e.revisions.get(&cur).is_some_and(|r| r.revoked.is_some())
            {
                needed.push(("pack-revision".into(), format!("{}/{cur}", e.pack.pack_id)));
            }
            answer.results.push(Offer {
                name: e.pack.name.clone(),
                pack_id: e.pack.pack_id.clone(),
                revision: rev.revision,
                version: rev.version.clone(),
                channel: channel.to_string(),
                released_to: released_to.to_string(),
                sha3_384: rev.sha3.clone(),
                size: rev.size,
                pack_type: rev.pack_type.clone(),
                base: rev.base.clone(),
                default_providers: rev.providers.clone(),
                declaration_revision: self
                    .assertion("pack-declaration", &e.pack.pack_id)
                    .and_then(|t| packfmt::assertion::Assertion::parse(t).ok())
                    .map(|a| a.revision())
                    .unwrap_or(0),
                download: format!("/v1/download/{}/{}", e.pack.pack_id, rev.revision),
            });
        }
        let mut texts = self.account_keys.clone();
        for key in needed {
            if let Some(t) = self.assertions.get(&key) {
                texts.push(t.clone());
            }
        }
        (answer, texts)
    }
}

impl Entry {
    fn resolve(&self, channel: &Channel, now: i64) -> Option<&RevisionRow> {
        self.resolve_with_channel(channel, now).map(|(_, r)| r)
    }

    /// The revision `channel` offers and the channel it is released to.
    pub fn resolve_with_channel(
        &self,
        channel: &Channel,
        now: i64,
    ) -> Option<(Channel, &RevisionRow)> {
        let withdrawn = |rev: u32| self.revisions.get(&rev).is_none_or(|r| r.revoked.is_some());
        let (c, rev) = channel::resolve(&self.history, channel, now, withdrawn)?;
        Some((c, self.revisions.get(&rev)?))
    }

    /// Every track's four risks, and each live branch, with what they offer.
    pub fn channel_map(&self, now: i64) -> Vec<ChannelEntry> {
        let mut tracks: Vec<String> = vec!["latest".into()];
        let mut branches: Vec<Channel> = Vec::new();
        for r in &self.history {
            if !tracks.contains(&r.channel.track) {
                tracks.push(r.channel.track.clone());
            }
            if r.channel.branch.is_some() && !branches.contains(&r.channel) {
                branches.push(r.channel.clone());
            }
        }
        let mut out = Vec::new();
        let mut row = |c: Channel| {
            let found = self.resolve_with_channel(&c, now);
            let released_at = found.as_ref().and_then(|(to, _)| {
                self.history
                    .iter()
                    .rev()
                    .find(|r| r.channel == *to)
                    .map(|r| rfc3339(r.at))
            });
            let expired_branch =
                c.branch.is_some() && found.as_ref().is_none_or(|(to, _)| *to != c);
            if expired_branch {
                return;
            }
            out.push(ChannelEntry {
                channel: c.to_string(),
                revision: found.as_ref().map(|(_, r)| r.revision),
                version: found.as_ref().map(|(_, r)| r.version.clone()),
                size: found.as_ref().map(|(_, r)| r.size),
                follows: found
                    .as_ref()
                    .filter(|(to, _)| *to != c)
                    .map(|(to, _)| to.to_string()),
                released_at,
            });
        };
        for track in &tracks {
            for risk in RISKS {
                row(Channel {
                    track: track.clone(),
                    risk: risk.into(),
                    branch: None,
                });
            }
        }
        for b in branches {
            row(b);
        }
        out
    }
}
