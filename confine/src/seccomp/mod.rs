//! seccomp profiles: compiled once (at install, and when connections change) from rules in
//! JSON (`{"syscall", "args", "comment"}`, the format firecracker's and seccompiler's policies
//! use), stored as BPF, and only loaded at launch.
//!
//! A profile is one filter ([`bpf`]): listed syscalls (with their argument conditions) are
//! allowed, those listed as ENOSYS fail with ENOSYS (so libc falls back: clone3 → clone),
//! anything else fails with EPERM (or is only logged, in devmode); syscalls of a foreign ABI are
//! refused by an architecture check first (i386 ones kill the process; x32 ones get the default).
//!
//! (seccompiler, the crate the project map names, is not used: it lays a filter out as a linear
//! chain — 1535 instructions for packd's policy — which the kernel runs for every syscall number
//! when it builds its action cache at each launch (~0.6 ms measured) and walks on every
//! uncached syscall; and it has one action per filter, which took a second filter for ENOSYS.)

pub mod bpf;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

pub use bpf::Insn;

/// File magic and format version of a stored profile.
const MAGIC: &[u8; 8] = b"PKSECCP1";

/// The architectures packd runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// `AUDIT_ARCH_*` of the native ABI.
    fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => 0xc000_003e,
            Arch::Aarch64 => 0xc000_00b7,
        }
    }

    fn syscall_nr(self, name: &str) -> Option<u32> {
        // Policies use the kernel's names; the syscalls crate spells a few differently.
        let name = match (self, name) {
            (Arch::Aarch64, "newfstatat") => "fstatat",
            _ => name,
        };
        let id = match self {
            Arch::X86_64 => name.parse::<syscalls::x86_64::Sysno>().ok()?.id(),
            Arch::Aarch64 => name.parse::<syscalls::aarch64::Sysno>().ok()?.id(),
        };
        u32::try_from(id).ok()
    }
}

/// One rule of a policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub syscall: String,
    #[serde(default)]
    pub args: Vec<Cond>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A condition on one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub index: u8,
    pub len: Len,
    pub op: Op,
    pub val: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CondText {
    index: u8,
    #[serde(rename = "type")]
    len: Len,
    op: Op,
    val: u64,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
}

impl<'de> Deserialize<'de> for Cond {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = CondText::deserialize(d)?;
        if c.index > 5 {
            return Err(serde::de::Error::custom(
                "syscalls have 6 arguments (index 0-5)",
            ));
        }
        Ok(Cond {
            index: c.index,
            len: c.len,
            op: c.op,
            val: c.val,
        })
    }
}

/// Compare the low 32 bits (`dword`: ioctl requests, flags) or all 64 (`qword`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Len {
    Dword,
    Qword,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    MaskedEq(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot compile the seccomp profile: {0}")]
    Compile(String),
    #[error("cannot read the seccomp profile {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot load the seccomp filter: {0}")]
    Load(String),
}

/// What happens to a syscall that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Fail with EPERM (strict).
    Deny,
    /// Allow and log it (devmode).
    Log,
}

/// The compiled filters, in load order (packd compiles one).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub filters: Vec<Vec<Insn>>,
}

/// The architecture this binary runs on.
pub fn host_arch() -> Result<Arch, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(Arch::X86_64),
        "aarch64" => Ok(Arch::Aarch64),
        other => Err(SeccompError::Compile(format!(
            "no seccomp policy for {other}; packd supports x86_64 and aarch64"
        ))),
    }
}

/// Compiles `allow` and `enosys` (arrays of rules: `{"syscall", "args", "comment"}`) for
/// `arch`. A syscall allowed without conditions anywhere is allowed unconditionally.
pub fn compile(
    allow: &[Value],
    enosys: &[Value],
    mismatch: Mismatch,
    arch: Arch,
) -> Result<Profile, SeccompError> {
    let mut entries: BTreeMap<u32, bpf::Entry> = BTreeMap::new();
    for (rules, action) in [
        (allow, bpf::RET_ALLOW),
        (enosys, bpf::RET_ERRNO | libc::ENOSYS as u32),
    ] {
        for value in rules {
            let rule: Rule = serde_json::from_value(value.clone())
                .map_err(|e| SeccompError::Compile(format!("invalid rule {value}: {e}")))?;
            let nr = arch.syscall_nr(&rule.syscall).ok_or_else(|| {
                SeccompError::Compile(format!("unknown syscall {:?} for {arch:?}", rule.syscall))
            })?;
            let entry = entries.entry(nr).or_insert_with(|| bpf::Entry {
                action,
                alternatives: Vec::new(),
            });
            if entry.action != action {
                return Err(SeccompError::Compile(format!(
                    "syscall {:?} is both allowed and answered ENOSYS",
                    rule.syscall
                )));
            }
            entry.alternatives.push(rule.args);
        }
    }
    // An unconditional rule makes the others moot.
    for entry in entries.values_mut() {
        if entry.alternatives.iter().any(Vec::is_empty) {
            entry.alternatives.clear();
        }
    }
    let default = match mismatch {
        Mismatch::Deny => bpf::RET_ERRNO | libc::EPERM as u32,
        Mismatch::Log => bpf::RET_LOG,
    };
    Ok(Profile {
        filters: vec![bpf::assemble(arch, &entries, default)?],
    })
}

impl Profile {
    /// The stored form: magic, filter count, then each filter's length and instructions.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.filters.len() as u32).to_le_bytes());
        for f in &self.filters {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            for insn in f {
                out.extend_from_slice(&insn.code.to_le_bytes());
                out.push(insn.jt);
                out.push(insn.jf);
                out.extend_from_slice(&insn.k.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Profile, String> {
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a packd seccomp profile")?;
        let u32_at = |r: &mut &[u8]| -> Result<u32, String> {
            let (head, tail) = r.split_at_checked(4).ok_or("truncated profile")?;
            *r = tail;
            Ok(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
        };
        let count = u32_at(&mut rest)?;
        if count == 0 || count > 16 {
            return Err(format!("implausible filter count {count}"));
        }
        let mut filters = Vec::new();
        for _ in 0..count {
            let len = u32_at(&mut rest)? as usize;
            // The kernel's limit is 4096 instructions per filter.
            if len == 0 || len > 4096 {
                return Err(format!("implausible filter length {len}"));
            }
            let (body, tail) = rest.split_at_checked(len * 8).ok_or("truncated profile")?;
            rest = tail;
            let filter = body
                .chunks_exact(8)
                .map(|c| Insn {
                    code: u16::from_le_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect();
            filters.push(filter);
        }
        if !rest.is_empty() {
            return Err("trailing bytes after the last filter".into());
        }
        Ok(Profile { filters })
    }

    /// Reads a stored profile, refusing one that anybody but root could have written (firejail
    /// issue #2718: a writable filter file is no filter).
    pub fn read(path: &Path) -> Result<Profile, SeccompError> {
        let err = |reason: String| SeccompError::Read {
            path: path.display().to_string(),
            reason,
        };
        let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
        let md = file.metadata().map_err(|e| err(e.to_string()))?;
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            return Err(err(
                "it must be owned by root and writable only by root".into()
            ));
        }
        let mut bytes = Vec::with_capacity(md.len() as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| err(e.to_string()))?;
        Profile::decode(&bytes).map_err(err)
    }

    /// Loads every filter, in order, on all threads. Sets no_new_privs (seccomp requires it).
    pub fn load(&self) -> Result<(), SeccompError> {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(SeccompError::Load(io::Error::last_os_error().to_string()));
        }
        for f in &self.filters {
            let prog = libc::sock_fprog {
                len: f.len() as u16,
                filter: f.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: `prog` points at `f`, which outlives the call; the kernel copies it.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_TSYNC,
                    &prog as *const libc::sock_fprog,
                )
            };
            if rc != 0 {
                return Err(SeccompError::Load(if rc < 0 {
                    io::Error::last_os_error().to_string()
                } else {
                    format!("thread {rc} could not be synchronised")
                }));
            }
        }
        Ok(())
    }
}

/// Writes `profile` where [`Profile::read`] will accept it (root-owned, 0644).
pub fn store(profile: &Profile, path: &Path) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(&profile.encode())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tiny() -> Profile {
        compile(
            &[json!({"syscall": "read"}), json!({"syscall": "exit_group"})],
            &[json!({"syscall": "clone3"})],
            Mismatch::Deny,
            Arch::X86_64,
        )
        .unwrap()
    }

    #[test]
    fn encode_decode_round_trip() {
        let p = tiny();
        assert_eq!(p.filters.len(), 1);
        assert_eq!(Profile::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn damaged_profiles_are_refused() {
        let bytes = tiny().encode();
        assert!(Profile::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Profile::decode(b"garbage").is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Profile::decode(&extra).is_err());
    }

    #[test]
    fn unknown_syscalls_are_compile_errors() {
        let err = compile(
            &[json!({"syscall": "no_such_call"})],
            &[],
            Mismatch::Deny,
            Arch::X86_64,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no_such_call"), "{err}");
    }
}

#[cfg(test)]
mod layout_tests {
    //! The compiled filter against a direct reading of the rules, for every syscall number and
    //! a spread of arguments, through an interpreter that runs BPF as the kernel does.

    use serde_json::json;

    use super::bpf::{RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_LOG, run};
    use super::*;

    const X86: u32 = 0xc000_003e;

    fn rules() -> (Vec<Value>, Vec<Value>) {
        let mut allow: Vec<Value> = ["read", "write", "exit_group", "openat", "futex", "mmap"]
            .iter()
            .map(|s| json!({"syscall": s}))
            .collect();
        allow.push(json!({"syscall": "ioctl", "args": [
            {"index": 1, "type": "dword", "op": "ne", "val": 0x5412},
            {"index": 1, "type": "dword", "op": "ne", "val": 0x541c}]}));
        allow.push(json!({"syscall": "clone", "args": [
            {"index": 0, "type": "qword", "op": {"masked_eq": 0x7e020000u64}, "val": 0}]}));
        for t in [0u64, 0o100000, 0o010000] {
            allow.push(json!({"syscall": "mknodat", "args": [
                {"index": 2, "type": "dword", "op": {"masked_eq": 0o170000}, "val": t}]}));
        }
        allow.push(json!({"syscall": "socket", "args": [
            {"index": 0, "type": "dword", "op": "eq", "val": 2},
            {"index": 1, "type": "dword", "op": {"masked_eq": 0xf}, "val": 1}]}));
        allow.push(json!({"syscall": "kill", "args": [
            {"index": 0, "type": "qword", "op": "ne", "val": 0x1_0000_0001u64}]}));
        (allow, vec![json!({"syscall": "clone3"})])
    }

    /// What the rules say, read directly.
    fn expected(nr: u32, a: [u64; 6]) -> u32 {
        let lo = |i: usize| a[i] & 0xffff_ffff;
        match nr {
            0 | 1 | 231 | 257 | 202 | 9 => RET_ALLOW,
            16 if lo(1) != 0x5412 && lo(1) != 0x541c => RET_ALLOW,
            56 if a[0] & 0x7e02_0000 == 0 => RET_ALLOW,
            259 if [0, 0o100000, 0o010000].contains(&(lo(2) & 0o170000)) => RET_ALLOW,
            41 if lo(0) == 2 && lo(1) & 0xf == 1 => RET_ALLOW,
            62 if a[0] != 0x1_0000_0001 => RET_ALLOW,
            435 => RET_ERRNO | 38,
            _ => RET_ERRNO | 1,
        }
    }

    #[test]
    fn compiled_filter_matches_the_rules_for_every_syscall() {
        let (allow, enosys) = rules();
        let p = compile(&allow, &enosys, Mismatch::Deny, Arch::X86_64).unwrap();
        let f = &p.filters[0];
        let samples: [[u64; 6]; 6] = [
            [0; 6],
            [2, 1, 0o100000, 0, 0, 0],
            [0x1_0000_0001, 0x5412, 0o060000, 0, 0, 0],
            [0x10000000, 0x1_0000_5412, 0o010000, 0, 0, 0],
            [2, 0x80001, 0o140000, 0, 0, 0],
            [u64::MAX, 0x541c, 0o170000, 0, 0, 0],
        ];
        for nr in 0..600 {
            for args in samples {
                assert_eq!(
                    run(f, nr, X86, args),
                    expected(nr, args),
                    "nr {nr} args {args:?}"
                );
            }
        }
        // x32 numbers and foreign architectures.
        assert_eq!(run(f, 0x4000_0000, X86, [0; 6]), RET_ERRNO | 1);
        assert_eq!(run(f, 0x4000_0001, X86, [0; 6]), RET_ERRNO | 1);
        assert_eq!(run(f, 0, 0x4000_0003, [0; 6]), RET_KILL_PROCESS, "i386");
    }

    #[test]
    fn devmode_logs_and_aarch64_has_no_x32_check() {
        let (allow, enosys) = rules();
        let dev = compile(&allow[..6], &enosys, Mismatch::Log, Arch::X86_64).unwrap();
        assert_eq!(run(&dev.filters[0], 99, X86, [0; 6]), RET_LOG);
        assert_eq!(run(&dev.filters[0], 0, X86, [0; 6]), RET_ALLOW);
        let arm = compile(
            &[json!({"syscall": "read"})],
            &[],
            Mismatch::Deny,
            Arch::Aarch64,
        )
        .unwrap();
        let arm64 = 0xc000_00b7;
        assert_eq!(
            Arch::Aarch64.syscall_nr("newfstatat"),
            Some(79),
            "the kernel's name"
        );
        assert_eq!(
            run(&arm.filters[0], 63, arm64, [0; 6]),
            RET_ALLOW,
            "read is 63 on arm64"
        );
        assert_eq!(
            run(&arm.filters[0], 0x4000_003f, arm64, [0; 6]),
            RET_ERRNO | 1
        );
        assert_eq!(run(&arm.filters[0], 63, X86, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn a_large_policy_stays_short() {
        let allow: Vec<Value> = (0..330u32)
            .filter_map(|nr| syscalls::x86_64::Sysno::new(nr as usize))
            .map(|s| json!({"syscall": s.name()}))
            .collect();
        let p = compile(&allow, &[], Mismatch::Deny, Arch::X86_64).unwrap();
        assert!(p.filters[0].len() < bpf::MAX_INSNS);
        // Runs of consecutive syscalls are single intervals: the filter is small (the kernel
        // JIT-compiles it at every load) and any syscall is decided in a few steps.
        assert!(
            p.filters[0].len() < 100,
            "{} instructions",
            p.filters[0].len()
        );
        let longest = (0..600)
            .map(|nr| bpf::run_counting(&p.filters[0], nr, X86, [0; 6]).1)
            .max()
            .unwrap();
        assert!(longest <= 2 * 6 + 6, "{longest} steps");
        for s in allow.iter().take(50) {
            let nr = s["syscall"]
                .as_str()
                .unwrap()
                .parse::<syscalls::x86_64::Sysno>()
                .unwrap()
                .id();
            assert_eq!(run(&p.filters[0], nr as u32, X86, [0; 6]), RET_ALLOW);
        }
    }
}
