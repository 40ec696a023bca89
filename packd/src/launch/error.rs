//! Why a launch did not happen, and the status `pack run` exits with for it.

use std::path::PathBuf;

use confine::StepError;
use confine::cgroup::CgroupError;
use packd_api::{ErrorKind, exit};

use crate::error::IoError;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("pack {0:?} is not installed; see 'pack list'")]
    NotInstalled(String),
    #[error("pack {pack:?} has no app named {app:?}; {}", if apps.is_empty() { "it has no apps".to_string() } else { format!("its apps are: {}", apps.join(", ")) })]
    NoApp {
        pack: String,
        app: String,
        apps: Vec<String>,
    },
    #[error("the base {base:?} of pack {pack:?} is not installed; install it first")]
    NoBase { base: String, pack: String },
    #[error("pack {0:?} has apps but no base")]
    NoBaseDeclared(String),
    #[error("pack {pack:?} ({revision}) has no {hook} hook")]
    NoHook {
        pack: String,
        revision: String,
        hook: String,
    },
    #[error("app {app:?} of pack {pack:?} has an empty command")]
    EmptyCommand { pack: String, app: String },
    #[error("{0}")]
    BadTarget(String),
    /// A strict app whose confinement needs a layer this kernel lacks.
    #[error(
        "cannot run {target}: its confinement is strict and this kernel lacks {missing}; packd never runs a strict app with a layer missing (see 'pack debug sandbox {target}')"
    )]
    Strict { target: String, missing: String },
    #[error("the seccomp profile of {target} is missing ({}); reinstall the pack", path.display())]
    MissingProfile { target: String, path: PathBuf },
    #[error("the device {} of this app's connection is not available: {error}", path.display())]
    DeviceUnavailable { path: PathBuf, error: String },
    #[error("{} is a block device; interfaces give access to character devices only", .0.display())]
    BlockDevice(PathBuf),
    #[error("cannot set up a connection of this app: {what} {}", path.display())]
    GrantMissing { what: &'static str, path: PathBuf },
    #[error("a content source outside the packs' data: {}", .0.display())]
    ContentOutside(PathBuf),
    #[error(
        "{pack}.{app} is a forking service, which needs a pid namespace of its own to be supervised; its system-observe connection takes that away: disconnect it, or use daemon: simple"
    )]
    ForkingNeedsPidNamespace { pack: String, app: String },
    /// A limit the pack declares that this kernel's cgroups cannot enforce.
    #[error("cannot run {target}: {error}")]
    Cgroup {
        target: String,
        // Boxed: its controllers and paths would make every result carrying a LaunchError big.
        error: Box<CgroupError>,
    },
    #[error("cannot make the network namespace of {pack}: {error}")]
    Network { pack: String, error: std::io::Error },
    /// The sandbox could not be built (or the command not started): the failed step, and the
    /// status to exit with (125, or 126/127 from the command's exec).
    #[error("{error}")]
    Sandbox { error: StepError, code: i32 },
    /// The sandbox helper itself failed.
    #[error("{0}")]
    Helper(String),
    #[error(
        "cannot run {target}: user {uid} runs {limit} sandboxes already, as many as one user \
         may at once; end one of them first"
    )]
    TooManySandboxes {
        target: String,
        uid: u32,
        limit: usize,
    },
    #[error(transparent)]
    Connection(Box<crate::connections::ConnectionError>),
    #[error(transparent)]
    Io(#[from] IoError),
}

impl LaunchError {
    pub fn kind(&self) -> ErrorKind {
        use LaunchError::*;
        match self {
            NotInstalled(_) => ErrorKind::PackNotFound,
            NoApp { .. } => ErrorKind::AppNotFound,
            NoBase { .. } => ErrorKind::BaseNotFound,
            BadTarget(_) | DeviceUnavailable { .. } | BlockDevice(_) | GrantMissing { .. } => {
                ErrorKind::BadRequest
            }
            ForkingNeedsPidNamespace { .. } => ErrorKind::BadRequest,
            TooManySandboxes { .. } => ErrorKind::LimitReached,
            Strict { .. } | Cgroup { .. } => ErrorKind::ConfinementUnavailable,
            Sandbox { .. } | Helper(_) | Network { .. } => ErrorKind::SandboxFailed,
            NoBaseDeclared(_) | NoHook { .. } | EmptyCommand { .. } | MissingProfile { .. } => {
                ErrorKind::InternalError
            }
            Connection(e) => e.kind(),
            ContentOutside(_) | Io(_) => ErrorKind::InternalError,
        }
    }

    /// What `pack run` exits with when this stopped the launch.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::Sandbox { code, .. } => *code,
            _ => exit::NOT_STARTED,
        }
    }
}

impl From<crate::connections::ConnectionError> for LaunchError {
    fn from(e: crate::connections::ConnectionError) -> Self {
        LaunchError::Connection(Box::new(e))
    }
}
