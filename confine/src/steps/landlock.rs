//! Landlock: read/execute on everything visible (the base and the pack), full access only
//! where the spec says, TCP bind/connect denied unless granted, abstract Unix sockets and
//! signals scoped to the sandbox. The ABI is pinned; the ruleset is built best-effort and
//! what the kernel enforced is reported, and a strict app whose ruleset was not enforced
//! whole is refused (`app.rs`).

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::{Deserialize, Serialize};

use crate::error::{Step, StepError};
use crate::spec::LandlockSpec;

/// The ABI packd's rules were written and tested against.
pub const PINNED_ABI: ABI = ABI::V6;

/// What the kernel enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    Full,
    Partial,
    None,
}

fn err(e: impl std::fmt::Display) -> StepError {
    StepError::msg(Step::Landlock, e.to_string())
}

pub fn apply(spec: &LandlockSpec) -> Result<Enforcement, StepError> {
    let abi = PINNED_ABI;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(err)?;
    // Network rules only mean something if the kernel can handle them (ABI 4).
    if !(spec.bind_any && spec.connect_any) {
        let mut net = AccessNet::from_all(abi);
        if spec.bind_any {
            net.remove(AccessNet::BindTcp);
        }
        if spec.connect_any {
            net.remove(AccessNet::ConnectTcp);
        }
        ruleset = ruleset.handle_access(net).map_err(err)?;
    }
    let mut created = ruleset
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?;
    let file_only = AccessFs::from_file(abi);
    for (paths, access) in [(&spec.read, read), (&spec.write, all)] {
        for path in paths {
            let fd = PathFd::new(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            // A file (a device node) takes only the rights that apply to files; offering the
            // directory ones would make the whole ruleset report itself partly enforced.
            let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(true);
            let access = if is_dir { access } else { access & file_only };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(err)?;
        }
    }
    for port in &spec.bind_tcp {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::BindTcp))
            .map_err(err)?;
    }
    for port in &spec.connect_tcp {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => Enforcement::None,
    })
}

/// The Landlock ABI of the running kernel (0 when Landlock is absent or disabled).
pub fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented way to query the ABI: NULL attributes, size 0, VERSION flag.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 { 0 } else { v as i32 }
}
