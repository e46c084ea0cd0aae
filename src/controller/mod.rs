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
pub mod plan;
pub mod reconcile;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

pub use credentials::DefaultCredentials;
pub use error::Error;

use crate::cloud;
use crate::crd::PipecatAgent;

/// Name under which the operator publishes events and manages fields.
pub const MANAGER: &str = "pipecat-operator";

/// Operator settings (from flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Credentials used when a resource names none.
    pub default_credentials: DefaultCredentials,
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
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
            namespace: None,
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
}

impl Context {
    /// Builds the context.
    pub fn new(kube: kube::Client, cloud: cloud::Client, config: Config) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(kube.clone(), reporter),
            backoff: backoff::Tracker::new(&config),
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
            note: Some(note),
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
    match api.list_metadata(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(anyhow::anyhow!(
            "the PipecatAgent CRD is not installed in this cluster: run `pipecat-operator crd | kubectl apply -f -` (or `kubectl apply -f crds/`)"
        )),
        Err(e) => Err(anyhow::anyhow!("failed to list PipecatAgents: {e}")),
    }
}

/// Runs the controller until `shutdown` resolves (or SIGTERM/SIGINT).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let config = &ctx.config;
    check_crd(&ctx.kube, config.namespace.as_deref()).await?;
    let agents = agents_api(&ctx.kube, config.namespace.as_deref());
    let mut watch_cfg = watcher::Config::default().any_semantic();
    if let Some(sel) = &config.label_selector {
        watch_cfg = watch_cfg.labels(sel);
    }
    let (reader, writer) = reflector::store();
    // Only spec changes (generation) and deletions start a reconcile: our own status writes
    // do not come back as work.
    let agent_stream = watcher(agents, watch_cfg)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    // A Secret created or changed re-triggers the resources that read their key from it.
    let secrets: Api<PartialObjectMeta<Secret>> = match config.namespace.as_deref() {
        Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
        None => Api::all(ctx.kube.clone()),
    };
    let secret_stream = watcher(secrets, watcher::Config::default().any_semantic())
        .default_backoff()
        .touched_objects();
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

    info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        api = ctx.cloud.base_url(),
        "starting the PipecatAgent controller"
    );
    Controller::for_stream(agent_stream, reader)
        .watches_stream(secret_stream, mapper)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, backoff::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()))
        .await;
    info!("controller stopped");
    Ok(())
}

/// What `reconcile` returns to the runtime.
pub type ReconcileResult = Result<Action, Error>;
