//! `pipecat-cloud-emulator`: a local Pipecat Cloud management API for offline use and tests.
//!
//! Parses arguments, starts logging (stderr), runs the emulator from the library and prints
//! one line, `pipecat-cloud-emulator listening on http://ADDR`, to stdout once it listens.
//! Stops gracefully on SIGTERM or SIGINT. See `docs/EMULATOR.md`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use pipecat_cloud_emulator::{self as emulator, Config};

/// A local emulator of the Pipecat Cloud management API.
#[derive(Debug, Parser)]
#[command(name = "pipecat-cloud-emulator", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "PIPECAT_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8787"
    )]
    listen: SocketAddr,

    /// Private API key accepted as `Authorization: Bearer <key>`; each key is a separate
    /// organization. Repeatable. Without any key, every bearer token is accepted as its own
    /// organization.
    #[arg(
        long = "api-key",
        env = "PIPECAT_EMULATOR_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,

    /// `PUBLIC=PRIVATE`: the public key may start sessions of the private key's organization.
    /// Repeatable.
    #[arg(
        long = "public-key",
        env = "PIPECAT_EMULATOR_PUBLIC_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = parse_pair
    )]
    public_keys: Vec<(String, String)>,

    /// Time from a deployment's creation until its pods are ready or its failure shows
    /// (e.g. `500ms`, `2s`, `1m`, `0`).
    #[arg(long, env = "PIPECAT_EMULATOR_READY_DELAY", default_value = "2s", value_parser = parse_duration)]
    ready_delay: Duration,

    /// Time from a deployment's creation until `reconciledDeploymentId` catches up (never
    /// before the ready delay).
    #[arg(long, env = "PIPECAT_EMULATOR_RECONCILE_DELAY", default_value = "3s", value_parser = parse_duration)]
    reconcile_delay: Duration,

    /// Time a secret set stays `pending` after a change.
    #[arg(long, env = "PIPECAT_EMULATOR_SECRET_READY_DELAY", default_value = "1s", value_parser = parse_duration)]
    secret_ready_delay: Duration,

    /// Images whose deployments crash (glob with `*` and `?`, or a regex starting with `^`).
    #[arg(long, env = "PIPECAT_EMULATOR_CRASH_IMAGE_PATTERN")]
    crash_image_pattern: Option<String>,

    /// Images whose deployments fail to pull with `PCC_IMAGE_PULL_UNAUTHORIZED`.
    #[arg(long, env = "PIPECAT_EMULATOR_PULL_FAIL_IMAGE_PATTERN")]
    pull_fail_image_pattern: Option<String>,

    /// Secret set names whose provisioning fails.
    #[arg(long, env = "PIPECAT_EMULATOR_SECRET_FAIL_PATTERN")]
    secret_fail_pattern: Option<String>,

    /// Keep state in this JSON file (loaded at start, saved on change and on shutdown).
    #[arg(long, env = "PIPECAT_EMULATOR_STATE_FILE")]
    state_file: Option<PathBuf>,

    /// Latency added to every API request before it is handled, like a real service's round
    /// trip (e.g. `50ms`; `0` answers at once).
    #[arg(long, env = "PIPECAT_EMULATOR_LATENCY", default_value = "0", value_parser = parse_duration)]
    latency: Duration,

    /// Journal entries kept in memory (counts cover every request).
    #[arg(
        long,
        env = "PIPECAT_EMULATOR_JOURNAL_CAPACITY",
        default_value_t = 100_000
    )]
    journal_capacity: usize,

    /// How agent reads and writes answer: `full` (every field), `seed` (only the seed page's
    /// fields) or `rewriting` (a server that normalises images, clamps scaling and leaves out
    /// fields at their default). See docs/EMULATOR.md.
    #[arg(
        long,
        env = "PIPECAT_EMULATOR_PROFILE",
        value_enum,
        default_value = "full"
    )]
    profile: emulator::Profile,

    /// Strict mode: check every API request against the official contract (400 with the
    /// violated rule, e.g. an unknown field or `null` for a field that is not nullable) and
    /// every answer of the emulator's own, and journal each violation
    /// (`GET /_emulator/violations`).
    #[arg(long, env = "PIPECAT_EMULATOR_STRICT")]
    strict: bool,

    /// Regions organizations may use, as `CODE=Display name` (repeatable, or comma-separated in
    /// the environment variable). Default: us-west, us-east, eu-central, ap-south.
    #[arg(
        long = "region",
        env = "PIPECAT_EMULATOR_REGIONS",
        value_delimiter = ',',
        value_parser = emulator::Region::parse
    )]
    regions: Vec<emulator::Region>,

    /// Log format on stderr.
    #[arg(
        long,
        env = "PIPECAT_EMULATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber (stderr); the level comes from `RUST_LOG`, `info`
/// when it is unset.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Installed once, at start: nothing else sets a subscriber in this process.
    let _ = result;
}

/// Parses a duration flag value: `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
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
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

/// Parses `PUBLIC=PRIVATE`.
fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((public, private)) if !public.is_empty() && !private.is_empty() => {
            Ok((public.to_owned(), private.to_owned()))
        }
        _ => Err("expected PUBLIC=PRIVATE".to_owned()),
    }
}

/// Resolves on SIGTERM or SIGINT. SIGTERM is listened for from the call on, so calling this before
/// the listening line is printed means a SIGTERM sent right after that line is never missed (the
/// default action would kill the process instead of stopping it gracefully).
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to listen for SIGTERM; only SIGINT stops the emulator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let config = Config {
        listen: args.listen,
        api_keys: args.api_keys,
        public_keys: args.public_keys,
        ready_delay: args.ready_delay,
        reconcile_delay: args.reconcile_delay,
        secret_ready_delay: args.secret_ready_delay,
        crash_image_pattern: args.crash_image_pattern,
        pull_fail_image_pattern: args.pull_fail_image_pattern,
        secret_fail_pattern: args.secret_fail_pattern,
        state_file: args.state_file,
        journal_capacity: args.journal_capacity,
        profile: args.profile,
        latency: args.latency,
        strict: args.strict,
        regions: if args.regions.is_empty() {
            emulator::default_regions()
        } else {
            args.regions
        },
    };
    let handle = emulator::start(config)
        .await
        .context("failed to start the emulator")?;
    let shutdown = shutdown_signal();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "pipecat-cloud-emulator listening on http://{}",
            handle.addr()
        )
        .context("failed to write to stdout")?;
        stdout.flush().context("failed to write to stdout")?;
    }
    shutdown.await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn pairs_and_args() {
        assert_eq!(parse_pair("pub=priv"), Ok(("pub".into(), "priv".into())));
        assert!(parse_pair("pub").is_err());
        let args = Args::try_parse_from([
            "pipecat-cloud-emulator",
            "--api-key",
            "a",
            "--api-key",
            "b",
            "--ready-delay",
            "0",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(args.api_keys, ["a", "b"]);
        assert_eq!(args.ready_delay, Duration::ZERO);
        assert_eq!(args.reconcile_delay, Duration::from_secs(3));
        assert_eq!(args.profile, emulator::Profile::Full);
        assert_eq!(args.latency, Duration::ZERO);
        let args = Args::try_parse_from(["pipecat-cloud-emulator", "--latency", "50ms"]).unwrap();
        assert_eq!(args.latency, Duration::from_millis(50));
        let args =
            Args::try_parse_from(["pipecat-cloud-emulator", "--profile", "rewriting"]).unwrap();
        assert_eq!(args.profile, emulator::Profile::Rewriting);
        assert!(Args::try_parse_from(["pipecat-cloud-emulator", "--profile", "nope"]).is_err());
    }
}
