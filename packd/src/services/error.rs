//! What the service manager refuses, and why a service, a hook or a health window failed.

use packd_api::ErrorKind;

use crate::error::{Busy, IoError};
use crate::launch::LaunchError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("pack {0:?} is not installed; see 'pack list'")]
    PackNotInstalled(String),
    #[error("{pack}.{app} is not a service; 'pack services {pack}' lists them")]
    NotAService { pack: String, app: String },
    #[error("those packs have no services")]
    NoServices,
    #[error("services of one pack at a time, not {}; run the command once per pack", .0.join(", "))]
    SeveralPacks(Vec<String>),
    #[error("name the pack or its services (PACK or PACK.APP)")]
    NothingNamed,
    #[error("{0}")]
    BadRequest(String),
    #[error("service {pack}.{app} did not start: {why} (see 'pack logs {pack}.{app}')")]
    DidNotStart {
        pack: String,
        app: String,
        why: String,
    },
    #[error("service {pack}.{app} was stopped while it started")]
    StoppedWhileStarting { pack: String, app: String },
    #[error(
        "service {pack}.{app} {what} within the health window ({window}s); see 'pack logs {pack}.{app}'"
    )]
    Unhealthy {
        pack: String,
        app: String,
        what: &'static str,
        window: f32,
    },
    #[error("the {hook} hook of {pack} did not start: {error}")]
    HookDidNotStart {
        hook: String,
        pack: String,
        error: Box<LaunchError>,
    },
    /// What the hook printed (`said`) is not in the message, which every user may read in the
    /// change: it is the change's private detail, for root ([`ServiceError::private_detail`]).
    #[error("the {hook} hook of {pack} {ended}")]
    HookFailed {
        hook: String,
        pack: String,
        ended: String,
        said: String,
    },
    #[error("aborted {0}")]
    Aborted(&'static str),
    #[error("packd is stopping; services are not started now")]
    Stopping,
    /// The supervisor (packd's monitors, or systemd) could not start or reach a monitor.
    #[error("cannot supervise {name}: {message}")]
    Supervisor { name: String, message: String },
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ServiceError {
    /// What only root may see of this error: a failed hook's last lines of output.
    pub fn private_detail(&self) -> Option<String> {
        match self {
            ServiceError::HookFailed { said, .. } if !said.is_empty() => {
                Some(format!("it said: {said}"))
            }
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use ServiceError::*;
        match self {
            PackNotInstalled(_) => ErrorKind::PackNotFound,
            NotAService { .. } => ErrorKind::AppNotFound,
            NoServices | SeveralPacks(_) | NothingNamed | BadRequest(_) => ErrorKind::BadRequest,
            Busy(_) => ErrorKind::ChangeConflict,
            Launch(e) => e.kind(),
            DidNotStart { .. }
            | StoppedWhileStarting { .. }
            | Unhealthy { .. }
            | HookDidNotStart { .. }
            | HookFailed { .. }
            | Aborted(_)
            | Stopping
            | Supervisor { .. } => ErrorKind::ServiceFailed,
            Io(_) | State(_) => ErrorKind::InternalError,
        }
    }
}
