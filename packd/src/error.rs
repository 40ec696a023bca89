//! The daemon's errors. Each manager has its own enum (`PackError`, `ConnectionError`,
//! `ServiceError`, `LaunchError`, `StateError`, `ConfigError`); [`Error`] gathers them for the
//! API and the task runner, and [`Error::kind`] is the one place an error is given its
//! machine-readable kind (`packd_api::ErrorKind`, which also fixes the HTTP status).

use std::io;
use std::path::Path;

use packd_api::ErrorKind;

pub use crate::connections::ConnectionError;
pub use crate::launch::LaunchError;
pub use crate::packs::PackError;
pub use crate::services::ServiceError;
pub use crate::state::StateError;
pub use crate::state::config::ConfigError;
pub use crate::store::StoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request the API itself refuses (a bad argument, an unknown action).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// Something the API looks up (a change, an interface) is not there.
    #[error("{message}")]
    NotFound { kind: ErrorKind, message: String },
}

impl Error {
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    /// What only root may see of this error (a hook's output), kept apart from the message.
    pub fn private_detail(&self) -> Option<String> {
        match self {
            Error::Service(e) => e.private_detail(),
            _ => None,
        }
    }

    /// The machine-readable kind (and so the HTTP status) of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::State(_) => ErrorKind::InternalError,
            Error::Config(_) | Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::Pack(e) => e.kind(),
            Error::Connection(e) => e.kind(),
            Error::Service(e) => e.kind(),
            Error::Launch(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Forbidden(_) => ErrorKind::PermissionDenied,
            Error::NotFound { kind, .. } => *kind,
        }
    }
}

/// An I/O error with what was being done to which path.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    pub context: String,
    #[source]
    pub source: io::Error,
}

impl IoError {
    pub fn new(context: impl Into<String>, source: io::Error) -> Self {
        IoError {
            context: context.into(),
            source,
        }
    }
}

/// Adds "what was being done to which path" to I/O errors.
pub trait IoContext<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(format!("cannot {what} {}", path.display()), e))
    }
}

/// The change in progress on a pack, as every planner refuses a second one (snapd's
/// change-conflict).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "pack {pack:?} has change {change} ({kind}) in progress; wait for it with 'pack watch {change}'"
)]
pub struct Busy {
    pub pack: String,
    pub change: u64,
    pub kind: String,
}

/// Refuses when a change is under way on any of `packs`.
pub fn check_idle(state: &crate::state::State, packs: &[&str]) -> Result<(), Busy> {
    for p in packs {
        if let Some(c) = state.change_in_progress(p) {
            return Err(Busy {
                pack: p.to_string(),
                change: c.id,
                kind: c.kind.clone(),
            });
        }
    }
    Ok(())
}
