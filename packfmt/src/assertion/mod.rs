//! Signed assertions, in snapd's style: text headers, an optional body, and an ed25519
//! signature over both. A store's trust is a chain of them (see [`trust`]):
//!
//! - `root-key`: the store's offline root key, signed by itself; a device trusts a store only
//!   through the root it was given (`pack remote add --trust ROOT.assert`);
//! - `account-key`: an online signing key, certified by the root (a later revision with
//!   `revoked` ends it);
//! - `pack-declaration`: a name, its pack-id, its publisher, and what privileged interfaces may
//!   auto-connect (the body, JSON);
//! - `pack-revision`: a pack-id's revision, its SHA3-384 and size (a later revision with
//!   `revoked` withdraws it);
//! - `refresh`: a store's answer to one refresh request (the body, JSON), with a serial, an
//!   expiry and the digest of the request it answers, so it cannot be replayed (after TUF).
//!
//! The text form:
//!
//! ```text
//! type: pack-revision
//! authority-id: acme
//! pack-id: …
//! sign-key-sha3-384: …
//! body-length: 12          (only with a body)
//!
//! BODY                     (only with a body, followed by a blank line)
//!
//! BASE64-SIGNATURE
//! ```
//!
//! The signature covers everything before the blank line that precedes it. Headers are
//! single-line `name: value` pairs, `type` first, each name once. Key ids are the unpadded
//! URL-safe base64 of the SHA3-384 of the 32-byte public key.

mod key;
pub mod trust;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use key::{PublicKey, SecretKey};

/// The largest assertion accepted (text form).
pub const MAX_SIZE: usize = 256 << 10;
/// The largest body accepted.
pub const MAX_BODY: usize = 128 << 10;

/// Why a text is not an assertion, or an assertion not of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AssertionError(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, AssertionError> {
    Err(AssertionError(msg.into()))
}

/// The kinds of assertion, with the headers each must have (besides `type`, `authority-id`
/// and `sign-key-sha3-384`) and those that make its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    RootKey,
    AccountKey,
    PackDeclaration,
    PackRevision,
    Refresh,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::RootKey,
        Kind::AccountKey,
        Kind::PackDeclaration,
        Kind::PackRevision,
        Kind::Refresh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::RootKey => "root-key",
            Kind::AccountKey => "account-key",
            Kind::PackDeclaration => "pack-declaration",
            Kind::PackRevision => "pack-revision",
            Kind::Refresh => "refresh",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Headers it must have.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Kind::RootKey => &["public-key-id", "public-key"],
            Kind::AccountKey => &["public-key-id", "public-key", "since"],
            Kind::PackDeclaration => &["pack-id", "pack-name", "publisher-id", "timestamp"],
            Kind::PackRevision => &[
                "pack-id",
                "pack-revision",
                "pack-sha3-384",
                "pack-size",
                "publisher-id",
                "timestamp",
            ],
            Kind::Refresh => &["serial", "expires", "request-sha3-384", "timestamp"],
        }
    }

    /// The headers that say which thing it is about (its revisions replace one another).
    pub fn primary_key(self) -> &'static [&'static str] {
        match self {
            Kind::RootKey | Kind::AccountKey => &["public-key-id"],
            Kind::PackDeclaration => &["pack-id"],
            Kind::PackRevision => &["pack-id", "pack-revision"],
            Kind::Refresh => &["serial"],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed (or freshly signed) assertion. Its signature is not checked here: see [`trust`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    kind: Kind,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The bytes the signature covers, as they were written.
    signed: Vec<u8>,
    signature: Vec<u8>,
}

impl Assertion {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header it must have (checked when it was parsed or built).
    pub fn get(&self, name: &str) -> &str {
        self.header(name).unwrap_or_default()
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn authority(&self) -> &str {
        self.get("authority-id")
    }

    pub fn sign_key(&self) -> &str {
        self.get("sign-key-sha3-384")
    }

    /// Its revision (`revision`, 0 when absent): a later one replaces it.
    pub fn revision(&self) -> u64 {
        self.header("revision")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    /// The values of its primary key headers.
    pub fn primary_key(&self) -> Vec<&str> {
        self.kind
            .primary_key()
            .iter()
            .map(|h| self.get(h))
            .collect()
    }

    /// Whether it has been withdrawn (`revoked`).
    pub fn is_revoked(&self) -> bool {
        self.header("revoked").is_some()
    }

    pub(crate) fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    pub(crate) fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Its text form, as signed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed.clone();
        out.extend_from_slice(b"\n\n");
        out.extend_from_slice(STANDARD.encode(&self.signature).as_bytes());
        out.push(b'\n');
        out
    }

    /// A builder holding its headers and body (without its signer), to sign it again.
    pub fn to_builder(&self) -> Builder {
        Builder {
            kind: self.kind,
            headers: self
                .headers
                .iter()
                .filter(|(n, _)| n != "sign-key-sha3-384")
                .cloned()
                .collect(),
            body: self.body.clone(),
        }
    }

    /// Parses one assertion, the whole of `text`.
    pub fn parse(text: &[u8]) -> Result<Assertion, AssertionError> {
        let (a, rest) = parse_one(text)?;
        if !rest.iter().all(|b| *b == b'\n') {
            return bad("unexpected text after the assertion's signature");
        }
        Ok(a)
    }

    /// Parses a stream of assertions separated by blank lines.
    pub fn parse_all(mut text: &[u8]) -> Result<Vec<Assertion>, AssertionError> {
        let mut all = Vec::new();
        loop {
            while let [b'\n', rest @ ..] = text {
                text = rest;
            }
            if text.is_empty() {
                return Ok(all);
            }
            let (a, rest) = parse_one(text)
                .map_err(|e| AssertionError(format!("assertion {}: {e}", all.len() + 1)))?;
            all.push(a);
            text = rest;
        }
    }
}

/// An assertion being made: headers in order, then [`Builder::sign`].
#[derive(Debug, Clone)]
pub struct Builder {
    kind: Kind,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Builder {
    pub fn new(kind: Kind, authority: &str) -> Builder {
        Builder {
            kind,
            headers: vec![("authority-id".into(), authority.into())],
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl fmt::Display) -> Builder {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.to_string()));
        self
    }

    /// Drops a header (a grant taken away, say).
    pub fn without(mut self, name: &str) -> Builder {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Builder {
        self.body = body;
        self
    }

    /// Signs it with `key`; refuses headers or a body that would not parse back.
    pub fn sign(self, key: &SecretKey) -> Result<Assertion, AssertionError> {
        let mut text = format!("type: {}\n", self.kind.name());
        for (name, value) in &self.headers {
            check_header(name, value)?;
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push_str(&format!("sign-key-sha3-384: {}\n", key.public().id()));
        let mut signed = text.into_bytes();
        if !self.body.is_empty() {
            signed.extend_from_slice(format!("body-length: {}\n\n", self.body.len()).as_bytes());
            signed.extend_from_slice(&self.body);
        } else {
            signed.pop();
        }
        let signature = key.sign(&signed);
        let mut out = signed;
        out.extend_from_slice(b"\n\n");
        out.extend_from_slice(STANDARD.encode(signature).as_bytes());
        out.push(b'\n');
        Assertion::parse(&out)
    }
}

fn check_header(name: &str, value: &str) -> Result<(), AssertionError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad(format!(
            "invalid header name {name:?}: use lowercase letters, digits and dashes"
        ));
    }
    if matches!(name, "type" | "sign-key-sha3-384" | "body-length") {
        return bad(format!("header {name:?} is set by the signer"));
    }
    if value.is_empty() || value.chars().any(char::is_control) || value.trim() != value {
        return bad(format!(
            "header {name:?} has an invalid value {value:?}: one line of text, not empty, no surrounding spaces"
        ));
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_one(text: &[u8]) -> Result<(Assertion, &[u8]), AssertionError> {
    let Some(end) = find(text, b"\n\n") else {
        return bad("no blank line after the headers; an assertion ends with a signature");
    };
    let head = std::str::from_utf8(&text[..end])
        .map_err(|_| AssertionError("the headers are not UTF-8".into()))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, line) in head.split('\n').enumerate() {
        let Some((name, value)) = line.split_once(": ") else {
            return bad(format!(
                "header line {} is not \"name: value\": {line:?}",
                i + 1
            ));
        };
        if headers.iter().any(|(n, _)| n == name) {
            return bad(format!("header {name:?} appears twice"));
        }
        if name != "type" && name != "sign-key-sha3-384" && name != "body-length" {
            check_header(name, value)?;
        }
        headers.push((name.to_string(), value.to_string()));
    }
    let kind = match headers.first() {
        Some((n, v)) if n == "type" => Kind::from_name(v).ok_or_else(|| {
            AssertionError(format!(
                "unknown assertion type {v:?}; packd knows {}",
                Kind::ALL.map(Kind::name).join(", ")
            ))
        })?,
        _ => return bad("the first header must be \"type\""),
    };
    let body_len = match headers.iter().find(|(n, _)| n == "body-length") {
        None => 0,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if n > 0 && n <= MAX_BODY => n,
            _ => {
                return bad(format!(
                    "invalid body-length {v:?}: a whole number from 1 to {MAX_BODY}"
                ));
            }
        },
    };
    let mut at = end;
    if body_len > 0 {
        let body_start = end + 2;
        let body_end = body_start + body_len;
        if text.len() < body_end + 2 || &text[body_end..body_end + 2] != b"\n\n" {
            return bad(
                "the body is shorter than its body-length, or not followed by a blank line",
            );
        }
        at = body_end;
    }
    let sig_start = at + 2;
    let sig_end = text[sig_start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(text.len(), |p| sig_start + p);
    let signature = STANDARD
        .decode(&text[sig_start..sig_end])
        .map_err(|_| AssertionError("the signature is not base64".into()))?;
    if signature.len() != 64 {
        return bad("the signature is not an ed25519 signature (64 bytes)");
    }
    if sig_end > MAX_SIZE {
        return bad(format!("an assertion is at most {MAX_SIZE} bytes"));
    }
    headers.remove(0);
    headers.retain(|(n, _)| n != "body-length");
    let body = if body_len > 0 {
        text[end + 2..at].to_vec()
    } else {
        Vec::new()
    };
    let a = Assertion {
        kind,
        headers,
        body,
        signed: text[..at].to_vec(),
        signature,
    };
    for h in ["authority-id", "sign-key-sha3-384"]
        .iter()
        .chain(kind.required())
    {
        if a.header(h).is_none() {
            return bad(format!("a {kind} assertion must have a {h:?} header"));
        }
    }
    if let Some(r) = a.header("revision")
        && r.parse::<u64>().is_err()
    {
        return bad(format!("invalid revision {r:?}: a whole number"));
    }
    let rest = text.get(sig_end..).unwrap_or_default();
    Ok((a, rest))
}

#[cfg(test)]
mod tests;
