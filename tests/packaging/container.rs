//! The container image: built by `hack/image.sh` (umoci, no engine, no base image) from the
//! binary of this test build, compared with what the `Dockerfile` declares, and run with `runc`
//! the way the Helm chart runs it (uid 65532, read-only root filesystem, no capabilities, no
//! privilege escalation), on the host network against the test control plane and the emulator.
//!
//! Needs root (runc creates namespaces and cgroups) and Debian's `runc` and `umoci`, which are
//! installed with apt-get when missing. Without them the tests fail and say why.
//!
//! The image is built from the debug binary cargo built for this test (stripped by the
//! script), or from the binary named by `PIPECAT_OPERATOR_IMAGE_BINARY` (e.g.
//! `target/release/pipecat-operator`); `hack/image.sh` caches the archive by the binary's
//! digest, so an unchanged binary is not packed again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use pipecat_cloud_emulator as emulator;
use pipecat_operator::crd::PipecatAgent;
use serde_json::{Value, json};

use crate::support::controlplane::{ControlPlane, describe_output};
use crate::support::operator::{API_KEY, free_ports, is_ready};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The operator binary cargo built for this test.
const BINARY: &str = env!("CARGO_BIN_EXE_pipecat-operator");
/// Where the kubeconfig is mounted inside the container.
const KUBECONFIG_IN_CONTAINER: &str = "/tmp/kubeconfig";
/// Prefix of the runc container ids (followed by this process's id).
const ID_PREFIX: &str = "pipecat-operator-test-";

// ---------------------------------------------------------------------------------------------
// The image

/// The image `hack/image.sh` built, unpacked from its archive.
struct Image {
    /// The OCI archive.
    archive: PathBuf,
    /// The manifest digest the script printed.
    digest: String,
    /// The tag inside the archive.
    tag: String,
    /// The archive extracted: an OCI image layout.
    layout: PathBuf,
}

impl Image {
    /// Built (or reused) once per test binary. Panics with the reason when it cannot be.
    fn get() -> &'static Image {
        static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
        match IMAGE.get_or_init(build_image) {
            Ok(image) => image,
            Err(e) => panic!("{e}"),
        }
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        let path = self.layout.join("blobs/sha256").join(hex);
        fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn json_blob(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest))
            .unwrap_or_else(|e| panic!("blob {digest} is not JSON: {e}"))
    }

    /// The manifest the archive's index names for the tag.
    fn manifest(&self) -> Value {
        let index: Value = serde_json::from_slice(
            &fs::read(self.layout.join("index.json")).expect("index.json in the archive"),
        )
        .expect("index.json is JSON");
        let manifests = index["manifests"].as_array().expect("index manifests");
        let entry = manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == self.tag.as_str())
            .unwrap_or_else(|| panic!("no manifest tagged {} in {index}", self.tag));
        assert_eq!(
            entry["digest"], self.digest,
            "the archive's manifest is not the digest the script printed"
        );
        self.json_blob(entry["digest"].as_str().expect("manifest digest"))
    }

    /// The image configuration (`config` of the OCI image config blob, plus its top level).
    fn config(&self) -> Value {
        let manifest = self.manifest();
        self.json_blob(
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        )
    }
}

fn build_image() -> Result<Image, String> {
    ensure_tools()?;
    let target = Path::new(BINARY)
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("no target directory above {BINARY}"))?;
    let archive = target.join("image/pipecat-operator-test.oci.tar");
    let script = Path::new(REPO).join("hack/image.sh");
    let binary = std::env::var_os("PIPECAT_OPERATOR_IMAGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINARY));
    let out = Command::new("bash")
        .arg(&script)
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&archive)
        .current_dir(REPO)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            describe_output(&out)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Result<String, String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| format!("{} printed no {name}= line:\n{stdout}", script.display()))
    };
    let archive = PathBuf::from(field("archive")?);
    let digest = field("digest")?;
    let tag = field("tag")?;
    // The archive as it would be shipped, extracted afresh.
    let layout = target.join("image/pipecat-operator-test.layout");
    let _ = fs::remove_dir_all(&layout);
    fs::create_dir_all(&layout).map_err(|e| format!("creating {}: {e}", layout.display()))?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .output()
        .map_err(|e| format!("running tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "extracting {}: {}",
            archive.display(),
            describe_output(&out)
        ));
    }
    let size = fs::metadata(&archive).map(|m| m.len()).unwrap_or_default();
    eprintln!(
        "container: image {digest} ({:.1} MiB), {}, from {}",
        size as f64 / (1024.0 * 1024.0),
        archive.display(),
        binary.display()
    );
    Ok(Image {
        archive,
        digest,
        tag,
        layout,
    })
}

/// Root, and `runc` and `umoci` on PATH (installed from Debian's packages when missing).
fn ensure_tools() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the container tests run the image with runc, which needs root (namespaces, \
             cgroups, mounts): run the suite as root, as CI does"
                .into(),
        );
    }
    let missing: Vec<&str> = ["runc", "umoci"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let hint = format!(
        "the container tests need {} (Debian packages: apt-get install -y {})",
        missing.join(" and "),
        missing.join(" ")
    );
    let apt = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{hint}; running apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{hint}; apt-get {} failed: {}",
                args.join(" "),
                describe_output(&out)
            ))
        }
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    match missing.iter().find(|tool| !on_path(tool)) {
        Some(tool) => Err(format!("{hint}; {tool} is still not on PATH after apt-get")),
        None => Ok(()),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

// ---------------------------------------------------------------------------------------------
// Containers

/// A runc container of the image, with the chart's security settings.
struct Container {
    id: String,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Container {
    /// A fresh bundle of the image running `args` after the image's entrypoint, with
    /// `kubeconfig` (if any) bind-mounted read-only: the only file from the host.
    fn bundle(args: &[String], kubeconfig: Option<&Path>) -> Container {
        let image = Image::get();
        sweep_stale_containers();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{ID_PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("pipecat-container-")
            .tempdir()
            .expect("temp dir");
        let bundle = dir.path().join("bundle");
        let out = Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{}", image.layout.display(), image.tag))
            .arg(&bundle)
            .output()
            .expect("running umoci unpack");
        assert!(
            out.status.success(),
            "umoci unpack: {}",
            describe_output(&out)
        );

        // umoci derives the runtime spec from the image config: user, entrypoint, env.
        let path = bundle.join("config.json");
        let mut spec: Value =
            serde_json::from_slice(&fs::read(&path).expect("config.json")).expect("spec JSON");
        let entrypoint = image.config()["config"]["Entrypoint"].clone();
        let mut argv: Vec<Value> = entrypoint.as_array().expect("an entrypoint").clone();
        argv.extend(args.iter().map(|a| json!(a)));
        let process = &mut spec["process"];
        process["args"] = Value::Array(argv);
        process["terminal"] = json!(false);
        process["noNewPrivileges"] = json!(true);
        process["capabilities"] = json!({
            "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
        });
        let env = process["env"].as_array_mut().expect("process env");
        env.push(json!(format!("KUBECONFIG={KUBECONFIG_IN_CONTAINER}")));
        env.push(json!(
            "RUST_LOG=debug,kube=info,tower=info,hyper=info,hyper_util=info,reqwest=info"
        ));
        spec["root"]["readonly"] = json!(true);
        // The host network: the control plane and the emulator listen on loopback.
        spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .retain(|ns| ns["type"] != "network");
        if let Some(kubeconfig) = kubeconfig {
            spec["mounts"].as_array_mut().expect("mounts").push(json!({
                "destination": KUBECONFIG_IN_CONTAINER,
                "type": "bind",
                "source": kubeconfig,
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"]
            }));
        }
        fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).expect("writing config.json");
        Container {
            id,
            child: None,
            log: dir.path().join("container.log"),
            dir,
        }
    }

    fn runc(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("run")
            .arg("--bundle")
            .arg(self.dir.path().join("bundle"))
            .arg(&self.id)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs to the end; its output.
    fn output(args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let container = Container::bundle(&args, None);
        container.runc().output().expect("running runc")
    }

    /// Starts it in the background, logging to a file.
    fn start(args: &[String], kubeconfig: &Path) -> Container {
        let mut container = Container::bundle(args, Some(kubeconfig));
        let log = fs::File::create(&container.log).expect("container log");
        let child = container
            .runc()
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting runc");
        container.child = Some(child);
        container
    }

    /// The host pid of the container's process, once runc reports it running.
    fn pid(&mut self, timeout: Duration) -> u32 {
        let deadline = Instant::now() + timeout;
        loop {
            let out = Command::new("runc")
                .args(["state", &self.id])
                .output()
                .expect("runc state");
            if out.status.success() {
                let state: Value = serde_json::from_slice(&out.stdout).expect("runc state JSON");
                if state["status"] == "running" {
                    return state["pid"].as_u64().expect("pid") as u32;
                }
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "container {} not running after {timeout:?}: {}\nlog:\n{}",
                self.id,
                describe_output(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, which runc forwards to the operator, as the kubelet does; the exit status.
    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("a running container");
        // SAFETY: a signal to our own child process (runc).
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for runc") {
                return status;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!(
                    "the container did not stop within {timeout:?} of SIGTERM\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the container has exited.
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("a started container");
        if let Some(status) = child.try_wait().expect("waiting for runc") {
            self.child = None;
            panic!(
                "the container exited ({status}) while it should run\nlog:\n{}",
                self.log()
            );
        }
    }

    /// A `Key:\tvalue` line of the container process's /proc/PID/status.
    fn proc_status(&mut self, pid: u32, key: &str) -> String {
        self.assert_running();
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}\nlog:\n{}", self.log()));
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("runc")
                .args(["kill", &self.id, "KILL"])
                .output();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
    }
}

/// Deletes containers left by test processes that no longer exist.
fn sweep_stale_containers() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(out) = Command::new("runc").args(["list", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let owner = id
                .strip_prefix(ID_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = owner
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = Command::new("runc")
                    .args(["delete", "--force", id])
                    .output();
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

/// The final stage of the Dockerfile: (user, entrypoint, cmd, exposed ports, labels).
struct Declared {
    user: String,
    entrypoint: Value,
    cmd: Value,
    ports: Vec<String>,
    labels: Vec<(String, String)>,
}

fn dockerfile_declares() -> Declared {
    let text = fs::read_to_string(Path::new(REPO).join("Dockerfile")).expect("Dockerfile");
    // Logical lines: comments dropped, continuations joined.
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let stage = &lines[last_from..];
    let one = |instruction: &str| -> String {
        let found: Vec<&String> = stage
            .iter()
            .filter(|l| l.starts_with(&format!("{instruction} ")))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {instruction} in the final stage: {found:?}"
        );
        found[0][instruction.len() + 1..].trim().to_string()
    };
    let label = regex::Regex::new(r#"([A-Za-z0-9._-]+)="([^"]*)""#).unwrap();
    let labels = stage
        .iter()
        .filter_map(|l| l.strip_prefix("LABEL "))
        .flat_map(|l| {
            label
                .captures_iter(l)
                .map(|c| (c[1].to_string(), c[2].to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    Declared {
        user: one("USER"),
        entrypoint: serde_json::from_str(&one("ENTRYPOINT")).expect("ENTRYPOINT in JSON form"),
        cmd: serde_json::from_str(&one("CMD")).expect("CMD in JSON form"),
        ports: one("EXPOSE")
            .split_whitespace()
            .map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })
            .collect(),
        labels,
    }
}

/// The value a Dockerfile build argument gets from the documented build command.
fn build_arg(name: &str) -> String {
    match name {
        "VERSION" => env!("CARGO_PKG_VERSION").to_string(),
        "REVISION" => Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(REPO)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into()),
        other => {
            panic!("the Dockerfile uses build argument {other}, which hack/image.sh does not set")
        }
    }
}

#[test]
fn image_config_is_what_the_dockerfile_declares() {
    let image = Image::get();
    let config = image.config();
    let declared = dockerfile_declares();
    let c = &config["config"];

    assert_eq!(c["User"], declared.user.as_str(), "user");
    assert_eq!(c["Entrypoint"], declared.entrypoint, "entrypoint");
    assert_eq!(c["Cmd"], declared.cmd, "cmd");
    let mut ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    ports.sort();
    let mut declared_ports = declared.ports.clone();
    declared_ports.sort();
    assert_eq!(ports, declared_ports, "exposed ports");

    // Exactly the Dockerfile's labels, with its build arguments filled in.
    let arg = regex::Regex::new(r"^\$\{([A-Z_]+)\}$").unwrap();
    let expected: serde_json::Map<String, Value> = declared
        .labels
        .iter()
        .map(|(k, v)| {
            let value = match arg.captures(v) {
                Some(c) => build_arg(&c[1]),
                None => v.clone(),
            };
            (k.clone(), json!(value))
        })
        .collect();
    assert_eq!(c["Labels"], Value::Object(expected), "labels");
    for key in ["version", "revision", "title", "licenses"] {
        assert!(
            declared
                .labels
                .iter()
                .any(|(k, _)| k == &format!("org.opencontainers.image.{key}")),
            "the Dockerfile declares no org.opencontainers.image.{key} label"
        );
    }

    assert_eq!(config["os"], "linux");
    assert_eq!(
        image.tag,
        env!("CARGO_PKG_VERSION"),
        "the archive's tag is the chart's default (appVersion = crate version)"
    );
    let manifest = image.manifest();
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(1),
        "one layer: {manifest}"
    );
    assert!(
        image.archive.is_file(),
        "{} is not a file",
        image.archive.display()
    );
}

#[test]
fn image_holds_the_binary_exactly_its_libraries_the_ca_roots_and_user_65532() {
    let container = Container::bundle(&[], None);
    let rootfs = container.dir.path().join("bundle/rootfs");
    let mut files = Vec::new();
    let mut dirs = vec![rootfs.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("rootfs directory") {
            let path = entry.expect("rootfs entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(format!(
                    "/{}",
                    path.strip_prefix(&rootfs).unwrap().display()
                ));
            }
        }
    }
    files.sort();

    // The loader and libraries the binary links, and nothing else of the host's.
    let out = Command::new("ldd")
        .arg(rootfs.join("pipecat-operator"))
        .output()
        .expect("running ldd");
    assert!(out.status.success(), "ldd: {}", describe_output(&out));
    let mut libs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once(" => ") {
                Some((_, path)) => path.split_whitespace().next().map(str::to_string),
                None => l
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                    .map(str::to_string),
            }
        })
        .collect();
    let mut expected: Vec<String> = [
        "/etc/group",
        "/etc/hosts",
        "/etc/nsswitch.conf",
        "/etc/passwd",
        "/etc/ssl/certs/ca-certificates.crt",
        "/pipecat-operator",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.append(&mut libs);
    expected.sort();
    assert_eq!(files, expected, "the image's files");

    let read = |path: &str| fs::read_to_string(rootfs.join(path)).expect(path);
    assert!(
        read("etc/passwd")
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "a passwd entry for 65532"
    );
    assert!(
        read("etc/group").lines().any(|l| l == "nonroot:x:65532:"),
        "a group entry for 65532"
    );
    assert!(
        read("etc/ssl/certs/ca-certificates.crt")
            .matches("BEGIN CERTIFICATE")
            .count()
            > 50,
        "the system CA bundle"
    );
}

#[test]
fn version_and_crd_run_in_the_container() {
    let out = Container::output(&["--version"]);
    assert!(out.status.success(), "--version: {}", describe_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pipecat-operator {}", env!("CARGO_PKG_VERSION"))
    );

    let out = Container::output(&["crd"]);
    assert!(out.status.success(), "crd: {}", describe_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        pipecat_operator::crd::all_crds_yaml(),
        "the containerised `crd` prints both CRDs"
    );
}

/// The operator's `run` arguments for a test namespace (as tests/support/operator.rs passes).
fn run_args(ns: &str, api_url: &str, metrics_port: u16, health_port: u16) -> Vec<String> {
    [
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
        "--resync-interval",
        "2s",
        "--shutdown-grace-period",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("--metrics-bind-address=127.0.0.1:{metrics_port}"),
        format!("--health-probe-bind-address=127.0.0.1:{health_port}"),
    ])
    .collect()
}

async fn get_status(port: u16, path: &str) -> u16 {
    match reqwest::get(format!("http://127.0.0.1:{port}{path}")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_in_the_container_reconciles_an_agent_to_ready_and_deletes_it() {
    let image = Image::get();
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("container");
    let emulator = emulator::start(emulator::Config {
        api_keys: vec![API_KEY.to_string()],
        ..emulator::Config::default()
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
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pipecat-api-key"},
        "stringData": {"api-key": API_KEY}
    }))
    .unwrap();
    Api::<Secret>::namespaced(cp.client(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the API key Secret");

    // The emulator by name: `localhost` resolves through the image's nsswitch.conf and hosts.
    let api_url = format!("http://localhost:{}/v1", emulator.addr().port());
    let (metrics_port, health_port) = free_ports();
    let started = Instant::now();
    let mut container = Container::start(
        &run_args(&ns, &api_url, metrics_port, health_port),
        cp.kubeconfig_path(),
    );
    let pid = container.pid(Duration::from_secs(30));

    // The process as the kernel sees it: the chart's securityContext.
    assert_eq!(
        container.proc_status(pid, "Uid"),
        "65532 65532 65532 65532",
        "uid"
    );
    assert_eq!(
        container.proc_status(pid, "Gid"),
        "65532 65532 65532 65532",
        "gid"
    );
    assert_eq!(
        container.proc_status(pid, "Groups"),
        "",
        "supplementary groups"
    );
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            container.proc_status(pid, caps),
            "0000000000000000",
            "{caps}"
        );
    }
    assert_eq!(
        container.proc_status(pid, "NoNewPrivs"),
        "1",
        "no new privileges"
    );
    let ns_link = |p: &str| fs::read_link(format!("/proc/{p}/ns/net")).expect("net namespace");
    assert_eq!(ns_link(&pid.to_string()), ns_link("self"), "host network");
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let mount = |point: &str| -> Vec<String> {
        mountinfo
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(4) == Some(&point)).then(|| f[5].split(',').map(str::to_string).collect())
            })
            .unwrap_or_else(|| panic!("no mount at {point} in the container:\n{mountinfo}"))
    };
    assert!(
        mount("/").contains(&"ro".to_string()),
        "root filesystem read-only"
    );
    assert!(
        mount(KUBECONFIG_IN_CONTAINER).contains(&"ro".to_string()),
        "kubeconfig read-only"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while get_status(health_port, "/readyz").await != 200 {
        container.assert_running();
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within 60s\nlog:\n{}",
            container.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = started.elapsed();

    let agents: Api<PipecatAgent> = Api::namespaced(cp.client(), &ns);
    let agent: PipecatAgent = serde_json::from_value(json!({
        "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
        "metadata": {"name": "voice-starter"},
        "spec": {
            "image": "your-dockername/voice-starter:0.1",
            "nodeType": "arm",
            "imagePullSecretSet": "dockerhub-credentials",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 10},
            "enableKrisp": false
        }
    }))
    .unwrap();
    let applied = Instant::now();
    agents
        .create(&PostParams::default(), &agent)
        .await
        .expect("create the PipecatAgent");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(a) = agents.get_opt("voice-starter").await.expect("get")
            && is_ready(&a)
        {
            break;
        }
        container.assert_running();
        assert!(
            Instant::now() < deadline,
            "voice-starter not Ready within 90s\nlog:\n{}",
            container.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent_ready = applied.elapsed();
    let remote = |name: &'static str| {
        let url = format!("{}/agents/{name}", emulator.base_url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(API_KEY)
                .send()
                .await
                .expect("emulator answers")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        remote("voice-starter").await,
        200,
        "the agent exists remotely"
    );

    agents
        .delete("voice-starter", &DeleteParams::default())
        .await
        .expect("delete the PipecatAgent");
    let deadline = Instant::now() + Duration::from_secs(60);
    while agents
        .get_opt("voice-starter")
        .await
        .expect("get")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "voice-starter still exists 60s after deletion\nlog:\n{}",
            container.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        remote("voice-starter").await,
        404,
        "the remote agent is deleted"
    );

    // Nothing written anywhere: the root is read-only, and the writable kernel filesystems
    // runc provides are still empty.
    for dir in ["dev/shm", "dev/mqueue"] {
        let path = format!("/proc/{pid}/root/{dir}");
        let entries: Vec<_> = fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert!(
            entries.is_empty(),
            "the container wrote {entries:?} in /{dir}"
        );
    }
    let log = container.log();
    assert!(
        !log.contains("Read-only file system") && !log.contains("os error 30"),
        "the operator tried to write to its read-only root:\n{log}"
    );

    let status = container.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "the operator exits 0 on SIGTERM, got {status}\nlog:\n{}",
        container.log()
    );
    eprintln!(
        "container: image {}: /readyz 200 {} ms after runc run; voice-starter Ready {} ms after create",
        image.digest,
        ready.as_millis(),
        agent_ready.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_carries_the_system_ca_roots() {
    // A kubeconfig without the cluster's CA: the client then verifies the apiserver against
    // the system roots (/etc/ssl/certs in the image). The client is built only if it finds
    // them, and the test CA is not among them, so every request fails verification.
    let cp = ControlPlane::get();
    let text = fs::read_to_string(cp.kubeconfig_path()).expect("kubeconfig");
    let mut kubeconfig: Value = serde_saphyr::from_str(&text).expect("kubeconfig YAML");
    for cluster in kubeconfig["clusters"].as_array_mut().expect("clusters") {
        let cluster = cluster["cluster"].as_object_mut().expect("cluster");
        assert!(
            cluster.remove("certificate-authority-data").is_some()
                || cluster.remove("certificate-authority").is_some(),
            "the test kubeconfig names a CA"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-ca.kubeconfig");
    fs::write(&path, serde_json::to_vec(&kubeconfig).unwrap()).expect("writing the kubeconfig");

    let (metrics_port, health_port) = free_ports();
    let args = run_args(
        "default",
        "http://127.0.0.1:9/v1",
        metrics_port,
        health_port,
    );
    let mut container = Container::start(&args, &path);
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = container.log();
        if log.contains("UnknownIssuer") {
            break log;
        }
        assert!(
            !log.contains("No CA certificates were loaded from the system"),
            "the image has no CA roots the operator can find:\n{log}"
        );
        container.assert_running();
        assert!(
            Instant::now() < deadline,
            "no certificate verification error within 60s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(
        get_status(health_port, "/readyz").await,
        200,
        "ready although the apiserver was never trusted:\n{log}"
    );
}
