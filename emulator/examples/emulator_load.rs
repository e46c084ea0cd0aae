//! Load test of the Pipecat Cloud emulator: seeds agents over HTTP, then runs a mixed workload
//! (90% `GET /v1/agents/{name}`, 10% `POST /v1/agents/{name}` updates) from concurrent
//! keep-alive clients and prints requests per second. Client and server share the machine.
//!
//! `cargo run --release -p pipecat-cloud-emulator --example emulator_load`, optionally followed
//! by `-- [AGENTS] [SECONDS] [CONCURRENCY]` (defaults: 10000 agents, 5 seconds, 32 connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pipecat_cloud_emulator::{self as emulator, Config};
use serde_json::json;

const KEY: &str = "pk_load";

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agents = arg(1, 10_000);
    let seconds = arg(2, 5);
    let concurrency = arg(3, 32);
    let handle = emulator::start(Config {
        api_keys: vec![KEY.into()],
        ..Config::default()
    })
    .await?;
    let base = handle.base_url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(concurrency)?)
        .build()?;

    // Seed.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while i < agents {
                let response = client
                    .post(format!("{base}/agents"))
                    .bearer_auth(KEY)
                    .json(&json!({"serviceName": format!("agent-{i:05}"), "image": "acme/bot:1"}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "create failed: {}",
                    response.status()
                );
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seed_time = started.elapsed();
    println!(
        "seeded {agents} agents in {:.2}s ({:.0} creates/s)",
        seed_time.as_secs_f64(),
        agents as f64 / seed_time.as_secs_f64()
    );

    // Mixed workload.
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let base = base.clone();
        let done = done.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                let i = rand::random_range(0..agents);
                let url = format!("{base}/agents/agent-{i:05}");
                let request = if n % 10 == 9 {
                    client
                        .post(url)
                        .json(&json!({"image": format!("acme/bot:{}", n % 3)}))
                } else {
                    client.get(url)
                };
                match request.bearer_auth(KEY).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = done.load(Ordering::Relaxed);
    println!(
        "mixed workload: {ok} requests in {elapsed:.2}s = {:.0} requests/s ({} failed, {concurrency} connections)",
        ok as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );

    let started = Instant::now();
    let list: serde_json::Value = client
        .get(format!("{base}/agents"))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?;
    println!(
        "GET /v1/agents with {} agents: {:.1} ms",
        list["services"].as_array().map_or(0, Vec::len),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let counts = handle.admin().counts().await?;
    println!("journal total: {}", counts.total);
    handle.shutdown().await;
    Ok(())
}
