//! Which cgroup hierarchies are mounted where, from `/proc/self/mountinfo`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::CgroupError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure v2.
    Unified { root: PathBuf },
    /// v1 controllers plus a v2 hierarchy.
    Hybrid {
        v1: BTreeMap<String, PathBuf>,
        v2: PathBuf,
    },
    /// v1 only.
    Legacy { v1: BTreeMap<String, PathBuf> },
}

impl Layout {
    /// The layout of this system.
    pub fn detect() -> Result<Layout, CgroupError> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
                what: "read",
                path: "/proc/self/mountinfo".into(),
                source,
            })?;
        parse_layout(&text)
    }

    /// The v2 hierarchy's root, if there is one.
    pub fn v2(&self) -> Option<&Path> {
        match self {
            Layout::Unified { root } => Some(root),
            Layout::Hybrid { v2, .. } => Some(v2),
            Layout::Legacy { .. } => None,
        }
    }

    /// The root of the v1 hierarchy carrying `controller`, if any.
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        match self {
            Layout::Hybrid { v1, .. } | Layout::Legacy { v1 } => {
                v1.get(controller).map(PathBuf::as_path)
            }
            Layout::Unified { .. } => None,
        }
    }

    /// Every hierarchy root the sandboxes use.
    pub fn roots(&self) -> Vec<&Path> {
        let mut roots: Vec<&Path> = super::V1_CONTROLLERS
            .iter()
            .filter_map(|c| self.v1(c))
            .collect();
        roots.extend(self.v2());
        roots.dedup();
        roots
    }

    pub fn name(&self) -> &'static str {
        match self {
            Layout::Unified { .. } => "unified (v2)",
            Layout::Hybrid { .. } => "hybrid (v1 controllers + v2)",
            Layout::Legacy { .. } => "legacy (v1)",
        }
    }

    /// The controllers that limits go through, for reports: `memory`, `pids`, `cpu`, `devices`.
    pub fn controllers(&self) -> Vec<String> {
        match self {
            Layout::Unified { root } => {
                let mut c: Vec<String> = std::fs::read_to_string(root.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter(|c| ["memory", "pids", "cpu"].contains(c))
                    .map(str::to_string)
                    .collect();
                c.push("devices (bpf)".into());
                c
            }
            Layout::Hybrid { v1, .. } | Layout::Legacy { v1 } => super::V1_CONTROLLERS
                .iter()
                .filter(|c| v1.contains_key(**c))
                .map(|c| c.to_string())
                .collect(),
        }
    }
}

/// Parses mountinfo text into a layout.
pub fn parse_layout(mountinfo: &str) -> Result<Layout, CgroupError> {
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(options)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        // Only hierarchies mounted at their own root are usable for creating cgroups.
        if fields.get(3) != Some(&"/") {
            continue;
        }
        match *fstype {
            "cgroup2" => {
                v2.get_or_insert_with(|| PathBuf::from(point));
            }
            "cgroup" => {
                for opt in options.split(',') {
                    if super::V1_CONTROLLERS.contains(&opt) {
                        v1.entry(opt.to_string())
                            .or_insert_with(|| PathBuf::from(point));
                    }
                }
            }
            _ => {}
        }
    }
    match (v1.is_empty(), v2) {
        (true, Some(root)) => Ok(Layout::Unified { root }),
        (false, Some(v2)) => Ok(Layout::Hybrid { v1, v2 }),
        (false, None) => Ok(Layout::Legacy { v1 }),
        (true, None) => Err(CgroupError::Unavailable(
            "no cgroup hierarchy is mounted (mount cgroup2 at /sys/fs/cgroup)".into(),
        )),
    }
}
