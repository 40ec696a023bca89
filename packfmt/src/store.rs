//! What packd and a store say to each other over HTTP (docs/store-api.md): plain serde types,
//! the same on both sides.

use serde::{Deserialize, Serialize};

/// `POST /v1/refresh`: every pack the device has from this store, and any it wants installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct RefreshRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default)]
    pub packs: Vec<Installed>,
    #[serde(default)]
    pub install: Vec<Wanted>,
}

/// A pack the device runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Installed {
    pub pack_id: String,
    pub name: String,
    pub revision: u32,
    pub channel: String,
}

/// A pack the device wants, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Wanted {
    pub name: String,
    pub channel: String,
}

/// The body of a signed `refresh` assertion: what changed for this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Answer {
    /// One per pack to install or to move to another revision; a pack whose revision is
    /// current is not listed.
    pub results: Vec<Offer>,
    pub errors: Vec<Refusal>,
    /// When to ask again, in seconds.
    pub poll_after: u64,
}

/// A revision the device should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Offer {
    pub name: String,
    pub pack_id: String,
    pub revision: u32,
    pub version: String,
    /// The channel the device tracks (normalised).
    pub channel: String,
    /// The channel the revision is released to (another one when the tracked one follows).
    pub released_to: String,
    pub sha3_384: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub pack_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Packs its content plugs name as default providers: installed with it when missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_providers: Vec<String>,
    /// The revision of the pack's declaration this answer stands on: a device uses that one,
    /// so an older declaration slipped into the (unsigned) assertion stream is refused.
    #[serde(default)]
    pub declaration_revision: u64,
    /// Relative to the store's URL.
    pub download: String,
}

/// Why the store has nothing for one pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Refusal {
    pub name: String,
    /// `not-found`, `no-release`, `invalid-channel`, `revoked`.
    pub code: String,
    pub message: String,
}

/// The answer to `POST /v1/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RefreshResponse {
    /// The signed `refresh` assertion (its body is an [`Answer`]).
    pub answer: String,
    /// The assertions the offers need (account-keys, declarations, revisions), as a stream.
    pub assertions: String,
}

/// `GET /v1/packs/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackInfo {
    pub name: String,
    pub pack_id: String,
    pub publisher: String,
    pub summary: String,
    pub description: String,
    pub channels: Vec<ChannelEntry>,
}

/// One row of a channel map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChannelEntry {
    pub channel: String,
    /// What it offers (itself or by following), `None` when nothing.
    pub revision: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The channel it follows when it has nothing of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// RFC 3339, of the release it offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

/// One hit of `GET /v1/find?q=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Found {
    pub name: String,
    pub publisher: String,
    pub summary: String,
    /// The version in `latest/stable`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A store's error answer (4xx/5xx): `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
