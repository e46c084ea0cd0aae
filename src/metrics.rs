//! Prometheus metrics. Every label set is bounded: operations, status classes, decisions and
//! error reasons are fixed words, never object names or messages.

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
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
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
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
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
            leader,
        }
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
        if before == after {
            return;
        }
        let gauge = |r: bool| {
            self.agents.get_or_create(&ReadyLabels {
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

    /// Leader status.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
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
        let text = m.encode();
        for line in [
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
    }
}
