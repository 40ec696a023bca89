//! The `refresh.timer` setting: when automatic refreshes may start.
//!
//! The syntax and meaning follow snapd's timer strings, plus one packd extension.
//!
//! * A schedule is one or more *events* separated by `,,`; it allows whatever any event allows.
//! * An event is a comma-separated list of day specs followed by a comma-separated list of time
//!   specs (`mon,fri,10:00,15:00`). With no day spec it applies every day; with no time spec it
//!   means 00:00 (as in snapd: `mon` is Monday at midnight).
//! * Day specs: `mon` .. `sun`; `mon1` .. `mon4` for the 1st to 4th Monday of the month and `mon5`
//!   for the last one; ranges `mon-fri` (wrapping: `fri-mon`), `mon1-wed` (the 1st Monday to the
//!   following Wednesday), `mon-wed1` (the Monday before the 1st Wednesday up to it). A range
//!   numbered at both ends (`mon1-tue2`) is read as snapd ≥ 2.43 reads it, `mon1-tue`; one whose
//!   end is numbered lower than its start (`mon5-mon1`) is refused.
//! * Time specs: `H:MM` or `HH:MM` (00:00 to 23:59, and 24:00 for the end of the day), a
//!   one-minute window; `A-B`, a window in which a refresh may start at any time; `A~B`, a
//!   randomized window in which each device picks its own point; `B` earlier than `A` wraps past
//!   midnight (`23:00-01:00`); a `/N` suffix splits the window into N equal sub-windows, each one
//!   refresh opportunity (`00:00~24:00/4`, snapd's default, is four random points a day).
//! * `every DURATION` (`every 30s`, `every 5m`, `every 1h30m`; from 1s to 31 days): a refresh
//!   about every DURATION, a little early by a per-device jitter of up to 10%.
//!
//! Times are local wall-clock times ([`NaiveDateTime`]); a window belongs to the day it starts.
//! Windows are half-open, `[start, end)`. Unlike snapd, sub-window bounds are exact to the second
//! (snapd truncates them to minutes), and [`Schedule::contains`] also sees the after-midnight part
//! of a window that started the day before. `next` has no memory of past refreshes: after one,
//! ask again from the end of the window it ran in (for `every`, from the time it ran).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Weekday};

/// snapd's default `refresh.timer`: four randomized refreshes a day.
pub const DEFAULT_TIMER: &str = "00:00~24:00/4";

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MIN_EVERY: Duration = Duration::from_secs(1);
const MAX_EVERY: Duration = Duration::from_secs(31 * 86_400);
/// A randomized point is kept this many seconds clear of its window's end (as snapd does).
const SPREAD_MARGIN: u128 = 300;
/// How far ahead `next` looks; any accepted calendar schedule matches well within this.
const SEARCH_DAYS: i64 = 400;
const EVERY_HINT: &str = r#"write e.g. "every 30s", "every 5m" or "every 1h30m""#;
const DAY_HINT: &str = r#"write e.g. "mon-fri""#;

/// Why a `refresh.timer` value was refused; the message names the bad part and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct TimerError(String);

/// A parsed `refresh.timer` value.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule(Kind);

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Every(Duration),
    Calendar(Vec<Event>),
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Event {
    days: Vec<DaySpan>,
    times: Vec<TimeSpan>,
}

/// A weekday (0 = Monday) and its week in the month: 0 every week, 1-4 the Nth, 5 the last.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Day {
    wd: u8,
    nth: u8,
}

/// Days from `from` to `to`; at most one end is numbered once parsed (unless both are equal).
#[derive(Debug, Clone, Copy, PartialEq)]
struct DaySpan {
    from: Day,
    to: Day,
}

/// Minutes since midnight (0..=1440); `start == end` is a single time, with no split or spread.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TimeSpan {
    start: u16,
    end: u16,
    split: u32,
    spread: bool,
}

const fn span(start: u16, end: u16, split: u32, spread: bool) -> TimeSpan {
    TimeSpan {
        start,
        end,
        split,
        spread,
    }
}

const MIDNIGHT: TimeSpan = span(0, 0, 0, false);

impl Default for Schedule {
    /// snapd's default, [`DEFAULT_TIMER`].
    fn default() -> Self {
        let times = vec![span(0, 1440, 4, true)];
        Schedule(Kind::Calendar(vec![Event {
            times,
            ..Event::default()
        }]))
    }
}

impl FromStr for Schedule {
    type Err = TimerError;

    fn from_str(spec: &str) -> Result<Self, TimerError> {
        parse(spec)
            .map(Schedule)
            .map_err(|why| TimerError(format!("invalid refresh.timer {spec:?}: {why}")))
    }
}

fn parse(spec: &str) -> Result<Kind, String> {
    if let Some(rest) = spec.strip_prefix("every")
        && (rest.is_empty() || rest.starts_with(' '))
    {
        return parse_every(rest.trim()).map(Kind::Every);
    }
    if spec.is_empty() {
        return Err(r#"the schedule is empty; write e.g. "00:00~24:00/4" (four times a day) or "mon,10:00""#.into());
    }
    if spec.contains(char::is_whitespace) {
        return Err(
            r#"spaces are not allowed (except after "every"); write e.g. "mon,10:00""#.into(),
        );
    }
    let mut events = Vec::new();
    for ev in spec.split(",,") {
        if ev.is_empty() {
            return Err(r#"empty event; ",," separates events, so put one on each side, e.g. "mon,10:00,,fri,15:00""#.into());
        }
        events.push(parse_event(ev)?);
    }
    Ok(Kind::Calendar(events))
}

fn parse_every(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err(format!(r#""every" needs an interval; {EVERY_HINT}"#));
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| format!("invalid interval {s:?}; {EVERY_HINT}"))?;
    if d < MIN_EVERY {
        return Err(format!(
            r#"interval {s:?} is shorter than 1s; write "every 1s" or longer"#
        ));
    }
    if d > MAX_EVERY {
        return Err(format!(
            r#"interval {s:?} is longer than 31 days; write at most "every 31d", or use a day and time such as "mon1,10:00""#
        ));
    }
    Ok(d)
}

fn parse_event(ev: &str) -> Result<Event, String> {
    let mut event = Event::default();
    for item in ev.split(',') {
        if item.is_empty() {
            return Err(format!(
                r#"empty item in {ev:?}; separate days and times with a single ",", e.g. "mon,fri,10:00""#
            ));
        }
        if item.contains(':') {
            event.times.push(parse_time_span(item)?);
        } else if !event.times.is_empty() {
            return Err(format!(
                r#"{item:?} comes after a time in {ev:?}; list days before times (e.g. "mon,10:00") and write times as HH:MM (e.g. "10:00")"#
            ));
        } else {
            event.days.push(parse_day_span(item)?);
        }
    }
    Ok(event)
}

fn parse_day_span(item: &str) -> Result<DaySpan, String> {
    if item.contains(['~', '/']) {
        return Err(format!(
            r#"{item:?} is not a day range: "~" and "/" only apply to times (e.g. "9:00~11:00/2"); {DAY_HINT}"#
        ));
    }
    let (from, to) = match item.split_once('-') {
        None => (item, item),
        Some((_, to)) if to.contains('-') => {
            return Err(format!(
                r#"day range {item:?} has more than one "-"; {DAY_HINT}"#
            ));
        }
        Some(pair) => pair,
    };
    let (from, mut to) = (parse_day(from, item)?, parse_day(to, item)?);
    if from.nth != 0 && to.nth != 0 {
        if to.nth < from.nth {
            return Err(format!(
                r#"day range {item:?} ends in an earlier week than it starts; number only one end, e.g. "mon1-fri" or "mon-fri1""#
            ));
        }
        if from != to {
            // snapd >= 2.43: anchor at the start, mon1-tue2 means mon1-tue.
            to.nth = 0;
        }
    }
    Ok(DaySpan { from, to })
}

fn weekday_index(name: &str) -> Option<u8> {
    DAY_NAMES
        .iter()
        .position(|&n| n == name)
        .and_then(|i| u8::try_from(i).ok())
}

fn parse_day(s: &str, item: &str) -> Result<Day, String> {
    let valid = |s: &str| -> Option<Day> {
        let (name, nth) = match s.len() {
            3 => (s, 0),
            4 => (
                s.get(..3)?,
                s.get(3..)?
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (1..=5).contains(n))?,
            ),
            _ => return None,
        };
        Some(Day {
            wd: weekday_index(name)?,
            nth,
        })
    };
    if let Some(day) = valid(s) {
        return Ok(day);
    }
    if s.is_empty() {
        return Err(format!("day range {item:?} is missing a day; {DAY_HINT}"));
    }
    let lower = s.to_ascii_lowercase();
    if valid(&lower).is_some() {
        return Err(format!("weekday {s:?} must be lowercase; write {lower:?}"));
    }
    let name = s.trim_end_matches(|c: char| c.is_ascii_digit());
    if name.len() < s.len() && weekday_index(name).is_some() {
        return Err(format!(
            "invalid week number in {s:?}; use {name}1 to {name}4 for the 1st to 4th one in the month, or {name}5 for the last"
        ));
    }
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "unknown weekday {s:?}; use mon, tue, wed, thu, fri, sat or sun"
        ));
    }
    Err(format!(
        r#"{s:?} is neither a day nor a time; write a day such as "mon", "mon-fri" or "mon1", or a time such as "10:00" or "9:00-11:00""#
    ))
}

fn parse_time_span(item: &str) -> Result<TimeSpan, String> {
    let (body, split) = match item.split_once('/') {
        None => (item, 0),
        Some((_, n)) if n.contains('/') => {
            return Err(format!(
                r#"{item:?} has more than one "/"; give a single count, e.g. "9:00-11:00/2""#
            ));
        }
        Some((body, n)) => {
            let count = Some(n)
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|&c| c > 0);
            let Some(count) = count else {
                return Err(format!(
                    r#"invalid count {n:?} after "/" in {item:?}; use a whole number from 1 to 4294967295, e.g. "9:00-11:00/2""#
                ));
            };
            (body, count)
        }
    };
    if body.matches(['-', '~']).count() > 1 {
        return Err(format!(
            r#"time window {body:?} has more than one "-" or "~"; write one start and one end, e.g. "9:00-11:00" or "9:00~11:00""#
        ));
    }
    let spread = body.contains('~');
    let (start, end) = match body.split_once(['-', '~']) {
        Some((a, b)) => (parse_clock(a, item)?, parse_clock(b, item)?),
        None => (parse_clock(body, item)?, parse_clock(body, item)?),
    };
    if start == end {
        return Ok(span(start, end, 0, false));
    }
    Ok(span(start, end, split, spread))
}

fn parse_clock(s: &str, item: &str) -> Result<u16, String> {
    let digits = |s: &str| -> Option<u16> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let clock = || -> Option<u16> {
        if s == "24:00" {
            return Some(1440);
        }
        let (h, m) = s.split_once(':')?;
        if !(1..=2).contains(&h.len()) || m.len() != 2 {
            return None;
        }
        Some(digits(h).filter(|&h| h < 24)? * 60 + digits(m).filter(|&m| m < 60)?)
    };
    clock().ok_or_else(|| {
        format!("invalid time {s:?} in {item:?}; write H:MM or HH:MM from 0:00 to 23:59, or 24:00 for the end of the day")
    })
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events = match &self.0 {
            Kind::Every(d) => return write_interval(f, *d),
            Kind::Calendar(events) => events,
        };
        for (i, ev) in events.iter().enumerate() {
            if i > 0 {
                f.write_str(",,")?;
            }
            let items = ev.days.iter().map(|d| d as &dyn fmt::Display);
            let items = items.chain(ev.times.iter().map(|t| t as &dyn fmt::Display));
            for (j, item) in items.enumerate() {
                if j > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{item}")?;
            }
        }
        Ok(())
    }
}

/// `every 1h30m`: compact units that `humantime` reads back.
fn write_interval(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    f.write_str("every ")?;
    let mut rest = d.as_nanos();
    for (unit, name) in [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
    ]
    .into_iter()
    .chain([
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1000, "us"),
        (1, "ns"),
    ]) {
        if rest >= unit {
            write!(f, "{}{name}", rest / unit)?;
            rest %= unit;
        }
    }
    Ok(())
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DAY_NAMES.get(usize::from(self.wd)).copied().unwrap_or("?"))?;
        if self.nth != 0 {
            write!(f, "{}", self.nth)?;
        }
        Ok(())
    }
}

impl fmt::Display for DaySpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            return write!(f, "{}", self.from);
        }
        write!(f, "{}-{}", self.from, self.to)
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}", clock(self.start))?;
        if self.start != self.end {
            write!(
                f,
                "{}{}",
                if self.spread { '~' } else { '-' },
                clock(self.end)
            )?;
            if self.split > 0 {
                write!(f, "/{}", self.split)?;
            }
        }
        Ok(())
    }
}

fn month_shift(y: i32, m: u32, delta: i32) -> (i32, u32) {
    let idx = y * 12 + m as i32 - 1 + delta;
    (idx.div_euclid(12), idx.rem_euclid(12) as u32 + 1)
}

/// The `nth` (1-4, or 5 for the last) weekday `wd` in the given month.
fn nth_weekday(y: i32, m: u32, wd: u8, nth: u8) -> Option<NaiveDate> {
    let w = Weekday::try_from(wd).ok()?;
    let date = NaiveDate::from_weekday_of_month_opt(y, m, w, nth);
    if nth == 5 {
        date.or_else(|| NaiveDate::from_weekday_of_month_opt(y, m, w, 4))
    } else {
        date
    }
}

impl DaySpan {
    /// Days from the first to the last day of the span (0 for a single day, up to 7).
    fn len(&self) -> i64 {
        let len = (i64::from(self.to.wd) + 7 - i64::from(self.from.wd)) % 7;
        if len == 0 && self.from != self.to {
            7
        } else {
            len
        }
    }

    fn matches(&self, date: NaiveDate) -> bool {
        let len = self.len();
        if self.from.nth == 0 && self.to.nth == 0 {
            let wd = i64::from(date.weekday().num_days_from_monday());
            return (wd + 7 - i64::from(self.from.wd)) % 7 <= len;
        }
        // Anchored at a numbered day: the span may spill into the month before or after it.
        let (anchor, months, backwards) = if self.from.nth != 0 {
            (self.from, [0, -1], false)
        } else {
            (self.to, [0, 1], true)
        };
        months.iter().any(|&dm| {
            let (y, m) = month_shift(date.year(), date.month(), dm);
            nth_weekday(y, m, anchor.wd, anchor.nth).is_some_and(|a| {
                let days = date.signed_duration_since(a).num_days();
                (0..=len).contains(&if backwards { -days } else { days })
            })
        })
    }
}

impl Event {
    fn matches(&self, day: NaiveDate) -> bool {
        self.days.is_empty() || self.days.iter().any(|d| d.matches(day))
    }

    fn times(&self) -> &[TimeSpan] {
        if self.times.is_empty() {
            std::slice::from_ref(&MIDNIGHT)
        } else {
            &self.times
        }
    }
}

fn at(day: NaiveDate, secs: i64) -> Option<NaiveDateTime> {
    day.and_time(NaiveTime::MIN)
        .checked_add_signed(TimeDelta::try_seconds(secs)?)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic value in `0..range` drawn from `seed`.
fn pick(seed: u64, range: u128) -> u128 {
    (u128::from(splitmix(seed)) * range) >> 64
}

impl TimeSpan {
    /// Offset of the start from the day's midnight, and the length, in seconds.
    fn bounds(&self) -> (i64, i64) {
        let (start, mut end) = (i64::from(self.start) * 60, i64::from(self.end) * 60);
        if end < start {
            end += 86_400;
        }
        (start, end - start)
    }

    /// The whole window on `day`; a single time lasts a minute.
    fn window(&self, day: NaiveDate) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let (start, len) = self.bounds();
        Some((
            at(day, start)?,
            at(day, start + if len == 0 { 60 } else { len })?,
        ))
    }

    /// The earliest opportunity of this span on `day` at or after `now`, and its window's end.
    fn next(
        &self,
        day: NaiveDate,
        now: NaiveDateTime,
        jitter: u64,
    ) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let (start, total) = self.bounds();
        let base = at(day, start)?;
        if total == 0 {
            let end = at(day, start + 60)?;
            return (end > now).then_some((base.max(now), end));
        }
        // Sub-window i is [base + i*total/n, base + (i+1)*total/n), in whole seconds; find the
        // first one ending after now (empty ones, when n > total, are never picked).
        let (n, total) = (u128::from(self.split.max(1)), u128::try_from(total).ok()?);
        let elapsed = u128::try_from(now.signed_duration_since(base).num_seconds().max(0)).ok()?;
        let i = ((elapsed + 1) * n).div_ceil(total) - 1;
        if i >= n {
            return None;
        }
        let (from, to) = (i * total / n, (i + 1) * total / n);
        let win_start = at(day, start + i64::try_from(from).ok()?)?;
        let win_end = at(day, start + i64::try_from(to).ok()?)?;
        let mut moment = win_start;
        if self.spread {
            let len = to - from;
            let room = if len > SPREAD_MARGIN {
                len - SPREAD_MARGIN
            } else {
                len
            };
            let seed = jitter ^ splitmix(win_start.and_utc().timestamp() as u64);
            let offset = TimeDelta::try_seconds(i64::try_from(pick(seed, room)).ok()?)?;
            moment = win_start.checked_add_signed(offset)?;
        }
        Some((moment.max(now), win_end))
    }
}

impl Schedule {
    /// Whether it is `every DURATION` (whose next run counts from the last one, not from a
    /// window's end).
    pub fn is_every(&self) -> bool {
        matches!(self.0, Kind::Every(_))
    }

    /// The next moment at or after `now` (local wall-clock time) when an auto-refresh may start,
    /// and the end of the window it falls in. Randomized windows (`~`) and `every` pick a point
    /// spread by `jitter` (a device-specific 64-bit number, e.g. a hash of its id), deterministic
    /// for the same inputs, so devices spread over the window but one device is predictable.
    pub fn next(&self, now: NaiveDateTime, jitter: u64) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let events = match &self.0 {
            Kind::Every(d) => {
                let early = pick(jitter, d.as_nanos() / 10);
                let wait = d.checked_sub(Duration::from_nanos(u64::try_from(early).ok()?))?;
                let start = now.checked_add_signed(TimeDelta::from_std(wait).ok()?)?;
                return Some((
                    start,
                    start.checked_add_signed(TimeDelta::from_std(*d).ok()?)?,
                ));
            }
            Kind::Calendar(events) => events,
        };
        let today = now.date();
        let mut best: Option<(NaiveDateTime, NaiveDateTime)> = None;
        for k in -1..=SEARCH_DAYS {
            let Some(day) = TimeDelta::try_days(k).and_then(|k| today.checked_add_signed(k)) else {
                break;
            };
            // Every window of `day` starts at or after its midnight.
            if best.is_some_and(|(m, _)| day.and_time(NaiveTime::MIN) > m) {
                break;
            }
            for ev in events.iter().filter(|ev| ev.matches(day)) {
                for c in ev.times().iter().filter_map(|ts| ts.next(day, now, jitter)) {
                    // Earliest first; on a tie, the window that stays open longer.
                    if best.is_none_or(|b| c.0 < b.0 || (c.0 == b.0 && c.1 > b.1)) {
                        best = Some(c);
                    }
                }
            }
        }
        best
    }

    /// Whether `t` falls inside one of the schedule's windows (always, for `every`).
    pub fn contains(&self, t: NaiveDateTime) -> bool {
        let Kind::Calendar(events) = &self.0 else {
            return true;
        };
        [t.date().pred_opt(), Some(t.date())]
            .into_iter()
            .flatten()
            .any(|day| {
                events.iter().filter(|ev| ev.matches(day)).any(|ev| {
                    ev.times()
                        .iter()
                        .filter_map(|ts| ts.window(day))
                        .any(|(s, e)| s <= t && t < e)
                })
            })
    }
}

#[cfg(test)]
mod tests;
