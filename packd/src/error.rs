//! The daemon's error type. Each variant is one clear sentence for the user and maps to one HTTP
//! status and one stable `kind` string in `api::error` (the only place that mapping lives).

use std::io;
use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or the package is wrong; nothing was changed.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Meta(#[from] packfmt::MetaError),
    #[error("{0}")]
    Image(#[from] packfmt::ImageError),
    #[error("{message}")]
    NotFound { kind: &'static str, message: String },
    #[error("{0}")]
    Forbidden(String),
    /// Another change is already working on the same pack.
    #[error("{0}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Sandbox(#[from] confine::StepError),
    /// A service did not start (or stop) as asked.
    #[error("{0}")]
    Service(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    pub fn pack_not_found(name: &str) -> Self {
        Error::NotFound {
            kind: "pack-not-found",
            message: format!("pack {name:?} is not installed; see 'pack list'"),
        }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds "what was being done to which path" to I/O errors.
pub trait IoContext<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(format!("cannot {what} {}", path.display()), e))
    }
}
