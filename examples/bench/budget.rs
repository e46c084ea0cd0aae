//! Phase 6 (with `--budget-rate`), the API budget: the operator restarted over the converged
//! agents with a client-side rate limit (`--api-rate-limit`, `--api-burst`), its own resync
//! interval and, optionally, an emulator latency, so that its start-up pass and its resyncs
//! want more calls than the budget allows. `--budget-wait` after each restart, spec changes
//! (`spec.image`) are made while that backlog is pending; each is matched to its
//! `update_agent` call in the emulator's journal (patch -> call, every change). Every restart
//! is one repetition. Over each repetition the bench reads the arrival time of every Pipecat
//! call from the journal: the most calls in any 1-second window, and how far the calls ever ran
//! ahead of a token bucket of the configured rate and burst (0: never).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::{Api, Patch, PatchParams};
use pipecat_cloud_emulator::{ConfigUpdate, JournalEntry, JournalFilter};
use pipecat_operator::crd::PipecatAgent;
use serde_json::{Value, json};

use crate::Args;
use crate::fleet::agent_name;
use crate::operator::{Launch, Operator};
use crate::procs::{Pids, cpu_delta};
use crate::stats::{distribution, round1, secs};
use crate::world::World;

/// One restart and its spec changes.
struct Repetition {
    /// Patch -> `update_agent` (ms) of each change, `None` when not seen by the deadline.
    latencies: Vec<Option<f64>>,
    seconds: f64,
    calls: BTreeMap<String, u64>,
    /// Distinct agents read (`get_agent`) since the restart: how far the start-up pass got.
    agents_read: usize,
    peak_per_second: usize,
    bucket_excess: f64,
    /// Reads of agents no change was about, made while some change waited for its update
    /// (between its patch and its `update_agent`): background work ahead of a change.
    background_while_waiting: usize,
    /// The operator's metrics at the end whose names speak of resyncs, lanes or backlog.
    scheduling_metrics: BTreeMap<String, f64>,
    cpu: Value,
}

/// What the budget phase measured.
pub struct Budget {
    rate: f64,
    burst: Option<u32>,
    resync: Duration,
    latency: Duration,
    wait: Duration,
    repetitions: Vec<Repetition>,
}

/// The most entries in any window of `window_ms` (timestamps in ms, sorted).
fn peak_in_window(ts: &[i64], window_ms: i64) -> usize {
    let (mut best, mut start) = (0, 0);
    for end in 0..ts.len() {
        while ts[end] - ts[start] >= window_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// How many calls beyond a token bucket of `rate`/s and `burst` the sequence ever was (0 when
/// it conforms; timestamps in ms, sorted, so 1 ms of rounding is allowed).
fn bucket_excess(ts: &[i64], rate: f64, burst: f64) -> f64 {
    let mut tokens = burst;
    let mut last = match ts.first() {
        Some(t) => *t,
        None => return 0.0,
    };
    let mut worst: f64 = 0.0;
    for t in ts {
        let elapsed = (t - last + 1).max(0) as f64 / 1000.0;
        tokens = (tokens + elapsed * rate).min(burst) - 1.0;
        last = *t;
        worst = worst.max(-tokens);
    }
    worst
}

fn millis(e: &JournalEntry) -> Option<i64> {
    let ts: jiff::Timestamp = e.timestamp.parse().ok()?;
    Some(ts.as_millisecond())
}

impl Budget {
    pub async fn run(
        world: &World,
        args: &Args,
        pids: &mut Pids,
        ns: &str,
        out_dir: &Path,
    ) -> anyhow::Result<Budget> {
        let rate = args.budget_rate.unwrap_or(0.0);
        let n = args.agents;
        let (client, admin) = (&world.client, &world.admin);
        let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
        let launch = Launch {
            api_rate_limit: rate,
            api_burst: args.budget_burst,
            resync: args.budget_resync,
        };
        admin
            .set_config(ConfigUpdate {
                latency_ms: Some(args.budget_latency.as_millis() as u64),
                ..ConfigUpdate::default()
            })
            .await?;
        let changes = args.budget_changes.min(n);
        let total = changes * args.budget_repeats;
        let mut repetitions = Vec::new();
        for rep in 0..args.budget_repeats {
            println!(
                "==> budget {}/{}: operator restarted with --api-rate-limit {rate} --api-burst {} --resync-interval {:?}, emulator latency {:?}; {changes} spec change(s) {:?} later",
                rep + 1,
                args.budget_repeats,
                args.budget_burst
                    .map_or("(default)".to_string(), |b| b.to_string()),
                args.budget_resync,
                args.budget_latency,
                args.budget_wait,
            );
            let since = admin.counts().await?.total;
            let log = out_dir.join(format!("operator-{n}-budget-{}.log", rep + 1));
            let mut operator =
                Operator::start(args, &world.cp, ns, &world.emu.base_url(), &log, &launch)?;
            let started = Instant::now();
            pids.operator = operator.pid();
            let cpu_before = pids.cpu();
            operator.wait_ready(Duration::from_secs(120)).await?;
            tokio::time::sleep(args.budget_wait.saturating_sub(started.elapsed())).await;
            let mut patched: Vec<(String, jiff::Timestamp)> = Vec::new();
            for c in 0..changes {
                // Distinct agents across repetitions, spread over the fleet.
                let name = agent_name((rep * changes + c) * n / total.max(1));
                let image = format!("bench/voice-agent:budget-{}-{c}", rep + 1);
                let t0 = jiff::Timestamp::now();
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"image": image}})),
                )
                .await
                .with_context(|| format!("failed to change {name}"))?;
                patched.push((name, t0));
                tokio::time::sleep(args.budget_spacing).await;
            }
            let deadline = Instant::now() + args.budget_timeout;
            let latencies: Vec<Option<f64>> = loop {
                let entries = admin
                    .journal(&JournalFilter {
                        since: Some(since),
                        operation: Some("update_agent".into()),
                        ..JournalFilter::default()
                    })
                    .await?;
                let found: Vec<Option<f64>> = patched
                    .iter()
                    .map(|(name, t0)| {
                        entries.iter().find_map(|e| {
                            let ts: jiff::Timestamp = e.timestamp.parse().ok()?;
                            (e.agent.as_deref() == Some(name.as_str())
                                && ts
                                    >= t0.checked_sub(jiff::SignedDuration::from_millis(1)).ok()?)
                            .then(|| (ts.duration_since(*t0).as_secs_f64() * 1000.0).max(0.0))
                        })
                    })
                    .collect();
                if found.iter().all(Option::is_some) || Instant::now() > deadline {
                    break found;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            let seconds = started.elapsed().as_secs_f64();
            let cpu = cpu_delta(cpu_before, pids.cpu());
            let metrics = operator.metrics().await;
            operator.stop();
            let entries = admin
                .journal(&JournalFilter {
                    since: Some(since),
                    ..JournalFilter::default()
                })
                .await?;
            // While some change waited: from its patch to its update call (or the end).
            let end = entries.iter().filter_map(millis).max().unwrap_or(0);
            let waits: Vec<(i64, i64)> = patched
                .iter()
                .zip(&latencies)
                .map(|((_, t0), l)| {
                    let from = t0.as_millisecond();
                    (from, l.map_or(end, |ms| from + ms as i64))
                })
                .collect();
            let background_while_waiting = entries
                .iter()
                .filter(|e| {
                    e.operation == "get_agent"
                        && !patched
                            .iter()
                            .any(|(name, _)| e.agent.as_deref() == Some(name.as_str()))
                })
                .filter_map(millis)
                .filter(|t| waits.iter().any(|(a, b)| a < t && t < b))
                .count();
            let mut ts: Vec<i64> = entries.iter().filter_map(millis).collect();
            ts.sort_unstable();
            let mut calls: BTreeMap<String, u64> = BTreeMap::new();
            let mut read = std::collections::HashSet::new();
            for e in &entries {
                *calls.entry(e.operation.clone()).or_default() += 1;
                if e.operation == "get_agent"
                    && let Some(a) = &e.agent
                {
                    read.insert(a.clone());
                }
            }
            let burst = f64::from(args.budget_burst.unwrap_or(20));
            let rep = Repetition {
                latencies,
                seconds,
                calls,
                agents_read: read.len(),
                peak_per_second: peak_in_window(&ts, 1000),
                bucket_excess: round1(bucket_excess(&ts, rate, burst)),
                background_while_waiting,
                scheduling_metrics: metrics
                    .into_iter()
                    .filter(|(k, _)| {
                        ["resync", "lane", "backlog", "events_dropped", "rate_limit"]
                            .iter()
                            .any(|w| k.contains(w))
                    })
                    .collect(),
                cpu,
            };
            let shown: Vec<String> = rep
                .latencies
                .iter()
                .map(|l| l.map_or("not seen".into(), |ms| format!("{ms:.0} ms")))
                .collect();
            let seen: Vec<f64> = rep.latencies.iter().flatten().copied().collect();
            let d = distribution(seen.clone());
            println!(
                "    patch -> update: {}{}",
                if shown.len() <= 10 {
                    shown.join(", ")
                } else {
                    format!(
                        "p50 {} ms, p99 {} ms, max {} ms",
                        d["p50"], d["p99"], d["max"]
                    )
                },
                if seen.len() < rep.latencies.len() {
                    format!(
                        " ({} of {} not seen)",
                        rep.latencies.len() - seen.len(),
                        rep.latencies.len()
                    )
                } else {
                    String::new()
                }
            );
            println!(
                "    {:.0} s, calls {:?}, {} agents read ({} reads of other agents while a change waited); peak {} calls in 1 s (rate {rate} + burst {burst} = {}), beyond the bucket by {}",
                rep.seconds,
                rep.calls,
                rep.agents_read,
                rep.background_while_waiting,
                rep.peak_per_second,
                rate + burst,
                rep.bucket_excess
            );
            repetitions.push(rep);
        }
        admin
            .set_config(ConfigUpdate {
                latency_ms: Some(0),
                ..ConfigUpdate::default()
            })
            .await?;
        Ok(Budget {
            rate,
            burst: args.budget_burst,
            resync: args.budget_resync,
            latency: args.budget_latency,
            wait: args.budget_wait,
            repetitions,
        })
    }

    /// The `budget` entry of the results.
    pub fn to_json(&self) -> Value {
        let all: Vec<f64> = self
            .repetitions
            .iter()
            .flat_map(|r| r.latencies.iter().flatten().copied())
            .collect();
        let unseen: usize = self
            .repetitions
            .iter()
            .map(|r| r.latencies.iter().filter(|l| l.is_none()).count())
            .sum();
        json!({
            "apiRateLimit": self.rate,
            "apiBurst": self.burst,
            "resyncSeconds": secs(self.resync),
            "emulatorLatencyMs": self.latency.as_millis() as u64,
            "changesAfterSeconds": secs(self.wait),
            "patchToUpdateMs": distribution(all),
            "changesNotSeen": unseen,
            "peakCallsPerSecond": self.repetitions.iter().map(|r| r.peak_per_second).max(),
            "bucketExcess": self.repetitions.iter().map(|r| r.bucket_excess).fold(0.0, f64::max),
            "repetitions": self.repetitions.iter().map(|r| json!({
                "patchToUpdateMs": r.latencies.iter().map(|l| l.map(round1)).collect::<Vec<_>>(),
                "seconds": round1(r.seconds),
                "pipecatCalls": r.calls,
                "pipecatCallsPerSecond": round1(r.calls.values().sum::<u64>() as f64 / r.seconds.max(0.001)),
                "agentsRead": r.agents_read,
                "peakCallsPerSecond": r.peak_per_second,
                "bucketExcess": r.bucket_excess,
                "backgroundReadsWhileAChangeWaited": r.background_while_waiting,
                "schedulingMetrics": r.scheduling_metrics,
                "cpuSeconds": r.cpu,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_bucket() {
        assert_eq!(peak_in_window(&[0, 100, 999, 1000, 1001], 1000), 4);
        assert_eq!(peak_in_window(&[0, 500, 1000, 1500, 2000], 1000), 2);
        assert_eq!(peak_in_window(&[], 1000), 0);
        // 4 at once with burst 4 conforms; a fifth 1 ms later does not at 1/s.
        assert_eq!(bucket_excess(&[0, 0, 0, 0], 1.0, 4.0), 0.0);
        assert!(bucket_excess(&[0, 0, 0, 0, 1], 1.0, 4.0) > 0.9);
        // 1 per second forever at 1/s, burst 1.
        let steady: Vec<i64> = (0..100).map(|i| i * 1000).collect();
        assert_eq!(bucket_excess(&steady, 1.0, 1.0), 0.0);
    }
}
