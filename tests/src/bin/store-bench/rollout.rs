//! `store-bench rollout URL ROOT.assert STORE_PID TOKEN [DEVICES] [FAILING%]`: a fleet of
//! simulated devices on packd's own refresh and report client (not the daemon: one machine
//! cannot run 10,000 of those) against a store whose pack `sim` has revision 1 in stable and
//! revision 2 uploaded. Once every device has polled, revision 2 is released progressively
//! (`1%:1h,100%`, the default halt rule); a device offered it reports started, downloaded,
//! installed, then healthy, or failed and reverted for FAILING% of them (30 by default).
//! Prints when the halt rule was crossed and when the store halted (against the poll
//! interval), how many devices outside the first wave were offered the release (goal: none),
//! the bucket shares over 100,000 ids, and the poll latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use packd::state::Remote;
use packd::store::client::{Outcome, StoreClient};
use packfmt::assertion::trust::Keyring;
use packfmt::store::{Installed, RefreshRequest};
use sha3::{Digest, Sha3_256};
use tokio::sync::Mutex;

/// How often each device polls.
const POLL: Duration = Duration::from_secs(5);

/// What the fleet tells the bench.
#[derive(Default)]
struct Fleet {
    failed: AtomicU64,
    healthy: AtomicU64,
    offered: AtomicU64,
    /// When the first wave's reports first broke the rule (ms since start).
    crossed_ms: AtomicU64,
    released: AtomicBool,
    stop: AtomicBool,
    polled: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

fn fails(device: &str, percent: u64) -> bool {
    let d = Sha3_256::digest(device.as_bytes());
    (u64::from(d[0]) * 256 + u64::from(d[1])) % 100 < percent
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.len() >= 6,
        "usage: store-bench rollout URL ROOT.assert STORE_PID TOKEN [DEVICES] [FAILING%]"
    );
    let (url, root_file, pid, token) = (&args[2], &args[3], &args[4], &args[5]);
    let devices: usize = args
        .get(6)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let failing: u64 = args.get(7).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let root = packfmt::assertion::Assertion::parse(&std::fs::read(root_file)?)?;
    let ring = Keyring::new(&root)?;
    let remote = Remote::new("bench", url, &root);
    let http = reqwest::Client::new();
    let info: packfmt::store::PackInfo = http
        .get(format!("{url}/v1/packs/sim"))
        .send()
        .await?
        .json()
        .await?;
    let pack_id = info.pack_id.clone();
    let fleet = Arc::new(Fleet::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in 0..devices {
        let (mut remote, mut ring, fleet, pack_id) =
            (remote.clone(), ring.clone(), fleet.clone(), pack_id.clone());
        tasks.push(tokio::spawn(async move {
            let client = StoreClient::new().expect("client");
            let id = format!("sim-{d:05}");
            let mut req = RefreshRequest {
                device_id: Some(id.clone()),
                packs: vec![Installed {
                    pack_id: pack_id.clone(),
                    name: "sim".into(),
                    revision: 1,
                    channel: "latest/stable".into(),
                }],
                install: Vec::new(),
            };
            let mut etag: Option<String> = None;
            let mut first = true;
            // Spread over the interval as a fleet's timers do.
            tokio::time::sleep(POLL.mul_f64((d as f64 * 0.618_034) % 1.0)).await;
            while !fleet.stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let got = client
                    .refresh(&remote, &mut ring, &req, etag.as_deref(), packd::state::now())
                    .await;
                fleet.latencies.lock().await.push(t.elapsed());
                if first {
                    fleet.polled.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
                match got {
                    Ok(Outcome::NotModified) => {}
                    Ok(Outcome::Answer { verified, etag: tag }) => {
                        remote.serial = verified.serial;
                        etag = tag;
                        if let Some(o) = verified.answer.results.iter().find(|o| o.revision == 2) {
                            fleet.offered.fetch_add(1, Ordering::Relaxed);
                            let bad = fails(&id, failing);
                            let mut outcomes = vec!["started", "downloaded", "installed"];
                            outcomes.extend(if bad { vec!["failed", "reverted"] } else { vec!["healthy"] });
                            for (k, outcome) in outcomes.iter().enumerate() {
                                let report = serde_json::json!({
                                    "report-id": format!("{id}-{k}"), "device-id": id,
                                    "pack-id": o.pack_id, "revision": 2, "outcome": outcome,
                                    "task": if *outcome == "failed" { Some("check-health-hook") } else { None },
                                });
                                let _ = client.report(&remote, &report).await;
                            }
                            let (f, h) = if bad {
                                (fleet.failed.fetch_add(1, Ordering::SeqCst) + 1, fleet.healthy.load(Ordering::SeqCst))
                            } else {
                                (fleet.failed.load(Ordering::SeqCst), fleet.healthy.fetch_add(1, Ordering::SeqCst) + 1)
                            };
                            if f + h >= 3 && f * 20 > f + h {
                                let _ = fleet.crossed_ms.compare_exchange(
                                    0,
                                    start.elapsed().as_millis() as u64,
                                    Ordering::SeqCst,
                                    Ordering::SeqCst,
                                );
                            }
                            if !bad {
                                req.packs[0].revision = 2;
                                etag = None;
                            }
                        }
                    }
                    Err(e) => eprintln!("device {d}: {e}"),
                }
                tokio::time::sleep(POLL).await;
            }
        }));
    }
    // Every device polls once; then the release.
    while fleet.polled.load(Ordering::Relaxed) < devices as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warm = start.elapsed();
    let rss_before = super::rss_kib(pid);
    let publish = |path: &str| http.post(format!("{url}{path}")).bearer_auth(token);
    let released = publish("/v1/packs/sim/releases")
        .json(&serde_json::json!({"revision": 2, "channels": ["stable"],
            "progressive": {"waves": "1%:1h,100%"}}))
        .send()
        .await?;
    anyhow::ensure!(
        released.status().is_success(),
        "release: {}",
        released.text().await?
    );
    fleet.released.store(true, Ordering::SeqCst);
    let released_ms = start.elapsed().as_millis() as u64;
    // Watch for the halt.
    let status = |http: reqwest::Client| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let v: serde_json::Value = http
                .get(format!("{url}/v1/packs/sim/rollouts"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(v[0].clone())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let halted_ms = loop {
        let r = status(http.clone()).await?;
        if r["state"] == "halted" {
            break start.elapsed().as_millis() as u64;
        }
        anyhow::ensure!(Instant::now() < deadline, "the rollout did not halt: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Two more intervals: whoever would still be offered it, would be now.
    tokio::time::sleep(POLL * 2).await;
    fleet.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await?;
    }
    let r = status(http.clone()).await?;
    let rss_end = super::rss_kib(pid);
    let crossed = fleet.crossed_ms.load(Ordering::SeqCst);
    let mut lat = fleet.latencies.lock().await.clone();
    lat.sort();
    println!(
        "{devices} simulated devices polling every {}s, {failing}% of the first wave failing; all polled once in {:.1}s",
        POLL.as_secs(),
        warm.as_secs_f64()
    );
    println!(
        "rollout 1%:1h,100%: released at {:.1}s, the rule was crossed at {:.1}s, the store halted at {:.1}s: {} ms after the crossing (goal: within one poll interval, {} ms)",
        released_ms as f64 / 1e3,
        crossed as f64 / 1e3,
        halted_ms as f64 / 1e3,
        halted_ms.saturating_sub(crossed),
        POLL.as_millis()
    );
    println!(
        "offered: {} devices ({} in wave 1 by the store's count, {} outside it; goal: none outside); reports in wave 1: {} healthy, {} failed; why: {}",
        fleet.offered.load(Ordering::SeqCst),
        r["waves"][0]["offered"],
        r["waves"][1]["offered"],
        r["waves"][0]["healthy"],
        r["waves"][0]["failed"],
        r["why"].as_str().unwrap_or("")
    );
    println!(
        "poll latency over {} polls: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 < 50 ms); store RSS {} MiB after the first polls, {} MiB at the end",
        lat.len(),
        super::percentile(&lat, 0.5),
        super::percentile(&lat, 0.99),
        super::percentile(&lat, 1.0),
        rss_before / 1024,
        rss_end / 1024
    );
    let ids: Vec<String> = (0..100_000).map(|i| format!("bucket-{i}")).collect();
    let shares: Vec<String> = [0.01, 0.05, 0.25]
        .iter()
        .map(|share| {
            let n = ids
                .iter()
                .filter(|d| store_mock::rollout::bucket(d, "bench-salt") < *share)
                .count();
            let got = n as f64 / ids.len() as f64;
            format!(
                "{:.0}% -> {:.3}% ({:+.3})",
                share * 100.0,
                got * 100.0,
                (got - share) * 100.0
            )
        })
        .collect();
    println!(
        "bucket shares over 100,000 ids: {} (goal: within ±0.5%)",
        shares.join(", ")
    );
    Ok(())
}
