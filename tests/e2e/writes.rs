//! The writes of the create path against the real apiserver, counted on a watch of the
//! resource: a new agent whose deployment is live by the first poll costs the floor's writes
//! (the user's create, the finalizer with the create marker, one status), and one whose
//! roll-out takes longer still shows `Deploying` before `Ready`. The events a user reads
//! (`Created`, `DeploymentReady`) are published either way.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::WatchParams;
use kube::core::WatchEvent;
use pipecat_cloud_emulator::ConfigUpdate;
use pipecat_operator::crd::PipecatAgent;

use crate::support::operator::{Env, Options};

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: NAME}
spec:
  image: dailyco/voice-starter:latest
  secretSet: voice-starter-secrets
";

/// Every version of the namespace's agents the watch delivered, by name, in order.
type Versions = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<PipecatAgent>>>>;

fn record(env: &Env) -> Versions {
    let versions = Versions::default();
    let api: Api<PipecatAgent> = env.agents();
    let into = versions.clone();
    tokio::spawn(async move {
        let mut stream = api
            .watch(&WatchParams::default(), "0")
            .await
            .expect("watch the agents")
            .boxed();
        while let Ok(Some(ev)) = stream.try_next().await {
            if let WatchEvent::Added(a) | WatchEvent::Modified(a) = ev {
                let name = a.metadata.name.clone().unwrap_or_default();
                into.lock().unwrap().entry(name).or_default().push(a);
            }
        }
    });
    versions
}

/// (Ready status, Ready reason) of each version that has a status.
fn readiness(versions: &Versions, name: &str) -> Vec<(String, String)> {
    versions.lock().unwrap()[name]
        .iter()
        .filter_map(|a| {
            let c = a
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?;
            Some((c.status.clone(), c.reason.clone()))
        })
        .collect()
}

/// Event reasons about `name`.
fn event_reasons(env: &Env, name: &str) -> Vec<String> {
    let out = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    let mut reasons: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    reasons.sort();
    reasons
}

async fn wait_events(env: &Env, name: &str, want: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reasons = event_reasons(env, name);
        if reasons == want || std::time::Instant::now() > deadline {
            return reasons;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_new_agent_costs_the_floors_writes_and_a_slow_roll_out_still_shows() {
    let env = Env::start("writes", Options::default()).await;
    let versions = record(&env);
    // Let the watch start before anything is created.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Live by the first poll (the emulator's delays are zero).
    env.apply(&AGENT.replace("NAME", "quick"));
    env.wait_ready("quick").await;
    // Let any later write land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quick = versions.lock().unwrap()["quick"].clone();
    let rvs: Vec<_> = quick
        .iter()
        .map(|a| a.metadata.resource_version.clone())
        .collect();
    assert_eq!(
        rvs.len(),
        3,
        "the create, the finalizer with the create marker, one status: {rvs:?} {:#?}",
        readiness(&versions, "quick")
    );
    assert_eq!(
        readiness(&versions, "quick"),
        [("True".to_string(), "DeploymentReady".to_string())],
        "a single status, Ready"
    );
    assert_eq!(
        wait_events(&env, "quick", &["Created", "DeploymentReady"]).await,
        ["Created", "DeploymentReady"]
    );

    // A roll-out that takes seconds: Deploying shows before Ready.
    env.admin
        .set_config(ConfigUpdate {
            ready_delay_ms: Some(4000),
            reconcile_delay_ms: Some(4000),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    env.apply(&AGENT.replace("NAME", "slow"));
    env.wait_ready("slow").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = readiness(&versions, "slow");
    assert_eq!(
        seen.first(),
        Some(&("False".to_string(), "Deploying".to_string())),
        "the roll-out shows: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&("True".to_string(), "DeploymentReady".to_string())),
        "{seen:?}"
    );
    assert_eq!(
        wait_events(&env, "slow", &["Created", "DeploymentReady"]).await,
        ["Created", "DeploymentReady"]
    );
}
