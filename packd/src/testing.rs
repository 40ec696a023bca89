//! Test-only fault injection, through the daemon's environment (unset in production; only
//! whoever starts the daemon, root, can set it):
//!
//! - `PACKD_TEST_CRASH_AT=TASK:MODE:WHEN` (e.g. `link-pack:do:after`) kills the daemon with
//!   SIGKILL at that task boundary, exactly as a power cut would, so the end-to-end tests can
//!   prove a change always finishes or undoes on restart;
//! - `PACKD_TEST_HIDE_LAYERS=landlock,seccomp,cgroups` makes the daemon believe the kernel
//!   lacks those layers, to prove strict apps are refused rather than run open;
//! - `PACKD_TEST_CGROUP_LAYOUT=unified:DIR` makes it use the cgroup2 hierarchy at `DIR` as a
//!   pure v2 system's (see [`cgroup_layout`]).

use std::sync::OnceLock;

use crate::engine::Mode;
use crate::state::TaskKind;

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var("PACKD_TEST_CRASH_AT").ok())
        .as_deref()
}

/// Kills the process if the crash point `kind:mode:when` was asked for.
pub fn crash_point(kind: TaskKind, mode: Mode, when: &str) {
    let Some(target) = target() else { return };
    let kind = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mode = match mode {
        Mode::Do => "do",
        Mode::Undo => "undo",
    };
    if target == format!("{kind}:{mode}:{when}") {
        tracing::warn!(point = target, "test crash point reached; killing packd");
        // SAFETY: sending SIGKILL to ourselves.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Applies `PACKD_TEST_HIDE_LAYERS` to the probed kernel features.
pub fn hide_layers(mut f: confine::Features) -> confine::Features {
    let Ok(hide) = std::env::var("PACKD_TEST_HIDE_LAYERS") else {
        return f;
    };
    for layer in hide.split(',').map(str::trim) {
        match layer {
            "landlock" => f.landlock_abi = 0,
            "seccomp" => f.seccomp = false,
            "apparmor" => f.apparmor = false,
            "cgroups" => f.cgroups = Err("hidden for a test".into()),
            _ => {}
        }
        tracing::warn!(layer, "test: pretending the kernel lacks this layer");
    }
    f
}

/// The cgroup layout to use: the one detected, unless `PACKD_TEST_CGROUP_LAYOUT=unified:DIR`
/// makes the daemon treat the cgroup2 hierarchy at `DIR` as the only one (a pure v2 system; on
/// a hybrid machine that hierarchy has no controllers, which is what the tests need).
pub fn cgroup_layout() -> Result<confine::cgroup::Layout, confine::cgroup::CgroupError> {
    match std::env::var("PACKD_TEST_CGROUP_LAYOUT") {
        Ok(v) => {
            let dir = v.strip_prefix("unified:").unwrap_or(&v);
            tracing::warn!(dir, "test: a pure cgroup v2 layout");
            Ok(confine::cgroup::Layout::Unified { root: dir.into() })
        }
        Err(_) => confine::cgroup::Layout::detect(),
    }
}
