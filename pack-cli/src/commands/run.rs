//! `pack run NAME[.APP] [--] [ARGS…]`: packd starts the app in its sandbox with our standard
//! descriptors; we relay signals and exit with the app's status.

use std::collections::BTreeMap;

use anyhow::Context;
use packd_api::types::{RUN_PROTOCOL, RunControl, RunEvent, RunRequest};
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
    // Our stdin, stdout and stderr travel with the request: the app gets them as they are.
    let (stream, early) = client
        .upgrade(
            "/v2/run",
            RUN_PROTOCOL,
            serde_json::to_vec(&request)?,
            &[0, 1, 2],
        )
        .await
        .with_context(|| format!("cannot run {}", args.target))?;
    let (read, mut write) = stream.into_split();
    let mut events = BufReader::new(std::io::Cursor::new(early).chain(read)).lines();
    loop {
        tokio::select! {
            line = events.next_line() => {
                let Some(line) = line? else {
                    anyhow::bail!("packd closed the connection before {} ended", args.target);
                };
                match serde_json::from_str::<RunEvent>(&line) {
                    Ok(RunEvent::Started { devmode }) => {
                        if devmode {
                            eprintln!(
                                "warning: {} is in devmode: its sandbox logs what it would deny instead of denying it",
                                args.target
                            );
                        }
                    }
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
                write.write_all(&msg).await?;
            }
        }
    }
}
