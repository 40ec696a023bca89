//! The system's settings (`pack set system KEY=VALUE`), checked here and kept in state.json as
//! strings. Each key has a default, a check that names what a value must look like, and a
//! typed getter.

use std::collections::BTreeMap;
use std::time::Duration;

/// A setting that does not exist, or a value it does not take.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting {name:?}; packd knows: {}", known.join(", "))]
    Unknown {
        name: String,
        known: Vec<&'static str>,
    },
    #[error("invalid {name} {value:?}: {why} ({doc})")]
    Invalid {
        name: String,
        value: String,
        why: String,
        doc: &'static str,
    },
}

type Result<T> = std::result::Result<T, ConfigError>;

/// One setting.
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
    check: fn(&str) -> std::result::Result<(), String>,
}

/// Every setting packd knows.
pub const KEYS: &[Key] = &[
    Key {
        name: "refresh.health-window",
        default: "10s",
        doc: "how long the new revision's services must stay up after a refresh (0s to 10m)",
        check: |v| {
            let d = packfmt::meta::parse_duration(v)?;
            if d > Duration::from_secs(600) {
                return Err("at most 10m".into());
            }
            Ok(())
        },
    },
    Key {
        name: "refresh.retain",
        default: "2",
        doc: "how many revisions of each pack to keep, the current one included (2 to 20)",
        check: |v| match v.parse::<u32>() {
            Ok(n) if (2..=20).contains(&n) => Ok(()),
            _ => Err("a whole number from 2 to 20".into()),
        },
    },
    Key {
        name: "refresh.timer",
        default: crate::store::timer::DEFAULT_TIMER,
        doc: "when auto-refresh may run: snapd's timer syntax (mon-fri,02:00-04:00) or every DURATION",
        check: |v| {
            v.parse::<crate::store::timer::Schedule>()
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    },
    Key {
        name: "refresh.metered",
        default: "ignore",
        doc: "hold auto-refresh while NetworkManager says the connection is metered: hold or ignore",
        check: |v| match v {
            "hold" | "ignore" => Ok(()),
            _ => Err("hold or ignore".into()),
        },
    },
];

fn key(name: &str) -> Result<&'static Key> {
    KEYS.iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ConfigError::Unknown {
            name: name.to_string(),
            known: KEYS.iter().map(|k| k.name).collect(),
        })
}

/// Checks `name=value`; the error names the key and what it takes.
pub fn check(name: &str, value: &str) -> Result<()> {
    let k = key(name)?;
    (k.check)(value).map_err(|why| ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        why,
        doc: k.doc,
    })
}

/// The value of `name` in `config`, or its default.
pub fn get<'a>(config: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    config
        .get(name)
        .map(String::as_str)
        .or_else(|| KEYS.iter().find(|k| k.name == name).map(|k| k.default))
        .unwrap_or("")
}

pub fn health_window(config: &BTreeMap<String, String>) -> Duration {
    packfmt::meta::parse_duration(get(config, "refresh.health-window"))
        .unwrap_or(Duration::from_secs(10))
}

pub fn retain(config: &BTreeMap<String, String>) -> usize {
    get(config, "refresh.retain").parse().unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_defaults_apply() {
        let mut c = BTreeMap::new();
        assert_eq!(health_window(&c), Duration::from_secs(10));
        assert_eq!(retain(&c), 2);
        check("refresh.health-window", "1500ms").unwrap();
        check("refresh.retain", "20").unwrap();
        for (k, v, says) in [
            ("refresh.retain", "1", "2 to 20"),
            ("refresh.retain", "x", "2 to 20"),
            ("refresh.health-window", "11m", "at most 10m"),
            ("refresh.health-window", "10", "with a unit"),
            ("refresh.nope", "1", "unknown setting"),
        ] {
            let e = check(k, v).unwrap_err().to_string();
            assert!(e.contains(says), "{k}={v}: {e}");
        }
        c.insert("refresh.retain".into(), "3".into());
        assert_eq!(retain(&c), 3);
    }
}
