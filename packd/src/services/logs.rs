//! Service and hook output: every line a service writes to stdout or stderr is appended,
//! with a timestamp, to `var/log/packd/NAME.APP.log`, rotated to `.log.1` past [`ROTATE_AT`]
//! (one old file kept, so a log takes at most twice that). A running service's log is
//! written by its monitor (`confine::logfile`), whether packd is up or not; hooks' and
//! `stop-command`s' output is pumped here. `pack logs` reads them back, merged in time order,
//! and follows them (woken by inotify).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use confine::logfile::{LogFile, rotated, timestamp};
use tokio::io::AsyncReadExt;

/// Size past which a log is rotated.
pub const ROTATE_AT: u64 = 1 << 20;

pub use packd_api::types::LogLine;

/// `var/log/packd/NAME.APP.log`.
pub fn log_file(root: &Path, pack: &str, app: &str) -> PathBuf {
    crate::paths::Paths::new(root).log_file(pack, app)
}

/// Copies `output` (the read end of a hook's or `stop-command`'s stdout and stderr) into its
/// log until every writer has closed it. A log that cannot be written loses lines (counted,
/// and said once it can be written again); the output is read regardless, so the writer
/// never blocks and never gets SIGPIPE.
pub async fn pump(mut output: tokio::net::unix::pipe::Receiver, path: PathBuf) {
    let mut log = LogFile::new(path, ROTATE_AT);
    let mut buf = vec![0u8; 64 << 10];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match output.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut lines = Vec::new();
        for b in &buf[..n] {
            if *b == b'\n' {
                lines.push(std::mem::take(&mut partial));
            } else {
                partial.push(*b);
            }
        }
        if !lines.is_empty() {
            log = tokio::task::spawn_blocking(move || {
                for l in lines {
                    log.line(&l);
                }
                log
            })
            .await
            .unwrap_or_else(|_| LogFile::new(PathBuf::new(), ROTATE_AT));
        }
    }
    if !partial.is_empty() {
        let _ = tokio::task::spawn_blocking(move || log.line(&partial)).await;
    }
}

/// Appends a line of packd's own to a log no monitor is writing (between a service's runs,
/// and for hooks). A failure is logged at debug level only: the line is about the log itself.
pub fn note(root: &Path, pack: &str, app: &str, message: &str) {
    let entry = format!("{} [packd] {message}\n", timestamp());
    if let Err(e) =
        confine::logfile::append(&log_file(root, pack, app), entry.as_bytes(), ROTATE_AT)
    {
        tracing::debug!(pack, app, error = %e, "cannot write a service's log");
    }
}

/// Makes the log directory root's alone (0700, files 0600), whatever an older packd left:
/// services print secrets. Run at daemon start.
pub fn secure(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join("var/log/packd");
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fsutil::ensure_dir(&dir, 0o700)?;
    for e in std::fs::read_dir(&dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Removes every log of `pack` (its services' and hooks', rotated ones too).
pub fn remove_all(root: &Path, pack: &str) -> std::io::Result<()> {
    let dir = root.join("var/log/packd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let prefix = format!("{pack}.");
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Every line of the logs of `apps` (`(pack, app)`), oldest first.
pub fn read(root: &Path, apps: &[(String, String)]) -> Vec<LogLine> {
    let mut all = Vec::new();
    for (pack, app) in apps {
        let path = log_file(root, pack, app);
        for file in [rotated(&path), path] {
            let Ok(f) = std::fs::File::open(&file) else {
                continue;
            };
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                if let Some(l) = parse(&line, pack, app) {
                    all.push(l);
                }
            }
        }
    }
    // Timestamps of one format sort as strings; the sort is stable within a file.
    all.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    all
}

/// Sends (as `encode` makes them) the lines appended to the logs of `apps` from now on, until
/// the receiver goes. Woken by inotify on the log directory (every write, rotation and new
/// file), with a slow tick as a safety net where inotify is not available.
pub async fn follow(
    root: &Path,
    apps: &[(String, String)],
    tx: &tokio::sync::mpsc::Sender<LogLine>,
) {
    use futures_util::StreamExt;
    use std::os::unix::fs::MetadataExt;
    let dir = root.join("var/log/packd");
    let mut events = inotify::Inotify::init().and_then(|i| {
        i.watches().add(
            &dir,
            inotify::WatchMask::MODIFY | inotify::WatchMask::CREATE | inotify::WatchMask::MOVED_TO,
        )?;
        i.into_event_stream(vec![0u8; 4096])
    });
    if let Err(e) = &events {
        tracing::debug!(error = %e, "no inotify for the logs; following them on a timer");
    }
    // Per app, in `apps`' order: its log, and the inode and offset read up to.
    let mut at: Vec<(PathBuf, (u64, u64))> = apps
        .iter()
        .map(|(pack, app)| {
            let path = log_file(root, pack, app);
            let pos = std::fs::metadata(&path).map_or((0, 0), |m| (m.ino(), m.len()));
            (path, pos)
        })
        .collect();
    loop {
        let woken = async {
            match events.as_mut() {
                Ok(stream) => stream.next().await.is_some(),
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    true
                }
            }
        };
        tokio::select! {
            () = tx.closed() => return,
            alive = woken => if !alive { return },
            // A rotation can race with the watch; never wait long for a line.
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
        for ((pack, app), (path, pos)) in apps.iter().zip(at.iter_mut()) {
            for line in new_lines(path, pos) {
                if let Some(l) = parse(&line, pack, app)
                    && tx.send(l).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// The whole lines added to `path` since `pos` (inode, offset), which moves on; a rotated or
/// truncated file is read from its start.
fn new_lines(path: &Path, pos: &mut (u64, u64)) -> Vec<String> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::MetadataExt;
    let (ino, offset) = pos;
    let Ok(md) = std::fs::metadata(path) else {
        return Vec::new();
    };
    if md.ino() != *ino || md.len() < *offset {
        *ino = md.ino();
        *offset = 0;
    }
    if md.len() == *offset {
        return Vec::new();
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    if f.seek(std::io::SeekFrom::Start(*offset)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    // Only whole lines; a partial one waits for its end.
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    *offset += end as u64 + 1;
    String::from_utf8_lossy(&buf[..end])
        .lines()
        .map(str::to_string)
        .collect()
}

fn parse(line: &str, pack: &str, app: &str) -> Option<LogLine> {
    let (timestamp, message) = line.split_once(' ')?;
    Some(LogLine {
        timestamp: timestamp.to_string(),
        app: format!("{pack}.{app}"),
        message: message.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_merged_in_time_order_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = log_file(root, "p", "a");
        std::fs::create_dir_all(a.parent().unwrap()).unwrap();
        std::fs::write(rotated(&a), "2026-01-01T00:00:01.000000Z one\n").unwrap();
        std::fs::write(&a, "2026-01-01T00:00:03.000000Z three\n").unwrap();
        std::fs::write(
            log_file(root, "p", "b"),
            "2026-01-01T00:00:02.000000Z two\n",
        )
        .unwrap();
        let apps = [("p".to_string(), "a".to_string()), ("p".into(), "b".into())];
        let got: Vec<String> = read(root, &apps)
            .into_iter()
            .map(|l| format!("{} {}", l.app, l.message))
            .collect();
        assert_eq!(got, ["p.a one", "p.b two", "p.a three"]);
    }
}
