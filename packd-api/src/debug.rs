//! The reports of `/v2/debug/*`.

use serde::{Deserialize, Serialize};

/// One sandbox layer and its state on this kernel.
#[derive(Debug, Serialize, Deserialize)]
pub struct Layer {
    pub layer: String,
    pub state: String,
}

/// `GET /v2/debug/sandbox?app=NAME.APP`. The daemon fills `spec` with its sandbox spec; a
/// client reads it as plain JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SandboxReport<Spec = serde_json::Value> {
    pub app: String,
    pub confinement: String,
    pub layers: Vec<Layer>,
    /// The spec a run by the caller would get (its cgroup name is an example).
    pub spec: Spec,
}

/// `GET /v2/debug/apparmor?app=NAME.APP`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AppArmorReport {
    pub app: String,
    pub label: String,
    pub profile: String,
    /// Whether the kernel has AppArmor (and so whether the profile is loaded and enforced).
    pub kernel: String,
}
