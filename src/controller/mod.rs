//! The reconciler: keeps each `PipecatAgent`'s remote agent equal to its spec.
//!
//! One pass, one file per step (see docs/ARCHITECTURE.md):
//! [`credentials`] (resolve the key) -> [`observe`] (the remote agent, what was last applied)
//! -> [`plan`] (pure: what to do, from the [`desired`] agent and a [`compare`]son) -> [`apply`] (do it) -> [`status`] (report, with
//! [`readiness`]) -> [`events`]; [`cleanup`] on deletion, with the [`finalizer`].
//! [`reconcile`] runs a pass and returns its [`outcome`]; [`backoff`] decides when to come
//! back; [`objects`] is all the per-object memory; [`watch`] turns the cluster's changes
//! into passes, in two [`lanes`] (changes before periodic refreshes); [`ownership`] settles
//! two resources naming one agent; [`secret_finalizer`] keeps a credentials Secret until the
//! agents it must delete are gone; [`set_index`] knows which PipecatSecretSets manage the sets
//! agents use, and [`rotation`] (pure) makes agents wait for them and redeploys an agent once
//! per rotation.

pub mod apply;
pub mod backoff;
pub mod cleanup;
pub mod compare;
pub mod credentials;
pub mod desired;
mod error;
pub mod events;
pub mod finalizer;
pub mod lanes;
pub mod objects;
pub mod observe;
pub mod outcome;
pub mod ownership;
pub mod plan;
#[cfg(test)]
mod properties;
pub mod readiness;
pub mod reconcile;
pub mod relist;
pub mod rotation;
pub mod secret_finalizer;
pub mod set_index;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

pub use credentials::DefaultCredentials;
pub use error::Error;
pub use watch::{check_crd, run};

use crate::cloud;
use crate::crd::PipecatAgent;
use crate::duration;
use crate::metrics::Metrics;
use crate::server::Health;

/// Name under which the operator publishes events and manages fields.
pub const MANAGER: &str = "pipecat-operator";

/// Controller settings (flags; each default lives in its attribute).
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
    /// Watch only PipecatAgents matching this label selector (to shard across releases).
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

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub kube: kube::Client,
    /// Pipecat Cloud client.
    pub cloud: cloud::Client,
    /// Event publisher.
    pub events: events::Publisher,
    /// Settings.
    pub config: Config,
    /// Per-object memory: counters, what was written, counted readiness.
    pub objects: objects::Objects,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness reported on `/readyz`.
    pub health: Arc<Health>,
    /// Which resources claim which agent names.
    pub names: ownership::NameIndex,
    /// API keys already read from their Secrets.
    pub keys: credentials::KeyCache,
    /// Credentials Secrets known to carry the in-use finalizer.
    pub marked: secret_finalizer::SecretMarks,
    /// The PipecatSecretSets managing the sets agents use.
    pub sets: set_index::SetIndex,
    /// The objects a pass is under way for (one lane at a time per object).
    pub busy: lanes::Busy,
}

impl Context {
    /// Builds the context (with fresh metrics and health state).
    pub fn new(kube: kube::Client, cloud: cloud::Client, config: Config) -> Self {
        Self::with_telemetry(kube, cloud, config, Arc::default(), Arc::default())
    }

    /// Builds the context around existing metrics and health state.
    pub fn with_telemetry(
        kube: kube::Client,
        cloud: cloud::Client,
        config: Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        let config = config.normalized();
        Context {
            sets: set_index::SetIndex::new(config.namespaces.len().max(1)),
            events: events::Publisher::new(
                kube.clone(),
                metrics.clone(),
                usize::from(config.concurrency),
            ),
            objects: objects::Objects::new(metrics.clone()),
            metrics,
            health,
            names: ownership::NameIndex::default(),
            keys: credentials::KeyCache::default(),
            marked: secret_finalizer::agent_marks(),
            busy: lanes::Busy::default(),
            kube,
            cloud,
            config,
        }
    }

    /// Forgets everything about an object that left: deleted (with or without our cleanup),
    /// or no longer watched. The one exit for per-object state.
    pub fn forget(&self, obj: &PipecatAgent) {
        self.objects.forget(&ObjectRef::from_obj(obj));
        self.names.remove(obj);
        self.sets.remove_agent(&ObjectRef::from_obj(obj));
    }
}
