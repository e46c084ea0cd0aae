//! Tests of the envtest-style control plane harness itself: start-up, namespaces, minted users
//! and RBAC, kubectl, the CRDs of crds/, dedicated instances and restarts, namespace deletion
//! and garbage collection.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams,
};
use testkit::controlplane::{
    ControlPlane, KUBE_VERSION, client_from_kubeconfig, describe_output, kubectl_with,
};

fn configmap(name: &str, key: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some([(key.to_string(), value.to_string())].into()),
        ..ConfigMap::default()
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Status code of a failed list (None when it succeeded).
async fn list_secrets_status(client: &Client, ns: &str) -> Option<u16> {
    match Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.code),
        Err(e) => panic!("listing secrets in {ns}: unexpected error {e}"),
    }
}

fn can_i(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = kubectl_with(kubeconfig, &all);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // kubectl auth can-i exits 0 for yes and 1 for no.
    assert!(
        matches!(answer.as_str(), "yes" | "no"),
        "kubectl auth can-i {args:?}: {}",
        describe_output(&out)
    );
    assert_eq!(
        out.status.success(),
        answer == "yes",
        "{}",
        describe_output(&out)
    );
    (answer == "yes", answer)
}

#[tokio::test]
async fn version_is_stamped_and_configmap_round_trips() {
    let cp = ControlPlane::get();
    eprintln!("shared control plane ready in {:?}", cp.startup_duration());
    let client = cp.client();
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.git_version, KUBE_VERSION, "{version:?}");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "37")
    );

    let ns = cp.namespace("roundtrip");
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    api.create(
        &PostParams::default(),
        &configmap("greeting", "hello", "world"),
    )
    .await
    .expect("create configmap");
    let got = api.get("greeting").await.expect("get configmap");
    assert_eq!(got.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(
        got.data.unwrap().get("hello").map(String::as_str),
        Some("world")
    );

    // The kubeconfig on disk is usable by kubectl as well.
    let out = cp.kubectl(&[
        "get",
        "configmap",
        "greeting",
        "-n",
        &ns,
        "-o",
        "jsonpath={.data.hello}",
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "world");
    assert!(cp.server_url().starts_with("https://127.0.0.1:"));
    assert!(cp.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn namespaces_are_unique() {
    let cp = ControlPlane::get();
    let a = cp.namespace("Same Prefix!");
    let b = cp.namespace("Same Prefix!");
    assert_ne!(a, b);
    assert!(a.starts_with("same-prefix-"), "{a}");
    let out = cp.kubectl(&["get", "namespace", &a, &b, "-o", "name"]);
    assert!(out.status.success(), "{}", describe_output(&out));
}

#[tokio::test]
async fn minted_user_is_subject_to_rbac() {
    let cp = ControlPlane::get();
    let ns = cp.namespace("rbac");
    let other = cp.namespace("rbac-other");
    let user = format!("alice-{}", rand::random::<u32>());
    let kubeconfig = cp.mint_user(&user, &["pipecat-testers"]);
    let alice = client_from_kubeconfig(&kubeconfig);

    // Authenticated (not 401) but not authorized.
    assert_eq!(list_secrets_status(&alice, &ns).await, Some(403));
    assert_eq!(can_i(&kubeconfig, &["list", "secrets", "-n", &ns]).1, "no");

    let admin = cp.client();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("secret-reader".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("secret-reader".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "secret-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: user.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create rolebinding");

    // The RBAC authorizer reads through an informer: wait for it to see the binding.
    let deadline = Instant::now() + Duration::from_secs(20);
    while list_secrets_status(&alice, &ns).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the RoleBinding never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list_secrets_status(&alice, &other).await, Some(403));
    assert_eq!(can_i(&kubeconfig, &["list", "secrets", "-n", &ns]).1, "yes");
    assert_eq!(
        can_i(&kubeconfig, &["list", "secrets", "-n", &other]).1,
        "no"
    );
    assert_eq!(
        can_i(&kubeconfig, &["delete", "secrets", "-n", &ns]).1,
        "no"
    );
}

#[tokio::test]
async fn minted_user_groups_come_from_the_certificate() {
    let cp = ControlPlane::get();
    let ns = cp.namespace("groups");
    let group = format!("team-{}", rand::random::<u32>());
    // The group bound below is the *second* one: both Organization attributes must be read.
    let kubeconfig = cp.mint_user("bob", &["unrelated", &group]);
    let out = kubectl_with(
        &kubeconfig,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).expect("whoami JSON");
    assert_eq!(who["username"], "bob");
    assert_eq!(
        who["groups"],
        serde_json::json!(["unrelated", group, "system:authenticated"])
    );
    assert_eq!(
        can_i(&kubeconfig, &["get", "configmaps", "-n", &ns]).1,
        "no"
    );

    // (Not the built-in `view` ClusterRole: it is aggregated, and with no clusterrole
    // aggregation controller running, aggregated ClusterRoles stay empty.)
    let out = cp.kubectl(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get,list",
        "--resource=configmaps",
        "-n",
        &ns,
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = cp.kubectl(&[
        "create",
        "rolebinding",
        "team-cm-reader",
        "--role=cm-reader",
        "-n",
        &ns,
        &format!("--group={group}"),
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !can_i(&kubeconfig, &["get", "configmaps", "-n", &ns]).0 {
        assert!(
            Instant::now() < deadline,
            "the group RoleBinding never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bob = cp.client_for_user("bob", &["unrelated", &group]);
    Api::<ConfigMap>::namespaced(bob, &ns)
        .list(&ListParams::default())
        .await
        .expect("bob lists configmaps through his group");
}

#[tokio::test]
async fn kubectl_apply_through_the_helper() {
    let cp = ControlPlane::get();
    let ns = cp.namespace("apply");
    let manifest = format!(
        "apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: applied\n  namespace: {ns}\n\
         data:\n  answer: \"42\"\n"
    );
    let out = cp.kubectl_apply(&manifest);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configmap/applied created"));
    // Idempotent.
    let out = cp.kubectl_apply(&manifest);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged"),
        "{}",
        describe_output(&out)
    );

    let got = Api::<ConfigMap>::namespaced(cp.client(), &ns)
        .get("applied")
        .await
        .expect("get applied configmap");
    assert_eq!(got.data.unwrap()["answer"], "42");

    // A malformed manifest fails, and the failure is visible.
    let out = cp.kubectl_apply("apiVersion: v1\nkind: NoSuchKind\nmetadata:\n  name: x\n");
    assert!(!out.status.success(), "{}", describe_output(&out));
}

#[test]
fn apply_crds_is_idempotent_and_parallel_safe() {
    let cp = ControlPlane::get();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| cp.apply_crds());
        }
    });
    cp.apply_crds();
    // The product's CRD is installed: `apply_crds` quietly does nothing without crds/, so a
    // missing or emptied directory must fail here.
    let out = cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=1s",
        "crd/pipecatagents.pipecat.daily.co",
    ]);
    assert!(
        out.status.success(),
        "apply_crds did not install crds/pipecatagents.pipecat.daily.co.yaml: {}",
        describe_output(&out)
    );
    // Every CRD of crds/ (the repository's: this crate is its testkit/) is Established.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    for file in files
        .iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
    {
        let text = std::fs::read_to_string(file).unwrap();
        if !text.contains("kind: CustomResourceDefinition") {
            continue;
        }
        let out = cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=1s",
            "-f",
            &file.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            describe_output(&out)
        );
    }
}

#[tokio::test]
async fn dedicated_instance_is_torn_down_on_drop() {
    let cp = ControlPlane::start_dedicated();
    let etcd = cp.etcd_pid().expect("etcd pid");
    let apiserver = cp.apiserver_pid().expect("apiserver pid");
    let controller_manager = cp.controller_manager_pid().expect("controller-manager pid");
    let dir = cp.dir().to_path_buf();
    assert!(pid_alive(etcd) && pid_alive(apiserver) && pid_alive(controller_manager));
    assert!(dir.is_dir());
    // It is a separate cluster from the shared one.
    assert_ne!(cp.server_url(), ControlPlane::get().server_url());
    let version = cp.client().apiserver_version().await.expect("/version");
    assert_eq!(version.git_version, KUBE_VERSION);
    eprintln!(
        "dedicated control plane ready in {:?}",
        cp.startup_duration()
    );

    drop(cp);
    assert!(!pid_alive(etcd), "etcd (pid {etcd}) survived the drop");
    assert!(
        !pid_alive(apiserver),
        "kube-apiserver (pid {apiserver}) survived the drop"
    );
    assert!(
        !pid_alive(controller_manager),
        "kube-controller-manager (pid {controller_manager}) survived the drop"
    );
    assert!(!dir.exists(), "{} survived the drop", dir.display());
}

#[tokio::test]
async fn data_survives_an_apiserver_restart() {
    let cp = ControlPlane::start_dedicated();
    let url = cp.server_url();
    let ns = cp.namespace("restart");
    let client = cp.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &configmap("kept", "k", "v"))
        .await
        .expect("create configmap");
    let old = cp.apiserver_pid().expect("apiserver pid");

    let begin = Instant::now();
    cp.restart_apiserver();
    eprintln!("kube-apiserver restarted in {:?}", begin.elapsed());

    let new = cp.apiserver_pid().expect("apiserver pid after restart");
    assert_ne!(old, new);
    assert!(
        !pid_alive(old),
        "the old kube-apiserver (pid {old}) still runs"
    );
    assert_eq!(cp.server_url(), url, "the port changed");
    // A client from before the restart reconnects; a new one works too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        match api.get("kept").await {
            Ok(cm) => break cm,
            Err(e) => {
                assert!(Instant::now() < deadline, "old client never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(got.data.unwrap()["k"], "v");
    let fresh: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);
    assert_eq!(
        fresh
            .get("kept")
            .await
            .expect("get after restart")
            .data
            .unwrap()["k"],
        "v"
    );
}

/// How long the controller-manager may take to finish a namespace or collect a dependent here.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(60);

fn pipecat_agents(client: Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("pipecat.daily.co", "v1alpha1", "PipecatAgent");
    Api::namespaced_with(client, ns, &ApiResource::from_gvk(&gvk))
}

fn agent_manifest(ns: &str, name: &str, finalizers: &[&str]) -> String {
    format!(
        "apiVersion: pipecat.daily.co/v1alpha1\n\
         kind: PipecatAgent\n\
         metadata:\n  name: {name}\n  namespace: {ns}\n  finalizers: {finalizers:?}\n\
         spec:\n  image: example/bot:1\n"
    )
}

async fn namespace_exists(client: &Client, ns: &str) -> bool {
    Api::<Namespace>::all(client.clone())
        .get_opt(ns)
        .await
        .expect("get namespace")
        .is_some()
}

#[tokio::test]
async fn kubectl_delete_namespace_finishes() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("ns-delete");
    let client = cp.client();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &configmap("settings", "k", "v"))
        .await
        .expect("create configmap");
    let out = cp.kubectl_apply(&agent_manifest(&ns, "bot", &[]));
    assert!(out.status.success(), "{}", describe_output(&out));

    // kubectl waits for the namespace to be gone; without a namespace controller it times out.
    let timeout = format!("--timeout={}s", CONTROLLER_TIMEOUT.as_secs());
    let out = cp.kubectl(&["delete", "namespace", &ns, &timeout]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("namespace \"{ns}\" deleted")),
        "{}",
        describe_output(&out)
    );
    assert!(!namespace_exists(&client, &ns).await, "{ns} still exists");
    let left = cp.kubectl(&["get", "configmaps,pipecatagents", "-n", &ns, "-o", "name"]);
    assert!(left.status.success(), "{}", describe_output(&left));
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

#[tokio::test]
async fn namespace_deletion_waits_for_finalizers_and_says_what_is_left() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("ns-finalizer");
    let client = cp.client();
    let finalizer = "pipecat-operator.test/hold";
    let out = cp.kubectl_apply(&agent_manifest(&ns, "held", &[finalizer]));
    assert!(out.status.success(), "{}", describe_output(&out));

    // The namespace controller deletes the agent but cannot remove it while the finalizer holds,
    // so the namespace stays; the helper's error names what holds it.
    let err = cp
        .delete_namespace(&ns, Duration::from_secs(3))
        .await
        .expect_err("a namespace holding a finalizer went away");
    assert!(
        err.contains(&format!("namespace {ns} still exists")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "pipecatagents.pipecat.daily.co/held finalizers [\"{finalizer}\"]"
        )),
        "{err}"
    );
    assert!(err.contains("kube-controller-manager is running"), "{err}");

    let agents = pipecat_agents(client.clone(), &ns);
    let deadline = Instant::now() + CONTROLLER_TIMEOUT;
    loop {
        let agent = agents.get("held").await.expect("the held agent stays");
        if agent.metadata.deletion_timestamp.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the namespace controller never deleted the agent: {:?}",
            agent.metadata
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Asking again while it is terminating waits again, and now shows the pending deletion.
    let err = cp
        .delete_namespace(&ns, Duration::from_secs(1))
        .await
        .expect_err("a namespace holding a finalizer went away");
    assert!(
        err.contains(&format!(
            "pipecatagents.pipecat.daily.co/held finalizers [\"{finalizer}\"] (deleting since"
        )),
        "{err}"
    );
    assert!(namespace_exists(&client, &ns).await);

    agents
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the finalizer");
    cp.delete_namespace(&ns, CONTROLLER_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!namespace_exists(&client, &ns).await);
    // Deleting a namespace that is already gone is done at once.
    cp.delete_namespace(&ns, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A ConfigMap named `name` owned by `owner` (a ConfigMap).
fn dependent_of(owner: &ConfigMap, name: &str) -> ConfigMap {
    let mut cm = configmap(name, "owner", owner.metadata.name.as_deref().unwrap());
    cm.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.metadata.name.clone().unwrap(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..OwnerReference::default()
    }]);
    cm
}

/// Waits until ConfigMap `name` is gone; panics with what is still there after the timeout.
async fn wait_configmap_gone(api: &Api<ConfigMap>, name: &str) {
    let deadline = Instant::now() + CONTROLLER_TIMEOUT;
    while let Some(cm) = api.get_opt(name).await.expect("get configmap") {
        assert!(
            Instant::now() < deadline,
            "ConfigMap {name} was not garbage collected within {CONTROLLER_TIMEOUT:?}: \
             ownerReferences {:?}, finalizers {:?}, deletionTimestamp {:?}",
            cm.metadata.owner_references,
            cm.metadata.finalizers,
            cm.metadata.deletion_timestamp
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn garbage_collector_deletes_dependents() {
    let cp = ControlPlane::get();
    let ns = cp.namespace("gc");
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);
    let pp = PostParams::default();
    let create = |cm: ConfigMap| {
        let api = api.clone();
        let pp = pp.clone();
        async move { api.create(&pp, &cm).await.expect("create configmap") }
    };
    let owner = create(configmap("owner", "k", "v")).await;
    create(dependent_of(&owner, "dependent")).await;
    create(configmap("bystander", "k", "v")).await;

    // Background deletion (the default): the owner goes at once, the collector then deletes the
    // dependent.
    api.delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    wait_configmap_gone(&api, "dependent").await;
    assert!(api.get_opt("owner").await.unwrap().is_none());

    // Foreground deletion: the owner waits (finalizer `foregroundDeletion`) until the collector
    // has deleted its dependents, then the collector removes it too.
    let owner = create(configmap("fg-owner", "k", "v")).await;
    create(dependent_of(&owner, "fg-dependent")).await;
    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .expect("delete owner (foreground)");
    wait_configmap_gone(&api, "fg-owner").await;
    assert!(api.get_opt("fg-dependent").await.unwrap().is_none());

    // Objects with no owner are left alone.
    assert!(api.get_opt("bystander").await.unwrap().is_some());
}
