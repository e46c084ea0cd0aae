//! Watching: the cluster's changes become passes over secret sets. One controller per scope
//! (all namespaces, or each namespace of `--namespace`; sets matching `--label-selector`), fed
//! by its subscriptions to the scope's shared watches ([`Inputs`],
//! [`crate::runtime::reflectors`]): the resources (spec changes and deletions), the Secrets
//! they read (values and API keys; metadata only), and the agents (a deletion held by an agent
//! resumes as soon as that agent changes or goes).

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use tracing::{info, warn};

use super::context::Context;
use super::reconcile;
use crate::crd::PipecatAgent;
use crate::crd::secret_set::PipecatSecretSet;
use crate::runtime::credentials;
use crate::runtime::reflectors::{Shared, Watch, objects};
use crate::runtime::relist;
use crate::runtime::scope::{Scope, trim_cached};
use crate::runtime::secret_marks::SecretMarks;
use crate::runtime::secrets::{SecretsSeen, secret_changes};

/// True when the PipecatSecretSet CRD is installed (listing works in every scope).
pub async fn installed(client: &kube::Client, scopes: &[Scope]) -> bool {
    for scope in scopes {
        if let Err(e) = scope
            .api::<PipecatSecretSet>(client)
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
        {
            warn!(error = %e, "PipecatSecretSets cannot be listed (is the CRD installed? `kubectl apply -f crds/`): secret sets are not managed");
            return false;
        }
    }
    true
}

/// The PipecatSecretSet watch of `scope` (its label selector applies).
pub fn watch(kube: &kube::Client, scope: &Scope) -> Watch<PipecatSecretSet> {
    let events = watcher(scope.api::<PipecatSecretSet>(kube), scope.reconciled())
        .default_backoff()
        .modify(trim_cached::<PipecatSecretSet>);
    Watch::new("PipecatSecretSet", events)
}

/// What the secret sets' controller of one scope reads: its subscriptions to the scope's
/// shared watches, and the sets' cache.
pub struct Inputs {
    /// The scope.
    pub scope: Scope,
    /// The sets' reflector cache.
    pub store: Store<PipecatSecretSet>,
    /// The PipecatSecretSets' watch.
    pub sets: BoxStream<'static, Shared<PipecatSecretSet>>,
    /// The Secrets' watch.
    pub secrets: BoxStream<'static, Shared<PartialObjectMeta<Secret>>>,
    /// The agents' watch.
    pub agents: BoxStream<'static, Shared<PipecatAgent>>,
}

/// Runs the controller of each scope until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scopes: Vec<Inputs>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    info!(namespaces = %ctx.config.namespaces.join(","), "starting the PipecatSecretSet controller");
    let shutdown = shutdown.shared();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|inputs| controller_for(ctx.clone(), inputs, shutdown.clone()))
        .collect();
    futures::future::join_all(controllers).await;
    info!("secret set controller stopped");
    Ok(())
}

fn controller_for(
    ctx: Arc<Context>,
    inputs: Inputs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    let Inputs {
        scope,
        store: reader,
        sets,
        secrets,
        agents,
    } = inputs;
    let forget = ctx.clone();
    let namespace = scope.namespace.clone();
    let relisted = ctx.clone();
    let sets = relist::on_listed(sets, move |listed| {
        relisted.objects.retain_listed(namespace.as_deref(), listed)
    })
    .inspect(move |event| {
        if let Ok(watcher::Event::Delete(s)) = event {
            forget.objects.forget(&ObjectRef::from_obj(s));
        }
    });
    // A re-list's objects wait for the store to hold them.
    let sets = objects(relist::applied_when_stored(sets, |_| true))
        // Spec changes and deletions only: our own status writes do not come back as work.
        .predicate_filter(predicates::generation, Default::default());
    let secrets = secret_changes(ctx.clone(), secrets);
    let agents = objects(agents.filter_map(|event| {
        futures::future::ready(match event {
            Ok(
                watcher::Event::Apply(a) | watcher::Event::InitApply(a) | watcher::Event::Delete(a),
            ) => Some(Ok(a)),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        })
    }));
    let concurrency = ctx.config.concurrency;
    Controller::for_stream(sets, reader.clone())
        .watches_stream(secrets, sets_reading(ctx.clone(), reader.clone()))
        .watches_stream(agents, deleting_sets(reader))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

impl SecretsSeen for Context {
    type Error = super::error::Error;
    fn keys(&self) -> &credentials::KeyCache {
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
        super::credentials::release_if_unused(&self, &ns, &name, None).await
    }
}

/// The sets that read this Secret: their values, or their API key.
fn sets_reading(
    ctx: Arc<Context>,
    store: Store<PipecatSecretSet>,
) -> impl Fn(PartialObjectMeta<Secret>) -> Vec<ObjectRef<PipecatSecretSet>> + Send + Sync + 'static
{
    move |secret| {
        let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        store
            .state()
            .into_iter()
            .filter(|s| {
                let own_ns = s.namespace().unwrap_or_default();
                let loc = credentials::locate_in(
                    Some(&own_ns),
                    s.spec.credentials.as_ref(),
                    &ctx.config.default_credentials,
                );
                (own_ns == ns && s.spec.secret_ref.name == name)
                    || (loc.namespace == ns && loc.name == name)
            })
            .map(|s| ObjectRef::from_obj(&*s))
            .collect()
    }
}

/// The sets whose deletion waits (any agent change may release them).
fn deleting_sets(
    store: Store<PipecatSecretSet>,
) -> impl Fn(PipecatAgent) -> Vec<ObjectRef<PipecatSecretSet>> + Send + Sync + 'static {
    move |_agent| {
        store
            .state()
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_some())
            .map(|s| ObjectRef::from_obj(&*s))
            .collect()
    }
}
