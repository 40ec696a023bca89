//! Switching to the caller's identity: supplementary groups, gid, then uid (in that order, since
//! dropping the uid first would forbid the rest).

use nix::unistd::{Gid, Uid};

use crate::error::{Step, StepError};

pub fn switch(uid: u32, gid: u32, groups: &[u32]) -> Result<(), StepError> {
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| StepError::nix(Step::Identity, e))?;
    let gid = Gid::from_raw(gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| StepError::nix(Step::Identity, e))?;
    let uid = Uid::from_raw(uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| StepError::nix(Step::Identity, e))?;
    Ok(())
}
