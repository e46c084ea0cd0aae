//! Starting etcd, kube-apiserver and kube-controller-manager: the binaries, a temporary directory
//! with certificates and flags, free ports, readiness, restarts and stops, and the logs quoted
//! when something fails.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rcgen::KeyPair;

use super::certs::{Ca, write_kubeconfig};
use super::lifetime::{REGISTRY, block_on, die_with_parent, register, spawn_child};
use super::{
    CONTROLLERS, DIR_PREFIX, INSTALL_HINT, Inner, LOG_TAIL_LINES, STARTUP_TIMEOUT, lock, repo_root,
};

#[derive(Clone, Debug)]
pub(super) struct Binaries {
    etcd: PathBuf,
    kube_apiserver: PathBuf,
    kube_controller_manager: PathBuf,
}

/// Runs `hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager` once per process.
fn binaries() -> Result<Binaries, String> {
    static BINS: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BINS.get_or_init(|| {
        let script = repo_root().join("hack/controlplane/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["etcd", "kube-apiserver", "kube-controller-manager"])
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
            kube_controller_manager: find("kube-controller-manager")?,
        })
    })
    .clone()
}

pub(super) fn start() -> Result<Arc<Inner>, String> {
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

    let [etcd_port, peer_port, port, controller_manager_port] = free_ports().map_err(remove_dir)?;

    // Certificates and keys.
    let ca = Ca::new();
    let (serving_cert, serving_key) = ca.serving_cert("kube-apiserver");
    let (cm_serving_cert, cm_serving_key) = ca.serving_cert("kube-controller-manager");
    let (admin_cert, admin_key) = ca.client_cert("admin", &["system:masters"]);
    // The controller-manager's own identity, with admin rights (it runs every controller with
    // its own credentials: no per-controller service accounts, hence no token controller).
    let (cm_cert, cm_key) = ca.client_cert("system:kube-controller-manager", &["system:masters"]);
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
            write("controller-manager.crt", &cm_serving_cert)?,
            write("controller-manager.key", &cm_serving_key)?,
        ))
    })();
    let (ca_file, cert_file, key_file, sa_key, sa_pub, cm_cert_file, cm_key_file) =
        files.map_err(remove_dir)?;
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
    let cm_kubeconfig = dir.join("controller-manager.kubeconfig");
    write_kubeconfig(
        &cm_kubeconfig,
        &server,
        &ca.pem,
        "system:kube-controller-manager",
        &cm_cert,
        &cm_key,
    )
    .map_err(|e| remove_dir(format!("writing {}: {e}", cm_kubeconfig.display())))?;

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
    // Only what namespace deletion, garbage collection and the HPA need (the HPA controller
    // needs no flag of its own: it syncs a new HPA at once, then every 15 s). No leader election (one
    // instance), loopback only; /healthz on the secure port is open to anonymous requests.
    let controller_manager_args = vec![
        format!("--kubeconfig={}", cm_kubeconfig.display()),
        format!("--controllers={CONTROLLERS}"),
        "--leader-elect=false".to_string(),
        "--bind-address=127.0.0.1".to_string(),
        format!("--secure-port={controller_manager_port}"),
        format!("--tls-cert-file={cm_cert_file}"),
        format!("--tls-private-key-file={cm_key_file}"),
    ];

    let inner = Arc::new(Inner {
        dir: dir.clone(),
        bins: bins.clone(),
        etcd_port,
        port,
        ca,
        kubeconfig,
        controller_manager_port,
        etcd_args,
        apiserver_args,
        controller_manager_args,
        etcd: Mutex::new(None),
        apiserver: Mutex::new(None),
        controller_manager: Mutex::new(None),
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
        .and_then(|()| inner.wait_apiserver_ready(deadline))
        // Only once the apiserver is ready: the controller-manager gives up on an apiserver
        // that is not healthy within 10 s.
        .and_then(|()| inner.spawn_controller_manager())
        .and_then(|()| inner.wait_controller_manager_ready(deadline));
    if let Err(e) = started {
        let message = format!(
            "starting the test control plane failed: {e}\n\
             etcd {:?}, kube-apiserver {:?}, kube-controller-manager {:?}\n\
             --- etcd log (last {LOG_TAIL_LINES} lines) ---\n{}\n\
             --- kube-apiserver log (last {LOG_TAIL_LINES} lines) ---\n{}\n\
             --- kube-apiserver errors ---\n{}\n\
             --- kube-controller-manager log (last {LOG_TAIL_LINES} lines) ---\n{}\n\
             --- kube-controller-manager errors ---\n{}",
            inner.bins.etcd,
            inner.bins.kube_apiserver,
            inner.bins.kube_controller_manager,
            log_tail(&dir.join("etcd.log"), LOG_TAIL_LINES),
            log_tail(&dir.join("kube-apiserver.log"), LOG_TAIL_LINES),
            klog_errors(&dir.join("kube-apiserver.log"), 10),
            log_tail(&dir.join("kube-controller-manager.log"), LOG_TAIL_LINES),
            klog_errors(&dir.join("kube-controller-manager.log"), 10),
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

    pub(super) fn spawn_apiserver(&self) -> Result<(), String> {
        let child = self.spawn_logged(
            &self.bins.kube_apiserver,
            &self.apiserver_args,
            "kube-apiserver.log",
        )?;
        *lock(&self.apiserver) = Some(child);
        Ok(())
    }

    fn spawn_controller_manager(&self) -> Result<(), String> {
        let child = self.spawn_logged(
            &self.bins.kube_controller_manager,
            &self.controller_manager_args,
            "kube-controller-manager.log",
        )?;
        *lock(&self.controller_manager) = Some(child);
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
    pub(super) fn wait_apiserver_ready(&self, deadline: Instant) -> Result<(), String> {
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

    /// Polls the controller-manager's `/healthz?verbose` (served with a certificate of the test
    /// CA) until it passes and lists every controller of [`CONTROLLERS`]: a controller's check
    /// is registered once the controller is built, just before it starts.
    fn wait_controller_manager_ready(&self, deadline: Instant) -> Result<(), String> {
        let client = self.controller_manager_probe_client()?;
        loop {
            check_running(&self.controller_manager, "kube-controller-manager")?;
            let c = client.clone();
            let probe = block_on(async move {
                let attempt = async {
                    let req = http::Request::get("/healthz?verbose")
                        .body(Vec::new())
                        .expect("building /healthz request");
                    let body = c.request_text(req).await.map_err(|e| e.to_string())?;
                    let missing: Vec<&str> = CONTROLLERS
                        .split(',')
                        .filter(|name| !body.contains(&format!("[+]{name} ok")))
                        .collect();
                    if missing.is_empty() && body.contains("healthz check passed") {
                        Ok(())
                    } else {
                        Err(format!("/healthz?verbose said {body:?}"))
                    }
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
                    "kube-controller-manager not healthy on port {} (last probe: {last})",
                    self.controller_manager_port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client for the controller-manager's secure port: the admin kubeconfig's CA, pointed at
    /// that port (the certificate is not asked for; /healthz needs none).
    fn controller_manager_probe_client(&self) -> Result<Client, String> {
        let path = self.kubeconfig.clone();
        let url = format!("https://127.0.0.1:{}", self.controller_manager_port);
        block_on(async move {
            let mut kubeconfig = Kubeconfig::read_from(&path).map_err(|e| e.to_string())?;
            for named in &mut kubeconfig.clusters {
                if let Some(cluster) = named.cluster.as_mut() {
                    cluster.server = Some(url.clone());
                }
            }
            let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            Client::try_from(config).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("building the controller-manager probe client: {e}"))
    }

    /// The admin client of the harness, bound to the harness runtime.
    pub(super) fn admin_client(&self) -> Client {
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

    /// Kills the children, reaps them and removes the directory. Idempotent.
    pub(super) fn shutdown(&self) {
        stop_child(&self.controller_manager, Duration::ZERO);
        stop_child(&self.apiserver, Duration::ZERO);
        stop_child(&self.etcd, Duration::ZERO);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn check_running(slot: &Mutex<Option<Child>>, name: &str) -> Result<(), String> {
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
pub(super) fn stop_child(slot: &Mutex<Option<Child>>, grace: Duration) {
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

/// Four distinct free loopback ports (all held until all are picked).
fn free_ports() -> Result<[u16; 4], String> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"));
    let listeners = [bind()?, bind()?, bind()?, bind()?];
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok([
        port(&listeners[0])?,
        port(&listeners[1])?,
        port(&listeners[2])?,
        port(&listeners[3])?,
    ])
}

/// The last `n` lines of a log file.
pub(super) fn log_tail(path: &Path, n: usize) -> String {
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
