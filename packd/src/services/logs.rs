//! Service output: every line a service writes to stdout or stderr is appended, with a
//! timestamp, to `var/log/packd/NAME.APP.log`, rotated to `.log.1` past [`ROTATE_AT`] (one
//! old file kept, so a service's log takes at most twice that). `pack logs` reads them back,
//! merged in time order, and can follow them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use tokio::io::AsyncBufReadExt;

/// Size past which a log is rotated.
pub const ROTATE_AT: u64 = 1 << 20;

pub use packd_api::types::LogLine;

/// `var/log/packd/NAME.APP.log`.
pub fn log_file(root: &Path, pack: &str, app: &str) -> PathBuf {
    root.join("var/log/packd").join(format!("{pack}.{app}.log"))
}

/// Copies `output` (the read end of a service's stdout and stderr) into its log until every
/// writer has closed it.
pub async fn pump(output: tokio::net::unix::pipe::Receiver, path: PathBuf, app: String) {
    let mut lines = tokio::io::BufReader::new(output).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(app, error = %e, "cannot read a service's output");
                return;
            }
        };
        let entry = format!("{} {line}\n", timestamp());
        let path = path.clone();
        let written = tokio::task::spawn_blocking(move || append(&path, entry.as_bytes())).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(app, error = %e, "cannot write a service's log");
        }
    }
}

/// Appends one entry to a log written by packd itself (a service's start, exit or restart).
pub fn note(root: &Path, pack: &str, app: &str, message: &str) {
    let entry = format!("{} [packd] {message}\n", timestamp());
    if let Err(e) = append(&log_file(root, pack, app), entry.as_bytes()) {
        tracing::warn!(pack, app, error = %e, "cannot write a service's log");
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
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

/// Appends to a log, made root-only (0600 in a 0700 directory): services print secrets.
fn append(path: &Path, entry: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::fsutil::ensure_dir(dir, 0o700)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        std::fs::rename(path, rotated(path))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(entry)
}

fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
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

    #[test]
    fn a_full_log_is_rotated_and_one_old_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, vec![b'x'; ROTATE_AT as usize]).unwrap();
        append(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(std::fs::metadata(rotated(&path)).unwrap().len(), ROTATE_AT);
        // The next rotation replaces the old file: never more than two.
        std::fs::write(&path, vec![b'y'; ROTATE_AT as usize]).unwrap();
        append(&path, b"newer\n").unwrap();
        assert_eq!(std::fs::read(rotated(&path)).unwrap()[0], b'y');
    }
}
