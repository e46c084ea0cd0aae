//! End-to-end: agents and the PipecatSecretSets their secret sets come from, on the real
//! control plane with the operator binary and the emulator. Four agents, two sets: `bot-env`
//! (an env set from an Opaque Secret) used by `rot-a` and `rot-b`, `bot-registry` (an
//! image-pull set from a dockerconfigjson Secret) used by `rot-b`, by `rot-c`, which opts
//! out of rotations (`secretRotation: Ignore`), and by `rot-d`, which opts in to image-pull
//! redeploys (`secretRotation: RedeployIncludingImagePull`).
//!
//! - Agents applied together with their sets wait while the sets provision (`Synced=False`,
//!   reason `SecretSetNotReady`, no create call, no 409 from binding a pending set), then
//!   become Ready.
//! - At steady state: no secret set write and no agent update over several resyncs.
//! - A rotated env value: one PUT of the set, then exactly one forced redeploy per agent using
//!   it (counted in the emulator's journal). A rotated image-pull value: one PUT, and no
//!   forced redeploy by default; one for the agent that opted in.
//! - The operator killed right after a forced redeploy was carried out (its answer lost, so
//!   only the announcement is recorded) and restarted: no second forced redeploy.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use pipecat_cloud_emulator::{ConfigUpdate, Fault, FaultBody, JournalEntry, JournalFilter};
use pipecat_operator::crd::PipecatAgent;
use pipecat_operator::crd::secret_set::PipecatSecretSet;
use serde_json::{Value, json};

use crate::support::operator::{Env, Options, is_ready};

const ENV_SET: &str = "bot-env";
const PULL_SET: &str = "bot-registry";
const AGENTS: [&str; 4] = ["rot-a", "rot-b", "rot-c", "rot-d"];
const TIMEOUT: Duration = Duration::from_secs(60);

fn manifests() -> Vec<String> {
    let docker = json!({"auths": {"ghcr.io": {"username": "bot", "password": "registry-v1",
        "auth": "Ym90OnJlZ2lzdHJ5LXYx"}}});
    let docs = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bot-env-values"},
            "type": "Opaque",
            "stringData": {"OPENAI_API_KEY": "openai-v1", "DEEPGRAM_API_KEY": "deepgram-v1"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-login"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": docker.to_string()}}),
        json!({"apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
            "metadata": {"name": ENV_SET},
            "spec": {"secretRef": {"name": "bot-env-values"}}}),
        json!({"apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
            "metadata": {"name": PULL_SET},
            "spec": {"type": "ImagePull", "secretRef": {"name": "registry-login"}}}),
        agent("rot-a", json!({"secretSet": ENV_SET})),
        agent(
            "rot-b",
            json!({"secretSet": ENV_SET, "imagePullSecretSet": PULL_SET}),
        ),
        agent(
            "rot-c",
            json!({"imagePullSecretSet": PULL_SET, "secretRotation": "Ignore"}),
        ),
        agent(
            "rot-d",
            json!({"imagePullSecretSet": PULL_SET, "secretRotation": "RedeployIncludingImagePull"}),
        ),
    ];
    docs.iter().map(|d| d.to_string()).collect()
}

fn agent(name: &str, sets: Value) -> Value {
    let mut spec = json!({"image": "acme/bot:1", "autoScaling": {"minAgents": 0, "maxAgents": 2}});
    for (k, v) in sets.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
        "metadata": {"name": name}, "spec": spec})
}

async fn journal(env: &Env, operation: &str) -> Vec<JournalEntry> {
    env.admin
        .journal(&JournalFilter {
            operation: Some(operation.into()),
            ..Default::default()
        })
        .await
        .expect("journal")
}

/// Answered forced redeploys of `agent` after journal entry `since`.
async fn forced(env: &Env, agent: &str, since: u64) -> usize {
    journal(env, "update_agent")
        .await
        .iter()
        .filter(|e| e.seq > since && e.agent.as_deref() == Some(agent) && e.force_redeploy)
        .count()
}

/// PUTs of secret set `set` after journal entry `since`.
async fn puts(env: &Env, set: &str, since: u64) -> usize {
    journal(env, "put_secret_set")
        .await
        .iter()
        .filter(|e| e.seq > since && e.path.ends_with(&format!("/secrets/{set}")))
        .count()
}

/// The journal's latest sequence number.
async fn last_seq(env: &Env) -> u64 {
    env.admin
        .journal(&JournalFilter::default())
        .await
        .expect("journal")
        .last()
        .map_or(0, |e| e.seq)
}

fn sets(env: &Env) -> Api<PipecatSecretSet> {
    Api::namespaced(env.cp.client(), &env.ns)
}

/// Waits until the set's values at revision `revision` are ready; returns its resource.
async fn wait_set(env: &Env, name: &str, revision: i64) -> PipecatSecretSet {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s = sets(env).get_opt(name).await.expect("get set");
        if let Some(s) = &s
            && let Some(st) = &s.status
            && st.revision == Some(revision)
            && st.ready_revision == Some(revision)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "set {name} never ready at revision {revision}: {:?}\n{}",
            s.and_then(|s| s.status),
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The revision of `set` the agent's status records.
fn recorded(a: &PipecatAgent, set: &str) -> Option<i64> {
    a.status
        .as_ref()?
        .secret_set_revisions
        .iter()
        .find(|r| r.name == set)
        .map(|r| r.revision)
}

/// Waits until the agent records `set` at `revision`, with nothing pending, and is Ready.
async fn wait_recorded(env: &Env, agent: &str, set: &str, revision: i64) -> PipecatAgent {
    env.wait_for(
        agent,
        TIMEOUT,
        &format!("{set} revision {revision} recorded"),
        |a| {
            recorded(a, set) == Some(revision)
                && a.status
                    .as_ref()
                    .is_some_and(|s| s.pending_rotation.is_none())
                && is_ready(a)
        },
    )
    .await
}

/// Changes one key of a Secret (a rotation).
async fn rotate(env: &Env, secret: &str, key: &str, value: &str) {
    let secrets: Api<Secret> = Api::namespaced(env.cp.client(), &env.ns);
    secrets
        .patch(
            secret,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {key: value}})),
        )
        .await
        .expect("rotate the Secret");
}

fn docker_config(password: &str) -> String {
    json!({"auths": {"ghcr.io": {"username": "bot", "password": password}}}).to_string()
}

/// Three agents and two sets, from provisioning to rotations and a kill mid-rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_sets_gate_agents_and_each_rotation_redeploys_them_once() {
    let env = Env::start(
        "e2e-rotation",
        Options {
            create_secret_sets: false,
            resync: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .await;
    // Sets stay pending for a while after each PUT.
    env.admin
        .set_config(ConfigUpdate {
            secret_ready_delay_ms: Some(2_000),
            ..Default::default()
        })
        .await
        .expect("config");

    // 1. Applied together: the agents wait for their sets, then become Ready.
    for doc in manifests() {
        env.apply(&doc);
    }
    for name in AGENTS {
        let a = env
            .wait_for(name, TIMEOUT, "Synced=False SecretSetNotReady", |a| {
                a.condition("Synced")
                    .is_some_and(|c| c.status == "False" && c.reason == "SecretSetNotReady")
            })
            .await;
        let ready = a.condition("Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "SecretSetNotReady")
        );
        let message = &a.condition("Synced").unwrap().message;
        assert!(
            message.contains("waits for secret set bot-") && message.contains("PipecatSecretSet"),
            "{name}: {message}"
        );
    }
    assert_eq!(
        journal(&env, "create_agent").await.len(),
        0,
        "an agent was created while its set was provisioning"
    );
    for name in AGENTS {
        env.wait_ready(name).await;
    }
    let all = env
        .admin
        .journal(&JournalFilter::default())
        .await
        .expect("journal");
    let conflicts: Vec<&JournalEntry> = all
        .iter()
        .filter(|e| e.agent.is_some() && e.status == Some(409))
        .collect();
    assert!(conflicts.is_empty(), "409s on agents: {conflicts:?}");
    for name in AGENTS {
        let creates = journal(&env, "create_agent")
            .await
            .into_iter()
            .filter(|e| e.agent.as_deref() == Some(name))
            .count();
        assert_eq!(creates, 1, "{name}");
        assert_eq!(
            forced(&env, name, 0).await,
            0,
            "{name} redeployed at creation"
        );
    }
    wait_set(&env, ENV_SET, 1).await;
    wait_set(&env, PULL_SET, 1).await;
    wait_recorded(&env, "rot-a", ENV_SET, 1).await;
    wait_recorded(&env, "rot-b", PULL_SET, 1).await;
    wait_recorded(&env, "rot-c", PULL_SET, 1).await;
    wait_recorded(&env, "rot-d", PULL_SET, 1).await;

    // 2. Steady state: several resyncs, no write at all.
    let quiet = last_seq(&env).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let writes: Vec<JournalEntry> = env
        .admin
        .journal(&JournalFilter {
            since: Some(quiet),
            ..Default::default()
        })
        .await
        .expect("journal")
        .into_iter()
        .filter(|e| e.method != "GET")
        .collect();
    assert!(writes.is_empty(), "writes at steady state: {writes:?}");

    // 3. The env set rotated: one PUT, one forced redeploy for each of its two agents.
    env.admin
        .set_config(ConfigUpdate {
            secret_ready_delay_ms: Some(1_000),
            ..Default::default()
        })
        .await
        .expect("config");
    let before = last_seq(&env).await;
    rotate(&env, "bot-env-values", "OPENAI_API_KEY", "openai-v2").await;
    wait_set(&env, ENV_SET, 2).await;
    wait_recorded(&env, "rot-a", ENV_SET, 2).await;
    wait_recorded(&env, "rot-b", ENV_SET, 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(puts(&env, ENV_SET, before).await, 1, "PUTs of {ENV_SET}");
    assert_eq!(forced(&env, "rot-a", before).await, 1, "rot-a");
    assert_eq!(forced(&env, "rot-b", before).await, 1, "rot-b");
    assert_eq!(
        forced(&env, "rot-c", before).await,
        0,
        "rot-c does not use it"
    );
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=rot-a,reason=Updated",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("secret set rotated (bot-env revision 2)"),
        "no event names the rotation: {events}"
    );

    // 4. The image-pull set rotated: by default nothing redeploys (rot-b), nor with Ignore
    // (rot-c); rot-d opted in and redeploys once. Each records the new revision.
    let before = last_seq(&env).await;
    rotate(
        &env,
        "registry-login",
        ".dockerconfigjson",
        &docker_config("registry-v2"),
    )
    .await;
    wait_set(&env, PULL_SET, 2).await;
    wait_recorded(&env, "rot-b", PULL_SET, 2).await;
    wait_recorded(&env, "rot-c", PULL_SET, 2).await;
    wait_recorded(&env, "rot-d", PULL_SET, 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(puts(&env, PULL_SET, before).await, 1, "PUTs of {PULL_SET}");
    assert_eq!(
        forced(&env, "rot-b", before).await,
        0,
        "rot-b: an image-pull rotation redeploys nothing by default"
    );
    assert_eq!(forced(&env, "rot-c", before).await, 0, "rot-c opted out");
    assert_eq!(forced(&env, "rot-d", before).await, 1, "rot-d opted in");
    assert_eq!(
        forced(&env, "rot-a", before).await,
        0,
        "rot-a does not use it"
    );

    // 5. Killed right after a forced redeploy was carried out: rot-a's answer is cut (the
    // redeploy happened, the operator only has its announcement), the operator is killed as
    // soon as the journal shows the call, then restarted.
    env.admin
        .inject_fault(
            Fault::body("/v1/agents/rot-a", FaultBody::Malformed)
                .with_method("POST")
                .with_count(1),
        )
        .await
        .expect("fault");
    let before = last_seq(&env).await;
    rotate(&env, "bot-env-values", "OPENAI_API_KEY", "openai-v3").await;
    let deadline = Instant::now() + TIMEOUT;
    while forced(&env, "rot-a", before).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no forced redeploy of rot-a\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut env = env;
    env.operator.kill();
    let a = env.agents().get("rot-a").await.expect("rot-a");
    let st = a.status.clone().unwrap_or_default();
    assert!(
        st.pending_rotation.is_some() && recorded(&a, ENV_SET) == Some(2),
        "the kill did not land between the redeploy and its record: {st:?}"
    );
    env.operator.restart();
    wait_recorded(&env, "rot-a", ENV_SET, 3).await;
    wait_recorded(&env, "rot-b", ENV_SET, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(puts(&env, ENV_SET, before).await, 1, "PUTs of {ENV_SET}");
    assert_eq!(
        forced(&env, "rot-a", before).await,
        1,
        "rot-a redeployed again after the restart\n{}",
        env.operator.log_tail(40)
    );
    assert_eq!(forced(&env, "rot-b", before).await, 1, "rot-b");
    assert_eq!(forced(&env, "rot-c", before).await, 0, "rot-c");
    assert_eq!(forced(&env, "rot-d", before).await, 0, "rot-d");
}
