//! `store-bench URL ROOT.assert STORE_PID [DEVICES] [ROUNDS]`: many devices polling one store
//! with packd's own refresh client (`packd::store::client`), concurrently, each on its own
//! connection. Each device has 5 of the store's packs, at the revision `latest/stable` offers;
//! its first poll gets a signed answer (checked as packd checks it), every later one asks with
//! the ETag it was given. Prints p50/p99 latency, the share of 304s, and the store's RSS before,
//! after the first round and at the end. `store-bench rollout ...` simulates a fleet through a
//! progressive release instead (see `rollout.rs`).

mod rollout;

use std::time::{Duration, Instant};

use packd::state::Remote;
use packd::store::client::{Outcome, StoreClient};
use packfmt::assertion::Assertion;
use packfmt::assertion::trust::Keyring;
use packfmt::store::{Found, Installed, PackInfo, RefreshRequest};

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("rollout") {
        return rollout::run(&args).await;
    }
    anyhow::ensure!(
        args.len() >= 4,
        "usage: store-bench URL ROOT.assert STORE_PID [DEVICES] [ROUNDS]"
    );
    let (url, root_file, pid) = (&args[1], &args[2], args[3].clone());
    let devices: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(40);
    let root = Assertion::parse(&std::fs::read(root_file)?)?;
    let ring = Keyring::new(&root)?;
    let remote = Remote::new("bench", url, &root);
    // What the store has: every pack's id and stable revision.
    let http = reqwest::Client::new();
    let found: Vec<Found> = http
        .get(format!("{url}/v1/find?q="))
        .send()
        .await?
        .json()
        .await?;
    let mut packs = Vec::new();
    for f in &found {
        let info: PackInfo = http
            .get(format!("{url}/v1/packs/{}", f.name))
            .send()
            .await?
            .json()
            .await?;
        let rev = info
            .channels
            .iter()
            .find(|c| c.channel == "latest/stable")
            .and_then(|c| c.revision)
            .unwrap_or(1);
        packs.push(Installed {
            pack_id: info.pack_id,
            name: info.name,
            revision: rev,
            channel: "latest/stable".into(),
        });
    }
    anyhow::ensure!(!packs.is_empty(), "the store has no packs");
    let before = rss_kib(&pid);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(devices + 1));
    let mut tasks = Vec::new();
    for d in 0..devices {
        let (mut remote, mut ring, barrier) = (remote.clone(), ring.clone(), barrier.clone());
        let mine: Vec<Installed> = (0..5)
            .map(|k| packs[(d * 7 + k) % packs.len()].clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            let client = StoreClient::new().expect("client");
            let req = RefreshRequest {
                device_id: Some(format!("bench-device-{d:05}")),
                packs: mine,
                install: Vec::new(),
            };
            let mut out: Vec<(Duration, bool)> = Vec::new();
            let mut etag: Option<String> = None;
            for round in 0..rounds {
                if round == 1 {
                    barrier.wait().await;
                }
                // Spread the polls as a fleet's timers do.
                tokio::time::sleep(Duration::from_millis(
                    (d as u64 * 37 + round as u64 * 11) % 1000,
                ))
                .await;
                let now = packd::state::now();
                let t = Instant::now();
                let got = client
                    .refresh(&remote, &mut ring, &req, etag.as_deref(), now)
                    .await;
                let took = t.elapsed();
                match got {
                    Ok(Outcome::NotModified) => out.push((took, true)),
                    Ok(Outcome::Answer {
                        verified,
                        etag: tag,
                    }) => {
                        assert!(
                            verified.answer.results.is_empty(),
                            "the devices are up to date"
                        );
                        remote.serial = verified.serial;
                        etag = tag;
                        out.push((took, false));
                    }
                    Err(e) => panic!("device {d}: {e}"),
                }
            }
            if rounds < 2 {
                barrier.wait().await;
            }
            out
        }));
    }
    barrier.wait().await;
    let after_first = rss_kib(&pid);
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let wall = started.elapsed();
    let end = rss_kib(&pid);
    let not_modified = all.iter().filter(|(_, nm)| *nm).count();
    let mut lat: Vec<Duration> = all.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let mut full: Vec<Duration> = all.iter().filter(|(_, nm)| !nm).map(|(d, _)| *d).collect();
    full.sort();
    println!(
        "{devices} devices x {rounds} polls ({} requests in {:.1}s, {} packs in the store, 5 per device)",
        all.len(),
        wall.as_secs_f64(),
        packs.len()
    );
    println!(
        "latency p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms (goal p99 < 50 ms); signed answers p99 {:.1} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        percentile(&full, 0.99)
    );
    println!(
        "304 Not Modified: {:.1}% (goal >= 95%)",
        not_modified as f64 * 100.0 / all.len() as f64
    );
    println!(
        "store RSS: {} MiB before, {} MiB after the first round, {} MiB at the end (goal: flat)",
        before / 1024,
        after_first / 1024,
        end / 1024
    );
    Ok(())
}
