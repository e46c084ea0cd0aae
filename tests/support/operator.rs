//! An end-to-end environment: the shared control plane, a namespace of the test's own, an
//! in-process Pipecat Cloud emulator, and the real `pipecat-operator` binary as a child process
//! (so tests can kill and restart it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use pipecat_cloud_emulator::{self as emulator, AdminClient};
use pipecat_operator::crd::PipecatAgent;

use super::controlplane::ControlPlane;

/// The API key the tests' emulator accepts. Recognisable, so leak checks can look for it.
pub const API_KEY: &str = "pk_test_E2E_SECRET_7f3a9c";

/// Knobs of an environment.
#[derive(Clone)]
pub struct Options {
    /// Emulator settings (keys are filled in).
    pub emulator: emulator::Config,
    /// Create the `pipecat-api-key` Secret in the namespace.
    pub create_secret: bool,
    /// Create the seed example's secret sets in the emulator.
    pub create_secret_sets: bool,
    /// Operator resync interval.
    pub resync: Duration,
    /// Extra operator arguments.
    pub extra_args: Vec<String>,
    /// Run the emulator in strict mode (every request and answer checked against the
    /// official contract; the environment fails the test at its end when any broke it).
    pub strict: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            emulator: emulator::Config::default(),
            create_secret: true,
            create_secret_sets: true,
            resync: Duration::from_secs(2),
            extra_args: Vec::new(),
            strict: true,
        }
    }
}

/// A running environment.
pub struct Env {
    /// The control plane (shared by the tests of this binary).
    pub cp: &'static ControlPlane,
    /// This test's namespace.
    pub ns: String,
    /// The emulator.
    pub emulator: emulator::Handle,
    /// Its admin API.
    pub admin: AdminClient,
    /// The operator process.
    pub operator: Operator,
    /// Fails the test at its end when the emulator journaled a contract violation.
    pub contract: ContractGuard,
}

/// Every end-to-end test is a contract test too: when its environment goes away, a test whose
/// emulator (strict by default) journaled a violation of the official contract, by the
/// operator's requests or by the emulator's own answers, fails with the list.
pub struct ContractGuard(emulator::ContractCheck);

impl ContractGuard {
    /// Watches `emulator`'s findings.
    pub fn new(emulator: &emulator::Handle) -> Self {
        Self(emulator.contract_check())
    }
}

impl Drop for ContractGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.0.check() {
            panic!("{e:#}");
        }
    }
}

impl Env {
    /// Starts everything for one test.
    pub async fn start(prefix: &str, opts: Options) -> Env {
        let cp = ControlPlane::get();
        cp.apply_crds();
        let ns = cp.namespace(prefix);
        let mut config = opts.emulator.clone();
        config.api_keys = vec![API_KEY.to_string()];
        config.strict = opts.strict;
        let emulator = emulator::start(config).await.expect("emulator starts");
        let admin = emulator.admin();
        if opts.create_secret_sets {
            admin
                .create_secret_set(API_KEY, "voice-starter-secrets", &[("OPENAI_API_KEY", "x")])
                .await
                .expect("secret set");
            admin
                .create_image_pull_secret_set(
                    API_KEY,
                    "dockerhub-credentials",
                    "https://index.docker.io/v1/",
                    "user:pass",
                )
                .await
                .expect("pull secret set");
        }
        let env_ns = ns.clone();
        let env = Env {
            contract: ContractGuard::new(&emulator),
            cp,
            operator: Operator::start(
                cp,
                &env_ns,
                &emulator.base_url(),
                opts.resync,
                &opts.extra_args,
            ),
            ns,
            emulator,
            admin,
        };
        if opts.create_secret {
            env.create_api_key_secret("pipecat-api-key").await;
        }
        env
    }

    /// Creates a Secret holding the emulator's key under `api-key`.
    pub async fn create_api_key_secret(&self, name: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.cp.client(), &self.ns);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"api-key": API_KEY}
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the API key Secret");
    }

    /// The PipecatAgent API of this namespace.
    pub fn agents(&self) -> Api<PipecatAgent> {
        Api::namespaced(self.cp.client(), &self.ns)
    }

    /// `kubectl -n <ns> ...`.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.cp.kubectl(&all)
    }

    /// `kubectl apply -n <ns> -f -` of a manifest; panics with kubectl's output on failure.
    pub fn apply(&self, yaml: &str) {
        let out = super::controlplane::kubectl_stdin(
            self.cp.kubeconfig_path(),
            &["apply", "-n", &self.ns, "-f", "-"],
            yaml,
        );
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}",
            super::controlplane::describe_output(&out)
        );
    }

    /// `kubectl apply` that is expected to fail; returns its stderr.
    pub fn apply_err(&self, yaml: &str) -> String {
        let out = super::controlplane::kubectl_stdin(
            self.cp.kubeconfig_path(),
            &["apply", "-n", &self.ns, "-f", "-"],
            yaml,
        );
        assert!(
            !out.status.success(),
            "kubectl apply should have been rejected:\n{yaml}\n{}",
            super::controlplane::describe_output(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Polls the resource every 100 ms until `pred` holds. After `timeout`, an error naming
    /// `what`, the last state seen and the operator's log tail. The one wait loop of the suites:
    /// [`Env::wait_for`] panics with its error, `support::reliability::wait_agent` returns it.
    pub async fn poll_agent(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&PipecatAgent) -> bool,
    ) -> Result<PipecatAgent, String> {
        let api = self.agents();
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Ok(Some(a)) = api.get_opt(name).await {
                if pred(&a) {
                    return Ok(a);
                }
                last = Some(a);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what} on {}/{name}; last seen: {}\noperator log tail:\n{}",
                    self.ns,
                    serde_json::to_string(&last.map(|a| (a.metadata.generation, a.status)))
                        .unwrap_or_default(),
                    self.operator.log_tail(30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`Env::poll_agent`] that panics on timeout.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&PipecatAgent) -> bool,
    ) -> PipecatAgent {
        self.poll_agent(name, timeout, what, pred)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until the resource has `Ready=True` for its current generation.
    pub async fn wait_ready(&self, name: &str) -> PipecatAgent {
        self.wait_for(name, Duration::from_secs(60), "Ready=True", is_ready)
            .await
    }

    /// Waits until the resource no longer exists.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) {
        let api = self.agents();
        let deadline = Instant::now() + timeout;
        while api.get_opt(name).await.expect("get").is_some() {
            assert!(
                Instant::now() < deadline,
                "{name} still exists after {timeout:?}\noperator log tail:\n{}",
                self.operator.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The agent as the emulator reports it (`None` when it does not exist).
    pub async fn remote(&self, name: &str) -> Option<serde_json::Value> {
        let resp = reqwest::Client::new()
            .get(format!("{}/agents/{name}", self.emulator.base_url()))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("emulator answers");
        match resp.status().as_u16() {
            404 => None,
            200 => Some(resp.json().await.expect("agent JSON")),
            s => panic!("emulator GET {name}: HTTP {s}"),
        }
    }

    /// Names of the agents the emulator holds for the test key.
    pub async fn remote_names(&self) -> Vec<String> {
        let list: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/agents", self.emulator.base_url()))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("emulator answers")
            .json()
            .await
            .expect("list JSON");
        list["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|s| s["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until the emulator has served `n` calls of `operation` (since its last reset): the
    /// operator kept working that far.
    pub async fn wait_calls(&self, operation: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let calls = self.calls(operation).await;
            if calls >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{calls} calls of {operation}, waiting for {n}:\n{}",
                self.operator.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Calls of one operation the emulator has served.
    pub async fn calls(&self, operation: &str) -> u64 {
        self.admin
            .counts()
            .await
            .expect("counts")
            .operation(operation)
    }
}

/// `Ready=True` observed for the current generation.
pub fn is_ready(a: &PipecatAgent) -> bool {
    a.condition("Ready")
        .is_some_and(|c| c.status == "True" && c.observed_generation == a.metadata.generation)
}

/// The operator child process; killed on drop.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
    args: Vec<String>,
    kubeconfig: PathBuf,
    /// Port of its `/metrics` endpoint.
    pub metrics_port: u16,
    /// Port of its `/healthz` and `/readyz` endpoints.
    pub health_port: u16,
    /// Its identity (POD_NAME) for leader election.
    pub identity: String,
    _dir: tempfile::TempDir,
}

/// Two distinct free loopback ports (both held until both are known, then released).
pub fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("local addr").port();
    (port(&a), port(&b))
}

impl Operator {
    /// Starts an operator watching `ns`, talking to the Pipecat API at `api_url`.
    pub fn start(
        cp: &ControlPlane,
        ns: &str,
        api_url: &str,
        resync: Duration,
        extra: &[String],
    ) -> Operator {
        let dir = tempfile::Builder::new()
            .prefix("pipecat-operator-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut args: Vec<String> = [
            "run",
            "--api-url",
            api_url,
            "--namespace",
            ns,
            "--poll-interval",
            "200ms",
            "--max-poll-interval",
            "1s",
            "--backoff-base",
            "200ms",
            "--backoff-cap",
            "3s",
            "--request-timeout",
            "3s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--resync-interval".into());
        args.push(format!("{}ms", resync.as_millis()));
        let (metrics_port, health_port) = free_ports();
        args.push(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"));
        args.push(format!(
            "--health-probe-bind-address=127.0.0.1:{health_port}"
        ));
        args.extend(extra.iter().cloned());
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let identity = format!(
            "operator-{}",
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let mut op = Operator {
            child: None,
            log: dir.path().join("operator.log"),
            args,
            kubeconfig: cp.kubeconfig_path().to_path_buf(),
            metrics_port,
            health_port,
            identity,
            _dir: dir,
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_pipecat-operator"))
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", &self.identity)
            .env(
                "RUST_LOG",
                // The kube client's request line (`HTTP{http.method=.. http.url=..}:
                // requesting`) is how status writes are counted: `Operator::status_writes`.
                "debug,kube=info,tower=info,hyper=info,hyper_util=info,reqwest=info,rustls=info,\
                 kube_client::client::builder=debug",
            )
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start pipecat-operator");
        self.child = Some(child);
    }

    /// SIGKILL, like a node dying.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, like Kubernetes stopping the pod.
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET one of its endpoints: (status, body).
    pub async fn get(&self, port: u16, path: &str) -> (u16, String) {
        match reqwest::get(format!("http://127.0.0.1:{port}{path}")).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// The value of one metric series (exact label text), if exposed.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get(self.metrics_port, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    /// The sum of every series of one metric family (`name` or `name{labels}`); 0 when none
    /// is exposed. Panics when `/metrics` does not answer, so 0 never means "not read".
    pub async fn metric_sum(&self, family: &str) -> f64 {
        let (status, text) = self.get(self.metrics_port, "/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(family)?;
                let value = if let Some(labelled) = rest.strip_prefix('{') {
                    labelled.split_once('}')?.1
                } else {
                    rest.strip_prefix(' ')?
                };
                value.trim().parse::<f64>().ok()
            })
            .sum()
    }

    /// Starts it again with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// True while the process runs (it has not exited, crashed or been killed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Status writes of the PipecatAgent `ns/name` it sent so far (across restarts): every
    /// request to the status subresource, counted from the kube client's request log, whether
    /// the apiserver stored anything or not. (A server-side apply that changes nothing keeps
    /// the resourceVersion, so an unchanged resourceVersion does not show that nothing was
    /// written.)
    pub fn status_writes(&self, ns: &str, name: &str) -> usize {
        let path = format!("/namespaces/{ns}/pipecatagents/{name}/status?");
        self.log()
            .lines()
            .filter(|l| {
                l.contains("requesting") && l.contains("http.method=PATCH") && l.contains(&path)
            })
            .count()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
