//! Phase 2, cold convergence: N PipecatAgents created at once, timed until all are
//! `Ready=True`, with the Pipecat calls by kind, the operator's apiserver requests (from
//! kube-apiserver's `/metrics`, minus the bench's own creates), its CPU and its connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use pipecat_operator::crd::PipecatAgent;
use serde_json::{Value, json};

use crate::apiserver::{PhaseRequests, RequestCounts, apiserver_requests, own_key};
use crate::fleet::{ReadyWatch, agent_name, new_agent, retry};
use crate::memory::object_costs;
use crate::operator::{Operator, reconciles};
use crate::procs::{Pids, connections_to, cpu_delta, status_bytes};
use crate::stats::{distribution, secs};
use crate::world::World;

/// What cold convergence cost.
pub struct Cold {
    /// `Err(ready)` when only `ready` agents were Ready at the timeout.
    converged: Result<(), usize>,
    time: Duration,
    created_in: Duration,
    /// Per agent: create answered -> first seen Ready (ms).
    per_agent: Vec<f64>,
    calls: BTreeMap<String, u64>,
    requests: PhaseRequests,
    cpu: Value,
    /// Peak connections of the operator to kube-apiserver and to the emulator.
    peak_connections: (usize, usize),
    operator_metrics: BTreeMap<String, f64>,
    per_object: Value,
    /// The operator's RSS before and after (bytes).
    pub rss_before: f64,
    pub rss_after: f64,
}

impl Cold {
    /// Creates `n` agents in `ns` (watched by `operator`) and waits until all are Ready, or
    /// `args.timeout`.
    pub async fn run(
        world: &World,
        operator: &Operator,
        pids: &Pids,
        ns: &str,
        args: &crate::Args,
        floor_time: Duration,
    ) -> anyhow::Result<Cold> {
        let n = args.agents;
        let client = &world.client;
        let admin = &world.admin;
        let apiserver_port = world.apiserver_port();
        let emulator_port = world.emu.addr().port();

        println!("==> cold convergence: {n} PipecatAgents to Ready=True");
        let mut watch = ReadyWatch::start(client, ns).await?;
        let calls_before = admin.counts().await?;
        let before = apiserver_requests(client).await?;
        let cpu_before = pids.cpu();
        let rss_before = status_bytes(pids.operator, "VmRSS");
        // Sample the operator's connections while it converges.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            let operator_pid = pids.operator;
            tokio::task::spawn_blocking(move || {
                let (mut to_apiserver, mut to_emulator) = (0, 0);
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    to_apiserver = to_apiserver.max(connections_to(operator_pid, apiserver_port));
                    to_emulator = to_emulator.max(connections_to(operator_pid, emulator_port));
                    std::thread::sleep(Duration::from_millis(200));
                }
                (to_apiserver, to_emulator)
            })
        };
        let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
        let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let started = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                let created_at = created_at.clone();
                async move {
                    let name = agent_name(i);
                    let (pp, obj) = (PostParams::default(), new_agent(&name));
                    retry("create a PipecatAgent", || api.create(&pp, &obj)).await?;
                    created_at
                        .lock()
                        .expect("created map")
                        .insert(name, Instant::now());
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(args.client_concurrency)
            .try_collect::<()>()
            .await?;
        let created_in = started.elapsed();
        let converged = watch.wait_for(n, args.timeout).await;
        let time = started.elapsed();
        if let Err(ready) = converged {
            println!(
                "    NOT CONVERGED: {ready} of {n} ready after {:?}",
                args.timeout
            );
        }
        // Per agent: create answered -> first seen Ready.
        let per_agent: Vec<f64> = {
            let created = created_at.lock().expect("created map");
            let ready = watch.first_ready.lock().expect("ready map");
            ready
                .iter()
                .filter_map(|(name, r)| {
                    let c = created.get(name)?;
                    Some(r.saturating_duration_since(*c).as_secs_f64() * 1000.0)
                })
                .collect()
        };
        drop(watch);
        // Let the events published in the background land before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let peak_connections = sampler.await?;
        let cpu_after = pids.cpu();
        let after = apiserver_requests(client).await?;
        let calls_after = admin.counts().await?;
        let mut own = RequestCounts::new();
        own.insert(own_key("POST", ""), n as f64);
        let requests = PhaseRequests::new(&before, &after, &own);
        let calls: BTreeMap<String, u64> = calls_after
            .by_operation
            .iter()
            .map(|(k, v)| (k.clone(), v - calls_before.operation(k)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let operator_metrics = operator.metrics().await;
        let per_object = object_costs(client, ns, &agent_name(0)).await?;
        let rss_after = status_bytes(pids.operator, "VmRSS");
        println!(
            "    {:.2} s ({:.2}x floor; creates took {:.2} s), {} operator writes",
            time.as_secs_f64(),
            time.as_secs_f64() / floor_time.as_secs_f64(),
            created_in.as_secs_f64(),
            requests.total_writes()
        );
        Ok(Cold {
            converged,
            time,
            created_in,
            per_agent,
            calls,
            requests,
            cpu: cpu_delta(cpu_before, cpu_after),
            peak_connections,
            operator_metrics,
            per_object,
            rss_before,
            rss_after,
        })
    }

    /// The `cold` entry of the results, for `n` agents against the floor's time.
    pub fn to_json(&self, n: usize, floor_time: Duration) -> Value {
        let writes = self.requests.total_writes();
        let call_total: u64 = self.calls.values().sum();
        let (to_apiserver, to_pipecat) = self.peak_connections;
        json!({
            "converged": self.converged.is_ok(),
            "seconds": secs(self.time),
            "createsSeconds": secs(self.created_in),
            "ratioToFloor": (self.time.as_secs_f64() / floor_time.as_secs_f64() * 100.0).round() / 100.0,
            "perAgentCreateToReadyMs": distribution(self.per_agent.clone()),
            "pipecatCalls": self.calls,
            "pipecatCallsPerAgent": (call_total as f64 / n as f64 * 100.0).round() / 100.0,
            "operatorRequests": self.requests.to_json(),
            "operatorWrites": writes,
            "operatorWritesPerAgent": (writes as f64 / n as f64 * 100.0).round() / 100.0,
            "cpuSeconds": self.cpu,
            "peakConnections": {"toApiserver": to_apiserver, "toPipecat": to_pipecat},
            "reconciles": reconciles(&self.operator_metrics),
            "perObject": self.per_object,
            "operatorMetrics": self.operator_metrics,
        })
    }
}
