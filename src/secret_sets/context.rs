//! What every pass over a secret set shares: the clients, the settings, the per-object memory,
//! the digest key and the event publisher ([`Context`]).

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::digest;
use super::error::Error;
use super::objects;
use super::pass::Note;
use crate::cloud;
use crate::crd::secret_set::{PipecatSecretSet, SET_CREDENTIALS_FINALIZER};
use crate::metrics::Metrics;
use crate::runtime;
use crate::runtime::secret_marks::SecretMarks;

/// Shared state of all secret set reconciles.
pub struct Context {
    /// Kubernetes client.
    pub kube: kube::Client,
    /// Pipecat Cloud client.
    pub cloud: cloud::Client,
    /// The agent controller's settings (scopes, default credentials, intervals, backoff).
    pub config: runtime::Config,
    /// The operator's own namespace (where the digest key lives).
    pub namespace: String,
    /// Per-object memory.
    pub objects: objects::Objects,
    /// API keys already read.
    pub keys: runtime::credentials::KeyCache,
    /// Credentials Secrets known to carry the sets' in-use finalizer.
    pub marked: SecretMarks,
    /// Prometheus metrics (shared with the agents).
    pub metrics: Arc<Metrics>,
    digest_key: OnceCell<digest::DigestKey>,
    events: runtime::events::Publisher,
}

impl Context {
    /// Builds the context.
    pub fn new(
        kube: kube::Client,
        cloud: cloud::Client,
        config: runtime::Config,
        namespace: String,
        events: runtime::events::Publisher,
        metrics: Arc<Metrics>,
    ) -> Self {
        Context {
            events,
            kube,
            cloud,
            config: config.normalized(),
            namespace,
            objects: objects::Objects::new(metrics.clone()),
            metrics,
            keys: runtime::credentials::KeyCache::default(),
            marked: SecretMarks::new(SET_CREDENTIALS_FINALIZER),
            digest_key: OnceCell::new(),
        }
    }

    /// The digest key, read or created once per process.
    pub async fn digest_key(&self) -> Result<&digest::DigestKey, Error> {
        self.digest_key
            .get_or_try_init(|| digest::load_or_create(&self.kube, &self.namespace))
            .await
    }

    /// Publishes an event about `obj` in the background, through the process's one bounded
    /// publisher.
    pub fn publish(&self, obj: &PipecatSecretSet, note: Note) {
        self.events.publish(obj, note);
    }
}
