//! Scale benchmark of the operator: how its cost grows with the number of agents, against the
//! lowest cost the control plane allows. It prints figures and writes them as JSON; it asserts
//! nothing about wall-clock times.
//!
//! One run per agent count, on a dedicated kube-apiserver + etcd (the test harness), with the
//! Pipecat Cloud emulator in-process (zero delays, one API key) and the operator's release binary
//! as a child process (`--api-rate-limit 0`, a short poll interval):
//!
//! 1. floor: a bare client does only the unavoidable work for N agents (create, add the
//!    finalizer, write the status: three writes each) in a fresh namespace;
//! 2. cold convergence: N PipecatAgents created at once, timed until all are `Ready=True`,
//!    with the Pipecat calls by kind and the operator's apiserver requests (from
//!    kube-apiserver's `/metrics`, minus the bench's own creates);
//! 3. steady state: several resync periods with nothing changing (Pipecat calls and apiserver
//!    writes per minute: the goal for writes is zero);
//! 4. reaction latency: `spec.image` patches matched to the operator's `update_agent` calls in
//!    the emulator journal (p50, p99);
//! 5. memory: the operator's peak RSS (`VmHWM`).
//!
//! `hack/bench.sh` builds what is needed and runs it for several counts;
//! `cargo run --release --example bench -- --agents 1000` runs one (build the operator first
//! with `cargo build --release --bin pipecat-operator`). Results are upserted, by agent count,
//! into `target/bench/results.json`; the operator's log goes to `target/bench/operator-N.log`.

#[path = "../tests/support/controlplane.rs"]
#[allow(dead_code)]
mod controlplane;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use pipecat_operator::crd::{FINALIZER, ObservedAutoScaling, PipecatAgent, PipecatAgentStatus};
use pipecat_operator::emulator::{self, AdminClient, JournalFilter};
use serde_json::{Value, json};

use controlplane::ControlPlane;

/// Counts the bench's live heap, to estimate what the operator keeps in memory per object.
struct CountingAlloc;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Live heap bytes and allocations per value of `T` deserialized from `json` (the way a watch
/// event becomes an object in a reflector's store), averaged over many copies.
fn heap_per_value<T: serde::de::DeserializeOwned>(json: &[u8]) -> Value {
    const COPIES: isize = 2000;
    let (bytes0, allocs0) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let kept: Vec<T> = (0..COPIES)
        .filter_map(|_| serde_json::from_slice(json).ok())
        .collect();
    let (bytes1, allocs1) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let n = kept.len().max(1) as isize;
    drop(kept);
    json!({"bytes": (bytes1 - bytes0) / n, "allocations": (allocs1 - allocs0) / n})
}

const API_KEY: &str = "pk_bench_local_emulator_key";
const IMAGE: &str = "bench/voice-agent:1";
const CHANGED_IMAGE: &str = "bench/voice-agent:2";
const MIB: f64 = 1024.0 * 1024.0;

/// Scale benchmark of pipecat-operator (one agent count per run).
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Number of PipecatAgents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Operator `--concurrency` (reconciles at once).
    #[arg(long, default_value_t = 32)]
    concurrency: u16,
    /// Operator `--resync-interval`.
    #[arg(long, default_value = "30s", value_parser = pipecat_operator::duration::parse)]
    resync: Duration,
    /// Operator `--poll-interval`.
    #[arg(long, default_value = "100ms", value_parser = pipecat_operator::duration::parse)]
    poll_interval: Duration,
    /// Operator `--max-poll-interval`.
    #[arg(long, default_value = "1s", value_parser = pipecat_operator::duration::parse)]
    max_poll_interval: Duration,
    /// How long to observe the steady state (default: 3.5 resync intervals).
    #[arg(long, value_parser = pipecat_operator::duration::parse)]
    steady: Option<Duration>,
    /// Requests in flight of the bench's own client (creates, and the floor's writes).
    #[arg(long, default_value_t = 32)]
    client_concurrency: usize,
    /// Spec changes for the reaction latency.
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Pause between two spec changes.
    #[arg(long, default_value = "100ms", value_parser = pipecat_operator::duration::parse)]
    change_spacing: Duration,
    /// How long to measure the idle control plane before the operator starts (its CPU baseline).
    #[arg(long, default_value = "10s", value_parser = pipecat_operator::duration::parse)]
    idle: Duration,
    /// Give up waiting for cold convergence after this long.
    #[arg(long, default_value = "15m", value_parser = pipecat_operator::duration::parse)]
    timeout: Duration,
    /// Extra environment of the operator, `KEY=VALUE` (repeatable), e.g. `MALLOC_ARENA_MAX=2`.
    #[arg(long = "operator-env", value_parser = parse_env)]
    operator_env: Vec<(String, String)>,
    /// The operator binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/pipecat-operator"))]
    operator_bin: PathBuf,
    /// Results file (the run for this agent count is replaced, others are kept).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/results.json"))]
    out: PathBuf,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// ---------------------------------------------------------------------------------------------
// Processes: CPU time, memory, connections

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    // After the command name: field 3 (state) is index 0, utime (14) index 11, stime (15) 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// A `/proc/PID/status` field in bytes (`VmHWM`, `VmRSS`).
fn status_bytes(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib * 1024.0)
}

/// Established TCP connections of `pid` to a local port (its client sides).
fn connections_to(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) {
                inodes.insert(f[9].to_string());
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .filter(|i| inodes.contains(i))
        .count()
}

/// CPU seconds of the processes involved.
#[derive(Clone, Copy, Default)]
struct Cpu {
    operator: f64,
    apiserver: f64,
    etcd: f64,
    bench: f64,
    /// Busy CPU seconds of the whole machine (every process).
    machine: f64,
}

/// Busy CPU seconds of the machine since boot (`/proc/stat`: all but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 =
        v.iter().take(8).sum::<f64>() - v.get(3).unwrap_or(&0.0) - v.get(4).unwrap_or(&0.0);
    busy / clock_ticks()
}

struct Pids {
    operator: u32,
    apiserver: u32,
    etcd: u32,
}

impl Pids {
    fn cpu(&self) -> Cpu {
        Cpu {
            operator: cpu_seconds(self.operator),
            apiserver: cpu_seconds(self.apiserver),
            etcd: cpu_seconds(self.etcd),
            bench: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
        }
    }
}

fn cpu_delta(a: Cpu, b: Cpu) -> Value {
    let d = |x: f64, y: f64| round1(y - x);
    let ours = (b.operator - a.operator)
        + (b.apiserver - a.apiserver)
        + (b.etcd - a.etcd)
        + (b.bench - a.bench);
    json!({
        "operator": d(a.operator, b.operator),
        "kubeApiserver": d(a.apiserver, b.apiserver),
        "etcd": d(a.etcd, b.etcd),
        "benchAndEmulator": d(a.bench, b.bench),
        // Everything else running on the machine meanwhile (other builds: noise).
        "otherProcesses": round1((b.machine - a.machine - ours).max(0.0)),
    })
}

// ---------------------------------------------------------------------------------------------
// The operator process

struct Operator {
    child: Child,
    metrics_port: u16,
    health_port: u16,
    log: PathBuf,
}

impl Operator {
    fn start(
        args: &Args,
        cp: &ControlPlane,
        ns: &str,
        api_url: &str,
        log: &Path,
    ) -> anyhow::Result<Operator> {
        anyhow::ensure!(
            args.operator_bin.is_file(),
            "{} does not exist: build it with `cargo build --release --bin pipecat-operator` (or run hack/bench.sh)",
            args.operator_bin.display()
        );
        let (metrics_port, health_port) = free_ports();
        let file = std::fs::File::create(log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut cmd = Command::new(&args.operator_bin);
        cmd.args(["run", "--api-url", api_url, "--namespace", ns])
            .args(["--api-rate-limit", "0"])
            .args(["--poll-interval", &ms(args.poll_interval)])
            .args(["--max-poll-interval", &ms(args.max_poll_interval)])
            .args(["--resync-interval", &ms(args.resync)])
            .args(["--concurrency", &args.concurrency.to_string()])
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
            .arg(format!(
                "--health-probe-bind-address=127.0.0.1:{health_port}"
            ))
            .env("KUBECONFIG", cp.kubeconfig_path())
            .env("RUST_LOG", "info,kube=warn,tower=warn,hyper=warn")
            .envs(args.operator_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        // SAFETY: prctl is async-signal-safe and allocates nothing; the operator dies with the
        // bench (spawned from the main thread, which lives as long as the process).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", args.operator_bin.display()))?;
        Ok(Operator {
            child,
            metrics_port,
            health_port,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.health_port);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "the operator exited ({status}) before it was ready:\n{}",
                    self.log_tail(30)
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the operator was not ready after {timeout:?}:\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its `/metrics`, series (without `_bucket`) to value.
    async fn metrics(&self) -> BTreeMap<String, f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .filter(|l| l.starts_with("pipecat_operator_") && !l.contains("_bucket"))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: a signal to our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// Counts of the operator's log lines by level, and its most frequent warnings.
fn log_summary(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut warn, mut error) = (0u64, 0u64);
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let level = if line.contains(" WARN ") {
            warn += 1;
            true
        } else if line.contains(" ERROR ") {
            error += 1;
            true
        } else {
            false
        };
        if level {
            // The message without the timestamp and the fields.
            let msg = line
                .split_once(": ")
                .map_or(line, |(_, m)| m)
                .chars()
                .take(120)
                .collect::<String>();
            *messages.entry(msg).or_default() += 1;
        }
    }
    let mut top: Vec<(String, u64)> = messages.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    top.truncate(5);
    json!({
        "lines": text.lines().count(),
        "warn": warn,
        "error": error,
        "topWarnings": top.into_iter().map(|(m, n)| json!({"count": n, "message": m})).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// kube-apiserver request counts

/// Verb, group, resource, subresource.
type RequestKey = (String, String, String, String);

/// `apiserver_request_total` summed by verb, group, resource and subresource.
type RequestCounts = BTreeMap<RequestKey, f64>;

/// kube-apiserver's request counts and the sums and counts of its request latencies.
#[derive(Default)]
struct ApiserverRequests {
    total: RequestCounts,
    latency_sum: RequestCounts,
    latency_count: RequestCounts,
}

async fn apiserver_requests(client: &kube::Client) -> anyhow::Result<ApiserverRequests> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client
        .request_text(req)
        .await
        .context("failed to read kube-apiserver /metrics")?;
    let mut all = ApiserverRequests::default();
    for line in text.lines() {
        let (out, rest) = if let Some(rest) = line.strip_prefix("apiserver_request_total{") {
            (&mut all.total, rest)
        } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
            (&mut all.latency_sum, rest)
        } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
            (&mut all.latency_count, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels = parse_labels(labels);
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *out.entry((
            get("verb"),
            get("group"),
            get("resource"),
            get("subresource"),
        ))
        .or_default() += value;
    }
    Ok(all)
}

/// `a="x",b="y"` (values may hold escaped quotes).
fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

const WRITE_VERBS: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

/// `VERB resource[.group][/subresource]`.
fn request_name(k: &RequestKey) -> String {
    let (verb, group, resource, sub) = k;
    let mut s = format!("{verb} {resource}");
    if !group.is_empty() {
        s.push('.');
        s.push_str(group);
    }
    if !sub.is_empty() {
        s.push('/');
        s.push_str(sub);
    }
    s
}

/// The requests of a phase attributed to the operator: the counts after minus before, minus the
/// bench's own (`own`), without the control plane's own lease renewals (the operator runs without
/// leader election) and without the bench's `/metrics` reads (no resource).
struct PhaseRequests {
    writes: BTreeMap<String, u64>,
    reads: BTreeMap<String, u64>,
    excluded: BTreeMap<String, u64>,
    /// Mean server-side latency (ms) of each kind of request of the phase (everyone's).
    latency_ms: BTreeMap<String, f64>,
}

impl PhaseRequests {
    fn new(before: &ApiserverRequests, after: &ApiserverRequests, own: &RequestCounts) -> Self {
        let mut writes = BTreeMap::new();
        let mut reads = BTreeMap::new();
        let mut excluded = BTreeMap::new();
        let mut latency_ms = BTreeMap::new();
        let delta = |m: &RequestCounts, m0: &RequestCounts, k: &RequestKey| {
            m.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0)
        };
        for k in after.total.keys() {
            let all = delta(&after.total, &before.total, k);
            let n = (all - own.get(k).copied().unwrap_or(0.0)).max(0.0).round() as u64;
            if n == 0 {
                continue;
            }
            let name = request_name(k);
            if k.2 == "leases" || k.2.is_empty() {
                excluded.insert(name, n);
                continue;
            } else if WRITE_VERBS.contains(&k.0.as_str()) {
                writes.insert(name.clone(), n);
            } else if k.0 != "WATCH" {
                reads.insert(name.clone(), n);
            } else {
                continue;
            }
            let count = delta(&after.latency_count, &before.latency_count, k);
            if count > 0.0 {
                let sum = delta(&after.latency_sum, &before.latency_sum, k);
                latency_ms.insert(name, round1(sum / count * 1000.0));
            }
        }
        PhaseRequests {
            writes,
            reads,
            excluded,
            latency_ms,
        }
    }

    fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }

    fn writes_matching(&self, f: impl Fn(&str) -> bool) -> u64 {
        self.writes
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, v)| v)
            .sum()
    }

    fn to_json(&self) -> Value {
        json!({
            "writes": self.writes,
            "reads": self.reads,
            "excluded": self.excluded,
            "meanServerLatencyMs": self.latency_ms,
        })
    }
}

fn own_key(verb: &str, sub: &str) -> RequestKey {
    (
        verb.into(),
        "pipecat.daily.co".into(),
        "pipecatagents".into(),
        sub.into(),
    )
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects

fn agent_name(i: usize) -> String {
    format!("agent-{i:05}")
}

fn new_agent(name: &str) -> PipecatAgent {
    serde_json::from_value(json!({
        "apiVersion": "pipecat.daily.co/v1alpha1",
        "kind": "PipecatAgent",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, "autoScaling": {"minAgents": 0, "maxAgents": 10}},
    }))
    .expect("a valid PipecatAgent")
}

/// A status like the operator's once the agent is ready.
fn ready_status(name: &str) -> PipecatAgentStatus {
    let deployment = uuid::Uuid::new_v4().to_string();
    let now = Time(jiff::Timestamp::now());
    let condition = |type_: &str, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message,
        observed_generation: Some(1),
        last_transition_time: now.clone(),
    };
    PipecatAgentStatus {
        agent_name: Some(name.into()),
        ready: true,
        available: Some(true),
        active_deployment_id: Some(deployment.clone()),
        active_deployment_ready: Some(true),
        desired_deployment_id: Some(deployment.clone()),
        reconciled_deployment_id: Some(deployment.clone()),
        active_session_count: Some(0),
        auto_scaling: Some(ObservedAutoScaling {
            min_replicas: Some(0),
            max_replicas: Some(10),
        }),
        region: Some("us-west".into()),
        observed_generation: Some(1),
        applied_config_hash: Some(format!("{:016x}", rand::random::<u64>())),
        applied_redeploy_token: None,
        requested_deployment: Some(pipecat_operator::crd::RequestedDeployment {
            id: deployment.clone(),
            replaces: None,
        }),
        non_convergence: None,
        conditions: vec![
            condition(
                "Ready",
                "DeploymentReady",
                format!("deployment {deployment} is ready to take sessions"),
            ),
            condition(
                "Synced",
                "UpToDate",
                format!("Pipecat Cloud agent {name} matches the spec"),
            ),
        ],
    }
}

fn is_ready(a: &PipecatAgent) -> bool {
    a.condition("Ready")
        .is_some_and(|c| c.status == "True" && c.observed_generation == a.metadata.generation)
}

/// What one agent and one event cost in memory: the agent's JSON size and heap once
/// deserialized (as the operator's reflector keeps it), with and without
/// `metadata.managedFields`, and the heap of one event as the event recorder caches it (without
/// the fields the server adds).
async fn object_costs(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Value> {
    let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
    let obj = api.get(name).await?;
    let full = serde_json::to_vec(&obj)?;
    let mut trimmed = obj.clone();
    trimmed.metadata.managed_fields = None;
    let without = serde_json::to_vec(&trimmed)?;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let event = events
        .list(&kube::api::ListParams::default().limit(1))
        .await?
        .items
        .into_iter()
        .next()
        .map(|mut e| {
            e.metadata.managed_fields = None;
            e.metadata.uid = None;
            e.metadata.resource_version = None;
            e.metadata.creation_timestamp = None;
            e
        });
    let event_heap = match &event {
        Some(e) => heap_per_value::<k8s_openapi::api::events::v1::Event>(&serde_json::to_vec(e)?),
        None => Value::Null,
    };
    Ok(json!({
        "agentJsonBytes": full.len(),
        "agentJsonBytesWithoutManagedFields": without.len(),
        "agentHeap": heap_per_value::<PipecatAgent>(&full),
        "agentHeapWithoutManagedFields": heap_per_value::<PipecatAgent>(&without),
        "eventHeap": event_heap,
    }))
}

/// Reconciles by result, and their mean duration, from the operator's metrics.
fn reconciles(metrics: &BTreeMap<String, f64>) -> Value {
    let mut by_result = serde_json::Map::new();
    for (k, v) in metrics {
        if let Some(result) = k
            .strip_prefix("pipecat_operator_reconciles_total{result=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            by_result.insert(result.to_string(), json!(*v as u64));
        }
    }
    let sum = metrics
        .get("pipecat_operator_reconcile_duration_seconds_sum")
        .copied()
        .unwrap_or(0.0);
    let count = metrics
        .get("pipecat_operator_reconcile_duration_seconds_count")
        .copied()
        .unwrap_or(0.0);
    json!({
        "byResult": by_result,
        "meanMs": if count > 0.0 { round1(sum / count * 1000.0) } else { 0.0 },
    })
}

/// Retries a request a few times on errors (the apiserver may refuse under load).
async fn retry<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("    retrying {what} after: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("failed to {what}"))),
        }
    }
}

/// The floor: create, add the finalizer (merge patch with the resourceVersion, as the operator
/// does) and apply the status, per object, `concurrency` objects at a time.
async fn floor(
    client: &kube::Client,
    ns: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = agent_name(i);
                let (pp, obj) = (PostParams::default(), new_agent(&name));
                let created = retry("create a floor object", || api.create(&pp, &obj)).await?;
                let patch = json!({"metadata": {
                    "finalizers": [FINALIZER],
                    "resourceVersion": created.metadata.resource_version,
                }});
                let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
                retry("add a finalizer", || api.patch(&name, &pp, &patch)).await?;
                let status = json!({
                    "apiVersion": "pipecat.daily.co/v1alpha1",
                    "kind": "PipecatAgent",
                    "status": ready_status(&name),
                });
                let (pp, status) = (
                    PatchParams::apply("bench-floor").force(),
                    Patch::Apply(&status),
                );
                retry("apply a status", || api.patch_status(&name, &pp, &status)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// Watches a namespace and records when each agent is first seen `Ready=True` for its current
/// generation; the count is published on a watch channel.
struct ReadyWatch {
    first_ready: Arc<Mutex<HashMap<String, Instant>>>,
    count: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    async fn start(client: &kube::Client, ns: &str) -> anyhow::Result<ReadyWatch> {
        let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
        let first_ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (tx, count) = tokio::sync::watch::channel(0usize);
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let map = first_ready.clone();
        let task = tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let obj = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("    watch error (retrying): {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if is_ready(&obj) {
                    let mut m = map.lock().expect("ready map");
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    m.entry(name).or_insert_with(Instant::now);
                    let _ = tx.send(m.len());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(60), synced_rx)
            .await
            .context("the readiness watch did not start within 60 s")?
            .ok();
        Ok(ReadyWatch {
            first_ready,
            count,
            task,
        })
    }

    /// Waits for `n` ready agents; returns how many there were if `timeout` passed first.
    async fn wait_for(&mut self, n: usize, timeout: Duration) -> Result<(), usize> {
        let reached = tokio::time::timeout(timeout, self.count.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(*self.count.borrow())
        }
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and machine

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn distribution(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "count": v.len(),
        "p50": round1(percentile(&v, 0.50)),
        "p90": round1(percentile(&v, 0.90)),
        "p99": round1(percentile(&v, 0.99)),
        "max": round1(v.last().copied().unwrap_or(f64::NAN)),
    })
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The operator source measured: the commit, and the files under `src/` that differ from it
/// (the operator binary is built from the working tree).
fn source(operator_bin: &Path) -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let changed: Vec<String> =
        command_output("git", &["-C", root, "status", "--porcelain", "--", "src"])
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
    // hack/bench.sh records the commit it built the operator from.
    let built_from = std::env::var("PIPECAT_BENCH_SOURCE").ok();
    let built = std::fs::metadata(operator_bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string());
    json!({
        "commit": command_output("git", &["-C", root, "rev-parse", "--short", "HEAD"]),
        "uncommittedSrcChanges": changed,
        "operatorBinaryBuilt": built,
        "operatorBuiltFrom": built_from,
    })
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let logical = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    json!({
        "cpuModel": field("model name"),
        "cpuMHz": field("cpu MHz"),
        "cacheSize": field("cache size"),
        "logicalCpus": logical,
        "nproc": command_output("nproc", &[]),
        "free": command_output("free", &["-h"]),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "loadAverageAtStart": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

// ---------------------------------------------------------------------------------------------
// The run

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.agents;
    anyhow::ensure!(n > 0, "--agents must be at least 1");
    let steady = args.steady.unwrap_or(args.resync.mul_f64(3.5));
    let date = jiff::Timestamp::now();
    let machine = machine();
    let out_dir = args.out.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    println!(
        "==> {n} agents: operator concurrency {}, resync {:?}, poll {:?}; client concurrency {}",
        args.concurrency, args.resync, args.poll_interval, args.client_concurrency
    );

    println!("==> starting kube-apiserver + etcd (dedicated)");
    let cp = Arc::new(tokio::task::spawn_blocking(ControlPlane::start_dedicated).await?);
    {
        let cp = cp.clone();
        tokio::task::spawn_blocking(move || cp.apply_crds()).await?;
    }
    let namespace = |prefix: &'static str| {
        let cp = cp.clone();
        tokio::task::spawn_blocking(move || cp.namespace(prefix))
    };
    let client = cp.client();
    let emu = emulator::start(emulator::Config {
        api_keys: vec![API_KEY.to_string()],
        journal_capacity: 1_000_000,
        ..Default::default()
    })
    .await?;
    let admin: AdminClient = emu.admin();

    // Warm-up, so that neither measured phase pays for the apiserver's first requests.
    let warm_ns = namespace("bench-warmup").await?;
    floor(&client, &warm_ns, n.min(64), args.client_concurrency).await?;

    let mut pids = Pids {
        operator: 0,
        apiserver: cp.apiserver_pid().unwrap_or(0),
        etcd: cp.etcd_pid().unwrap_or(0),
    };

    // 1. The floor.
    println!("==> floor: create + finalizer + status for {n} objects");
    let floor_ns = namespace("bench-floor").await?;
    let before = apiserver_requests(&client).await?;
    let cpu_before = pids.cpu();
    let floor_time = floor(&client, &floor_ns, n, args.client_concurrency).await?;
    let cpu_after = pids.cpu();
    let after = apiserver_requests(&client).await?;
    let floor_requests = PhaseRequests::new(&before, &after, &RequestCounts::new());
    let floor_cpu = cpu_delta(cpu_before, cpu_after);
    println!(
        "    {:.2} s, {} writes",
        floor_time.as_secs_f64(),
        floor_requests.total_writes()
    );

    // The control plane's own cost with nobody talking to it.
    let cpu_before = pids.cpu();
    tokio::time::sleep(args.idle).await;
    let idle_cpu = cpu_delta(cpu_before, pids.cpu());

    // 2. Cold convergence.
    let ns = namespace("bench-agents").await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pipecat-api-key"},
        "stringData": {"api-key": API_KEY},
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    let log_path = out_dir.join(format!("operator-{n}.log"));
    let mut operator = Operator::start(&args, &cp, &ns, &emu.base_url(), &log_path)?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    pids.operator = operator.pid();
    let apiserver_port: u16 = cp
        .server_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let emulator_port = emu.addr().port();

    println!("==> cold convergence: {n} PipecatAgents to Ready=True");
    let mut watch = ReadyWatch::start(&client, &ns).await?;
    let calls_before = admin.counts().await?;
    let before = apiserver_requests(&client).await?;
    let cpu_before = pids.cpu();
    let rss_before_cold = status_bytes(pids.operator, "VmRSS");
    // Sample the operator's connections while it converges.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let operator_pid = pids.operator;
        tokio::task::spawn_blocking(move || {
            let (mut to_apiserver, mut to_emulator) = (0, 0);
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                to_apiserver = to_apiserver.max(connections_to(operator_pid, apiserver_port));
                to_emulator = to_emulator.max(connections_to(operator_pid, emulator_port));
                std::thread::sleep(Duration::from_millis(200));
            }
            (to_apiserver, to_emulator)
        })
    };
    let api: Api<PipecatAgent> = Api::namespaced(client.clone(), &ns);
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let created_at = created_at.clone();
            async move {
                let name = agent_name(i);
                let (pp, obj) = (PostParams::default(), new_agent(&name));
                retry("create a PipecatAgent", || api.create(&pp, &obj)).await?;
                created_at
                    .lock()
                    .expect("created map")
                    .insert(name, Instant::now());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.client_concurrency)
        .try_collect::<()>()
        .await?;
    let created_in = started.elapsed();
    let converged = watch.wait_for(n, args.timeout).await;
    let cold_time = started.elapsed();
    if let Err(ready) = converged {
        println!(
            "    NOT CONVERGED: {ready} of {n} ready after {:?}",
            args.timeout
        );
    }
    // Per agent: create answered -> first seen Ready.
    let per_agent: Vec<f64> = {
        let created = created_at.lock().expect("created map");
        let ready = watch.first_ready.lock().expect("ready map");
        ready
            .iter()
            .filter_map(|(name, r)| {
                let c = created.get(name)?;
                Some(r.saturating_duration_since(*c).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    drop(watch);
    // Let the events published in the background land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (peak_conn_apiserver, peak_conn_emulator) = sampler.await?;
    let cpu_after = pids.cpu();
    let after = apiserver_requests(&client).await?;
    let calls_after = admin.counts().await?;
    let mut own = RequestCounts::new();
    own.insert(own_key("POST", ""), n as f64);
    let cold_requests = PhaseRequests::new(&before, &after, &own);
    let cold_calls: BTreeMap<String, u64> = calls_after
        .by_operation
        .iter()
        .map(|(k, v)| (k.clone(), v - calls_before.operation(k)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let op_metrics_cold = operator.metrics().await;
    let object_bytes = object_costs(&client, &ns, &agent_name(0)).await?;
    let rss_after_cold = status_bytes(pids.operator, "VmRSS");
    println!(
        "    {:.2} s ({:.2}x floor; creates took {:.2} s), {} operator writes",
        cold_time.as_secs_f64(),
        cold_time.as_secs_f64() / floor_time.as_secs_f64(),
        created_in.as_secs_f64(),
        cold_requests.total_writes()
    );

    // 3. Steady state.
    println!(
        "==> steady state: {:.0} s with nothing changing",
        steady.as_secs_f64()
    );
    let calls_before = admin.counts().await?;
    let before = apiserver_requests(&client).await?;
    let op_before = operator.metrics().await;
    let cpu_before_steady = pids.cpu();
    tokio::time::sleep(steady).await;
    let cpu_after_steady = pids.cpu();
    let after = apiserver_requests(&client).await?;
    let calls_after = admin.counts().await?;
    let op_after = operator.metrics().await;
    let steady_requests = PhaseRequests::new(&before, &after, &RequestCounts::new());
    let minutes = steady.as_secs_f64() / 60.0;
    let per_minute = |m: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
        m.iter()
            .map(|(k, v)| (k.clone(), round1(*v as f64 / minutes)))
            .collect()
    };
    let steady_calls: BTreeMap<String, u64> = calls_after
        .by_operation
        .iter()
        .map(|(k, v)| (k.clone(), v - calls_before.operation(k)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let op_delta: BTreeMap<String, f64> = op_after
        .iter()
        .filter(|(k, _)| k.contains("_total") || k.ends_with("_sum") || k.ends_with("_count"))
        .map(|(k, v)| (k.clone(), v - op_before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect();
    let steady_update_calls = steady_calls.get("update_agent").copied().unwrap_or(0);
    let steady_status_writes = steady_requests.writes_matching(|k| k.ends_with("/status"));
    println!(
        "    {:.1} Pipecat calls/min, {:.1} apiserver writes/min, {} update calls, {} status writes",
        steady_calls.values().sum::<u64>() as f64 / minutes,
        steady_requests.total_writes() as f64 / minutes,
        steady_update_calls,
        steady_status_writes
    );

    // 4. Reaction latency.
    let changes = args.changes.min(n);
    println!("==> reaction latency: {changes} spec.image changes");
    let since = admin.counts().await?.total;
    let before = apiserver_requests(&client).await?;
    let mut patched: Vec<(String, jiff::Timestamp)> = Vec::new();
    for c in 0..changes {
        let name = agent_name(c * n / changes);
        let t0 = jiff::Timestamp::now();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": CHANGED_IMAGE}})),
        )
        .await
        .with_context(|| format!("failed to change {name}"))?;
        patched.push((name, t0));
        tokio::time::sleep(args.change_spacing).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let latencies: Vec<f64> = loop {
        let entries = admin
            .journal(&JournalFilter {
                since: Some(since),
                operation: Some("update_agent".into()),
                ..JournalFilter::default()
            })
            .await?;
        let found: Vec<f64> = patched
            .iter()
            .filter_map(|(name, t0)| {
                entries.iter().find_map(|e| {
                    let ts: jiff::Timestamp = e.timestamp.parse().ok()?;
                    (e.agent.as_deref() == Some(name.as_str())
                        && ts >= t0.checked_sub(jiff::SignedDuration::from_millis(1)).ok()?)
                    .then(|| (ts.duration_since(*t0).as_secs_f64() * 1000.0).max(0.0))
                })
            })
            .collect();
        if found.len() == patched.len() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Let the roll-outs of the changed agents finish before counting their writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = apiserver_requests(&client).await?;
    let mut own = RequestCounts::new();
    own.insert(own_key("PATCH", ""), changes as f64);
    let reaction_requests = PhaseRequests::new(&before, &after, &own);
    let reaction = distribution(latencies.clone());
    println!(
        "    matched {}/{changes}: p50 {} ms, p99 {} ms",
        latencies.len(),
        reaction["p50"],
        reaction["p99"]
    );

    // 5. Memory, then stop everything.
    let peak_rss = status_bytes(pids.operator, "VmHWM");
    let rss_end = status_bytes(pids.operator, "VmRSS");
    operator.stop();
    let log = log_summary(&log_path);
    emu.shutdown().await;
    tokio::task::spawn_blocking(move || drop(cp)).await?;

    // Report.
    let cold_writes = cold_requests.total_writes();
    let cold_call_total: u64 = cold_calls.values().sum();
    let per_agent_dist = distribution(per_agent);
    let run = json!({
        "agents": n,
        "date": date.to_string(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine,
        "source": source(&args.operator_bin),
        "settings": {
            "operatorConcurrency": args.concurrency,
            "resyncSeconds": secs(args.resync),
            "pollIntervalMs": args.poll_interval.as_millis() as u64,
            "maxPollIntervalMs": args.max_poll_interval.as_millis() as u64,
            "clientConcurrency": args.client_concurrency,
            "apiRateLimit": 0,
            "operatorEnv": args.operator_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "kubeApiserver": controlplane::KUBE_VERSION,
        },
        "idle": {
            "seconds": secs(args.idle),
            "cpuSeconds": idle_cpu,
        },
        "floor": {
            "seconds": secs(floor_time),
            "cpuSeconds": floor_cpu,
            "requests": floor_requests.to_json(),
            "writes": floor_requests.total_writes(),
        },
        "cold": {
            "converged": converged.is_ok(),
            "seconds": secs(cold_time),
            "createsSeconds": secs(created_in),
            "ratioToFloor": (cold_time.as_secs_f64() / floor_time.as_secs_f64() * 100.0).round() / 100.0,
            "perAgentCreateToReadyMs": per_agent_dist,
            "pipecatCalls": cold_calls,
            "pipecatCallsPerAgent": (cold_call_total as f64 / n as f64 * 100.0).round() / 100.0,
            "operatorRequests": cold_requests.to_json(),
            "operatorWrites": cold_writes,
            "operatorWritesPerAgent": (cold_writes as f64 / n as f64 * 100.0).round() / 100.0,
            "cpuSeconds": cpu_delta(cpu_before, cpu_after),
            "peakConnections": {"toApiserver": peak_conn_apiserver, "toPipecat": peak_conn_emulator},
            "reconciles": reconciles(&op_metrics_cold),
            "perObject": object_bytes,
            "operatorMetrics": op_metrics_cold,
        },
        "steady": {
            "seconds": secs(steady),
            "resyncPeriods": round1(steady.as_secs_f64() / args.resync.as_secs_f64()),
            "pipecatCalls": steady_calls,
            "pipecatCallsPerMinute": per_minute(&steady_calls),
            "apiserverWritesPerMinute": per_minute(&steady_requests.writes),
            "apiserverReadsPerMinute": per_minute(&steady_requests.reads),
            "writes": steady_requests.total_writes(),
            "updateCalls": steady_update_calls,
            "statusWrites": steady_status_writes,
            "excluded": steady_requests.excluded,
            "cpuSeconds": cpu_delta(cpu_before_steady, cpu_after_steady),
            "operatorMetricsDelta": op_delta,
        },
        "reaction": {
            "changes": changes,
            "matched": latencies.len(),
            "latencyMs": reaction,
            "operatorRequests": reaction_requests.to_json(),
        },
        "memory": {
            "peakRssMiB": round1(peak_rss / MIB),
            "rssBeforeColdMiB": round1(rss_before_cold / MIB),
            "rssAfterColdMiB": round1(rss_after_cold / MIB),
            "rssEndMiB": round1(rss_end / MIB),
        },
        "operatorLog": log,
    });
    print_table(&run);
    save(&args.out, run)?;
    println!("\nresults: {}", args.out.display());
    println!("operator log: {}", log_path.display());
    Ok(())
}

/// Upserts the run (by agent count) into the results file.
fn save(path: &Path, run: Value) -> anyhow::Result<()> {
    let mut runs: Vec<Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("runs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    runs.retain(|r| r["agents"] != run["agents"]);
    runs.push(run);
    runs.sort_by_key(|r| r["agents"].as_u64().unwrap_or(0));
    let text = serde_json::to_string_pretty(&json!({ "runs": runs }))?;
    std::fs::write(path, text + "\n").with_context(|| format!("failed to write {}", path.display()))
}

fn print_table(run: &Value) {
    let fmt_map = |v: &Value| -> String {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())
    };
    let m = &run["machine"];
    let cold = &run["cold"];
    let steady = &run["steady"];
    let reaction = &run["reaction"]["latencyMs"];
    let settings = &run["settings"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    println!(
        "\n## {} agents ({}; machine: {}, {} CPUs, nproc {})",
        run["agents"],
        text(&run["date"]),
        text(&m["cpuModel"]),
        m["logicalCpus"],
        text(&m["nproc"])
    );
    println!(
        "operator: built from {} at {}; HEAD now {}, uncommitted src changes {}",
        run["source"]["operatorBuiltFrom"],
        text(&run["source"]["operatorBinaryBuilt"]),
        text(&run["source"]["commit"]),
        run["source"]["uncommittedSrcChanges"]
    );
    println!(
        "settings: operator concurrency {}, resync {} s, poll {} ms, client concurrency {}, api-rate-limit 0",
        settings["operatorConcurrency"],
        settings["resyncSeconds"],
        settings["pollIntervalMs"],
        settings["clientConcurrency"]
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "floor (create + finalizer + status)",
            format!(
                "{} s ({} writes)",
                run["floor"]["seconds"], run["floor"]["writes"]
            ),
        ),
        ("  CPU seconds", fmt_map(&run["floor"]["cpuSeconds"])),
        (
            "  apiserver mean latency (ms)",
            fmt_map(&run["floor"]["requests"]["meanServerLatencyMs"]),
        ),
        (
            "idle control plane CPU seconds",
            format!(
                "{} in {} s",
                fmt_map(&run["idle"]["cpuSeconds"]),
                run["idle"]["seconds"]
            ),
        ),
        (
            "cold convergence",
            format!(
                "{} s = {}x floor{}",
                cold["seconds"],
                cold["ratioToFloor"],
                if cold["converged"] == true {
                    ""
                } else {
                    " (NOT CONVERGED)"
                }
            ),
        ),
        (
            "  per agent create -> Ready (ms)",
            format!(
                "p50 {}, p99 {}, max {}",
                cold["perAgentCreateToReadyMs"]["p50"],
                cold["perAgentCreateToReadyMs"]["p99"],
                cold["perAgentCreateToReadyMs"]["max"]
            ),
        ),
        (
            "  Pipecat calls",
            format!(
                "{} ({} per agent)",
                fmt_map(&cold["pipecatCalls"]),
                cold["pipecatCallsPerAgent"]
            ),
        ),
        (
            "  operator writes",
            format!(
                "{} ({} per agent): {}",
                cold["operatorWrites"],
                cold["operatorWritesPerAgent"],
                fmt_map(&cold["operatorRequests"]["writes"])
            ),
        ),
        (
            "  apiserver mean latency (ms)",
            fmt_map(&cold["operatorRequests"]["meanServerLatencyMs"]),
        ),
        (
            "  reconciles",
            format!(
                "{} (mean {} ms)",
                fmt_map(&cold["reconciles"]["byResult"]),
                cold["reconciles"]["meanMs"]
            ),
        ),
        (
            "  per agent / event (bytes)",
            format!(
                "agent JSON {} ({} without managedFields), agent heap {} ({} without), event heap {}",
                cold["perObject"]["agentJsonBytes"],
                cold["perObject"]["agentJsonBytesWithoutManagedFields"],
                cold["perObject"]["agentHeap"]["bytes"],
                cold["perObject"]["agentHeapWithoutManagedFields"]["bytes"],
                cold["perObject"]["eventHeap"]["bytes"]
            ),
        ),
        (
            "  operator reads",
            fmt_map(&cold["operatorRequests"]["reads"]),
        ),
        ("  CPU seconds", fmt_map(&cold["cpuSeconds"])),
        ("  peak connections", fmt_map(&cold["peakConnections"])),
        (
            "steady state",
            format!(
                "{} s ({} resync periods)",
                steady["seconds"], steady["resyncPeriods"]
            ),
        ),
        (
            "  Pipecat calls / min",
            fmt_map(&steady["pipecatCallsPerMinute"]),
        ),
        (
            "  apiserver writes / min",
            format!(
                "{} (update calls {}, status writes {})",
                fmt_map(&steady["apiserverWritesPerMinute"]),
                steady["updateCalls"],
                steady["statusWrites"]
            ),
        ),
        (
            "  apiserver reads / min",
            fmt_map(&steady["apiserverReadsPerMinute"]),
        ),
        ("  CPU seconds", fmt_map(&steady["cpuSeconds"])),
        (
            "reaction latency (ms)",
            format!(
                "p50 {}, p99 {}, max {} ({} of {} matched)",
                reaction["p50"],
                reaction["p99"],
                reaction["max"],
                run["reaction"]["matched"],
                run["reaction"]["changes"]
            ),
        ),
        (
            "operator peak RSS (VmHWM)",
            format!("{} MiB", run["memory"]["peakRssMiB"]),
        ),
        (
            "operator log",
            format!(
                "{} lines, {} WARN, {} ERROR",
                run["operatorLog"]["lines"],
                run["operatorLog"]["warn"],
                run["operatorLog"]["error"]
            ),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}
