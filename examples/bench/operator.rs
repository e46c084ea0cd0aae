//! The operator under test: its release binary as a child process, its readiness, metrics and
//! log.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use testkit::controlplane::ControlPlane;

use crate::Args;
use crate::stats::round1;

/// How the operator is started: the standard phases run it without a rate limit; the budget
/// phase with `--api-rate-limit`, `--api-burst` and its own resync interval.
pub struct Launch {
    pub api_rate_limit: f64,
    pub api_burst: Option<u32>,
    pub resync: Duration,
}

impl Launch {
    /// The standard phases' launch: no rate limit, the bench's `--resync`.
    pub fn unlimited(args: &Args) -> Launch {
        Launch {
            api_rate_limit: 0.0,
            api_burst: None,
            resync: args.resync,
        }
    }
}

/// The operator process (killed when dropped).
pub struct Operator {
    /// The operator, or the wrapper that runs it (`--operator-wrapper`).
    child: Child,
    /// The operator process itself (with a wrapper: its descendant running the binary).
    pid: u32,
    metrics_port: u16,
    health_port: u16,
    log: PathBuf,
}

impl Operator {
    pub fn start(
        args: &Args,
        cp: &ControlPlane,
        ns: &str,
        api_url: &str,
        log: &Path,
        launch: &Launch,
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
        let wrapper: Vec<&str> = args
            .operator_wrapper
            .as_deref()
            .map(|w| w.split_whitespace().collect())
            .unwrap_or_default();
        let mut cmd = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args).arg(&args.operator_bin);
                cmd
            }
            None => Command::new(&args.operator_bin),
        };
        cmd.args(["run", "--api-url", api_url, "--namespace", ns])
            .args(["--api-rate-limit", &launch.api_rate_limit.to_string()])
            .args(["--poll-interval", &ms(args.poll_interval)])
            .args(["--max-poll-interval", &ms(args.max_poll_interval)])
            .args(["--resync-interval", &ms(launch.resync)])
            .args(["--concurrency", &args.concurrency.to_string()])
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
            .arg(format!(
                "--health-probe-bind-address=127.0.0.1:{health_port}"
            ))
            .args(
                launch
                    .api_burst
                    .map(|b| vec!["--api-burst".to_string(), b.to_string()])
                    .unwrap_or_default(),
            )
            .args(&args.operator_arg)
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
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", args.operator_bin.display()))?;
        let pid = if wrapper.is_empty() {
            child.id()
        } else {
            match find_descendant(child.id(), &args.operator_bin, Duration::from_secs(30)) {
                Some(pid) => pid,
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    anyhow::bail!(
                        "no process of {} under the wrapper {:?} after 30 s (see {})",
                        args.operator_bin.display(),
                        args.operator_wrapper.as_deref().unwrap_or_default(),
                        log.display()
                    );
                }
            }
        };
        Ok(Operator {
            child,
            pid,
            metrics_port,
            health_port,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
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
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
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

    /// SIGTERM to the operator, then SIGKILL after 10 s. A wrapper gets 10 minutes more to
    /// finish after the operator exits (heaptrack writes its profile then).
    pub fn stop(&mut self) {
        let wrapped = self.pid != self.child.id();
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !wrapped && matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            if wrapped && !is_running(self.pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if wrapped {
            signal(self.pid, libc::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(600);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.pid != self.child.id() && is_running(self.pid) {
            signal(self.pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: a signal to the operator this bench started (a child, or the wrapper's).
        unsafe { libc::kill(pid, signal) };
    }
}

/// True while `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 1..].split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// The process under `root` (itself excluded) that runs `binary`, waited for up to `timeout`.
fn find_descendant(root: u32, binary: &Path, timeout: Duration) -> Option<u32> {
    let binary = std::fs::canonicalize(binary).ok()?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        // Every process and its parent, from /proc/PID/stat (the field after the state).
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid = stat[stat.rfind(')')? + 1..]
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some((pid, ppid))
            })
            .collect();
        let mut under = vec![root];
        let mut i = 0;
        while i < under.len() {
            let parent = under[i];
            under.extend(parents.iter().filter(|p| p.1 == parent).map(|p| p.0));
            i += 1;
        }
        let found = under[1..].iter().copied().find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
        });
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// Counts of the operator's log lines by level, and its most frequent warnings.
pub fn log_summary(path: &Path) -> Value {
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

/// Reconciles by result, and their mean duration, from the operator's metrics.
pub fn reconciles(metrics: &BTreeMap<String, f64>) -> Value {
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
