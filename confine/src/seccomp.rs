//! seccomp profiles: compiled once (at install, and when connections change) from rules in
//! seccompiler's JSON format, stored as BPF, and only loaded at launch.
//!
//! A profile is two filters, loaded in order:
//!
//! 1. the **allowlist**: listed syscalls (with their argument conditions) are allowed, anything
//!    else fails with `EPERM` (or is only logged in devmode); syscalls of a foreign ABI are
//!    refused by the architecture check seccompiler puts first (i386 ones kill the process,
//!    x32 ones are simply not listed);
//! 2. the **ENOSYS** filter: its syscalls fail with `ENOSYS` so that libc falls back (clone3 →
//!    clone). When both filters answer with an errno, the kernel keeps the most recently
//!    loaded one's.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use seccompiler::{BpfProgram, TargetArch, sock_filter};
use serde_json::{Value, json};

/// File magic and format version of a stored profile.
const MAGIC: &[u8; 8] = b"PKSECCP1";

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

/// The compiled filters, in load order.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub filters: Vec<BpfProgram>,
}

/// The architecture this binary runs on, as seccompiler names it.
pub fn host_arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        SeccompError::Compile(format!("no seccomp support for {}", std::env::consts::ARCH))
    })
}

/// Compiles `allow` and `enosys` (arrays of seccompiler JSON rules: `{"syscall", "args",
/// "comment"}`) for `arch`.
pub fn compile(
    allow: &[Value],
    enosys: &[Value],
    mismatch: Mismatch,
    arch: TargetArch,
) -> Result<Profile, SeccompError> {
    let mismatch_action = match mismatch {
        Mismatch::Deny => json!({"errno": libc::EPERM}),
        Mismatch::Log => json!("log"),
    };
    let doc = json!({
        "allow": {
            "mismatch_action": mismatch_action,
            "match_action": "allow",
            "filter": allow,
        },
        "enosys": {
            "mismatch_action": "allow",
            "match_action": {"errno": libc::ENOSYS},
            "filter": enosys,
        },
    });
    let text = serde_json::to_vec(&doc).map_err(|e| SeccompError::Compile(e.to_string()))?;
    let mut map = seccompiler::compile_from_json(text.as_slice(), arch)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let allow = map
        .remove("allow")
        .ok_or_else(|| SeccompError::Compile("the allowlist filter is missing".into()))?;
    let mut filters = vec![allow];
    if !enosys.is_empty()
        && let Some(f) = map.remove("enosys")
    {
        filters.push(f);
    }
    Ok(Profile { filters })
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
                .map(|c| sock_filter {
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
        for f in &self.filters {
            seccompiler::apply_filter_all_threads(f)
                .map_err(|e| SeccompError::Load(e.to_string()))?;
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
    use super::*;

    fn tiny() -> Profile {
        compile(
            &[json!({"syscall": "read"}), json!({"syscall": "exit_group"})],
            &[json!({"syscall": "clone3"})],
            Mismatch::Deny,
            TargetArch::x86_64,
        )
        .unwrap()
    }

    #[test]
    fn encode_decode_round_trip() {
        let p = tiny();
        assert_eq!(p.filters.len(), 2);
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
            TargetArch::x86_64,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no_such_call"), "{err}");
    }
}
