//! The store's database (SQLite, `DIR/store.db`): publishers, packs, revisions, the release
//! history of every channel, the signed assertions, and a serial that grows with every change
//! (the version of what the store says; signed into each refresh answer).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::channel::{Channel, Release};

type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS publishers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_sha3 TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS packs (
    pack_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, publisher_id TEXT NOT NULL,
    registered INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
    pack_id TEXT NOT NULL, revision INTEGER NOT NULL, version TEXT NOT NULL,
    summary TEXT NOT NULL, description TEXT NOT NULL, pack_type TEXT NOT NULL, base TEXT,
    sha3 TEXT NOT NULL, size INTEGER NOT NULL, uploaded INTEGER NOT NULL, revoked INTEGER,
    PRIMARY KEY (pack_id, revision));
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, pack_id TEXT NOT NULL, channel TEXT NOT NULL,
    revision INTEGER, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assertions (
    kind TEXT NOT NULL, key TEXT NOT NULL, revision INTEGER NOT NULL, sign_key TEXT NOT NULL,
    text BLOB NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pack_id TEXT NOT NULL, channel TEXT NOT NULL,
    revision INTEGER NOT NULL, salt TEXT NOT NULL, waves TEXT NOT NULL, canaries TEXT NOT NULL,
    halt TEXT, state TEXT NOT NULL, why TEXT, wave INTEGER NOT NULL,
    wave_started INTEGER NOT NULL, created INTEGER NOT NULL,
    base_failed INTEGER NOT NULL DEFAULT 0, base_healthy INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rollout_devices (
    rollout INTEGER NOT NULL, device_id TEXT NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (rollout, device_id, outcome));
CREATE TABLE IF NOT EXISTS rollout_counts (
    rollout INTEGER NOT NULL, wave INTEGER NOT NULL, outcome TEXT NOT NULL,
    devices INTEGER NOT NULL, PRIMARY KEY (rollout, wave, outcome));
CREATE TABLE IF NOT EXISTS reports (
    device_id TEXT NOT NULL, pack_id TEXT NOT NULL, revision INTEGER NOT NULL,
    outcome TEXT NOT NULL, task TEXT, message TEXT, at INTEGER NOT NULL);
";

pub struct Db {
    pub(crate) conn: Connection,
}

/// A publisher, as its token proves.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub id: String,
    pub name: String,
}

/// A pack as registered.
#[derive(Debug, Clone)]
pub struct PackRow {
    pub pack_id: String,
    pub name: String,
    pub publisher_id: String,
    pub publisher: String,
}

/// One uploaded revision.
#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub pack_id: String,
    pub revision: u32,
    pub version: String,
    pub summary: String,
    pub description: String,
    pub pack_type: String,
    pub base: Option<String>,
    pub sha3: String,
    pub size: u64,
    pub revoked: Option<i64>,
    /// The packs its content plugs name as `default-provider`.
    pub providers: Vec<String>,
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        // Columns that stores made by an earlier pack-store do not have yet.
        for (table, column) in [("revisions", "providers"), ("reports", "report_id")] {
            let has = conn
                .prepare(&format!("SELECT {column} FROM {table} LIMIT 0"))
                .is_ok();
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))
                    .map_err(sql)?;
            }
        }
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS reports_once ON reports (device_id, report_id)",
        )
        .map_err(sql)?;
        Ok(Db { conn })
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// The serial: how many changes the store has seen.
    pub fn serial(&self) -> Result<u64> {
        Ok(self
            .setting("serial")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Records a change: the serial grows by one.
    pub fn bump(&self) -> Result<u64> {
        let next = self.serial()? + 1;
        self.set_setting("serial", &next.to_string())?;
        Ok(next)
    }

    pub fn add_publisher(&self, id: &str, name: &str, token_sha3: &str, now: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO publishers (id, name, token_sha3, created) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, token_sha3, now],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!("a publisher named {name:?} exists already"))
                }
                e => sql(e),
            })?;
        Ok(())
    }

    pub fn publisher_by_token(&self, token_sha3: &str) -> Result<Option<Publisher>> {
        self.conn
            .query_row(
                "SELECT id, name FROM publishers WHERE token_sha3 = ?1",
                [token_sha3],
                |r| {
                    Ok(Publisher {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sql)
    }

    pub fn add_pack(&self, pack_id: &str, name: &str, publisher_id: &str, now: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO packs (pack_id, name, publisher_id, registered) VALUES (?1, ?2, ?3, ?4)",
                params![pack_id, name, publisher_id, now],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn packs(&self) -> Result<Vec<PackRow>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT p.pack_id, p.name, p.publisher_id, u.name FROM packs p
                 JOIN publishers u ON u.id = p.publisher_id ORDER BY p.name",
            )
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| {
                Ok(PackRow {
                    pack_id: r.get(0)?,
                    name: r.get(1)?,
                    publisher_id: r.get(2)?,
                    publisher: r.get(3)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    pub fn pack(&self, name: &str) -> Result<Option<PackRow>> {
        Ok(self.packs()?.into_iter().find(|p| p.name == name))
    }

    pub fn add_revision(&self, r: &RevisionRow, now: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO revisions (pack_id, revision, version, summary, description,
                 pack_type, base, sha3, size, uploaded, providers)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                params![
                    r.pack_id,
                    r.revision,
                    r.version,
                    r.summary,
                    r.description,
                    r.pack_type,
                    r.base,
                    r.sha3,
                    r.size as i64,
                    now,
                    r.providers.join(",")
                ],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn revisions(&self) -> Result<Vec<RevisionRow>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT pack_id, revision, version, summary, description, pack_type, base, sha3,
                 size, revoked, providers FROM revisions ORDER BY pack_id, revision",
            )
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| {
                Ok(RevisionRow {
                    pack_id: r.get(0)?,
                    revision: r.get(1)?,
                    version: r.get(2)?,
                    summary: r.get(3)?,
                    description: r.get(4)?,
                    pack_type: r.get(5)?,
                    base: r.get(6)?,
                    sha3: r.get(7)?,
                    size: r.get::<_, i64>(8)? as u64,
                    revoked: r.get(9)?,
                    providers: r
                        .get::<_, Option<String>>(10)?
                        .unwrap_or_default()
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    pub fn next_revision(&self, pack_id: &str) -> Result<u32> {
        let max: Option<u32> = self
            .conn
            .query_row(
                "SELECT MAX(revision) FROM revisions WHERE pack_id = ?1",
                [pack_id],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(max.unwrap_or(0) + 1)
    }

    pub fn revoke_revision(&self, pack_id: &str, revision: u32, now: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE revisions SET revoked = ?3 WHERE pack_id = ?1 AND revision = ?2",
                params![pack_id, revision, now],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn add_release(
        &self,
        pack_id: &str,
        channel: &Channel,
        revision: Option<u32>,
        now: i64,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO releases (pack_id, channel, revision, at) VALUES (?1, ?2, ?3, ?4)",
                params![pack_id, channel.to_string(), revision, now],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Every pack's release history, oldest first.
    pub fn releases(&self) -> Result<Vec<(String, Release)>> {
        let mut q = self
            .conn
            .prepare("SELECT pack_id, channel, revision, at FROM releases ORDER BY seq")
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<u32>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (pack_id, channel, revision, at) = row.map_err(sql)?;
            // Written by this store from a parsed channel: always parses back.
            if let Ok(channel) = channel.parse() {
                out.push((
                    pack_id,
                    Release {
                        channel,
                        revision,
                        at,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Stores a signed assertion, replacing an older revision of the same one.
    pub fn put_assertion(&self, a: &packfmt::assertion::Assertion) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO assertions (kind, key, revision, sign_key, text) VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT(kind, key) DO UPDATE SET revision = excluded.revision,
                 sign_key = excluded.sign_key, text = excluded.text",
                params![
                    a.kind().name(),
                    a.primary_key().join("/"),
                    a.revision() as i64,
                    a.sign_key(),
                    a.encode()
                ],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Every stored assertion's text.
    pub fn assertions(&self) -> Result<Vec<Vec<u8>>> {
        let mut q = self
            .conn
            .prepare("SELECT text FROM assertions ORDER BY kind, key")
            .map_err(sql)?;
        let rows = q.query_map([], |r| r.get(0)).map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    /// Records a device's report on a refresh; whether it was new (not sent before).
    pub fn add_report(&self, r: &Report, now: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO reports
                 (device_id, pack_id, revision, outcome, task, message, at, report_id)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                params![
                    r.device_id,
                    r.pack_id,
                    r.revision,
                    r.outcome,
                    r.task,
                    r.message,
                    now,
                    r.report_id
                ],
            )
            .map_err(sql)?;
        Ok(n == 1)
    }

    /// How many devices reported each outcome of each revision of `pack_id`.
    pub fn report_counts(&self, pack_id: &str) -> Result<Vec<(u32, String, u64)>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT revision, outcome, COUNT(DISTINCT device_id) FROM reports
                 WHERE pack_id = ?1 GROUP BY revision, outcome ORDER BY revision, outcome",
            )
            .map_err(sql)?;
        let rows = q
            .query_map(params![pack_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    /// Runs `f` in one transaction: all of it or nothing.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(sql)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// A device's report on one refresh (`POST /v1/reports`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// The device's own id for this report: sent again, it still counts once.
    #[serde(default)]
    pub report_id: Option<String>,
    /// The channel the revision came from (its offer's `released-to`).
    #[serde(default)]
    pub channel: Option<String>,
    pub device_id: String,
    pub pack_id: String,
    pub revision: u32,
    pub outcome: String,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The outcomes a device reports.
pub const OUTCOMES: &[&str] = &[
    "started",
    "downloaded",
    "installed",
    "healthy",
    "failed",
    "reverted",
];
