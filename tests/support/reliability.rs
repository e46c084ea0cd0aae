//! Shared helpers of the reliability suites (the modules of `tests/reliability/` and
//! `tests/reliability_apiserver.rs`):
//!
//! - the results recorder behind `docs/RELIABILITY.md`: with `PIPECAT_RELIABILITY_REPORT=DIR`
//!   set, every case appends one JSON line (scenario, fault, expected, observed, pass) to
//!   `DIR/<suite>.jsonl` (`::` in the suite's name written `.`); `hack/reliability-report.sh`
//!   renders them. Without it nothing is written.
//!   A case passes or fails on its own assertions either way.
//! - [`run_case`]: runs one case, turning an error or a panic into a failed row, so that the
//!   other cases of a data-driven test still run and are recorded;
//! - waits that return errors instead of panicking;
//! - journal analysis: the spacing of failed requests against the operator's backoff policy;
//! - remote-state, event and liveness checks.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use futures::FutureExt as _;
use kube::api::{Patch, PatchParams};
use pipecat_cloud_emulator::{JournalEntry, JournalFilter};
use pipecat_operator::crd::PipecatAgent;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::operator::{Env, is_ready};

/// Directory the rows are appended to (one `<suite>.jsonl` per suite).
pub const REPORT_ENV: &str = "PIPECAT_RELIABILITY_REPORT";

/// The test operator's backoff (tests/support/operator.rs): base and cap.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// See [`BACKOFF_BASE`].
pub const BACKOFF_CAP: Duration = Duration::from_secs(3);
/// The test operator's request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Results

/// One row of the reliability table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Suite: the test binary, and its module where the binary holds several suites
    /// (`reliability::faults`, `reliability_apiserver`).
    pub suite: String,
    /// Test function.
    pub test: String,
    /// What is being exercised.
    pub scenario: String,
    /// The fault or bad input.
    pub fault: String,
    /// The expected outcome.
    pub expected: String,
    /// What happened (calls during the fault, final state), or why it failed.
    pub observed: String,
    /// Whether every assertion of the case held.
    pub pass: bool,
}

/// Everything about a case but its outcome.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Suite (see [`Row::suite`]).
    pub suite: &'static str,
    /// Test function.
    pub test: &'static str,
    /// What is being exercised.
    pub scenario: String,
    /// The fault.
    pub fault: String,
    /// The expected outcome.
    pub expected: String,
}

impl Meta {
    /// A case description.
    pub fn new(
        suite: &'static str,
        test: &'static str,
        scenario: impl Into<String>,
        fault: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Meta {
            suite,
            test,
            scenario: scenario.into(),
            fault: fault.into(),
            expected: expected.into(),
        }
    }
}

/// Appends `row` to the report when [`REPORT_ENV`] is set.
pub fn record(row: &Row) {
    let Some(dir) = std::env::var_os(REPORT_ENV).filter(|d| !d.is_empty()) else {
        return;
    };
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("creating the report directory {}: {e}", dir.display()));
    let path = dir.join(format!("{}.jsonl", row.suite.replace("::", ".")));
    let mut line = serde_json::to_string(row).expect("row serializes");
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
}

/// The outcome of a case: what was observed, or why it failed.
pub type Outcome = Result<String, String>;

/// Runs one case: an `Err` or a panic fails it. Records the row and returns the outcome.
pub async fn run_case<F>(meta: Meta, case: F) -> (Meta, Outcome)
where
    F: Future<Output = anyhow::Result<String>>,
{
    let started = Instant::now();
    let outcome = match AssertUnwindSafe(case).catch_unwind().await {
        Ok(Ok(observed)) => Ok(observed),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(format!("panicked: {}", panic_message(&panic))),
    };
    let took = started.elapsed().as_secs_f64();
    let row = Row {
        suite: meta.suite.to_string(),
        test: meta.test.to_string(),
        scenario: meta.scenario.clone(),
        fault: meta.fault.clone(),
        expected: meta.expected.clone(),
        observed: match &outcome {
            Ok(o) => o.clone(),
            Err(e) => format!("FAILED: {}", first_lines(e, 6)),
        },
        pass: outcome.is_ok(),
    };
    record(&row);
    match &outcome {
        Ok(o) => eprintln!("[{}] PASS {} ({took:.1}s): {o}", meta.test, meta.scenario),
        Err(e) => eprintln!("[{}] FAIL {} ({took:.1}s): {e}", meta.test, meta.scenario),
    }
    (meta, outcome)
}

/// Panics listing every failed case (after all of them were recorded).
pub fn assert_all_passed(results: &[(Meta, Outcome)]) {
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(m, o)| o.as_ref().err().map(|e| format!("- {}: {e}", m.scenario)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".into()
    }
}

fn first_lines(s: &str, n: usize) -> String {
    let mut out: Vec<&str> = s.lines().take(n).collect();
    if s.lines().count() > n {
        out.push("...");
    }
    let joined = out.join(" / ");
    if joined.len() > 600 {
        let mut cut = 600;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &joined[..cut])
    } else {
        joined
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `check` every 100 ms until it returns `Some`; an error after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the resource satisfies `pred` ([`Env::poll_agent`]); the error carries its last
/// status and the operator's log tail.
pub async fn wait_agent(
    env: &Env,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&PipecatAgent) -> bool,
) -> anyhow::Result<PipecatAgent> {
    env.poll_agent(name, timeout, what, pred)
        .await
        .map_err(anyhow::Error::msg)
}

/// `Synced` reason of a resource, if any.
pub fn synced_reason(a: &PipecatAgent) -> Option<String> {
    a.condition("Synced").map(|c| c.reason.clone())
}

/// `Ready=True` and `Synced=True` for the current generation.
pub fn is_converged(a: &PipecatAgent) -> bool {
    is_ready(a)
        && a.condition("Synced")
            .is_some_and(|c| c.status == "True" && c.observed_generation == a.metadata.generation)
}

// ---------------------------------------------------------------------------------------------
// Desired configurations and the remote state

/// The parts of an agent's configuration the suites change and compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Container image.
    pub image: String,
    /// `autoScaling.maxAgents` (`minAgents` is 0).
    pub max_agents: i64,
    /// Secret set.
    pub secret_set: String,
}

impl Want {
    /// Version `v` of a test agent: image `acme/bot:v`, `maxAgents` v+1, the seed secret set.
    pub fn version(v: u32) -> Self {
        Want {
            image: format!("acme/bot:{v}"),
            max_agents: i64::from(v) + 1,
            secret_set: "voice-starter-secrets".into(),
        }
    }

    /// The same with another image.
    pub fn with_image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }

    /// The same with another secret set.
    pub fn with_secret_set(mut self, set: &str) -> Self {
        self.secret_set = set.into();
        self
    }

    /// A `PipecatAgent` manifest (YAML) named `name`.
    pub fn manifest(&self, name: &str) -> String {
        format!(
            "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {{name: {name}}}\nspec:\n  image: {}\n  secretSet: {}\n  autoScaling: {{minAgents: 0, maxAgents: {}}}\n",
            self.image, self.secret_set, self.max_agents
        )
    }

    /// The same manifest as an object, for server-side apply through the API.
    pub fn object(&self, name: &str) -> Value {
        json!({
            "apiVersion": "pipecat.daily.co/v1alpha1",
            "kind": "PipecatAgent",
            "metadata": {"name": name},
            "spec": {
                "image": self.image,
                "secretSet": self.secret_set,
                "autoScaling": {"minAgents": 0, "maxAgents": self.max_agents},
            }
        })
    }

    /// Whether the remote agent (as `GET /v1/agents/{name}` answers) has this configuration.
    pub fn matches(&self, remote: &Value) -> bool {
        let spec = &remote["deployment"]["manifest"]["spec"];
        spec["image"] == self.image.as_str()
            && remote["autoScaling"]["maxReplicas"] == self.max_agents
            && remote["autoScaling"]["minReplicas"] == 0
            && spec["envFromSecretNames"]
                .as_array()
                .is_some_and(|s| s.iter().any(|n| n == self.secret_set.as_str()))
    }
}

/// Server-side applies `want` as `name` through the API (faster than kubectl).
pub async fn apply_api(env: &Env, name: &str, want: &Want) -> anyhow::Result<()> {
    env.agents()
        .patch(
            name,
            &PatchParams::apply("reliability-suite").force(),
            &Patch::Apply(want.object(name)),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
    Ok(())
}

/// Waits until the resource is converged (Ready and Synced for its generation) and the remote
/// agent has `want`. Call it only when no fault matches `GET /v1/agents/{name}` any more (the
/// remote read goes through the API).
pub async fn wait_converged(
    env: &Env,
    name: &str,
    want: &Want,
    timeout: Duration,
) -> anyhow::Result<PipecatAgent> {
    let a = wait_agent(env, name, timeout, "Ready and Synced", is_converged).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remote = env.remote(name).await;
        match &remote {
            Some(r) if want.matches(r) => return Ok(a),
            _ if Instant::now() > deadline => bail!(
                "{name} is Ready but the remote agent is not {want:?}: {}",
                remote
                    .map(|r| r["deployment"]["manifest"]["spec"].to_string()
                        + " scaling "
                        + &r["autoScaling"].to_string())
                    .unwrap_or_else(|| "missing".into())
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Checks that the emulator holds exactly `names` (no duplicate, nothing missing or extra).
pub async fn check_remote_names(env: &Env, names: &[&str]) -> anyhow::Result<()> {
    let remote = env.remote_names().await;
    let unique: BTreeSet<&str> = remote.iter().map(String::as_str).collect();
    ensure!(
        unique.len() == remote.len(),
        "duplicate remote agents: {remote:?}"
    );
    let want: BTreeSet<&str> = names.iter().copied().collect();
    ensure!(
        unique == want,
        "remote agents {unique:?}, expected {want:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Journal

/// Journal entries (all operations) about `agent` with a sequence number above `since`.
pub async fn journal_of(env: &Env, agent: &str, since: u64) -> anyhow::Result<Vec<JournalEntry>> {
    env.admin
        .journal(&JournalFilter {
            since: Some(since),
            agent: Some(agent.to_string()),
            ..JournalFilter::default()
        })
        .await
}

/// Every journal entry above `since`.
pub async fn journal_since(env: &Env, since: u64) -> anyhow::Result<Vec<JournalEntry>> {
    env.admin
        .journal(&JournalFilter {
            since: Some(since),
            ..JournalFilter::default()
        })
        .await
}

/// The last sequence number in the journal (0 when empty).
pub async fn journal_seq(env: &Env) -> anyhow::Result<u64> {
    Ok(journal_since(env, 0)
        .await?
        .last()
        .map(|e| e.seq)
        .unwrap_or(0))
}

/// Arrival time of an entry.
pub fn arrival(e: &JournalEntry) -> jiff::Timestamp {
    e.timestamp
        .parse()
        .unwrap_or_else(|err| panic!("journal timestamp {:?}: {err}", e.timestamp))
}

/// Successful (2xx) creates of `agent` in the whole journal.
pub async fn successful_creates(env: &Env, agent: &str) -> anyhow::Result<usize> {
    Ok(journal_of(env, agent, 0)
        .await?
        .iter()
        .filter(|e| e.operation == "create_agent" && e.status.is_some_and(|s| s / 100 == 2))
        .count())
}

/// Creates of `agent` (every agent when `None`) that the API refused with HTTP 400 above
/// `since`. The API answers a second create of an existing agent with 400 "Service already
/// exists", so a duplicate create never shows among the successful ones: it shows here.
pub async fn refused_creates(env: &Env, agent: Option<&str>, since: u64) -> anyhow::Result<usize> {
    Ok(env
        .admin
        .journal(&JournalFilter {
            since: Some(since),
            operation: Some("create_agent".into()),
            agent: agent.map(str::to_string),
            ..JournalFilter::default()
        })
        .await?
        .iter()
        .filter(|e| e.status == Some(400))
        .count())
}

/// `agent` was created exactly once: one successful create, and no create of it refused
/// (a second create is answered 400, never counted as a success).
pub async fn check_created_once(env: &Env, agent: &str) -> anyhow::Result<()> {
    let created = successful_creates(env, agent).await?;
    let refused = refused_creates(env, Some(agent), 0).await?;
    ensure!(
        created == 1 && refused == 0,
        "{agent}: {created} successful creates and {refused} refused with 400 (a duplicate create), expected one create"
    );
    Ok(())
}

/// Successful (2xx) updates of `agent` above `since`.
pub async fn successful_updates(env: &Env, agent: &str, since: u64) -> anyhow::Result<usize> {
    Ok(journal_of(env, agent, since)
        .await?
        .iter()
        .filter(|e| e.operation == "update_agent" && e.status.is_some_and(|s| s / 100 == 2))
        .count())
}

// ---------------------------------------------------------------------------------------------
// Backoff analysis

/// The retry policy a sequence of failed requests should follow.
#[derive(Debug, Clone)]
pub struct Policy {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
    /// Errors that wait for the user start at 5x the base.
    pub user_action: bool,
    /// Retry-After sent by the server (a floor).
    pub retry_after: Option<Duration>,
    /// Repeated 429s pause the whole client (Retry-After or 1 s, doubling from the second one).
    pub client_pause: bool,
    /// Time each failed request itself takes before the delay starts (a timeout).
    pub latency: Duration,
}

/// Scheduling slack below a floor (millisecond timestamps, timers firing early by a tick).
const FLOOR_SLACK: Duration = Duration::from_millis(60);
/// Time a reconcile may add on a loaded machine (Secret read, status write, events).
const CEILING_SLACK: Duration = Duration::from_secs(4);
/// Jitter of the operator's backoff: +-20%.
const JITTER: f64 = 0.2;

impl Policy {
    /// 5xx, timeouts, connection errors, malformed answers, 409.
    pub fn transient() -> Self {
        Policy {
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
            user_action: false,
            retry_after: None,
            client_pause: false,
            latency: Duration::ZERO,
        }
    }

    /// 400, 401, 403, 404: retried, but from 5x the base.
    pub fn user_action() -> Self {
        Policy {
            user_action: true,
            ..Self::transient()
        }
    }

    /// 429, with or without Retry-After.
    pub fn rate_limited(retry_after: Option<Duration>) -> Self {
        Policy {
            retry_after,
            client_pause: true,
            ..Self::transient()
        }
    }

    /// The same for requests that each take `latency` to fail.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The operator's delay after the `failure`-th consecutive failure, before jitter.
    pub fn delay(&self, failure: u32) -> Duration {
        let exp = failure.saturating_sub(1).min(20);
        let mut d = self.base.saturating_mul(1 << exp).min(self.cap);
        if self.user_action {
            d = d.max(self.base * 5).min(self.cap);
        }
        d
    }

    /// The whole-client pause after the `failure`-th consecutive 429 (none before the second).
    fn pause(&self, failure: u32) -> Duration {
        if !self.client_pause || failure < 2 {
            return Duration::ZERO;
        }
        let base = self.retry_after.unwrap_or(Duration::from_secs(1));
        base.saturating_mul(1 << (failure - 2).min(6))
            .min(Duration::from_secs(60))
    }

    /// Shortest acceptable gap after the `failure`-th failure.
    pub fn floor(&self, failure: u32) -> Duration {
        let jittered = self.delay(failure).mul_f64(1.0 - JITTER);
        let d = jittered
            .max(self.retry_after.unwrap_or_default())
            .max(self.pause(failure));
        (d + self.latency).saturating_sub(FLOOR_SLACK)
    }

    /// Longest acceptable gap after the `failure`-th failure (it keeps retrying).
    pub fn ceiling(&self, failure: u32) -> Duration {
        let jittered = self.delay(failure).mul_f64(1.0 + JITTER);
        let d = jittered
            .max(self.retry_after.unwrap_or_default())
            .max(self.pause(failure));
        d + self.latency + CEILING_SLACK
    }

    /// The most requests the policy allows within `window`, starting with a failure.
    pub fn max_calls(&self, window: Duration) -> usize {
        let mut t = Duration::ZERO;
        let mut n = 1;
        for failure in 1.. {
            t += self.floor(failure);
            if t > window {
                break;
            }
            n += 1;
        }
        n
    }
}

/// What the spacing of failed requests looked like.
#[derive(Debug, Clone)]
pub struct Spacing {
    /// Gaps between consecutive failed requests.
    pub gaps: Vec<Duration>,
    /// From the first to the last.
    pub span: Duration,
    /// The most the policy allows in that span.
    pub max_calls: usize,
}

impl Spacing {
    /// "6 calls in 6.1 s (policy allows <= 7), gaps 0.21 0.41 0.80 1.62 3.05 s".
    pub fn describe(&self) -> String {
        let gaps: Vec<String> = self
            .gaps
            .iter()
            .map(|g| format!("{:.2}", g.as_secs_f64()))
            .collect();
        format!(
            "{} calls in {:.1} s (backoff allows <= {}), gaps {} s",
            self.gaps.len() + 1,
            self.span.as_secs_f64(),
            self.max_calls,
            gaps.join(" ")
        )
    }
}

/// Checks that failed requests at `times` (the first being the first failure after a success)
/// follow `policy`: each gap within its jittered floor and ceiling (plus slack for a loaded
/// machine), gaps non-decreasing up to the jitter (each at least 0.8/1.2 of the previous one,
/// less 0.5 s of scheduling slack), and no more calls than the policy allows over the span.
/// Needs at least three requests.
pub fn check_spacing(times: &[jiff::Timestamp], policy: &Policy) -> anyhow::Result<Spacing> {
    ensure!(
        times.len() >= 3,
        "only {} failed requests to analyse: {times:?}",
        times.len()
    );
    let gaps: Vec<Duration> = times
        .windows(2)
        .map(|w| {
            let d = w[1].duration_since(w[0]);
            Duration::try_from(d).unwrap_or(Duration::ZERO)
        })
        .collect();
    let span = gaps.iter().sum();
    let spacing = Spacing {
        max_calls: policy.max_calls(span),
        gaps: gaps.clone(),
        span,
    };
    for (i, gap) in gaps.iter().enumerate() {
        let failure = i as u32 + 1;
        let (floor, ceiling) = (policy.floor(failure), policy.ceiling(failure));
        ensure!(
            *gap >= floor,
            "hot loop: gap {} after failure {failure} is {gap:?}, below the backoff floor {floor:?} ({})",
            i + 1,
            spacing.describe()
        );
        ensure!(
            *gap <= ceiling,
            "stall: gap {} after failure {failure} is {gap:?}, above {ceiling:?} ({})",
            i + 1,
            spacing.describe()
        );
    }
    for (i, w) in gaps.windows(2).enumerate() {
        // A gap stretched by a slow reconcile (load) must not raise the bar for the next one.
        let previous = w[0].min(policy.ceiling(i as u32 + 1) - CEILING_SLACK);
        let allowed = previous
            .mul_f64((1.0 - JITTER) / (1.0 + JITTER))
            .saturating_sub(Duration::from_millis(500));
        ensure!(
            w[1] >= allowed,
            "gaps shrink: gap {} is {:?} after {:?} ({})",
            i + 2,
            w[1],
            w[0],
            spacing.describe()
        );
    }
    ensure!(
        times.len() <= spacing.max_calls,
        "{} calls in {span:?}, the backoff allows at most {}",
        times.len(),
        spacing.max_calls
    );
    Ok(spacing)
}

// ---------------------------------------------------------------------------------------------
// Events, liveness

/// Events of the namespace (core/v1 view: `involvedObject`, `type`, `reason`, `message`), read
/// through the API (no blocking kubectl call while faults are timed).
pub async fn events(env: &Env) -> anyhow::Result<Vec<Value>> {
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(env.cp.client(), &env.ns);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .context("listing events")?;
    list.items
        .into_iter()
        .map(|e| serde_json::to_value(e).context("event JSON"))
        .collect()
}

/// Waits for an event of `type_` (Normal, Warning) and `reason` about `name`; returns its
/// message.
pub async fn wait_event(
    env: &Env,
    name: &str,
    type_: &str,
    reason: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = events(env).await?;
        if let Some(e) = all.iter().find(|e| {
            e["involvedObject"]["name"] == name && e["type"] == type_ && e["reason"] == reason
        }) {
            return Ok(e["message"].as_str().unwrap_or_default().to_string());
        }
        if Instant::now() > deadline {
            let seen: Vec<String> = all
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name)
                .map(|e| format!("{} {}", e["type"], e["reason"]))
                .collect();
            bail!("no {type_} event {reason} for {name} after {timeout:?}; its events: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator is alive: `/healthz` answers 200 and it never panicked.
pub async fn check_operator_alive(env: &Env) -> anyhow::Result<()> {
    let op = &env.operator;
    // A process restarted a moment ago may not listen yet: give it a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let answer = op.get(op.health_port, "/healthz").await;
        if answer.0 == 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        status == 200,
        "operator /healthz answered {status} ({body}): it died?\n{}",
        op.log_tail(20)
    );
    let log = op.log();
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        return Err(anyhow!("the operator panicked: {line}"));
    }
    Ok(())
}

/// The byte length of the longest line of `text`.
pub fn longest_line(text: &str) -> usize {
    text.lines().map(str::len).max().unwrap_or(0)
}
