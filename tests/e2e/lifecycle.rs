//! End-to-end: the operator binary against a real kube-apiserver + etcd and the Pipecat Cloud
//! emulator, driven with kubectl where a user would.

use std::time::Duration;

use pipecat_cloud_emulator::{self as emulator, ActiveFault, Fault};

use crate::support::operator::{Env, Options, is_ready};

const SEED: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: voice-starter}
spec:
  image: your-dockername/voice-starter:0.1
  nodeType: arm
  imagePullSecretSet: dockerhub-credentials
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 1, maxAgents: 10}
  enableKrisp: false
";

fn seed_with(image: &str) -> String {
    SEED.replace("your-dockername/voice-starter:0.1", image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_seed_becomes_ready_with_the_emulators_state() {
    let env = Env::start("seed", Options::default()).await;
    env.apply(SEED);
    let agent = env.wait_ready("voice-starter").await;
    let status = agent.status.clone().unwrap();
    let remote = env
        .remote("voice-starter")
        .await
        .expect("agent created remotely");

    // The remote agent has exactly the spec's configuration.
    let spec = &remote["deployment"]["manifest"]["spec"];
    assert_eq!(spec["image"], "your-dockername/voice-starter:0.1");
    assert_eq!(spec["envFromSecretNames"][0], "voice-starter-secrets");
    assert_eq!(remote["autoScaling"]["minReplicas"], 1);
    assert_eq!(remote["autoScaling"]["maxReplicas"], 10);

    // Status mirrors what the emulator reports.
    assert!(status.ready);
    assert_eq!(status.agent_name.as_deref(), Some("voice-starter"));
    assert_eq!(
        status.desired_deployment_id.as_deref(),
        remote["desiredDeploymentId"].as_str()
    );
    assert_eq!(
        status.reconciled_deployment_id.as_deref(),
        remote["reconciledDeploymentId"].as_str()
    );
    assert_eq!(
        status.active_deployment_id.as_deref(),
        remote["activeDeploymentId"].as_str()
    );
    assert_eq!(
        status.active_session_count,
        remote["activeSessionCount"].as_i64()
    );
    assert_eq!(status.region.as_deref(), remote["region"].as_str());
    assert_eq!(status.observed_generation, agent.metadata.generation);
    let synced = agent.condition("Synced").unwrap();
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("True", "UpToDate")
    );
    assert_eq!(env.calls("create_agent").await, 1);
    assert_eq!(env.calls("update_agent").await, 0);

    // The printer columns tell the story at a glance.
    let out = env.kubectl(&["get", "pipecatagents"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("READY") && table.contains("SESSIONS"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("voice-starter"))
        .expect("row");
    assert!(
        row.contains("True") && row.contains("DeploymentReady"),
        "{row}"
    );
    assert!(
        row.contains(status.active_deployment_id.as_deref().unwrap()),
        "{row}"
    );

    // Sessions started remotely show up at the next resync.
    let start = reqwest::Client::new()
        .post(format!(
            "{}/public/voice-starter/start",
            env.emulator.base_url()
        ))
        .bearer_auth(crate::support::operator::API_KEY)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(start.status().is_success(), "{}", start.status());
    env.wait_for(
        "voice-starter",
        Duration::from_secs(20),
        "activeSessionCount=1",
        |a| a.status.as_ref().and_then(|s| s.active_session_count) == Some(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_change_is_one_update_and_ready_only_once_reconciled() {
    let opts = Options {
        emulator: emulator::Config {
            ready_delay: Duration::from_millis(300),
            reconcile_delay: Duration::from_millis(2500),
            ..Default::default()
        },
        ..Options::default()
    };
    let env = Env::start("update", opts).await;
    env.apply(SEED);
    let before = env.wait_ready("voice-starter").await;
    let old_deployment = before.status.unwrap().desired_deployment_id.unwrap();
    assert_eq!(env.calls("update_agent").await, 0);

    env.apply(&seed_with("your-dockername/voice-starter:0.2"));
    // While the new deployment rolls out, the resource never claims to be ready with it. Every
    // sample of the new generation that says Ready=True is checked, whatever deployment its
    // status names: the status must name the new deployment as desired and reconciled, and the
    // emulator must have been able to reconcile it by then (its update arrived at least the
    // 2.5 s reconcile delay earlier: the emulator runs in this process, on this clock).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut saw_rolling_out = false;
    let new_deployment = loop {
        // The remote first: a premature Ready cannot be hidden by a reconciliation that
        // happens between the two reads.
        let remote = env.remote("voice-starter").await.unwrap();
        let a = env.agents().get("voice-starter").await.unwrap();
        let read_at = jiff::Timestamp::now();
        let st = a.status.clone().unwrap_or_default();
        if a.metadata.generation > Some(1) && is_ready(&a) {
            let desired = st.desired_deployment_id.clone().unwrap_or_default();
            assert_ne!(
                desired, old_deployment,
                "Ready=True for generation {:?} while the status still shows the old deployment: {st:?}",
                a.metadata.generation
            );
            assert_eq!(
                st.reconciled_deployment_id.as_deref(),
                Some(desired.as_str()),
                "Ready=True before the new deployment was reconciled: {st:?}"
            );
            let update = env
                .admin
                .journal(&pipecat_cloud_emulator::JournalFilter {
                    operation: Some("update_agent".into()),
                    agent: Some("voice-starter".into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            let sent: jiff::Timestamp = update
                .first()
                .expect("Ready=True for a new generation with no update sent")
                .timestamp
                .parse()
                .unwrap();
            let reconcilable = sent
                .checked_add(jiff::SignedDuration::from_millis(2500))
                .unwrap();
            assert!(
                read_at >= reconcilable,
                "Ready=True read at {read_at}, before the update sent at {sent} could be reconciled ({reconcilable})"
            );
            if remote["reconciledDeploymentId"].as_str() != Some(desired.as_str()) {
                // Reconciled between the two reads: the remote must show it now.
                let now = env.remote("voice-starter").await.unwrap();
                assert_eq!(
                    now["reconciledDeploymentId"].as_str(),
                    Some(desired.as_str()),
                    "Ready=True, but the remote has not reconciled {desired}: {now}"
                );
            }
            break desired;
        }
        if st
            .desired_deployment_id
            .as_deref()
            .is_some_and(|d| d != old_deployment)
        {
            saw_rolling_out = true;
            let ready = a.condition("Ready").unwrap();
            assert_eq!(ready.reason, "Deploying", "{ready:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never became ready:\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        saw_rolling_out,
        "the roll-out (2.5 s) was never observed as not ready"
    );
    assert_ne!(new_deployment, old_deployment);
    assert_eq!(
        env.calls("update_agent").await,
        1,
        "exactly one update call"
    );
    let remote = env.remote("voice-starter").await.unwrap();
    assert_eq!(
        remote["deployment"]["manifest"]["spec"]["image"],
        "your-dockername/voice-starter:0.2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_resource_costs_no_update_and_no_write() {
    let opts = Options {
        resync: Duration::from_millis(500),
        ..Options::default()
    };
    let env = Env::start("steady", opts).await;
    env.apply(SEED);
    let ready = env.wait_ready("voice-starter").await;
    // Let the pass after Ready finish (it ends before the second read after it), then take
    // the baseline.
    wait_for_reads(&env, env.calls("get_agent").await + 2).await;
    let baseline = env.agents().get("voice-starter").await.unwrap();
    let rv = baseline.metadata.resource_version.clone();
    let updates = env.calls("update_agent").await;
    let gets_before = env.calls("get_agent").await;
    let writes = env.operator.status_writes(&env.ns, "voice-starter");
    assert!(
        writes > 0,
        "status writes are not counted (Ready was written)"
    );
    assert_eq!(ready.metadata.generation, baseline.metadata.generation);

    env.apply(SEED); // re-apply, unchanged: sends nothing to the apiserver
    // Four more reads: every write a resync could make lands before the next resync's read.
    wait_for_reads(&env, gets_before + 4).await;
    let after = env.agents().get("voice-starter").await.unwrap();
    assert_eq!(env.calls("update_agent").await, updates, "no update call");
    // Counted as sent: a status write that changes nothing keeps the resourceVersion.
    assert_eq!(
        env.operator.status_writes(&env.ns, "voice-starter"),
        writes,
        "no status write"
    );
    assert_eq!(
        after.metadata.resource_version, rv,
        "no write of any kind to the resource"
    );

    // A metadata change: a watch event with the same generation.
    let out = env.kubectl(&[
        "annotate",
        "pipecatagent",
        "voice-starter",
        "example.com/note=unrelated",
    ]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::controlplane::describe_output(&out)
    );
    let annotated = env.agents().get("voice-starter").await.unwrap();
    assert_eq!(annotated.metadata.generation, baseline.metadata.generation);
    assert_ne!(annotated.metadata.resource_version, rv);
    let gets = env.calls("get_agent").await;
    wait_for_reads(&env, gets + 4).await;
    let after = env.agents().get("voice-starter").await.unwrap();
    assert_eq!(
        env.calls("update_agent").await,
        updates,
        "no update call after a metadata change"
    );
    assert_eq!(
        env.operator.status_writes(&env.ns, "voice-starter"),
        writes,
        "no status write after a metadata change"
    );
    assert_eq!(
        after.metadata.resource_version, annotated.metadata.resource_version,
        "no write of any kind to the resource after a metadata change"
    );
}

/// Waits until the emulator has answered `n` reads of the agent (the operator kept working).
async fn wait_for_reads(env: &Env, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.calls("get_agent").await < n {
        assert!(
            std::time::Instant::now() < deadline,
            "resyncs stopped reading the agent ({} reads, waiting for {n}):\n{}",
            env.calls("get_agent").await,
            env.operator.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_restored() {
    let env = Env::start("drift", Options::default()).await;
    env.apply(SEED);
    env.wait_ready("voice-starter").await;
    assert_eq!(env.calls("update_agent").await, 0);

    env.admin
        .drift(
            crate::support::operator::API_KEY,
            "voice-starter",
            serde_json::json!({"image": "someone/else:latest", "autoScaling": {"minAgents": 0, "maxAgents": 2}}),
        )
        .await
        .expect("drift");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let remote = env.remote("voice-starter").await.unwrap();
        if remote["deployment"]["manifest"]["spec"]["image"] == "your-dockername/voice-starter:0.1"
            && remote["autoScaling"]["maxReplicas"] == 10
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drift not restored: {remote}\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        env.calls("update_agent").await,
        1,
        "one update restores the spec"
    );
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=voice-starter",
        "-o",
        "jsonpath={.items[*].note}{.items[*].message}",
    ]);
    let text = String::from_utf8_lossy(&events.stdout);
    assert!(
        text.contains("changed outside Kubernetes"),
        "events: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_policy_delete_and_orphan() {
    let env = Env::start("delete", Options::default()).await;
    env.apply(SEED);
    env.apply(
        &SEED
            .replace("name: voice-starter", "name: keep-me")
            .replace(
                "enableKrisp: false",
                "enableKrisp: false\n  deletionPolicy: Orphan",
            ),
    );
    env.wait_ready("voice-starter").await;
    env.wait_ready("keep-me").await;
    let a = env.agents().get("voice-starter").await.unwrap();
    assert!(
        a.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "pipecat.daily.co/cleanup")
    );

    let out = env.kubectl(&[
        "delete",
        "pipecatagent",
        "voice-starter",
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::controlplane::describe_output(&out)
    );
    env.wait_gone("voice-starter", Duration::from_secs(5)).await;
    assert!(
        env.remote("voice-starter").await.is_none(),
        "Delete removes the remote agent"
    );
    assert_eq!(env.calls("delete_agent").await, 1);

    let out = env.kubectl(&[
        "delete",
        "pipecatagent",
        "keep-me",
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::controlplane::describe_output(&out)
    );
    env.wait_gone("keep-me", Duration::from_secs(5)).await;
    assert!(
        env.remote("keep-me").await.is_some(),
        "Orphan leaves the remote agent"
    );
    assert_eq!(env.calls("delete_agent").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_ready() {
    let opts = Options {
        emulator: emulator::Config {
            ready_delay: Duration::from_millis(1500),
            reconcile_delay: Duration::from_millis(1500),
            ..Default::default()
        },
        ..Options::default()
    };
    let env = Env::start("wait", opts).await;
    env.apply(SEED);
    let started = std::time::Instant::now();
    let out = env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pipecatagent/voice-starter",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::controlplane::describe_output(&out)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "kubectl wait returned before the deployment could have been ready"
    );
    let remote = env.remote("voice-starter").await.unwrap();
    assert_eq!(remote["ready"], true);
    assert_eq!(
        remote["reconciledDeploymentId"],
        remote["desiredDeploymentId"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_then_secret_appears() {
    let opts = Options {
        create_secret: false,
        ..Options::default()
    };
    let env = Env::start("creds", opts).await;
    env.apply(SEED);
    let a = env
        .wait_for(
            "voice-starter",
            Duration::from_secs(20),
            "CredentialsNotFound",
            |a| {
                a.condition("Synced")
                    .is_some_and(|c| c.reason == "CredentialsNotFound")
            },
        )
        .await;
    let ready = a.condition("Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "CredentialsNotFound")
    );
    assert!(
        ready
            .message
            .contains("kubectl create secret generic pipecat-api-key"),
        "{}",
        ready.message
    );
    assert_eq!(env.calls("create_agent").await, 0);

    env.create_api_key_secret("pipecat-api-key").await;
    env.wait_ready("voice-starter").await;
    assert_eq!(env.calls("create_agent").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_image_is_reported_with_reason_and_event() {
    let opts = Options {
        emulator: emulator::Config {
            crash_image_pattern: Some("*:crash*".into()),
            ..Default::default()
        },
        ..Options::default()
    };
    let env = Env::start("crash", opts).await;
    env.apply(&seed_with("your-dockername/voice-starter:crashing"));
    let a = env
        .wait_for(
            "voice-starter",
            Duration::from_secs(30),
            "Ready=False CrashLoopBackOff",
            |a| {
                a.condition("Ready")
                    .is_some_and(|c| c.status == "False" && c.reason == "CrashLoopBackOff")
            },
        )
        .await;
    assert!(!a.status.unwrap().ready);
    let describe = env.kubectl(&["describe", "pipecatagent", "voice-starter"]);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(text.contains("CrashLoopBackOff"), "{text}");
    // The event shows up in describe too (events are published in the background).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let describe = env.kubectl(&["describe", "pipecatagent", "voice-starter"]);
        let text = String::from_utf8_lossy(&describe.stdout).into_owned();
        if text.contains("DeploymentFailed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no DeploymentFailed event:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a request has taken `fault` (a delay): it has arrived at the emulator and is
/// held there, not yet carried out.
async fn wait_fault_taken(env: &Env, fault: &ActiveFault, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env
        .admin
        .faults()
        .await
        .unwrap()
        .iter()
        .any(|f| f.id == fault.id && f.remaining == fault.remaining)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never sent:\n{}",
            env.operator.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_create_and_mid_delete() {
    use crate::support::reliability::{check_created_once, journal_of, refused_creates};
    let mut env = Env::start("kill", Options::default()).await;
    // Hold create requests for 10 s (past the 3 s request timeout, and retries too) and kill the
    // operator while the emulator holds one.
    let held = env
        .admin
        .inject_fault(
            Fault::delay("/v1/agents", Duration::from_secs(10))
                .with_method("POST")
                .with_count(100),
        )
        .await
        .unwrap();
    env.apply(SEED);
    wait_fault_taken(&env, &held, "the create").await;
    env.operator.kill();
    // At the kill the create was in flight: nothing answered, no agent yet.
    let creates = env
        .admin
        .journal(&pipecat_cloud_emulator::JournalFilter {
            operation: Some("create_agent".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        creates.iter().all(|e| e.status.is_none()),
        "a create was answered before the kill: {creates:?}"
    );
    assert!(
        env.remote_names().await.is_empty(),
        "the agent existed before the held create was carried out"
    );
    env.admin.clear_faults().await.unwrap();
    env.operator.restart();
    env.wait_ready("voice-starter").await;
    assert_eq!(
        env.remote_names().await,
        vec!["voice-starter".to_string()],
        "no duplicate agent"
    );
    check_created_once(&env, "voice-starter").await.unwrap();
    assert_eq!(refused_creates(&env, None, 0).await.unwrap(), 0);

    // Same for delete: the resource is deleted, the DELETE is held, the operator dies.
    let held = env
        .admin
        .inject_fault(
            Fault::delay("/v1/agents/voice-starter", Duration::from_secs(10))
                .with_method("DELETE")
                .with_count(100),
        )
        .await
        .unwrap();
    let out = env.kubectl(&["delete", "pipecatagent", "voice-starter", "--wait=false"]);
    assert!(out.status.success());
    wait_fault_taken(&env, &held, "the delete").await;
    env.operator.kill();
    // At the kill the remote agent still exists, and so does the resource (its finalizer).
    assert!(
        env.remote("voice-starter").await.is_some(),
        "the remote agent was gone before the held delete was carried out"
    );
    assert!(
        env.agents()
            .get_opt("voice-starter")
            .await
            .unwrap()
            .is_some(),
        "the finalizer was removed before the remote agent was deleted"
    );
    env.admin.clear_faults().await.unwrap();
    env.operator.restart();
    env.wait_gone("voice-starter", Duration::from_secs(30))
        .await;
    assert!(env.remote_names().await.is_empty(), "no agent left behind");
    let deletes = journal_of(&env, "voice-starter", 0).await.unwrap();
    assert!(
        deletes
            .iter()
            .any(|e| e.operation == "delete_agent" && e.status.is_some_and(|s| s / 100 == 2)),
        "the restarted operator deleted the agent: {deletes:?}"
    );
}

// The lifecycle again, against each of the emulator's answer profiles: every field (`full`),
// only the seed page's fields (`seed`), and a server that normalises what it stores
// (`rewriting`). One agent per profile goes through the scenarios in sequence.

/// The agent as the emulator stores it, with every field whatever the answer profile.
async fn stored(env: &Env, name: &str) -> Option<serde_json::Value> {
    env.admin
        .agent(crate::support::operator::API_KEY, name)
        .await
        .expect("stored agent")
}

/// An image as the emulator in `profile` stores it.
fn stored_image(profile: emulator::Profile, image: &str) -> String {
    match profile {
        emulator::Profile::Rewriting => emulator::docker_hub_image(image),
        _ => image.to_string(),
    }
}

/// Waits for `Ready=True` on the current generation, checking at every poll that it never
/// comes before the emulator's newest deployment is rolled out and is the one the status
/// names. Returns the agent and whether a not-yet-ready roll-out was seen on the way.
async fn ready_once_rolled_out(
    env: &Env,
    name: &str,
) -> (pipecat_operator::crd::PipecatAgent, bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut saw_rolling_out = false;
    loop {
        let a = env.agents().get(name).await.unwrap();
        if is_ready(&a) {
            // Read after the resource: the stored agent can only have moved on since.
            let s = stored(env, name).await.expect("agent stored");
            assert_eq!(
                s["reconciledDeploymentId"], s["desiredDeploymentId"],
                "Ready=True before the newest deployment was rolled out: {s}"
            );
            let st = a.status.clone().unwrap();
            assert_eq!(
                st.active_deployment_id.as_deref(),
                s["desiredDeploymentId"].as_str(),
                "Ready=True naming another deployment than the newest"
            );
            assert!(st.ready);
            return (a, saw_rolling_out);
        }
        if let Some(c) = a.condition("Ready")
            && c.observed_generation == a.metadata.generation
            && c.status == "False"
        {
            assert_eq!(c.reason, "Deploying", "{c:?}");
            saw_rolling_out = true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never became ready: {:?}\n{}",
            a.status,
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lifecycle_against(profile: emulator::Profile) {
    let opts = Options {
        emulator: emulator::Config {
            profile,
            ready_delay: Duration::from_millis(300),
            reconcile_delay: Duration::from_millis(2500),
            ..Default::default()
        },
        resync: Duration::from_millis(500),
        ..Options::default()
    };
    let env = Env::start(&format!("life-{}", profile.as_str()), opts).await;
    let v1 = "your-dockername/voice-starter:0.1";
    let v2 = "your-dockername/voice-starter:0.2";

    // The seed example: created once, Ready only once its deployment rolled out.
    env.apply(SEED);
    let (agent, saw_rolling_out) = ready_once_rolled_out(&env, "voice-starter").await;
    assert!(
        saw_rolling_out,
        "the create's roll-out (2.5 s) was never seen"
    );
    assert_eq!(env.calls("create_agent").await, 1);
    assert_eq!(
        env.calls("update_agent").await,
        0,
        "no update after the create"
    );
    let s = stored(&env, "voice-starter").await.unwrap();
    let spec = &s["deployment"]["manifest"]["spec"];
    assert_eq!(spec["image"], stored_image(profile, v1).as_str());
    assert_eq!(spec["envFromSecretNames"][0], "voice-starter-secrets");
    assert_eq!(spec["imagePullSecretName"], "dockerhub-credentials");
    assert_eq!(s["autoScaling"]["minReplicas"], 1);
    assert_eq!(s["autoScaling"]["maxReplicas"], 10);
    let synced = agent.condition("Synced").unwrap();
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("True", "UpToDate")
    );

    // An image change: one update, Ready only once the new deployment rolled out.
    let before = s["desiredDeploymentId"].clone();
    env.apply(&seed_with(v2));
    let (_, saw_rolling_out) = ready_once_rolled_out(&env, "voice-starter").await;
    assert!(
        saw_rolling_out,
        "the update's roll-out (2.5 s) was never seen"
    );
    assert_eq!(
        env.calls("update_agent").await,
        1,
        "exactly one update call"
    );
    let s = stored(&env, "voice-starter").await.unwrap();
    assert_ne!(s["desiredDeploymentId"], before);
    assert_eq!(
        s["deployment"]["manifest"]["spec"]["image"],
        stored_image(profile, v2).as_str()
    );

    // Steady state: re-applying the same spec costs no update and no write. The pass after
    // Ready finishes before the second read after it.
    wait_for_reads(&env, env.calls("get_agent").await + 2).await;
    let baseline = env.agents().get("voice-starter").await.unwrap();
    let writes = env.operator.status_writes(&env.ns, "voice-starter");
    let gets = env.calls("get_agent").await;
    env.apply(&seed_with(v2));
    // Every write a resync could make lands before the next resync's read.
    wait_for_reads(&env, gets + 6).await;
    let after = env.agents().get("voice-starter").await.unwrap();
    assert_eq!(
        env.calls("update_agent").await,
        1,
        "no update at steady state"
    );
    // Counted as sent: a status write that changes nothing keeps the resourceVersion.
    assert_eq!(
        env.operator.status_writes(&env.ns, "voice-starter"),
        writes,
        "no status write at steady state"
    );
    assert_eq!(
        after.metadata.resource_version, baseline.metadata.resource_version,
        "no write of any kind to the resource at steady state"
    );

    // Drift: one update restores the spec, with an event, and Ready comes back.
    env.admin
        .drift(
            crate::support::operator::API_KEY,
            "voice-starter",
            serde_json::json!({"image": "someone/else:latest", "autoScaling": {"minAgents": 0, "maxAgents": 2}}),
        )
        .await
        .expect("drift");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = stored(&env, "voice-starter").await.unwrap();
        if s["deployment"]["manifest"]["spec"]["image"] == stored_image(profile, v2).as_str()
            && s["autoScaling"]["maxReplicas"] == 10
            && s["autoScaling"]["minReplicas"] == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drift not restored: {s}\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The drift leaves the generation alone: wait for the status to name the restoring
    // deployment before judging readiness.
    let restoring = stored(&env, "voice-starter").await.unwrap()["desiredDeploymentId"].clone();
    env.wait_for(
        "voice-starter",
        Duration::from_secs(20),
        "the status naming the restoring deployment",
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.active_deployment_id.as_deref())
                == restoring.as_str()
        },
    )
    .await;
    ready_once_rolled_out(&env, "voice-starter").await;
    assert_eq!(
        env.calls("update_agent").await,
        2,
        "one update restores the spec"
    );
    // One Updated event per update (counting a series' repetitions too, should an event ever
    // be folded into one).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = env.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=voice-starter,reason=Updated",
            "-o",
            "jsonpath={range .items[*]}{.count} {.series.count}{\"\\n\"}{end}",
        ]);
        let text = String::from_utf8_lossy(&events.stdout).into_owned();
        let updated: u64 = text
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|c| c.parse::<u64>().ok())
                    .fold(1, u64::max)
            })
            .sum();
        if updated == 2 {
            break;
        }
        assert!(
            updated < 2 && std::time::Instant::now() < deadline,
            "Updated events: {updated} ({text:?}), want one per update"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Delete: the remote agent goes, then the resource.
    let out = env.kubectl(&[
        "delete",
        "pipecatagent",
        "voice-starter",
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::controlplane::describe_output(&out)
    );
    env.wait_gone("voice-starter", Duration::from_secs(5)).await;
    assert!(
        stored(&env, "voice-starter").await.is_none(),
        "Delete removes the remote agent"
    );
    assert_eq!(env.calls("delete_agent").await, 1);
    assert_eq!(
        env.calls("update_agent").await,
        2,
        "no update after the drift was restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_against_the_full_profile() {
    lifecycle_against(emulator::Profile::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_against_the_seed_profile() {
    lifecycle_against(emulator::Profile::Seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_against_the_rewriting_profile() {
    lifecycle_against(emulator::Profile::Rewriting).await;
}
