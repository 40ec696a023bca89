//! The device's side of the store's HTTP API (docs/store-api.md): search, info, the bulk
//! refresh with its checks, and downloads hashed as they stream, resumed with `Range`.
//!
//! What decides what is installed is believed only once it verifies: [`StoreClient::refresh`]
//! checks the answer's signature against the remote's keyring, that it answers the request
//! sent (its digest), that it has not expired and that its serial is not older than the
//! newest seen; a `304` only counts when the device asked with an ETag. Search and info
//! (`find`, `info`) are shown as the store says, unsigned, like snapd's. Every body read is
//! bounded.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use packfmt::assertion::trust::Keyring;
use packfmt::assertion::{Assertion, Kind};
use packfmt::store::{Answer, ErrorBody, Found, Offer, PackInfo, RefreshRequest, RefreshResponse};
use sha3::{Digest, Sha3_384};
use tokio::io::AsyncWriteExt;

use super::error::{StoreError, bad_assertion, not_trusted};
use crate::error::IoError;
use crate::state::Remote;

type Result<T> = std::result::Result<T, StoreError>;

/// How long a request may take to start answering, and a download may stay silent.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest refresh answer read (its assertions grow with the packs asked about).
const MAX_ANSWER: usize = 16 << 20;
/// The largest search, info or error answer read.
const MAX_READ: usize = 4 << 20;

/// Reads at most `limit` bytes of `resp`'s body; a longer one is refused.
async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > limit {
            return Err(format!("its answer is larger than {} MiB", limit >> 20));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub fn sha3_hex(bytes: &[u8]) -> String {
    hex(&Sha3_384::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A refresh answer that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub answer: Answer,
    pub serial: u64,
    /// Seconds since the epoch.
    pub expires: u64,
    pub signed_at: u64,
    /// The assertions that came with it, verified (account-keys, declarations, revisions).
    pub assertions: Vec<Assertion>,
}

/// What a refresh request got.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `304`: nothing changed since the answer the device holds.
    NotModified,
    Answer {
        verified: Box<Verified>,
        etag: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct StoreClient {
    http: reqwest::Client,
}

fn rfc3339_secs(remote: &str, what: &str, v: &str) -> Result<u64> {
    humantime::parse_rfc3339(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| StoreError::untrusted(remote, format!("its {what} {v:?} is not a time")))
}

/// Checks a refresh answer for `request` (the exact bytes sent) from `remote`: every key in
/// it against the root, the answer against the keys, then its digest, expiry and serial.
/// `ring` learns the keys only when everything verifies.
pub fn verify_answer(
    remote: &Remote,
    ring: &mut Keyring,
    request: &[u8],
    resp: &RefreshResponse,
    now: u64,
) -> Result<Verified> {
    let name = &remote.name;
    let answer = Assertion::parse(resp.answer.as_bytes()).map_err(|e| bad_assertion(name, e))?;
    let assertions =
        Assertion::parse_all(resp.assertions.as_bytes()).map_err(|e| bad_assertion(name, e))?;
    let mut trial = ring.clone();
    for a in assertions.iter().filter(|a| a.kind() == Kind::AccountKey) {
        trial.add_key(a).map_err(|e| not_trusted(name, e))?;
    }
    if answer.kind() != Kind::Refresh {
        return Err(StoreError::untrusted(
            name,
            "its answer is not a refresh assertion",
        ));
    }
    trial.verify(&answer).map_err(|e| not_trusted(name, e))?;
    for a in assertions.iter().filter(|a| a.kind() != Kind::AccountKey) {
        trial.verify(a).map_err(|e| not_trusted(name, e))?;
    }
    if answer.get("request-sha3-384") != sha3_hex(request) {
        return Err(StoreError::untrusted(
            name,
            "the answer is for another request (a replay?)",
        ));
    }
    let expires = rfc3339_secs(name, "expiry", answer.get("expires"))?;
    if expires <= now {
        return Err(StoreError::untrusted(
            name,
            format!(
                "the answer expired at {} (a replay, or the device's clock is wrong)",
                answer.get("expires")
            ),
        ));
    }
    let signed_at = rfc3339_secs(name, "timestamp", answer.get("timestamp"))?;
    let serial: u64 = answer
        .get("serial")
        .parse()
        .map_err(|_| StoreError::untrusted(name, "its serial is not a number"))?;
    if serial < remote.serial {
        return Err(StoreError::untrusted(
            name,
            format!(
                "the answer's serial {serial} is older than {} seen before (a replay of old metadata)",
                remote.serial
            ),
        ));
    }
    let answer: Answer = serde_json::from_slice(answer.body())
        .map_err(|e| StoreError::untrusted(name, format!("its answer is not valid: {e}")))?;
    *ring = trial;
    Ok(Verified {
        answer,
        serial,
        expires,
        signed_at,
        assertions,
    })
}

impl StoreClient {
    pub fn new() -> Result<StoreClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(TIMEOUT)
            .user_agent(concat!("packd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StoreError::BadRequest(format!("cannot make an HTTP client: {e}")))?;
        Ok(StoreClient { http })
    }

    fn unreachable(remote: &Remote, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unreachable {
            remote: remote.name.clone(),
            url: remote.url.clone(),
            message: e.to_string(),
        }
    }

    /// A store's error answer, in its own words.
    async fn refused(remote: &Remote, resp: reqwest::Response) -> StoreError {
        let status = resp.status();
        let message = match read_limited(resp, 64 << 10)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok())
        {
            Some(b) => b.error.message,
            None => format!("it answered {status}"),
        };
        if status == reqwest::StatusCode::NOT_FOUND {
            return StoreError::StoreSays {
                name: remote.name.clone(),
                code: "not-found".into(),
                message,
            };
        }
        StoreError::Refused {
            remote: remote.name.clone(),
            message,
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        remote: &Remote,
        path: &str,
    ) -> Result<T> {
        let resp = self
            .http
            .get(format!("{}{path}", remote.url))
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| Self::unreachable(remote, e))?;
        if !resp.status().is_success() {
            return Err(Self::refused(remote, resp).await);
        }
        let body = read_limited(resp, MAX_READ)
            .await
            .map_err(|e| Self::unreachable(remote, e))?;
        serde_json::from_slice(&body)
            .map_err(|e| Self::unreachable(remote, format!("its answer is not valid: {e}")))
    }

    pub async fn find(&self, remote: &Remote, query: &str) -> Result<Vec<Found>> {
        let q: String = url_encode(query);
        self.get_json(remote, &format!("/v1/find?q={q}")).await
    }

    pub async fn info(&self, remote: &Remote, name: &str) -> Result<PackInfo> {
        self.get_json(remote, &format!("/v1/packs/{}", url_encode(name)))
            .await
    }

    /// Asks `remote` what changed for `req`. With `if_none_match`, a `304` comes back as
    /// [`Outcome::NotModified`].
    pub async fn refresh(
        &self,
        remote: &Remote,
        ring: &mut Keyring,
        req: &RefreshRequest,
        if_none_match: Option<&str>,
        now: u64,
    ) -> Result<Outcome> {
        let body = serde_json::to_vec(req)
            .map_err(|e| StoreError::BadRequest(format!("cannot encode the request: {e}")))?;
        let mut r = self
            .http
            .post(format!("{}/v1/refresh", remote.url))
            .timeout(TIMEOUT)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(tag) = if_none_match {
            r = r.header("if-none-match", tag);
        }
        let resp = r.send().await.map_err(|e| Self::unreachable(remote, e))?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            // Only an answer to "has it changed since this one?" may be "no".
            if if_none_match.is_none() {
                return Err(StoreError::untrusted(
                    &remote.name,
                    "it answered 304 Not Modified to a request that named no earlier answer",
                ));
            }
            return Ok(Outcome::NotModified);
        }
        if !resp.status().is_success() {
            return Err(Self::refused(remote, resp).await);
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let raw = read_limited(resp, MAX_ANSWER)
            .await
            .map_err(|e| Self::unreachable(remote, e))?;
        let parsed: RefreshResponse = serde_json::from_slice(&raw)
            .map_err(|e| Self::unreachable(remote, format!("its answer is not valid: {e}")))?;
        let verified = verify_answer(remote, ring, &body, &parsed, now)?;
        Ok(Outcome::Answer {
            verified: Box::new(verified),
            etag,
        })
    }

    /// Downloads `offer` into `partial`, resuming what is there, hashing everything; stops
    /// at the size the store signed. `progress(done, total)` is told as bytes come. Returns
    /// the SHA3-384 of the whole file; a short download keeps `partial` for the next try.
    pub async fn download(
        &self,
        remote: &Remote,
        offer: &Offer,
        partial: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<String> {
        if !offer.download.starts_with("/v1/download/") {
            return Err(StoreError::untrusted(
                &remote.name,
                format!("download path {:?} is not the store's", offer.download),
            ));
        }
        let io = |what: &str, e| IoError::new(format!("cannot {what} {}", partial.display()), e);
        let mut hasher = Sha3_384::new();
        let mut done = 0u64;
        // What an earlier try left: hashed in pieces (it may be large), kept if it fits.
        if let Ok(mut f) = tokio::fs::File::open(partial).await {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).await.map_err(|e| io("read", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                done += n as u64;
                if done > offer.size {
                    break;
                }
            }
            if done > offer.size {
                let _ = tokio::fs::remove_file(partial).await;
                hasher = Sha3_384::new();
                done = 0;
            }
        }
        let total = offer.size;
        let interrupted = |done: u64, message: String| StoreError::Interrupted {
            name: offer.name.clone(),
            revision: offer.revision,
            done,
            total,
            message,
        };
        if done < total {
            let mut r = self.http.get(format!("{}{}", remote.url, offer.download));
            if done > 0 {
                r = r.header("range", format!("bytes={done}-"));
            }
            let resp = r.send().await.map_err(|e| Self::unreachable(remote, e))?;
            let status = resp.status();
            if done > 0 && status == reqwest::StatusCode::OK {
                // The store ignored the range: start over.
                hasher = Sha3_384::new();
                done = 0;
            } else if !status.is_success() {
                return Err(Self::refused(remote, resp).await);
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(done > 0)
                .truncate(done == 0)
                .open(partial)
                .await
                .map_err(|e| io("open", e))?;
            let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let mut stream = resp.bytes_stream();
            progress(done, total);
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        file.flush().await.map_err(|e| io("write", e))?;
                        return Err(interrupted(done, e.to_string()));
                    }
                };
                if done + chunk.len() as u64 > total {
                    drop(file);
                    let _ = tokio::fs::remove_file(partial).await;
                    return Err(StoreError::untrusted(
                        &remote.name,
                        format!(
                            "the download of {} is larger than the {total} bytes the store signed",
                            offer.name
                        ),
                    ));
                }
                hasher.update(&chunk);
                done += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| io("write", e))?;
                progress(done, total);
            }
            file.flush().await.map_err(|e| io("write", e))?;
            file.into_inner()
                .sync_all()
                .await
                .map_err(|e| io("sync", e))?;
        }
        if done < total {
            return Err(interrupted(done, "the store closed the connection".into()));
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Tells the store how a refresh went (the rollout builds on these); best effort.
    pub async fn report(&self, remote: &Remote, report: &serde_json::Value) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/v1/reports", remote.url))
            .timeout(TIMEOUT)
            .json(report)
            .send()
            .await
            .map_err(|e| Self::unreachable(remote, e))?;
        if !resp.status().is_success() {
            return Err(Self::refused(remote, resp).await);
        }
        Ok(())
    }
}

pub use packd_api::url_encode;

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
