//! What one peer may hold of the API's sockets, and what happens when descriptors run out.
//! Without limits, any local user could lock everyone out: idle connections use up the
//! daemon's descriptors, `accept` then fails at once, forever, and a naive loop spins on it.
//!
//! - **Per peer**: a user (its uid, on the main socket or one pack's socket) holds at most
//!   [`PER_PEER`] connections at once; the next is closed as soon as it is accepted. Root on
//!   the main socket is not limited (it is who must get in when something is wrong).
//! - **Silence**: a connection that sends nothing within [`FIRST_BYTES`] is closed, and each
//!   request's head must arrive within [`HEAD_TIMEOUT`] of when packd starts waiting for it
//!   (hyper's header timeout, which also ends idle keep-alive connections). Long answers
//!   (`pack logs -f`, `pack run`) are not cut: they are not idle.
//! - **Out of descriptors** (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` from `accept`): the loop
//!   backs off (10 ms, doubling to 1 s) instead of spinning, and says so at most once every
//!   [`LOG_EVERY`], with how many times it happened.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Connections one peer may hold at once.
pub const PER_PEER: usize = 64;
/// How long a new connection may stay silent.
pub const FIRST_BYTES: Duration = Duration::from_secs(10);
/// How long a request's head may take (and an idle keep-alive connection may wait).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a run of accept failures is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

type Key = (u32, Option<String>);

static OPEN: LazyLock<Mutex<HashMap<Key, usize>>> = LazyLock::new(Default::default);

/// One admitted connection; gives its place back when dropped.
pub struct Admitted(Option<Key>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(key) = self.0.take() {
            let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// Admits a connection from `uid` on the socket of `pack` (`None`: the main socket), unless
/// that peer holds [`PER_PEER`] already.
pub fn admit(uid: u32, pack: Option<&str>) -> Option<Admitted> {
    if uid == 0 && pack.is_none() {
        return Some(Admitted(None));
    }
    let key = (uid, pack.map(str::to_string));
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    let n = open.entry(key.clone()).or_insert(0);
    if *n >= PER_PEER {
        return None;
    }
    *n += 1;
    Some(Admitted(Some(key)))
}

/// Says (at most once every [`LOG_EVERY`], with how many) that connections were refused.
pub fn note_refused(uid: u32) {
    static LAST: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    last.1 += 1;
    let now = Instant::now();
    if last.0.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
        tracing::warn!(
            uid,
            refused = last.1,
            "a peer holds {PER_PEER} API connections already; closing its new ones"
        );
        *last = (Some(now), 0);
    }
}

/// The accept loop's answer to failures: how long to wait before the next try, and when to
/// say so.
#[derive(Debug)]
pub struct Backoff {
    wait: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            wait: Duration::ZERO,
            failures: 0,
            logged: None,
        }
    }
}

impl Backoff {
    /// An accept failed with `e`: how long to wait before the next.
    pub fn failed(&mut self, e: &std::io::Error, now: Instant) -> Duration {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        self.failures += 1;
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                error = %e,
                failures = self.failures,
                "cannot accept API connections{}",
                if exhausted { " (out of descriptors: backing off)" } else { "" }
            );
            self.logged = Some(now);
            self.failures = 0;
        }
        if !exhausted {
            return Duration::ZERO;
        }
        self.wait = (self.wait * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.wait
    }

    /// An accept succeeded: the next failure starts over.
    pub fn succeeded(&mut self) {
        self.wait = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back() {
        let uid = 4_000_123;
        let held: Vec<Admitted> = (0..PER_PEER).map(|_| admit(uid, None).unwrap()).collect();
        assert!(admit(uid, None).is_none(), "one too many");
        // Another peer, or the same uid on a pack's socket, is counted apart.
        assert!(admit(uid + 1, None).is_some());
        assert!(admit(uid, Some("web")).is_some());
        // Root on the main socket always gets in.
        let root: Vec<Admitted> = (0..PER_PEER * 2).map(|_| admit(0, None).unwrap()).collect();
        drop(root);
        drop(held);
        assert!(admit(uid, None).is_some(), "places are given back");
    }

    #[test]
    fn running_out_of_descriptors_backs_off_and_is_logged_rarely() {
        let mut b = Backoff::default();
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| b.failed(&emfile, t0)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[9], Duration::from_secs(1));
        assert_eq!(b.failures, 9, "logged once, then counted");
        b.failed(&emfile, t0 + LOG_EVERY);
        assert_eq!(b.failures, 0, "logged again after LOG_EVERY");
        b.succeeded();
        assert_eq!(b.failed(&emfile, t0), Duration::from_millis(10));
        // Other failures (an aborted connection) do not slow accepting.
        let aborted = std::io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(b.failed(&aborted, t0), Duration::ZERO);
    }
}
