//! Pure rules of supervision: the order services start and stop in, when a service that ended
//! is restarted (systemd's `Restart=` meanings), and the start limit that ends a crash loop.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use packfmt::meta::{App, RestartCondition};

/// A start order respecting `after` and `before` (names in alphabetical order otherwise;
/// packfmt refuses cycles and unknown names at install).
pub fn order(services: &BTreeMap<&String, &App>) -> Vec<String> {
    let mut deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, app) in services {
        let entry = deps.entry(name.as_str()).or_default();
        entry.extend(
            app.after
                .iter()
                .filter(|a| services.contains_key(a))
                .map(String::as_str),
        );
        for b in app.before.iter().filter(|b| services.contains_key(b)) {
            deps.entry(b.as_str()).or_default().push(name.as_str());
        }
    }
    let mut out: Vec<String> = Vec::new();
    while out.len() < deps.len() {
        let next = deps
            .iter()
            .find(|(n, d)| {
                !out.iter().any(|o| o == *n) && d.iter().all(|x| out.iter().any(|o| o == x))
            })
            .map(|(n, _)| n.to_string());
        match next {
            Some(n) => out.push(n),
            // A cycle (refused at install): the rest in name order rather than never.
            None => {
                for n in deps.keys() {
                    if !out.iter().any(|o| o == n) {
                        out.push(n.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Whether `restart-condition` restarts a service that ended with `code` (128 + signal when a
/// signal ended it).
pub fn restarts(condition: RestartCondition, code: i32) -> bool {
    let signal = (code > 128).then(|| code - 128);
    let clean = code == 0
        || matches!(
            signal,
            Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGPIPE)
        );
    match condition {
        RestartCondition::Never => false,
        RestartCondition::Always => true,
        RestartCondition::OnSuccess => clean,
        RestartCondition::OnFailure => !clean,
        RestartCondition::OnAbnormal => signal.is_some() && !clean,
        RestartCondition::OnAbort => signal.is_some() && !clean,
    }
}

/// Systemd's start limit (`StartLimitBurst`/`StartLimitIntervalSec`): at most `burst` starts
/// within `window`; one more is refused, and the service is failed instead of restarted.
#[derive(Debug, Clone)]
pub struct StartLimit {
    burst: usize,
    window: Duration,
    starts: VecDeque<Instant>,
}

impl StartLimit {
    pub fn new(burst: usize, window: Duration) -> Self {
        StartLimit {
            burst,
            window,
            starts: VecDeque::new(),
        }
    }

    /// Counts a start at `now`; false when it would be one too many.
    pub fn admit(&mut self, now: Instant) -> bool {
        while self
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.starts.pop_front();
        }
        if self.starts.len() >= self.burst {
            return false;
        }
        self.starts.push_back(now);
        true
    }

    /// Forgets the starts so far (a start asked for by root, or a retry after the backoff).
    pub fn reset(&mut self) {
        self.starts.clear();
    }
}

/// How long a failed service waits before it is tried again after hitting the start limit:
/// doubling from `first` up to `max` (systemd leaves it down; packd's devices have nobody at
/// the keyboard, so it keeps trying, ever more rarely).
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn app(after: &[&str], before: &[&str]) -> App {
        let yaml = "name: pk\nversion: '1'\nbase: busybox\napps:\n  x:\n    command: bin/x\n    daemon: simple\n";
        let meta = packfmt::PackMeta::from_yaml(yaml.as_bytes(), Default::default()).unwrap();
        let mut a = meta.apps["x"].clone();
        a.after = after.iter().map(|s| s.to_string()).collect();
        a.before = before.iter().map(|s| s.to_string()).collect();
        a
    }

    #[test]
    fn services_start_after_what_they_are_after_and_before_what_they_are_before() {
        let (db, web, cache, lone) = (
            "db".to_string(),
            "web".to_string(),
            "cache".to_string(),
            "lone".to_string(),
        );
        let (a_db, a_web, a_cache, a_lone) = (
            app(&[], &[]),
            app(&["db"], &[]),
            app(&[], &["db"]),
            app(&[], &[]),
        );
        let services: BTreeMap<&String, &App> = BTreeMap::from([
            (&web, &a_web),
            (&db, &a_db),
            (&cache, &a_cache),
            (&lone, &a_lone),
        ]);
        let got = order(&services);
        let pos = |n: &str| got.iter().position(|x| x == n).unwrap();
        assert!(
            pos("cache") < pos("db") && pos("db") < pos("web"),
            "{got:?}"
        );
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn restart_conditions_follow_systemd() {
        use RestartCondition::*;
        let segv = 128 + libc::SIGSEGV;
        let term = 128 + libc::SIGTERM;
        // (condition, clean exit 0, exit 1, killed by SIGSEGV, stopped by SIGTERM)
        let table = [
            (Never, false, false, false, false),
            (Always, true, true, true, true),
            (OnSuccess, true, false, false, true),
            (OnFailure, false, true, true, false),
            (OnAbnormal, false, false, true, false),
            (OnAbort, false, false, true, false),
        ];
        for (c, ok, fail, crash, stopped) in table {
            assert_eq!(restarts(c, 0), ok, "{c:?} on 0");
            assert_eq!(restarts(c, 1), fail, "{c:?} on 1");
            assert_eq!(restarts(c, segv), crash, "{c:?} on SIGSEGV");
            assert_eq!(restarts(c, term), stopped, "{c:?} on SIGTERM");
        }
    }

    #[test]
    fn the_start_limit_counts_starts_within_the_window() {
        let t0 = Instant::now();
        let mut limit = StartLimit::new(3, Duration::from_secs(10));
        assert!(limit.admit(t0));
        assert!(limit.admit(t0 + Duration::from_secs(1)));
        assert!(limit.admit(t0 + Duration::from_secs(2)));
        assert!(
            !limit.admit(t0 + Duration::from_secs(3)),
            "a fourth within 10 s"
        );
        // The first start leaves the window at 10 s: room for one more.
        assert!(limit.admit(t0 + Duration::from_secs(10)));
        assert!(!limit.admit(t0 + Duration::from_secs(10)));
        limit.reset();
        assert!(limit.admit(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let (first, max) = (Duration::from_secs(30), Duration::from_secs(600));
        let waits: Vec<u64> = (0..7).map(|n| backoff(n, first, max).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(backoff(u32::MAX, first, max), max);
    }
}
