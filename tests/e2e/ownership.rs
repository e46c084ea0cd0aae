//! Safe ownership, end to end with the operator binary on the real control plane: an agent
//! that already exists in Pipecat Cloud and that no resource created is never touched or
//! deleted unless the resource opts in with `spec.adopt`; with the opt-in it is updated once
//! and managed from then on.

use std::time::Duration;

use crate::support::operator::{API_KEY, Env, Options};

const MANIFEST: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: prod-bot}
spec:
  image: acme/test:1
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 0, maxAgents: 2}
";

/// Creates `prod-bot` in the emulator the way `pcc deploy` would (same account).
async fn deploy_outside_kubernetes(env: &Env) {
    let resp = reqwest::Client::new()
        .post(format!("{}/agents", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({
            "serviceName": "prod-bot",
            "image": "acme/prod:7",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 5}
        }))
        .send()
        .await
        .expect("emulator answers");
    assert!(
        resp.status().is_success(),
        "seeding prod-bot: {}",
        resp.status()
    );
}

async fn remote_image(env: &Env) -> Option<String> {
    env.remote("prod-bot").await.map(|a| {
        a["deployment"]["manifest"]["spec"]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_agent_is_left_untouched_without_the_opt_in() {
    let env = Env::start("own-untouched", Options::default()).await;
    deploy_outside_kubernetes(&env).await;
    env.admin
        .reset(Default::default())
        .await
        .expect("journal reset");

    env.apply(MANIFEST);
    let a = env
        .wait_for("prod-bot", Duration::from_secs(30), "AgentExists", |a| {
            a.condition("Synced")
                .is_some_and(|c| c.status == "False" && c.reason == "AgentExists")
        })
        .await;
    let message = &a.condition("Synced").unwrap().message;
    assert!(message.contains("spec.adopt: true"), "{message}");
    assert!(
        !a.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "pipecat.daily.co/cleanup"),
        "no finalizer on a resource that manages nothing"
    );
    // Several resyncs later: still untouched.
    let reads = env.calls("get_agent").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.calls("get_agent").await < reads + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator stopped reading"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.calls("update_agent").await, 0);
    assert_eq!(env.calls("create_agent").await, 0);
    assert_eq!(remote_image(&env).await.as_deref(), Some("acme/prod:7"));

    // Deleting the resource leaves the agent.
    let out = env.kubectl(&["delete", "pipecatagent", "prod-bot", "--timeout=30s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_gone("prod-bot", Duration::from_secs(30)).await;
    assert_eq!(env.calls("delete_agent").await, 0);
    assert_eq!(remote_image(&env).await.as_deref(), Some("acme/prod:7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_opt_in_the_agent_is_adopted_with_one_update_then_managed() {
    let env = Env::start("own-adopt", Options::default()).await;
    deploy_outside_kubernetes(&env).await;
    env.admin
        .reset(Default::default())
        .await
        .expect("journal reset");

    env.apply(&format!("{MANIFEST}  adopt: true\n"));
    let a = env.wait_ready("prod-bot").await;
    let st = a.status.as_ref().unwrap();
    assert!(st.adopted, "the status records the adoption: {st:?}");
    assert_eq!(env.calls("update_agent").await, 1);
    assert_eq!(env.calls("create_agent").await, 0);
    assert_eq!(remote_image(&env).await.as_deref(), Some("acme/test:1"));
    let remote = env.remote("prod-bot").await.unwrap();
    assert_eq!(remote["autoScaling"]["minReplicas"], 0);
    assert_eq!(remote["autoScaling"]["maxReplicas"], 2);

    // Managed from then on: a spec change is one more update; deletion deletes it.
    env.apply(&format!(
        "{}  adopt: true\n",
        MANIFEST.replace("acme/test:1", "acme/test:2")
    ));
    env.wait_for("prod-bot", Duration::from_secs(60), "image 2 ready", |a| {
        crate::support::operator::is_ready(a) && a.metadata.generation == Some(2)
    })
    .await;
    assert_eq!(env.calls("update_agent").await, 2);
    let out = env.kubectl(&["delete", "pipecatagent", "prod-bot", "--timeout=30s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_gone("prod-bot", Duration::from_secs(30)).await;
    assert!(env.remote("prod-bot").await.is_none());
    assert_eq!(env.calls("delete_agent").await, 1);
}
