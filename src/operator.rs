//! The `run` command: wires the Pipecat Cloud client, the controller, the endpoints and leader
//! election, then supervises the controller until it stops, the grace period after SIGTERM
//! runs out, or the lease is lost.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::agents::Context;
use crate::cloud;
use crate::controllers;
use crate::duration;
use crate::leader;
use crate::metrics::{AgentMetricsConfig, Metrics};
use crate::runtime;
use crate::secret_sets;
use crate::server::{self, Health};
use crate::telemetry;

/// Every flag of `pipecat-operator run`, grouped by the module each configures.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// How to reach Pipecat Cloud.
    #[command(flatten)]
    pub api: cloud::ClientConfig,
    /// Average Pipecat Cloud requests per second, all agents together (0: unlimited).
    #[arg(long, env = "PIPECAT_API_RATE_LIMIT", default_value_t = 10.0)]
    pub api_rate_limit: f64,
    /// Pipecat Cloud requests allowed at once above the average rate.
    #[arg(long, env = "PIPECAT_API_BURST", default_value_t = 20)]
    pub api_burst: u32,
    /// Share of --api-rate-limit kept for changes (new agents, spec changes, deletions,
    /// retries, roll-outs); periodic resyncs use the rest and stretch their period to fit it.
    #[arg(long, env = "PIPECAT_API_CHANGE_SHARE", default_value_t = 0.5, value_parser = change_share)]
    pub api_change_share: f64,
    /// The controller.
    #[command(flatten)]
    pub controller: runtime::Config,
    /// Leader election.
    #[command(flatten)]
    pub leader: leader::Args,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(
        long,
        env = "PIPECAT_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind_address: SocketAddr,
    /// Per-agent gauges.
    #[command(flatten)]
    pub agent_metrics: AgentMetricsConfig,
    /// Address of the `/healthz` and `/readyz` probes.
    #[arg(
        long,
        env = "PIPECAT_HEALTH_PROBE_BIND_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub health_probe_bind_address: SocketAddr,
    /// On SIGTERM, how long in-flight reconciles may take before the process exits.
    #[arg(long, env = "PIPECAT_SHUTDOWN_GRACE_PERIOD", default_value = "30s", value_parser = duration::parse)]
    pub shutdown_grace_period: Duration,
    /// Log format.
    #[arg(long, env = "PIPECAT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: telemetry::LogFormat,
}

/// `--api-change-share`: a fraction in [0, 0.95], so that resyncs keep some of the budget.
fn change_share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=0.95).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 0.95"))
    }
}

/// Runs the operator until it is told to stop.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, "info,kube=warn,tower=warn,hyper=warn");
    let metrics = Arc::new(Metrics::with_agent_metrics(args.agent_metrics.clone()));
    let health = Arc::new(Health::default());
    tokio::spawn(log_exit(
        "metrics",
        server::serve_metrics(args.metrics_bind_address, metrics.clone(), health.clone()),
    ));
    tokio::spawn(log_exit(
        "health",
        server::serve_health(args.health_probe_bind_address, health.clone()),
    ));

    let kube = kube::Client::try_default().await?;
    let limiter = Arc::new(cloud::RateLimiter::with_background_share(
        args.api_rate_limit,
        args.api_burst,
        1.0 - args.api_change_share,
    ));
    let cloud = cloud::Client::new(args.api)?
        .with_rate_limiter(limiter)
        .with_observer(metrics.clone());
    let ctx = Arc::new(Context::with_telemetry(
        kube.clone(),
        cloud.clone(),
        args.controller.clone(),
        metrics.clone(),
        health.clone(),
    ));
    let sets = Arc::new(secret_sets::Context::new(
        kube.clone(),
        cloud,
        args.controller,
        args.leader.leader_election_namespace.clone(),
        ctx.events.clone(),
        ctx.metrics.clone(),
    ));

    let terminated = Terminated::on_signals();
    let mut leadership = None;
    if args.leader.leader_elect {
        health.set_standby();
        metrics.set_leader(false);
        match leader::acquire(kube, args.leader.config(), terminated.wait()).await {
            Some(l) => leadership = Some(l),
            None => return Ok(()), // terminated while standing by
        }
    }
    metrics.set_leader(true);

    // Both controllers, under the same leadership and shutdown.
    let controller = controllers::run(ctx, sets, terminated.wait());
    let stop = match &mut leadership {
        Some(l) => {
            supervise(
                controller,
                terminated.wait(),
                args.shutdown_grace_period,
                l.lost(),
            )
            .await
        }
        None => {
            supervise(
                controller,
                terminated.wait(),
                args.shutdown_grace_period,
                std::future::pending(),
            )
            .await
        }
    };
    if stop == Stop::LeaseLost {
        // Another instance may already reconcile: stop at once, mid-flight or not.
        error!("lost the leader lease: exiting");
        std::process::exit(1);
    }
    if let Some(l) = leadership {
        l.release().await;
    }
    info!("stopped");
    match stop {
        Stop::Finished(r) => r,
        Stop::GraceExpired | Stop::LeaseLost => Ok(()),
    }
}

/// Why the operator stopped.
#[derive(Debug)]
pub enum Stop {
    /// The controller returned (after a shutdown request, its in-flight reconciles finished).
    Finished(anyhow::Result<()>),
    /// A shutdown was requested and the in-flight reconciles outlived the grace period.
    GraceExpired,
    /// The leader lease was lost.
    LeaseLost,
}

impl PartialEq for Stop {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Stop::Finished(Ok(())), Stop::Finished(Ok(())))
                | (Stop::Finished(Err(_)), Stop::Finished(Err(_)))
                | (Stop::GraceExpired, Stop::GraceExpired)
                | (Stop::LeaseLost, Stop::LeaseLost)
        )
    }
}

/// Waits for the first of: the controller finishing, the grace period running out after
/// `terminated`, or `lease_lost`.
pub async fn supervise(
    controller: impl Future<Output = anyhow::Result<()>>,
    terminated: impl Future<Output = ()>,
    grace: Duration,
    lease_lost: impl Future<Output = ()>,
) -> Stop {
    let deadline = async move {
        terminated.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = controller => Stop::Finished(r),
        _ = deadline => {
            warn!(grace_secs = grace.as_secs(), "in-flight reconciles did not finish within the grace period");
            Stop::GraceExpired
        }
        _ = lease_lost => Stop::LeaseLost,
    }
}

/// SIGTERM or SIGINT seen: any number of waiters.
#[derive(Clone)]
pub struct Terminated(tokio::sync::watch::Receiver<bool>);

impl Terminated {
    /// Listens for SIGTERM and SIGINT.
    pub fn on_signals() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        Terminated(rx)
    }

    /// Resolves once termination was requested.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|t| *t).await;
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutdown requested: finishing in-flight reconciles");
}

async fn log_exit(what: &'static str, server: impl Future<Output = anyhow::Result<()>>) {
    if let Err(e) = server.await {
        error!(error = %e, "{what} endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;
    use tokio::time::{Instant, sleep};

    const GRACE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_controller_that_stops_in_time_is_a_clean_stop() {
        let controller = async {
            sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let stop = supervise(controller, sleep(Duration::from_secs(1)), GRACE, pending()).await;
        assert_eq!(stop, Stop::Finished(Ok(())));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_work_gets_the_grace_period_and_no_more() {
        let started = Instant::now();
        let stuck = pending::<anyhow::Result<()>>();
        let stop = supervise(stuck, sleep(Duration::from_secs(2)), GRACE, pending()).await;
        assert_eq!(stop, Stop::GraceExpired);
        assert_eq!(started.elapsed(), Duration::from_secs(2) + GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn no_grace_runs_before_a_shutdown_request() {
        let controller = async {
            sleep(Duration::from_secs(3600)).await;
            anyhow::bail!("watch failed")
        };
        let stop = supervise(controller, pending(), GRACE, pending()).await;
        assert_eq!(stop, Stop::Finished(Err(anyhow::anyhow!("x"))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_stops_at_once_even_mid_grace() {
        let started = Instant::now();
        let stop = supervise(
            pending::<anyhow::Result<()>>(),
            sleep(Duration::from_secs(1)),
            GRACE,
            sleep(Duration::from_secs(4)),
        )
        .await;
        assert_eq!(stop, Stop::LeaseLost);
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }
}
