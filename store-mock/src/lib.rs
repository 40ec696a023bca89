//! `pack-store`: a self-hostable store for packd. A fleet operator runs one; devices trust it
//! through its root key (`pack remote add NAME URL --trust ROOT.assert`).
//!
//! - [`keys`]: the store's directory, its root and signing keys, `init`;
//! - [`db`]: SQLite: publishers, packs, revisions, release history, assertions, the serial;
//! - [`channel`]: `track/risk/branch` channels and how an empty one follows another;
//! - [`catalog`]: an immutable snapshot of what the store offers, for the devices' reads;
//! - [`ops`]: what publishers and the operator change (register, upload, release, close,
//!   revoke, key rotation and revocation), each in one transaction;
//! - [`server`]: the HTTP API (docs/store-api.md), and [`tls`] for HTTPS;
//! - [`client`]: the publisher's side of it, for the `pack-store` commands.

pub mod catalog;
pub mod channel;
pub mod client;
pub mod db;
pub mod keys;
pub mod ops;
pub mod rollout;
pub mod rollouts;
pub mod server;
pub mod tls;

use std::path::PathBuf;

/// What the store refuses, and why its operations fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{} is not a store; make one with: pack-store init {}", .0.display(), .0.display())]
    NotAStore(PathBuf),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("store database: {0}")]
    Database(String),
    #[error("{0}")]
    Io(String),
}

impl From<packfmt::assertion::AssertionError> for StoreError {
    fn from(e: packfmt::assertion::AssertionError) -> Self {
        StoreError::Invalid(e.0)
    }
}

impl StoreError {
    /// Its code in the API's error answers.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotAStore(_) | StoreError::Database(_) | StoreError::Io(_) => "internal",
            StoreError::Conflict(_) => "conflict",
            StoreError::NotFound(_) => "not-found",
            StoreError::Invalid(_) => "invalid",
            StoreError::Forbidden(_) => "forbidden",
            StoreError::Unauthorized(_) => "unauthorized",
        }
    }
}

/// Store, publisher and pack names: 2–40 of `a-z 0-9 -`, starting with a letter.
pub fn check_id(what: &str, s: &str) -> Result<(), StoreError> {
    let ok = (2..=40).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {what} {s:?}: use 2 to 40 of a-z, 0-9 and '-', starting with a letter"
        )))
    }
}

/// `n` random bytes as unpadded URL-safe base64 (ids, tokens).
pub fn random_id(n: usize) -> Result<String, StoreError> {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Io(format!("cannot get random numbers: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA3-384 of `data`, hex.
pub fn sha3_hex(data: &[u8]) -> String {
    use sha3::Digest;
    hex(&sha3::Sha3_384::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
