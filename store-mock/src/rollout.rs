//! Progressive releases: a revision offered to a growing share of devices, wave by wave,
//! halted by itself when the devices that took it report failures (docs/rollout.md).
//!
//! - **Buckets.** A device's place in a rollout is `bucket(device-id, salt)`, a number in
//!   [0, 1) from SHA3-256 of the rollout's salt and the id: deterministic, uniform, and
//!   shuffled anew by every rollout (each has its own salt). A device is in wave *k* when its
//!   bucket is below the wave's share, so waves are nested: a device in the 1% wave is in the
//!   5% one. Canaries (listed device ids) are in every wave, the first included.
//! - **Waves** open one after the other once the current one has soaked for its time; the
//!   last is 100%. When it has soaked, the rollout is done: the revision becomes an ordinary
//!   release of the channel.
//! - **Halt.** With the rule on (the default), a rollout halts when, among the devices of the
//!   current wave that finished (healthy or failed), more than the threshold failed, once at
//!   least the minimum have reported.

use std::fmt;
use std::str::FromStr;

use sha3::{Digest, Sha3_256};

/// One wave: the share of devices it reaches (0 to 1], and how long it soaks before the next
/// opens (seconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Wave {
    pub share: f64,
    pub soak: i64,
}

/// When a rollout halts by itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Halt {
    /// Failed over finished devices of the current wave above which it halts (0.05: 5%).
    pub ratio: f64,
    /// How many finished devices the current wave needs before the rule applies.
    pub min_reports: u64,
}

impl Default for Halt {
    fn default() -> Self {
        Halt {
            ratio: 0.05,
            min_reports: 3,
        }
    }
}

/// The waves of a rollout, as `--waves` writes them: `SHARE[:SOAK],...`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Waves(pub Vec<Wave>);

/// The soak of a wave written without one.
pub const DEFAULT_SOAK: i64 = 3600;
/// The longest soak, a year.
const MAX_SOAK: i64 = 366 * 86_400;
/// The most waves a rollout has.
const MAX_WAVES: usize = 20;

impl Default for Waves {
    /// `1%,5%,25%,100%`, an hour each.
    fn default() -> Self {
        Waves(
            [0.01, 0.05, 0.25, 1.0]
                .into_iter()
                .map(|share| Wave {
                    share,
                    soak: DEFAULT_SOAK,
                })
                .collect(),
        )
    }
}

impl FromStr for Waves {
    type Err = String;

    fn from_str(s: &str) -> Result<Waves, String> {
        let hint = "write e.g. 1%:1h,10%:6h,100%";
        let mut waves = Vec::new();
        for part in s.split(',') {
            let (share, soak) = match part.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (part, None),
            };
            let pct: f64 = share
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| {
                    format!("invalid wave {part:?}: a share is above 0% and at most 100%; {hint}")
                })?;
            let soak = match soak {
                None => DEFAULT_SOAK,
                Some(d) => {
                    let secs = humantime::parse_duration(d.trim())
                        .map_err(|e| format!("invalid soak in {part:?}: {e}; {hint}"))?
                        .as_secs();
                    if secs > MAX_SOAK as u64 {
                        return Err(format!(
                            "the soak in {part:?} is longer than a year; {hint}"
                        ));
                    }
                    secs as i64
                }
            };
            let share = pct / 100.0;
            if waves.last().is_some_and(|w: &Wave| w.share >= share) {
                return Err(format!(
                    "the waves must grow: {part:?} is not larger than the one before; {hint}"
                ));
            }
            waves.push(Wave { share, soak });
        }
        if waves.len() > MAX_WAVES {
            return Err(format!("at most {MAX_WAVES} waves; {hint}"));
        }
        if waves.last().is_none_or(|w| w.share < 1.0) {
            return Err(format!("the last wave must be 100%; {hint}"));
        }
        Ok(Waves(waves))
    }
}

impl fmt::Display for Waves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                format!(
                    "{}%:{}",
                    w.share * 100.0,
                    humantime::format_duration(
                        std::time::Duration::from_secs(w.soak.max(0) as u64)
                    )
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A device's place in the rollout salted `salt`: [0, 1).
pub fn bucket(device_id: &str, salt: &str) -> f64 {
    let mut h = Sha3_256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(device_id.as_bytes());
    let d = h.finalize();
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(raw) >> 11) as f64 / (1u64 << 53) as f64
}

/// The first wave a device is in (0 for canaries).
pub fn wave_of(waves: &Waves, canaries: &[String], device_id: &str, salt: &str) -> usize {
    if canaries.iter().any(|c| c == device_id) {
        return 0;
    }
    let b = bucket(device_id, salt);
    waves
        .0
        .iter()
        .position(|w| b < w.share)
        .unwrap_or(waves.0.len().saturating_sub(1))
}

/// What a rollout is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    Halted,
    /// The last wave soaked: the revision is an ordinary release now.
    Done,
    /// Another release to the channel ended it.
    Superseded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Halted => "halted",
            State::Done => "done",
            State::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> State {
        match s {
            "paused" => State::Paused,
            "halted" => State::Halted,
            "done" => State::Done,
            "superseded" => State::Superseded,
            _ => State::Running,
        }
    }

    /// Whether it still decides what its channel offers.
    pub fn is_active(self) -> bool {
        matches!(self, State::Running | State::Paused | State::Halted)
    }
}

/// Whether the current wave's reports break the rule.
pub fn breaks(halt: &Halt, failed: u64, healthy: u64) -> bool {
    let finished = failed + healthy;
    finished >= halt.min_reports && failed as f64 > halt.ratio * finished as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_parse_as_written_and_bad_ones_say_why() {
        let w: Waves = "1%:1h,10%:6h,100%".parse().unwrap();
        assert_eq!(w.0.len(), 3);
        assert_eq!((w.0[0].share, w.0[0].soak), (0.01, 3600));
        assert_eq!((w.0[1].share, w.0[1].soak), (0.1, 6 * 3600));
        assert_eq!((w.0[2].share, w.0[2].soak), (1.0, DEFAULT_SOAK));
        for (bad, why) in [
            ("10%,5%,100%", "must grow"),
            ("1%,50%", "last wave must be 100%"),
            ("0%,100%", "above 0%"),
            ("1:1h,100%", "above 0%"),
            ("1%:400days,100%", "longer than a year"),
            ("1%:soon,100%", "invalid soak"),
        ] {
            let e = bad.parse::<Waves>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn buckets_are_uniform_nested_and_shuffled_per_rollout() {
        let waves = Waves::default();
        let ids: Vec<String> = (0..100_000).map(|i| format!("device-{i}")).collect();
        for w in &waves.0 {
            let n = ids.iter().filter(|d| bucket(d, "r1") < w.share).count();
            let share = n as f64 / ids.len() as f64;
            assert!((share - w.share).abs() <= 0.005, "{} got {share}", w.share);
        }
        // Nested: in wave 0 means in wave 1.
        for d in ids.iter().take(5000) {
            let k = wave_of(&waves, &[], d, "r1");
            assert!(bucket(d, "r1") < waves.0[k].share);
        }
        // Another rollout, another order.
        let first: Vec<&String> = ids.iter().filter(|d| bucket(d, "r1") < 0.01).collect();
        let again = first.iter().filter(|d| bucket(d, "r2") < 0.01).count();
        assert!(again < first.len() / 10, "{again} of {}", first.len());
        assert_eq!(wave_of(&waves, &["device-7".into()], "device-7", "r1"), 0);
    }

    #[test]
    fn the_rule_needs_enough_reports_and_more_than_the_threshold() {
        let h = Halt::default();
        assert!(!breaks(&h, 2, 0), "2 reports are too few");
        assert!(breaks(&h, 1, 2));
        assert!(!breaks(&h, 1, 19), "1 in 20 is 5%, not more");
        assert!(breaks(&h, 2, 19));
    }
}
