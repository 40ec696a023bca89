//! Capabilities: every set emptied (bounding, permitted, effective, inheritable, ambient)
//! except what the spec keeps, and no_new_privs set, so no exec can ever gain privileges back.

use caps::{CapSet, Capability, CapsHashSet};

use crate::error::{Step, StepError};

/// Parses capability names (`CAP_NET_BIND_SERVICE` or `net_bind_service`).
pub fn parse(names: &[String]) -> Result<CapsHashSet, StepError> {
    names
        .iter()
        .map(|n| {
            caps::to_canonical(n).parse::<Capability>().map_err(|_| {
                StepError::msg(Step::Capabilities, format!("unknown capability {n:?}"))
            })
        })
        .collect()
}

fn fail(what: &str, e: caps::errors::CapsError) -> StepError {
    StepError::msg(Step::Capabilities, format!("cannot {what}: {e}"))
}

/// Empties the bounding set but for `keep`. Runs while still root (it needs CAP_SETPCAP),
/// before the switch to the caller's identity.
pub fn drop_bounding(keep: &CapsHashSet) -> Result<(), StepError> {
    for cap in caps::all() {
        if !keep.contains(&cap) {
            // Capabilities unknown to this kernel are not in the bounding set anyway.
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                Err(e) if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) => {
                    return Err(fail("drop from the bounding set", e));
                }
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// Empties the other sets but for `keep` (after the identity switch) and sets no_new_privs.
pub fn drop_rest(keep: &CapsHashSet) -> Result<(), StepError> {
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("clear the ambient set", e))?;
    caps::set(None, CapSet::Inheritable, keep).map_err(|e| fail("set the inheritable set", e))?;
    caps::set(None, CapSet::Effective, keep).map_err(|e| fail("set the effective set", e))?;
    caps::set(None, CapSet::Permitted, keep).map_err(|e| fail("set the permitted set", e))?;
    if !keep.is_empty() {
        // Kept capabilities must survive exec for a root app: ambient only works with them
        // permitted and inheritable, as set above.
        for cap in keep {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| fail("raise an ambient capability", e))?;
        }
    }
    set_no_new_privs()
}

pub fn set_no_new_privs() -> Result<(), StepError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(StepError::io(
            Step::Capabilities,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
