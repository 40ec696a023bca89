//! What the store manager refuses, and why a download or a refresh fails.

use packd_api::ErrorKind;
use packfmt::assertion::AssertionError;
use packfmt::assertion::trust::TrustError;

use crate::error::IoError;
use crate::packs::PackError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no remote named {0:?}; see 'pack remote list'")]
    NoRemote(String),
    #[error("a remote named {0:?} exists already; remove it first with 'pack remote remove {0}'")]
    RemoteExists(String),
    #[error("no store is configured; add one with 'pack remote add NAME URL --trust ROOT.assert'")]
    NoRemotes,
    #[error("more than one remote is configured ({0}); say which with --remote")]
    WhichRemote(String),
    #[error("cannot remove remote {name:?}: {packs} come from it; remove them first")]
    RemoteInUse { name: String, packs: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("store {remote:?} cannot be reached at {url}: {message}")]
    Unreachable {
        remote: String,
        url: String,
        message: String,
    },
    #[error("store {remote:?} refused the request: {message}")]
    Refused { remote: String, message: String },
    #[error("{name}: {message}")]
    StoreSays {
        name: String,
        code: String,
        message: String,
    },
    /// What the store sent is not what it signed, or not signed by whom it should be.
    #[error("refused what store {remote:?} sent: {message}")]
    Untrusted { remote: String, message: String },
    #[error(
        "the download of {name} revision {revision} stopped at {done} of {total} bytes ({message}); run the command again to resume it"
    )]
    Interrupted {
        name: String,
        revision: u32,
        done: u64,
        total: u64,
        message: String,
    },
    #[error(
        "pack {name:?} is installed from a local file, not from a store; install it from a store with 'pack remove {name}' then 'pack install {name}'"
    )]
    NotFromStore { name: String },
    #[error("pack {0:?} is installed already; refresh it with 'pack refresh {0}'")]
    Installed(String),
    #[error("{0}")]
    Pack(#[from] PackError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Io(#[from] IoError),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NoRemote(_) | StoreError::NoRemotes => ErrorKind::RemoteNotFound,
            StoreError::RemoteExists(_)
            | StoreError::WhichRemote(_)
            | StoreError::RemoteInUse { .. }
            | StoreError::BadRequest(_)
            | StoreError::NotFromStore { .. } => ErrorKind::BadRequest,
            StoreError::Installed(_) => ErrorKind::PackAlreadyInstalled,
            StoreError::StoreSays { code, .. } if code == "not-found" => ErrorKind::PackNotFound,
            StoreError::StoreSays { .. } => ErrorKind::BadRequest,
            StoreError::Unreachable { .. }
            | StoreError::Refused { .. }
            | StoreError::Interrupted { .. } => ErrorKind::StoreUnavailable,
            StoreError::Untrusted { .. } => ErrorKind::NotTrusted,
            StoreError::Pack(e) => e.kind(),
            StoreError::State(_) | StoreError::Io(_) => ErrorKind::InternalError,
        }
    }

    pub fn untrusted(remote: &str, message: impl std::fmt::Display) -> StoreError {
        StoreError::Untrusted {
            remote: remote.to_string(),
            message: message.to_string(),
        }
    }
}

/// An assertion that does not parse, as a refusal of what `remote` sent.
pub fn bad_assertion(remote: &str, e: AssertionError) -> StoreError {
    StoreError::untrusted(remote, e)
}

/// An assertion that does not verify.
pub fn not_trusted(remote: &str, e: TrustError) -> StoreError {
    StoreError::untrusted(remote, e)
}
