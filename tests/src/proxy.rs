//! A man in the middle for the store tests: an HTTP proxy on loopback in front of a real
//! `pack-store`, passing requests through or, as the test says, cutting downloads short,
//! flipping bytes, or replaying an older refresh answer. One request per connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to what passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Downloads stop after this many bytes (the connection closes).
    CutDownloads(usize),
    /// One byte of every download is changed.
    TamperDownloads,
    /// One byte of every refresh answer is changed.
    TamperAnswers,
    /// Refresh requests get the first answer ever seen for the same request.
    ReplayAnswers,
    /// The store is away: every connection is closed at once.
    Down,
    /// Reports (`POST /v1/reports`) do not get through; everything else does.
    DropReports,
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    /// Every request line, with its Range header if any.
    seen: Mutex<Vec<String>>,
    /// The first refresh answer for each request body.
    answers: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    stop: AtomicBool,
}

pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        *shared.mode.lock().unwrap() = Some(Mode::Pass);
        let s = shared.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (s, up) = (s.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &s, &up);
                });
            }
        });
        Proxy {
            url: format!("http://{addr}"),
            shared,
            addr,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = Some(mode);
    }

    /// The requests seen so far (`METHOD PATH [range]`).
    pub fn seen(&self) -> Vec<String> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(mut conn: TcpStream, s: &Shared, upstream: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mode = s.mode.lock().unwrap().clone().unwrap_or(Mode::Pass);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    if mode == Mode::Down {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("").to_string();
    let mut parts = request.split(' ');
    let (method, path) = (
        parts.next().unwrap_or("GET").to_string(),
        parts.next().unwrap_or("/").to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if mode == Mode::DropReports && path == "/v1/reports" {
        return Ok(());
    }
    s.seen.lock().unwrap().push(match header("range") {
        Some(r) => format!("{method} {path} {r}"),
        None => format!("{method} {path}"),
    });

    let mut req = ureq::request(&method, &format!("{upstream}{path}"));
    for h in ["range", "if-none-match", "content-type", "authorization"] {
        if let Some(v) = header(h) {
            req = req.set(h, &v);
        }
    }
    let resp = match if method == "POST" {
        req.send_bytes(&body)
    } else {
        req.call()
    } {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return Ok(()),
    };
    let status = resp.status();
    let keep: Vec<(String, String)> = ["content-type", "etag", "content-range", "pack-poll-after"]
        .iter()
        .filter_map(|h| resp.header(h).map(|v| (h.to_string(), v.to_string())))
        .collect();
    let mut out = Vec::new();
    resp.into_reader().read_to_end(&mut out)?;
    let full_len = out.len();
    let is_download = path.starts_with("/v1/download/");
    let is_refresh = path == "/v1/refresh" && status == 200;
    if is_refresh {
        let mut answers = s.answers.lock().unwrap();
        let first = answers
            .entry(body.clone())
            .or_insert_with(|| out.clone())
            .clone();
        if mode == Mode::ReplayAnswers {
            out = first;
        }
    }
    match mode {
        Mode::TamperDownloads if is_download && !out.is_empty() => {
            let i = out.len() / 2;
            out[i] ^= 0x55;
        }
        Mode::TamperAnswers if is_refresh => {
            let text = String::from_utf8_lossy(&out).replacen("latest/", "latext/", 1);
            out = text.into_bytes();
        }
        _ => {}
    }
    let cut = match mode {
        Mode::CutDownloads(n) if is_download => Some(n.min(out.len())),
        _ => None,
    };
    let mut head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
    for (k, v) in keep {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let announced = if cut.is_some() { full_len } else { out.len() };
    head.push_str(&format!("content-length: {announced}\r\n\r\n"));
    conn.write_all(head.as_bytes())?;
    conn.write_all(&out[..cut.unwrap_or(out.len())])?;
    conn.flush()?;
    Ok(())
}
