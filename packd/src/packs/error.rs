//! What the pack manager refuses, and why its tasks fail.

use std::path::PathBuf;

use packd_api::ErrorKind;
use packfmt::{ImageError, MetaError, Revision};

use crate::error::{Busy, IoError};
use crate::policy::PolicyError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack {0:?} is not installed; see 'pack list'")]
    NotInstalled(String),
    /// The package itself is refused (its image, its metadata, its contents).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error(transparent)]
    Inspect(#[from] gadget_kernel_base::inspect::InspectError),
    #[error("the upload is empty; pass a .pack file")]
    EmptyUpload,
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(
        "cannot install {label}: local packages carry no store signature; pass --dangerous to install it anyway"
    )]
    Unsigned { label: String },
    #[error(
        "cannot install {label}: a pack of type {installed} named {name:?} is installed, and this one is of type {new}"
    )]
    TypeClash {
        label: String,
        name: String,
        installed: &'static str,
        new: &'static str,
    },
    #[error(
        "cannot install {label}: its base {base:?} is not installed; install the base first (build one with 'pack base build')"
    )]
    BaseMissing { label: String, base: String },
    #[error(
        "{name} has revision {revision} installed already; switch to it with 'pack revert {name} --revision {revision}'"
    )]
    RevisionInstalled { name: String, revision: Revision },
    #[error("cannot install {label}: its base {base:?} has change {change} ({kind}) in progress")]
    BaseBusy {
        label: String,
        base: String,
        change: u64,
        kind: String,
    },
    #[error("cannot remove base {base:?}: {} use{} it; remove {} first", users.join(", "), if users.len() == 1 { "s" } else { "" }, if users.len() == 1 { "it" } else { "them" })]
    BaseInUse { base: String, users: Vec<String> },
    #[error("{name} is a {kind} pack; only app packs can be reverted")]
    NotAnApp { name: String, kind: &'static str },
    #[error("{name} is already at revision {revision}; pick another with --revision ({})", listed.join(", "))]
    AlreadyAt {
        name: String,
        revision: Revision,
        listed: Vec<String>,
    },
    #[error("{name} has no revision {revision}; it has {}", listed.join(", "))]
    NoSuchRevision {
        name: String,
        revision: Revision,
        listed: Vec<String>,
    },
    #[error("{name} has no revision before {from} to revert to")]
    NothingToRevertTo { name: String, from: Revision },
    #[error("invalid revision {given:?}; 'pack info {name}' lists the revisions")]
    BadRevision { name: String, given: String },
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Something of the user's sits where a refresh must put its copy.
    #[error("{0} is in the way of the refresh; move it elsewhere and try again")]
    InTheWay(PathBuf),
    #[error("cannot copy {from} to {to}: {message}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        message: String,
    },
    #[error("the upload {staged} is gone and {blob} does not exist")]
    UploadGone { staged: PathBuf, blob: PathBuf },
    #[error("{name} has no revision {revision} any more")]
    RevisionGone { name: String, revision: Revision },
    #[error("a {task} task in a change for {pack}, which is not a {expected} change")]
    WrongPlan {
        task: &'static str,
        pack: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Connection(Box<crate::connections::ConnectionError>),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl PackError {
    pub fn kind(&self) -> ErrorKind {
        use PackError::*;
        match self {
            NotInstalled(_) => ErrorKind::PackNotFound,
            Invalid(_) | Meta(_) | Image(_) | Inspect(_) | EmptyUpload | TypeClash { .. } => {
                ErrorKind::InvalidPack
            }
            Interrupted(_) | Unsigned { .. } | BadRevision { .. } => ErrorKind::BadRequest,
            BaseMissing { .. } => ErrorKind::BaseNotFound,
            BaseBusy { .. } | Busy(_) => ErrorKind::ChangeConflict,
            BaseInUse { .. } | NotAnApp { .. } | NoSuchRevision { .. } => ErrorKind::BadRequest,
            NothingToRevertTo { .. } | InTheWay(_) => ErrorKind::BadRequest,
            AlreadyAt { .. } | RevisionInstalled { .. } => ErrorKind::PackAlreadyInstalled,
            Connection(e) => e.kind(),
            Copy { .. } | UploadGone { .. } | RevisionGone { .. } | WrongPlan { .. } => {
                ErrorKind::InternalError
            }
            Policy(_) | Io(_) | State(_) => ErrorKind::InternalError,
        }
    }
}

impl From<crate::connections::ConnectionError> for PackError {
    fn from(e: crate::connections::ConnectionError) -> Self {
        PackError::Connection(Box::new(e))
    }
}
