//! Progressive releases in the store: kept in SQLite (`rollouts`, and `rollout_counts`, one
//! row per rollout, wave and outcome counting devices, so nothing on the poll path scans
//! devices), advanced by [`Store::tick_rollouts`], halted by [`Store::count_report`] when the
//! rule breaks, and controlled by their publisher. The model is in [`crate::rollout`].

use crate::channel::Channel;
use crate::db::{Db, Publisher, Report};
use crate::keys::now;
use crate::ops::Store;
use crate::rollout::{Halt, State, Waves, breaks, wave_of};
use crate::{StoreError, random_id};

type Result<T> = std::result::Result<T, StoreError>;

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// One rollout, as stored.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    pub id: i64,
    pub pack_id: String,
    pub channel: Channel,
    pub revision: u32,
    pub salt: String,
    pub waves: Waves,
    pub canaries: Vec<String>,
    pub halt: Option<Halt>,
    pub state: State,
    pub why: Option<String>,
    /// The last open wave.
    pub wave: usize,
    pub wave_started: i64,
    pub created: i64,
    /// The failed and healthy devices counted when it was last resumed: the rule looks at
    /// what came after.
    pub base: (u64, u64),
}

impl RolloutRow {
    /// Whether the rollout offers its revision to `device` now (never to a device without
    /// an id: they would all share one bucket).
    pub fn offers(&self, device: Option<&str>) -> bool {
        let Some(device) = device.filter(|d| !d.is_empty()) else {
            return false;
        };
        matches!(self.state, State::Running | State::Paused)
            && wave_of(&self.waves, &self.canaries, device, &self.salt) <= self.wave
    }
}

/// What a publisher asks for with `--progressive`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Progressive {
    #[serde(default)]
    pub waves: Option<String>,
    #[serde(default)]
    pub canaries: Vec<String>,
    /// The halt rule (`None`: the default one).
    #[serde(default)]
    pub halt: Option<Halt>,
    /// No halt rule at all.
    #[serde(default)]
    pub no_halt: bool,
}

impl Db {
    pub fn add_rollout(&self, r: &RolloutRow) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO rollouts (pack_id, channel, revision, salt, waves, canaries, halt,
                 state, why, wave, wave_started, created)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,NULL,0,?9,?9)",
                rusqlite::params![
                    r.pack_id,
                    r.channel.to_string(),
                    r.revision,
                    r.salt,
                    serde_json::to_string(&r.waves).unwrap_or_default(),
                    serde_json::to_string(&r.canaries).unwrap_or_default(),
                    r.halt
                        .as_ref()
                        .map(|h| serde_json::to_string(h).unwrap_or_default()),
                    r.state.as_str(),
                    r.created,
                ],
            )
            .map_err(sql)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every rollout, oldest first.
    pub fn rollouts(&self) -> Result<Vec<RolloutRow>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT id, pack_id, channel, revision, salt, waves, canaries, halt, state, why,
                 wave, wave_started, created, base_failed, base_healthy FROM rollouts ORDER BY id",
            )
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| {
                let channel: String = r.get(2)?;
                let waves: String = r.get(5)?;
                let canaries: String = r.get(6)?;
                let halt: Option<String> = r.get(7)?;
                let state: String = r.get(8)?;
                Ok(RolloutRow {
                    id: r.get(0)?,
                    pack_id: r.get(1)?,
                    channel: channel
                        .parse()
                        .unwrap_or_else(|_| Channel::default_channel()),
                    revision: r.get(3)?,
                    salt: r.get(4)?,
                    waves: serde_json::from_str(&waves).unwrap_or_default(),
                    canaries: serde_json::from_str(&canaries).unwrap_or_default(),
                    halt: halt.and_then(|h| serde_json::from_str(&h).ok()),
                    state: State::parse(&state),
                    why: r.get(9)?,
                    wave: r.get::<_, i64>(10)? as usize,
                    wave_started: r.get(11)?,
                    created: r.get(12)?,
                    base: (r.get::<_, i64>(13)? as u64, r.get::<_, i64>(14)? as u64),
                })
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    /// Moves rollout `id` to `state` if it is in one of `from`; whether it moved.
    pub fn set_rollout(
        &self,
        id: i64,
        from: &[State],
        state: State,
        why: Option<&str>,
    ) -> Result<bool> {
        let from: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE rollouts SET state = ?2, why = ?3 WHERE id = ?1 AND state IN ({})",
                    from.join(",")
                ),
                rusqlite::params![id, state.as_str(), why],
            )
            .map_err(sql)?;
        Ok(n == 1)
    }

    fn rollout(&self, id: i64) -> Result<Option<RolloutRow>> {
        Ok(self.rollouts()?.into_iter().find(|r| r.id == id))
    }

    fn set_base(&self, id: i64, base: (u64, u64)) -> Result<()> {
        self.conn
            .execute(
                "UPDATE rollouts SET base_failed = ?2, base_healthy = ?3 WHERE id = ?1",
                rusqlite::params![id, base.0 as i64, base.1 as i64],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn open_wave(&self, id: i64, wave: usize, now: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE rollouts SET wave = ?2, wave_started = ?3 WHERE id = ?1",
                rusqlite::params![id, wave as i64, now],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Counts `device`'s `outcome` in `wave`, once per device and outcome; whether it was new.
    pub fn count(&self, rollout: i64, wave: usize, device: &str, outcome: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO rollout_devices (rollout, device_id, outcome) VALUES (?1,?2,?3)",
                rusqlite::params![rollout, device, outcome],
            )
            .map_err(sql)?;
        if n == 0 {
            return Ok(false);
        }
        self.conn
            .execute(
                "INSERT INTO rollout_counts (rollout, wave, outcome, devices) VALUES (?1,?2,?3,1)
                 ON CONFLICT(rollout, wave, outcome) DO UPDATE SET devices = devices + 1",
                rusqlite::params![rollout, wave as i64, outcome],
            )
            .map_err(sql)?;
        Ok(true)
    }

    /// (failed, healthy) devices of the open waves of `r`.
    fn finished(&self, r: &RolloutRow) -> Result<(u64, u64)> {
        let counts = self.counts(r.id)?;
        let sum = |o: &str| {
            counts
                .iter()
                .filter(|(k, out, _)| *k <= r.wave && out == o)
                .map(|c| c.2)
                .sum::<u64>()
        };
        Ok((sum("failed"), sum("healthy")))
    }

    /// Halts `r` (running or paused) if its rule breaks on what came since its base.
    fn check_rule(&self, r: &RolloutRow) -> Result<bool> {
        let Some(halt) = &r.halt else {
            return Ok(false);
        };
        let (failed, healthy) = self.finished(r)?;
        let (failed, healthy) = (
            failed.saturating_sub(r.base.0),
            healthy.saturating_sub(r.base.1),
        );
        if !breaks(halt, failed, healthy) {
            return Ok(false);
        }
        let why = format!(
            "{failed} of {} devices that finished in wave {} failed (the rule: more than {}% of at least {})",
            failed + healthy,
            r.wave + 1,
            halt.ratio * 100.0,
            halt.min_reports
        );
        tracing::warn!(rollout = r.id, %why, "rollout halted");
        self.set_rollout(
            r.id,
            &[State::Running, State::Paused],
            State::Halted,
            Some(&why),
        )
    }

    /// (wave, outcome, devices) of a rollout.
    pub fn counts(&self, rollout: i64) -> Result<Vec<(usize, String, u64)>> {
        let mut q = self
            .conn
            .prepare("SELECT wave, outcome, devices FROM rollout_counts WHERE rollout = ?1")
            .map_err(sql)?;
        let rows = q
            .query_map([rollout], |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }
}

/// At most this many canaries per rollout.
const MAX_CANARIES: usize = 1000;

impl Store {
    /// `pack-store release NAME REV CHANNEL --progressive`: a new rollout. One still running
    /// or paused on that channel must be halted first (its devices would otherwise be offered
    /// the channel's revision, a downgrade for those that took it).
    pub fn release_progressive(
        &self,
        publisher: &Publisher,
        name: &str,
        revision: u32,
        channel: &Channel,
        plan: &Progressive,
    ) -> Result<i64> {
        let pack = self.owned(publisher, name)?;
        self.releasable(name, revision)?;
        let waves: Waves = match &plan.waves {
            Some(w) => w.parse().map_err(StoreError::Invalid)?,
            None => Waves::default(),
        };
        let mut canaries = plan.canaries.clone();
        canaries.sort();
        canaries.dedup();
        if canaries.len() > MAX_CANARIES || canaries.iter().any(|c| c.is_empty() || c.len() > 128) {
            return Err(StoreError::Invalid(format!(
                "canaries are up to {MAX_CANARIES} device ids of 1 to 128 characters"
            )));
        }
        let halt = if plan.no_halt {
            None
        } else {
            let h = plan.halt.clone().unwrap_or_default();
            if !(0.0..1.0).contains(&h.ratio) {
                return Err(StoreError::Invalid(
                    "the halt threshold is a share below 100%".into(),
                ));
            }
            Some(h)
        };
        let busy = self.lock().rollouts()?.into_iter().find(|r| {
            r.pack_id == pack.pack_id
                && r.channel == *channel
                && matches!(r.state, State::Running | State::Paused)
        });
        if let Some(r) = busy {
            return Err(StoreError::Conflict(format!(
                "revision {} of {name} is rolling out to {channel}; halt it first (pack-store rollout {name} halt)",
                r.revision
            )));
        }
        let row = RolloutRow {
            id: 0,
            pack_id: pack.pack_id.clone(),
            channel: channel.clone(),
            revision,
            salt: random_id(16)?,
            waves,
            canaries,
            halt,
            state: State::Running,
            why: None,
            wave: 0,
            wave_started: now(),
            created: now(),
            base: (0, 0),
        };
        self.change(|db, _, _| {
            supersede(db, &pack.pack_id, channel)?;
            db.add_rollout(&row)
        })
    }

    /// Rollouts of `name` (its publisher's), newest first, with their counts.
    pub fn rollouts(&self, publisher: &Publisher, name: &str) -> Result<Vec<serde_json::Value>> {
        let pack = self.owned(publisher, name)?;
        let db = self.lock();
        let mut out = Vec::new();
        for r in db
            .rollouts()?
            .into_iter()
            .rev()
            .filter(|r| r.pack_id == pack.pack_id)
        {
            let counts = db.counts(r.id)?;
            let waves: Vec<serde_json::Value> = r
                .waves
                .0
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let n = |o: &str| {
                        counts
                            .iter()
                            .filter(|(k, out, _)| *k == i && out == o)
                            .map(|c| c.2)
                            .sum::<u64>()
                    };
                    serde_json::json!({
                        "wave": i + 1,
                        "share": w.share,
                        "soak": w.soak,
                        "open": i <= r.wave,
                        "offered": n("started"),
                        "installed": n("installed"),
                        "healthy": n("healthy"),
                        "failed": n("failed"),
                        "reverted": n("reverted"),
                    })
                })
                .collect();
            out.push(serde_json::json!({
                "id": r.id,
                "revision": r.revision,
                "channel": r.channel.to_string(),
                "state": r.state.as_str(),
                "why": r.why,
                "wave": r.wave + 1,
                "canaries": r.canaries,
                "halt": r.halt,
                "waves": waves,
            }));
        }
        Ok(out)
    }

    /// `pack-store rollout NAME pause|resume|halt [--channel C]`, on its newest rollout under
    /// way (on channel C).
    pub fn control_rollout(
        &self,
        publisher: &Publisher,
        name: &str,
        action: &str,
        channel: Option<&Channel>,
    ) -> Result<String> {
        let pack = self.owned(publisher, name)?;
        let (from, to): (&[State], State) = match action {
            "pause" => (&[State::Running], State::Paused),
            "resume" => (&[State::Paused, State::Halted], State::Running),
            "halt" => (&[State::Running, State::Paused], State::Halted),
            other => {
                return Err(StoreError::Invalid(format!(
                    "unknown rollout action {other:?}; rollouts take: pause, resume, halt"
                )));
            }
        };
        let why = (to == State::Halted).then(|| format!("halted by {}", publisher.name));
        self.change(|db, _, _| {
            let active = db
                .rollouts()?
                .into_iter()
                .rev()
                .find(|r| {
                    r.pack_id == pack.pack_id
                        && r.state.is_active()
                        && channel.is_none_or(|c| *c == r.channel)
                })
                .ok_or_else(|| StoreError::NotFound(format!("{name} has no rollout under way")))?;
            if !db.set_rollout(active.id, from, to, why.as_deref())? {
                return Err(StoreError::Conflict(format!(
                    "the rollout of {name} is {}; it cannot {action}",
                    active.state.as_str()
                )));
            }
            if to == State::Running {
                // Resumed: the current wave soaks again, and the rule counts from here.
                db.open_wave(active.id, active.wave, now())?;
                db.set_base(active.id, db.finished(&active)?)?;
            }
            Ok(())
        })?;
        Ok(to.as_str().to_string())
    }

    /// Opens the waves whose predecessor soaked and finishes the rollouts whose last wave
    /// did, each only if it is still running and its rule holds.
    pub fn tick_rollouts(&self) -> Result<bool> {
        let soaked = |r: &RolloutRow| {
            r.state == State::Running
                && r.waves
                    .0
                    .get(r.wave)
                    .is_some_and(|w| now() - r.wave_started >= w.soak)
        };
        if !self.lock().rollouts()?.iter().any(soaked) {
            return Ok(false);
        }
        self.change(|db, _, _| {
            // Read again inside the transaction: a release or a halt may have come since.
            for r in db.rollouts()?.iter().filter(|r| soaked(r)) {
                if db.check_rule(r)? {
                    continue;
                }
                if r.wave + 1 < r.waves.0.len() {
                    db.open_wave(r.id, r.wave + 1, now())?;
                } else if db.set_rollout(r.id, &[State::Running], State::Done, None)? {
                    db.add_release(&r.pack_id, &r.channel, Some(r.revision), now())?;
                }
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Counts a new report in its rollout (the one on the report's channel, or the newest of
    /// its revision; a done one too), once per device and outcome, in the device's wave; a
    /// report from a device whose wave is not open is not counted. Halts the rollout when its
    /// rule breaks; only then does the serial change.
    pub fn count_report(&self, r: &Report) -> Result<()> {
        let channel: Option<Channel> = r.channel.as_deref().and_then(|c| c.parse().ok());
        let mut db = self.lock();
        let halted = db.transaction(|db| {
            let Some(x) = db.rollouts()?.into_iter().rev().find(|x| {
                x.pack_id == r.pack_id
                    && x.revision == r.revision
                    && (x.state.is_active() || x.state == State::Done)
                    && channel.as_ref().is_none_or(|c| *c == x.channel)
            }) else {
                return Ok(false);
            };
            let wave = wave_of(&x.waves, &x.canaries, &r.device_id, &x.salt);
            if wave > x.wave || !db.count(x.id, wave, &r.device_id, &r.outcome)? {
                return Ok(false);
            }
            if !matches!(r.outcome.as_str(), "failed" | "healthy") {
                return Ok(false);
            }
            let x = db.rollout(x.id)?.unwrap_or(x);
            if !matches!(x.state, State::Running | State::Paused) || !db.check_rule(&x)? {
                return Ok(false);
            }
            db.bump()?;
            Ok(true)
        })?;
        if halted {
            self.reload(&db)?;
        }
        Ok(())
    }
}

/// Ends the rollouts under way of `pack_id` on `channel` (a new release decides it now).
pub fn supersede(db: &Db, pack_id: &str, channel: &Channel) -> Result<()> {
    for r in db.rollouts()? {
        if r.pack_id == pack_id && r.channel == *channel {
            db.set_rollout(
                r.id,
                &[State::Running, State::Paused, State::Halted],
                State::Superseded,
                None,
            )?;
        }
    }
    Ok(())
}

/// Halts the rollouts of a revision being revoked.
pub fn halt_revoked(db: &Db, pack_id: &str, revision: u32) -> Result<()> {
    for r in db.rollouts()? {
        if r.pack_id == pack_id && r.revision == revision {
            db.set_rollout(
                r.id,
                &[State::Running, State::Paused],
                State::Halted,
                Some("its revision was revoked"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, outcome: &str) -> Report {
        Report {
            report_id: Some(id.into()),
            channel: None,
            device_id: "d1".into(),
            pack_id: "p".into(),
            revision: 2,
            outcome: outcome.into(),
            task: None,
            message: None,
        }
    }

    #[test]
    fn a_report_sent_twice_counts_once_and_counts_add_up_per_wave() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(&tmp.path().join("store.db")).unwrap();
        assert!(db.add_report(&report("a", "healthy"), 1).unwrap());
        assert!(!db.add_report(&report("a", "healthy"), 2).unwrap());
        assert!(db.add_report(&report("b", "failed"), 3).unwrap());
        assert!(db.count(7, 0, "d1", "failed").unwrap());
        assert!(!db.count(7, 0, "d1", "failed").unwrap(), "one device, once");
        assert!(db.count(7, 0, "d2", "failed").unwrap());
        assert!(db.count(7, 1, "d3", "healthy").unwrap());
        let mut c = db.counts(7).unwrap();
        c.sort();
        assert_eq!(c, [(0, "failed".into(), 2), (1, "healthy".into(), 1)]);
    }
}
