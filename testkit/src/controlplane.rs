//! An envtest-style Kubernetes control plane for the integration tests, the demo and the
//! benchmark: a real etcd and a real kube-apiserver on free loopback ports, with no Docker, no
//! kubelet, no scheduler and no controller-manager (so no garbage collection, no namespace
//! finalization, no pods running, and the aggregated ClusterRoles `admin`/`edit`/`view` have no
//! rules: write your own Roles).
//!
//! Usage: `ControlPlane::get()` returns the control plane shared by every test of the test binary
//! (started lazily, once); each test takes its own namespace with `cp.namespace("prefix")`.
//! `ControlPlane::start_dedicated()` starts a private one, torn down when dropped (use it for
//! anything disruptive, such as `restart_apiserver`).
//!
//! The binaries come from `hack/controlplane/build.sh` (built once with the Go toolchain and
//! cached, or taken from `KUBEBUILDER_ASSETS`). Certificates are generated in-process: a CA, the
//! apiserver serving certificate, an admin client certificate (`system:masters`) and the service
//! account signing key; other identities are minted on demand with `mint_user`.
//!
//! Teardown: the children get `PR_SET_PDEATHSIG=SIGKILL` (spawned from a dedicated thread that
//! lives as long as the process, since the signal fires when the *spawning thread* exits), and an
//! `atexit` hook kills them and removes the temporary directory when the test binary exits, whether
//! its tests passed or failed. Directories left behind by a test binary that was killed outright
//! are swept by the next start.

use std::fs;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// How long etcd + kube-apiserver may take to become ready (a loaded 2-core machine is slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a restarted kube-apiserver may take to shut down gracefully before it is killed.
const GRACEFUL_STOP: Duration = Duration::from_secs(20);
/// Lines of each child's log quoted in a startup failure.
const LOG_TAIL_LINES: usize = 40;
/// Prefix of the per-instance temporary directory (followed by the test process id).
const DIR_PREFIX: &str = "pipecat-cp-";
/// The version the build script stamps into kube-apiserver.
pub const KUBE_VERSION: &str = "v1.37.2";

const INSTALL_HINT: &str = "The Kubernetes integration tests run a real etcd and kube-apiserver. \
     Install the Go toolchain (https://go.dev/dl/, `go` on PATH) so that hack/controlplane/build.sh \
     can build them (first run only, cached under ~/.cache/pipecat-operator/bin), or set \
     KUBEBUILDER_ASSETS to a directory holding `etcd` and `kube-apiserver` binaries.";

/// The repository's root: this crate lives in its `testkit/` directory.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is inside the repository")
}

/// A running etcd + kube-apiserver pair.
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
    ca: Ca,
    kubeconfig: PathBuf,
    etcd_args: Vec<String>,
    apiserver_args: Vec<String>,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
    /// Serializes restarts.
    restart: Mutex<()>,
    /// Admin client bound to the harness runtime (for the harness's own requests).
    admin: OnceLock<Client>,
    crds: OnceLock<Result<(), String>>,
    seq: AtomicU64,
    /// Wall time from creating the directory to the apiserver being ready.
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

    /// How long etcd + kube-apiserver took to become ready (binaries already built).
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

    /// A fresh admin client. Call it inside a tokio runtime (e.g. a `#[tokio::test]`); the
    /// client then belongs to that runtime.
    pub fn client(&self) -> Client {
        client_from_kubeconfig(&self.inner.kubeconfig)
    }

    /// Creates a namespace named `<prefix>-<n>-<random>` and returns its name. Namespaces are
    /// never finalized here (no controller-manager): deleting one leaves it Terminating.
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
    /// the same port against the same etcd, then waits until it is ready. Disruptive: prefer a
    /// dedicated instance.
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

/// A client for the kubeconfig at `path` (via `Kubeconfig::read_from` and
/// `Config::from_custom_kubeconfig`). Inside a tokio runtime the client belongs to that runtime;
/// outside one it is bound to the harness's own runtime.
pub fn client_from_kubeconfig(path: &Path) -> Client {
    let owned = path.to_path_buf();
    let config = block_on(async move {
        let kubeconfig = Kubeconfig::read_from(&owned)?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await
    })
    .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()));
    let built = if tokio::runtime::Handle::try_current().is_ok() {
        Client::try_from(config)
    } else {
        block_on(async move { Client::try_from(config) })
    };
    built.unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
}

/// Runs kubectl with the given kubeconfig (e.g. one from [`ControlPlane::mint_user`]).
pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"))
}

/// Runs kubectl with the given kubeconfig, feeding `stdin`.
pub fn kubectl_stdin(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    let mut pipe = child.stdin.take().expect("kubectl stdin");
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    let _ = writer.join();
    out
}

/// "exit status: stdout / stderr" of a finished command, for assertion messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn kubectl_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("kubectl");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/bin/kubectl")
}

// ---------------------------------------------------------------------------------------------
// Startup

#[derive(Clone, Debug)]
struct Binaries {
    etcd: PathBuf,
    kube_apiserver: PathBuf,
}

/// Runs `hack/controlplane/build.sh etcd kube-apiserver` once per process.
fn binaries() -> Result<Binaries, String> {
    static BINS: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BINS.get_or_init(|| {
        let script = repo_root().join("hack/controlplane/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["etcd", "kube-apiserver"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}\n{INSTALL_HINT}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}\n{INSTALL_HINT}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let find = |name: &str| -> Result<PathBuf, String> {
            let path = stdout
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(PathBuf::from)
                .ok_or_else(|| {
                    format!("{} printed no {name}= line:\n{stdout}", script.display())
                })?;
            if !path.is_file() {
                return Err(format!(
                    "{} named {} for {name}, which does not exist\n{INSTALL_HINT}",
                    script.display(),
                    path.display()
                ));
            }
            Ok(path)
        };
        Ok(Binaries {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
        })
    })
    .clone()
}

fn start() -> Result<Arc<Inner>, String> {
    let bins = binaries()?;
    sweep_stale_dirs();
    let mut last = String::new();
    // A port picked as free may be taken by someone else before the child binds it: retry then.
    for _ in 0..3 {
        match start_once(&bins) {
            Ok(inner) => return Ok(inner),
            Err(e) => {
                let retry = e.contains("address already in use");
                last = e;
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last)
}

fn start_once(bins: &Binaries) -> Result<Arc<Inner>, String> {
    static DIR_SEQ: AtomicU64 = AtomicU64::new(0);
    let begin = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{}-{:08x}",
        std::process::id(),
        DIR_SEQ.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    let certs = dir.join("certs");
    let etcd_data = dir.join("etcd");
    fs::create_dir_all(&certs).map_err(|e| format!("creating {}: {e}", certs.display()))?;
    fs::create_dir_all(&etcd_data).map_err(|e| format!("creating {}: {e}", etcd_data.display()))?;
    let remove_dir = |e: String| {
        let _ = fs::remove_dir_all(&dir);
        e
    };

    let [etcd_port, peer_port, port] = free_ports().map_err(remove_dir)?;

    // Certificates and keys.
    let ca = Ca::new();
    let (serving_cert, serving_key) = ca.serving_cert();
    let (admin_cert, admin_key) = ca.client_cert("admin", &["system:masters"]);
    let sa = KeyPair::generate().expect("generating the service account key");
    let write = |name: &str, data: &str| -> Result<String, String> {
        let path = certs.join(name);
        fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path.display().to_string())
    };
    let files = (|| -> Result<_, String> {
        Ok((
            write("ca.crt", &ca.pem)?,
            write("apiserver.crt", &serving_cert)?,
            write("apiserver.key", &serving_key)?,
            write("sa.key", &sa.serialize_pem())?,
            write("sa.pub", &sa.public_key_pem())?,
        ))
    })();
    let (ca_file, cert_file, key_file, sa_key, sa_pub) = files.map_err(remove_dir)?;
    let kubeconfig = dir.join("admin.kubeconfig");
    let server = format!("https://127.0.0.1:{port}");
    write_kubeconfig(
        &kubeconfig,
        &server,
        &ca.pem,
        "admin",
        &admin_cert,
        &admin_key,
    )
    .map_err(|e| remove_dir(format!("writing {}: {e}", kubeconfig.display())))?;

    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let etcd_args = vec![
        format!("--data-dir={}", etcd_data.display()),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        "--unsafe-no-fsync=true".to_string(),
    ];
    let apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--cert-dir={}", certs.display()),
        format!("--tls-cert-file={cert_file}"),
        format!("--tls-private-key-file={key_file}"),
        format!("--client-ca-file={ca_file}"),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".to_string(),
        "--advertise-address=127.0.0.1".to_string(),
        "--authorization-mode=RBAC".to_string(),
        format!("--service-account-issuer={server}/"),
        format!("--service-account-key-file={sa_pub}"),
        format!("--service-account-signing-key-file={sa_key}"),
        "--service-cluster-ip-range=10.0.0.0/24".to_string(),
        "--disable-admission-plugins=ServiceAccount".to_string(),
        "--allow-privileged=true".to_string(),
        "--enable-priority-and-fairness=false".to_string(),
        // 1.37 refuses a loopback advertise address for the `kubernetes` Service endpoints;
        // nothing here needs them.
        "--endpoint-reconciler-type=none".to_string(),
    ];

    let inner = Arc::new(Inner {
        dir: dir.clone(),
        bins: bins.clone(),
        etcd_port,
        port,
        ca,
        kubeconfig,
        etcd_args,
        apiserver_args,
        etcd: Mutex::new(None),
        apiserver: Mutex::new(None),
        restart: Mutex::new(()),
        admin: OnceLock::new(),
        crds: OnceLock::new(),
        seq: AtomicU64::new(0),
        startup: OnceLock::new(),
    });
    // From here on the atexit hook covers this instance even if startup panics.
    register(&inner);

    let deadline = begin + STARTUP_TIMEOUT;
    let started = inner
        .spawn_etcd()
        .and_then(|()| inner.wait_etcd_ready(deadline))
        .and_then(|()| inner.spawn_apiserver())
        .and_then(|()| inner.wait_apiserver_ready(deadline));
    if let Err(e) = started {
        let message = format!(
            "starting the test control plane failed: {e}\n\
             etcd {:?}, kube-apiserver {:?}\n\
             --- etcd log (last {LOG_TAIL_LINES} lines) ---\n{}\n\
             --- kube-apiserver log (last {LOG_TAIL_LINES} lines) ---\n{}\n\
             --- kube-apiserver errors ---\n{}",
            inner.bins.etcd,
            inner.bins.kube_apiserver,
            log_tail(&dir.join("etcd.log"), LOG_TAIL_LINES),
            log_tail(&dir.join("kube-apiserver.log"), LOG_TAIL_LINES),
            klog_errors(&dir.join("kube-apiserver.log"), 10),
        );
        inner.shutdown();
        lock(&REGISTRY).retain(|i| !Arc::ptr_eq(i, &inner));
        return Err(message);
    }
    let _ = inner.startup.set(begin.elapsed());
    Ok(inner)
}

impl Inner {
    fn spawn_etcd(&self) -> Result<(), String> {
        let child = self.spawn_logged(&self.bins.etcd, &self.etcd_args, "etcd.log")?;
        *lock(&self.etcd) = Some(child);
        Ok(())
    }

    fn spawn_apiserver(&self) -> Result<(), String> {
        let child = self.spawn_logged(
            &self.bins.kube_apiserver,
            &self.apiserver_args,
            "kube-apiserver.log",
        )?;
        *lock(&self.apiserver) = Some(child);
        Ok(())
    }

    fn spawn_logged(&self, bin: &Path, args: &[String], log: &str) -> Result<Child, String> {
        let log_path = self.dir.join(log);
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
        };
        let (stdout, stderr) = open()
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        die_with_parent(&mut cmd);
        spawn_child(cmd).map_err(|e| format!("starting {}: {e}", bin.display()))
    }

    fn wait_etcd_ready(&self, deadline: Instant) -> Result<(), String> {
        loop {
            check_running(&self.etcd, "etcd")?;
            if etcd_healthy(self.etcd_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd not healthy on port {} after {STARTUP_TIMEOUT:?}",
                    self.etcd_port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `/readyz` with the admin certificate, then waits for the `default` namespace.
    fn wait_apiserver_ready(&self, deadline: Instant) -> Result<(), String> {
        let client = self.admin_client();
        loop {
            check_running(&self.apiserver, "kube-apiserver")?;
            let c = client.clone();
            let probe = block_on(async move {
                let attempt = async {
                    let req = http::Request::get("/readyz")
                        .body(Vec::new())
                        .expect("building /readyz request");
                    let body = c.request_text(req).await.map_err(|e| e.to_string())?;
                    if body.trim() != "ok" {
                        return Err(format!("/readyz said {body:?}"));
                    }
                    Api::<Namespace>::all(c)
                        .get("default")
                        .await
                        .map_err(|e| format!("namespace default: {e}"))?;
                    Ok(())
                };
                tokio::time::timeout(Duration::from_secs(5), attempt)
                    .await
                    .unwrap_or_else(|_| Err("probe timed out".to_string()))
            });
            let Err(last) = probe else {
                return Ok(());
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready on port {} (last probe: {last})",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The admin client of the harness, bound to the harness runtime.
    fn admin_client(&self) -> Client {
        self.admin
            .get_or_init(|| {
                let path = self.kubeconfig.clone();
                block_on(async move {
                    let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| e.to_string())?;
                    let config =
                        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                            .await
                            .map_err(|e| e.to_string())?;
                    Client::try_from(config).map_err(|e| e.to_string())
                })
                .unwrap_or_else(|e| panic!("building the admin client: {e}"))
            })
            .clone()
    }

    /// Kills both children, reaps them and removes the directory. Idempotent.
    fn shutdown(&self) {
        stop_child(&self.apiserver, Duration::ZERO);
        stop_child(&self.etcd, Duration::ZERO);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn check_running(slot: &Mutex<Option<Child>>, name: &str) -> Result<(), String> {
    match lock(slot).as_mut() {
        None => Err(format!("{name} is not running")),
        Some(child) => match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{name} exited early ({status})")),
            Err(e) => Err(format!("{name}: {e}")),
        },
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps.
fn stop_child(slot: &Mutex<Option<Child>>, grace: Duration) {
    let Some(mut child) = lock(slot).take() else {
        return;
    };
    if !grace.is_zero() {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: plain syscall on our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn etcd_healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// Three distinct free loopback ports (all held until all are picked).
fn free_ports() -> Result<[u16; 3], String> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"));
    let listeners = [bind()?, bind()?, bind()?];
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok([
        port(&listeners[0])?,
        port(&listeners[1])?,
        port(&listeners[2])?,
    ])
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// The last `n` error and fatal lines of a klog log (`E1128 ...`, `F1128 ...`): the reason an
/// apiserver exits is often buried under its other output.
fn klog_errors(path: &Path, n: usize) -> String {
    let Ok(text) = fs::read_to_string(path) else {
        return String::new();
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 5 && matches!(b[0], b'E' | b'F') && b[1..5].iter().all(u8::is_ascii_digit)
        })
        .collect();
    errors[errors.len().saturating_sub(n)..].join("\n")
}

/// Removes directories of earlier test processes that no longer exist (killed before their
/// atexit hook could run).
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process lifetime: spawner thread, PDEATHSIG, atexit teardown

/// Every live instance, torn down by the atexit hook.
static REGISTRY: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());

fn register(inner: &Arc<Inner>) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn` with the C runtime.
        let rc = unsafe { libc::atexit(teardown_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
    });
    lock(&REGISTRY).push(Arc::clone(inner));
}

extern "C" fn teardown_at_exit() {
    // Unwinding out of an `extern "C"` function aborts: contain any panic.
    let _ = std::panic::catch_unwind(|| {
        let all = std::mem::take(&mut *lock(&REGISTRY));
        for inner in all {
            inner.shutdown();
        }
    });
}

/// Makes the child die with SIGKILL when the thread that spawned it (the spawner thread, which
/// lives as long as the process) exits, i.e. when the test process dies however it dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid is always safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only makes async-signal-safe syscalls and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from a dedicated long-lived thread (PDEATHSIG is tied to the spawning thread,
/// and test threads come and go).
fn spawn_child(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
                // Unreachable while the sender lives in a static; never exit regardless.
                loop {
                    std::thread::park();
                }
            })
            .expect("starting the control plane spawner thread");
        tx
    });
    let gone = || io::Error::other("the control plane spawner thread is gone");
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

// ---------------------------------------------------------------------------------------------
// Harness runtime

/// The harness's own tokio runtime: lets the synchronous helpers make requests from any thread,
/// inside or outside the tests' runtimes.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("controlplane-rt")
            .enable_all()
            .build()
            .expect("building the control plane runtime")
    })
}

/// Runs `fut` on the harness runtime and blocks the calling thread until it completes (works from
/// inside another runtime too, blocking that thread).
fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = runtime().spawn(fut);
    match futures::executor::block_on(handle) {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("control plane task failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates and kubeconfigs

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("generating the CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("pipecat-operator-test-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).expect("self-signing the CA").pem();
        Ca { params, key, pem }
    }

    /// Signs `params` for a fresh key; returns (certificate PEM, PKCS#8 key PEM).
    fn issue(&self, params: &CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("generating a key");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("signing a certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn serving_cert(&self) -> (String, String) {
        let sans = [
            "127.0.0.1",
            "10.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut params = CertificateParams::new(sans.map(String::from).to_vec())
            .expect("serving certificate SANs");
        params.distinguished_name = dn("kube-apiserver", &[]);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params)
    }

    fn client_cert(&self, user: &str, groups: &[&str]) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(user, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }
}

/// CN=`common_name`, O=each group (Kubernetes reads groups from the Organization attributes).
/// rcgen keeps one value per attribute type, so the second group goes in as an attribute of the
/// same OID (2.5.4.10) spelled as a custom type.
fn dn(common_name: &str, groups: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (i, group) in groups.iter().enumerate() {
        let ty = match i {
            0 => DnType::OrganizationName,
            1 => DnType::CustomDnType(vec![2, 5, 4, 10]),
            _ => panic!("at most two groups per certificate"),
        };
        dn.push(ty, *group);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> io::Result<()> {
    // JSON strings are valid YAML scalars.
    let q = |s: &str| serde_json::to_string(s).expect("JSON string");
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: envtest\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: envtest\n  \
           context:\n    \
             cluster: envtest\n    \
             user: {user}\n    \
             namespace: default\n\
         current-context: envtest\n",
        server = q(server),
        ca = base64(ca_pem.as_bytes()),
        user = q(user),
        cert = base64(cert_pem.as_bytes()),
        key = base64(key_pem.as_bytes()),
    );
    fs::write(path, text)
}

/// Standard base64 with padding (kubeconfig data and Secret values).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
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
