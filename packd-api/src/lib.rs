//! What packd and its clients share: the JSON of the API ([`types`]), the kinds of its errors
//! and the exit codes of `pack` ([`errors`]), passing descriptors on its socket ([`fdpass`])
//! and the reports of `/v2/debug/*` ([`debug`]).
//!
//! A crate of its own so that `pack`, which is on every app's start-up path, links none of the
//! daemon: no libsquashfs, no sandbox code. It builds for any libc (the release `pack` is a
//! static musl binary; see the Makefile's `release`).

pub mod debug;
pub mod errors;
pub mod fdpass;
pub mod store;
pub mod types;

pub use errors::{ErrorKind, exit};

/// Percent-encodes a path segment or query value: everything but RFC 3986's unreserved
/// characters (the client's requests to packd, and packd's to stores).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
