//! Channels as snapd's: `track/risk/branch`. The track defaults to `latest`, the risk to
//! `stable`; `beta` is `latest/beta`, `2.x` is `2.x/stable`, `edge/fix-1` is
//! `latest/edge/fix-1`. A risk with nothing released (or closed) follows the next more stable
//! risk of its track (edge → beta → candidate → stable); a branch with nothing released, closed
//! or expired (30 days after its last release) follows its risk.

use std::fmt;
use std::str::FromStr;

/// The risks, most stable first.
pub const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

/// How long a branch lives after its last release.
pub const BRANCH_LIFETIME_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    pub track: String,
    pub risk: String,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid channel {input:?}: {why}; write track/risk/branch, such as stable, 2.x/beta or latest/edge/fix-1"
)]
pub struct ChannelError {
    pub input: String,
    pub why: String,
}

fn is_risk(s: &str) -> bool {
    RISKS.contains(&s)
}

/// Track and branch names: 1–28 of `a-z 0-9 . _ -`, starting with a letter or digit.
fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 28
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} must be 1 to 28 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

impl FromStr for Channel {
    type Err = ChannelError;

    fn from_str(input: &str) -> Result<Channel, ChannelError> {
        let err = |why: String| ChannelError {
            input: input.to_string(),
            why,
        };
        let parts: Vec<&str> = input.split('/').collect();
        let (track, risk, branch) = match parts.as_slice() {
            [one] if is_risk(one) => ("latest", *one, None),
            [track] => (*track, "stable", None),
            [risk, branch] if is_risk(risk) => ("latest", *risk, Some(*branch)),
            [track, risk] => (*track, *risk, None),
            [track, risk, branch] => (*track, *risk, Some(*branch)),
            _ => return Err(err("it has more than three parts".into())),
        };
        check_name("track", track).map_err(err)?;
        if !is_risk(risk) {
            return Err(err(format!(
                "unknown risk {risk:?}; use stable, candidate, beta or edge"
            )));
        }
        if let Some(b) = branch {
            check_name("branch", b).map_err(err)?;
        }
        Ok(Channel {
            track: track.into(),
            risk: risk.into(),
            branch: branch.map(Into::into),
        })
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.track, self.risk)?;
        if let Some(b) = &self.branch {
            write!(f, "/{b}")?;
        }
        Ok(())
    }
}

impl Channel {
    /// `latest/stable`.
    pub fn default_channel() -> Channel {
        Channel {
            track: "latest".into(),
            risk: "stable".into(),
            branch: None,
        }
    }

    /// The channels this one falls through to, itself first: its risk without the branch,
    /// then each more stable risk of the track.
    pub fn fall_through(&self) -> Vec<Channel> {
        let mut out = vec![self.clone()];
        let at = RISKS.iter().position(|r| *r == self.risk).unwrap_or(0);
        for risk in RISKS[..=at].iter().rev() {
            let c = Channel {
                track: self.track.clone(),
                risk: (*risk).into(),
                branch: None,
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// What one channel holds at a moment: a revision, or closed (`None`), released at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub channel: Channel,
    pub revision: Option<u32>,
    pub at: i64,
}

/// The revision `channel` offers, from the release history `history` (oldest first), at time
/// `now`, skipping revisions for which `withdrawn` holds (revoked): per channel, the newest
/// release whose revision is still good counts (a close counts as nothing there).
pub fn resolve(
    history: &[Release],
    channel: &Channel,
    now: i64,
    withdrawn: impl Fn(u32) -> bool,
) -> Option<(Channel, u32)> {
    for c in channel.fall_through() {
        let mut found: Option<Option<u32>> = None;
        let mut last_at = 0;
        for r in history.iter().filter(|r| r.channel == c) {
            match r.revision {
                Some(rev) if withdrawn(rev) => {}
                other => found = Some(other),
            }
            last_at = last_at.max(r.at);
        }
        if c.branch.is_some() && now - last_at > BRANCH_LIFETIME_SECS {
            continue;
        }
        if let Some(Some(rev)) = found {
            return Some((c, rev));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Channel {
        s.parse().unwrap()
    }

    #[test]
    fn channels_parse_as_snapd_names_them() {
        for (input, full) in [
            ("stable", "latest/stable"),
            ("beta", "latest/beta"),
            ("2.x", "2.x/stable"),
            ("2.x/beta", "2.x/beta"),
            ("edge/fix-1", "latest/edge/fix-1"),
            ("latest/edge/fix-1", "latest/edge/fix-1"),
        ] {
            assert_eq!(ch(input).to_string(), full, "{input}");
        }
        let err = |s: &str| s.parse::<Channel>().unwrap_err().to_string();
        assert_eq!(
            err("latest/rc"),
            "invalid channel \"latest/rc\": unknown risk \"rc\"; use stable, candidate, beta or edge; write track/risk/branch, such as stable, 2.x/beta or latest/edge/fix-1"
        );
        assert!(err("a/b/c/d").contains("more than three parts"));
        assert!(err("Latest/stable").contains("track \"Latest\""));
        assert!(err("").contains("track \"\""));
        assert!(err("latest/stable/").contains("branch \"\""));
    }

    #[test]
    fn an_empty_or_closed_risk_follows_the_next_more_stable_one() {
        let r = |c: &str, rev: Option<u32>, at: i64| Release {
            channel: ch(c),
            revision: rev,
            at,
        };
        let history = vec![
            r("stable", Some(1), 0),
            r("beta", Some(2), 1),
            r("edge", Some(3), 2),
            r("edge", None, 3),
            r("2.x/beta", Some(5), 4),
        ];
        let none = |_| false;
        let at = |c: &str| resolve(&history, &ch(c), 10, none).map(|(c, r)| (c.to_string(), r));
        assert_eq!(at("stable"), Some(("latest/stable".into(), 1)));
        assert_eq!(at("candidate"), Some(("latest/stable".into(), 1)));
        assert_eq!(at("edge"), Some(("latest/beta".into(), 2)), "closed edge");
        assert_eq!(at("2.x/edge"), Some(("2.x/beta".into(), 5)));
        assert_eq!(at("2.x/stable"), None, "tracks never fall into one another");
        // A revoked revision is skipped: the channel offers what was there before it.
        let history2 = [history.clone(), vec![r("stable", Some(4), 5)]].concat();
        assert_eq!(
            resolve(&history2, &ch("stable"), 10, |rev| rev == 4).map(|x| x.1),
            Some(1)
        );
    }

    #[test]
    fn a_branch_lives_thirty_days_after_its_last_release() {
        let history = vec![
            Release {
                channel: ch("stable"),
                revision: Some(1),
                at: 0,
            },
            Release {
                channel: ch("stable/fix"),
                revision: Some(7),
                at: 100,
            },
        ];
        let get = |now| resolve(&history, &ch("stable/fix"), now, |_| false).map(|x| x.1);
        assert_eq!(get(100 + BRANCH_LIFETIME_SECS), Some(7));
        assert_eq!(get(101 + BRANCH_LIFETIME_SECS), Some(1));
    }
}
