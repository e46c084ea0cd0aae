//! Deleting a namespace that holds agents and their credentials Secret completes, for real:
//! the test control plane runs kube-controller-manager's namespace controller. With
//! `deletionPolicy: Delete` every remote agent is deleted exactly once before the namespace
//! goes (the Secret's in-use finalizer keeps the key until then); with `Orphan` the agents
//! stay; an operator killed in the middle of it changes neither outcome.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{Api, ResourceExt};
use pipecat_cloud_emulator::{Fault, JournalFilter};

use crate::support::operator::{Env, Options};

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

/// The deletes of these agents are held until the operator is killed: the kill lands with
/// `bot-a` deleted and the other two asked for but not answered.
const HELD: [&str; 2] = ["bot-b", "bot-c"];

/// Requests each hold fault applies to: more than the operator can send before the kill.
const HOLD_COUNT: u32 = 1_000_000;

/// How many requests of each held agent's fault were taken (deletes that arrived, the
/// operator's retries after its request timeout included).
async fn held_arrivals(env: &Env) -> BTreeMap<String, u32> {
    env.admin
        .faults()
        .await
        .expect("faults")
        .into_iter()
        .map(|f| (f.fault.path.clone(), HOLD_COUNT - f.remaining))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_in_the_middle_changes_nothing() {
    let mut env = start("nskill", "Delete").await;
    // The deletes of bot-b and bot-c are held far longer than the operator's request timeout
    // (3 s): none of them can be answered before the kill, whatever the timing.
    for name in HELD {
        env.admin
            .inject_fault(Fault {
                method: Some("DELETE".into()),
                delay_ms: Some(600_000),
                count: HOLD_COUNT,
                ..Fault::new(format!("/v1/agents/{name}"))
            })
            .await
            .unwrap();
    }
    let out = env.kubectl(&["delete", "namespace", &env.ns, "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kill once bot-a's delete was answered and the held deletes have arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived = held_arrivals(&env).await;
        let done = successful_deletes(&env).await;
        if done.get("bot-a") == Some(&1)
            && arrived.len() == HELD.len()
            && arrived.values().all(|n| *n > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deletion never reached the middle: answered {done:?}, held deletes arrived {arrived:?}\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.operator.kill();
    // The kill landed in the middle: one delete answered, the others asked for and unanswered,
    // their agents still there.
    let answered = successful_deletes(&env).await;
    assert_eq!(
        answered,
        BTreeMap::from([("bot-a".to_string(), 1)]),
        "deletes answered when the operator was killed"
    );
    let mut left = env.remote_names().await;
    left.sort();
    assert_eq!(
        left,
        HELD.to_vec(),
        "agents left when the operator was killed"
    );

    // Pipecat Cloud answers again; a new operator process finishes the deletion.
    env.admin.clear_faults().await.unwrap();
    env.operator.restart();

    wait_namespace_gone(&env, Duration::from_secs(120)).await;
    assert!(
        env.remote_names().await.is_empty(),
        "{:?}",
        env.remote_names().await
    );
    assert_eq!(successful_deletes(&env).await, each_once());
}
