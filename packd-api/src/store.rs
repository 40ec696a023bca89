//! The API's JSON for stores: remotes, search, a store's channel map, installs and refreshes
//! from a store, holds, and the device's assertions. See docs/api.md.

use packfmt::Revision;
pub use packfmt::store::ChannelEntry;
use serde::{Deserialize, Serialize};

/// `GET /v2/remotes`: one store the device trusts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RemoteInfo {
    pub name: String,
    pub url: String,
    /// The store's id, from its root.
    pub authority: String,
    pub root_key: String,
    /// The installed packs that come from it.
    #[serde(default)]
    pub packs: Vec<String>,
}

/// `POST /v2/remotes`: `add` (with `url` and `trust`, the root-key assertion's text) or
/// `remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RemoteRequest {
    pub action: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
}

/// `GET /v2/find?q=Q[&remote=R]`: one hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FoundInfo {
    pub name: String,
    pub remote: String,
    pub publisher: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `GET /v2/store/packs/NAME[?remote=R]`: a pack as its store offers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StorePackInfo {
    pub name: String,
    pub remote: String,
    pub pack_id: String,
    pub publisher: String,
    pub summary: String,
    pub description: String,
    pub channels: Vec<ChannelEntry>,
    /// The channel the installed pack follows, when it comes from this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<Revision>,
}

/// `POST /v2/refresh`: `refresh` (answered with a stream of [`StoreEvent`]s), `hold` or
/// `unhold`. (An install from a store is `POST /v2/packs/{name}` with a `PackAction`.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RefreshAction {
    pub action: String,
    /// The packs (none: every pack from a store).
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `install`: the store to install from (default: the only one, or the one that has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// `hold`: for how long (`humantime`, e.g. `24h`, `3 days`), or `forever` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// What a streamed install or refresh reports, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreEvent {
    /// Bytes of a download so far.
    Download {
        name: String,
        revision: u32,
        done: u64,
        total: u64,
    },
    /// A verified revision handed to a change.
    Change { name: String, id: String },
    /// One pack could not be done (the others go on).
    Error {
        name: String,
        kind: String,
        message: String,
    },
    /// The end: what was already up to date.
    Done { unchanged: Vec<String> },
}

/// `GET /v2/refresh?names=A,B`: what a refresh would do (`pack refresh --list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PendingRefresh {
    pub name: String,
    pub remote: String,
    pub channel: String,
    pub current: Revision,
    pub revision: u32,
    pub version: String,
    pub size: u64,
    /// Held until (RFC 3339) or `forever`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// A revision that failed here before and that auto-refresh does not try again.
    #[serde(default)]
    pub skipped: bool,
}

/// `GET /v2/refresh/time` (`pack refresh --time`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RefreshTime {
    pub timer: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Holds by pack (`*`: all): until (RFC 3339) or `forever`.
    #[serde(default)]
    pub holds: std::collections::BTreeMap<String, String>,
    pub metered: String,
}

/// `GET /v2/assertions/{kind}?HEADER=VALUE`: one assertion the device keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KnownAssertion {
    pub remote: String,
    pub kind: String,
    pub headers: std::collections::BTreeMap<String, String>,
    /// The whole text, signature included.
    pub text: String,
}
