//! Helm for the chart tests: the `helm` binary of `hack/controlplane/build.sh` run against the
//! repository's chart, with its own cache/config/data directories (nothing of the user's Helm
//! state is read or written), plus helpers to read rendered manifests and to run the operator
//! binary with the chart's arguments under the chart's ServiceAccount identity.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::controlplane::{ControlPlane, describe_output, kubectl_with};

/// The Kubernetes version `helm lint` / `helm template` render for (the chart requires >= 1.30;
/// Helm's offline default is older). Matches the test control plane.
pub const KUBE_VERSION: &str = "1.37.2";

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/pipecat-operator")
}

/// The chart's `ci/full-values.yaml`.
pub fn full_values() -> PathBuf {
    chart_dir().join("ci/full-values.yaml")
}

/// Path of the helm binary (`hack/controlplane/build.sh helm`, built once and cached).
pub fn helm_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/controlplane/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("helm")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} helm failed: {}",
                script.display(),
                describe_output(&out)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("helm="))
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "{} printed no usable helm= line:\n{stdout}",
                    script.display()
                )
            })
    });
    match found {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// A Helm client with private state directories, optionally bound to a kubeconfig.
pub struct Helm {
    kubeconfig: Option<PathBuf>,
    home: tempfile::TempDir,
}

impl Helm {
    /// Helm without a cluster (lint, template).
    pub fn offline() -> Helm {
        Helm {
            kubeconfig: None,
            home: tempfile::Builder::new()
                .prefix("pipecat-helm-")
                .tempdir()
                .expect("helm home"),
        }
    }

    /// Helm against the control plane, as its admin.
    pub fn for_cluster(cp: &ControlPlane) -> Helm {
        Helm {
            kubeconfig: Some(cp.kubeconfig_path().to_path_buf()),
            ..Helm::offline()
        }
    }

    /// Runs `helm <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        let mut cmd = Command::new(helm_bin());
        cmd.args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .stdin(Stdio::null());
        match &self.kubeconfig {
            Some(k) => cmd.env("KUBECONFIG", k),
            // No cluster: make sure nothing is read from the user's kubeconfig.
            None => cmd.env("KUBECONFIG", home.join("no-kubeconfig")),
        };
        cmd.output()
            .unwrap_or_else(|e| panic!("running {}: {e}", helm_bin().display()))
    }

    /// Runs `helm <args>` and panics with its output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {} failed:\n{}",
            args.join(" "),
            describe_output(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm template <release> <chart> -n <namespace> <extra>` (for the test Kubernetes
    /// version); panics on failure.
    pub fn template(&self, release: &str, namespace: &str, extra: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            release,
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// The same as [`Helm::template`], expected to fail: returns stderr.
    pub fn template_err(&self, extra: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            "bad",
            chart.to_str().expect("UTF-8 path"),
            "--kube-version",
            KUBE_VERSION,
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(
            !out.status.success(),
            "helm template {} should have failed:\n{}",
            extra.join(" "),
            describe_output(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `helm install|upgrade <release> <chart> -n <namespace> <extra>` against the cluster
    /// (no `--wait`: no pods run in the test control plane); returns stdout (with the NOTES).
    pub fn install(&self, verb: &str, release: &str, namespace: &str, extra: &[&str]) -> String {
        assert!(self.kubeconfig.is_some(), "helm {verb} needs a cluster");
        let chart = chart_dir();
        let mut args = vec![
            verb,
            release,
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            namespace,
            "--timeout",
            "60s",
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

/// The documents of a multi-document YAML stream (empty documents dropped).
pub fn parse_manifest(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// `(kind, namespace, name)` of each object ("" namespace when cluster-scoped).
pub fn identities(objects: &[Value]) -> BTreeSet<(String, String, String)> {
    objects
        .iter()
        .map(|o| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&o["kind"]),
                s(&o["metadata"]["namespace"]),
                s(&o["metadata"]["name"]),
            )
        })
        .collect()
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The single object of `kind`; panics unless there is exactly one.
pub fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// The operator container's arguments in a rendered Deployment.
pub fn container_args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// What `kubectl get` finds of a release's objects (by its `app.kubernetes.io/instance` label),
/// over every kind a chart of this shape could create, in every namespace.
pub fn installed_objects(cp: &ControlPlane, release: &str) -> BTreeSet<(String, String, String)> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut all = BTreeSet::new();
    for kinds in [
        "serviceaccounts,secrets,configmaps,services,deployments,statefulsets,daemonsets,jobs,roles,rolebindings,poddisruptionbudgets",
        "clusterroles,clusterrolebindings",
    ] {
        let out = cp.kubectl(&["get", kinds, "-A", "-l", &selector, "-o", "json"]);
        assert!(
            out.status.success(),
            "kubectl get: {}",
            describe_output(&out)
        );
        let list: Value = serde_json::from_slice(&out.stdout).expect("kubectl JSON");
        all.extend(identities(list["items"].as_array().expect("items")));
    }
    all
}

/// `kubectl auth can-i <verb> <resource> [-n ns | -A] [--subresource=..]` as the user of
/// `kubeconfig`: true for "yes".
pub fn can_i(kubeconfig: &Path, verb: &str, resource: &str, scope: Scope<'_>) -> bool {
    let (resource, subresource) = match resource.split_once(" --subresource=") {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource];
    let sub;
    if let Some(s) = subresource {
        sub = format!("--subresource={s}");
        args.push(&sub);
    }
    match scope {
        Scope::Namespace(ns) => args.extend(["-n", ns]),
        Scope::All => args.push("--all-namespaces"),
    }
    let out = kubectl_with(kubeconfig, &args);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {}: {}",
            args.join(" "),
            describe_output(&out)
        ),
    }
}

/// Where a permission is checked.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// One namespace.
    Namespace(&'a str),
    /// Every namespace.
    All,
}

/// `system:serviceaccount:<ns>:<name>` and its groups, as the apiserver authenticates a
/// ServiceAccount token.
pub fn service_account_identity(ns: &str, name: &str) -> (String, [String; 2]) {
    (
        format!("system:serviceaccount:{ns}:{name}"),
        [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ],
    )
}

/// A kubeconfig authenticating as the ServiceAccount `ns/name` (same user name and groups as
/// its token would give, so RBAC treats it the same).
pub fn mint_service_account(cp: &ControlPlane, ns: &str, name: &str) -> PathBuf {
    let (user, groups) = service_account_identity(ns, name);
    cp.mint_user(&user, &[groups[0].as_str(), groups[1].as_str()])
}

/// The `--flag` names `pipecat-operator run --help` documents.
pub fn operator_flags() -> &'static BTreeSet<String> {
    static FLAGS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_pipecat-operator"))
            .args(["run", "--help"])
            .stdin(Stdio::null())
            .output()
            .expect("pipecat-operator run --help");
        assert!(out.status.success(), "{}", describe_output(&out));
        String::from_utf8_lossy(&out.stdout)
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_string)
            .collect()
    })
}

/// The flag name of an argument (`--poll-interval=5s` -> `--poll-interval`).
pub fn flag_name(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(flag, _)| flag)
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The operator binary run with given arguments and kubeconfig; killed on drop.
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts `pipecat-operator <args>` with `KUBECONFIG=kubeconfig` and the pod environment
    /// of the chart's Deployment (`POD_NAME`, `POD_NAMESPACE`).
    pub fn start(args: &[String], kubeconfig: &Path, pod_namespace: &str) -> OperatorProcess {
        let dir = tempfile::Builder::new()
            .prefix("pipecat-operator-helm-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_pipecat-operator"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", "pipecat-operator-test-0")
            .env("POD_NAMESPACE", pod_namespace)
            .env(
                "RUST_LOG",
                "debug,kube=info,tower=info,hyper=info,hyper_util=info,reqwest=info,rustls=info",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start pipecat-operator");
        OperatorProcess {
            child,
            log,
            _dir: dir,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
