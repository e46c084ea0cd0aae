//! The Helm chart: lint, schema, rendered RBAC and hardening, a server-side dry run, install and
//! upgrade against the real control plane, the RBAC the ServiceAccount ends up with (checked
//! with `kubectl auth can-i` as that identity), and the operator binary doing its whole job
//! under that identity with nothing bound by hand.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use pipecat_cloud_emulator as emulator;
use pipecat_operator::crd::PipecatAgent;
use pipecat_operator::crd::secret_set::PipecatSecretSet;
use serde_json::{Value, json};

use crate::support::controlplane::{ControlPlane, describe_output, kubectl_stdin};
use crate::support::helm::{
    Helm, OperatorProcess, Scope, can_i, container_args, flag_name, free_port, full_values,
    identities, installed_objects, mint_service_account, of_kind, one, operator_flags,
    parse_manifest,
};
use crate::support::operator::{API_KEY, is_ready};

/// The rules the operator needs on agents, Secrets and events: what the security review signed
/// off, cluster-wide or per watched namespace.
fn agent_rules() -> Value {
    json!([
        {"apiGroups": ["pipecat.daily.co"], "resources": ["pipecatagents"],
         "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["pipecat.daily.co"], "resources": ["pipecatagents/status"],
         "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["pipecat.daily.co"], "resources": ["pipecatagents/finalizers"],
         "verbs": ["update"]},
        {"apiGroups": ["pipecat.daily.co"], "resources": ["pipecatsecretsets"],
         "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["pipecat.daily.co"], "resources": ["pipecatsecretsets/status"],
         "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["pipecat.daily.co"], "resources": ["pipecatsecretsets/finalizers"],
         "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// The digest key of PipecatSecretSet values: create the one Secret in the release namespace,
/// then read only it.
fn digest_key_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": ["pipecat-operator-digest-key"], "verbs": ["get"]},
    ])
}

/// Leader election: create any Lease (a create has no name to restrict), read and renew only
/// the release's own.
fn lease_rules(lease: &str) -> Value {
    json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": [lease], "verbs": ["get", "update"]},
    ])
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string()))
        .collect()
}

/// A release name unique to a test namespace (`<prefix>-<n>-<random>` -> `r<random>`).
fn release_for(ns: &str) -> String {
    format!("r{}", ns.rsplit('-').next().unwrap_or(ns))
}

// ---------------------------------------------------------------------------------------------
// Offline: lint, schema, rendering

#[test]
fn lint_is_clean_with_default_and_full_values() {
    let helm = Helm::offline();
    let chart = crate::support::helm::chart_dir();
    let chart = chart.to_str().unwrap();
    let full = full_values();
    for extra in [vec![], vec!["-f", full.to_str().unwrap()]] {
        let mut args = vec![
            "lint",
            "--strict",
            chart,
            "--kube-version",
            crate::support::helm::KUBE_VERSION,
        ];
        args.extend(extra.iter().copied());
        let out = helm.ok(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }
}

#[test]
fn schema_rejects_invalid_values_with_readable_messages() {
    let helm = Helm::offline();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "replicaCount=0"],
            &["/replicaCount", "minimum: got 0, want 1"],
        ),
        (
            &["--set", "logFormat=yaml"],
            &["/logFormat", "'text', 'json'"],
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            &["/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"],
        ),
        (
            &["--set", "watch.namespaces=team-a"],
            &["/watch/namespaces", "got string, want array"],
        ),
        (
            &["--set", "controller.resyncInterval=soon"],
            &[
                "/controller/resyncInterval",
                "'soon' does not match pattern",
            ],
        ),
        (
            &["--set", "watch.namespaces={Team_A}"],
            &["/watch/namespaces/0", "'Team_A' does not match pattern"],
        ),
        (
            &["--set", "replicas=2"],
            &["additional properties 'replicas'"],
        ),
        (
            &[
                "--set",
                "credentials.apiKey=pk_x",
                "--set",
                "credentials.existingSecret=mine",
            ],
            &["set either credentials.existingSecret or credentials.apiKey, not both"],
        ),
        (
            &[
                "--set",
                "metrics.service.enabled=false",
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ],
            &["metrics.serviceMonitor.enabled needs metrics.service.enabled"],
        ),
    ];
    for (args, expected) in cases {
        let err = helm.template_err(args);
        for needle in *expected {
            assert!(
                err.contains(needle),
                "helm template {}: expected {needle:?} in:\n{err}",
                args.join(" ")
            );
        }
        assert!(!err.contains("pk_x"), "the API key was printed:\n{err}");
    }
    // The same schema stops `helm lint`.
    let chart = crate::support::helm::chart_dir();
    let out = helm.run(&[
        "lint",
        "--strict",
        chart.to_str().unwrap(),
        "--kube-version",
        crate::support::helm::KUBE_VERSION,
        "--set",
        "replicaCount=0",
    ]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/replicaCount"),
        "{}",
        describe_output(&out)
    );
}

#[test]
fn default_install_is_hardened_and_cluster_wide() {
    let objects = parse_manifest(&Helm::offline().template("op", "pipecat-system", &[]));
    assert_eq!(
        identities(&objects),
        set(&[
            ("ServiceAccount", "pipecat-system", "op-pipecat-operator"),
            ("ClusterRole", "", "pipecat-system-op-pipecat-operator"),
            (
                "ClusterRoleBinding",
                "",
                "pipecat-system-op-pipecat-operator"
            ),
            ("Role", "pipecat-system", "op-pipecat-operator-digest-key"),
            (
                "RoleBinding",
                "pipecat-system",
                "op-pipecat-operator-digest-key"
            ),
            ("Service", "pipecat-system", "op-pipecat-operator-metrics"),
            ("Deployment", "pipecat-system", "op-pipecat-operator"),
        ])
    );
    assert_eq!(one(&objects, "ClusterRole")["rules"], agent_rules());
    assert_eq!(one(&objects, "Role")["rules"], digest_key_rules());
    let binding = one(&objects, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "op-pipecat-operator", "namespace": "pipecat-system"}])
    );
    assert_eq!(
        binding["roleRef"]["name"],
        "pipecat-system-op-pipecat-operator"
    );

    let deploy = one(&objects, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(
        deploy["spec"]["strategy"]["type"], "Recreate",
        "without leader election two operators must never overlap"
    );
    assert_eq!(pod["serviceAccountName"], "op-pipecat-operator");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(container["image"], "pipecat-operator:0.1.0");
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["runAsGroup"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let csc = &container["securityContext"];
    assert_eq!(csc["runAsNonRoot"], true);
    assert_eq!(csc["runAsUser"], 65532);
    assert_eq!(csc["runAsGroup"], 65532);
    assert_eq!(csc["readOnlyRootFilesystem"], true);
    assert_eq!(csc["allowPrivilegeEscalation"], false);
    assert_eq!(csc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(csc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let health_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "health")
        .expect("health port");
    assert_eq!(health_port["containerPort"], 8081);
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "RUST_LOG"]);
    assert_eq!(
        container["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        container_args(deploy),
        [
            "run",
            "--api-url=https://api.pipecat.daily.co/v1",
            "--poll-interval=5s",
            "--max-poll-interval=60s",
            "--resync-interval=60s",
            "--backoff-base=1s",
            "--backoff-cap=5m",
            "--request-timeout=30s",
            "--concurrency=16",
            "--api-rate-limit=10",
            "--api-burst=20",
            "--api-change-share=0.5",
            "--shutdown-grace-period=30s",
            "--log-format=text",
            "--metrics-bind-address=0.0.0.0:8080",
            "--agent-metrics=false",
            "--agent-metrics-limit=1000",
            "--health-probe-bind-address=0.0.0.0:8081",
        ]
    );
}

#[test]
fn replicas_turn_leader_election_on_with_a_lease_role_in_the_release_namespace() {
    let objects = parse_manifest(&Helm::offline().template(
        "op",
        "pipecat-system",
        &["--set", "replicaCount=3"],
    ));
    let deploy = one(&objects, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    let args = container_args(deploy);
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    assert!(
        args.contains(&"--leader-election-id=op-pipecat-operator".to_string()),
        "{args:?}"
    );
    let roles: Vec<&Value> = of_kind(&objects, "Role")
        .into_iter()
        .filter(|r| r["metadata"]["name"] != "op-pipecat-operator-digest-key")
        .collect();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0]["metadata"]["name"],
        "op-pipecat-operator-leader-election"
    );
    assert_eq!(roles[0]["metadata"]["namespace"], "pipecat-system");
    assert_eq!(roles[0]["rules"], lease_rules("op-pipecat-operator"));
    assert!(
        of_kind(&objects, "RoleBinding")
            .iter()
            .any(|b| b["roleRef"]["name"] == "op-pipecat-operator-leader-election")
    );

    // One replica and no leader election: no Lease permissions at all.
    let single = parse_manifest(&Helm::offline().template("op", "pipecat-system", &[]));
    assert!(
        of_kind(&single, "Role")
            .iter()
            .all(|r| r["rules"] == digest_key_rules())
    );
}

#[test]
fn namespace_list_renders_one_role_per_namespace_and_no_cluster_role() {
    let objects = parse_manifest(&Helm::offline().template(
        "op",
        "pipecat-system",
        &[
            "--set",
            "watch.namespaces={team-b,team-a}",
            "--set",
            "credentials.apiKey=pk_render_secret",
            "--set",
            "credentials.secretKey=token",
        ],
    ));
    assert!(of_kind(&objects, "ClusterRole").is_empty());
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());
    let roles: BTreeSet<(String, String)> = of_kind(&objects, "Role")
        .iter()
        .map(|r| {
            (
                r["metadata"]["namespace"].as_str().unwrap().to_string(),
                r["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("team-a", "pipecat-system-op-pipecat-operator"),
        ("team-b", "pipecat-system-op-pipecat-operator"),
        ("pipecat-system", "op-pipecat-operator-credentials"),
        ("pipecat-system", "op-pipecat-operator-digest-key"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(roles, expected);
    for role in of_kind(&objects, "Role") {
        if role["metadata"]["name"] == "op-pipecat-operator-digest-key" {
            assert_eq!(role["rules"], digest_key_rules());
        } else if role["metadata"]["namespace"] == "pipecat-system" {
            // Only the release's own credentials Secret, not every Secret of its namespace.
            assert_eq!(
                role["rules"],
                json!([{"apiGroups": [""], "resources": ["secrets"],
                        "resourceNames": ["op-pipecat-operator-api-key"],
                        "verbs": ["get", "list", "watch", "patch"]}])
            );
        } else {
            assert_eq!(role["rules"], agent_rules());
        }
    }
    assert_eq!(of_kind(&objects, "RoleBinding").len(), 4);
    for binding in of_kind(&objects, "RoleBinding") {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "op-pipecat-operator", "namespace": "pipecat-system"}])
        );
    }

    // The key only reaches the Secret, base64-encoded; the Deployment names the Secret.
    let secret = one(&objects, "Secret");
    assert_eq!(secret["metadata"]["name"], "op-pipecat-operator-api-key");
    assert_eq!(secret["data"]["token"], "cGtfcmVuZGVyX3NlY3JldA==");
    let deploy = one(&objects, "Deployment");
    let deploy_text = serde_json::to_string(deploy).unwrap();
    assert!(!deploy_text.contains("pk_render_secret"));
    let args = container_args(deploy);
    for expected in [
        "--namespace=team-a,team-b",
        "--default-secret-name=op-pipecat-operator-api-key",
        "--default-secret-key=token",
        "--default-secret-namespace=pipecat-system",
    ] {
        assert!(args.contains(&expected.to_string()), "{expected}: {args:?}");
    }

    // The release namespace among the watched ones already covers the Secret: no extra Role.
    let objects = parse_manifest(&Helm::offline().template(
        "op",
        "pipecat-system",
        &[
            "--set",
            "watch.namespaces={pipecat-system}",
            "--set",
            "credentials.existingSecret=org-key",
        ],
    ));
    assert_eq!(
        of_kind(&objects, "Role").len(),
        2,
        "the watched namespace's and the digest key's"
    );
    assert!(of_kind(&objects, "Secret").is_empty());
}

#[test]
fn no_rendering_grants_more_than_the_reviewed_verbs() {
    let full = full_values();
    let renders = [
        vec![],
        vec!["--set", "replicaCount=2"],
        vec!["-f", full.to_str().unwrap()],
        vec![
            "--set",
            "watch.namespaces={a,b}",
            "--set",
            "credentials.apiKey=k",
        ],
    ];
    let allowed: BTreeSet<&str> = ["get", "list", "watch", "patch", "update", "create"].into();
    for extra in renders {
        let objects = parse_manifest(&Helm::offline().template("op", "ns", &extra));
        for role in of_kind(&objects, "Role")
            .into_iter()
            .chain(of_kind(&objects, "ClusterRole"))
        {
            for rule in role["rules"].as_array().unwrap() {
                let text = rule.to_string();
                assert!(!text.contains('*'), "wildcard in {text}");
                assert!(rule.get("nonResourceURLs").is_none(), "{text}");
                for verb in rule["verbs"].as_array().unwrap() {
                    assert!(allowed.contains(verb.as_str().unwrap()), "{text}");
                }
                let resources: Vec<&str> = rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                let verbs = &rule["verbs"];
                let digest_key = role["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with("-digest-key");
                if resources.contains(&"secrets") && !digest_key {
                    // patch: only for the in-use finalizer; never create, update or delete.
                    assert_eq!(verbs, &json!(["get", "list", "watch", "patch"]), "{text}");
                }
                if digest_key {
                    // Create (and then read) the one digest key Secret, in the release
                    // namespace only.
                    assert_eq!(role["rules"], digest_key_rules(), "{text}");
                    assert_eq!(role["kind"], "Role", "{text}");
                } else if verbs.as_array().unwrap().iter().any(|v| v == "create") {
                    assert!(
                        resources == ["events"] || resources == ["leases"],
                        "create only events and leases: {text}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_flag_the_chart_passes_is_known_to_the_operator() {
    let known = operator_flags();
    let full = full_values();
    for extra in [vec![], vec!["-f", full.to_str().unwrap()]] {
        let objects = parse_manifest(&Helm::offline().template("op", "ns", &extra));
        let args = container_args(one(&objects, "Deployment"));
        assert_eq!(args[0], "run");
        let unknown: Vec<&str> = args[1..]
            .iter()
            .map(|a| flag_name(a))
            .filter(|f| !known.contains(*f))
            .collect();
        assert!(
            unknown.is_empty(),
            "flags the chart passes but `pipecat-operator run` does not know: {unknown:?}\nknown: {known:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Against the control plane

/// Schema-less stand-ins for the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs,
/// so that the dry run can check the chart's ServiceMonitor and PrometheusRule reach a known API
/// (tests/packaging/alerts.rs checks the rules themselves with promtool).
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn rendered_manifests_pass_a_server_side_dry_run() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let out = cp.kubectl_apply(SERVICE_MONITOR_CRD);
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));

    let ns = cp.namespace("helm-dry-run");
    let team_a = cp.namespace("helm-dry-run-a");
    let team_b = cp.namespace("helm-dry-run-b");
    let namespaces = format!("watch.namespaces={{{team_a},{team_b}}}");
    // The dashboard's ConfigMap goes to the Grafana namespace; here, one that exists.
    let dashboard_ns = format!("metrics.grafanaDashboard.namespace={team_a}");
    let full = full_values();
    let helm = Helm::offline();
    for extra in [
        vec![],
        vec![
            "-f",
            full.to_str().unwrap(),
            "--set",
            namespaces.as_str(),
            "--set",
            dashboard_ns.as_str(),
        ],
    ] {
        let manifest = helm.template(&release_for(&ns), &ns, &extra);
        let kinds: BTreeSet<String> = parse_manifest(&manifest)
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect();
        let out = kubectl_stdin(
            cp.kubeconfig_path(),
            &["apply", "--dry-run=server", "-f", "-"],
            &manifest,
        );
        assert!(
            out.status.success(),
            "dry run of {extra:?}:\n{}",
            describe_output(&out)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            applied.lines().count(),
            parse_manifest(&manifest).len(),
            "{applied}"
        );
        if !extra.is_empty() {
            assert!(kinds.contains("ServiceMonitor"), "{kinds:?}");
            assert!(kinds.contains("PrometheusRule"), "{kinds:?}");
            assert!(kinds.contains("ConfigMap"), "{kinds:?}");
        }
    }
}

#[test]
fn install_and_upgrade_create_exactly_the_expected_objects() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("helm-install");
    let team = cp.namespace("helm-install-team");
    let release = release_for(&ns);
    let fullname = format!("{release}-pipecat-operator");
    let scoped = format!("{ns}-{fullname}");
    let helm = Helm::for_cluster(cp);
    let key = "pk_install_secret_3b1e";

    let out = helm.install(
        "install",
        &release,
        &ns,
        &["--set", &format!("credentials.apiKey={key}")],
    );
    assert!(
        !out.contains(key),
        "helm install printed the API key:\n{out}"
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let secret_name = format!("{fullname}-api-key");
    assert!(out.contains(&format!("{ns}/{secret_name}")), "NOTES: {out}");
    assert_eq!(
        installed_objects(cp, &release),
        set(&[
            ("ServiceAccount", &ns, &fullname),
            ("Secret", &ns, &secret_name),
            ("ClusterRole", "", &scoped),
            ("ClusterRoleBinding", "", &scoped),
            ("Role", &ns, &format!("{fullname}-digest-key")),
            ("RoleBinding", &ns, &format!("{fullname}-digest-key")),
            ("Service", &ns, &format!("{fullname}-metrics")),
            ("Deployment", &ns, &fullname),
        ])
    );
    let out = cp.kubectl(&[
        "get",
        "secret",
        "-n",
        &ns,
        &secret_name,
        "-o",
        "jsonpath={.data.api-key}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cGtfaW5zdGFsbF9zZWNyZXRfM2IxZQ==",
        "{}",
        describe_output(&out)
    );

    // Narrow the scope to one namespace and add a standby replica.
    let out = helm.install(
        "upgrade",
        &release,
        &ns,
        &[
            "--set",
            &format!("credentials.apiKey={key}"),
            "--set",
            &format!("watch.namespaces={{{team}}}"),
            "--set",
            "replicaCount=2",
        ],
    );
    assert!(
        !out.contains(key),
        "helm upgrade printed the API key:\n{out}"
    );
    assert!(out.contains("REVISION: 2"), "{out}");
    let election = format!("{fullname}-leader-election");
    let credentials = format!("{fullname}-credentials");
    assert_eq!(
        installed_objects(cp, &release),
        set(&[
            ("ServiceAccount", &ns, &fullname),
            ("Secret", &ns, &secret_name),
            ("Role", &team, &scoped),
            ("RoleBinding", &team, &scoped),
            ("Role", &ns, &credentials),
            ("RoleBinding", &ns, &credentials),
            ("Role", &ns, &election),
            ("RoleBinding", &ns, &election),
            ("Role", &ns, &format!("{fullname}-digest-key")),
            ("RoleBinding", &ns, &format!("{fullname}-digest-key")),
            ("Service", &ns, &format!("{fullname}-metrics")),
            ("Deployment", &ns, &fullname),
        ])
    );
    let out = cp.kubectl(&["get", "deployment", "-n", &ns, &fullname, "-o", "json"]);
    let deploy: Value = serde_json::from_slice(&out.stdout).expect("deployment JSON");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let args = container_args(&deploy);
    assert!(args.contains(&format!("--namespace={team}")), "{args:?}");
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
}

#[test]
fn cluster_wide_install_grants_exactly_what_the_operator_needs() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("helm-rbac-all");
    let elsewhere = cp.namespace("helm-rbac-all-apps");
    let release = release_for(&ns);
    let sa = format!("{release}-pipecat-operator");
    Helm::for_cluster(cp).install(
        "install",
        &release,
        &ns,
        &["--set", "leaderElection.enabled=true"],
    );
    let me = mint_service_account(cp, &ns, &sa);
    let lease = format!("leases/{sa}");
    let other_ns = Scope::Namespace(&elsewhere);
    let own_ns = Scope::Namespace(&ns);

    let must: &[(&str, &str, Scope)] = &[
        ("list", "pipecatagents", Scope::All),
        ("watch", "pipecatagents", Scope::All),
        ("get", "pipecatagents", other_ns),
        ("patch", "pipecatagents", other_ns),
        ("update", "pipecatagents", other_ns),
        ("patch", "pipecatagents --subresource=status", other_ns),
        ("update", "pipecatagents --subresource=status", other_ns),
        ("update", "pipecatagents --subresource=finalizers", other_ns),
        ("list", "pipecatsecretsets", Scope::All),
        ("watch", "pipecatsecretsets", Scope::All),
        ("patch", "pipecatsecretsets", other_ns),
        ("patch", "pipecatsecretsets --subresource=status", other_ns),
        (
            "update",
            "pipecatsecretsets --subresource=finalizers",
            other_ns,
        ),
        ("create", "secrets", own_ns),
        ("get", "secrets/pipecat-operator-digest-key", own_ns),
        ("list", "secrets", Scope::All),
        ("watch", "secrets", Scope::All),
        ("get", "secrets", other_ns),
        // Only ever the in-use finalizers (pipecat.daily.co/credentials-in-use and
        // pipecat.daily.co/secret-set-credentials-in-use).
        ("patch", "secrets", other_ns),
        ("create", "events", other_ns),
        ("patch", "events", other_ns),
        ("create", "events.events.k8s.io", other_ns),
        ("patch", "events.events.k8s.io", other_ns),
        ("create", "leases", own_ns),
        ("get", &lease, own_ns),
        ("update", &lease, own_ns),
    ];
    let must_not: &[(&str, &str, Scope)] = &[
        ("create", "pipecatagents", other_ns),
        ("delete", "pipecatagents", other_ns),
        ("deletecollection", "pipecatagents", other_ns),
        ("create", "secrets", other_ns),
        ("create", "pipecatsecretsets", other_ns),
        ("delete", "pipecatsecretsets", other_ns),
        ("update", "secrets", other_ns),
        ("delete", "secrets", other_ns),
        ("create", "deployments", own_ns),
        ("create", "pods", other_ns),
        ("create", "pods --subresource=exec", other_ns),
        ("list", "configmaps", Scope::All),
        ("get", &lease, other_ns),
        ("create", "leases", other_ns),
        ("get", "leases/someone-else", own_ns),
        ("update", "leases/someone-else", own_ns),
        ("delete", &lease, own_ns),
        ("list", "leases", own_ns),
        ("create", "clusterroles", Scope::All),
        ("create", "rolebindings", own_ns),
        ("update", "customresourcedefinitions", Scope::All),
        ("get", "events", other_ns),
    ];
    check_permissions(&me, must, must_not);
}

#[test]
fn namespaced_install_grants_nothing_outside_its_namespaces() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("helm-rbac-ns");
    let watched = cp.namespace("helm-rbac-ns-team");
    let outside = cp.namespace("helm-rbac-ns-outside");
    let release = release_for(&ns);
    let sa = format!("{release}-pipecat-operator");
    Helm::for_cluster(cp).install(
        "install",
        &release,
        &ns,
        &[
            "--set",
            &format!("watch.namespaces={{{watched}}}"),
            "--set",
            "credentials.existingSecret=org-key",
            "--set",
            "replicaCount=2",
        ],
    );
    let me = mint_service_account(cp, &ns, &sa);
    let lease = format!("leases/{sa}");
    let team = Scope::Namespace(&watched);
    let own_ns = Scope::Namespace(&ns);
    let out_ns = Scope::Namespace(&outside);

    let must: &[(&str, &str, Scope)] = &[
        ("list", "pipecatagents", team),
        ("watch", "pipecatagents", team),
        ("patch", "pipecatagents", team),
        ("patch", "pipecatagents --subresource=status", team),
        ("update", "pipecatagents --subresource=finalizers", team),
        ("list", "pipecatsecretsets", team),
        ("patch", "pipecatsecretsets --subresource=status", team),
        ("update", "pipecatsecretsets --subresource=finalizers", team),
        ("create", "secrets", own_ns),
        ("get", "secrets/pipecat-operator-digest-key", own_ns),
        ("list", "secrets", team),
        ("watch", "secrets", team),
        ("get", "secrets", team),
        // The in-use finalizer on credentials Secrets.
        ("patch", "secrets", team),
        ("create", "events", team),
        ("create", "events.events.k8s.io", team),
        ("patch", "events.events.k8s.io", team),
        ("get", "secrets/org-key", own_ns),
        ("patch", "secrets/org-key", own_ns),
        ("create", "leases", own_ns),
        ("get", &lease, own_ns),
        ("update", &lease, own_ns),
    ];
    let must_not: &[(&str, &str, Scope)] = &[
        ("list", "secrets", out_ns),
        ("get", "secrets", out_ns),
        ("list", "secrets", Scope::All),
        ("list", "pipecatagents", Scope::All),
        ("list", "pipecatagents", out_ns),
        ("patch", "pipecatagents --subresource=status", out_ns),
        ("list", "pipecatsecretsets", out_ns),
        ("create", "secrets", out_ns),
        ("create", "secrets", team),
        ("create", "events", out_ns),
        ("list", "secrets", own_ns),
        ("get", "secrets/other-secret", own_ns),
        ("patch", "secrets/other-secret", own_ns),
        ("patch", "secrets", out_ns),
        ("list", "pipecatagents", own_ns),
        ("delete", "pipecatagents", team),
        ("create", "pipecatagents", team),
        ("update", "secrets", team),
        ("delete", "secrets", team),
        ("create", "deployments", team),
        ("create", "pods", team),
        ("get", &lease, team),
        ("get", &lease, out_ns),
        ("create", "leases", team),
    ];
    check_permissions(&me, must, must_not);
}

fn check_permissions(
    kubeconfig: &std::path::Path,
    must: &[(&str, &str, Scope)],
    must_not: &[(&str, &str, Scope)],
) {
    let mut wrong = Vec::new();
    for (verb, resource, scope) in must {
        if !can_i(kubeconfig, verb, resource, *scope) {
            wrong.push(format!("cannot {verb} {resource} in {scope:?}"));
        }
    }
    for (verb, resource, scope) in must_not {
        if can_i(kubeconfig, verb, resource, *scope) {
            wrong.push(format!("CAN {verb} {resource} in {scope:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong permissions:\n{}", wrong.join("\n"));
}

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: voice-starter}
spec:
  image: your-dockername/voice-starter:0.1
  nodeType: arm
  imagePullSecretSet: dockerhub-credentials
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 1, maxAgents: 10}
  enableKrisp: false
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_does_its_job_with_the_charts_service_account_alone() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("helm-op");
    let team = cp.namespace("helm-op-team");
    let release = release_for(&ns);
    let sa = format!("{release}-pipecat-operator");

    let emulator = emulator::start(emulator::Config {
        api_keys: vec![API_KEY.to_string()],
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let admin = emulator.admin();
    admin
        .create_secret_set(API_KEY, "voice-starter-secrets", &[("OPENAI_API_KEY", "x")])
        .await
        .expect("secret set");
    admin
        .create_image_pull_secret_set(API_KEY, "dockerhub-credentials", "docker.io", "user:pass")
        .await
        .expect("pull secret set");

    // A namespaced install pointed at the emulator, with fast test timings; the credentials
    // Secret lives in the watched namespace (no default credentials in the release).
    let helm = Helm::for_cluster(cp);
    let (metrics_port, health_port) = (free_port(), free_port());
    let sets = [
        format!("watch.namespaces={{{team}}}"),
        format!("pipecat.apiUrl={}", emulator.base_url()),
        "leaderElection.enabled=true".to_string(),
        "controller.pollInterval=200ms".to_string(),
        "controller.maxPollInterval=1s".to_string(),
        "controller.resyncInterval=2s".to_string(),
        "controller.backoffBase=200ms".to_string(),
        "controller.backoffCap=3s".to_string(),
        "controller.requestTimeout=3s".to_string(),
        "controller.shutdownGracePeriod=5s".to_string(),
        format!("metrics.port={metrics_port}"),
        format!("health.port={health_port}"),
    ];
    let mut extra: Vec<&str> = Vec::new();
    for s in &sets {
        extra.extend(["--set", s.as_str()]);
    }
    helm.install("install", &release, &ns, &extra);
    let manifest = helm.ok(&["get", "manifest", &release, "--namespace", &ns]);
    let objects = parse_manifest(&manifest);
    let deploy = one(&objects, "Deployment");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["serviceAccountName"],
        sa.as_str()
    );

    // The Deployment's own arguments; flags this build does not know yet are left out (the
    // test `every_flag_the_chart_passes_is_known_to_the_operator` reports them).
    let known = operator_flags();
    let (args, dropped): (Vec<String>, Vec<String>) = container_args(deploy)
        .into_iter()
        .partition(|a| !a.starts_with("--") || known.contains(flag_name(a)));
    if !dropped.is_empty() {
        eprintln!("not passed (unknown to this operator build): {dropped:?}");
    }

    let secrets: Api<Secret> = Api::namespaced(cp.client(), &team);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pipecat-api-key"},
        "stringData": {"api-key": API_KEY}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the API key Secret");

    let kubeconfig = mint_service_account(cp, &ns, &sa);
    let mut operator = OperatorProcess::start(&args, &kubeconfig, &ns);
    let agents: Api<PipecatAgent> = Api::namespaced(cp.client(), &team);
    let remote = |name: &str| {
        let url = format!("{}/agents/{name}", emulator.base_url());
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth(API_KEY)
                .send()
                .await
                .expect("emulator answers");
            match resp.status().as_u16() {
                404 => None,
                200 => Some(resp.json::<Value>().await.expect("agent JSON")),
                s => panic!("emulator GET: HTTP {s}"),
            }
        }
    };
    let apply = |yaml: String| {
        let out = kubectl_stdin(
            cp.kubeconfig_path(),
            &["apply", "-n", &team, "-f", "-"],
            &yaml,
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    };

    // Create.
    apply(AGENT.to_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    let created = loop {
        if let Some(a) = agents.get_opt("voice-starter").await.expect("get")
            && is_ready(&a)
        {
            break a;
        }
        assert!(
            Instant::now() < deadline && operator.running(),
            "never Ready:\n{}",
            operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let remote_agent = remote("voice-starter").await.expect("created remotely");
    assert_eq!(
        remote_agent["deployment"]["manifest"]["spec"]["image"],
        "your-dockername/voice-starter:0.1"
    );

    // Update: a new image is one more generation, Ready again with the new image remotely.
    apply(AGENT.replace(
        "your-dockername/voice-starter:0.1",
        "your-dockername/voice-starter:0.2",
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = agents.get("voice-starter").await.expect("get");
        let image = remote("voice-starter").await.expect("remote")["deployment"]["manifest"]
            ["spec"]["image"]
            .clone();
        if a.metadata.generation > created.metadata.generation
            && is_ready(&a)
            && image == "your-dockername/voice-starter:0.2"
        {
            break;
        }
        assert!(
            Instant::now() < deadline && operator.running(),
            "image change never reconciled (remote image {image}):\n{}",
            operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Delete: the finalizer removes the remote agent, then the resource goes.
    agents
        .delete("voice-starter", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + Duration::from_secs(60);
    while agents
        .get_opt("voice-starter")
        .await
        .expect("get")
        .is_some()
    {
        assert!(
            Instant::now() < deadline && operator.running(),
            "never deleted:\n{}",
            operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(remote("voice-starter").await.is_none(), "remote agent left");

    // A secret set from a Secret of the watched namespace: the chart's RBAC covers the kind
    // and the digest key, which the operator creates in its own (release) namespace.
    apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bot-values}\nstringData: {OPENAI_API_KEY: sk-helm}\n"
            .to_string(),
    );
    apply(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {name: bot-keys}\nspec: {secretRef: {name: bot-values}}\n"
            .to_string(),
    );
    let sets: Api<PipecatSecretSet> = Api::namespaced(cp.client(), &team);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = sets.get("bot-keys").await.expect("get");
        if s.condition("Ready").is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(
            Instant::now() < deadline && operator.running(),
            "the secret set never became Ready: {:?}\n{}",
            s.status,
            operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys: Api<Secret> = Api::namespaced(cp.client(), &ns);
    assert!(
        keys.get_opt("pipecat-operator-digest-key")
            .await
            .expect("get")
            .is_some(),
        "the digest key lives in the release namespace"
    );
    sets.delete("bot-keys", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sets.get_opt("bot-keys").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline && operator.running(),
            "the secret set was never deleted:\n{}",
            operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everything it did, it was allowed to do (including leader election and events).
    let log = operator.log();
    assert!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
    if known.contains("--leader-elect") {
        let out = cp.kubectl(&["get", "lease", "-n", &ns, &sa, "-o", "name"]);
        assert!(out.status.success(), "{}", describe_output(&out));
    }
}
