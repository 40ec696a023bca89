//! What packd writes down about each service it runs (`run/packd/services/PACK.APP.json`),
//! before its monitor starts: enough for a packd that restarts to find the service again and
//! to clean up after it when its monitor is gone. In `/run`, so a reboot forgets it with the
//! processes.

use std::path::{Path, PathBuf};

use confine::proto::ExitRecord;
use packfmt::Revision;
use serde::{Deserialize, Serialize};

use super::supervisor::UnitFiles;
use crate::error::{IoContext, IoError};
use crate::fsutil;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UnitRecord {
    pub pack: String,
    pub app: String,
    /// The revision it was started from.
    pub revision: Revision,
    /// Its sandbox's cgroup, relative to the hierarchies' roots.
    pub cgroup: Option<PathBuf>,
    /// `packd` or `systemd`.
    pub supervisor: String,
    /// Seconds since the epoch.
    pub started_at: u64,
}

impl UnitRecord {
    pub fn write(&self, files: &UnitFiles) -> Result<(), IoError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| IoError::new("cannot encode a service record", e.into()))?;
        if let Some(dir) = files.record.parent() {
            fsutil::ensure_dir(dir, 0o700).ctx("create", dir)?;
        }
        fsutil::write_atomic(&files.record, &bytes, 0o600).ctx("write", &files.record)
    }

    pub fn read(path: &Path) -> Option<UnitRecord> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// The records in `dir`, with the files they go with; unreadable ones are removed.
pub fn all(dir: &Path) -> Vec<UnitRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.ends_with(".spec.json") {
            continue;
        }
        match UnitRecord::read(&path) {
            Some(r) if name == format!("{}.{}.json", r.pack, r.app) => out.push(r),
            _ => {
                tracing::warn!(path = %path.display(), "removing an unreadable service record");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out.sort_by(|a, b| (&a.pack, &a.app).cmp(&(&b.pack, &b.app)));
    out
}

/// How the sandbox ended, from its monitor's record (when it got to write one).
pub fn exit_record(files: &UnitFiles) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(&files.exit_record).ok()?).ok()
}

/// Forgets a service's files once its run is over.
pub fn remove(files: &UnitFiles) {
    files.remove_runtime();
    let _ = std::fs::remove_file(&files.record);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    #[test]
    fn records_round_trip_and_strays_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let files = UnitFiles::new(&paths, "svc", "tick");
        let rec = UnitRecord {
            pack: "svc".into(),
            app: "tick".into(),
            revision: Revision::Local(2),
            cgroup: Some("packd/root-x/sandbox.1.0".into()),
            supervisor: "packd".into(),
            started_at: 7,
        };
        rec.write(&files).unwrap();
        let stray = paths.services_dir().join("other.app.json");
        std::fs::write(&stray, b"{not json").unwrap();
        std::fs::write(paths.services_dir().join("svc.tick.spec.json"), b"{}").unwrap();
        assert_eq!(all(&paths.services_dir()), [rec]);
        assert!(!stray.exists());
        remove(&files);
        assert!(all(&paths.services_dir()).is_empty());
    }
}
