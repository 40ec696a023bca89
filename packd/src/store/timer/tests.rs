use super::*;

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .unwrap_or_else(|e| panic!("bad test time {s:?}: {e}"))
}

fn sched(spec: &str) -> Schedule {
    spec.parse()
        .unwrap_or_else(|e| panic!("{spec:?} refused: {e}"))
}

fn next(spec: &str, now: &str, jitter: u64) -> (NaiveDateTime, NaiveDateTime) {
    sched(spec).next(dt(now), jitter).unwrap()
}

/// Asserts a plain (not randomized) `next` result.
fn check_next(spec: &str, now: &str, start: &str, end: &str) {
    assert_eq!(
        next(spec, now, 7),
        (dt(start), dt(end)),
        "{spec:?} from {now}"
    );
}

#[test]
fn accepted_forms_display_canonically_and_round_trip() {
    for (spec, shown) in [
        ("9:00-11:00", "09:00-11:00"),
        ("9:00-11:00/2", "09:00-11:00/2"),
        ("9:00-11:00/007", "09:00-11:00/7"),
        ("9:00-11:00/1", "09:00-11:00/1"),
        ("0:00-24:00/4294967295", "00:00-24:00/4294967295"),
        ("9:00~11:00", "09:00~11:00"),
        ("00:00~24:00/4", "00:00~24:00/4"),
        ("9:00", "09:00"),
        ("23:59", "23:59"),
        ("24:00", "24:00"),
        ("24:00-00:00", "24:00-00:00"),
        ("9:00/2", "09:00"),
        ("10:00-10:00", "10:00"),
        ("10:00~10:00/3", "10:00"),
        ("00:00-24:00", "00:00-24:00"),
        ("23:00-01:00", "23:00-01:00"),
        ("23:00~1:00/4", "23:00~01:00/4"),
        ("mon,9:00-11:00", "mon,09:00-11:00"),
        ("fri,mon,9:00-11:00", "fri,mon,09:00-11:00"),
        ("9:00-11:00,,20:00-22:00", "09:00-11:00,,20:00-22:00"),
        (
            "mon,9:00-11:00,,wed,22:00-23:00",
            "mon,09:00-11:00,,wed,22:00-23:00",
        ),
        ("mon,9:00,10:00,14:00,15:00", "mon,09:00,10:00,14:00,15:00"),
        ("mon,wed", "mon,wed"),
        ("mon,,wed", "mon,,wed"),
        ("mon-wed", "mon-wed"),
        ("mon-mon", "mon"),
        ("sun-sat", "sun-sat"),
        ("fri-mon", "fri-mon"),
        ("mon-wed,fri,9:00-11:00/2", "mon-wed,fri,09:00-11:00/2"),
        ("mon1,9:00", "mon1,09:00"),
        ("mon5,06:00", "mon5,06:00"),
        ("mon1-mon1", "mon1"),
        ("mon1-wed", "mon1-wed"),
        ("mon-wed1", "mon-wed1"),
        ("mon-mon2,9:00", "mon-mon2,09:00"),
        ("mon1-tue2,10:00", "mon1-tue,10:00"),
        ("mon2-mon3", "mon2-mon"),
        ("fri5,23:00-01:00", "fri5,23:00-01:00"),
        ("every 30s", "every 30s"),
        ("every 5m", "every 5m"),
        ("every 1h30m", "every 1h30m"),
        ("every  1h 30m ", "every 1h30m"),
        ("every 90min", "every 1h30m"),
        ("every 1s", "every 1s"),
        ("every 1.5s", "every 1s500ms"),
        ("every 2s 3ms 4us 5ns", "every 2s3ms4us5ns"),
        ("every 1d 1s", "every 1d1s"),
        ("every 31d", "every 31d"),
    ] {
        let s = sched(spec);
        assert_eq!(s.to_string(), shown, "display of {spec:?}");
        assert_eq!(sched(shown), s, "round-trip of {spec:?}");
    }
}

#[test]
fn default_is_snapds() {
    assert_eq!(Schedule::default(), sched(DEFAULT_TIMER));
    assert_eq!(Schedule::default().to_string(), DEFAULT_TIMER);
}

#[test]
fn refusals_name_the_bad_part() {
    const TIME: &str = "write H:MM or HH:MM from 0:00 to 23:59, or 24:00 for the end of the day";
    const COUNT: &str = r#"use a whole number from 1 to 4294967295, e.g. "9:00-11:00/2""#;
    const NEITHER: &str = r#"is neither a day nor a time; write a day such as "mon", "mon-fri" or "mon1", or a time such as "10:00" or "9:00-11:00""#;
    const WEEKDAY: &str = "use mon, tue, wed, thu, fri, sat or sun";
    let cases: Vec<(&str, String)> = vec![
        ("mon-fry,10:00", format!(r#"unknown weekday "fry"; {WEEKDAY}"#)),
        ("", r#"the schedule is empty; write e.g. "00:00~24:00/4" (four times a day) or "mon,10:00""#.into()),
        ("invalid-11:00", format!(r#"invalid time "invalid" in "invalid-11:00"; {TIME}"#)),
        ("9:00-11:00/invalid", format!(r#"invalid count "invalid" after "/" in "9:00-11:00/invalid"; {COUNT}"#)),
        ("9:00-11:00/0", format!(r#"invalid count "0" after "/" in "9:00-11:00/0"; {COUNT}"#)),
        ("9:00-11:00/+2", format!(r#"invalid count "+2" after "/" in "9:00-11:00/+2"; {COUNT}"#)),
        ("9:00-11:00/", format!(r#"invalid count "" after "/" in "9:00-11:00/"; {COUNT}"#)),
        ("9:00-11:00/4294967296", format!(r#"invalid count "4294967296" after "/" in "9:00-11:00/4294967296"; {COUNT}"#)),
        ("9:00-11:00/1:00", format!(r#"invalid count "1:00" after "/" in "9:00-11:00/1:00"; {COUNT}"#)),
        ("09:00-25:00", format!(r#"invalid time "25:00" in "09:00-25:00"; {TIME}"#)),
        ("09:00-24:30", format!(r#"invalid time "24:30" in "09:00-24:30"; {TIME}"#)),
        ("11:61", format!(r#"invalid time "11:61" in "11:61"; {TIME}"#)),
        ("9:5", format!(r#"invalid time "9:5" in "9:5"; {TIME}"#)),
        ("009:00", format!(r#"invalid time "009:00" in "009:00"; {TIME}"#)),
        (":", format!(r#"invalid time ":" in ":"; {TIME}"#)),
        ("9:00-", format!(r#"invalid time "" in "9:00-"; {TIME}"#)),
        ("mon-01:00", format!(r#"invalid time "mon" in "mon-01:00"; {TIME}"#)),
        ("9:00-mon@11:00", format!(r#"invalid time "mon@11:00" in "9:00-mon@11:00"; {TIME}"#)),
        ("9:00,mon", r#""mon" comes after a time in "9:00,mon"; list days before times (e.g. "mon,10:00") and write times as HH:MM (e.g. "10:00")"#.into()),
        ("mon,9:00,10", r#""10" comes after a time in "mon,9:00,10"; list days before times (e.g. "mon,10:00") and write times as HH:MM (e.g. "10:00")"#.into()),
        ("mon~wed", r#""mon~wed" is not a day range: "~" and "/" only apply to times (e.g. "9:00~11:00/2"); write e.g. "mon-fri""#.into()),
        ("mon-wed/2,,9:00", r#""mon-wed/2" is not a day range: "~" and "/" only apply to times (e.g. "9:00~11:00/2"); write e.g. "mon-fri""#.into()),
        ("-/4", r#""-/4" is not a day range: "~" and "/" only apply to times (e.g. "9:00~11:00/2"); write e.g. "mon-fri""#.into()),
        ("~/4", r#""~/4" is not a day range: "~" and "/" only apply to times (e.g. "9:00~11:00/2"); write e.g. "mon-fri""#.into()),
        ("mon--wed", r#"day range "mon--wed" has more than one "-"; write e.g. "mon-fri""#.into()),
        ("mon-tue-wed", r#"day range "mon-tue-wed" has more than one "-"; write e.g. "mon-fri""#.into()),
        ("-", r#"day range "-" is missing a day; write e.g. "mon-fri""#.into()),
        ("mon-,9:00", r#"day range "mon-" is missing a day; write e.g. "mon-fri""#.into()),
        ("mon..wed", format!(r#""mon..wed" {NEITHER}"#)),
        ("mon%,9:00", format!(r#""mon%" {NEITHER}"#)),
        ("10", format!(r#""10" {NEITHER}"#)),
        ("mon9,9:00", r#"invalid week number in "mon9"; use mon1 to mon4 for the 1st to 4th one in the month, or mon5 for the last"#.into()),
        ("mon0,9:00", r#"invalid week number in "mon0"; use mon1 to mon4 for the 1st to 4th one in the month, or mon5 for the last"#.into()),
        ("tue12", r#"invalid week number in "tue12"; use tue1 to tue4 for the 1st to 4th one in the month, or tue5 for the last"#.into()),
        ("foo2,9:00", format!(r#"unknown weekday "foo2"; {WEEKDAY}"#)),
        ("monday", format!(r#"unknown weekday "monday"; {WEEKDAY}"#)),
        ("Mon,10:00", r#"weekday "Mon" must be lowercase; write "mon""#.into()),
        ("FRI5", r#"weekday "FRI5" must be lowercase; write "fri5""#.into()),
        ("mon5-mon1,9:00", r#"day range "mon5-mon1" ends in an earlier week than it starts; number only one end, e.g. "mon1-fri" or "mon-fri1""#.into()),
        ("9:00---11:00", r#"time window "9:00---11:00" has more than one "-" or "~"; write one start and one end, e.g. "9:00-11:00" or "9:00~11:00""#.into()),
        ("9:00~~11:00", r#"time window "9:00~~11:00" has more than one "-" or "~"; write one start and one end, e.g. "9:00-11:00" or "9:00~11:00""#.into()),
        ("9:00-9:00-10:00/3", r#"time window "9:00-9:00-10:00" has more than one "-" or "~"; write one start and one end, e.g. "9:00-11:00" or "9:00~11:00""#.into()),
        ("9:00-11:00/3/3/3", r#""9:00-11:00/3/3/3" has more than one "/"; give a single count, e.g. "9:00-11:00/2""#.into()),
        ("9:00-11:00///3", r#""9:00-11:00///3" has more than one "/"; give a single count, e.g. "9:00-11:00/2""#.into()),
        ("9:00,,,9:00-10:00/3", r#"empty item in ",9:00-10:00/3"; separate days and times with a single ",", e.g. "mon,fri,10:00""#.into()),
        ("mon,fri,", r#"empty item in "mon,fri,"; separate days and times with a single ",", e.g. "mon,fri,10:00""#.into()),
        (",,,", r#"empty event; ",," separates events, so put one on each side, e.g. "mon,10:00,,fri,15:00""#.into()),
        (",,", r#"empty event; ",," separates events, so put one on each side, e.g. "mon,10:00,,fri,15:00""#.into()),
        ("mon,10:00,,", r#"empty event; ",," separates events, so put one on each side, e.g. "mon,10:00,,fri,15:00""#.into()),
        ("mon, 10:00", r#"spaces are not allowed (except after "every"); write e.g. "mon,10:00""#.into()),
        ("every", r#""every" needs an interval; write e.g. "every 30s", "every 5m" or "every 1h30m""#.into()),
        ("every ", r#""every" needs an interval; write e.g. "every 30s", "every 5m" or "every 1h30m""#.into()),
        ("every 5x", r#"invalid interval "5x"; write e.g. "every 30s", "every 5m" or "every 1h30m""#.into()),
        ("every -5m", r#"invalid interval "-5m"; write e.g. "every 30s", "every 5m" or "every 1h30m""#.into()),
        ("every 0s", r#"interval "0s" is shorter than 1s; write "every 1s" or longer"#.into()),
        ("every 500ms", r#"interval "500ms" is shorter than 1s; write "every 1s" or longer"#.into()),
        ("every 32d", r#"interval "32d" is longer than 31 days; write at most "every 31d", or use a day and time such as "mon1,10:00""#.into()),
        ("everyday", format!(r#"unknown weekday "everyday"; {WEEKDAY}"#)),
    ];
    for (spec, why) in cases {
        let err = spec.parse::<Schedule>().expect_err(spec);
        assert_eq!(
            err.to_string(),
            format!("invalid refresh.timer {spec:?}: {why}")
        );
    }
}

#[test]
fn next_plain_times() {
    check_next(
        "9:00",
        "2017-02-06 08:00",
        "2017-02-06 09:00",
        "2017-02-06 09:01",
    );
    check_next(
        "9:00",
        "2017-02-06 09:00:30",
        "2017-02-06 09:00:30",
        "2017-02-06 09:01",
    );
    check_next(
        "9:00",
        "2017-02-06 09:01",
        "2017-02-07 09:00",
        "2017-02-07 09:01",
    );
    check_next(
        "9:00,14:00",
        "2017-02-06 09:30",
        "2017-02-06 14:00",
        "2017-02-06 14:01",
    );
    check_next(
        "mon,24:00",
        "2017-02-06 12:00",
        "2017-02-07 00:00",
        "2017-02-07 00:01",
    );
    // A day alone means midnight, as in snapd.
    check_next(
        "mon",
        "2017-02-05 12:00",
        "2017-02-06 00:00",
        "2017-02-06 00:01",
    );
}

#[test]
fn next_windows_and_splits() {
    check_next(
        "9:00-11:00",
        "2017-02-06 08:00",
        "2017-02-06 09:00",
        "2017-02-06 11:00",
    );
    check_next(
        "9:00-11:00",
        "2017-02-06 10:00",
        "2017-02-06 10:00",
        "2017-02-06 11:00",
    );
    check_next(
        "9:00-11:00",
        "2017-02-06 11:00",
        "2017-02-07 09:00",
        "2017-02-07 11:00",
    );
    check_next(
        "9:00-11:00/2",
        "2017-02-06 09:30",
        "2017-02-06 09:30",
        "2017-02-06 10:00",
    );
    check_next(
        "9:00-11:00/2",
        "2017-02-06 10:00",
        "2017-02-06 10:00",
        "2017-02-06 11:00",
    );
    check_next(
        "00:00-24:00/24",
        "2017-02-06 13:20",
        "2017-02-06 13:20",
        "2017-02-06 14:00",
    );
    check_next(
        "00:00-24:00/24",
        "2017-02-06 14:00",
        "2017-02-06 14:00",
        "2017-02-06 15:00",
    );
    check_next(
        "12:00-13:00/12",
        "2017-02-06 12:07",
        "2017-02-06 12:07",
        "2017-02-06 12:10",
    );
    // 3600s / 7 = 514.28s: sub-windows tile the window to the second.
    check_next(
        "9:00-10:00/7",
        "2017-02-06 09:00",
        "2017-02-06 09:00",
        "2017-02-06 09:08:34",
    );
    check_next(
        "9:00-10:00/7",
        "2017-02-06 09:08:34",
        "2017-02-06 09:08:34",
        "2017-02-06 09:17:08",
    );
    check_next(
        "9:00-10:00/7",
        "2017-02-06 09:59:59",
        "2017-02-06 09:59:59",
        "2017-02-06 10:00",
    );
    // More sub-windows than seconds: empty ones are skipped.
    check_next(
        "9:00-9:01/1000",
        "2017-02-06 09:00:30",
        "2017-02-06 09:00:30",
        "2017-02-06 09:00:31",
    );
    check_next(
        "0:00-24:00/4294967295",
        "2017-02-06 09:00",
        "2017-02-06 09:00",
        "2017-02-06 09:00:01",
    );
    // Overlapping windows: on a tie the longer one wins.
    check_next(
        "9:00-10:00,9:00-11:00",
        "2017-02-06 08:00",
        "2017-02-06 09:00",
        "2017-02-06 11:00",
    );
    check_next(
        "10:00~11:00,9:00-10:00",
        "2017-02-06 09:30",
        "2017-02-06 09:30",
        "2017-02-06 10:00",
    );
}

#[test]
fn next_randomized_windows() {
    let s = sched("9:00~11:00");
    let (lo, hi, end) = (
        dt("2017-02-06 09:00"),
        dt("2017-02-06 10:55"),
        dt("2017-02-06 11:00"),
    );
    let mut seen = std::collections::BTreeSet::new();
    for jitter in 0..50u64 {
        let (at, until) = s.next(dt("2017-02-06 08:00"), jitter).unwrap();
        assert!(lo <= at && at < hi, "{at}");
        assert_eq!(until, end);
        // Deterministic, and the same whenever it is asked before the window.
        assert_eq!(s.next(dt("2017-02-06 07:13"), jitter), Some((at, until)));
        assert_eq!(s.next(dt("2017-02-05 23:00"), jitter), Some((at, until)));
        // Past its point inside the window: now.
        let late = at + TimeDelta::seconds(1);
        assert_eq!(s.next(late, jitter), Some((late, end)));
        seen.insert(at);
    }
    assert!(seen.len() > 40, "jitter should spread devices: {seen:?}");
    // The default: four random points a day, one per 6h sub-window.
    let d = sched(DEFAULT_TIMER);
    let (a, e) = d.next(dt("2017-02-06 00:00"), 42).unwrap();
    assert!(
        a >= dt("2017-02-06 00:00") && a < dt("2017-02-06 05:55"),
        "{a}"
    );
    assert_eq!(e, dt("2017-02-06 06:00"));
    let (b, e) = d.next(e, 42).unwrap();
    assert!(
        b >= dt("2017-02-06 06:00") && b < dt("2017-02-06 11:55"),
        "{b}"
    );
    assert_eq!(e, dt("2017-02-06 12:00"));
    assert_ne!(
        b - a,
        TimeDelta::hours(6),
        "each sub-window draws its own point"
    );
    // A window of 5 minutes or less spreads over all of it.
    for jitter in 0..20 {
        let (at, _) = next("9:00~9:03", "2017-02-06 08:00", jitter);
        assert!(
            at >= dt("2017-02-06 09:00") && at < dt("2017-02-06 09:03"),
            "{at}"
        );
    }
    // Past midnight.
    for jitter in 0..20 {
        let (at, end) = next("23:00~01:00", "2017-02-06 22:00", jitter);
        assert!(
            at >= dt("2017-02-06 23:00") && at < dt("2017-02-07 00:55"),
            "{at}"
        );
        assert_eq!(end, dt("2017-02-07 01:00"));
    }
}

#[test]
fn next_weekdays() {
    // February 2017: Wed 1st, Mon 6th (1st Monday), Mon 27th (last Monday).
    check_next(
        "mon,10:00,,fri,15:00",
        "2017-02-06 09:00",
        "2017-02-06 10:00",
        "2017-02-06 10:01",
    );
    check_next(
        "mon,10:00,,fri,15:00",
        "2017-02-06 10:01",
        "2017-02-10 15:00",
        "2017-02-10 15:01",
    );
    check_next(
        "mon,10:00-12:00,,fri,15:00",
        "2017-02-07 12:00",
        "2017-02-10 15:00",
        "2017-02-10 15:01",
    );
    check_next(
        "fri-mon,10:00",
        "2017-02-06 09:00",
        "2017-02-06 10:00",
        "2017-02-06 10:01",
    );
    check_next(
        "fri-mon,10:00",
        "2017-02-06 10:01",
        "2017-02-10 10:00",
        "2017-02-10 10:01",
    );
    check_next(
        "wed-fri,10:00",
        "2017-02-06 10:00",
        "2017-02-08 10:00",
        "2017-02-08 10:01",
    );
    check_next(
        "sat,sun,9:00-10:00",
        "2017-02-06 10:00",
        "2017-02-11 09:00",
        "2017-02-11 10:00",
    );
}

#[test]
fn next_nth_and_last_weekday() {
    check_next(
        "mon1,10:00",
        "2017-02-05 22:00",
        "2017-02-06 10:00",
        "2017-02-06 10:01",
    );
    check_next(
        "mon1,10:00",
        "2017-02-06 11:00",
        "2017-03-06 10:00",
        "2017-03-06 10:01",
    );
    check_next(
        "mon2,10:00",
        "2017-02-06 11:00",
        "2017-02-13 10:00",
        "2017-02-13 10:01",
    );
    check_next(
        "mon5,10:00",
        "2017-02-06 11:00",
        "2017-02-27 10:00",
        "2017-02-27 10:01",
    );
    check_next(
        "wed1,13:00",
        "2018-07-30 09:00",
        "2018-08-01 13:00",
        "2018-08-01 13:01",
    );
    check_next(
        "mon1-tue,10:00",
        "2017-02-05 10:00",
        "2017-02-06 10:00",
        "2017-02-06 10:01",
    );
    check_next(
        "mon1-tue,10:00",
        "2017-02-06 11:00",
        "2017-02-07 10:00",
        "2017-02-07 10:01",
    );
    check_next(
        "mon1-tue,10:00",
        "2017-02-16 10:00",
        "2017-03-06 10:00",
        "2017-03-06 10:01",
    );
    check_next(
        "mon1-tue,10:00-12:00",
        "2017-02-06 11:00",
        "2017-02-06 11:00",
        "2017-02-06 12:00",
    );
    check_next(
        "mon1-tue2,10:00",
        "2017-02-07 11:00",
        "2017-03-06 10:00",
        "2017-03-06 10:01",
    );
    // October 2019 starts on a Tuesday: its 1st Monday is the 7th.
    check_next(
        "mon1-wed,9:00-13:00",
        "2019-09-30 09:00",
        "2019-10-07 09:00",
        "2019-10-07 13:00",
    );
    // The week ending on the 1st Friday of October starts on Monday 30 September.
    check_next(
        "mon-fri1,9:00-13:00",
        "2019-09-29 09:00",
        "2019-09-30 09:00",
        "2019-09-30 13:00",
    );
    // Last Friday of February 2017 is the 24th; of March, the 31st.
    check_next(
        "fri5,23:00-01:00",
        "2017-02-20 12:00",
        "2017-02-24 23:00",
        "2017-02-25 01:00",
    );
}

#[test]
fn windows_past_midnight() {
    let s = sched("fri5,23:00-01:00");
    assert_eq!(
        s.next(dt("2017-02-25 00:30"), 0),
        Some((dt("2017-02-25 00:30"), dt("2017-02-25 01:00")))
    );
    assert_eq!(
        s.next(dt("2017-02-25 01:00"), 0),
        Some((dt("2017-03-31 23:00"), dt("2017-04-01 01:00")))
    );
    assert!(s.contains(dt("2017-02-25 00:59:59")));
    assert!(!s.contains(dt("2017-02-25 01:00")));
    assert!(
        !s.contains(dt("2017-02-24 00:30")),
        "Thursday night is not in the window"
    );
    check_next(
        "23:00-01:00",
        "2017-02-07 00:30",
        "2017-02-07 00:30",
        "2017-02-07 01:00",
    );
    check_next(
        "23:00-01:00/2",
        "2017-02-06 23:59",
        "2017-02-06 23:59",
        "2017-02-07 00:00",
    );
    check_next(
        "23:00-01:00/2",
        "2017-02-07 00:00",
        "2017-02-07 00:00",
        "2017-02-07 01:00",
    );
    check_next(
        "22:00-02:00/4",
        "2017-02-07 01:30",
        "2017-02-07 01:30",
        "2017-02-07 02:00",
    );
}

#[test]
fn next_every() {
    let s = sched("every 1h");
    let now = dt("2017-02-06 10:00");
    let mut seen = std::collections::BTreeSet::new();
    for jitter in [0, 1, 2, 3, u64::MAX, 0xdead_beef] {
        let (at, end) = s.next(now, jitter).unwrap();
        assert!(
            at > dt("2017-02-06 10:54") && at <= dt("2017-02-06 11:00"),
            "{at}"
        );
        assert_eq!(end - at, TimeDelta::hours(1));
        assert_eq!(s.next(now, jitter), Some((at, end)));
        seen.insert(at);
    }
    assert!(seen.len() > 4, "{seen:?}");
    let (at, _) = sched("every 30s").next(now, 99).unwrap();
    assert!(
        at > now + TimeDelta::seconds(26) && at <= now + TimeDelta::seconds(30),
        "{at}"
    );
    assert!(s.contains(now));
    assert_eq!(sched("every 31d").next(NaiveDateTime::MAX, 1), None);
}

#[test]
fn contains_follows_snapds_includes() {
    for (spec, at, expect) in [
        ("mon,10:00,,fri,15:00", "2017-02-06 09:00:00", false),
        ("mon1,10:00", "2017-02-06 10:00:00", true),
        ("mon1,10:00", "2017-02-06 10:00:45", true),
        ("mon1,10:00", "2017-02-06 10:01:00", false),
        ("mon5,10:00-11:00", "2017-02-27 10:59:20", true),
        ("mon1-tue2,10:00-12:00", "2017-02-09 11:10:00", false),
        ("mon1-tue,10:00~12:00", "2017-02-02 11:10:00", false),
        ("mon1-tue,10:00~12:00", "2017-02-06 11:10:00", true),
        ("mon1-tue,10:00~12:00", "2017-02-16 11:10:00", false),
        ("mon1-tue,10:00~12:00", "2017-03-06 11:10:00", true),
        ("mon1-tue,10:00~12:00", "2017-02-09 11:10:00", false),
        ("tue1-mon,10:00~12:00", "2017-02-09 11:10:00", true),
        ("mon4-wed5,10:00~12:00", "2017-03-02 11:10:00", false),
        ("mon5-wed,10:00~12:00", "2017-03-01 11:10:00", true),
        ("mon5-wed,10:00~12:00", "2017-03-02 11:10:00", false),
        ("mon1-tue2,10:00~12:00", "2017-02-05 11:10:00", false),
        ("9:00-11:00/2", "2017-02-06 10:30:00", true),
        ("9:00-10:00,10:00-11:00", "2017-02-06 10:30:00", true),
        ("23:59", "2017-02-06 23:59:59", true),
        ("10:00~11:00,9:00-10:00", "2017-02-06 09:30:00", true),
        ("mon1-wed,9:00-10:00", "2019-10-08 09:30:00", true),
        ("tue1,9:00-10:00", "2019-10-01 09:30:00", true),
        ("9:00-11:00", "2017-02-06 11:00:00", false),
        ("mon", "2017-02-06 00:00:30", true),
        ("mon", "2017-02-06 12:00:00", false),
    ] {
        assert_eq!(sched(spec).contains(dt(at)), expect, "{spec:?} at {at}");
    }
    // Year 1 starts on a Monday; nothing silly happens at the edge of the calendar.
    let zero = dt("0001-01-01 00:00");
    for spec in [
        "mon-tue,0:00-12:00",
        "mon1-tue,0:00-12:00",
        "mon-tue1,0:00-12:00",
    ] {
        let s = sched(spec);
        assert!(
            s.contains(zero) && s.contains(zero + TimeDelta::hours(5)),
            "{spec}"
        );
        assert!(!s.contains(zero + TimeDelta::days(2)), "{spec}");
    }
}

#[test]
fn day_spans_match_like_snapd() {
    // July 2018 starts on a Sunday, August 2018 on a Wednesday.
    for (span, date, expect) in [
        ("wed1", "2018-08-01", true),
        ("wed1", "2018-08-08", false),
        ("wed2", "2018-08-08", true),
        ("tue1", "2018-08-07", true),
        ("sun1", "2018-07-01", true),
        ("tue5", "2018-07-31", true),
        ("tue5", "2018-07-24", false),
        ("thu5", "2018-07-26", true),
        ("mon1-fri1", "2018-08-01", false),
        ("mon1-fri", "2018-08-07", true),
        ("mon1-fri", "2018-08-08", true),
        ("mon2-fri", "2018-08-13", true),
        ("fri1-mon", "2018-08-04", true),
        ("fri1-mon", "2018-07-08", true),
        ("mon-fri1", "2018-08-01", true),
        ("mon-fri1", "2018-07-30", true),
        ("fri4-thu", "2018-08-01", true),
        ("fri1-mon1", "2018-07-08", true),
        ("fri1-mon", "2018-07-15", false),
        ("mon5-fri", "2018-07-31", true),
        ("mon-fri5", "2018-07-28", false),
        ("mon-fri5", "2018-07-25", true),
        ("mon1-mon", "2018-07-03", true),
        ("mon1-mon", "2018-07-09", true),
        ("mon1-mon", "2018-07-10", false),
        ("mon-mon", "2018-07-09", true),
        ("mon-mon", "2018-07-10", false),
        ("sat-mon", "2018-07-08", true),
        ("sat-mon", "2018-07-10", false),
    ] {
        let span = parse_day_span(span).unwrap();
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        assert_eq!(span.matches(date), expect, "{span} on {date}");
    }
}

/// Random strings never panic the parser; what parses round-trips and schedules sanely.
#[test]
fn fuzz_parse_never_panics() {
    const PIECES: &[&str] = &[
        "mon",
        "tue",
        "fri",
        "sun",
        "wed",
        "1",
        "2",
        "5",
        "0",
        "9",
        "00",
        "23",
        "24",
        "59",
        ":",
        "-",
        "~",
        "/",
        ",",
        ",,",
        "every ",
        "s",
        "m",
        "h",
        "d",
        " ",
        "é",
        "\u{0}",
        "x",
        "4294967296",
    ];
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        state = splitmix(state);
        state
    };
    let now = dt("2024-02-28 13:37:42");
    let mut parsed = 0;
    for _ in 0..30_000 {
        let spec: String = (0..rand() % 12)
            .map(|_| PIECES[(rand() % PIECES.len() as u64) as usize])
            .collect();
        let Ok(s) = spec.parse::<Schedule>() else {
            continue;
        };
        parsed += 1;
        assert_eq!(
            s.to_string().parse::<Schedule>().as_ref(),
            Ok(&s),
            "{spec:?}"
        );
        let (at, end) = s
            .next(now, rand())
            .unwrap_or_else(|| panic!("{spec:?} never fires"));
        assert!(now <= at && at < end, "{spec:?}: {at} {end}");
        assert!(s.contains(at), "{spec:?}: {at}");
    }
    assert!(
        parsed > 100,
        "the fuzzer should find valid schedules too ({parsed})"
    );
}
