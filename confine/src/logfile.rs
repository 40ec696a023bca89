//! Service logs as files: one line per line of output, `TIMESTAMP MESSAGE`, appended to
//! `NAME.log` and rotated to `NAME.log.1` past a size (one old file kept). Root's alone: the
//! files are 0600 in a 0700 directory, because services print secrets.
//!
//! A write that fails (a full disk, a log on a file system that went away) never blocks or
//! stops the writer: the line is counted as lost, and once a write succeeds again the log says
//! how many were lost and why, once.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The timestamp of a log line: RFC 3339, UTC, microseconds (they sort as strings).
pub fn timestamp() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// `LOG.1`, where a rotated log goes.
pub fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// Appends one entry to the log at `path` (rotating it first when it is past `rotate_at`),
/// making its directory 0700 and the file 0600 when they are new.
pub fn append(path: &Path, entry: &[u8], rotate_at: u64) -> io::Result<()> {
    let mut f = open(path, rotate_at)?;
    f.write_all(entry)
}

fn open(path: &Path, rotate_at: u64) -> io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= rotate_at) {
        std::fs::rename(path, rotated(path))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A log kept open by its one writer (a service's monitor), counting what it could not write.
pub struct LogFile {
    path: PathBuf,
    rotate_at: u64,
    file: Option<File>,
    /// Bytes in the open file, to know when to rotate without a `stat` per line.
    size: u64,
    lost: u64,
    /// Lost since the log last said so, and the first error among them.
    unreported: u64,
    why: Option<String>,
}

impl LogFile {
    pub fn new(path: PathBuf, rotate_at: u64) -> LogFile {
        LogFile {
            path,
            rotate_at,
            file: None,
            size: 0,
            lost: 0,
            unreported: 0,
            why: None,
        }
    }

    /// Lines that could not be written, in all.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// One line of the service's output (without its newline).
    pub fn line(&mut self, message: &[u8]) {
        let mut entry = Vec::with_capacity(message.len() + 40);
        entry.extend_from_slice(timestamp().as_bytes());
        entry.push(b' ');
        entry.extend_from_slice(message);
        entry.push(b'\n');
        self.write(&entry);
    }

    /// A line of packd's own: `[packd] MESSAGE`.
    pub fn note(&mut self, message: &str) {
        self.line(format!("[packd] {message}").as_bytes());
    }

    fn write(&mut self, entry: &[u8]) {
        if self.unreported > 0 {
            let why = self.why.take().unwrap_or_default();
            let said = format!(
                "{} [packd] {} lines of output were lost: cannot write this log ({why})\n",
                timestamp(),
                self.unreported
            );
            if self.try_write(said.as_bytes()).is_err() {
                self.lose(None);
                return;
            }
            self.unreported = 0;
        }
        if let Err(e) = self.try_write(entry) {
            self.lose(Some(e));
        }
    }

    fn lose(&mut self, error: Option<io::Error>) {
        self.lost += 1;
        self.unreported += 1;
        if let Some(e) = error {
            self.why.get_or_insert_with(|| e.to_string());
        }
        // Opened again at the next line: the file may have been rotated or removed.
        self.file = None;
    }

    fn try_write(&mut self, entry: &[u8]) -> io::Result<()> {
        if self.size >= self.rotate_at {
            self.file = None;
        }
        if self.file.is_none() {
            let f = open(&self.path, self.rotate_at)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("the log is not open"));
        };
        f.write_all(entry)?;
        self.size += entry.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_and_rotated_at_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/x.log");
        let mut log = LogFile::new(path.clone(), 64);
        log.line(b"one");
        log.note("started");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(" one") && lines[0].len() > 20, "{text}");
        assert!(lines[1].ends_with(" [packd] started"), "{text}");
        // Past 64 bytes: the next line starts a new file.
        log.line(b"three");
        assert_eq!(std::fs::read_to_string(rotated(&path)).unwrap(), text);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with(" three\n")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn lost_lines_are_counted_and_said_once_writing_works_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        // A directory where the log should be: every write fails.
        std::fs::create_dir(&path).unwrap();
        let mut log = LogFile::new(path.clone(), 1 << 20);
        log.line(b"a");
        log.line(b"b");
        assert_eq!(log.lost(), 2);
        std::fs::remove_dir(&path).unwrap();
        log.line(b"c");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("[packd] 2 lines of output were lost"),
            "{text}"
        );
        assert!(lines[1].ends_with(" c"), "{text}");
        log.line(b"d");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn append_rotates_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, vec![b'x'; 10]).unwrap();
        append(&path, b"new\n", 10).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        std::fs::write(&path, vec![b'y'; 10]).unwrap();
        append(&path, b"newer\n", 10).unwrap();
        assert_eq!(std::fs::read(rotated(&path)).unwrap()[0], b'y');
    }
}
