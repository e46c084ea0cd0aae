//! PipecatSecretSet end to end: the operator binary on the real control plane keeps Pipecat
//! Cloud secret sets (the emulator's) equal to Kubernetes Secrets. Counts come from the
//! emulator's journal, never from timings.

use std::time::{Duration, Instant};

use kube::Api;
use pipecat_cloud_emulator::{self as emulator, Fault, FaultBody};
use pipecat_operator::crd::secret_set::PipecatSecretSet;
use serde_json::Value;

use crate::support::operator::{API_KEY, Env, Options};

const TIMEOUT: Duration = Duration::from_secs(60);

fn options() -> Options {
    Options {
        // Pending long enough to be seen (and to catch a PUT resent while pending).
        emulator: emulator::Config {
            secret_ready_delay: Duration::from_millis(600),
            secret_fail_pattern: Some("failing-*".into()),
            ..Default::default()
        },
        create_secret_sets: false,
        ..Options::default()
    }
}

fn sets(env: &Env) -> Api<PipecatSecretSet> {
    Api::namespaced(env.cp.client(), &env.ns)
}

/// Polls the resource until `pred` holds; panics after [`TIMEOUT`] with the last state and
/// the operator's log tail.
async fn wait_set(
    env: &Env,
    name: &str,
    what: &str,
    pred: impl Fn(&PipecatSecretSet) -> bool,
) -> PipecatSecretSet {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = None;
    loop {
        if let Ok(Some(s)) = sets(env).get_opt(name).await {
            if pred(&s) {
                return s;
            }
            last = Some(s);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on {name}; last seen: {}\noperator log tail:\n{}",
            serde_json::to_string(&last.map(|s| s.status)).unwrap_or_default(),
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cond<'a>(
    s: &'a PipecatSecretSet,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.condition(t)
}

/// Ready=True for the current generation, with the latest revision ready.
fn is_ready(s: &PipecatSecretSet) -> bool {
    let st = s.status.as_ref();
    cond(s, "Ready")
        .is_some_and(|c| c.status == "True" && c.observed_generation == s.metadata.generation)
        && st.is_some_and(|st| st.revision.is_some() && st.ready_revision == st.revision)
}

async fn wait_gone(env: &Env, name: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while sets(env).get_opt(name).await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "{name} still exists\noperator log tail:\n{}",
            env.operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The set as the emulator reports it (`None` when it does not exist).
async fn remote(env: &Env, set: &str) -> Option<Value> {
    let resp = reqwest::Client::new()
        .get(format!("{}/secrets/{set}", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("emulator answers");
    match resp.status().as_u16() {
        404 => None,
        200 => Some(resp.json().await.expect("set JSON")),
        s => panic!("emulator GET /secrets/{set}: HTTP {s}"),
    }
}

fn remote_keys(set: &Value) -> Vec<String> {
    set["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["fieldName"].as_str().unwrap().to_string())
        .collect()
}

fn opaque(name: &str, data: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData:\n"
    );
    for (k, v) in data {
        yaml.push_str(&format!("  {k}: {v:?}\n"));
    }
    yaml
}

fn secret_set(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {{name: {name}}}\nspec:\n  secretRef: {{name: {name}-values}}\n{extra}"
    )
}

/// Status writes the operator logged so far.
fn status_writes(env: &Env) -> usize {
    env.operator
        .log()
        .matches("secret set status written")
        .count()
}

/// Waits until the emulator has served `n` more `GET /secrets/{set}` (resync passes).
async fn resyncs(env: &Env, n: u64) {
    let start = env.calls("get_secret_set").await;
    let deadline = Instant::now() + TIMEOUT;
    while env.calls("get_secret_set").await < start + n {
        assert!(
            Instant::now() < deadline,
            "the operator stopped reading the set"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_set_follows_its_secret_with_one_put_per_change() {
    let env = Env::start("pcss-env", options()).await;
    env.apply(&opaque(
        "agent-keys-values",
        &[("OPENAI_API_KEY", "sk-one"), ("DEEPGRAM_API_KEY", "dg-one")],
    ));
    env.apply(&secret_set("agent-keys", ""));
    let s = wait_set(&env, "agent-keys", "Ready", is_ready).await;
    let st = s.status.clone().unwrap();
    assert_eq!(st.set_name.as_deref(), Some("agent-keys"));
    assert_eq!(st.region.as_deref(), Some("us-west"));
    assert_eq!(st.remote_status.as_deref(), Some("ready"));
    assert_eq!(st.keys, ["DEEPGRAM_API_KEY", "OPENAI_API_KEY"]);
    assert_eq!((st.revision, st.ready_revision), (Some(1), Some(1)));
    assert_eq!(cond(&s, "Synced").unwrap().status, "True");
    let digest = st.values_digest.clone().expect("a digest");
    assert_eq!(digest.len(), 64);
    let r = remote(&env, "agent-keys")
        .await
        .expect("the set exists remotely");
    assert_eq!(r["type"], "secret");
    assert_eq!(remote_keys(&r), ["DEEPGRAM_API_KEY", "OPENAI_API_KEY"]);
    assert_eq!(env.calls("put_secret_set").await, 1);
    assert!(
        s.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "pipecat.daily.co/secret-set-cleanup")),
        "the cleanup finalizer is set"
    );

    // Steady state: several resyncs, no PUT, no write to the resource (counted from the
    // operator's log: a write of an unchanged status would not change the resourceVersion).
    let version = s.metadata.resource_version.clone();
    let writes = status_writes(&env);
    resyncs(&env, 4).await;
    assert_eq!(
        status_writes(&env),
        writes,
        "no status write in steady state"
    );
    assert_eq!(
        env.calls("put_secret_set").await,
        1,
        "no PUT in steady state"
    );
    assert_eq!(env.calls("delete_secret").await, 0);
    // The metrics tell the same story: one set, ready; created once, then unchanged resyncs.
    let op = &env.operator;
    assert_eq!(
        op.metric("pipecat_operator_secret_sets{ready=\"true\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        op.metric("pipecat_operator_secret_sets{ready=\"false\"}")
            .await
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        op.metric("pipecat_operator_secret_set_reconciles_total{result=\"created\"}")
            .await,
        Some(1.0)
    );
    assert!(
        op.metric("pipecat_operator_secret_set_reconciles_total{result=\"unchanged\"}")
            .await
            .is_some_and(|n| n >= 3.0),
        "resyncs counted as unchanged (the 4th may still be under way)"
    );
    assert_eq!(
        op.metric_sum("pipecat_operator_secret_set_reconciles_total{result=\"updated\"}")
            .await,
        0.0
    );
    let after = sets(&env).get("agent-keys").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, version,
        "no status write in steady state"
    );

    // A rotated value: exactly one PUT, revision 2, readyRevision follows once ready.
    env.apply(&opaque(
        "agent-keys-values",
        &[("OPENAI_API_KEY", "sk-two"), ("DEEPGRAM_API_KEY", "dg-one")],
    ));
    let s = wait_set(&env, "agent-keys", "revision 2 ready", |s| {
        is_ready(s) && s.status.as_ref().unwrap().revision == Some(2)
    })
    .await;
    assert_ne!(
        s.status.as_ref().unwrap().values_digest.as_ref(),
        Some(&digest)
    );
    assert_eq!(env.calls("put_secret_set").await, 2, "one PUT per change");
    // Never resent while pending: every PUT was accepted (no 409 answered to a PUT).
    let journal = env
        .admin
        .journal(&emulator::JournalFilter {
            operation: Some("put_secret_set".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        journal
            .iter()
            .all(|e| e.status == Some(202) || e.status == Some(200)),
        "{journal:?}"
    );

    // A key removed from the Secret is removed remotely; the revision counts it.
    env.kubectl(&[
        "patch",
        "secret",
        "agent-keys-values",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/DEEPGRAM_API_KEY"}]"#,
    ]);
    let s = wait_set(&env, "agent-keys", "the key removed", |s| {
        is_ready(s) && s.status.as_ref().unwrap().keys == ["OPENAI_API_KEY"]
    })
    .await;
    assert_eq!(s.status.as_ref().unwrap().revision, Some(3));
    assert_eq!(env.calls("delete_secret").await, 1);
    assert_eq!(
        remote_keys(&remote(&env, "agent-keys").await.unwrap()),
        ["OPENAI_API_KEY"]
    );

    // No value anywhere in the resource or the operator's log.
    let yaml = String::from_utf8(
        env.kubectl(&["get", "pcss", "agent-keys", "-o", "yaml"])
            .stdout,
    )
    .unwrap();
    let log = env.operator.log();
    for value in ["sk-one", "sk-two", "dg-one"] {
        assert!(!yaml.contains(value), "{value} in the resource:\n{yaml}");
        assert!(!log.contains(value), "{value} in the operator log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerconfigjson_secret_becomes_an_image_pull_set() {
    let env = Env::start("pcss-pull", options()).await;
    let out = env.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "registry-values",
        "--docker-server=ghcr.io",
        "--docker-username=bot",
        "--docker-password=gh-TOKEN-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.apply(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {name: registry}\nspec:\n  type: ImagePull\n  secretRef: {name: registry-values}\n",
    );
    let s = wait_set(&env, "registry", "Ready", is_ready).await;
    assert_eq!(s.status.as_ref().unwrap().revision, Some(1));
    let r = remote(&env, "registry")
        .await
        .expect("the set exists remotely");
    assert_eq!(r["type"], "imagePullSecret");
    assert_eq!(
        r["host"], "https://ghcr.io",
        "the contract types host as a URI"
    );
    assert_eq!(env.calls("put_secret_set").await, 1);

    // A restarted operator reads the same digest key: the values are not sent again.
    let mut env = env;
    env.operator.restart();
    resyncs(&env, 3).await;
    assert_eq!(
        env.calls("put_secret_set").await,
        1,
        "no PUT after a restart"
    );
    let s = sets(&env).get("registry").await.unwrap();
    assert_eq!(s.status.as_ref().unwrap().revision, Some(1));

    // The apiserver refuses what cannot work, saying what to change.
    let err = env.apply_err(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {name: bad-pull}\nspec:\n  type: ImagePull\n  secretRef: {name: registry-values}\n  keys: [{key: A}]\n",
    );
    assert!(err.contains("spec.keys applies to env sets only"), "{err}");
    let err = env.apply_err(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {name: registry}\nspec:\n  type: Env\n  secretRef: {name: registry-values}\n",
    );
    assert!(err.contains("spec.type is immutable"), "{err}");

    // An Opaque Secret for an image-pull set says what to do, and sends nothing.
    env.apply(&opaque("plain-values", &[("A", "b")]));
    env.apply(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {name: wrong-type}\nspec:\n  type: ImagePull\n  secretRef: {name: plain-values}\n",
    );
    let s = wait_set(&env, "wrong-type", "SecretTypeMismatch", |s| {
        cond(s, "Ready").is_some_and(|c| c.status == "False" && c.reason == "SecretTypeMismatch")
    })
    .await;
    assert!(
        cond(&s, "Ready")
            .unwrap()
            .message
            .contains("docker-registry")
    );
    assert!(remote(&env, "wrong-type").await.is_none());
    assert!(!env.operator.log().contains("gh-TOKEN-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_provisioning_is_reported_with_pipecats_error() {
    // In the seed profile `GET /secrets/{set}` lists field names only, as the CLI reads it:
    // the state and the error come from `GET /secrets`.
    let mut opts = options();
    opts.emulator.profile = emulator::Profile::Seed;
    let env = Env::start("pcss-fail", opts).await;
    env.apply(&opaque("failing-set-values", &[("A", "value-a")]));
    env.apply(&secret_set("failing-set", ""));
    let s = wait_set(&env, "failing-set", "ProvisioningFailed", |s| {
        cond(s, "Ready").is_some_and(|c| c.reason == "ProvisioningFailed")
    })
    .await;
    let st = s.status.clone().unwrap();
    let error = st.error_message.clone().expect("errorMessage");
    assert!(error.contains("emulated failure"), "{error}");
    assert_eq!(st.remote_status.as_deref(), Some("failed"));
    assert_eq!(st.ready_revision, None);
    let ready = cond(&s, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(&error), "{}", ready.message);
    // The same values are not sent again while they fail.
    resyncs(&env, 3).await;
    assert_eq!(env.calls("put_secret_set").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_set_is_adopted_only_with_the_opt_in() {
    let env = Env::start("pcss-adopt", options()).await;
    env.admin
        .create_secret_set(API_KEY, "shared-keys", &[("OLD_KEY", "old")])
        .await
        .unwrap();
    env.admin.reset(Default::default()).await.unwrap();
    env.apply(&opaque("shared-keys-values", &[("NEW_KEY", "new")]));
    env.apply(&secret_set("shared-keys", ""));
    let s = wait_set(&env, "shared-keys", "SetExists", |s| {
        cond(s, "Synced").is_some_and(|c| c.status == "False" && c.reason == "SetExists")
    })
    .await;
    assert!(
        cond(&s, "Synced")
            .unwrap()
            .message
            .contains("spec.adopt: true")
    );
    resyncs(&env, 2).await;
    assert_eq!(
        env.calls("put_secret_set").await,
        0,
        "untouched without adopt"
    );
    assert_eq!(
        remote_keys(&remote(&env, "shared-keys").await.unwrap()),
        ["OLD_KEY"]
    );
    assert!(s.status.as_ref().unwrap().set_name.is_none());

    // With the opt-in: the Secret's values replace the set's.
    env.apply(&secret_set("shared-keys", "  adopt: true\n"));
    let s = wait_set(&env, "shared-keys", "adopted and Ready", is_ready).await;
    assert_eq!(s.status.as_ref().unwrap().revision, Some(1));
    assert_eq!(env.calls("put_secret_set").await, 1);
    assert_eq!(
        remote_keys(&remote(&env, "shared-keys").await.unwrap()),
        ["NEW_KEY"]
    );
    assert_eq!(env.calls("delete_secret").await, 1, "OLD_KEY removed");
}

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: bot}
spec:
  image: acme/bot:1
  secretSet: held-keys
  autoScaling: {minAgents: 0, maxAgents: 1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_for_the_agents_then_deletes_or_orphans() {
    let env = Env::start("pcss-delete", options()).await;
    env.apply(&opaque("held-keys-values", &[("A", "value-a")]));
    env.apply(&opaque("kept-keys-values", &[("B", "value-b")]));
    env.apply(&secret_set("held-keys", ""));
    env.apply(&secret_set("kept-keys", "  deletionPolicy: Orphan\n"));
    wait_set(&env, "held-keys", "Ready", is_ready).await;
    wait_set(&env, "kept-keys", "Ready", is_ready).await;
    env.apply(AGENT);
    env.wait_ready("bot").await;

    // Held while the agent uses it.
    let out = env.kubectl(&["delete", "pcss", "held-keys", "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = wait_set(&env, "held-keys", "InUse", |s| {
        cond(s, "Synced").is_some_and(|c| c.reason == "InUse")
    })
    .await;
    let message = &cond(&s, "Synced").unwrap().message;
    assert!(message.contains(&format!("{}/bot", env.ns)), "{message}");
    resyncs(&env, 2).await;
    assert!(
        remote(&env, "held-keys").await.is_some(),
        "the set stays while used"
    );
    assert_eq!(env.calls("delete_secret_set").await, 0);
    let events = String::from_utf8(
        env.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=DeletionBlocked",
            "-o",
            "jsonpath={.items[*].note}{.items[*].message}",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        events.contains("bot"),
        "a DeletionBlocked event names the agent: {events:?}"
    );

    // The agent goes: the set is deleted remotely, then the resource.
    let out = env.kubectl(&["delete", "pipecatagent", "bot", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_gone(&env, "held-keys").await;
    assert!(
        remote(&env, "held-keys").await.is_none(),
        "Delete deletes the remote set"
    );
    assert_eq!(env.calls("delete_secret_set").await, 1);

    // Orphan: the resource goes, the set stays.
    let out = env.kubectl(&["delete", "pcss", "kept-keys", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_gone(&env, "kept-keys").await;
    assert!(
        remote(&env, "kept-keys").await.is_some(),
        "Orphan leaves the remote set"
    );
    assert_eq!(env.calls("delete_secret_set").await, 1);

    // The metrics: the held deletion, one deleted, one orphaned; no set counted once both
    // are gone (the watch's deletion reaches the operator just after `wait_gone`).
    let op = &env.operator;
    let result =
        |r: &str| format!("pipecat_operator_secret_set_reconciles_total{{result=\"{r}\"}}");
    assert!(op.metric(&result("held")).await.is_some_and(|n| n >= 1.0));
    assert_eq!(op.metric(&result("deleted")).await, Some(1.0));
    assert_eq!(op.metric(&result("orphaned")).await, Some(1.0));
    let deadline = Instant::now() + TIMEOUT;
    while op.metric_sum("pipecat_operator_secret_sets").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "deleted sets still counted in pipecat_operator_secret_sets"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_deletes_the_set_with_the_key_kept_until_then() {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    // The credentials Secret (the default one, in this namespace) goes with the namespace, and
    // no agent holds it: the sets' in-use finalizer keeps the key until the set is deleted.
    let env = Env::start("pcss-ns", options()).await;
    env.apply(&opaque("ns-keys-values", &[("A", "value-a")]));
    env.apply(&secret_set("ns-keys", ""));
    wait_set(&env, "ns-keys", "Ready", is_ready).await;
    let secrets: Api<Secret> = Api::namespaced(env.cp.client(), &env.ns);
    let key = secrets.get("pipecat-api-key").await.unwrap();
    assert!(
        key.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "pipecat.daily.co/secret-set-credentials-in-use"),
        "the sets' in-use finalizer is on the credentials Secret"
    );

    // Pipecat Cloud refuses the first deletes for a few seconds: long enough for the Secret's
    // own deletion to be seen before the set's cleanup succeeds.
    let refuse = emulator::Fault::new("/v1/secrets/ns-keys")
        .with_method("DELETE")
        .with_count(6);
    env.admin.inject_fault(refuse).await.unwrap();
    let out = env.kubectl(&["delete", "namespace", &env.ns, "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let namespaces: Api<Namespace> = Api::all(env.cp.client());
    let deadline = Instant::now() + Duration::from_secs(90);
    while namespaces.get_opt(&env.ns).await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "namespace {} still exists\noperator log tail:\n{}",
            env.ns,
            env.operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        remote(&env, "ns-keys").await.is_none(),
        "the set was deleted"
    );
}

/// A listing that never shows the Secret's keys (here: the keys under another name than the
/// contract's `secrets[].fieldName`): the values are sent once more, then the set says
/// `NotConverging` with what differs and nothing more is sent; an agent using it waits and
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_whose_listing_never_matches_gets_one_more_put_then_not_converging() {
    let env = Env::start("pcss-nc", options()).await;
    env.apply(&opaque("odd-keys-values", &[("A", "a1"), ("B", "b1")]));
    env.apply(&secret_set("odd-keys", ""));
    wait_set(&env, "odd-keys", "Ready", is_ready).await;
    assert_eq!(env.calls("put_secret_set").await, 1);
    let odd = serde_json::json!({"region": "us-west", "status": "ready", "fieldNames": ["A", "B"]});
    env.admin
        .inject_fault(
            Fault::body("/v1/secrets/odd-keys", FaultBody::Custom(odd.to_string()))
                .with_method("GET")
                .with_status(200)
                .with_count(100_000),
        )
        .await
        .expect("fault");
    let s = wait_set(&env, "odd-keys", "Synced=False NotConverging", |s| {
        cond(s, "Synced").is_some_and(|c| c.status == "False" && c.reason == "NotConverging")
    })
    .await;
    let message = &cond(&s, "Synced").unwrap().message;
    assert!(message.contains("without A, B"), "{message}");
    assert_eq!(cond(&s, "Ready").unwrap().status, "False");
    resyncs(&env, 4).await;
    assert_eq!(
        env.calls("put_secret_set").await,
        2,
        "one more PUT, then none\n{}",
        env.operator.log_tail(20)
    );
    // An agent using the set waits for it, and says why.
    env.apply(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {name: odd-agent}\nspec:\n  image: acme/bot:1\n  secretSet: odd-keys\n",
    );
    let a = env
        .wait_for(
            "odd-agent",
            TIMEOUT,
            "Synced=False SecretSetNotReady",
            |a| {
                a.condition("Synced")
                    .is_some_and(|c| c.status == "False" && c.reason == "SecretSetNotReady")
            },
        )
        .await;
    let message = &a.condition("Synced").unwrap().message;
    assert!(
        message.contains("odd-keys") && message.contains("NotConverging"),
        "{message}"
    );
    assert_eq!(env.calls("create_agent").await, 0);
    // A change to the Secret sends the values again.
    env.apply(&opaque("odd-keys-values", &[("A", "a2"), ("B", "b1")]));
    let deadline = Instant::now() + TIMEOUT;
    while env.calls("put_secret_set").await < 3 {
        assert!(Instant::now() < deadline, "the new values were never sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
