//! An envtest-style Kubernetes control plane for the integration tests, the demo and the
//! benchmark: a real etcd, a real kube-apiserver and a real kube-controller-manager on free
//! loopback ports, with no Docker, no kubelet and no scheduler (so no pods running).
//!
//! The controller-manager runs only the `namespace-controller` (a deleted namespace is emptied
//! and then goes away), the `garbage-collector-controller` (dependents of a deleted owner are
//! deleted, through `ownerReferences`) and the `horizontal-pod-autoscaler-controller` (an HPA
//! reads its target's `scale` subresource; there is no metrics server, so it reports the
//! metrics it cannot get but still shows the target's scale). Every other controller is off: no
//! service account or token controller (no `default` ServiceAccount in a namespace), no
//! `kube-root-ca.crt` ConfigMap, and the aggregated ClusterRoles `admin`/`edit`/`view` have no
//! rules (write your own Roles). [`ControlPlane::delete_namespace`] deletes a namespace and
//! waits until it is gone. The garbage collector picks up resource types created after it
//! started (CRDs) at its next discovery sync, every 30 s.
//!
//! Usage: `ControlPlane::get()` returns the control plane shared by every test of the test binary
//! (started lazily, once); each test takes its own namespace with `cp.namespace("prefix")`.
//! `ControlPlane::start_dedicated()` starts a private one, torn down when dropped (use it for
//! anything disruptive, such as `restart_apiserver`).
//!
//! The binaries come from `hack/controlplane/build.sh` (built once with the Go toolchain and
//! cached, or taken from `KUBEBUILDER_ASSETS`). Certificates are generated in-process: a CA, the
//! apiserver and controller-manager serving certificates, the admin and controller-manager
//! client certificates (`system:masters`) and the service account signing key; other identities
//! are minted on demand with `mint_user`.
//!
//! Teardown: the children get `PR_SET_PDEATHSIG=SIGKILL` (spawned from a dedicated thread that
//! lives as long as the process, since the signal fires when the *spawning thread* exits), and an
//! `atexit` hook kills them and removes the temporary directory when the test binary exits, whether
//! its tests passed or failed. Directories left behind by a test binary that was killed outright
//! are swept by the next start.

mod certs;
mod kubectl;
mod lifetime;
mod namespaces;
mod startup;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

pub use certs::base64;
pub use kubectl::{client_from_kubeconfig, describe_output, kubectl_stdin, kubectl_with};

use certs::{Ca, write_kubeconfig};
use lifetime::{REGISTRY, block_on};
use startup::{Binaries, log_tail, start, stop_child};

/// How long etcd + kube-apiserver + kube-controller-manager may take to become ready (a loaded
/// 2-core machine is slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a restarted kube-apiserver may take to shut down gracefully before it is killed.
const GRACEFUL_STOP: Duration = Duration::from_secs(20);
/// Lines of each child's log quoted in a startup failure.
const LOG_TAIL_LINES: usize = 40;
/// Prefix of the per-instance temporary directory (followed by the test process id).
const DIR_PREFIX: &str = "pipecat-cp-";
/// The version the build script stamps into kube-apiserver and kube-controller-manager.
pub const KUBE_VERSION: &str = "v1.37.2";
/// The controllers kube-controller-manager runs (`--controllers`; names as of 1.37).
pub const CONTROLLERS: &str =
    "namespace-controller,garbage-collector-controller,horizontal-pod-autoscaler-controller";

const INSTALL_HINT: &str = "The Kubernetes integration tests run a real etcd, kube-apiserver and \
     kube-controller-manager. Install the Go toolchain (https://go.dev/dl/, `go` on PATH) so that \
     hack/controlplane/build.sh can build them (first run only, cached under \
     ~/.cache/pipecat-operator/bin), or set KUBEBUILDER_ASSETS to a directory holding `etcd`, \
     `kube-apiserver` and `kube-controller-manager` binaries (any of them missing there is built).";

/// The repository's root: this crate lives in its `testkit/` directory.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is inside the repository")
}

/// A running etcd + kube-apiserver + kube-controller-manager.
pub struct ControlPlane {
    inner: Arc<Inner>,
    /// Dedicated instances are torn down on drop; the shared one at process exit.
    dedicated: bool,
}

struct Inner {
    dir: PathBuf,
    bins: Binaries,
    etcd_port: u16,
    port: u16,
    controller_manager_port: u16,
    ca: Ca,
    kubeconfig: PathBuf,
    etcd_args: Vec<String>,
    apiserver_args: Vec<String>,
    controller_manager_args: Vec<String>,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
    controller_manager: Mutex<Option<Child>>,
    /// Serializes restarts.
    restart: Mutex<()>,
    /// Admin client bound to the harness runtime (for the harness's own requests).
    admin: OnceLock<Client>,
    crds: OnceLock<Result<(), String>>,
    seq: AtomicU64,
    /// Wall time from creating the directory to the controller-manager being healthy.
    startup: OnceLock<Duration>,
}

impl ControlPlane {
    /// The control plane shared by all the tests of this test binary, started on first use.
    /// Panics (in every test that asks) if it cannot start.
    pub fn get() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            start().map(|inner| ControlPlane {
                inner,
                dedicated: false,
            })
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("{e}"),
        }
    }

    /// A private control plane, owned by the caller and torn down (processes killed, directory
    /// removed) when dropped.
    pub fn start_dedicated() -> ControlPlane {
        match start() {
            Ok(inner) => ControlPlane {
                inner,
                dedicated: true,
            },
            Err(e) => panic!("{e}"),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.inner.port)
    }

    /// The PEM of the CA that signed the serving certificate and every client certificate.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca.pem
    }

    /// The admin kubeconfig (user `admin`, group `system:masters`, CA and keys embedded).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.inner.kubeconfig
    }

    /// This instance's temporary directory (certificates, etcd data, logs, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The etcd client URL (`http://127.0.0.1:PORT`).
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inner.etcd_port)
    }

    /// How long etcd + kube-apiserver + kube-controller-manager took to become ready (binaries
    /// already built).
    pub fn startup_duration(&self) -> Duration {
        self.inner.startup.get().copied().unwrap_or_default()
    }

    /// Process id of etcd, if running.
    pub fn etcd_pid(&self) -> Option<u32> {
        lock(&self.inner.etcd).as_ref().map(Child::id)
    }

    /// Process id of kube-apiserver, if running.
    pub fn apiserver_pid(&self) -> Option<u32> {
        lock(&self.inner.apiserver).as_ref().map(Child::id)
    }

    /// Process id of kube-controller-manager, if running.
    pub fn controller_manager_pid(&self) -> Option<u32> {
        lock(&self.inner.controller_manager).as_ref().map(Child::id)
    }

    /// A fresh admin client. Call it inside a tokio runtime (e.g. a `#[tokio::test]`); the
    /// client then belongs to that runtime.
    pub fn client(&self) -> Client {
        client_from_kubeconfig(&self.inner.kubeconfig)
    }

    /// Creates a namespace named `<prefix>-<n>-<random>` and returns its name. Deleting it
    /// empties it and removes it (namespace controller), unless something in it keeps a
    /// finalizer: see [`ControlPlane::delete_namespace`].
    pub fn namespace(&self, prefix: &str) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let mut base = dns_label(prefix);
        base.truncate(40);
        let base = base.trim_end_matches('-');
        let base = if base.is_empty() { "test" } else { base };
        let name = format!("{base}-{n}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("pipecat-operator.test/harness".into(), "true".into())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let client = self.inner.admin_client();
        block_on(async move {
            Api::<Namespace>::all(client)
                .create(&PostParams::default(), &ns)
                .await
        })
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        name
    }

    /// Writes a kubeconfig for user `name` in `groups` (a client certificate signed by the CA:
    /// CN=name, O=group) and returns its path. No RBAC is granted. At most two groups (one X.509
    /// subject holds at most two Organization attributes as generated here).
    pub fn mint_user(&self, name: &str, groups: &[&str]) -> PathBuf {
        assert!(
            groups.len() <= 2,
            "mint_user supports at most two groups, got {groups:?}"
        );
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let dir = self.inner.dir.join("users");
        fs::create_dir_all(&dir).expect("creating the users directory");
        let path = dir.join(format!("{}-{n}.kubeconfig", dns_label(name)));
        let (cert, key) = self.inner.ca.client_cert(name, groups);
        write_kubeconfig(
            &path,
            &self.server_url(),
            &self.inner.ca.pem,
            name,
            &cert,
            &key,
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A client authenticated as user `name` in `groups` (see [`ControlPlane::mint_user`]).
    /// Call it inside a tokio runtime.
    pub fn client_for_user(&self, name: &str, groups: &[&str]) -> Client {
        client_from_kubeconfig(&self.mint_user(name, groups))
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.inner.kubeconfig, args)
    }

    /// `kubectl apply -f -` of `yaml` with the admin kubeconfig.
    pub fn kubectl_apply(&self, yaml: &str) -> Output {
        kubectl_stdin(&self.inner.kubeconfig, &["apply", "-f", "-"], yaml)
    }

    /// Applies every YAML file of the repository's `crds/` directory (server-side) and waits
    /// until each CRD is Established. Done once per control plane; safe to call from parallel
    /// tests (they wait for the first). Returns quietly when `crds/` is missing or empty.
    pub fn apply_crds(&self) {
        let done = self.inner.crds.get_or_init(|| self.apply_crds_once());
        if let Err(e) = done {
            panic!("{e}");
        }
    }

    fn apply_crds_once(&self) -> Result<(), String> {
        let dir = repo_root().join("crds");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("kustomization"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Ok(());
        }
        let file_args: Vec<String> = files
            .iter()
            .flat_map(|f| ["-f".to_string(), f.display().to_string()])
            .collect();
        let mut args = vec!["apply", "--server-side", "--force-conflicts", "-o", "name"];
        args.extend(file_args.iter().map(String::as_str));
        let out = self.kubectl(&args);
        if !out.status.success() {
            return Err(format!("applying crds/: {}", describe_output(&out)));
        }
        let crds: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("customresourcedefinition"))
            .map(str::to_string)
            .collect();
        if crds.is_empty() {
            return Ok(());
        }
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend(crds.iter().map(String::as_str));
        let out = self.kubectl(&args);
        if !out.status.success() {
            return Err(format!(
                "waiting for the CRDs to be Established: {}",
                describe_output(&out)
            ));
        }
        Ok(())
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after a grace period) and starts it again on
    /// the same port against the same etcd, then waits until it is ready. The controller-manager
    /// keeps running and reconnects. Disruptive: prefer a dedicated instance.
    pub fn restart_apiserver(&self) {
        let inner = &self.inner;
        let _restart = lock(&inner.restart);
        stop_child(&inner.apiserver, GRACEFUL_STOP);
        let started = inner
            .spawn_apiserver()
            .and_then(|()| inner.wait_apiserver_ready(Instant::now() + STARTUP_TIMEOUT));
        if let Err(e) = started {
            panic!(
                "restarting kube-apiserver: {e}\n{}",
                log_tail(&inner.dir.join("kube-apiserver.log"), LOG_TAIL_LINES)
            );
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.dedicated {
            self.inner.shutdown();
            lock(&REGISTRY).retain(|i| !Arc::ptr_eq(i, &self.inner));
        }
    }
}

/// Lowercase alphanumerics and '-', as in a DNS label (not length-limited).
fn dns_label(s: &str) -> String {
    let mapped: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    mapped.trim_matches('-').to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
