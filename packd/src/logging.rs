//! packd's own log: tracing's output on standard error, which may be a full disk, a pipe
//! whose reader died, or closed. Logging never takes packd down and never spins: a line that
//! cannot be written is counted and dropped (no retry, no report through the log itself,
//! which would fail the same way), and the next line that can be written is preceded by one
//! saying how many were lost and why.
//!
//! Why not tracing-subscriber's own handling: on a failed write it prints a complaint with
//! `eprintln!`, which panics when standard error is what failed (`packd 2>/dev/full`).

use std::io::{self, Write};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// Where lines go, and what was lost since the last one that got there.
struct Sink {
    out: Box<dyn Write + Send>,
    lost: u64,
    why: Option<String>,
}

/// The writer packd's subscriber is built with ([`Stderr::new`]).
pub struct Stderr {
    sink: Mutex<Sink>,
}

impl Default for Stderr {
    fn default() -> Self {
        Stderr::to(Box::new(io::stderr()))
    }
}

impl Stderr {
    pub fn new() -> Stderr {
        Stderr::default()
    }

    /// Lines to `out` instead (tests).
    pub fn to(out: Box<dyn Write + Send>) -> Stderr {
        Stderr {
            sink: Mutex::new(Sink {
                out,
                lost: 0,
                why: None,
            }),
        }
    }

    /// Writes one formatted line (tracing hands over each event whole).
    fn line(&self, buf: &[u8]) {
        let Ok(mut guard) = self.sink.lock() else {
            return;
        };
        let sink = &mut *guard;
        if sink.lost > 0 {
            let note = format!(
                "packd: {} log line{} could not be written ({})\n",
                sink.lost,
                if sink.lost == 1 { "" } else { "s" },
                sink.why.as_deref().unwrap_or("unknown error")
            );
            if sink.out.write_all(note.as_bytes()).is_err() {
                sink.lost += 1;
                return;
            }
            sink.lost = 0;
            sink.why = None;
        }
        if let Err(e) = sink.out.write_all(buf) {
            sink.lost += 1;
            sink.why = Some(e.to_string());
        }
    }
}

/// One event's writer: collects the formatted event, writes it when dropped.
pub struct Line<'a> {
    to: &'a Stderr,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.to.line(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            to: self,
            buf: Vec::new(),
        }
    }
}

/// Writes `msg` and a newline to standard error, if it can (for packd's last words).
pub fn last_words(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A writer that fails (as a full disk) while `full` is set, and keeps what it took.
    struct Disk {
        full: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<u8>>>,
        attempts: Arc<Mutex<u32>>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            *self.attempts.lock().unwrap() += 1;
            if self.full.load(Ordering::SeqCst) {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lost_lines_are_counted_once_and_reported_when_writing_works_again() {
        let full = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let log = Stderr::to(Box::new(Disk {
            full: full.clone(),
            got: got.clone(),
            attempts: attempts.clone(),
        }));
        let line = |s: &str| {
            let mut w = log.make_writer();
            w.write_all(s.as_bytes()).unwrap();
        };
        line("one\n");
        full.store(true, Ordering::SeqCst);
        for _ in 0..1000 {
            line("lost\n");
        }
        // One attempt per line: nothing retried, nothing spins.
        assert_eq!(*attempts.lock().unwrap(), 1001);
        full.store(false, Ordering::SeqCst);
        line("two\n");
        line("three\n");
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "one\npackd: 1000 log lines could not be written (No space left on device (os error 28))\ntwo\nthree\n"
        );
    }
}
