//! `pipecat-operator`: parses arguments, starts telemetry and hands over to the library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipecat_operator::cloud::{self, DEFAULT_BASE_URL};
use pipecat_operator::controller::{self, Context, DefaultCredentials};
use pipecat_operator::metrics::Metrics;
use pipecat_operator::server::{self, Health};
use pipecat_operator::{crd, duration, leader, telemetry};

#[derive(Parser)]
#[command(
    name = "pipecat-operator",
    version,
    about = "Kubernetes operator for Pipecat Cloud voice agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the PipecatAgent CustomResourceDefinition (YAML).
    Crd,
}

#[derive(Args)]
struct RunArgs {
    /// Pipecat Cloud API base URL (including /v1); point it at `pipecat-cloud-emulator` to work offline.
    #[arg(long, env = "PIPECAT_API_URL", default_value = DEFAULT_BASE_URL)]
    api_url: String,

    /// Secret holding the API key for resources that name none.
    #[arg(
        long,
        env = "PIPECAT_DEFAULT_SECRET_NAME",
        default_value = "pipecat-api-key"
    )]
    default_secret_name: String,

    /// Key of the default Secret holding the API key.
    #[arg(long, env = "PIPECAT_DEFAULT_SECRET_KEY", default_value = crd::DEFAULT_SECRET_KEY)]
    default_secret_key: String,

    /// Namespace of the default Secret (typically the operator's own); when empty, each
    /// resource looks for it in its own namespace.
    #[arg(long, env = "PIPECAT_DEFAULT_SECRET_NAMESPACE")]
    default_secret_namespace: Option<String>,

    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(long, env = "PIPECAT_WATCH_NAMESPACE", value_delimiter = ',')]
    namespace: Vec<String>,

    /// Watch only PipecatAgents matching this label selector (to shard across releases).
    #[arg(long, env = "PIPECAT_LABEL_SELECTOR")]
    label_selector: Option<String>,

    /// First poll interval while a deployment rolls out (grows by half each poll).
    #[arg(long, env = "PIPECAT_POLL_INTERVAL", default_value = "5s", value_parser = duration::parse)]
    poll_interval: Duration,

    /// Longest poll interval while a deployment rolls out.
    #[arg(long, env = "PIPECAT_MAX_POLL_INTERVAL", default_value = "60s", value_parser = duration::parse)]
    max_poll_interval: Duration,

    /// Refresh interval of ready agents (session count, drift), jittered by +-10%.
    #[arg(long, env = "PIPECAT_RESYNC_INTERVAL", default_value = "60s", value_parser = duration::parse)]
    resync_interval: Duration,

    /// First retry delay after an error (doubles per failure).
    #[arg(long, env = "PIPECAT_BACKOFF_BASE", default_value = "1s", value_parser = duration::parse)]
    backoff_base: Duration,

    /// Longest retry delay after errors.
    #[arg(long, env = "PIPECAT_BACKOFF_CAP", default_value = "5m", value_parser = duration::parse)]
    backoff_cap: Duration,

    /// Timeout of each Pipecat Cloud request.
    #[arg(long, env = "PIPECAT_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    request_timeout: Duration,

    /// Reconciles running at once.
    #[arg(long, env = "PIPECAT_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,

    /// Average Pipecat Cloud requests per second, all agents together (0: unlimited).
    #[arg(long, env = "PIPECAT_API_RATE_LIMIT", default_value_t = 10.0)]
    api_rate_limit: f64,

    /// Pipecat Cloud requests allowed at once above the average rate.
    #[arg(long, env = "PIPECAT_API_BURST", default_value_t = 20)]
    api_burst: u32,

    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(
        long,
        env = "PIPECAT_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_bind_address: SocketAddr,

    /// Address of the `/healthz` and `/readyz` probes.
    #[arg(
        long,
        env = "PIPECAT_HEALTH_PROBE_BIND_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    health_probe_bind_address: SocketAddr,

    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(long, env = "PIPECAT_LEADER_ELECT")]
    leader_elect: bool,

    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "PIPECAT_LEADER_ELECTION_ID",
        default_value = "pipecat-operator"
    )]
    leader_election_id: String,

    /// How long the leader's lease is valid without renewal (a standby takes over after it).
    #[arg(long, default_value = "15s", value_parser = duration::parse)]
    lease_duration: Duration,

    /// A leader that could not renew its lease for this long stops reconciling.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    renew_deadline: Duration,

    /// Interval of lease renewals and acquisition attempts.
    #[arg(long, default_value = "2s", value_parser = duration::parse)]
    retry_period: Duration,

    /// On SIGTERM, how long in-flight reconciles may take before the process exits.
    #[arg(long, env = "PIPECAT_SHUTDOWN_GRACE_PERIOD", default_value = "30s", value_parser = duration::parse)]
    shutdown_grace_period: Duration,

    /// Log format.
    #[arg(long, env = "PIPECAT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, "info,kube=warn,tower=warn,hyper=warn");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    tokio::spawn(log_exit(
        "metrics",
        server::serve_metrics(args.metrics_bind_address, metrics.clone()),
    ));
    tokio::spawn(log_exit(
        "health",
        server::serve_health(args.health_probe_bind_address, health.clone()),
    ));

    let kube = kube::Client::try_default().await?;
    let limiter = Arc::new(cloud::RateLimiter::new(args.api_rate_limit, args.api_burst));
    let cloud = cloud::Client::new(cloud::ClientConfig {
        base_url: args.api_url,
        timeout: args.request_timeout,
    })?
    .with_rate_limiter(limiter)
    .with_observer(metrics.clone());
    let config = controller::Config {
        default_credentials: DefaultCredentials {
            namespace: args.default_secret_namespace.filter(|s| !s.is_empty()),
            name: args.default_secret_name,
            key: args.default_secret_key,
        },
        namespaces: args
            .namespace
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        label_selector: args.label_selector.filter(|s| !s.is_empty()),
        poll_interval: args.poll_interval,
        max_poll_interval: args.max_poll_interval,
        resync_interval: args.resync_interval,
        backoff_base: args.backoff_base,
        backoff_cap: args.backoff_cap,
        concurrency: args.concurrency,
    };
    let ctx = Arc::new(Context::with_telemetry(
        kube.clone(),
        cloud,
        config,
        metrics.clone(),
        health.clone(),
    ));

    // SIGTERM/SIGINT: stop taking new work; in-flight reconciles get the grace period.
    let (term_tx, term_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = term_tx.send(true);
    });
    let terminated = move || {
        let mut rx = term_rx.clone();
        async move {
            let _ = rx.wait_for(|t| *t).await;
        }
    };

    let leadership = if args.leader_elect {
        health.set_standby();
        metrics.set_leader(false);
        let cfg = leader::Config {
            namespace: args.leader_election_namespace,
            name: args.leader_election_id,
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id())),
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
        };
        match leader::acquire(kube, cfg, terminated()).await {
            Some(l) => Some(l),
            None => return Ok(()), // terminated while standing by
        }
    } else {
        None
    };
    metrics.set_leader(true);

    let grace = args.shutdown_grace_period;
    let signalled = terminated();
    let deadline = async move {
        signalled.await;
        tokio::time::sleep(grace).await;
    };
    let controller = controller::run(ctx, terminated());
    let result = match leadership {
        Some(mut leadership) => {
            tokio::select! {
                r = controller => { leadership.release().await; r }
                _ = deadline => {
                    tracing::warn!(grace_secs = grace.as_secs(), "in-flight reconciles did not finish within the grace period");
                    leadership.release().await;
                    Ok(())
                }
                _ = leadership.lost() => {
                    // Another instance may already reconcile: stop at once, mid-flight or not.
                    tracing::error!("lost the leader lease: exiting");
                    std::process::exit(1);
                }
            }
        }
        None => tokio::select! {
            r = controller => r,
            _ = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight reconciles did not finish within the grace period");
                Ok(())
            }
        },
    };
    tracing::info!("stopped");
    result
}

async fn log_exit(
    what: &'static str,
    server: impl std::future::Future<Output = anyhow::Result<()>>,
) {
    if let Err(e) = server.await {
        tracing::error!(error = %e, "{what} endpoint stopped");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "pipecat-operator".into())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested: finishing in-flight reconciles");
}
