//! Revision numbers: `x1`, `x2`, … for local (unsigned) installs, `1`, `2`, … for store ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A package revision. Local revisions sort before store ones of the same number, but the two
/// kinds are never compared for "newer" in practice: a package's sequence records install order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Revision {
    /// `xN`: installed from a local file with `--dangerous`.
    Local(u32),
    /// `N`: installed from a store, signed.
    Store(u32),
}

impl Revision {
    pub fn is_local(self) -> bool {
        matches!(self, Revision::Local(_))
    }

    pub fn number(self) -> u32 {
        match self {
            Revision::Local(n) | Revision::Store(n) => n,
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Local(n) => write!(f, "x{n}"),
            Revision::Store(n) => write!(f, "{n}"),
        }
    }
}

/// The error for a string that is not a revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid revision \"{0}\": use a number such as 3, or x3 for a local revision")]
pub struct RevisionParseError(pub String);

impl FromStr for Revision {
    type Err = RevisionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RevisionParseError(s.to_string());
        let (local, digits) = match s.strip_prefix('x') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        // No signs, no leading zeros, no empty string: one spelling per revision.
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(err());
        }
        let n: u32 = digits.parse().map_err(|_| err())?;
        if n == 0 {
            return Err(err());
        }
        Ok(if local {
            Revision::Local(n)
        } else {
            Revision::Store(n)
        })
    }
}

impl Serialize for Revision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Revision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_kinds() {
        assert_eq!("x1".parse::<Revision>(), Ok(Revision::Local(1)));
        assert_eq!("42".parse::<Revision>(), Ok(Revision::Store(42)));
        assert_eq!(Revision::Local(7).to_string(), "x7");
        assert_eq!(Revision::Store(7).to_string(), "7");
    }

    #[test]
    fn rejects_odd_spellings() {
        for bad in [
            "", "x", "x0", "0", "01", "x01", "-1", "+1", "1.0", "y1", "x1x", " 1",
        ] {
            let err = bad.parse::<Revision>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid revision \"{bad}\": use a number such as 3, or x3 for a local revision"
                )
            );
        }
    }

    #[test]
    fn serde_round_trip_is_a_string() {
        let json = serde_json::to_string(&Revision::Local(3)).unwrap();
        assert_eq!(json, "\"x3\"");
        let back: Revision = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Revision::Local(3));
    }
}
