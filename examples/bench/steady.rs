//! Phase 3, steady state: several resync periods with nothing changing (Pipecat calls and
//! apiserver writes per minute: the goal for writes is zero).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::apiserver::{PhaseRequests, RequestCounts, apiserver_requests};
use crate::operator::Operator;
use crate::procs::{Pids, cpu_delta};
use crate::stats::{round1, secs};
use crate::world::World;

/// What the steady state cost.
pub struct Steady {
    duration: Duration,
    resync: Duration,
    calls: BTreeMap<String, u64>,
    requests: PhaseRequests,
    update_calls: u64,
    status_writes: u64,
    cpu: Value,
    operator_metrics_delta: BTreeMap<String, f64>,
}

impl Steady {
    /// Observes `duration` of nothing changing (the operator resyncs every `resync`).
    pub async fn run(
        world: &World,
        operator: &Operator,
        pids: &Pids,
        duration: Duration,
        resync: Duration,
    ) -> anyhow::Result<Steady> {
        let (client, admin) = (&world.client, &world.admin);
        println!(
            "==> steady state: {:.0} s with nothing changing",
            duration.as_secs_f64()
        );
        let calls_before = admin.counts().await?;
        let before = apiserver_requests(client).await?;
        let op_before = operator.metrics().await;
        let cpu_before = pids.cpu();
        tokio::time::sleep(duration).await;
        let cpu_after = pids.cpu();
        let after = apiserver_requests(client).await?;
        let calls_after = admin.counts().await?;
        let op_after = operator.metrics().await;
        let requests = PhaseRequests::new(&before, &after, &RequestCounts::new());
        let minutes = duration.as_secs_f64() / 60.0;
        let calls: BTreeMap<String, u64> = calls_after
            .by_operation
            .iter()
            .map(|(k, v)| (k.clone(), v - calls_before.operation(k)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let operator_metrics_delta: BTreeMap<String, f64> = op_after
            .iter()
            .filter(|(k, _)| k.contains("_total") || k.ends_with("_sum") || k.ends_with("_count"))
            .map(|(k, v)| (k.clone(), v - op_before.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v != 0.0)
            .collect();
        let update_calls = calls.get("update_agent").copied().unwrap_or(0);
        let status_writes = requests.writes_matching(|k| k.ends_with("/status"));
        println!(
            "    {:.1} Pipecat calls/min, {:.1} apiserver writes/min, {} update calls, {} status writes",
            calls.values().sum::<u64>() as f64 / minutes,
            requests.total_writes() as f64 / minutes,
            update_calls,
            status_writes
        );
        Ok(Steady {
            duration,
            resync,
            calls,
            requests,
            update_calls,
            status_writes,
            cpu: cpu_delta(cpu_before, cpu_after),
            operator_metrics_delta,
        })
    }

    /// The `steady` entry of the results.
    pub fn to_json(&self) -> Value {
        let minutes = self.duration.as_secs_f64() / 60.0;
        let per_minute = |m: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            m.iter()
                .map(|(k, v)| (k.clone(), round1(*v as f64 / minutes)))
                .collect()
        };
        json!({
            "seconds": secs(self.duration),
            "resyncPeriods": round1(self.duration.as_secs_f64() / self.resync.as_secs_f64()),
            "pipecatCalls": self.calls,
            "pipecatCallsPerMinute": per_minute(&self.calls),
            "apiserverWritesPerMinute": per_minute(&self.requests.writes),
            "apiserverReadsPerMinute": per_minute(&self.requests.reads),
            "writes": self.requests.total_writes(),
            "updateCalls": self.update_calls,
            "statusWrites": self.status_writes,
            "excluded": self.requests.excluded,
            "cpuSeconds": self.cpu,
            "operatorMetricsDelta": self.operator_metrics_delta,
        })
    }
}
