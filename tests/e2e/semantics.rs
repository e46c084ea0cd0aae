//! End-to-end: what the operator does against servers that answer like the real Pipecat Cloud
//! rather than like a kind emulator: fields removed from the spec are cleared or set back to
//! their default remotely, a server that normalises values costs no updates at steady state, a
//! server that refuses a value is reported once instead of being sent the same update forever,
//! and a redeploy token changed together with the spec is one forced update.

use std::time::{Duration, Instant};

use pipecat_cloud_emulator::{
    self as emulator, Fault, FaultBody, JournalFilter, MAX_AGENTS_LIMIT, Profile,
};
use pipecat_operator::crd::PipecatAgent;
use serde_json::{Value, json};

use crate::support::operator::{API_KEY, Env, Options, is_ready};

/// Every optional field, none at its default.
fn every_field() -> Value {
    json!({
        "apiVersion": "pipecat.daily.co/v1alpha1",
        "kind": "PipecatAgent",
        "metadata": {"name": "every-field"},
        "spec": {
            "image": "acme/bot:1",
            "nodeType": "arm",
            "secretSet": "voice-starter-secrets",
            "imagePullSecretSet": "dockerhub-credentials",
            "agentProfile": "agent-2x",
            "maxSessionDuration": 600,
            "krispViva": {"audioFilter": "tel"},
            "enableKrisp": true,
            "autoScaling": {"minAgents": 2, "maxAgents": 5},
        }
    })
}

fn agent(name: &str, spec: Value) -> String {
    json!({
        "apiVersion": "pipecat.daily.co/v1alpha1",
        "kind": "PipecatAgent",
        "metadata": {"name": name},
        "spec": spec,
    })
    .to_string()
}

/// The agent as the emulator stores it, with every field whatever the answer profile.
async fn stored(env: &Env, name: &str) -> Value {
    env.admin
        .agent(API_KEY, name)
        .await
        .expect("stored agent")
        .expect("the agent exists remotely")
}

/// Waits until the stored agent satisfies `pred`.
async fn wait_stored(env: &Env, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stored(env, name).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held remotely: {s}\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Synced`'s status and reason.
fn synced(a: &PipecatAgent) -> (String, String) {
    let c = a.condition("Synced").expect("Synced condition");
    (c.status.clone(), c.reason.clone())
}

/// Warning events of `reason` about `name`, counting each repetition of a series.
fn warnings(env: &Env, name: &str, reason: &str) -> u64 {
    let out = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name},reason={reason},type=Warning"),
        "-o",
        "jsonpath={range .items[*]}{.count} {.series.count}{\"\\n\"}{end}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|c| c.parse::<u64>().ok())
                .fold(1, u64::max)
        })
        .sum()
}

fn profile_options(profile: Profile) -> Options {
    Options {
        emulator: emulator::Config {
            profile,
            ..Default::default()
        },
        resync: Duration::from_millis(500),
        ..Options::default()
    }
}

/// The fields in the order they are removed, each with what the stored agent shows once it
/// is cleared or back at its default.
type Check = fn(&Value) -> bool;
const REMOVALS: [(&str, Check); 6] = [
    ("secretSet", |s| {
        s["deployment"]["manifest"]["spec"]["envFromSecretNames"] == json!([])
    }),
    ("imagePullSecretSet", |s| {
        s["deployment"]["manifest"]["spec"]["imagePullSecretName"].is_null()
    }),
    ("agentProfile", |s| s["agentProfile"] == "agent-1x"),
    ("maxSessionDuration", |s| s["maxSessionDuration"] == 7200),
    ("krispViva", |s| s["krispViva"]["audioFilter"].is_null()),
    // maxAgents has no documented default: only minAgents goes back to its default (0).
    ("autoScaling", |s| {
        s["autoScaling"]["minReplicas"] == 0 && s["autoScaling"]["maxReplicas"] == 5
    }),
];

/// Removes each optional field in turn: one update clears it or sets it back to its default
/// remotely, and several resyncs afterwards send nothing.
async fn removed_fields_against(profile: Profile) {
    let env = Env::start(
        &format!("removed-{}", profile.as_str()),
        profile_options(profile),
    )
    .await;
    let mut manifest = every_field();
    env.apply(&manifest.to_string());
    env.wait_ready("every-field").await;
    assert_eq!(env.calls("create_agent").await, 1);
    let s = stored(&env, "every-field").await;
    for (field, cleared) in REMOVALS {
        assert!(!cleared(&s), "{field} starts at its default: {s}");
    }
    assert_ne!(
        s["deployment"]["manifest"]["spec"]["krispModels"]["enabled"], true,
        "enableKrisp is never sent: {s}"
    );

    for (i, (field, cleared)) in REMOVALS.into_iter().enumerate() {
        let updates = env.calls("update_agent").await;
        manifest["spec"].as_object_mut().unwrap().remove(field);
        env.apply(&manifest.to_string());
        let s = wait_stored(&env, "every-field", &format!("{field} removed"), cleared).await;
        // The fields removed before stay removed.
        for (earlier, still) in &REMOVALS[..i] {
            assert!(still(&s), "{earlier} came back after removing {field}: {s}");
        }
        env.wait_ready("every-field").await;
        tokio::time::sleep(Duration::from_millis(2500)).await; // ~5 resync periods
        assert_eq!(
            env.calls("update_agent").await,
            updates + 1,
            "removing {field}: one update, then none over several resyncs\n{}",
            env.operator.log_tail(20)
        );
        let a = env.agents().get("every-field").await.unwrap();
        assert!(is_ready(&a), "{field}: {:?}", a.status);
        assert_eq!(synced(&a), ("True".into(), "UpToDate".into()), "{field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_fields_are_cleared_or_defaulted_full() {
    removed_fields_against(Profile::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_fields_are_cleared_or_defaulted_seed() {
    removed_fields_against(Profile::Seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_fields_are_cleared_or_defaulted_rewriting() {
    removed_fields_against(Profile::Rewriting).await;
}

/// A server that stores `docker.io/library/redis:latest` for `redis` and leaves defaults out of
/// its answers: no update at steady state, no NotConverging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_server_costs_no_updates_at_steady_state() {
    let env = Env::start("rewriting", profile_options(Profile::Rewriting)).await;
    let spec = |image: &str| {
        json!({
            "image": image,
            "nodeType": "arm",
            "agentProfile": "agent-1x",
            "maxSessionDuration": 7200,
            "autoScaling": {"minAgents": 0, "maxAgents": 3},
        })
    };
    env.apply(&agent("bare", spec("redis")));
    env.wait_ready("bare").await;
    let s = stored(&env, "bare").await;
    assert_eq!(
        s["deployment"]["manifest"]["spec"]["image"],
        "docker.io/library/redis:latest"
    );
    // Let the pass after Ready finish (two more reads), then watch several resyncs: every
    // write a resync could make lands before the next resync's read.
    env.wait_calls("get_agent", env.calls("get_agent").await + 2)
        .await;
    let updates = env.calls("update_agent").await;
    let writes = env.operator.status_writes(&env.ns, "bare");
    assert!(
        writes > 0,
        "status writes are not counted (Ready was written)"
    );
    let rv = env
        .agents()
        .get("bare")
        .await
        .unwrap()
        .metadata
        .resource_version;
    env.wait_calls("get_agent", env.calls("get_agent").await + 6)
        .await;
    let a = env.agents().get("bare").await.unwrap();
    assert_eq!(updates, 0, "the create was enough");
    assert_eq!(
        env.calls("update_agent").await,
        0,
        "no update at steady state"
    );
    // Counted as sent: a write of an unchanged status would keep the resourceVersion.
    assert_eq!(
        env.operator.status_writes(&env.ns, "bare"),
        writes,
        "no status write at steady state\n{}",
        env.operator.log_tail(20)
    );
    assert_eq!(a.metadata.resource_version, rv, "no change to the resource");
    assert_eq!(synced(&a), ("True".into(), "UpToDate".into()));
    assert!(a.status.as_ref().unwrap().non_convergence.is_none());
    assert_eq!(warnings(&env, "bare", "NotConverging"), 0);

    // A change is one update, then steady again.
    env.apply(&agent("bare", spec("acme/bot:2")));
    wait_stored(&env, "bare", "the new image", |s| {
        s["deployment"]["manifest"]["spec"]["image"] == "docker.io/acme/bot:2"
    })
    .await;
    env.wait_ready("bare").await;
    env.wait_calls("get_agent", env.calls("get_agent").await + 2)
        .await;
    let writes = env.operator.status_writes(&env.ns, "bare");
    env.wait_calls("get_agent", env.calls("get_agent").await + 6)
        .await;
    assert_eq!(
        env.calls("update_agent").await,
        1,
        "one update for one change"
    );
    assert_eq!(
        env.operator.status_writes(&env.ns, "bare"),
        writes,
        "no status write once steady again"
    );
    let a = env.agents().get("bare").await.unwrap();
    assert_eq!(synced(&a), ("True".into(), "UpToDate".into()));
    assert_eq!(warnings(&env, "bare", "NotConverging"), 0);
}

/// A server that clamps `maxAgents` to its own limit never takes the spec's value: the
/// resource says so (`Synced=False NotConverging`, one Warning event) and the update is not
/// resent; a spec change afterwards is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_value_is_reported_once_and_not_resent() {
    let env = Env::start("refused", profile_options(Profile::Rewriting)).await;
    let over = MAX_AGENTS_LIMIT + 30;
    let spec = |max: u32| {
        json!({
            "image": "ghcr.io/acme/bot:1",
            "nodeType": "arm",
            "autoScaling": {"minAgents": 0, "maxAgents": max},
        })
    };
    env.apply(&agent("clamped", spec(over)));
    let a = env
        .wait_for(
            "clamped",
            Duration::from_secs(30),
            "Synced=False NotConverging",
            |a| {
                a.condition("Synced")
                    .is_some_and(|c| c.status == "False" && c.reason == "NotConverging")
            },
        )
        .await;
    let at_report = env.calls("update_agent").await;
    let message = &a.condition("Synced").unwrap().message;
    assert!(message.contains("autoScaling"), "{message}");
    let stuck = a.status.as_ref().unwrap().non_convergence.clone();
    let stuck = stuck.expect("status.nonConvergence");
    assert!(
        stuck
            .fields
            .iter()
            .any(|f| f.field.contains("autoScaling")
                && f.remote.contains(&MAX_AGENTS_LIMIT.to_string())),
        "{stuck:?}"
    );
    assert_eq!(
        stored(&env, "clamped").await["autoScaling"]["maxReplicas"],
        MAX_AGENTS_LIMIT
    );

    // Several resyncs: at most one more update, and the report stays.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = env.calls("update_agent").await;
    assert!(
        later <= at_report + 1,
        "{} updates after NotConverging was reported",
        later - at_report
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.calls("update_agent").await,
        later,
        "the update is resent"
    );
    let a = env.agents().get("clamped").await.unwrap();
    assert_eq!(synced(&a), ("False".into(), "NotConverging".into()));
    // Events are published in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while warnings(&env, "clamped", "NotConverging") == 0 {
        assert!(Instant::now() < deadline, "no NotConverging event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        warnings(&env, "clamped", "NotConverging"),
        1,
        "one Warning event"
    );

    // Something the server takes: applied, and the report goes.
    let before = env.calls("update_agent").await;
    env.apply(&agent("clamped", spec(40)));
    wait_stored(&env, "clamped", "maxAgents 40", |s| {
        s["autoScaling"]["maxReplicas"] == 40
    })
    .await;
    let a = env
        .wait_for("clamped", Duration::from_secs(30), "Synced=True", |a| {
            is_ready(a) && synced(a) == ("True".into(), "UpToDate".into())
        })
        .await;
    assert!(a.status.unwrap().non_convergence.is_none());
    assert_eq!(env.calls("update_agent").await, before + 1);
}

/// A redeploy token changed together with the image: exactly one update, and it forces a
/// redeploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_token_with_a_spec_change_is_one_forced_update() {
    let env = Env::start("token", profile_options(Profile::Full)).await;
    let spec = |image: &str, token: &str| json!({"image": image, "nodeType": "arm", "redeployToken": token});
    env.apply(&agent("token", spec("acme/bot:1", "a")));
    env.wait_ready("token").await;
    assert_eq!(
        env.calls("update_agent").await,
        0,
        "the create records the token"
    );
    let since = env
        .admin
        .journal(&JournalFilter::default())
        .await
        .unwrap()
        .last()
        .map(|e| e.seq);

    env.apply(&agent("token", spec("acme/bot:2", "b")));
    wait_stored(&env, "token", "the new image", |s| {
        s["deployment"]["manifest"]["spec"]["image"] == "acme/bot:2"
    })
    .await;
    env.wait_ready("token").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // ~4 resync periods
    let updates = env
        .admin
        .journal(&JournalFilter {
            since,
            operation: Some("update_agent".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(updates.len(), 1, "exactly one update: {updates:?}");
    assert!(
        updates[0].force_redeploy,
        "sent without forceRedeploy: {updates:?}"
    );
    assert_eq!(updates[0].status, Some(200));
    let a = env.agents().get("token").await.unwrap();
    assert_eq!(
        a.status.unwrap().applied_redeploy_token.as_deref(),
        Some("b")
    );
}

/// A crashing image rolled out over a working one, against a server that answers only the
/// seed page's fields (no `errors`, no revisions): `ready` stays true there (the previous
/// deployment still takes sessions), but the resource never becomes Ready with the new
/// deployment. (Without `errors` nothing tells a crash from a slow roll-out: `Ready=False`
/// says `Deploying`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_image_against_the_seed_profile_is_never_ready() {
    let mut opts = profile_options(Profile::Seed);
    opts.emulator.crash_image_pattern = Some("*:crash*".into());
    let env = Env::start("seed-crash", opts).await;
    let spec = |image: &str| json!({"image": image, "nodeType": "arm"});
    env.apply(&agent("crashing", spec("acme/bot:1")));
    env.wait_ready("crashing").await;
    env.apply(&agent("crashing", spec("acme/bot:crashing")));
    let crashing = wait_stored(&env, "crashing", "the crashing deployment", |s| {
        s["currentRevision"]["health"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let answer: Value = reqwest::Client::new()
        .get(format!("{}/agents/crashing", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ready"], true, "the old deployment serves: {answer}");
    assert_eq!(answer["activeDeploymentReady"], false, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    // Once the status names the crashing deployment, several passes over it.
    let id = crashing["desiredDeploymentId"]
        .as_str()
        .unwrap()
        .to_string();
    env.wait_for(
        "crashing",
        Duration::from_secs(20),
        "the status naming the crashing deployment",
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.active_deployment_id.as_deref())
                == Some(id.as_str())
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let a = env.agents().get("crashing").await.unwrap();
        let st = a.status.clone().unwrap_or_default();
        assert!(
            !is_ready(&a) && !st.ready,
            "Ready with a crashing deployment: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The profile changes at run time through the admin API; the stored agent stays readable in
/// full; the journal tells forced updates apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_at_run_time_stored_agent_and_forced_updates_in_the_journal() {
    let emu = emulator::start(emulator::Config {
        api_keys: vec![API_KEY.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = emu.admin();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{}{path}", emu.base_url()))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    let created = call(
        reqwest::Method::POST,
        "/agents",
        Some(json!({"serviceName": "bot", "image": "acme/bot:1"})),
    )
    .await;
    assert_eq!(created["region"], "us-west");
    assert_eq!(admin.config().await.unwrap().profile, Profile::Full);

    let config = admin
        .set_config(emulator::ConfigUpdate {
            profile: Some(Profile::Seed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(config.profile, Profile::Seed);
    let seed = call(reqwest::Method::GET, "/agents/bot", None).await;
    let mut keys: Vec<&str> = seed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = emulator::SEED_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{seed}");
    let full = admin.agent(API_KEY, "bot").await.unwrap().unwrap();
    assert_eq!(full["region"], "us-west");
    assert_eq!(full["desiredDeploymentId"], seed["activeDeploymentId"]);
    assert!(admin.agent(API_KEY, "nobody").await.unwrap().is_none());

    call(
        reqwest::Method::POST,
        "/agents/bot",
        Some(json!({"image": "acme/bot:2"})),
    )
    .await;
    call(
        reqwest::Method::POST,
        "/agents/bot",
        Some(json!({"image": "acme/bot:2", "forceRedeploy": true})),
    )
    .await;
    let updates = admin
        .journal(&JournalFilter {
            operation: Some("update_agent".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let forced: Vec<bool> = updates.iter().map(|e| e.force_redeploy).collect();
    assert_eq!(forced, [false, true]);
    emu.shutdown().await;
}

/// Waits until the agent's status describes its current generation.
async fn wait_observed(env: &Env, name: &str) -> PipecatAgent {
    env.wait_for(
        name,
        Duration::from_secs(30),
        "the generation observed",
        |a| a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation,
    )
    .await
}

/// `enableKrisp` (removed from Pipecat Cloud's API) is accepted, never sent, changes nothing
/// remotely whatever its value, and is warned about once per spec generation that sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_krisp_is_never_sent_and_warned_about_once_per_generation() {
    let env = Env::start("krisp", profile_options(Profile::Full)).await;
    let spec = |krisp: Option<bool>| {
        let mut s = json!({"image": "acme/bot:1", "autoScaling": {"minAgents": 0, "maxAgents": 2}});
        if let Some(k) = krisp {
            s["enableKrisp"] = json!(k);
        }
        s
    };
    env.apply(&agent("krisp", spec(Some(true))));
    env.wait_ready("krisp").await;
    let s = stored(&env, "krisp").await;
    assert_ne!(
        s["deployment"]["manifest"]["spec"]["krispModels"]["enabled"], true,
        "enableKrisp reached Pipecat Cloud: {s}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // ~4 resyncs
    assert_eq!(warnings(&env, "krisp", "EnableKrispIgnored"), 1);
    let updates = env.calls("update_agent").await;
    assert_eq!(updates, 0);

    // Another value, then none: new generations, no update, one warning for the one that sets it.
    for (krisp, events) in [(Some(false), 2), (None, 2)] {
        env.apply(&agent("krisp", spec(krisp)));
        wait_observed(&env, "krisp").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            env.calls("update_agent").await,
            0,
            "enableKrisp {krisp:?}: an update was sent\n{}",
            env.operator.log_tail(20)
        );
        assert_eq!(
            warnings(&env, "krisp", "EnableKrispIgnored"),
            events,
            "enableKrisp {krisp:?}"
        );
        let a = env.agents().get("krisp").await.unwrap();
        assert!(is_ready(&a), "{:?}", a.status);
    }
}

/// Removing a secret set sends an empty name (the contract has no null for it). A server that
/// refuses that update gets it once: `Synced=False SecretSetRemovalRefused`, with what to do,
/// and no retry until the spec changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_set_removal_is_reported_and_not_resent() {
    let env = Env::start("removal", profile_options(Profile::Full)).await;
    let with_set = json!({"image": "acme/bot:1", "secretSet": "voice-starter-secrets",
        "autoScaling": {"minAgents": 0, "maxAgents": 2}});
    env.apply(&agent("detach", with_set.clone()));
    env.wait_ready("detach").await;
    // The service refuses the detaching update.
    env.admin
        .inject_fault(
            Fault::body(
                "/v1/agents/detach",
                FaultBody::Custom(
                    json!({"error": "Secret set '' not found", "code": "NOT_FOUND"}).to_string(),
                ),
            )
            .with_status(404)
            .with_method("POST")
            .with_count(100),
        )
        .await
        .expect("fault");
    let mut without = with_set.clone();
    without.as_object_mut().unwrap().remove("secretSet");
    env.apply(&agent("detach", without));
    let a = env
        .wait_for(
            "detach",
            Duration::from_secs(30),
            "Synced=False SecretSetRemovalRefused",
            |a| {
                a.condition("Synced")
                    .is_some_and(|c| c.status == "False" && c.reason == "SecretSetRemovalRefused")
            },
        )
        .await;
    let message = &a.condition("Synced").unwrap().message;
    assert!(
        message.contains("voice-starter-secrets") && message.contains("dashboard"),
        "{message}"
    );
    let stalled = a.condition("Stalled").expect("Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "SecretSetRemovalRefused")
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // ~6 resyncs
    assert_eq!(
        env.calls("update_agent").await,
        1,
        "the refused update was sent again\n{}",
        env.operator.log_tail(20)
    );
    // A spec change is sent again (here: the set back, which the agent still has: nothing to do).
    env.admin.clear_faults().await.expect("clear faults");
    env.apply(&agent("detach", with_set));
    env.wait_for("detach", Duration::from_secs(30), "Synced=True", |a| {
        a.condition("Synced").is_some_and(|c| c.status == "True")
    })
    .await;
}

/// A region Pipecat Cloud does not list (`GET /regions`) is reported before anything is
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_region_creates_nothing() {
    let env = Env::start("region", profile_options(Profile::Full)).await;
    env.apply(&agent(
        "far",
        json!({"image": "acme/bot:1", "region": "mars-north"}),
    ));
    let a = env
        .wait_for(
            "far",
            Duration::from_secs(30),
            "Synced=False UnknownRegion",
            |a| {
                a.condition("Synced")
                    .is_some_and(|c| c.status == "False" && c.reason == "UnknownRegion")
            },
        )
        .await;
    let message = &a.condition("Synced").unwrap().message;
    assert!(
        message.contains("us-west") && message.contains("mars-north"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.calls("create_agent").await, 0);
    assert!(
        a.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty()),
        "nothing remote, nothing to finalize: {:?}",
        a.metadata.finalizers
    );
    // A known region is created (spec.region is immutable: another resource).
    env.apply(&agent(
        "near",
        json!({"image": "acme/bot:1", "region": "eu-central"}),
    ));
    env.wait_ready("near").await;
    assert_eq!(env.calls("create_agent").await, 1);
}
