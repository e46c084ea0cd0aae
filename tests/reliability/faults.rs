//! Reliability under remote faults and bad input (issue 7, scenarios 1 and 4): the operator
//! binary against the real control plane and the emulator, with faults injected per agent.
//!
//! Every case follows the same script on its own agent (so cases of one test share an operator
//! and run at once): the agent is Ready at version 1; the fault is injected and version 2 applied
//! at once; after a few failed calls version 3 is applied (a change made DURING the fault); the
//! fault ends (a finite count) or is cleared (lasting faults); then the remote agent must equal
//! version 3, with one create and no extra update. The failed calls' arrival times (from the
//! emulator's journal) must follow the operator's backoff (base 200 ms, cap 3 s, +-20% jitter,
//! user-action errors from 5x the base, Retry-After as a floor), so a hot loop or a stall fails.
//!
//! The operators here run with `--api-rate-limit 0` (no token bucket, the 429 brake stays) so
//! that the spacing measured is the per-object backoff alone, and a 60 s resync so that only
//! the test's own changes start reconciles. With `PIPECAT_RELIABILITY_REPORT=DIR` each case
//! appends its row to `DIR/reliability.faults.jsonl` (see docs/RELIABILITY.md).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::FutureExt as _;
use kube::api::DeleteParams;
use pipecat_cloud_emulator::{self as emulator, ConfigUpdate, Fault, FaultBody};
use serde_json::json;
use tokio::sync::Barrier;

use crate::support::operator::{API_KEY, Env, Options};
use crate::support::reliability::{
    Meta, Outcome, Policy, REQUEST_TIMEOUT, Want, apply_api, arrival, assert_all_passed,
    check_created_once, check_operator_alive, check_remote_names, check_spacing, journal_of,
    journal_seq, journal_since, longest_line, panic_message, run_case, successful_creates,
    successful_updates, wait_agent, wait_converged, wait_event,
};

const SUITE: &str = "reliability::faults";
/// Longest a condition message may be (the operator truncates them).
const MAX_MESSAGE: usize = 1024;
/// Longest operator log line accepted about an agent fed a huge error body.
const MAX_LOG_LINE: usize = 16 * 1024;

fn options(rate_limited: bool) -> Options {
    let mut extra_args = Vec::new();
    if !rate_limited {
        extra_args = vec!["--api-rate-limit".to_string(), "0".to_string()];
    }
    Options {
        resync: Duration::from_secs(60),
        extra_args,
        ..Options::default()
    }
}

fn agent_path(name: &str) -> String {
    format!("/v1/agents/{name}")
}

/// Creates every agent at version 1 and waits until each is converged.
async fn setup(env: &Env, names: &[&str]) {
    let manifests: Vec<String> = names.iter().map(|n| Want::version(1).manifest(n)).collect();
    env.apply(&manifests.join("---\n"));
    for name in names {
        wait_converged(env, name, &Want::version(1), Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("setup of {name}: {e:#}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The fault-case script

/// Where the arrival times of faulted calls come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// The emulator's journal (exact).
    Journal,
    /// The fault's remaining count, polled every 25 ms: requests abandoned by the client (a
    /// timeout) never reach the journal, because the emulator records a request when it answers.
    FaultCounter,
}

struct Case {
    agent: &'static str,
    scenario: &'static str,
    fault: Fault,
    lasting: bool,
    observe: usize,
    reason: Option<&'static str>,
    policy: Option<Policy>,
    timing: Timing,
}

impl Case {
    /// A transient fault: PipecatUnavailable, standard backoff, 6 failures observed.
    fn new(agent: &'static str, scenario: &'static str, fault: Fault) -> Self {
        Case {
            agent,
            scenario,
            fault,
            lasting: false,
            observe: 6,
            reason: Some("PipecatUnavailable"),
            policy: Some(Policy::transient()),
            timing: Timing::Journal,
        }
    }
    fn reason(mut self, reason: Option<&'static str>) -> Self {
        self.reason = reason;
        self
    }
    fn policy(mut self, policy: Option<Policy>) -> Self {
        self.policy = policy;
        self
    }
    fn observe(mut self, n: usize) -> Self {
        self.observe = n;
        self
    }
    fn lasting(mut self) -> Self {
        self.lasting = true;
        self
    }
    fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }
    /// The fault with its count: lasting ones until cleared, others a few calls past the
    /// observation so the mid-fault change meets the fault too.
    fn fault(&self) -> Fault {
        let mut f = self.fault.clone();
        f.count = if self.lasting {
            1_000_000
        } else {
            self.observe as u32 + 2
        };
        f
    }

    fn meta(&self, test: &'static str) -> Meta {
        let mut expected = vec![match self.reason {
            Some(r) => format!("Synced=False {r} and a Warning event {r} while it lasts"),
            None => "no panic, no create, status stays sane".to_string(),
        }];
        if let Some(p) = &self.policy {
            expected.push(describe_policy(p));
        }
        expected.push(
            if self.lasting {
                "converges once cleared to the spec applied during the fault"
            } else {
                "converges when it ends to the spec applied during the fault"
            }
            .to_string(),
        );
        expected.push("1 create, 1 update; log lines <= 16 KiB".to_string());
        Meta::new(
            SUITE,
            test,
            self.scenario,
            describe_fault(&self.fault(), self.lasting),
            expected.join("; "),
        )
    }
}

fn describe_policy(p: &Policy) -> String {
    if let Some(ra) = p.retry_after {
        format!(
            "no retry before Retry-After ({} s); repeated 429s pause the whole client",
            ra.as_secs()
        )
    } else if p.client_pause {
        "retries from 200 ms doubling; repeated 429s pause the whole client (1 s, doubling)".into()
    } else if p.user_action {
        "retries from 1 s (5x the 200 ms base) doubling to the 3 s cap, +-20%".into()
    } else if p.latency > Duration::ZERO {
        "each try waits out the 3 s request timeout, then backs off from 200 ms doubling".into()
    } else {
        "retries from 200 ms doubling to the 3 s cap, +-20% (no hot loop)".into()
    }
}

fn describe_fault(f: &Fault, lasting: bool) -> String {
    let what = match (&f.body, f.status, f.drop, f.delay_ms) {
        (_, _, true, _) => "connection reset (closed without an answer)".to_string(),
        (Some(FaultBody::Malformed), _, _, _) => "truncated JSON answer (HTTP 200)".to_string(),
        (Some(FaultBody::NonJson), s, _, _) => {
            format!("HTTP {} with an HTML proxy page", s.unwrap_or(502))
        }
        (Some(FaultBody::Custom(b)), s, _, _) => {
            format!("HTTP {} with body {}", s.unwrap_or(503), short_body(b))
        }
        (None, Some(s), _, _) => match f.retry_after {
            Some(ra) => format!("HTTP {s} with Retry-After: {ra}"),
            None => format!("HTTP {s}"),
        },
        (None, None, _, Some(ms)) => {
            format!("{ms} ms delay (over the 3 s request timeout)")
        }
        (None, None, _, None) => "HTTP 503".to_string(),
    };
    let times = if lasting {
        "until cleared".to_string()
    } else {
        format!("x{}", f.count)
    };
    format!(
        "{what}, {times}, on {} {}",
        f.method.as_deref().unwrap_or("any"),
        f.path
    )
}

fn short_body(b: &str) -> String {
    if b.len() <= 24 {
        format!("`{b}`")
    } else {
        let mut cut = 12;
        while !b.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("`{}...` ({} KiB)", &b[..cut], b.len() / 1024)
    }
}

/// What the resource showed during the fault.
#[derive(Default)]
struct Seen {
    reasons: BTreeSet<String>,
    ready_reasons: BTreeSet<String>,
    longest_message: usize,
}

impl Seen {
    async fn look(&mut self, env: &Env, name: &str) {
        let Ok(Some(a)) = env.agents().get_opt(name).await else {
            return;
        };
        for c in a.status.iter().flat_map(|s| s.conditions.iter()) {
            self.longest_message = self.longest_message.max(c.message.len());
            if c.status == "False" {
                match c.type_.as_str() {
                    "Synced" => self.reasons.insert(c.reason.clone()),
                    "Ready" => self.ready_reasons.insert(c.reason.clone()),
                    _ => false,
                };
            }
        }
    }
}

/// Follows a fault's remaining count.
struct FaultCounter {
    id: u64,
    remaining: u32,
    times: Vec<jiff::Timestamp>,
    gone: bool,
}

impl FaultCounter {
    async fn poll(&mut self, env: &Env) -> anyhow::Result<()> {
        let faults = env.admin.faults().await?;
        let now = jiff::Timestamp::now();
        let remaining = faults
            .iter()
            .find(|f| f.id == self.id)
            .map(|f| f.remaining)
            .unwrap_or(0);
        self.gone = remaining == 0;
        for _ in remaining..self.remaining {
            self.times.push(now);
        }
        self.remaining = remaining;
        Ok(())
    }
}

struct During {
    since: u64,
    t_change: jiff::Timestamp,
    seen: Seen,
    counted: Vec<jiff::Timestamp>,
}

/// Arrival times of the faulted calls about the case's agent.
async fn arrivals(
    env: &Env,
    case: &Case,
    since: u64,
    counter: &FaultCounter,
) -> anyhow::Result<Vec<jiff::Timestamp>> {
    Ok(match case.timing {
        Timing::FaultCounter => counter.times.clone(),
        Timing::Journal => journal_of(env, case.agent, since)
            .await?
            .iter()
            .filter(|e| e.fault.is_some())
            .map(arrival)
            .collect(),
    })
}

/// The faulted calls of one case, followed while the fault lasts.
struct Watch<'a> {
    env: &'a Env,
    case: &'a Case,
    since: u64,
    counter: FaultCounter,
    seen: Seen,
}

impl Watch<'_> {
    /// Polls until `done` holds over the arrivals and the counter.
    async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[jiff::Timestamp], &FaultCounter) -> bool,
    ) -> anyhow::Result<()> {
        let (env, case) = (self.env, self.case);
        let deadline = Instant::now() + timeout;
        let period = match case.timing {
            Timing::FaultCounter => Duration::from_millis(25),
            Timing::Journal => Duration::from_millis(200),
        };
        let mut last_look = Instant::now() - Duration::from_secs(1);
        loop {
            self.counter.poll(env).await?;
            if last_look.elapsed() >= Duration::from_millis(250) {
                self.seen.look(env, case.agent).await;
                last_look = Instant::now();
            }
            let times = arrivals(env, case, self.since, &self.counter).await?;
            if done(&times, &self.counter) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}: {} faulted calls so far, fault remaining {}\noperator log tail:\n{}",
                    times.len(),
                    self.counter.remaining,
                    env.operator.log_tail(12)
                );
            }
            tokio::time::sleep(period).await;
        }
    }
}

/// Injects the fault, applies version 2, then version 3 after `observe` failed calls; returns
/// once the fault is used up (finite) or after one failed call past the change (lasting).
async fn during_fault(env: &Env, case: &Case) -> anyhow::Result<During> {
    let since = journal_seq(env).await?;
    let active = env.admin.inject_fault(case.fault()).await?;
    let mut watch = Watch {
        env,
        case,
        since,
        counter: FaultCounter {
            id: active.id,
            remaining: active.remaining,
            times: Vec::new(),
            gone: false,
        },
        seen: Seen::default(),
    };
    apply_api(env, case.agent, &Want::version(2)).await?;
    let observe = case.observe;
    watch
        .until("the first failed calls", Duration::from_secs(90), |t, _| {
            t.len() >= observe
        })
        .await?;
    let t_change = jiff::Timestamp::now();
    apply_api(env, case.agent, &Want::version(3)).await?;
    watch
        .until(
            "a failed call after the change made during the fault",
            Duration::from_secs(60),
            |t, _| t.iter().any(|t| *t > t_change),
        )
        .await?;
    if !case.lasting {
        watch
            .until(
                "the fault to be used up",
                Duration::from_secs(60),
                |_, c| c.gone,
            )
            .await?;
    }
    Ok(During {
        since,
        t_change,
        seen: watch.seen,
        counted: watch.counter.times,
    })
}

/// After the fault: convergence and every check of the case.
async fn after_fault(env: &Env, case: &Case, d: During) -> anyhow::Result<String> {
    let name = case.agent;
    wait_converged(env, name, &Want::version(3), Duration::from_secs(90)).await?;
    let faulted: Vec<jiff::Timestamp> = match case.timing {
        Timing::FaultCounter => d.counted.clone(),
        Timing::Journal => journal_of(env, name, d.since)
            .await?
            .iter()
            .filter(|e| e.fault.is_some())
            .map(arrival)
            .collect(),
    };
    let before: Vec<jiff::Timestamp> = faulted
        .iter()
        .copied()
        .filter(|t| *t < d.t_change)
        .collect();
    let after = faulted.len() - before.len();
    ensure!(
        after >= 1,
        "no failed call after the mid-fault change: the change was not made during the fault"
    );
    let mut notes = vec![match &case.policy {
        Some(p) => check_spacing(&before, p)?.describe(),
        None => format!("{} answers before the change", before.len()),
    }];
    notes.push(format!("{after} after the mid-fault change"));
    if let Some(r) = case.reason {
        ensure!(
            d.seen.reasons.contains(r),
            "Synced=False {r} was never seen during the fault (saw {:?})",
            d.seen.reasons
        );
        wait_event(env, name, "Warning", r, Duration::from_secs(20)).await?;
        notes.push(format!("Synced=False {r} + Warning event"));
    } else {
        notes.push(format!(
            "Synced reasons seen {:?}, Ready reasons {:?}",
            d.seen.reasons, d.seen.ready_reasons
        ));
    }
    ensure!(
        d.seen.longest_message <= MAX_MESSAGE,
        "a condition message of {} bytes (limit {MAX_MESSAGE})",
        d.seen.longest_message
    );
    {
        // Remote text is quoted in errors: it must be bounded in the log too.
        let log = env.operator.log();
        let about: String = log
            .lines()
            .filter(|l| l.contains(&format!("agent={name} ")) || l.contains(&format!("/{name}.")))
            .collect::<Vec<_>>()
            .join("\n");
        let longest = longest_line(&about);
        let long: Vec<String> = about
            .lines()
            .filter(|l| l.len() > MAX_LOG_LINE)
            .map(|l| {
                let start: String = l.chars().take(150).collect();
                format!("{start}... ({} bytes)", l.len())
            })
            .collect();
        ensure!(
            longest <= MAX_LOG_LINE,
            "the operator logged {} lines over {MAX_LOG_LINE} bytes about {name}, the longest {longest} bytes: the remote error text is not bounded (log size {} bytes); they start:\n{}",
            long.len(),
            log.len(),
            long.join("\n")
        );
        notes.push(format!("longest log line {longest} B"));
    }
    check_created_once(env, name).await?;
    let updates = successful_updates(env, name, d.since).await?;
    // The two changes made during the fault end in one update once it is over.
    ensure!(updates == 1, "{updates} successful updates (expected 1)");
    check_operator_alive(env).await?;
    notes.push(format!(
        "final: remote = v3, Ready; 1 create, {updates} update(s)"
    ));
    Ok(notes.join("; "))
}

/// One case, synchronised with the others of its group: lasting faults are cleared once every
/// case has seen its fault.
async fn fault_case(env: &Env, case: &Case, barrier: &Barrier) -> anyhow::Result<String> {
    let during = AssertUnwindSafe(during_fault(env, case))
        .catch_unwind()
        .await;
    if barrier.wait().await.is_leader()
        && let Err(e) = env.admin.clear_faults().await
    {
        eprintln!("clearing faults: {e:#}");
    }
    barrier.wait().await;
    let during = match during {
        Ok(d) => d?,
        Err(p) => bail!("panicked during the fault: {}", panic_message(&p)),
    };
    after_fault(env, case, during).await
}

/// Runs cases at once (each on its own agent) and returns their outcomes.
async fn run_group(env: &Env, test: &'static str, cases: &[Case]) -> Vec<(Meta, Outcome)> {
    let barrier = Barrier::new(cases.len());
    let barrier = &barrier;
    futures::future::join_all(
        cases
            .iter()
            .map(|c| run_case(c.meta(test), fault_case(env, c, barrier))),
    )
    .await
}

/// The test-wide invariant: each agent exists once, was created `creates` times in total, and
/// no create was refused with 400 (how the API answers a duplicate) except those of `rejected`
/// (agents whose spec the API rejects on purpose).
async fn no_duplicates(
    env: &Env,
    test: &'static str,
    names: &[&str],
    creates: usize,
    rejected: &[&str],
) -> (Meta, Outcome) {
    let meta = Meta::new(
        SUITE,
        test,
        "no duplicate across the test",
        "all of the above",
        "each agent exists once remotely; successful creates = agents created; no create refused as a duplicate",
    );
    run_case(meta, async {
        check_remote_names(env, names).await?;
        let total: usize = journal_since(env, 0)
            .await?
            .iter()
            .filter(|e| e.operation == "create_agent" && e.status.is_some_and(|s| s / 100 == 2))
            .count();
        ensure!(
            total == creates,
            "{total} successful creates, expected {creates}"
        );
        let refused: Vec<String> = journal_since(env, 0)
            .await?
            .iter()
            .filter(|e| e.operation == "create_agent" && e.status == Some(400))
            .filter(|e| !e.agent.as_deref().is_some_and(|a| rejected.contains(&a)))
            .map(|e| format!("{:?} at {}", e.agent, e.timestamp))
            .collect();
        ensure!(
            refused.is_empty(),
            "creates refused with 400 (a duplicate create): {refused:?}"
        );
        check_operator_alive(env).await?;
        Ok(format!(
            "{} remote agents, each once; {total} successful creates",
            names.len()
        ))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Scenario 1: remote faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_transport_faults_back_off_and_converge() {
    const TEST: &str = "server_and_transport_faults_back_off_and_converge";
    let env = Env::start("rel-transient", options(false)).await;
    let get = |n: &str| Fault::status(agent_path(n), 503).with_method("GET");
    let post = |n: &str| Fault::status(agent_path(n), 503).with_method("POST");
    let cases = [
        Case::new("f-500", "HTTP 500 on read", get("f-500").with_status(500)),
        Case::new(
            "f-502",
            "HTTP 502 on update",
            post("f-502").with_status(502),
        ),
        Case::new("f-503", "HTTP 503 on read", get("f-503")),
        Case::new(
            "f-504",
            "HTTP 504 on update",
            post("f-504").with_status(504),
        ),
        Case::new(
            "f-timeout",
            "request timeout on read",
            Fault::delay(agent_path("f-timeout"), Duration::from_secs(4)).with_method("GET"),
        )
        .observe(3)
        .timing(Timing::FaultCounter)
        // Arrivals come from polling the fault's count (the emulator does not journal calls its
        // client abandoned): allow for the polling resolution under load.
        .policy(Some(
            Policy::transient().with_latency(REQUEST_TIMEOUT - Duration::from_millis(300)),
        )),
        Case::new(
            "f-reset",
            "connection reset on read",
            Fault::drop_connection(agent_path("f-reset")).with_method("GET"),
        ),
        Case::new(
            "f-malformed",
            "malformed JSON answer to a read",
            Fault::body(agent_path("f-malformed"), FaultBody::Malformed).with_method("GET"),
        )
        .reason(Some("MalformedResponse")),
        Case::new(
            "f-nonjson",
            "non-JSON 502 (proxy page) on update",
            Fault::body(agent_path("f-nonjson"), FaultBody::NonJson)
                .with_status(502)
                .with_method("POST"),
        ),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.agent).collect();
    setup(&env, &names).await;
    let mut results = run_group(&env, TEST, &cases).await;
    results.push(no_duplicates(&env, TEST, &names, names.len(), &[]).await);
    assert_all_passed(&results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured() {
    const TEST: &str = "rate_limits_are_honoured";
    // The default client-side rate limit stays on: 429s drive its whole-client brake.
    let env = Env::start("rel-429", options(true)).await;
    let cases = [
        Case::new(
            "f-429",
            "HTTP 429 without Retry-After on read",
            Fault::status(agent_path("f-429"), 429).with_method("GET"),
        )
        .observe(3)
        .reason(Some("RateLimited"))
        .policy(Some(Policy::rate_limited(None))),
        Case::new(
            "f-429-ra",
            "HTTP 429 with Retry-After on read",
            Fault::status(agent_path("f-429-ra"), 429)
                .with_retry_after(1)
                .with_method("GET"),
        )
        .observe(3)
        .reason(Some("RateLimited"))
        .policy(Some(Policy::rate_limited(Some(Duration::from_secs(1))))),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.agent).collect();
    setup(&env, &names).await;
    // One after the other: a 429 brake pauses every request of the client.
    let mut results = Vec::new();
    for case in &cases {
        results.extend(run_group(&env, TEST, std::slice::from_ref(case)).await);
    }
    results.push(no_duplicates(&env, TEST, &names, names.len(), &[]).await);
    assert_all_passed(&results);
}

/// The agent is deleted behind the operator's back, then its spec changes.
async fn deleted_out_of_band(env: &Env, name: &str) -> anyhow::Result<String> {
    let since = journal_seq(env).await?;
    let resp = reqwest::Client::new()
        .delete(format!("{}/agents/{name}", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    ensure!(
        resp.status().is_success(),
        "deleting {name} out of band: HTTP {}",
        resp.status()
    );
    apply_api(env, name, &Want::version(2)).await?;
    wait_converged(env, name, &Want::version(2), Duration::from_secs(60)).await?;
    let creates = successful_creates(env, name).await?;
    ensure!(
        creates == 2,
        "{creates} successful creates of {name} (expected the original and one re-create)"
    );
    let refused = crate::support::reliability::refused_creates(env, Some(name), 0).await?;
    ensure!(
        refused == 0,
        "{refused} creates of {name} refused with 400 (a duplicate create)"
    );
    let entries = journal_of(env, name, since).await?;
    let update_404 = entries
        .iter()
        .filter(|e| e.operation == "update_agent" && e.status == Some(404))
        .count();
    let get_404 = entries
        .iter()
        .filter(|e| e.operation == "get_agent" && e.status == Some(404))
        .count();
    check_operator_alive(env).await?;
    Ok(format!(
        "read answered 404 {get_404}x, update 404 {update_404}x; re-created once with the latest spec (2 creates in total); Ready"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_not_found_wait_for_the_user_then_converge() {
    const TEST: &str = "auth_and_not_found_wait_for_the_user_then_converge";
    let env = Env::start("rel-auth", options(false)).await;
    let cases = [
        Case::new(
            "f-401",
            "HTTP 401 (key revoked) on read",
            Fault::status(agent_path("f-401"), 401).with_method("GET"),
        )
        .lasting()
        .observe(5)
        .reason(Some("Unauthorized"))
        .policy(Some(Policy::user_action())),
        Case::new(
            "f-403",
            "HTTP 403 on update",
            Fault::status(agent_path("f-403"), 403).with_method("POST"),
        )
        .lasting()
        .observe(5)
        .reason(Some("Unauthorized"))
        .policy(Some(Policy::user_action())),
        Case::new(
            "f-404",
            "HTTP 404 on update (POST /v1/agents/NAME)",
            Fault::status(agent_path("f-404"), 404).with_method("POST"),
        )
        .observe(4)
        .reason(Some("RemoteNotFound"))
        .policy(Some(Policy::user_action())),
    ];
    let mut names: Vec<&str> = cases.iter().map(|c| c.agent).collect();
    names.push("f-gone");
    setup(&env, &names).await;
    let gone = Meta::new(
        SUITE,
        TEST,
        "agent deleted out of band, then the spec changes",
        "DELETE /v1/agents/f-gone behind the operator, then a spec change",
        "the agent is re-created once with the latest spec and becomes Ready",
    );
    let (mut results, gone) = tokio::join!(
        run_group(&env, TEST, &cases),
        run_case(gone, deleted_out_of_band(&env, "f-gone"))
    );
    results.push(gone);
    results.push(no_duplicates(&env, TEST, &names, names.len() + 1, &[]).await);
    assert_all_passed(&results);
}

/// A secret set that is still provisioning when the agent is created (409).
async fn secret_set_provisioning(env: &Env, name: &str) -> anyhow::Result<String> {
    let set = "slow-secrets";
    env.admin
        .set_config(ConfigUpdate {
            secret_ready_delay_ms: Some(6000),
            ..ConfigUpdate::default()
        })
        .await?;
    let resp = reqwest::Client::new()
        .put(format!("{}/secrets/{set}", env.emulator.base_url()))
        .bearer_auth(API_KEY)
        .json(&json!({"secrets": [{"secretKey": "OPENAI_API_KEY", "secretValue": "x"}]}))
        .send()
        .await?;
    ensure!(
        resp.status().as_u16() == 202,
        "PUT secret set: {}",
        resp.status()
    );
    let since = journal_seq(env).await?;
    let conflicts = || async {
        journal_since(env, since).await.map(|entries| {
            entries
                .iter()
                .filter(|e| e.operation == "create_agent" && e.status == Some(409))
                .map(arrival)
                .collect::<Vec<_>>()
        })
    };
    let v1 = Want::version(1).with_secret_set(set);
    let v2 = Want::version(2).with_secret_set(set);
    apply_api(env, name, &v1).await?;
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while conflicts().await?.len() < 4 {
        seen.look(env, name).await;
        ensure!(
            Instant::now() < deadline,
            "fewer than 4 conflicts in 30 s:\n{}",
            env.operator.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let t_change = jiff::Timestamp::now();
    apply_api(env, name, &v2).await?;
    seen.look(env, name).await;
    wait_converged(env, name, &v2, Duration::from_secs(60)).await?;
    let all = conflicts().await?;
    let before: Vec<jiff::Timestamp> = all.iter().copied().filter(|t| *t < t_change).collect();
    let spacing = check_spacing(&before, &Policy::transient())?;
    ensure!(
        all.len() > before.len(),
        "no conflict after the change: it was not made while the set provisioned"
    );
    ensure!(
        seen.reasons.contains("SecretSetNotReady"),
        "Synced=False SecretSetNotReady never seen (saw {:?})",
        seen.reasons
    );
    wait_event(
        env,
        name,
        "Warning",
        "SecretSetNotReady",
        Duration::from_secs(20),
    )
    .await?;
    check_created_once(env, name).await?;
    env.admin
        .set_config(ConfigUpdate {
            secret_ready_delay_ms: Some(0),
            ..ConfigUpdate::default()
        })
        .await?;
    Ok(format!(
        "{}; {} 409s in all; Synced=False SecretSetNotReady + Warning event; final: created once with the spec applied meanwhile, Ready",
        spacing.describe(),
        all.len()
    ))
}

/// A deployment that fails to pull, then a fixed image.
async fn failed_image_pull(env: &Env, name: &str) -> anyhow::Result<String> {
    let since = journal_seq(env).await?;
    let bad = Want::version(1).with_image("acme/bot:pullfail");
    apply_api(env, name, &bad).await?;
    let a = wait_agent(
        env,
        name,
        Duration::from_secs(30),
        "Ready=False ImagePullBackOff",
        |a| {
            a.condition("Ready").is_some_and(|c| {
                c.status == "False"
                    && c.reason == "ImagePullBackOff"
                    && c.observed_generation == a.metadata.generation
            })
        },
    )
    .await?;
    let available = a.status.as_ref().and_then(|s| s.available);
    let event = wait_event(
        env,
        name,
        "Warning",
        "DeploymentFailed",
        Duration::from_secs(20),
    )
    .await?;
    ensure!(
        event.contains("ImagePullBackOff"),
        "DeploymentFailed event does not name the failure: {event}"
    );
    // While it stays failed: the operator keeps reading it (proof that it runs), slowly (the
    // failed-deployment poll of 1 s, +-10%), and never re-sends the failing update.
    let window_since = journal_seq(env).await?;
    let window = crate::support::reliability::eventually(
        "three reads of the failed agent",
        Duration::from_secs(30),
        || async {
            let entries = journal_of(env, name, window_since).await.ok()?;
            let reads = entries
                .iter()
                .filter(|e| e.operation == "get_agent")
                .count();
            (reads >= 3).then_some(entries)
        },
    )
    .await
    .with_context(|| {
        format!(
            "the operator stopped reading {name}:\n{}",
            env.operator.log_tail(10)
        )
    })?;
    let reads: Vec<jiff::Timestamp> = window
        .iter()
        .filter(|e| e.operation == "get_agent")
        .map(arrival)
        .collect();
    let updates = window
        .iter()
        .filter(|e| e.operation == "update_agent")
        .count();
    ensure!(
        updates == 0,
        "{updates} updates while the deployment stayed failed"
    );
    let gaps: Vec<Duration> = reads
        .windows(2)
        .map(|w| Duration::try_from(w[1].duration_since(w[0])).unwrap_or(Duration::ZERO))
        .collect();
    // The failed-deployment poll is the 1 s max poll interval -10%, less 60 ms of scheduling
    // slack (millisecond timestamps, timers firing a tick early).
    ensure!(
        gaps.iter().all(|g| *g >= Duration::from_millis(840)),
        "reads of the failed agent {gaps:?} apart (polling should slow to ~1/s)"
    );
    let reads = reads.len();
    apply_api(env, name, &Want::version(2)).await?;
    wait_converged(env, name, &Want::version(2), Duration::from_secs(60)).await?;
    let total = successful_updates(env, name, since).await?;
    ensure!(
        total == 2,
        "{total} updates (expected the bad image, then the fix)"
    );
    check_operator_alive(env).await?;
    Ok(format!(
        "Ready=False ImagePullBackOff (available={available:?}) + Warning DeploymentFailed; while failed: {reads} reads >= 0.84 s apart, 0 updates; fixed image: Ready; 2 updates in total"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_secret_set_and_failed_image_pull() {
    const TEST: &str = "provisioning_secret_set_and_failed_image_pull";
    let mut opts = options(false);
    opts.emulator = emulator::Config {
        pull_fail_image_pattern: Some("*:pullfail*".into()),
        ..emulator::Config::default()
    };
    let env = Env::start("rel-409", opts).await;
    setup(&env, &["f-pull"]).await;
    let conflict = Meta::new(
        SUITE,
        TEST,
        "HTTP 409: agent created while its secret set provisions",
        "secret set slow-secrets pending for 6 s (PUT just before the agent)",
        "Synced=False SecretSetNotReady + Warning event; retries from 200 ms doubling; created once the set is ready, with the spec changed meanwhile; 1 create",
    );
    let pull = Meta::new(
        SUITE,
        TEST,
        "deployment that fails to pull, then a fixed image",
        "emulator pull_fail_image_pattern `*:pullfail*`",
        "Ready=False ImagePullBackOff + Warning DeploymentFailed; no re-sent update, slow polling; the fixed image converges",
    );
    let (a, b) = tokio::join!(
        run_case(conflict, secret_set_provisioning(&env, "f-409")),
        run_case(pull, failed_image_pull(&env, "f-pull"))
    );
    let mut results = vec![a, b];
    results.push(no_duplicates(&env, TEST, &["f-409", "f-pull"], 2, &[]).await);
    assert_all_passed(&results);
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: bad input beyond admission

/// A create whose answer is lost or unreadable: the agent is not created twice.
async fn lost_create_answer(env: &Env, name: &str, fault: Fault) -> anyhow::Result<String> {
    let since = journal_seq(env).await?;
    env.admin.inject_fault(fault).await?;
    apply_api(env, name, &Want::version(1)).await?;
    wait_converged(env, name, &Want::version(1), Duration::from_secs(60)).await?;
    check_created_once(env, name).await?;
    let updates = successful_updates(env, name, since).await?;
    ensure!(
        updates == 0,
        "{updates} updates of an agent that already had the spec"
    );
    let attempts = journal_since(env, since)
        .await?
        .iter()
        .filter(|e| e.operation == "create_agent")
        .count();
    let events = crate::support::reliability::events(env).await?;
    let reasons: BTreeSet<String> = events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    check_operator_alive(env).await?;
    Ok(format!(
        "{attempts} create attempts journaled, 1 successful, 0 updates; events {reasons:?}; final: Ready"
    ))
}

enum Fix {
    /// Create the missing secret set (no spec change needed).
    CreateSet(&'static str),
    /// Apply a corrected spec.
    Spec(Want),
}

/// A create the API rejects (`status`): reported, retried without a storm, fixed.
async fn rejected_create(
    env: &Env,
    name: &str,
    bad: Want,
    status: u16,
    reason: &str,
    fix: Fix,
) -> anyhow::Result<String> {
    let since = journal_seq(env).await?;
    let rejected = || async {
        journal_since(env, since).await.map(|entries| {
            entries
                .iter()
                .filter(|e| e.operation == "create_agent" && e.status == Some(status))
                .map(arrival)
                .collect::<Vec<_>>()
        })
    };
    apply_api(env, name, &bad).await?;
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rejected().await?.len() < 5 {
        seen.look(env, name).await;
        ensure!(
            Instant::now() < deadline,
            "fewer than 5 rejected creates in 60 s:\n{}",
            env.operator.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen.look(env, name).await;
    let window = rejected().await?;
    let spacing = check_spacing(&window, &Policy::user_action())?;
    ensure!(
        seen.reasons.contains(reason) && seen.ready_reasons.contains(reason),
        "Synced/Ready=False {reason} never seen (Synced {:?}, Ready {:?})",
        seen.reasons,
        seen.ready_reasons
    );
    wait_event(env, name, "Warning", reason, Duration::from_secs(20)).await?;
    let fixed_at = journal_seq(env).await?;
    let want = match fix {
        Fix::CreateSet(set) => {
            env.admin
                .create_secret_set(API_KEY, set, &[("OPENAI_API_KEY", "x")])
                .await?;
            bad
        }
        Fix::Spec(good) => {
            apply_api(env, name, &good).await?;
            good
        }
    };
    wait_converged(env, name, &want, Duration::from_secs(60)).await?;
    // Refused creates before the fix were the rejection itself; after it, one would be a
    // duplicate.
    let creates = successful_creates(env, name).await?;
    let refused = crate::support::reliability::refused_creates(env, Some(name), fixed_at).await?;
    ensure!(
        creates == 1 && refused == 0,
        "{creates} successful creates of {name}, {refused} refused with 400 after the fix"
    );
    check_operator_alive(env).await?;
    Ok(format!(
        "{}; Synced=False and Ready=False {reason} + Warning event; after the fix: created once, Ready",
        spacing.describe()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_lost_create_answers() {
    const TEST: &str = "bad_requests_and_lost_create_answers";
    let env = Env::start("rel-badreq", options(false)).await;
    let mut results = Vec::new();
    // Creates meet the faults one after the other (the path POST /v1/agents is shared).
    let truncated = Meta::new(
        SUITE,
        TEST,
        "create carried out, its answer truncated",
        "truncated JSON answer (HTTP 200) x1 on POST /v1/agents",
        "Warning MalformedResponse; the retry finds the agent and adopts it: 1 create, 0 updates, Ready",
    );
    results.push(
        run_case(
            truncated,
            lost_create_answer(
                &env,
                "b-truncated",
                Fault::body("/v1/agents", FaultBody::Malformed).with_method("POST"),
            ),
        )
        .await,
    );
    let timeout = Meta::new(
        SUITE,
        TEST,
        "create times out",
        "4000 ms delay (over the 3 s request timeout) x1 on POST /v1/agents",
        "Warning PipecatUnavailable; retried; 1 successful create, Ready",
    );
    results.push(
        run_case(
            timeout,
            lost_create_answer(
                &env,
                "b-timeout",
                Fault::delay("/v1/agents", Duration::from_secs(4)).with_method("POST"),
            ),
        )
        .await,
    );
    let missing = Meta::new(
        SUITE,
        TEST,
        "secret set missing remotely (404 on create)",
        "spec.secretSet names a set that does not exist",
        "Synced=False and Ready=False RemoteNotFound + Warning event; retries from 1 s doubling to 3 s (no storm); converges once the set is created",
    );
    let rejected = Meta::new(
        SUITE,
        TEST,
        "spec the API rejects (400 on create)",
        "spec.secretSet names an image-pull secret set (valid for the CRD, 400 for the API)",
        "Synced=False and Ready=False InvalidRequest + Warning event; retries from 1 s doubling to 3 s (no storm); converges once the spec is fixed",
    );
    let (a, b) = tokio::join!(
        run_case(
            missing,
            rejected_create(
                &env,
                "b-noset",
                Want::version(1).with_secret_set("no-such-set"),
                404,
                "RemoteNotFound",
                Fix::CreateSet("no-such-set"),
            )
        ),
        run_case(
            rejected,
            rejected_create(
                &env,
                "b-badset",
                Want::version(1).with_secret_set("dockerhub-credentials"),
                400,
                "InvalidRequest",
                Fix::Spec(Want::version(2)),
            )
        )
    );
    results.push(a);
    results.push(b);
    let names = ["b-truncated", "b-timeout", "b-noset", "b-badset"];
    // b-badset's creates are refused with 400 on purpose (its spec is invalid for the API).
    results.push(no_duplicates(&env, TEST, &names, names.len(), &["b-badset"]).await);
    assert_all_passed(&results);
}

/// A delete that fails with a long error text: the DeleteFailed event must still be published
/// (an event note is limited to 1 KiB by the API server), and the agent is deleted once the
/// fault ends.
async fn delete_with_long_error(env: &Env, name: &str) -> anyhow::Result<String> {
    let body = json!({"error": format!("upstream failure {}", "z".repeat(2048)), "code": "500"});
    env.admin
        .inject_fault(
            Fault::body(agent_path(name), FaultBody::Custom(body.to_string()))
                .with_status(500)
                .with_method("DELETE")
                .with_count(3),
        )
        .await?;
    env.agents()
        .delete(name, &DeleteParams::default())
        .await
        .context("deleting the resource")?;
    let event = wait_event(
        env,
        name,
        "Warning",
        "DeleteFailed",
        Duration::from_secs(20),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.agents().get_opt(name).await?.is_some() {
        ensure!(
            Instant::now() < deadline,
            "{name} still exists 60 s after the delete:\n{}",
            env.operator.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        env.remote(name).await.is_none(),
        "the remote agent was left behind"
    );
    let event = event.with_context(|| {
        let log = env.operator.log();
        let publish = log
            .lines()
            .find(|l| l.contains("failed to publish event"))
            .map(|l| l.chars().take(400).collect::<String>())
            .unwrap_or_else(|| "(no publish error logged)".into());
        format!("the DeleteFailed event with a long error text; operator: {publish}")
    })?;
    ensure!(
        event.len() <= MAX_MESSAGE,
        "event message of {} bytes",
        event.len()
    );
    check_operator_alive(env).await?;
    Ok(format!(
        "Warning DeleteFailed ({} B message); deleted after the fault, nothing left behind",
        event.len()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_remote_data_never_panics() {
    const TEST: &str = "invalid_remote_data_never_panics";
    let env = Env::start("rel-data", options(false)).await;
    let body = |n: &str, status: u16, b: String| {
        Fault::body(agent_path(n), FaultBody::Custom(b))
            .with_status(status)
            .with_method("GET")
    };
    let malformed = |agent, scenario, fault| {
        Case::new(agent, scenario, fault)
            .observe(3)
            .reason(Some("MalformedResponse"))
    };
    let huge_string = format!("\"{}\"", "x".repeat(4 << 20));
    let huge_error = json!({"error": "y".repeat(1 << 20), "code": "500"}).to_string();
    let cases = [
        malformed(
            "d-number",
            "wrong field type in an agent",
            body("d-number", 200, r#"{"name": 5}"#.into()),
        ),
        malformed(
            "d-array",
            "an array instead of an agent",
            body("d-array", 200, "[]".into()),
        ),
        malformed(
            "d-null",
            "null instead of an agent",
            body("d-null", 200, "null".into()),
        ),
        malformed(
            "d-huge",
            "a 4 MiB JSON string instead of an agent",
            body("d-huge", 200, huge_string),
        ),
        // `{}` names no agent: the client refuses it as malformed (not as an agent lacking
        // fields), so nothing is planned from it and the change made meanwhile is sent once.
        malformed(
            "d-empty",
            "an empty object (every field missing)",
            body("d-empty", 200, "{}".into()),
        )
        .lasting(),
        Case::new(
            "d-huge-error",
            "HTTP 500 with a 1 MiB error message",
            body("d-huge-error", 500, huge_error),
        )
        .observe(3),
    ];
    let mut names: Vec<&str> = cases.iter().map(|c| c.agent).collect();
    names.push("d-delete");
    setup(&env, &names).await;
    let mut results = run_group(&env, TEST, &cases).await;
    let delete = Meta::new(
        SUITE,
        TEST,
        "delete fails with a 2 KiB error text",
        "HTTP 500 with a 2 KiB JSON error x3 on DELETE /v1/agents/d-delete",
        "Warning DeleteFailed event (note within the API's 1 KiB limit); deleted when the fault ends; nothing left behind",
    );
    results.push(run_case(delete, delete_with_long_error(&env, "d-delete")).await);
    names.retain(|n| *n != "d-delete");
    results.push(no_duplicates(&env, TEST, &names, names.len() + 1, &[]).await);
    assert_all_passed(&results);
}
