//! A small client for packd's API over its Unix socket (HTTP/1.1, one connection per request).

use std::os::fd::{AsFd, RawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use packd_api::fdpass::send_with_fds;
use packd_api::types::{ChangeInfo, Envelope, ErrorResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach packd at {socket}: {source}; is packd running? (point to it with --socket or PACKD_SOCKET)"
    )]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("talking to packd failed: {0}")]
    Protocol(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, ClientError>;

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    async fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                socket: self.socket.clone(),
                source,
            })
    }

    /// Sends one request; returns the status and the raw body.
    pub async fn send(&self, req: Request<Body>) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stream = self.connect().await?;
        Self::send_on(stream, req).await
    }

    async fn send_on<S>(
        stream: S,
        req: Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(protocol)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(req).await.map_err(protocol)
    }

    /// Sends a request and decodes snapd's envelope; error envelopes become [`ClientError::Api`].
    async fn call(&self, req: Request<Body>) -> Result<Envelope> {
        let resp = self.send(req).await?;
        Self::envelope(resp).await
    }

    /// Decodes a response's envelope; error envelopes become [`ClientError::Api`].
    async fn envelope(resp: hyper::Response<hyper::body::Incoming>) -> Result<Envelope> {
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(protocol)?
            .to_bytes();
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| {
            protocol(format!(
                "unexpected answer ({status}): {e}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        if env.kind == "error" || !status.is_success() {
            let err: ErrorResult =
                serde_json::from_value(env.result.clone()).unwrap_or(ErrorResult {
                    message: format!("packd answered {status}"),
                    kind: String::new(),
                });
            return Err(ClientError::Api {
                status: status.as_u16(),
                kind: err.kind,
                message: err.message,
            });
        }
        Ok(env)
    }

    fn request(method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "packd")
    }

    /// `GET path`, decoding the sync result.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = Self::request(Method::GET, path)
            .body(empty())
            .map_err(protocol)?;
        let env = self.call(req).await?;
        serde_json::from_value(env.result).map_err(protocol)
    }

    /// `GET path` answered with a stream (`/v2/logs`): the response, once its status is
    /// known to be a success; an error envelope becomes [`ClientError::Api`].
    pub async fn get_stream(&self, path: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        let req = Self::request(Method::GET, path)
            .body(empty())
            .map_err(protocol)?;
        let resp = self.send(req).await?;
        Self::stream(resp).await
    }

    /// `POST path` with a JSON body, answered with a stream (a store install or refresh:
    /// `application/x-ndjson`): the response, once its status is known to be a success; a
    /// refusal before the stream starts (an error envelope) becomes [`ClientError::Api`].
    pub async fn post_stream(
        &self,
        path: &str,
        value: &impl Serialize,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let json = serde_json::to_vec(value).map_err(protocol)?;
        let req = Self::request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(json))
            .map_err(protocol)?;
        let resp = self.send(req).await?;
        Self::stream(resp).await
    }

    /// A streamed answer: itself when it is a success, else its error envelope as an error.
    async fn stream(
        resp: hyper::Response<hyper::body::Incoming>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        match Self::envelope(resp).await {
            Err(e) => Err(e),
            Ok(_) => Err(ClientError::Api {
                status: status.as_u16(),
                kind: String::new(),
                message: format!("packd answered {status}"),
            }),
        }
    }

    /// `POST path` with a JSON body; returns the envelope (async answers carry a change id).
    pub async fn post_json(&self, path: &str, value: &impl Serialize) -> Result<Envelope> {
        self.send_json(Method::POST, path, value).await
    }

    /// `POST path` with `body` as it is, of `content_type` (assertions for `/v2/assertions`).
    pub async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Envelope> {
        let req = Self::request(Method::POST, path)
            .header(header::CONTENT_TYPE, content_type)
            .body(full(body))
            .map_err(protocol)?;
        self.call(req).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, value: &impl Serialize) -> Result<Envelope> {
        self.send_json(Method::PUT, path, value).await
    }

    async fn send_json(
        &self,
        method: Method,
        path: &str,
        value: &impl Serialize,
    ) -> Result<Envelope> {
        let json = serde_json::to_vec(value).map_err(protocol)?;
        let req = Self::request(method, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(json))
            .map_err(protocol)?;
        self.call(req).await
    }

    /// `POST path` streaming `file` as the body; `progress` is told how many bytes went out.
    pub async fn upload(
        &self,
        path: &str,
        file: &Path,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Envelope> {
        let f = tokio::fs::File::open(file).await?;
        let len = f.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20)
            .inspect_ok(move |chunk| progress(chunk.len() as u64))
            .map_ok(Frame::data);
        let body = BodyExt::boxed(StreamBody::new(stream));
        let req = Self::request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .body(body)
            .map_err(protocol)?;
        self.call(req).await
    }

    /// Follows a change until it is ready, calling `on_update` on every change of state.
    pub async fn wait_change(
        &self,
        id: &str,
        mut on_update: impl FnMut(&ChangeInfo),
    ) -> Result<ChangeInfo> {
        loop {
            let change: ChangeInfo = self.get(&format!("/v2/changes/{id}?wait=true")).await?;
            on_update(&change);
            if change.ready {
                return Ok(change);
            }
            // The daemon holds the request until something moves; this only guards against a
            // busy loop if it ever answered early.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Opens the run protocol, handing `fds` over with the request: returns the upgraded
    /// stream with what packd already sent on it and the answer's headers, or the daemon's
    /// error.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol_name: &str,
        json: Vec<u8>,
        fds: &[RawFd],
    ) -> Result<(UnixStream, hyper::body::Bytes, hyper::HeaderMap)> {
        let req = Self::request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, protocol_name)
            .body(full(json))
            .map_err(protocol)?;
        let stream = FdStream {
            inner: self.connect().await?,
            fds: fds.to_vec(),
        };
        let resp = Self::send_on(stream, req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(protocol)?
                .to_bytes();
            let message = serde_json::from_slice::<Envelope>(&bytes)
                .ok()
                .and_then(|e| serde_json::from_value::<ErrorResult>(e.result).ok())
                .map(|e| e.message)
                .unwrap_or_else(|| format!("packd answered {status}"));
            return Err(ClientError::Api {
                status: status.as_u16(),
                kind: String::new(),
                message,
            });
        }
        let headers = resp.headers().clone();
        let upgraded = hyper::upgrade::on(resp).await.map_err(protocol)?;
        let parts = upgraded
            .downcast::<TokioIo<FdStream>>()
            .map_err(|_| protocol("unexpected connection type after the upgrade"))?;
        // packd may have spoken already (the launch runs alongside the 101): those bytes were
        // read with the response and come first.
        Ok((parts.io.into_inner().inner, parts.read_buf, headers))
    }
}

/// A connection whose first write carries descriptors (SCM_RIGHTS): the daemon takes them
/// with the request, saving a round trip (see `packd_api::fdpass`).
struct FdStream {
    inner: UnixStream,
    /// Sent with the first bytes written, then empty.
    fds: Vec<RawFd>,
}

impl tokio::io::AsyncRead for FdStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FdStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.fds.is_empty() || buf.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        loop {
            std::task::ready!(self.inner.poll_write_ready(cx))?;
            let this = &mut *self;
            match this.inner.try_io(tokio::io::Interest::WRITABLE, || {
                send_with_fds(this.inner.as_fd(), buf, &this.fds)
            }) {
                Ok(n) => {
                    this.fds.clear();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|e| match e {})
        .boxed()
}
