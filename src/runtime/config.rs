//! The settings every kind's controller shares, as one clap argument group of
//! `pipecat-operator run`.

use std::time::Duration;

use super::credentials::DefaultCredentials;
use crate::duration;

/// The settings every kind's controller runs with (flags; each default lives in its
/// attribute): the scope, the default credentials, concurrency, polling and backoff.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Credentials used when a resource names none.
    #[command(flatten)]
    pub default_credentials: DefaultCredentials,
    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(
        long = "namespace",
        env = "PIPECAT_WATCH_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Watch only the resources (PipecatAgents and PipecatSecretSets) matching this label
    /// selector (to shard across releases).
    #[arg(long, env = "PIPECAT_LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// First poll interval while a deployment rolls out (grows by half each poll).
    #[arg(long, env = "PIPECAT_POLL_INTERVAL", default_value = "5s", value_parser = duration::parse)]
    pub poll_interval: Duration,
    /// Longest poll interval while a deployment rolls out.
    #[arg(long, env = "PIPECAT_MAX_POLL_INTERVAL", default_value = "60s", value_parser = duration::parse)]
    pub max_poll_interval: Duration,
    /// Refresh interval of ready agents (session count, drift), stretched when the API budget
    /// left to resyncs (see --api-change-share) cannot refresh every agent that often; the
    /// refreshes are spread evenly over it.
    #[arg(long, env = "PIPECAT_RESYNC_INTERVAL", default_value = "60s", value_parser = duration::parse)]
    pub resync_interval: Duration,
    /// First retry delay after an error (doubles per failure).
    #[arg(long, env = "PIPECAT_BACKOFF_BASE", default_value = "1s", value_parser = duration::parse)]
    pub backoff_base: Duration,
    /// Longest retry delay after errors.
    #[arg(long, env = "PIPECAT_BACKOFF_CAP", default_value = "5m", value_parser = duration::parse)]
    pub backoff_cap: Duration,
    /// Reconciles running at once.
    #[arg(long, env = "PIPECAT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}

impl Default for Config {
    fn default() -> Self {
        crate::flags::defaults()
    }
}

impl Config {
    /// The watched namespaces without blanks (a Helm value renders as `""` when unset), and an
    /// empty label selector as none.
    pub fn normalized(mut self) -> Self {
        self.namespaces = self
            .namespaces
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        self.label_selector = self.label_selector.filter(|s| !s.trim().is_empty());
        self
    }
}
