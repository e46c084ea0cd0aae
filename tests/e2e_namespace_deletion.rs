//! Deleting a namespace that holds agents and their credentials Secret completes, for real:
//! the test control plane runs kube-controller-manager's namespace controller. With
//! `deletionPolicy: Delete` every remote agent is deleted exactly once before the namespace
//! goes (the Secret's in-use finalizer keeps the key until then); with `Orphan` the agents
//! stay; an operator killed in the middle of it changes neither outcome.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{Api, ResourceExt};
use pipecat_operator::emulator::{Fault, JournalFilter};
use support::operator::{Env, Options};

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: NAME}
spec:
  image: acme/bot:1
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 0, maxAgents: 2}
  deletionPolicy: POLICY
";

const NAMES: [&str; 3] = ["bot-a", "bot-b", "bot-c"];

async fn start(prefix: &str, policy: &str) -> Env {
    let env = Env::start(prefix, Options::default()).await;
    for name in NAMES {
        env.apply(&AGENT.replace("NAME", name).replace("POLICY", policy));
    }
    for name in NAMES {
        env.wait_ready(name).await;
    }
    env
}

/// `kubectl delete namespace` (not waiting), then waits until the namespace is gone.
async fn delete_namespace_and_wait(env: &Env, timeout: Duration) {
    let out = env.kubectl(&["delete", "namespace", &env.ns, "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_namespace_gone(env, timeout).await;
}

async fn wait_namespace_gone(env: &Env, timeout: Duration) {
    let namespaces: Api<Namespace> = Api::all(env.cp.client());
    let deadline = Instant::now() + timeout;
    while namespaces
        .get_opt(&env.ns)
        .await
        .expect("get namespace")
        .is_some()
    {
        if Instant::now() > deadline {
            let left = env.kubectl(&["get", "pipecatagents,secrets", "-n", &env.ns, "-o", "yaml"]);
            panic!(
                "namespace {} still exists after {timeout:?}; left in it:\n{}\noperator log tail:\n{}",
                env.ns,
                String::from_utf8_lossy(&left.stdout),
                env.operator.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Successful (2xx) deletes per agent, from the emulator's journal.
async fn successful_deletes(env: &Env) -> BTreeMap<String, usize> {
    let entries = env
        .admin
        .journal(&JournalFilter {
            operation: Some("delete_agent".into()),
            ..JournalFilter::default()
        })
        .await
        .expect("journal");
    let mut out = BTreeMap::new();
    for e in entries {
        if e.status.is_some_and(|s| (200..300).contains(&s)) {
            *out.entry(e.agent.unwrap_or_default()).or_insert(0) += 1;
        }
    }
    out
}

fn each_once() -> BTreeMap<String, usize> {
    NAMES.iter().map(|n| (n.to_string(), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_deletes_every_agent_once_and_completes() {
    let env = start("nsdel", "Delete").await;
    let secrets: Api<Secret> = Api::namespaced(env.cp.client(), &env.ns);
    let secret = secrets.get("pipecat-api-key").await.unwrap();
    assert!(
        secret
            .finalizers()
            .iter()
            .any(|f| f == "pipecat.daily.co/credentials-in-use"),
        "the key is marked in use: {:?}",
        secret.finalizers()
    );

    delete_namespace_and_wait(&env, Duration::from_secs(120)).await;
    assert!(
        env.remote_names().await.is_empty(),
        "{:?}",
        env.remote_names().await
    );
    assert_eq!(successful_deletes(&env).await, each_once());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_orphan_the_agents_stay_and_the_namespace_still_goes() {
    let env = start("nsorphan", "Orphan").await;
    delete_namespace_and_wait(&env, Duration::from_secs(120)).await;
    let mut left = env.remote_names().await;
    left.sort();
    assert_eq!(left, NAMES.to_vec());
    assert_eq!(env.calls("delete_agent").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_in_the_middle_changes_nothing() {
    let mut env = start("nskill", "Delete").await;
    // Slow deletes, so that the kill lands while they are in flight.
    env.admin
        .inject_fault(Fault {
            method: Some("DELETE".into()),
            delay_ms: Some(1500),
            count: 2,
            ..Fault::new("/v1/agents/*")
        })
        .await
        .unwrap();
    let out = env.kubectl(&["delete", "namespace", &env.ns, "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kill as soon as the first delete has arrived (it is held by the delay).
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.calls("delete_agent").await == 0
        && env
            .admin
            .journal(&JournalFilter {
                operation: Some("delete_agent".into()),
                ..JournalFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "no delete arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.operator.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.operator.restart();

    wait_namespace_gone(&env, Duration::from_secs(120)).await;
    assert!(
        env.remote_names().await.is_empty(),
        "{:?}",
        env.remote_names().await
    );
    assert_eq!(successful_deletes(&env).await, each_once());
}
