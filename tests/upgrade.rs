//! Upgrading from 0.1: the `PipecatAgent` objects the 0.1 operator left behind (its status, its
//! finalizer), stored under the 0.1 CRD, with the agents 0.1 created still in Pipecat Cloud, are
//! taken over by the current CRD and operator without anything the user did not ask for: no
//! create, update or delete call, no forced redeploy, no agent taken for someone else's, Ready
//! where 0.1 said Ready, and the current status fields filled on the first pass.
//!
//! The fixtures under `tests/fixtures/v0.1/` come from a real run of 0.1 (commit 75ae0a6):
//! `capture_v0_1_fixtures` below, ignored by default, wrote them (see the README there).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::watcher;
use kube::{Client, CustomResourceExt};
use pipecat_operator::crd::PipecatAgent;
use pipecat_operator::emulator::{self, JournalFilter, ResetOptions};
use serde_json::{Value, json};
use support::controlplane::{ControlPlane, describe_output, kubectl_stdin};
use support::operator::{API_KEY, ContractGuard, Env, Operator};

/// Where the 0.1 fixtures live.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1");
/// The current CRDs.
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
/// The namespace the fixtures were captured in (and are loaded back into for the operator).
const FIXTURE_NS: &str = "pipecat-v01";
/// The field manager the 0.1 operator wrote status with (server-side apply).
const MANAGER_V0_1: &str = "pipecat-operator";
/// The emulator's crash pattern during the capture.
const CRASH_PATTERN: &str = "*:crash*";
/// The Secret the being-deleted resource reads its key from; removed before its deletion.
const DELETING_SECRET: &str = "deleting-credentials";
/// The agent name both conflicting resources claim.
const SHARED_AGENT: &str = "shared-agent";

/// The fixture objects, in the order 0.1 saw them created, with what each one shows.
const STATES: &[(&str, &str)] = &[
    (
        "created",
        "created by 0.1 from an image, every spec field set (redeployToken included); Ready",
    ),
    (
        "created-build",
        "created by 0.1 from a buildId (a field Pipecat Cloud does not report back); Ready",
    ),
    (
        "updated",
        "created by 0.1, then its image changed once (generation 2); Ready on the new deployment",
    ),
    (
        "adopted",
        "the agent existed in Pipecat Cloud before the resource; 0.1 adopted it; Ready",
    ),
    (
        "failed",
        "created by 0.1, then updated to a crashing image: Ready=False CrashLoopBackOff, the previous deployment still serving",
    ),
    (
        "conflict-a",
        "owns agent shared-agent (the older of two resources naming it); Ready",
    ),
    (
        "conflict-b",
        "names agent shared-agent too, created later: Synced=False NameConflict, never touched the agent",
    ),
    (
        "deleting",
        "created by 0.1; its credentials Secret was removed, then the resource deleted: deletionTimestamp set, finalizer kept (DeleteBlocked)",
    ),
];

// ---------------------------------------------------------------------------------------------
// Fixtures

/// What 0.1 left behind.
struct Fixtures {
    /// The objects (spec, status, finalizers, deletionTimestamp), in creation order.
    objects: Vec<Value>,
    /// The agents as Pipecat Cloud (the emulator) answered `GET /v1/agents/{name}`, by name.
    remote: BTreeMap<String, Value>,
    /// The emulator's state file (format version 1): the same agents and deployments.
    emulator_state: String,
}

fn fixture_path(file: &str) -> PathBuf {
    Path::new(FIXTURES).join(file)
}

fn read_fixture(file: &str) -> String {
    std::fs::read_to_string(fixture_path(file))
        .unwrap_or_else(|e| panic!("reading tests/fixtures/v0.1/{file}: {e}"))
}

fn fixtures() -> Fixtures {
    let objects: Vec<Value> = serde_saphyr::from_multiple(&read_fixture("pipecatagents.yaml"))
        .expect("the fixture objects parse");
    let names: Vec<&str> = objects.iter().map(name_of).collect();
    let expected: Vec<&str> = STATES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "tests/fixtures/v0.1/pipecatagents.yaml");
    Fixtures {
        objects,
        remote: serde_json::from_str(&read_fixture("remote-agents.json"))
            .expect("remote-agents.json"),
        emulator_state: read_fixture("emulator-state.json"),
    }
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().expect("metadata.name")
}

fn agent_name_of(obj: &Value) -> &str {
    obj["spec"]["agentName"]
        .as_str()
        .unwrap_or_else(|| name_of(obj))
}

fn fixture<'a>(fx: &'a Fixtures, name: &str) -> &'a Value {
    fx.objects
        .iter()
        .find(|o| name_of(o) == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// True for the objects 0.1 synced with Pipecat Cloud at least once (it recorded what it sent).
fn synced_by_0_1(obj: &Value) -> bool {
    obj["status"]["appliedConfigHash"].is_string()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn cond_field<'a>(obj: &'a Value, type_: &str, field: &str) -> Option<&'a str> {
    condition(obj, type_).and_then(|c| c[field].as_str())
}

/// `Ready=True` for the object's current generation.
fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| {
        c["status"] == "True" && c["observedGeneration"] == obj["metadata"]["generation"]
    })
}

// ---------------------------------------------------------------------------------------------
// Kubernetes helpers (raw JSON, so that nothing of a 0.1 object is lost in the current types)

fn pipecat_agents() -> ApiResource {
    ApiResource {
        group: "pipecat.daily.co".into(),
        version: "v1alpha1".into(),
        api_version: "pipecat.daily.co/v1alpha1".into(),
        kind: "PipecatAgent".into(),
        plural: "pipecatagents".into(),
    }
}

fn agents_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &pipecat_agents())
}

fn to_object(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a PipecatAgent object")
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).expect("object JSON")
}

async fn get_raw(client: &Client, ns: &str, name: &str) -> Option<Value> {
    agents_api(client, ns)
        .get_opt(name)
        .await
        .expect("get PipecatAgent")
        .map(|o| to_value(&o))
}

/// Polls `name` until `pred` holds; panics after `timeout` with the last state.
async fn wait_raw(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let last = get_raw(client, ns, name).await;
        if let Some(obj) = &last
            && pred(obj)
        {
            return obj.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} on {ns}/{name}; last seen: {}",
            serde_json::to_string_pretty(&last).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pipecat-operator.test/harness": "true"}}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

async fn create_key_secret(client: &Client, ns: &str, name: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"api-key": API_KEY}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {ns}/{name}: {e}"));
}

/// `kubectl apply --server-side --force-conflicts` of CRD manifests (a file or directory), then
/// waits until every CRD it names is Established.
fn apply_crds(cp: &ControlPlane, path: &str) -> Result<(), String> {
    let out = cp.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-o",
        "name",
        "-f",
        path,
    ]);
    if !out.status.success() {
        return Err(describe_output(&out));
    }
    let crds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("customresourcedefinition"))
        .map(str::to_string)
        .collect();
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend(crds.iter().map(String::as_str));
    let out = cp.kubectl(&args);
    if !out.status.success() {
        return Err(describe_output(&out));
    }
    Ok(())
}

/// Creates the fixture objects in `ns` as 0.1 left them: the user's object (same generation),
/// the status 0.1 wrote (server-side apply through the status subresource, by 0.1's field
/// manager), and the deletion of the one being deleted. Panics on any refusal.
async fn load(client: &Client, ns: &str, objects: &[Value]) {
    let api = agents_api(client, ns);
    let mut claimed = HashSet::new();
    for fixture in objects {
        let name = name_of(fixture);
        if !claimed.insert(agent_name_of(fixture).to_string()) {
            // Name conflicts are decided by creation time (one-second resolution): keep the
            // older resource older.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let meta = &fixture["metadata"];
        let mut obj = json!({
            "apiVersion": fixture["apiVersion"],
            "kind": fixture["kind"],
            "metadata": {"name": name, "namespace": ns},
            "spec": fixture["spec"],
        });
        for field in ["labels", "annotations", "finalizers"] {
            if let Some(v) = meta.get(field) {
                obj["metadata"][field] = v.clone();
            }
        }
        // metadata.generation as 0.1 saw it: each spec change counts one (and so does the
        // deletion of an object with finalizers), so the object is created with a stand-in
        // redeployToken changed as many times as needed, the last time back to the fixture's.
        let generation = meta["generation"].as_i64().expect("metadata.generation");
        let deleting = meta.get("deletionTimestamp").is_some();
        let changes = generation - 1 - i64::from(deleting);
        let token = |i: i64| {
            if i == changes {
                fixture["spec"]
                    .get("redeployToken")
                    .cloned()
                    .unwrap_or(Value::Null)
            } else {
                json!(format!("fixture-load-{i}"))
            }
        };
        if changes > 0 {
            obj["spec"]["redeployToken"] = token(0);
        }
        api.create(&PostParams::default(), &to_object(obj))
            .await
            .unwrap_or_else(|e| panic!("creating fixture {ns}/{name}: {e}"));
        for i in 1..=changes {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"redeployToken": token(i)}})),
            )
            .await
            .unwrap_or_else(|e| panic!("changing the spec of fixture {ns}/{name}: {e}"));
        }
        let status = json!({
            "apiVersion": fixture["apiVersion"],
            "kind": fixture["kind"],
            "status": fixture["status"],
        });
        api.patch_status(
            name,
            &PatchParams::apply(MANAGER_V0_1).force(),
            &Patch::Apply(status),
        )
        .await
        .unwrap_or_else(|e| panic!("writing the status of fixture {ns}/{name}: {e}"));
        if deleting {
            api.delete(name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("deleting fixture {ns}/{name}: {e}"));
        }
        let stored = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading fixture {ns}/{name}: {e}"));
        assert_eq!(
            stored.metadata.generation,
            Some(generation),
            "generation of fixture {ns}/{name}"
        );
        assert_eq!(
            stored.metadata.deletion_timestamp.is_some(),
            deleting,
            "deletionTimestamp of fixture {ns}/{name}"
        );
    }
}

/// Staged once per test binary: the 0.1 CRD, the fixtures loaded under it (one copy for the
/// operator, one for the CRD checks), then the upgrade to the current CRD.
struct Staged {
    /// The outcome of `kubectl apply --server-side --force-conflicts` of `crds/`.
    crd_upgrade: Result<(), String>,
    /// The copy the CRD checks write to.
    crd_ns: String,
}

async fn staged() -> &'static Staged {
    static STAGED: tokio::sync::OnceCell<Staged> = tokio::sync::OnceCell::const_new();
    STAGED
        .get_or_init(|| async {
            let cp = ControlPlane::get();
            let client = cp.client();
            let fx = fixtures();
            apply_crds(cp, fixture_path("crd.yaml").to_str().unwrap())
                .unwrap_or_else(|e| panic!("installing the 0.1 CRD: {e}"));
            create_namespace(&client, FIXTURE_NS).await;
            load(&client, FIXTURE_NS, &fx.objects).await;
            let crd_ns = cp.namespace("upgrade-crd");
            load(&client, &crd_ns, &fx.objects).await;
            Staged {
                crd_upgrade: apply_crds(cp, CRDS),
                crd_ns,
            }
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// The CRD upgrade path

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_crd_applies_over_0_1_and_its_objects_stay_valid() {
    let staged = staged().await;
    if let Err(e) = &staged.crd_upgrade {
        panic!(
            "kubectl apply --server-side --force-conflicts -f crds/ over the 0.1 CRD failed: {e}"
        );
    }
    let cp = ControlPlane::get();
    let client = cp.client();
    let fx = fixtures();
    let ns = staged.crd_ns.as_str();
    let kubectl_in = |args: &[&str], stdin: &str| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        kubectl_stdin(cp.kubeconfig_path(), &all, stdin)
    };

    for fixture in &fx.objects {
        let name = name_of(fixture);
        let stored = get_raw(&client, ns, name).await.expect("stored object");

        // An update of the stored object as it is (what every write of the operator or the
        // user goes through, transition rules with oldSelf included).
        let out = kubectl_in(
            &["replace", "--dry-run=server", "-f", "-"],
            &stored.to_string(),
        );
        assert!(
            out.status.success(),
            "{name}: the stored 0.1 object is refused as an update under the current CRD: {}",
            describe_output(&out)
        );

        // A server-side apply of its spec by its user.
        let manifest = json!({
            "apiVersion": stored["apiVersion"], "kind": stored["kind"],
            "metadata": {"name": name}, "spec": stored["spec"],
        });
        let out = kubectl_in(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=upgrade-test",
                "-f",
                "-",
            ],
            &manifest.to_string(),
        );
        assert!(
            out.status.success(),
            "{name}: a server-side apply of the 0.1 spec is refused under the current CRD: {}",
            describe_output(&out)
        );

        // A status write through the status subresource.
        let out = kubectl_in(
            &[
                "patch",
                "pipecatagent",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"activeSessionCount":1}}"#,
            ],
            "",
        );
        assert!(
            out.status.success(),
            "{name}: a status patch of the stored 0.1 object is refused under the current CRD: {}",
            describe_output(&out)
        );

        // Nothing of the user's spec was pruned away.
        assert_contains(&fixture["spec"], &stored["spec"], &format!("{name}: spec"));
    }

    // The same objects created afresh under the current CRD: full validation of spec and
    // status (an update of an unchanged object can be let through by validation ratcheting).
    let fresh = cp.namespace("upgrade-fresh");
    load(&client, &fresh, &fx.objects).await;
    for fixture in &fx.objects {
        let name = name_of(fixture);
        let stored = get_raw(&client, &fresh, name).await.expect("stored object");
        assert_contains(&fixture["spec"], &stored["spec"], &format!("{name}: spec"));
    }
}

/// Every field of `want` is in `got` with the same value (`got` may have more).
fn assert_contains(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let here = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => assert_contains(v, gv, &here),
                    None => panic!("{here} was dropped under the current CRD (0.1 had {v})"),
                }
            }
        }
        _ => assert_eq!(want, got, "{path} differs under the current CRD"),
    }
}

// ---------------------------------------------------------------------------------------------
// The operator upgrade

/// Every version of every object of a namespace, from a watch: the initial list (what 0.1
/// left), then each change.
struct Versions {
    initial: Vec<Value>,
    changes: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Versions {
    async fn record(client: &Client, ns: &str) -> Versions {
        let mut stream = watcher(agents_api(client, ns), watcher::Config::default()).boxed();
        let mut initial = Vec::new();
        loop {
            match stream.next().await.expect("watch stream") {
                Ok(watcher::Event::InitApply(o)) => initial.push(to_value(&o)),
                Ok(watcher::Event::InitDone) => break,
                Ok(_) => {}
                Err(e) => panic!("watching {ns}: {e}"),
            }
        }
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = changes.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event {
                    sink.lock().unwrap().push(to_value(&o));
                }
            }
        });
        Versions {
            initial,
            changes,
            task,
        }
    }

    /// The versions written since the watch started.
    fn changes(&self) -> Vec<Value> {
        self.changes.lock().unwrap().clone()
    }
}

impl Drop for Versions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The status fields the current `PipecatAgentStatus` has (from its schema).
fn status_fields() -> BTreeSet<String> {
    let crd = serde_json::to_value(PipecatAgent::crd()).unwrap();
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["storage"] == true)
        .expect("a storage version")["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]
        .as_object()
        .expect("status properties")
        .keys()
        .cloned()
        .collect()
}

/// Status fields of `obj` that the current status type has but the object lacks. Only these
/// may be absent: `appliedRedeployToken` when the spec has no `redeployToken`, and
/// `nonConvergence`, which exists only while Pipecat Cloud refuses the spec.
fn missing_status_fields(obj: &Value, fields: &BTreeSet<String>) -> Vec<String> {
    fields
        .iter()
        .filter(|f| obj["status"].get(f.as_str()).is_none_or(Value::is_null))
        .filter(|f| {
            !(f.as_str() == "appliedRedeployToken" && obj["spec"]["redeployToken"].is_null())
        })
        .filter(|f| f.as_str() != "nonConvergence")
        // Only for secret sets managed by a PipecatSecretSet (none in the 0.1 fixtures), and
        // only between a rotation's redeploy and its record.
        .filter(|f| !matches!(f.as_str(), "secretSetRevisions" | "pendingRotation"))
        .cloned()
        .collect()
}

async fn get_agent_calls(env: &Env, agent: &str) -> usize {
    env.admin
        .journal(&JournalFilter {
            operation: Some("get_agent".into()),
            agent: Some(agent.into()),
            ..JournalFilter::default()
        })
        .await
        .expect("journal")
        .len()
}

async fn eventually(what: &str, timeout: Duration, env: &Env, check: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\noperator log tail:\n{}",
            env.operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_0_1_changes_nothing_the_user_did_not_ask_for() {
    let staged = staged().await;
    if let Err(e) = &staged.crd_upgrade {
        panic!("the CRD upgrade failed: {e}");
    }
    let cp = ControlPlane::get();
    let client = cp.client();
    let fx = fixtures();
    let ns = FIXTURE_NS;

    // The default credentials as 0.1 had them (the being-deleted resource's own Secret was
    // removed before its deletion).
    create_key_secret(&client, ns, "pipecat-api-key").await;

    // Pipecat Cloud holds what 0.1 left: the same agents and deployments, long reconciled.
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("emulator-state.json");
    std::fs::write(&state_file, &fx.emulator_state).unwrap();
    let emulator = emulator::start(emulator::Config {
        api_keys: vec![API_KEY.to_string()],
        state_file: Some(state_file),
        ..emulator::Config::default()
    })
    .await
    .expect("emulator starts from the 0.1 state");
    let admin = emulator.admin();
    let http = reqwest::Client::new();
    for (name, then) in &fx.remote {
        let now: Value = http
            .get(format!("{}/agents/{name}", emulator.base_url()))
            .bearer_auth(API_KEY)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("the seeded emulator answers agent {name}: {e}"))
            .json()
            .await
            .expect("agent JSON");
        for field in [
            "desiredDeploymentId",
            "reconciledDeploymentId",
            "ready",
            "region",
        ] {
            assert_eq!(now[field], then[field], "seeded agent {name}: {field}");
        }
        assert_eq!(
            now["deployment"]["manifest"]["spec"], then["deployment"]["manifest"]["spec"],
            "seeded agent {name}: configuration"
        );
    }
    admin.reset(ResetOptions::default()).await.unwrap();

    let versions = Versions::record(&client, ns).await;
    let fields = status_fields();
    let operator = Operator::start(cp, ns, &emulator.base_url(), Duration::from_secs(2), &[]);
    let env = Env {
        contract: ContractGuard::new(&emulator),
        cp,
        ns: ns.to_string(),
        emulator,
        admin,
        operator,
    };

    // Wait until the operator has been through every object at least once: two reads of each
    // agent (the second one comes after the first pass, per object, finished), the conflict
    // reported and the blocked deletion retried.
    let agents: BTreeSet<&str> = fx
        .objects
        .iter()
        .filter(|o| synced_by_0_1(o) && o["metadata"].get("deletionTimestamp").is_none())
        .map(agent_name_of)
        .collect();
    for agent in &agents {
        eventually(
            &format!("two reads of agent {agent}"),
            Duration::from_secs(60),
            &env,
            async || get_agent_calls(&env, agent).await >= 2,
        )
        .await;
    }
    eventually(
        "the name conflict to be reconciled",
        Duration::from_secs(60),
        &env,
        async || {
            env.operator
                .metric("pipecat_operator_reconcile_errors_total{reason=\"NameConflict\"}")
                .await
                .is_some_and(|n| n >= 1.0)
        },
    )
    .await;
    support::reliability::wait_event(
        &env,
        "deleting",
        "Warning",
        "DeleteBlocked",
        Duration::from_secs(60),
    )
    .await
    .expect("the blocked deletion is reported as 0.1 did");

    // Nothing was sent to Pipecat Cloud but reads.
    let counts = env.admin.counts().await.unwrap();
    let writes: Vec<String> = env
        .admin
        .journal(&JournalFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.operation != "get_agent")
        .map(|e| format!("{} {} -> {:?}", e.method, e.path, e.status))
        .collect();
    for op in ["create_agent", "update_agent", "delete_agent"] {
        assert_eq!(
            counts.operation(op),
            0,
            "{op} after the upgrade: {writes:#?}"
        );
    }

    // No event says something was created, adopted, updated or deleted.
    let events = support::reliability::events(&env).await.unwrap();
    let actions: Vec<String> = events
        .iter()
        .filter(|e| {
            ["Created", "Adopted", "Updated", "Deleted", "Orphaned"]
                .contains(&e["reason"].as_str().unwrap_or_default())
        })
        .map(|e| {
            format!(
                "{} {}: {}",
                e["involvedObject"]["name"], e["reason"], e["message"]
            )
        })
        .collect();
    assert!(actions.is_empty(), "events after the upgrade: {actions:#?}");

    // Every version of every object keeps what 0.1 said: readiness, each condition's status
    // and reason, and no ownership complaint.
    let changes = versions.changes();
    for version in versions.initial.iter().chain(&changes) {
        let name = name_of(version);
        let then = fixture(&fx, name);
        let at = format!(
            "{name} at resourceVersion {}",
            version["metadata"]["resourceVersion"]
        );
        assert_eq!(
            version["status"]["ready"], then["status"]["ready"],
            "{at}: ready"
        );
        for cond in then["status"]["conditions"].as_array().unwrap() {
            let type_ = cond["type"].as_str().unwrap();
            for field in ["status", "reason"] {
                assert_eq!(
                    cond_field(version, type_, field),
                    cond[field].as_str(),
                    "{at}: condition {type_} {field} (0.1 said {cond})"
                );
            }
        }
        for cond in version["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let reason = cond["reason"].as_str().unwrap_or_default();
            // A reason 0.1 reported on any condition of the object (a condition type added
            // since, like Stalled, may carry it too).
            let from_0_1 = then["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["reason"].as_str() == Some(reason));
            assert!(
                from_0_1 || !(reason.contains("Exists") || reason.contains("Conflict")),
                "{at}: condition {cond}"
            );
        }
    }

    // The current status fields are all there after the first pass: in every status the
    // current operator wrote, and in the final one.
    for version in &changes {
        let name = name_of(version);
        if synced_by_0_1(fixture(&fx, name))
            && version["metadata"].get("deletionTimestamp").is_none()
        {
            let missing = missing_status_fields(version, &fields);
            assert!(
                missing.is_empty(),
                "{name}: status written without {missing:?}: {}",
                version["status"]
            );
        }
    }
    for then in &fx.objects {
        let name = name_of(then);
        let now = get_raw(&client, ns, name).await.expect("still there");
        let st = &now["status"];
        if synced_by_0_1(then) {
            if now["metadata"].get("deletionTimestamp").is_none() {
                let missing = missing_status_fields(&now, &fields);
                assert!(missing.is_empty(), "{name}: status lacks {missing:?}: {st}");
            }
            // The same fingerprint (a new one would make every agent look changed), the same
            // agent and deployments (no redeploy).
            for field in [
                "agentName",
                "appliedConfigHash",
                "appliedRedeployToken",
                "desiredDeploymentId",
                "reconciledDeploymentId",
            ] {
                if fields.contains(field) {
                    assert_eq!(st[field], then["status"][field], "{name}: status.{field}");
                }
            }
        }
        if is_ready(then) {
            assert!(is_ready(&now), "{name}: Ready under 0.1, not now: {st}");
        } else {
            assert!(
                !is_ready(&now),
                "{name}: not Ready under 0.1, Ready now: {st}"
            );
        }
    }
    for (agent, then) in &fx.remote {
        let now = env.remote(agent).await.expect("the agent is still there");
        assert_eq!(
            now["desiredDeploymentId"], then["desiredDeploymentId"],
            "agent {agent}: a new deployment was rolled"
        );
    }

    // The conflict is still reported, naming the owner.
    let claimant = get_raw(&client, ns, "conflict-b").await.unwrap();
    let message = cond_field(&claimant, "Synced", "message").unwrap_or_default();
    assert!(
        message.contains(&format!("{ns}/conflict-a")),
        "conflict-b: {message}"
    );

    // The being-deleted resource waits for its credentials, as under 0.1: finalizer kept,
    // agent kept. Once they are back, the agent is deleted and the resource goes.
    let deleting = get_raw(&client, ns, "deleting").await.expect("kept");
    assert!(
        deleting["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "pipecat.daily.co/cleanup")),
        "{}",
        deleting["metadata"]
    );
    assert!(env.remote("deleting").await.is_some());
    drop(versions);
    create_key_secret(&client, ns, DELETING_SECRET).await;
    env.wait_gone("deleting", Duration::from_secs(60)).await;
    assert!(env.remote("deleting").await.is_none());
    let deletes: Vec<Option<String>> = env
        .admin
        .journal(&JournalFilter {
            operation: Some("delete_agent".into()),
            ..JournalFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.agent)
        .collect();
    assert_eq!(deletes, vec![Some("deleting".to_string())]);
    for op in ["create_agent", "update_agent"] {
        assert_eq!(env.calls(op).await, 0, "{op}");
    }
    support::reliability::check_operator_alive(&env)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The capture (run once, at the 0.1 commit)

/// Writes `tests/fixtures/v0.1/` from a real run of the operator of this checkout. Run it
/// alone, at commit 75ae0a6:
/// `cargo test --test upgrade -- --ignored --exact capture_v0_1_fixtures`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/v0.1/ from this checkout's operator: run it only at the 0.1 commit (75ae0a6), with `cargo test --test upgrade -- --ignored --exact capture_v0_1_fixtures` after removing the old fixtures (see tests/fixtures/v0.1/README.md)"]
async fn capture_v0_1_fixtures() {
    assert!(
        !fixture_path("pipecatagents.yaml").exists(),
        "tests/fixtures/v0.1/ exists: those fixtures describe 0.1 and are never regenerated \
         (remove the directory first only to redo the capture at commit 75ae0a6)"
    );
    let cp = ControlPlane::get();
    cp.apply_crds();
    let client = cp.client();
    let ns = FIXTURE_NS;
    create_namespace(&client, ns).await;
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("emulator-state.json");
    let emulator = emulator::start(emulator::Config {
        api_keys: vec![API_KEY.to_string()],
        crash_image_pattern: Some(CRASH_PATTERN.into()),
        state_file: Some(state_file.clone()),
        ..emulator::Config::default()
    })
    .await
    .unwrap();
    let admin = emulator.admin();
    admin
        .create_secret_set(API_KEY, "voice-starter-secrets", &[("OPENAI_API_KEY", "x")])
        .await
        .unwrap();
    admin
        .create_image_pull_secret_set(API_KEY, "dockerhub-credentials", "docker.io", "user:pass")
        .await
        .unwrap();
    let operator = Operator::start(cp, ns, &emulator.base_url(), Duration::from_secs(2), &[]);
    let env = Env {
        contract: ContractGuard::new(&emulator),
        cp,
        ns: ns.to_string(),
        emulator,
        admin,
        operator,
    };
    create_key_secret(&client, ns, "pipecat-api-key").await;
    create_key_secret(&client, ns, DELETING_SECRET).await;
    let api = agents_api(&client, ns);
    let create = async |name: &str, spec: Value| {
        let obj = json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name}, "spec": spec,
        });
        api.create(&PostParams::default(), &to_object(obj))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    };
    let set_image = async |name: &str, image: &str| {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": image}})),
        )
        .await
        .unwrap_or_else(|e| panic!("updating {name}: {e}"));
    };
    let wait = async |name: &str, what: &str, pred: fn(&Value) -> bool| {
        wait_raw(&client, ns, name, what, Duration::from_secs(60), pred).await
    };

    create(
        "created",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "nodeType": "arm",
            "imagePullSecretSet": "dockerhub-credentials",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 10},
            "enableKrisp": false,
            "krispViva": {"audioFilter": "tel"},
            "agentProfile": "agent-2x",
            "maxSessionDuration": 3600,
            "region": "us-west",
            "deletionPolicy": "Delete",
            "redeployToken": "2026-11-28T10:00",
        }),
    )
    .await;
    wait("created", "Ready", is_ready).await;

    create(
        "created-build",
        json!({
            "buildId": "0d5c1f8e-3b7a-4c2e-9f10-6a2b8c4d5e6f",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 3},
        }),
    )
    .await;
    wait("created-build", "Ready", is_ready).await;

    create(
        "updated",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 10},
        }),
    )
    .await;
    wait("updated", "Ready", is_ready).await;
    set_image("updated", "your-dockername/voice-starter:0.2").await;
    wait("updated", "Ready on generation 2", |o| {
        o["metadata"]["generation"] == 2 && is_ready(o)
    })
    .await;

    // An agent made with the CLI before the resource existed.
    let body = json!({
        "serviceName": "adopted",
        "image": "your-dockername/voice-starter:0.1",
        "secretSet": "voice-starter-secrets",
        "autoScaling": {"minAgents": 0, "maxAgents": 5},
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/agents", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    create(
        "adopted",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 5},
        }),
    )
    .await;
    wait("adopted", "Ready", is_ready).await;
    support::reliability::wait_event(
        &env,
        "adopted",
        "Normal",
        "Adopted",
        Duration::from_secs(30),
    )
    .await
    .unwrap();

    create(
        "failed",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 10},
        }),
    )
    .await;
    wait("failed", "Ready", is_ready).await;
    set_image("failed", "your-dockername/voice-starter:crash-0.2").await;
    wait(
        "failed",
        "Ready=False CrashLoopBackOff on generation 2",
        |o| {
            o["metadata"]["generation"] == 2
                && cond_field(o, "Ready", "reason") == Some("CrashLoopBackOff")
                && condition(o, "Ready").is_some_and(|c| c["observedGeneration"] == 2)
        },
    )
    .await;

    create(
        "conflict-a",
        json!({
            "agentName": SHARED_AGENT,
            "image": "team-a/bot:1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 3},
        }),
    )
    .await;
    wait("conflict-a", "Ready", is_ready).await;
    // Created later (creation timestamps have one-second resolution).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create(
        "conflict-b",
        json!({
            "agentName": SHARED_AGENT,
            "image": "team-b/bot:9",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 3},
        }),
    )
    .await;
    wait("conflict-b", "Synced=False NameConflict", |o| {
        cond_field(o, "Synced", "reason") == Some("NameConflict")
    })
    .await;

    create(
        "deleting",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 2},
            "credentials": {"secretRef": {"name": DELETING_SECRET}},
        }),
    )
    .await;
    wait("deleting", "Ready", is_ready).await;
    Api::<Secret>::namespaced(client.clone(), ns)
        .delete(DELETING_SECRET, &DeleteParams::default())
        .await
        .unwrap();
    // The operator's Secret watch forgets the key.
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.delete("deleting", &DeleteParams::default())
        .await
        .unwrap();
    support::reliability::wait_event(
        &env,
        "deleting",
        "Warning",
        "DeleteBlocked",
        Duration::from_secs(30),
    )
    .await
    .unwrap();

    // Freeze: stop the operator, then read everything.
    let Env {
        emulator,
        mut operator,
        ..
    } = env;
    operator.kill();
    let mut docs = Vec::new();
    for (name, what) in STATES {
        let mut obj = get_raw(&client, ns, name)
            .await
            .unwrap_or_else(|| panic!("{name} is gone"));
        let meta = obj["metadata"].as_object_mut().unwrap();
        for server_set in [
            "uid",
            "resourceVersion",
            "managedFields",
            "creationTimestamp",
        ] {
            meta.remove(server_set);
        }
        docs.push(format!(
            "# {name}: {what}\n{}",
            serde_saphyr::to_string(&obj).unwrap()
        ));
    }
    let http = reqwest::Client::new();
    let mut remote = BTreeMap::new();
    let names: BTreeSet<String> = STATES
        .iter()
        .map(|(name, _)| match *name {
            "conflict-a" | "conflict-b" => SHARED_AGENT.to_string(),
            n => n.to_string(),
        })
        .collect();
    for name in names {
        let agent: Value = http
            .get(format!("{}/agents/{name}", emulator.base_url()))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        remote.insert(name, agent);
    }
    emulator.shutdown().await;
    let state: Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).expect("state file");

    std::fs::create_dir_all(FIXTURES).unwrap();
    let header =
        "# PipecatAgent objects as the 0.1 operator left them (tests/fixtures/v0.1/README.md).\n";
    std::fs::write(
        fixture_path("pipecatagents.yaml"),
        format!("{header}{}", docs.join("---\n")),
    )
    .unwrap();
    std::fs::write(
        fixture_path("remote-agents.json"),
        serde_json::to_string_pretty(&remote).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(
        fixture_path("emulator-state.json"),
        serde_json::to_string_pretty(&state).unwrap() + "\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(CRDS).join("pipecatagents.pipecat.daily.co.yaml"),
        fixture_path("crd.yaml"),
    )
    .unwrap();
}
