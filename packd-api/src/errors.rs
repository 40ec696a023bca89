//! What an error means, for machines: the stable `kind` of an error envelope (snapd's
//! `"kind": "snap-not-found"` and friends), the HTTP status it comes with, and the exit codes
//! of `pack`. Defined once, here, for the daemon and its clients.

use serde::{Deserialize, Serialize};

/// The `kind` of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request is malformed or contradicts itself.
    BadRequest,
    /// The package (or its metadata) is refused.
    InvalidPack,
    PackNotFound,
    /// An install of a revision that is installed already, or a revert to the current one.
    PackAlreadyInstalled,
    AppNotFound,
    BaseNotFound,
    ChangeNotFound,
    InterfaceNotFound,
    /// A plug or slot that does not exist, or a connection that does not.
    ConnectionNotFound,
    /// The endpoint does not exist.
    NotFound,
    /// Another change works on the same pack.
    ChangeConflict,
    /// The caller may not do this (not root, or not what its connections allow).
    PermissionDenied,
    /// A strict app cannot run here: the kernel lacks a layer its confinement needs.
    ConfinementUnavailable,
    /// The sandbox could not be built.
    SandboxFailed,
    /// A service or hook did not do what was asked (start, stop, pass its health check).
    ServiceFailed,
    /// The caller holds as much as one user may (sandboxes running at once).
    LimitReached,
    InternalError,
    /// No remote of that name (`pack remote list`).
    RemoteNotFound,
    /// A store could not be reached, or answered with an error of its own.
    StoreUnavailable,
    /// What a store sent does not verify (signature, digest, expiry, serial): refused.
    NotTrusted,
    /// A kind this client does not know (from a newer packd).
    #[serde(other)]
    Other,
}

impl ErrorKind {
    /// The HTTP status an error of this kind is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::InvalidPack
            | ErrorKind::PackAlreadyInstalled
            | ErrorKind::NotTrusted => 400,
            ErrorKind::PermissionDenied | ErrorKind::ConfinementUnavailable => 403,
            ErrorKind::PackNotFound
            | ErrorKind::AppNotFound
            | ErrorKind::BaseNotFound
            | ErrorKind::ChangeNotFound
            | ErrorKind::InterfaceNotFound
            | ErrorKind::ConnectionNotFound
            | ErrorKind::RemoteNotFound
            | ErrorKind::NotFound => 404,
            ErrorKind::ChangeConflict => 409,
            ErrorKind::LimitReached => 429,
            ErrorKind::StoreUnavailable => 502,
            ErrorKind::SandboxFailed
            | ErrorKind::ServiceFailed
            | ErrorKind::InternalError
            | ErrorKind::Other => 500,
        }
    }

    /// The word on the wire (`pack-not-found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::InvalidPack => "invalid-pack",
            ErrorKind::PackNotFound => "pack-not-found",
            ErrorKind::PackAlreadyInstalled => "pack-already-installed",
            ErrorKind::AppNotFound => "app-not-found",
            ErrorKind::BaseNotFound => "base-not-found",
            ErrorKind::ChangeNotFound => "change-not-found",
            ErrorKind::InterfaceNotFound => "interface-not-found",
            ErrorKind::ConnectionNotFound => "connection-not-found",
            ErrorKind::NotFound => "not-found",
            ErrorKind::ChangeConflict => "change-conflict",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::ConfinementUnavailable => "confinement-unavailable",
            ErrorKind::SandboxFailed => "sandbox-failed",
            ErrorKind::ServiceFailed => "service-failed",
            ErrorKind::LimitReached => "limit-reached",
            ErrorKind::InternalError => "internal-error",
            ErrorKind::RemoteNotFound => "remote-not-found",
            ErrorKind::StoreUnavailable => "store-unavailable",
            ErrorKind::NotTrusted => "not-trusted",
            ErrorKind::Other => "other",
        }
    }
}

/// The exit codes of `pack`.
pub mod exit {
    /// Done.
    pub const SUCCESS: i32 = 0;
    /// A refused request, a failed change, an unreachable packd.
    pub const FAILURE: i32 = 1;
    /// The command line is wrong (clap's code).
    pub const USAGE: i32 = 2;
    /// `pack run`: the sandbox could not be built or the app not started (as `docker run`).
    pub const NOT_STARTED: i32 = 125;
    /// `pack run`: the command exists but cannot be executed (as a shell reports).
    pub const CANNOT_EXECUTE: i32 = 126;
    /// `pack run`: the command does not exist (as a shell reports).
    pub const NOT_FOUND: i32 = 127;
    /// `pack run`: otherwise the app's own status, or 128 + the signal that ended it.
    pub const SIGNALLED_BASE: i32 = 128;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_kebab_case_on_the_wire_and_unknown_ones_are_other() {
        for kind in [
            ErrorKind::PackNotFound,
            ErrorKind::ChangeConflict,
            ErrorKind::ConfinementUnavailable,
            ErrorKind::LimitReached,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
        }
        let newer: ErrorKind = serde_json::from_str("\"quota-exceeded\"").unwrap();
        assert_eq!(newer, ErrorKind::Other);
        assert_eq!(ErrorKind::ChangeConflict.http_status(), 409);
    }
}
