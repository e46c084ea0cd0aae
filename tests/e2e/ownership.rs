//! Who owns a remote agent, end to end with the operator binary on the real control plane.
//!
//! - An agent that already exists in Pipecat Cloud and that no resource created is never
//!   touched or deleted unless the resource opts in with `spec.adopt`; with the opt-in it is
//!   updated once and managed from then on.
//! - Two resources naming the same remote agent with the same account: the older keeps it, the
//!   newer reports `NameConflict` without touching it (no flapping, no deletion), and takes
//!   over when the older goes away.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use pipecat_operator::crd::PipecatAgent;

use crate::support::controlplane::{ControlPlane, describe_output, kubectl_stdin};
use crate::support::operator::{API_KEY, Env, Options, is_ready};

// ---------------------------------------------------------------------------------------------
// An agent that exists already: adopted only with the opt-in

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
        is_ready(a) && a.metadata.generation == Some(2)
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

// ---------------------------------------------------------------------------------------------
// Two resources, one remote agent: the older keeps it

/// The second namespace, handled by the same operator.
struct Other {
    cp: &'static ControlPlane,
    ns: String,
}

impl Other {
    fn apply(&self, yaml: &str) {
        let out = kubectl_stdin(
            self.cp.kubeconfig_path(),
            &["apply", "-n", &self.ns, "-f", "-"],
            yaml,
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }

    fn delete(&self, name: &str) {
        let out = self.cp.kubectl(&[
            "delete",
            "pipecatagent",
            name,
            "-n",
            &self.ns,
            "--timeout=30s",
        ]);
        assert!(out.status.success(), "{}", describe_output(&out));
    }

    /// Waits until `pred` holds for the resource (`None`: until it is gone).
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&PipecatAgent) -> bool,
    ) -> Option<PipecatAgent> {
        let api: Api<PipecatAgent> = Api::namespaced(self.cp.client(), &self.ns);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let a = api.get_opt(name).await.unwrap();
            match a {
                Some(a) if pred(&a) => return Some(a),
                None if what == "gone" => return None,
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                api.get_opt(name).await.unwrap().map(|a| a.status)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A resource `name` for the remote agent `shared-bot`.
fn shared_bot(name: &str, image: &str, policy: &str) -> String {
    format!(
        "apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {{name: {name}}}
spec:
  agentName: shared-bot
  image: {image}
  secretSet: voice-starter-secrets
  autoScaling: {{minAgents: 0, maxAgents: 3}}
  deletionPolicy: {policy}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_resource_keeps_the_agent_and_the_newer_takes_over_later() {
    let cp = ControlPlane::get();
    let other_ns = cp.namespace("conflict-b");
    let env = Env::start(
        "conflict-a",
        Options {
            resync: Duration::from_millis(500),
            extra_args: vec!["--namespace".into(), other_ns.clone()],
            ..Options::default()
        },
    )
    .await;
    // The same key in the second namespace (a different Secret with the same account).
    let other = Other {
        cp,
        ns: other_ns.clone(),
    };
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pipecat-api-key"},
        "stringData": {"api-key": API_KEY}
    }))
    .unwrap();
    Api::<Secret>::namespaced(cp.client(), &other_ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    env.apply(&shared_bot("bot", "team-a/bot:1", "Orphan"));
    env.wait_ready("bot").await;
    // Created later (creation timestamps have one-second resolution).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    other.apply(&shared_bot("bot", "team-b/bot:9", "Delete"));
    let newer = other
        .wait_for("bot", "NameConflict", |a| {
            a.condition("Synced")
                .is_some_and(|c| c.reason == "NameConflict")
        })
        .await
        .unwrap();
    let msg = &newer.condition("Synced").unwrap().message;
    assert!(msg.contains(&format!("{}/bot", env.ns)), "{msg}");
    assert_eq!(newer.condition("Ready").unwrap().reason, "NameConflict");

    // Several resyncs later: the agent kept the older spec, and nobody updated it. "Later" is
    // measured in work done, not time: the owner's resyncs read the agent again and again, and
    // the newer resource is reconciled again (each time refused as NameConflict).
    let reads = env.calls("get_agent").await;
    let conflicts = || async {
        env.operator
            .metric("pipecat_operator_reconcile_errors_total{reason=\"NameConflict\"}")
            .await
            .unwrap_or(0.0)
    };
    let refused = conflicts().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.calls("get_agent").await < reads + 4 || conflicts().await < refused + 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not keep working: {} reads of the agent (from {reads}), {} NameConflict reconciles (from {refused})\n{}",
            env.calls("get_agent").await,
            conflicts().await,
            env.operator.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.calls("update_agent").await, 0, "no flapping");
    assert_eq!(env.calls("create_agent").await, 1);
    let remote = env.remote("shared-bot").await.unwrap();
    assert_eq!(
        remote["deployment"]["manifest"]["spec"]["image"],
        "team-a/bot:1"
    );

    // The newer resource manages nothing: it carries no cleanup finalizer, so deleting it
    // (policy Delete) cannot delete the older's agent.
    let newer = other
        .wait_for("bot", "still NameConflict", |a| {
            a.condition("Synced")
                .is_some_and(|c| c.reason == "NameConflict")
        })
        .await
        .unwrap();
    assert!(
        !newer
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "pipecat.daily.co/cleanup"),
        "a claimant that manages nothing has no cleanup finalizer"
    );
    other.delete("bot");
    other.wait_for("bot", "gone", |_| false).await;
    assert!(
        env.remote("shared-bot").await.is_some(),
        "the owner's agent survived"
    );
    assert_eq!(env.calls("delete_agent").await, 0);

    // Again, this time allowed to take the agent over (it was created by the other resource:
    // without spec.adopt it would be left alone); then the older goes away (Orphan): the
    // newer takes over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    other.apply(&format!(
        "{}  adopt: true\n",
        shared_bot("bot", "team-b/bot:9", "Delete")
    ));
    other
        .wait_for("bot", "NameConflict", |a| {
            a.condition("Synced")
                .is_some_and(|c| c.reason == "NameConflict")
        })
        .await;
    let out = env.kubectl(&["delete", "pipecatagent", "bot", "--timeout=30s"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    // No time bound: with the test operator's 3 s backoff cap a retry would take over soon
    // enough anyway, so a figure here could only fail spuriously on a loaded machine (the wait
    // itself gives up after 30 s).
    let took_over = other.wait_for("bot", "Ready", is_ready).await.unwrap();
    assert_eq!(took_over.condition("Synced").unwrap().reason, "UpToDate");
    let remote = env.remote("shared-bot").await.unwrap();
    assert_eq!(
        remote["deployment"]["manifest"]["spec"]["image"],
        "team-b/bot:9"
    );
    assert_eq!(
        env.calls("create_agent").await,
        1,
        "adopted, not re-created"
    );
    assert_eq!(env.calls("update_agent").await, 1);
}
