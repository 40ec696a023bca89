//! The JSON the API speaks, shared by the daemon and the `pack` client.

use std::collections::BTreeMap;
use std::path::PathBuf;

use packfmt::Revision;
use serde::{Deserialize, Serialize};

/// snapd's response envelope: `{"type": "sync"|"async"|"error", "status-code", "status",
/// "result", "change"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub status_code: u16,
    pub status: String,
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// The `result` of an error envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResult {
    pub message: String,
    /// A stable machine-readable kind, e.g. `pack-not-found`.
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AppInfo {
    pub name: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
    /// The launcher in `pack/bin`.
    pub launcher: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevisionInfo {
    pub revision: Revision,
    pub version: String,
    pub current: bool,
    pub size: u64,
    pub install_date: String,
}

/// One installed pack, as `pack list` and `pack info` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackInfo {
    pub name: String,
    pub version: String,
    pub revision: Revision,
    #[serde(rename = "type")]
    pub pack_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub confinement: String,
    pub grade: String,
    /// Extra facts shown in `pack list`'s notes column: `devmode`, `disabled`, `snap.yaml`.
    #[serde(default)]
    pub notes: Vec<String>,
    pub installed_size: u64,
    pub install_date: String,
    pub sha3_384: String,
    /// Where the current revision is mounted.
    pub mount: PathBuf,
    pub apps: Vec<AppInfo>,
    pub revisions: Vec<RevisionInfo>,
    /// The store it comes from (`pack remote`), `None` for a local file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The channel it follows in that store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskInfo {
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub status: String,
    #[serde(default)]
    pub log: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChangeInfo {
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub status: String,
    pub ready: bool,
    pub spawn_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// The packs the change is about.
    #[serde(default)]
    pub pack_names: Vec<String>,
    pub tasks: Vec<TaskInfo>,
}

/// `POST /v2/packs/{name}`: `remove`, `revert`, `install` (from a store; answered with a
/// stream of [`crate::store::StoreEvent`]s) or `switch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackAction {
    pub action: String,
    /// `revert`: the revision to go back to (default: the one before the current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `remove`: also the pack's service and hook logs.
    #[serde(default)]
    pub purge: bool,
    /// `install` (from a store) and `switch`: the channel to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `install`: the store to install from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SystemInfo {
    pub version: String,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub architecture: String,
}

/// `POST /v2/run` (an HTTP upgrade to the run protocol).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunRequest {
    /// `NAME` or `NAME.APP`.
    pub target: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: PathBuf,
    /// The caller's resource limits (`ulimit`): the app's are lowered to them, never raised.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
}

/// One resource limit of `pack run`'s caller: `resource` as `prlimit(1)` names it (`nofile`,
/// `nproc`, `fsize`, …); `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The upgrade token of the run protocol.
pub const RUN_PROTOCOL: &str = "packd-run/1";

/// A header of the `101` answer to `/v2/run`: `true` when the app runs in devmode.
pub const RUN_DEVMODE_HEADER: &str = "packd-devmode";

/// Messages from the daemon after the upgrade, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum RunEvent {
    /// The app is running (in devmode: its sandbox logs instead of denying).
    Started {
        #[serde(default)]
        devmode: bool,
    },
    /// The app ended; `code` is its exit status, or 128 + the signal that killed it.
    Exit { code: i32 },
    /// The app could not be started; `code` is what `pack run` should exit with.
    Error { message: String, code: i32 },
}

/// Messages from the client after the upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum RunControl {
    /// Deliver this signal to the app.
    Signal { signal: i32 },
}

/// One entry of `GET /v2/connections`: a connection, or an unconnected plug (`slot` null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub interface: String,
    pub plug: String,
    pub slot: Option<String>,
    pub manual: bool,
}

/// `POST /v2/connections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// `connect` or `disconnect`.
    pub action: String,
    pub plug: String,
    /// `PACK:SLOT`; for connect, absent means the only slot that fits.
    #[serde(default)]
    pub slot: Option<String>,
}

/// An attribute an interface takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttrInfo {
    pub name: String,
    pub required: bool,
    pub doc: String,
}

/// One entry of `GET /v2/interfaces`, and (with the details) `GET /v2/interfaces/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterfaceInfo {
    pub name: String,
    pub summary: String,
    pub grants: String,
    /// `system`, `gadget` or `pack`.
    pub provider: String,
    /// `yes`, `default-provider` or `no`.
    pub auto_connect: String,
    pub plug_attrs: Vec<AttrInfo>,
    pub slot_attrs: Vec<AttrInfo>,
    /// Plugs of installed packs with this interface, `PACK:PLUG`.
    pub plugs: Vec<String>,
    /// Slots offered, `PACK:SLOT`.
    pub slots: Vec<String>,
}

/// `POST /v2/system`: `{"action": "reboot"}` or `{"action": "power-off"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemRequest {
    pub action: String,
}

/// One service in `GET /v2/apps?select=service` (snapd's `/v2/apps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceInfo {
    /// The pack.
    pub pack: String,
    /// The app (the service is `PACK.NAME`).
    pub name: String,
    /// `simple`, `forking`, `oneshot` or `notify`.
    pub daemon: String,
    /// Started at boot.
    pub enabled: bool,
    /// `active`, `activating`, `deactivating`, `inactive` or `failed`.
    pub active: String,
    /// The pid of its sandbox's supervisor while it runs (signals sent to it reach the
    /// service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

/// `POST /v2/apps`: start, stop or restart services, as a change (root only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRequest {
    /// `start`, `stop` or `restart`.
    pub action: String,
    /// `PACK` (all of its services) or `PACK.APP`; one pack per request.
    pub names: Vec<String>,
    /// Start at boot from now on (with `start` or `restart`).
    #[serde(default)]
    pub enable: bool,
    /// Do not start at boot any more (with `stop`).
    #[serde(default)]
    pub disable: bool,
}

/// One line of a service's output (`GET /v2/logs`, one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339, microseconds, UTC.
    pub timestamp: String,
    /// `PACK.APP`.
    pub app: String,
    pub message: String,
}
