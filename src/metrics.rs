//! Prometheus metrics. Every label set is bounded: operations, status classes, decisions and
//! error reasons are fixed words, never object names or messages. The one exception is opt-in:
//! the per-agent gauges (`--agent-metrics`), labelled by namespace and name, at most
//! `--agent-metrics-limit` agents.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cloud;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    namespace: String,
    name: String,
}

/// The per-agent gauges (flags of `pipecat-operator run`).
#[derive(Clone, Debug, clap::Args)]
pub struct AgentMetricsConfig {
    /// Export per-agent gauges of active sessions, warm pool and maximum
    /// (`pipecat_operator_agent_{active_sessions,warm_agents,max_agents}`, labelled by namespace
    /// and name) for autoscalers and alerts.
    #[arg(
        long = "agent-metrics",
        env = "PIPECAT_AGENT_METRICS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub enabled: bool,
    /// Most agents with per-agent gauges: agents past it get none (counted in
    /// `pipecat_operator_agent_metrics_skipped`) until an exported agent leaves.
    #[arg(
        long = "agent-metrics-limit",
        env = "PIPECAT_AGENT_METRICS_LIMIT",
        default_value_t = 1000
    )]
    pub limit: usize,
}

impl Default for AgentMetricsConfig {
    fn default() -> Self {
        crate::flags::defaults()
    }
}

/// What the per-agent gauges show for one agent (from its status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentGauges {
    /// Sessions running now.
    pub active_sessions: Option<i64>,
    /// Instances kept warm, as Pipecat Cloud applies them.
    pub warm: Option<i64>,
    /// Most instances, as Pipecat Cloud applies them.
    pub max: Option<i64>,
}

/// All metrics of the operator.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    api_requests: Family<RequestLabels, Counter>,
    api_duration: Family<OperationLabels, Histogram>,
    rate_limit_waits: Counter,
    rate_limit_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    agents: Family<ReadyLabels, Gauge>,
    secret_set_reconciles: Family<ResultLabels, Counter>,
    secret_set_reconcile_errors: Family<ReasonLabels, Counter>,
    secret_sets: Family<ReadyLabels, Gauge>,
    agents_failed: Gauge,
    leader: Gauge,
    operator_ready: Gauge,
    agent_config: AgentMetricsConfig,
    agent_sessions: Family<AgentLabels, Gauge>,
    agent_warm: Family<AgentLabels, Gauge>,
    agent_max: Family<AgentLabels, Gauge>,
    agent_exported: AtomicUsize,
    agent_skipped: Gauge,
    resync_period: Gauge<f64, std::sync::atomic::AtomicU64>,
    resync_backlog: Gauge,
    resync_lateness: Gauge<f64, std::sync::atomic::AtomicU64>,
    resyncs: Counter,
    events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, without per-agent gauges.
    pub fn new() -> Self {
        Self::with_agent_metrics(AgentMetricsConfig {
            enabled: false,
            ..AgentMetricsConfig::default()
        })
    }

    /// Registers every metric; the per-agent gauges as `agent_config` says.
    pub fn with_agent_metrics(agent_config: AgentMetricsConfig) -> Self {
        let mut registry = Registry::with_prefix("pipecat_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (created, adopted, updated, unchanged, not_converging, deleted, orphaned, error)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason (the Synced condition's reason)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Pipecat Cloud API requests by operation and status class (2xx, 4xx, 429, 5xx, error)",
            api_requests.clone(),
        );
        let api_duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "api_request_duration_seconds",
            "Latency of Pipecat Cloud API requests",
            api_duration.clone(),
        );
        let rate_limit_waits = Counter::default();
        registry.register(
            "api_rate_limit_waits",
            "Pipecat Cloud requests that waited for the client-side rate limit",
            rate_limit_waits.clone(),
        );
        let rate_limit_wait_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "api_rate_limit_wait_seconds",
            "Time spent waiting for the client-side rate limit",
            rate_limit_wait_seconds.clone(),
        );
        let agents = Family::<ReadyLabels, Gauge>::default();
        registry.register("agents", "PipecatAgents by Ready state", agents.clone());
        let secret_set_reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "secret_set_reconciles",
            "PipecatSecretSet reconciles by result (created, adopted, updated, key_deleted, waiting, unchanged, not_converging, held, deleted, orphaned, left, error)",
            secret_set_reconciles.clone(),
        );
        let secret_set_reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "secret_set_reconcile_errors",
            "Failed PipecatSecretSet reconciles by reason (the Synced condition's reason)",
            secret_set_reconcile_errors.clone(),
        );
        let secret_sets = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "secret_sets",
            "PipecatSecretSets by Ready state",
            secret_sets.clone(),
        );
        let agents_failed = Gauge::default();
        registry.register(
            "agents_failed",
            "PipecatAgents whose deployment failed (crash loop, image pull, deployment error)",
            agents_failed.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
        let operator_ready = Gauge::default();
        registry.register(
            "ready",
            "1 while /readyz answers ready (a standby, or a leader whose watches have listed once)",
            operator_ready.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Kubernetes events dropped unsent because the publishing queue was full (the oldest go first)",
            events_dropped.clone(),
        );
        let resync_period = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "resync_period_seconds",
            "Resync period the pacer aims for: --resync-interval, or longer when the API budget left to resyncs needs it (refreshes achieved it while resync_lateness_seconds is 0)",
            resync_period.clone(),
        );
        let resync_backlog = Gauge::default();
        registry.register(
            "resync_backlog",
            "Ready agents whose periodic refresh is due and not yet run (every agent right after a start: the first round is spread over one period)",
            resync_backlog.clone(),
        );
        let resync_lateness = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "resync_lateness_seconds",
            "How long past its due time the longest-waiting ready agent's refresh is (0: every refresh on time); the longest any ready agent goes unrefreshed is resync_period_seconds plus this",
            resync_lateness.clone(),
        );
        let resyncs = Counter::default();
        registry.register(
            "resyncs",
            "Periodic refreshes run in the background lane",
            resyncs.clone(),
        );
        let agent_sessions = Family::<AgentLabels, Gauge>::default();
        let agent_warm = Family::<AgentLabels, Gauge>::default();
        let agent_max = Family::<AgentLabels, Gauge>::default();
        let agent_skipped = Gauge::default();
        if agent_config.enabled {
            registry.register(
                "agent_active_sessions",
                "Sessions running on the agent (status.activeSessionCount, refreshed at every resync)",
                agent_sessions.clone(),
            );
            registry.register(
                "agent_warm_agents",
                "Instances kept warm as Pipecat Cloud applies them (status.autoScaling.minReplicas)",
                agent_warm.clone(),
            );
            registry.register(
                "agent_max_agents",
                "Most instances as Pipecat Cloud applies them (status.autoScaling.maxReplicas)",
                agent_max.clone(),
            );
            registry.register(
                "agent_metrics_skipped",
                "Agents without per-agent gauges because --agent-metrics-limit was reached",
                agent_skipped.clone(),
            );
        }
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_requests,
            api_duration,
            rate_limit_waits,
            rate_limit_wait_seconds,
            agents,
            secret_set_reconciles,
            secret_set_reconcile_errors,
            secret_sets,
            agents_failed,
            leader,
            operator_ready,
            agent_config,
            agent_sessions,
            agent_warm,
            agent_max,
            agent_exported: AtomicUsize::new(0),
            events_dropped,
            agent_skipped,
            resync_period,
            resync_backlog,
            resync_lateness,
            resyncs,
        }
    }

    /// The background lane's pace: the period it aims for, the agents overdue, and how late the
    /// longest-waiting refresh is.
    pub fn set_resync(&self, period: Duration, backlog: usize, lateness: Duration) {
        self.resync_period.set(period.as_secs_f64());
        self.resync_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        self.resync_lateness.set(lateness.as_secs_f64());
    }

    /// One periodic refresh started.
    pub fn resynced(&self) {
        self.resyncs.inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// One finished reconcile.
    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// One failed reconcile.
    pub fn reconcile_failed(&self, reason: &'static str, took: Duration) {
        self.reconciled("error", took);
        self.reconcile_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// One Pipecat Cloud request.
    pub fn api_request(
        &self,
        op: cloud::Operation,
        outcome: Result<u16, &cloud::Error>,
        took: Duration,
    ) {
        let status_class = match outcome {
            Ok(s) if s < 300 => "2xx",
            Ok(_) => "other",
            Err(cloud::Error::RateLimited { .. }) => "429",
            Err(cloud::Error::Transient {
                status: Some(_), ..
            }) => "5xx",
            Err(cloud::Error::Transient { status: None, .. }) => "error",
            Err(cloud::Error::Malformed { .. }) => "malformed",
            Err(_) => "4xx",
        };
        let operation = op.as_str();
        self.api_requests
            .get_or_create(&RequestLabels {
                operation,
                status_class,
            })
            .inc();
        self.api_duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// A request waited for the rate limiter.
    pub fn rate_limited(&self, waited: Duration) {
        self.rate_limit_waits.inc();
        self.rate_limit_wait_seconds.inc_by(waited.as_secs_f64());
    }

    /// An agent's readiness moved from `before` to `after` (`None`: not counted, e.g. gone).
    /// Constant time: the gauges move by the difference, they are not recounted. The
    /// per-object readiness itself is kept by the controller's object state.
    pub fn ready_changed(&self, before: Option<bool>, after: Option<bool>) {
        move_ready(&self.agents, before, after);
    }

    /// One finished PipecatSecretSet reconcile (`error`: see [`Self::secret_set_failed`]).
    pub fn secret_set_reconciled(&self, result: &'static str) {
        self.secret_set_reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One failed PipecatSecretSet reconcile.
    pub fn secret_set_failed(&self, reason: &'static str) {
        self.secret_set_reconciled("error");
        self.secret_set_reconcile_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A PipecatSecretSet's readiness changed (`None`: unknown, or forgotten), as
    /// [`Self::ready_changed`] for agents.
    pub fn secret_set_ready_changed(&self, before: Option<bool>, after: Option<bool>) {
        move_ready(&self.secret_sets, before, after);
    }

    /// True when the per-agent gauges are exported.
    pub fn agent_metrics_enabled(&self) -> bool {
        self.agent_config.enabled
    }

    /// Sets one agent's gauges. `exported` says whether the agent already has its series
    /// (`None`: not tracked yet, `Some(false)`: skipped over the limit); returns the new state.
    /// The caller (the controller's per-object state) remembers it and calls
    /// [`Metrics::agent_forgotten`] when the agent leaves.
    pub fn agent_observed(
        &self,
        namespace: &str,
        name: &str,
        exported: Option<bool>,
        gauges: AgentGauges,
    ) -> Option<bool> {
        if !self.agent_config.enabled {
            return None;
        }
        let exported = match exported {
            Some(true) => true,
            before => {
                let admitted = self
                    .agent_exported
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n < self.agent_config.limit).then_some(n + 1)
                    })
                    .is_ok();
                match (before, admitted) {
                    (None, false) => {
                        self.agent_skipped.inc();
                    }
                    (Some(false), true) => {
                        self.agent_skipped.dec();
                    }
                    _ => {}
                }
                admitted
            }
        };
        if exported {
            let labels = AgentLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            for (family, value) in [
                (&self.agent_sessions, gauges.active_sessions),
                (&self.agent_warm, gauges.warm),
                (&self.agent_max, gauges.max),
            ] {
                match value {
                    Some(v) => {
                        family.get_or_create(&labels).set(v);
                    }
                    None => {
                        family.remove(&labels);
                    }
                }
            }
        }
        Some(exported)
    }

    /// An agent left: its series go (or, if it was over the limit, it is no longer counted).
    pub fn agent_forgotten(&self, namespace: &str, name: &str, exported: Option<bool>) {
        match exported {
            Some(true) => {
                let labels = AgentLabels {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                };
                self.agent_sessions.remove(&labels);
                self.agent_warm.remove(&labels);
                self.agent_max.remove(&labels);
                self.agent_exported.fetch_sub(1, Ordering::SeqCst);
            }
            Some(false) => {
                self.agent_skipped.dec();
            }
            None => {}
        }
    }

    /// An event dropped unsent (the publishing queue was full).
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Leader status.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// An agent's deployment started (`true`) or stopped (`false`) being failed.
    pub fn failed_changed(&self, before: bool, after: bool) {
        match (before, after) {
            (false, true) => {
                self.agents_failed.inc();
            }
            (true, false) => {
                self.agents_failed.dec();
            }
            _ => {}
        }
    }

    /// What `/readyz` answers, as a gauge.
    pub fn set_operator_ready(&self, ready: bool) {
        self.operator_ready.set(i64::from(ready));
    }
}

impl cloud::Observer for Metrics {
    fn request(&self, op: cloud::Operation, outcome: Result<u16, &cloud::Error>, took: Duration) {
        self.api_request(op, outcome, took);
    }
    fn rate_limited(&self, waited: Duration) {
        Metrics::rate_limited(self, waited);
    }
}

/// Moves a by-readiness gauge by the difference (constant time: nothing is recounted).
fn move_ready(gauges: &Family<ReadyLabels, Gauge>, before: Option<bool>, after: Option<bool>) {
    if before == after {
        return;
    }
    let gauge = |r: bool| {
        gauges.get_or_create(&ReadyLabels {
            ready: if r { "true" } else { "false" },
        })
    };
    if let Some(r) = before {
        gauge(r).dec();
    }
    if let Some(r) = after {
        gauge(r).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_series() {
        let m = Metrics::new();
        m.reconciled("created", Duration::from_millis(20));
        m.reconcile_failed("PipecatUnavailable", Duration::from_millis(5));
        m.api_request(
            cloud::Operation::GetAgent,
            Ok(200),
            Duration::from_millis(3),
        );
        m.api_request(
            cloud::Operation::UpdateAgent,
            Err(&cloud::Error::RateLimited { retry_after: None }),
            Duration::from_millis(3),
        );
        m.rate_limited(Duration::from_millis(250));
        m.ready_changed(None, Some(true));
        m.ready_changed(None, Some(false));
        m.ready_changed(None, Some(true));
        m.ready_changed(Some(true), None);
        m.set_leader(true);
        m.set_resync(Duration::from_secs(100), 7, Duration::from_millis(2500));
        m.resynced();
        let text = m.encode();
        for line in [
            "pipecat_operator_resync_period_seconds 100",
            "pipecat_operator_resync_backlog 7",
            "pipecat_operator_resync_lateness_seconds 2.5",
            "pipecat_operator_resyncs_total 1",
            "pipecat_operator_reconciles_total{result=\"created\"} 1",
            "pipecat_operator_reconciles_total{result=\"error\"} 1",
            "pipecat_operator_reconcile_errors_total{reason=\"PipecatUnavailable\"} 1",
            "pipecat_operator_api_requests_total{operation=\"get_agent\",status_class=\"2xx\"} 1",
            "pipecat_operator_api_requests_total{operation=\"update_agent\",status_class=\"429\"} 1",
            "pipecat_operator_api_rate_limit_waits_total 1",
            "pipecat_operator_agents{ready=\"true\"} 1",
            "pipecat_operator_agents{ready=\"false\"} 1",
            "pipecat_operator_leader 1",
            "pipecat_operator_reconcile_duration_seconds_count 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("pipecat_operator_agent_"),
            "per-agent gauges are off by default:\n{text}"
        );
    }

    fn agents(limit: usize) -> Metrics {
        Metrics::with_agent_metrics(AgentMetricsConfig {
            enabled: true,
            limit,
        })
    }

    const G: AgentGauges = AgentGauges {
        active_sessions: Some(2),
        warm: Some(1),
        max: Some(5),
    };

    #[test]
    fn agent_gauges_follow_the_agent_and_go_with_it() {
        let m = agents(10);
        let e = m.agent_observed("ns", "a", None, G);
        assert_eq!(e, Some(true));
        let text = m.encode();
        for line in [
            "pipecat_operator_agent_active_sessions{namespace=\"ns\",name=\"a\"} 2",
            "pipecat_operator_agent_warm_agents{namespace=\"ns\",name=\"a\"} 1",
            "pipecat_operator_agent_max_agents{namespace=\"ns\",name=\"a\"} 5",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        let e = m.agent_observed(
            "ns",
            "a",
            e,
            AgentGauges {
                active_sessions: Some(0),
                ..G
            },
        );
        assert!(
            m.encode()
                .contains("pipecat_operator_agent_active_sessions{namespace=\"ns\",name=\"a\"} 0")
        );
        m.agent_forgotten("ns", "a", e);
        assert!(
            !m.encode().contains("name=\"a\""),
            "the series left with the agent:\n{}",
            m.encode()
        );
    }

    #[test]
    fn agents_past_the_limit_get_no_series_until_one_leaves() {
        let m = agents(1);
        let a = m.agent_observed("ns", "a", None, G);
        let b = m.agent_observed("ns", "b", None, G);
        assert_eq!((a, b), (Some(true), Some(false)));
        let text = m.encode();
        assert!(!text.contains("name=\"b\""), "{text}");
        assert!(
            text.contains("pipecat_operator_agent_metrics_skipped 1"),
            "{text}"
        );
        // Still over the limit on the next pass: counted once.
        let b = m.agent_observed("ns", "b", b, G);
        assert!(
            m.encode()
                .contains("pipecat_operator_agent_metrics_skipped 1")
        );
        m.agent_forgotten("ns", "a", a);
        let b = m.agent_observed("ns", "b", b, G);
        assert_eq!(b, Some(true), "a freed slot is taken");
        let text = m.encode();
        assert!(
            text.contains("pipecat_operator_agent_metrics_skipped 0"),
            "{text}"
        );
        assert!(
            text.contains("pipecat_operator_agent_max_agents{namespace=\"ns\",name=\"b\"} 5"),
            "{text}"
        );
    }
}
