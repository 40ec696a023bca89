//! The escape probe (`tests/probe`): built statically once per test run, packed into a pack
//! with tight limits, and its JSON report parsed. Plus guards for what the escape tests set up
//! on the host (a process to look for, canary files).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::{bin_dir, workspace, write_pack_dir};

/// The probe's pack.yaml: one app, `probe`, with a task and a memory limit the probe tries to
/// break.
pub const PROBE_YAML: &str = "name: probe
version: '1.0'
summary: Tries every escape from inside its sandbox
base: busybox
apps:
  probe:
    command: bin/probe
    limits: {tasks: 32, memory: 64M}
";

/// The task limit in [`PROBE_YAML`].
pub const PROBE_TASKS: u32 = 32;

/// Another pack with data of its own, which the probe must not reach.
pub const OTHER_YAML: &str = "name: other
version: '1.0'
summary: A neighbour with data
base: busybox
apps:
  sh:
    command: /bin/sh
";

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    assert!(out.status.success(), "rustc -vV failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}

/// The probe, built statically (release, `+crt-static`) once per test run into
/// `<bin_dir>/probe-target`.
pub fn probe_binary() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(build_probe).clone()
}

fn build_probe() -> PathBuf {
    let triple = host_triple();
    let target_dir = bin_dir().join("probe-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "-p",
            "packd-probe",
            "--release",
            "--target",
            &triple,
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build for the probe");
    assert!(
        out.status.success(),
        "building the probe failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join(&triple).join("release/probe");
    assert_static(&bin);
    bin
}

/// Asserts `path` is a 64-bit ELF executable without a program interpreter (PT_INTERP): it runs
/// in a base that has no dynamic loader or libc of the right version.
pub fn assert_static(path: &Path) {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        elf.len() > 64 && elf[..4] == *b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    assert_eq!(elf[4], 2, "{} is not a 64-bit ELF file", path.display());
    assert_eq!(elf[5], 1, "{} is not little-endian", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes"));
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    assert!(
        phnum > 0 && phoff + phnum * phentsize <= elf.len(),
        "{}: bad program headers",
        path.display()
    );
    for i in 0..phnum {
        assert_ne!(
            u32_at(phoff + i * phentsize),
            PT_INTERP,
            "{} is dynamically linked (it has a PT_INTERP program header)",
            path.display()
        );
    }
}

/// The probe's package source under `parent`: [`PROBE_YAML`] and the static probe as
/// `bin/probe`.
pub fn probe_pack_dir(parent: &Path) -> PathBuf {
    let dir = write_pack_dir(parent, "probe", PROBE_YAML, &[]);
    let bin = dir.join("bin/probe");
    fs::create_dir_all(dir.join("bin")).expect("bin dir");
    fs::copy(probe_binary(), &bin).expect("copy the probe");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod the probe");
    dir
}

/// The neighbour pack's source under `parent`.
pub fn other_pack_dir(parent: &Path) -> PathBuf {
    write_pack_dir(parent, "other", OTHER_YAML, &[])
}

/// One check of a probe report.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub blocked: bool,
    pub detail: String,
}

/// A probe report, with its text for failure messages.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Report {
    pub uid: u32,
    pub checks: Vec<Check>,
    #[serde(default)]
    pub skipped: Vec<String>,
    #[serde(skip)]
    pub text: String,
}

impl Report {
    #[track_caller]
    pub fn parse(stdout: &str) -> Report {
        let mut r: Report = serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("the probe's output is not a report ({e}):\n{stdout}"));
        r.text = stdout.to_string();
        r
    }

    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|c| c.name.as_str()).collect()
    }

    /// The checks that were not blocked, as `name: detail`.
    pub fn not_blocked(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.blocked)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    pub fn check(&self, name: &str) -> &Check {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name:?} in the report:\n{}", self.text))
    }
}

/// A `sleep` on the host, killed and reaped on drop.
pub struct HostProcess(Child);

impl HostProcess {
    pub fn sleep() -> HostProcess {
        HostProcess(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .spawn()
                .expect("start sleep"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A world-readable canary file (so only the sandbox, not permissions, can hide it), removed on
/// drop.
pub struct Canary(tempfile::NamedTempFile);

impl Canary {
    pub fn new_in(dir: &Path) -> Canary {
        let file = tempfile::Builder::new()
            .prefix("packd-probe-canary-")
            .tempfile_in(dir)
            .expect("canary file");
        fs::write(file.path(), "host canary: the sandbox must not see this\n").expect("canary");
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644)).expect("chmod");
        Canary(file)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}
