//! The default seccomp policy (commented data in `policy/seccomp/<arch>.json`, embedded in the
//! binary) and compiling an app's profile from it plus what its interfaces add.

use confine::seccomp::Arch;
use confine::seccomp::{Mismatch, Profile};
use serde::Deserialize;
use serde_json::Value;

use super::PolicyError;

type Result<T> = std::result::Result<T, PolicyError>;

const X86_64: &str = include_str!("../../policy/seccomp/x86_64.json");
const AARCH64: &str = include_str!("../../policy/seccomp/aarch64.json");

/// The policy file: allowed syscalls (rules with comments) and the ones answered
/// ENOSYS.
#[derive(Debug, Clone, Deserialize)]
pub struct Template {
    pub comment: String,
    pub allow: Vec<Value>,
    pub enosys: Vec<Value>,
}

pub fn template(arch: Arch) -> Result<Template> {
    let text = match arch {
        Arch::X86_64 => X86_64,
        Arch::Aarch64 => AARCH64,
    };
    serde_json::from_str(text).map_err(PolicyError::Template)
}

/// Compiles the profile of an app: the template plus `extra` rules (from its interfaces), for
/// `arch`; devmode profiles log what strict ones would deny.
pub fn compile(arch: Arch, extra: &[Value], devmode: bool) -> Result<Profile> {
    let t = template(arch)?;
    let mut allow = t.allow;
    allow.extend(extra.iter().cloned());
    let mismatch = if devmode {
        Mismatch::Log
    } else {
        Mismatch::Deny
    };
    confine::seccomp::compile(&allow, &t.enosys, mismatch, arch)
        .map_err(|e| PolicyError::Compile(e.to_string()))
}

pub fn host_arch() -> Result<Arch> {
    confine::seccomp::host_arch().map_err(|e| PolicyError::Compile(e.to_string()))
}

#[cfg(test)]
mod tests;
