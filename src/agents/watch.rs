//! Watching: the cluster's changes become passes over agents. One controller per scope (all
//! namespaces, or each namespace of `--namespace`; agents and secret sets matching
//! `--label-selector`), fed by five streams: the resources (spec changes, deletions, objects
//! the status has not caught up with), their credentials Secrets, the PipecatSecretSets
//! managing the sets they use (a set that becomes ready or rotates wakes its agents), name
//! claims released by a deleted owner, and refreshes that found work for the change lane. The
//! first three are subscriptions to the scope's shared watches ([`Inputs`],
//! [`crate::runtime::reflectors`]). Ready agents that are caught up are the background
//! [`pacer`]'s, one for all scopes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{info, warn};

use super::context::Context;
use super::{backoff, credentials, lanes, pacer, reconcile, rotation};
use crate::crd::PipecatAgent;
use crate::crd::secret_set::{PipecatSecretSet, agent_uses_set};
use crate::runtime::credentials::KeyCache;
use crate::runtime::reflectors::{Shared, Watch, objects};
use crate::runtime::relist;
use crate::runtime::scope::{Scope, trim_cached};
use crate::runtime::secret_marks::SecretMarks;
use crate::runtime::secrets::{SecretsSeen, secret_changes};

/// Fails with an actionable message when the CRD is not installed.
pub async fn check_crd(client: &kube::Client, scope: &Scope) -> anyhow::Result<()> {
    let api = scope.api::<PipecatAgent>(client);
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

/// The PipecatAgent watch of `scope` (its label selector applies; what no pass reads is
/// dropped from the cache: [`trim_cached`]).
pub fn watch(kube: &kube::Client, scope: &Scope) -> Watch<PipecatAgent> {
    let events = watcher(scope.api::<PipecatAgent>(kube), scope.reconciled())
        .default_backoff()
        .modify(trim_cached::<PipecatAgent>);
    Watch::new("PipecatAgent", events)
}

/// What the agents' controller of one scope reads: its subscriptions to the scope's shared
/// watches, and the agents' cache.
pub struct Inputs {
    /// The scope.
    pub scope: Scope,
    /// The agents' reflector cache.
    pub store: Store<PipecatAgent>,
    /// The agents' watch.
    pub agents: BoxStream<'static, Shared<PipecatAgent>>,
    /// The PipecatSecretSets' watch.
    pub sets: BoxStream<'static, Shared<PipecatSecretSet>>,
    /// The Secrets' watch.
    pub secrets: BoxStream<'static, Shared<PartialObjectMeta<Secret>>>,
}

/// Runs the controller of each scope until `shutdown` resolves. In-flight reconciles finish;
/// no new work starts.
pub async fn run(
    ctx: Arc<Context>,
    scopes: Vec<Inputs>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
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
        .map(|inputs| {
            let (follow_ups, changes) = tokio::sync::mpsc::unbounded_channel();
            paced.push(pacer::Scope {
                store: inputs.store.clone(),
                follow_ups,
            });
            controller_for(
                ctx.clone(),
                inputs,
                changes,
                shutdown.clone(),
                unsynced.clone(),
            )
        })
        .collect();
    let pacer = pacer::pace(ctx.clone(), paced, shutdown.clone());
    futures::future::join(futures::future::join_all(controllers), pacer).await;
    info!("controller stopped");
    Ok(())
}

/// The controller of one scope (a namespace, or all of them).
fn controller_for(
    ctx: Arc<Context>,
    inputs: Inputs,
    follow_ups: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<PipecatAgent>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    unsynced: Arc<AtomicUsize>,
) -> impl std::future::Future<Output = ()> {
    let Inputs {
        scope,
        store: reader,
        agents,
        sets,
        secrets,
    } = inputs;
    let namespace = scope.namespace.clone();
    let caught_up = ctx.clone();
    // An object the status has caught up with (the start-up list of ready agents, our own
    // status writes) is no change: the background lane refreshes it. The gauges count it at
    // once, from its status, not only after its first refresh. A re-list's changes wait for
    // the store to hold them ([`relist`]).
    let change = move |a: &PipecatAgent| {
        let change = caught_up.objects.sort(a).is_none();
        if !change {
            caught_up.objects.set_ready(a, true);
            caught_up
                .objects
                .set_gauges(a, &caught_up.objects.status(a));
        }
        change
    };
    // Once the store holds what the watch applied, a status copy it shows is dropped for the
    // store's own object ([`super::objects::Objects::shown`]).
    let (shown, store, generations) = (ctx.clone(), reader.clone(), ctx.clone());
    let stored =
        agent_events(ctx.clone(), namespace.clone(), unsynced, agents).inspect(move |event| {
            match event {
                Ok(watcher::Event::Apply(a)) => {
                    if let Some(latest) = store.get(&ObjectRef::from_obj(a)) {
                        shown.objects.shown(&latest);
                    }
                }
                Ok(watcher::Event::InitDone) => shown.objects.relisted(|r| store.get(r)),
                _ => {}
            }
        });
    let agents = objects(relist::applied_when_stored(stored, change))
        // Only spec changes (generation) and deletions start a reconcile: our own status
        // writes do not come back as work.
        .try_filter(move |a| futures::future::ready(generations.objects.generation_changed(a)));
    let secrets = secret_changes(ctx.clone(), secrets);
    let mapper = agents_using_secret(ctx.clone(), reader.clone());
    let sets = set_changes(ctx.clone(), namespace.clone(), sets);
    let set_mapper = agents_using_set(ctx.clone(), reader.clone());
    let released = released_claims(&ctx, namespace);
    let follow_ups = futures::stream::unfold(follow_ups, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let concurrency = ctx.config.concurrency;
    Controller::for_stream(agents, reader)
        .watches_stream(secrets, mapper)
        .watches_stream(sets, set_mapper)
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
    events: impl Stream<Item = Shared<PipecatAgent>> + Send + 'static,
) -> impl Stream<Item = Shared<PipecatAgent>> + Send + 'static {
    let mut synced = false;
    let forget = ctx.clone();
    let scope = namespace.clone();
    let events = relist::on_listed(events, move |listed| {
        forget.objects.retain_listed(scope.as_deref(), listed);
        forget.sets.retain_agents(scope.as_deref(), listed);
    });
    events.inspect(move |event| match event {
        Ok(watcher::Event::Apply(a)) => {
            ctx.names.upsert(a);
            ctx.sets.upsert_agent(a);
            // A spec change or deletion must not wait behind a poll of the object.
            ctx.busy.changed(a);
        }
        Ok(watcher::Event::InitApply(a)) => {
            ctx.names.upsert(a);
            ctx.sets.upsert_agent(a);
            ctx.busy.changed(a);
        }
        Ok(watcher::Event::Delete(a)) => ctx.forget(a),
        Ok(watcher::Event::InitDone) => {
            if !synced {
                synced = true;
                if unsynced.fetch_sub(1, Ordering::SeqCst) == 1 {
                    ctx.health.set_synced();
                }
            }
        }
        Ok(watcher::Event::Init) | Err(_) => {}
    })
}

impl SecretsSeen for Context {
    type Error = super::error::Error;
    fn keys(&self) -> &KeyCache {
        &self.keys
    }
    fn marks(&self) -> &SecretMarks {
        &self.marked
    }
    async fn release_if_unused(
        self: Arc<Self>,
        ns: String,
        name: String,
    ) -> Result<(), Self::Error> {
        credentials::release_if_unused(&self, &ns, &name, None).await
    }
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

/// PipecatSecretSets whose state as agents see it changed (name, region, account, readiness,
/// ready revision), or that were deleted. The index is kept from every event; the initial
/// list is not a change (every agent is reconciled at start anyway), and completes the scope's
/// part of the index (agent passes wait for it, so that a restart never takes a managed set
/// for an unmanaged one). Sets that cannot be listed at all (their CRD is not installed, or
/// the operator may not read them) count as none.
fn set_changes(
    ctx: Arc<Context>,
    namespace: Option<String>,
    events: impl Stream<Item = Shared<PipecatSecretSet>> + Send + 'static,
) -> impl Stream<Item = Result<PipecatSecretSet, watcher::Error>> + Send + 'static {
    let mut synced = false;
    let index = ctx.clone();
    let scope = namespace.clone();
    let events = relist::on_listed(events, move |listed| {
        index.sets.listed(scope.as_deref(), listed)
    });
    let changes = events.filter_map(move |event| {
            let out = match event {
                Ok(watcher::Event::Apply(s)) => ctx.sets.upsert_set(&s).then_some(Ok(s)),
                Ok(watcher::Event::Delete(s)) => {
                    ctx.sets.remove_set(&s);
                    Some(Ok(s))
                }
                Ok(watcher::Event::Init) => None,
                Ok(watcher::Event::InitApply(s)) => {
                    // A re-list after a watch gap: a change made meanwhile still wakes agents.
                    (ctx.sets.upsert_set(&s) && synced).then_some(Ok(s))
                }
                Ok(watcher::Event::InitDone) => {
                    if !std::mem::replace(&mut synced, true) {
                        ctx.sets.scope_synced();
                    }
                    None
                }
                Err(e) => {
                    if !synced && unavailable(&e) {
                        synced = true;
                        warn!(error = %e, "cannot list PipecatSecretSets: agents treat every secret set as unmanaged (install the PipecatSecretSet CRD and the operator's RBAC for it)");
                        ctx.sets.scope_synced();
                    }
                    Some(Err(e))
                }
            };
            futures::future::ready(out)
        });
    objects(changes)
}

/// A set list that cannot succeed by waiting: the CRD is missing (404) or the operator may not
/// read the kind (403).
fn unavailable(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404 || s.code == 403)
}

/// The agents that use a set (looked up in the index, then checked with the one rule of
/// [`agent_uses_set`] against the agent cache).
fn agents_using_set(
    ctx: Arc<Context>,
    store: Store<PipecatAgent>,
) -> impl Fn(PipecatSecretSet) -> Vec<ObjectRef<PipecatAgent>> + Send + Sync + 'static {
    move |set| {
        ctx.sets
            .agents_naming(&set)
            .into_iter()
            // Only agents with something to do: the set's listing at start-up and its
            // provisioning leave caught-up agents to the background lane.
            .filter(|r| match store.get(r) {
                Some(a) => {
                    agent_uses_set(&a, &set)
                        && match a.status.as_ref() {
                            Some(s) if lanes::caught_up(&a, Some(s)) => {
                                rotation::concerns(s, &rotation::ManagedSet::of(&set))
                            }
                            _ => true,
                        }
                }
                None => false,
            })
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
