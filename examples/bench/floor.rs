//! Phase 1, the floor: a bare client does only the unavoidable work for N agents (create, add
//! the finalizer, write the status: three writes each) in a fresh namespace.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use pipecat_operator::crd::{FINALIZER, PipecatAgent};
use serde_json::{Value, json};

use crate::apiserver::{PhaseRequests, RequestCounts, apiserver_requests};
use crate::fleet::{agent_name, new_agent, ready_status, retry};
use crate::procs::{Pids, cpu_delta};
use crate::stats::secs;
use crate::world::World;

/// What the floor cost.
pub struct Floor {
    pub time: Duration,
    requests: PhaseRequests,
    cpu: Value,
}

impl Floor {
    /// Measures the floor for `n` objects, `concurrency` at a time.
    pub async fn run(
        world: &World,
        pids: &Pids,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<Floor> {
        println!("==> floor: create + finalizer + status for {n} objects");
        let floor_ns = world.namespace("bench-floor").await?;
        let before = apiserver_requests(&world.client).await?;
        let cpu_before = pids.cpu();
        let time = write_ready_agents(&world.client, &floor_ns, n, concurrency).await?;
        let cpu_after = pids.cpu();
        let after = apiserver_requests(&world.client).await?;
        let requests = PhaseRequests::new(&before, &after, &RequestCounts::new());
        let cpu = cpu_delta(cpu_before, cpu_after);
        println!(
            "    {:.2} s, {} writes",
            time.as_secs_f64(),
            requests.total_writes()
        );
        Ok(Floor {
            time,
            requests,
            cpu,
        })
    }

    /// The `floor` entry of the results.
    pub fn to_json(&self) -> Value {
        json!({
            "seconds": secs(self.time),
            "cpuSeconds": self.cpu,
            "requests": self.requests.to_json(),
            "writes": self.requests.total_writes(),
        })
    }
}

/// The floor: create, add the finalizer (merge patch with the resourceVersion, as the operator
/// does) and apply the status, per object, `concurrency` objects at a time.
pub async fn write_ready_agents(
    client: &kube::Client,
    ns: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = agent_name(i);
                let (pp, obj) = (PostParams::default(), new_agent(&name));
                let created = retry("create a floor object", || api.create(&pp, &obj)).await?;
                let patch = json!({"metadata": {
                    "finalizers": [FINALIZER],
                    "resourceVersion": created.metadata.resource_version,
                }});
                let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
                retry("add a finalizer", || api.patch(&name, &pp, &patch)).await?;
                let status = json!({
                    "apiVersion": "pipecat.daily.co/v1alpha1",
                    "kind": "PipecatAgent",
                    "status": ready_status(&name),
                });
                let (pp, status) = (
                    PatchParams::apply("bench-floor").force(),
                    Patch::Apply(&status),
                );
                retry("apply a status", || api.patch_status(&name, &pp, &status)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}
