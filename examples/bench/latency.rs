//! Phase 4, reaction latency: `spec.image` patches matched to the operator's `update_agent`
//! calls in the emulator journal (p50, p99).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::{Api, Patch, PatchParams};
use pipecat_cloud_emulator::JournalFilter;
use pipecat_operator::crd::PipecatAgent;
use serde_json::{Value, json};

use crate::CHANGED_IMAGE;
use crate::apiserver::{PhaseRequests, RequestCounts, apiserver_requests, own_key};
use crate::fleet::agent_name;
use crate::stats::distribution;
use crate::world::World;

/// How fast the operator reacted to spec changes.
pub struct Reaction {
    changes: usize,
    /// Changes matched to an `update_agent` call in the journal.
    matched: usize,
    /// Patch -> `update_agent` call (ms) of the matched changes.
    latency: Value,
    requests: PhaseRequests,
}

impl Reaction {
    /// Changes `spec.image` of `changes` agents spread over the `n` in `ns`, `spacing` apart.
    pub async fn run(
        world: &World,
        ns: &str,
        n: usize,
        changes: usize,
        spacing: Duration,
    ) -> anyhow::Result<Reaction> {
        let (client, admin) = (&world.client, &world.admin);
        let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
        let changes = changes.min(n);
        println!("==> reaction latency: {changes} spec.image changes");
        let since = admin.counts().await?.total;
        let before = apiserver_requests(client).await?;
        let mut patched: Vec<(String, jiff::Timestamp)> = Vec::new();
        for c in 0..changes {
            let name = agent_name(c * n / changes);
            let t0 = jiff::Timestamp::now();
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"image": CHANGED_IMAGE}})),
            )
            .await
            .with_context(|| format!("failed to change {name}"))?;
            patched.push((name, t0));
            tokio::time::sleep(spacing).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let latencies: Vec<f64> = loop {
            let entries = admin
                .journal(&JournalFilter {
                    since: Some(since),
                    operation: Some("update_agent".into()),
                    ..JournalFilter::default()
                })
                .await?;
            let found: Vec<f64> = patched
                .iter()
                .filter_map(|(name, t0)| {
                    entries.iter().find_map(|e| {
                        let ts: jiff::Timestamp = e.timestamp.parse().ok()?;
                        (e.agent.as_deref() == Some(name.as_str())
                            && ts >= t0.checked_sub(jiff::SignedDuration::from_millis(1)).ok()?)
                        .then(|| (ts.duration_since(*t0).as_secs_f64() * 1000.0).max(0.0))
                    })
                })
                .collect();
            if found.len() == patched.len() || Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // Let the roll-outs of the changed agents finish before counting their writes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = apiserver_requests(client).await?;
        let mut own = RequestCounts::new();
        own.insert(own_key("PATCH", ""), changes as f64);
        let requests = PhaseRequests::new(&before, &after, &own);
        let latency = distribution(latencies.clone());
        println!(
            "    matched {}/{changes}: p50 {} ms, p99 {} ms",
            latencies.len(),
            latency["p50"],
            latency["p99"]
        );
        Ok(Reaction {
            changes,
            matched: latencies.len(),
            latency,
            requests,
        })
    }

    /// The `reaction` entry of the results.
    pub fn to_json(&self) -> Value {
        json!({
            "changes": self.changes,
            "matched": self.matched,
            "latencyMs": self.latency,
            "operatorRequests": self.requests.to_json(),
        })
    }
}
