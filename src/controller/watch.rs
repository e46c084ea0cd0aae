//! Watching: the cluster's changes become reconcile passes. One controller per scope (all
//! namespaces, or each namespace of `--namespace`), fed by four streams: the resources (spec
//! changes, deletions, objects the status has not caught up with), their credentials Secrets,
//! name claims released by a deleted owner, and refreshes that found work for the change lane.
//! Ready agents that are caught up are the background pacer's ([`super::lanes`]), one for all
//! scopes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};
use tracing::info;

use super::{Context, backoff, credentials, lanes, reconcile, secret_finalizer};
use crate::crd::PipecatAgent;

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
    let unsynced = Arc::new(AtomicUsize::new(scopes.len()));
    let mut paced = Vec::new();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|scope| {
            let (reader, writer) = reflector::store();
            let (follow_ups, changes) = tokio::sync::mpsc::unbounded_channel();
            paced.push(lanes::Scope {
                store: reader.clone(),
                follow_ups,
            });
            controller_for(
                ctx.clone(),
                scope,
                (reader, writer),
                changes,
                shutdown.clone(),
                unsynced.clone(),
            )
        })
        .collect();
    let pacer = lanes::pace(ctx.clone(), paced, shutdown.clone());
    futures::future::join(futures::future::join_all(controllers), pacer).await;
    info!("controller stopped");
    Ok(())
}

/// The controller of one scope (a namespace, or all of them).
fn controller_for(
    ctx: Arc<Context>,
    namespace: Option<String>,
    (reader, writer): (Store<PipecatAgent>, reflector::store::Writer<PipecatAgent>),
    follow_ups: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<PipecatAgent>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    unsynced: Arc<AtomicUsize>,
) -> impl std::future::Future<Output = ()> {
    let caught_up = ctx.clone();
    let agents = agent_events(ctx.clone(), namespace.clone(), unsynced)
        .reflect(writer)
        .applied_objects()
        // An object the status has caught up with (the start-up list of ready agents, our own
        // status writes) is no change: the background lane refreshes it. The gauges count it
        // at once, from its status, not only after its first refresh.
        .try_filter(move |a| {
            let change = caught_up.objects.background(a).is_none();
            if !change {
                caught_up.objects.set_ready(a, true);
                caught_up
                    .objects
                    .set_gauges(a, &caught_up.objects.status(a));
            }
            futures::future::ready(change)
        })
        // Only spec changes (generation) and deletions start a reconcile: our own status
        // writes do not come back as work.
        .predicate_filter(predicates::generation, Default::default());
    let secrets = secret_changes(ctx.clone(), namespace.as_deref());
    let mapper = agents_using_secret(ctx.clone(), reader.clone());
    let released = released_claims(&ctx, namespace);
    let follow_ups = futures::stream::unfold(follow_ups, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let concurrency = ctx.config.concurrency;
    Controller::for_stream(agents, reader)
        .watches_stream(secrets, mapper)
        .reconcile_on(futures::stream::select(released, follow_ups))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, backoff::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// The resources' watch events. Every event also keeps the per-object state and the name
/// index current: a deletion (however it happened, or leaving the label selector) forgets the
/// object, and so does a re-list that no longer holds it. The first complete list of each scope
/// makes the operator ready (`/readyz`).
fn agent_events(
    ctx: Arc<Context>,
    namespace: Option<String>,
    unsynced: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<watcher::Event<PipecatAgent>, watcher::Error>> + Send + 'static {
    let mut cfg = watcher::Config::default().any_semantic();
    if let Some(sel) = &ctx.config.label_selector {
        cfg = cfg.labels(sel);
    }
    let mut synced = false;
    let mut listed: HashSet<ObjectRef<PipecatAgent>> = HashSet::new();
    watcher(agents_api(&ctx.kube, namespace.as_deref()), cfg)
        .default_backoff()
        // managedFields is nearly half of each cached object and never read here.
        .modify(|a: &mut PipecatAgent| a.managed_fields_mut().clear())
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(a)) => ctx.names.upsert(a),
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(a)) => {
                ctx.names.upsert(a);
                listed.insert(ObjectRef::from_obj(a));
            }
            Ok(watcher::Event::Delete(a)) => ctx.forget(a),
            Ok(watcher::Event::InitDone) => {
                ctx.objects.retain_listed(namespace.as_deref(), &listed);
                listed.clear();
                if !synced {
                    synced = true;
                    if unsynced.fetch_sub(1, Ordering::SeqCst) == 1 {
                        ctx.health.set_synced();
                    }
                }
            }
            Err(_) => {}
        })
}

/// Secrets created, changed or deleted (metadata only: the operator never caches Secret data).
/// The initial list is not a change: it would reconcile every agent a second time for nothing.
fn secret_changes(
    ctx: Arc<Context>,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static {
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
        None => Api::all(ctx.kube.clone()),
    };
    watcher(secrets, watcher::Config::default().any_semantic())
        .default_backoff()
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
                ctx.keys
                    .observed(ns.clone(), name.clone(), s.resource_version());
                let deleting = s.metadata.deletion_timestamp.is_some();
                if ctx.marked.observed(&ns, &name, s.finalizers(), deleting) {
                    // Deleted while in use: let it go if no agent needs its key any more
                    // (otherwise the last agent's cleanup releases it).
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        if let Err(e) =
                            secret_finalizer::release_if_unused(&ctx, &ns, &name, None).await
                        {
                            tracing::warn!(error = %e, "failed to release a credentials Secret");
                        }
                    });
                }
            }
            Ok(watcher::Event::Delete(s)) => ctx
                .keys
                .deleted(&s.namespace().unwrap_or_default(), &s.name_any()),
            _ => {}
        })
        .filter_map(|event| {
            futures::future::ready(match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => Some(Ok(s)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        })
}

/// The resources that read their key from a Secret (re-triggered when it changes).
fn agents_using_secret(
    ctx: Arc<Context>,
    store: Store<PipecatAgent>,
) -> impl Fn(PartialObjectMeta<Secret>) -> Vec<ObjectRef<PipecatAgent>> + Send + Sync + 'static {
    move |secret| {
        let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        store
            .state()
            .into_iter()
            .filter(|a| {
                let loc = credentials::locate(a, &ctx.config.default_credentials);
                loc.namespace == ns && loc.name == name
            })
            .map(|a| ObjectRef::from_obj(&*a))
            .collect()
    }
}

/// Claimants of a name whose owner went away, re-queued at once.
fn released_claims(
    ctx: &Context,
    scope: Option<String>,
) -> impl Stream<Item = ObjectRef<PipecatAgent>> + Send + 'static {
    futures::stream::unfold(ctx.names.subscribe(), |mut rx| async move {
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
    })
}
