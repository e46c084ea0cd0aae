//! The migration from `pcc deploy`, end to end: `pipecat-operator export` prints manifests for
//! the agents of an account, `kubectl apply` of that output makes them managed, and the
//! operator adopts each one without sending a single update (they already are what the
//! manifests say). The key never appears in the output.

use std::process::Command;
use std::time::{Duration, Instant};

use pipecat_cloud_emulator::JournalFilter;

use crate::support::operator::{API_KEY, Env, Options};

/// Reads of `agent` the emulator answered (the journal's `GET /agents/{agent}`).
async fn answered_reads(env: &Env, agent: &str) -> usize {
    env.admin
        .journal(&JournalFilter {
            operation: Some("get_agent".into()),
            agent: Some(agent.into()),
            ..JournalFilter::default()
        })
        .await
        .expect("journal")
        .iter()
        .filter(|e| e.status.is_some())
        .count()
}

/// Creates an agent in the emulator the way `pcc deploy` would (same account).
async fn deploy_outside_kubernetes(env: &Env, body: serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/agents", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .expect("emulator answers");
    assert!(resp.status().is_success(), "seeding: {}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_apply_adopts_every_agent_without_an_update() {
    let env = Env::start("export", Options::default()).await;
    deploy_outside_kubernetes(
        &env,
        serde_json::json!({
            "serviceName": "bot-one",
            "image": "acme/bot:1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 5},
            "agentProfile": "agent-2x",
            "krispViva": {"audioFilter": "tel"}
        }),
    )
    .await;
    deploy_outside_kubernetes(
        &env,
        serde_json::json!({
            "serviceName": "bot-two",
            "image": "acme/other:3",
            "imagePullSecretSet": "dockerhub-credentials",
            "maxSessionDuration": 600
        }),
    )
    .await;

    let out = Command::new(env!("CARGO_BIN_EXE_pipecat-operator"))
        .args([
            "export",
            "--api-url",
            &env.emulator.base_url(),
            "--namespace",
            &env.ns,
        ])
        .env("PIPECAT_API_KEY", API_KEY)
        .output()
        .expect("run export");
    let manifests = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "export failed: {log}");
    assert!(log.contains("exported 2 agent(s)"), "{log}");
    assert!(
        !manifests.contains(API_KEY) && !log.contains(API_KEY),
        "the key leaked into the export"
    );
    assert_eq!(manifests.matches("adopt: true").count(), 2, "{manifests}");

    env.admin
        .reset(Default::default())
        .await
        .expect("journal reset");
    env.apply(&manifests);
    for name in ["bot-one", "bot-two"] {
        let a = env.wait_ready(name).await;
        let st = a.status.clone().unwrap();
        assert!(st.adopted, "{name} adopted: {st:?}");
        assert_eq!(
            a.condition("Synced").map(|c| c.reason.clone()).as_deref(),
            Some("UpToDate")
        );
    }
    // An adoption whose recorded fingerprint reads as drift would update at the next pass:
    // count only once two more reads of each agent were answered (the pass of the first one
    // has ended by the second).
    for name in ["bot-one", "bot-two"] {
        let seen = answered_reads(&env, name).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered_reads(&env, name).await < seen + 2 {
            assert!(
                Instant::now() < deadline,
                "resyncs stopped reading {name}:\n{}",
                env.operator.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(env.calls("update_agent").await, 0, "adopted as they are");
    assert_eq!(env.calls("create_agent").await, 0);
    assert_eq!(env.calls("delete_agent").await, 0);
    let one = env.remote("bot-one").await.unwrap();
    assert_eq!(one["agentProfile"], "agent-2x");
    assert_eq!(one["autoScaling"]["minReplicas"], 1);
}
