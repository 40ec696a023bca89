//! `pack run NAME[.APP] [--] [ARGS…]`: packd starts the app in its sandbox with our standard
//! descriptors; we relay signals and exit with the app's status.

use std::collections::BTreeMap;

use anyhow::Context;
use std::os::fd::AsRawFd;

use packd_api::types::{RUN_DEVMODE_HEADER, RUN_PROTOCOL, RunControl, RunEvent, RunRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::RunArgs;
use crate::client::Client;

/// `pack run`'s status when the app could not be started (as `docker run` uses 125).
const EXIT_NOT_STARTED: i32 = 125;

/// Signals forwarded to the app. SIGTSTP is not: Ctrl-Z stops `pack run` itself, as a shell
/// user expects, while the app keeps running.
const FORWARDED: [SignalKind; 7] = [
    SignalKind::interrupt(),
    SignalKind::terminate(),
    SignalKind::hangup(),
    SignalKind::quit(),
    SignalKind::user_defined1(),
    SignalKind::user_defined2(),
    SignalKind::window_change(),
];

pub async fn run(client: &Client, args: &RunArgs) -> i32 {
    match session(client, args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_NOT_STARTED
        }
    }
}

async fn session(client: &Client, args: &RunArgs) -> anyhow::Result<i32> {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let request = RunRequest {
        target: args.target.clone(),
        args: args.args.clone(),
        env,
        cwd: std::env::current_dir().unwrap_or_else(|_| "/".into()),
        rlimits: rlimits(),
    };
    // Listen for signals before the app starts, so none is lost in between.
    let (tx, mut signals) = mpsc::unbounded_channel();
    for kind in FORWARDED {
        let mut stream = signal(kind).context("cannot handle signals")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(kind.as_raw_value()).is_err() {
                    break;
                }
            }
        });
    }
    // Our stdin, stdout and stderr travel with the request: the app gets them as they are. So
    // does the write end of a pipe of ours: the sandbox writes the app's status to it the
    // moment the app exits, sparing the detour through packd.
    let (exit_r, exit_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot make a pipe")?;
    let upgraded = client
        .upgrade(
            "/v2/run",
            RUN_PROTOCOL,
            serde_json::to_vec(&request)?,
            &[0, 1, 2, exit_w.as_raw_fd()],
        )
        .await;
    // Only the sandbox holds the write end now: EOF when it is gone.
    drop(exit_w);
    let (stream, early, headers) =
        upgraded.with_context(|| format!("cannot run {}", args.target))?;
    if headers
        .get(RUN_DEVMODE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true")
    {
        eprintln!(
            "warning: {} is in devmode: its sandbox logs what it would deny instead of denying it",
            args.target
        );
    }
    let mut exit_pipe = Some(tokio::net::unix::pipe::Receiver::from_owned_fd(exit_r)?);
    let (read, mut write) = stream.into_split();
    let mut events = BufReader::new(std::io::Cursor::new(early).chain(read)).lines();
    loop {
        tokio::select! {
            code = read_status(exit_pipe.as_mut()), if exit_pipe.is_some() => match code {
                Some(code) => return Ok(code),
                // The sandbox went without a word (it never started): packd says why.
                None => exit_pipe = None,
            },
            line = events.next_line() => {
                let Some(line) = line? else {
                    anyhow::bail!("packd closed the connection before {} ended", args.target);
                };
                match serde_json::from_str::<RunEvent>(&line) {
                    Ok(RunEvent::Started { .. }) => {}
                    Ok(RunEvent::Exit { code }) => return Ok(code),
                    Ok(RunEvent::Error { message, code }) => {
                        eprintln!("error: cannot run {}: {message}", args.target);
                        return Ok(code);
                    }
                    Err(e) => anyhow::bail!("unexpected message from packd: {e}"),
                }
            }
            Some(sig) = signals.recv() => {
                let mut msg = serde_json::to_vec(&RunControl::Signal { signal: sig })?;
                msg.push(b'\n');
                // packd may be done with us already (the app has exited): its status is
                // still on its way, so a signal that cannot be sent is no error.
                let _ = write.write_all(&msg).await;
            }
        }
    }
}

/// The app's status from our exit pipe: four bytes, little-endian, in one write; `None` at EOF
/// without them.
async fn read_status(pipe: Option<&mut tokio::net::unix::pipe::Receiver>) -> Option<i32> {
    let pipe = pipe?;
    let mut buf = [0u8; 4];
    match pipe.read_exact(&mut buf).await {
        Ok(_) => Some(i32::from_le_bytes(buf)),
        Err(_) => None,
    }
}

/// Our resource limits (`ulimit`), which the app's are lowered to.
fn rlimits() -> Vec<packd_api::types::Rlimit> {
    use nix::sys::resource::{Resource, getrlimit};
    const ALL: [(&str, Resource); 16] = [
        ("as", Resource::RLIMIT_AS),
        ("core", Resource::RLIMIT_CORE),
        ("cpu", Resource::RLIMIT_CPU),
        ("data", Resource::RLIMIT_DATA),
        ("fsize", Resource::RLIMIT_FSIZE),
        ("locks", Resource::RLIMIT_LOCKS),
        ("memlock", Resource::RLIMIT_MEMLOCK),
        ("msgqueue", Resource::RLIMIT_MSGQUEUE),
        ("nice", Resource::RLIMIT_NICE),
        ("nofile", Resource::RLIMIT_NOFILE),
        ("nproc", Resource::RLIMIT_NPROC),
        ("rss", Resource::RLIMIT_RSS),
        ("rtprio", Resource::RLIMIT_RTPRIO),
        ("rttime", Resource::RLIMIT_RTTIME),
        ("sigpending", Resource::RLIMIT_SIGPENDING),
        ("stack", Resource::RLIMIT_STACK),
    ];
    let opt = |v: u64| (v != nix::sys::resource::RLIM_INFINITY).then_some(v);
    ALL.iter()
        .filter_map(|(name, r)| {
            let (soft, hard) = getrlimit(*r).ok()?;
            Some(packd_api::types::Rlimit {
                resource: (*name).to_string(),
                soft: opt(soft),
                hard: opt(hard),
            })
        })
        .collect()
}
