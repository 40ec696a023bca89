//! Small helpers the tests share: waiting for a condition, a process's CPU time.

use std::fs;
use std::time::{Duration, Instant};

/// Waits (up to 20 s) until `what` holds, checking every 50 ms; fails the test otherwise.
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `secs` until `what` holds, checking every 200 ms; fails the test otherwise.
#[track_caller]
pub fn within(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CPU time (user + system, in clock ticks) process `pid` has used so far.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // The fields after the command (which is in parentheses and may hold spaces); utime and
    // stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}
