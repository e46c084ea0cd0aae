//! The reconciler: keeps each `PipecatAgent`'s remote agent equal to its spec.
//!
//! One pass, in files named after the steps:
//! [`credentials`] (resolve the key) -> [`reconcile`] (observe the agent, [`plan`] what to do,
//! apply it) -> [`status`] (report) ; [`cleanup`] on deletion; [`backoff`] decides when to
//! come back.

pub mod backoff;
pub mod cleanup;
pub mod credentials;
mod error;
pub mod ownership;
pub mod plan;
pub mod reconcile;
pub mod status;
pub mod written;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

pub use credentials::DefaultCredentials;
pub use error::Error;

use crate::cloud;
use crate::crd::PipecatAgent;
use crate::metrics::Metrics;
use crate::server::Health;

/// Name under which the operator publishes events and manages fields.
pub const MANAGER: &str = "pipecat-operator";

/// Operator settings (from flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Credentials used when a resource names none.
    pub default_credentials: DefaultCredentials,
    /// Watch only these namespaces (all namespaces when empty).
    pub namespaces: Vec<String>,
    /// Watch only resources matching this label selector.
    pub label_selector: Option<String>,
    /// How often a resource whose deployment is rolling out is polled at first.
    pub poll_interval: Duration,
    /// The slowest polling of a rolling-out deployment (the interval grows up to this).
    pub max_poll_interval: Duration,
    /// How often a ready resource is refreshed (session count, drift); jittered by +-10%.
    pub resync_interval: Duration,
    /// First retry delay after an error.
    pub backoff_base: Duration,
    /// Longest retry delay after errors.
    pub backoff_cap: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_credentials: DefaultCredentials::default(),
            namespaces: Vec::new(),
            label_selector: None,
            poll_interval: Duration::from_secs(5),
            max_poll_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            concurrency: 16,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub kube: kube::Client,
    /// Pipecat Cloud client.
    pub cloud: cloud::Client,
    /// Event publisher.
    pub recorder: Recorder,
    /// Settings.
    pub config: Config,
    /// Per-object retry and polling counters.
    pub backoff: backoff::Tracker,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness reported on `/readyz`.
    pub health: Arc<Health>,
    /// Which resources claim which agent names.
    pub names: ownership::NameIndex,
    /// API keys already read from their Secrets.
    pub keys: credentials::KeyCache,
    /// What this process last wrote per object (the watch cache can lag behind).
    pub written: written::Written,
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
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(kube.clone(), reporter),
            backoff: backoff::Tracker::new(&config),
            metrics,
            health,
            names: ownership::NameIndex::default(),
            keys: credentials::KeyCache::default(),
            written: written::Written::default(),
            kube,
            cloud,
            config,
        }
    }

    /// Publishes an event about `agent` in the background (an event is never worth delaying
    /// or failing a reconcile for).
    pub fn event(&self, agent: &PipecatAgent, type_: EventType, reason: &str, note: String) {
        let recorder = self.recorder.clone();
        let reference = agent.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.to_string(),
            // The apiserver rejects notes over 1 KiB (the event would be lost).
            note: Some(status::truncate(note, 1024)),
            action: reason.to_string(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                warn!(error = %e, "failed to publish event");
            }
        });
    }
}

fn agents_api(client: &kube::Client, namespace: Option<&str>) -> Api<PipecatAgent> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with an actionable message when the CRD is not installed.
pub async fn check_crd(client: &kube::Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api = agents_api(client, namespace);
    match api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(anyhow::anyhow!(
            "the PipecatAgent CRD is not installed in this cluster: run `pipecat-operator crd | kubectl apply -f -` (or `kubectl apply -f crds/`)"
        )),
        Err(e) => Err(anyhow::anyhow!("failed to list PipecatAgents: {e}")),
    }
}

/// Runs the controller until `shutdown` resolves: one watch over all namespaces, or one per
/// namespace of `config.namespaces`. In-flight reconciles finish; no new work starts.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let scopes: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    for scope in &scopes {
        check_crd(&ctx.kube, scope.as_deref()).await?;
    }
    ctx.health.set_leading();
    let shutdown = shutdown.shared();
    info!(
        namespaces = %ctx.config.namespaces.join(","),
        api = ctx.cloud.base_url(),
        "starting the PipecatAgent controller"
    );
    let unsynced = Arc::new(std::sync::atomic::AtomicUsize::new(scopes.len()));
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|scope| controller_for(ctx.clone(), scope, shutdown.clone(), unsynced.clone()))
        .collect();
    futures::future::join_all(controllers).await;
    info!("controller stopped");
    Ok(())
}

/// The controller of one scope (a namespace, or all of them).
fn controller_for(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    unsynced: Arc<std::sync::atomic::AtomicUsize>,
) -> impl std::future::Future<Output = ()> {
    let config = &ctx.config;
    let agents = agents_api(&ctx.kube, namespace.as_deref());
    let mut watch_cfg = watcher::Config::default().any_semantic();
    if let Some(sel) = &config.label_selector {
        watch_cfg = watch_cfg.labels(sel);
    }
    let (reader, writer) = reflector::store();
    // Only spec changes (generation) and deletions start a reconcile: our own status writes
    // do not come back as work.
    // The first complete list of each scope makes the operator ready (`/readyz`).
    // Every event also feeds the index of agent names (for name conflicts).
    let health = ctx.health.clone();
    let index_ctx = ctx.clone();
    let mut listed = false;
    let agent_stream = watcher(agents, watch_cfg)
        .default_backoff()
        // managedFields is nearly half of each cached object and never read here.
        .modify(|a: &mut PipecatAgent| a.managed_fields_mut().clear())
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(a) | watcher::Event::InitApply(a)) => {
                index_ctx.names.upsert(a)
            }
            Ok(watcher::Event::Delete(a)) => index_ctx.names.remove(a),
            Ok(watcher::Event::InitDone) if !listed => {
                listed = true;
                if unsynced.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                    health.set_synced();
                }
            }
            _ => {}
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    // A Secret created or changed re-triggers the resources that read their key from it
    // (metadata only: the operator never caches Secret data).
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace.as_deref() {
        Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
        None => Api::all(ctx.kube.clone()),
    };
    let cache_ctx = ctx.clone();
    let secret_stream = watcher(secrets, watcher::Config::default().any_semantic())
        .default_backoff()
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => cache_ctx.keys.observed(
                s.namespace().unwrap_or_default(),
                s.name_any(),
                s.resource_version(),
            ),
            Ok(watcher::Event::Delete(s)) => cache_ctx
                .keys
                .deleted(&s.namespace().unwrap_or_default(), &s.name_any()),
            _ => {}
        })
        // Only changes re-trigger agents: the initial list (every Secret, at start-up and after
        // each re-list) would reconcile every agent a second time for nothing.
        .filter_map(|event| {
            futures::future::ready(match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => Some(Ok(s)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        });
    let store = reader.clone();
    let default_creds = config.default_credentials.clone();
    let mapper = move |secret: PartialObjectMeta<Secret>| {
        let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        store
            .state()
            .into_iter()
            .filter(|a| {
                let loc = credentials::locate(a, &default_creds);
                loc.namespace == ns && loc.name == name
            })
            .map(|a| ObjectRef::from_obj(&*a))
            .collect::<Vec<_>>()
    };
    // Claimants of a name whose owner went away are re-queued at once.
    let scope = namespace.clone();
    let released = futures::stream::unfold(ctx.names.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(r) => return Some((r, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |r: &ObjectRef<PipecatAgent>| {
        futures::future::ready(scope.is_none() || r.namespace == scope)
    });
    let concurrency = config.concurrency;
    Controller::for_stream(agent_stream, reader)
        .watches_stream(secret_stream, mapper)
        .reconcile_on(released)
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, backoff::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// What `reconcile` returns to the runtime.
pub type ReconcileResult = Result<Action, Error>;
