//! `pipecat-operator`: parses arguments, starts telemetry and hands over to the library.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipecat_operator::cloud::{self, DEFAULT_BASE_URL};
use pipecat_operator::controller::{self, Context, DefaultCredentials};
use pipecat_operator::{crd, telemetry};

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

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "PIPECAT_WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Watch only PipecatAgents matching this label selector (to shard across releases).
    #[arg(long, env = "PIPECAT_LABEL_SELECTOR")]
    label_selector: Option<String>,

    /// First poll interval while a deployment rolls out (grows by half each poll).
    #[arg(long, env = "PIPECAT_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    poll_interval: Duration,

    /// Longest poll interval while a deployment rolls out.
    #[arg(long, env = "PIPECAT_MAX_POLL_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    max_poll_interval: Duration,

    /// Refresh interval of ready agents (session count, drift), jittered by +-10%.
    #[arg(long, env = "PIPECAT_RESYNC_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    resync_interval: Duration,

    /// First retry delay after an error (doubles per failure).
    #[arg(long, env = "PIPECAT_BACKOFF_BASE", default_value = "1s", value_parser = parse_duration)]
    backoff_base: Duration,

    /// Longest retry delay after errors.
    #[arg(long, env = "PIPECAT_BACKOFF_CAP", default_value = "5m", value_parser = parse_duration)]
    backoff_cap: Duration,

    /// Timeout of each Pipecat Cloud request.
    #[arg(long, env = "PIPECAT_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// Reconciles running at once.
    #[arg(long, env = "PIPECAT_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,

    /// Log format.
    #[arg(long, env = "PIPECAT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
}

/// Parses `500ms`, `5s`, `2m`, `1h` (a bare number is seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
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
    let kube = kube::Client::try_default().await?;
    let cloud = cloud::Client::new(cloud::ClientConfig {
        base_url: args.api_url,
        timeout: args.request_timeout,
    })?;
    let config = controller::Config {
        default_credentials: DefaultCredentials {
            namespace: args.default_secret_namespace.filter(|s| !s.is_empty()),
            name: args.default_secret_name,
            key: args.default_secret_key,
        },
        namespace: args.namespace.filter(|s| !s.is_empty()),
        label_selector: args.label_selector.filter(|s| !s.is_empty()),
        poll_interval: args.poll_interval,
        max_poll_interval: args.max_poll_interval,
        resync_interval: args.resync_interval,
        backoff_base: args.backoff_base,
        backoff_cap: args.backoff_cap,
        concurrency: args.concurrency,
    };
    let ctx = Arc::new(Context::new(kube, cloud, config));
    controller::run(ctx, shutdown_signal()).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
