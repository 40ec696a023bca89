//! AppArmor: ask the kernel to switch to the app's profile at exec, where the kernel has
//! AppArmor (the profile itself is generated and loaded by the daemon).

use std::path::Path;

use crate::error::{Step, StepError};

/// Whether the running kernel has AppArmor enabled.
pub fn available() -> bool {
    Path::new("/sys/kernel/security/apparmor").is_dir()
        || std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false)
}

/// `aa_change_onexec(label)`: written to the process's attribute file (the sandbox's own
/// /proc). Newer kernels have a per-LSM file; older ones the shared one.
pub fn change_onexec(label: &str) -> Result<(), StepError> {
    let line = format!("exec {label}");
    let mut last = None;
    for file in ["/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"] {
        match std::fs::write(file, &line) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(StepError::msg(
        Step::AppArmor,
        format!(
            "cannot change to profile {label} on exec: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}
