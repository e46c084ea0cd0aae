//! The secret set controller: keeps each `PipecatSecretSet`'s remote set equal to its
//! Kubernetes Secret. The same layout as the agent controller ([`crate::controller`]), whose
//! credentials resolution, condition helpers and Pipecat Cloud client it shares:
//! [`apply`] (credentials, the Secret -> [`desired`] values and their [`digest`], the remote
//! set, [`plan`] (pure), the call) -> [`status`] (pure `next_status`, events) in
//! [`reconcile`]; [`cleanup`] on deletion, held while agents use the set, with the
//! [`finalizer`]; [`objects`] is all the per-object memory; [`watch`] turns changes of the
//! resources, their Secrets and the agents into passes.

pub mod apply;
pub mod cleanup;
pub mod credentials;
pub mod desired;
pub mod digest;
mod error;
pub mod finalizer;
pub mod objects;
pub mod pass;
pub mod plan;
pub mod reconcile;
pub mod status;
pub mod watch;

use std::sync::Arc;

use kube::Resource;
use tokio::sync::OnceCell;

pub use error::Error;
pub use watch::run;

use crate::cloud;
use crate::crd::secret_set::PipecatSecretSet;
use crate::metrics::Metrics;
use crate::runtime;
use crate::text::truncate;

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
    pub marked: crate::runtime::secret_marks::SecretMarks,
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
            marked: credentials::set_marks(),
            digest_key: OnceCell::new(),
        }
    }

    /// The digest key, read or created once per process.
    pub async fn digest_key(&self) -> Result<&digest::DigestKey, Error> {
        self.digest_key
            .get_or_try_init(|| digest::load_or_create(&self.kube, &self.namespace))
            .await
    }

    /// Publishes an event about `obj` in the background, through the agents' bounded
    /// publisher.
    pub fn publish(&self, obj: &PipecatSecretSet, note: pass::Note) {
        self.events.publish_about(
            obj.object_ref(&()),
            runtime::events::Note {
                warning: note.warning,
                reason: note.reason,
                message: truncate(note.message, runtime::conditions::MAX_MESSAGE),
            },
        );
    }
}
