//! Upgrading from an earlier release line: the `PipecatAgent` (and `PipecatSecretSet`) objects
//! an earlier operator left behind (their status, their finalizers), stored under that
//! version's CRDs, with the agents and secret sets it made still in Pipecat Cloud, are taken
//! over by the current CRDs and operator without anything the user did not ask for: no request
//! to Pipecat Cloud but reads (no create, update or delete of an agent, no forced redeploy, no
//! secret set sent, no key deleted), no agent taken for someone else's, Ready where the earlier
//! version said Ready, and the current status fields filled on the first pass.
//!
//! Each earlier version is a fixture set under `tests/fixtures/`, captured from a real run of
//! that version's operator by an ignored test below (see the README of each directory):
//!
//! - `v0.1/`: 0.1 (commit 75ae0a6), written by `capture_v0_1_fixtures`;
//! - `dc6702c/`: commit dc6702c, the last of the release line that still sent `enableKrisp`
//!   (and fingerprinted it in `status.appliedConfigHash`), sent a removed secret set as null
//!   and redeployed for image-pull set rotations; with `PipecatSecretSet`s. Written by
//!   `capture_dc6702c_fixtures`. Its agents with `enableKrisp` may get the current fingerprint
//!   in `status.appliedConfigHash`, but nothing is sent for them.
//!
//! The two sets are staged one after the other on the same control plane (each under its own
//! CRDs, then the current ones) in namespaces of their own, and checked by the same tests.

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
use pipecat_cloud_emulator::{
    self as emulator, ConfigUpdate, JournalFilter, MAX_AGENTS_LIMIT, Profile, ResetOptions,
};
use pipecat_operator::agents::desired::desired_from_spec;
use pipecat_operator::crd::{PipecatAgent, PipecatAgentSpec};
use serde_json::{Value, json};
use support::controlplane::{ControlPlane, describe_output, kubectl_stdin};
use support::operator::{API_KEY, ContractGuard, Env, Operator};

/// The current CRDs.
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
/// The field manager 0.1 and dc6702c wrote status with (server-side apply).
const OPERATOR_MANAGER: &str = "pipecat-operator";
/// The emulator's crash pattern during the captures.
const CRASH_PATTERN: &str = "*:crash*";
/// The Secret the being-deleted resource reads its key from; removed before its deletion.
const DELETING_SECRET: &str = "deleting-credentials";
/// The agent name both conflicting resources claim.
const SHARED_AGENT: &str = "shared-agent";

/// What one earlier version of the operator left behind, under `tests/fixtures/<version>/`.
struct FixtureSet {
    /// The directory under `tests/fixtures/`.
    version: &'static str,
    /// How messages name the version.
    label: &'static str,
    /// The namespace the fixtures were captured in (and are loaded back into).
    ns: &'static str,
    /// The `PipecatAgent` objects, in the order they were created, with what each one shows.
    states: &'static [(&'static str, &'static str)],
    /// The `PipecatSecretSet` objects, in the order they were created (none before dc6702c).
    secret_sets: &'static [(&'static str, &'static str)],
}

impl FixtureSet {
    fn path(&self, file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(self.version)
            .join(file)
    }
}

/// What commit dc6702c (the last of the 0.2 line before `enableKrisp` stopped being sent) left
/// behind.
const DC6702C: FixtureSet = FixtureSet {
    version: "dc6702c",
    label: "dc6702c",
    ns: "pipecat-dc6702c",
    states: &[
        (
            "created",
            "created from an image, every spec field set (redeployToken and enableKrisp: false included); Ready",
        ),
        (
            "krisp-on",
            "created with enableKrisp: true (a field that commit sent and fingerprinted); Ready",
        ),
        (
            "managed-sets",
            "secretSet and imagePullSecretSet both managed by PipecatSecretSets, each rotated once and redeployed for (secretSetRevisions at revision 2); Ready",
        ),
        (
            "created-build",
            "created from a buildId (a field Pipecat Cloud does not report back) with enableKrisp: false: a fingerprint not recognised makes the operator send an update here; Ready",
        ),
        (
            "updated",
            "created, then its image changed once (generation 2); Ready on the new deployment",
        ),
        (
            "adopted",
            "the agent existed in Pipecat Cloud before the resource, which adopted it (spec.adopt: true); Ready",
        ),
        (
            "failed",
            "created, then updated to a crashing image: Ready=False CrashLoopBackOff, the previous deployment still serving",
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
            "not-converging",
            "maxAgents above what Pipecat Cloud keeps (a server clamping it), with enableKrisp: false: Synced=False NotConverging, the refused update (and its fingerprint) recorded in status.nonConvergence",
        ),
        (
            "deleting",
            "its credentials Secret was removed (its in-use finalizer taken off by hand), then the resource deleted: deletionTimestamp set, finalizer kept (DeleteBlocked)",
        ),
    ],
    secret_sets: &[
        (
            "bot-env",
            "an Env set from the Opaque Secret bot-env-values, rotated once (revision 2); Ready",
        ),
        (
            "bot-registry",
            "an ImagePull set from the kubernetes.io/dockerconfigjson Secret registry-login, rotated once (revision 2); Ready",
        ),
    ],
};

/// What 0.1 left behind: the objects, in the order 0.1 saw them created, with what each one
/// shows.
const V0_1: FixtureSet = FixtureSet {
    version: "v0.1",
    label: "0.1",
    ns: "pipecat-v01",
    states: &[
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
    ],
    secret_sets: &[],
};

/// Every fixture set, oldest first.
const FIXTURE_SETS: [&FixtureSet; 2] = [&V0_1, &DC6702C];

// ---------------------------------------------------------------------------------------------
// Fixtures

/// What an earlier version left behind.
struct Fixtures {
    /// The namespace they were captured in.
    ns: &'static str,
    /// The `PipecatAgent` objects (spec, status, finalizers, deletionTimestamp), in creation
    /// order.
    objects: Vec<Value>,
    /// The `PipecatSecretSet` objects (spec, status, finalizers), in creation order.
    secret_sets: Vec<Value>,
    /// The Secrets as that version left them (metadata, type, values), in its namespace and
    /// in the operator's; an API key Secret has no values (the tests' key is put back).
    secrets: Vec<Value>,
    /// The agents as Pipecat Cloud (the emulator) answered `GET /v1/agents/{name}`, by name.
    remote: BTreeMap<String, Value>,
    /// The emulator's state file (format version 1): the same agents, deployments and secret
    /// sets.
    emulator_state: String,
}

fn read_fixture(set: &FixtureSet, file: &str) -> String {
    std::fs::read_to_string(set.path(file))
        .unwrap_or_else(|e| panic!("reading tests/fixtures/{}/{file}: {e}", set.version))
}

/// The objects of a YAML fixture file, checked against the names the set expects.
fn read_objects(set: &FixtureSet, file: &str, expected: &[(&str, &str)]) -> Vec<Value> {
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&read_fixture(set, file)).expect("the fixture objects parse");
    let names: Vec<&str> = objects.iter().map(name_of).collect();
    let expected: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "tests/fixtures/{}/{file}", set.version);
    objects
}

fn fixtures(set: &'static FixtureSet) -> Fixtures {
    let secret_sets = if set.secret_sets.is_empty() {
        Vec::new()
    } else {
        read_objects(set, "pipecatsecretsets.yaml", set.secret_sets)
    };
    let secrets = if set.path("secrets.yaml").exists() {
        serde_saphyr::from_multiple(&read_fixture(set, "secrets.yaml")).expect("secrets.yaml")
    } else {
        // 0.1 left no mark on Secrets: the default credentials, as the user made them.
        vec![json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pipecat-api-key"}})]
    };
    Fixtures {
        ns: set.ns,
        objects: read_objects(set, "pipecatagents.yaml", set.states),
        secret_sets,
        secrets,
        remote: serde_json::from_str(&read_fixture(set, "remote-agents.json"))
            .expect("remote-agents.json"),
        emulator_state: read_fixture(set, "emulator-state.json"),
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

/// True for the objects the earlier version synced with Pipecat Cloud at least once (it
/// recorded what it sent).
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
// Kubernetes helpers (raw JSON, so that nothing of an earlier version's object is lost in the
// current types)

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

fn pipecat_secret_sets() -> ApiResource {
    ApiResource {
        group: "pipecat.daily.co".into(),
        version: "v1alpha1".into(),
        api_version: "pipecat.daily.co/v1alpha1".into(),
        kind: "PipecatSecretSet".into(),
        plural: "pipecatsecretsets".into(),
    }
}

fn secret_sets_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &pipecat_secret_sets())
}

/// An object as read, without what the API server sets (and cannot be loaded back).
fn without_server_fields(mut obj: Value) -> Value {
    let meta = obj["metadata"].as_object_mut().expect("metadata");
    for server_set in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
    ] {
        meta.remove(server_set);
    }
    obj
}

fn to_object(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a Kubernetes object")
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

/// Creates the fixture objects (of kind `resource`) in `ns` as the earlier version left them:
/// the user's object (same generation), the status that version wrote (server-side apply
/// through the status subresource, by its field manager), and the deletion of the one being
/// deleted. Panics on any refusal.
async fn load(client: &Client, ns: &str, resource: &ApiResource, objects: &[Value]) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
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
            &PatchParams::apply(OPERATOR_MANAGER).force(),
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

/// The secret sets first (as they were created), then the agents.
async fn load_all(client: &Client, ns: &str, fx: &Fixtures) {
    load(client, ns, &pipecat_secret_sets(), &fx.secret_sets).await;
    load(client, ns, &pipecat_agents(), &fx.objects).await;
}

/// Creates the Secrets the fixture had in namespace `captured_in` (the fixtures' namespace
/// when a Secret names none) in `ns`: metadata (finalizers included), type, values; an API key
/// Secret gets the tests' key.
async fn load_secrets(client: &Client, ns: &str, fx: &Fixtures, captured_in: &str) {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    for fixture in &fx.secrets {
        let name = name_of(fixture);
        let fixture_ns = fixture["metadata"]["namespace"].as_str();
        if fixture_ns.unwrap_or(fx.ns) != captured_in {
            continue;
        }
        let meta = &fixture["metadata"];
        let mut obj = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "stringData": fixture.get("stringData").cloned().unwrap_or(json!({"api-key": API_KEY})),
        });
        for field in ["labels", "annotations", "finalizers"] {
            if let Some(v) = meta.get(field) {
                obj["metadata"][field] = v.clone();
            }
        }
        if let Some(t) = fixture.get("type") {
            obj["type"] = t.clone();
        }
        let secret: Secret = serde_json::from_value(obj).expect("a Secret");
        api.create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {ns}/{name}: {e}"));
    }
}

/// Staged once per test binary, for each fixture set in turn: its version's CRDs, its fixtures
/// loaded under them (one copy for the operator, one for the CRD checks), then the upgrade to
/// the current CRDs. A later set's older CRDs are applied over the current ones while the
/// earlier sets' objects sit unwritten (a CRD only matters to the writes made under it).
struct Staged {
    /// The outcome of `kubectl apply --server-side --force-conflicts` of `crds/`.
    crd_upgrade: Result<(), String>,
    /// The copy the CRD checks write to.
    crd_ns: String,
}

async fn staged(set: &FixtureSet) -> &'static Staged {
    static STAGED: tokio::sync::OnceCell<BTreeMap<&'static str, Staged>> =
        tokio::sync::OnceCell::const_new();
    let all = STAGED
        .get_or_init(|| async {
            let cp = ControlPlane::get();
            let client = cp.client();
            let mut all = BTreeMap::new();
            for set in FIXTURE_SETS {
                let fx = fixtures(set);
                apply_crds(cp, set.path("crd.yaml").to_str().unwrap())
                    .unwrap_or_else(|e| panic!("installing the CRDs of {}: {e}", set.label));
                create_namespace(&client, set.ns).await;
                // The operator's own Secrets (the secret sets' digest key), before any
                // operator starts.
                load_secrets(&client, OPERATOR_NS, &fx, OPERATOR_NS).await;
                load_all(&client, set.ns, &fx).await;
                let crd_ns = cp.namespace("upgrade-crd");
                load_all(&client, &crd_ns, &fx).await;
                let staged = Staged {
                    crd_upgrade: apply_crds(cp, CRDS),
                    crd_ns,
                };
                all.insert(set.version, staged);
            }
            all
        })
        .await;
    &all[set.version]
}

// ---------------------------------------------------------------------------------------------
// The CRD upgrade path

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_crd_applies_over_0_1_and_its_objects_stay_valid() {
    crd_upgrade_keeps_objects_valid(&V0_1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_crds_apply_over_dc6702c_and_its_objects_stay_valid() {
    crd_upgrade_keeps_objects_valid(&DC6702C).await;
}

async fn crd_upgrade_keeps_objects_valid(set: &'static FixtureSet) {
    let staged = staged(set).await;
    let v = set.label;
    if let Err(e) = &staged.crd_upgrade {
        panic!(
            "kubectl apply --server-side --force-conflicts -f crds/ over the {v} CRDs failed: {e}"
        );
    }
    let cp = ControlPlane::get();
    let client = cp.client();
    let fx = fixtures(set);
    let ns = staged.crd_ns.as_str();
    let kubectl_in = |args: &[&str], stdin: &str| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        kubectl_stdin(cp.kubeconfig_path(), &all, stdin)
    };
    // Each kind, with a status write its status schema takes.
    let kinds = [
        (
            pipecat_agents(),
            &fx.objects,
            r#"{"status":{"activeSessionCount":1}}"#,
        ),
        (
            pipecat_secret_sets(),
            &fx.secret_sets,
            r#"{"status":{"remoteStatus":"ready"}}"#,
        ),
    ];
    let get = async |resource: &ApiResource, ns: &str, name: &str| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
        to_value(&api.get(name).await.expect("stored object"))
    };

    for (resource, objects, status_patch) in &kinds {
        let kind = resource.kind.to_lowercase();
        for fixture in objects.iter() {
            let name = name_of(fixture);
            let stored = get(resource, ns, name).await;

            // An update of the stored object as it is (what every write of the operator or the
            // user goes through, transition rules with oldSelf included).
            let out = kubectl_in(
                &["replace", "--dry-run=server", "-f", "-"],
                &stored.to_string(),
            );
            assert!(
                out.status.success(),
                "{kind} {name}: the stored {v} object is refused as an update under the current CRD: {}",
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
                "{kind} {name}: a server-side apply of the {v} spec is refused under the current CRD: {}",
                describe_output(&out)
            );

            // A status write through the status subresource.
            let out = kubectl_in(
                &[
                    "patch",
                    &kind,
                    name,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    status_patch,
                ],
                "",
            );
            assert!(
                out.status.success(),
                "{kind} {name}: a status patch of the stored {v} object is refused under the current CRD: {}",
                describe_output(&out)
            );

            // Nothing of the user's spec was pruned away.
            assert_contains(
                &fixture["spec"],
                &stored["spec"],
                &format!("{kind} {name}: spec"),
            );
        }
    }

    // The same objects created afresh under the current CRD: full validation of spec and
    // status (an update of an unchanged object can be let through by validation ratcheting).
    let fresh = cp.namespace("upgrade-fresh");
    load_all(&client, &fresh, &fx).await;
    for (resource, objects, _) in &kinds {
        for fixture in objects.iter() {
            let name = name_of(fixture);
            let stored = get(resource, &fresh, name).await;
            assert_contains(
                &fixture["spec"],
                &stored["spec"],
                &format!("{} {name}: spec", resource.kind),
            );
        }
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
                    None => panic!("{here} was dropped under the current CRD (it had {v})"),
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

async fn get_secret_set_calls(env: &Env, set: &str) -> usize {
    env.admin
        .journal(&JournalFilter {
            operation: Some("get_secret_set".into()),
            secret_set: Some(set.into()),
            ..JournalFilter::default()
        })
        .await
        .expect("journal")
        .len()
}

/// The requests to Pipecat Cloud since the journal was reset that are not reads.
async fn non_get_requests(env: &Env) -> Vec<String> {
    env.admin
        .journal(&JournalFilter::default())
        .await
        .expect("journal")
        .iter()
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {} -> {:?}", e.method, e.path, e.status))
        .collect()
}

/// `status.appliedConfigHash` of `now` is the one the earlier version recorded, or, for a spec
/// with `enableKrisp` (which that version fingerprinted and the current one ignores), the
/// current fingerprint of the same spec.
fn assert_fingerprint(now: &Value, then: &Value) {
    let name = name_of(then);
    let (now_hash, then_hash) = (
        &now["status"]["appliedConfigHash"],
        &then["status"]["appliedConfigHash"],
    );
    if now_hash == then_hash {
        return;
    }
    assert!(
        then["spec"].get("enableKrisp").is_some(),
        "{name}: status.appliedConfigHash {now_hash} was {then_hash}"
    );
    let spec: PipecatAgentSpec = serde_json::from_value(now["spec"].clone()).expect("spec");
    let current = desired_from_spec(agent_name_of(now), &spec).hash;
    assert_eq!(
        now_hash.as_str(),
        Some(current.as_str()),
        "{name}: status.appliedConfigHash was {then_hash}, now neither that nor the current fingerprint"
    );
}

/// The `PipecatSecretSet`s keep what the earlier version said: the same revisions and values
/// digest (nothing resent), the same Ready and Synced.
async fn check_secret_sets(client: &Client, ns: &str, fx: &Fixtures) {
    let api = secret_sets_api(client, ns);
    for then in &fx.secret_sets {
        let name = name_of(then);
        let now = to_value(&api.get(name).await.expect("the set is still there"));
        for field in [
            "setName",
            "revision",
            "readyRevision",
            "valuesDigest",
            "keys",
        ] {
            assert_eq!(
                now["status"][field], then["status"][field],
                "PipecatSecretSet {name}: status.{field}"
            );
        }
        for type_ in ["Ready", "Synced"] {
            for field in ["status", "reason"] {
                assert_eq!(
                    cond_field(&now, type_, field),
                    cond_field(then, type_, field),
                    "PipecatSecretSet {name}: condition {type_} {field}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_0_1_changes_nothing_the_user_did_not_ask_for() {
    upgrade_changes_nothing(&V0_1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_dc6702c_changes_nothing_the_user_did_not_ask_for() {
    upgrade_changes_nothing(&DC6702C).await;
}

async fn upgrade_changes_nothing(set: &'static FixtureSet) {
    let staged = staged(set).await;
    if let Err(e) = &staged.crd_upgrade {
        panic!("the CRD upgrade failed: {e}");
    }
    let cp = ControlPlane::get();
    let client = cp.client();
    let fx = fixtures(set);
    let ns = set.ns;

    // The Secrets as the earlier version left them: the default credentials (the
    // being-deleted resource's own Secret was removed before its deletion), and the values of
    // the secret sets.
    load_secrets(&client, ns, &fx, ns).await;

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
    .expect("emulator starts from the earlier version's state");
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
        // The manifest now uses the contract's names: maxSessionDurationSeconds, and
        // krispViva.audioFilters (whether a filter runs) for krispViva.audioFilter; a string it
        // does not have (a build agent's image) is left out rather than null; and `enableKrisp`,
        // gone from the API, is no longer honoured: krispModels is always disabled.
        let mut expected = then["deployment"]["manifest"]["spec"].clone();
        if let Some(spec) = expected.as_object_mut() {
            spec.retain(|_, v| !v.is_null());
            if spec.contains_key("krispModels") {
                spec.insert("krispModels".into(), json!({ "enabled": false }));
            }
            if let Some(seconds) = spec.remove("maxSessionDuration") {
                spec.insert("maxSessionDurationSeconds".into(), seconds);
            }
            if let Some(viva) = spec.remove("krispViva") {
                let filters = !viva["audioFilter"].is_null();
                spec.insert("krispViva".into(), json!({ "audioFilters": filters }));
            }
        }
        assert_eq!(
            now["deployment"]["manifest"]["spec"], expected,
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
    for set in &fx.secret_sets {
        let set = name_of(set);
        eventually(
            &format!("two reads of secret set {set}"),
            Duration::from_secs(60),
            &env,
            async || get_secret_set_calls(&env, set).await >= 2,
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
    .expect("the blocked deletion is reported as the earlier version did");

    // Nothing was sent to Pipecat Cloud but reads: no agent write, and no other request that
    // is not a GET either (secret set PUTs, key DELETEs, sessions, ...).
    let counts = env.admin.counts().await.unwrap();
    let journal = env.admin.journal(&JournalFilter::default()).await.unwrap();
    assert!(
        journal.iter().any(|e| e.operation == "get_agent"),
        "the journal holds the operator's reads: {journal:#?}"
    );
    let writes: Vec<String> = journal
        .iter()
        .filter(|e| e.method != "GET")
        .map(|e| {
            format!(
                "{} {} ({}) -> {:?}",
                e.method, e.path, e.operation, e.status
            )
        })
        .collect();
    for op in ["create_agent", "update_agent", "delete_agent"] {
        assert_eq!(
            counts.operation(op),
            0,
            "{op} after the upgrade: {writes:#?}"
        );
    }
    assert!(
        writes.is_empty(),
        "requests other than reads after the upgrade: {writes:#?}"
    );
    assert!(
        journal.len() as u64 >= counts.total,
        "the journal dropped requests ({} kept of {}): some went unchecked",
        journal.len(),
        counts.total
    );

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
                    "{at}: condition {type_} {field} ({} said {cond})",
                    set.label
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
            // The same fingerprint (a new one would make every agent look changed; only a
            // spec with enableKrisp may have the current one recorded), the same agent and
            // deployments (no redeploy).
            assert_fingerprint(&now, then);
            for field in [
                "agentName",
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
            assert!(
                is_ready(&now),
                "{name}: Ready under {}, not now: {st}",
                set.label
            );
        } else {
            assert!(
                !is_ready(&now),
                "{name}: not Ready under {}, Ready now: {st}",
                set.label
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

    // Not one request but reads, to agents or secret sets, over all those passes.
    let requests = non_get_requests(&env).await;
    assert!(
        requests.is_empty(),
        "requests other than GET after the upgrade from {}: {requests:#?}",
        set.label
    );
    check_secret_sets(&client, ns, &fx).await;

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
        !V0_1.path("pipecatagents.yaml").exists(),
        "tests/fixtures/v0.1/ exists: those fixtures describe 0.1 and are never regenerated \
         (remove the directory first only to redo the capture at commit 75ae0a6)"
    );
    let cp = ControlPlane::get();
    cp.apply_crds();
    let client = cp.client();
    let ns = V0_1.ns;
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
    for (name, what) in V0_1.states {
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
    let names: BTreeSet<String> = V0_1
        .states
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

    std::fs::create_dir_all(V0_1.path("")).unwrap();
    let header =
        "# PipecatAgent objects as the 0.1 operator left them (tests/fixtures/v0.1/README.md).\n";
    std::fs::write(
        V0_1.path("pipecatagents.yaml"),
        format!("{header}{}", docs.join("---\n")),
    )
    .unwrap();
    std::fs::write(
        V0_1.path("remote-agents.json"),
        serde_json::to_string_pretty(&remote).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(
        V0_1.path("emulator-state.json"),
        serde_json::to_string_pretty(&state).unwrap() + "\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(CRDS).join("pipecatagents.pipecat.daily.co.yaml"),
        V0_1.path("crd.yaml"),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The capture of commit dc6702c (run once, at that commit)

/// The Secrets of a capture, in the order they were created; the `api-key` of the credentials
/// Secrets is left out of the fixture (the loader puts the tests' key back).
const DC6702C_SECRETS: &[&str] = &["pipecat-api-key", "bot-env-values", "registry-login"];
/// The operator's own namespace in the tests (no `POD_NAMESPACE`: the default of
/// `--leader-election-namespace`), where the secret sets' digest key lives.
const OPERATOR_NS: &str = "default";
/// The Secret keying `status.valuesDigest` of the secret sets, in [`OPERATOR_NS`].
const DIGEST_KEY_SECRET: &str = "pipecat-operator-digest-key";
/// The digest key of the capture: a fixed test value, so that the fixture can hold it (the
/// operator generates a random one when the Secret does not exist).
const DIGEST_KEY: &str = "dc6702c-upgrade-fixture-digest-key";

/// Writes `tests/fixtures/dc6702c/` from a real run of the operator of this checkout. Run it
/// alone, at commit dc6702c (the operator of that commit and its `tests/support/`):
/// `cargo test --locked --test upgrade -- --ignored --exact capture_dc6702c_fixtures`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/dc6702c/ from this checkout's operator: run it only at commit dc6702c, with `cargo test --locked --test upgrade -- --ignored --exact capture_dc6702c_fixtures` after removing the old fixtures (see tests/fixtures/dc6702c/README.md)"]
async fn capture_dc6702c_fixtures() {
    let set = &DC6702C;
    assert!(
        !set.path("pipecatagents.yaml").exists(),
        "tests/fixtures/dc6702c/ exists: those fixtures describe commit dc6702c and are never \
         regenerated (remove the directory first only to redo the capture at that commit)"
    );
    let cp = ControlPlane::get();
    cp.apply_crds();
    let client = cp.client();
    let ns = set.ns;
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
    // The digest key as the operator would have made it, with a fixed value.
    let key_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": DIGEST_KEY_SECRET,
            "labels": {"app.kubernetes.io/managed-by": "pipecat-operator"},
            "annotations": {
                "pipecat.daily.co/purpose":
                    "keys the digests of PipecatSecretSet values (status.valuesDigest)",
            },
        },
        "stringData": {"key": DIGEST_KEY},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .create(&PostParams::default(), &key_secret)
        .await
        .expect("creating the digest key Secret");
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
    let sets = secret_sets_api(&client, ns);
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
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
    let wait = async |name: &str, what: &str, pred: &dyn Fn(&Value) -> bool| {
        wait_raw(&client, ns, name, what, Duration::from_secs(60), pred).await
    };
    let wait_set = async |name: &str, what: &str, pred: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = sets.get_opt(name).await.unwrap().map(|o| to_value(&o));
            if let Some(obj) = &last
                && pred(obj)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} on PipecatSecretSet {name}; last seen: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let set_at = |revision: i64| {
        move |o: &Value| {
            o["status"]["revision"] == revision
                && o["status"]["readyRevision"] == revision
                && condition(o, "Ready").is_some_and(|c| {
                    c["status"] == "True" && c["observedGeneration"] == o["metadata"]["generation"]
                })
        }
    };
    let recorded = |o: &Value, set: &str| {
        o["status"]["secretSetRevisions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == set)
            .and_then(|r| r["revision"].as_i64())
    };
    let put_secret = async |obj: Value| {
        let secret: Secret = serde_json::from_value(obj).unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating a Secret: {e}"));
    };
    let docker_config = |password: &str| {
        json!({"auths": {"ghcr.io": {"username": "bot", "password": password}}}).to_string()
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
    wait("created", "Ready", &is_ready).await;

    create(
        "krisp-on",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 3},
            "enableKrisp": true,
        }),
    )
    .await;
    wait("krisp-on", "Ready", &is_ready).await;

    // Both secret sets of an agent kept by PipecatSecretSets, each rotated once.
    put_secret(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bot-env-values"},
        "type": "Opaque",
        "stringData": {"OPENAI_API_KEY": "openai-test-v1", "DEEPGRAM_API_KEY": "deepgram-test-v1"},
    }))
    .await;
    put_secret(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-login"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": docker_config("registry-test-v1")},
    }))
    .await;
    for (name, spec) in [
        ("bot-env", json!({"secretRef": {"name": "bot-env-values"}})),
        (
            "bot-registry",
            json!({"type": "ImagePull", "secretRef": {"name": "registry-login"}}),
        ),
    ] {
        let obj = json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
            "metadata": {"name": name}, "spec": spec,
        });
        sets.create(&PostParams::default(), &to_object(obj))
            .await
            .unwrap_or_else(|e| panic!("creating PipecatSecretSet {name}: {e}"));
        wait_set(name, "revision 1 ready", &set_at(1)).await;
    }
    create(
        "managed-sets",
        json!({
            "image": "ghcr.io/acme/bot:1",
            "secretSet": "bot-env",
            "imagePullSecretSet": "bot-registry",
            "autoScaling": {"minAgents": 0, "maxAgents": 2},
        }),
    )
    .await;
    wait("managed-sets", "Ready", &is_ready).await;
    secrets
        .patch(
            "bot-env-values",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"OPENAI_API_KEY": "openai-test-v2"}})),
        )
        .await
        .unwrap();
    wait_set("bot-env", "revision 2 ready", &set_at(2)).await;
    wait("managed-sets", "bot-env revision 2 rolled out", &|o| {
        recorded(o, "bot-env") == Some(2) && is_ready(o)
    })
    .await;
    secrets
        .patch(
            "registry-login",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"stringData": {".dockerconfigjson": docker_config("registry-test-v2")}}),
            ),
        )
        .await
        .unwrap();
    wait_set("bot-registry", "revision 2 ready", &set_at(2)).await;
    wait("managed-sets", "bot-registry revision 2 rolled out", &|o| {
        recorded(o, "bot-registry") == Some(2) && recorded(o, "bot-env") == Some(2) && is_ready(o)
    })
    .await;

    create(
        "created-build",
        json!({
            "buildId": "0d5c1f8e-3b7a-4c2e-9f10-6a2b8c4d5e6f",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 3},
            "enableKrisp": false,
        }),
    )
    .await;
    wait("created-build", "Ready", &is_ready).await;

    create(
        "updated",
        json!({
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 10},
        }),
    )
    .await;
    wait("updated", "Ready", &is_ready).await;
    set_image("updated", "your-dockername/voice-starter:0.2").await;
    wait("updated", "Ready on generation 2", &|o| {
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
            "adopt": true,
            "image": "your-dockername/voice-starter:0.1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": 5},
        }),
    )
    .await;
    wait("adopted", "Ready", &is_ready).await;
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
    wait("failed", "Ready", &is_ready).await;
    set_image("failed", "your-dockername/voice-starter:crash-0.2").await;
    wait(
        "failed",
        "Ready=False CrashLoopBackOff on generation 2",
        &|o| {
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
    wait("conflict-a", "Ready", &is_ready).await;
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
    wait("conflict-b", "Synced=False NameConflict", &|o| {
        cond_field(o, "Synced", "reason") == Some("NameConflict")
    })
    .await;

    // A server that clamps maxAgents (the emulator's `rewriting` profile) while this agent is
    // created, then the default profile again: the stored agent keeps the clamped value, and
    // the refusal stays recorded.
    let writes_since = async |seq: u64| -> Vec<String> {
        env.admin
            .journal(&JournalFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.seq > seq && e.method != "GET")
            .map(|e| format!("{} {} -> {:?}", e.method, e.path, e.status))
            .collect()
    };
    let last_seq = async || {
        env.admin
            .journal(&JournalFilter::default())
            .await
            .unwrap()
            .last()
            .map_or(0, |e| e.seq)
    };
    env.admin
        .set_config(ConfigUpdate {
            profile: Some(Profile::Rewriting),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    create(
        "not-converging",
        json!({
            "image": "ghcr.io/acme/bot:1",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 0, "maxAgents": MAX_AGENTS_LIMIT + 30},
            "enableKrisp": false,
        }),
    )
    .await;
    wait("not-converging", "Synced=False NotConverging", &|o| {
        cond_field(o, "Synced", "reason") == Some("NotConverging")
            && o["status"]["nonConvergence"].is_object()
    })
    .await;
    // The report is final after at most one more update.
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.admin
        .set_config(ConfigUpdate {
            profile: Some(Profile::Full),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    let seq = last_seq().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = writes_since(seq).await;
    assert!(
        writes.is_empty(),
        "writes after the profile went back to full: {writes:#?}"
    );
    wait("not-converging", "still Synced=False NotConverging", &|o| {
        cond_field(o, "Synced", "reason") == Some("NotConverging")
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
    wait("deleting", "Ready", &is_ready).await;
    // The Secret carries the agents' in-use finalizer: its deletion waits, until someone takes
    // the finalizer off by hand.
    secrets
        .delete(DELETING_SECRET, &DeleteParams::default())
        .await
        .unwrap();
    secrets
        .patch(
            DELETING_SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while secrets.get_opt(DELETING_SECRET).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "{DELETING_SECRET} is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let mut agent_docs = Vec::new();
    for (name, what) in set.states {
        let obj = get_raw(&client, ns, name)
            .await
            .unwrap_or_else(|| panic!("{name} is gone"));
        agent_docs.push(format!(
            "# {name}: {what}\n{}",
            serde_saphyr::to_string(&without_server_fields(obj)).unwrap()
        ));
    }
    let mut set_docs = Vec::new();
    for (name, what) in set.secret_sets {
        let obj = sets
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        set_docs.push(format!(
            "# {name}: {what}\n{}",
            serde_saphyr::to_string(&without_server_fields(to_value(&obj))).unwrap()
        ));
    }
    let mut secret_docs = Vec::new();
    let captured_secrets = DC6702C_SECRETS
        .iter()
        .map(|name| (ns, *name))
        .chain([(OPERATOR_NS, DIGEST_KEY_SECRET)]);
    for (secret_ns, name) in captured_secrets {
        let secret = Api::<Secret>::namespaced(client.clone(), secret_ns)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Secret {secret_ns}/{name}: {e}"));
        let mut string_data = BTreeMap::new();
        for (key, value) in secret.data.clone().unwrap_or_default() {
            let value = String::from_utf8(value.0).expect("a UTF-8 value");
            if value != API_KEY {
                string_data.insert(key, value);
            }
        }
        let mut obj = without_server_fields(serde_json::to_value(&secret).unwrap());
        obj.as_object_mut().unwrap().remove("data");
        if !string_data.is_empty() {
            obj["stringData"] = json!(string_data);
        }
        let what = if string_data.is_empty() {
            "the credentials Secret (its api-key, the tests' API key, left out)"
        } else if name == DIGEST_KEY_SECRET {
            "the secret sets' digest key, in the operator's namespace (a fixed test value)"
        } else {
            "the values of a PipecatSecretSet (test values)"
        };
        secret_docs.push(format!(
            "# {name}: {what}\n{}",
            serde_saphyr::to_string(&obj).unwrap()
        ));
    }
    let http = reqwest::Client::new();
    let mut remote = BTreeMap::new();
    let names: BTreeSet<String> = set
        .states
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

    std::fs::create_dir_all(set.path("")).unwrap();
    let header = |what: &str| {
        format!("# {what} as commit dc6702c left them (tests/fixtures/dc6702c/README.md).\n")
    };
    std::fs::write(
        set.path("pipecatagents.yaml"),
        header("PipecatAgent objects") + &agent_docs.join("---\n"),
    )
    .unwrap();
    std::fs::write(
        set.path("pipecatsecretsets.yaml"),
        header("PipecatSecretSet objects") + &set_docs.join("---\n"),
    )
    .unwrap();
    std::fs::write(
        set.path("secrets.yaml"),
        header("The Secrets the PipecatSecretSets and agents use") + &secret_docs.join("---\n"),
    )
    .unwrap();
    std::fs::write(
        set.path("remote-agents.json"),
        serde_json::to_string_pretty(&remote).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(
        set.path("emulator-state.json"),
        serde_json::to_string_pretty(&state).unwrap() + "\n",
    )
    .unwrap();
    let mut crds = String::new();
    for file in [
        "pipecatagents.pipecat.daily.co.yaml",
        "pipecatsecretsets.pipecat.daily.co.yaml",
    ] {
        crds += &std::fs::read_to_string(Path::new(CRDS).join(file)).unwrap();
    }
    std::fs::write(set.path("crd.yaml"), crds).unwrap();
}
