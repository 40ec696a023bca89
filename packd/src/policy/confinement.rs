//! What every app's sandbox gets beyond its mounts: cgroup limits and devices, Landlock rules,
//! capabilities. Interfaces add to these.

use std::path::{Path, PathBuf};

use confine::LandlockSpec;
use confine::cgroup::{DeviceRule, Limits};
use packfmt::meta::App;
use sha3::{Digest, Sha3_256};

/// Tasks (processes and threads) an app may have when its pack.yaml says nothing: enough for
/// busy servers, few enough that a fork bomb stays contained.
pub const DEFAULT_TASKS: u32 = 1024;

/// The devices of the minimal `/dev`: null, zero, full, random, urandom, tty, ptmx, and the
/// private devpts' ptys (majors 136–143).
pub fn devices() -> Vec<DeviceRule> {
    let mut rules: Vec<DeviceRule> = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)]
        .iter()
        .map(|(major, minor)| DeviceRule::char(*major, Some(*minor)))
        .collect();
    rules.extend((136..=143).map(|major| DeviceRule {
        kind: 'c',
        major: Some(major),
        minor: None,
        access: "rw".into(),
    }));
    rules
}

pub fn limits(app: &App) -> Limits {
    Limits {
        memory: app.limits.memory,
        tasks: Some(app.limits.tasks.unwrap_or(DEFAULT_TASKS)),
        cpu_weight: app.limits.cpu_weight,
        devices: devices(),
    }
}

/// The limits of an app that declares none: what spare sandboxes are made with.
pub fn default_limits() -> Limits {
    Limits {
        memory: None,
        tasks: Some(DEFAULT_TASKS),
        cpu_weight: None,
        devices: devices(),
    }
}

/// Where this daemon's sandboxes live in every cgroup hierarchy: `packd/system` for the root
/// `/`, `packd/root-HASH` for other roots (tests run many daemons side by side).
pub fn cgroup_parent(root: &Path) -> PathBuf {
    if root == Path::new("/") {
        return PathBuf::from("packd/system");
    }
    let digest = Sha3_256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("packd/root-{hex}"))
}

/// Landlock: read and execute everywhere visible; write only where the app keeps data and the
/// scratch places; no TCP unless an interface grants it.
pub fn landlock(name: &str, rev: &str, user_dirs: &[PathBuf]) -> LandlockSpec {
    let mut write: Vec<PathBuf> = vec![
        format!("/var/pack/{name}/{rev}").into(),
        format!("/var/pack/{name}/common").into(),
        "/tmp".into(),
        "/run".into(),
        "/dev/shm".into(),
        "/dev/pts".into(),
    ];
    write.extend(user_dirs.iter().cloned());
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "ptmx"] {
        write.push(PathBuf::from("/dev").join(dev));
    }
    LandlockSpec {
        read: vec!["/".into()],
        write,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_differ_per_root() {
        assert_eq!(cgroup_parent(Path::new("/")), Path::new("packd/system"));
        let a = cgroup_parent(Path::new("/tmp/a"));
        let b = cgroup_parent(Path::new("/tmp/b"));
        assert_ne!(a, b);
        assert!(a.starts_with("packd"));
    }

    #[test]
    fn devices_are_the_minimal_dev() {
        let lines: Vec<String> = devices().iter().map(DeviceRule::v1_line).collect();
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rw".to_string()));
        assert!(
            !lines.iter().any(|l| l.starts_with('b')),
            "no block devices"
        );
    }

    #[test]
    fn default_task_limit_applies() {
        let meta = packfmt::PackMeta::from_yaml(
            b"name: x1x\nversion: '1'\nbase: b1\napps:\n  a:\n    command: bin/a\n    limits: {memory: 64M}\n",
            Default::default(),
        )
        .unwrap();
        let l = limits(&meta.apps["a"]);
        assert_eq!(l.tasks, Some(DEFAULT_TASKS));
        assert_eq!(l.memory, Some(64 << 20));
    }
}
