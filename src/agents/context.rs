//! What every pass over an agent shares: the clients, the settings, and the agents' indexes
//! and per-object memory ([`Context`]).

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;

use super::{names, objects, set_index};
use crate::cloud;
use crate::crd::{CREDENTIALS_FINALIZER, PipecatAgent};
use crate::metrics::Metrics;
use crate::runtime::Config;
use crate::runtime::credentials::KeyCache;
use crate::runtime::events::Publisher;
use crate::runtime::lanes::Busy;
use crate::runtime::secret_marks::SecretMarks;
use crate::server::Health;

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub kube: kube::Client,
    /// Pipecat Cloud client.
    pub cloud: cloud::Client,
    /// Event publisher.
    pub events: Publisher,
    /// Settings.
    pub config: Config,
    /// Per-object memory: counters, what was written, counted readiness.
    pub objects: objects::Objects,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness reported on `/readyz`.
    pub health: Arc<Health>,
    /// Which resources claim which agent names.
    pub names: names::NameIndex,
    /// API keys already read from their Secrets.
    pub keys: KeyCache,
    /// Credentials Secrets known to carry the in-use finalizer.
    pub marked: SecretMarks,
    /// The PipecatSecretSets managing the sets agents use.
    pub sets: set_index::SetIndex,
    /// The objects a pass is under way for (one lane at a time per object).
    pub busy: Busy<PipecatAgent>,
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
            events: Publisher::new(
                kube.clone(),
                metrics.clone(),
                usize::from(config.concurrency),
            ),
            objects: objects::Objects::new(metrics.clone()),
            metrics,
            health,
            names: names::NameIndex::default(),
            keys: KeyCache::default(),
            marked: SecretMarks::new(CREDENTIALS_FINALIZER),
            busy: Busy::default(),
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
