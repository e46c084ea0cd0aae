//! The PipecatAgents the bench creates (names, spec, a status like the operator's), retries
//! of its requests, and the watch that records when each agent is first Ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::Api;
use kube::runtime::watcher;
use pipecat_operator::crd::{ObservedAutoScaling, PipecatAgent, PipecatAgentStatus};
use serde_json::json;

use crate::IMAGE;

/// The name of the `i`th agent.
pub fn agent_name(i: usize) -> String {
    format!("agent-{i:05}")
}

/// A PipecatAgent of the bench's image.
pub fn new_agent(name: &str) -> PipecatAgent {
    serde_json::from_value(json!({
        "apiVersion": "pipecat.daily.co/v1alpha1",
        "kind": "PipecatAgent",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, "autoScaling": {"minAgents": 0, "maxAgents": 10}},
    }))
    .expect("a valid PipecatAgent")
}

/// A status like the operator's once the agent is ready.
pub fn ready_status(name: &str) -> PipecatAgentStatus {
    let deployment = uuid::Uuid::new_v4().to_string();
    let now = Time(jiff::Timestamp::now());
    let condition = |type_: &str, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message,
        observed_generation: Some(1),
        last_transition_time: now.clone(),
    };
    PipecatAgentStatus {
        agent_name: Some(name.into()),
        ready: true,
        available: Some(true),
        active_deployment_id: Some(deployment.clone()),
        active_deployment_ready: Some(true),
        desired_deployment_id: Some(deployment.clone()),
        reconciled_deployment_id: Some(deployment.clone()),
        active_session_count: Some(0),
        observed_at: Some(now.clone()),
        auto_scaling: Some(ObservedAutoScaling {
            min_replicas: Some(0),
            max_replicas: Some(10),
        }),
        region: Some("us-west".into()),
        observed_generation: Some(1),
        applied_config_hash: Some(format!("{:016x}", rand::random::<u64>())),
        applied_redeploy_token: None,
        adopted: false,
        requested_deployment: Some(pipecat_operator::crd::RequestedDeployment {
            id: deployment.clone(),
            replaces: None,
        }),
        non_convergence: None,
        selector: Some(format!("{}={name}", pipecat_operator::crd::AGENT_LABEL)),
        conditions: vec![
            condition(
                "Ready",
                "DeploymentReady",
                format!("deployment {deployment} is ready to take sessions"),
            ),
            condition(
                "Synced",
                "UpToDate",
                format!("Pipecat Cloud agent {name} matches the spec"),
            ),
        ],
    }
}

/// `Ready=True` for the current generation.
fn is_ready(a: &PipecatAgent) -> bool {
    a.condition("Ready")
        .is_some_and(|c| c.status == "True" && c.observed_generation == a.metadata.generation)
}

/// Retries a request a few times on errors (the apiserver may refuse under load).
pub async fn retry<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("    retrying {what} after: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("failed to {what}"))),
        }
    }
}

/// Watches a namespace and records when each agent is first seen `Ready=True` for its current
/// generation; the count is published on a watch channel.
pub struct ReadyWatch {
    pub first_ready: Arc<Mutex<HashMap<String, Instant>>>,
    count: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    pub async fn start(client: &kube::Client, ns: &str) -> anyhow::Result<ReadyWatch> {
        let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
        let first_ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (tx, count) = tokio::sync::watch::channel(0usize);
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let map = first_ready.clone();
        let task = tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let obj = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("    watch error (retrying): {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if is_ready(&obj) {
                    let mut m = map.lock().expect("ready map");
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    m.entry(name).or_insert_with(Instant::now);
                    let _ = tx.send(m.len());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(60), synced_rx)
            .await
            .context("the readiness watch did not start within 60 s")?
            .ok();
        Ok(ReadyWatch {
            first_ready,
            count,
            task,
        })
    }

    /// Waits for `n` ready agents; returns how many there were if `timeout` passed first.
    pub async fn wait_for(&mut self, n: usize, timeout: Duration) -> Result<(), usize> {
        let reached = tokio::time::timeout(timeout, self.count.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(*self.count.borrow())
        }
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
