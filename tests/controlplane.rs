mod support;

// Tests of the envtest-style control plane harness itself (tests/support/controlplane.rs).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use support::controlplane::{
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

    // (Not the built-in `view` ClusterRole: it is aggregated, and with no controller-manager
    // running, aggregated ClusterRoles stay empty.)
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
    // Every CRD of crds/ is Established.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
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
    let dir = cp.dir().to_path_buf();
    assert!(pid_alive(etcd) && pid_alive(apiserver));
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
