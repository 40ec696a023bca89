//! The validated package metadata. Every value here has passed the rules in `parse.rs`;
//! nothing downstream needs to re-check a name, a path charset or a daemon kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which file the metadata came from. Packages built for snapd carry `meta/snap.yaml`; apps of
/// those packages also get the `SNAP*` environment twins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MetaSource {
    #[default]
    PackYaml,
    SnapYaml,
}

impl MetaSource {
    /// The path of the metadata file inside a package.
    pub fn path(self) -> &'static str {
        match self {
            MetaSource::PackYaml => "meta/pack.yaml",
            MetaSource::SnapYaml => "meta/snap.yaml",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PackType {
    #[default]
    App,
    Base,
    Gadget,
    Kernel,
}

impl PackType {
    pub fn as_str(self) -> &'static str {
        match self {
            PackType::App => "app",
            PackType::Base => "base",
            PackType::Gadget => "gadget",
            PackType::Kernel => "kernel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Confinement {
    /// Every sandbox layer enforced; a missing layer refuses the launch.
    #[default]
    Strict,
    /// The layers log instead of denying. Marked as such wherever the package shows.
    Devmode,
}

impl Confinement {
    pub fn as_str(self) -> &'static str {
        match self {
            Confinement::Strict => "strict",
            Confinement::Devmode => "devmode",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    #[default]
    Stable,
    Devel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Daemon {
    Simple,
    Forking,
    Oneshot,
    Notify,
}

impl Daemon {
    pub const ALL: [(&'static str, Daemon); 4] = [
        ("simple", Daemon::Simple),
        ("forking", Daemon::Forking),
        ("oneshot", Daemon::Oneshot),
        ("notify", Daemon::Notify),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Daemon::Simple => "simple",
            Daemon::Forking => "forking",
            Daemon::Oneshot => "oneshot",
            Daemon::Notify => "notify",
        }
    }
}

/// When a supervised service is restarted after it exits (systemd's `Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    Never,
    OnSuccess,
    #[default]
    OnFailure,
    OnAbnormal,
    OnAbort,
    Always,
}

impl RestartCondition {
    pub const ALL: [(&'static str, RestartCondition); 6] = [
        ("never", RestartCondition::Never),
        ("on-success", RestartCondition::OnSuccess),
        ("on-failure", RestartCondition::OnFailure),
        ("on-abnormal", RestartCondition::OnAbnormal),
        ("on-abort", RestartCondition::OnAbort),
        ("always", RestartCondition::Always),
    ];
}

/// Resource limits of one app instance, enforced through its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Limits {
    /// Memory limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u32>,
    /// Relative CPU weight, 1–10000 (cgroup v2 `cpu.weight`; 100 is the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
    /// Size in bytes of the pack's `/tmp` (a tmpfs per pack and user, shared by the pack's
    /// apps: it gets the largest size any of them asks for).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tmp: Option<u64>,
}

/// One app: a command that runs confined, on demand or as a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct App {
    pub name: String,
    /// Relative to the package root (`$PACK`); may name `$PACK*` variables.
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Daemon>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_command: Option<String>,
    pub restart_condition: RestartCondition,
    #[serde(with = "duration_ms", skip_serializing_if = "Option::is_none", default)]
    pub restart_delay: Option<Duration>,
    #[serde(with = "duration_ms", skip_serializing_if = "Option::is_none", default)]
    pub stop_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub after: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub before: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub plugs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub slots: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
}

impl App {
    pub fn is_service(&self) -> bool {
        self.daemon.is_some()
    }

    /// The path inside the package of the command's executable, when the command names one:
    /// `bin/hello` and `$PACK/bin/hello` name `bin/hello`. Absolute paths (into the base) and
    /// other variables are resolved at run time, so `None`.
    pub fn command_executable(&self) -> Option<std::path::PathBuf> {
        let first = self.command.split_whitespace().next()?;
        let rel = ["$PACK/", "$SNAP/"]
            .iter()
            .find_map(|p| first.strip_prefix(p))
            .unwrap_or(first);
        (!rel.starts_with('/') && !rel.contains('$')).then(|| std::path::PathBuf::from(rel))
    }
}

/// A hook: an executable at `meta/hooks/NAME`, run confined at lifecycle points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Hook {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub plugs: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub environment: BTreeMap<String, String>,
}

/// A plug or a slot declared at the top level: its interface and attributes. Attributes are kept
/// as data here; the interfaces crate validates them against each interface's grammar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub interface: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub attrs: BTreeMap<String, serde_json::Value>,
}

/// Validated `meta/pack.yaml` (or `meta/snap.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackMeta {
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(rename = "type")]
    pub pack_type: PackType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub confinement: Confinement,
    pub grade: Grade,
    pub epoch: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub architectures: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub assumes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub apps: BTreeMap<String, App>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub hooks: BTreeMap<String, Hook>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub plugs: BTreeMap<String, Port>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub slots: BTreeMap<String, Port>,
    pub source: MetaSource,
}

impl PackMeta {
    /// The app of a `NAME.APP` reference; `app` of `None` means the app named like the package.
    pub fn app(&self, app: Option<&str>) -> Option<&App> {
        self.apps.get(app.unwrap_or(&self.name))
    }

    /// The services (apps with `daemon:`), in name order.
    pub fn services(&self) -> impl Iterator<Item = &App> {
        self.apps.values().filter(|a| a.is_service())
    }

    /// The architecture part of the package file name: the single declared architecture, `all`,
    /// `multi` for several, or the host's when none is declared.
    pub fn file_arch(&self) -> String {
        match self.architectures.as_slice() {
            [] => host_arch().to_string(),
            [one] => one.clone(),
            _ => "multi".to_string(),
        }
    }

    /// `NAME_VERSION_ARCH.pack`, the file name `pack pack` writes by default.
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.pack", self.name, self.version, self.file_arch())
    }
}

/// The Debian name of the architecture this binary was built for (what `architectures` lists).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => other,
    }
}

/// Durations travel as milliseconds in JSON (state.json and the API).
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
