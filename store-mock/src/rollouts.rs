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
}

impl RolloutRow {
    /// Whether the rollout offers its revision to `device` now.
    pub fn offers(&self, device: &str) -> bool {
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
                 wave, wave_started, created FROM rollouts ORDER BY id",
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
                })
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    pub fn set_rollout(&self, id: i64, state: State, why: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE rollouts SET state = ?2, why = ?3 WHERE id = ?1",
                rusqlite::params![id, state.as_str(), why],
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

    pub fn count(&self, rollout: i64, wave: usize, outcome: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO rollout_counts (rollout, wave, outcome, devices) VALUES (?1,?2,?3,1)
                 ON CONFLICT(rollout, wave, outcome) DO UPDATE SET devices = devices + 1",
                rusqlite::params![rollout, wave as i64, outcome],
            )
            .map_err(sql)?;
        Ok(())
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

impl Store {
    /// `pack-store release NAME REV CHANNEL --progressive`: a new rollout (ending any other
    /// on that channel).
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
        if plan.canaries.iter().any(|c| c.is_empty() || c.len() > 128) {
            return Err(StoreError::Invalid(
                "a canary is a device id (1 to 128 characters)".into(),
            ));
        }
        let halt = if plan.no_halt {
            None
        } else {
            let h = plan.halt.clone().unwrap_or_default();
            if !(0.0..1.0).contains(&h.ratio) {
                return Err(StoreError::Invalid(
                    "the halt threshold is 0% to 99%".into(),
                ));
            }
            Some(h)
        };
        let row = RolloutRow {
            id: 0,
            pack_id: pack.pack_id.clone(),
            channel: channel.clone(),
            revision,
            salt: random_id(16)?,
            waves,
            canaries: plan.canaries.clone(),
            halt,
            state: State::Running,
            why: None,
            wave: 0,
            wave_started: now(),
            created: now(),
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

    /// `pack-store rollout NAME pause|resume|halt`, on its newest active rollout.
    pub fn control_rollout(
        &self,
        publisher: &Publisher,
        name: &str,
        action: &str,
    ) -> Result<String> {
        let pack = self.owned(publisher, name)?;
        let active = self
            .lock()
            .rollouts()?
            .into_iter()
            .rev()
            .find(|r| r.pack_id == pack.pack_id && r.state.is_active())
            .ok_or_else(|| StoreError::NotFound(format!("{name} has no rollout under way")))?;
        let (state, why) = match (action, active.state) {
            ("pause", State::Running) => (State::Paused, None),
            ("resume", State::Paused | State::Halted) => (State::Running, None),
            ("halt", State::Running | State::Paused) => {
                (State::Halted, Some(format!("halted by {}", publisher.name)))
            }
            ("pause" | "resume" | "halt", s) => {
                return Err(StoreError::Conflict(format!(
                    "the rollout of {name} is {}; it cannot {action}",
                    s.as_str()
                )));
            }
            (other, _) => {
                return Err(StoreError::Invalid(format!(
                    "unknown rollout action {other:?}; rollouts take: pause, resume, halt"
                )));
            }
        };
        self.change(|db, _, _| {
            db.set_rollout(active.id, state, why.as_deref())?;
            if state == State::Running {
                // Resumed: the current wave soaks again from now.
                db.open_wave(active.id, active.wave, now())?;
            }
            Ok(())
        })?;
        Ok(state.as_str().to_string())
    }

    /// Opens the waves whose predecessor soaked; finishes the rollouts whose last wave did.
    pub fn tick_rollouts(&self) -> Result<bool> {
        let due: Vec<RolloutRow> = self
            .lock()
            .rollouts()?
            .into_iter()
            .filter(|r| r.state == State::Running)
            .filter(|r| {
                r.waves
                    .0
                    .get(r.wave)
                    .is_some_and(|w| now() - r.wave_started >= w.soak)
            })
            .collect();
        if due.is_empty() {
            return Ok(false);
        }
        self.change(|db, _, _| {
            for r in &due {
                if r.wave + 1 < r.waves.0.len() {
                    db.open_wave(r.id, r.wave + 1, now())?;
                } else {
                    db.add_release(&r.pack_id, &r.channel, Some(r.revision), now())?;
                    db.set_rollout(r.id, State::Done, None)?;
                }
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Counts a new report in its rollout's wave (a done rollout's too), and halts a running
    /// rollout when the rule breaks.
    pub fn count_report(&self, r: &Report) -> Result<()> {
        // A done rollout goes on counting: its late devices are part of its story.
        let rollout = self.lock().rollouts()?.into_iter().rev().find(|x| {
            x.pack_id == r.pack_id
                && x.revision == r.revision
                && (x.state.is_active() || x.state == State::Done)
        });
        let Some(x) = rollout else {
            return Ok(());
        };
        let wave = wave_of(&x.waves, &x.canaries, &r.device_id, &x.salt);
        let db = self.lock();
        db.count(x.id, wave, &r.outcome)?;
        let Some(halt) = &x.halt else {
            return Ok(());
        };
        if x.state != State::Running {
            return Ok(());
        }
        // The open waves are nested: their devices together are the current wave's.
        let counts = db.counts(x.id)?;
        let sum = |o: &str| {
            counts
                .iter()
                .filter(|(k, out, _)| *k <= x.wave && out == o)
                .map(|c| c.2)
                .sum::<u64>()
        };
        let (failed, healthy) = (sum("failed"), sum("healthy"));
        drop(db);
        if breaks(halt, failed, healthy) {
            let why = format!(
                "{failed} of {} devices that finished in wave {} failed (the rule: more than {}% of at least {})",
                failed + healthy,
                x.wave + 1,
                halt.ratio * 100.0,
                halt.min_reports
            );
            tracing::warn!(rollout = x.id, %why, "rollout halted");
            self.change(|db, _, _| db.set_rollout(x.id, State::Halted, Some(&why)))?;
        }
        Ok(())
    }
}

/// Ends the active rollouts of `pack_id` on `channel` (a new release decides it now).
pub fn supersede(db: &Db, pack_id: &str, channel: &Channel) -> Result<()> {
    for r in db.rollouts()? {
        if r.pack_id == pack_id && r.channel == *channel && r.state.is_active() {
            db.set_rollout(r.id, State::Superseded, None)?;
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
        db.count(7, 0, "failed").unwrap();
        db.count(7, 0, "failed").unwrap();
        db.count(7, 1, "healthy").unwrap();
        let mut c = db.counts(7).unwrap();
        c.sort();
        assert_eq!(c, [(0, "failed".into(), 2), (1, "healthy".into(), 1)]);
    }
}
